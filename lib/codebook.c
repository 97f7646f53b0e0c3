/* codebook.c: Lloyd-Max codebooks for the Beta coordinate density of a random unit vector, its Gaussian limit and
 * samples. The Beta cells' mass and moments are exact (incomplete beta function), so the codebooks and their
 * distortions are limited by double rounding only — tests compare measured D_mse with d times these values. */
#include "codebook.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "tq.h"

/* ---- regularized incomplete beta I_x(a, b) (continued fraction, modified Lentz; Numerical Recipes 6.4) ---- */

static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300, eps = 1e-16;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 100000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d; if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c; if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d; if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c; if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < eps) break;
    }
    return h;
}

static double ibeta(double a, double b, double x)
{
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double lf = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(lf) * betacf(a, b, x) / a;
    return 1 - exp(lf) * betacf(b, a, 1 - x) / b;
}

/* ---- densities: upper-tail mass and moments from t >= 0 to the end of the support ---- */

typedef struct {
    int gaussian;   /* 0: Beta coordinate density at d; 1: unit Gaussian */
    double a;       /* (d-1)/2 */
    double c;       /* Beta normalizer Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)) */
    int d;
    double end;     /* support end: 1 or +inf */
} dens;

static dens dens_make(int gaussian, int d)
{
    dens z = {gaussian, 0, 0, d, gaussian ? INFINITY : 1.0};
    if (!gaussian) {
        z.a = (d - 1) / 2.0;
        z.c = exp(lgamma(d / 2.0) - lgamma(z.a) - 0.5 * log(M_PI));
    }
    return z;
}

/* P(T > t), E[T 1{T > t}], E[T^2 1{T > t}] for t >= 0. Beta: with U = T^2 ~ Beta(1/2, a),
 * P = I_{1-t^2}(a, 1/2)/2; the first moment integrates in closed form, c (1-t^2)^a / (2a); the second is
 * (B(3/2,a)/B(1/2,a)) P(Beta(3/2,a) > t^2)/2 = I_{1-t^2}(a, 3/2) / (2d). Tail forms avoid cancellation far out. */
static void dens_tail(const dens *z, double t, double *p, double *m1, double *m2)
{
    if (t >= z->end) { *p = *m1 = *m2 = 0; return; }
    if (z->gaussian) {
        double phi = exp(-0.5 * t * t) / sqrt(2 * M_PI);
        *p = 0.5 * erfc(t / M_SQRT2);
        *m1 = phi;
        *m2 = t * phi + *p;
        return;
    }
    double x = 1 - t * t;
    *p = 0.5 * ibeta(z->a, 0.5, x);
    *m1 = z->c * pow(x, z->a) / (2 * z->a);
    *m2 = ibeta(z->a, 1.5, x) / (2.0 * z->d);
}

static double dens_pdf(const dens *z, double t)
{
    if (z->gaussian) return exp(-0.5 * t * t) / sqrt(2 * M_PI);
    if (t >= 1) return 0;
    return z->c * exp((z->a - 1) * log1p(-t * t));
}

/* Signed version for any t in [-end, end]: mass and moments above t. By symmetry the first moment above -|t| equals
 * the one above |t|, and the even ones are complements. */
static void dens_above(const dens *z, double t, double *p, double *m1, double *m2)
{
    if (t >= 0) { dens_tail(z, t, p, m1, m2); return; }
    double tp, t1, t2;
    dens_tail(z, -t, &tp, &t1, &t2);
    double var = z->gaussian ? 1.0 : 1.0 / z->d;
    *p = 1 - tp;
    *m1 = t1;
    *m2 = var - t2;
}

static double dens_mse(const dens *z, const double *c, int n)
{
    /* everything lies above the support's start: mass 1, mean 0, second moment the variance */
    double mse = 0, pp = 1, p1 = 0, p2 = z->gaussian ? 1.0 : 1.0 / z->d;
    for (int j = 0; j < n; j++) {
        double q, q1, q2;
        if (j == n - 1) q = q1 = q2 = 0;
        else dens_above(z, 0.5 * (c[j] + c[j + 1]), &q, &q1, &q2);
        double P = pp - q, M1 = p1 - q1, M2 = p2 - q2;
        mse += M2 - 2 * c[j] * M1 + c[j] * c[j] * P;
        pp = q; p1 = q1; p2 = q2;
    }
    return mse;
}

double tq_codebook_beta_mse(int d, const double *c, int n)
{
    dens z = dens_make(0, d);
    return dens_mse(&z, c, n);
}

/* Inverse of the upper tail P(T > t) = q on the positive half, by bisection (only used for starting points). */
static double dens_tail_inv(const dens *z, double q)
{
    double lo = 0, hi = z->gaussian ? 40 : 1;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi), p, m1, m2;
        dens_tail(z, mid, &p, &m1, &m2);
        if (p > q) lo = mid; else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Lloyd-Max on the positive half: k = n/2 centroids, cells [tau_{j-1}, tau_j] with tau_0 = 0 and tau_k = end.
 * Start: the high-resolution optimum puts centroids at the quantiles of f^(1/3) (for a Gaussian, N(0, 3 sigma^2)),
 * which leaves Lloyd a short way to go. */
static int lloyd_half(const dens *z, int bits, double *half, int *iters)
{
    int k = 1 << (bits - 1);
    double sd = z->gaussian ? 1.0 : 1.0 / sqrt((double)z->d);
    dens g = dens_make(1, 0);
    for (int j = 0; j < k; j++) {
        double q = 0.5 * (1.0 - (j + 0.5) / k); /* upper-tail mass of the j-th point-density quantile */
        double s = sqrt(3.0) * sd * dens_tail_inv(&g, q);
        half[j] = z->gaussian ? s : fmin(s, 1 - (1 - (j + 0.5) / k) * 1e-3);
    }
    /* Plain Lloyd contracts by 1 - O(1/n^2) per step (100k steps at 8 bits), so after a few steps Newton takes
     * over on G(c) = c - T(c), T the Lloyd map: dT_j/dtau = f(tau)(tau - T_j)/P_j at each cell edge, dtau/dc = 1/2,
     * a tridiagonal system. A Newton step that breaks the ordering falls back to a Lloyd step. */
    double tol = 1e-12 * sd, tp[TQ_CB_MAX_LEVELS / 2 + 1][3], fe[TQ_CB_MAX_LEVELS / 2 + 1];
    double tau[TQ_CB_MAX_LEVELS / 2 + 1], tc[TQ_CB_MAX_LEVELS / 2], P[TQ_CB_MAX_LEVELS / 2];
    double lo[TQ_CB_MAX_LEVELS / 2], di[TQ_CB_MAX_LEVELS / 2], up[TQ_CB_MAX_LEVELS / 2];
    double rhs[TQ_CB_MAX_LEVELS / 2], nc[TQ_CB_MAX_LEVELS / 2];
    /* At large d and 7-8 bits the outer cells hold ~1e-6 of the mass and the incomplete beta's rounding (~1e-16)
     * puts a noise floor above 1e-12 sd on their centroids; past MAXIT the floor itself (1e-7 sd, far below any
     * effect on distortion) is accepted. */
    const int maxit = 3000;
    double move = 0;
    for (int it = 1; it <= maxit; it++) {
        for (int j = 0; j <= k; j++) {
            tau[j] = j == 0 ? 0 : j == k ? z->end : 0.5 * (half[j - 1] + half[j]);
            if (j == k) tp[k][0] = tp[k][1] = tp[k][2] = 0;
            else dens_tail(z, tau[j], &tp[j][0], &tp[j][1], &tp[j][2]);
            fe[j] = j == k ? 0 : dens_pdf(z, tau[j]);
        }
        move = 0;
        for (int j = 0; j < k; j++) {
            P[j] = tp[j][0] - tp[j + 1][0];
            tc[j] = P[j] > 0 ? (tp[j][1] - tp[j + 1][1]) / P[j] : half[j]; /* massless far-tail cell stays */
            if (fabs(tc[j] - half[j]) > move) move = fabs(tc[j] - half[j]);
        }
        if (move < tol || (it == maxit && move < 1e-7 * sd)) {
            for (int j = 0; j < k; j++) half[j] = tc[j];
            *iters = it;
            return TQ_OK;
        }
        int ok = it > 8;
        for (int j = 0; j < k && ok; j++) {
            if (!(P[j] > 0)) { ok = 0; break; }
            double a = j > 0 ? 0.5 * fe[j] * (tc[j] - tau[j]) / P[j] : 0;       /* via tau_j (lower edge) */
            double b = j < k - 1 ? 0.5 * fe[j + 1] * (tau[j + 1] - tc[j]) / P[j] : 0; /* via tau_{j+1} */
            lo[j] = -a;
            up[j] = -b;
            di[j] = 1 - a - b;
            rhs[j] = tc[j] - half[j];
        }
        if (ok) { /* Thomas algorithm */
            for (int j = 1; j < k; j++) {
                double w = lo[j] / di[j - 1];
                di[j] -= w * up[j - 1];
                rhs[j] -= w * rhs[j - 1];
            }
            nc[k - 1] = rhs[k - 1] / di[k - 1];
            for (int j = k - 2; j >= 0; j--) nc[j] = (rhs[j] - up[j] * nc[j + 1]) / di[j];
            for (int j = 0; j < k; j++) {
                nc[j] += half[j];
                if (!isfinite(nc[j]) || nc[j] <= (j ? nc[j - 1] : 0) || nc[j] >= z->end) ok = 0;
            }
        }
        for (int j = 0; j < k; j++) half[j] = ok ? nc[j] : tc[j];
    }
    return tq_error_set(TQ_ERR, "lloyd-max for %s d=%d bits=%d did not converge (last move %.3g sd); use "
                        "--codebook gaussian", z->gaussian ? "gaussian" : "beta", z->d, bits, move / sd);
}

/* Fill floats, thresholds (midpoints of the double centroids) and distortions from cd[]. */
static void cb_finish(tq_codebook *cb)
{
    for (int j = 0; j < cb->n; j++) cb->c[j] = (float)cb->cd[j];
    for (int j = 0; j < cb->n - 1; j++) cb->t[j] = (float)(0.5 * (cb->cd[j] + cb->cd[j + 1]));
    cb->t[cb->n - 1] = INFINITY;
    /* the Beta density exists for d >= 3; a gaussian codebook at d < 3 reports its own distortion */
    cb->mse = cb->d >= 3 ? tq_codebook_beta_mse(cb->d, cb->cd, cb->n) : NAN;
    if (cb->kind == TQ_CB_GAUSSIAN) {
        dens g = dens_make(1, 0);
        double s = sqrt((double)cb->d), cu[TQ_CB_MAX_LEVELS];
        for (int j = 0; j < cb->n; j++) cu[j] = cb->cd[j] * s;
        cb->mse_own = dens_mse(&g, cu, cb->n) / cb->d;
        if (cb->d < 3) cb->mse = cb->mse_own;
    } else cb->mse_own = cb->mse;
}

static int check_args(int kind, int d, int bits)
{
    if (bits < 1 || bits > TQ_CB_MAX_BITS)
        return tq_error_set(TQ_ERR_USAGE, "codebook bits must be 1..%d, got %d", TQ_CB_MAX_BITS, bits);
    if (kind == TQ_CB_GAUSSIAN ? d < 1 : d < 3)
        return tq_error_set(TQ_ERR_USAGE, "%s codebook needs dim >= %d, got %d; use --codebook gaussian",
                            kind == TQ_CB_GAUSSIAN ? "gaussian" : "beta", kind == TQ_CB_GAUSSIAN ? 1 : 3, d);
    return TQ_OK;
}

static int compute(tq_codebook *cb, int kind, int d, int bits)
{
    memset(cb, 0, sizeof *cb);
    cb->kind = kind; cb->d = d; cb->bits = bits; cb->n = 1 << bits;
    int k = cb->n / 2, st;
    double half[TQ_CB_MAX_LEVELS / 2];
    dens z = dens_make(kind == TQ_CB_GAUSSIAN, d);
    if ((st = lloyd_half(&z, bits, half, &cb->iters))) return st;
    double scale = kind == TQ_CB_GAUSSIAN ? 1.0 / sqrt((double)d) : 1.0;
    for (int j = 0; j < k; j++) {
        cb->cd[k + j] = half[j] * scale;
        cb->cd[k - 1 - j] = -half[j] * scale;
    }
    cb_finish(cb);
    return TQ_OK;
}

/* The cache: a list that only grows (a handful of (kind, d, bits) per run); one lock around lookup and compute. */
typedef struct cb_entry { struct cb_entry *next; tq_codebook cb; } cb_entry;
static cb_entry *cache;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

int tq_codebook_get(tq_codebook *out, int kind, int d, int bits)
{
    if (kind != TQ_CB_BETA && kind != TQ_CB_GAUSSIAN)
        return tq_error_set(TQ_ERR_USAGE, "tq_codebook_get computes beta or gaussian codebooks, not kind %d", kind);
    int st = check_args(kind, d, bits);
    if (st) return st;
    pthread_mutex_lock(&cache_lock);
    for (cb_entry *e = cache; e; e = e->next)
        if (e->cb.kind == kind && e->cb.d == d && e->cb.bits == bits) {
            *out = e->cb;
            pthread_mutex_unlock(&cache_lock);
            return TQ_OK;
        }
    cb_entry *e = tq_malloc(sizeof *e);
    if (!e) { pthread_mutex_unlock(&cache_lock); return TQ_ERR_NOMEM; }
    if ((st = compute(&e->cb, kind, d, bits))) {
        free(e);
        pthread_mutex_unlock(&cache_lock);
        return st;
    }
    e->next = cache;
    cache = e;
    *out = e->cb;
    pthread_mutex_unlock(&cache_lock);
    return TQ_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* k-means in one dimension on the sorted sample: each cell is a contiguous run, found by binary search, and its
 * mean comes from prefix sums, so an iteration costs O(n_levels log n) whatever the sample size. */
int tq_codebook_fit(tq_codebook *out, int d, int bits, const float *sample, long n)
{
    int st = tq_codebook_get(out, TQ_CB_BETA, d, bits);
    if (st) return st;
    out->kind = TQ_CB_EMPIRICAL;
    if (n < 1) return tq_error_set(TQ_ERR_USAGE, "empirical codebook needs a non-empty sample");
    float *s = tq_malloc(sizeof(float) * (size_t)n);
    double *ps = tq_malloc(sizeof(double) * (size_t)(n + 1));
    if (!s || !ps) { free(s); free(ps); return TQ_ERR_NOMEM; }
    memcpy(s, sample, sizeof(float) * (size_t)n);
    qsort(s, (size_t)n, sizeof(float), cmp_float);
    ps[0] = 0;
    for (long i = 0; i < n; i++) ps[i + 1] = ps[i] + s[i];
    int L = out->n, it;
    double *c = out->cd;
    for (it = 1; it <= 10000; it++) {
        double move = 0;
        long lo = 0;
        for (int j = 0; j < L; j++) {
            long hi = n;
            if (j < L - 1) { /* first index with s[i] > threshold: the value on a threshold goes low, as encode */
                double t = 0.5 * (c[j] + c[j + 1]);
                long a = lo, b = n;
                while (a < b) { long m = a + (b - a) / 2; if (s[m] > t) b = m; else a = m + 1; }
                hi = a;
            }
            if (hi > lo) {
                double nc = (ps[hi] - ps[lo]) / (double)(hi - lo);
                if (fabs(nc - c[j]) > move) move = fabs(nc - c[j]);
                c[j] = nc;
            }
            lo = hi;
        }
        if (move < 1e-9 / sqrt((double)d)) break;
    }
    out->iters = it;
    free(s);
    free(ps);
    for (int j = 0; j < L; j++) c[j] = (double)(float)c[j];
    for (int j = 1; j < L; j++) /* keep strictly ascending after rounding (cells never cross in 1-D Lloyd) */
        if (!(c[j] > c[j - 1])) c[j] = nextafterf((float)c[j - 1], INFINITY);
    cb_finish(out);
    return TQ_OK;
}

int tq_codebook_from_centroids(tq_codebook *out, int kind, int d, int bits, const float *c)
{
    int st = check_args(kind == TQ_CB_GAUSSIAN ? TQ_CB_GAUSSIAN : TQ_CB_BETA, d, bits);
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->kind = kind; out->d = d; out->bits = bits; out->n = 1 << bits;
    for (int j = 0; j < out->n; j++) {
        if (!isfinite(c[j]) || (j > 0 && !(c[j] > c[j - 1])))
            return tq_error_set(TQ_ERR, "codebook centroid %d (%g) is not finite and ascending", j, (double)c[j]);
        out->cd[j] = c[j];
    }
    cb_finish(out);
    return TQ_OK;
}

double tq_codebook_gauss_unit_mse(int bits)
{
    tq_codebook cb;
    if (tq_codebook_get(&cb, TQ_CB_GAUSSIAN, 1, bits)) return NAN;
    return cb.mse_own;
}
