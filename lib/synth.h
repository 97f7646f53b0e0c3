/* synth.h: synthetic key/value/query generators (gaussian, structured, outlier, heavy, rope) with the shapes of a
 * tq-kv dump, filled one layer at a time from PCG streams derived per (layer, head), so `tq synth` files and the
 * in-memory layers used by `sweep --synthetic` are the same numbers. Models and parameters: datasets/SYNTHETIC.md. */
#ifndef TQ_SYNTH_H
#define TQ_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "dump.h"

enum { TQ_SYNTH_GAUSSIAN, TQ_SYNTH_STRUCTURED, TQ_SYNTH_OUTLIER, TQ_SYNTH_HEAVY, TQ_SYNTH_ROPE, TQ_SYNTH_COUNT };

/* Generator version, recorded in the source attribute: bump it whenever the numbers for a given seed change. */
#define TQ_SYNTH_VERSION 1

/* Model constants (datasets/SYNTHETIC.md explains each). */
#define TQ_SYNTH_CLUSTERS 8          /* structured: directions per kv head */
#define TQ_SYNTH_KAPPA 8.0           /* structured: query norm = logit of a key at the cluster centre with norm sqrt(d) */
#define TQ_SYNTH_KEY_NOISE 0.25      /* structured: key = rho*sqrt(d)*(dir + 0.25*N(0, I/d)) */
#define TQ_SYNTH_QUERY_NOISE 0.25    /* structured: query = kappa*(dir + 0.25*N(0, I/d)) */
#define TQ_SYNTH_NORM_SPREAD 0.2     /* structured: rho = exp(0.2*N(0,1)) per key */
#define TQ_SYNTH_OUTLIER_PER_128 4   /* outlier: channels per 128 dims, round(4*d/128), at least 1 */
#define TQ_SYNTH_OUTLIER_LO 10.0     /* outlier: channel scale uniform in [10, 20] */
#define TQ_SYNTH_OUTLIER_HI 20.0
#define TQ_SYNTH_DOF_DEFAULT 3       /* heavy: Student-t degrees of freedom */
#define TQ_SYNTH_DOF_MAX 30
#define TQ_SYNTH_ROPE_BASE 10000.0   /* rope: theta_i = base^(-2i/d) */
#define TQ_SYNTH_ROPE_RHO 0.98       /* rope: AR(1) coefficient of the content part from token to token */
#define TQ_SYNTH_ROPE_CONTENT 0.5    /* rope: stationary std of each content coordinate */
#define TQ_SYNTH_ROPE_QSCALE 4.0     /* rope: query base = 4*(8/sqrt(d))*(key base + N(0, m^2)) */
#define TQ_SYNTH_MAX_LAYERS 1000     /* /layer_NNN has three digits */
#define TQ_SYNTH_MAX_ELEMS (1LL << 31) /* keys + values + queries of one layer */

typedef struct {
    int dist;                  /* TQ_SYNTH_* */
    int n_layers, n_kv_heads, n_q_heads, n_tokens, head_dim;
    uint64_t seed;
    int dtype;                 /* TQ_DTYPE_F16: values are rounded to half in memory too, so they equal the file's */
    int dof;                   /* heavy: Student-t degrees of freedom, 3..TQ_SYNTH_DOF_MAX */
    int rope_post;             /* rope: 1 = post-RoPE keys/queries (default), 0 = the same vectors before rotation */
    int hetero;                /* 1: per-layer query scales from the built-in profile (tq_synth_layer_scale) */
    int n_layer_scales;        /* > 0: layer_scales[] has n_layers entries (exclusive with hetero) */
    const double *layer_scales;/* borrowed, not owned */
} tq_synth_params;

/* Defaults: gaussian, 1 layer, 1 head, 1 query head, 256 tokens, d = 128, seed 0, f32, dof 3, post-RoPE. */
void tq_synth_params_default(tq_synth_params *p);
/* "gaussian" -> TQ_SYNTH_GAUSSIAN ...; -1 for an unknown name. */
int tq_synth_dist_parse(const char *name);
const char *tq_synth_dist_name(int dist);
/* Validate every field: TQ_OK or TQ_ERR_USAGE with a message naming the parameter and the allowed range. */
int tq_synth_check(const tq_synth_params *p);
/* The query scale of a layer: 1, layer_scales[layer], or with hetero the profile
 * s(l) = 0.25 * 16^sin(pi*(l+0.5)/L): about 0.25 (near-uniform attention) at the first and last layers, 4 (very
 * peaky) in the middle. Every query of the layer is multiplied by it, so attention logits (and the logit errors
 * quantized keys cause) scale with it while the keys and values the quantizer sees do not change. */
double tq_synth_layer_scale(const tq_synth_params *p, int layer);
/* Fill `out` with layer `layer` (keys, values, queries, float32, row-major [head][token][dim]); free with
 * tq_layer_free. Byte-identical for the same params whatever the order layers are generated in; the first T tokens
 * do not depend on n_tokens >= T. Returns TQ_OK, TQ_ERR_USAGE (bad params) or TQ_ERR_NOMEM. */
int tq_synth_layer(const tq_synth_params *p, int layer, tq_layer *out);
/* The outlier channels of (layer, kv head) for dist outlier: n = round(4*d/128) (>= 1) channel indices in
 * ascending order and their scales. idx and scale hold at least tq_synth_outlier_count(d). */
int tq_synth_outlier_count(int d);
void tq_synth_outlier_channels(const tq_synth_params *p, int layer, int head, int *idx, double *scale);
/* Rotate x[d] in place by RoPE at position pos: pairs (i, i + d/2) (the rotate_half layout of Llama/HF dumps),
 * angle pos * base^(-2i/d), angles in double. pos may be negative (the inverse rotation). d even. */
void tq_synth_rope_apply(float *x, int d, long pos, double base);
/* The source attribute: "tq synth --dist ... (generator v1: ...)" with every parameter; returns buf. */
const char *tq_synth_describe(const tq_synth_params *p, char *buf, size_t n);

#endif
