/* pack.c: fast host bit packing for the layout of pack.h. Eight b-bit codes fill exactly b bytes, so each group of
 * eight is assembled in one 64-bit word and stored byte by byte (endian-neutral); a short tail group writes only
 * the bytes it covers. Tested byte-identical to tq_pack_row_ref / tq_unpack_row_ref for b = 1..8. */
#include "pack.h"

#include <string.h>

#include "tq.h"

/* One body, instantiated per width below so the compiler sees `bits` as a constant and unrolls the group of 8. */
static inline void pack_body(const uint8_t *codes, int d, const int bits, uint8_t *row)
{
    const uint64_t mask = (1u << bits) - 1u;
    int i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Little-endian hosts: the 8 codes as one word (byte l = code l), squeezed in three halving steps — pairs of
     * bytes into 2b-bit fields, pairs of those into 4b, then 8b — and stored as its low b bytes. */
    const uint64_t bmask = mask * 0x0101010101010101ULL;
    for (; i + 8 <= d; i += 8) {
        uint64_t v;
        memcpy(&v, codes + i, 8);
        v &= bmask;
        v = (v & 0x00FF00FF00FF00FFULL) | ((v & 0xFF00FF00FF00FF00ULL) >> (8 - bits));
        v = (v & 0x0000FFFF0000FFFFULL) | ((v & 0xFFFF0000FFFF0000ULL) >> (16 - 2 * bits));
        v = (v & 0x00000000FFFFFFFFULL) | ((v & 0xFFFFFFFF00000000ULL) >> (32 - 4 * bits));
        memcpy(row + (size_t)(i / 8) * (size_t)bits, &v, (size_t)bits);
    }
#endif
    for (; i + 8 <= d; i += 8) {
        uint64_t w = 0;
        for (int l = 0; l < 8; l++) w |= ((uint64_t)codes[i + l] & mask) << (l * bits);
        uint8_t *o = row + (size_t)(i / 8) * (size_t)bits;
        for (int k = 0; k < bits; k++) o[k] = (uint8_t)(w >> (8 * k));
    }
    if (i < d) { /* tail group: only the bytes it covers */
        int cnt = d - i, nb = (cnt * bits + 7) / 8;
        uint64_t w = 0;
        for (int l = 0; l < cnt; l++) w |= ((uint64_t)codes[i + l] & mask) << (l * bits);
        uint8_t *o = row + (size_t)(i / 8) * (size_t)bits;
        for (int k = 0; k < nb; k++) o[k] = (uint8_t)(w >> (8 * k));
    }
}

static inline void unpack_body(const uint8_t *row, int d, const int bits, uint8_t *codes)
{
    const uint64_t mask = (1u << bits) - 1u;
    for (int i = 0; i < d; i += 8) {
        int cnt = d - i < 8 ? d - i : 8;
        int nb = cnt == 8 ? bits : (cnt * bits + 7) / 8;
        const uint8_t *p = row + (size_t)(i / 8) * (size_t)bits;
        uint64_t w = 0;
        for (int k = 0; k < nb; k++) w |= (uint64_t)p[k] << (8 * k);
        for (int l = 0; l < cnt; l++) codes[i + l] = (uint8_t)((w >> (l * bits)) & mask);
    }
}

#define TQ_PACK_W(b) \
    static void pack_##b(const uint8_t *c, int d, uint8_t *r) { pack_body(c, d, b, r); } \
    static void unpack_##b(const uint8_t *r, int d, uint8_t *c) { unpack_body(r, d, b, c); }
TQ_PACK_W(1) TQ_PACK_W(2) TQ_PACK_W(3) TQ_PACK_W(4) TQ_PACK_W(5) TQ_PACK_W(6) TQ_PACK_W(7) TQ_PACK_W(8)

static void (*const packers[9])(const uint8_t *, int, uint8_t *) = {
    NULL, pack_1, pack_2, pack_3, pack_4, pack_5, pack_6, pack_7, pack_8};
static void (*const unpackers[9])(const uint8_t *, int, uint8_t *) = {
    NULL, unpack_1, unpack_2, unpack_3, unpack_4, unpack_5, unpack_6, unpack_7, unpack_8};

void tq_pack_row(const uint8_t *codes, int d, int bits, uint8_t *row)
{
    TQ_ASSERT(bits >= 1 && bits <= 8);
    packers[bits](codes, d, row);
}

void tq_unpack_row(const uint8_t *row, int d, int bits, uint8_t *codes)
{
    TQ_ASSERT(bits >= 1 && bits <= 8);
    unpackers[bits](row, d, codes);
}

void tq_pack_rows(const uint8_t *codes, long n, int d, int bits, uint8_t *rows, size_t row_stride)
{
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n > 1024)
#endif
    for (long r = 0; r < n; r++) tq_pack_row(codes + r * d, d, bits, rows + (size_t)r * row_stride);
}
