/* allocate.h: bit allocation across units (layers or (layer, kv head) slices of keys/values) from their measured
 * distortion curves — the exact budgeted optimum (multiple-choice knapsack, Pareto-frontier DP) and the seed
 * article's rank rule. Used by `tq mixed-schedule`; pure computation, no I/O. */
#ifndef TQ_ALLOCATE_H
#define TQ_ALLOCATE_H

/* n_units units, each offering the same n_opts options (bit widths). Unit u has weight w[u] > 0 (its coordinate
 * count); option k of unit u costs cost[u*n_opts+k] bits per coordinate and predicts distortion
 * dist[u*n_opts+k] (the unit's metric; NaN marks an option that is not available for that unit). */
typedef struct {
    int n_units, n_opts;
    const double *w;
    const double *cost;
    const double *dist;
} tq_alloc_problem;

/* Frontier states allowed per unit before tq_alloc_optimal gives up (8 bytes per kept state and unit for the
 * back-pointers, 24 * n_opts per state transiently). */
#define TQ_ALLOC_MAX_STATES (1L << 21)

/* Minimise  sum_u w[u] * dist[u, c_u]  subject to  sum_u w[u] * cost[u, c_u] <= budget * sum_u w[u]
 * (the coordinate-weighted average bits at most `budget`). Exact for any costs (proof in allocate.c).
 * choice[n_units] receives each unit's option index. *total (may be NULL) gets the objective, *avg (may be NULL)
 * the achieved weighted-average cost. TQ_ERR_USAGE when even the cheapest choice exceeds the budget (message
 * gives the smallest feasible budget) or a unit has no available option; TQ_ERR when the frontier would exceed
 * TQ_ALLOC_MAX_STATES; TQ_ERR_NOMEM. */
int tq_alloc_optimal(const tq_alloc_problem *p, double budget, int *choice, double *total, double *avg);

/* The smallest and largest achievable weighted-average cost (every unit at its cheapest / dearest available
 * option). */
double tq_alloc_min_avg(const tq_alloc_problem *p);
double tq_alloc_max_avg(const tq_alloc_problem *p);

/* Rank rule: units sorted by score, most sensitive (largest) first, ties by index; class n_cls-1 (the highest
 * bits) takes units while its weight stays within frac[n_cls-1] of the total weight, then class n_cls-2, ..., and
 * class 0 takes whatever is left. Rounding down the upper classes keeps the average at or below
 * sum_k frac[k] * bits[k] (18 equal layers at 0.25/0.5/0.25 over 2/3/4 bits: 4 + 9 + 5 layers = 2.944 bits, the seed
 * article's 2.94). cls[n_units] receives class indices 0..n_cls-1. fracs must be >= 0 and sum to 1 (± 1e-9). */
int tq_alloc_rank(int n_units, const double *w, const double *score, int n_cls, const double *frac, int *cls);

/* Boundary rule (the peers' "first and last layers at higher precision"): units of the first k_edge and last
 * k_edge of n_layers layers (layer[u]) take the dearest option, the others start at the cheapest and are raised one
 * option at a time, level by level (all to option 1 first, then to 2, ...), nearest to a boundary first (distance
 * min(l, n_layers - 1 - l), then layer, then unit index), stopping at the first raise that would take the
 * weighted-average cost above `budget`. Options must be ordered by cost, ascending, for every unit. TQ_ERR_USAGE
 * when the boundary units at the dearest option alone exceed the budget (the message gives the smallest feasible
 * budget) or k_edge < 0. */
int tq_alloc_boundary(const tq_alloc_problem *p, const int *layer, int n_layers, int k_edge, double budget,
                      int *choice);

/* Objective and weighted-average cost of a given choice (NaN distortion when an option is unavailable). */
void tq_alloc_eval(const tq_alloc_problem *p, const int *choice, double *total, double *avg);

#endif
