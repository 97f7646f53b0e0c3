/* turbo.h: TurboQuant on the CPU — turbo-mse (rotation + Lloyd-Max codes + norm), turbo-prod (turbo-mse at b-1 bits
 * + 1-bit QJL on the residual) and standalone qjl. Their format rows (tq_format_turbo_mse, tq_format_turbo_prod,
 * tq_format_qjl) are declared in quant.h and defined in turbo.c; this header adds what tests and tools need beside. */
#ifndef TQ_TURBO_H
#define TQ_TURBO_H

#include "quant.h"

/* sqrt(pi/2): QJL's de-biasing constant, x_hat = sqrt(pi/2)/m * gamma * S^T sign(S r). */
#define TQ_SQRT_HALF_PI 1.2533141373155002512

/* The N channels with the highest RMS over the slice x[n][d] (ties: lower channel first), ascending, into idx[N].
 * What --outliers N stores as the "outlier_idx" section. */
void tq_turbo_outlier_channels(const float *x, int n, int d, int N, int *idx);

#endif
