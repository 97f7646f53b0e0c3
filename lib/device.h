/* device.h: the device as a library concept — where a slice is quantized and reconstructed. Each device is a
 * backend behind one traits table (name, availability, what it runs, the round trip), in the spirit of ggml's
 * per-backend traits; callers name a tq_device and ask the library, once, whether a configuration runs there. */
#ifndef TQ_DEVICE_H
#define TQ_DEVICE_H

#include "quant.h"
#include "tq.h"
#include "vocab.h"

typedef struct {
    const char *name;       /* "cpu", "cuda" (lib/vocab.h) */
    /* TQ_OK when the device can be used in this build on this machine; else TQ_ERR_NOCUDA / TQ_ERR with why. */
    int (*available)(void);
    /* TQ_OK when the device runs parameters p at head dim d; else TQ_ERR_USAGE naming what to change. Needs no
     * device: configurations are checked before any work. */
    int (*supports)(const tq_qparams *p, int d);
    /* Quantize x[n][d] of slice id and reconstruct it into xhat[n][d] (host memory); *bits_total = stored bits per
     * value, side information included. */
    int (*roundtrip)(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, float *xhat,
                     double *bits_total);
    /* Quantize only: the codes of slice id, as tq_quantize writes them (CUDA: the same sections). */
    int (*quantize)(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c);
    int serial;             /* 1: round trips must not overlap (one GPU stream); tq_roundtrip serialises them */
} tq_backend;

/* The backend of dev, or NULL for an unknown device. */
const tq_backend *tq_backend_of(tq_device dev);
/* dev's availability (see tq_backend.available); the CPU always is. */
int tq_device_available(tq_device dev);
/* The method's own check, then whether dev runs it: TQ_OK or a negative status with a message. */
int tq_device_supports(tq_device dev, const tq_qparams *p, int d);
/* The round trip on dev: the one entry point sweeps, sensitivity and studies quantize through. Safe to call from
 * several threads (a serial backend's calls are serialised here). */
int tq_roundtrip(tq_device dev, const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, float *xhat,
                 double *bits_total);

/* tq_quantize on dev (tq quantize --device): the codes of one slice. Serialised like tq_roundtrip. */
int tq_device_quantize(tq_device dev, const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c);

#endif
