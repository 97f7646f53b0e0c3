/* test_paper.c: the paper tables' numbers (results/paper/, eval/repro) asserted against theory through the same
 * lib/paper.c code the tables are printed from: D_mse at d = 128 (table 1), d·D_prod of turbo-prod and turbo-mse and
 * the 1-bit 2/π slope (table 2), QJL's variance ((π/2)|q|²|k|² − <q,k>²)/m (table 3). A drift in a quantizer or in
 * the table code fails here. Each tolerance is the acceptance bound, and the measured standard error is checked to
 * be at most a quarter of it, so a correct build fails with probability below ~1e-4 per check (4 sigma). */
#include "tq_test.h"

#include "codebook.h"
#include "paper.h"
#include "quant.h"
#include "tq.h"

static int measure(int method, int bits, int d, long n, int per_slice, int gauss, double rho, int qjl_m,
                   tq_paper_result *r)
{
    tq_paper_cfg c;
    tq_paper_cfg_default(&c, method, bits, d, n);
    c.per_slice = per_slice;
    c.gauss = gauss;
    c.rho = rho;
    c.p.qjl_m = qjl_m;
    int rc = tq_paper_measure(&c, r, NULL);
    if (rc != TQ_OK) fprintf(stderr, "measure %d/%d: %s\n", method, bits, tq_error_msg());
    return rc;
}

/* Table 1: the exact Beta values of TURBOQUANT.md (0.361, 0.116, 0.0340, 0.00932: half a unit of the last printed
 * digit is <= 0.14% of each; allow 0.15%), and tq's D_mse within 1% of them. Per-vector ||x−x̂||² at d = 128 has a
 * coefficient of variation ~0.13 (128 nearly independent coordinate errors, each with CV ~1.5), so 16384 vectors give
 * a standard error ~0.1%: the 1% bound is ~10 sigma; we check se <= 0.25% so it is always >= 4 sigma. */
static void test_table1(void)
{
    static const double paper_exact[4] = {0.361, 0.116, 0.0340, 0.00932};
    for (int b = 1; b <= 4; b++) {
        char what[96];
        double ex = tq_paper_dmse_exact(128, b, TQ_CB_BETA);
        snprintf(what, sizeof what, "exact beta D_mse d=128 b=%d vs TURBOQUANT.md", b);
        CHECK_REL(ex, paper_exact[b - 1], 1.5e-3, what);
        /* the bounds bracket it */
        CHECK(ex > tq_paper_dmse_lower(b) && ex < tq_paper_dmse_upper(b), "b=%d %g within [4^-b, sqrt3 pi/2 4^-b]", b,
              ex);
        tq_paper_result r;
        if (measure(TQ_M_TURBO_MSE, b, 128, 16384, 1024, 0, -1, 0, &r)) {
            CHECK(0, "turbo-mse b=%d measurable", b);
            continue;
        }
        snprintf(what, sizeof what, "measured D_mse d=128 b=%d (se %.2g)", b, r.dmse.se / ex);
        CHECK_REL(r.dmse.mean, ex, 0.01, what);
        CHECK(r.dmse.se <= 0.0025 * ex, "b=%d D_mse standard error %g <= 0.25%%", b, r.dmse.se / ex);
    }
}

/* Table 2: d·D_prod = E d<y, x − x̂>² for independent unit y. turbo-prod: (π/2 − 1/d)·D_mse(b−1), unbiased; turbo-mse:
 * D_mse(b). e² has a coefficient of variation ~sqrt(2) (e is near Gaussian: a sum of d terms), so 16384 pairs give a
 * 1.1% standard error, a little more across QJL matrices (batch means over 64 slices measure both): the 5% bound is
 * ~4.5 sigma, and se <= 1.25% keeps it >= 4. */
static void test_table2(void)
{
    for (int b = 1; b <= 4; b++) {
        char what[96];
        tq_paper_result r;
        double ex = tq_paper_dprod_prod_exact(128, b);
        if (measure(TQ_M_TURBO_PROD, b, 128, 16384, 256, 0, -1, 0, &r)) {
            CHECK(0, "turbo-prod b=%d measurable", b);
            continue;
        }
        snprintf(what, sizeof what, "turbo-prod d*D_prod d=128 b=%d", b);
        CHECK_REL(r.dprod.mean, ex, 0.05, what);
        CHECK(r.dprod.se <= 0.0125 * ex, "turbo-prod b=%d se %g <= 1.25%%", b, r.dprod.se / ex);
        /* unbiased: mean error within 5 standard errors of 0 */
        CHECK(fabs(r.bias.mean) <= 5 * r.bias.se, "turbo-prod b=%d bias %g (se %g)", b, r.bias.mean, r.bias.se);

        ex = tq_paper_dprod_mse_exact(128, b);
        if (measure(TQ_M_TURBO_MSE, b, 128, 16384, 256, 0, -1, 0, &r)) continue;
        snprintf(what, sizeof what, "turbo-mse d*D_prod d=128 b=%d", b);
        CHECK_REL(r.dprod.mean, ex, 0.05, what);
        CHECK(r.dprod.se <= 0.0125 * ex, "turbo-mse b=%d se %g <= 1.25%%", b, r.dprod.se / ex);
        if (b == 1) {
            /* 2/π shrinkage: the least-squares slope has standard error sqrt(Var(resid)/(N Var<y,x>)) ≈
             * sqrt(0.23/16384) = 0.37% (residual variance (E|x̂|² − s²)/d with |x̂|² = s = 0.637); the exact slope
             * at d = 128 is 1 − 0.3609 = 0.6391, 0.39% above 2/π; 2% is the acceptance bound (>= 4 sigma away). */
            CHECK_REL(r.slope, 2 / M_PI, 0.02, "turbo-mse 1-bit slope vs 2/pi");
            CHECK_REL(r.slope, tq_paper_slope_exact(128, 1), 0.015, "turbo-mse 1-bit slope vs exact 1 - D_mse(1)");
        }
    }
    /* Fig. 2: at <y,x> = 0.5 the mean error of 2-bit turbo-mse is −0.5·D_mse(2) = −0.058 and of turbo-prod 0. The
     * error's standard deviation is ~sqrt(D/d) ~ 0.03, so 8192 pairs give se ~3e-4: 5 se is ~3% of the bias. */
    tq_paper_result r;
    if (!measure(TQ_M_TURBO_MSE, 2, 128, 8192, 512, 0, 0.5, 0, &r)) {
        double want = -0.5 * tq_paper_dmse_exact(128, 2, TQ_CB_BETA);
        CHECK_NEAR(r.bias.mean, want, 5 * r.bias.se, "turbo-mse b=2 bias at rho=0.5");
    }
    if (!measure(TQ_M_TURBO_PROD, 2, 128, 8192, 512, 0, 0.5, 0, &r))
        CHECK_NEAR(r.bias.mean, 0, 5 * r.bias.se, "turbo-prod b=2 bias at rho=0.5");
}

/* Table 3: standalone QJL with m projections on N(0, I/d) vectors (norms vary): mean e² against the mean of
 * ((π/2)|q|²|k|² − <q,k>²)/m over the same pairs, within 5%; 16384 pairs in 128 slices (own S each), se checked
 * <= 1.25% as above. */
static void test_table3(void)
{
    static const int ms[3] = {32, 128, 512};
    for (int i = 0; i < 3; i++) {
        tq_paper_result r;
        if (measure(TQ_M_QJL, 1, 128, 16384, 128, 1, -1, ms[i], &r)) {
            CHECK(0, "qjl m=%d measurable", ms[i]);
            continue;
        }
        char what[64];
        snprintf(what, sizeof what, "qjl variance m=%d", ms[i]);
        CHECK_REL(r.sq.mean, r.qjl_theory, 0.05, what);
        CHECK(r.sq.se <= 0.0125 * r.qjl_theory, "qjl m=%d se %g <= 1.25%%", ms[i], r.sq.se / r.qjl_theory);
        CHECK(fabs(r.bias.mean) <= 5 * r.bias.se, "qjl m=%d unbiased: %g (se %g)", ms[i], r.bias.mean, r.bias.se);
    }
}

/* Bad configurations are refused with a message, not measured. */
static void test_errors(void)
{
    tq_paper_cfg c;
    tq_paper_result r;
    tq_paper_cfg_default(&c, TQ_M_TURBO_MSE, 9, 128, 10);
    CHECK(tq_paper_measure(&c, &r, NULL) == TQ_ERR_USAGE, "bits 9 refused");
    tq_paper_cfg_default(&c, TQ_M_TURBO_MSE, 2, 128, 0);
    CHECK(tq_paper_measure(&c, &r, NULL) == TQ_ERR_USAGE, "n 0 refused");
    CHECK(isnan(tq_paper_dmse_exact(128, 9, TQ_CB_BETA)), "exact at 9 bits is NaN");
}

int main(void)
{
    test_table1();
    test_table2();
    test_table3();
    test_errors();
    TQ_TEST_END();
}
