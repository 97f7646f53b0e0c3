/* rng.c: PCG32 XSH-RR and the samplers built on it. Kept scalar and obvious: streams are short (matrices, synthetic
 * data) next to the quantization work, and bit-exact agreement with pcg-cpp is tested. */
#include "rng.h"

#include <math.h>

#define PCG_MULT 6364136223846793005ULL

static inline void pcg_step(tq_rng *r) { r->state = r->state * PCG_MULT + r->inc; }

void tq_rng_seed(tq_rng *r, uint64_t seed, uint64_t stream)
{
    r->inc = (stream << 1) | 1u;
    r->state = 0;
    pcg_step(r);
    r->state += seed;
    pcg_step(r);
    r->has_spare = 0;
    r->spare = 0;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void tq_rng_derive(tq_rng *r, uint64_t seed, int layer, int head, int purpose)
{
    uint64_t id = splitmix64((uint64_t)(uint32_t)purpose);
    id = splitmix64(id ^ (uint64_t)(uint32_t)(layer + 1));
    id = splitmix64(id ^ ((uint64_t)(uint32_t)(head + 1) << 32));
    tq_rng_seed(r, seed, id >> 1);
}

uint32_t tq_rng_u32(tq_rng *r)
{
    uint64_t old = r->state;
    pcg_step(r);
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

uint32_t tq_rng_bounded(tq_rng *r, uint32_t bound)
{
    uint32_t threshold = (-bound) % bound;
    for (;;) {
        uint32_t x = tq_rng_u32(r);
        if (x >= threshold) return x % bound;
    }
}

double tq_rng_double(tq_rng *r)
{
    uint64_t a = tq_rng_u32(r) >> 5, b = tq_rng_u32(r) >> 6;
    return (double)(a * 67108864ULL + b) * (1.0 / 9007199254740992.0);
}

float tq_rng_float(tq_rng *r) { return (float)(tq_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double tq_rng_normal(tq_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = 1.0 - tq_rng_double(r); /* (0, 1]: log never sees 0 */
    double u2 = tq_rng_double(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586476925 * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

void tq_rng_normals(tq_rng *r, float *out, long n)
{
    for (long i = 0; i < n; i++) out[i] = (float)tq_rng_normal(r);
}
