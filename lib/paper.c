/* paper.c: Monte Carlo over random vectors for the paper's tables (D_mse, D_prod, inner-product bias and slope, QJL
 * variance) through the format table's fast paths, plus the exact values they are compared with. Data come from
 * TQ_PURPOSE_TEST streams per (slice, x|y), independent of the quantizer's own streams. */
#include "paper.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codebook.h"
#include "rng.h"
#include "tq.h"
#include "turbo.h"

void tq_paper_cfg_default(tq_paper_cfg *c, int method, int bits, int d, long n)
{
    memset(c, 0, sizeof *c);
    tq_qparams_default(&c->p, method, bits);
    c->d = d;
    c->n = n;
    c->per_slice = 1024;
    c->rho = -1;
    c->seed = 1;
}

static double dot(const float *a, const float *b, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

/* One random vector: unit (a normalized Gaussian, uniform on the sphere) or N(0, I/d). */
static void draw(tq_rng *r, float *v, int d, int gauss)
{
    tq_rng_normals(r, v, d);
    double s = gauss ? 1.0 / sqrt((double)d) : 1.0 / sqrt(dot(v, v, d));
    for (int i = 0; i < d; i++) v[i] = (float)(v[i] * s);
}

/* y = rho x + sqrt(1 - rho²) z, z a uniform unit vector orthogonal to the unit x (Gram-Schmidt in double). */
static void draw_correlated(tq_rng *r, const float *x, float *y, int d, double rho, double *tmp)
{
    tq_rng_normals(r, y, d);
    double gx = dot(y, x, d), zz = 0;
    for (int i = 0; i < d; i++) {
        tmp[i] = y[i] - gx * x[i];
        zz += tmp[i] * tmp[i];
    }
    double s = sqrt(1 - rho * rho) / sqrt(zz);
    for (int i = 0; i < d; i++) y[i] = (float)(rho * x[i] + s * tmp[i]);
}

typedef struct { double s, ss; } acc2; /* per-item sum and sum of squares */

static tq_paper_stat finish(const double *slice_mean, const acc2 *a, long n, int ns)
{
    tq_paper_stat st;
    st.mean = a->s / n;
    if (ns >= 8) { /* batch means: slices differ in size only in the last one; weight them equally is fine for SE */
        double m = 0, v = 0;
        for (int i = 0; i < ns; i++) m += slice_mean[i];
        m /= ns;
        for (int i = 0; i < ns; i++) v += (slice_mean[i] - m) * (slice_mean[i] - m);
        st.se = sqrt(v / (ns - 1) / ns);
    } else {
        double var = (a->ss - a->s * a->s / n) / (n > 1 ? n - 1 : 1);
        st.se = sqrt(fmax(var, 0) / n);
    }
    return st;
}

enum { Q_DMSE, Q_DPROD, Q_BIAS, Q_SQ, Q_N };

int tq_paper_measure(const tq_paper_cfg *c, tq_paper_result *r, float *err)
{
    memset(r, 0, sizeof *r);
    int d = c->d;
    if (d < 1 || c->n < 1 || c->per_slice < 1)
        return tq_error_set(TQ_ERR_USAGE, "paper: bad shape d=%d n=%ld per_slice=%d", d, c->n, c->per_slice);
    if (c->rho > 1) return tq_error_set(TQ_ERR_USAGE, "paper: rho must be <= 1, got %g", c->rho);
    const tq_format *f = tq_format_of(c->p.method);
    if (!f) return tq_error_set(TQ_ERR_USAGE, "paper: unknown method id %d", c->p.method);
    int rc = f->check(&c->p, d);
    if (rc < 0) return rc;
    int ns = (int)((c->n + c->per_slice - 1) / c->per_slice);
    long cap = c->n < c->per_slice ? c->n : c->per_slice;
    float *x = tq_malloc(sizeof(float) * cap * d), *y = tq_malloc(sizeof(float) * cap * d);
    float *xh = tq_malloc(sizeof(float) * cap * d);
    double *tmp = tq_malloc(sizeof(double) * d), *sm = tq_calloc((size_t)ns * Q_N, sizeof(double));
    if (!x || !y || !xh || !tmp || !sm) {
        rc = TQ_ERR_NOMEM;
        goto out;
    }
    int m = c->p.qjl_m ? c->p.qjl_m : d;
    acc2 a[Q_N] = {{0}};
    double sx = 0, sxh = 0, sxx = 0, sxxh = 0, sth = 0, sip2 = 0;
    long done = 0;
    r->bits_total = f->bits_total(&c->p, (int)cap, d);
    for (int s = 0; s < ns; s++) {
        int n = (int)(c->n - done < cap ? c->n - done : cap);
        tq_rng rx, ry;
        tq_rng_derive(&rx, c->seed, s, 0, TQ_PURPOSE_TEST);
        tq_rng_derive(&ry, c->seed, s, 1, TQ_PURPOSE_TEST);
        for (int i = 0; i < n; i++) {
            draw(&rx, x + (long)i * d, d, c->gauss);
            if (c->rho < 0) draw(&ry, y + (long)i * d, d, c->gauss);
            else draw_correlated(&ry, x + (long)i * d, y + (long)i * d, d, c->rho, tmp);
        }
        tq_codes codes;
        memset(&codes, 0, sizeof codes);
        tq_slice_id id = {s, 0, TQ_TENSOR_KEYS};
        rc = tq_quantize(&c->p, id, x, n, d, &codes);
        if (rc == TQ_OK) rc = tq_dequantize(&codes, xh);
        tq_codes_free(&codes);
        if (rc < 0) goto out;
        double ls[Q_N] = {0};
        for (int i = 0; i < n; i++) {
            const float *xi = x + (long)i * d, *yi = y + (long)i * d, *hi = xh + (long)i * d;
            double e2 = 0;
            for (int j = 0; j < d; j++) e2 += ((double)xi[j] - hi[j]) * ((double)xi[j] - hi[j]);
            double xx = dot(xi, xi, d), yy = dot(yi, yi, d), ip = dot(yi, xi, d), iph = dot(yi, hi, d), e = iph - ip;
            double q[Q_N] = {xx > 0 ? e2 / xx : 0, (double)d * e * e, e, e * e};
            for (int k = 0; k < Q_N; k++) {
                a[k].s += q[k];
                a[k].ss += q[k] * q[k];
                ls[k] += q[k];
            }
            sx += ip;
            sxh += iph;
            sxx += ip * ip;
            sxxh += ip * iph;
            sth += (TQ_SQRT_HALF_PI * TQ_SQRT_HALF_PI * xx * yy - ip * ip) / m;
            sip2 += ip * ip;
            if (err) err[done + i] = (float)e;
        }
        for (int k = 0; k < Q_N; k++) sm[(size_t)k * ns + s] = ls[k] / n;
        done += n;
    }
    long N = done;
    r->n = N;
    r->n_slices = ns;
    tq_paper_stat *st[Q_N] = {&r->dmse, &r->dprod, &r->bias, &r->sq};
    for (int k = 0; k < Q_N; k++) *st[k] = finish(sm + (size_t)k * ns, &a[k], N, ns);
    double vx = sxx - sx * sx / N;
    r->slope = vx > 0 ? (sxxh - sx * sxh / N) / vx : NAN;
    r->qjl_theory = sth / N;
    r->ip2 = sip2 / N;
    rc = TQ_OK;
out:
    free(x);
    free(y);
    free(xh);
    free(tmp);
    free(sm);
    return rc;
}

double tq_paper_dmse_exact(int d, int bits, int kind)
{
    if (bits == 0) return 1; /* nothing stored: x̂ = 0 */
    tq_codebook cb;
    if (tq_codebook_get(&cb, kind, d, bits) < 0) return NAN;
    return d * cb.mse;
}

double tq_paper_dprod_prod_exact(int d, int bits)
{
    if (bits < 1) return NAN;
    return (M_PI / 2 - 1.0 / d) * tq_paper_dmse_exact(d, bits - 1, TQ_CB_BETA);
}

double tq_paper_dprod_mse_exact(int d, int bits) { return tq_paper_dmse_exact(d, bits, TQ_CB_BETA); }

/* For one coordinate t with Lloyd-Max Q: E[Q(t) t] = E[Q(t)²] (each centroid is its cell's mean), so
 * E[Q(t) t] = E[t²] − E[(t − Q(t))²] = 1/d − D/d; cross terms E[Q(t_i) t_j] vanish (flipping t_j's sign keeps the
 * law). Hence E[x̂ xᵀ] = (1 − D)/d · I against E[x xᵀ] = I/d: the slope is 1 − D. */
double tq_paper_slope_exact(int d, int bits) { return 1 - tq_paper_dmse_exact(d, bits, TQ_CB_BETA); }

double tq_paper_dmse_upper(int bits) { return sqrt(3.0) * M_PI / 2 * pow(4.0, -bits); }
double tq_paper_dmse_lower(int bits) { return pow(4.0, -bits); }
