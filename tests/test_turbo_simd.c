/* test_turbo_simd.c: the AVX-512 Hadamard turbo-mse encoder (lib/turbo_avx512.c) against the scalar reference, byte
 * for byte. Format level: every section of turbo-mse's fast encode (AVX-512 on and off) equals encode_ref across
 * d = 16..256, 1..4 bits, three codebooks, fp16/fp32 norms, --center and --outliers, on rows built to be awkward
 * (zero, one-hot, constant, -0, subnormal, tiny, near the fp16 norm limit). Kernel level: thresholds placed exactly
 * on values the rotation produces (ties must take the lower cell), duplicated thresholds, and NaN rows. */
#include "codebook.h"
#include "pack.h"
#include "quant.h"
#include "rng.h"
#include "rotation.h"
#include "tq.h"
#include "tq_test.h"
#include "turbo.h"
#include "turbo_simd.h"

static const int DIMS[] = {16, 32, 64, 128, 256};

/* n rows of d floats: Gaussian with log-normal scales, then the awkward rows over the first 9 slots. */
static float *make_rows(int n, int d, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)n * d);
    tq_rng r;
    tq_rng_seed(&r, seed, 3);
    for (int i = 0; i < n; i++) {
        float s = (float)exp(1.5 * tq_rng_normal(&r));
        for (int j = 0; j < d; j++) x[(size_t)i * d + j] = (float)tq_rng_normal(&r) * s;
    }
    float *z = x;
    memset(z, 0, sizeof(float) * d);                                   /* 0: zero row */
    z += d; memset(z, 0, sizeof(float) * d); z[3 % d] = 1.0f;          /* 1: one-hot */
    z += d; for (int j = 0; j < d; j++) z[j] = 0.25f;                  /* 2: constant */
    z += d; for (int j = 0; j < d; j++) z[j] = (j & 1) ? -0.0f : 0.5f; /* 3: -0 and one value */
    z += d; for (int j = 0; j < d; j++) z[j] = (j % 3 ? 1 : -1) * 1e-40f; /* 4: subnormal */
    z += d; for (int j = 0; j < d; j++) z[j] = (j % 5 ? 1 : -1) * 3e-21f; /* 5: squares underflow */
    z += d; for (int j = 0; j < d; j++) z[j] = 6e4f / sqrtf((float)d) * (j % 2 ? 1 : -1); /* 6: norm near 6e4 */
    z += d; memset(z, 0, sizeof(float) * d); z[0] = 1.0f; z[d - 1] = -1.0f; /* 7: two spikes */
    z += d; for (int j = 0; j < d; j++) z[j] = (float)j - d / 2;       /* 8: ramp */
    return x;
}

static int same_codes(const tq_codes *a, const tq_codes *b, char *why, size_t wn)
{
    if (a->nsec != b->nsec) { snprintf(why, wn, "%d vs %d sections", a->nsec, b->nsec); return 0; }
    for (int k = 0; k < a->nsec; k++) {
        const tq_section *s = &a->sec[k], *t = tq_codes_find(b, s->name);
        if (!t || t->type != s->type || t->count != s->count) { snprintf(why, wn, "section %s shape", s->name); return 0; }
        if (memcmp(s->data, t->data, tq_section_bytes(s))) {
            size_t nb = tq_section_bytes(s), i = 0;
            while (i < nb && ((uint8_t *)s->data)[i] == ((uint8_t *)t->data)[i]) i++;
            snprintf(why, wn, "section %s differs first at byte %zu of %zu", s->name, i, nb);
            return 0;
        }
    }
    return 1;
}

/* turbo-prod with the Hadamard rotation: its MSE stage (b - 1 bits) decodes through the AVX-512 decoder, the QJL
 * term through sgemm as before, so its decode equals the portable fast path's bit for bit. */
static void prod_decode(void)
{
    const int n = 1100, d = 128;
    float *x = make_rows(n, d, 77);
    int ok = 0;
    for (int bits = 2; bits <= 5; bits++) {
        tq_qparams p;
        tq_qparams_default(&p, TQ_M_TURBO_PROD, bits);
        p.rotation = TQ_ROT_HADAMARD;
        p.seed = 5;
        tq_slice_id id = {0, 1, 1};
        tq_codes c = {0};
        float *a = malloc(sizeof(float) * (size_t)n * d), *b = malloc(sizeof(float) * (size_t)n * d);
        if (!tq_format_turbo_prod.encode(&p, id, x, n, d, &c) && !tq_format_turbo_prod.decode(&c, a)) {
            tq_simd_set("off");
            ok += !tq_format_turbo_prod.decode(&c, b) && !memcmp(a, b, sizeof(float) * (size_t)n * d);
            tq_simd_set("auto");
        }
        tq_codes_free(&c);
        free(a);
        free(b);
    }
    CHECK(ok == 4, "turbo-prod decodes: %d of 4 widths bit-identical between the AVX-512 and portable paths", ok);
    free(x);
}

static void format_level(void)
{
    const int n = 1500; /* > one 1024-vector block: two blocks per encode, both threads busy */
    int cfgs = 0, dcfgs = 0, fails = 0;
    for (size_t di = 0; di < sizeof DIMS / sizeof DIMS[0]; di++) {
        int d = DIMS[di];
        float *x = make_rows(n, d, 100 + d);
        for (int bits = 1; bits <= 4; bits++)
            for (int cbk = 0; cbk < 3; cbk++)
                for (int var = 0; var < 4; var++) {
                    tq_qparams p;
                    tq_qparams_default(&p, TQ_M_TURBO_MSE, bits);
                    p.rotation = TQ_ROT_HADAMARD;
                    p.codebook = cbk == 0 ? TQ_CB_BETA : cbk == 1 ? TQ_CB_GAUSSIAN : TQ_CB_EMPIRICAL;
                    p.norm_fp32 = var & 1;
                    p.center = (var >> 1) & 1;
                    p.seed = 11 + (uint64_t)bits;
                    if (var == 3 && d >= 32) p.outliers = d / 2; /* two power-of-two instances */
                    tq_slice_id id = {1, 2, 0};
                    tq_codes ref = {0}, fast = {0}, slow = {0};
                    int sr = tq_format_turbo_mse.encode_ref(&p, id, x, n, d, &ref);
                    int sf = tq_format_turbo_mse.encode(&p, id, x, n, d, &fast);
                    tq_simd_set("off");
                    int ss = tq_format_turbo_mse.encode(&p, id, x, n, d, &slow);
                    tq_simd_set("auto");
                    char why[160] = "";
                    int ok = !sr && !sf && !ss && same_codes(&ref, &fast, why, sizeof why) &&
                             same_codes(&ref, &slow, why, sizeof why);
                    if (!ok && fails++ < 5)
                        fprintf(stderr, "d=%d b=%d cb=%d var=%d: st %d/%d/%d %s %s\n", d, bits, cbk, var, sr, sf, ss,
                                why, tq_error_msg());
                    cfgs += ok;
                    /* decode of the reference's codes: decode_ref, the AVX-512 decoder and the portable one agree
                     * bit for bit (the same operations in the same order) */
                    if (ok) {
                        float *a = malloc(sizeof(float) * (size_t)n * d), *b = malloc(sizeof(float) * (size_t)n * d),
                              *e = malloc(sizeof(float) * (size_t)n * d);
                        int da = tq_format_turbo_mse.decode_ref(&ref, a), db = tq_format_turbo_mse.decode(&ref, b);
                        tq_simd_set("off");
                        int de = tq_format_turbo_mse.decode(&ref, e);
                        tq_simd_set("auto");
                        int dok = !da && !db && !de && !memcmp(a, b, sizeof(float) * (size_t)n * d) &&
                                  !memcmp(a, e, sizeof(float) * (size_t)n * d);
                        if (!dok && fails++ < 5)
                            fprintf(stderr, "decode d=%d b=%d cb=%d var=%d differs\n", d, bits, cbk, var);
                        dcfgs += dok;
                        free(a); free(b); free(e);
                    }
                    tq_codes_free(&ref);
                    tq_codes_free(&fast);
                    tq_codes_free(&slow);
                }
        free(x);
    }
    /* 5 dims x 4 widths x 3 codebooks x 4 variants, each: ref, AVX-512 and portable fast path identical */
    CHECK(cfgs == 5 * 4 * 3 * 4, "%d of %d configurations byte-identical to encode_ref", cfgs, 5 * 4 * 3 * 4);
    CHECK(dcfgs == 5 * 4 * 3 * 4, "%d of %d configurations decode bit-identically to decode_ref", dcfgs,
          5 * 4 * 3 * 4);
    fprintf(stderr, "  format level: %d configurations x %d rows byte-identical (AVX-512, portable, reference), "
            "%d decoded bit-identically\n", cfgs, n, dcfgs);
}

/* The reference of one row with caller thresholds: lib/turbo.c's norm (8 float lanes, then a double sum), the
 * reference rotation, y * (1/norm), the count of thresholds strictly below, the reference packer. */
static void ref_row(const tq_rotation *rot, const float *x, int d, const float *thr, int bits, uint8_t *row,
                    float *nrm, float *y)
{
    float acc[8] = {0};
    for (int j = 0; j < d; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[j + l] * x[j + l];
    double s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    *nrm = (float)sqrt(s);
    float inv = *nrm > 0 ? 1.0f / *nrm : 0.0f;
    tq_rotation_forward_ref(rot, x, y);
    uint8_t idx[256];
    for (int j = 0; j < d; j++) {
        y[j] *= inv;
        int c = 0;
        for (int t = 0; t < (1 << bits) - 1; t++) c += y[j] > thr[t];
        idx[j] = (uint8_t)c;
    }
    tq_pack_row_ref(idx, d, bits, row);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void kernel_level(void)
{
    if (!tq_had_avx512_cpu()) {
        SKIP("this CPU lacks AVX-512 F/BW/DQ/VL/VBMI: the kernel-level ties, duplicates and NaN checks need it");
        return;
    }
    const int n = 64;
    int ties = 0, rows_ok = 0, rows_all = 0;
    for (size_t di = 0; di < sizeof DIMS / sizeof DIMS[0]; di++) {
        int d = DIMS[di];
        tq_rotation *rot;
        tq_slice_id id = {0, 0, 0};
        if (tq_rotation_make(&rot, TQ_ROT_HADAMARD, d, 5, id, TQ_PURPOSE_ROTATION, 0)) { CHECK(0, "rotation"); continue; }
        float *x = make_rows(n, d, 7 + d), *y = malloc(sizeof(float) * d), nk[64], nr;
        x[9 * d + 1] = NAN; /* row 9: a NaN spreads to every rotated coordinate: all codes 0, norm NaN */
        uint8_t rk[64 * 128 + 64], rr[128]; /* 64 rows of up to 128 bytes, then guard bytes */
        for (int bits = 1; bits <= 4; bits++)
            for (int mode = 0; mode < 2; mode++) {
                /* thresholds = sorted values the rotation of row 10 produces (mode 0), or those with each one
                 * repeated (mode 1): every coordinate of row 10 lies exactly on a threshold or between two */
                int nt = (1 << bits) - 1;
                float thr[16], vals[256], dummy[16] = {0};
                ref_row(rot, x + 10 * d, d, dummy, 1, rr, &nr, y);
                memcpy(vals, y, sizeof(float) * d);
                qsort(vals, (size_t)d, sizeof(float), cmp_float);
                for (int t = 0; t < nt; t++) thr[t] = vals[((mode ? t / 2 : t) * (d - 1)) / (nt > 1 ? nt - 1 : 1)];
                thr[nt] = INFINITY;
                if (!tq_had_avx512_usable(d, bits, thr)) { CHECK(0, "d=%d bits=%d not usable", d, bits); continue; }
                size_t rb = tq_pack_row_bytes(d, bits);
                memset(rk, 0xAB, sizeof rk);
                tq_had_mse_rows_avx512(x, n, d, rot->signs, tq_fwht_scale(d), thr, bits, rk, rb, nk);
                for (int i = 0; i < n; i++) {
                    ref_row(rot, x + (size_t)i * d, d, thr, bits, rr, &nr, y);
                    if (i == 10)
                        for (int j = 0; j < d; j++)
                            for (int t = 0; t < nt; t++) ties += y[j] == thr[t];
                    int ok = !memcmp(rr, rk + (size_t)i * rb, rb) && !memcmp(&nr, &nk[i], sizeof nr);
                    rows_ok += ok;
                    rows_all++;
                    if (!ok && rows_all - rows_ok < 5)
                        fprintf(stderr, "kernel d=%d bits=%d mode=%d row %d: norm %g vs %g, codes %s\n", d, bits,
                                mode, i, (double)nk[i], (double)nr, memcmp(rr, rk + (size_t)i * rb, rb) ? "differ" : "same");
                }
                /* the bytes after the last row are untouched (masked stores stay inside each row) */
                CHECK(rk[(size_t)n * rb] == 0xAB, "byte after the last row overwritten (d=%d bits=%d)", d, bits);
            }
        free(x);
        free(y);
        tq_rotation_free(rot);
    }
    CHECK(rows_ok == rows_all, "%d of %d rows byte-identical to the reference (codes and norm bits)", rows_ok, rows_all);
    /* every coordinate of row 10 sits on a threshold in mode 0 at the sampled ranks: at least nt ties per width */
    CHECK(ties >= 5 * (1 + 3 + 7 + 15), "only %d exact ties exercised", ties);
    fprintf(stderr, "  kernel level: %d rows identical, %d coordinates exactly on a threshold\n", rows_ok, ties);

    /* shapes and thresholds the kernel refuses (the encoder then takes the portable path) */
    float up[16] = {0.5f, 0.1f, 0.9f}, ok3[16] = {-1, -0.5f, -0.1f, 0, 0.1f, 0.5f, 1};
    CHECK(!tq_had_avx512_usable(128, 2, up), "unsorted thresholds accepted");
    CHECK(tq_had_avx512_usable(128, 3, ok3), "sorted thresholds refused");
    CHECK(!tq_had_avx512_usable(8, 3, ok3) && !tq_had_avx512_usable(512, 3, ok3) && !tq_had_avx512_usable(96, 3, ok3),
          "d outside 16..256 powers of two accepted");
    CHECK(!tq_had_avx512_usable(128, 5, ok3) && !tq_had_avx512_usable(128, 0, ok3), "bits outside 1..4 accepted");
    tq_simd_set("off");
    CHECK(!tq_had_avx512_usable(128, 3, ok3), "the simd=off switch is ignored");
    tq_simd_set("auto");
}

/* The variant switch (turbo.h: tq_simd_set), the only way to choose the path (the library reads no environment):
 * checked on every CPU against the compiler's own feature test. */
static void variant_switch(void)
{
    int have = 0;
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    __builtin_cpu_init();
    have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("bmi2");
#endif
    CHECK(tq_simd_set("auto") == TQ_OK && !strcmp(tq_simd_get(), have ? "avx512" : "off") &&
          tq_had_avx512_cpu() == have, "auto runs %s on a CPU %s AVX-512", tq_simd_get(), have ? "with" : "without");
    CHECK(tq_simd_set("off") == TQ_OK && !strcmp(tq_simd_get(), "off") && !tq_had_avx512_cpu(), "off ignored");
    int st = tq_simd_set("avx512");
    CHECK(have ? st == TQ_OK && !strcmp(tq_simd_get(), "avx512")
               : st == TQ_ERR_USAGE && strstr(tq_error_msg(), "lacks AVX-512") && !strcmp(tq_simd_get(), "off"),
          "avx512 on a CPU %s it: status %d (%s)", have ? "with" : "without", st, tq_error_msg());
    st = tq_simd_set("avx3");
    CHECK(st == TQ_ERR_USAGE && strstr(tq_error_msg(), "'avx3'"), "unknown variant: status %d (%s)", st,
          tq_error_msg());
    CHECK(tq_simd_set(NULL) == TQ_ERR_USAGE, "NULL variant accepted");
    tq_simd_set("auto");
}

int main(void)
{
    format_level();
    prod_decode();
    kernel_level();
    variant_switch();
    TQ_TEST_END();
}
