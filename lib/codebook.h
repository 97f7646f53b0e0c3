/* codebook.h: scalar Lloyd-Max codebooks for one coordinate of a randomly rotated unit vector — exact for the Beta
 * density f(t) ∝ (1-t^2)^((d-3)/2) at dimension d, its N(0, 1/d) limit, or fitted on a sample (empirical) — plus
 * the expected per-coordinate distortion each gives and the threshold search that encodes with it. */
#ifndef TQ_CODEBOOK_H
#define TQ_CODEBOOK_H

#include <math.h>

#define TQ_CB_MAX_BITS 8
#define TQ_CB_MAX_LEVELS (1 << TQ_CB_MAX_BITS)

typedef struct {
    int kind;                       /* TQ_CB_* (quant.h) */
    int d, bits, n;                 /* n = 2^bits levels */
    float c[TQ_CB_MAX_LEVELS];      /* centroids, ascending; what decode reads */
    float t[TQ_CB_MAX_LEVELS];      /* thresholds t[j] = midpoint of c[j], c[j+1] for j < n-1; t[n-1] = +inf */
    double cd[TQ_CB_MAX_LEVELS];    /* centroids in double (the Lloyd-Max solution before rounding) */
    double mse;                     /* E (T - Q(T))^2 per coordinate, T ~ the Beta density at d (all kinds) */
    double mse_own;                 /* the same under the density the codebook was designed for (gaussian: N(0,1/d)) */
    int iters;                      /* Lloyd iterations it took */
} tq_codebook;

/* beta (d >= 3) or gaussian (d >= 1), bits 1..8: computed once per (kind, d, bits) and cached (thread-safe); copied
 * into *out. Lloyd iterations on the positive half (the densities are symmetric, 0 is always a threshold) with the
 * cells' mass and moments in closed form through the regularized incomplete beta function, until no centroid moves
 * more than 1e-12 of the density's standard deviation. TQ_ERR_USAGE for bad d or bits. */
int tq_codebook_get(tq_codebook *out, int kind, int d, int bits);
/* empirical: 1-D k-means (Lloyd) on `sample` (n values: rotated unit-vector coordinates), started from the beta
 * codebook at d and iterated to a fixed point; empty cells keep their centroid. Centroids are rounded to float and
 * the thresholds recomputed from the rounded values, so a codebook rebuilt from the stored floats is identical. */
int tq_codebook_fit(tq_codebook *out, int d, int bits, const float *sample, long n);
/* Rebuild a codebook from stored float centroids (ascending): thresholds and mse recomputed. */
int tq_codebook_from_centroids(tq_codebook *out, int kind, int d, int bits, const float *c);

/* Per-coordinate MSE of the Beta(d) density against n sorted centroids with midpoint thresholds. */
double tq_codebook_beta_mse(int d, const double *c, int n);
/* The Lloyd-Max distortion of the unit Gaussian at `bits` (0.3634, 0.1175, 0.03455, 0.009497 for 1..4). */
double tq_codebook_gauss_unit_mse(int bits);

/* Encode one value: the number of thresholds strictly below y (so a value on a threshold takes the lower cell, and
 * NaN takes cell 0). Reference: a linear scan. */
static inline int tq_codebook_encode_ref(const tq_codebook *cb, float y)
{
    int i = 0;
    for (int j = 0; j < cb->n - 1; j++)
        if (y > cb->t[j]) i++;
    return i;
}

/* Same result by a branchless binary search over the sorted thresholds: at step s the index is at most n - 2s, so
 * t[i + s - 1] never reads past t[n-2]. */
static inline int tq_codebook_encode(const tq_codebook *cb, float y)
{
    int i = 0;
    for (int s = cb->n >> 1; s > 0; s >>= 1) i += (y > cb->t[i + s - 1]) ? s : 0;
    return i;
}

#endif
