/* sensfile.c: the sensitivity JSON of `tq sensitivity` read back (cmd/sensfile.h) — by `tq mixed-schedule` for its
 * curves and by `tq sensitivity --weights` for a closed-loop scan's per-unit weights. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "quant.h"
#include "schedule.h"
#include "sensfile.h"

void sens_file_free(sens_file *s)
{
    free(s->tensor);
    free(s->layer);
    free(s->head);
    free(s->coords);
    free(s->metric_v);
    free(s->bcode);
    free(s->btot);
}

/* Everything wrong with the file is exit 1 ("bad file"), located as 'file':line:col. */
static void bad(const char *path, const tq_json *at, const char *what) __attribute__((noreturn));
static void bad(const char *path, const tq_json *at, const char *what)
{
    die("'%s':%d:%d: %s (is this the output of tq sensitivity?)", path, at->line, at->col, what);
}

static const tq_json *need(const char *path, const tq_json *obj, const char *key, int type)
{
    static const char *const tn[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    const tq_json *v = tq_json_get(obj, key);
    char m[128];
    if (!v) {
        snprintf(m, sizeof m, "missing \"%s\"", key);
        bad(path, obj, m);
    }
    if (v->type != type) {
        snprintf(m, sizeof m, "\"%s\" must be %s", key, tn[type]);
        bad(path, v, m);
    }
    return v;
}

static int need_int(const char *path, const tq_json *obj, const char *key, int lo, int hi)
{
    const tq_json *v = need(path, obj, key, TQ_JSON_NUMBER);
    if (v->num != floor(v->num) || v->num < lo || v->num > hi) {
        char m[128];
        snprintf(m, sizeof m, "\"%s\" must be an integer in %d..%d", key, lo, hi);
        bad(path, v, m);
    }
    return (int)v->num;
}

static void num_array(const char *path, const tq_json *row, const char *key, int n, int allow_null, double *out)
{
    const tq_json *a = need(path, row, key, TQ_JSON_ARRAY);
    char m[128];
    if (a->n != n) {
        snprintf(m, sizeof m, "\"%s\" has %d entries, \"bits\" has %d", key, a->n, n);
        bad(path, a, m);
    }
    for (int i = 0; i < n; i++) {
        const tq_json *v = &a->items[i];
        if (v->type == TQ_JSON_NULL && allow_null) out[i] = NAN;
        else if (v->type == TQ_JSON_NUMBER && (allow_null || v->num >= 0)) out[i] = v->num;
        else {
            snprintf(m, sizeof m, "\"%s\" entries must be %snumbers", key, allow_null ? "null or " : "non-negative ");
            bad(path, v, m);
        }
    }
}

/* the whole file into memory (bounded by TQ_JSON_MAX_BYTES); *n its length */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open '%s': %s", path, strerror(errno));
    /* a dump or codes file given by mistake: say what it is before its size or its bytes get in the way */
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89HDF\r\n\x1a\n", 8)) {
        fclose(f);
        die("'%s' is not a sensitivity file: it is HDF5 (a dump or codes file?); give the JSON written by "
            "tq sensitivity DUMP -o SENS.json", path);
    }
    rewind(f);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap > TQ_JSON_MAX_BYTES) {
                fclose(f);
                die("'%s' is larger than %u bytes", path, TQ_JSON_MAX_BYTES);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) die("out of memory reading '%s'", path);
    if (err) die("cannot read '%s': %s", path, strerror(errno));
    *len = n;
    return buf;
}

/* the scan's description: method, metric, params, units, shape, bit widths */
static void sens_header(const char *path, const tq_json *rootp, sens_file *s)
{
    const tq_json root = *rootp;
    if (root.type != TQ_JSON_OBJECT) bad(path, &root, "a sensitivity file is a JSON object");
    const tq_json *v = tq_json_get(&root, "tq_sensitivity");
    if (!v) bad(path, &root, "missing \"tq_sensitivity\"");
    if (v->type != TQ_JSON_NUMBER || v->num != 1) bad(path, v, "unsupported \"tq_sensitivity\" version (this tq reads 1)");
    v = need(path, &root, "method", TQ_JSON_STRING);
    if (!tq_format_by_name(v->str)) bad(path, v, "unknown \"method\"");
    snprintf(s->method, sizeof s->method, "%s", v->str);
    v = need(path, &root, "metric", TQ_JSON_STRING);
    snprintf(s->metric, sizeof s->metric, "%s", v->str);
    v = tq_json_get(&root, "params");
    if (v && v->type == TQ_JSON_STRING) snprintf(s->params, sizeof s->params, "%s", v->str);
    v = need(path, &root, "units", TQ_JSON_STRING);
    if (strcmp(v->str, "layer") && strcmp(v->str, "head")) bad(path, v, "\"units\" must be \"layer\" or \"head\"");
    s->per_head = !strcmp(v->str, "head");
    s->n_layers = need_int(path, &root, "n_layers", 1, 100000);
    s->n_kv_heads = need_int(path, &root, "n_kv_heads", 1, 65536);
    v = tq_json_get(&root, "model");
    if (v && v->type == TQ_JSON_STRING) snprintf(s->model, sizeof s->model, "%s", v->str);
    v = tq_json_get(&root, "closed_loop");
    s->closed_loop = v && v->type == TQ_JSON_TRUE;
    v = tq_json_get(&root, "head_dim");
    if (v && v->type == TQ_JSON_NUMBER && v->num >= 1 && v->num <= 65536) s->head_dim = (int)v->num;
    const tq_json *ba = need(path, &root, "bits", TQ_JSON_ARRAY);
    if (ba->n < 1 || ba->n > 8) bad(path, ba, "\"bits\" must list 1 to 8 bit widths");
    s->nb = ba->n;
    for (int i = 0; i < s->nb; i++) {
        const tq_json *b = &ba->items[i];
        if (b->type != TQ_JSON_NUMBER || b->num != floor(b->num) || b->num < 1 || b->num > 8 ||
            (i && b->num <= s->bits[i - 1]))
            bad(path, b, "\"bits\" must be ascending integers in 1..8");
        s->bits[i] = (int)b->num;
    }
}

/* row i: one unit's curve; `seen` catches a unit listed twice */
static void sens_row(const char *path, const tq_json *r, sens_file *s, int i, int hu, int *nt)
{
    size_t nb = (size_t)s->nb;
    const tq_json *v;
    if (r->type != TQ_JSON_OBJECT) bad(path, r, "each row must be an object");
    v = need(path, r, "tensor", TQ_JSON_STRING);
    if (!strcmp(v->str, "keys")) s->tensor[i] = TQ_TENSOR_KEYS;
    else if (!strcmp(v->str, "values")) s->tensor[i] = TQ_TENSOR_VALUES;
    else bad(path, v, "\"tensor\" must be \"keys\" or \"values\"");
    s->layer[i] = need_int(path, r, "layer", 0, s->n_layers - 1);
    v = tq_json_get(r, "head");
    if (s->per_head) s->head[i] = need_int(path, r, "head", 0, s->n_kv_heads - 1);
    else if (v && v->type != TQ_JSON_NULL) bad(path, v, "units \"layer\": \"head\" must be null");
    else s->head[i] = 0;
    v = need(path, r, "coords", TQ_JSON_NUMBER);
    if (!(v->num >= 1) || v->num != floor(v->num)) bad(path, v, "\"coords\" must be a positive integer");
    s->coords[i] = v->num;
    num_array(path, r, "metric", s->nb, 1, s->metric_v + (size_t)i * nb);
    num_array(path, r, "bits_code", s->nb, 0, s->bcode + (size_t)i * nb);
    num_array(path, r, "bits_total", s->nb, 0, s->btot + (size_t)i * nb);
    size_t key = ((size_t)s->tensor[i] * s->n_layers + s->layer[i]) * hu + s->head[i];
    if (s->seen[key]) bad(path, r, "this (tensor, layer, head) appears twice");
    s->seen[key] = 1;
    nt[s->tensor[i]]++;
}

void sens_file_load(const char *path, sens_file *s)
{
    memset(s, 0, sizeof *s);
    size_t n;
    char *buf = read_all(path, &n);
    tq_json root;
    int rc = tq_json_parse(&root, buf, n, path);
    free(buf);
    if (rc < 0) die_lib(TQ_ERR, NULL); /* malformed JSON: 1, with line:col */
    sens_header(path, &root, s);
    const tq_json *rows = need(path, &root, "rows", TQ_JSON_ARRAY);
    int hu = s->per_head ? s->n_kv_heads : 1;
    s->nu = rows->n;
    if (rows->n < 1) bad(path, rows, "\"rows\" is empty");
    size_t nu = (size_t)rows->n, nb = (size_t)s->nb;
    s->tensor = calloc(nu, sizeof(int));
    s->layer = calloc(nu, sizeof(int));
    s->head = calloc(nu, sizeof(int));
    s->coords = calloc(nu, sizeof(double));
    s->metric_v = calloc(nu * nb, sizeof(double));
    s->bcode = calloc(nu * nb, sizeof(double));
    s->btot = calloc(nu * nb, sizeof(double));
    s->seen = calloc(2 * (size_t)s->n_layers * hu, 1);
    if (!s->tensor || !s->layer || !s->head || !s->coords || !s->metric_v || !s->bcode || !s->btot || !s->seen)
        die("out of memory");
    int nt[2] = {0, 0};
    for (int i = 0; i < rows->n; i++) sens_row(path, &rows->items[i], s, i, hu, nt);
    for (int t = 0; t < 2; t++) s->tensors[t] = nt[t] > 0;
    for (int t = 0; t < 2; t++)
        if (nt[t] && nt[t] != s->n_layers * hu) {
            char m[160];
            snprintf(m, sizeof m, "%s cover %d units, expected %d (%d layers x %d)", t ? "values" : "keys", nt[t],
                     s->n_layers * hu, s->n_layers, hu);
            bad(path, rows, m);
        }
    free(s->seen);
    s->seen = NULL;
    tq_json_free(&root);
}

