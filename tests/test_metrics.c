/* test_metrics.c: the metrics of lib/metrics.c and lib/attention.c against hand-computable cases (identity, known
 * scaling, a two-key softmax worked out in closed form), the tiled sgemm attention against its double reference
 * (T = 300, GQA 4:2), the pair sampler against the exhaustive sums, and the memory bound at T = 32768. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "attention.h"
#include "metrics.h"
#include "rng.h"
#include "tq.h"
#include "tq_test.h"

#define U_F32 5.960464477539063e-8 /* float unit roundoff 2^-24 */

static float *randn(long n, uint64_t seed, int purpose_head, float sd)
{
    float *x = malloc((size_t)n * sizeof(float));
    tq_rng r;
    tq_rng_derive(&r, seed, 0, purpose_head, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, x, n);
    for (long i = 0; i < n; i++) x[i] *= sd;
    return x;
}

static void test_identity(void)
{
    /* x̂ = x: every error metric is exactly 0 and every agreement metric exactly 1 — the sums see identical
     * operands, so the only slack is sqrt(xx·xx) vs xx in cos (one rounding, 2 ulp allowed). */
    int T = 40, d = 32, G = 2;
    float *q = randn((long)G * T * d, 1, 0, 1), *k = randn((long)T * d, 1, 1, 1), *v = randn((long)T * d, 1, 2, 1);
    tq_metrics mk, mv;
    tq_metrics_opts o = {.seed = 7, .layer = 0, .head = 0, .attention = 1};
    CHECK(tq_metrics_head(&o, q, G, k, k, v, v, T, d, &mk, &mv) == TQ_OK, "head: %s", tq_error_msg());
    CHECK(mk.v[TQ_MET_NMSE] == 0 && mk.v[TQ_MET_DMSE] == 0, "nmse %g dmse %g", mk.v[TQ_MET_NMSE], mk.v[TQ_MET_DMSE]);
    CHECK_NEAR(mk.v[TQ_MET_COS], 1.0, 4.5e-16, "cos identity");
    CHECK(mk.v[TQ_MET_IP_BIAS] == 0 && mk.v[TQ_MET_IP_RMSE] == 0, "ip_bias %g", mk.v[TQ_MET_IP_BIAS]);
    CHECK(mk.v[TQ_MET_IP_SLOPE] == 1.0, "slope %.17g", mk.v[TQ_MET_IP_SLOPE]);
    CHECK(mk.v[TQ_MET_ATTN_KL] == 0, "kl %g", mk.v[TQ_MET_ATTN_KL]);
    CHECK(mk.v[TQ_MET_ENTROPY_COLLAPSE] == 0, "collapse %g", mk.v[TQ_MET_ENTROPY_COLLAPSE]);
    CHECK(mk.v[TQ_MET_TOP8] == 1.0, "top8 %g", mk.v[TQ_MET_TOP8]);
    CHECK(mv.v[TQ_MET_OUT_REL] == 0, "out_rel %g", mv.v[TQ_MET_OUT_REL]);
    CHECK(mk.n_pairs == (long)G * T * (T + 1) / 2 && !mk.ip_sampled, "pairs %ld", mk.n_pairs);
    CHECK(mk.attn_rows == (long)G * T, "rows %ld", mk.attn_rows);
    /* entropy of a causal row t is at most log(t+1): the mean is below mean_t log(t+1) and above 0 */
    double hmax = 0;
    for (int t = 0; t < T; t++) hmax += log(t + 1.0) / T;
    CHECK(mk.v[TQ_MET_ENTROPY] > 0 && mk.v[TQ_MET_ENTROPY] <= hmax, "entropy %g max %g", mk.v[TQ_MET_ENTROPY], hmax);
    /* keys-row-only metrics are absent on the values row and vice versa */
    CHECK(isnan(mv.v[TQ_MET_ATTN_KL]) && isnan(mk.v[TQ_MET_OUT_REL]) && isnan(mv.v[TQ_MET_IP_BIAS]), "absent");
    free(q); free(k); free(v);
}

static void test_scaling(void)
{
    /* x̂ = a·x with a = 0.5: the product is exact in float, so nmse = dmse = (1−a)² = 0.25, cos = 1 up to double
     * summation rounding (n·d terms of relative error 2^-53 → 1e-12 relative covers n·d ≤ 1e4 with room). Inner
     * products: tq forms x = ⟨q,k⟩ and e = ⟨q,k̂−k⟩ in float; k̂ − k = −k/2 exactly, so e = −x/2 exactly and
     * slope = a, ip_nrmse = |a−1| hold to double rounding, while ip_bias = (a−1)·mean x and ip_rmse carry the float
     * dot-product error: |x_f − x| ≤ d·u·Σ_c|q_c k_c| (u = 2^-24), i.e. relative ≤ d·u ≈ 1e-6 for ip_rmse and the
     * absolute bound (1/2)·d·u·mean Σ|q_c k_c| for ip_bias. */
    int T = 60, d = 16;
    float *q = randn((long)T * d, 2, 0, 1), *k = randn((long)T * d, 2, 1, 1), *kh = malloc((size_t)T * d * 4);
    for (int c = 0; c < d; c++) k[7 * d + c] = 0; /* a zero key: skipped by dmse and cos */
    for (int i = 0; i < T * d; i++) kh[i] = 0.5f * k[i];
    tq_metrics m;
    tq_metrics_init(&m);
    tq_metrics_vec(k, kh, T, d, &m);
    CHECK_REL(m.v[TQ_MET_NMSE], 0.25, 1e-12, "nmse (1-a)^2");
    CHECK_REL(m.v[TQ_MET_DMSE], 0.25, 1e-12, "dmse (1-a)^2 (zero vector skipped)");
    CHECK_NEAR(m.v[TQ_MET_COS], 1.0, 1e-12, "cos of a positive multiple");
    CHECK(tq_metrics_ip(q, 1, k, kh, T, d, 0, 1, 0, 0, &m) == TQ_OK, "ip");
    double sx = 0, sxx = 0, sabs = 0;
    for (int t = 0; t < T; t++)
        for (int s = 0; s <= t; s++) {
            double x = 0;
            for (int c = 0; c < d; c++) {
                x += (double)q[t * d + c] * k[s * d + c];
                sabs += fabs((double)q[t * d + c] * k[s * d + c]);
            }
            sx += x;
            sxx += x * x;
        }
    double np = T * (T + 1) / 2.0;
    CHECK_REL(m.v[TQ_MET_IP_SLOPE], 0.5, 1e-12, "slope a");
    CHECK_NEAR(m.v[TQ_MET_IP_BIAS], -0.5 * sx / np, 0.5 * d * U_F32 * sabs / np, "ip_bias (a-1) mean<q,k>");
    CHECK_REL(m.v[TQ_MET_IP_RMSE], 0.5 * sqrt(sxx / np), d * U_F32, "ip_rmse |a-1| rms<q,k>");
    CHECK_REL(m.v[TQ_MET_IP_NRMSE], 0.5, 1e-12, "ip_nrmse |a-1|");
    /* all-zero slice: vector metrics absent, never NaN-as-number in a report (NaN is the absent marker) */
    float z[8] = {0};
    tq_metrics_init(&m);
    tq_metrics_vec(z, z, 2, 4, &m);
    CHECK(isnan(m.v[TQ_MET_NMSE]) && isnan(m.v[TQ_MET_COS]) && m.n_vectors == 2, "zero slice absent");
    free(q); free(k); free(kh);
}

static void test_two_keys(void)
{
    /* d = 4 (scale 1/2), q_1 = (2,0,0,0), k0 = 0, k1 = (1,0,0,0), k̂1 = k1/2: row t=1 has scores (0, 1) exact and
     * (0, 1/2) quantized, so p = (1, e)/(1+e), p̂ = (1, √e)/(1+√e). By hand:
     *   KL(p‖p̂) = p0 ln(p0/p̂0) + p1 ln(p1/p̂1) = 0.0263445860, H(p) = ln(1+e) − e/(1+e) = 0.5822031089,
     *   H(p̂) = ln(1+√e) − (√e/2)/(1+√e) = 0.6628473186; with v0 = e0, v1 = e1 and V̂ = V,
     *   out_rel = ‖p̂ − p‖/‖p‖ = 0.1971639764. Row t=0 sees one key: KL 0, H 0, out 0, top-1 overlap 1.
     * Means over the two rows halve them. Scores are exact in float (0, 1, 0.5), p in float: 2^-24 relative, so
     * 1e-6 absolute is generous for the fast path; the double reference agrees to 1e-12. */
    float q[8] = {0, 0, 0, 0, 2, 0, 0, 0}, k[8] = {0, 0, 0, 0, 1, 0, 0, 0}, kh[8] = {0, 0, 0, 0, 0.5f, 0, 0, 0};
    float v[8] = {1, 0, 0, 0, 0, 1, 0, 0};
    double e = exp(1.0), p0 = 1 / (1 + e), p1 = e / (1 + e), r0 = 1 / (1 + sqrt(e)), r1 = sqrt(e) / (1 + sqrt(e));
    double kl = p0 * log(p0 / r0) + p1 * log(p1 / r1), h = -(p0 * log(p0) + p1 * log(p1));
    double hq = -(r0 * log(r0) + r1 * log(r1)), orel = hypot(r0 - p0, r1 - p1) / hypot(p0, p1);
    CHECK_NEAR(kl, 0.0263445860, 1e-10, "hand KL");
    for (int ref = 0; ref < 2; ref++) {
        tq_attn_stats st;
        int rc = ref ? tq_attn_eval_ref(q, 1, k, kh, v, v, 2, 4, NULL, 0, 2, &st)
                     : tq_attn_eval(q, 1, k, kh, v, v, 2, 4, NULL, 0, 2, &st);
        double tol = ref ? 1e-12 : 1e-6;
        CHECK(rc == TQ_OK && st.rows == 2, "rc %d rows %ld", rc, st.rows);
        CHECK_NEAR(st.attn_kl, kl / 2, tol, ref ? "ref kl" : "fast kl");
        CHECK_NEAR(st.entropy, h / 2, tol, ref ? "ref entropy" : "fast entropy");
        CHECK_NEAR(st.entropy_q, hq / 2, tol, ref ? "ref entropy_q" : "fast entropy_q");
        CHECK_NEAR(st.out_rel, orel / 2, tol, ref ? "ref out_rel" : "fast out_rel");
        CHECK(st.top8 == 1.0, "top8 with k = min(8, t+1): %g", st.top8);
    }
    CHECK_NEAR(tq_metrics_collapse(h / 2, hq / 2), 1 - hq / h, 1e-15, "collapse");
    /* no values: out_rel absent */
    tq_attn_stats st;
    CHECK(tq_attn_eval(q, 1, k, kh, NULL, NULL, 2, 4, NULL, 0, 2, &st) == TQ_OK && isnan(st.out_rel), "no values");
    CHECK(tq_attn_eval(q, 1, k, kh, v, NULL, 2, 4, NULL, 0, 2, &st) == TQ_ERR_USAGE, "v without vhat");
    CHECK(tq_attn_eval(q, 1, k, kh, NULL, NULL, 2, 4, NULL, 1, 1, &st) == TQ_ERR_USAGE, "empty range");
}

static void test_top8(void)
{
    /* 12 keys along e0 with increasing scores; quantized keys reverse the order of the 4 smallest among the
     * top 12: row t = 11 has top8(p) = {4..11}; k̂ swaps keys 3 and 11 → top8(p̂) = {3..10}, overlap 7/8. */
    int T = 12, d = 4;
    float q[48] = {0}, k[48] = {0}, kh[48] = {0};
    for (int t = 0; t < T; t++) {
        q[t * d] = 2;
        k[t * d] = kh[t * d] = 0.1f * (float)t;
    }
    kh[3 * d] = 0.1f * 11;
    kh[11 * d] = 0.1f * 3;
    tq_attn_stats a, b;
    CHECK(tq_attn_eval(q, 1, k, kh, NULL, NULL, T, d, NULL, 11, 12, &a) == TQ_OK, "fast");
    CHECK(tq_attn_eval_ref(q, 1, k, kh, NULL, NULL, T, d, NULL, 11, 12, &b) == TQ_OK, "ref");
    CHECK(a.top8 == 7.0 / 8 && b.top8 == 7.0 / 8, "top8 %g %g, want 0.875", a.top8, b.top8);
}

static void test_fast_vs_ref(void)
{
    /* T = 300, 4 query heads on 2 kv heads (GQA 4:2: kv head h sees query heads 2h, 2h+1), d = 64, keys with a
     * quantization-like perturbation. Tolerances: float scores carry a rounding error δ ≈ u·√d·|q||k|/√d ≈ u·|q||k|
     * (random-walk accumulation over d terms), |q||k| ≈ d here, so δ ≈ 64·6e-8 ≈ 4e-6. KL, H and Ĥ move by
     * Σ_j ∂/∂s_j · δ_j, e.g. Σ (p̂_j − p_j) δ_j for KL: with independent signs that is δ·‖p̂ − p‖₂ ≲ 4e-7 per row,
     * and the mean over 600 rows shrinks it by √600 to ~2e-8; 1e-6 leaves a 50× margin (worst case, all signs
     * aligned: 2·(1 + log T)·δ ≈ 5e-5 — not expected). out_rel: P·V accumulates T float terms in random-walk
     * fashion, relative error ≈ √T·u ≈ 1e-6 of ‖pV‖ per row, again averaged: 1e-6. top8 differs only if a score
     * within δ of the 8th/9th boundary flips: the chance is ~T·δ per row, so at most a couple of rows: 2/(8·600). */
    int T = 300, d = 64, nq = 4, nkv = 2, G = nq / nkv;
    float *q = randn((long)nq * T * d, 3, 0, 1), *k = randn((long)nkv * T * d, 3, 1, 1);
    float *v = randn((long)nkv * T * d, 3, 2, 1), *dk = randn((long)nkv * T * d, 3, 3, 0.3f);
    float *dv = randn((long)nkv * T * d, 3, 4, 0.3f);
    float *kh = malloc((size_t)nkv * T * d * 4), *vh = malloc((size_t)nkv * T * d * 4);
    for (long i = 0; i < (long)nkv * T * d; i++) {
        kh[i] = k[i] + dk[i];
        vh[i] = v[i] + dv[i];
    }
    for (int h = 0; h < nkv; h++) {
        size_t ko = (size_t)h * T * d, qo = (size_t)h * G * T * d;
        tq_attn_stats a, b;
        CHECK(tq_attn_eval(q + qo, G, k + ko, kh + ko, v + ko, vh + ko, T, d, NULL, 0, T, &a) == TQ_OK, "fast");
        CHECK(tq_attn_eval_ref(q + qo, G, k + ko, kh + ko, v + ko, vh + ko, T, d, NULL, 0, T, &b) == TQ_OK, "ref");
        CHECK(a.rows == (long)G * T && b.rows == a.rows, "rows %ld", a.rows);
        CHECK_NEAR(a.attn_kl, b.attn_kl, 1e-6, "kl fast vs ref");
        CHECK_NEAR(a.entropy, b.entropy, 1e-6, "entropy fast vs ref");
        CHECK_NEAR(a.entropy_q, b.entropy_q, 1e-6, "entropy_q fast vs ref");
        CHECK_NEAR(a.out_rel, b.out_rel, 1e-6, "out_rel fast vs ref");
        CHECK_NEAR(a.top8, b.top8, 2.0 / (8 * 600), "top8 fast vs ref");
        /* σ = 0.3 noise on unit-variance keys: KL must be clearly positive and the result not trivially 0 */
        CHECK(b.attn_kl > 1e-3 && b.top8 < 1, "kl %g top8 %g", b.attn_kl, b.top8);
        fprintf(stderr, "  fast-ref h%d: kl %.3e (%.1e) H %.4f (%.1e) Hq %.4f (%.1e) out %.4f (%.1e) top8 %.4f\n", h,
                b.attn_kl, fabs(a.attn_kl - b.attn_kl), b.entropy, fabs(a.entropy - b.entropy), b.entropy_q,
                fabs(a.entropy_q - b.entropy_q), b.out_rel, fabs(a.out_rel - b.out_rel), b.top8);
        /* a sub-range of rows is the same computation restricted: rows [100, 300) of both must agree too */
        CHECK(tq_attn_eval(q + qo, G, k + ko, kh + ko, v + ko, vh + ko, T, d, NULL, 100, T, &a) == TQ_OK, "fast sub");
        CHECK(tq_attn_eval_ref(q + qo, G, k + ko, kh + ko, v + ko, vh + ko, T, d, NULL, 100, T, &b) == TQ_OK, "ref sub");
        CHECK(a.rows == (long)G * 200, "sub rows %ld", a.rows);
        CHECK_NEAR(a.attn_kl, b.attn_kl, 1e-6, "kl sub-range");
    }
    free(q); free(k); free(v); free(dk); free(dv); free(kh); free(vh);
}

static void test_sampling(void)
{
    /* T = 1500, G = 1: 1,125,750 pairs > 2^20, so the seeded sample is used: R = ⌈2·2^20/1501⌉ = 1398 of the 1500
     * query rows, each with all its keys. n_pairs = Σ(t+1) over the rows: mean R·(T+1)/2 = 2^20, sd ≈
     * √R·(T/√12)·√(1−R/T) ≈ 4.2e3 (0.4%), so within 2% of 2^20. Against the exhaustive sums: a row's mean e² scales
     * with |q|², relative sd √(2/d) = 0.25 at d = 32, so mean e² from R of T rows has relative standard error
     * 0.25/√R·√(1−R/T) = 1.7e-3 and ip_rmse half that: 5σ = 4.5e-3. The slope's error term (noise independent of q, k)
     * is ≈ 0.3/√32·|q|/√(n·var x) ≈ 1e-4 per the pairs, ×√(rows' |q| spread) for clustering: 2e-3 is > 5σ. Same seed →
     * identical numbers (deterministic stream). */
    int T = 1500, d = 32;
    float *q = randn((long)T * d, 4, 0, 1), *k = randn((long)T * d, 4, 1, 1), *dk = randn((long)T * d, 4, 2, 0.3f);
    for (long i = 0; i < (long)T * d; i++) dk[i] += 0.9f * k[i]; /* k̂ = 0.9 k + noise: slope 0.9 */
    tq_metrics a, b, c;
    tq_metrics_init(&a); tq_metrics_init(&b); tq_metrics_init(&c);
    CHECK(tq_metrics_ip(q, 1, k, dk, T, d, 0, 11, 2, 3, &a) == TQ_OK, "sampled");
    CHECK(tq_metrics_ip(q, 1, k, dk, T, d, 0, 11, 2, 3, &c) == TQ_OK, "sampled again");
    CHECK(tq_metrics_ip(q, 1, k, dk, T, d, 1L << 22, 11, 2, 3, &b) == TQ_OK, "exhaustive");
    CHECK(a.ip_sampled && labs(a.n_pairs - TQ_METRICS_MAX_PAIRS) <= TQ_METRICS_MAX_PAIRS / 50 && !b.ip_sampled &&
          b.n_pairs == 1125750L, "pairs %ld %ld", a.n_pairs, b.n_pairs);
    CHECK(memcmp(a.v, c.v, sizeof a.v) == 0, "same seed, same sample");
    CHECK_REL(a.v[TQ_MET_IP_RMSE], b.v[TQ_MET_IP_RMSE], 4.5e-3, "sampled ip_rmse");
    CHECK_NEAR(a.v[TQ_MET_IP_SLOPE], b.v[TQ_MET_IP_SLOPE], 2e-3, "sampled slope");
    CHECK_NEAR(b.v[TQ_MET_IP_SLOPE], 0.9, 0.01, "slope 0.9 (noise independent of q,k: ±0.3/√32/√1e6·5)");
    fprintf(stderr, "  sample: %ld pairs, ip_rmse rel diff %.1e, slope diff %.1e\n", a.n_pairs,
            fabs(a.v[TQ_MET_IP_RMSE] / b.v[TQ_MET_IP_RMSE] - 1), fabs(a.v[TQ_MET_IP_SLOPE] - b.v[TQ_MET_IP_SLOPE]));
    free(q); free(k); free(dk);
}

static void test_aggregate(void)
{
    /* two slices of 100 and 300 vectors: weighted means; collapse recomputed from the mean entropies */
    tq_metrics a, b, m;
    tq_metrics_init(&a); tq_metrics_init(&b);
    a.n_vectors = 100; b.n_vectors = 300;
    a.v[TQ_MET_NMSE] = 0.1; b.v[TQ_MET_NMSE] = 0.2;
    a.v[TQ_MET_ENTROPY] = 2; a.v[TQ_MET_ENTROPY_Q] = 1;
    b.v[TQ_MET_ENTROPY] = 4; b.v[TQ_MET_ENTROPY_Q] = 4;
    tq_metrics_acc acc;
    tq_metrics_acc_init(&acc);
    tq_metrics_acc_add(&acc, &a);
    tq_metrics_acc_add(&acc, &b);
    tq_metrics_acc_mean(&acc, &m);
    CHECK_NEAR(m.v[TQ_MET_NMSE], 0.175, 1e-15, "weighted nmse (0.1·100+0.2·300)/400");
    CHECK_NEAR(m.v[TQ_MET_ENTROPY_COLLAPSE], 1 - 3.25 / 3.5, 1e-15, "collapse from means 3.5, 3.25");
    CHECK(isnan(m.v[TQ_MET_ATTN_KL]) && m.n_vectors == 400, "absent stays absent");
    CHECK(tq_metric_by_name("entropy_collapse") == TQ_MET_ENTROPY_COLLAPSE && tq_metric_by_name("x") == -1, "names");
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_memory(void)
{
    /* T = 32768: a T×T float score matrix would be 4 GiB. The fast path's workspace is 2·64·T floats (16 MiB) plus
     * two 64×d outputs and two scratch rows of T floats; evaluating the last 128 query rows (full-length rows, the worst case) must raise the peak
     * RSS by at most that plus 32 MiB of slack (allocator, OpenBLAS thread buffers after its warm-up). */
    int T = 32768, d = 32;
    size_t ws = tq_attn_workspace_bytes(T, d, 0);
    CHECK(ws == 2 * 64 * (size_t)T * 4 + 2 * 64 * (size_t)d * 4 + 2 * (size_t)T * 4, "workspace %zu", ws);
    CHECK(ws < (size_t)T * T * 4 / 100, "workspace is O(tile × T), not T×T");
    float *q = randn((long)T * d, 5, 0, 1), *k = randn((long)T * d, 5, 1, 1), *kh = randn((long)T * d, 5, 2, 1);
    tq_attn_stats st;
    CHECK(tq_attn_eval(q, 1, k, kh, k, kh, 256, d, NULL, 0, 256, &st) == TQ_OK, "warm-up"); /* BLAS buffers */
    long before = maxrss_kb();
    CHECK(tq_attn_eval(q, 1, k, kh, k, kh, T, d, NULL, T - 128, T, &st) == TQ_OK, "T = 32768 rows");
    long grew = maxrss_kb() - before;
    CHECK(grew * 1024L <= (long)ws + (32L << 20), "peak RSS grew %ld KiB, workspace %zu KiB", grew, ws / 1024);
    CHECK(st.rows == 128 && st.entropy > 0.5 * log((double)T), "rows %ld entropy %g", st.rows, st.entropy);
    fprintf(stderr, "  T=32768: peak RSS +%ld KiB (workspace %zu KiB)\n", grew, ws / 1024);
    free(q); free(k); free(kh);
}

int main(void)
{
    test_identity();
    test_scaling();
    test_two_keys();
    test_top8();
    test_fast_vs_ref();
    test_sampling();
    test_aggregate();
    test_memory();
    TQ_TEST_END();
}
