/* metrics.h: what quantization does to one (layer, kv head, tensor) slice, with the exact names and definitions of
 * README "Metrics": vector errors, inner products with the (GQA-mapped) queries, and causal attention. Every
 * report (sweep, entropy, sensitivity) takes its numbers and column names from here. A metric that cannot be
 * computed (no queries, no values, all-zero vectors) is NaN in tq_metrics = absent; printers write it as empty. */
#ifndef TQ_METRICS_H
#define TQ_METRICS_H

#include <stdint.h>

#include "attention.h"

/* Inner products use every causal pair (g, t, s ≤ t) of the group's query heads while there are at most this many.
 * Beyond it they use a seeded sample: R = ⌈2·cap/(T+1)⌉ query rows (g, t) drawn uniformly without replacement from
 * stream tq_rng_derive(seed, layer, head, TQ_PURPOSE_SAMPLE), each with all its keys s ≤ t — about `cap` pairs, every
 * pair equally likely to be included (a cluster sample: rows are scored with sgemm instead of pair by pair). */
#define TQ_METRICS_MAX_PAIRS (1L << 20)

enum {
    TQ_MET_NMSE, TQ_MET_DMSE, TQ_MET_COS,
    TQ_MET_IP_BIAS, TQ_MET_IP_RMSE, TQ_MET_IP_NRMSE, TQ_MET_IP_SLOPE,
    TQ_MET_ATTN_KL, TQ_MET_ENTROPY, TQ_MET_ENTROPY_Q, TQ_MET_ENTROPY_COLLAPSE, TQ_MET_TOP8, TQ_MET_OUT_REL,
    TQ_MET_COUNT
};
/* Column names in that order: "nmse", "dmse", "cos", "ip_bias", ... "out_rel". */
extern const char *const tq_metric_names[TQ_MET_COUNT];
int tq_metric_by_name(const char *name); /* index, or -1 */

typedef struct {
    double v[TQ_MET_COUNT]; /* NaN = absent */
    long n_vectors;         /* vectors of the slice (the aggregation weight) */
    long n_pairs;           /* inner-product pairs used; 0 without queries */
    int ip_sampled;         /* 1 when n_pairs is a sample of a larger set */
    long attn_rows;         /* (query head, t) rows in the attention means */
} tq_metrics;

void tq_metrics_init(tq_metrics *m); /* all absent */

/* nmse = Σ‖x−x̂‖² / Σ‖x‖²; dmse = mean over x ≠ 0 of ‖x−x̂‖²/‖x‖²; cos = mean over x ≠ 0 of ⟨x,x̂⟩/(‖x‖‖x̂‖), where
 * a zero x̂ counts cos 0. Zero x are skipped (their error still enters nmse's numerator); with Σ‖x‖² = 0 all three are
 * absent. x, xhat [n][d]. */
void tq_metrics_vec(const float *x, const float *xhat, long n, int d, tq_metrics *m);

/* ip_bias, ip_rmse, ip_nrmse, ip_slope of one kv head against its G query heads q [G][T][d]; k, khat [T][d].
 * e = ⟨q_t, k̂_s⟩ − ⟨q_t, k_s⟩ over pairs s ≤ t, formed as ⟨q, k̂ − k⟩ by sgemm (so small errors keep their
 * digits; ⟨q,k⟩ by sgemm too, ~√d·2^-24 relative), all sums in double. ip_slope is the ordinary least-squares
 * slope (with intercept) of ⟨q,k̂⟩ on ⟨q,k⟩; ip_nrmse = ip_rmse / √mean⟨q,k⟩². max_pairs 0 means
 * TQ_METRICS_MAX_PAIRS. Returns TQ_OK or TQ_ERR_USAGE. */
int tq_metrics_ip(const float *q, int G, const float *k, const float *khat, int T, int d, long max_pairs,
                  uint64_t seed, int layer, int head, tq_metrics *m);

/* Everything for one kv head: the keys row mk (vector metrics of keys, inner products, attn_kl, entropy,
 * entropy_q, entropy_collapse, top8) and, when v is not NULL, the values row mv (vector metrics of values and out_rel,
 * which needs keys and values quantized). q may be NULL (no queries: inner-product and attention metrics absent).
 * attention 0 skips the attention pass (the O(T²) part). mv may be NULL when v is. */
typedef struct {
    uint64_t seed;
    int layer, head;
    long max_pairs;  /* 0: TQ_METRICS_MAX_PAIRS */
    int attention;   /* 1: attention metrics */
    tq_attn_spec attn; /* the layer's window, scale and soft-cap (all 0: causal global, 1/√d, as in v1 dumps); the
                        * attention metrics honour it, the inner products use every causal pair regardless */
} tq_metrics_opts;
int tq_metrics_head(const tq_metrics_opts *o, const float *q, int G, const float *k, const float *khat,
                    const float *v, const float *vhat, int T, int d, tq_metrics *mk, tq_metrics *mv);

/* entropy_collapse = 1 − entropy_q / entropy; 0 when entropy = 0 (one key: nothing to collapse); absent when either
 * entropy is absent. */
double tq_metrics_collapse(double entropy, double entropy_q);

/* Aggregation over slices: each metric is the mean of the slices' values weighted by n_vectors, over the slices
 * where it is present; entropy_collapse is recomputed from the aggregated entropy and entropy_q so that it keeps its
 * definition. Sums in a fixed order give thread-count independent results. */
typedef struct { double sum[TQ_MET_COUNT], w[TQ_MET_COUNT]; long n_vectors, n_pairs, attn_rows; } tq_metrics_acc;
void tq_metrics_acc_init(tq_metrics_acc *a);
void tq_metrics_acc_add(tq_metrics_acc *a, const tq_metrics *m);
void tq_metrics_acc_mean(const tq_metrics_acc *a, tq_metrics *out);

#endif
