/* polar.h: PolarQuant's angle statistics, for tests and reports (the format itself is the tq_format_polar row). */
#ifndef TQ_POLAR_H
#define TQ_POLAR_H

/* Mean squared error of the level-`level` angle quantizer at `bits` under that level's angle density (level 1:
 * uniform on [0, 2pi); level l >= 2: density proportional to sin^(2^(l-1)-1)(2 psi) on [0, pi/2]). To first order
 * the per-vector distortion E||x - x̂||^2/||x||^2 of PolarQuant is the sum of these over the levels. NAN on failure. */
double tq_polar_angle_mse(int level, int bits);
/* Centroid k (ascending) of the level >= 2 codebook at `bits`; NAN when out of range. */
double tq_polar_centroid(int level, int bits, int k);

#endif
