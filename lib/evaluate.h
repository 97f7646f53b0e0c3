/* evaluate.h: the evaluation engine — configurations from the axes' cartesian product, inputs (dumps or synthetic
 * distributions) read one layer at a time, every (layer, kv head, tensor) slice quantized and reconstructed on a
 * device (lib/device.h) and measured with lib/metrics.h, heads in parallel, rows per slice plus aggregates per layer
 * and per input summed in head order (results do not depend on the thread count). Also the sensitivity scan behind
 * bit schedules. Progress goes through a callback; every function returns a status and never prints or exits.
 * README "Library: the evaluation engine" shows a sweep run in memory.
 */
#ifndef TQ_EVALUATE_H
#define TQ_EVALUATE_H

#include <stdint.h>

#include "device.h"
#include "metrics.h"
#include "quant.h"
#include "schedule.h"
#include "synth.h"
#include "tq.h"

/* ---- configurations ---- */

typedef struct {
    tq_qparams k, v;            /* keys and values quantizers; v.method < 0: keys only */
    char kdesc[192], vdesc[192]; /* tq_qparams_describe of each ("none" for no values) */
} tq_eval_config;

enum { TQ_EVAL_VALUES_SAME, TQ_EVAL_VALUES_FIXED, TQ_EVAL_VALUES_NONE };

/* The axes of the product (lists of enum values). Methods whose width is fixed (fp16, int8) take one configuration
 * whatever the bits; methods without a rotation ignore rotation, codebook, center and outliers. */
typedef struct {
    const int *methods; int n_methods;      /* tq_method */
    const int *bits; int n_bits;
    const int *rotations; int n_rotations;  /* tq_rotation_kind */
    const int *codebooks; int n_codebooks;  /* tq_codebook_kind */
    const int *centers; int n_centers;      /* 0 off, 1 on */
    const int *outliers; int n_outliers;    /* outlier channel counts */
    int values;                             /* TQ_EVAL_VALUES_* */
    tq_qparams values_params;               /* TQ_EVAL_VALUES_FIXED: the values quantizer */
    uint64_t seed;
} tq_eval_axes;

typedef struct {
    tq_eval_config *cfg;
    int n;
    char **notes;               /* one line per configuration skipped ("skipping ... : why"), in product order */
    int n_notes;
} tq_eval_configs;

/* The product for head dim d on device dev, in the order methods x bits x rotation x codebook x center x outliers,
 * configurations that collapse to the same description kept once. A configuration the method does not take at d,
 * or the device does not run, is skipped with a note. None left: TQ_ERR_USAGE "no configuration left to run: ..."
 * (out stays valid to free). */
int tq_eval_configs_build(tq_eval_configs *out, const tq_eval_axes *ax, int d, tq_device dev);
void tq_eval_configs_free(tq_eval_configs *c);

/* ---- evaluation ---- */

typedef struct {
    const char *label;          /* the report's "dump" column */
    const char *path;           /* a tq-kv dump, or NULL: a synthetic input of distribution synth */
    int synth;                  /* TQ_SYNTH_* when path is NULL (shapes from tq_eval_opts.sp) */
} tq_eval_input;

/* One output row: layer or head -1 is an aggregate ("all"). */
typedef struct {
    int input, layer, head, tensor, cfg;
    double bits_code, bits_total;  /* n_vectors-weighted means for aggregates */
    int window;                    /* the layer's sliding window (0: global); aggregates over layers of different
                                    * windows: -1 */
    tq_metrics m;
} tq_eval_row;

typedef struct {
    tq_eval_row *rows;
    long n, cap;
} tq_eval_rows;

/* One slice under one configuration, as tq_eval_slice measures it: what tq_evaluate aggregates, and what MPI ranks
 * send to rank 0 (README "Scaling out"). mv is zero when the configuration has no values. */
typedef struct {
    tq_metrics mk, mv;
    double kbits, vbits, kbc, vbc;
} tq_eval_result;

/* Progress: called with done = 0 when an input starts, after each (layer, configuration) and with done = total at its
 * end. */
typedef void (*tq_progress_fn)(void *ctx, const char *label, long done, long total);

typedef struct {
    const tq_eval_input *inputs;
    int n_inputs;
    tq_synth_params sp;         /* shapes and seed of synthetic inputs (dist is set per input) */
    const int *layers; int n_layers; /* dumps: the layers to evaluate (NULL: all) */
    const int *heads; int n_heads;   /* dumps: the kv heads (NULL: all) */
    int tokens;                 /* dumps: first N tokens (0: all); synthetic: replaces sp.n_tokens when > 0 */
    int threads;                /* heads in parallel (results do not depend on it) */
    uint64_t seed;              /* the metrics' sampling seed */
    int attention;              /* 0: skip the O(T^2) attention metrics */
    int per_head_rows;          /* 0: aggregates only */
    const tq_schedule *sched;   /* per-slice bits replacing each configuration's, or NULL */
    tq_device device;
    const tq_eval_config *cfg;
    int n_cfg;
    tq_progress_fn progress;    /* may be NULL */
    void *progress_ctx;
    /* Results computed elsewhere (the ranks of an MPI run), or NULL: when set, tq_evaluate reads no tensor and takes
     * each slice's result from here, then aggregates it exactly as its own (same values, same order, same rows). */
    int (*precomputed)(void *ctx, int input, int layer, int head, int cfg, tq_eval_result *r);
    void *precomputed_ctx;
} tq_eval_opts;

/* Shape of one input (opens a dump): layers, kv heads, head dim. */
int tq_eval_input_shape(const tq_eval_opts *o, int input, int *n_layers, int *n_kv_heads, int *head_dim);
/* Evaluate every input, selected layer, configuration and selected head; appends to out per input: slice rows and
 * per-layer aggregates (when per_head_rows) then the input's aggregates (layer = head = -1) per configuration, keys
 * then values. out is left with the rows so far on failure; free it with tq_eval_rows_free. */
int tq_evaluate(const tq_eval_opts *o, tq_eval_rows *out);
void tq_eval_rows_free(tq_eval_rows *r);

/* ---- work units: tq_evaluate split into independent pieces (MPI ranks, README "Scaling out") ---- */

/* One (input, layer, kv head, configuration) of tq_evaluate, with an estimated cost (arbitrary units, proportional
 * to the arithmetic: the quantizer's T*d*(d or 16) plus the attention metrics' G*T^2*d) for largest-first order. */
typedef struct { int input, layer, head, cfg; double cost; } tq_eval_unit;
/* Every unit of o in tq_evaluate's own order (input, layer, head, configuration), selections applied and checked as
 * tq_evaluate checks them (same messages). *units is malloc'd. */
int tq_eval_units(const tq_eval_opts *o, tq_eval_unit **units, long *n);
/* The slices one process holds between units: an open dump and the (input, layer, head) read last (one kv head
 * through an HDF5 hyperslab; a synthetic layer whole). NULL to start; free with tq_eval_reader_free. */
typedef struct tq_eval_reader tq_eval_reader;
void tq_eval_reader_free(tq_eval_reader *rd);
/* One unit's result, bit for bit what tq_evaluate computes for that slice (same call, same seeds, BLAS on one
 * thread). */
int tq_eval_unit_run(const tq_eval_opts *o, tq_eval_reader **rd, const tq_eval_unit *u, tq_eval_result *r);

/* One slice's round trip and metrics, as tq_evaluate measures it: keys and (when v and cfg values) values quantized
 * on dev, tq_metrics_head on the results with the layer's attention spec (NULL: causal global, 1/sqrt(d); tq_evaluate
 * passes each dump layer's tq_dump_layer_attn, and the default for synthetic inputs). */
int tq_eval_slice(tq_device dev, const tq_eval_config *c, const tq_schedule *sched, tq_slice_id id, const float *q,
                  int G, const float *k, const float *v, int T, int d, uint64_t seed, int attention,
                  const tq_attn_spec *spec, tq_metrics *mk, tq_metrics *mv, double *kbits, double *vbits, double *kbc,
                  double *vbc);

/* ---- sensitivity: distortion curves for bit schedules ---- */

/* The metrics a schedule can minimise (lower is better), what they need and which tensors they respond to. met is a
 * TQ_MET_* of lib/metrics.h, or TQ_SENS_OUT_PROJ: the attention-output error through the layer's output projection
 * (tq_attn_out_proj), which needs tq_sens_opts.wo. */
typedef struct { const char *name; int met; int values_ok; int needs_queries; int attention; } tq_sens_metric;
#define TQ_SENS_OUT_PROJ TQ_MET_COUNT
extern const tq_sens_metric tq_sens_metrics[];
extern const int tq_sens_n_metrics;
const tq_sens_metric *tq_sens_metric_find(const char *name);

/* One (layer, kv head, width) of the scan: the metric, full metrics and stored bits of keys [0] and values [1]. */
typedef struct {
    double m[2];
    tq_metrics mk[2];
    double btot[2];
    double opn[2], opd[2];      /* out_proj: sum_t ||W_o e_t||^2 and sum_t ||W_o y_t||^2 (tq_attn_out_proj) */
} tq_sens_slice;

typedef struct {
    const char *dump;
    const tq_qparams *params;   /* one per candidate width, same method */
    int n_bits;
    const tq_sens_metric *metric;
    int tensors[2];             /* measure keys [0] / values [1]; the other tensor stays exact */
    int per_head;               /* one unit per (layer, kv head) instead of per layer */
    int tokens, threads;
    uint64_t seed;
    tq_device device;
    tq_progress_fn progress;
    void *progress_ctx;
    /* Results computed elsewhere (MPI ranks), or NULL: as tq_eval_opts.precomputed, per (layer, kv head, width). */
    int (*precomputed)(void *ctx, int layer, int head, int b, tq_sens_slice *r);
    void *precomputed_ctx;
    /* out_proj: each layer's output projection, row-major [wo_rows = hidden][wo_cols = query heads x head_dim]
     * (query head j's block is columns j*d..j*d+d-1, kv head h's group the heads h*G..h*G+G-1); NULL otherwise.
     * A layer unit's out_proj is sum_h num_h / sum_h den_h over its kv heads (their errors added as if
     * independent). */
    const float *const *wo;
    int wo_rows, wo_cols;
} tq_sens_opts;

typedef struct {
    int tensor, layer, head;    /* head -1: the whole layer */
    int window;                 /* the layer's sliding window (0: global), from the dump */
    double coords;
    double *metric, *bits_code, *bits_total; /* [n_bits] */
} tq_sens_unit;

typedef struct {
    tq_sens_unit *units;
    int n;
    double *store;
} tq_sens_result;

/* One (layer, kv head, width index b) as tq_sensitivity computes it (reader as in tq_eval_unit_run). */
int tq_sens_unit_run(const tq_sens_opts *o, tq_eval_reader **rd, int layer, int head, int b, tq_sens_slice *r);

/* Every unit's curve: keys (values) quantized with the other tensor exact, metric per head under the layer's attention
 * spec (window, scale, soft-cap from the dump), layer units aggregated over heads in head order. */
int tq_sensitivity(const tq_sens_opts *o, tq_sens_result *out);
void tq_sens_free(tq_sens_result *r);

/* Sensitivity weights (README "Bit schedules", metric <name>_sw): units[i] is the closed-loop measurement of scan unit
 * i (tq_cl_sensitivity's unit of the same tensor, layer and head), b the width index to read; w[i] = its metric[b]
 * divided by the mean over the n units, so that the weights' mean is 1 and only their shape matters. Each value must
 * be finite and >= 0 and one of them > 0: TQ_ERR_USAGE naming the first unit that is not (w untouched). */
int tq_sens_weights(const tq_sens_unit *units, int n, int b, double *w);
/* Weight r's curves (n_bits widths each) in place: unit i's metric[b] *= w[i] (NaN stays NaN). tq mixed-schedule then
 * minimises sum_i coords_i x w_i x metric_i(bits) with no change to its algorithm. */
void tq_sens_weigh(tq_sens_result *r, int n_bits, const double *w);

#endif
