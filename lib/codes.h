/* codes.h: the tq-codes HDF5 file (datasets/FORMAT.md "Codes files") — packed codes and side information of every
 * (layer, tensor, kv head) slice, with everything needed to decode them alone, plus the dump's queries so that a
 * dequantized file is a complete dump. Written through a temp name; read back with full validation. */
#ifndef TQ_CODES_H
#define TQ_CODES_H

#include "dump.h"
#include "quant.h"

#define TQ_CODES_FORMAT "tq-codes"
#define TQ_CODES_VERSION 2 /* 2: an fnv1a64 checksum on every section; version-1 files stay readable */

typedef struct {
    char source[1024];     /* the dump that was quantized (path as given) */
    char model[256];
    char rope[8];
    int src_layers;        /* n_layers of the source dump */
    int n_layers;          /* layers stored here (a --layers subset or all) */
    int dtype;             /* TQ_DTYPE_F16 / F32: the source's keys dtype, what dequantize writes */
    int has_values;        /* 0: keys only */
    tq_qparams keys, values; /* the settings as asked (with a schedule, each head's own bits are in its group) */
    char *schedule;        /* JSON text of the schedule used, or NULL */
} tq_codes_meta;

/* One stored layer: the source layer index, its shape, the codes of each kv head (values NULL when keys only) and
 * the queries as floats (NULL when the dump has none). */
typedef struct {
    int src_layer;
    tq_layer_shape s;
    tq_codes *keys, *values;  /* [s.n_kv_heads] */
    float *queries;           /* [n_q_heads][n_tokens][head_dim] */
} tq_codes_layer;

typedef struct tq_codes_writer tq_codes_writer;
/* Creates "<path>.tmp.<pid>"; commit renames it to path once every one of meta->n_layers layers is written. */
int tq_codes_create(tq_codes_writer **out, const char *path, const tq_codes_meta *meta);
/* Layers in increasing source order, each once. */
int tq_codes_write_layer(tq_codes_writer *w, const tq_codes_layer *l);
int tq_codes_commit(tq_codes_writer *w);
/* Provenance: the source dump's attributes that tq does not interpret (root: token_ids, model_layers, rope_theta,
 * architecture, ...; each stored layer's group: model_layer, sliding_window, attn_scale, ...) kept as they are in the
 * group /provenance (layers under /provenance/layer_NNN, NNN the source index). model_layers (one entry per source
 * layer) keeps the entries of the stored layers, so that it matches what dequantize writes. */
int tq_codes_keep_provenance(tq_codes_writer *w, const tq_dump *d, const int *layers, int n);
void tq_codes_abort(tq_codes_writer *w);

typedef struct tq_codes_file tq_codes_file;
/* Open and validate the root attributes and every layer's shape attributes (contents are read per layer). */
int tq_codes_open(tq_codes_file **out, const char *path);
const tq_codes_meta *tq_codes_get_meta(const tq_codes_file *f);
/* Read stored layer i (0..meta.n_layers-1): every head's parameters are checked with its format's check and every
 * section's type and size against the format's layout before the codes are returned. */
int tq_codes_read_layer(tq_codes_file *f, int i, tq_codes_layer *out);
void tq_codes_layer_free(tq_codes_layer *l);
/* Writes what tq_codes_keep_provenance kept onto a dump being written from this file (stored layer i -> its layer i);
 * attributes the writer already set win. A file without /provenance (older tq) gives TQ_OK and writes nothing. */
int tq_codes_restore_provenance(const tq_codes_file *f, tq_dump_writer *w);
void tq_codes_close(tq_codes_file *f);

/* "dense" / "hadamard" / "none" and back (-1 if unknown); likewise codebooks (lib/vocab.c: the one table). */
const char *tq_rotation_name(int kind);
int tq_rotation_parse(const char *s);
const char *tq_codebook_name(int kind);
int tq_codebook_parse(const char *s);

#endif
