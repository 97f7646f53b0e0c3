/* attention.h: causal softmax attention of one kv head with exact and with quantized keys/values, reduced to the
 * attention metrics of README "Metrics" (attn_kl, entropy, entropy_q, top8, out_rel). The fast path scores tiles of
 * TQ_ATTN_TILE queries against all keys up to the causal limit with cblas_sgemm (memory O(tile × T), never T × T);
 * tq_attn_eval_ref is the plain double-precision reference the fast path is tested against. */
#ifndef TQ_ATTENTION_H
#define TQ_ATTENTION_H

#include <stddef.h>

/* Queries per tile. The fast path holds two TQ_ATTN_TILE × T float score blocks, see tq_attn_workspace_bytes. */
#define TQ_ATTN_TILE 64

/* Means over every (query head, position t) row evaluated. out_rel is NaN (absent) when no values were given or
 * every row had ‖pV‖ = 0; those rows are skipped (out_rows counts the rows that entered out_rel). */
typedef struct {
    double attn_kl;    /* mean_t KL(p_t ‖ p̂_t), nats */
    double entropy;    /* mean Shannon entropy of p_t, nats */
    double entropy_q;  /* mean Shannon entropy of p̂_t, nats */
    double top8;       /* mean |top8(p) ∩ top8(p̂)| / 8; rows with fewer than 8 keys use k = min(8, t+1) */
    double out_rel;    /* mean ‖p̂V̂ − pV‖ / ‖pV‖ */
    long rows, out_rows;
} tq_attn_stats;

/* One kv head: q [n_q][T][d] (the query heads of its GQA group, contiguous as in the dump), k and khat [T][d],
 * v and vhat [T][d] or both NULL (then out_rel is absent). Query positions t in [t_lo, t_hi) are evaluated, each
 * against keys 0..t with scale 1/√d; t_lo = 0, t_hi = T for the whole slice. Single-threaded (callers parallelize
 * over heads), deterministic. Returns TQ_OK, TQ_ERR_USAGE on bad shapes, TQ_ERR_NOMEM. */
int tq_attn_eval(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                 int T, int d, int t_lo, int t_hi, tq_attn_stats *out);
/* The same in plain loops, scores and softmax in double. O(T) memory per row; for tests. */
int tq_attn_eval_ref(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                     int T, int d, int t_lo, int t_hi, tq_attn_stats *out);
/* Bytes tq_attn_eval allocates for a slice of T tokens of dim d (independent of t_lo, t_hi and n_q). */
size_t tq_attn_workspace_bytes(int T, int d);

#endif
