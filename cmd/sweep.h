/* sweep.h: the evaluation engine behind `tq sweep` and `tq entropy` — configurations from the axes' cartesian
 * product, inputs (dumps or synthetic distributions) read one layer at a time, heads evaluated in parallel, rows per
 * slice plus aggregates, and the Markdown / CSV / JSON writers. Everything here dies (cmd/ tier) on errors. */
#ifndef TQ_SWEEP_H
#define TQ_SWEEP_H

#include <stdint.h>
#include <stdio.h>

#include "metrics.h"
#include "quant.h"
#include "schedule.h"
#include "synth.h"

enum { SW_FMT_MD, SW_FMT_CSV, SW_FMT_JSON };
enum { SW_DEV_CPU, SW_DEV_CUDA };

typedef struct {
    tq_qparams k, v;        /* keys and values quantizers */
    char kdesc[192], vdesc[192];
} sw_config;

/* One output row. layer/head -1 = "all" (an aggregate). */
typedef struct {
    int input;              /* index into sw_opts.inputs */
    int layer, head, tensor, cfg;
    double bits_code, bits_total;
    tq_metrics m;
} sw_row;

typedef struct {
    sw_row *rows;
    long n, cap;
} sw_rows;

typedef struct {
    /* inputs: dumps (paths) then synthetic distributions (labels "synthetic:<dist>") */
    int n_inputs;
    char **inputs;          /* label of each input */
    int *input_synth;       /* -1 for a dump, else TQ_SYNTH_* */
    tq_synth_params sp;     /* shapes and seed of the synthetic inputs */
    const char *layers_sel, *heads_sel; /* lists such as "0-3,7" or NULL = all (dumps only) */
    int tokens;             /* 0: all */
    int threads;
    uint64_t seed;
    int attention;          /* 0: skip the O(T²) attention metrics */
    int per_head_rows;      /* 0: only aggregate rows (tq entropy) */
    const tq_schedule *sched; /* sweep --schedule: per-slice bits replace each configuration's, or NULL */
    int device;             /* SW_DEV_CPU or SW_DEV_CUDA: where slices are encoded and decoded (metrics: CPU) */
    int n_cfg;
    sw_config *cfg;
} sw_opts;

/* Axes of the configuration product, as given on the command line (NULL = default). */
typedef struct {
    const char *methods, *bits, *rotation, *codebook, *center, *outliers, *values;
} sw_axes;

/* --device cpu|cuda for `cmd` (sweep, entropy, sensitivity): a bad value dies 2; cuda on a CPU-only build or with no
 * GPU dies 1 ("built without CUDA"). */
int sw_device_parse(const char *cmd, const char *v);
/* Quantize one slice and reconstruct it: tq_quantize + tq_dequantize, or on SW_DEV_CUDA the GPU encoder and decoder
 * (tq_cuda_quantize_recon; calls serialised, callers may be OpenMP threads). *bits = total bits per value. */
int sw_quantize_slice(int device, const tq_qparams *p, tq_slice_id id, const float *x, int T, int d, float *xhat,
                      double *bits);
/* Build o->cfg from the axes for head dim d (skipped configurations get a note on stderr; none left dies 2). With
 * o->device SW_DEV_CUDA, configurations the GPU does not run are skipped the same way (set device first). */
void sw_build_configs(sw_opts *o, const sw_axes *ax, int d);
/* Head dim of the first input (opens the dump), for the configuration checks. */
int sw_first_dim(const sw_opts *o);
/* Evaluate every input, layer, configuration and selected head; appends slice rows (when per_head_rows),
 * per-layer aggregates and per-input aggregates (layer = head = -1). */
void sw_run(const sw_opts *o, sw_rows *out);
/* Output format from --format (may be NULL) and the -o path's extension (may be NULL). */
int sw_format_pick(const char *fmt, const char *path);
void sw_write(FILE *f, int fmt, const sw_opts *o, const sw_rows *r);
/* Write to `path` through a temporary name renamed on success (stdout when path is NULL). */
void sw_write_path(const char *path, int fmt, const sw_opts *o, const sw_rows *r);
void sw_rows_free(sw_rows *r);
void sw_opts_free(sw_opts *o);

#endif
