/* gguf.c: the GGUF reader (mmap'd, every byte bounds-checked at open so accessors never fault) and the dequantizers
 * of the ggml block types to float32, written from the block layouts and computing each value with the same float32
 * operations, in the same order, as the `gguf` Python package's reference (so the results are bit for bit equal). */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fp16.h"
#include "tq.h"

/* ---------------------------------------------------------------- ggml type traits */

typedef struct {
    const char *name;
    int block;    /* elements per block */
    int bytes;    /* bytes per block */
} ggml_traits;

/* Every type id ggml has assigned (and not retired), so a file holding a type tq cannot dequantize still opens and
 * its other tensors stay usable. Ids 4, 5 and 31-33 were retired by ggml and are refused. */
static const ggml_traits traits[] = {
    [TQ_GGML_F32] = {"f32", 1, 4},       [TQ_GGML_F16] = {"f16", 1, 2},
    [TQ_GGML_Q4_0] = {"q4_0", 32, 18},   [TQ_GGML_Q4_1] = {"q4_1", 32, 20},
    [TQ_GGML_Q5_0] = {"q5_0", 32, 22},   [TQ_GGML_Q5_1] = {"q5_1", 32, 24},
    [TQ_GGML_Q8_0] = {"q8_0", 32, 34},   [9] = {"q8_1", 32, 40},
    [TQ_GGML_Q2_K] = {"q2_K", 256, 84},  [TQ_GGML_Q3_K] = {"q3_K", 256, 110},
    [TQ_GGML_Q4_K] = {"q4_K", 256, 144}, [TQ_GGML_Q5_K] = {"q5_K", 256, 176},
    [TQ_GGML_Q6_K] = {"q6_K", 256, 210}, [TQ_GGML_Q8_K] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 256, 66},         [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98},         [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},           [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},           [23] = {"iq4_xs", 256, 136},
    [24] = {"i8", 1, 1},                 [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},                [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},                [29] = {"iq1_m", 256, 56},
    [TQ_GGML_BF16] = {"bf16", 1, 2},     [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},           [39] = {"mxfp4", 32, 17},
    [40] = {"nvfp4", 64, 36},            [41] = {"q1_0", 128, 18},
};
#define N_TRAITS ((int)(sizeof traits / sizeof traits[0]))

static const ggml_traits *traits_of(int type)
{
    return type >= 0 && type < N_TRAITS && traits[type].name ? &traits[type] : NULL;
}
const char *tq_ggml_type_name(int type) { const ggml_traits *t = traits_of(type); return t ? t->name : NULL; }
int tq_ggml_block_elems(int type) { const ggml_traits *t = traits_of(type); return t ? t->block : 0; }
size_t tq_ggml_block_bytes(int type) { const ggml_traits *t = traits_of(type); return t ? (size_t)t->bytes : 0; }

/* ---------------------------------------------------------------- the handle */

typedef struct {
    tq_gguf_str key;
    int type;                 /* TQ_GGUF_* */
    int elem_type;            /* arrays: element type */
    uint64_t n;               /* arrays: element count */
    const uint8_t *val;       /* scalar: the value; string: its length prefix; array: the first element */
    const uint8_t **strs;     /* arrays of strings: each element's length prefix (random access for vocabularies) */
} gguf_kv;

struct tq_gguf {
    char *path;               /* the label messages name */
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    tq_gguf_tensor *tensors;
    uint64_t alignment, data_start;
    int64_t *kv_hash, *t_hash; /* open addressing: index + 1, 0 = empty; capacity a power of two >= 2n */
    uint64_t kv_hmask, t_hmask;
};

static const int scalar_size[TQ_GGUF_NTYPES] = {
    [TQ_GGUF_U8] = 1, [TQ_GGUF_I8] = 1, [TQ_GGUF_U16] = 2, [TQ_GGUF_I16] = 2, [TQ_GGUF_U32] = 4, [TQ_GGUF_I32] = 4,
    [TQ_GGUF_F32] = 4, [TQ_GGUF_BOOL] = 1, [TQ_GGUF_U64] = 8, [TQ_GGUF_I64] = 8, [TQ_GGUF_F64] = 8,
};
static const char *const value_type_names[TQ_GGUF_NTYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const char *vtype_name(int t) { return t >= 0 && t < TQ_GGUF_NTYPES ? value_type_names[t] : "?"; }

/* Little-endian loads from byte pointers: no alignment assumed, same result on any host. */
static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }

static uint64_t fnv1a(const char *s, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* ---------------------------------------------------------------- parsing */

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    const char *label;
} cursor;

static int bad(const cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const cursor *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tq_error_set(TQ_ERR, "cannot read '%s': %s", c->label, msg);
}

/* k more bytes must lie inside the file; `what` names them in the message. */
static int need(const cursor *c, uint64_t k, const char *what)
{
    if (k > c->n - c->pos)
        return bad(c, "truncated: %s needs %llu bytes at offset %zu, the file has %zu", what, (unsigned long long)k,
                   c->pos, c->n);
    return TQ_OK;
}
static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
    if (need(c, 4, what)) return TQ_ERR;
    *v = ld32(c->p + c->pos);
    c->pos += 4;
    return TQ_OK;
}
static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
    if (need(c, 8, what)) return TQ_ERR;
    *v = ld64(c->p + c->pos);
    c->pos += 8;
    return TQ_OK;
}
static int rd_str(cursor *c, tq_gguf_str *s, const char *what)
{
    uint64_t len;
    if (rd_u64(c, &len, what) || need(c, len, what)) return TQ_ERR;
    s->s = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return TQ_OK;
}

/* Validate one value of type `type` at the cursor and step over it; fill `kv` (may be NULL for nested values).
 * depth 1 = inside an array: arrays may hold arrays, but those may not hold arrays again. `key` names the entry. */
static int parse_value(cursor *c, int type, int depth, gguf_kv *kv, const char *key)
{
    if (kv) { kv->type = type; kv->val = c->p + c->pos; }
    if (type == TQ_GGUF_STRING) {
        tq_gguf_str s;
        return rd_str(c, &s, "a string value");
    }
    if (type != TQ_GGUF_ARRAY) {
        if (need(c, (uint64_t)scalar_size[type], "a value")) return TQ_ERR;
        if (type == TQ_GGUF_BOOL && c->p[c->pos] > 1)
            return bad(c, "key '%s' has bool value %u at offset %zu, expected 0 or 1", key, c->p[c->pos], c->pos);
        c->pos += (size_t)scalar_size[type];
        return TQ_OK;
    }
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "an array's element type") || rd_u64(c, &n, "an array's length")) return TQ_ERR;
    if (et >= TQ_GGUF_NTYPES)
        return bad(c, "key '%s' is an array of unknown value type %u", key, et);
    if (et == TQ_GGUF_ARRAY && depth > 0)
        return bad(c, "key '%s' nests arrays more than one level deep", key);
    /* every element takes at least this many bytes: bounds n by what is left before anything is allocated */
    uint64_t least = et == TQ_GGUF_STRING ? 8 : et == TQ_GGUF_ARRAY ? 12 : (uint64_t)scalar_size[et];
    if (n > (c->n - c->pos) / least)
        return bad(c, "key '%s' is an array of %llu %s elements, more than the %zu bytes left in the file can hold", key,
                   (unsigned long long)n, vtype_name((int)et), c->n - c->pos);
    if (kv) { kv->elem_type = (int)et; kv->n = n; kv->val = c->p + c->pos; }
    if (et == TQ_GGUF_STRING) {
        const uint8_t **strs = NULL;
        if (kv && n) {
            if (!(strs = tq_malloc(sizeof *strs * (size_t)n))) return TQ_ERR_NOMEM;
            kv->strs = strs;
        }
        for (uint64_t i = 0; i < n; i++) {
            tq_gguf_str s;
            if (strs) strs[i] = c->p + c->pos;
            if (rd_str(c, &s, "an array's string element")) return TQ_ERR;
        }
    } else if (et == TQ_GGUF_ARRAY) {
        /* each element is an array header (element type, count) and its elements, with no type word of its own */
        for (uint64_t i = 0; i < n; i++)
            if (parse_value(c, TQ_GGUF_ARRAY, depth + 1, NULL, key)) return TQ_ERR;
    } else if (et == TQ_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++)
            if (c->p[c->pos + i] > 1)
                return bad(c, "key '%s' has bool element %llu = %u, expected 0 or 1", key, (unsigned long long)i,
                           c->p[c->pos + i]);
        c->pos += (size_t)n;
    } else
        c->pos += (size_t)(n * least);
    return TQ_OK;
}

static int64_t *hash_build(uint64_t n, uint64_t *mask)
{
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    *mask = cap - 1;
    return tq_calloc((size_t)cap, sizeof(int64_t));
}

/* Insert index i under (s, len); returns the index already there with the same name, or -1 after inserting. */
static int64_t hash_insert(int64_t *tab, uint64_t mask, const char *s, uint64_t len, int64_t i,
                           const char *(*name_of)(const tq_gguf *, int64_t, uint64_t *), const tq_gguf *g)
{
    for (uint64_t h = fnv1a(s, len) & mask;; h = (h + 1) & mask) {
        if (!tab[h]) { tab[h] = i + 1; return -1; }
        uint64_t l2;
        const char *s2 = name_of(g, tab[h] - 1, &l2);
        if (l2 == len && !memcmp(s2, s, (size_t)len)) return tab[h] - 1;
    }
}
static int64_t hash_find(const int64_t *tab, uint64_t mask, const char *s, uint64_t len,
                         const char *(*name_of)(const tq_gguf *, int64_t, uint64_t *), const tq_gguf *g)
{
    if (!tab) return -1;
    for (uint64_t h = fnv1a(s, len) & mask;; h = (h + 1) & mask) {
        if (!tab[h]) return -1;
        uint64_t l2;
        const char *s2 = name_of(g, tab[h] - 1, &l2);
        if (l2 == len && !memcmp(s2, s, (size_t)len)) return tab[h] - 1;
    }
}
static const char *kv_name(const tq_gguf *g, int64_t i, uint64_t *len) { *len = g->kv[i].key.len; return g->kv[i].key.s; }
static const char *t_name(const tq_gguf *g, int64_t i, uint64_t *len)
{
    *len = strlen(g->tensors[i].name);
    return g->tensors[i].name;
}

/* A key or tensor name in messages: at most 64 bytes, non-printable bytes as '?'. */
static const char *show(const tq_gguf_str *s, char *buf, size_t cap)
{
    size_t n = s->len < cap - 4 ? (size_t)s->len : cap - 4, j = 0;
    for (size_t i = 0; i < n; i++) buf[j++] = s->s[i] >= 32 && s->s[i] < 127 ? s->s[i] : '?';
    if (n < s->len) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = 0;
    return buf;
}

#define GGML_MAX_NAME 64 /* ggml's tensor name buffer: names of 64 bytes or more cannot come from ggml */

static int parse(tq_gguf *g)
{
    cursor c = {g->base, g->size, 0, g->path};
    char sbuf[80];
    if (g->size < 4 || memcmp(g->base, "GGUF", 4))
        return bad(&c, "not a GGUF file (%s)", g->size < 4 ? "shorter than its magic" : "no 'GGUF' magic");
    c.pos = 4;
    uint32_t ver;
    uint64_t nt, nkv;
    if (rd_u32(&c, &ver, "the version")) return TQ_ERR;
    if (ver == 0x02000000u || ver == 0x03000000u) return bad(&c, "big-endian GGUF files are not supported");
    if (ver != 2 && ver != 3) return bad(&c, "GGUF version %u is not supported (2 and 3 are)", ver);
    g->version = ver;
    if (rd_u64(&c, &nt, "the tensor count") || rd_u64(&c, &nkv, "the metadata count")) return TQ_ERR;
    /* a key-value pair takes at least 8 + 1 + 4 + 1 bytes, a tensor entry 8 + 1 + 4 + 8 + 4 + 8 */
    if (nkv > (g->size - c.pos) / 14)
        return bad(&c, "metadata count %llu is more than the file's %zu bytes can hold", (unsigned long long)nkv, g->size);
    if (nt > (g->size - c.pos) / 33)
        return bad(&c, "tensor count %llu is more than the file's %zu bytes can hold", (unsigned long long)nt, g->size);
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;
    if (!(g->kv = tq_calloc((size_t)nkv, sizeof *g->kv)) || !(g->kv_hash = hash_build(nkv, &g->kv_hmask)))
        return TQ_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        uint32_t type;
        if (rd_str(&c, &kv->key, "a metadata key")) return TQ_ERR;
        if (kv->key.len == 0) return bad(&c, "metadata key %lld is empty", (long long)i);
        if (kv->key.len > 65535) return bad(&c, "metadata key %lld is %llu bytes long (65535 at most)", (long long)i,
                                            (unsigned long long)kv->key.len);
        if (memchr(kv->key.s, 0, (size_t)kv->key.len))
            return bad(&c, "metadata key '%s' contains a NUL byte", show(&kv->key, sbuf, sizeof sbuf));
        if (hash_insert(g->kv_hash, g->kv_hmask, kv->key.s, kv->key.len, i, kv_name, g) >= 0)
            return bad(&c, "metadata key '%s' appears twice", show(&kv->key, sbuf, sizeof sbuf));
        if (rd_u32(&c, &type, "a metadata value type")) return TQ_ERR;
        char kname[80];
        show(&kv->key, kname, sizeof kname);
        if (type >= TQ_GGUF_NTYPES) return bad(&c, "key '%s' has unknown value type %u", kname, type);
        int rc = parse_value(&c, (int)type, 0, kv, kname);
        if (rc) return rc;
    }

    /* the alignment must be known before the tensor table's offsets can be checked */
    g->alignment = 32;
    int64_t ai = tq_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kv[ai].type != TQ_GGUF_U32)
            return bad(&c, "'general.alignment' has type %s, expected u32", vtype_name(g->kv[ai].type));
        uint32_t a = ld32(g->kv[ai].val);
        if (a == 0 || (a & (a - 1))) return bad(&c, "'general.alignment' is %u, expected a power of two", a);
        g->alignment = a;
    }

    if (!(g->tensors = tq_calloc((size_t)nt, sizeof *g->tensors)) || !(g->t_hash = hash_build(nt, &g->t_hmask)))
        return TQ_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tq_gguf_tensor *t = &g->tensors[i];
        tq_gguf_str name;
        uint32_t nd, type;
        if (rd_str(&c, &name, "a tensor name")) return TQ_ERR;
        if (name.len == 0) return bad(&c, "tensor %lld has an empty name", (long long)i);
        if (name.len >= GGML_MAX_NAME)
            return bad(&c, "tensor name '%s' is %llu bytes long (%d at most)", show(&name, sbuf, sizeof sbuf),
                       (unsigned long long)name.len, GGML_MAX_NAME - 1);
        if (memchr(name.s, 0, (size_t)name.len))
            return bad(&c, "tensor name '%s' contains a NUL byte", show(&name, sbuf, sizeof sbuf));
        if (!(t->name = tq_malloc((size_t)name.len + 1))) return TQ_ERR_NOMEM;
        memcpy(t->name, name.s, (size_t)name.len);
        t->name[name.len] = 0;
        if (hash_insert(g->t_hash, g->t_hmask, t->name, name.len, i, t_name, g) >= 0)
            return bad(&c, "tensor '%s' appears twice", t->name);
        if (rd_u32(&c, &nd, "a tensor's dimension count")) return TQ_ERR;
        if (nd < 1 || nd > TQ_GGUF_MAX_DIMS)
            return bad(&c, "tensor '%s' has %u dimensions, expected 1..%d", t->name, nd, TQ_GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        uint64_t prod = 1;
        for (int d = 0; d < TQ_GGUF_MAX_DIMS; d++) {
            uint64_t v = 1;
            if (d < (int)nd && rd_u64(&c, &v, "a tensor's dimensions")) return TQ_ERR;
            if (v == 0 || v > (uint64_t)INT64_MAX)
                return bad(&c, "tensor '%s' has dimension %d of size %llu", t->name, d, (unsigned long long)v);
            if (prod > (uint64_t)INT64_MAX / v)
                return bad(&c, "tensor '%s' has more elements than a 64-bit count holds", t->name);
            prod *= v;
            t->ne[d] = (int64_t)v;
        }
        t->n_elems = (int64_t)prod;
        if (rd_u32(&c, &type, "a tensor's type")) return TQ_ERR;
        const ggml_traits *tr = traits_of((int)type);
        if (!tr) return bad(&c, "tensor '%s' has unknown ggml type %u", t->name, type);
        t->type = (int)type;
        if (t->ne[0] % tr->block)
            return bad(&c, "tensor '%s' has rows of %lld elements, not a multiple of %s's block of %d", t->name,
                       (long long)t->ne[0], tr->name, tr->block);
        uint64_t blocks = prod / (uint64_t)tr->block;
        if (blocks > (uint64_t)SIZE_MAX / (uint64_t)tr->bytes || blocks > UINT64_MAX / 2 / (uint64_t)tr->bytes)
            return bad(&c, "tensor '%s' is larger than memory can address", t->name);
        t->nbytes = (size_t)(blocks * (uint64_t)tr->bytes);
        if (rd_u64(&c, &t->offset, "a tensor's data offset")) return TQ_ERR;
        if (t->offset % g->alignment)
            return bad(&c, "tensor '%s' has data offset %llu, not a multiple of the alignment %llu", t->name,
                       (unsigned long long)t->offset, (unsigned long long)g->alignment);
    }

    /* the data section starts at the next multiple of the alignment; every tensor's bytes must lie inside the file */
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_start = (uint64_t)c.pos + pad;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tq_gguf_tensor *t = &g->tensors[i];
        uint64_t room = g->data_start <= g->size ? g->size - g->data_start : 0;
        if (g->data_start > g->size || t->offset > room || t->nbytes > room - t->offset)
            return bad(&c, "tensor '%s' (%s, %zu bytes at data offset %llu) runs past the end of the file (%zu bytes, "
                       "data from %llu)", t->name, traits_of(t->type)->name, t->nbytes,
                       (unsigned long long)t->offset, g->size, (unsigned long long)g->data_start);
        t->data = g->base + g->data_start + t->offset;
    }
    return TQ_OK;
}

static int open_common(tq_gguf *g, tq_gguf **out)
{
    int rc = parse(g);
    if (rc) {
        if (rc == TQ_ERR_NOMEM) tq_error_prefix(rc, "cannot read '%s': ", g->path);
        tq_gguf_close(g);
        return rc;
    }
    *out = g;
    return TQ_OK;
}

int tq_gguf_open_buffer(const void *buf, size_t n, const char *label, tq_gguf **out)
{
    *out = NULL;
    tq_gguf *g = tq_calloc(1, sizeof *g);
    if (!g) return TQ_ERR_NOMEM;
    if (!(g->path = strdup(label ? label : "(buffer)"))) { free(g); return tq_error_set(TQ_ERR_NOMEM, "out of memory"); }
    g->base = buf;
    g->size = n;
    return open_common(g, out);
}

int tq_gguf_open(const char *path, tq_gguf **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tq_error_set(TQ_ERR, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tq_error_set(TQ_ERR, "cannot read '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) { close(fd); return tq_error_set(TQ_ERR, "cannot read '%s': not a regular file", path); }
    if (st.st_size == 0) { close(fd); return tq_error_set(TQ_ERR, "cannot read '%s': the file is empty", path); }
    if ((uint64_t)st.st_size > SIZE_MAX) { close(fd); return tq_error_set(TQ_ERR, "cannot read '%s': too large", path); }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return tq_error_set(TQ_ERR, "cannot map '%s': %s", path, strerror(e));
    tq_gguf *g = tq_calloc(1, sizeof *g);
    if (g && !(g->path = strdup(path))) { free(g); g = NULL; tq_error_set(TQ_ERR_NOMEM, "out of memory"); }
    if (!g) { munmap(p, (size_t)st.st_size); return TQ_ERR_NOMEM; }
    g->base = p;
    g->size = (size_t)st.st_size;
    g->mapped = 1;
    return open_common(g, out);
}

void tq_gguf_close(tq_gguf *g)
{
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    if (g->tensors)
        for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->path);
    free(g);
}

uint32_t tq_gguf_version(const tq_gguf *g) { return g->version; }
const char *tq_gguf_path(const tq_gguf *g) { return g->path; }

/* ---------------------------------------------------------------- metadata */

int64_t tq_gguf_n_kv(const tq_gguf *g) { return g->n_kv; }
int64_t tq_gguf_find_key(const tq_gguf *g, const char *key)
{
    return hash_find(g->kv_hash, g->kv_hmask, key, strlen(key), kv_name, g);
}
tq_gguf_str tq_gguf_key(const tq_gguf *g, int64_t i)
{
    tq_gguf_str none = {"", 0};
    return i >= 0 && i < g->n_kv ? g->kv[i].key : none;
}
int tq_gguf_kv_type(const tq_gguf *g, int64_t i) { return i >= 0 && i < g->n_kv ? g->kv[i].type : -1; }

static int is_int_type(int t)
{
    return t == TQ_GGUF_U8 || t == TQ_GGUF_I8 || t == TQ_GGUF_U16 || t == TQ_GGUF_I16 || t == TQ_GGUF_U32 ||
           t == TQ_GGUF_I32 || t == TQ_GGUF_U64 || t == TQ_GGUF_I64 || t == TQ_GGUF_BOOL;
}

/* One integer element of type t at p; 1 when a u64 does not fit in int64. */
static int load_int(int t, const uint8_t *p, int64_t *v)
{
    switch (t) {
    case TQ_GGUF_U8: case TQ_GGUF_BOOL: *v = p[0]; return 0;
    case TQ_GGUF_I8: *v = (int8_t)p[0]; return 0;
    case TQ_GGUF_U16: *v = ld16(p); return 0;
    case TQ_GGUF_I16: *v = (int16_t)ld16(p); return 0;
    case TQ_GGUF_U32: *v = ld32(p); return 0;
    case TQ_GGUF_I32: *v = (int32_t)ld32(p); return 0;
    case TQ_GGUF_I64: *v = (int64_t)ld64(p); return 0;
    case TQ_GGUF_U64: { uint64_t u = ld64(p); *v = (int64_t)u; return u > (uint64_t)INT64_MAX; }
    }
    return 1;
}
static int load_float(int t, const uint8_t *p, double *v)
{
    if (t == TQ_GGUF_F32) { uint32_t b = ld32(p); float f; memcpy(&f, &b, 4); *v = f; return 0; }
    if (t == TQ_GGUF_F64) { uint64_t b = ld64(p); memcpy(v, &b, 8); return 0; }
    if (t == TQ_GGUF_U64) { *v = (double)ld64(p); return 0; }
    int64_t i;
    if (!is_int_type(t) || load_int(t, p, &i)) return 1;
    *v = (double)i;
    return 0;
}

static const gguf_kv *kv_of(const tq_gguf *g, const char *key)
{
    int64_t i = tq_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}
static int wrong_type(const tq_gguf *g, const char *key, int have, const char *want)
{
    return tq_error_set(TQ_ERR, "'%s': key '%s' has type %s, expected %s", g->path, key, vtype_name(have), want);
}

int tq_gguf_get_int(const tq_gguf *g, const char *key, int64_t *v)
{
    const gguf_kv *kv = kv_of(g, key);
    if (!kv) return 1;
    if (!is_int_type(kv->type)) return wrong_type(g, key, kv->type, "an integer");
    int64_t x;
    if (load_int(kv->type, kv->val, &x))
        return tq_error_set(TQ_ERR, "'%s': key '%s' is %llu, beyond a signed 64-bit integer", g->path, key,
                            (unsigned long long)ld64(kv->val));
    *v = x;
    return TQ_OK;
}

int tq_gguf_get_float(const tq_gguf *g, const char *key, double *v)
{
    const gguf_kv *kv = kv_of(g, key);
    if (!kv) return 1;
    if (kv->type == TQ_GGUF_BOOL || load_float(kv->type, kv->val, v)) return wrong_type(g, key, kv->type, "a number");
    return TQ_OK;
}

int tq_gguf_get_str(const tq_gguf *g, const char *key, tq_gguf_str *v)
{
    const gguf_kv *kv = kv_of(g, key);
    if (!kv) return 1;
    if (kv->type != TQ_GGUF_STRING) return wrong_type(g, key, kv->type, "string");
    v->len = ld64(kv->val);
    v->s = (const char *)kv->val + 8;
    return TQ_OK;
}

int tq_gguf_get_arr(const tq_gguf *g, const char *key, int *elem_type, uint64_t *n)
{
    const gguf_kv *kv = kv_of(g, key);
    if (!kv) return 1;
    if (kv->type != TQ_GGUF_ARRAY) return wrong_type(g, key, kv->type, "array");
    *elem_type = kv->elem_type;
    *n = kv->n;
    return TQ_OK;
}

/* The array under key with element i in range; NULL (error recorded) otherwise. */
static const gguf_kv *arr_elem(const tq_gguf *g, const char *key, uint64_t i)
{
    const gguf_kv *kv = kv_of(g, key);
    if (!kv) { tq_error_set(TQ_ERR, "'%s': no key '%s'", g->path, key); return NULL; }
    if (kv->type != TQ_GGUF_ARRAY) { wrong_type(g, key, kv->type, "array"); return NULL; }
    if (i >= kv->n) {
        tq_error_set(TQ_ERR, "'%s': element %llu of key '%s' asked for, the array has %llu", g->path,
                     (unsigned long long)i, key, (unsigned long long)kv->n);
        return NULL;
    }
    return kv;
}
static int wrong_elem(const tq_gguf *g, const char *key, int have, const char *want)
{
    return tq_error_set(TQ_ERR, "'%s': key '%s' is an array of %s, expected %s", g->path, key, vtype_name(have), want);
}

int tq_gguf_arr_str(const tq_gguf *g, const char *key, uint64_t i, tq_gguf_str *v)
{
    const gguf_kv *kv = arr_elem(g, key, i);
    if (!kv) return TQ_ERR;
    if (kv->elem_type != TQ_GGUF_STRING) return wrong_elem(g, key, kv->elem_type, "strings");
    v->len = ld64(kv->strs[i]);
    v->s = (const char *)kv->strs[i] + 8;
    return TQ_OK;
}

int tq_gguf_arr_int(const tq_gguf *g, const char *key, uint64_t i, int64_t *v)
{
    const gguf_kv *kv = arr_elem(g, key, i);
    if (!kv) return TQ_ERR;
    if (!is_int_type(kv->elem_type)) return wrong_elem(g, key, kv->elem_type, "integers");
    if (load_int(kv->elem_type, kv->val + i * (uint64_t)scalar_size[kv->elem_type], v))
        return tq_error_set(TQ_ERR, "'%s': element %llu of key '%s' is beyond a signed 64-bit integer", g->path,
                            (unsigned long long)i, key);
    return TQ_OK;
}

int tq_gguf_arr_float(const tq_gguf *g, const char *key, uint64_t i, double *v)
{
    const gguf_kv *kv = arr_elem(g, key, i);
    if (!kv) return TQ_ERR;
    int t = kv->elem_type;
    if (t == TQ_GGUF_STRING || t == TQ_GGUF_ARRAY || t == TQ_GGUF_BOOL ||
        load_float(t, kv->val + i * (uint64_t)scalar_size[t], v))
        return wrong_elem(g, key, t, "numbers");
    return TQ_OK;
}

const void *tq_gguf_arr_data(const tq_gguf *g, const char *key, int elem_type, uint64_t *n)
{
    const gguf_kv *kv = kv_of(g, key);
    if (!kv || kv->type != TQ_GGUF_ARRAY || kv->elem_type != elem_type || elem_type == TQ_GGUF_STRING ||
        elem_type == TQ_GGUF_ARRAY)
        return NULL;
    *n = kv->n;
    return kv->val;
}

/* ---------------------------------------------------------------- tensors */

int64_t tq_gguf_n_tensors(const tq_gguf *g) { return g->n_tensors; }
const tq_gguf_tensor *tq_gguf_tensor_at(const tq_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const tq_gguf_tensor *tq_gguf_find_tensor(const tq_gguf *g, const char *name)
{
    int64_t i = hash_find(g->t_hash, g->t_hmask, name, strlen(name), t_name, g);
    return i < 0 ? NULL : &g->tensors[i];
}

/* ---------------------------------------------------------------- dequantization */

static inline float h2f(const uint8_t *p) { return tq_half_to_float(ld16(p)); }

static void dq_f32(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) { uint32_t b = ld32(x + 4 * i); memcpy(&y[i], &b, 4); }
}
static void dq_f16(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) y[i] = h2f(x + 2 * i);
}
static void dq_bf16(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) { uint32_t b = (uint32_t)ld16(x + 2 * i) << 16; memcpy(&y[i], &b, 4); }
}

/* The block layouts (ggml's, byte offsets within a block): every fp16 scale little-endian. Products and sums are
 * separate statements, each rounded to float32 as NumPy rounds them: a fused multiply-add would differ in the last
 * bit (C allows contraction only within one expression, so none happens here whatever -ffp-contract says). */

/* q8_0 (34 bytes / 32): d, int8 q[32]; y = q * d */
static void dq_q8_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 34, y += 32) {
        float d = h2f(x);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)x[2 + j] * d;
    }
}

/* q4_0 (18 / 32): d, qs[16]; element j < 16 is the low nibble of qs[j], element j + 16 its high nibble; y = d (q - 8) */
static void dq_q4_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 18, y += 32) {
        float d = h2f(x);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((x[2 + j] & 0xF) - 8);
            y[j + 16] = d * (float)((x[2 + j] >> 4) - 8);
        }
    }
}

/* q4_1 (20 / 32): d, m, qs[16] as q4_0; y = d q + m */
static void dq_q4_1(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 20, y += 32) {
        float d = h2f(x), m = h2f(x + 2);
        for (int j = 0; j < 16; j++) {
            float lo = d * (float)(x[4 + j] & 0xF), hi = d * (float)(x[4 + j] >> 4);
            y[j] = lo + m;
            y[j + 16] = hi + m;
        }
    }
}

/* q5_0 (22 / 32): d, qh (u32: bit j is element j's fifth bit), qs[16] as q4_0; y = d (q - 16) */
static void dq_q5_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 22, y += 32) {
        float d = h2f(x);
        uint32_t qh = ld32(x + 2);
        for (int j = 0; j < 16; j++) {
            int lo = (x[6 + j] & 0xF) | (int)((qh >> j) & 1) << 4, hi = (x[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

/* q5_1 (24 / 32): d, m, qh, qs[16]; y = d q + m */
static void dq_q5_1(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 24, y += 32) {
        float d = h2f(x), m = h2f(x + 2);
        uint32_t qh = ld32(x + 4);
        for (int j = 0; j < 16; j++) {
            int lo = (x[8 + j] & 0xF) | (int)((qh >> j) & 1) << 4, hi = (x[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            float a = d * (float)lo, b = d * (float)hi;
            y[j] = a + m;
            y[j + 16] = b + m;
        }
    }
}

/* The 256-element k-quants: 16 or 8 sub-blocks, each with its own scale (and min) quantized against the block's fp16
 * super-scales. */

/* q2_K (84): scales[16] (low nibble scale, high nibble min, per 16 elements), qs[64], d, dmin.
 * Element 128 h + 32 s + l is bits 2s..2s+1 of qs[32 h + l]; y = (d sc) q - (dmin m) */
static void dq_q2_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 84, y += 256) {
        const uint8_t *sc = x, *qs = x + 16;
        float d = h2f(x + 80), dmin = h2f(x + 82);
        for (int j = 0; j < 256; j++) {
            int g = j / 16, h = j / 128, s = (j / 32) % 4, l = j % 32;
            float dl = d * (float)(sc[g] & 0xF), ml = dmin * (float)(sc[g] >> 4);
            float t = dl * (float)((qs[32 * h + l] >> 2 * s) & 3);
            y[j] = t - ml;
        }
    }
}

/* q3_K (110): hmask[32], qs[64], scales[12] (16 six-bit signed scales: low 4 bits in nibbles of bytes 0-7, high 2
 * bits in bit pairs of bytes 8-11), d. Element 32 b + l has its high bit in bit b of hmask[l]; low bits as q2_K;
 * q = low - 4 when the high bit is clear; y = (d (scale - 32)) q */
static void dq_q3_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 110, y += 256) {
        const uint8_t *hm = x, *qs = x + 32, *sc = x + 96;
        float d = h2f(x + 108);
        float dl[16];
        for (int g = 0; g < 16; g++) {
            int lo = (sc[g % 8] >> 4 * (g / 8)) & 0xF, hi = (sc[8 + g % 4] >> 2 * (g / 4)) & 3;
            dl[g] = d * (float)((lo | hi << 4) - 32);
        }
        for (int j = 0; j < 256; j++) {
            int h = j / 128, s = (j / 32) % 4, l = j % 32;
            int q = ((qs[32 * h + l] >> 2 * s) & 3) - (((hm[l] >> (j / 32)) & 1) ? 0 : 4);
            y[j] = dl[j / 16] * (float)q;
        }
    }
}

/* The 6-bit scales and mins of q4_K and q5_K, 8 of each in 12 bytes: sub-blocks 0-3 in the low 6 bits of bytes 0-3
 * (scales) and 4-7 (mins); sub-blocks 4-7 from the nibbles of bytes 8-11 plus the top 2 bits of bytes 0-7. */
static void k_scale_min(const uint8_t *s, int *sc, int *m)
{
    for (int k = 0; k < 4; k++) {
        sc[k] = s[k] & 63;
        m[k] = s[4 + k] & 63;
        sc[4 + k] = (s[8 + k] & 0xF) | (s[k] >> 6) << 4;
        m[4 + k] = (s[8 + k] >> 4) | (s[4 + k] >> 6) << 4;
    }
}

/* q4_K (144): d, dmin, scales[12], qs[128]. Element 64 c + 32 h + l is nibble h of qs[32 c + l], in sub-block
 * 2 c + h; y = (d sc) q - (dmin m) */
static void dq_q4_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 144, y += 256) {
        float d = h2f(x), dmin = h2f(x + 2);
        int sc[8], m[8];
        k_scale_min(x + 4, sc, m);
        const uint8_t *qs = x + 16;
        for (int b = 0; b < 8; b++) {
            float ds = d * (float)sc[b], dm = dmin * (float)m[b];
            for (int l = 0; l < 32; l++) {
                float t = ds * (float)((qs[32 * (b / 2) + l] >> 4 * (b % 2)) & 0xF);
                y[32 * b + l] = t - dm;
            }
        }
    }
}

/* q5_K (176): d, dmin, scales[12], qh[32], qs[128]: low nibbles as q4_K, the fifth bit of element 32 b + l in bit b
 * of qh[l]; y = (d sc) q - (dmin m) */
static void dq_q5_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 176, y += 256) {
        float d = h2f(x), dmin = h2f(x + 2);
        int sc[8], m[8];
        k_scale_min(x + 4, sc, m);
        const uint8_t *qh = x + 16, *qs = x + 48;
        for (int b = 0; b < 8; b++) {
            float ds = d * (float)sc[b], dm = dmin * (float)m[b];
            for (int l = 0; l < 32; l++) {
                int q = ((qs[32 * (b / 2) + l] >> 4 * (b % 2)) & 0xF) | ((qh[l] >> b) & 1) << 4;
                float t = ds * (float)q;
                y[32 * b + l] = t - dm;
            }
        }
    }
}

/* q6_K (210): ql[128], qh[64], int8 scales[16] (per 16 elements), d. Element 128 h + 32 s + l (s = 0..3) takes
 * nibble s / 2 of ql[64 h + 32 (s % 2) + l] and bits 2s..2s+1 of qh[32 h + l]; y = (d scale) (q - 32) */
static void dq_q6_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 210, y += 256) {
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        float d = h2f(x + 208);
        for (int j = 0; j < 256; j++) {
            int h = j / 128, s = (j / 32) % 4, l = j % 32;
            int lo = (ql[64 * h + 32 * (s % 2) + l] >> 4 * (s / 2)) & 0xF, hi = (qh[32 * h + l] >> 2 * s) & 3;
            float ds = d * (float)sc[j / 16];
            y[j] = ds * (float)((lo | hi << 4) - 32);
        }
    }
}

typedef struct {
    int type;
    void (*fn)(const uint8_t *x, float *y, int64_t nblocks);
} dequantizer;

static const dequantizer dequantizers[] = {
    {TQ_GGML_F32, dq_f32}, {TQ_GGML_F16, dq_f16}, {TQ_GGML_BF16, dq_bf16}, {TQ_GGML_Q8_0, dq_q8_0},
    {TQ_GGML_Q4_0, dq_q4_0}, {TQ_GGML_Q4_1, dq_q4_1}, {TQ_GGML_Q5_0, dq_q5_0}, {TQ_GGML_Q5_1, dq_q5_1},
    {TQ_GGML_Q2_K, dq_q2_k}, {TQ_GGML_Q3_K, dq_q3_k}, {TQ_GGML_Q4_K, dq_q4_k}, {TQ_GGML_Q5_K, dq_q5_k},
    {TQ_GGML_Q6_K, dq_q6_k},
};
#define N_DEQ ((int)(sizeof dequantizers / sizeof dequantizers[0]))

static const dequantizer *deq_of(int type)
{
    for (int i = 0; i < N_DEQ; i++)
        if (dequantizers[i].type == type) return &dequantizers[i];
    return NULL;
}

int tq_ggml_can_dequantize(int type) { return deq_of(type) != NULL; }

int tq_ggml_dequantize(int type, const void *src, float *dst, int64_t n)
{
    const dequantizer *d = deq_of(type);
    if (!d) {
        const char *nm = tq_ggml_type_name(type);
        return nm ? tq_error_set(TQ_ERR_USAGE, "cannot dequantize ggml type %s", nm)
                  : tq_error_set(TQ_ERR_USAGE, "cannot dequantize unknown ggml type %d", type);
    }
    const ggml_traits *tr = traits_of(type);
    if (n < 0 || n % tr->block)
        return tq_error_set(TQ_ERR_USAGE, "%lld elements of %s: not a multiple of its block of %d", (long long)n,
                            tr->name, tr->block);
    d->fn(src, dst, n / tr->block);
    return TQ_OK;
}

int tq_gguf_tensor_rows_f32(const tq_gguf_tensor *t, int64_t row0, int64_t nrows, float *dst)
{
    int64_t rows = t->n_elems / t->ne[0];
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return tq_error_set(TQ_ERR_USAGE, "rows %lld..%lld of tensor '%s' asked for, it has %lld", (long long)row0,
                            (long long)(row0 + nrows), t->name, (long long)rows);
    const dequantizer *d = deq_of(t->type);
    if (!d) return tq_error_set(TQ_ERR_USAGE, "tensor '%s': cannot dequantize ggml type %s", t->name,
                                tq_ggml_type_name(t->type));
    const ggml_traits *tr = traits_of(t->type);
    int64_t bpr = t->ne[0] / tr->block; /* blocks per row */
    const uint8_t *src = (const uint8_t *)t->data + (size_t)(row0 * bpr) * (size_t)tr->bytes;
    d->fn(src, dst, nrows * bpr);
    return TQ_OK;
}

int tq_gguf_tensor_to_f32(const tq_gguf_tensor *t, float *dst)
{
    return tq_gguf_tensor_rows_f32(t, 0, t->n_elems / t->ne[0], dst);
}
