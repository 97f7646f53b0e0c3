/* turbo.h: TurboQuant on the CPU — turbo-mse (rotation + Lloyd-Max codes + norm), turbo-prod (turbo-mse at b-1 bits
 * + 1-bit QJL on the residual) and standalone qjl. Their format rows (tq_format_turbo_mse, tq_format_turbo_prod,
 * tq_format_qjl) are declared in quant.h and defined in turbo.c; this header adds the one description of a turbo
 * quantizer that every backend and benchmark builds from, and what tests and tools need beside. */
#ifndef TQ_TURBO_H
#define TQ_TURBO_H

#include <stddef.h>

#include "codebook.h"
#include "quant.h"
#include "rotation.h"

/* sqrt(pi/2): QJL's de-biasing constant, x_hat = sqrt(pi/2)/m * gamma * S^T sign(S r). */
#define TQ_SQRT_HALF_PI 1.2533141373155002512

/* ---- one description of a turbo quantizer ---------------------------------------------------------------------
 * A slice is split into one or two instances: instance 0 = all channels, or the non-outlier channels (ascending);
 * instance 1 = the --outliers channels (ascending, at one more bit). Each instance has its own rotation, codebook and
 * QJL matrix of its own dimension. The codes of a slice of n vectors are these sections, present ones only, in this
 * order (README "Quantizers"):
 *   codes        U8       per vector: instance 0's pack.h row of m[0] codes at mse_bits[0], then instance 1's
 *   norms        F16|F32  [instance with a norm][n]: ||x_k|| of each instance with MSE bits (qjl: ||x||)
 *   signs        U8       per vector: instance 0's 1-bit row of QJL signs (bit set: +1), then instance 1's
 *   rnorms       F16|F32  [instance][n]: ||r_k||, the residual norm (turbo-prod)
 *   mean         F32      [d] (--center)
 *   outlier_idx  I32      [N] (--outliers)
 *   codebook     F32      each instance's 2^mse_bits centroids (--codebook empirical) */
enum {
    TQ_TURBO_SEC_CODES,
    TQ_TURBO_SEC_NORMS,
    TQ_TURBO_SEC_SIGNS,
    TQ_TURBO_SEC_RNORMS,
    TQ_TURBO_SEC_MEAN,
    TQ_TURBO_SEC_OUTLIER_IDX,
    TQ_TURBO_SEC_CODEBOOK,
    TQ_TURBO_NSEC
};

/* One section: present or not, and its element count for n vectors = per_vector * n + fixed. */
typedef struct {
    const char *name;
    int type;              /* TQ_SEC_* */
    int present;
    size_t per_vector, fixed;
} tq_turbo_section;

static inline size_t tq_turbo_section_count(const tq_turbo_section *s, long n)
{
    return s->per_vector * (size_t)n + s->fixed;
}

/* Sizes and layout, from (qparams, d) alone. */
typedef struct {
    int method, d, ninst;
    int m[2];                /* channels per instance */
    int mse_bits[2];         /* MSE code bits per instance (0: no MSE stage: qjl, turbo-prod at 1 bit) */
    int qm[2];               /* QJL projections per instance (0: no QJL stage) */
    size_t code_off[2], code_row;  /* bytes: instance k's codes start code_off[k] into a code_row-byte row */
    size_t sign_off[2], sign_row;  /* the same for the sign rows */
    int cb_off[2], cb_count;       /* empirical codebook: each instance's offset into the section, total floats */
    int nnorm, nrnorm;             /* instances with a stored norm / residual norm */
    int norm_slot[2];              /* index of the instance's block in "norms" (-1: none) */
    tq_turbo_section sec[TQ_TURBO_NSEC];
} tq_turbo_layout;

/* The parts of one slice's quantizer: the layout, then per instance the rotation and codebook (instances with MSE
 * bits) and the QJL matrix S (qm x m row-major, instances with a QJL stage); NULL where the instance has none.
 * Everything is regenerated from (seed, slice id): rotations from TQ_PURPOSE_ROTATION, S from TQ_PURPOSE_QJL, part k.
 * An empirical codebook is allocated zeroed and left to the encoder's fit or the stored "codebook" section. */
typedef struct tq_turbo_parts {
    tq_turbo_layout L;
    tq_rotation *rot[2];
    tq_codebook *cb[2];
    float *S[2];
} tq_turbo_parts;

/* Validate p (method turbo-mse, turbo-prod or qjl) at head dim d and fill the layout. TQ_ERR_USAGE with a message
 * naming the option to change. */
int tq_turbo_layout_make(const tq_qparams *p, int d, tq_turbo_layout *L);
/* The layout, rotations, fixed codebooks and QJL matrices of slice `id`. On failure *q holds nothing to free. */
int tq_turbo_parts_make(tq_turbo_parts *q, const tq_qparams *p, int d, tq_slice_id id);
void tq_turbo_parts_free(tq_turbo_parts *q); /* NULL-safe, leaves *q zeroed */
/* Bytes of the codes of n vectors: the sum of the present sections (what bits_total divides by n * d). */
size_t tq_turbo_payload(const tq_turbo_layout *L, long n);

/* The N channels with the highest RMS over the slice x[n][d] (ties: lower channel first), ascending, into idx[N].
 * What --outliers N stores as the "outlier_idx" section. */
void tq_turbo_outlier_channels(const float *x, int n, int d, int N, int *idx);

/* ---- prepared rows: a slice's quantizer kept for many small calls (the closed loop, lib/kvquant.h) -------------
 * tq_quantize + tq_dequantize rebuild the slice's rotation (a d x d QR when dense), codebook and QJL matrix at
 * every call: fine for a slice of thousands of vectors, minutes when a KV cache quantizes a few rows per forward
 * call. A tq_turbo_rows builds them once for (p, d, id); tq_turbo_rows_roundtrip then round-trips each of x's n rows
 * exactly as tq_quantize + tq_dequantize of that row alone would (the fast path's kernels at one row: the same
 * bytes, and a row's result never depends on its neighbours). --center, --outliers and the empirical codebook are
 * statistics of a whole slice: TQ_ERR_USAGE. *bits_total: stored bits per value of one row. */
typedef struct tq_turbo_rows tq_turbo_rows;
int tq_turbo_rows_make(tq_turbo_rows **out, const tq_qparams *p, int d, tq_slice_id id);
int tq_turbo_rows_roundtrip(tq_turbo_rows *r, const float *x, int n, float *xhat, double *bits_total);
void tq_turbo_rows_free(tq_turbo_rows *r); /* NULL-safe */

/* ---- CPU kernel variant ---------------------------------------------------------------------------------------
 * Process-wide, set by the caller (`tq bench --variant simd=...`, tests); the library reads no environment.
 *   "auto"    the default: the AVX-512 Hadamard encoder/decoder where the CPU has it (F, BW, DQ, VL, VBMI; BMI2)
 *   "avx512"  the same, but TQ_ERR_USAGE on a CPU without it (a benchmark that must time it asks for it)
 *   "off"     the portable fast paths everywhere (OpenMP SIMD loops, AVX2 clones): the same bytes
 * TQ_OK, or TQ_ERR_USAGE naming an unknown variant. Not thread-safe: call it between encodes. */
int tq_simd_set(const char *name);
/* What runs now: "avx512" or "off". */
const char *tq_simd_get(void);

#endif
