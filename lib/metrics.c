/* metrics.c: the slice metrics of metrics.h — vector errors, inner products over causal query/key pairs (all of
 * them, or a seeded sample beyond TQ_METRICS_MAX_PAIRS) and the attention metrics via attention.c. All sums are in
 * double; each slice is computed by one thread in a fixed order, so results never depend on the thread count. */
#include "metrics.h"

#include <math.h>
#include <string.h>

#include "attention.h"
#include "rng.h"
#include "tq.h"

const char *const tq_metric_names[TQ_MET_COUNT] = {
    "nmse", "dmse", "cos", "ip_bias", "ip_rmse", "ip_nrmse", "ip_slope",
    "attn_kl", "entropy", "entropy_q", "entropy_collapse", "top8", "out_rel",
};

int tq_metric_by_name(const char *name)
{
    for (int i = 0; i < TQ_MET_COUNT; i++)
        if (!strcmp(tq_metric_names[i], name)) return i;
    return -1;
}

void tq_metrics_init(tq_metrics *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < TQ_MET_COUNT; i++) m->v[i] = NAN;
}

void tq_metrics_vec(const float *x, const float *xhat, long n, int d, tq_metrics *m)
{
    double err = 0, nrm = 0, dm = 0, cs = 0;
    long nz = 0;
    for (long i = 0; i < n; i++) {
        const float *a = x + (size_t)i * d, *b = xhat + (size_t)i * d;
        double e = 0, xx = 0, hh = 0, xh = 0;
        for (int c = 0; c < d; c++) {
            double u = a[c], w = b[c];
            e += (u - w) * (u - w);
            xx += u * u;
            hh += w * w;
            xh += u * w;
        }
        err += e;
        nrm += xx;
        if (xx > 0) {
            nz++;
            dm += e / xx;
            cs += hh > 0 ? xh / sqrt(xx * hh) : 0.0;
        }
    }
    m->n_vectors = n;
    if (nz == 0) return;
    m->v[TQ_MET_NMSE] = err / nrm;
    m->v[TQ_MET_DMSE] = dm / (double)nz;
    m->v[TQ_MET_COS] = cs / (double)nz;
}

/* Uniform integer in [0, n), n < 2^32: Lemire's multiply-shift with rejection (unbiased; the division runs only in
 * the rare case the low word falls below n, so a million draws cost no million divisions). */
static inline uint32_t below32(tq_rng *r, uint32_t n)
{
    uint64_t m = (uint64_t)tq_rng_u32(r) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t thresh = (0u - n) % n;
        while (l < thresh) {
            m = (uint64_t)tq_rng_u32(r) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* Uniform integer in [0, n) for n up to 2^63: below32 where it fits, else 64-bit threshold rejection. */
static uint64_t rng_below(tq_rng *r, uint64_t n)
{
    if (n <= UINT32_MAX) return below32(r, (uint32_t)n);
    uint64_t thresh = (0 - n) % n; /* 2^64 mod n: reject below it so every residue is equally likely */
    for (;;) {
        uint64_t x = ((uint64_t)tq_rng_u32(r) << 32) | tq_rng_u32(r);
        if (x >= thresh) return x % n;
    }
}

/* Pair index i in the lower triangle (row-major, s ≤ t) to (t, s). */
static void tri_index(uint64_t i, int *t, int *s)
{
    uint64_t r = (uint64_t)((sqrt(8.0 * (double)i + 1.0) - 1.0) / 2.0);
    while (r * (r + 1) / 2 > i) r--;           /* the sqrt may be one off either way for large i */
    while ((r + 1) * (r + 2) / 2 <= i) r++;
    *t = (int)r;
    *s = (int)(i - r * (r + 1) / 2);
}

typedef struct { double n, se, se2, sx, sy, sxx, sxy; } ip_sums;

/* x = ⟨q,k⟩ and e = ⟨q,k̂ − k⟩ in float with eight partial sums each (a fixed order: deterministic; independent
 * lanes the compiler packs into vector registers). e comes from the difference vector, not as ⟨q,k̂⟩ − ⟨q,k⟩, so its
 * rounding error is relative to |q||k̂ − k| (~1e-7 of it), not to |q||k|: small quantization errors keep their
 * digits. x carries ~√d·2^-24 relative error, far below what slope and nrmse resolve. */
/* GCC/clang vector extension: two SSE registers on baseline x86-64, one AVX register in the avx2 clone. */
typedef float v8f __attribute__((vector_size(32)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TQ_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TQ_CLONES
#endif

TQ_CLONES static void dot_err(const float *q, const float *k, const float *kh, int d, double *x, double *e)
{
    /* two accumulators per sum: the add latency chain, not the arithmetic, bounds a 128-long dot product */
    v8f xs0 = {0}, xs1 = {0}, es0 = {0}, es1 = {0};
    int c = 0;
    for (; c + 16 <= d; c += 16) {
        v8f q0, k0, h0, q1, k1, h1; /* memcpy: unaligned loads, no aliasing games */
        memcpy(&q0, q + c, sizeof q0);
        memcpy(&k0, k + c, sizeof k0);
        memcpy(&h0, kh + c, sizeof h0);
        memcpy(&q1, q + c + 8, sizeof q1);
        memcpy(&k1, k + c + 8, sizeof k1);
        memcpy(&h1, kh + c + 8, sizeof h1);
        xs0 += q0 * k0;
        es0 += q0 * (h0 - k0);
        xs1 += q1 * k1;
        es1 += q1 * (h1 - k1);
    }
    v8f xs = xs0 + xs1, es = es0 + es1;
    float fx = ((xs[0] + xs[4]) + (xs[1] + xs[5])) + ((xs[2] + xs[6]) + (xs[3] + xs[7]));
    float fe = ((es[0] + es[4]) + (es[1] + es[5])) + ((es[2] + es[6]) + (es[3] + es[7]));
    double sx = fx, se = fe;
    for (; c < d; c++) {
        sx += (double)(q[c] * k[c]);
        se += (double)(q[c] * (kh[c] - k[c]));
    }
    *x = sx;
    *e = se;
}

static inline void ip_pair(const float *qt, const float *ks, const float *kh, int d, ip_sums *a)
{
    double x, e;
    dot_err(qt, ks, kh, d, &x, &e);
    double y = x + e;
    a->n += 1;
    a->se += e;
    a->se2 += e * e;
    a->sx += x;
    a->sy += y;
    a->sxx += x * x;
    a->sxy += x * y;
}

int tq_metrics_ip(const float *q, int G, const float *k, const float *khat, int T, int d, long max_pairs,
                  uint64_t seed, int layer, int head, tq_metrics *m)
{
    if (!q || !k || !khat || G <= 0 || T <= 0 || d <= 0)
        return tq_error_set(TQ_ERR_USAGE, "inner products: bad arguments (G=%d, T=%d, d=%d)", G, T, d);
    if (max_pairs <= 0) max_pairs = TQ_METRICS_MAX_PAIRS;
    uint64_t tri = (uint64_t)T * ((uint64_t)T + 1) / 2, total = tri * (uint64_t)G;
    ip_sums a = {0};
    if (total <= (uint64_t)max_pairs) {
        for (int g = 0; g < G; g++)
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)g * T + t) * d;
                for (int s = 0; s <= t; s++) ip_pair(qt, k + (size_t)s * d, khat + (size_t)s * d, d, &a);
            }
        m->ip_sampled = 0;
    } else {
        /* draws in batches so the rows of pair i + AHEAD can be prefetched while pair i is summed: random rows
         * are cache misses, and the sums are cheap next to them. Same draws, same order as one pair at a time. */
        enum { BATCH = 64, AHEAD = 4 };
        const float *qr[BATCH], *kr[BATCH], *hr[BATCH];
        tq_rng r;
        tq_rng_derive(&r, seed, layer, head, TQ_PURPOSE_SAMPLE);
        for (long i0 = 0; i0 < max_pairs; i0 += BATCH) {
            int nb = max_pairs - i0 < BATCH ? (int)(max_pairs - i0) : BATCH;
            for (int b = 0; b < nb; b++) {
                int g = G > 1 ? (int)below32(&r, (uint32_t)G) : 0, t, s;
                tri_index(rng_below(&r, tri), &t, &s);
                qr[b] = q + ((size_t)g * T + t) * d;
                kr[b] = k + (size_t)s * d;
                hr[b] = khat + (size_t)s * d;
            }
            for (int b = 0; b < nb; b++) {
                if (b + AHEAD < nb)
                    for (int c = 0; c < d; c += 16) {
                        __builtin_prefetch(qr[b + AHEAD] + c);
                        __builtin_prefetch(kr[b + AHEAD] + c);
                        __builtin_prefetch(hr[b + AHEAD] + c);
                    }
                ip_pair(qr[b], kr[b], hr[b], d, &a);
            }
        }
        m->ip_sampled = 1;
    }
    m->n_pairs = (long)a.n;
    double me = a.se / a.n, mxx = a.sxx / a.n;
    m->v[TQ_MET_IP_BIAS] = me;
    m->v[TQ_MET_IP_RMSE] = sqrt(a.se2 / a.n);
    m->v[TQ_MET_IP_NRMSE] = mxx > 0 ? sqrt(a.se2 / a.n) / sqrt(mxx) : NAN;
    /* slope = cov(x, y) / var(x), from centred sums */
    double mx = a.sx / a.n, my = a.sy / a.n, vx = mxx - mx * mx, cxy = a.sxy / a.n - mx * my;
    m->v[TQ_MET_IP_SLOPE] = vx > 0 ? cxy / vx : NAN;
    return TQ_OK;
}

double tq_metrics_collapse(double entropy, double entropy_q)
{
    if (isnan(entropy) || isnan(entropy_q)) return NAN;
    if (entropy == 0) return 0.0;
    return 1.0 - entropy_q / entropy;
}

int tq_metrics_head(const tq_metrics_opts *o, const float *q, int G, const float *k, const float *khat,
                    const float *v, const float *vhat, int T, int d, tq_metrics *mk, tq_metrics *mv)
{
    tq_metrics_init(mk);
    if (mv) tq_metrics_init(mv);
    tq_metrics_vec(k, khat, T, d, mk);
    if (v && mv) tq_metrics_vec(v, vhat, T, d, mv);
    if (!q) return TQ_OK;
    int rc = tq_metrics_ip(q, G, k, khat, T, d, o->max_pairs, o->seed, o->layer, o->head, mk);
    if (rc < 0) return rc;
    if (!o->attention) return TQ_OK;
    tq_attn_stats st;
    int with_v = v && mv;
    rc = tq_attn_eval(q, G, k, khat, with_v ? v : NULL, with_v ? vhat : NULL, T, d, 0, T, &st);
    if (rc < 0) return rc;
    mk->v[TQ_MET_ATTN_KL] = st.attn_kl;
    mk->v[TQ_MET_ENTROPY] = st.entropy;
    mk->v[TQ_MET_ENTROPY_Q] = st.entropy_q;
    mk->v[TQ_MET_ENTROPY_COLLAPSE] = tq_metrics_collapse(st.entropy, st.entropy_q);
    mk->v[TQ_MET_TOP8] = st.top8;
    mk->attn_rows = st.rows;
    if (with_v) {
        mv->v[TQ_MET_OUT_REL] = st.out_rel;
        mv->attn_rows = st.out_rows;
    }
    return TQ_OK;
}

void tq_metrics_acc_init(tq_metrics_acc *a) { memset(a, 0, sizeof *a); }

void tq_metrics_acc_add(tq_metrics_acc *a, const tq_metrics *m)
{
    double w = (double)m->n_vectors;
    for (int i = 0; i < TQ_MET_COUNT; i++)
        if (!isnan(m->v[i])) {
            a->sum[i] += w * m->v[i];
            a->w[i] += w;
        }
    a->n_vectors += m->n_vectors;
    a->n_pairs += m->n_pairs;
    a->attn_rows += m->attn_rows;
}

void tq_metrics_acc_mean(const tq_metrics_acc *a, tq_metrics *out)
{
    tq_metrics_init(out);
    for (int i = 0; i < TQ_MET_COUNT; i++)
        if (a->w[i] > 0) out->v[i] = a->sum[i] / a->w[i];
    out->v[TQ_MET_ENTROPY_COLLAPSE] = tq_metrics_collapse(out->v[TQ_MET_ENTROPY], out->v[TQ_MET_ENTROPY_Q]);
    out->n_vectors = a->n_vectors;
    out->n_pairs = a->n_pairs;
    out->attn_rows = a->attn_rows;
}
