/* turbo.c: turbo-mse, turbo-prod and qjl — encoders, decoders and their format rows. A slice is split into one or
 * two instances (all channels, or the rest + the --outliers channels at one more bit), each with its own rotation,
 * codebook and QJL matrix of its own dimension. *_ref works one vector at a time with plain loops; the fast paths
 * run chunks of vectors through sgemm / the batched Hadamard and OpenMP loops, and are tested against the refs. */
#include "turbo.h"

#include <cblas.h>
#if TQ_HAVE_OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codebook.h"
#include "fp16.h"
#include "pack.h"
#include "rng.h"
#include "rotation.h"
#include "tq.h"
#include "turbo_simd.h"

/* The layout of one slice's codes is tq_turbo_layout (turbo.h, README "Quantizers"); the encoders below fill and the
 * decoders read exactly the sections it lists, and the CUDA path (lib/cuda_quant.c) and the benchmarks build their
 * quantizers from tq_turbo_parts_make. */
typedef tq_turbo_layout layout;

static int is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }

static const char *method_name(int method)
{
    return method == TQ_M_TURBO_MSE ? "turbo-mse" : method == TQ_M_TURBO_PROD ? "turbo-prod" : "qjl";
}

/* Sizes in bytes of a section's element type. */
static size_t sec_elem_bytes(int type) { return type == TQ_SEC_U8 ? 1 : type == TQ_SEC_F16 ? 2 : 4; }

/* Validate p for dim d and compute the layout. Messages name the option to change. */
int tq_turbo_layout_make(const tq_qparams *p, int d, layout *L)
{
    memset(L, 0, sizeof *L);
    int method = p->method, b = p->bits, N = p->outliers;
    const char *name = method_name(method);
    L->method = method;
    L->d = d;
    if (d < 1) return tq_error_set(TQ_ERR_USAGE, "%s needs a positive head dim, got %d", name, d);
    if (method == TQ_M_QJL) {
        if (b != 1) return tq_error_set(TQ_ERR_USAGE, "qjl stores 1 bit per projection, got --bits %d; use --bits 1 "
                                        "(or --qjl-m to change the projection count)", b);
        if (N) return tq_error_set(TQ_ERR_USAGE, "qjl has no outlier split; drop --outliers");
        int m = p->qjl_m ? p->qjl_m : d;
        if (m < 1 || m > 64 * d)
            return tq_error_set(TQ_ERR_USAGE, "qjl needs 1 <= --qjl-m <= %d (64 x dim), got %d", 64 * d, m);
        L->ninst = 1;
        L->m[0] = d;
        L->qm[0] = m;
    } else {
        if (method != TQ_M_TURBO_MSE && method != TQ_M_TURBO_PROD)
            return tq_error_set(TQ_ERR_USAGE, "turbo formats do not handle method %d", method);
        int maxb = N ? 7 : 8;
        if (b < 1 || b > maxb)
            return tq_error_set(TQ_ERR_USAGE, "%s needs --bits 1..%d%s, got %d", name, maxb,
                                N ? " with --outliers (outlier channels take bits+1 <= 8)" : "", b);
        if (N < 0 || N >= d)
            return tq_error_set(TQ_ERR_USAGE, "--outliers must be 0..%d (fewer than the head dim %d), got %d", d - 1,
                                d, N);
        if (p->rotation != TQ_ROT_DENSE && p->rotation != TQ_ROT_HADAMARD && p->rotation != TQ_ROT_NONE)
            return tq_error_set(TQ_ERR_USAGE, "unknown rotation %d; use dense, hadamard or none", p->rotation);
        if (p->codebook != TQ_CB_BETA && p->codebook != TQ_CB_GAUSSIAN && p->codebook != TQ_CB_EMPIRICAL)
            return tq_error_set(TQ_ERR_USAGE, "unknown codebook %d; use beta, gaussian or empirical", p->codebook);
        L->ninst = N ? 2 : 1;
        L->m[0] = d - N;
        L->m[1] = N;
        int extra = method == TQ_M_TURBO_PROD; /* one of the b bits is the QJL sign */
        for (int k = 0; k < L->ninst; k++) {
            L->mse_bits[k] = b + k - extra;
            L->qm[k] = extra ? L->m[k] : 0;
            if (L->mse_bits[k] > 0) {
                if (p->rotation == TQ_ROT_HADAMARD && !is_pow2(L->m[k]))
                    return tq_error_set(TQ_ERR_USAGE, "hadamard rotation needs a power-of-two dim, got %d%s; use "
                                        "--rotation dense", L->m[k], N ? " (channels of one --outliers part)" : "");
                if (p->codebook != TQ_CB_GAUSSIAN && L->m[k] < 3)
                    return tq_error_set(TQ_ERR_USAGE, "the beta codebook needs dim >= 3, got %d%s; use --codebook "
                                        "gaussian", L->m[k], N ? " (channels of one --outliers part)" : "");
            }
        }
    }
    for (int k = 0; k < L->ninst; k++) {
        L->code_off[k] = L->code_row;
        L->code_row += tq_pack_row_bytes(L->m[k], L->mse_bits[k]);
        L->sign_off[k] = L->sign_row;
        L->sign_row += L->qm[k] ? tq_pack_row_bytes(L->qm[k], 1) : 0;
        L->norm_slot[k] = (L->mse_bits[k] > 0 || method == TQ_M_QJL) ? L->nnorm++ : -1;
        L->nrnorm += method == TQ_M_TURBO_PROD;
        L->cb_off[k] = L->cb_count;
        if (p->codebook == TQ_CB_EMPIRICAL && L->mse_bits[k] > 0 && method != TQ_M_QJL)
            L->cb_count += 1 << L->mse_bits[k];
    }
    /* the sections, in the order the encoder writes them */
    int nt = p->norm_fp32 ? TQ_SEC_F32 : TQ_SEC_F16;
    const tq_turbo_section sec[TQ_TURBO_NSEC] = {
        [TQ_TURBO_SEC_CODES] = {"codes", TQ_SEC_U8, L->code_row > 0, L->code_row, 0},
        [TQ_TURBO_SEC_NORMS] = {"norms", nt, L->nnorm > 0, (size_t)L->nnorm, 0},
        [TQ_TURBO_SEC_SIGNS] = {"signs", TQ_SEC_U8, L->sign_row > 0, L->sign_row, 0},
        [TQ_TURBO_SEC_RNORMS] = {"rnorms", nt, L->nrnorm > 0, (size_t)L->nrnorm, 0},
        [TQ_TURBO_SEC_MEAN] = {"mean", TQ_SEC_F32, p->center != 0, 0, (size_t)d},
        [TQ_TURBO_SEC_OUTLIER_IDX] = {"outlier_idx", TQ_SEC_I32, L->ninst == 2, 0, (size_t)L->m[1]},
        [TQ_TURBO_SEC_CODEBOOK] = {"codebook", TQ_SEC_F32, L->cb_count > 0, 0, (size_t)L->cb_count},
    };
    memcpy(L->sec, sec, sizeof sec);
    return TQ_OK;
}

size_t tq_turbo_payload(const layout *L, long n)
{
    size_t s = 0;
    for (int i = 0; i < TQ_TURBO_NSEC; i++)
        if (L->sec[i].present) s += tq_turbo_section_count(&L->sec[i], n) * sec_elem_bytes(L->sec[i].type);
    return s;
}

/* Rotations, fixed codebooks and QJL matrices of a layout already made (empirical codebooks: allocated zeroed, then
 * fitted or read from the codes). */
static int parts_setup(tq_turbo_parts *q, const tq_qparams *p, tq_slice_id id)
{
    const layout *L = &q->L;
    int st;
    for (int k = 0; k < L->ninst; k++) {
        if (L->mse_bits[k] > 0) {
            if ((st = tq_rotation_make(&q->rot[k], p->rotation, L->m[k], p->seed, id, TQ_PURPOSE_ROTATION, k)))
                return st;
            if (!(q->cb[k] = tq_calloc(1, sizeof(tq_codebook)))) return TQ_ERR_NOMEM;
            if (p->codebook != TQ_CB_EMPIRICAL &&
                (st = tq_codebook_get(q->cb[k], p->codebook, L->m[k], L->mse_bits[k])))
                return st;
        }
        if (L->qm[k] && (st = tq_gaussian_matrix(&q->S[k], L->qm[k], L->m[k], p->seed, id, TQ_PURPOSE_QJL, k)))
            return st;
    }
    return TQ_OK;
}

void tq_turbo_parts_free(tq_turbo_parts *q)
{
    if (!q) return;
    for (int k = 0; k < 2; k++) {
        tq_rotation_free(q->rot[k]);
        free(q->cb[k]);
        free(q->S[k]);
    }
    memset(q, 0, sizeof *q);
}

int tq_turbo_parts_make(tq_turbo_parts *q, const tq_qparams *p, int d, tq_slice_id id)
{
    memset(q, 0, sizeof *q);
    int st = tq_turbo_layout_make(p, d, &q->L);
    if (!st) st = parts_setup(q, p, id);
    if (st) tq_turbo_parts_free(q);
    return st;
}

/* ---- per-slice context: the quantizer's parts and the channel lists ---- */

typedef struct {
    tq_turbo_parts q;
    const tq_qparams *p;
    int *ch[2];             /* channel list of each instance */
} ctx;

static void ctx_free(ctx *c)
{
    for (int k = 0; k < 2; k++) free(c->ch[k]);
    tq_turbo_parts_free(&c->q);
}

void tq_turbo_outlier_channels(const float *x, int n, int d, int N, int *idx)
{
    double *ss = calloc((size_t)d, sizeof(double));
    char *taken = calloc((size_t)d, 1);
    if (!ss || !taken) { /* fall back to the first N channels rather than fail deep inside an encoder */
        for (int i = 0; i < N; i++) idx[i] = i;
        free(ss); free(taken);
        return;
    }
    for (long i = 0; i < n; i++)
        for (int j = 0; j < d; j++) ss[j] += (double)x[i * d + j] * x[i * d + j];
    for (int t = 0; t < N; t++) { /* N picks of the largest remaining (N, d are small) */
        int best = -1;
        for (int j = 0; j < d; j++)
            if (!taken[j] && (best < 0 || ss[j] > ss[best])) best = j;
        taken[best] = 1;
    }
    for (int j = 0, t = 0; j < d; j++)
        if (taken[j]) idx[t++] = j;
    free(ss);
    free(taken);
}

/* Channel lists from the outlier indices (NULL: none). */
static int ctx_channels(ctx *c, const int *oidx)
{
    const layout *L = &c->q.L;
    for (int k = 0; k < L->ninst; k++)
        if (!(c->ch[k] = tq_malloc(sizeof(int) * (size_t)L->m[k]))) return TQ_ERR_NOMEM;
    if (L->ninst == 1) {
        for (int j = 0; j < L->d; j++) c->ch[0][j] = j;
        return TQ_OK;
    }
    char *is_out = tq_calloc((size_t)L->d, 1);
    if (!is_out) return TQ_ERR_NOMEM;
    for (int t = 0; t < L->m[1]; t++) {
        if (oidx[t] < 0 || oidx[t] >= L->d || is_out[oidx[t]] || (t && oidx[t] <= oidx[t - 1])) {
            free(is_out);
            return tq_error_set(TQ_ERR, "section 'outlier_idx' entry %d (%d) is not an ascending channel below %d", t,
                                oidx[t], L->d);
        }
        is_out[oidx[t]] = 1;
        c->ch[1][t] = oidx[t];
    }
    for (int j = 0, r = 0; j < L->d; j++)
        if (!is_out[j]) c->ch[0][r++] = j;
    free(is_out);
    return TQ_OK;
}

/* ||v||: float lanes of 8 in a fixed order, then a double sum. Shared by ref and fast paths so both see the same
 * norms bit for bit (the Hadamard path's codes are then identical, not merely close). */
static float vnorm(const float *v, int m)
{
    float acc[8] = {0};
    int j = 0;
    for (; j + 8 <= m; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += v[j + l] * v[j + l];
    double s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    for (; j < m; j++) s += (double)v[j] * v[j];
    if (isfinite(s)) return (float)sqrt(s);
    /* a finite vector beyond 1.8e19 overflows the float squares: its norm (up to 3.4e38) is still a float, found by
     * scaling by the largest magnitude; a NaN/Inf component stays non-finite and is reported as such */
    double big = 0, t = 0;
    for (int i = 0; i < m; i++) {
        if (!isfinite(v[i])) return v[i] - v[i] + (float)INFINITY;
        if (fabs(v[i]) > big) big = fabs(v[i]);
    }
    for (int i = 0; i < m; i++) t += ((double)v[i] / big) * ((double)v[i] / big);
    return (float)(big * sqrt(t));
}

/* Store a norm (fp16 unless norm_fp32); returns the value decode will see. Non-finite or fp16-overflowing norms are
 * errors with the fix. */
static int norm_store(const tq_qparams *p, void *sec, size_t at, float v, long vec, float *seen)
{
    if (isnan(v))
        return tq_error_set(TQ_ERR, "vector %ld has a non-finite value (norm %g); clean the input", vec, (double)v);
    if (isinf(v))
        return tq_error_set(TQ_ERR, "vector %ld has a norm beyond the float range (3.4e38); rescale the input", vec);
    if (p->norm_fp32) {
        ((float *)sec)[at] = v;
        *seen = v;
        return TQ_OK;
    }
    uint16_t h = tq_float_to_half(v);
    if ((h & 0x7c00u) == 0x7c00u)
        return tq_error_set(TQ_ERR, "norm %g of vector %ld overflows fp16 (max 65504); use --norms fp32", (double)v,
                            vec);
    ((uint16_t *)sec)[at] = h;
    *seen = tq_half_to_float(h);
    return TQ_OK;
}

static float norm_load(const tq_qparams *p, const void *sec, size_t at)
{
    return p->norm_fp32 ? ((const float *)sec)[at] : tq_half_to_float(((const uint16_t *)sec)[at]);
}

/* Sections of a fresh encode; pointers into c. */
typedef struct {
    uint8_t *codes, *signs;
    void *norms, *rnorms;
    float *mean, *cbk;
    int *oidx;
} secs;

/* Where each section's data lands in secs, by TQ_TURBO_SEC_* index. */
static void **secs_slot(secs *s, int i)
{
    switch (i) {
    case TQ_TURBO_SEC_CODES: return (void **)&s->codes;
    case TQ_TURBO_SEC_NORMS: return &s->norms;
    case TQ_TURBO_SEC_SIGNS: return (void **)&s->signs;
    case TQ_TURBO_SEC_RNORMS: return &s->rnorms;
    case TQ_TURBO_SEC_MEAN: return (void **)&s->mean;
    case TQ_TURBO_SEC_OUTLIER_IDX: return (void **)&s->oidx;
    default: return (void **)&s->cbk;
    }
}

static int secs_add(tq_codes *c, const layout *L, int n, secs *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < TQ_TURBO_NSEC; i++) {
        const tq_turbo_section *sec = &L->sec[i];
        if (sec->present && !(*secs_slot(s, i) = tq_codes_add(c, sec->name, sec->type, tq_turbo_section_count(sec, n))))
            return TQ_ERR_NOMEM;
    }
    return TQ_OK;
}

/* Per-channel mean over the slice (double sums), and the centered copy when --center; else xc = x. */
static int center_and_split(const tq_qparams *p, const layout *L, const float *x, int n, secs *s, ctx *c,
                            float **xc_out)
{
    int d = L->d;
    *xc_out = (float *)x;
    if (p->center) {
        double *acc = tq_calloc((size_t)d, sizeof(double));
        float *xc = tq_malloc(sizeof(float) * (size_t)n * d);
        if (!acc || !xc) { free(acc); free(xc); return TQ_ERR_NOMEM; }
        for (long i = 0; i < n; i++)
            for (int j = 0; j < d; j++) acc[j] += x[i * d + j];
        for (int j = 0; j < d; j++) s->mean[j] = n ? (float)(acc[j] / n) : 0.0f;
        for (long i = 0; i < n; i++)
            for (int j = 0; j < d; j++) xc[i * d + j] = x[i * d + j] - s->mean[j];
        free(acc);
        *xc_out = xc;
    }
    if (L->ninst == 2) tq_turbo_outlier_channels(*xc_out, n, d, L->m[1], s->oidx);
    return ctx_channels(c, s->oidx);
}

static int encode_begin(const tq_qparams *p, tq_slice_id id, int n, int d, tq_codes *c, ctx *cx, secs *s)
{
    memset(cx, 0, sizeof *cx);
    cx->p = p;
    int st = tq_turbo_layout_make(p, d, &cx->q.L);
    if (st) return st;
    if (n < 0) return tq_error_set(TQ_ERR_USAGE, "negative vector count %d", n);
    c->p = *p;
    c->id = id;
    c->n = n;
    c->d = d;
    if ((st = secs_add(c, &cx->q.L, n, s))) return st;
    return parts_setup(&cx->q, p, id);
}

/* ================================================ references ================================================= */

/* One instance of one vector: sub (m values) -> codes row, norm, and the MSE reconstruction xm (for the residual). */
static int ref_mse_one(ctx *cx, int k, const float *sub, long i, int n, secs *s, float *y, float *xm, uint8_t *idx)
{
    const layout *L = &cx->q.L;
    int m = L->m[k];
    float nrm = vnorm(sub, m), seen;
    int st = norm_store(cx->p, s->norms, (size_t)L->norm_slot[k] * n + i, nrm, i, &seen);
    if (st) return st;
    float inv = nrm > 0 ? 1.0f / nrm : 0.0f;
    tq_rotation_forward_ref(cx->q.rot[k], sub, y);
    for (int j = 0; j < m; j++) idx[j] = (uint8_t)tq_codebook_encode_ref(cx->q.cb[k], y[j] * inv);
    tq_pack_row_ref(idx, m, L->mse_bits[k], s->codes + (size_t)i * L->code_row + L->code_off[k]);
    if (xm) {
        for (int j = 0; j < m; j++) y[j] = cx->q.cb[k]->c[idx[j]];
        tq_rotation_inverse_ref(cx->q.rot[k], y, xm);
        for (int j = 0; j < m; j++) xm[j] *= seen;
    }
    return TQ_OK;
}

/* QJL stage of one instance of one vector: signs of S r (bit set: >= 0, i.e. sign(0) = +1) and gamma = ||r||. */
static int ref_qjl_one(ctx *cx, int k, const float *r, long i, int n, secs *s, uint8_t *bitsbuf)
{
    const layout *L = &cx->q.L;
    int m = L->m[k], q = L->qm[k];
    for (int t = 0; t < q; t++) {
        double v = 0;
        for (int j = 0; j < m; j++) v += (double)cx->q.S[k][(size_t)t * m + j] * r[j];
        bitsbuf[t] = v >= 0;
    }
    tq_pack_row_ref(bitsbuf, q, 1, s->signs + (size_t)i * L->sign_row + L->sign_off[k]);
    float seen, g = vnorm(r, m);
    if (L->method == TQ_M_QJL) return norm_store(cx->p, s->norms, (size_t)L->norm_slot[k] * n + i, g, i, &seen);
    return norm_store(cx->p, s->rnorms, (size_t)k * n + i, g, i, &seen);
}

static void gather(const float *xv, const int *ch, int m, float *sub)
{
    for (int j = 0; j < m; j++) sub[j] = xv[ch[j]];
}

/* Empirical codebooks: fit each instance on its rotated unit vectors over the slice (zero vectors left out), with
 * `rot` the forward map (ref: per vector; fast: batched). Stores the centroids in the "codebook" section. */
static int fit_empirical(ctx *cx, const float *xc, int n, secs *s, int fast)
{
    const layout *L = &cx->q.L;
    for (int k = 0; k < L->ninst; k++) {
        if (L->mse_bits[k] <= 0) continue;
        int m = L->m[k];
        float *sample = tq_malloc(sizeof(float) * ((size_t)n * m + 1)), *sub = tq_malloc(sizeof(float) * (size_t)m);
        if (!sample || !sub) { free(sample); free(sub); return TQ_ERR_NOMEM; }
        long cnt = 0;
        if (fast && n > 0) {
            float *all = tq_malloc(sizeof(float) * (size_t)n * m);
            if (!all) { free(sample); free(sub); return TQ_ERR_NOMEM; }
            for (long i = 0; i < n; i++) gather(xc + i * L->d, cx->ch[k], m, all + i * m);
            tq_rotation_forward(cx->q.rot[k], all, sample, n);
            for (long i = 0; i < n; i++) {
                gather(xc + i * L->d, cx->ch[k], m, sub);
                float nrm = vnorm(sub, m);
                if (!(nrm > 0) || !isfinite(nrm)) continue;
                float inv = 1.0f / nrm;
                for (int j = 0; j < m; j++) sample[cnt * m + j] = sample[i * m + j] * inv;
                cnt++;
            }
            free(all);
        } else {
            for (long i = 0; i < n; i++) {
                gather(xc + i * L->d, cx->ch[k], m, sub);
                float nrm = vnorm(sub, m);
                if (!(nrm > 0) || !isfinite(nrm)) continue;
                float inv = 1.0f / nrm;
                tq_rotation_forward_ref(cx->q.rot[k], sub, sample + cnt * m);
                for (int j = 0; j < m; j++) sample[cnt * m + j] *= inv;
                cnt++;
            }
        }
        int st = cnt ? tq_codebook_fit(cx->q.cb[k], m, L->mse_bits[k], sample, cnt * m)
                     : tq_codebook_get(cx->q.cb[k], TQ_CB_BETA, m, L->mse_bits[k]); /* all-zero slice: beta stands in */
        free(sample);
        free(sub);
        if (st) return st;
        memcpy(s->cbk + L->cb_off[k], cx->q.cb[k]->c, sizeof(float) * (size_t)cx->q.cb[k]->n);
    }
    return TQ_OK;
}

static int turbo_encode_ref(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    ctx cx;
    secs s;
    float *xc = NULL, *buf = NULL;
    int st = encode_begin(p, id, n, d, c, &cx, &s);
    if (st) goto out;
    if ((st = center_and_split(p, &cx.q.L, x, n, &s, &cx, &xc))) goto out;
    if (p->codebook == TQ_CB_EMPIRICAL && (st = fit_empirical(&cx, xc, n, &s, 0))) goto out;
    int qmax = cx.q.L.qm[0] > cx.q.L.qm[1] ? cx.q.L.qm[0] : cx.q.L.qm[1];
    /* sub, y, xm (d each) + idx bytes (d) + sign bits (qmax) */
    buf = tq_malloc(sizeof(float) * 3 * (size_t)d + (size_t)d + (size_t)qmax + 16);
    if (!buf) { st = TQ_ERR_NOMEM; goto out; }
    float *sub = buf, *y = buf + d, *xm = buf + 2 * d;
    uint8_t *idx = (uint8_t *)(buf + 3 * d), *sb = idx + d;
    for (long i = 0; i < n; i++)
        for (int k = 0; k < cx.q.L.ninst; k++) {
            int m = cx.q.L.m[k];
            gather(xc + i * d, cx.ch[k], m, sub);
            if (cx.q.L.mse_bits[k] > 0 &&
                (st = ref_mse_one(&cx, k, sub, i, n, &s, y, cx.q.L.qm[k] ? xm : NULL, idx)))
                goto out;
            if (cx.q.L.qm[k]) {
                if (cx.q.L.mse_bits[k] > 0)
                    for (int j = 0; j < m; j++) sub[j] -= xm[j]; /* residual r = x - x_mse */
                if ((st = ref_qjl_one(&cx, k, sub, i, n, &s, sb))) goto out;
            }
        }
out:
    if (xc != x) free(xc);
    free(buf);
    ctx_free(&cx);
    if (st) tq_codes_free(c);
    return st;
}

/* Decoding side: layout, sections and context from the codes alone. */
static int decode_begin(const tq_codes *c, ctx *cx, secs *s)
{
    memset(cx, 0, sizeof *cx);
    memset(s, 0, sizeof *s);
    cx->p = &c->p;
    int st = tq_turbo_layout_make(&c->p, c->d, &cx->q.L);
    if (st) return st;
    const layout *L = &cx->q.L;
    for (int i = 0; i < TQ_TURBO_NSEC; i++) {
        const tq_turbo_section *want = &L->sec[i];
        size_t count = want->present ? tq_turbo_section_count(want, c->n) : 0;
        if (!count) continue;
        const tq_section *sec = tq_codes_find(c, want->name);
        if (!sec || sec->type != want->type || sec->count != count)
            return tq_error_set(TQ_ERR, "%s codes: section '%s' %s (want %zu elements of type %d)",
                                method_name(c->p.method), want->name, sec ? "has the wrong size or type" : "is missing",
                                count, want->type);
        *secs_slot(s, i) = sec->data;
    }
    if ((st = ctx_channels(cx, s->oidx))) return st;
    if ((st = parts_setup(&cx->q, &c->p, c->id))) return st;
    for (int k = 0; k < L->ninst; k++)
        if (L->cb_count && L->mse_bits[k] > 0 &&
            (st = tq_codebook_from_centroids(cx->q.cb[k], TQ_CB_EMPIRICAL, L->m[k], L->mse_bits[k],
                                             s->cbk + L->cb_off[k])))
            return tq_error_prefix(st, "section 'codebook': ");
    return TQ_OK;
}

static int turbo_decode_ref(const tq_codes *c, float *xhat)
{
    ctx cx;
    secs s;
    int d = c->d, n = c->n;
    float *buf = NULL;
    int st = decode_begin(c, &cx, &s);
    if (st) goto out;
    const layout *L = &cx.q.L;
    buf = tq_malloc(sizeof(float) * 2 * (size_t)d + (size_t)d + 16);
    if (!buf) { st = TQ_ERR_NOMEM; goto out; }
    float *y = buf, *xk = buf + d;
    uint8_t *idx = (uint8_t *)(buf + 2 * d);
    const double coef0 = TQ_SQRT_HALF_PI;
    for (long i = 0; i < n; i++) {
        float *xo = xhat + i * d;
        for (int k = 0; k < L->ninst; k++) {
            int m = L->m[k];
            for (int j = 0; j < m; j++) xk[j] = 0;
            if (L->mse_bits[k] > 0) {
                tq_unpack_row_ref(s.codes + (size_t)i * L->code_row + L->code_off[k], m, L->mse_bits[k], idx);
                for (int j = 0; j < m; j++) y[j] = cx.q.cb[k]->c[idx[j]];
                tq_rotation_inverse_ref(cx.q.rot[k], y, xk);
                float nrm = norm_load(&c->p, s.norms, (size_t)L->norm_slot[k] * n + i);
                for (int j = 0; j < m; j++) xk[j] *= nrm;
            }
            if (L->qm[k]) {
                int q = L->qm[k];
                const uint8_t *row = s.signs + (size_t)i * L->sign_row + L->sign_off[k];
                float g = L->method == TQ_M_QJL ? norm_load(&c->p, s.norms, (size_t)L->norm_slot[k] * n + i)
                                                : norm_load(&c->p, s.rnorms, (size_t)k * n + i);
                double coef = coef0 / q * g;
                for (int j = 0; j < m; j++) {
                    double v = 0;
                    for (int t = 0; t < q; t++)
                        v += tq_pack_get(row, t, 1) ? cx.q.S[k][(size_t)t * m + j] : -cx.q.S[k][(size_t)t * m + j];
                    xk[j] += (float)(coef * v);
                }
            }
            for (int j = 0; j < m; j++) xo[cx.ch[k][j]] = xk[j];
        }
        if (s.mean)
            for (int j = 0; j < d; j++) xo[j] += s.mean[j];
    }
out:
    free(buf);
    ctx_free(&cx);
    return st;
}

/* ================================================ fast paths ================================================= */

/* Threading: a slice is cut into blocks of BLK vectors and each OpenMP thread runs whole blocks — gather, norms,
 * its own single-threaded sgemm, quantize, pack, the QJL stage — in its own scratch. Mixing OpenBLAS's thread pool
 * with OpenMP loops between sgemm calls was 5x slower on 16 cores (both pools' idle threads spin and fight for the
 * cores), so OpenBLAS is held at one thread while the blocks run and restored after. */
#define BLK 1024
#if TQ_HAVE_OPENMP
#define TQ_SIMD _Pragma("omp simd")
#else
#define TQ_SIMD
#endif
/* AVX2 clone of the hot loops where GCC can dispatch at load time; every clone computes the same exact
 * comparisons and products, so codes do not depend on the CPU. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define TQ_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TQ_CLONES
#endif

/* Scale a rotated row by 1/||x|| and encode it. Up to 16 levels: count the thresholds below each value, one
 * threshold at a time across the row (SIMD compares; the same count the reference's linear scan makes); more
 * levels: the branchless binary search. acc: m ints of scratch. */
TQ_CLONES static void quantize_row(const tq_codebook *cb, float *restrict y, float iv, uint8_t *restrict idx,
                                   int32_t *restrict acc, int m)
{
    TQ_SIMD
    for (int j = 0; j < m; j++) y[j] *= iv;
    if (cb->n <= 16) {
        /* 16 coordinates at a time against every threshold, so the counts stay in registers. */
        const int nt = cb->n - 1;
        int j0 = 0;
        for (; j0 + 16 <= m; j0 += 16) {
            int32_t a[16] = {0};
            const float *yc = y + j0;
            for (int t = 0; t < nt; t++) {
                const float th = cb->t[t];
                TQ_SIMD
                for (int j = 0; j < 16; j++) a[j] += yc[j] > th;
            }
            TQ_SIMD
            for (int j = 0; j < 16; j++) idx[j0 + j] = (uint8_t)a[j];
        }
        for (int j = j0; j < m; j++) acc[j] = 0;
        for (int t = 0; t < nt; t++)
            for (int j = j0; j < m; j++) acc[j] += y[j] > cb->t[t];
        for (int j = j0; j < m; j++) idx[j] = (uint8_t)acc[j];
    } else
        for (int j = 0; j < m; j++) idx[j] = (uint8_t)tq_codebook_encode(cb, y[j]);
}

/* Scratch of one thread for blocks of up to B vectors: sub, y, xm (B x d), proj (B x qmax), norms, 1/norms, counts
 * (B x d ints), bytes. */
typedef struct { float *sub, *y, *xm, *proj, *seen, *inv; int32_t *acc; uint8_t *ib; } scratch;

static float *scratch_alloc(scratch *w, int d, int qmax, size_t B)
{
    size_t mx = (size_t)(d > qmax ? d : qmax);
    float *buf = tq_malloc(sizeof(float) * (B * (4 * (size_t)d + (size_t)qmax + 2)) + B * mx);
    if (!buf) return NULL;
    w->sub = buf;
    w->y = w->sub + B * d;
    w->xm = w->y + B * d;
    w->proj = w->xm + B * d;
    w->seen = w->proj + B * qmax;
    w->inv = w->seen + B;
    w->acc = (int32_t *)(w->inv + B);
    w->ib = (uint8_t *)(w->acc + B * d);
    return buf;
}

/* Encode vectors [i0, i0 + cnt) of the slice. Returns the index of a vector whose norm cannot be stored (the caller
 * redoes it on its own thread to record the message: tq_error_set is per thread), or -1. */
static long encode_block(ctx *cx, secs *s, const float *xc, int n, long i0, int cnt, scratch *w)
{
    const layout *L = &cx->q.L;
    const tq_qparams *p = cx->p;
    int d = L->d;
    for (int k = 0; k < L->ninst; k++) {
        int m = L->m[k], bm = L->mse_bits[k], q = L->qm[k];
        const float *sk = w->sub;
        if (L->ninst == 1) sk = xc + i0 * d; /* all channels in order: no gather */
        else
            for (int r = 0; r < cnt; r++) gather(xc + (i0 + r) * d, cx->ch[k], m, w->sub + (size_t)r * m);
        if (bm > 0 && q == 0 && cx->q.rot[k]->kind == TQ_ROT_HADAMARD && tq_had_avx512_usable(m, bm, cx->q.cb[k]->t)) {
            /* the whole encode of a row in AVX-512 registers; norms checked and stored after, in row order */
            size_t base = (size_t)L->norm_slot[k] * n + i0;
            tq_had_mse_rows_avx512(sk, cnt, m, cx->q.rot[k]->signs, tq_fwht_scale(m), cx->q.cb[k]->t, bm,
                                   s->codes + (size_t)i0 * L->code_row + L->code_off[k], L->code_row, w->inv);
            for (int r = 0; r < cnt; r++)
                if (norm_store(p, s->norms, base + r, w->inv[r], i0 + r, &w->seen[r])) return i0 + r;
        } else if (bm > 0) {
            size_t base = (size_t)L->norm_slot[k] * n + i0;
            for (int r = 0; r < cnt; r++) {
                float v = vnorm(sk + (size_t)r * m, m);
                if (norm_store(p, s->norms, base + r, v, i0 + r, &w->seen[r])) return i0 + r;
                w->inv[r] = v > 0 ? 1.0f / v : 0.0f;
            }
            tq_rotation_forward(cx->q.rot[k], sk, w->y, cnt);
            const tq_codebook *cb = cx->q.cb[k];
            uint8_t *codes = s->codes + (size_t)i0 * L->code_row + L->code_off[k];
            for (int r = 0; r < cnt; r++) {
                float *yr = w->y + (size_t)r * m;
                uint8_t *ir = w->ib + (size_t)r * m;
                quantize_row(cb, yr, w->inv[r], ir, w->acc, m);
                tq_pack_row(ir, m, bm, codes + (size_t)r * L->code_row);
                if (q)
                    for (int j = 0; j < m; j++) yr[j] = cb->c[ir[j]];
            }
            if (q) { /* residual r = x - ||x|| Pi^T c[idx], what the decoder will rebuild */
                tq_rotation_inverse(cx->q.rot[k], w->y, w->xm, cnt);
                for (int r = 0; r < cnt; r++) {
                    float *xr = w->xm + (size_t)r * m, sv = w->seen[r];
                    const float *srow = sk + (size_t)r * m;
                    TQ_SIMD
                    for (int j = 0; j < m; j++) xr[j] = srow[j] - xr[j] * sv;
                }
            }
        }
        if (q > 0) {
            const float *res = bm > 0 ? w->xm : sk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cnt, q, m, 1.0f, res, m, cx->q.S[k], m, 0.0f, w->proj,
                        q);
            uint8_t *signs = s->signs + (size_t)i0 * L->sign_row + L->sign_off[k];
            for (int r = 0; r < cnt; r++) {
                const float *pr = w->proj + (size_t)r * q;
                TQ_SIMD
                for (int t = 0; t < q; t++) w->ib[t] = pr[t] >= 0;
                tq_pack_row(w->ib, q, 1, signs + (size_t)r * L->sign_row);
                float g = vnorm(res + (size_t)r * m, m), sv;
                int bad = L->method == TQ_M_QJL
                              ? norm_store(p, s->norms, (size_t)L->norm_slot[k] * n + i0 + r, g, i0 + r, &sv)
                              : norm_store(p, s->rnorms, (size_t)k * n + i0 + r, g, i0 + r, &sv);
                if (bad) return i0 + r;
            }
        }
    }
    return -1;
}

/* Decode vectors [i0, i0 + cnt) into xhat. */
static void decode_block(const ctx *cx, const secs *s, const tq_qparams *p, int n, long i0, int cnt, scratch *w,
                         float *xhat)
{
    const layout *L = &cx->q.L;
    int d = L->d;
    for (int k = 0; k < L->ninst; k++) {
        int m = L->m[k], bm = L->mse_bits[k], q = L->qm[k];
        float *xk = w->xm;
        if (bm > 0 && cx->q.rot[k]->kind == TQ_ROT_HADAMARD && tq_had_avx512_usable(m, bm, cx->q.cb[k]->t)) {
            /* the MSE reconstruction of a row in AVX-512 registers (the QJL term below adds to it as usual) */
            for (int r = 0; r < cnt; r++) w->seen[r] = norm_load(p, s->norms, (size_t)L->norm_slot[k] * n + i0 + r);
            tq_had_mse_decode_rows_avx512(s->codes + (size_t)i0 * L->code_row + L->code_off[k], L->code_row, cnt, m,
                                          bm, cx->q.cb[k]->c, cx->q.rot[k]->signs, tq_fwht_scale(m), w->seen, xk);
        } else if (bm > 0) {
            const tq_codebook *cb = cx->q.cb[k];
            const uint8_t *codes = s->codes + (size_t)i0 * L->code_row + L->code_off[k];
            for (int r = 0; r < cnt; r++) {
                uint8_t *ir = w->ib;
                float *yr = w->y + (size_t)r * m;
                tq_unpack_row(codes + (size_t)r * L->code_row, m, bm, ir);
                for (int j = 0; j < m; j++) yr[j] = cb->c[ir[j]];
            }
            tq_rotation_inverse(cx->q.rot[k], w->y, xk, cnt);
            for (int r = 0; r < cnt; r++) {
                float nrm = norm_load(p, s->norms, (size_t)L->norm_slot[k] * n + i0 + r), *xr = xk + (size_t)r * m;
                TQ_SIMD
                for (int j = 0; j < m; j++) xr[j] *= nrm;
            }
        } else memset(xk, 0, sizeof(float) * (size_t)cnt * m);
        if (q > 0) {
            const uint8_t *signs = s->signs + (size_t)i0 * L->sign_row + L->sign_off[k];
            for (int r = 0; r < cnt; r++) {
                float *zr = w->proj + (size_t)r * q;
                tq_unpack_row(signs + (size_t)r * L->sign_row, q, 1, w->ib);
                for (int t = 0; t < q; t++) zr[t] = w->ib[t] ? 1.0f : -1.0f;
            }
            /* y = Z S: row r is S^T z_r */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cnt, m, q, 1.0f, w->proj, q, cx->q.S[k], m, 0.0f,
                        w->y, m);
            for (int r = 0; r < cnt; r++) {
                float g = L->method == TQ_M_QJL ? norm_load(p, s->norms, (size_t)L->norm_slot[k] * n + i0 + r)
                                                : norm_load(p, s->rnorms, (size_t)k * n + i0 + r);
                float coef = (float)(TQ_SQRT_HALF_PI / q * g), *xr = xk + (size_t)r * m;
                const float *yr = w->y + (size_t)r * m;
                TQ_SIMD
                for (int j = 0; j < m; j++) xr[j] += coef * yr[j];
            }
        }
        for (int r = 0; r < cnt; r++) {
            float *xo = xhat + (i0 + r) * d;
            const float *xr = xk + (size_t)r * m;
            for (int j = 0; j < m; j++) xo[cx->ch[k][j]] = xr[j];
        }
    }
    if (s->mean)
        for (int r = 0; r < cnt; r++)
            for (int j = 0; j < d; j++) xhat[(i0 + r) * d + j] += s->mean[j];
}

/* Run fn over the blocks of n vectors: on OpenMP threads (OpenBLAS held at one thread meanwhile) when there is
 * more than one block, else on the caller's thread. Returns the smallest bad index any block reported, or -1; st
 * gets TQ_ERR_NOMEM if a thread could not get scratch. */
typedef struct {
    ctx *cx;
    secs *s;
    const float *xc;
    float *xhat;
    int n, d, qmax, decode;
} job;

static long run_blocks(job *jb, int *st)
{
    long nblk = (jb->n + BLK - 1) / BLK, bad = -1;
    int nomem = 0;
    int par = 0;
#if TQ_HAVE_OPENMP
    par = nblk > 1 && omp_get_max_threads() > 1 && !omp_in_parallel();
#endif
    /* OpenBLAS on one thread even when the blocks run on the caller's thread alone: its threaded split of the QJL
     * projections and rotations rounds differently with its thread count (decoded bytes moved with
     * OPENBLAS_NUM_THREADS); one thread per product gives the same bytes however many threads there are */
    int blas_threads = openblas_get_num_threads();
    if (blas_threads > 1) openblas_set_num_threads(1);
#if TQ_HAVE_OPENMP
#pragma omp parallel if (par)
#endif
    {
        scratch w;
        float *buf = scratch_alloc(&w, jb->d, jb->qmax, BLK);
        if (!buf) {
#if TQ_HAVE_OPENMP
#pragma omp atomic write
#endif
            nomem = 1;
        }
#if TQ_HAVE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (long b = 0; b < nblk; b++) {
            if (!buf) continue;
            long i0 = b * BLK;
            int cnt = (int)(jb->n - i0 < BLK ? jb->n - i0 : BLK);
            if (jb->decode) {
                decode_block(jb->cx, jb->s, jb->cx->p, jb->n, i0, cnt, &w, jb->xhat);
                continue;
            }
            long e = encode_block(jb->cx, jb->s, jb->xc, jb->n, i0, cnt, &w);
            if (e >= 0) {
#if TQ_HAVE_OPENMP
#pragma omp critical(tq_turbo_bad)
#endif
                if (bad < 0 || e < bad) bad = e;
            }
        }
        free(buf);
    }
    if (blas_threads > 1) openblas_set_num_threads(blas_threads);
    *st = nomem ? tq_error_set(TQ_ERR_NOMEM, "out of memory for encoder scratch") : TQ_OK;
    return bad;
}

static int turbo_encode_fast(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    ctx cx;
    secs s;
    float *xc = NULL;
    int st = encode_begin(p, id, n, d, c, &cx, &s);
    if (st) goto out;
    if ((st = center_and_split(p, &cx.q.L, x, n, &s, &cx, &xc))) goto out;
    if (p->codebook == TQ_CB_EMPIRICAL && (st = fit_empirical(&cx, xc, n, &s, 1))) goto out;
    job jb = {&cx, &s, xc, NULL, n, d, cx.q.L.qm[0] > cx.q.L.qm[1] ? cx.q.L.qm[0] : cx.q.L.qm[1], 0};
    long bad = run_blocks(&jb, &st);
    if (!st && bad >= 0) { /* redo that vector's checks here to record the message on this thread */
        scratch w;
        float *buf = scratch_alloc(&w, d, jb.qmax, BLK);
        if (!buf) st = TQ_ERR_NOMEM;
        else {
            encode_block(&cx, &s, xc, n, bad, 1, &w);
            free(buf);
            st = TQ_ERR;
        }
    }
out:
    if (xc != x) free(xc);
    ctx_free(&cx);
    if (st) tq_codes_free(c);
    return st;
}

static int turbo_decode_fast(const tq_codes *c, float *xhat)
{
    ctx cx;
    secs s;
    int st = decode_begin(c, &cx, &s);
    if (!st) {
        job jb = {&cx, &s, NULL, xhat, c->n, c->d, cx.q.L.qm[0] > cx.q.L.qm[1] ? cx.q.L.qm[0] : cx.q.L.qm[1], 1};
        run_blocks(&jb, &st);
    }
    ctx_free(&cx);
    return st;
}

/* ============================================= prepared rows ================================================ */

/* The closed loop's round trip (turbo.h): the parts built once, then each row through the fast path's block
 * functions at cnt = 1 — the same calls turbo_encode_fast / turbo_decode_fast make for a one-row slice, so the bytes
 * are those of tq_quantize + tq_dequantize of that row alone (tested in tests/test_turbo.c). One row's codes and
 * scratch are reused row after row. */
struct tq_turbo_rows {
    ctx cx;
    tq_qparams p;          /* cx.p points here */
    tq_codes c;            /* the sections of one row */
    secs s;
    scratch w;
    float *wbuf;
    double bits;
};

void tq_turbo_rows_free(tq_turbo_rows *r)
{
    if (!r) return;
    ctx_free(&r->cx);
    tq_codes_free(&r->c);
    free(r->wbuf);
    free(r);
}

int tq_turbo_rows_make(tq_turbo_rows **out, const tq_qparams *p, int d, tq_slice_id id)
{
    *out = NULL;
    if (p->center || p->outliers || p->codebook == TQ_CB_EMPIRICAL)
        return tq_error_set(TQ_ERR_USAGE, "%s rows: --center, --outliers and the empirical codebook are statistics of "
                            "a whole slice; quantize the slice with tq_quantize", method_name(p->method));
    tq_turbo_rows *r = tq_calloc(1, sizeof *r);
    if (!r) return TQ_ERR_NOMEM;
    r->p = *p;
    int st = encode_begin(&r->p, id, 1, d, &r->c, &r->cx, &r->s);
    if (!st) st = ctx_channels(&r->cx, NULL);
    if (!st) {
        const layout *L = &r->cx.q.L;
        if (!(r->wbuf = scratch_alloc(&r->w, d, L->qm[0] > L->qm[1] ? L->qm[0] : L->qm[1], 1))) st = TQ_ERR_NOMEM;
        r->bits = tq_codes_bits_total(&r->c);
    }
    if (st) {
        tq_turbo_rows_free(r);
        return st;
    }
    *out = r;
    return TQ_OK;
}

int tq_turbo_rows_roundtrip(tq_turbo_rows *r, const float *x, int n, float *xhat, double *bits_total)
{
    const int d = r->cx.q.L.d;
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < r->c.nsec; k++) memset(r->c.sec[k].data, 0, tq_section_bytes(&r->c.sec[k]));
        /* a norm that cannot be stored: encode_block recorded the message on this thread */
        if (encode_block(&r->cx, &r->s, x + i * d, 1, 0, 1, &r->w) >= 0) return TQ_ERR;
        decode_block(&r->cx, &r->s, &r->p, 1, 0, 1, &r->w, xhat + i * d);
    }
    *bits_total = r->bits;
    return TQ_OK;
}

/* ================================================ format rows ================================================ */

static int turbo_check(const tq_qparams *p, int d)
{
    layout L;
    return tq_turbo_layout_make(p, d, &L);
}

/* Nominal code bits per coordinate: each instance's channels at its bits (b, or b+1 on outliers; turbo-prod's b
 * counts the QJL sign), qjl: m signs over d coordinates. */
static double turbo_bits_code(const tq_qparams *p, int d)
{
    layout L;
    if (tq_turbo_layout_make(p, d, &L)) return NAN;
    double bits = 0;
    for (int k = 0; k < L.ninst; k++) bits += (double)L.m[k] * L.mse_bits[k] + (double)L.qm[k];
    return bits / d;
}

static double turbo_bits_total(const tq_qparams *p, int n, int d)
{
    layout L;
    if (tq_turbo_layout_make(p, d, &L) || n <= 0) return NAN;
    return 8.0 * (double)tq_turbo_payload(&L, n) / ((double)n * d);
}

const tq_format tq_format_turbo_mse = {
    .name = "turbo-mse",
    .method = TQ_M_TURBO_MSE,
    .min_bits = 1,
    .max_bits = 8,
    .uses_rotation = 1,
    .check = turbo_check,
    .encode_ref = turbo_encode_ref,
    .encode = turbo_encode_fast,
    .decode_ref = turbo_decode_ref,
    .decode = turbo_decode_fast,
    .bits_code = turbo_bits_code,
    .bits_total = turbo_bits_total,
    .summary = "TurboQuant-mse: random rotation + Lloyd-Max codebook per coordinate + fp16 norm (paper Alg. 1)",
};

const tq_format tq_format_turbo_prod = {
    .name = "turbo-prod",
    .method = TQ_M_TURBO_PROD,
    .min_bits = 1,
    .max_bits = 8,
    .uses_rotation = 1,
    .check = turbo_check,
    .encode_ref = turbo_encode_ref,
    .encode = turbo_encode_fast,
    .decode_ref = turbo_decode_ref,
    .decode = turbo_decode_fast,
    .bits_code = turbo_bits_code,
    .bits_total = turbo_bits_total,
    .summary = "TurboQuant-prod: turbo-mse at b-1 bits + 1-bit QJL of the residual; unbiased inner products "
               "(paper Alg. 2; b=1 is pure QJL)",
};

const tq_format tq_format_qjl = {
    .name = "qjl",
    .method = TQ_M_QJL,
    .min_bits = 1,
    .max_bits = 1,
    .uses_rotation = 0,
    .check = turbo_check,
    .encode_ref = turbo_encode_ref,
    .encode = turbo_encode_fast,
    .decode_ref = turbo_decode_ref,
    .decode = turbo_decode_fast,
    .bits_code = turbo_bits_code,
    .bits_total = turbo_bits_total,
    .summary = "QJL: sign(S k) with m Gaussian projections (default m = d) + fp16 norm; unbiased inner products",
};
