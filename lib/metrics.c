/* metrics.c: the slice metrics of metrics.h — vector errors, inner products over causal query/key pairs (all of
 * them, or a seeded sample of query rows beyond TQ_METRICS_MAX_PAIRS, scored with sgemm) and the attention metrics
 * via attention.c. All sums are in
 * double; each slice is computed by one thread in a fixed order, so results never depend on the thread count. */
#include "metrics.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
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
 * the rare case the low word falls below n). */
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

typedef struct { double n, se, se2, sx, sy, sxx, sxy; } ip_sums;

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Query rows r = g·T + t to evaluate: all of them, or a uniform sample of R rows without replacement (a partial
 * Fisher–Yates shuffle), in ascending order. Every row is equally likely, so every causal pair is too. */
static int *pick_rows(int G, int T, long max_pairs, uint64_t seed, int layer, int head, long *n_rows, int *sampled)
{
    long all = (long)G * T;
    uint64_t total = (uint64_t)G * ((uint64_t)T * ((uint64_t)T + 1) / 2);
    int *rows = tq_malloc((size_t)all * sizeof(int));
    if (!rows) return NULL;
    for (long i = 0; i < all; i++) rows[i] = (int)i;
    *sampled = total > (uint64_t)max_pairs;
    if (!*sampled) {
        *n_rows = all;
        return rows;
    }
    /* rows hold (T+1)/2 pairs on average: R of them make max_pairs pairs in expectation */
    long R = (long)ceil(2.0 * (double)max_pairs / ((double)T + 1.0));
    if (R > all) R = all;
    tq_rng r;
    tq_rng_derive(&r, seed, layer, head, TQ_PURPOSE_SAMPLE);
    for (long i = 0; i < R; i++) {
        long j = i + (long)below32(&r, (uint32_t)(all - i));
        int tmp = rows[i];
        rows[i] = rows[j];
        rows[j] = tmp;
    }
    qsort(rows, (size_t)R, sizeof(int), cmp_int);
    *n_rows = R;
    return rows;
}

int tq_metrics_ip(const float *q, int G, const float *k, const float *khat, int T, int d, long max_pairs,
                  uint64_t seed, int layer, int head, tq_metrics *m)
{
    if (!q || !k || !khat || G <= 0 || T <= 0 || d <= 0)
        return tq_error_set(TQ_ERR_USAGE, "inner products: bad arguments (G=%d, T=%d, d=%d)", G, T, d);
    if (max_pairs <= 0) max_pairs = TQ_METRICS_MAX_PAIRS;
    const int B = TQ_ATTN_TILE;
    long n_rows;
    int sampled;
    int *rows = pick_rows(G, T, max_pairs, seed, layer, head, &n_rows, &sampled);
    float *D = tq_malloc((size_t)T * d * sizeof(float)), *Qb = tq_malloc((size_t)B * d * sizeof(float));
    float *X = tq_malloc((size_t)B * T * sizeof(float)), *E = tq_malloc((size_t)B * T * sizeof(float));
    if (!rows || !D || !Qb || !X || !E) {
        free(rows); free(D); free(Qb); free(X); free(E);
        return TQ_ERR_NOMEM;
    }
    /* e = ⟨q, k̂ − k⟩ from the difference, not ⟨q,k̂⟩ − ⟨q,k⟩: its float rounding is relative to |q||k̂ − k|, so
     * small quantization errors keep their digits; x = ⟨q,k⟩ carries ~√d·2^-24 relative error */
    for (size_t i = 0; i < (size_t)T * d; i++) D[i] = khat[i] - k[i];
    ip_sums a = {0};
    /* batches of up to B rows of one query head (rows are sorted, so a batch's keys are a prefix 0..t_max) */
    for (long i0 = 0; i0 < n_rows;) {
        int g = rows[i0] / T;
        long i1 = i0;
        while (i1 < n_rows && i1 - i0 < B && rows[i1] / T == g) i1++;
        int nb = (int)(i1 - i0), nk = rows[i1 - 1] % T + 1;
        for (int b = 0; b < nb; b++) memcpy(Qb + (size_t)b * d, q + (size_t)rows[i0 + b] * d, (size_t)d * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, d, 1.0f, Qb, d, k, d, 0.0f, X, nk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, d, 1.0f, Qb, d, D, d, 0.0f, E, nk);
        for (int b = 0; b < nb; b++) {
            int n = rows[i0 + b] % T + 1;
            const float *xr = X + (size_t)b * nk, *er = E + (size_t)b * nk;
            double se = 0, se2 = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
            for (int s = 0; s < n; s++) {
                double x = xr[s], e = er[s], y = x + e;
                se += e;
                se2 += e * e;
                sx += x;
                sy += y;
                sxx += x * x;
                sxy += x * y;
            }
            a.n += n;
            a.se += se;
            a.se2 += se2;
            a.sx += sx;
            a.sy += sy;
            a.sxx += sxx;
            a.sxy += sxy;
        }
        i0 = i1;
    }
    free(rows); free(D); free(Qb); free(X); free(E);
    m->ip_sampled = sampled;
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
    rc = tq_attn_eval(q, G, k, khat, with_v ? v : NULL, with_v ? vhat : NULL, T, d, &o->attn, 0, T, &st);
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
