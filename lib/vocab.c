/* vocab.c: the name tables behind lib/vocab.h. Methods take their names from the format table and metrics from
 * lib/metrics.c, so a new method or metric is named in one place; the rest are listed here. */
#include "vocab.h"

#include <stdio.h>
#include <string.h>

#include "tq.h"

static const char *const rotation_names[TQ_ROT_COUNT] = {"dense", "hadamard", "none"};
static const char *const codebook_names[TQ_CB_COUNT] = {"beta", "gaussian", "empirical"};
static const char *const tensor_names[TQ_TENSOR_COUNT] = {"keys", "values"};
static const char *const device_names[TQ_DEVICE_COUNT] = {"cpu", "cuda"};
static const char *const synth_names[TQ_SYNTH_COUNT] = {"gaussian", "structured", "outlier", "heavy", "rope"};
static const char *const kinds[TQ_VOCAB_COUNT] = {"method", "rotation", "codebook", "metric", "tensor", "device",
                                                   "distribution"};

int tq_vocab_count(tq_vocab v)
{
    static const int n[TQ_VOCAB_COUNT] = {TQ_M_COUNT, TQ_ROT_COUNT, TQ_CB_COUNT, TQ_MET_COUNT, TQ_TENSOR_COUNT,
                                          TQ_DEVICE_COUNT, TQ_SYNTH_COUNT};
    return (unsigned)v < TQ_VOCAB_COUNT ? n[v] : 0;
}

const char *tq_vocab_kind(tq_vocab v) { return (unsigned)v < TQ_VOCAB_COUNT ? kinds[v] : "?"; }

const char *tq_vocab_name(tq_vocab v, int value)
{
    if (value < 0 || value >= tq_vocab_count(v)) return "?";
    switch (v) {
    case TQ_VOCAB_METHOD: return tq_formats[value] ? tq_formats[value]->name : "?";
    case TQ_VOCAB_ROTATION: return rotation_names[value];
    case TQ_VOCAB_CODEBOOK: return codebook_names[value];
    case TQ_VOCAB_METRIC: return tq_metric_names[value];
    case TQ_VOCAB_TENSOR: return tensor_names[value];
    case TQ_VOCAB_DEVICE: return device_names[value];
    case TQ_VOCAB_SYNTH: return synth_names[value];
    default: return "?";
    }
}

int tq_vocab_find(tq_vocab v, const char *name)
{
    if (!name) return -1;
    for (int i = 0, n = tq_vocab_count(v); i < n; i++)
        if (!strcmp(tq_vocab_name(v, i), name)) return i;
    return -1;
}

int tq_vocab_parse(tq_vocab v, const char *name)
{
    int i = tq_vocab_find(v, name);
    if (i >= 0) return i;
    return tq_error_set(TQ_ERR_USAGE, "unknown %s '%s' (%s)", tq_vocab_kind(v), name ? name : "",
                        tq_vocab_list(v, ", "));
}

const char *tq_vocab_list(tq_vocab v, const char *sep)
{
    /* one buffer per thread: the names are short and fixed, 512 bytes holds every list */
    static _Thread_local char buf[512];
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0, n = tq_vocab_count(v); i < n; i++) {
        int k = snprintf(buf + len, sizeof buf - len, "%s%s", i ? sep : "", tq_vocab_name(v, i));
        if (k < 0 || (size_t)k >= sizeof buf - len) break;
        len += (size_t)k;
    }
    return buf;
}

const char *tq_rotation_name(int kind) { return tq_vocab_name(TQ_VOCAB_ROTATION, kind); }
const char *tq_codebook_name(int kind) { return tq_vocab_name(TQ_VOCAB_CODEBOOK, kind); }
int tq_rotation_parse(const char *s) { return tq_vocab_find(TQ_VOCAB_ROTATION, s); }
int tq_codebook_parse(const char *s) { return tq_vocab_find(TQ_VOCAB_CODEBOOK, s); }
