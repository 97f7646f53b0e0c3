/* turbo_avx512.c: Hadamard turbo-mse encode of one vector without leaving the AVX-512 registers — norm, sign flip,
 * FWHT, both scalings, threshold search and bit packing (d = 16..256, 1..4 bits), eight rows' norms summed side by
 * side — and the decode back. Each element goes through the same IEEE operations, in the same order, as
 * lib/turbo.c's reference, so codes, norms and reconstructions are the reference's bit for bit
 * (tests/test_turbo_simd.c); only the schedule differs: one pass over registers instead of five over memory. */
#include "turbo_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tq.h"
#include "turbo.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define TQ_AVX512 1
#define TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,bmi2")))
#else
#define TQ_AVX512 0
#endif

/* The variant switch (turbo.h: tq_simd_set); 1 after "off". */
static int forced_off;

/* 1 when this CPU has what the AVX-512 code uses. */
static int cpu_avx512(void)
{
#if TQ_AVX512
    static int have = -1; /* benign race: every thread computes the same value */
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("bmi2");
    }
    return have;
#else
    return 0;
#endif
}

int tq_simd_set(const char *name)
{
    if (name && !strcmp(name, "auto")) forced_off = 0;
    else if (name && !strcmp(name, "off")) forced_off = 1;
    else if (name && !strcmp(name, "avx512")) {
        if (!cpu_avx512())
            return tq_error_set(TQ_ERR_USAGE, "simd variant 'avx512': this CPU lacks AVX-512 (F, BW, DQ, VL, VBMI) "
                                "or BMI2; use auto or off");
        forced_off = 0;
    } else return tq_error_set(TQ_ERR_USAGE, "unknown simd variant '%s'; use auto, avx512 or off", name ? name : "");
    return TQ_OK;
}

const char *tq_simd_get(void) { return tq_had_avx512_cpu() ? "avx512" : "off"; }

int tq_had_avx512_cpu(void) { return !forced_off && cpu_avx512(); }

int tq_had_avx512_usable(int d, int bits, const float *thr)
{
    if (!tq_had_avx512_cpu() || d < 16 || d > 256 || (d & (d - 1)) || bits < 1 || bits > 4) return 0;
    for (int j = 0; j + 1 < (1 << bits) - 1; j++)
        if (!(thr[j] <= thr[j + 1])) return 0;
    return 1;
}

#if TQ_AVX512
/* 4 bits: a chunk of up to 64 codes (c[0..nreg-1], 16 int32 codes each) packed two to a byte, low nibble first:
 * bytes, then c0 + 16 c1 by a multiply-add, then the words narrowed to bytes; nbytes = 8 * nreg stored. */
TGT static inline __attribute__((always_inline)) void pack4(const __m512i *c, int nreg, uint8_t *dst, int nbytes)
{
    __m512i B = _mm512_zextsi128_si512(_mm512_cvtepi32_epi8(c[0]));
    if (nreg > 1) B = _mm512_inserti32x4(B, _mm512_cvtepi32_epi8(c[1]), 1);
    if (nreg > 2) B = _mm512_inserti32x4(B, _mm512_cvtepi32_epi8(c[2]), 2);
    if (nreg > 3) B = _mm512_inserti32x4(B, _mm512_cvtepi32_epi8(c[3]), 3);
    __m512i w = _mm512_maddubs_epi16(B, _mm512_set1_epi16(0x1001));
    _mm256_mask_storeu_epi8(dst, (__mmask32)((1ull << nbytes) - 1), _mm512_cvtepi16_epi8(w));
}

/* The butterfly of tq_fwht inside a register: sw holds each lane's partner, pm is +1 on the lower lane of a pair and
 * -1 on the upper. fma(v, pm, sw) is sw + v (= a + b) on lower lanes and sw - v (= a - b) on upper ones: v * (+-1) is
 * exact, so the fused multiply-add rounds once, exactly like tq_fwht's add or subtract. */
#define TQ_BFLY(v, sw, pm) _mm512_fmadd_ps((v), (pm), (sw))

/* tq_fwht's butterflies (without the scale) on 16 R floats in R registers: stages h = 1, 2, 4, 8 inside each
 * register, then h = 16 .. 8 R between registers, in stage order. */
TGT static inline __attribute__((always_inline)) void fwht_regs(__m512 *v, const int R, const __m512 *pm)
{
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        __m512 u = v[i];
        u = TQ_BFLY(u, _mm512_permute_ps(u, 0xB1), pm[0]);
        u = TQ_BFLY(u, _mm512_permute_ps(u, 0x4E), pm[1]);
        u = TQ_BFLY(u, _mm512_shuffle_f32x4(u, u, 0xB1), pm[2]);
        v[i] = TQ_BFLY(u, _mm512_shuffle_f32x4(u, u, 0x4E), pm[3]);
    }
#pragma GCC unroll 4
    for (int h = 1; h < R; h *= 2)
#pragma GCC unroll 16
        for (int i = 0; i < R; i++)
            if (!(i & h)) {
                __m512 a = v[i], b = v[i + h];
                v[i] = _mm512_add_ps(a, b);
                v[i + h] = _mm512_sub_ps(a, b);
            }
}

/* Lane l of the result sums x[8k + l]^2 over k ascending: lib/turbo.c's vnorm lanes, the halves of each register
 * in turn. 16 dependent adds for d = 128; eight rows' chains run side by side (had_rows). */
TGT static inline __attribute__((always_inline)) __m256 norm_lanes(const float *x, const int R)
{
    __m256 acc = _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        __m512 v = _mm512_loadu_ps(x + 16 * i), q = _mm512_mul_ps(v, v);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(q));
        acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps(q, 1));
    }
    return acc;
}

/* Eight rows' lane sums -> their norms and 1/norms: transposed so that one double add serves eight rows, in the same
 * lane order as the scalar sum (s = lane 0, then + lane 1, ... + lane 7; 0 + lane 0 is exact), then sqrt (IEEE,
 * correctly rounded like libm's), the cast to float, and nv > 0 ? 1 / nv : 0. */
TGT static inline __attribute__((always_inline)) void norms8(const __m256 *a, float *nv, float *inv)
{
    __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
    __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
    __m256 t4 = _mm256_unpacklo_ps(a[4], a[5]), t5 = _mm256_unpackhi_ps(a[4], a[5]);
    __m256 t6 = _mm256_unpacklo_ps(a[6], a[7]), t7 = _mm256_unpackhi_ps(a[6], a[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    __m256 col[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                     _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                     _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                     _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
    __m512d s = _mm512_cvtps_pd(col[0]);
#pragma GCC unroll 8
    for (int l = 1; l < 8; l++) s = _mm512_add_pd(s, _mm512_cvtps_pd(col[l]));
    __m256 n = _mm512_cvtpd_ps(_mm512_sqrt_pd(s));
    __m256 r = _mm256_maskz_div_ps(_mm256_cmp_ps_mask(n, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(1.0f), n);
    _mm256_storeu_ps(nv, n);
    _mm256_storeu_ps(inv, r);
}

/* One row after its norm: sign flip and FWHT, y * scale * (1/norm), then the count of thresholds below y (a binary
 * search: the same count as the reference's linear scan over sorted thresholds) and its packing. */
TGT static inline __attribute__((always_inline)) void row_codes(const float *x, const int R, const float *signs,
                                                                __m512 sc, __m512 iv, const __m512 *pm,
                                                                const __m512 *tab, __m512 t0, const __m512 *tq,
                                                                const int bits, uint8_t *row)
{
    const int n = 1 << bits;
    __m512 v[16];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) v[i] = _mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), _mm512_loadu_ps(signs + 16 * i));
    fwht_regs(v, R, pm);
    if (bits <= 3) {
        /* bit planes: the search's comparisons are the code's bits (most significant first), the next threshold
         * chosen by blends; then each register's 16 codes are interleaved into 16*bits bits by pdep (bit j of plane
         * p goes to bit j*bits + p: the LSB-first stream) and the row assembled in 64-bit words */
        uint64_t w[(16 * 16 * 3 + 63) / 64 + 1] = {0};
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            __m512 y = _mm512_mul_ps(_mm512_mul_ps(v[i], sc), iv);
            uint64_t val;
            __mmask16 m1 = _mm512_cmp_ps_mask(y, t0, _CMP_GT_OQ);
            if (bits == 1) val = m1;
            else {
                __mmask16 m2 = _mm512_cmp_ps_mask(y, _mm512_mask_blend_ps(m1, tq[4], tq[5]), _CMP_GT_OQ);
                if (bits == 2) val = _pdep_u64(m2, 0x55555555u) | _pdep_u64(m1, 0xAAAAAAAAu);
                else {
                    __m512 lo = _mm512_mask_blend_ps(m2, tq[0], tq[1]), hi = _mm512_mask_blend_ps(m2, tq[2], tq[3]);
                    __mmask16 m3 = _mm512_cmp_ps_mask(y, _mm512_mask_blend_ps(m1, lo, hi), _CMP_GT_OQ);
                    val = _pdep_u64(m3, 0x249249249249ull) | _pdep_u64(m2, 0x492492492492ull) |
                          _pdep_u64(m1, 0x924924924924ull);
                }
            }
            const int bit = i * 16 * bits, wi = bit >> 6, sh = bit & 63;
            w[wi] |= val << sh;
            if (sh + 16 * bits > 64) w[wi + 1] |= val >> (64 - sh);
        }
        memcpy(row, w, (size_t)R * 2 * bits);
        return;
    }
    /* 4 bits: the index so far selects the next threshold from a 16-entry table */
#pragma GCC unroll 4
    for (int k = 0; k < R; k += 4) {
        const int nreg = R - k < 4 ? R - k : 4;
        __m512i c[4];
#pragma GCC unroll 4
        for (int i = 0; i < nreg; i++) {
            __m512 y = _mm512_mul_ps(_mm512_mul_ps(v[k + i], sc), iv);
            __m512i ci = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(y, t0, _CMP_GT_OQ), _mm512_set1_epi32(n >> 1));
#pragma GCC unroll 3
            for (int j = 0, s = n >> 2; s >= 1; j++, s >>= 1) {
                __mmask16 m = _mm512_cmp_ps_mask(y, _mm512_permutexvar_ps(ci, tab[j]), _CMP_GT_OQ);
                ci = _mm512_mask_add_epi32(ci, m, ci, _mm512_set1_epi32(s));
            }
            c[i] = ci;
        }
        pack4(c, nreg, row + (size_t)k * 8, nreg * 8);
    }
}

TGT static inline __attribute__((always_inline)) void had_rows(const float *x, long rows, const int R,
                                                               const float *signs, float scale, const float *thr,
                                                               const int bits, uint8_t *codes, size_t stride,
                                                               float *nrm)
{
    const int d = 16 * R, n = 1 << bits;
    const __m512 sc = _mm512_set1_ps(scale), one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
    const __m512 pm[4] = {_mm512_mask_blend_ps(0xAAAA, one, mone), _mm512_mask_blend_ps(0xCCCC, one, mone),
                          _mm512_mask_blend_ps(0xF0F0, one, mone), _mm512_mask_blend_ps(0xFF00, one, mone)};
    /* threshold tables of the binary search: step s (n/4 .. 1) compares with t[i + s - 1] for the index i so far */
    __m512 tab[3];
    for (int k = 0, s = n >> 2; s >= 1; k++, s >>= 1) {
        float t[16];
        for (int j = 0; j < 16; j++) t[j] = thr[j + s - 1 < n - 2 ? j + s - 1 : n - 2];
        tab[k] = _mm512_loadu_ps(t);
    }
    const __m512 t0 = _mm512_set1_ps(thr[(n >> 1) - 1]);
    /* bits <= 3, by blends: the second comparison takes tq[4] | tq[5] by the first bit (2 bits: t[0] | t[2]; 3 bits:
     * t[1] | t[5]), the third one of tq[0..3] = t[0], t[2], t[4], t[6] by the first two */
    __m512 tq[6];
    for (int k = 0; k < 6; k++) tq[k] = t0;
    if (bits == 2) { tq[4] = _mm512_set1_ps(thr[0]); tq[5] = _mm512_set1_ps(thr[2]); }
    if (bits == 3) {
        for (int k = 0; k < 4; k++) tq[k] = _mm512_set1_ps(thr[2 * k]);
        tq[4] = _mm512_set1_ps(thr[1]);
        tq[5] = _mm512_set1_ps(thr[5]);
    }
    for (long r0 = 0; r0 < rows; r0 += 8) {
        const int g = rows - r0 < 8 ? (int)(rows - r0) : 8;
        __m256 acc[8];
        float nv[8], inv[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) acc[k] = k < g ? norm_lanes(x + (r0 + k) * d, R) : _mm256_setzero_ps();
        norms8(acc, nv, inv);
        memcpy(nrm + r0, nv, sizeof(float) * (size_t)g);
        for (int k = 0; k < g; k++)
            row_codes(x + (r0 + k) * d, R, signs, sc, _mm512_set1_ps(inv[k]), pm, tab, t0, tq, bits,
                      codes + (size_t)(r0 + k) * stride);
    }
}

/* Decode of one row: the codes' bit planes pulled out by pext (the inverse of the encoder's pdep), the index built
 * from them, the centroid by a 16-entry permute; then tq_rotation_inverse's operations in its order — the FWHT
 * stages, * scale, * signs — and * norm, as decode_block and decode_ref do. */
TGT static inline __attribute__((always_inline)) void row_decode(const uint8_t *row, const int R, const int bits,
                                                                 __m512 ctab, const float *signs, __m512 sc,
                                                                 const __m512 *pm, float nv, float *out)
{
    static const uint64_t plane_mask[4][4] = {
        {0xffffull, 0, 0, 0},
        {0x55555555ull, 0xaaaaaaaaull, 0, 0},
        {0x249249249249ull, 0x492492492492ull, 0x924924924924ull, 0},
        {0x1111111111111111ull, 0x2222222222222222ull, 0x4444444444444444ull, 0x8888888888888888ull}};
    __m512 v[16];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        uint64_t w = 0;
        memcpy(&w, row + (size_t)i * 2 * bits, (size_t)(2 * bits)); /* 16 codes = 2*bits bytes, never past the row */
        __m512i ci = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int p = 0; p < bits; p++)
            ci = _mm512_mask_or_epi32(ci, (__mmask16)_pext_u64(w, plane_mask[bits - 1][p]), ci,
                                      _mm512_set1_epi32(1 << p));
        v[i] = _mm512_permutexvar_ps(ci, ctab);
    }
    fwht_regs(v, R, pm);
    const __m512 nn = _mm512_set1_ps(nv);
#pragma GCC unroll 16
    for (int i = 0; i < R; i++)
        _mm512_storeu_ps(out + 16 * i,
                         _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(v[i], sc), _mm512_loadu_ps(signs + 16 * i)), nn));
}

TGT static inline __attribute__((always_inline)) void had_decode(const uint8_t *codes, size_t stride, long rows,
                                                                 const int R, const int bits, const float *cent,
                                                                 const float *signs, float scale, const float *nrm,
                                                                 float *out)
{
    const __m512 sc = _mm512_set1_ps(scale), one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
    const __m512 pm[4] = {_mm512_mask_blend_ps(0xAAAA, one, mone), _mm512_mask_blend_ps(0xCCCC, one, mone),
                          _mm512_mask_blend_ps(0xF0F0, one, mone), _mm512_mask_blend_ps(0xFF00, one, mone)};
    float c[16] = {0};
    memcpy(c, cent, sizeof(float) * (size_t)(1 << bits));
    const __m512 ctab = _mm512_loadu_ps(c);
    for (long r = 0; r < rows; r++)
        row_decode(codes + (size_t)r * stride, R, bits, ctab, signs, sc, pm, nrm[r], out + (size_t)r * 16 * R);
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
    }                                                                                                             \
    TGT static void had_decode_##R_(const uint8_t *codes, size_t stride, long rows, int bits, const float *cent,   \
                                    const float *signs, float scale, const float *nrm, float *out)               \
    {                                                                                                             \
        switch (bits) {                                                                                           \
        case 1: had_decode(codes, stride, rows, R_, 1, cent, signs, scale, nrm, out); break;                      \
        case 2: had_decode(codes, stride, rows, R_, 2, cent, signs, scale, nrm, out); break;                      \
        case 3: had_decode(codes, stride, rows, R_, 3, cent, signs, scale, nrm, out); break;                      \
        default: had_decode(codes, stride, rows, R_, 4, cent, signs, scale, nrm, out); break;                     \
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

void tq_had_mse_decode_rows_avx512(const uint8_t *codes, size_t code_stride, long rows, int d, int bits,
                                   const float *cent, const float *signs, float scale, const float *nrm, float *out)
{
#if TQ_AVX512
    switch (d) {
    case 16: had_decode_1(codes, code_stride, rows, bits, cent, signs, scale, nrm, out); break;
    case 32: had_decode_2(codes, code_stride, rows, bits, cent, signs, scale, nrm, out); break;
    case 64: had_decode_4(codes, code_stride, rows, bits, cent, signs, scale, nrm, out); break;
    case 128: had_decode_8(codes, code_stride, rows, bits, cent, signs, scale, nrm, out); break;
    case 256: had_decode_16(codes, code_stride, rows, bits, cent, signs, scale, nrm, out); break;
    default: break; /* tq_had_avx512_usable() said no: callers never get here */
    }
#else
    (void)codes; (void)code_stride; (void)rows; (void)d; (void)bits; (void)cent; (void)signs; (void)scale; (void)nrm;
    (void)out;
#endif
}
