/* test_rng.c: PCG32 against pcg-cpp's pcg32 (built from Debian's pcg_random.hpp as $BUILD/tests/pcg_ref), and the
 * samplers against theory: uniform and normal moments, normal tails, bounded-integer uniformity, stream independence. */
#include "tq_test.h"

#include <stdint.h>
#include "rng.h"

static void check_against_pcg_cpp(uint64_t seed, uint64_t stream)
{
    const char *build = getenv("BUILD");
    char cmd[1024];
    enum { N = 1000 };
    snprintf(cmd, sizeof cmd, "%s/tests/pcg_ref %llu %llu %d", build ? build : "build/rel", (unsigned long long)seed,
             (unsigned long long)stream, N);
    FILE *f = popen(cmd, "r");
    if (!f) { CHECK(0, "cannot run %s", cmd); return; }
    tq_rng r;
    tq_rng_seed(&r, seed, stream);
    int match = 0, read = 0;
    unsigned v;
    for (int i = 0; i < N && fscanf(f, "%u", &v) == 1; i++, read++) match += tq_rng_u32(&r) == v;
    int bmatch = 0;
    for (int i = 0; i < 4 && fscanf(f, "%u", &v) == 1; i++, read++) bmatch += tq_rng_bounded(&r, 1000) == v;
    int rc = pclose(f);
    CHECK(rc == 0 && read == N + 4, "pcg_ref ran (rc %d, read %d): is libpcg-cpp-dev installed?", rc, read);
    CHECK(match == N, "seed %llu stream %llu: %d/%d outputs equal pcg32", (unsigned long long)seed,
          (unsigned long long)stream, match, N);
    CHECK(bmatch == 4, "seed %llu stream %llu: bounded(1000) %d/4 equal pcg32", (unsigned long long)seed,
          (unsigned long long)stream, bmatch);
}

int main(void)
{
    check_against_pcg_cpp(42, 54);        /* the pcg32 demo's pair */
    check_against_pcg_cpp(0, 0);
    check_against_pcg_cpp(0xdeadbeefcafef00dULL, 0x123456789abcdefULL);
    check_against_pcg_cpp(1, 1ULL << 62);

    tq_rng r;
    tq_rng_seed(&r, 7, 11);
    const long n = 1000000;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    long tail3 = 0, tail4 = 0;
    for (long i = 0; i < n; i++) {
        double z = tq_rng_normal(&r);
        s1 += z; s2 += z * z; s3 += z * z * z; s4 += z * z * z * z;
        tail3 += fabs(z) > 3.0;
        tail4 += fabs(z) > 4.0;
    }
    double m1 = s1 / n, m2 = s2 / n, m3 = s3 / n, m4 = s4 / n;
    /* Standard errors of sample moments of N(0,1) with n = 1e6: mean 1/sqrt(n) = 0.001, E z^2: sqrt(2/n) = 0.0014,
     * E z^3: sqrt(15/n) = 0.0039, E z^4: sqrt(96/n) = 0.0098. Bounds at 5 standard errors. */
    CHECK_NEAR(m1, 0.0, 0.005, "normal mean");
    CHECK_NEAR(m2, 1.0, 0.0071, "normal E z^2");
    CHECK_NEAR(m3, 0.0, 0.0194, "normal E z^3");
    CHECK_NEAR(m4, 3.0, 0.049, "normal E z^4");
    /* P(|z|>3) = 0.0026998, count ~ Binomial: sd = sqrt(n p) = 52; P(|z|>4) = 6.334e-5, sd = 8. 5 sd bounds. */
    CHECK_NEAR((double)tail3, 2699.8, 5 * 52.0, "normal tail |z|>3");
    CHECK_NEAR((double)tail4, 63.34, 5 * 8.0, "normal tail |z|>4");

    /* uniform double: mean 1/2 (se 0.289/sqrt(n)), E u^2 = 1/3 (se 0.298/sqrt(n)); range [0,1). */
    double u1 = 0, u2 = 0, umin = 1, umax = 0;
    for (long i = 0; i < n; i++) {
        double u = tq_rng_double(&r);
        u1 += u; u2 += u * u;
        if (u < umin) umin = u;
        if (u > umax) umax = u;
    }
    CHECK_NEAR(u1 / n, 0.5, 5 * 0.289 / 1000, "uniform double mean");
    CHECK_NEAR(u2 / n, 1.0 / 3, 5 * 0.298 / 1000, "uniform double E u^2");
    CHECK(umin >= 0 && umax < 1, "uniform double range [%g, %g]", umin, umax);
    float fmin = 1;
    double fsum = 0;
    for (long i = 0; i < n; i++) {
        float u = tq_rng_float(&r);
        fsum += u;
        if (u < fmin) fmin = u;
        if (!(u >= 0.0f && u < 1.0f)) { CHECK(0, "float uniform %g out of [0,1)", u); break; }
    }
    CHECK_NEAR(fsum / n, 0.5, 5 * 0.289 / 1000, "uniform float mean");

    /* bounded(7): chi-square over 7 cells, df 6; P(chi2 > 22.46) = 0.001. */
    long cnt[7] = {0};
    for (long i = 0; i < n; i++) cnt[tq_rng_bounded(&r, 7)]++;
    double chi = 0, e = n / 7.0;
    for (int k = 0; k < 7; k++) chi += (cnt[k] - e) * (cnt[k] - e) / e;
    CHECK(chi < 22.46, "bounded(7) chi-square %g >= 22.46 (p < 0.001)", chi);

    /* derived streams: different (layer, head, purpose) give different sequences; same triple the same one. Two
     * independent 32-bit streams agree on a draw with probability 2^-32, so even one match in 1000 flags a bug. */
    tq_rng a, b, c;
    tq_rng_derive(&a, 5, 3, 1, TQ_PURPOSE_ROTATION);
    tq_rng_derive(&b, 5, 3, 1, TQ_PURPOSE_ROTATION);
    tq_rng_derive(&c, 5, 3, 2, TQ_PURPOSE_ROTATION);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = tq_rng_u32(&a), y = tq_rng_u32(&b), z = tq_rng_u32(&c);
        same_ab += x == y;
        same_ac += x == z;
    }
    CHECK(same_ab == 1000, "same triple reproduces (%d/1000)", same_ab);
    CHECK(same_ac == 0, "different head gives another stream (%d/1000 equal)", same_ac);
    /* correlation between two derived streams' normals: |r| < 5/sqrt(n) */
    tq_rng_derive(&a, 5, 0, 0, TQ_PURPOSE_SYNTH);
    tq_rng_derive(&b, 5, 0, 0, TQ_PURPOSE_QJL);
    double sxy = 0;
    for (long i = 0; i < 100000; i++) sxy += tq_rng_normal(&a) * tq_rng_normal(&b);
    CHECK_NEAR(sxy / 100000, 0.0, 5.0 / sqrt(100000.0), "derived streams uncorrelated");
    TQ_TEST_END();
}
