/* device.c: the backend table of device.h. CPU: tq_quantize + tq_dequantize (the format table's fast paths). CUDA:
 * tq_cuda_quantize_recon (lib/cuda_quant.c), which answers "built without CUDA" in a CPU-only build. */
#include "device.h"

#include <string.h>

#include "cuda/tq_cuda.h"
#include "tq.h"

static int cpu_available(void) { return TQ_OK; }

static int cpu_supports(const tq_qparams *p, int d) { return TQ_OK; }

static int cpu_roundtrip(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, float *xhat,
                         double *bits_total)
{
    tq_codes c;
    memset(&c, 0, sizeof c);
    int rc = tq_quantize(p, id, x, n, d, &c);
    if (rc < 0) return rc;
    *bits_total = tq_codes_bits_total(&c);
    rc = tq_dequantize(&c, xhat);
    tq_codes_free(&c);
    return rc;
}

static int cuda_available(void)
{
    int st = tq_cuda_device(NULL, 0, NULL, NULL);
    if (st == TQ_ERR_NOCUDA)
        return tq_error_set(st, "this tq is built without CUDA (rebuild with make CUDA=1 on a machine with nvcc, or "
                                "use --device cpu)");
    return st;
}

static int cuda_roundtrip(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, float *xhat,
                          double *bits_total)
{
    tq_codes c;
    memset(&c, 0, sizeof c);
    int rc = tq_cuda_quantize_recon(p, id, x, n, d, &c, xhat);
    if (rc < 0) return rc;
    *bits_total = tq_codes_bits_total(&c);
    tq_codes_free(&c);
    return TQ_OK;
}

static const tq_backend backends[TQ_DEVICE_COUNT] = {
    [TQ_DEVICE_CPU] = {"cpu", cpu_available, cpu_supports, cpu_roundtrip, tq_quantize, 0},
    [TQ_DEVICE_CUDA] = {"cuda", cuda_available, tq_cuda_supports, cuda_roundtrip, tq_cuda_quantize, 1},
};

const tq_backend *tq_backend_of(tq_device dev)
{
    return (unsigned)dev < TQ_DEVICE_COUNT ? &backends[dev] : NULL;
}

int tq_device_available(tq_device dev)
{
    const tq_backend *b = tq_backend_of(dev);
    if (!b) return tq_error_set(TQ_ERR_USAGE, "unknown device %d (%s)", (int)dev, tq_vocab_list(TQ_VOCAB_DEVICE, ", "));
    return b->available();
}

int tq_device_supports(tq_device dev, const tq_qparams *p, int d)
{
    const tq_backend *b = tq_backend_of(dev);
    const tq_format *f = tq_format_of(p->method);
    if (!b) return tq_error_set(TQ_ERR_USAGE, "unknown device %d", (int)dev);
    if (!f) return tq_error_set(TQ_ERR_USAGE, "unknown method id %d", p->method);
    int rc = f->check(p, d);
    if (rc < 0) return rc;
    return b->supports(p, d);
}

int tq_roundtrip(tq_device dev, const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, float *xhat,
                 double *bits_total)
{
    const tq_backend *b = tq_backend_of(dev);
    if (!b) return tq_error_set(TQ_ERR_USAGE, "unknown device %d", (int)dev);
    if (!b->serial) return b->roundtrip(p, id, x, n, d, xhat, bits_total);
    int rc;
    /* one slice at a time on the GPU (its calls sync the default stream); the callers' metrics stay parallel */
#if TQ_HAVE_OPENMP
#pragma omp critical(tq_device_serial)
#endif
    rc = b->roundtrip(p, id, x, n, d, xhat, bits_total);
    return rc;
}

int tq_device_quantize(tq_device dev, const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    const tq_backend *b = tq_backend_of(dev);
    if (!b) return tq_error_set(TQ_ERR_USAGE, "unknown device %d", (int)dev);
    if (!b->serial) return b->quantize(p, id, x, n, d, c);
    int rc;
#if TQ_HAVE_OPENMP
#pragma omp critical(tq_device_serial)
#endif
    rc = b->quantize(p, id, x, n, d, c);
    return rc;
}
