/* test_rotation.c: dense rotations are orthogonal and Haar (moments of a rotated coordinate against the Beta law of a
 * uniform unit vector), Hadamard inverts itself and agrees bit for bit with its reference, sgemm paths agree with
 * the double-precision loops within the float rounding bound for a length-d dot product, streams differ by slice. */
#include "tq_test.h"

#include <stdint.h>
#include "rotation.h"
#include "tq.h"

static const double U = 1.0 / 16777216.0; /* float unit roundoff 2^-24 */

static double ortho_err(const tq_rotation *r)
{
    int d = r->d;
    double worst = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)r->m[(size_t)k * d + i] * r->m[(size_t)k * d + j];
            double e = fabs(s - (i == j));
            if (e > worst) worst = e;
        }
    return worst;
}

static void test_dense_orthogonal(int d)
{
    tq_rotation *r;
    tq_slice_id id = {0, 0, 0};
    CHECK(tq_rotation_make(&r, TQ_ROT_DENSE, d, 1, id, TQ_PURPOSE_ROTATION, 0) == TQ_OK, "make dense %d", d);
    /* Pi is orthogonal in double to ~d * 1e-16, then each entry is rounded to float (relative error <= u). An entry
     * of Pi^T Pi then moves by <= sum_k |Pi_ki Pi_kj| (2u + u^2) <= 2u (Cauchy-Schwarz, unit columns); sums are in
     * double. Bound 2u + 1e-12. */
    char what[64];
    snprintf(what, sizeof what, "d=%d max |Pi^T Pi - I|", d);
    CHECK_NEAR(ortho_err(r), 0.0, 2 * U + 1e-12, what);
    tq_rotation_free(r);
}

/* Haar: for a fixed unit u, y = Pi u is uniform on the sphere, so y_1^2 ~ Beta(1/2, (d-1)/2): E y^2 = 1/d,
 * E y^4 = 3/(d(d+2)); and the entries of Pi have mean 0 (the sign fix matters here: LAPACK's Householder QR gives
 * a biased diagonal without it). R independent rotations are the replicates; tolerances are 4 standard errors
 * estimated from the replicates themselves. */
static void test_haar_moments(void)
{
    enum { D = 64, R = 600 };
    double s2 = 0, s4 = 0, s22 = 0, s44 = 0, s11 = 0, s1111 = 0;
    double u[D], y;
    for (int j = 0; j < D; j++) u[j] = 1.0 / sqrt((double)D);
    for (int rep = 0; rep < R; rep++) {
        tq_rotation *r;
        tq_slice_id id = {rep, 0, 0};
        if (tq_rotation_make(&r, TQ_ROT_DENSE, D, 99, id, TQ_PURPOSE_ROTATION, 0) != TQ_OK) {
            CHECK(0, "make rotation %d: %s", rep, tq_error_msg());
            return;
        }
        /* per replicate: mean over the d coordinates of y^2 and y^4 for u = (1,..,1)/sqrt(d) */
        double a2 = 0, a4 = 0, p11 = 0;
        for (int i = 0; i < D; i++) {
            y = 0;
            for (int j = 0; j < D; j++) y += r->m[i * D + j] * u[j];
            a2 += y * y / D;
            a4 += y * y * y * y / D;
            p11 += r->m[i * D + i] / D; /* diagonal entries: mean 0 under Haar */
        }
        s2 += a2; s22 += a2 * a2; s4 += a4; s44 += a4 * a4; s11 += p11; s1111 += p11 * p11;
        tq_rotation_free(r);
    }
    double m2 = s2 / R, m4 = s4 / R, m11 = s11 / R;
    double se4 = sqrt((s44 / R - m4 * m4) / R), se11 = sqrt((s1111 / R - m11 * m11) / R);
    CHECK_NEAR(m2, 1.0 / D, 1e-6, "E y^2 = 1/d (norm preserved: exact up to float rounding)");
    CHECK_NEAR(m4, 3.0 / (D * (D + 2.0)), 4 * se4, "E y^4 = 3/(d(d+2))");
    /* power: the Gaussian value 3/d^2 (what an unnormalized random map would give) must lie outside the band */
    CHECK(fabs(3.0 / (D * D) - 3.0 / (D * (D + 2.0))) > 4 * se4, "E y^4 se %g too large to tell 3/(d(d+2)) "
          "from 3/d^2", se4);
    CHECK_NEAR(m11, 0.0, 4 * se11, "mean diagonal entry of Pi (sign fix)");
}

static void test_fast_vs_ref(int kind, int d)
{
    enum { N = 300 };
    tq_rotation *r;
    tq_slice_id id = {2, 1, 1};
    if (tq_rotation_make(&r, kind, d, 7, id, TQ_PURPOSE_ROTATION, 0) != TQ_OK) {
        CHECK(0, "make: %s", tq_error_msg());
        return;
    }
    float *x = malloc(sizeof(float) * N * d), *y = malloc(sizeof(float) * N * d), *yr = malloc(sizeof(float) * d);
    float *xb = malloc(sizeof(float) * N * d), *xr = malloc(sizeof(float) * d);
    tq_rng g;
    tq_rng_seed(&g, 3, 3);
    tq_rng_normals(&g, x, (long)N * d);
    tq_rotation_forward(r, x, y, N);
    tq_rotation_inverse(r, y, xb, N);
    double worst = 0, worst_inv = 0, worst_bound = 0;
    long differ = 0;
    for (int i = 0; i < N; i++) {
        double nx = 0;
        for (int j = 0; j < d; j++) nx += (double)x[i * d + j] * x[i * d + j];
        nx = sqrt(nx);
        tq_rotation_forward_ref(r, x + i * d, yr);
        tq_rotation_inverse_ref(r, y + i * d, xr);
        for (int j = 0; j < d; j++) {
            double e = fabs(y[i * d + j] - yr[j]) / nx, ei = fabs(xb[i * d + j] - xr[j]) / nx;
            if (e > worst) worst = e;
            if (ei > worst_inv) worst_inv = ei;
            differ += y[i * d + j] != yr[j] || xb[i * d + j] != xr[j];
            double rt = fabs(xb[i * d + j] - x[i * d + j]) / nx;
            if (rt > worst_bound) worst_bound = rt;
        }
    }
    char what[96];
    if (kind == TQ_ROT_DENSE) {
        /* sgemm's float dot product of a unit row with x: |error| <= gamma_d sum|Pi_ij x_j| <= gamma_d ||x||,
         * gamma_d = d u / (1 - d u); the double reference adds one final rounding (<= u |y_i| <= u ||x||). */
        double bound = d * U / (1 - d * U) + U;
        snprintf(what, sizeof what, "dense d=%d forward sgemm vs ref / ||x||", d);
        CHECK_NEAR(worst, 0.0, bound, what);
        snprintf(what, sizeof what, "dense d=%d inverse sgemm vs ref / ||x||", d);
        CHECK_NEAR(worst_inv, 0.0, bound, what);
        /* round trip: two float products (2 gamma_d) plus Pi's own non-orthogonality (2u, test above) */
        snprintf(what, sizeof what, "dense d=%d inverse(forward(x)) - x / ||x||", d);
        CHECK_NEAR(worst_bound, 0.0, 2 * d * U / (1 - d * U) + 2 * U + 2 * U, what);
    } else {
        /* same operations in the same order: bit-identical */
        CHECK(differ == 0, "hadamard d=%d: %ld values differ between fast and reference", d, differ);
        /* forward then inverse: 2(log2 d + 1) rounding steps, each relative u to the running (scaled) norm */
        int k = 0;
        while ((1 << k) < d) k++;
        snprintf(what, sizeof what, "hadamard d=%d inverse(forward(x)) - x / ||x||", d);
        CHECK_NEAR(worst_bound, 0.0, (2.0 * k + 2) * U * 1.01, what);
    }
    free(x); free(y); free(yr); free(xb); free(xr);
    tq_rotation_free(r);
}

/* Hadamard is orthogonal: the matrix built column by column from basis vectors has Pi^T Pi = I. Entries are
 * +-1/sqrt(d) rounded once (relative u), so the bound is again 2u. */
static void test_hadamard_orthogonal(int d)
{
    tq_rotation *r, dense;
    tq_slice_id id = {0, 3, 0};
    CHECK(tq_rotation_make(&r, TQ_ROT_HADAMARD, d, 5, id, TQ_PURPOSE_ROTATION, 0) == TQ_OK, "make hadamard");
    float *m = calloc((size_t)d * d, sizeof(float)), *e = calloc(d, sizeof(float)), *col = malloc(sizeof(float) * d);
    for (int j = 0; j < d; j++) {
        memset(e, 0, sizeof(float) * d);
        e[j] = 1;
        tq_rotation_forward_ref(r, e, col);
        for (int i = 0; i < d; i++) m[(size_t)i * d + j] = col[i];
    }
    dense.kind = TQ_ROT_DENSE; dense.d = d; dense.m = m; dense.signs = NULL;
    char what[64];
    snprintf(what, sizeof what, "hadamard d=%d max |Pi^T Pi - I|", d);
    CHECK_NEAR(ortho_err(&dense), 0.0, 2 * U + 1e-12, what);
    free(m); free(e); free(col);
    tq_rotation_free(r);
}

static void test_errors_and_streams(void)
{
    tq_rotation *r = (tq_rotation *)1;
    tq_slice_id id = {0, 0, 0};
    int st = tq_rotation_make(&r, TQ_ROT_HADAMARD, 96, 1, id, TQ_PURPOSE_ROTATION, 0);
    CHECK(st == TQ_ERR_USAGE && r == NULL, "hadamard d=96 is a usage error (got %d)", st);
    CHECK(strstr(tq_error_msg(), "power-of-two dim, got 96; use --rotation dense") != NULL, "message: %s",
          tq_error_msg());
    CHECK(tq_rotation_check(TQ_ROT_DENSE, 96) == TQ_OK, "dense accepts 96");
    /* keys and values of one head, and two parts of one slice, get different matrices; same inputs the same one */
    tq_slice_id k = {4, 2, TQ_TENSOR_KEYS}, v = {4, 2, TQ_TENSOR_VALUES};
    float *a, *b, *c, *p;
    tq_gaussian_matrix(&a, 16, 16, 9, k, TQ_PURPOSE_QJL, 0);
    tq_gaussian_matrix(&b, 16, 16, 9, k, TQ_PURPOSE_QJL, 0);
    tq_gaussian_matrix(&c, 16, 16, 9, v, TQ_PURPOSE_QJL, 0);
    tq_gaussian_matrix(&p, 16, 16, 9, k, TQ_PURPOSE_QJL, 1);
    CHECK(memcmp(a, b, 16 * 16 * 4) == 0, "same slice, same S");
    int same_c = 0, same_p = 0;
    for (int i = 0; i < 256; i++) { same_c += a[i] == c[i]; same_p += a[i] == p[i]; }
    CHECK(same_c == 0 && same_p == 0, "keys/values and parts differ (%d, %d equal entries)", same_c, same_p);
    free(a); free(b); free(c); free(p);
    /* S entries are N(0,1): 64x128 = 8192 draws, mean se 1/sqrt(n) = 0.011, variance se sqrt(2/n) = 0.0156; 5 se */
    float *s;
    tq_gaussian_matrix(&s, 64, 128, 1, k, TQ_PURPOSE_QJL, 0);
    double m1 = 0, m2 = 0;
    for (int i = 0; i < 64 * 128; i++) { m1 += s[i]; m2 += (double)s[i] * s[i]; }
    CHECK_NEAR(m1 / 8192, 0.0, 5 / sqrt(8192.0), "S mean");
    CHECK_NEAR(m2 / 8192, 1.0, 5 * sqrt(2 / 8192.0), "S variance");
    free(s);
}

int main(void)
{
    test_dense_orthogonal(128);
    test_dense_orthogonal(96);
    test_dense_orthogonal(3);
    test_haar_moments();
    test_fast_vs_ref(TQ_ROT_DENSE, 128);
    test_fast_vs_ref(TQ_ROT_DENSE, 96);
    test_fast_vs_ref(TQ_ROT_HADAMARD, 128);
    test_fast_vs_ref(TQ_ROT_HADAMARD, 256);
    /* the register-block FWHT covers d % 64 == 0: one block (64), many blocks + stages (512); 32 takes the loop path */
    test_fast_vs_ref(TQ_ROT_HADAMARD, 64);
    test_fast_vs_ref(TQ_ROT_HADAMARD, 512);
    test_fast_vs_ref(TQ_ROT_HADAMARD, 32);
    test_fast_vs_ref(TQ_ROT_NONE, 64);
    test_hadamard_orthogonal(64);
    test_errors_and_streams();
    TQ_TEST_END();
}
