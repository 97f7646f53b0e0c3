/* paper.h: the measurements behind the TurboQuant paper's tables (results/paper/, `make repro`) — Monte Carlo over
 * random unit vectors through the format table, and the exact theoretical values they are set against. eval/repro
 * prints these numbers and tests/test_paper asserts them, so CI checks the very code path the tables come from. */
#ifndef TQ_PAPER_H
#define TQ_PAPER_H

#include <stdint.h>

#include "quant.h"

/* One measured mean and its standard error. */
typedef struct { double mean, se; } tq_paper_stat;

/* What to measure: n vectors x (unit, or i.i.d. N(0, I/d) when gauss) quantized with p at dimension d, in slices of
 * per_slice vectors; each slice is its own tq_slice_id {layer = slice index}, so it gets its own rotation and QJL
 * matrix. Each x is paired with one query y: rho < 0 draws y independently (same law as x); rho in [0, 1] sets
 * y = rho x + sqrt(1 - rho^2) z with z a unit vector orthogonal to x, so <y, x> = rho exactly (x, y unit). */
typedef struct {
    tq_qparams p;
    int d;
    long n;
    int per_slice;
    int gauss;
    double rho;
    uint64_t seed;  /* data seed (x, y); the quantizer's own seed is p.seed */
} tq_paper_cfg;

/* Standard errors are batch means over slices when there are >= 8 slices (this captures the variation between
 * rotations / QJL matrices that per-vector errors share), otherwise per vector. */
typedef struct {
    long n;
    int n_slices;
    double bits_total;      /* the format's stored bits per coordinate for one slice */
    tq_paper_stat dmse;     /* ||x - x̂||² / ||x||²: the paper's D_mse for unit x */
    tq_paper_stat dprod;    /* d · e², e = <y, x̂> − <y, x>: d·D_prod for unit x, y */
    tq_paper_stat bias;     /* e */
    tq_paper_stat sq;       /* e² */
    double slope;           /* least-squares slope (with intercept) of <y, x̂> on <y, x> */
    double qjl_theory;      /* mean over pairs of ((π/2)||y||²||x||² − <y,x>²)/m, m = p.qjl_m or d (method qjl) */
    double ip2;             /* mean <y, x>² */
} tq_paper_result;

void tq_paper_cfg_default(tq_paper_cfg *c, int method, int bits, int d, long n);
/* Runs the measurement. err (may be NULL) receives the n inner-product errors e in order. TQ_OK or negative. */
int tq_paper_measure(const tq_paper_cfg *c, tq_paper_result *r, float *err);

/* Exact theory for unit vectors at dimension d (NaN on bad arguments):
 * dmse: d × the per-coordinate MSE of the codebook `kind` (TQ_CB_BETA or TQ_CB_GAUSSIAN) on the exact Beta
 *   coordinate law — what turbo-mse's D_mse is in expectation. */
double tq_paper_dmse_exact(int d, int bits, int kind);
/* d·D_prod of turbo-prod at b bits against an independent uniform unit y: the QJL stage (m = d) on the residual r
 * of turbo-mse at b−1 bits has variance ((π/2)||r||² − <y,r>²)/d and E<y,r>² = E||r||²/d, so
 * d·D_prod = (π/2 − 1/d)·D_mse(b−1), with D_mse(0) = 1 (b = 1 is pure QJL). The paper states (π/2)·D_mse(b−1). */
double tq_paper_dprod_prod_exact(int d, int bits);
/* d·D_prod of turbo-mse against an independent uniform unit y: E<y, x−x̂>² = E||x−x̂||²/d, so = D_mse(b). */
double tq_paper_dprod_mse_exact(int d, int bits);
/* ip_slope of turbo-mse at b bits against an independent y: E[x̂ xᵀ] = (1 − D_mse(b))/d · I for a Lloyd-Max
 * codebook (proof in paper.c), so slope = 1 − D_mse(b); at b = 1 that is d·c1² → 2/π (c1 the 1-bit centroid). By the
 * same identity the mean error at <y,x> = rho is −rho·D_mse(b) (turbo-prod: 0, unbiased). */
double tq_paper_slope_exact(int d, int bits);
/* The paper's bounds on D_mse: sqrt(3)·π/2·4^−b (upper), 4^−b (lower). */
double tq_paper_dmse_upper(int bits);
double tq_paper_dmse_lower(int bits);

#endif
