/* formats.c: the format traits table, one row per method in TQ_M_* order. Each row is defined beside its method's
 * code (baseline.c, polar.c, turbo.c); tests, sweep and sensitivity loop over this table. Also the lookups and the
 * dispatch: tq_quantize checks the parameters, then runs the fast path. */
#include "quant.h"

#include <string.h>

#include "tq.h"

const tq_format *const tq_formats[TQ_M_COUNT] = {
    [TQ_M_FP16] = &tq_format_fp16,
    [TQ_M_INT8] = &tq_format_int8,
    [TQ_M_KIVI] = &tq_format_kivi,
    [TQ_M_TURBO_MSE] = &tq_format_turbo_mse,
    [TQ_M_TURBO_PROD] = &tq_format_turbo_prod,
    [TQ_M_QJL] = &tq_format_qjl,
    [TQ_M_POLAR] = &tq_format_polar,
};

const tq_format *tq_format_of(int method)
{
    if (method < 0 || method >= TQ_M_COUNT) return NULL;
    return tq_formats[method];
}

const tq_format *tq_format_by_name(const char *name)
{
    for (int m = 0; m < TQ_M_COUNT; m++)
        if (tq_formats[m] && !strcmp(tq_formats[m]->name, name)) return tq_formats[m];
    return NULL;
}

int tq_quantize(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    const tq_format *f = tq_format_of(p->method);
    if (!f) return tq_error_set(TQ_ERR_USAGE, "unknown method id %d", p->method);
    if (n < 0 || d <= 0 || (n > 0 && !x))
        return tq_error_set(TQ_ERR_USAGE, "%s: bad slice shape n=%d d=%d", f->name, n, d);
    int rc = f->check(p, d);
    if (rc < 0) return rc;
    rc = f->encode(p, id, x, n, d, c);
    if (rc < 0) tq_codes_free(c);
    return rc;
}

int tq_dequantize(const tq_codes *c, float *xhat)
{
    const tq_format *f = tq_format_of(c->p.method);
    if (!f) return tq_error_set(TQ_ERR, "codes of unknown method id %d", c->p.method);
    return f->decode(c, xhat);
}
