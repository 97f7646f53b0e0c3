/* test_sens_weights.c: the sensitivity weights behind `tq sensitivity --weights` (metric <name>_sw): tq_sens_weights
 * normalises closed-loop values to mean 1 (hand-worked cases exactly, the definition on a real scan's unit count) and
 * refuses non-finite, negative or all-zero values naming the unit; tq_sens_weigh multiplies a real scan's curves so
 * that every weighted value is weight x plain value of the same run, bit for bit (tolerance zero: one product). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "tq_test.h"

#define DUMP "datasets/smollm2-135m.h5"

static tq_sens_unit unit(int tensor, int layer, int head, double *v)
{
    return (tq_sens_unit){tensor, layer, head, 0, 0, v, NULL, NULL};
}

/* hand-worked: the mean is 2 (and 2.5), so every weight is a short binary fraction and the quotients are exact */
static void test_hand(void)
{
    double v[] = {1, 3}, w[2];
    tq_sens_unit u[] = {unit(0, 0, -1, &v[0]), unit(0, 1, -1, &v[1])};
    CHECK(tq_sens_weights(u, 2, 0, w) == TQ_OK && w[0] == 0.5 && w[1] == 1.5, "{1, 3} -> {%g, %g}, want {0.5, 1.5}",
          w[0], w[1]);
    /* two widths per unit, b = 1 read: {0, 5, 2.5, 2.5} over mean 2.5 -> {0, 2, 1, 1}; a zero weight is allowed */
    double c[] = {9, 0, 9, 5, 9, 2.5, 9, 2.5}, x[4];
    tq_sens_unit k[4];
    for (int i = 0; i < 4; i++) k[i] = unit(i / 2, i % 2, -1, c + 2 * i);
    CHECK(tq_sens_weights(k, 4, 1, x) == TQ_OK && x[0] == 0 && x[1] == 2 && x[2] == 1 && x[3] == 1,
          "width 1 of {0, 5, 2.5, 2.5} -> {%g, %g, %g, %g}, want {0, 2, 1, 1}", x[0], x[1], x[2], x[3]);
}

/* one bad value among good ones: TQ_ERR_USAGE, the message names the unit, w untouched */
static void expect_refused(const char *what, double bad, int at_tensor, int at_layer, int at_head, const char *want)
{
    double v[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, w[6];
    tq_sens_unit u[6];
    for (int i = 0; i < 6; i++) u[i] = unit(i / 3, i % 3, at_head >= 0 ? at_head : -1, &v[i]);
    for (int i = 0; i < 6; i++) w[i] = -7;
    v[at_tensor * 3 + at_layer] = bad;
    tq_error_clear();
    int rc = tq_sens_weights(u, 6, 0, w);
    int untouched = 1;
    for (int i = 0; i < 6; i++) untouched &= w[i] == -7;
    CHECK(rc == TQ_ERR_USAGE && strstr(tq_error_msg(), want) && untouched, "%s: rc %d, message '%s' (want '%s'), w %s",
          what, rc, tq_error_msg(), want, untouched ? "untouched" : "written");
}

static void test_refused(void)
{
    expect_refused("negative", -0.5, 1, 2, -1, "values layer 2 has -0.5; weights must be finite and >= 0");
    expect_refused("null", NAN, 0, 1, -1, "keys layer 1 has no value (null)");
    expect_refused("infinite", INFINITY, 0, 0, 3, "keys layer 0 head 3 has inf");
    double z[3] = {0, 0, 0}, big[2] = {DBL_MAX, DBL_MAX}, w[3] = {-7, -7, -7};
    tq_sens_unit u[3] = {unit(0, 0, -1, &z[0]), unit(0, 1, -1, &z[1]), unit(0, 2, -1, &z[2])};
    int rc = tq_sens_weights(u, 3, 0, w);
    CHECK(rc == TQ_ERR_USAGE && strstr(tq_error_msg(), "the 3 weights sum to 0") && w[0] == -7, "all zero: rc %d, '%s'",
          rc, tq_error_msg());
    tq_sens_unit b[2] = {unit(0, 0, -1, &big[0]), unit(0, 1, -1, &big[1])};
    rc = tq_sens_weights(b, 2, 0, w); /* each finite, the sum not: no mean to divide by */
    CHECK(rc == TQ_ERR_USAGE && strstr(tq_error_msg(), "sum to inf"), "overflowing sum: rc %d, '%s'", rc,
          tq_error_msg());
    CHECK(tq_sens_weights(u, 0, 0, w) == TQ_ERR_USAGE, "no units must be refused");
}

/* a real scan (the bundled SmolLM2 dump, out_rel of keys and values, 3 widths): weights of every unit, then the
 * curves weighted in place against a copy of the same run's plain curves */
static void test_scan(void)
{
    tq_qparams P[3];
    for (int b = 0; b < 3; b++) tq_qparams_default(&P[b], TQ_M_TURBO_MSE, b + 2);
    tq_sens_opts so = {.dump = DUMP, .params = P, .n_bits = 3, .metric = tq_sens_metric_find("out_rel"),
                       .tensors = {1, 1}, .tokens = 32, .threads = 1};
    tq_sens_result r;
    int rc = tq_sensitivity(&so, &r);
    CHECK(rc == TQ_OK && r.n == 60, "sensitivity: %d units: %s", r.n, tq_error_msg());
    if (rc != TQ_OK) return;
    int n = r.n;
    double *raw = malloc(sizeof(double) * n), *w = malloc(sizeof(double) * n), *plain = malloc(sizeof(double) * n * 3);
    tq_sens_unit *cl = malloc(sizeof *cl * n);
    /* closed-loop-like values spanning 13x, one unit at 0 (a layer the loop does not notice) */
    double sum = 0;
    for (int i = 0; i < n; i++) {
        raw[i] = i == 5 ? 0 : 1e-3 * (1 + (i * 7) % 13);
        sum += raw[i];
        cl[i] = unit(r.units[i].tensor, r.units[i].layer, r.units[i].head, &raw[i]);
        memcpy(plain + 3 * i, r.units[i].metric, 3 * sizeof(double));
    }
    CHECK(tq_sens_weights(cl, n, 0, w) == TQ_OK, "weights: %s", tq_error_msg());
    double mean = sum / n, wsum = 0;
    int exact = 1;
    for (int i = 0; i < n; i++) {
        exact &= w[i] == raw[i] / mean; /* the definition, summed in unit order as the library does */
        wsum += w[i];
    }
    CHECK(exact, "a weight is not raw / mean(raw)");
    /* mean 1: each weight carries one rounding of the division (2^-53 relative) and the two sums n more, so
     * |mean(w) - 1| <= (2n + 1) * 2^-53 < (n + 1) * DBL_EPSILON */
    CHECK(fabs(wsum / n - 1) <= (n + 1) * DBL_EPSILON, "mean of the weights %.17g, want 1", wsum / n);
    tq_sens_weigh(&r, 3, w);
    int same = 1, finite = 0;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 3; b++) {
            double want = w[i] * plain[3 * i + b], got = r.units[i].metric[b];
            same &= isnan(want) ? isnan(got) : !memcmp(&want, &got, sizeof got);
            finite += isfinite(got) && got > 0;
        }
    CHECK(same, "a weighted value differs from weight x plain value");
    CHECK(finite == 3 * (n - 1) && r.units[5].metric[1] == 0, "%d positive weighted values (want %d), unit 5 %g",
          finite, 3 * (n - 1), r.units[5].metric[1]);
    free(raw);
    free(w);
    free(plain);
    free(cl);
    tq_sens_free(&r);
}

int main(void)
{
    test_hand();
    test_refused();
    test_scan();
    TQ_TEST_END();
}
