/* fuzz_codes.c: libFuzzer harness for the tq-codes reader — bytes -> file -> tq_codes_open -> read every layer ->
 * decode every slice. The reader promises that what it returns is decodable (parameters checked, section sizes
 * equal to the format's own layout), so a decoder crash on a slice it accepted is a reader bug. */
#include "fuzz_common.h"

#include "codes.h"
#include "tq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tq_error_clear();
    tq_codes_file *f = NULL;
    if (tq_codes_open(&f, fuzz_as_file(data, size)) != TQ_OK) {
        if (!tq_error_msg()[0]) abort();
        return 0;
    }
    const tq_codes_meta *m = tq_codes_get_meta(f);
    for (int i = 0; i < m->n_layers; i++) {
        tq_codes_layer cl;
        if (tq_codes_read_layer(f, i, &cl) != TQ_OK) continue;
        /* dense rotations cost O(d^3) to regenerate: decode small slices only */
        if ((uint64_t)cl.s.n_tokens * (uint64_t)cl.s.head_dim <= FUZZ_MAX_VALUES / 16 && cl.s.head_dim <= 512) {
            float *x = malloc(sizeof(float) * (size_t)cl.s.n_tokens * (size_t)cl.s.head_dim);
            for (int t = 0; x && t < 1 + (cl.values != NULL); t++)
                for (int h = 0; h < cl.s.n_kv_heads; h++) {
                    const tq_codes *c = t ? &cl.values[h] : &cl.keys[h];
                    const tq_format *fm = tq_format_of(c->p.method);
                    if (fm) fm->decode(c, x);
                }
            free(x);
        }
        tq_codes_layer_free(&cl);
    }
    tq_codes_close(f);
    return 0;
}
