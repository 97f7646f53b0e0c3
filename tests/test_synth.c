/* test_synth.c: the synthetic generators against their models — moments, outlier channel ratios, Student-t tails
 * and kurtosis, attention entropy of structured vs gaussian keys, RoPE norm invariance and relative positions,
 * determinism (same seed same bytes in any order, different seed different) and parameter validation. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "fp16.h"
#include "rng.h"
#include "synth.h"
#include "tq.h"
#include "tq_test.h"

static tq_synth_params mk(int dist, int L, int H, int HQ, int T, int d, uint64_t seed)
{
    tq_synth_params p;
    tq_synth_params_default(&p);
    p.dist = dist;
    p.n_layers = L;
    p.n_kv_heads = H;
    p.n_q_heads = HQ;
    p.n_tokens = T;
    p.head_dim = d;
    p.seed = seed;
    return p;
}

static int gen(const tq_synth_params *p, int layer, tq_layer *l)
{
    int st = tq_synth_layer(p, layer, l);
    if (st) fprintf(stderr, "tq_synth_layer: %s\n", tq_error_msg());
    return st;
}

/* Mean causal attention entropy (nats) over every query, scale 1/sqrt(d), GQA-mapped. */
static double attn_entropy(const tq_layer *l)
{
    int H = l->s.n_kv_heads, HQ = l->s.n_q_heads, T = l->s.n_tokens, d = l->s.head_dim, g = HQ / H;
    double *z = malloc(sizeof(double) * T), sum = 0;
    for (int hq = 0; hq < HQ; hq++) {
        const float *K = l->keys + (size_t)(hq / g) * T * d, *Q = l->queries + (size_t)hq * T * d;
        for (int t = 0; t < T; t++) {
            double mx = -INFINITY;
            for (int s = 0; s <= t; s++) {
                double a = 0;
                for (int j = 0; j < d; j++) a += (double)Q[(size_t)t * d + j] * K[(size_t)s * d + j];
                z[s] = a / sqrt((double)d);
                if (z[s] > mx) mx = z[s];
            }
            double zs = 0, ez = 0;
            for (int s = 0; s <= t; s++) {
                double e = exp(z[s] - mx);
                zs += e;
                ez += e * (z[s] - mx);
            }
            sum += log(zs) - ez / zs; /* H = log sum e^z - E_p[z] */
        }
    }
    free(z);
    return sum / ((double)HQ * T);
}

static void test_gaussian(void)
{
    tq_synth_params p = mk(TQ_SYNTH_GAUSSIAN, 1, 2, 4, 1024, 128, 1);
    tq_layer l;
    if (gen(&p, 0, &l)) { CHECK(0, "gaussian generation failed"); return; }
    const float *arr[3] = {l.keys, l.values, l.queries};
    size_t n[3] = {2 * 1024 * 128, 2 * 1024 * 128, 4 * 1024 * 128};
    const char *what[3] = {"keys", "values", "queries"};
    for (int a = 0; a < 3; a++) {
        double s1 = 0, s2 = 0;
        for (size_t i = 0; i < n[a]; i++) { s1 += arr[a][i]; s2 += (double)arr[a][i] * arr[a][i]; }
        double N = (double)n[a], mean = s1 / N, var = s2 / N;
        char msg[64];
        /* mean of N iid N(0,1): std 1/sqrt(N); second moment: std sqrt(2/N); 5 sigma each. */
        snprintf(msg, sizeof msg, "gaussian %s mean", what[a]);
        CHECK_NEAR(mean, 0.0, 5.0 / sqrt(N), msg);
        snprintf(msg, sizeof msg, "gaussian %s variance", what[a]);
        CHECK_NEAR(var, 1.0, 5.0 * sqrt(2.0 / N), msg);
    }
    CHECK(l.s.n_kv_heads == 2 && l.s.n_q_heads == 4 && l.s.n_tokens == 1024 && l.s.head_dim == 128 &&
          l.s.has_values && l.s.has_queries, "shape fields");
    tq_layer_free(&l);
}

static void test_outlier(void)
{
    int T = 4096;
    CHECK(tq_synth_outlier_count(128) == 4 && tq_synth_outlier_count(64) == 2 && tq_synth_outlier_count(96) == 3 &&
          tq_synth_outlier_count(256) == 8 && tq_synth_outlier_count(576) == 18 && tq_synth_outlier_count(8) == 1,
          "outlier count round(4d/128), >= 1");
    int ds[2] = {128, 96};
    for (int di = 0; di < 2; di++) {
        int d = ds[di], H = 2, n = tq_synth_outlier_count(d);
        tq_synth_params p = mk(TQ_SYNTH_OUTLIER, 2, H, H, T, d, 7);
        tq_layer l;
        if (gen(&p, 1, &l)) { CHECK(0, "outlier generation failed"); return; }
        int idx[8], nbad = 0, npooled = 0;
        double sc[8], worst = 0, pooled = 0, vmax = 0;
        for (int h = 0; h < H; h++) {
            tq_synth_outlier_channels(&p, 1, h, idx, sc);
            for (int i = 0; i < n; i++) {
                CHECK(sc[i] >= 10.0 && sc[i] <= 20.0 && (i == 0 || idx[i] > idx[i - 1]), "outlier scale in [10,20]");
            }
            for (int j = 0; j < d; j++) {
                double s2 = 0, v2 = 0;
                for (int t = 0; t < T; t++) {
                    double x = l.keys[((size_t)h * T + t) * d + j], v = l.values[((size_t)h * T + t) * d + j];
                    s2 += x * x;
                    v2 += v * v;
                }
                s2 /= T;
                v2 /= T;
                if (v2 > vmax) vmax = v2;
                double want = 1.0;
                for (int i = 0; i < n; i++)
                    if (idx[i] == j) want = sc[i] * sc[i];
                if (want > 1.0) { /* each outlier channel: variance s^2 within 5 sigma = 5 sqrt(2/T) relative */
                    double r = s2 / want;
                    if (fabs(r - 1) > worst) worst = fabs(r - 1);
                    nbad += fabs(r - 1) > 5 * sqrt(2.0 / T);
                } else {
                    pooled += s2;
                    npooled++;
                }
            }
        }
        char msg[80];
        snprintf(msg, sizeof msg, "d=%d outlier channel variance / scale^2 (worst rel dev %.4f)", d, worst);
        CHECK(nbad == 0, "%s", msg);
        /* the other channels pooled: T*npooled samples of N(0,1), 5 sigma */
        snprintf(msg, sizeof msg, "d=%d non-outlier channel variance", d);
        CHECK_NEAR(pooled / npooled, 1.0, 5 * sqrt(2.0 / ((double)T * npooled)), msg);
        /* values carry no outliers: the largest of 2d channel variances of N(0,1) stays below 1 + 6 sqrt(2/T)
         * (max of ~200 normals is < 4 sigma), far from the 100x of an outlier channel */
        snprintf(msg, sizeof msg, "d=%d values have no outlier channel", d);
        CHECK(vmax < 1 + 6 * sqrt(2.0 / T), "%s: max channel variance %.4f", msg, vmax);
        /* the outlier channels differ between heads (chosen by the seed per head) or at least between layers */
        int idx2[8];
        double sc2[8];
        tq_synth_outlier_channels(&p, 0, 0, idx2, sc2);
        tq_synth_outlier_channels(&p, 1, 0, idx, sc);
        CHECK(memcmp(idx, idx2, sizeof(int) * n) || sc[0] != sc2[0], "outlier channels depend on the layer");
        tq_layer_free(&l);
    }
}

/* Two-sided tail of Student-t with 3 dof at c*sqrt(3) (the standardized variable beyond c):
 * P(|T3| > u) = 1 - (2/pi) [ (u/sqrt3)/(1 + u^2/3) + atan(u/sqrt3) ], u/sqrt3 = c. */
static double t3_tail(double c) { return 1.0 - 2.0 / M_PI * (c / (1 + c * c) + atan(c)); }

static void test_heavy(void)
{
    /* dof 3 (default): tails against the exact CDF; binomial std sqrt(p(1-p)/N), 5 sigma. The normal tails at the
     * same c are 0.317, 4.6e-2, 6.3e-5: c = 1 and 4 separate the models by far more than the tolerance. */
    tq_synth_params p = mk(TQ_SYNTH_HEAVY, 1, 2, 2, 1024, 128, 3);
    tq_layer l;
    if (gen(&p, 0, &l)) { CHECK(0, "heavy generation failed"); return; }
    size_t N = 2 * 1024 * 128;
    double cs[4] = {1, 2, 4, 8};
    for (int a = 0; a < 2; a++) {
        const float *x = a ? l.values : l.keys;
        for (int ci = 0; ci < 4; ci++) {
            size_t cnt = 0;
            for (size_t i = 0; i < N; i++) cnt += fabs(x[i]) > cs[ci];
            double pw = t3_tail(cs[ci]);
            char msg[64];
            snprintf(msg, sizeof msg, "t3 %s tail P(|x| > %g)", a ? "values" : "keys", cs[ci]);
            CHECK_NEAR((double)cnt / N, pw, 5 * sqrt(pw * (1 - pw) / N), msg);
        }
    }
    tq_layer_free(&l);

    /* dof 12: E x^4 of the standardized t is 3 + 6/(nu - 4) = 3.75 (finite 8th moment since nu > 8:
     * E x^8 = (nu-2)^4 Gamma(4.5) Gamma(2) / (sqrt(pi) Gamma(6)) = 546.9, so the mean of x^4 over N has std
     * sqrt((546.9 - 3.75^2)/N) = 0.045 at N = 2^18); variance 1 with std sqrt((3.75 - 1)/N). 5 sigma. */
    p = mk(TQ_SYNTH_HEAVY, 1, 2, 2, 1024, 128, 4);
    p.dof = 12;
    if (gen(&p, 0, &l)) { CHECK(0, "heavy dof 12 generation failed"); return; }
    double s2 = 0, s4 = 0;
    for (size_t i = 0; i < N; i++) {
        double x2 = (double)l.keys[i] * l.keys[i];
        s2 += x2;
        s4 += x2 * x2;
    }
    CHECK_NEAR(s2 / N, 1.0, 5 * sqrt(2.75 / N), "t12 variance");
    CHECK_NEAR(s4 / N, 3.75, 5 * sqrt((546.9 - 3.75 * 3.75) / N), "t12 kurtosis 3 + 6/(nu-4)");
    tq_layer_free(&l);
}

static void test_structured(void)
{
    /* Gaussian keys and queries: scores q.k/sqrt(d) ~ N(0, 1), so the entropy over n keys is log n - 1/2 for
     * large n (H = log n + log E e^z - E[z e^z]/E e^z = log n + 1/2 - 1). Structured: the query's cluster holds
     * n/8 of the keys with scores kappa*rho (rho = e^{0.2 z}: score std 1.6), the rest score ~0, so
     * H ~ log(n/8) - 1.6^2/2 = log n - 3.4: about 2.9 nats below gaussian. We require at least 2 nats and that
     * the gaussian value matches log n - 1/2 averaged over t >= 1 within 0.15 (the large-n formula is off by
     * O(1/n) per query; causal averaging over t = 0..T-1 moves the mean by about 0.1 at T = 512). */
    int T = 512, d = 128;
    tq_synth_params pg = mk(TQ_SYNTH_GAUSSIAN, 1, 1, 2, T, d, 11), ps = pg;
    ps.dist = TQ_SYNTH_STRUCTURED;
    tq_layer lg, ls;
    if (gen(&pg, 0, &lg) || gen(&ps, 0, &ls)) { CHECK(0, "generation failed"); return; }
    double hg = attn_entropy(&lg), hs = attn_entropy(&ls), theory = 0;
    for (int t = 0; t < T; t++) theory += t ? log(t + 1.0) - 0.5 : 0.0;
    theory /= T;
    printf("attention entropy d=%d T=%d: gaussian %.3f (large-n theory %.3f), structured %.3f nats\n", d, T, hg,
           theory, hs);
    CHECK_NEAR(hg, theory, 0.15, "gaussian attention entropy vs log n - 1/2");
    CHECK(hs < hg - 2.0, "structured entropy %.3f not 2 nats below gaussian %.3f", hs, hg);
    /* keys cluster: each key's best cosine to another key is ~1 (same cluster, noise 0.25/sqrt(d) per coordinate:
     * cos = 1/(1+0.0625) = 0.94) while gaussian keys have max cosine ~ sqrt(2 ln T / d) = 0.31 */
    double mcos = 0;
    for (int t = 1; t < 64; t++) {
        const float *a = ls.keys + (size_t)t * d;
        double best = -1;
        for (int s = 0; s < T; s++) {
            if (s == t) continue;
            const float *b = ls.keys + (size_t)s * d;
            double ab = 0, aa = 0, bb = 0;
            for (int j = 0; j < d; j++) { ab += (double)a[j] * b[j]; aa += (double)a[j] * a[j]; bb += (double)b[j] * b[j]; }
            double c = ab / sqrt(aa * bb);
            if (c > best) best = c;
        }
        mcos += best / 63;
    }
    CHECK_NEAR(mcos, 1.0 / 1.0625, 0.03, "structured keys: best cosine to another key 1/(1 + 0.25^2)");
    tq_layer_free(&lg);
    tq_layer_free(&ls);

    /* hetero: scale 0.25*16^sin(pi(l+.5)/L); L = 6: layer 0 gets 0.25*16^0.259 = 0.51, layer 2 gets 3.7.
     * Structured attention is far peakier in the middle layer than at the edge. */
    tq_synth_params ph = mk(TQ_SYNTH_STRUCTURED, 6, 1, 1, 256, 64, 5);
    ph.hetero = 1;
    CHECK_NEAR(tq_synth_layer_scale(&ph, 0), 0.25 * pow(16, sin(M_PI * 0.5 / 6)), 1e-12, "hetero scale layer 0");
    CHECK_NEAR(tq_synth_layer_scale(&ph, 2), 0.25 * pow(16, sin(M_PI * 2.5 / 6)), 1e-12, "hetero scale layer 2");
    tq_layer l0, l2;
    if (gen(&ph, 0, &l0) || gen(&ph, 2, &l2)) { CHECK(0, "hetero generation failed"); return; }
    double h0 = attn_entropy(&l0), h2 = attn_entropy(&l2);
    printf("hetero structured d=64: layer 0 entropy %.3f, layer 2 entropy %.3f nats\n", h0, h2);
    /* layer 2: kappa*3.7 = 30: the top key dominates (entropy well under 1 nat); layer 0: kappa*0.51 = 4 with score
     * std 0.8 inside the cluster: entropy near log(n/8)-ish, > 2 nats */
    CHECK(h0 > h2 + 2.0, "hetero: edge layer entropy %.3f not 2 nats above middle layer %.3f", h0, h2);
    /* the keys do not depend on the layer scale: layer 2's keys equal those of a run without hetero */
    tq_synth_params pn = ph;
    pn.hetero = 0;
    tq_layer ln;
    if (gen(&pn, 2, &ln)) { CHECK(0, "generation failed"); return; }
    CHECK(!memcmp(ln.keys, l2.keys, sizeof(float) * 256 * 64), "hetero leaves keys unchanged");
    double want = tq_synth_layer_scale(&ph, 2), worst = 0;
    for (size_t i = 0; i < 256 * 64; i++)
        if (fabs(l2.queries[i] - want * ln.queries[i]) > worst) worst = fabs(l2.queries[i] - want * ln.queries[i]);
    /* queries are (scale*kappa)*(...) vs kappa*(...): equal up to float rounding of values of size ~30 */
    CHECK(worst < 64 * FLT_EPSILON * 30, "hetero queries = scale * plain queries (worst %.3g)", worst);
    tq_layer_free(&l0);
    tq_layer_free(&l2);
    tq_layer_free(&ln);

    /* layer-scales: explicit per-layer query scale */
    double sc[2] = {0.5, 2.0};
    tq_synth_params pl = mk(TQ_SYNTH_GAUSSIAN, 2, 1, 1, 8, 16, 5);
    pl.n_layer_scales = 2;
    pl.layer_scales = sc;
    CHECK(tq_synth_layer_scale(&pl, 1) == 2.0, "layer-scales value");
}

static double dot(const float *a, const float *b, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return s;
}

static void test_rope(void)
{
    /* RoPE on random vectors: each pair is rotated in double and rounded to float, so each coordinate is off by at
     * most ~1.5 ulp: |<Rx,Rx> - <x,x>| <= 4 eps <x,x> and inner products by 4 eps |q||k|. Use 8 eps. */
    int d = 128;
    tq_rng r;
    tq_rng_derive(&r, 99, -1, -1, TQ_PURPOSE_TEST);
    float q[576], k[576], a[576], b[576], c[576], e[576];
    int nbad_norm = 0, nbad_rel = 0;
    for (int trial = 0; trial < 200; trial++) {
        int dd = trial % 2 ? 576 : d;
        tq_rng_normals(&r, q, dd);
        tq_rng_normals(&r, k, dd);
        long t = (long)tq_rng_bounded(&r, 100000), s = (long)tq_rng_bounded(&r, 100000);
        long D = (long)tq_rng_bounded(&r, 100000);
        memcpy(a, k, sizeof(float) * dd);
        tq_synth_rope_apply(a, dd, s, TQ_SYNTH_ROPE_BASE);
        double nk = dot(k, k, dd), nq = dot(q, q, dd);
        nbad_norm += fabs(dot(a, a, dd) - nk) > 8 * FLT_EPSILON * nk;
        /* <R_t q, R_s k> = <R_{t+D} q, R_{s+D} k> */
        memcpy(b, q, sizeof(float) * dd);
        tq_synth_rope_apply(b, dd, t, TQ_SYNTH_ROPE_BASE);
        memcpy(c, q, sizeof(float) * dd);
        tq_synth_rope_apply(c, dd, t + D, TQ_SYNTH_ROPE_BASE);
        memcpy(e, k, sizeof(float) * dd);
        tq_synth_rope_apply(e, dd, s + D, TQ_SYNTH_ROPE_BASE);
        nbad_rel += fabs(dot(b, a, dd) - dot(c, e, dd)) > 8 * FLT_EPSILON * sqrt(nq * nk);
    }
    CHECK(nbad_norm == 0, "rope norm invariance: %d of 200 off", nbad_norm);
    CHECK(nbad_rel == 0, "rope relative position: %d of 200 off", nbad_rel);
    /* R_{-t} R_t = I up to rounding; angle of pair 0 at t = 1 is exactly 1 radian */
    float x[4] = {1, 0, 0, 0};
    tq_synth_rope_apply(x, 4, 1, TQ_SYNTH_ROPE_BASE);
    CHECK(x[0] == (float)cos(1.0) && x[2] == (float)sin(1.0), "pair (0, d/2) rotates by t*theta_0 = t");
    float y[4] = {0, 1, 0, 0};
    tq_synth_rope_apply(y, 4, 1, TQ_SYNTH_ROPE_BASE);
    CHECK(y[1] == (float)cos(0.01) && y[3] == (float)sin(0.01), "pair 1 of d=4 rotates by 10000^(-1/2) = 0.01");

    /* generated data: post-RoPE keys/queries are the pre-RoPE ones rotated by their position, bit for bit */
    int T = 300;
    tq_synth_params ppost = mk(TQ_SYNTH_ROPE, 1, 2, 4, T, d, 21), ppre = ppost;
    ppre.rope_post = 0;
    tq_layer lpost, lpre;
    if (gen(&ppost, 0, &lpost) || gen(&ppre, 0, &lpre)) { CHECK(0, "rope generation failed"); return; }
    int same = 1, nbad = 0, nrel = 0;
    double ms = 0;
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < T; t++) {
            float *pre = lpre.keys + ((size_t)h * T + t) * d, *post = lpost.keys + ((size_t)h * T + t) * d;
            memcpy(a, pre, sizeof(float) * d);
            tq_synth_rope_apply(a, d, t, TQ_SYNTH_ROPE_BASE);
            same &= !memcmp(a, post, sizeof(float) * d);
            double n0 = dot(pre, pre, d);
            nbad += fabs(dot(post, post, d) - n0) > 8 * FLT_EPSILON * n0;
            ms += dot(post, post, d) / d / (2.0 * T);
        }
    CHECK(same, "post-RoPE key t = R_t(pre-RoPE key t) bit for bit");
    CHECK(nbad == 0, "generated keys: |R_t k| = |k| (%d off)", nbad);
    /* <q_t, k_s> (post) = <pre q_t, R_{s-t} pre k_s>: depends only on s - t */
    for (int i = 0; i < 200; i++) {
        int hq = i % 4, t = (int)tq_rng_bounded(&r, T), s = (int)tq_rng_bounded(&r, T);
        const float *qp = lpost.queries + ((size_t)hq * T + t) * d, *kp = lpost.keys + ((size_t)(hq / 2) * T + s) * d;
        const float *q0 = lpre.queries + ((size_t)hq * T + t) * d, *k0 = lpre.keys + ((size_t)(hq / 2) * T + s) * d;
        memcpy(a, k0, sizeof(float) * d);
        tq_synth_rope_apply(a, d, s - t, TQ_SYNTH_ROPE_BASE);
        nrel += fabs(dot(qp, kp, d) - dot(q0, a, d)) > 16 * FLT_EPSILON * sqrt(dot(qp, qp, d) * dot(kp, kp, d));
    }
    CHECK(nrel == 0, "generated q/k: <R_t q, R_s k> = <q, R_{s-t} k> (%d of 200 off)", nrel);
    /* E|k|^2/d = 1 by construction (base 0.75 + content 0.25). The base of each head is fixed: |b|^2/d has std
     * sqrt(2 mean m^4 / d) ~ 0.1 per head, 0.07 over two heads; 4 sigma = 0.3 */
    CHECK_NEAR(ms, 1.0, 0.3, "rope mean |k|^2/d");
    /* slowly varying content: un-rotated keys at lag D have E<k_t,k_t+D>/E|k|^2 = 0.75 + 0.25 * 0.98^D
     * (base 0.75 of the energy, AR(1) content 0.25): 0.995 at D = 1, 0.84 at D = 50. The base energy of one head
     * is 0.75 +- 0.1 (see above), which moves these cosines by at most ~0.03 at D = 1 and 0.1 at D = 50. */
    int lags[2] = {1, 50};
    for (int li = 0; li < 2; li++) {
        int D = lags[li];
        double cpre = 0;
        for (int h = 0; h < 2; h++)
            for (int t = 0; t + D < T; t++) {
                const float *u = lpre.keys + ((size_t)h * T + t) * d, *v = u + (size_t)D * d;
                cpre += dot(u, v, d) / sqrt(dot(u, u, d) * dot(v, v, d)) / (2.0 * (T - D));
            }
        char msg[64];
        snprintf(msg, sizeof msg, "pre-RoPE key cosine at lag %d", D);
        CHECK_NEAR(cpre, 0.75 + 0.25 * pow(TQ_SYNTH_ROPE_RHO, D), D == 1 ? 0.03 : 0.1, msg);
    }
    /* recency: q_t is aligned with the key base, so the expected score at distance D is
     * lambda/sqrt(d) * sum_i 2 m_i^2 cos(D theta_i) (+ content): largest at D = 0. Over pairs (t, t - D) the
     * expected score gap between D = 0 and D = 100 is lambda/sqrt(d) sum_i 2 m_i^2 (1 - cos(100 theta_i)); the
     * mean weight ratio must be at least e^(gap/2) (half the gap leaves room for the per-head spread of the base). */
    double lam = TQ_SYNTH_ROPE_QSCALE * 8.0 / sqrt((double)d), gap = 0, w0 = 0, w100 = 0;
    double mg[64];
    for (int i = 0; i < d / 2; i++) mg[i] = 0.25 + 1.75 * i / (d / 2 - 1.0);
    double msum = 0;
    for (int i = 0; i < d / 2; i++) msum += mg[i];
    for (int i = 0; i < d / 2; i++)
        gap += 2 * mg[i] / (msum / (d / 2)) * 0.75 * (1 - cos(100 * pow(TQ_SYNTH_ROPE_BASE, -2.0 * i / d)));
    gap *= lam / sqrt((double)d);
    double *z = malloc(sizeof(double) * T);
    for (int hq = 0; hq < 4; hq++)
        for (int t = 100; t < T; t++) {
            const float *qv = lpost.queries + ((size_t)hq * T + t) * d, *K = lpost.keys + (size_t)(hq / 2) * T * d;
            double mx = -INFINITY, zs = 0;
            for (int s = 0; s <= t; s++) {
                z[s] = dot(qv, K + (size_t)s * d, d) / sqrt((double)d);
                if (z[s] > mx) mx = z[s];
            }
            for (int s = 0; s <= t; s++) zs += exp(z[s] - mx);
            w0 += exp(z[t] - mx) / zs;
            w100 += exp(z[t - 100] - mx) / zs;
        }
    free(z);
    printf("rope attention: mean weight at distance 0 %.4f, at 100 %.5f (score gap %.2f)\n", w0 / (4 * (T - 100)),
           w100 / (4 * (T - 100)), gap);
    CHECK(w0 > exp(gap / 2) * w100, "rope recency: weight at D=0 %.4g vs D=100 %.4g, want ratio > %.3g", w0, w100,
          exp(gap / 2));
    tq_layer_free(&lpost);
    tq_layer_free(&lpre);
}

static int layers_equal(const tq_layer *a, const tq_layer *b)
{
    size_t kv = (size_t)a->s.n_kv_heads * a->s.n_tokens * a->s.head_dim;
    size_t qn = (size_t)a->s.n_q_heads * a->s.n_tokens * a->s.head_dim;
    return !memcmp(a->keys, b->keys, kv * 4) && !memcmp(a->values, b->values, kv * 4) &&
           !memcmp(a->queries, b->queries, qn * 4);
}

static void test_determinism(void)
{
    for (int dist = 0; dist < TQ_SYNTH_COUNT; dist++) {
        const char *nm = tq_synth_dist_name(dist);
        tq_synth_params p = mk(dist, 3, 2, 4, 64, 96, 1234);
        tq_layer a[3], b[3], c;
        int ok = 1;
        for (int i = 0; i < 3; i++) ok &= !gen(&p, i, &a[i]);
        for (int i = 2; i >= 0; i--) ok &= !gen(&p, i, &b[i]); /* reverse order */
        if (!ok) { CHECK(0, "%s: generation failed", nm); return; }
        int same = 1;
        for (int i = 0; i < 3; i++) same &= layers_equal(&a[i], &b[i]);
        CHECK(same, "%s: same seed, any layer order: identical bytes", nm);
        CHECK(memcmp(a[0].keys, a[1].keys, 2 * 64 * 96 * 4), "%s: layers differ", nm);
        /* a different seed: all but a negligible fraction of values differ (float collisions ~ 2^-20) */
        tq_synth_params p2 = p;
        p2.seed = 1235;
        if (gen(&p2, 1, &c)) { CHECK(0, "generation failed"); return; }
        size_t n = 2 * 64 * 96, eq = 0;
        for (size_t i = 0; i < n; i++) eq += a[1].keys[i] == c.keys[i];
        CHECK(eq < n / 100, "%s: seed 1235 vs 1234 share %zu of %zu key values", nm, eq, n);
        tq_layer_free(&c);
        /* more tokens and more query heads: the first 64 tokens of keys/values are unchanged */
        tq_synth_params p3 = p;
        p3.n_tokens = 100;
        p3.n_q_heads = 8;
        if (gen(&p3, 1, &c)) { CHECK(0, "generation failed"); return; }
        int pref = 1;
        for (int h = 0; h < 2; h++) {
            pref &= !memcmp(c.keys + (size_t)h * 100 * 96, a[1].keys + (size_t)h * 64 * 96, 64 * 96 * 4);
            pref &= !memcmp(c.values + (size_t)h * 100 * 96, a[1].values + (size_t)h * 64 * 96, 64 * 96 * 4);
        }
        CHECK(pref, "%s: keys/values are a prefix when tokens grow and independent of q-heads", nm);
        tq_layer_free(&c);
        /* f16: every value is exactly representable in half (rounded in memory as in the file) */
        tq_synth_params p4 = p;
        p4.dtype = TQ_DTYPE_F16;
        if (gen(&p4, 0, &c)) { CHECK(0, "generation failed"); return; }
        int rep = 1, close = 1;
        for (size_t i = 0; i < n; i++) {
            rep &= tq_round_half(c.keys[i]) == c.keys[i] && tq_round_half(c.values[i]) == c.values[i];
            close &= c.keys[i] == tq_round_half(a[0].keys[i]);
        }
        CHECK(rep && close, "%s: f16 values are the f32 values rounded to half", nm);
        tq_layer_free(&c);
        for (int i = 0; i < 3; i++) { tq_layer_free(&a[i]); tq_layer_free(&b[i]); }
    }
}

static void test_check(void)
{
    struct { tq_synth_params p; const char *word; } bad[9];
    int nb = 0;
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 1, 3, 4, 8, 16, 0); bad[nb++].word = "multiple";
    bad[nb].p = mk(TQ_SYNTH_ROPE, 1, 1, 1, 8, 95, 0); bad[nb++].word = "even";
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 1, 32, 32, 1 << 20, 128, 0); bad[nb++].word = "2^31";
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 1, 1 << 30, 1 << 30, 1 << 30, 1 << 30, 0); bad[nb++].word = "2^31";
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 1001, 1, 1, 8, 16, 0); bad[nb++].word = "layers";
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 1, 1, 1, 8, 1, 0); bad[nb++].word = "dim";
    bad[nb].p = mk(TQ_SYNTH_HEAVY, 1, 1, 1, 8, 16, 0); bad[nb].p.dof = 2; bad[nb++].word = "dof";
    double sc[2] = {1, -1};
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 2, 1, 1, 8, 16, 0); bad[nb].p.n_layer_scales = 2;
    bad[nb].p.layer_scales = sc; bad[nb++].word = "layer-scales";
    bad[nb].p = mk(TQ_SYNTH_GAUSSIAN, 3, 1, 1, 8, 16, 0); bad[nb].p.n_layer_scales = 2;
    bad[nb].p.layer_scales = sc; bad[nb++].word = "one per layer";
    for (int i = 0; i < nb; i++) {
        tq_layer l;
        int st = tq_synth_layer(&bad[i].p, 0, &l);
        CHECK(st == TQ_ERR_USAGE && strstr(tq_error_msg(), bad[i].word) && !l.keys,
              "bad params %d: status %d, message '%s', want '%s'", i, st, tq_error_msg(), bad[i].word);
    }
    tq_synth_params p = mk(TQ_SYNTH_GAUSSIAN, 2, 1, 1, 8, 16, 0);
    tq_layer l;
    CHECK(tq_synth_layer(&p, 2, &l) == TQ_ERR_USAGE, "layer out of range");
    CHECK(tq_synth_dist_parse("rope") == TQ_SYNTH_ROPE && tq_synth_dist_parse("Rope") == -1, "dist names");
    char buf[512];
    p = mk(TQ_SYNTH_HEAVY, 2, 1, 1, 8, 16, 77);
    tq_synth_describe(&p, buf, sizeof buf);
    CHECK(strstr(buf, "--dist heavy") && strstr(buf, "--seed 77") && strstr(buf, "dof=3"), "describe: %s", buf);
}

int main(void)
{
    test_gaussian();
    test_outlier();
    test_heavy();
    test_structured();
    test_rope();
    test_determinism();
    test_check();
    TQ_TEST_END();
}
