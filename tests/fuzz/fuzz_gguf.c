/* fuzz_gguf.c: libFuzzer harness for the GGUF reader — bytes -> tq_gguf_open_buffer (the input itself, exactly its
 * size, so ASan sees any read past the end) -> every metadata getter and the listing form of every key, every
 * array element, every tensor found by name and dequantized row by row. The reader promises that what it accepted
 * is safe to read, so a crash in any accessor or dequantizer on an accepted file is a reader bug.
 * Seeds: tests/fuzz/gguf_seeds.py. */
#include "fuzz_common.h"

#include <string.h>

#include "gguf.h"
#include "tq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tq_error_clear();
    tq_gguf *g = NULL;
    if (tq_gguf_open_buffer(data, size, "fuzz.gguf", &g) != TQ_OK) {
        if (!strstr(tq_error_msg(), "'fuzz.gguf'") || g) abort(); /* one message naming the file, no handle */
        return 0;
    }
    char key[256];
    for (int64_t i = 0; i < tq_gguf_n_kv(g); i++) {
        tq_gguf_str k = tq_gguf_key(g, i);
        if (k.len >= sizeof key) continue;
        memcpy(key, k.s, k.len);
        key[k.len] = 0;
        if (tq_gguf_find_key(g, key) != i) abort();
        char line[80];
        tq_gguf_kv_format(g, i, line, sizeof line);
        if (strlen(line) >= sizeof line) abort();
        int64_t iv;
        double dv;
        tq_gguf_str sv;
        int et;
        uint64_t n;
        tq_gguf_get_int(g, key, &iv);
        tq_gguf_get_float(g, key, &dv);
        if (tq_gguf_get_str(g, key, &sv) == TQ_OK && sv.len && (sv.s[0] == 0x7f || sv.s[sv.len - 1] == 0x7f))
            iv = 0; /* touch the first and last byte */
        if (tq_gguf_get_arr(g, key, &et, &n) != TQ_OK) continue;
        for (uint64_t j = 0; j < n && j < 4096; j++) {
            if (tq_gguf_arr_str(g, key, j, &sv) == TQ_OK && sv.len && (sv.s[0] == 0x7f || sv.s[sv.len - 1] == 0x7f))
                iv = 0;
            tq_gguf_arr_int(g, key, j, &iv);
            tq_gguf_arr_float(g, key, j, &dv);
        }
        tq_gguf_arr_str(g, key, n, &sv); /* one past the end: refused */
        static const int esize[TQ_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        uint64_t m;
        const uint8_t *p = tq_gguf_arr_data(g, key, et, &m);
        if (p && m) {
            volatile uint8_t last = p[m * (uint64_t)esize[et] - 1]; /* the array's last byte */
            (void)last;
        }
    }
    for (int64_t i = 0; i < tq_gguf_n_tensors(g); i++) {
        const tq_gguf_tensor *t = tq_gguf_tensor_at(g, i);
        if (tq_gguf_find_tensor(g, t->name) != t) abort();
        if (t->nbytes) {
            volatile uint8_t b = ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
            (void)b;
        }
        if (!tq_ggml_can_dequantize(t->type)) continue;
        int64_t row = t->ne[0], rows = t->n_elems / row;
        if (row > FUZZ_MAX_VALUES) continue;
        float *y = malloc(sizeof(float) * (size_t)row);
        if (!y) continue;
        /* every row of small tensors, the first and last of large ones */
        for (int64_t r = 0; r < rows; r++) {
            if (r == 32 && rows > 64) r = rows - 32;
            if (tq_gguf_tensor_rows_f32(t, r, 1, y) != TQ_OK) abort();
        }
        free(y);
    }
    tq_gguf_close(g);
    return 0;
}
