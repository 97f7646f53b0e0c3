/* fuzz_schedule.c: libFuzzer harness for the schedule loader at large sizes. The input's first bytes pick a shape (up
 * to 2^17 layers, 64 heads, 2^17 entries: ~800 KB of JSON a byte-level fuzzer never reaches; 2^20 took over the
 * 5 s per input run.sh allows under ASan on the shared machine) and one defect; the
 * harness writes the schedule as JSON and parses it. Oracle: without a defect every bit comes back exactly; with
 * one, the parse fails with a message — never a crash, a leak, or a schedule accepted with a hole in it. */
#include "fuzz_common.h"

#include <stdio.h>
#include <string.h>

#include "schedule.h"
#include "tq.h"

typedef struct { char *p; size_t n, cap; } buf;

static void put(buf *b, const char *s)
{
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = 2 * (b->n + k + 1);
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

enum { DEF_NONE, DEF_RANGE, DEF_SHORT_ROW, DEF_FRACTION, DEF_DUP_KEY, DEF_TRUNCATE, DEF_STRING, DEF_EMPTY, N_DEF };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10) return 0;
    int heads_units = data[0] & 1, has_values = (data[0] >> 1) & 1;
    long layers = 1 + (data[1] | data[2] << 8 | (long)(data[3] & 1) << 16);
    int heads = heads_units ? 1 + data[4] % 64 : 1;
    if (layers * heads > (1L << 17)) layers = (1L << 17) / heads;
    int defect = data[5] % N_DEF;
    long at = (long)(data[6] | data[7] << 8 | (long)data[8] << 16) % (layers * heads);
    const uint8_t *pat = data + 9;
    size_t npat = size - 9;
    /* a short row is a defect only beside a full one: a single layer's row of heads - 1 is a whole schedule */
    if (defect == DEF_SHORT_ROW && (!heads_units || layers < 2)) defect = DEF_RANGE;
    if (defect == DEF_EMPTY && layers * heads > 1) defect = DEF_NONE; /* an empty array only where one is whole */

    buf b = {0};
    char tmp[64];
    put(&b, heads_units ? "{\"tq_schedule\": 1, \"units\": \"head\"" : "{\"tq_schedule\": 1, \"units\": \"layer\"");
    for (int t = 0; t < 1 + has_values; t++) {
        put(&b, t ? ", \"values\": [" : ", \"keys\": [");
        for (long l = 0; l < layers; l++) {
            if (l) put(&b, ", ");
            if (heads_units) put(&b, "[");
            for (int h = 0; h < heads; h++) {
                long i = l * heads + h;
                if (defect == DEF_SHORT_ROW && t == 0 && l == at / heads && h == heads - 1) break;
                if (h) put(&b, ", ");
                int bits = 1 + pat[(size_t)(i + t) % npat] % 8;
                if (t == 0 && i == at && defect == DEF_RANGE) snprintf(tmp, sizeof tmp, "%d", pat[0] & 1 ? 9 : 0);
                else if (t == 0 && i == at && defect == DEF_FRACTION) snprintf(tmp, sizeof tmp, "%d.5", bits);
                else if (t == 0 && i == at && defect == DEF_STRING) snprintf(tmp, sizeof tmp, "\"%d\"", bits);
                else if (t == 0 && i == at && defect == DEF_EMPTY) tmp[0] = 0;
                else snprintf(tmp, sizeof tmp, "%d", bits);
                put(&b, tmp);
            }
            if (heads_units) put(&b, "]");
        }
        put(&b, "]");
    }
    if (defect == DEF_DUP_KEY) put(&b, ", \"units\": \"layer\"");
    put(&b, "}");
    size_t len = b.n;
    if (defect == DEF_TRUNCATE) len = (size_t)at % b.n; /* any prefix of a JSON object is incomplete */

    tq_error_clear();
    tq_schedule *s = NULL;
    int rc = tq_schedule_parse(&s, b.p, len, "fuzz.json");
    if (defect == DEF_NONE) {
        if (rc != TQ_OK) abort(); /* a valid schedule refused */
        if (s->n_layers != layers || s->n_heads != (heads_units ? heads : 0)) abort();
        for (long l = 0; l < layers; l++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < 2; t++) {
                    int want = t && !has_values ? -1 : 1 + pat[(size_t)(l * heads + h + t) % npat] % 8;
                    if (tq_schedule_bits(s, (int)l, h, t) != want) abort(); /* a bit lost or moved */
                }
        if (tq_schedule_check(s, "fuzz.json", (int)layers, heads, NULL, 1, 8) != TQ_OK) abort();
    } else if (rc == TQ_OK || !tq_error_msg()[0])
        abort(); /* a defective schedule accepted, or refused without a message */
    tq_schedule_free(s);
    free(b.p);
    return 0;
}
