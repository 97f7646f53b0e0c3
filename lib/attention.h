/* attention.h: causal softmax attention of one kv head with exact and with quantized keys/values, reduced to the
 * attention metrics of README "Metrics" (attn_kl, entropy, entropy_q, top8, out_rel), under the layer's attention spec
 * (sliding window, score scale, soft-cap: what the dump records). The fast path scores tiles of TQ_ATTN_TILE queries
 * against the keys their window reaches with cblas_sgemm (memory O(tile × T) for global layers, O(tile × (W + tile))
 * for a window W, never T × T); tq_attn_eval_ref is the plain double-precision reference it is tested against. */
#ifndef TQ_ATTENTION_H
#define TQ_ATTENTION_H

#include <stddef.h>

/* How a layer's attention scores its keys (datasets/FORMAT.md, dump format v2). All zero = causal global attention
 * with scale 1/√d and no soft-cap, what every v1 dump means. */
typedef struct {
    int window;        /* 0: global (query t sees keys 0..t); W > 0: keys max(0, t−W+1)..t, W of them with itself */
    double scale;      /* scores = scale · q·k; 0: 1/√d */
    double softcap;    /* 0: none; c > 0: scores s → c·tanh(s/c), after scaling (Gemma 2) */
    double rope_base;  /* RoPE base of the layer (informational: keys are stored after RoPE); 0: unknown/none */
} tq_attn_spec;

/* TQ_OK, or TQ_ERR_USAGE naming the bad field (negative window, non-finite or negative scale/soft-cap/base). */
int tq_attn_spec_check(const tq_attn_spec *s);
/* The scale actually used at head dim d: s->scale, or 1/√d when it is 0 (or s is NULL). */
double tq_attn_spec_scale(const tq_attn_spec *s, int d);

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
 * against the keys spec allows (NULL: keys 0..t, scale 1/√d, as in every v1 dump); t_lo = 0, t_hi = T for the whole
 * slice. Keys outside a query's window take no part in its softmax, top-8 or output (they are never scored).
 * Single-threaded (callers parallelize over heads), deterministic. Returns TQ_OK, TQ_ERR_USAGE on bad shapes or a
 * bad spec, TQ_ERR_NOMEM. */
int tq_attn_eval(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                 int T, int d, const tq_attn_spec *spec, int t_lo, int t_hi, tq_attn_stats *out);
/* The same in plain loops, scores, soft-cap and softmax in double. O(T) memory per row; for tests. */
int tq_attn_eval_ref(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                     int T, int d, const tq_attn_spec *spec, int t_lo, int t_hi, tq_attn_stats *out);
/* The attention-output error propagated through the layer's output projection (the `out_proj` sensitivity metric):
 * for each position t in [0, T), e_t = sum_g W_g (p̂_{g,t} V̂ − p_{g,t} V) and y_t = sum_g W_g p_{g,t} V, where g runs
 * over the n_q query heads of one kv head and W_g is query head g's block of d columns of the output projection
 * (row-major [n_embd][ld]; wo points at the first column of this group's first head, so W_g's column c is
 * wo[r * ld + g * d + c]). *num = sum_t ||e_t||^2 and *den = sum_t ||y_t||^2; out_proj = num / den. Softmax under
 * spec in double (as tq_attn_eval_ref); the projection by sgemm. TQ_OK, TQ_ERR_USAGE on bad shapes, TQ_ERR_NOMEM. */
int tq_attn_out_proj(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                     int T, int d, const tq_attn_spec *spec, const float *wo, int n_embd, int ld, double *num,
                     double *den);

/* Bytes tq_attn_eval allocates at most for a slice of T tokens of dim d under a window (0: global): independent of
 * t_lo, t_hi and n_q, and of T once T exceeds window + TQ_ATTN_TILE. */
size_t tq_attn_workspace_bytes(int T, int d, int window);

#endif
