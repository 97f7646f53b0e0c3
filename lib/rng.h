/* rng.h: PCG32 (XSH-RR 64/32, O'Neill 2014) — the only source of randomness in tq. State is explicit; every
 * consumer derives its own stream from the user seed with tq_rng_derive, so results never depend on call order
 * across layers, heads or threads. Output equals pcg32 of pcg-cpp (pcg_random.hpp) for the same (seed, stream). */
#ifndef TQ_RNG_H
#define TQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
    uint64_t inc;        /* (stream << 1) | 1 */
    double spare;        /* second Box-Muller normal, valid when has_spare */
    int has_spare;
} tq_rng;

/* What a derived stream is used for; part of the stream id so two purposes never share numbers. */
enum {
    TQ_PURPOSE_ROTATION = 1,
    TQ_PURPOSE_QJL = 2,
    TQ_PURPOSE_SYNTH = 3,
    TQ_PURPOSE_SAMPLE = 4,  /* pair subsampling in metrics */
    TQ_PURPOSE_TEST = 5,
    TQ_PURPOSE_POLAR = 6,
    TQ_PURPOSE_GENERATE = 7, /* tq generate: the sampler's draws and the needle keys */
};

/* pcg32(seed, stream) exactly as pcg-cpp: inc = 2*stream+1, state = (seed + inc)*mult + inc. */
void tq_rng_seed(tq_rng *r, uint64_t seed, uint64_t stream);
/* Independent stream for (layer, head, purpose): seed kept, stream = splitmix64 mix of the triple.
 * layer or head -1 means "not per layer/head". */
void tq_rng_derive(tq_rng *r, uint64_t seed, int layer, int head, int purpose);

uint32_t tq_rng_u32(tq_rng *r);
/* Uniform integer in [0, bound), unbiased (pcg's threshold rejection). bound > 0. */
uint32_t tq_rng_bounded(tq_rng *r, uint32_t bound);
/* Uniform in [0, 1): 53 bits from two draws (double), 24 bits from one draw (float). */
double tq_rng_double(tq_rng *r);
float tq_rng_float(tq_rng *r);
/* Standard normal by the Box-Muller transform on two uniform doubles (u1 in (0,1]), both outputs used:
 * cos branch first, sin branch cached in the state. */
double tq_rng_normal(tq_rng *r);
void tq_rng_normals(tq_rng *r, float *out, long n);

#endif
