/* report.h: every report the evaluation commands write — the sweep table as Markdown, CSV or JSON, the entropy
 * summary, the sensitivity curves (JSON) and their ranked summary — plus the stderr progress bar the engine drives
 * through its callback. The engine (lib/evaluate.h) computes; this file only formats. */
#ifndef TQ_REPORT_H
#define TQ_REPORT_H

#include <stdio.h>

#include "dump.h"
#include "evaluate.h"

enum { REPORT_MD, REPORT_CSV, REPORT_JSON };

/* Output format from --format (may be NULL) and the -o path's extension (may be NULL); a bad --format dies 2. */
int report_format(const char *fmt, const char *path);
/* Which rows (--aggregate) and which shape (--wide) the sweep table takes. */
enum { REPORT_AGG_NONE, REPORT_AGG_LAYER, REPORT_AGG_DUMP };
typedef struct {
    int aggregate; /* REPORT_AGG_*: none = slice, layer and dump rows; layer = layer and dump rows; dump = dump rows */
    int wide;      /* 1: keys and values of one configuration x scope on one row (k_*, v_* columns) */
} report_table;
/* --aggregate's level (NULL: dump for Markdown, none for CSV and JSON); a bad name dies 2. */
int report_aggregate(const char *s, int fmt);
/* The sweep table in the tidy schema of README "Output schema": columns dump, scope (slice, layer, dump), layer,
 * window, kv_head (integers; -1 where the scope aggregates over them, window -1 over layers of different windows),
 * tensor, method, params ("none" when the method has none), bits_code, bits_total, compression, then
 * lib/metrics.h's metrics; the wide shape replaces tensor..compression and the metrics with k_ and v_ columns. */
void report_rows(FILE *f, int fmt, const report_table *t, const tq_eval_opts *o, const tq_eval_rows *r);
/* The same to `path` through a temporary name renamed on success (stdout when path is NULL or "-"), then
 * "tq: wrote PATH" on stderr. */
void report_rows_path(const char *path, int fmt, const report_table *t, const tq_eval_opts *o,
                      const tq_eval_rows *r);
/* "tq: wrote PATH" on stderr: the one line every command that writes a file prints when it is in place. */
void report_wrote(const char *path);
/* tq entropy's Markdown summary on stdout (aggregate keys rows, then gaussian vs structured at 2 bits). */
void report_entropy(const tq_eval_opts *o, const tq_eval_rows *r);

/* tq sensitivity: what the JSON records beside the curves. */
typedef struct {
    const char *dump, *model, *metric, *tensor; /* tensor: keys, values or both (the --tensor given) */
    const tq_qparams *params;                   /* [n_bits], params[0] describes the shared parameters */
    const int *bits;
    int n_bits, n_layers, n_kv_heads, head_dim, tokens, per_head, tensors[2];
    uint64_t seed;
    /* closed-loop scans (tq sensitivity MODEL --closed-loop): the text, the prompt and, per unit, 100 (ppl / ppl_ref
     * - 1) at each width ([n_units x n_bits]); NULL / 0 for a dump scan */
    const char *text;
    int prompt;
    const double *dppl;
    double ppl_ref;
    /* --weights: each unit's weight (mean 1; the curves are already multiplied by it), the closed-loop scan they come
     * from, its metric, width, method and model; NULL for an unweighted scan */
    const double *weights;
    const char *w_source, *w_metric, *w_method, *w_params, *w_model;
    int w_bits;
} report_sens_info;
void report_sens_json(const char *path, const report_sens_info *s, const tq_sens_result *r);
/* Ranked Markdown summary on stdout: the `top` most and least sensitive units at the middle width. */
void report_sens_summary(const report_sens_info *s, const tq_sens_result *r, int top, const char *outp);

/* tq_progress_fn for the engine: ctx is a tq_progress (cmd.h), drawn on stderr when it is a terminal. */
void report_progress(void *ctx, const char *label, long done, long total);

#endif
