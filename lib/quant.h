/* quant.h: the quantizer core's common types — method parameters, the codes of one (layer, head, tensor) slice as a
 * list of named packed sections, and the format traits table (lib/formats.c) that tests, sweep, sensitivity and the
 * CUDA tests loop over. A new method is one row in that table plus its *_ref encoder/decoder. */
#ifndef TQ_QUANT_H
#define TQ_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* The vocabulary's enums (their names, both ways: lib/vocab.h). Struct fields keep `int` so files and ABI stay put. */
typedef enum { TQ_M_FP16, TQ_M_INT8, TQ_M_KIVI, TQ_M_TURBO_MSE, TQ_M_TURBO_PROD, TQ_M_QJL, TQ_M_POLAR, TQ_M_COUNT } tq_method;
typedef enum { TQ_ROT_DENSE, TQ_ROT_HADAMARD, TQ_ROT_NONE, TQ_ROT_COUNT } tq_rotation_kind;
typedef enum { TQ_CB_BETA, TQ_CB_GAUSSIAN, TQ_CB_EMPIRICAL, TQ_CB_COUNT } tq_codebook_kind;
typedef enum { TQ_TENSOR_KEYS, TQ_TENSOR_VALUES, TQ_TENSOR_COUNT } tq_tensor;

#define TQ_POLAR_MAX_LEVELS 8

/* Everything that defines a quantizer configuration. tq_qparams_default fills the documented defaults. */
typedef struct {
    int method;            /* TQ_M_* */
    int bits;              /* code bits per coordinate, 1..8 (turbo-prod: b-1 MSE bits + 1 QJL bit, so b >= 2... see
                              formats.c for each method's range) */
    int rotation;          /* TQ_ROT_*; default dense */
    int codebook;          /* TQ_CB_*; default beta */
    int outliers;          /* channels (highest RMS on the slice) quantized with bits+1; 0 = none */
    int center;            /* 1: subtract the slice's per-channel mean before quantizing, add back on decode */
    int norm_fp32;         /* 1: norms/scales stored as fp32; default 0 = fp16 */
    int group;             /* kivi group size (default 32) */
    int residual;          /* kivi: the last `residual` tokens of a slice kept in fp16 (KIVI's recent window);
                              default 0: tensor-level studies quantize every token */
    int qjl_m;             /* qjl projections; 0 = d */
    int polar_levels;      /* polar: levels of the recursive transform (default 4: blocks of 16) */
    int polar_bits[TQ_POLAR_MAX_LEVELS]; /* polar: bits per level, level 1 first (default 4,2,2,2) */
    uint64_t seed;         /* user seed; streams per (layer, head, tensor, purpose) derive from it */
} tq_qparams;

/* Where a slice sits: seeds derive from (seed, layer, head, purpose) so every slice gets its own rotation. */
typedef struct { int layer, head, tensor; } tq_slice_id;

/* Section element types. F16 sections hold IEEE half bit patterns (uint16_t). */
enum { TQ_SEC_U8 = 1, TQ_SEC_F16 = 2, TQ_SEC_F32 = 3, TQ_SEC_I32 = 4 };
#define TQ_MAX_SECTIONS 12

typedef struct {
    char name[24];         /* e.g. "codes", "signs", "norms", "rnorms", "scales", "zeros", "mean", "outlier_idx" */
    int type;              /* TQ_SEC_* */
    size_t count;          /* elements */
    void *data;            /* owned by the tq_codes */
} tq_section;

/* The codes of one slice: n vectors of d coordinates. Its payload (sum of section sizes) is the real stored size. */
typedef struct {
    tq_qparams p;
    tq_slice_id id;
    int n, d;
    int nsec;
    tq_section sec[TQ_MAX_SECTIONS];
} tq_codes;

/* Section helpers: add allocates zeroed storage and returns it (NULL + error on failure). */
void *tq_codes_add(tq_codes *c, const char *name, int type, size_t count);
const tq_section *tq_codes_find(const tq_codes *c, const char *name);
void tq_codes_free(tq_codes *c);
size_t tq_section_bytes(const tq_section *s);
size_t tq_codes_payload_bytes(const tq_codes *c);
/* Stored bits per coordinate, side information included: 8 * payload / (n * d). */
double tq_codes_bits_total(const tq_codes *c);

/* One row per method. encode: x[n][d] (row-major float) -> codes (c zero-initialised by the caller, filled here,
 * including c->p, c->id, c->n, c->d). decode: codes -> xhat[n][d]. Both return TQ_OK or a negative status. */
typedef int (*tq_encode_fn)(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c);
typedef int (*tq_decode_fn)(const tq_codes *c, float *xhat);

typedef struct {
    const char *name;      /* CLI name */
    int method;            /* TQ_M_* */
    int min_bits, max_bits;
    int uses_rotation;     /* accepts --rotation/--codebook/--outliers/--center */
    /* Validate p for head dim d (bits range, Hadamard needs a power of two, polar needs d % 16 == 0, ...): TQ_OK or
     * TQ_ERR_USAGE with a message that names the problem and a fix. */
    int (*check)(const tq_qparams *p, int d);
    tq_encode_fn encode_ref, encode;  /* encode: the fast path (may be the ref) */
    tq_decode_fn decode_ref, decode;
    /* Nominal code bits per coordinate (fractional with outliers) and total bits with side information for n
     * vectors of d dims; tq_codes_bits_total of real codes must equal bits_total. */
    double (*bits_code)(const tq_qparams *p, int d);
    double (*bits_total)(const tq_qparams *p, int n, int d);
    const char *summary;
} tq_format;

/* The table (lib/formats.c), indexed by TQ_M_*. Each row is defined beside its method's code, e.g.
 * `const tq_format tq_format_turbo_mse = {...};` in lib/turbo.c, and listed here by address. */
extern const tq_format *const tq_formats[TQ_M_COUNT];
extern const tq_format tq_format_fp16, tq_format_int8, tq_format_kivi, tq_format_turbo_mse, tq_format_turbo_prod,
    tq_format_qjl, tq_format_polar;
const tq_format *tq_format_by_name(const char *name);
const tq_format *tq_format_of(int method);
void tq_qparams_default(tq_qparams *p, int method, int bits);
/* Human-readable parameter string for reports, e.g. "rot=dense,cb=beta" (buf of >= 128 bytes). */
const char *tq_qparams_describe(const tq_qparams *p, char *buf, size_t n);

/* Convenience dispatch through the table (check + encode fast path / decode fast path). */
int tq_quantize(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c);
int tq_dequantize(const tq_codes *c, float *xhat);

#endif
