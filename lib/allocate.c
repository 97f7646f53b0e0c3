/* allocate.c: exact budgeted bit allocation (multiple-choice knapsack by a Pareto-frontier dynamic programme) and
 * the rank rule. The optimum is exact, not a Lagrangian approximation: the Lagrangian (convex-hull) solution misses
 * optima that lie in the hull's gaps, which non-convex measured curves and unequal unit sizes produce. */
#include "allocate.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tq.h"

/* Feasibility compares sums of w*cost with budget * W. With integer-valued costs (bits times coordinates, exact
 * in double below 2^53) the sums are exact; budget * W is rounded once, so a relative slack of 1e-12 keeps a
 * schedule whose true average equals the budget (3.0 at W = 3 * 61440) from being refused for a rounding of B*W. */
#define CAP_SLACK 1e-12

static double unit_min(const tq_alloc_problem *p, int u, int dearest)
{
    double best = NAN;
    for (int k = 0; k < p->n_opts; k++) {
        size_t i = (size_t)u * p->n_opts + k;
        if (isnan(p->dist[i])) continue;
        if (isnan(best) || (dearest ? p->cost[i] > best : p->cost[i] < best)) best = p->cost[i];
    }
    return best;
}

static double avg_over(const tq_alloc_problem *p, int dearest)
{
    double c = 0, W = 0;
    for (int u = 0; u < p->n_units; u++) {
        c += p->w[u] * unit_min(p, u, dearest);
        W += p->w[u];
    }
    return W > 0 ? c / W : NAN;
}

double tq_alloc_min_avg(const tq_alloc_problem *p) { return avg_over(p, 0); }
double tq_alloc_max_avg(const tq_alloc_problem *p) { return avg_over(p, 1); }

void tq_alloc_eval(const tq_alloc_problem *p, const int *choice, double *total, double *avg)
{
    double d = 0, c = 0, W = 0;
    for (int u = 0; u < p->n_units; u++) {
        size_t i = (size_t)u * p->n_opts + choice[u];
        d += p->w[u] * p->dist[i];
        c += p->w[u] * p->cost[i];
        W += p->w[u];
    }
    if (total) *total = d;
    if (avg) *avg = W > 0 ? c / W : NAN;
}

/* A partial solution over units 0..u-1: its cost (sum of w*cost), its distortion (sum of w*dist), and how it was
 * reached (parent state in the previous frontier, option taken for unit u-1). */
typedef struct {
    double c, d;
    int32_t parent;
    int32_t k;
} state;

static int state_cmp(const void *a, const void *b)
{
    const state *x = a, *y = b;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

/* Why this is exact (Nemhauser-Ullmann frontier DP). After processing units 0..j-1 the programme keeps F_j, the
 * partial solutions not dominated by another (a dominates b when cost(a) <= cost(b) and dist(a) <= dist(b)),
 * minus those whose cost plus the cheapest possible completion already exceeds the budget.
 * Claim: some optimal solution S has its prefix S_j (units 0..j-1) in F_j for every j. Induction on j: F_0 = {empty}.
 * If S_j is in F_j, S_{j+1} = S_j + (option of unit j) is among the candidates generated from F_j; it is feasible
 * to complete (S completes it), so the budget pruning keeps it; if domination removes it, a kept candidate Q has
 * cost(Q) <= cost(S_{j+1}) and dist(Q) <= dist(S_{j+1}), and Q followed by S's options for units j..n-1 is feasible
 * (its cost is not larger than S's) with distortion not larger than S's, hence also optimal — replace S by it.
 * Both objective and constraint are sums over units, which is what makes prefixes exchangeable. So the cheapest of
 * the minimum-distortion states of F_n is an optimal solution. No discretisation of the budget is involved: the
 * frontier holds at most one state per distinct achievable cost (for integer bits on equal units that is at most
 * j*(bmax - bmin) + 1 states at stage j, the DP-over-total-bits bound), and exactness needs only exact cost sums. */
int tq_alloc_optimal(const tq_alloc_problem *p, double budget, int *choice, double *total, double *avg)
{
    int n = p->n_units, K = p->n_opts;
    if (n <= 0 || K <= 0) return tq_error_set(TQ_ERR_USAGE, "allocation needs at least one unit and one option");
    double W = 0;
    for (int u = 0; u < n; u++) {
        if (!(p->w[u] > 0)) return tq_error_set(TQ_ERR_USAGE, "unit %d has weight %g; weights must be positive", u, p->w[u]);
        if (isnan(unit_min(p, u, 0))) return tq_error_set(TQ_ERR_USAGE, "unit %d has no available option", u);
        W += p->w[u];
    }
    double cap = budget * W, slack = CAP_SLACK * fabs(cap);
    double *rest = tq_malloc(sizeof(double) * (size_t)(n + 1)); /* cheapest completion of units u..n-1 */
    if (!rest) return TQ_ERR_NOMEM;
    rest[n] = 0;
    for (int u = n - 1; u >= 0; u--) rest[u] = rest[u + 1] + p->w[u] * unit_min(p, u, 0);
    if (rest[0] > cap + slack) {
        double need = rest[0] / W;
        free(rest);
        return tq_error_set(TQ_ERR_USAGE, "budget %g bits is below the smallest achievable %.6g (every unit at its "
                            "fewest bits)", budget, need);
    }
    int32_t **par = tq_calloc((size_t)n, sizeof *par), **opt = tq_calloc((size_t)n, sizeof *opt);
    state *cur = tq_malloc(sizeof(state)), *cand = NULL;
    long ncur = 1;
    int rc = TQ_OK;
    if (!par || !opt || !cur) { rc = TQ_ERR_NOMEM; goto out; }
    cur[0] = (state){0, 0, -1, -1};
    for (int u = 0; u < n; u++) {
        long m = 0;
        cand = tq_malloc(sizeof(state) * (size_t)ncur * (size_t)K);
        if (!cand) { rc = TQ_ERR_NOMEM; goto out; }
        for (long i = 0; i < ncur; i++)
            for (int k = 0; k < K; k++) {
                size_t j = (size_t)u * K + k;
                if (isnan(p->dist[j])) continue;
                double c = cur[i].c + p->w[u] * p->cost[j];
                if (c + rest[u + 1] > cap + slack) continue; /* cannot be completed within the budget */
                cand[m++] = (state){c, cur[i].d + p->w[u] * p->dist[j], (int32_t)i, k};
            }
        qsort(cand, (size_t)m, sizeof *cand, state_cmp);
        long kept = 0;
        for (long i = 0; i < m; i++) /* ascending cost: keep a state only if it strictly lowers the distortion */
            if (kept == 0 || cand[i].d < cand[kept - 1].d) cand[kept++] = cand[i];
        if (kept > TQ_ALLOC_MAX_STATES) {
            rc = tq_error_set(TQ_ERR, "the allocation frontier exceeded %ld states at unit %d (too many distinct "
                              "costs); allocate per layer instead of per head", (long)TQ_ALLOC_MAX_STATES, u);
            goto out;
        }
        par[u] = tq_malloc(sizeof(int32_t) * (size_t)(kept ? kept : 1));
        opt[u] = tq_malloc(sizeof(int32_t) * (size_t)(kept ? kept : 1));
        if (!par[u] || !opt[u]) { rc = TQ_ERR_NOMEM; goto out; }
        for (long i = 0; i < kept; i++) {
            par[u][i] = cand[i].parent;
            opt[u][i] = cand[i].k;
        }
        free(cur);
        cur = cand;
        cand = NULL;
        ncur = kept;
        TQ_ASSERT(ncur > 0); /* the all-cheapest completion of any kept prefix is feasible, and F_0 was */
    }
    /* F_n: cost ascending, distortion strictly descending: the last state is the minimum (cheapest among ties
     * because equal distortions were dropped after the cheaper one). */
    long idx = ncur - 1;
    for (int u = n - 1; u >= 0; u--) {
        choice[u] = opt[u][idx];
        idx = par[u][idx];
    }
    tq_alloc_eval(p, choice, total, avg);
out:
    if (par)
        for (int u = 0; u < n; u++) free(par[u]);
    if (opt)
        for (int u = 0; u < n; u++) free(opt[u]);
    free(par);
    free(opt);
    free(cur);
    free(cand);
    free(rest);
    return rc;
}

/* ---------- rank rule ---------- */

typedef struct { double score; int unit; } ranked; /* qsort has no context argument: sort the pairs */

static int rank_cmp(const void *a, const void *b)
{
    const ranked *p = a, *q = b;
    int xn = isnan(p->score), yn = isnan(q->score);
    if (xn != yn) return xn - yn; /* NaN (unmeasured) ranks least sensitive */
    if (!xn && p->score != q->score) return p->score > q->score ? -1 : 1;
    return (p->unit > q->unit) - (p->unit < q->unit);
}

int tq_alloc_rank(int n_units, const double *w, const double *score, int n_cls, const double *frac, int *cls)
{
    if (n_units <= 0 || n_cls <= 0) return tq_error_set(TQ_ERR_USAGE, "rank rule needs units and classes");
    double fs = 0, W = 0;
    for (int k = 0; k < n_cls; k++) {
        if (!(frac[k] >= 0)) return tq_error_set(TQ_ERR_USAGE, "fraction %g is negative", frac[k]);
        fs += frac[k];
    }
    if (fabs(fs - 1) > 1e-9) return tq_error_set(TQ_ERR_USAGE, "fractions sum to %g, not 1", fs);
    for (int u = 0; u < n_units; u++) {
        if (!(w[u] > 0)) return tq_error_set(TQ_ERR_USAGE, "unit %d has weight %g; weights must be positive", u, w[u]);
        W += w[u];
    }
    ranked *order = tq_malloc(sizeof(ranked) * (size_t)n_units);
    if (!order) return TQ_ERR_NOMEM;
    for (int u = 0; u < n_units; u++) order[u] = (ranked){score[u], u};
    qsort(order, (size_t)n_units, sizeof *order, rank_cmp);
    int k = n_cls - 1;
    double used = 0;
    for (int i = 0; i < n_units; i++) {
        int u = order[i].unit;
        /* 1e-9 relative slack: 0.25 * 18 equal units must admit exactly 4 units whatever the rounding of 0.25*W */
        while (k > 0 && used + w[u] > frac[k] * W * (1 + 1e-9)) {
            k--;
            used = 0;
        }
        cls[u] = k;
        used += w[u];
    }
    free(order);
    return TQ_OK;
}

typedef struct { int dist, layer, unit; } edge_order;

static int edge_cmp(const void *a, const void *b)
{
    const edge_order *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (x->unit > y->unit) - (x->unit < y->unit);
}

int tq_alloc_boundary(const tq_alloc_problem *p, const int *layer, int n_layers, int k_edge, double budget,
                      int *choice)
{
    const int n = p->n_units, K = p->n_opts;
    if (n <= 0 || K <= 0 || n_layers <= 0 || k_edge < 0)
        return tq_error_set(TQ_ERR_USAGE, "boundary rule needs units, options, layers and k >= 0 (k = %d)", k_edge);
    double W = 0, used = 0;
    int n_mid = 0;
    edge_order *ord = tq_malloc(sizeof *ord * (size_t)n);
    if (!ord) return TQ_ERR_NOMEM;
    for (int u = 0; u < n; u++) {
        int l = layer[u], d = l < n_layers - 1 - l ? l : n_layers - 1 - l;
        W += p->w[u];
        choice[u] = d < k_edge ? K - 1 : 0;
        used += p->w[u] * p->cost[(size_t)u * K + choice[u]];
        if (d >= k_edge) ord[n_mid++] = (edge_order){d, l, u};
    }
    /* the same 1e-12 relative slack the callers allow a schedule over its budget */
    double cap = budget * W * (1 + 1e-12);
    if (used > cap) {
        free(ord);
        return tq_error_set(TQ_ERR_USAGE, "the boundary rule's %d edge layer(s) at the top width already average "
                            "%.4g bits (budget %g)", 2 * k_edge, used / W, budget);
    }
    qsort(ord, (size_t)n_mid, sizeof *ord, edge_cmp);
    for (int lev = 1; lev < K; lev++)
        for (int i = 0; i < n_mid; i++) {
            int u = ord[i].unit;
            double step = p->w[u] * (p->cost[(size_t)u * K + lev] - p->cost[(size_t)u * K + lev - 1]);
            if (used + step > cap) goto done;
            used += step;
            choice[u] = lev;
        }
done:
    free(ord);
    return TQ_OK;
}
