/* gguf.h: GGUF model files (versions 2 and 3) — header, metadata of every value type, the tensor table and the
 * aligned tensor data, mmap'd read-only — and dequantization of the ggml tensor types real GGUFs use to float32.
 * Every malformed file is refused at open with one message naming the file and what is wrong; after a successful
 * open every tensor's bytes lie inside the mapping, so later accessors cannot fault on a bad file. */
#ifndef TQ_GGUF_H
#define TQ_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Metadata value types, numbered as in the GGUF specification. */
enum {
    TQ_GGUF_U8 = 0, TQ_GGUF_I8 = 1, TQ_GGUF_U16 = 2, TQ_GGUF_I16 = 3, TQ_GGUF_U32 = 4, TQ_GGUF_I32 = 5,
    TQ_GGUF_F32 = 6, TQ_GGUF_BOOL = 7, TQ_GGUF_STRING = 8, TQ_GGUF_ARRAY = 9, TQ_GGUF_U64 = 10, TQ_GGUF_I64 = 11,
    TQ_GGUF_F64 = 12, TQ_GGUF_NTYPES
};

/* ggml tensor types, numbered as in ggml (the ids stored in the file). The ones tq dequantizes are listed; any
 * other id is reported by name-less number when a caller asks for its data. */
enum {
    TQ_GGML_F32 = 0, TQ_GGML_F16 = 1, TQ_GGML_Q4_0 = 2, TQ_GGML_Q4_1 = 3, TQ_GGML_Q5_0 = 6, TQ_GGML_Q5_1 = 7,
    TQ_GGML_Q8_0 = 8, TQ_GGML_Q2_K = 10, TQ_GGML_Q3_K = 11, TQ_GGML_Q4_K = 12, TQ_GGML_Q5_K = 13, TQ_GGML_Q6_K = 14,
    TQ_GGML_Q8_K = 15, TQ_GGML_BF16 = 30
};

#define TQ_GGUF_MAX_DIMS 4

/* A string inside the mapping: GGUF strings are length-prefixed, not NUL-terminated. */
typedef struct {
    const char *s;
    uint64_t len;
} tq_gguf_str;

typedef struct {
    char *name;               /* NUL-terminated copy */
    int type;                 /* TQ_GGML_* */
    int n_dims;
    int64_t ne[TQ_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    int64_t n_elems;
    uint64_t offset;          /* from the start of the data section */
    size_t nbytes;
    const void *data;         /* inside the mapping */
} tq_gguf_tensor;

typedef struct tq_gguf tq_gguf;

/* Open `path` (mmap) and validate everything: magic, version 2/3, counts, every key and value (nesting of arrays
 * of arrays is allowed one level deep), tensor names unique, dims positive and their product representable,
 * types known to ggml's size table, alignment (general.alignment, default 32, a power of two), every tensor's
 * offset aligned and its bytes within the file. TQ_OK, or TQ_ERR with a message naming `path`. */
int tq_gguf_open(const char *path, tq_gguf **out);
/* The same on a caller-owned buffer (not copied; must outlive the handle): for the fuzzer and for tests. */
int tq_gguf_open_buffer(const void *buf, size_t n, const char *label, tq_gguf **out);
void tq_gguf_close(tq_gguf *g);

uint32_t tq_gguf_version(const tq_gguf *g);
const char *tq_gguf_path(const tq_gguf *g);

/* Metadata. Lookup by key returns the index or -1. */
int64_t tq_gguf_n_kv(const tq_gguf *g);
int64_t tq_gguf_find_key(const tq_gguf *g, const char *key);
tq_gguf_str tq_gguf_key(const tq_gguf *g, int64_t i);
int tq_gguf_kv_type(const tq_gguf *g, int64_t i); /* TQ_GGUF_* */

/* Metadata entry i as one line of text for listings (`tq info`): numbers in full (floats with %.9g / %.17g), bools
 * true/false, strings quoted with non-printable bytes as \xNN, arrays as "[n TYPE: e0, e1, ...]" with the first
 * elements that fit. Cut to cap - 1 bytes, ending "..." when cap >= 4; always NUL-terminated when cap > 0; empty for
 * an index out of range. Returns buf. */
char *tq_gguf_kv_format(const tq_gguf *g, int64_t i, char *buf, size_t cap);

/* Typed getters by key. Each returns TQ_OK; 1 when the key is absent (nothing written, no error recorded); or
 * TQ_ERR with a message naming the key when it has the wrong type or an out-of-range value.
 * get_int accepts any integer type and bool; get_float any integer or float type. */
int tq_gguf_get_int(const tq_gguf *g, const char *key, int64_t *v);
int tq_gguf_get_float(const tq_gguf *g, const char *key, double *v);
int tq_gguf_get_str(const tq_gguf *g, const char *key, tq_gguf_str *v);
/* Arrays: element type and count. */
int tq_gguf_get_arr(const tq_gguf *g, const char *key, int *elem_type, uint64_t *n);
/* Element i of an array (bounds and type are checked: TQ_ERR when wrong). Strings point into the mapping. */
int tq_gguf_arr_str(const tq_gguf *g, const char *key, uint64_t i, tq_gguf_str *v);
int tq_gguf_arr_int(const tq_gguf *g, const char *key, uint64_t i, int64_t *v);
int tq_gguf_arr_float(const tq_gguf *g, const char *key, uint64_t i, double *v);
/* Raw pointer to the elements of a numeric array (F32 scores, I32 token types: read with memcpy, may be unaligned),
 * or NULL when the key is absent or not an array of that element type. */
const void *tq_gguf_arr_data(const tq_gguf *g, const char *key, int elem_type, uint64_t *n);

/* Tensors. */
int64_t tq_gguf_n_tensors(const tq_gguf *g);
const tq_gguf_tensor *tq_gguf_tensor_at(const tq_gguf *g, int64_t i);
const tq_gguf_tensor *tq_gguf_find_tensor(const tq_gguf *g, const char *name); /* NULL when absent */

/* ggml type traits: name ("q4_K"...; NULL for an unknown id), elements per block, bytes per block (0 = unknown). */
const char *tq_ggml_type_name(int type);
int tq_ggml_block_elems(int type);
size_t tq_ggml_block_bytes(int type);
/* 1 when tq_ggml_dequantize supports `type`. */
int tq_ggml_can_dequantize(int type);

/* Dequantize n elements (a multiple of the type's block) of `type` at src into dst — bit for bit what ggml's
 * reference dequantizers (and the `gguf` Python package) produce. TQ_OK or TQ_ERR_USAGE (unsupported type, n not a
 * multiple of the block). */
int tq_ggml_dequantize(int type, const void *src, float *dst, int64_t n);
/* A whole tensor (t->n_elems floats into dst), or rows [row0, row0 + nrows) of a 2-D view (ne[0] per row). */
int tq_gguf_tensor_to_f32(const tq_gguf_tensor *t, float *dst);
int tq_gguf_tensor_rows_f32(const tq_gguf_tensor *t, int64_t row0, int64_t nrows, float *dst);

#endif
