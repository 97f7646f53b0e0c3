/* dump.h: the tq-kv HDF5 dump (datasets/FORMAT.md) — open, validate, read one layer at a time, and write.
 * Readers convert float16/float32 to float; memory is bounded by one layer. Every violation of the format is
 * reported through tq_error_set with the file, the dataset path and what was expected. */
#ifndef TQ_DUMP_H
#define TQ_DUMP_H

#include <stdint.h>

#include "attention.h"

#define TQ_DUMP_FORMAT "tq-kv"
/* 2 adds the root `architecture` and each layer's sliding_window, attn_scale, attn_softcap and rope_base
 * (tq_attn_spec); version-1 files still read, as global causal attention with scale 1/sqrt(head_dim). */
#define TQ_DUMP_VERSION 2

/* F64 is read (converted to float; values beyond float range become inf) but never written. */
enum { TQ_DTYPE_F16 = 1, TQ_DTYPE_F32 = 2, TQ_DTYPE_F64 = 3 };
/* "float16", "float32", "float64"; "none" for 0. */
const char *tq_dtype_name(int dtype);

/* Limits the reader enforces: a dataset is read whole into float memory, so at most 2^31 elements each. */
#define TQ_DUMP_MAX_ELEMS (1ULL << 31)
#define TQ_DUMP_MAX_LAYERS 100000

/* Shapes of one layer. Real models share them across layers, but the reader checks each layer on its own. */
typedef struct {
    int n_kv_heads, n_q_heads; /* n_q_heads 0: no queries */
    int n_tokens, head_dim;
    int has_values, has_queries;
    int dtype;                 /* TQ_DTYPE_* of the keys dataset */
} tq_layer_shape;

typedef struct {
    char model[256];
    char source[512];
    char rope[8];              /* "post" | "pre" | "none" */
    char architecture[64];     /* "llama", "gemma3", ...; "unknown" when the file does not say (v1). Written when
                                * set and not "unknown" */
    int n_layers;
    int version;               /* the file's tq_format_version (1 or 2); the writer writes TQ_DUMP_VERSION */
    tq_layer_shape shape;      /* layer 0's shape (what `tq info` reports first) */
} tq_dump_meta;

/* One layer in float32, row-major: keys[h][t][d]; values like keys (NULL if absent); queries[hq][t][d] or NULL. */
typedef struct {
    tq_layer_shape s;
    float *keys, *values, *queries;
} tq_layer;

typedef struct tq_dump tq_dump;

/* Open and validate the root (tq_format, version, n_layers, every /layer_NNN group with its shapes). Datasets'
 * contents are not read here. Returns TQ_OK or TQ_ERR with a message naming `path`. */
int tq_dump_open(tq_dump **out, const char *path);
const tq_dump_meta *tq_dump_get_meta(const tq_dump *d);
/* The path given to tq_dump_open (for messages). */
const char *tq_dump_path(const tq_dump *d);
/* Shapes of a layer (validated at open). */
const tq_layer_shape *tq_dump_layer_shape(const tq_dump *d, int layer);
/* A layer's attention as the dump records it (format 2; absent attributes, and every v1 layer, give the v1
 * defaults: window 0, scale 1/sqrt(head_dim) filled in, soft-cap 0, rope_base 0). Validated at open. TQ_OK, or
 * TQ_ERR_USAGE for a layer out of range. */
int tq_dump_layer_attn(const tq_dump *d, int layer, tq_attn_spec *out);
/* Read one layer into freshly allocated buffers (free with tq_layer_free). `tokens` > 0 reads only the first
 * `tokens` positions (for --tokens subsets); 0 reads all; more than the layer holds is TQ_ERR (callers clamp with
 * tq_dump_layer_shape if they want to). Non-finite values are an error that says how many and
 * where (dataset, head, token, channel of the first one) unless allow_nonfinite. */
int tq_dump_read_layer(tq_dump *d, int layer, int tokens, int allow_nonfinite, tq_layer *out);
/* Like tq_dump_read_layer for kv heads [h0, h0 + nh) only, with their query heads (an HDF5 hyperslab: a rank of an
 * MPI sweep reads the slices it evaluates, not the layer). out->s counts the heads read: n_kv_heads = nh; messages
 * name heads as the file numbers them. */
int tq_dump_read_heads(tq_dump *d, int layer, int h0, int nh, int tokens, int allow_nonfinite, tq_layer *out);
void tq_layer_free(tq_layer *l);
void tq_dump_close(tq_dump *d);

/* Writing: tq_dump_create opens "<path>.tmp.<pid>"; tq_dump_commit closes and renames it to `path`;
 * tq_dump_abort closes and removes it. Layers are written in any order, each exactly once. */
typedef struct tq_dump_writer tq_dump_writer;
int tq_dump_create(tq_dump_writer **out, const char *path, const tq_dump_meta *meta, int dtype);
int tq_dump_write_layer(tq_dump_writer *w, int layer, const tq_layer *l);
/* Record a layer's attention (sliding_window, attn_scale — 1/sqrt(head_dim) when spec->scale is 0 —, attn_softcap,
 * rope_base) on its group: before tq_dump_write_layer of that layer (written with the group) or after it (written
 * now). A layer never set gets no attributes (read back as the defaults). TQ_ERR_USAGE for a bad spec, a layer out
 * of range or a second call for the same layer. */
int tq_dump_set_layer_attn(tq_dump_writer *w, int layer, const tq_attn_spec *spec);
/* Lossless compression of the tensors: level 1..9 stores every dataset chunked with HDF5's shuffle + deflate filters
 * (readers, tq's and h5py's, decompress transparently); 0 (the default) keeps them contiguous. Call before the first
 * tq_dump_write_layer. TQ_ERR_USAGE for a bad level or a late call, TQ_ERR when the HDF5 library lacks the filters. */
int tq_dump_set_compression(tq_dump_writer *w, int level);
int tq_dump_commit(tq_dump_writer *w);
/* Extra attributes (datasets/FORMAT.md, "Attributes of real-model dumps"): on the root, or on a layer's group after
 * tq_dump_write_layer wrote it. Readers of any version ignore them. TQ_OK or TQ_ERR naming the attribute. */
int tq_dump_attr_str(tq_dump_writer *w, const char *name, const char *val);
int tq_dump_attr_ints(tq_dump_writer *w, const char *name, const int64_t *v, int n); /* int64 array [n] */
int tq_dump_attr_double(tq_dump_writer *w, const char *name, double v);
int tq_dump_layer_attr_double(tq_dump_writer *w, int layer, const char *name, double v);
int tq_dump_layer_attr_int(tq_dump_writer *w, int layer, const char *name, long long v);
void tq_dump_abort(tq_dump_writer *w);

/* Close a finished HDF5 file (an hid_t) written under `tmp` and rename it to `path`; on success tmp[0] becomes 0.
 * TQ_OK, or TQ_ERR with a message naming `path` (the caller then removes tmp). The file is closed either way.
 * Shared by the dump and codes writers. */
int tq_h5_commit(int64_t file, char *tmp, const char *path);

/* The files an open HDF5 file (an hid_t, read from `path`) reads besides itself: fn is called once per external link
 * and per virtual-dataset source with the object's path, its kind ("an external link to" / "a virtual dataset whose source is"),
 * the file name as stored and the 1-2 paths HDF5 would try for it (beside `path`, then as given); a non-zero return
 * stops the walk and is returned. tq_h5_sources_of opens `path` itself (0 for a missing or non-HDF5 file). */
typedef int (*tq_h5_source_fn)(const char *obj, const char *kind, const char *file, const char *const *cand, int n,
                               void *ctx);
int tq_h5_sources(int64_t file, const char *path, tq_h5_source_fn fn, void *ctx);
int tq_h5_sources_of(const char *path, tq_h5_source_fn fn, void *ctx);
/* TQ_ERR naming the link when an external-link target or a virtual source is missing or not a regular file. */
int tq_h5_check_sources(int64_t file, const char *path);
/* After H5Fopen failed: TQ_ERR with the reason HDF5's error stack gives (truncated: both sizes; locked by another
 * process; else "truncated or corrupt?"). */
int tq_h5_open_error(void);
#define TQ_H5_LOCKED_MSG "HDF5 cannot open it: the file is locked by another process (one writing it now?); wait " \
    "for it, or set HDF5_USE_FILE_LOCKING=FALSE if that process only reads"

/* Provenance (datasets/FORMAT.md "Attributes of real-model dumps"): copy the attributes of the object `src_obj` of
 * the HDF5 file src (an hid_t; "/" or a group path) onto `dst_obj` of dst, each with its own name, type and shape,
 * creating dst_obj as a group when it is missing. Left out: names in `skip` (NULL-terminated, may be NULL), names
 * dst_obj already has (what tq writes itself wins) and references (they point into their own file). TQ_OK, or
 * TQ_ERR naming the attribute. tq_dump_h5 / tq_dump_writer_h5 give the files of a dump and of a dump being written. */
int tq_h5_attrs_copy(int64_t src, const char *src_obj, int64_t dst, const char *dst_obj, const char *const *skip);
int64_t tq_dump_h5(const tq_dump *d);
int64_t tq_dump_writer_h5(const tq_dump_writer *w);
/* The root attributes a tq-kv dump's own reader and writer own (not provenance): NULL-terminated. */
extern const char *const tq_dump_own_attrs[];

/* Silence HDF5's automatic error stack printing (once per process; every lib/ HDF5 entry point calls it). */
void tq_h5_quiet(void);

#endif
