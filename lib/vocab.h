/* vocab.h: the one vocabulary of tq — every name a user types or a report prints for a method, rotation, codebook,
 * metric, tensor, device or synthetic distribution, and its enum, both ways. Commands, reports, benchmarks and the
 * evaluation engine all spell these names from here, so "hadamard" is written once. */
#ifndef TQ_VOCAB_H
#define TQ_VOCAB_H

#include <stddef.h>

#include "metrics.h"
#include "quant.h"
#include "synth.h"

/* Where a slice is quantized and reconstructed (lib/device.h). */
typedef enum { TQ_DEVICE_CPU, TQ_DEVICE_CUDA, TQ_DEVICE_COUNT } tq_device;

typedef enum {
    TQ_VOCAB_METHOD,    /* tq_method: fp16, int8, kivi, turbo-mse, turbo-prod, qjl, polar (the format table's names) */
    TQ_VOCAB_ROTATION,  /* tq_rotation_kind: dense, hadamard, none */
    TQ_VOCAB_CODEBOOK,  /* tq_codebook_kind: beta, gaussian, empirical */
    TQ_VOCAB_METRIC,    /* TQ_MET_*: nmse, dmse, cos, ... (lib/metrics.h's column names) */
    TQ_VOCAB_TENSOR,    /* tq_tensor: keys, values */
    TQ_VOCAB_DEVICE,    /* tq_device: cpu, cuda */
    TQ_VOCAB_SYNTH,     /* TQ_SYNTH_*: gaussian, structured, outlier, heavy, rope */
    TQ_VOCAB_COUNT
} tq_vocab;

/* The enum value of `name` in vocabulary v, or -1 when it is not one of its names (no error recorded: callers word
 * the message, e.g. with tq_vocab_list). */
int tq_vocab_find(tq_vocab v, const char *name);
/* The same, recording TQ_ERR_USAGE "unknown <kind> '<name>' (<list>)" on failure and returning it. */
int tq_vocab_parse(tq_vocab v, const char *name);
/* The name of value in v, or "?" when out of range. */
const char *tq_vocab_name(tq_vocab v, int value);
/* Number of values in v (enum values 0..n-1). */
int tq_vocab_count(tq_vocab v);
/* What the vocabulary names ("method", "rotation", ...), for messages. */
const char *tq_vocab_kind(tq_vocab v);
/* Every name of v joined by sep (", " or ","), in enum order; a static string per (v, sep) call: copy it if kept. */
const char *tq_vocab_list(tq_vocab v, const char *sep);

/* Shorthands for the common lookups. */
static inline const char *tq_method_name(int m) { return tq_vocab_name(TQ_VOCAB_METHOD, m); }
const char *tq_rotation_name(int kind); /* also declared in codes.h, which reads these names from files */
const char *tq_codebook_name(int kind);
int tq_rotation_parse(const char *s);   /* -1 when unknown */
int tq_codebook_parse(const char *s);
static inline const char *tq_tensor_name(int t) { return tq_vocab_name(TQ_VOCAB_TENSOR, t); }
static inline const char *tq_device_name(int d) { return tq_vocab_name(TQ_VOCAB_DEVICE, d); }

#endif
