/* test_codebook.c: Lloyd-Max codebooks against the published Gaussian centroids and distortions, the exact Beta
 * distortions at d = 128, the Lloyd-Max optimality conditions checked by independent quadrature (Simpson on the
 * density, not the incomplete-beta closed forms the library uses), encode search equivalence, empirical fits. */
#include "tq_test.h"

#include "codebook.h"
#include "quant.h"
#include "rng.h"
#include "tq.h"

static void test_gaussian_published(void)
{
    /* TURBOQUANT.md: unit-variance Lloyd-Max centroids (positive half), printed to 4 decimals: tolerance half a unit
     * of the last printed digit (5e-5) plus our own convergence error (1e-12). */
    static const double want[4][8] = {{0.7979}, {0.4528, 1.5104}, {0.2451, 0.7560, 1.3439, 2.1519},
                                      {0.1284, 0.3880, 0.6568, 0.9423, 1.2562, 1.6180, 2.0690, 2.7326}};
    for (int b = 1; b <= 4; b++) {
        tq_codebook cb;
        CHECK(tq_codebook_get(&cb, TQ_CB_GAUSSIAN, 1, b) == TQ_OK, "gaussian b=%d", b);
        for (int j = 0; j < cb.n / 2; j++) {
            char what[64];
            snprintf(what, sizeof what, "gaussian b=%d centroid %d", b, j);
            CHECK_NEAR(cb.cd[cb.n / 2 + j], want[b - 1][j], 5.001e-5, what);
            CHECK(cb.cd[cb.n / 2 - 1 - j] == -cb.cd[cb.n / 2 + j], "b=%d symmetric", b);
        }
    }
    /* Gaussian-limit D_mse (TURBOQUANT.md table): 0.3634, 0.1175, 0.03455, 0.00950, each to 4 significant digits:
     * half a unit of the last digit is <= 0.053% relative; allow 0.06%. The N(0,1/d) codebook at d = 128 must give
     * the same d * mse_own (scaling). */
    static const double dg[4] = {0.3634, 0.1175, 0.03455, 0.00950};
    for (int b = 1; b <= 4; b++) {
        char what[64];
        snprintf(what, sizeof what, "gaussian unit D_mse b=%d", b);
        CHECK_REL(tq_codebook_gauss_unit_mse(b), dg[b - 1], 6e-4, what);
        tq_codebook cb;
        tq_codebook_get(&cb, TQ_CB_GAUSSIAN, 128, b);
        snprintf(what, sizeof what, "gaussian d=128 d*mse_own b=%d (scale invariance)", b);
        CHECK_REL(128 * cb.mse_own, tq_codebook_gauss_unit_mse(b), 1e-9, what);
    }
}

static void test_beta_d128(void)
{
    /* The exact Beta Lloyd-Max distortions at d = 128 (issue 3): 0.3609, 0.1160, 0.03397, 0.009315 within 0.1%. */
    static const double want[4] = {0.3609, 0.1160, 0.03397, 0.009315};
    for (int b = 1; b <= 4; b++) {
        tq_codebook cb, g;
        CHECK(tq_codebook_get(&cb, TQ_CB_BETA, 128, b) == TQ_OK, "beta b=%d: %s", b, tq_error_msg());
        tq_codebook_get(&g, TQ_CB_GAUSSIAN, 128, b);
        char what[64];
        snprintf(what, sizeof what, "beta d=128 D_mse b=%d", b);
        CHECK_REL(128 * cb.mse, want[b - 1], 1e-3, what);
        /* the Lloyd-Max codebook of a density is optimal for it: the gaussian codebook does worse on the Beta */
        CHECK(cb.mse < g.mse, "b=%d beta codebook beats gaussian on beta (%g vs %g)", b, cb.mse, g.mse);
        if (b >= 2) { /* narrower: outer centroid 1..2% smaller at b = 4 (TURBOQUANT.md: ~1.5%), smaller for all b>=2 */
            double shrink = 1 - cb.cd[cb.n - 1] / g.cd[g.n - 1];
            CHECK(shrink > 0, "b=%d beta outer centroid smaller than gaussian (shrink %g)", b, shrink);
            if (b == 4) CHECK(shrink > 0.01 && shrink < 0.02, "b=4 outer centroid shrink %.4f in (1%%, 2%%)", shrink);
        }
    }
}

/* Beta density by its definition, for the independent quadrature. */
static double beta_pdf(int d, double t)
{
    if (fabs(t) >= 1) return 0;
    return exp(lgamma(d / 2.0) - lgamma((d - 1) / 2.0) - 0.5 * log(M_PI) + (d - 3) / 2.0 * log1p(-t * t));
}

/* Composite Simpson of pdf * t^k over [a, b] with N intervals. */
static double simpson(int d, int k, double a, double b, int N)
{
    double h = (b - a) / N, s = 0;
    for (int i = 0; i <= N; i++) {
        double t = a + i * h, w = (i == 0 || i == N) ? 1 : (i % 2 ? 4 : 2);
        s += w * beta_pdf(d, t) * pow(t, k);
    }
    return s * h / 3;
}

static void test_optimality(int d, int b)
{
    tq_codebook cb;
    tq_codebook_get(&cb, TQ_CB_BETA, d, b);
    double sd = 1 / sqrt((double)d), worst = 0, mse = 0;
    for (int j = 0; j < cb.n; j++) {
        double lo = j ? 0.5 * (cb.cd[j - 1] + cb.cd[j]) : -1, hi = j < cb.n - 1 ? 0.5 * (cb.cd[j] + cb.cd[j + 1]) : 1;
        double p = simpson(d, 0, lo, hi, 20000), m1 = simpson(d, 1, lo, hi, 20000), m2 = simpson(d, 2, lo, hi, 20000);
        double e = fabs(m1 / p - cb.cd[j]) / sd;
        if (e > worst) worst = e;
        mse += m2 - 2 * cb.cd[j] * m1 + cb.cd[j] * cb.cd[j] * p;
    }
    /* Simpson's error ~ h^4 f'''' / 180 with h = 1e-4 and smooth densities: ~1e-12 relative; the endpoint cells at
     * d = 4 ((1-t^2)^(1/2), infinite slope at +-1) converge only like h^1.5 ~ 1e-6: bounds 1e-8 sd / 1e-5 there. */
    char what[80];
    snprintf(what, sizeof what, "d=%d b=%d centroid = conditional mean of its cell (quadrature), in sd", d, b);
    CHECK_NEAR(worst, 0.0, d == 4 ? 1e-5 : 1e-8, what);
    snprintf(what, sizeof what, "d=%d b=%d mse vs quadrature", d, b);
    CHECK_REL(cb.mse, mse, d == 4 ? 1e-5 : 1e-8, what);
}

static void test_encode_search(void)
{
    for (int b = 1; b <= 8; b++) {
        tq_codebook cb;
        tq_codebook_get(&cb, TQ_CB_BETA, 64, b);
        tq_rng r;
        tq_rng_seed(&r, b, 1);
        int bad = 0, nearest_bad = 0;
        for (int i = 0; i < 20000; i++) {
            float y = (float)(tq_rng_normal(&r) * 0.2);
            if (i < cb.n - 1) y = cb.t[i];                          /* exactly on every threshold */
            else if (i < 2 * (cb.n - 1)) y = nextafterf(cb.t[i - (cb.n - 1)], 1.0f);
            int a = tq_codebook_encode_ref(&cb, y), f = tq_codebook_encode(&cb, y);
            bad += a != f;
            /* the chosen centroid is a nearest one (ties on a threshold may go either way) */
            for (int j = 0; j < cb.n; j++)
                if (fabsf(y - cb.c[j]) < fabsf(y - cb.c[a]) - 1e-6f) { nearest_bad++; break; }
        }
        float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f, -1.0f};
        for (int i = 0; i < 7; i++) bad += tq_codebook_encode_ref(&cb, specials[i]) != tq_codebook_encode(&cb, specials[i]);
        CHECK(bad == 0, "b=%d binary search != linear scan on %d values", b, bad);
        CHECK(nearest_bad == 0, "b=%d %d values not mapped to a nearest centroid", b, nearest_bad);
        CHECK(tq_codebook_encode(&cb, NAN) == 0 && tq_codebook_encode(&cb, INFINITY) == cb.n - 1, "b=%d NaN/inf", b);
    }
}

static void test_empirical(void)
{
    /* Sample: coordinates of 2000 uniform random unit vectors in d = 64 (normalized Gaussians): 128k values drawn
     * from the Beta density. The k-means fit must land on the Beta codebook within sampling error: a cell mean from
     * n P values has se <= sd_cell / sqrt(n P) <= sd / sqrt(n P); the threshold feedback roughly doubles it. Bound
     * 2 * 5 se with P the smallest cell's sample fraction. */
    enum { D = 64, V = 2000 };
    static float s[D * V];
    tq_rng r;
    tq_rng_seed(&r, 11, 2);
    for (int v = 0; v < V; v++) {
        double nn = 0;
        for (int j = 0; j < D; j++) { s[v * D + j] = (float)tq_rng_normal(&r); nn += (double)s[v * D + j] * s[v * D + j]; }
        for (int j = 0; j < D; j++) s[v * D + j] = (float)(s[v * D + j] / sqrt(nn));
    }
    for (int b = 1; b <= 3; b++) {
        tq_codebook e, bt;
        CHECK(tq_codebook_fit(&e, D, b, s, (long)D * V) == TQ_OK, "fit b=%d", b);
        tq_codebook_get(&bt, TQ_CB_BETA, D, b);
        long cnt[8] = {0};
        double se_mse = 0, sb_mse = 0;
        for (long i = 0; i < (long)D * V; i++) {
            int k = tq_codebook_encode(&e, s[i]);
            cnt[k]++;
            se_mse += (s[i] - e.c[k]) * (double)(s[i] - e.c[k]);
            int kb = tq_codebook_encode(&bt, s[i]);
            sb_mse += (s[i] - bt.c[kb]) * (double)(s[i] - bt.c[kb]);
        }
        long cmin = cnt[0];
        for (int j = 1; j < e.n; j++) if (cnt[j] < cmin) cmin = cnt[j];
        double tol = 2 * 5 / sqrt((double)D) / sqrt((double)cmin), worst = 0;
        for (int j = 0; j < e.n; j++) if (fabs(e.cd[j] - bt.cd[j]) > worst) worst = fabs(e.cd[j] - bt.cd[j]);
        char what[64];
        snprintf(what, sizeof what, "empirical b=%d centroids vs beta", b);
        CHECK_NEAR(worst, 0.0, tol, what);
        /* Lloyd from the beta start never increases the sample's own MSE (float rounding of centroids: 1e-6 rel) */
        CHECK(se_mse <= sb_mse * (1 + 1e-6), "b=%d empirical sample mse %g > beta's %g", b, se_mse, sb_mse);
        /* rebuilt from its stored floats: the very same thresholds */
        tq_codebook rb;
        CHECK(tq_codebook_from_centroids(&rb, TQ_CB_EMPIRICAL, D, b, e.c) == TQ_OK, "rebuild");
        CHECK(memcmp(rb.t, e.t, sizeof(float) * e.n) == 0, "b=%d rebuilt thresholds identical", b);
    }
}

static void test_errors(void)
{
    tq_codebook cb;
    CHECK(tq_codebook_get(&cb, TQ_CB_BETA, 128, 0) == TQ_ERR_USAGE, "bits 0");
    CHECK(tq_codebook_get(&cb, TQ_CB_BETA, 128, 9) == TQ_ERR_USAGE, "bits 9");
    CHECK(tq_codebook_get(&cb, TQ_CB_BETA, 2, 2) == TQ_ERR_USAGE, "beta d=2");
    CHECK(strstr(tq_error_msg(), "dim >= 3, got 2") != NULL, "message: %s", tq_error_msg());
    /* all widths at several dims converge, and the distortion falls with every bit; high-resolution theory says by
     * about 4x per bit (Panter-Dite), so each step must give a ratio in (3, 4.5) for b >= 2 */
    int dims[] = {3, 16, 128, 1000};
    for (int i = 0; i < 4; i++) {
        double prev = 0;
        for (int b = 1; b <= 8; b++) {
            int st = tq_codebook_get(&cb, TQ_CB_BETA, dims[i], b);
            CHECK(st == TQ_OK, "d=%d b=%d: %s", dims[i], b, tq_error_msg());
            if (b >= 2 && dims[i] > 3)
                CHECK(prev / cb.mse > 3 && prev / cb.mse < 4.5, "d=%d b=%d distortion ratio %g", dims[i], b,
                      prev / cb.mse);
            prev = cb.mse;
        }
    }
}

int main(void)
{
    test_gaussian_published();
    test_beta_d128();
    test_optimality(128, 3);
    test_optimality(5, 2);
    test_optimality(4, 2);
    test_optimality(256, 4);
    test_encode_search();
    test_empirical();
    test_errors();
    TQ_TEST_END();
}
