/* cuda_quant.c: tq_quantize's GPU path — takes the quantizer of one slice from tq_turbo_parts_make (lib/turbo.h: the
 * CPU's own rotation, codebook, QJL matrix and section layout), runs the CUDA encoder (and, for sweeps, the CUDA
 * decoder) and fills a tq_codes with the sections that layout lists. Plain C over lib/cuda/tq_cuda.h, so a CPU-only
 * build answers "built without CUDA". */
#include <stdlib.h>
#include <string.h>

#include "cuda/tq_cuda.h"
#include "quant.h"
#include "tq.h"
#include "turbo.h"

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

void tq_cuda_qspec_of(tq_cuda_qspec *sp, const tq_turbo_parts *q)
{
    const tq_turbo_layout *L = &q->L;
    const tq_rotation *rot = q->rot[0];
    const tq_codebook *cb = q->cb[0];
    int qjl = L->method == TQ_M_QJL;
    tq_cuda_qspec s = {L->method, L->d, qjl ? 1 : L->mse_bits[0], rot ? rot->kind : TQ_ROT_NONE,
                       L->qm[0] ? L->qm[0] : L->d, L->sec[TQ_TURBO_SEC_NORMS].type == TQ_SEC_F32,
                       rot ? rot->m : NULL, rot ? rot->signs : NULL, cb ? cb->c : NULL, cb ? cb->t : NULL, q->S[0]};
    *sp = s;
}

/* The device buffer behind each section the GPU writes (turbo.h's order; NULL: the GPU does not write it). */
static void **dev_slot(tq_cuda_codes *dc, int i)
{
    return i == TQ_TURBO_SEC_CODES ? (void **)&dc->codes : i == TQ_TURBO_SEC_NORMS ? &dc->norms
         : i == TQ_TURBO_SEC_SIGNS ? (void **)&dc->signs : i == TQ_TURBO_SEC_RNORMS ? &dc->rnorms : NULL;
}

int tq_cuda_quantize_recon(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c,
                           float *xhat)
{
    int st = tq_cuda_supports(p, d);
    if (st) return st;
    memset(c, 0, sizeof *c);
    c->p = *p;
    c->id = id;
    c->n = n;
    c->d = d;
    tq_turbo_parts tp;
    tq_cuda_qspec sp;
    tq_cuda_quant *q = NULL;
    st = tq_turbo_parts_make(&tp, p, d, id);
    if (!st) {
        tq_cuda_qspec_of(&sp, &tp);
        st = tq_cuda_quant_create(&q, &sp);
    }
    /* host sections and device buffers of the same sizes, as the layout lists them (tq_cuda_supports leaves only
     * codes, norms, signs and rnorms) */
    void *host[TQ_TURBO_NSEC] = {0};
    size_t bytes[TQ_TURBO_NSEC] = {0};
    void *dx = NULL, *dxh = NULL;
    tq_cuda_codes dc = {0};
    for (int i = 0; !st && i < TQ_TURBO_NSEC; i++) {
        const tq_turbo_section *sec = &tp.L.sec[i];
        if (!sec->present) continue;
        size_t count = tq_turbo_section_count(sec, n);
        bytes[i] = count * (sec->type == TQ_SEC_U8 ? 1 : sec->type == TQ_SEC_F16 ? 2 : 4);
        if (!(host[i] = tq_codes_add(c, sec->name, sec->type, count))) st = TQ_ERR_NOMEM;
        else if (!dev_slot(&dc, i)) st = tq_error_set(TQ_ERR, "cuda: section '%s' has no GPU encoder", sec->name);
        else st = tq_cuda_alloc(dev_slot(&dc, i), bytes[i]);
    }
    if (!st) st = tq_cuda_alloc(&dx, sizeof(float) * (size_t)n * d);
    if (!st && xhat) st = tq_cuda_alloc(&dxh, sizeof(float) * (size_t)n * d);
    if (!st) st = tq_cuda_upload(dx, x, sizeof(float) * (size_t)n * d);
    if (!st) st = tq_cuda_encode(q, dx, 0, n, &dc);
    if (!st && xhat) st = tq_cuda_decode(q, &dc, n, dxh, 0);
    if (!st) st = tq_cuda_sync();
    for (int i = 0; !st && i < TQ_TURBO_NSEC; i++)
        if (host[i]) st = tq_cuda_download(host[i], *dev_slot(&dc, i), bytes[i]);
    if (!st && xhat) st = tq_cuda_download(xhat, dxh, sizeof(float) * (size_t)n * d);
    tq_cuda_free(dx);
    tq_cuda_free(dxh);
    tq_cuda_free(dc.codes);
    tq_cuda_free(dc.norms);
    tq_cuda_free(dc.signs);
    tq_cuda_free(dc.rnorms);
    tq_cuda_quant_free(q);
    tq_turbo_parts_free(&tp);
    if (st) tq_codes_free(c);
    return st;
}
