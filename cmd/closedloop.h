/* closedloop.h: what the closed-loop commands (perplexity, generate) share on the command line — the configuration
 * axes and cache knobs as options, the runs they expand to (configurations x seeds x prefill x recent, each checked
 * against the model before any work), the configuration columns of a row, and the md/csv/json table writer. */
#ifndef TQ_CLOSEDLOOP_H
#define TQ_CLOSEDLOOP_H

#include <stdint.h>
#include <stdio.h>

#include "evalcli.h"
#include "kvquant.h"
#include "options.h"

/* The axes and knobs as typed (NULL: the default). */
typedef struct {
    cli_axes ax;
    const char *seeds, *recent, *prefill, *keep, *sched_path, *device;
} cl_axes_args;

/* Option rows of the axes and cache knobs, for a command's table (a: a cl_axes_args *). */
#define CL_AXES_OPTS(a)                                                                                               \
    OPT_GROUP_("configuration axes (cartesian product, as tq sweep):"),                                               \
        OPT_STR_("--methods", &(a)->ax.methods, "LIST", "turbo-mse", tq_vocab_list(TQ_VOCAB_METHOD, ",")),            \
        OPT_STR_("--bits", &(a)->ax.bits, "LIST", NULL, "code bits, e.g. 2-4 (default 2-4)"),                         \
        OPT_STR_("--rotation", &(a)->ax.rotation, "LIST", NULL, "dense,hadamard,none (default dense)"),               \
        OPT_STR_("--codebook", &(a)->ax.codebook, "LIST", NULL, "beta,gaussian (default beta)"),                      \
        OPT_STR_("--center", &(a)->ax.center, "LIST", NULL, "off,on: key-mean removal, mean frozen on the prompt"),   \
        OPT_STR_("--outliers", &(a)->ax.outliers, "LIST", NULL, "0 only in the closed loop (no streaming definition)"), \
        OPT_STR_("--values", &(a)->ax.values, "SPEC", NULL, "same (default), none (keys only), METHOD:BITS"),         \
        OPT_STR_("--seed", &(a)->seeds, "LIST", "0", "quantizer seeds, e.g. 0-4 (one row each)"),                     \
        OPT_STR_("--schedule", &(a)->sched_path, "FILE", NULL, "bits per layer / kv head (tq mixed-schedule)"),       \
        OPT_GROUP_("cache knobs (axes too):"),                                                                        \
        OPT_STR_("--recent", &(a)->recent, "LIST", "0", "blocks of N newest tokens kept fp16 (KIVI residual), e.g. "  \
                 "0,32"),                                                                                             \
        OPT_STR_("--prefill", &(a)->prefill, "LIST", "quantized", "fp16,quantized: the prompt's K/V exact or "        \
                 "quantized"),                                                                                        \
        OPT_STR_("--keep-layers", &(a)->keep, "SPEC", NULL, "layers left exact: a list (0,29), all, none")

/* One run: a configuration under one (seed, prefill, recent). */
typedef struct {
    tq_kvq_opts o;
    uint64_t seed;
} cl_run;

typedef struct {
    cl_run *runs;
    int n_runs;
    unsigned char *keep;
    tq_schedule *sched;
    tq_eval_configs *cs;
    int n_cs;
    const char *keep_spec;
} cl_set;

/* Expand a's axes for model m into s->runs, each checked with tq_kvq_create at prompt length `prompt` (errors die
 * naming `cmd`). Sets a->ax.bits from the schedule or to "2-4" when unset. */
void cl_build(cl_set *s, cl_axes_args *a, const tq_model *m, const char *cmd, const char *model_path, int prompt);
void cl_set_free(cl_set *s);

/* The configuration columns of a run, as tq perplexity names them. */
#define CL_N_CONFIG 8
extern const char *const cl_config_cols[CL_N_CONFIG]; /* method params values recent prefill keep_layers prompt seed */
void cl_config_cells(const cl_set *s, const cl_run *u, char c[CL_N_CONFIG][200]);

/* A whole file (binary-safe, NUL-terminated), or die naming cmd and path. */
char *cl_read_file(const char *cmd, const char *path, size_t *len);

/* Table writer: n columns, the first n_text text cells, the rest numbers (or t->kinds). md: "| a | b |" with '|' escaped and
 * newlines written as "\n"; csv: cells with ',', '"' or a newline quoted ("" for a quote); json: {"<tag>": 1,
 * "rows": [{...}]}. `align`: Markdown's alignment row without its leading '|' (NULL: left for text, right for
 * numbers). */
typedef struct {
    int fmt, n_cols, n_text, rows;
    const char *const *cols;
    const char *kinds; /* set after begin to mix the kinds: kinds[i] 't' text, 'n' number, in column order */
} cl_table;
void cl_table_begin(FILE *f, cl_table *t, int fmt, const char *tag, const char *const *cols, int n_cols, int n_text,
                    const char *align);
/* text: the text cells in order, num: the numbers in order */
void cl_table_row(FILE *f, cl_table *t, const char *const *text, const double *num);
void cl_table_end(FILE *f, cl_table *t);

#endif
