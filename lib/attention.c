/* attention.c: attention metrics of one kv head, exact vs quantized keys/values (see attention.h). Scores come from
 * cblas_sgemm over tiles of queries; each row's log-softmax, KL, entropies and top-8 sets are reduced in double from
 * the float scores, so the only float rounding is in the scores themselves and in P·V. */
#include "attention.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tq.h"

#define TOPK 8

size_t tq_attn_workspace_bytes(int T, int d)
{
    /* two score blocks (exact, quantized) + two output blocks (pV, p̂V̂) */
    return 2 * (size_t)TQ_ATTN_TILE * (size_t)T * sizeof(float) + 2 * (size_t)TQ_ATTN_TILE * (size_t)d * sizeof(float);
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
                      int T, int d, int t_lo, int t_hi, tq_attn_stats *out)
{
    if (!out || !q || !k || !khat || n_q <= 0 || T <= 0 || d <= 0)
        return tq_error_set(TQ_ERR_USAGE, "attention: bad arguments (n_q=%d, T=%d, d=%d)", n_q, T, d);
    if (t_lo < 0 || t_hi > T || t_lo >= t_hi)
        return tq_error_set(TQ_ERR_USAGE, "attention: query range [%d, %d) is empty or outside 0..%d", t_lo, t_hi, T);
    if ((v == NULL) != (vhat == NULL))
        return tq_error_set(TQ_ERR_USAGE, "attention: values and quantized values must both be given or both NULL");
    return TQ_OK;
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

/* One row of n scores (exact s, quantized sq, already scaled). On return s and sq hold p and p̂ (float) for P·V.
 * KL(p‖p̂) = Σ p (s − ŝ) − lse(s) + lse(ŝ): Σ p (s − ŝ) is accumulated directly, not as a difference of two
 * large sums, so a small KL keeps its relative precision. */
static void row_reduce(float *s, float *sq, int n, sums *acc)
{
    float m1 = s[0], m2 = sq[0];
    for (int j = 1; j < n; j++) {
        m1 = s[j] > m1 ? s[j] : m1;
        m2 = sq[j] > m2 ? sq[j] : m2;
    }
    topk t1 = {.k = n < TOPK ? n : TOPK}, t2 = {.k = t1.k};
    double z1 = 0, a1 = 0, c = 0;
    for (int j = 0; j < n; j++) {
        double x = (double)s[j] - m1, e = exp(x);
        z1 += e;
        a1 += e * x;                          /* Σ e (s − m1): entropy */
        c += e * ((double)s[j] - (double)sq[j]);
        topk_push(&t1, j, s[j]);
        s[j] = (float)e;                      /* p_j · z1, normalized below */
    }
    double z2 = 0, a2 = 0;
    for (int j = 0; j < n; j++) {
        double x = (double)sq[j] - m2, e = exp(x);
        z2 += e;
        a2 += e * x;
        topk_push(&t2, j, sq[j]);
        sq[j] = (float)e;
    }
    double lz1 = log(z1), lz2 = log(z2);
    acc->kl += c / z1 - (m1 + lz1) + (m2 + lz2);
    acc->h += lz1 - a1 / z1;                  /* H = lse − Σ p s = log z − Σ p (s − m) */
    acc->hq += lz2 - a2 / z2;
    acc->top += (double)topk_overlap(&t1, &t2) / (double)t1.k;
    acc->rows++;
    float r1 = (float)(1.0 / z1), r2 = (float)(1.0 / z2);
    for (int j = 0; j < n; j++) {
        s[j] *= r1;
        sq[j] *= r2;
    }
}

int tq_attn_eval(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                 int T, int d, int t_lo, int t_hi, tq_attn_stats *out)
{
    int rc = check_args(q, n_q, k, khat, v, vhat, T, d, t_lo, t_hi, out);
    if (rc < 0) return rc;
    const int B = TQ_ATTN_TILE;
    float *S = tq_malloc((size_t)B * (size_t)t_hi * sizeof(float));
    float *Sq = tq_malloc((size_t)B * (size_t)t_hi * sizeof(float));
    float *O = tq_malloc((size_t)B * (size_t)d * sizeof(float));
    float *Oq = tq_malloc((size_t)B * (size_t)d * sizeof(float));
    if (!S || !Sq || !O || !Oq) {
        free(S); free(Sq); free(O); free(Oq);
        return TQ_ERR_NOMEM;
    }
    const float scale = (float)(1.0 / sqrt((double)d));
    sums acc = {0};
    for (int g = 0; g < n_q; g++) {
        const float *qg = q + (size_t)g * T * d;
        for (int t0 = t_lo; t0 < t_hi; t0 += B) {
            int m = t_hi - t0 < B ? t_hi - t0 : B, nk = t0 + m; /* rows t0..t0+m-1 see keys 0..nk-1 at most */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, d, scale, qg + (size_t)t0 * d, d, k, d,
                        0.0f, S, nk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, d, scale, qg + (size_t)t0 * d, d, khat, d,
                        0.0f, Sq, nk);
            for (int i = 0; i < m; i++) {
                int n = t0 + i + 1;
                float *s = S + (size_t)i * nk, *sq = Sq + (size_t)i * nk;
                row_reduce(s, sq, n, &acc);
                /* causal mask: keys after t carry no weight in P·V */
                memset(s + n, 0, (size_t)(nk - n) * sizeof(float));
                memset(sq + n, 0, (size_t)(nk - n) * sizeof(float));
            }
            if (!v) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, nk, 1.0f, S, nk, v, d, 0.0f, O, d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, nk, 1.0f, Sq, nk, vhat, d, 0.0f, Oq, d);
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
    free(S); free(Sq); free(O); free(Oq);
    finish(&acc, v != NULL, out);
    return TQ_OK;
}

int tq_attn_eval_ref(const float *q, int n_q, const float *k, const float *khat, const float *v, const float *vhat,
                     int T, int d, int t_lo, int t_hi, tq_attn_stats *out)
{
    int rc = check_args(q, n_q, k, khat, v, vhat, T, d, t_lo, t_hi, out);
    if (rc < 0) return rc;
    double *s = tq_malloc((size_t)t_hi * sizeof(double)), *sq = tq_malloc((size_t)t_hi * sizeof(double));
    if (!s || !sq) {
        free(s); free(sq);
        return TQ_ERR_NOMEM;
    }
    double scale = 1.0 / sqrt((double)d);
    sums acc = {0};
    for (int g = 0; g < n_q; g++)
        for (int t = t_lo; t < t_hi; t++) {
            const float *qt = q + ((size_t)g * T + t) * d;
            int n = t + 1;
            double m1 = -INFINITY, m2 = -INFINITY;
            for (int j = 0; j < n; j++) {
                double a = 0, b = 0;
                for (int c = 0; c < d; c++) {
                    a += (double)qt[c] * k[(size_t)j * d + c];
                    b += (double)qt[c] * khat[(size_t)j * d + c];
                }
                s[j] = a * scale;
                sq[j] = b * scale;
                m1 = fmax(m1, s[j]);
                m2 = fmax(m2, sq[j]);
            }
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
                    a += s[j] * v[(size_t)j * d + c];
                    b += sq[j] * vhat[(size_t)j * d + c];
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
