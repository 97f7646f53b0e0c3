/* schedule.h: mixed-precision schedules — a JSON file giving the bits of keys and values per layer or per
 * (layer, kv head) — and the small strict JSON parser behind it. Format: README.md "Schedules". */
#ifndef TQ_SCHEDULE_H
#define TQ_SCHEDULE_H

#include <stddef.h>

/* ---------- JSON (RFC 8259, strict: no comments, trailing commas, NaN, duplicate keys, or bytes after the value) */
enum { TQ_JSON_NULL, TQ_JSON_FALSE, TQ_JSON_TRUE, TQ_JSON_NUMBER, TQ_JSON_STRING, TQ_JSON_ARRAY, TQ_JSON_OBJECT };

typedef struct tq_json {
    int type;
    int line, col;           /* where the value starts (1-based), for error messages */
    double num;
    char *str;               /* STRING: UTF-8, NUL-terminated (embedded \u0000 is rejected) */
    int n;                   /* ARRAY / OBJECT: element count */
    struct tq_json *items;   /* ARRAY / OBJECT values */
    char **keys;             /* OBJECT keys */
} tq_json;

#define TQ_JSON_MAX_DEPTH 32
#define TQ_JSON_MAX_BYTES (16u << 20)

/* Parse text[0..len) into *out (free with tq_json_free). `name` (a file name) prefixes errors:
 * "'s.json':3:14: expected ',' or ']' in array". */
int tq_json_parse(tq_json *out, const char *text, size_t len, const char *name);
void tq_json_free(tq_json *v);
const tq_json *tq_json_get(const tq_json *obj, const char *key);

/* ---------- schedules */
#define TQ_SCHEDULE_VERSION 1

typedef struct {
    int n_layers;
    int n_heads;             /* units "head": kv heads per layer; units "layer": 0 */
    int *keys;               /* [n_layers * max(n_heads, 1)] bits */
    int *values;             /* same shape, NULL when the schedule gives no values */
    char method[32];         /* "" when absent */
    char policy[32], metric[32];
    double budget, achieved_bits; /* NAN when absent */
    char *text;              /* the file's text, stored verbatim in codes files */
    /* the fingerprint of the model it was made for ("model": {"name", "n_layers", "n_kv_heads", "head_dim"});
     * model[0] == 0 when the file has none (schedules written before it, or by hand) */
    char model[256];
    int model_layers, model_kv_heads, model_head_dim;
} tq_schedule;

/* Load and validate the structure (version, units, rectangular integer arrays of bits 1..8). */
int tq_schedule_load(tq_schedule **out, const char *path);
int tq_schedule_parse(tq_schedule **out, const char *text, size_t len, const char *name);
/* Match against a dump and a method: layer count, kv heads per layer (units "head"), bits in [min_bits, max_bits],
 * method name when the schedule names one. TQ_ERR_USAGE with a message naming `name` otherwise. */
int tq_schedule_check(const tq_schedule *s, const char *name, int n_layers, int n_kv_heads, const char *method,
                      int min_bits, int max_bits);
/* Units "head": TQ_ERR_USAGE naming the layer unless its kv head count is the schedule's. tq_schedule_check compares
 * one count (layer 0's); callers whose layers may differ call this for every layer. */
int tq_schedule_check_heads(const tq_schedule *s, const char *name, int layer, int n_kv_heads);
/* The fingerprint against a dump's model name and shape: TQ_OK when the schedule has none or it matches, else
 * TQ_ERR_USAGE "schedule 'S' was made for model 'A' (L layers, H kv heads, head dim D), not 'B' (...)". */
int tq_schedule_check_model(const tq_schedule *s, const char *name, const char *model, int n_layers, int n_kv_heads,
                            int head_dim);
/* Bits of (layer, head, tensor) (tensor TQ_TENSOR_*); -1 when the schedule has no values. */
int tq_schedule_bits(const tq_schedule *s, int layer, int head, int tensor);
void tq_schedule_free(tq_schedule *s);

#endif
