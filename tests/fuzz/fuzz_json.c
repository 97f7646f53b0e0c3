/* fuzz_json.c: libFuzzer harness for the strict JSON parser and the schedule loader built on it (the inputs of
 * quantize/sweep --schedule and, through the same parser, mixed-schedule's sensitivity files). */
#include "fuzz_common.h"

#include <string.h>

#include "schedule.h"
#include "tq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tq_error_clear();
    tq_json v;
    if (tq_json_parse(&v, (const char *)data, size, "fuzz.json") == TQ_OK) {
        (void)tq_json_get(&v, "keys");
        tq_json_free(&v);
    } else if (!tq_error_msg()[0]) abort();
    tq_schedule *s = NULL;
    if (tq_schedule_parse(&s, (const char *)data, size, "fuzz.json") == TQ_OK) {
        /* every lookup inside the declared shape must be in bounds */
        for (int l = 0; l < s->n_layers; l++)
            for (int h = 0; h < (s->n_heads ? s->n_heads : 1); h++) {
                int b = tq_schedule_bits(s, l, h, 0);
                if (b < 1 || b > 8) abort();
                (void)tq_schedule_bits(s, l, h, 1);
            }
        (void)tq_schedule_check(s, "fuzz.json", s->n_layers, s->n_heads ? s->n_heads : 1, "turbo-mse", 1, 8);
        tq_schedule_free(s);
    }
    return 0;
}
