/* pack.h: the packed-code layout shared by C and CUDA (lib/cuda/ includes this header unchanged).
 * A vector of d codes of b bits (1..8) is one row of tq_pack_row_bytes(d, b) bytes. Code i occupies bits
 * [i*b, i*b + b) of the row read as a little-endian bit stream: bit k lives in byte k/8 at position k%8, the code's
 * least significant bit first. Sign bits (QJL) are the b = 1 case: bit i set means sign +1. Rows are contiguous, so
 * n vectors take n * tq_pack_row_bytes(d, b) bytes: no padding between rows beyond each row's final byte. */
#ifndef TQ_PACK_H
#define TQ_PACK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define TQ_HD __host__ __device__ __forceinline__
#else
#define TQ_HD static inline
#endif

TQ_HD size_t tq_pack_row_bytes(int d, int bits) { return ((size_t)d * (size_t)bits + 7) / 8; }

/* Reference scalar packer/unpacker for one row; fast paths must equal these byte for byte. */
TQ_HD void tq_pack_row_ref(const uint8_t *codes, int d, int bits, uint8_t *row)
{
    size_t nb = tq_pack_row_bytes(d, bits);
    for (size_t i = 0; i < nb; i++) row[i] = 0;
    for (int i = 0; i < d; i++) {
        size_t bit = (size_t)i * (size_t)bits;
        for (int j = 0; j < bits; j++, bit++)
            if ((codes[i] >> j) & 1u) row[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

TQ_HD void tq_unpack_row_ref(const uint8_t *row, int d, int bits, uint8_t *codes)
{
    for (int i = 0; i < d; i++) {
        size_t bit = (size_t)i * (size_t)bits;
        unsigned c = 0;
        for (int j = 0; j < bits; j++, bit++) c |= (unsigned)((row[bit >> 3] >> (bit & 7)) & 1u) << j;
        codes[i] = (uint8_t)c;
    }
}

/* One code from a packed row (random access; what the fused GPU attention reads). */
TQ_HD unsigned tq_pack_get(const uint8_t *row, int i, int bits)
{
    size_t bit = (size_t)i * (size_t)bits;
    unsigned lo = row[bit >> 3], hi = ((bit & 7) + (unsigned)bits > 8) ? row[(bit >> 3) + 1] : 0u;
    return ((lo | (hi << 8)) >> (bit & 7)) & ((1u << bits) - 1u);
}

#ifndef __CUDACC__
/* Fast host packers (lib/pack.c), byte-identical to the references above for every width 1..8: eight codes of b
 * bits are exactly b bytes, so whole groups go through one 64-bit word; the tail uses the reference loop. */
void tq_pack_row(const uint8_t *codes, int d, int bits, uint8_t *row);
void tq_unpack_row(const uint8_t *row, int d, int bits, uint8_t *codes);
/* n rows, codes [n][d] -> rows [n][row_stride] (each row written at r*row_stride; row_stride >= row bytes). */
void tq_pack_rows(const uint8_t *codes, long n, int d, int bits, uint8_t *rows, size_t row_stride);
#endif

#endif
