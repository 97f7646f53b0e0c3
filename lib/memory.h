/* memory.h: KV-cache sizes — the bytes of keys + values of every layer and kv head for a model shape (or a preset)
 * at a context length and batch, in fp16, int8 containers and packed codes with side information, taken from the
 * format table's bits_total so the numbers are the ones `tq quantize` writes. Used by `tq memory` and eval/repro. */
#ifndef TQ_MEMORY_H
#define TQ_MEMORY_H
#include <stdio.h>

#include "quant.h"

typedef struct { const char *name; int layers, kv_heads, head_dim; } tq_mem_shape;

/* Shapes from the models' configs: gemma-2b, llama-3.1-8b, llama-3.1-70b, smollm2-135m. */
extern const tq_mem_shape tq_mem_presets[];
extern const int tq_mem_n_presets;
const tq_mem_shape *tq_mem_preset_find(const char *name); /* NULL when unknown */

/* The configurations `tq memory` lists: fp16, int8, then each packed method (methods[nm], TQ_M_*; fp16 and int8
 * skipped) at each width bits[nb] (a fixed-width method once), with the kivi group, fp32 side information and turbo
 * outlier channels given. Returns the count, or TQ_ERR_USAGE ("--bits B is out of range for M (lo..hi)", "too many
 * configurations") when a width is out of a method's range or more than max would be needed. */
int tq_mem_configs(tq_qparams *out, int max, const int *methods, int nm, const int *bits, int nb, int group,
                   int norm32, int outliers);

typedef struct {
    double bits_total;      /* bits per coordinate, side information included */
    double bytes, gib;      /* the whole cache */
    double vs_fp16;         /* fp16 bytes / bytes */
    char params[192];       /* the parameters without method, bits and seed ("rot=dense,cb=beta") */
} tq_mem_row;

/* One configuration's row; TQ_ERR_USAGE when the cache is too large to count in 64 bits. */
int tq_mem_row_of(const tq_qparams *p, const tq_mem_shape *s, long context, long batch, tq_mem_row *r);

/* The rows of cfg[n] for shape s as a Markdown table or CSV (csv 1), with the header when header is 1, to f.
 * Every row is computed before anything is written: TQ_ERR_USAGE (nothing written) as tq_mem_row_of. */
int tq_mem_write(FILE *f, const tq_mem_shape *s, const tq_qparams *cfg, int n, long context, long batch, int csv,
                 int header);

#endif
