/* test_attention_spec.c: the attention metrics under a layer's spec (dump format 2): sliding windows, score scale and
 * soft-cap, fast path against the double reference (W < T, W >= T, W = 1), the window convention against a truncated
 * global evaluation, closed-form cases, the dump round trip of the attributes, and the O(tile × W) workspace. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "attention.h"
#include "dump.h"
#include "metrics.h"
#include "rng.h"
#include "tq.h"
#include "tq_test.h"

static float *randn(long n, uint64_t seed, int purpose_head, float sd)
{
    float *x = malloc((size_t)n * sizeof(float));
    tq_rng r;
    tq_rng_derive(&r, seed, 0, purpose_head, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, x, n);
    for (long i = 0; i < n; i++) x[i] *= sd;
    return x;
}

static int same_stats(const tq_attn_stats *a, const tq_attn_stats *b)
{
    return a->rows == b->rows && a->out_rows == b->out_rows && a->attn_kl == b->attn_kl &&
           a->entropy == b->entropy && a->entropy_q == b->entropy_q && a->top8 == b->top8 &&
           (a->out_rel == b->out_rel || (isnan(a->out_rel) && isnan(b->out_rel)));
}

static void test_spec_check(void)
{
    tq_attn_spec ok = {0}, neg = {-1, 0, 0, 0}, nan_scale = {0, NAN, 0, 0}, neg_cap = {0, 0, -1, 0},
                 inf_base = {0, 0, 0, INFINITY};
    CHECK(tq_attn_spec_check(&ok) == TQ_OK, "zero spec is valid");
    CHECK(tq_attn_spec_check(&neg) == TQ_ERR_USAGE && strstr(tq_error_msg(), "window -1"), "%s", tq_error_msg());
    CHECK(tq_attn_spec_check(&nan_scale) == TQ_ERR_USAGE && strstr(tq_error_msg(), "scale"), "%s", tq_error_msg());
    CHECK(tq_attn_spec_check(&neg_cap) == TQ_ERR_USAGE && strstr(tq_error_msg(), "soft-cap"), "%s", tq_error_msg());
    CHECK(tq_attn_spec_check(&inf_base) == TQ_ERR_USAGE, "inf rope base");
    CHECK(tq_attn_spec_scale(NULL, 64) == 0.125 && tq_attn_spec_scale(&ok, 16) == 0.25, "default scale 1/sqrt(d)");
    float q[4] = {1, 0, 0, 0}, k[4] = {1, 0, 0, 0};
    tq_attn_stats st;
    CHECK(tq_attn_eval(q, 1, k, k, NULL, NULL, 1, 4, &neg, 0, 1, &st) == TQ_ERR_USAGE, "fast path refuses a bad spec");
    CHECK(tq_attn_eval_ref(q, 1, k, k, NULL, NULL, 1, 4, &nan_scale, 0, 1, &st) == TQ_ERR_USAGE, "ref too");
}

static void test_softcap_two_keys(void)
{
    /* test_metrics' two-key row with a soft-cap c = 1 and scale 1/2 (d = 4): exact scores (0, 1) become
     * (0, tanh 1), quantized (0, 1/2) become (0, tanh 1/2). Then p = (1, e^a)/(1+e^a) with a = tanh 1 and
     * p̂ likewise with b = tanh 1/2, and KL, H, Ĥ, out_rel follow in closed form as before. The fast path caps float
     * scores (one rounding of c·tanh(s/c), ~2^-24 relative), then the same float softmax: 1e-6 as in test_metrics. */
    float q[8] = {0, 0, 0, 0, 2, 0, 0, 0}, k[8] = {0, 0, 0, 0, 1, 0, 0, 0}, kh[8] = {0, 0, 0, 0, 0.5f, 0, 0, 0};
    float v[8] = {1, 0, 0, 0, 0, 1, 0, 0};
    double a = tanh(1.0), b = tanh(0.5);
    double p0 = 1 / (1 + exp(a)), p1 = 1 - p0, r0 = 1 / (1 + exp(b)), r1 = 1 - r0;
    double kl = p0 * log(p0 / r0) + p1 * log(p1 / r1), h = -(p0 * log(p0) + p1 * log(p1));
    double hq = -(r0 * log(r0) + r1 * log(r1)), orel = hypot(r0 - p0, r1 - p1) / hypot(p0, p1);
    tq_attn_spec cap = {0, 0, 1.0, 0};
    for (int ref = 0; ref < 2; ref++) {
        tq_attn_stats st;
        int rc = ref ? tq_attn_eval_ref(q, 1, k, kh, v, v, 2, 4, &cap, 0, 2, &st)
                     : tq_attn_eval(q, 1, k, kh, v, v, 2, 4, &cap, 0, 2, &st);
        double tol = ref ? 1e-12 : 1e-6;
        CHECK(rc == TQ_OK && st.rows == 2, "rc %d", rc);
        CHECK_NEAR(st.attn_kl, kl / 2, tol, ref ? "ref capped kl" : "fast capped kl");
        CHECK_NEAR(st.entropy, h / 2, tol, ref ? "ref capped entropy" : "fast capped entropy");
        CHECK_NEAR(st.entropy_q, hq / 2, tol, ref ? "ref capped entropy_q" : "fast capped entropy_q");
        CHECK_NEAR(st.out_rel, orel / 2, tol, ref ? "ref capped out_rel" : "fast capped out_rel");
    }
    /* and the cap acts: uncapped KL is 0.0263445860 (test_metrics), capped is smaller (scores squeezed) */
    CHECK(kl / 2 < 0.0263445860 / 2 - 1e-3, "capped kl %g", kl / 2);
}

typedef struct { int T, d, G; float *q, *k, *kh, *v, *vh; } slice;

static slice slice_make(int T, int d, int G, uint64_t seed)
{
    slice s = {T, d, G, randn((long)G * T * d, seed, 0, 1), randn((long)T * d, seed, 1, 1), NULL,
               randn((long)T * d, seed, 2, 1), NULL};
    float *dk = randn((long)T * d, seed, 3, 0.3f), *dv = randn((long)T * d, seed, 4, 0.3f);
    s.kh = malloc((size_t)T * d * 4);
    s.vh = malloc((size_t)T * d * 4);
    for (long i = 0; i < (long)T * d; i++) {
        s.kh[i] = s.k[i] + dk[i];
        s.vh[i] = s.v[i] + dv[i];
    }
    free(dk);
    free(dv);
    return s;
}

static void slice_free(slice *s)
{
    free(s->q); free(s->k); free(s->kh); free(s->v); free(s->vh);
}

static void test_window_fast_vs_ref(void)
{
    /* T = 300, G = 2, d = 64, σ = 0.3 key/value noise: the tolerances of test_metrics' fast-vs-ref (derived there for
     * full rows of up to T keys) cover windowed rows too, which are shorter: 1e-6 for the means, two top-8 flips.
     * Windows below, at and beyond T, with and without a scale and a soft-cap (c = 3 squeezes scores of sd ~1-2
     * visibly: tanh's curvature at s/c ~ 0.5 changes them by ~4%). */
    slice s = slice_make(300, 64, 2, 11);
    const int windows[] = {1, 2, 7, 63, 64, 65, 100, 299, 300, 1000, 0};
    const double scales[] = {0, 0.3};
    const double caps[] = {0, 3};
    for (size_t wi = 0; wi < sizeof windows / sizeof *windows; wi++)
        for (int si = 0; si < 2; si++)
            for (int ci = 0; ci < 2; ci++) {
                tq_attn_spec sp = {windows[wi], scales[si], caps[ci], 0};
                tq_attn_stats a, b;
                char what[96];
                snprintf(what, sizeof what, "W=%d scale=%g cap=%g", sp.window, sp.scale, sp.softcap);
                CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &sp, 0, s.T, &a) == TQ_OK, "%s", what);
                CHECK(tq_attn_eval_ref(s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &sp, 0, s.T, &b) == TQ_OK, "%s",
                      what);
                CHECK(a.rows == 600 && b.rows == 600, "%s rows %ld", what, a.rows);
                CHECK(fabs(a.attn_kl - b.attn_kl) <= 1e-6, "%s kl %g vs %g", what, a.attn_kl, b.attn_kl);
                CHECK(fabs(a.entropy - b.entropy) <= 1e-6, "%s H %g vs %g", what, a.entropy, b.entropy);
                CHECK(fabs(a.entropy_q - b.entropy_q) <= 1e-6, "%s Hq %g vs %g", what, a.entropy_q, b.entropy_q);
                CHECK(fabs(a.out_rel - b.out_rel) <= 1e-6, "%s out %g vs %g", what, a.out_rel, b.out_rel);
                CHECK(fabs(a.top8 - b.top8) <= 2.0 / (8 * 600), "%s top8 %g vs %g", what, a.top8, b.top8);
                /* a sub-range starting mid-window: tiles begin at t_lo, windows reach back before it */
                CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &sp, 130, 250, &a) == TQ_OK, "sub");
                CHECK(tq_attn_eval_ref(s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &sp, 130, 250, &b) == TQ_OK, "sub");
                CHECK(fabs(a.attn_kl - b.attn_kl) <= 1e-6 && fabs(a.out_rel - b.out_rel) <= 1e-6 &&
                      fabs(a.entropy - b.entropy) <= 1e-6, "%s sub-range", what);
            }
    slice_free(&s);
}

static void test_window_semantics(void)
{
    slice s = slice_make(300, 64, 2, 12);
    int T = s.T, d = s.d;
    tq_attn_stats a, b, c;
    /* 1. W >= T reaches every causal key: the very same computation as global attention, bit for bit. */
    tq_attn_spec wide = {T, 0, 0, 0}, wider = {5 * T, 0, 0, 0};
    CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, T, d, NULL, 0, T, &a) == TQ_OK, "global");
    CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, T, d, &wide, 0, T, &b) == TQ_OK, "W = T");
    CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, T, d, &wider, 0, T, &c) == TQ_OK, "W = 5T");
    CHECK(same_stats(&a, &b) && same_stats(&a, &c), "W >= T equals global bit for bit");
    /* 2. the convention: with window W, row t sees keys t-W+1..t — the same row as a global evaluation of the
     * slice cut to those W keys, where t is the last position. Same sgemm operands: equal bit for bit (fast), and
     * the reference agrees with itself to rounding (1e-12). */
    int W = 16;
    tq_attn_spec win = {W, 0, 0, 0};
    const int rows[] = {0, 5, 15, 16, 150, 299};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        int t = rows[i], lo = t - W + 1 > 0 ? t - W + 1 : 0, n = t - lo + 1;
        /* one query head's row t; the cut slice holds keys lo..t and that query at its last position */
        float *qc = calloc((size_t)n * d, 4);
        memcpy(qc + (size_t)(n - 1) * d, s.q + (size_t)t * d, (size_t)d * 4);
        const float *kc = s.k + (size_t)lo * d, *khc = s.kh + (size_t)lo * d, *vc = s.v + (size_t)lo * d,
                    *vhc = s.vh + (size_t)lo * d;
        CHECK(tq_attn_eval(s.q, 1, s.k, s.kh, s.v, s.vh, T, d, &win, t, t + 1, &a) == TQ_OK, "windowed row");
        CHECK(tq_attn_eval(qc, 1, kc, khc, vc, vhc, n, d, NULL, n - 1, n, &b) == TQ_OK, "cut row");
        CHECK(same_stats(&a, &b), "row %d: window %d == global over keys %d..%d (kl %g vs %g)", t, W, lo, t,
              a.attn_kl, b.attn_kl);
        CHECK(tq_attn_eval_ref(s.q, 1, s.k, s.kh, s.v, s.vh, T, d, &win, t, t + 1, &a) == TQ_OK, "ref windowed");
        CHECK(tq_attn_eval_ref(qc, 1, kc, khc, vc, vhc, n, d, NULL, n - 1, n, &b) == TQ_OK, "ref cut");
        CHECK(fabs(a.attn_kl - b.attn_kl) <= 1e-12 && fabs(a.entropy - b.entropy) <= 1e-12 &&
              fabs(a.out_rel - b.out_rel) <= 1e-12, "ref row %d", t);
        free(qc);
    }
    /* 3. the window acts: entropy of a softmax over n keys with scores of sd σ is ≈ log n − σ²/2 (large n), so
     * rows t >= W lose ≈ log((t+1)/W) nats against global attention and rows t < W are unchanged. Predicted mean
     * over rows: (1/T) Σ_{t>=W} log((t+1)/W) = 2.03 nats for W = 16, T = 300. The O(1/n) corrections at n = 16
     * (e^{σ²}/2n ~ 0.1 at σ ≈ 1) allow 10%. */
    double pred = 0;
    for (int t = W; t < T; t++) pred += log((double)(t + 1) / W);
    pred /= T;
    CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, T, d, NULL, 0, T, &a) == TQ_OK, "global");
    CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, T, d, &win, 0, T, &b) == TQ_OK, "windowed");
    double dh = a.entropy - b.entropy;
    CHECK(fabs(dh - pred) <= 0.1 * pred, "entropy drop %g, predicted %g", dh, pred);
    CHECK(fabs(a.attn_kl - b.attn_kl) > 0.05 * a.attn_kl, "kl global %g vs windowed %g", a.attn_kl, b.attn_kl);
    fprintf(stderr, "  W=16 T=300: entropy %.4f -> %.4f (drop %.4f, predicted %.4f), kl %.4g -> %.4g\n", a.entropy,
            b.entropy, dh, pred, a.attn_kl, b.attn_kl);
    /* 4. W = 1: each query sees only itself: p = p̂ = 1, so KL = H = Ĥ = 0, top8 = 1 and out_rel is the mean of
     * ‖v̂_t − v_t‖/‖v_t‖. The fast path's P·V is 1.0f·v (exact), the norms in double: 1e-12. */
    tq_attn_spec one = {1, 0, 0, 0};
    double orel = 0;
    for (int t = 0; t < T; t++) {
        double num = 0, den = 0;
        for (int j = 0; j < d; j++) {
            double e = (double)s.vh[(size_t)t * d + j] - s.v[(size_t)t * d + j];
            num += e * e;
            den += (double)s.v[(size_t)t * d + j] * s.v[(size_t)t * d + j];
        }
        orel += sqrt(num / den);
    }
    orel /= T;
    for (int ref = 0; ref < 2; ref++) {
        int rc = ref ? tq_attn_eval_ref(s.q, 1, s.k, s.kh, s.v, s.vh, T, d, &one, 0, T, &a)
                     : tq_attn_eval(s.q, 1, s.k, s.kh, s.v, s.vh, T, d, &one, 0, T, &a);
        CHECK(rc == TQ_OK && a.attn_kl == 0 && a.entropy == 0 && a.entropy_q == 0 && a.top8 == 1,
              "W=1 %s: kl %g H %g top8 %g", ref ? "ref" : "fast", a.attn_kl, a.entropy, a.top8);
        CHECK_NEAR(a.out_rel, orel, 1e-12, ref ? "W=1 ref out_rel" : "W=1 fast out_rel");
    }
    /* 5. scale: scale 2/√d with q equals the default scale with 2q (×2 is exact in float, so the scores are the
     * same floats: equal to the last bit, allowed 1e-12). */
    float *q2 = malloc((size_t)T * d * 4);
    for (long i = 0; i < (long)T * d; i++) q2[i] = 2 * s.q[i];
    tq_attn_spec sc = {W, 2.0 / sqrt((double)d), 0, 0};
    CHECK(tq_attn_eval(s.q, 1, s.k, s.kh, s.v, s.vh, T, d, &sc, 0, T, &a) == TQ_OK, "scaled");
    CHECK(tq_attn_eval(q2, 1, s.k, s.kh, s.v, s.vh, T, d, &win, 0, T, &b) == TQ_OK, "doubled q");
    CHECK(fabs(a.attn_kl - b.attn_kl) <= 1e-12 && fabs(a.entropy - b.entropy) <= 1e-12 &&
          fabs(a.out_rel - b.out_rel) <= 1e-12, "scale 2/sqrt(d) == 2q");
    CHECK(tq_attn_eval(s.q, 1, s.k, s.kh, s.v, s.vh, T, d, &win, 0, T, &c) == TQ_OK, "default scale");
    CHECK(c.entropy > a.entropy + 0.1, "a larger scale sharpens: H %g -> %g", c.entropy, a.entropy);
    free(q2);
    slice_free(&s);
}

static void test_metrics_head_spec(void)
{
    /* tq_metrics_head passes its opts' spec to the attention pass: its attention metrics are tq_attn_eval's under
     * that spec, bit for bit, and the vector / inner-product metrics do not depend on it. */
    slice s = slice_make(200, 32, 2, 13);
    tq_metrics_opts o0 = {.seed = 1, .attention = 1}, o1 = o0;
    o1.attn = (tq_attn_spec){24, 0, 0, 0};
    tq_metrics k0, v0, k1, v1;
    CHECK(tq_metrics_head(&o0, s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &k0, &v0) == TQ_OK, "global");
    CHECK(tq_metrics_head(&o1, s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &k1, &v1) == TQ_OK, "windowed");
    tq_attn_stats st;
    CHECK(tq_attn_eval(s.q, s.G, s.k, s.kh, s.v, s.vh, s.T, s.d, &o1.attn, 0, s.T, &st) == TQ_OK, "attn");
    CHECK(k1.v[TQ_MET_ATTN_KL] == st.attn_kl && k1.v[TQ_MET_ENTROPY] == st.entropy && k1.v[TQ_MET_TOP8] == st.top8 &&
          v1.v[TQ_MET_OUT_REL] == st.out_rel, "metrics_head honours the window");
    CHECK(k1.v[TQ_MET_ATTN_KL] != k0.v[TQ_MET_ATTN_KL], "and the window changes attn_kl");
    for (int m = TQ_MET_NMSE; m <= TQ_MET_IP_SLOPE; m++)
        CHECK(k0.v[m] == k1.v[m] || (isnan(k0.v[m]) && isnan(k1.v[m])), "%s independent of the window",
              tq_metric_names[m]);
    slice_free(&s);
}

static void test_dump_roundtrip(void)
{
    /* the writer's attributes read back as written; a layer never set reads as the v1 defaults; a bad spec and a
     * spec after the layer are refused */
    char path[256];
    snprintf(path, sizeof path, "%s/tq_attn_spec_%ld.h5", getenv("TQ_TMP") ? getenv("TQ_TMP") : "/tmp",
             (long)getpid());
    tq_dump_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.model, sizeof m.model, "spec-test");
    snprintf(m.rope, sizeof m.rope, "post");
    snprintf(m.architecture, sizeof m.architecture, "gemma3");
    m.n_layers = 4;
    tq_dump_writer *w;
    CHECK(tq_dump_create(&w, path, &m, TQ_DTYPE_F32) == TQ_OK, "create: %s", tq_error_msg());
    float *k = randn(2 * 8 * 16, 3, 0, 1);
    tq_layer L = {.s = {.n_kv_heads = 2, .n_tokens = 8, .head_dim = 16, .dtype = TQ_DTYPE_F32}, .keys = k};
    tq_attn_spec s0 = {512, 0.0625, 0, 10000}, s2 = {0, 0, 50, 1e6}, bad = {-3, 0, 0, 0};
    CHECK(tq_dump_set_layer_attn(w, 0, &s0) == TQ_OK, "set 0");
    CHECK(tq_dump_set_layer_attn(w, 1, &bad) == TQ_ERR_USAGE && strstr(tq_error_msg(), "layer 1"), "bad spec: %s",
          tq_error_msg());
    CHECK(tq_dump_set_layer_attn(w, 4, &s0) == TQ_ERR_USAGE, "layer out of range");
    CHECK(tq_dump_set_layer_attn(w, 2, &s2) == TQ_OK, "set 2");
    CHECK(tq_dump_set_layer_attn(w, 2, &s0) == TQ_ERR_USAGE && strstr(tq_error_msg(), "twice"), "set twice");
    for (int l = 0; l < 4; l++) CHECK(tq_dump_write_layer(w, l, &L) == TQ_OK, "write %d: %s", l, tq_error_msg());
    CHECK(tq_dump_set_layer_attn(w, 0, &s0) == TQ_ERR_USAGE && strstr(tq_error_msg(), "twice"), "set twice");
    /* after the layer is written the attributes go on its group at once (layer 3 of a 4-layer file) */
    tq_attn_spec s3 = {7, 0, 0, 500000};
    CHECK(tq_dump_set_layer_attn(w, 3, &s3) == TQ_OK, "set after write: %s", tq_error_msg());
    CHECK(tq_dump_commit(w) == TQ_OK, "commit: %s", tq_error_msg());
    tq_dump *d;
    CHECK(tq_dump_open(&d, path) == TQ_OK, "open: %s", tq_error_msg());
    if (d) {
        tq_attn_spec r[4];
        for (int l = 0; l < 4; l++) CHECK(tq_dump_layer_attn(d, l, &r[l]) == TQ_OK, "read %d", l);
        CHECK(tq_dump_layer_attn(d, 4, &r[0]) == TQ_ERR_USAGE, "layer 4 does not exist");
        CHECK(r[3].window == 7 && r[3].scale == 0.25 && r[3].rope_base == 500000, "layer 3 set after its write");
        CHECK(r[0].window == 512 && r[0].scale == 0.0625 && r[0].softcap == 0 && r[0].rope_base == 10000,
              "layer 0: %d %g %g %g", r[0].window, r[0].scale, r[0].softcap, r[0].rope_base);
        CHECK(r[1].window == 0 && r[1].scale == 0.25 && r[1].softcap == 0 && r[1].rope_base == 0,
              "layer 1 defaults (scale 1/sqrt(16)): %d %g", r[1].window, r[1].scale);
        CHECK(r[2].window == 0 && r[2].scale == 0.25 && r[2].softcap == 50 && r[2].rope_base == 1e6,
              "layer 2: scale 0 written as 1/sqrt(d): %g", r[2].scale);
        const tq_dump_meta *rm = tq_dump_get_meta(d);
        CHECK(!strcmp(rm->architecture, "gemma3") && rm->version == TQ_DUMP_VERSION, "arch %s version %d",
              rm->architecture, rm->version);
        tq_dump_close(d);
    }
    unlink(path);
    /* a format-1 dump (tq synth before format 2, head_dim 16): every layer reads as global, 1/sqrt(16), no cap,
     * architecture unknown */
    if (tq_dump_open(&d, "tests/fuzz/corpus/dump/synth_f16.h5") == TQ_OK) {
        tq_attn_spec r;
        int all = 1;
        for (int l = 0; l < tq_dump_get_meta(d)->n_layers; l++)
            all &= tq_dump_layer_attn(d, l, &r) == TQ_OK && r.window == 0 && r.scale == 0.25 && r.softcap == 0;
        CHECK(all && tq_dump_get_meta(d)->version == 1 && !strcmp(tq_dump_get_meta(d)->architecture, "unknown"),
              "v1 defaults");
        tq_dump_close(d);
    } else
        CHECK(0, "cannot open the v1 seed dump: %s", tq_error_msg());
    /* the bundled dumps (format 2): SmolLM2 all global at 1/sqrt(64); Gemma 3 global at 5, 11, 17 and a 512-key
     * window elsewhere, scale 1/16 (query_pre_attn_scalar 256), no cap */
    if (tq_dump_open(&d, "datasets/smollm2-135m.h5") == TQ_OK) {
        tq_attn_spec r;
        int all = 1;
        for (int l = 0; l < tq_dump_get_meta(d)->n_layers; l++)
            all &= tq_dump_layer_attn(d, l, &r) == TQ_OK && r.window == 0 && r.scale == 0.125 && r.softcap == 0 &&
                   r.rope_base == 100000;
        CHECK(all && tq_dump_get_meta(d)->version == 2 && !strcmp(tq_dump_get_meta(d)->architecture, "llama"),
              "smollm2 spec");
        tq_dump_close(d);
    } else
        CHECK(0, "cannot open the bundled dump: %s", tq_error_msg());
    if (tq_dump_open(&d, "datasets/gemma3-270m.h5") == TQ_OK) {
        tq_attn_spec r;
        int all = tq_dump_get_meta(d)->n_layers == 18;
        for (int l = 0; l < tq_dump_get_meta(d)->n_layers; l++) {
            int global = l % 6 == 5;
            all &= tq_dump_layer_attn(d, l, &r) == TQ_OK && r.window == (global ? 0 : 512) && r.scale == 0.0625 &&
                   r.softcap == 0 && r.rope_base == (global ? 1e6 : 1e4);
        }
        CHECK(all && tq_dump_get_meta(d)->version == 2 && !strcmp(tq_dump_get_meta(d)->architecture, "gemma3"),
              "gemma3 spec");
        tq_dump_close(d);
    } else
        CHECK(0, "cannot open the bundled Gemma dump: %s", tq_error_msg());
    free(k);
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_window_memory(void)
{
    /* A windowed layer scores each tile of 64 queries against at most W + 63 keys: the workspace is 2·64·(W+63)
     * floats + outputs + scratch, independent of T (T = 32768 and T = 4096 give the same bytes), and evaluating every
     * one of 32768 rows at W = 512 (O(T·W) work, not O(T²)) raises the peak RSS by at most that plus 32 MiB of
     * slack (allocator, OpenBLAS buffers after the warm-up), as test_metrics allows the global path. */
    int T = 32768, d = 32, W = 512;
    size_t ws = tq_attn_workspace_bytes(T, d, W), nc = (size_t)W + 63;
    CHECK(ws == 2 * 64 * nc * 4 + 2 * 64 * (size_t)d * 4 + 2 * nc * 4, "workspace %zu", ws);
    CHECK(ws == tq_attn_workspace_bytes(4096, d, W), "independent of T");
    CHECK(ws * 50 < tq_attn_workspace_bytes(T, d, 0), "windowed %zu vs global %zu", ws,
          tq_attn_workspace_bytes(T, d, 0));
    float *q = randn((long)T * d, 5, 0, 1), *k = randn((long)T * d, 5, 1, 1), *kh = randn((long)T * d, 5, 2, 1);
    tq_attn_spec sp = {W, 0, 0, 0};
    tq_attn_stats st;
    CHECK(tq_attn_eval(q, 1, k, kh, k, kh, 256, d, &sp, 0, 256, &st) == TQ_OK, "warm-up");
    long before = maxrss_kb();
    CHECK(tq_attn_eval(q, 1, k, kh, k, kh, T, d, &sp, 0, T, &st) == TQ_OK, "all 32768 rows");
    long grew = maxrss_kb() - before;
    CHECK(grew * 1024L <= (long)ws + (32L << 20), "peak RSS grew %ld KiB, workspace %zu KiB", grew, ws / 1024);
    /* every row sees at most W keys: entropy at most log W */
    CHECK(st.rows == T && st.entropy <= log((double)W) && st.entropy > 0.5 * log((double)W), "rows %ld H %g",
          st.rows, st.entropy);
    fprintf(stderr, "  T=32768 W=512 all rows: peak RSS +%ld KiB (workspace %zu KiB)\n", grew, ws / 1024);
    free(q); free(k); free(kh);
}

int main(void)
{
    test_spec_check();
    test_softcap_two_keys();
    test_window_fast_vs_ref();
    test_window_semantics();
    test_metrics_head_spec();
    test_dump_roundtrip();
    test_window_memory();
    TQ_TEST_END();
}
