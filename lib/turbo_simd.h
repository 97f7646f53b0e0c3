/* turbo_simd.h: the Hadamard turbo-mse encoder and decoder held in AVX-512 registers (lib/turbo_avx512.c), the fast
 * paths lib/turbo.c takes where the CPU and the shape allow. Internal to the library. */
#ifndef TQ_TURBO_SIMD_H
#define TQ_TURBO_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this CPU runs the AVX-512 code (F, BW, DQ, VL, VBMI; BMI2) and the variant (turbo.h: tq_simd_set) is not
 * "off". */
int tq_had_avx512_cpu(void);
/* 1 when tq_had_mse_rows_avx512 handles this shape: the CPU check above, d a power of two in 16..256, bits 1..4,
 * thresholds t[0 .. 2^bits - 2] ascending (the binary search's count equals the reference's linear one only then). */
int tq_had_avx512_usable(int d, int bits, const float *thr);
/* rows vectors of d floats (row stride d) -> packed codes (row r at codes + r * code_stride, pack.h layout) and each
 * vector's float norm in nrm[r], the same bits as lib/turbo.c's reference: norm in 8 float lanes then a double sum;
 * y = FWHT(x * signs) * scale * (1 / norm) with tq_fwht's butterflies in stage order; code = #thresholds below y. */
void tq_had_mse_rows_avx512(const float *x, long rows, int d, const float *signs, float scale, const float *thr,
                            int bits, uint8_t *codes, size_t code_stride, float *nrm);

/* The decoder of the same shapes (tq_had_avx512_usable with any sorted thresholds): rows packed rows (stride
 * code_stride) -> out (row r at out + r * d) = tq_rotation_inverse(centroids[codes]) * nrm[r], bit for bit the
 * decode of lib/turbo.c (FWHT stages, * scale, * signs, then * norm). */
void tq_had_mse_decode_rows_avx512(const uint8_t *codes, size_t code_stride, long rows, int d, int bits,
                                   const float *cent, const float *signs, float scale, const float *nrm, float *out);

#endif
