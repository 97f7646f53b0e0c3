/* fuzz_dump.c: libFuzzer harness for the tq-kv dump reader — bytes -> file -> tq_dump_open -> read every layer
 * (non-finite values allowed, so reading goes on past them). Any outcome but a crash is fine: bad files must come
 * back as TQ_ERR with a message, never as a crash, leak or undefined behaviour in lib/. */
#include "fuzz_common.h"

#include "dump.h"
#include "tq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tq_error_clear();
    tq_dump *d = NULL;
    if (tq_dump_open(&d, fuzz_as_file(data, size)) != TQ_OK) {
        if (!tq_error_msg()[0]) abort(); /* a failure must say why */
        return 0;
    }
    const tq_dump_meta *m = tq_dump_get_meta(d);
    for (int l = 0; l < m->n_layers; l++) {
        /* an accepted file's attention specs (format 2) are valid: the validation at open is the only gate */
        tq_attn_spec spec;
        if (tq_dump_layer_attn(d, l, &spec) != TQ_OK || tq_attn_spec_check(&spec) != TQ_OK || !(spec.scale > 0))
            abort();
        const tq_layer_shape *s = tq_dump_layer_shape(d, l);
        uint64_t heads = (uint64_t)(s->n_q_heads > s->n_kv_heads ? s->n_q_heads : s->n_kv_heads);
        if (heads * (uint64_t)s->n_tokens * (uint64_t)s->head_dim > FUZZ_MAX_VALUES) continue;
        tq_layer layer = {0};
        if (tq_dump_read_layer(d, l, 0, 1, &layer) == TQ_OK) {
            /* touch every value: a short read would show up as uninitialised or out-of-bounds memory */
            size_t n = (size_t)s->n_kv_heads * s->n_tokens * s->head_dim;
            volatile float acc = 0;
            for (size_t i = 0; i < n; i++) acc += layer.keys[i] + (layer.values ? layer.values[i] : 0);
            (void)acc;
            tq_layer_free(&layer);
        }
    }
    tq_dump_close(d);
    return 0;
}
