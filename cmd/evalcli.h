/* evalcli.h: what the evaluation commands (sweep, entropy, sensitivity) share on the command line — the --device
 * value, the configuration axes as typed (lists of names) turned into lib/evaluate.h's axes, and the input list
 * (dumps and synthetic distributions) with its --layers / --heads selection checked against every dump. */
#ifndef TQ_EVALCLI_H
#define TQ_EVALCLI_H

#include "evaluate.h"

/* The axes as given on the command line (NULL = the command's default). */
typedef struct {
    const char *methods, *bits, *rotation, *codebook, *center, *outliers, *values;
} cli_axes;

/* --device for `cmd`: a bad name dies 2 ("<cmd>: unknown device 'x'; use cpu or cuda"); a device this build or
 * machine lacks dies 1 ("<cmd> --device cuda: ..."). NULL: the CPU. */
/* --threads' default: the machine's online cores (the engine's results do not depend on the thread count). */
int cli_threads_default(void);
tq_device cli_device(const char *cmd, const char *v);
/* The product for head dim d on dev: list errors die 2, skip notes go to stderr ("tq: note: ..."), none left dies 2. */
void cli_configs(tq_eval_configs *cs, const cli_axes *ax, uint64_t seed, int d, tq_device dev);

/* Inputs of o (allocated, freed by cli_inputs_free): the dumps, then one synthetic input per name in `synth` (NULL:
 * none), labelled "synthetic:<name>"; unknown names die 2. */
void cli_inputs(tq_eval_opts *o, const char *const *dumps, int nd, const char *synth);
void cli_inputs_free(tq_eval_opts *o);
/* Open every dump now (a bad file or an out-of-range --layers/--heads fails before a long run), set o->layers /
 * o->heads from the lists (NULL: all) and return the head dim of the first input. */
int cli_select(tq_eval_opts *o, const char *layers, const char *heads);

#endif
