/* attention.c: attention metrics of one kv head, exact vs quantized keys/values (see attention.h), under the layer's
 * window, scale and soft-cap. Scores come from cblas_sgemm over tiles of queries and the keys their windows reach;
 * each row's log-softmax, KL, entropies and top-8 sets are reduced in double from
 * the float scores, so the only float rounding is in the scores themselves and in P·V. */
#include "attention.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "tq.h"

#define TOPK 8

int tq_attn_spec_check(const tq_attn_spec *s)
{
    if (s->window < 0)
        return tq_error_set(TQ_ERR_USAGE, "attention: sliding window %d is negative, expected 0 (global) or a "
                            "window length >= 1", s->window);
    if (!isfinite(s->scale) || s->scale < 0)
        return tq_error_set(TQ_ERR_USAGE, "attention: scale %g is not a finite number >= 0 (0: 1/sqrt(head_dim))",
                            s->scale);
    if (!isfinite(s->softcap) || s->softcap < 0)
        return tq_error_set(TQ_ERR_USAGE, "attention: soft-cap %g is not a finite number >= 0 (0: none)",
                            s->softcap);
    if (!isfinite(s->rope_base) || s->rope_base < 0)
        return tq_error_set(TQ_ERR_USAGE, "attention: rope base %g is not a finite number >= 0 (0: unknown)",
                            s->rope_base);
    return TQ_OK;
}

double tq_attn_spec_scale(const tq_attn_spec *s, int d)
{
    return s && s->scale > 0 ? s->scale : 1.0 / sqrt((double)d);
}

/* Score columns one tile needs: every key up to the tile's last row (global), or the W + TILE − 1 keys the tile's
 * windows cover together. */
static int tile_cols(int t_hi, int window)
{
    return window > 0 && window + TQ_ATTN_TILE - 1 < t_hi ? window + TQ_ATTN_TILE - 1 : t_hi;
}

size_t tq_attn_workspace_bytes(int T, int d, int window)
{
    /* two score blocks (exact, quantized), two output blocks (pV, p̂V̂), two scratch rows of exponentials */
    size_t n = (size_t)tile_cols(T, window);
    return 2 * (size_t)TQ_ATTN_TILE * n * sizeof(float) + 2 * (size_t)TQ_ATTN_TILE * (size_t)d * sizeof(float) +
           2 * n * sizeof(float);
}

/* Running top-k of a row: indices sorted by value, descending; ties keep the earlier key first, the order a stable
 * descending sort gives (the NumPy check relies on it). */
typedef struct { int n, k; int idx[TOPK]; double val[TOPK]; } topk;

static inline void topk_push(topk *tk, int j, double v)
{
    if (tk->n == tk->k && !(v > tk->val[tk->k - 1])) return;
    int i = tk->n < tk->k ? tk->n++ : tk->k - 1;
    while (i > 0 && tk->val[i - 1] < v) {
        tk->val[i] = tk->val[i - 1];
        tk->idx[i] = tk->idx[i - 1];
        i--;
    }
    tk->val[i] = v;
    tk->idx[i] = j;
}

static int topk_overlap(const topk *a, const topk *b)
{
    int c = 0;
    for (int i = 0; i < a->n; i++)
        for (int j = 0; j < b->n; j++)
            if (a->idx[i] == b->idx[j]) { c++; break; }
    return c;
}

static int check_args(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                      int T, int d, const tq_attn_spec *spec, int t_lo, int t_hi, tq_attn_stats *out)
{
    if (!out || !q || !k || !khat || n_q <= 0 || T <= 0 || d <= 0)
        return tq_error_set(TQ_ERR_USAGE, "attention: bad arguments (n_q=%d, T=%d, d=%d)", n_q, T, d);
    if (t_lo < 0 || t_hi > T || t_lo >= t_hi)
        return tq_error_set(TQ_ERR_USAGE, "attention: query range [%d, %d) is empty or outside 0..%d", t_lo, t_hi, T);
    if ((v == NULL) != (vhat == NULL))
        return tq_error_set(TQ_ERR_USAGE, "attention: values and quantized values must both be given or both NULL");
    return spec ? tq_attn_spec_check(spec) : TQ_OK;
}

/* s → c·tanh(s/c) over a row (Gemma 2's attention soft-cap), in double then rounded once. */
static void softcap_row(float *s, int n, double c)
{
    for (int j = 0; j < n; j++) s[j] = (float)(c * tanh((double)s[j] / c));
}

/* Row sums shared by both implementations, in double. */
typedef struct { double kl, h, hq, top, out; long rows, out_rows; } sums;

static void finish(const sums *s, int has_v, tq_attn_stats *out)
{
    out->rows = s->rows;
    out->out_rows = s->out_rows;
    out->attn_kl = s->kl / (double)s->rows;
    out->entropy = s->h / (double)s->rows;
    out->entropy_q = s->hq / (double)s->rows;
    out->top8 = s->top / (double)s->rows;
    out->out_rel = has_v && s->out_rows > 0 ? s->out / (double)s->out_rows : NAN;
}

/* The elementwise passes of a row, vectorized (GCC's -O2 cost model leaves these loops scalar; no-trapping-math lets
 * the clamp below become a vector max), with an AVX2 clone picked at load time on x86-64. */
#if defined(__GNUC__) && !defined(__clang__)
#define VECTORIZE __attribute__((optimize("tree-vectorize", "no-trapping-math")))
#else
#define VECTORIZE
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TQ_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TQ_CLONES
#endif
typedef float v8f __attribute__((vector_size(32))); /* GCC/clang vector extension */

/* e^x for x <= 0 in float, written so the compiler vectorizes a loop of it: Cody–Waite reduction x = n ln2 + r,
 * Cephes' degree-6 polynomial for e^r on |r| <= ln2/2 (about 1 ulp), 2^n from the exponent bits. x is clamped at
 * −87 (e^−87 ≈ 1.6e-38, still normal): weights that small change no sum here. */
VECTORIZE static inline __attribute__((always_inline)) float exp_nonpos(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest via 1.5·2^23 */
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

TQ_CLONES VECTORIZE static void exp_row(const float *s, float m, float *e, int n)
{
    for (int j = 0; j < n; j++) e[j] = exp_nonpos(s[j] - m);
}

TQ_CLONES VECTORIZE static void scale_row(const float *e, float r, float *p, int n)
{
    for (int j = 0; j < n; j++) p[j] = e[j] * r;
}

static float row_max(const float *s, int n)
{
    float m0 = s[0], m1 = s[0];
    int j = 1;
    for (; j + 1 < n; j += 2) {
        m0 = s[j] > m0 ? s[j] : m0;
        m1 = s[j + 1] > m1 ? s[j + 1] : m1;
    }
    if (j < n) m0 = s[j] > m0 ? s[j] : m0;
    return m0 > m1 ? m0 : m1;
}

/* Σ e1, Σ e1 (s − m1), Σ e1 (s − ŝ), Σ e2, Σ e2 (ŝ − m2) of a row. Blocks of 64 are summed in float vector lanes
 * (each lane adds 8 terms: relative error ~8·2^-24 of the block's magnitude) and the block sums in double, in a fixed
 * order: deterministic, and ~1e-7 relative to what the row sums resolve. */
TQ_CLONES static void row_sums(const float *s, const float *sq, const float *e1, const float *e2, float m1, float m2,
                               int n, double out[5])
{
    double z1 = 0, a1 = 0, c = 0, z2 = 0, a2 = 0;
    int j = 0;
    for (; j + 64 <= n; j += 64) {
        v8f bz1 = {0}, ba1 = {0}, bc = {0}, bz2 = {0}, ba2 = {0};
        for (int i = j; i < j + 64; i += 8) {
            v8f sv, qv, ev, fv;
            memcpy(&sv, s + i, sizeof sv);
            memcpy(&qv, sq + i, sizeof qv);
            memcpy(&ev, e1 + i, sizeof ev);
            memcpy(&fv, e2 + i, sizeof fv);
            bz1 += ev;
            ba1 += ev * (sv - m1);
            bc += ev * (sv - qv);
            bz2 += fv;
            ba2 += fv * (qv - m2);
        }
        for (int l = 0; l < 8; l++) {
            z1 += bz1[l];
            a1 += ba1[l];
            c += bc[l];
            z2 += bz2[l];
            a2 += ba2[l];
        }
    }
    for (; j < n; j++) {
        double u = e1[j], w = e2[j];
        z1 += u;
        a1 += u * (double)(s[j] - m1);
        c += u * ((double)s[j] - (double)sq[j]);
        z2 += w;
        a2 += w * (double)(sq[j] - m2);
    }
    out[0] = z1, out[1] = a1, out[2] = c, out[3] = z2, out[4] = a2;
}

/* One row of n scores (exact s, quantized sq, already scaled); e1, e2 are scratch rows. On return s and sq hold
 * p and p̂ (float) for P·V. With m the row max and e_j = exp(s_j − m), z = Σ e_j:
 *   H = log z − Σ e_j (s_j − m)/z,   KL(p‖p̂) = Σ e_j (s_j − ŝ_j)/z − lse(s) + lse(ŝ),
 * where Σ p (s − ŝ) is accumulated directly, not as a difference of two large sums, so a small KL keeps its
 * relative precision. */
static void row_reduce(float *s, float *sq, float *e1, float *e2, int n, sums *acc)
{
    float m1 = row_max(s, n), m2 = row_max(sq, n);
    topk t1 = {.k = n < TOPK ? n : TOPK}, t2 = {.k = t1.k};
    for (int j = 0; j < n; j++) {
        topk_push(&t1, j, s[j]);
        topk_push(&t2, j, sq[j]);
    }
    exp_row(s, m1, e1, n);
    exp_row(sq, m2, e2, n);
    double r[5];
    row_sums(s, sq, e1, e2, m1, m2, n, r);
    double lz1 = log(r[0]), lz2 = log(r[3]);
    acc->kl += r[2] / r[0] - (m1 + lz1) + (m2 + lz2);
    acc->h += lz1 - r[1] / r[0];
    acc->hq += lz2 - r[4] / r[3];
    acc->top += (double)topk_overlap(&t1, &t2) / (double)t1.k;
    acc->rows++;
    scale_row(e1, (float)(1.0 / r[0]), s, n);
    scale_row(e2, (float)(1.0 / r[3]), sq, n);
}

int tq_attn_eval(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                 int T, int d, const tq_attn_spec *spec, int t_lo, int t_hi, tq_attn_stats *out)
{
    int rc = check_args(q, n_q, k, khat, v, vhat, T, d, spec, t_lo, t_hi, out);
    if (rc < 0) return rc;
    const int B = TQ_ATTN_TILE, W = spec ? spec->window : 0, nc = tile_cols(t_hi, W);
    float *S = tq_malloc((size_t)B * (size_t)nc * sizeof(float));
    float *Sq = tq_malloc((size_t)B * (size_t)nc * sizeof(float));
    float *O = tq_malloc((size_t)B * (size_t)d * sizeof(float));
    float *Oq = tq_malloc((size_t)B * (size_t)d * sizeof(float));
    float *E = tq_malloc(2 * (size_t)nc * sizeof(float));
    if (!S || !Sq || !O || !Oq || !E) {
        free(S); free(Sq); free(O); free(Oq); free(E);
        return TQ_ERR_NOMEM;
    }
    const float scale = (float)tq_attn_spec_scale(spec, d);
    const double cap = spec ? spec->softcap : 0;
    sums acc = {0};
    for (int g = 0; g < n_q; g++) {
        const float *qg = q + (size_t)g * T * d;
        for (int t0 = t_lo; t0 < t_hi; t0 += B) {
            /* rows t0..t0+m-1 see keys lo..t0+m-1 at most: lo = 0 globally, the first row's window start else */
            int m = t_hi - t0 < B ? t_hi - t0 : B, lo = W > 0 && t0 - W + 1 > 0 ? t0 - W + 1 : 0;
            int nk = t0 + m - lo;
            const float *kl = k + (size_t)lo * d, *khl = khat + (size_t)lo * d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, d, scale, qg + (size_t)t0 * d, d, kl, d,
                        0.0f, S, nk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, d, scale, qg + (size_t)t0 * d, d, khl, d,
                        0.0f, Sq, nk);
            for (int i = 0; i < m; i++) {
                int t = t0 + i, a = W > 0 && t - W + 1 > lo ? t - W + 1 - lo : 0, n = t - lo + 1 - a;
                float *s = S + (size_t)i * nk, *sq = Sq + (size_t)i * nk;
                if (cap > 0) {
                    softcap_row(s + a, n, cap);
                    softcap_row(sq + a, n, cap);
                }
                row_reduce(s + a, sq + a, E, E + nc, n, &acc);
                /* causal mask and window: keys after t and before the window carry no weight in P·V */
                memset(s, 0, (size_t)a * sizeof(float));
                memset(sq, 0, (size_t)a * sizeof(float));
                memset(s + a + n, 0, (size_t)(nk - a - n) * sizeof(float));
                memset(sq + a + n, 0, (size_t)(nk - a - n) * sizeof(float));
            }
            if (!v) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, nk, 1.0f, S, nk, v + (size_t)lo * d, d, 0.0f,
                        O, d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, nk, 1.0f, Sq, nk, vhat + (size_t)lo * d, d,
                        0.0f, Oq, d);
            for (int i = 0; i < m; i++) {
                double num = 0, den = 0;
                for (int c = 0; c < d; c++) {
                    double o = O[(size_t)i * d + c], e = (double)Oq[(size_t)i * d + c] - o;
                    num += e * e;
                    den += o * o;
                }
                if (den > 0) {
                    acc.out += sqrt(num / den);
                    acc.out_rows++;
                }
            }
        }
    }
    free(S); free(Sq); free(O); free(Oq); free(E);
    finish(&acc, v != NULL, out);
    return TQ_OK;
}

/* Row t's scores in double precision against keys j0..j0+n-1, exact (s) and quantized (sq), scaled and soft-capped
 * as spec says, and their maxima: the scalar reference's arithmetic, shared by tq_attn_eval_ref and out_proj. */
static void score_row(const float *qt, const float *k, const float *khat, int d, int j0, int n, double scale,
                      double cap, double *s, double *sq, double *m1, double *m2)
{
    *m1 = *m2 = -INFINITY;
    for (int j = 0; j < n; j++) {
        double a = 0, b = 0;
        for (int c = 0; c < d; c++) {
            a += (double)qt[c] * k[(size_t)(j0 + j) * d + c];
            b += (double)qt[c] * khat[(size_t)(j0 + j) * d + c];
        }
        s[j] = a * scale;
        sq[j] = b * scale;
        if (cap > 0) {
            s[j] = cap * tanh(s[j] / cap);
            sq[j] = cap * tanh(sq[j] / cap);
        }
        *m1 = fmax(*m1, s[j]);
        *m2 = fmax(*m2, sq[j]);
    }
}

int tq_attn_eval_ref(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                     int T, int d, const tq_attn_spec *spec, int t_lo, int t_hi, tq_attn_stats *out)
{
    int rc = check_args(q, n_q, k, khat, v, vhat, T, d, spec, t_lo, t_hi, out);
    if (rc < 0) return rc;
    double *s = tq_malloc((size_t)t_hi * sizeof(double)), *sq = tq_malloc((size_t)t_hi * sizeof(double));
    if (!s || !sq) {
        free(s); free(sq);
        return TQ_ERR_NOMEM;
    }
    double scale = tq_attn_spec_scale(spec, d), cap = spec ? spec->softcap : 0;
    int W = spec ? spec->window : 0;
    sums acc = {0};
    for (int g = 0; g < n_q; g++)
        for (int t = t_lo; t < t_hi; t++) {
            const float *qt = q + ((size_t)g * T + t) * d;
            /* row t sees keys j0..t: s[j] below is the score of key j0 + j */
            int j0 = W > 0 && t - W + 1 > 0 ? t - W + 1 : 0, n = t - j0 + 1;
            double m1, m2;
            score_row(qt, k, khat, d, j0, n, scale, cap, s, sq, &m1, &m2);
            double z1 = 0, z2 = 0;
            for (int j = 0; j < n; j++) {
                z1 += exp(s[j] - m1);
                z2 += exp(sq[j] - m2);
            }
            double lse1 = m1 + log(z1), lse2 = m2 + log(z2), kl = 0, h = 0, hq = 0;
            topk t1 = {.k = n < TOPK ? n : TOPK}, t2 = {.k = t1.k};
            for (int j = 0; j < n; j++) {
                double lp = s[j] - lse1, lq = sq[j] - lse2, p = exp(lp), pq = exp(lq);
                kl += p * (lp - lq);
                h -= p * lp;
                hq -= pq * lq;
                topk_push(&t1, j, s[j]);
                topk_push(&t2, j, sq[j]);
                s[j] = p;
                sq[j] = pq;
            }
            acc.kl += kl;
            acc.h += h;
            acc.hq += hq;
            acc.top += (double)topk_overlap(&t1, &t2) / (double)t1.k;
            acc.rows++;
            if (!v) continue;
            double num = 0, den = 0;
            for (int c = 0; c < d; c++) {
                double a = 0, b = 0;
                for (int j = 0; j < n; j++) {
                    a += s[j] * v[(size_t)(j0 + j) * d + c];
                    b += sq[j] * vhat[(size_t)(j0 + j) * d + c];
                }
                num += (b - a) * (b - a);
                den += a * a;
            }
            if (den > 0) {
                acc.out += sqrt(num / den);
                acc.out_rows++;
            }
        }
    free(s); free(sq);
    finish(&acc, v != NULL, out);
    return TQ_OK;
}

/* ---------- out_proj: the output error through W_o ---------- */

/* Row t of query head g: softmax weights of keys j0..t (exact keys k into p, quantized khat into pq), under spec. */
static void softmax_row(const float *qt, const float *k, const float *khat, int d, int j0, int n, double scale,
                        double cap, double *p, double *pq)
{
    double m1, m2;
    score_row(qt, k, khat, d, j0, n, scale, cap, p, pq, &m1, &m2);
    double z1 = 0, z2 = 0;
    for (int j = 0; j < n; j++) {
        p[j] = exp(p[j] - m1);
        pq[j] = exp(pq[j] - m2);
        z1 += p[j];
        z2 += pq[j];
    }
    for (int j = 0; j < n; j++) {
        p[j] /= z1;
        pq[j] /= z2;
    }
}

int tq_attn_out_proj(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                     int T, int d, const tq_attn_spec *spec, const float *wo, int n_embd, int ld, double *num,
                     double *den)
{
    *num = *den = NAN;
    if (!q || !k || !khat || !v || !vhat || !wo || n_q < 1 || T < 1 || d < 1 || n_embd < 1 || ld < n_q * d)
        return tq_error_set(TQ_ERR_USAGE, "out_proj: bad shapes (n_q %d, T %d, d %d, n_embd %d, ld %d)", n_q, T, d,
                            n_embd, ld);
    int rc = spec ? tq_attn_spec_check(spec) : TQ_OK;
    if (rc < 0) return rc;
    const int GD = n_q * d;
    /* exact outputs and their errors, [T][G*d]: the rows the projection multiplies */
    float *o = tq_malloc((size_t)T * GD * sizeof *o), *e = tq_malloc((size_t)T * GD * sizeof *e);
    float *yo = tq_malloc((size_t)T * n_embd * sizeof *yo), *ye = tq_malloc((size_t)T * n_embd * sizeof *ye);
    double *p = tq_malloc((size_t)T * sizeof *p), *pq = tq_malloc((size_t)T * sizeof *pq);
    if (!o || !e || !yo || !ye || !p || !pq) {
        rc = TQ_ERR_NOMEM;
        goto out;
    }
    double scale = tq_attn_spec_scale(spec, d), cap = spec ? spec->softcap : 0;
    int W = spec ? spec->window : 0;
    for (int g = 0; g < n_q; g++)
        for (int t = 0; t < T; t++) {
            int j0 = W > 0 && t - W + 1 > 0 ? t - W + 1 : 0, n = t - j0 + 1;
            softmax_row(q + ((size_t)g * T + t) * d, k, khat, d, j0, n, scale, cap, p, pq);
            for (int c = 0; c < d; c++) {
                double a = 0, b = 0;
                for (int j = 0; j < n; j++) {
                    a += p[j] * v[(size_t)(j0 + j) * d + c];
                    b += pq[j] * vhat[(size_t)(j0 + j) * d + c];
                }
                o[(size_t)t * GD + g * d + c] = (float)a;
                e[(size_t)t * GD + g * d + c] = (float)(b - a);
            }
        }
    /* y = o W^T over this group's columns: [T][GD] x [n_embd][GD]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_embd, GD, 1.0f, o, GD, wo, ld, 0.0f, yo, n_embd);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_embd, GD, 1.0f, e, GD, wo, ld, 0.0f, ye, n_embd);
    double sn = 0, sd = 0;
    for (size_t i = 0; i < (size_t)T * n_embd; i++) {
        sn += (double)ye[i] * ye[i];
        sd += (double)yo[i] * yo[i];
    }
    *num = sn;
    *den = sd;
out:
    free(o);
    free(e);
    free(yo);
    free(ye);
    free(p);
    free(pq);
    return rc;
}
