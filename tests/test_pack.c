/* test_pack.c: the fast packers of lib/pack.c against the reference layout of pack.h, byte for byte, for every
 * width 1..8 and row lengths that do and do not fill whole bytes; round trips; random access with tq_pack_get. */
#include "tq_test.h"

#include <stdint.h>
#include "pack.h"
#include "rng.h"

int main(void)
{
    static const int dims[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 96, 100, 128, 129, 256};
    tq_rng r;
    tq_rng_seed(&r, 1, 8);
    uint8_t codes[300], back[300], ref[300], fast[310], fast_u[300];
    for (int b = 1; b <= 8; b++) {
        long bad_pack = 0, bad_unpack = 0, bad_get = 0, bad_round = 0, overrun = 0;
        for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
            int d = dims[k];
            for (int rep = 0; rep < 20; rep++) {
                for (int i = 0; i < d; i++) codes[i] = (uint8_t)tq_rng_bounded(&r, 1u << b);
                if (rep == 0) for (int i = 0; i < d; i++) codes[i] = (uint8_t)((1u << b) - 1); /* all ones */
                size_t nb = tq_pack_row_bytes(d, b);
                memset(fast, 0xA5, sizeof fast); /* garbage: the packer must write every byte of its row */
                tq_pack_row_ref(codes, d, b, ref);
                tq_pack_row(codes, d, b, fast);
                bad_pack += memcmp(ref, fast, nb) != 0;
                overrun += fast[nb] != 0xA5; /* and nothing past it */
                tq_unpack_row(ref, d, b, fast_u);
                tq_unpack_row_ref(ref, d, b, back);
                bad_unpack += memcmp(fast_u, back, (size_t)(unsigned)d) != 0;
                bad_round += memcmp(back, codes, (size_t)(unsigned)d) != 0;
                for (int i = 0; i < d; i++) bad_get += tq_pack_get(ref, i, b) != codes[i];
            }
        }
        CHECK(bad_pack == 0, "b=%d: %ld rows packed differently from the reference", b, bad_pack);
        CHECK(overrun == 0, "b=%d: %ld rows written past their last byte", b, overrun);
        CHECK(bad_unpack == 0, "b=%d: %ld rows unpacked differently", b, bad_unpack);
        CHECK(bad_round == 0 && bad_get == 0, "b=%d: round trip %ld, get %ld mismatches", b, bad_round, bad_get);
    }
    /* sizes: the layout has no padding beyond each row's last byte — 128 codes of 3 bits = 48 bytes, 96 of 2 = 24 */
    CHECK(tq_pack_row_bytes(128, 3) == 48 && tq_pack_row_bytes(96, 2) == 24 && tq_pack_row_bytes(9, 1) == 2,
          "row bytes");
    /* several rows with a stride: each row equals its own reference row */
    uint8_t many[5 * 17], rows[5 * 20], one[20];
    for (int i = 0; i < 5 * 17; i++) many[i] = (uint8_t)tq_rng_bounded(&r, 8);
    memset(rows, 0, sizeof rows);
    tq_pack_rows(many, 5, 17, 3, rows, 20);
    int bad = 0;
    for (int i = 0; i < 5; i++) { tq_pack_row_ref(many + i * 17, 17, 3, one); bad += memcmp(one, rows + i * 20, 7) != 0; }
    CHECK(bad == 0, "tq_pack_rows with stride: %d rows differ", bad);
    TQ_TEST_END();
}
