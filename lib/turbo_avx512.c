/* turbo_avx512.c: Hadamard turbo-mse encode of one vector without leaving the AVX-512 registers — norm, sign flip,
 * FWHT, both scalings, threshold search and bit packing (d = 16..256, 1..4 bits). Each element goes through the same
 * IEEE operations, in the same order, as lib/turbo.c's encode_ref, so codes and norms are the reference's bit for
 * bit (tests/test_turbo_simd.c); only the schedule differs: one pass over registers instead of five over memory. */
#include "turbo_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define TQ_AVX512 1
#define TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")))
#else
#define TQ_AVX512 0
#endif

static int forced_off;

int tq_had_avx512_disable(int off)
{
    int was = forced_off;
    forced_off = off;
    return was;
}

int tq_had_avx512_cpu(void)
{
#if TQ_AVX512
    if (forced_off) return 0;
    static int have = -1; /* benign race: every thread computes the same value */
    if (have < 0) {
        const char *e = getenv("TQ_SIMD");
        int off = e && strcmp(e, "avx2") == 0;
        __builtin_cpu_init();
        have = !off && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vbmi");
    }
    return have;
#else
    return 0;
#endif
}

int tq_had_avx512_usable(int d, int bits, const float *thr)
{
    if (!tq_had_avx512_cpu() || d < 16 || d > 256 || (d & (d - 1)) || bits < 1 || bits > 4) return 0;
    for (int j = 0; j + 1 < (1 << bits) - 1; j++)
        if (!(thr[j] <= thr[j + 1])) return 0;
    return 1;
}

#if TQ_AVX512
/* One chunk of up to 64 codes (four registers of 16 int32 codes, c[0..nreg-1]) packed LSB-first into 8*bits bytes
 * at dst (fewer when the chunk is short: nbytes). Bytes first, then pairs, quads and octets of codes merged by
 * multiply-adds, then the valid bytes gathered by a byte permute. */
TGT static inline __attribute__((always_inline)) void pack_chunk(const __m512i *c, int nreg, int bits, uint8_t *dst,
                                                                 int nbytes)
{
    __m512i B = _mm512_zextsi128_si512(_mm512_cvtepi32_epi8(c[0]));
    if (nreg > 1) B = _mm512_inserti32x4(B, _mm512_cvtepi32_epi8(c[1]), 1);
    if (nreg > 2) B = _mm512_inserti32x4(B, _mm512_cvtepi32_epi8(c[2]), 2);
    if (nreg > 3) B = _mm512_inserti32x4(B, _mm512_cvtepi32_epi8(c[3]), 3);
    const __mmask64 sm = nbytes >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nbytes) - 1);
    if (bits == 1) {
        uint64_t m = _mm512_test_epi8_mask(B, B); /* byte j nonzero -> bit j: the LSB-first stream */
        memcpy(dst, &m, (size_t)nbytes);
    } else if (bits == 2) {
        __m512i w = _mm512_maddubs_epi16(B, _mm512_set1_epi16(0x0401));  /* c0 + 4 c1 */
        __m512i q = _mm512_madd_epi16(w, _mm512_set1_epi32(0x00100001)); /* + 16 (c2 + 4 c3) */
        _mm_mask_storeu_epi8(dst, (__mmask16)sm, _mm512_cvtepi32_epi8(q));
    } else if (bits == 3) {
        __m512i w = _mm512_maddubs_epi16(B, _mm512_set1_epi16(0x0801));  /* 6 bits a word */
        __m512i q = _mm512_madd_epi16(w, _mm512_set1_epi32(0x00400001)); /* 12 bits a dword */
        q = _mm512_or_si512(_mm512_and_si512(q, _mm512_set1_epi64(0xfff)), _mm512_srli_epi64(q, 20)); /* 24 a qword */
        const __m512i take = _mm512_set_epi8(63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
                                              63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
                                              63, 63, 63, 63, 58, 57, 56, 50, 49, 48, 42, 41, 40, 34, 33, 32, 26, 25,
                                              24, 18, 17, 16, 10, 9, 8, 2, 1, 0);
        _mm512_mask_storeu_epi8(dst, sm, _mm512_permutexvar_epi8(take, q));
    } else {
        __m512i w = _mm512_maddubs_epi16(B, _mm512_set1_epi16(0x1001)); /* c0 + 16 c1 */
        _mm256_mask_storeu_epi8(dst, (__mmask32)sm, _mm512_cvtepi16_epi8(w));
    }
}

/* The butterfly of tq_fwht inside a register: sw holds each lane's partner, pm is +1 on the lower lane of a pair and
 * -1 on the upper. fma(v, pm, sw) is sw + v (= a + b) on lower lanes and sw - v (= a - b) on upper ones: v * (+-1) is
 * exact, so the fused multiply-add rounds once, exactly like tq_fwht's add or subtract. */
#define TQ_BFLY(v, sw, pm) _mm512_fmadd_ps((v), (pm), (sw))

/* P consecutive rows (P independent dependency chains: the norm's serial adds, the double sum, sqrt and divide take
 * ~100 cycles of latency per row, which one row alone leaves exposed). */
TGT static inline __attribute__((always_inline)) void had_group(const float *x, const int P, const int R,
                                                                const float *signs, __m512 sc, const __m512 *tab,
                                                                __m512 t0, const int bits, uint8_t *codes,
                                                                size_t stride, float *nrm)
{
    const int d = 16 * R, n = 1 << bits;
    const __m512 one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
    const __m512 pm[4] = {_mm512_mask_blend_ps(0xAAAA, one, mone), _mm512_mask_blend_ps(0xCCCC, one, mone),
                          _mm512_mask_blend_ps(0xF0F0, one, mone), _mm512_mask_blend_ps(0xFF00, one, mone)};
    __m512 v[2][16];
    __m256 acc[2];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) v[p][i] = _mm512_loadu_ps(x + (size_t)p * d + 16 * i);
        acc[p] = _mm256_setzero_ps();
    }
    /* norm: lane l of acc sums x[8k + l]^2 over k ascending (the halves of each register in turn) */
#pragma GCC unroll 16
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int p = 0; p < P; p++) {
            __m512 q = _mm512_mul_ps(v[p][i], v[p][i]);
            acc[p] = _mm256_add_ps(acc[p], _mm512_castps512_ps256(q));
            acc[p] = _mm256_add_ps(acc[p], _mm512_extractf32x8_ps(q, 1));
        }
    __m512 iv[2];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
        /* the double sum of the 8 lanes in lane order, then sqrt (IEEE: correctly rounded) and the cast */
        __m128 lo = _mm256_castps256_ps128(acc[p]), hi = _mm256_extractf128_ps(acc[p], 1);
        __m128d s2 = _mm_cvtss_sd(_mm_setzero_pd(), lo);
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, _mm_permute_ps(lo, 1)));
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, _mm_permute_ps(lo, 2)));
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, _mm_permute_ps(lo, 3)));
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, hi));
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, _mm_permute_ps(hi, 1)));
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, _mm_permute_ps(hi, 2)));
        s2 = _mm_add_sd(s2, _mm_cvtss_sd(s2, _mm_permute_ps(hi, 3)));
        float nv = _mm_cvtss_f32(_mm_cvtsd_ss(_mm_setzero_ps(), _mm_sqrt_sd(s2, s2)));
        nrm[p] = nv;
        iv[p] = _mm512_set1_ps(nv > 0 ? 1.0f / nv : 0.0f);
    }
    /* FWHT: stages h = 1, 2, 4, 8 inside each register, then h = 16 .. d/2 between registers */
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            __m512 u = _mm512_mul_ps(v[p][i], _mm512_loadu_ps(signs + 16 * i));
            u = TQ_BFLY(u, _mm512_permute_ps(u, 0xB1), pm[0]);
            u = TQ_BFLY(u, _mm512_permute_ps(u, 0x4E), pm[1]);
            u = TQ_BFLY(u, _mm512_shuffle_f32x4(u, u, 0xB1), pm[2]);
            v[p][i] = TQ_BFLY(u, _mm512_shuffle_f32x4(u, u, 0x4E), pm[3]);
        }
#pragma GCC unroll 4
        for (int h = 1; h < R; h *= 2)
#pragma GCC unroll 16
            for (int i = 0; i < R; i++)
                if (!(i & h)) {
                    __m512 a = v[p][i], b = v[p][i + h];
                    v[p][i] = _mm512_add_ps(a, b);
                    v[p][i + h] = _mm512_sub_ps(a, b);
                }
    }
    /* y * scale * (1/norm), the count of thresholds below y by binary search, and packing per 64 codes */
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
        uint8_t *row = codes + (size_t)p * stride;
#pragma GCC unroll 4
        for (int k = 0; k < R; k += 4) {
            const int nreg = R - k < 4 ? R - k : 4;
            __m512i c[4];
#pragma GCC unroll 4
            for (int i = 0; i < nreg; i++) {
                __m512 y = _mm512_mul_ps(_mm512_mul_ps(v[p][k + i], sc), iv[p]);
                __m512i ci = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(y, t0, _CMP_GT_OQ), _mm512_set1_epi32(n >> 1));
#pragma GCC unroll 3
                for (int j = 0, s = n >> 2; s >= 1; j++, s >>= 1) {
                    __mmask16 m = _mm512_cmp_ps_mask(y, _mm512_permutexvar_ps(ci, tab[j]), _CMP_GT_OQ);
                    ci = _mm512_mask_add_epi32(ci, m, ci, _mm512_set1_epi32(s));
                }
                c[i] = ci;
            }
            pack_chunk(c, nreg, bits, row + (size_t)k * 2 * bits, nreg * 2 * bits);
        }
    }
}

TGT static inline __attribute__((always_inline)) void had_rows(const float *x, long rows, const int R,
                                                               const float *signs, float scale, const float *thr,
                                                               const int bits, uint8_t *codes, size_t stride,
                                                               float *nrm)
{
    const int d = 16 * R, n = 1 << bits;
    const __m512 sc = _mm512_set1_ps(scale);
    /* threshold tables of the binary search: step s (n/4 .. 1) compares with t[i + s - 1] for the index i so far */
    __m512 tab[3];
    for (int k = 0, s = n >> 2; s >= 1; k++, s >>= 1) {
        float t[16];
        for (int j = 0; j < 16; j++) t[j] = thr[j + s - 1 < n - 2 ? j + s - 1 : n - 2];
        tab[k] = _mm512_loadu_ps(t);
    }
    const __m512 t0 = _mm512_set1_ps(thr[(n >> 1) - 1]);
    long r = 0;
    if (R <= 8)
        for (; r + 2 <= rows; r += 2)
            had_group(x + r * d, 2, R, signs, sc, tab, t0, bits, codes + (size_t)r * stride, stride, nrm + r);
    for (; r < rows; r++)
        had_group(x + r * d, 1, R, signs, sc, tab, t0, bits, codes + (size_t)r * stride, stride, nrm + r);
}
#undef TQ_BFLY

/* One specialization per register count and width, so every loop above unrolls and v[] stays in registers. */
#define TQ_HAD_R(R_)                                                                                              \
    TGT static void had_rows_##R_(const float *x, long rows, const float *signs, float scale, const float *thr,   \
                                  int bits, uint8_t *codes, size_t stride, float *nrm)                            \
    {                                                                                                             \
        switch (bits) {                                                                                           \
        case 1: had_rows(x, rows, R_, signs, scale, thr, 1, codes, stride, nrm); break;                           \
        case 2: had_rows(x, rows, R_, signs, scale, thr, 2, codes, stride, nrm); break;                           \
        case 3: had_rows(x, rows, R_, signs, scale, thr, 3, codes, stride, nrm); break;                           \
        default: had_rows(x, rows, R_, signs, scale, thr, 4, codes, stride, nrm); break;                          \
        }                                                                                                         \
    }
TQ_HAD_R(1)
TQ_HAD_R(2)
TQ_HAD_R(4)
TQ_HAD_R(8)
TQ_HAD_R(16)
#undef TQ_HAD_R
#endif

void tq_had_mse_rows_avx512(const float *x, long rows, int d, const float *signs, float scale, const float *thr,
                            int bits, uint8_t *codes, size_t code_stride, float *nrm)
{
#if TQ_AVX512
    switch (d) {
    case 16: had_rows_1(x, rows, signs, scale, thr, bits, codes, code_stride, nrm); break;
    case 32: had_rows_2(x, rows, signs, scale, thr, bits, codes, code_stride, nrm); break;
    case 64: had_rows_4(x, rows, signs, scale, thr, bits, codes, code_stride, nrm); break;
    case 128: had_rows_8(x, rows, signs, scale, thr, bits, codes, code_stride, nrm); break;
    case 256: had_rows_16(x, rows, signs, scale, thr, bits, codes, code_stride, nrm); break;
    default: break; /* tq_had_avx512_usable() said no: callers never get here */
    }
#else
    (void)x; (void)rows; (void)d; (void)signs; (void)scale; (void)thr; (void)bits; (void)codes; (void)code_stride;
    (void)nrm;
#endif
}
