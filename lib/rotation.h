/* rotation.h: the random orthogonal maps that make TurboQuant's coordinates Beta-distributed — a dense Haar rotation
 * (QR of a PCG Gaussian matrix), a randomized fast Walsh–Hadamard transform, or none — and the Gaussian projection
 * matrix S of QJL. Everything is regenerated from (seed, slice, purpose), never stored. */
#ifndef TQ_ROTATION_H
#define TQ_ROTATION_H

#include <stdint.h>

#include "quant.h"
#include "rng.h"

/* A rotation of R^d. Forward y = Pi x; inverse x = Pi^T y (Pi is orthogonal). */
typedef struct {
    int kind;      /* TQ_ROT_* */
    int d;
    float *m;      /* dense: Pi, d x d row-major (y_i = sum_j m[i*d+j] x_j); NULL otherwise */
    float *signs;  /* hadamard: the random +-1 diagonal D, so Pi = H D / sqrt(d); NULL otherwise */
} tq_rotation;

/* The random stream of one slice: tq_rng_derive(seed, layer, (head*2 + tensor)*4 + part, purpose). `part` tells
 * independent instances of one slice apart (0 = main, 1 = the outlier-channel instance), and the tensor is folded
 * into the head so keys and values of one head never share a rotation or a projection. */
void tq_rng_slice(tq_rng *r, uint64_t seed, tq_slice_id id, int purpose, int part);

/* TQ_OK, or TQ_ERR_USAGE naming the problem ("hadamard rotation needs a power-of-two dim, got 96; ..."). */
int tq_rotation_check(int kind, int d);
/* Build the rotation for a slice from its stream (purpose TQ_PURPOSE_ROTATION for TurboQuant; POLAR for PolarQuant).
 * dense: G (d x d, row-major, filled with tq_rng_normal in order) = QR; Pi = Q diag(sign(diag R)) (Haar), computed
 * in double with LAPACKE_dgeqrf/dorgqr and stored as float. hadamard: d signs from the stream's bits. Free with
 * tq_rotation_free (NULL-safe). */
int tq_rotation_make(tq_rotation **out, int kind, int d, uint64_t seed, tq_slice_id id, int purpose, int part);
void tq_rotation_free(tq_rotation *r);

/* Fast batched paths: x, y are [n][d] row-major, may not alias. dense uses cblas_sgemm; hadamard an in-place
 * butterfly that the compiler vectorizes; none copies. */
void tq_rotation_forward(const tq_rotation *r, const float *x, float *y, long n);
void tq_rotation_inverse(const tq_rotation *r, const float *y, float *x, long n);
/* Scalar references, one vector: dense accumulates in double; hadamard performs exactly the operations of the fast
 * path (so both agree bit for bit, what the CUDA tests rely on). */
void tq_rotation_forward_ref(const tq_rotation *r, const float *x, float *y);
void tq_rotation_inverse_ref(const tq_rotation *r, const float *y, float *x);

/* In-place normalized fast Walsh–Hadamard transform of one vector, d a power of two: x <- H x / sqrt(d). */
void tq_fwht(float *x, int d);
/* The constant tq_fwht scales by: 1/sqrt(d) rounded once to float (every fast path multiplies by this same value). */
float tq_fwht_scale(int d);

/* S: m x d i.i.d. N(0,1), row-major, filled in order from the slice's stream (QJL: purpose TQ_PURPOSE_QJL). */
int tq_gaussian_matrix(float **out, int m, int d, uint64_t seed, tq_slice_id id, int purpose, int part);

#endif
