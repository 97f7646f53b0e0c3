/* schedule.c: a strict recursive-descent JSON parser (bounded depth and size, errors with line:column) and the
 * mixed-precision schedule read from it. Strict because a schedule silently misread is an experiment silently
 * wrong. */
#include "schedule.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"
#include "tq.h"

/* ---------- JSON ---------- */

typedef struct {
    const char *s;
    size_t len, pos;
    int line, col;
    const char *name;
    int depth;
} jp;

static int jerr(jp *p, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg);
    return tq_error_set(TQ_ERR, "'%s':%d:%d: %s", p->name, p->line, p->col, msg);
}

static int peek(jp *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static void adv(jp *p)
{
    if (p->pos >= p->len) return;
    if (p->s[p->pos] == '\n') { p->line++; p->col = 1; }
    else p->col++;
    p->pos++;
}

static void skip_ws(jp *p)
{
    for (int c = peek(p); c == ' ' || c == '\t' || c == '\n' || c == '\r'; c = peek(p)) adv(p);
}

static int lit(jp *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n)) return jerr(p, "invalid literal (want %s)", word);
    for (size_t i = 0; i < n; i++) adv(p);
    return TQ_OK;
}

static int hex4(jp *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int c = peek(p);
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0) return jerr(p, "bad \\u escape: want 4 hex digits%s", "");
        v = v * 16 + (unsigned)h;
        adv(p);
    }
    *out = v;
    return TQ_OK;
}

static int parse_string(jp *p, char **out)
{
    adv(p); /* opening quote */
    size_t cap = 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return tq_error_set(TQ_ERR_NOMEM, "out of memory parsing '%s'", p->name);
    for (;;) {
        int c = peek(p);
        if (c < 0) { free(buf); return jerr(p, "unterminated string%s", ""); }
        if (c < 0x20) { free(buf); return jerr(p, "control character in string (escape it)%s", ""); }
        char tmp[4];
        int k = 0;
        if (c == '"') { adv(p); break; }
        if (c == '\\') {
            adv(p);
            int e = peek(p);
            switch (e) {
            case '"': case '\\': case '/': tmp[k++] = (char)e; adv(p); break;
            case 'b': tmp[k++] = '\b'; adv(p); break;
            case 'f': tmp[k++] = '\f'; adv(p); break;
            case 'n': tmp[k++] = '\n'; adv(p); break;
            case 'r': tmp[k++] = '\r'; adv(p); break;
            case 't': tmp[k++] = '\t'; adv(p); break;
            case 'u': {
                adv(p);
                unsigned u;
                if (hex4(p, &u)) { free(buf); return TQ_ERR; }
                if (u >= 0xd800 && u <= 0xdbff) { /* high surrogate: a low one must follow */
                    unsigned lo;
                    if (peek(p) != '\\') { free(buf); return jerr(p, "unpaired surrogate in \\u escape%s", ""); }
                    adv(p);
                    if (peek(p) != 'u') { free(buf); return jerr(p, "unpaired surrogate in \\u escape%s", ""); }
                    adv(p);
                    if (hex4(p, &lo)) { free(buf); return TQ_ERR; }
                    if (lo < 0xdc00 || lo > 0xdfff) { free(buf); return jerr(p, "unpaired surrogate in \\u escape%s", ""); }
                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                } else if (u >= 0xdc00 && u <= 0xdfff) { free(buf); return jerr(p, "unpaired surrogate in \\u escape%s", ""); }
                if (u == 0) { free(buf); return jerr(p, "\\u0000 in a string is not supported%s", ""); }
                if (u < 0x80) tmp[k++] = (char)u;
                else if (u < 0x800) { tmp[k++] = (char)(0xc0 | (u >> 6)); tmp[k++] = (char)(0x80 | (u & 0x3f)); }
                else if (u < 0x10000) {
                    tmp[k++] = (char)(0xe0 | (u >> 12)); tmp[k++] = (char)(0x80 | ((u >> 6) & 0x3f));
                    tmp[k++] = (char)(0x80 | (u & 0x3f));
                } else {
                    tmp[k++] = (char)(0xf0 | (u >> 18)); tmp[k++] = (char)(0x80 | ((u >> 12) & 0x3f));
                    tmp[k++] = (char)(0x80 | ((u >> 6) & 0x3f)); tmp[k++] = (char)(0x80 | (u & 0x3f));
                }
                break;
            }
            default: free(buf); return jerr(p, "bad escape in string%s", "");
            }
        } else { tmp[k++] = (char)c; adv(p); }
        if (n + (size_t)k + 1 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); return tq_error_set(TQ_ERR_NOMEM, "out of memory parsing '%s'", p->name); }
            buf = nb;
        }
        memcpy(buf + n, tmp, (size_t)k);
        n += (size_t)k;
    }
    buf[n] = 0;
    *out = buf;
    return TQ_OK;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int parse_number(jp *p, double *out)
{
    size_t start = p->pos;
    if (peek(p) == '-') adv(p);
    if (peek(p) == '0') adv(p);
    else if (is_digit(peek(p))) while (is_digit(peek(p))) adv(p);
    else return jerr(p, "invalid number%s", "");
    if (peek(p) == '.') {
        adv(p);
        if (!is_digit(peek(p))) return jerr(p, "invalid number: digits must follow '.'%s", "");
        while (is_digit(peek(p))) adv(p);
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        adv(p);
        if (peek(p) == '+' || peek(p) == '-') adv(p);
        if (!is_digit(peek(p))) return jerr(p, "invalid number: digits must follow the exponent%s", "");
        while (is_digit(peek(p))) adv(p);
    }
    char buf[64];
    size_t n = p->pos - start;
    if (n >= sizeof buf) return jerr(p, "number too long%s", "");
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    errno = 0;
    *out = strtod(buf, NULL);
    if (!isfinite(*out)) return jerr(p, "number out of range%s", "");
    return TQ_OK;
}

static int parse_value(jp *p, tq_json *v);

static int push(jp *p, tq_json *v, int *cap, const tq_json *item, char *key)
{
    if (v->n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        tq_json *ni = realloc(v->items, sizeof(tq_json) * (size_t)*cap);
        if (ni) v->items = ni;
        if (v->type == TQ_JSON_OBJECT) {
            char **nk = realloc(v->keys, sizeof(char *) * (size_t)*cap);
            if (nk) v->keys = nk;
            if (!nk) ni = NULL;
        }
        if (!ni) return tq_error_set(TQ_ERR_NOMEM, "out of memory parsing '%s'", p->name);
    }
    v->items[v->n] = *item;
    if (v->type == TQ_JSON_OBJECT) v->keys[v->n] = key;
    v->n++;
    return TQ_OK;
}

/* The duplicate-key check: an open-addressing set of the object's key indices (FNV-1a), so an object of n keys costs
 * O(n), not the O(n^2) of comparing each key with all before it (80k keys took 10 s; a 16 MiB file, minutes). */
typedef struct { int *slot; size_t cap; } keyset; /* slot: key index + 1, 0 empty; cap a power of two */

static size_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *c = (const unsigned char *)k; *c; c++) h = (h ^ *c) * 1099511628211ull;
    return (size_t)h;
}

/* index of `key` among v's keys, or -1 */
static int keyset_find(const keyset *ks, const tq_json *v, const char *key)
{
    if (!ks->cap) return -1;
    for (size_t i = key_hash(key) & (ks->cap - 1);; i = (i + 1) & (ks->cap - 1)) {
        if (!ks->slot[i]) return -1;
        if (!strcmp(v->keys[ks->slot[i] - 1], key)) return ks->slot[i] - 1;
    }
}

/* record v's key `idx` (load factor kept under 1/2); TQ_ERR_NOMEM */
static int keyset_add(keyset *ks, const tq_json *v, int idx)
{
    if (2 * ((size_t)idx + 1) > ks->cap) {
        size_t cap = ks->cap ? 2 * ks->cap : 16;
        int *ns = calloc(cap, sizeof *ns);
        if (!ns) return TQ_ERR_NOMEM;
        for (size_t j = 0; j < ks->cap; j++)
            if (ks->slot[j]) {
                size_t i = key_hash(v->keys[ks->slot[j] - 1]) & (cap - 1);
                while (ns[i]) i = (i + 1) & (cap - 1);
                ns[i] = ks->slot[j];
            }
        free(ks->slot);
        ks->slot = ns;
        ks->cap = cap;
    }
    size_t i = key_hash(v->keys[idx]) & (ks->cap - 1);
    while (ks->slot[i]) i = (i + 1) & (ks->cap - 1);
    ks->slot[i] = idx + 1;
    return TQ_OK;
}

static int parse_container_inner(jp *p, tq_json *v, int obj, keyset *ks);

static int parse_container(jp *p, tq_json *v, int obj)
{
    keyset ks = {NULL, 0};
    int rc = parse_container_inner(p, v, obj, &ks);
    free(ks.slot);
    return rc;
}

static int parse_container_inner(jp *p, tq_json *v, int obj, keyset *ks)
{
    char close = obj ? '}' : ']';
    const char *what = obj ? "object" : "array";
    if (++p->depth > TQ_JSON_MAX_DEPTH) return jerr(p, "nesting deeper than the limit (%s levels)", "32");
    adv(p);
    int cap = 0;
    skip_ws(p);
    if (peek(p) == close) { adv(p); p->depth--; return TQ_OK; }
    for (;;) {
        char *key = NULL;
        skip_ws(p);
        if (obj) {
            if (peek(p) != '"') return jerr(p, "expected a string key in %s", what);
            if (parse_string(p, &key)) return TQ_ERR;
            if (keyset_find(ks, v, key) >= 0) {
                int rc = jerr(p, "duplicate key \"%s\"", key);
                free(key);
                return rc;
            }
            skip_ws(p);
            if (peek(p) != ':') { free(key); return jerr(p, "expected ':' after key in %s", what); }
            adv(p);
        }
        tq_json item;
        if (parse_value(p, &item)) { free(key); return TQ_ERR; }
        if (push(p, v, &cap, &item, key)) { tq_json_free(&item); free(key); return TQ_ERR_NOMEM; }
        if (obj && keyset_add(ks, v, v->n - 1)) return tq_error_set(TQ_ERR_NOMEM, "out of memory parsing '%s'", p->name);
        skip_ws(p);
        int c = peek(p);
        if (c == ',') {
            adv(p);
            skip_ws(p);
            if (peek(p) == close) return jerr(p, "trailing comma in %s", what);
            continue;
        }
        if (c == close) { adv(p); break; }
        return obj ? jerr(p, "expected ',' or '}' in %s", what) : jerr(p, "expected ',' or ']' in %s", what);
    }
    p->depth--;
    return TQ_OK;
}

static int parse_value(jp *p, tq_json *v)
{
    memset(v, 0, sizeof *v);
    skip_ws(p);
    v->line = p->line;
    v->col = p->col;
    int c = peek(p);
    switch (c) {
    case '{': v->type = TQ_JSON_OBJECT; break;
    case '[': v->type = TQ_JSON_ARRAY; break;
    case '"': v->type = TQ_JSON_STRING; return parse_string(p, &v->str);
    case 't': v->type = TQ_JSON_TRUE; return lit(p, "true");
    case 'f': v->type = TQ_JSON_FALSE; return lit(p, "false");
    case 'n': v->type = TQ_JSON_NULL; return lit(p, "null");
    case -1: return jerr(p, "unexpected end of input%s", "");
    default:
        if (c == '-' || is_digit(c)) { v->type = TQ_JSON_NUMBER; return parse_number(p, &v->num); }
        return jerr(p, "unexpected character '%s'", (char[2]){(char)c, 0});
    }
    int rc = parse_container(p, v, v->type == TQ_JSON_OBJECT);
    if (rc) tq_json_free(v);
    return rc;
}

int tq_json_parse(tq_json *out, const char *text, size_t len, const char *name)
{
    memset(out, 0, sizeof *out);
    jp p = {text, len, 0, 1, 1, name ? name : "<json>", 0};
    if (len > TQ_JSON_MAX_BYTES) return tq_error_set(TQ_ERR, "'%s': %zu bytes, more than the %u allowed", p.name, len,
                                                     TQ_JSON_MAX_BYTES);
    if (memchr(text, 0, len)) return tq_error_set(TQ_ERR, "'%s': NUL byte in JSON text", p.name);
    if (parse_value(&p, out)) return TQ_ERR;
    skip_ws(&p);
    if (p.pos != p.len) {
        tq_json_free(out);
        return jerr(&p, "unexpected text after the JSON value%s", "");
    }
    return TQ_OK;
}

void tq_json_free(tq_json *v)
{
    if (!v) return;
    free(v->str);
    for (int i = 0; i < v->n; i++) {
        tq_json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

const tq_json *tq_json_get(const tq_json *obj, const char *key)
{
    if (obj->type != TQ_JSON_OBJECT) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

/* ---------- schedules ---------- */

static int serr(const char *name, const tq_json *at, const char *msg, const char *arg)
{
    char m[256];
    snprintf(m, sizeof m, msg, arg);
    return tq_error_set(TQ_ERR, "'%s':%d:%d: %s", name, at->line, at->col, m);
}

static int get_str(const char *name, const tq_json *root, const char *key, char *dst, size_t n)
{
    const tq_json *v = tq_json_get(root, key);
    dst[0] = 0;
    if (!v || v->type == TQ_JSON_NULL) return TQ_OK;
    if (v->type != TQ_JSON_STRING) return serr(name, v, "\"%s\" must be a string", key);
    if (strlen(v->str) >= n) return serr(name, v, "\"%s\" is too long", key);
    strcpy(dst, v->str);
    return TQ_OK;
}

static int get_num(const char *name, const tq_json *root, const char *key, double *dst)
{
    const tq_json *v = tq_json_get(root, key);
    *dst = NAN;
    if (!v || v->type == TQ_JSON_NULL) return TQ_OK;
    if (v->type != TQ_JSON_NUMBER) return serr(name, v, "\"%s\" must be a number", key);
    *dst = v->num;
    return TQ_OK;
}

static int bits_of(const char *name, const tq_json *v, int *out)
{
    if (v->type != TQ_JSON_NUMBER || v->num != floor(v->num))
        return serr(name, v, "bits must be an integer%s", "");
    if (v->num < 1 || v->num > 8) {
        char b[32];
        snprintf(b, sizeof b, "%g", v->num);
        return serr(name, v, "bits %s out of range 1..8", b);
    }
    *out = (int)v->num;
    return TQ_OK;
}

/* keys/values: [b, ...] per layer (units "layer") or [[b, ...], ...] per layer x head (units "head"). The first
 * array (keys) fixes the shape; values must match it. */
static int read_bits(const char *name, const tq_json *a, const char *key, int per_head, int *n_layers, int *n_heads,
                     int **out)
{
    if (a->type != TQ_JSON_ARRAY || a->n == 0)
        return serr(name, a, "\"%s\" must be a non-empty array (one entry per layer)", key);
    if (*n_layers && a->n != *n_layers) {
        char m[96];
        snprintf(m, sizeof m, "\"%s\" has %d layers but \"keys\" has %d", key, a->n, *n_layers);
        return serr(name, a, "%s", m);
    }
    *n_layers = a->n;
    int h = 1;
    if (per_head) {
        for (int l = 0; l < a->n; l++) {
            const tq_json *r = &a->items[l];
            if (r->type != TQ_JSON_ARRAY || r->n == 0)
                return serr(name, r, "units \"head\": each layer of \"%s\" must be a non-empty array of bits", key);
            if (l == 0 && !*n_heads) *n_heads = r->n;
            if (r->n != *n_heads) {
                char m[128];
                snprintf(m, sizeof m, "layer %d of \"%s\" has %d heads, expected %d", l, key, r->n, *n_heads);
                return serr(name, r, "%s", m);
            }
        }
        h = *n_heads;
    }
    int *b = tq_malloc(sizeof(int) * (size_t)a->n * (size_t)h);
    if (!b) return TQ_ERR_NOMEM;
    for (int l = 0; l < a->n; l++)
        for (int k = 0; k < h; k++) {
            const tq_json *v = per_head ? &a->items[l].items[k] : &a->items[l];
            if (!per_head && v->type == TQ_JSON_ARRAY) {
                free(b);
                return serr(name, v, "units \"layer\" wants one integer per layer in \"%s\" (use units \"head\" for "
                            "per-head lists)", key);
            }
            if (bits_of(name, v, &b[(size_t)l * h + k])) { free(b); return TQ_ERR; }
        }
    *out = b;
    return TQ_OK;
}

int tq_schedule_parse(tq_schedule **out, const char *text, size_t len, const char *name)
{
    *out = NULL;
    tq_json root;
    if (tq_json_parse(&root, text, len, name)) return TQ_ERR;
    tq_schedule *s = tq_calloc(1, sizeof *s);
    if (!s) { tq_json_free(&root); return TQ_ERR_NOMEM; }
    int rc = TQ_ERR;
    const tq_json *v;
    if (root.type != TQ_JSON_OBJECT) { serr(name, &root, "a schedule is a JSON object%s", ""); goto out; }
    v = tq_json_get(&root, "tq_schedule");
    if (!v) { serr(name, &root, "missing \"tq_schedule\": %s (is this a schedule file?)", "1"); goto out; }
    if (v->type != TQ_JSON_NUMBER || v->num != TQ_SCHEDULE_VERSION) {
        serr(name, v, "unsupported \"tq_schedule\" version (this tq reads %s)", "1");
        goto out;
    }
    char units[16];
    if (get_str(name, &root, "units", units, sizeof units)) goto out;
    int per_head;
    if (!strcmp(units, "layer") || !units[0]) per_head = 0; /* absent: per layer */
    else if (!strcmp(units, "head")) per_head = 1;
    else { serr(name, tq_json_get(&root, "units"), "\"units\" must be \"layer\" or \"head\", got \"%s\"", units); goto out; }
    if (get_str(name, &root, "method", s->method, sizeof s->method) ||
        get_str(name, &root, "policy", s->policy, sizeof s->policy) ||
        get_str(name, &root, "metric", s->metric, sizeof s->metric) ||
        get_num(name, &root, "budget", &s->budget) || get_num(name, &root, "achieved_bits", &s->achieved_bits))
        goto out;
    v = tq_json_get(&root, "model");
    if (v && v->type != TQ_JSON_NULL) {
        double nl, nh, hd;
        if (v->type != TQ_JSON_OBJECT) { serr(name, v, "\"model\" must be an object%s", ""); goto out; }
        if (get_str(name, v, "name", s->model, sizeof s->model) || get_num(name, v, "n_layers", &nl) ||
            get_num(name, v, "n_kv_heads", &nh) || get_num(name, v, "head_dim", &hd))
            goto out;
        if (!(nl >= 1 && nl <= 1e6 && nh >= 1 && nh <= 1e6 && hd >= 1 && hd <= 1e6) || !s->model[0]) {
            serr(name, v, "\"model\" needs \"name\" and positive \"n_layers\", \"n_kv_heads\", \"head_dim\"%s", "");
            goto out;
        }
        s->model_layers = (int)nl, s->model_kv_heads = (int)nh, s->model_head_dim = (int)hd;
    }
    v = tq_json_get(&root, "keys");
    if (!v) { serr(name, &root, "missing \"keys\" (bits per layer%s)", per_head ? " and head" : ""); goto out; }
    if (read_bits(name, v, "keys", per_head, &s->n_layers, &s->n_heads, &s->keys)) goto out;
    v = tq_json_get(&root, "values");
    if (v && v->type != TQ_JSON_NULL && read_bits(name, v, "values", per_head, &s->n_layers, &s->n_heads, &s->values))
        goto out;
    s->text = tq_malloc(len + 1);
    if (!s->text) { rc = TQ_ERR_NOMEM; goto out; }
    memcpy(s->text, text, len);
    s->text[len] = 0;
    rc = TQ_OK;
out:
    tq_json_free(&root);
    if (rc) tq_schedule_free(s);
    else *out = s;
    return rc;
}

int tq_schedule_load(tq_schedule **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tq_error_set(TQ_ERR, "cannot open schedule '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int rc = TQ_OK;
    while (buf) {
        if (n == cap) {
            if (cap > TQ_JSON_MAX_BYTES) { rc = tq_error_set(TQ_ERR, "schedule '%s' is larger than %u bytes", path, TQ_JSON_MAX_BYTES); break; }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) rc = tq_error_set(TQ_ERR, "cannot read schedule '%s': %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!buf) return tq_error_set(TQ_ERR_NOMEM, "out of memory reading '%s'", path);
    if (rc == TQ_OK) rc = tq_schedule_parse(out, buf, n, path);
    free(buf);
    return rc;
}

int tq_schedule_check_model(const tq_schedule *s, const char *name, const char *model, int n_layers, int n_kv_heads,
                            int head_dim)
{
    if (!s->model[0]) return TQ_OK;
    if (!strcmp(s->model, model) && s->model_layers == n_layers && s->model_kv_heads == n_kv_heads &&
        s->model_head_dim == head_dim)
        return TQ_OK;
    return tq_error_set(TQ_ERR_USAGE, "schedule '%s' was made for model '%s' (%d layers, %d kv heads, head dim %d), not "
                        "'%s' (%d, %d, %d); make one from this dump's sensitivity, or pass --force", name, s->model,
                        s->model_layers, s->model_kv_heads, s->model_head_dim, model, n_layers, n_kv_heads, head_dim);
}

int tq_schedule_check(const tq_schedule *s, const char *name, int n_layers, int n_kv_heads, const char *method,
                      int min_bits, int max_bits)
{
    if (s->n_layers != n_layers)
        return tq_error_set(TQ_ERR_USAGE, "schedule '%s' has %d layers but the dump has %d; make the schedule from "
                            "this dump's sensitivity", name, s->n_layers, n_layers);
    if (s->n_heads && s->n_heads != n_kv_heads)
        return tq_error_set(TQ_ERR_USAGE, "schedule '%s' has %d heads per layer but the dump has %d kv heads", name,
                            s->n_heads, n_kv_heads);
    if (method && s->method[0] && strcmp(method, s->method))
        return tq_error_set(TQ_ERR_USAGE, "schedule '%s' was made for method '%s', not '%s'; pass --method %s", name,
                            s->method, method, s->method);
    int h = s->n_heads ? s->n_heads : 1;
    for (int t = 0; t < 2; t++) {
        const int *b = t ? s->values : s->keys;
        if (!b) continue;
        for (int i = 0; i < s->n_layers * h; i++)
            if (b[i] < min_bits || b[i] > max_bits) {
                char where[48] = "";
                if (s->n_heads) snprintf(where, sizeof where, " head %d", i % h);
                return tq_error_set(TQ_ERR_USAGE, "schedule '%s': %s bits %d at layer %d%s out of range %d..%d for "
                                    "method '%s'", name, t ? "values" : "keys", b[i], i / h, where, min_bits,
                                    max_bits, method ? method : "?");
            }
    }
    return TQ_OK;
}

int tq_schedule_check_heads(const tq_schedule *s, const char *name, int layer, int n_kv_heads)
{
    if (s->n_heads && s->n_heads != n_kv_heads)
        return tq_error_set(TQ_ERR_USAGE, "schedule '%s' has %d heads per layer but the dump's layer %d has %d kv heads "
                            "(a per-head schedule must match every layer)", name, s->n_heads, layer, n_kv_heads);
    return TQ_OK;
}

int tq_schedule_bits(const tq_schedule *s, int layer, int head, int tensor)
{
    const int *b = tensor == TQ_TENSOR_VALUES ? s->values : s->keys;
    if (!b || layer < 0 || layer >= s->n_layers) return -1;
    if (!s->n_heads) return b[layer];
    if (head < 0 || head >= s->n_heads) return -1;
    return b[(size_t)layer * s->n_heads + head];
}

void tq_schedule_free(tq_schedule *s)
{
    if (!s) return;
    free(s->keys);
    free(s->values);
    free(s->text);
    free(s);
}
