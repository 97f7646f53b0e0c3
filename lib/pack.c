/* pack.c: fast host bit packing for the layout of pack.h. Eight b-bit codes fill exactly b bytes, so each group of
 * eight is assembled in one 64-bit word and stored byte by byte (endian-neutral); a short tail group writes only
 * the bytes it covers. Tested byte-identical to tq_pack_row_ref / tq_unpack_row_ref for b = 1..8. */
#include "pack.h"

#include "tq.h"

void tq_pack_row(const uint8_t *codes, int d, int bits, uint8_t *row)
{
    const uint64_t mask = (1u << bits) - 1u;
    for (int i = 0; i < d; i += 8) {
        int cnt = d - i < 8 ? d - i : 8;
        uint64_t w = 0;
        for (int l = 0; l < cnt; l++) w |= ((uint64_t)codes[i + l] & mask) << (l * bits);
        int nb = (cnt * bits + 7) / 8;
        uint8_t *o = row + (size_t)(i / 8) * (size_t)bits;
        for (int k = 0; k < nb; k++) o[k] = (uint8_t)(w >> (8 * k));
    }
}

void tq_unpack_row(const uint8_t *row, int d, int bits, uint8_t *codes)
{
    const uint64_t mask = (1u << bits) - 1u;
    for (int i = 0; i < d; i += 8) {
        int cnt = d - i < 8 ? d - i : 8;
        int nb = (cnt * bits + 7) / 8;
        const uint8_t *p = row + (size_t)(i / 8) * (size_t)bits;
        uint64_t w = 0;
        for (int k = 0; k < nb; k++) w |= (uint64_t)p[k] << (8 * k);
        for (int l = 0; l < cnt; l++) codes[i + l] = (uint8_t)((w >> (l * bits)) & mask);
    }
}

void tq_pack_rows(const uint8_t *codes, long n, int d, int bits, uint8_t *rows, size_t row_stride)
{
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n > 1024)
#endif
    for (long r = 0; r < n; r++) tq_pack_row(codes + r * d, d, bits, rows + (size_t)r * row_stride);
}
