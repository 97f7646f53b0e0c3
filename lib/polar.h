/* polar.h: PolarQuant's angle statistics, for tests and reports (the format itself is the tq_format_polar row), and
 * its prepared rows for the closed loop. */
#ifndef TQ_POLAR_H
#define TQ_POLAR_H

#include "quant.h"

/* Mean squared error of the level-`level` angle quantizer at `bits` under that level's angle density (level 1:
 * uniform on [0, 2pi); level l >= 2: density proportional to sin^(2^(l-1)-1)(2 psi) on [0, pi/2]). To first order
 * the per-vector distortion E||x - x̂||^2/||x||^2 of PolarQuant is the sum of these over the levels. NAN on failure. */
double tq_polar_angle_mse(int level, int bits);
/* Centroid k (ascending) of the level >= 2 codebook at `bits`; NAN when out of range. */
double tq_polar_centroid(int level, int bits, int k);

/* Prepared rows, as tq_turbo_rows (lib/turbo.h): the slice's preconditioning rotation built once for (p, d, id); each
 * of x's n rows then round-trips exactly as tq_quantize + tq_dequantize of that row alone would. */
typedef struct tq_polar_rows tq_polar_rows;
int tq_polar_rows_make(tq_polar_rows **out, const tq_qparams *p, int d, tq_slice_id id);
int tq_polar_rows_roundtrip(tq_polar_rows *r, const float *x, int n, float *xhat, double *bits_total);
void tq_polar_rows_free(tq_polar_rows *r); /* NULL-safe */

#endif
