/* rotation.c: dense Haar rotations (LAPACK QR of a PCG Gaussian matrix), randomized Walsh–Hadamard transforms and
 * QJL's Gaussian projection — generated from the slice's PCG stream, applied with sgemm or a butterfly, each with a
 * plain-loop reference beside it. */
#include "rotation.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tq.h"

void tq_rng_slice(tq_rng *r, uint64_t seed, tq_slice_id id, int purpose, int part)
{
    tq_rng_derive(r, seed, id.layer, (id.head * 2 + id.tensor) * 4 + part, purpose);
}

static int is_pow2(int d) { return d > 0 && (d & (d - 1)) == 0; }

int tq_rotation_check(int kind, int d)
{
    if (d < 1) return tq_error_set(TQ_ERR_USAGE, "rotation needs a positive dim, got %d", d);
    if (kind == TQ_ROT_HADAMARD && !is_pow2(d))
        return tq_error_set(TQ_ERR_USAGE, "hadamard rotation needs a power-of-two dim, got %d; use --rotation dense",
                            d);
    if (kind != TQ_ROT_DENSE && kind != TQ_ROT_HADAMARD && kind != TQ_ROT_NONE)
        return tq_error_set(TQ_ERR_USAGE, "unknown rotation kind %d; use dense, hadamard or none", kind);
    return TQ_OK;
}

/* Haar: the Q of a Gaussian matrix's QR is Haar-distributed once its columns are multiplied by sign(R_jj) (without
 * the fix the distribution depends on LAPACK's sign convention, Mezzadri 2007). Double precision keeps Pi orthogonal
 * to ~1e-15 before the final rounding to float. */
static int make_dense(tq_rotation *r, tq_rng *rng)
{
    int d = r->d, st = TQ_OK;
    double *a = tq_malloc(sizeof(double) * (size_t)d * d), *tau = tq_malloc(sizeof(double) * (size_t)d);
    double *sgn = tq_malloc(sizeof(double) * (size_t)d);
    r->m = tq_malloc(sizeof(float) * (size_t)d * d);
    if (!a || !tau || !sgn || !r->m) { st = TQ_ERR_NOMEM; goto out; }
    for (size_t i = 0; i < (size_t)d * d; i++) a[i] = tq_rng_normal(rng);
    lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, d, d, a, d, tau);
    if (info != 0) { st = tq_error_set(TQ_ERR, "dense rotation: LAPACKE_dgeqrf failed (info %d)", (int)info); goto out; }
    for (int j = 0; j < d; j++) sgn[j] = a[(size_t)j * d + j] < 0 ? -1.0 : 1.0;
    info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, d, d, d, a, d, tau);
    if (info != 0) { st = tq_error_set(TQ_ERR, "dense rotation: LAPACKE_dorgqr failed (info %d)", (int)info); goto out; }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) r->m[(size_t)i * d + j] = (float)(a[(size_t)i * d + j] * sgn[j]);
out:
    free(a);
    free(tau);
    free(sgn);
    return st;
}

int tq_rotation_make(tq_rotation **out, int kind, int d, uint64_t seed, tq_slice_id id, int purpose, int part)
{
    *out = NULL;
    int st = tq_rotation_check(kind, d);
    if (st) return st;
    tq_rotation *r = tq_calloc(1, sizeof *r);
    if (!r) return TQ_ERR_NOMEM;
    r->kind = kind;
    r->d = d;
    tq_rng rng;
    tq_rng_slice(&rng, seed, id, purpose, part);
    if (kind == TQ_ROT_DENSE) st = make_dense(r, &rng);
    else if (kind == TQ_ROT_HADAMARD) {
        r->signs = tq_malloc(sizeof(float) * (size_t)d);
        if (!r->signs) st = TQ_ERR_NOMEM;
        else for (int i = 0; i < d; i++) r->signs[i] = (tq_rng_u32(&rng) & 1u) ? -1.0f : 1.0f;
    }
    if (st) { tq_rotation_free(r); return st; }
    *out = r;
    return TQ_OK;
}

void tq_rotation_free(tq_rotation *r)
{
    if (!r) return;
    free(r->m);
    free(r->signs);
    free(r);
}

#if TQ_HAVE_OPENMP
#define TQ_SIMD _Pragma("omp simd")
#else
#define TQ_SIMD
#endif

/* 1/sqrt(d) rounded once to float: both paths multiply by this same constant, so they stay bit-identical. */
float tq_fwht_scale(int d) { return (float)(1.0 / sqrt((double)d)); }

void tq_fwht(float *x, int d)
{
    for (int h = 1; h < d; h *= 2)
        for (int i = 0; i < d; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = tq_fwht_scale(d);
    for (int j = 0; j < d; j++) x[j] *= s;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define TQ_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TQ_CLONES
#endif

/* The same butterflies as tq_fwht, reordered without changing any operation: the stages h = 1, 2, 4 only pair
 * elements inside an aligned block of 8, so each block runs its three stages unrolled before the next block; the
 * stages h >= 8 have independent halves that vectorize. Same operands, same order per element: identical results. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define TQ_FWHT_AVX 1
/* The three in-block stages on one 8-float register. Each output is a + b or a - b of the same two operands as in
 * tq_fwht (a + b computed as b + a where the lanes come swapped: IEEE addition commutes exactly). */
__attribute__((target("avx"))) static void fwht8_avx(float *x, int d)
{
    for (int i = 0; i < d; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), sw;
        sw = _mm256_permute_ps(v, 0xB1);                      /* h = 1: swap neighbours */
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xAA);
        sw = _mm256_permute_ps(v, 0x4E);                      /* h = 2: swap pairs */
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xCC);
        sw = _mm256_permute2f128_ps(v, v, 1);                 /* h = 4: swap halves */
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xF0);
        _mm256_storeu_ps(x + i, v);
    }
}
/* Stages h = 1..32 of one aligned block of 64 floats, held in eight registers (the same butterflies as tq_fwht, in
 * the same order per element: stages below 64 never leave the block). Reads src (times signs, an exact +-1 product,
 * when signs is not NULL) and writes dst. */
__attribute__((target("avx"))) static void fwht64_avx(float *dst, const float *src, const float *signs)
{
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        __m256 v = _mm256_loadu_ps(src + 8 * i), sw;
        if (signs) v = _mm256_mul_ps(v, _mm256_loadu_ps(signs + 8 * i));
        sw = _mm256_permute_ps(v, 0xB1);
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xAA);
        sw = _mm256_permute_ps(v, 0x4E);
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xCC);
        sw = _mm256_permute2f128_ps(v, v, 1);
        r[i] = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xF0);
    }
    /* register distance h = element distance 8h; written out so r[] stays in registers */
#define TQ_BF(j, h) do { __m256 a_ = r[j], b_ = r[(j) + (h)]; r[j] = _mm256_add_ps(a_, b_); \
                         r[(j) + (h)] = _mm256_sub_ps(a_, b_); } while (0)
    TQ_BF(0, 1); TQ_BF(2, 1); TQ_BF(4, 1); TQ_BF(6, 1);
    TQ_BF(0, 2); TQ_BF(1, 2); TQ_BF(4, 2); TQ_BF(5, 2);
    TQ_BF(0, 4); TQ_BF(1, 4); TQ_BF(2, 4); TQ_BF(3, 4);
#undef TQ_BF
    _mm256_storeu_ps(dst, r[0]); _mm256_storeu_ps(dst + 8, r[1]); _mm256_storeu_ps(dst + 16, r[2]);
    _mm256_storeu_ps(dst + 24, r[3]); _mm256_storeu_ps(dst + 32, r[4]); _mm256_storeu_ps(dst + 40, r[5]);
    _mm256_storeu_ps(dst + 48, r[6]); _mm256_storeu_ps(dst + 56, r[7]);
}
#else
#define TQ_FWHT_AVX 0
#endif

/* Normalized FWHT of sign-flipped src into dst (signs may be NULL; dst may equal src), d a multiple of 64 with AVX:
 * the register blocks above, then the stages h >= 64 and the scale. Returns 0 where it does not apply. */
TQ_CLONES static int fwht_blocks(float *dst, const float *src, const float *signs, int d)
{
#if TQ_FWHT_AVX
    static int have_avx = -1;
    if (have_avx < 0) have_avx = __builtin_cpu_supports("avx") ? 1 : 0; /* benign race: same value */
    if (!have_avx || d < 64 || d % 64) return 0;
    for (int i = 0; i < d; i += 64) fwht64_avx(dst + i, src + i, signs ? signs + i : NULL);
    for (int h = 64; h < d; h *= 2)
        for (int i = 0; i < d; i += 2 * h) {
            float *restrict lo = dst + i, *restrict hi = dst + i + h;
            TQ_SIMD
            for (int j = 0; j < h; j++) {
                float a = lo[j], b = hi[j];
                lo[j] = a + b;
                hi[j] = a - b;
            }
        }
    float s = tq_fwht_scale(d);
    TQ_SIMD
    for (int j = 0; j < d; j++) dst[j] *= s;
    return 1;
#else
    return 0;
#endif
}

TQ_CLONES static void fwht_fast(float *restrict x, int d)
{
    if (fwht_blocks(x, x, NULL, d)) return;
    int h = 1;
#if TQ_FWHT_AVX
    static int have_avx = -1;
    if (have_avx < 0) have_avx = __builtin_cpu_supports("avx") ? 1 : 0; /* benign race: same value */
    if (d >= 8 && have_avx) {
        fwht8_avx(x, d);
        h = 8;
    } else
#endif
    if (d >= 8) {
        for (int i = 0; i < d; i += 8) {
            float *b = x + i;
            float a0 = b[0] + b[1], a1 = b[0] - b[1], a2 = b[2] + b[3], a3 = b[2] - b[3];
            float a4 = b[4] + b[5], a5 = b[4] - b[5], a6 = b[6] + b[7], a7 = b[6] - b[7];
            float c0 = a0 + a2, c2 = a0 - a2, c1 = a1 + a3, c3 = a1 - a3;
            float c4 = a4 + a6, c6 = a4 - a6, c5 = a5 + a7, c7 = a5 - a7;
            b[0] = c0 + c4; b[4] = c0 - c4; b[1] = c1 + c5; b[5] = c1 - c5;
            b[2] = c2 + c6; b[6] = c2 - c6; b[3] = c3 + c7; b[7] = c3 - c7;
        }
        h = 8;
    }
    for (; h < d; h *= 2)
        for (int i = 0; i < d; i += 2 * h) {
            float *restrict lo = x + i, *restrict hi = x + i + h;
            TQ_SIMD
            for (int j = 0; j < h; j++) {
                float a = lo[j], b = hi[j];
                lo[j] = a + b;
                hi[j] = a - b;
            }
        }
    float s = tq_fwht_scale(d);
    TQ_SIMD
    for (int j = 0; j < d; j++) x[j] *= s;
}

/* sgemm takes int sizes: rows go through in chunks. */
#define GEMM_ROWS 65536L

/* out = in * M^T (forward) or in * M (inverse), n rows of d, on ONE OpenBLAS thread. OpenBLAS splits a product
 * differently with its thread count and the float sums round differently: `tq dequantize` wrote float16 values 1 ulp
 * apart under OPENBLAS_NUM_THREADS=1 and 2. Held at one thread (restored after, as lib/evaluate.c does around an
 * evaluation, which already runs this at one thread: its numbers do not change), the bytes are the same whatever
 * the machine or the caller's thread settings; callers parallelise over slices or row blocks themselves. */
static void dense_apply(const tq_rotation *r, const float *in, float *out, long n, enum CBLAS_TRANSPOSE trans)
{
    int d = r->d, hold = openblas_get_num_threads();
    if (hold > 1) openblas_set_num_threads(1);
    for (long i0 = 0; i0 < n; i0 += GEMM_ROWS) {
        int rows = (int)(n - i0 < GEMM_ROWS ? n - i0 : GEMM_ROWS);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans, rows, d, d, 1.0f, in + i0 * d, d, r->m,
                    d, 0.0f, out + i0 * d, d);
    }
    if (hold > 1) openblas_set_num_threads(hold);
}

void tq_rotation_forward(const tq_rotation *r, const float *x, float *y, long n)
{
    int d = r->d;
    if (r->kind == TQ_ROT_DENSE) {
        dense_apply(r, x, y, n, CblasTrans);
        return;
    }
    if (r->kind == TQ_ROT_NONE) { memcpy(y, x, sizeof(float) * (size_t)n * d); return; }
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n * d >= 65536)
#endif
    for (long i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *yi = y + i * d;
        if (fwht_blocks(yi, xi, r->signs, d)) continue;
        TQ_SIMD
        for (int j = 0; j < d; j++) yi[j] = xi[j] * r->signs[j];
        fwht_fast(yi, d);
    }
}

void tq_rotation_inverse(const tq_rotation *r, const float *y, float *x, long n)
{
    int d = r->d;
    if (r->kind == TQ_ROT_DENSE) {
        dense_apply(r, y, x, n, CblasNoTrans);
        return;
    }
    if (r->kind == TQ_ROT_NONE) { memcpy(x, y, sizeof(float) * (size_t)n * d); return; }
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n * d >= 65536)
#endif
    for (long i = 0; i < n; i++) {
        float *xi = x + i * d;
        memcpy(xi, y + i * d, sizeof(float) * (size_t)d);
        fwht_fast(xi, d);
        for (int j = 0; j < d; j++) xi[j] *= r->signs[j];
    }
}

void tq_rotation_forward_ref(const tq_rotation *r, const float *x, float *y)
{
    int d = r->d;
    if (r->kind == TQ_ROT_DENSE) {
        for (int i = 0; i < d; i++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += (double)r->m[(size_t)i * d + j] * x[j];
            y[i] = (float)s;
        }
    } else if (r->kind == TQ_ROT_HADAMARD) {
        for (int j = 0; j < d; j++) y[j] = x[j] * r->signs[j];
        tq_fwht(y, d);
    } else memcpy(y, x, sizeof(float) * (size_t)d);
}

void tq_rotation_inverse_ref(const tq_rotation *r, const float *y, float *x)
{
    int d = r->d;
    if (r->kind == TQ_ROT_DENSE) {
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += (double)r->m[(size_t)i * d + j] * y[i];
            x[j] = (float)s;
        }
    } else if (r->kind == TQ_ROT_HADAMARD) {
        memcpy(x, y, sizeof(float) * (size_t)d);
        tq_fwht(x, d);
        for (int j = 0; j < d; j++) x[j] *= r->signs[j];
    } else memcpy(x, y, sizeof(float) * (size_t)d);
}

int tq_gaussian_matrix(float **out, int m, int d, uint64_t seed, tq_slice_id id, int purpose, int part)
{
    *out = NULL;
    if (m < 1 || d < 1) return tq_error_set(TQ_ERR_USAGE, "gaussian matrix needs positive sizes, got %d x %d", m, d);
    float *s = tq_malloc(sizeof(float) * (size_t)m * d);
    if (!s) return TQ_ERR_NOMEM;
    tq_rng rng;
    tq_rng_slice(&rng, seed, id, purpose, part);
    tq_rng_normals(&rng, s, (long)m * d);
    *out = s;
    return TQ_OK;
}
