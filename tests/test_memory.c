/* test_memory.c: lib/memory.h directly — cache bytes against sizes worked out by hand from the layouts (README
 * "Formats"), the configuration list (order, fixed-width methods, range errors), and the writer: Markdown/CSV rows
 * to the FILE* given, nothing written when a row cannot be counted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "tq.h"
#include "tq_test.h"

/* Byte counts are integers below 2^53, so they are compared exactly. */
static void test_bytes(void)
{
    const tq_mem_shape *s = tq_mem_preset_find("llama-3.1-8b");
    CHECK(s && s->layers == 32 && s->kv_heads == 8 && s->head_dim == 128, "llama-3.1-8b preset");
    CHECK(!tq_mem_preset_find("llama-9"), "unknown preset found");
    if (!s) return;
    const double slices = 2.0 * 32 * 8 * 8192; /* keys + values x layers x kv heads, one slice of 8192 vectors */
    struct { int method, bits; double bytes_per_vector; const char *params; } c[] = {
        {TQ_M_FP16, 16, 256, ""},                   /* 128 coordinates x 2 bytes: 1 GiB in all */
        {TQ_M_INT8, 8, 128 + 2, "fp16 scale per vector"},
        {TQ_M_TURBO_MSE, 3, 48 + 2, "rot=dense,cb=beta"}, /* ceil(128*3/8) code bytes + fp16 norm */
        {TQ_M_TURBO_PROD, 3, 32 + 16 + 2 + 2, "rot=dense,cb=beta"}, /* 2-bit MSE codes, 128 signs, two norms */
    };
    for (int i = 0; i < 4; i++) {
        tq_qparams p;
        tq_qparams_default(&p, c[i].method, c[i].bits);
        tq_mem_row r;
        CHECK(tq_mem_row_of(&p, s, 8192, 1, &r) == TQ_OK, "row %d", i);
        CHECK(r.bytes == slices * c[i].bytes_per_vector, "method %d: %.0f bytes, want %.0f", c[i].method, r.bytes,
              slices * c[i].bytes_per_vector);
        CHECK_NEAR(r.bits_total, 8 * c[i].bytes_per_vector / 128, 1e-12, "bits_total");
        CHECK_NEAR(r.vs_fp16, 256 / c[i].bytes_per_vector, 1e-12, "vs fp16"); /* one rounding of a quotient */
        CHECK(!strcmp(r.params, c[i].params), "params '%s', want '%s'", r.params, c[i].params);
        if (i == 0) CHECK(r.gib == 1.0, "fp16 is %.9g GiB, want 1", r.gib);
    }
    /* too large to count in 64 bits: 1e5 layers x 65536 heads x 65536 dims x 2^31 tokens */
    tq_mem_shape big = {"big", 100000, 65536, 65536};
    tq_qparams p;
    tq_qparams_default(&p, TQ_M_FP16, 16);
    tq_mem_row r;
    CHECK(tq_mem_row_of(&p, &big, 2147483647L, 1000000, &r) == TQ_ERR_USAGE, "huge cache accepted");
    CHECK(strstr(tq_error_msg(), "'big'") != NULL, "message '%s' names the shape", tq_error_msg());
}

static void test_configs(void)
{
    tq_qparams cfg[16];
    const int methods[3] = {TQ_M_TURBO_MSE, TQ_M_QJL, TQ_M_FP16}, bits[2] = {2, 4};
    int n = tq_mem_configs(cfg, 16, methods, 3, bits, 2, 32, 1, 8);
    /* fp16, int8, turbo-mse at 2 and 4, qjl once at its one width; fp16 in the list is not repeated */
    CHECK(n == 5, "%d configurations, want 5", n);
    if (n == 5) {
        CHECK(cfg[0].method == TQ_M_FP16 && cfg[1].method == TQ_M_INT8, "fp16, int8 first");
        CHECK(cfg[2].bits == 2 && cfg[3].bits == 4 && cfg[2].outliers == 8, "turbo-mse widths and outliers");
        CHECK(cfg[4].method == TQ_M_QJL && cfg[4].bits == 1 && !cfg[4].outliers, "qjl at 1 bit, no outliers");
        CHECK(cfg[1].norm_fp32 && cfg[2].norm_fp32, "fp32 side information");
    }
    const int nine[1] = {9};
    CHECK(tq_mem_configs(cfg, 16, methods, 1, nine, 1, 32, 0, 0) == TQ_ERR_USAGE, "9 bits accepted");
    CHECK(strstr(tq_error_msg(), "--bits 9 is out of range for turbo-mse") != NULL, "message '%s'", tq_error_msg());
    CHECK(tq_mem_configs(cfg, 3, methods, 1, bits, 2, 32, 0, 0) == TQ_ERR_USAGE, "overflow of out[] accepted");
}

/* the writer: header once, one row per configuration; nothing at all when a row fails */
static void test_write(void)
{
    tq_qparams cfg[2];
    tq_qparams_default(&cfg[0], TQ_M_FP16, 16);
    tq_qparams_default(&cfg[1], TQ_M_TURBO_MSE, 3);
    const tq_mem_shape *s = tq_mem_preset_find("smollm2-135m");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f && s, "memstream");
    if (!f || !s) return;
    CHECK(tq_mem_write(f, s, cfg, 2, 320, 4, 1, 1) == TQ_OK, "csv");
    fflush(f);
    /* smollm2 (30, 3, 64) x 320 tokens x batch 4, turbo-mse 3 bits: 24 code bytes + 2 norm bytes per vector */
    char want[512];
    snprintf(want, sizeof want, "model,layers,kv_heads,head_dim,context,batch,method,bits,params,bits_total,bytes,gib,"
             "vs_fp16\nsmollm2-135m,30,3,64,320,4,fp16,16,\"\",16.000000,%d,%.6f,1.0000\n"
             "smollm2-135m,30,3,64,320,4,turbo-mse,3,\"rot=dense,cb=beta\",3.250000,%d,%.6f,%.4f\n",
             2 * 30 * 3 * 4 * 320 * 128, 2 * 30 * 3 * 4 * 320 * 128 / 1073741824.0, 2 * 30 * 3 * 4 * 320 * 26,
             2 * 30 * 3 * 4 * 320 * 26 / 1073741824.0, 128 / 26.0);
    CHECK(!strcmp(buf, want), "csv:\n%s\nwant:\n%s", buf, want);
    tq_mem_shape big = {"big", 100000, 65536, 65536};
    long before = ftell(f);
    CHECK(tq_mem_write(f, &big, cfg, 2, 2147483647L, 1000000, 0, 1) == TQ_ERR_USAGE, "huge cache written");
    fflush(f);
    CHECK(ftell(f) == before, "%ld bytes written before the error", ftell(f) - before);
    fclose(f);
    free(buf);
}

int main(void)
{
    test_bytes();
    test_configs();
    test_write();
    TQ_TEST_END();
}
