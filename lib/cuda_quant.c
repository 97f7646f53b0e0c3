/* cuda_quant.c: tq_quantize's GPU path — builds the quantizer of one slice from the CPU's own rotation, codebook and
 * QJL matrix (same seed, same streams as lib/turbo.c), runs the CUDA encoder (and, for sweeps, the CUDA decoder) and
 * fills a tq_codes with the sections lib/turbo.c writes. Plain C over lib/cuda/tq_cuda.h, so a CPU-only build
 * answers "built without CUDA". */
#include <stdlib.h>
#include <string.h>

#include "codebook.h"
#include "cuda/tq_cuda.h"
#include "pack.h"
#include "quant.h"
#include "rotation.h"
#include "tq.h"

int tq_cuda_supports(const tq_qparams *p, int d)
{
    const tq_format *f = tq_format_of(p->method);
    if (!f || (p->method != TQ_M_TURBO_MSE && p->method != TQ_M_TURBO_PROD && p->method != TQ_M_QJL))
        return tq_error_set(TQ_ERR_USAGE, "--device cuda runs turbo-mse, turbo-prod and qjl; use --device cpu for "
                            "method '%s'", f ? f->name : "?");
    int st = f->check(p, d);
    if (st) return st;
    int qjl = p->method == TQ_M_QJL, prod = p->method == TQ_M_TURBO_PROD;
    int m = qjl ? (p->qjl_m ? p->qjl_m : d) : d;
    /* one reason per message, naming the option, so a sweep's skip note says what to change */
    const char *why = p->outliers ? "--outliers (outlier channels)"
                      : p->center ? "--center on (key-mean removal)"
                      : !qjl && p->codebook == TQ_CB_EMPIRICAL ? "--codebook empirical"
                      : !qjl && p->rotation == TQ_ROT_NONE ? "--rotation none"
                      : prod && p->bits < 2 ? "turbo-prod at 1 bit (no MSE part)"
                      : d % 32 || d > 1024 ? "head dims that are not a multiple of 32 up to 1024"
                      : qjl && m % 8 ? "--qjl-m not a multiple of 8" : NULL;
    if (why) return tq_error_set(TQ_ERR_USAGE, "--device cuda does not run %s; use --device cpu", why);
    return TQ_OK;
}

int tq_cuda_quantize(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    return tq_cuda_quantize_recon(p, id, x, n, d, c, NULL);
}

int tq_cuda_quantize_recon(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c,
                           float *xhat)
{
    int st = tq_cuda_supports(p, d);
    if (st) return st;
    int qjl = p->method == TQ_M_QJL, prod = p->method == TQ_M_TURBO_PROD;
    int m = qjl ? (p->qjl_m ? p->qjl_m : d) : d, mse_bits = qjl ? 1 : p->bits - prod;
    memset(c, 0, sizeof *c);
    c->p = *p;
    c->id = id;
    c->n = n;
    c->d = d;
    tq_rotation *rot = NULL;
    float *S = NULL;
    tq_codebook cb;
    memset(&cb, 0, sizeof cb);
    if (!qjl) st = tq_rotation_make(&rot, p->rotation, d, p->seed, id, TQ_PURPOSE_ROTATION, 0);
    if (!st && !qjl) st = tq_codebook_get(&cb, p->codebook, d, mse_bits);
    if (!st && (qjl || prod)) st = tq_gaussian_matrix(&S, m, d, p->seed, id, TQ_PURPOSE_QJL, 0);
    tq_cuda_qspec sp = {p->method, d, mse_bits, qjl ? TQ_ROT_NONE : p->rotation, m, p->norm_fp32,
                        rot ? rot->m : NULL, rot ? rot->signs : NULL, cb.c, cb.t, S};
    tq_cuda_quant *q = NULL;
    if (!st) st = tq_cuda_quant_create(&q, &sp);
    /* sections in lib/turbo.c's order and types */
    int nt = p->norm_fp32 ? TQ_SEC_F32 : TQ_SEC_F16;
    size_t nb = p->norm_fp32 ? 4 : 2, rb = qjl ? 0 : tq_pack_row_bytes(d, mse_bits), sb = tq_pack_row_bytes(m, 1);
    void *codes = NULL, *norms = NULL, *signs = NULL, *rnorms = NULL;
    if (!st && rb && !(codes = tq_codes_add(c, "codes", TQ_SEC_U8, (size_t)n * rb))) st = TQ_ERR_NOMEM;
    if (!st && !(norms = tq_codes_add(c, "norms", nt, (size_t)n))) st = TQ_ERR_NOMEM;
    if (!st && (qjl || prod) && !(signs = tq_codes_add(c, "signs", TQ_SEC_U8, (size_t)n * sb))) st = TQ_ERR_NOMEM;
    if (!st && prod && !(rnorms = tq_codes_add(c, "rnorms", nt, (size_t)n))) st = TQ_ERR_NOMEM;
    void *dx = NULL, *dxh = NULL;
    tq_cuda_codes dc = {0};
    if (!st) st = tq_cuda_alloc(&dx, sizeof(float) * (size_t)n * d);
    if (!st && xhat) st = tq_cuda_alloc(&dxh, sizeof(float) * (size_t)n * d);
    if (!st && rb) st = tq_cuda_alloc((void **)&dc.codes, (size_t)n * rb);
    if (!st) st = tq_cuda_alloc(&dc.norms, (size_t)n * nb);
    if (!st && signs) st = tq_cuda_alloc((void **)&dc.signs, (size_t)n * sb);
    if (!st && rnorms) st = tq_cuda_alloc(&dc.rnorms, (size_t)n * nb);
    if (!st) st = tq_cuda_upload(dx, x, sizeof(float) * (size_t)n * d);
    if (!st) st = tq_cuda_encode(q, dx, 0, n, &dc);
    if (!st && xhat) st = tq_cuda_decode(q, &dc, n, dxh, 0);
    if (!st) st = tq_cuda_sync();
    if (!st && rb) st = tq_cuda_download(codes, dc.codes, (size_t)n * rb);
    if (!st) st = tq_cuda_download(norms, dc.norms, (size_t)n * nb);
    if (!st && signs) st = tq_cuda_download(signs, dc.signs, (size_t)n * sb);
    if (!st && rnorms) st = tq_cuda_download(rnorms, dc.rnorms, (size_t)n * nb);
    if (!st && xhat) st = tq_cuda_download(xhat, dxh, sizeof(float) * (size_t)n * d);
    tq_cuda_free(dx);
    tq_cuda_free(dxh);
    tq_cuda_free(dc.codes);
    tq_cuda_free(dc.norms);
    tq_cuda_free(dc.signs);
    tq_cuda_free(dc.rnorms);
    tq_cuda_quant_free(q);
    tq_rotation_free(rot);
    free(S);
    if (st) tq_codes_free(c);
    return st;
}
