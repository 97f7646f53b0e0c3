/* test_allocate.c: the exact allocator against brute force on small random instances (non-convex curves, unequal
 * weights, fractional side-info costs, missing options), against greedy marginal analysis and the water-filling
 * bound on convex 4^-b curves, and the rank rule against the seed article's 2.94-bit count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "allocate.h"
#include "rng.h"
#include "tq.h"
#include "tq_test.h"

/* Every assignment of options (K^n <= 4^7 = 16384), in unit order so the sums round exactly as tq_alloc_eval's. */
static double brute(const tq_alloc_problem *p, double budget, int *best_choice)
{
    int n = p->n_units, K = p->n_opts, c[16] = {0};
    double W = 0, best = INFINITY;
    for (int u = 0; u < n; u++) W += p->w[u];
    for (;;) {
        double d = 0, cost = 0;
        int ok = 1;
        for (int u = 0; u < n; u++) {
            double x = p->dist[u * K + c[u]];
            if (isnan(x)) { ok = 0; break; }
            d += p->w[u] * x;
            cost += p->w[u] * p->cost[u * K + c[u]];
        }
        if (ok && cost <= budget * W * (1 + 1e-12) && d < best) {
            best = d;
            memcpy(best_choice, c, sizeof(int) * (size_t)n);
        }
        int u = 0;
        while (u < n && ++c[u] == K) c[u++] = 0;
        if (u == n) break;
    }
    return best;
}

static void test_brute_force(void)
{
    tq_rng r;
    tq_rng_derive(&r, 2024, -1, -1, TQ_PURPOSE_TEST);
    int agree = 0, infeasible_ok = 0, trials = 400, feasible_trials = 0, bad_avg = 0;
    double worst = 0;
    for (int t = 0; t < trials; t++) {
        int n = 1 + (int)tq_rng_bounded(&r, 7), K = 1 + (int)tq_rng_bounded(&r, 4);
        double w[8], cost[32], dist[32];
        int bits[4], used[9] = {0};
        for (int k = 0; k < K; k++) { /* distinct bit widths from 1..8, ascending */
            int b;
            do b = 1 + (int)tq_rng_bounded(&r, 8); while (used[b]);
            used[b] = 1;
            bits[k] = b;
        }
        for (int a = 0; a < K; a++)
            for (int b = a + 1; b < K; b++)
                if (bits[b] < bits[a]) { int x = bits[a]; bits[a] = bits[b]; bits[b] = x; }
        for (int u = 0; u < n; u++) {
            w[u] = 1 + (int)tq_rng_bounded(&r, 6);            /* unequal unit sizes */
            double side = 0.25 * (int)tq_rng_bounded(&r, 3);  /* side info 0, 0.25 or 0.5 bits per coordinate */
            int any = 0;
            for (int k = 0; k < K; k++) {
                cost[u * K + k] = bits[k] + side;
                dist[u * K + k] = tq_rng_double(&r);          /* arbitrary: non-convex, even non-monotone */
                if (tq_rng_bounded(&r, 10) == 0) dist[u * K + k] = NAN;
                else any = 1;
            }
            if (!any) dist[u * K] = 0.5;
        }
        tq_alloc_problem p = {n, K, w, cost, dist};
        double lo = tq_alloc_min_avg(&p), hi = tq_alloc_max_avg(&p);
        /* budgets from just below the minimum (infeasible) to above the maximum */
        double B = lo - 0.5 + (hi - lo + 1.0) * tq_rng_double(&r);
        int cd[8], cb[8];
        double td, ad;
        int rc = tq_alloc_optimal(&p, B, cd, &td, &ad);
        double tb = brute(&p, B, cb);
        if (isinf(tb)) {
            infeasible_ok += rc == TQ_ERR_USAGE && strstr(tq_error_msg(), "below the smallest achievable") != NULL;
            continue;
        }
        feasible_trials++;
        if (rc != TQ_OK) continue;
        bad_avg += ad > B * (1 + 1e-12);
        /* Both totals are sums of <= 7 products in unit order: equal optima differ by at most a few ulps. */
        double diff = fabs(td - tb) / fmax(fabs(tb), 1e-300);
        if (diff > worst) worst = diff;
        agree += diff <= 1e-12;
    }
    CHECK(agree == feasible_trials, "DP optimum = brute force in %d of %d feasible instances (worst rel diff %.3g)",
          agree, feasible_trials, worst);
    CHECK(infeasible_ok == trials - feasible_trials, "infeasible budgets refused: %d of %d", infeasible_ok,
          trials - feasible_trials);
    CHECK(bad_avg == 0, "achieved average above the budget in %d instances", bad_avg);
    CHECK(feasible_trials > 200 && trials - feasible_trials > 20, "both kinds exercised: %d feasible", feasible_trials);
}

/* Convex separable curves D_u(b) = a_u 4^-b with equal weights and unit bit steps: greedy marginal analysis (give the
 * next bit to the unit whose distortion drops most) is optimal (Fox 1966), so the DP must match it on a size brute
 * force cannot reach; and both lie above the continuous reverse water-filling bound n * geomean(a) * 4^-B. */
static void test_convex_greedy(void)
{
    enum { N = 90, K = 6 };
    static double w[N], cost[N * K], dist[N * K], a[N];
    tq_rng r;
    tq_rng_derive(&r, 7, -1, -1, TQ_PURPOSE_TEST);
    double lg = 0;
    for (int u = 0; u < N; u++) {
        a[u] = exp(1.5 * tq_rng_normal(&r)); /* sensitivities spread over about two decades */
        lg += log(a[u]);
        w[u] = 64 * 320;
        for (int k = 0; k < K; k++) {
            cost[u * K + k] = k + 1;
            dist[u * K + k] = a[u] * pow(4, -(k + 1));
        }
    }
    double gm = exp(lg / N);
    tq_alloc_problem p = {N, K, w, cost, dist};
    const double budgets[] = {2.5, 3.0, 3.5};
    for (int bi = 0; bi < 3; bi++) {
        double B = budgets[bi];
        int g[N], c[N];
        for (int u = 0; u < N; u++) g[u] = 0;
        for (int extra = (int)lround((B - 1) * N); extra > 0; extra--) {
            int best = -1;
            double gain = -1;
            for (int u = 0; u < N; u++)
                if (g[u] < K - 1 && dist[u * K + g[u]] - dist[u * K + g[u] + 1] > gain) {
                    gain = dist[u * K + g[u]] - dist[u * K + g[u] + 1];
                    best = u;
                }
            g[best]++;
        }
        double tg, tdp, avg, uni = 0;
        tq_alloc_eval(&p, g, &tg, NULL);
        int rc = tq_alloc_optimal(&p, B, c, &tdp, &avg);
        CHECK(rc == TQ_OK, "convex B=%g: %s", B, tq_error_msg());
        /* greedy and DP may pick different tied units; totals agree to the rounding of 90-term sums */
        CHECK_REL(tdp, tg, 1e-12, "convex: DP total = greedy total");
        CHECK(avg <= B, "convex: achieved %g <= budget %g", avg, B);
        double bound = w[0] * N * gm * pow(4, -B);
        CHECK(tdp >= bound * (1 - 1e-12), "convex B=%g: DP %g above the water-filling bound %g", B, tdp, bound);
        if (B == 3.0) {
            for (int u = 0; u < N; u++) uni += w[u] * dist[u * K + 2];
            /* The gain over uniform is set by the spread of a: the bound is gm * N * 4^-3 against mean(a) * N *
             * 4^-3, and lognormal(sigma 1.5) has mean/geomean = e^(1.125) ~ 3, so the optimum must beat uniform by
             * well over a factor 2 (integer bits lose a little against the continuous bound). */
            CHECK(tdp < 0.5 * uni, "convex B=3: optimal %g vs uniform %g", tdp, uni);
        }
    }
}

static void test_rank(void)
{
    enum { N = 18 };
    double w[N], score[N];
    int cls[N];
    for (int u = 0; u < N; u++) {
        w[u] = 1;
        score[u] = (u * 7) % N; /* a permutation of 0..17: units with score >= 14 are the top 4 */
    }
    const double frac[3] = {0.25, 0.5, 0.25}, bits[3] = {2, 3, 4};
    CHECK(tq_alloc_rank(N, w, score, 3, frac, cls) == TQ_OK, "rank: %s", tq_error_msg());
    int cnt[3] = {0}, order_ok = 1;
    double avg = 0;
    for (int u = 0; u < N; u++) {
        cnt[cls[u]]++;
        avg += bits[cls[u]] / N;
        order_ok &= cls[u] == (score[u] >= 14 ? 2 : score[u] >= 5 ? 1 : 0);
    }
    /* floor(0.25*18) = 4 layers at 4 bits, floor(0.5*18) = 9 at 3, the other 5 at 2: 53/18 = 2.944 bits */
    CHECK(cnt[2] == 4 && cnt[1] == 9 && cnt[0] == 5, "rank counts %d/%d/%d, want 5/9/4", cnt[0], cnt[1], cnt[2]);
    CHECK_NEAR(avg, 53.0 / 18.0, 1e-12, "rank average bits");
    CHECK(order_ok, "rank: classes follow the score order");
    const double badf[3] = {0.3, 0.5, 0.3};
    CHECK(tq_alloc_rank(N, w, score, 3, badf, cls) == TQ_ERR_USAGE && strstr(tq_error_msg(), "sum to 1.1"),
          "fractions not summing to 1: %s", tq_error_msg());
}

/* The boundary rule against schedules worked out by hand. */
static void test_boundary(void)
{
    enum { N = 30, K = 3 };
    double w[N], cost[N * K], dist[N * K];
    int layer[N], c[N];
    for (int u = 0; u < N; u++) {
        w[u] = 1;
        layer[u] = u;
        for (int k = 0; k < K; k++) cost[u * K + k] = 2 + k, dist[u * K + k] = 1;
    }
    tq_alloc_problem p = {N, K, w, cost, dist};
    /* 3.0 bits, k = 1: layers 0, 29 at 4 (8 bits), 28 middle layers at 2 (56): 26 of the 90 - 64 bits raise the 26
     * middle layers nearest an edge to 3; the two middle-most (14, 15: distance 14) stay at 2 */
    CHECK(tq_alloc_boundary(&p, layer, N, 1, 3.0, c) == TQ_OK, "boundary 3.0: %s", tq_error_msg());
    int ok = 1;
    for (int u = 0; u < N; u++) ok &= c[u] == (u == 0 || u == 29 ? 2 : u == 14 || u == 15 ? 0 : 1);
    CHECK(ok, "boundary 3.0, k 1: layers 0 and 29 at 4 bits, 14 and 15 at 2, the rest 3");
    /* 3.5 bits, k = 2: 4 edge layers at 4 (16), 26 at 3 (78) after level 1; 105 - 94 = 11 raise to 4 in the order
     * 2, 27, 3, 26, 4, 25, 5, 24, 6, 23, 7: layers 0-7 and 23-29 at 4 bits, 8-22 at 3 */
    CHECK(tq_alloc_boundary(&p, layer, N, 2, 3.5, c) == TQ_OK, "boundary 3.5: %s", tq_error_msg());
    ok = 1;
    for (int u = 0; u < N; u++) ok &= c[u] == (u <= 7 || u >= 23 ? 2 : 1);
    CHECK(ok, "boundary 3.5, k 2: layers 0-7 and 23-29 at 4 bits");
    /* unequal weights: a raise that does not fit stops the rule (no smaller unit later takes the slack) */
    double w2[4] = {1, 4, 1, 1}, c2[8] = {2, 4, 2, 4, 2, 4, 2, 4}, d2[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int l2[4] = {0, 1, 2, 3}, ch[4];
    tq_alloc_problem p2 = {4, 2, w2, c2, d2};
    /* W = 7, budget 3.0 -> 21 bits; edges 0, 3 at 4 (8), 1 and 2 at 2 (10): 18; raising layer 1 (distance 1, first
     * by layer index) costs 8 > 3, so nothing is raised, though layer 2 (cost 2) would have fitted */
    CHECK(tq_alloc_boundary(&p2, l2, 4, 1, 3.0, ch) == TQ_OK && ch[0] == 1 && ch[1] == 0 && ch[2] == 0 && ch[3] == 1,
          "boundary stops at the first raise over budget: %d %d %d %d", ch[0], ch[1], ch[2], ch[3]);
    CHECK(tq_alloc_boundary(&p, layer, N, 1, 2.05, c) == TQ_ERR_USAGE && strstr(tq_error_msg(), "2.133"),
          "budget below the edges: %s", tq_error_msg());
}

static void test_errors(void)
{
    double w[2] = {1, 1}, cost[4] = {2, 3, 2, 3}, dist[4] = {1, 0.5, NAN, NAN};
    tq_alloc_problem p = {2, 2, w, cost, dist};
    int c[2];
    CHECK(tq_alloc_optimal(&p, 3, c, NULL, NULL) == TQ_ERR_USAGE && strstr(tq_error_msg(), "unit 1 has no available"),
          "unit without options: %s", tq_error_msg());
    dist[2] = 0.7;
    CHECK(tq_alloc_optimal(&p, 1.99, c, NULL, NULL) == TQ_ERR_USAGE &&
          strstr(tq_error_msg(), "below the smallest achievable 2"), "infeasible: %s", tq_error_msg());
    /* budget exactly at the minimum: every unit at 2 bits */
    double t, a;
    CHECK(tq_alloc_optimal(&p, 2.0, c, &t, &a) == TQ_OK && c[0] == 0 && c[1] == 0 && a == 2.0 && t == 1.7,
          "budget at the minimum: choice %d,%d avg %g total %g", c[0], c[1], a, t);
    /* 2.5 on two equal units: one can take 3 bits; unit 0 gains 0.5, unit 1 cannot (no 3-bit option) */
    CHECK(tq_alloc_optimal(&p, 2.5, c, &t, &a) == TQ_OK && c[0] == 1 && c[1] == 0 && a == 2.5 && t == 1.2,
          "budget 2.5: choice %d,%d avg %g total %g", c[0], c[1], a, t);
}

int main(void)
{
    test_brute_force();
    test_convex_greedy();
    test_rank();
    test_boundary();
    test_errors();
    TQ_TEST_END();
}
