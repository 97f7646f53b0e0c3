/* quant.c: the method-independent half of the quantizer core — the codes container (named packed sections),
 * parameter defaults and descriptions. The table lookups and dispatch live in formats.c, so code that only needs
 * the container (a method's own encoder and its tests) does not pull every method into the link. */
#include "quant.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tq.h"
#include "vocab.h"

static size_t sec_elem_bytes(int type)
{
    switch (type) {
    case TQ_SEC_U8: return 1;
    case TQ_SEC_F16: return 2;
    case TQ_SEC_F32: return 4;
    case TQ_SEC_I32: return 4;
    default: return 0;
    }
}

/* Large sections are written once, front to back, right after allocation: ask for transparent huge pages over the
 * 2 MiB-aligned interior before the first touch (calloc leaves a fresh mapping untouched), so a 50 MB codes section
 * takes 25 page faults instead of 12 800 (on a 2-core VM that was a third of the Hadamard encoder's time). Advice
 * only: where the kernel declines, nothing changes. */
static void advise_huge(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t H = (uintptr_t)2 << 20;
    if (bytes < 4 * H) return;
    uintptr_t a = ((uintptr_t)p + H - 1) & ~(H - 1), e = ((uintptr_t)p + bytes) & ~(H - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

void *tq_codes_add(tq_codes *c, const char *name, int type, size_t count)
{
    size_t es = sec_elem_bytes(type);
    if (!es) {
        tq_error_set(TQ_ERR, "section '%s': unknown element type %d", name, type);
        return NULL;
    }
    if (strlen(name) >= sizeof c->sec[0].name) {
        tq_error_set(TQ_ERR, "section name '%s' is longer than %zu characters", name, sizeof c->sec[0].name - 1);
        return NULL;
    }
    if (tq_codes_find(c, name)) {
        tq_error_set(TQ_ERR, "section '%s' added twice", name);
        return NULL;
    }
    if (c->nsec >= TQ_MAX_SECTIONS) {
        tq_error_set(TQ_ERR, "too many sections (at most %d) adding '%s'", TQ_MAX_SECTIONS, name);
        return NULL;
    }
    void *data = tq_calloc(count ? count : 1, es);
    if (!data) return NULL;
    advise_huge(data, (count ? count : 1) * es);
    tq_section *s = &c->sec[c->nsec++];
    memset(s->name, 0, sizeof s->name);
    strcpy(s->name, name);
    s->type = type;
    s->count = count;
    s->data = data;
    return data;
}

const tq_section *tq_codes_find(const tq_codes *c, const char *name)
{
    for (int i = 0; i < c->nsec; i++)
        if (!strcmp(c->sec[i].name, name)) return &c->sec[i];
    return NULL;
}

void tq_codes_free(tq_codes *c)
{
    if (!c) return;
    for (int i = 0; i < c->nsec; i++) free(c->sec[i].data);
    c->nsec = 0;
    memset(c->sec, 0, sizeof c->sec);
}

size_t tq_section_bytes(const tq_section *s) { return s->count * sec_elem_bytes(s->type); }

size_t tq_codes_payload_bytes(const tq_codes *c)
{
    size_t b = 0;
    for (int i = 0; i < c->nsec; i++) b += tq_section_bytes(&c->sec[i]);
    return b;
}

double tq_codes_bits_total(const tq_codes *c)
{
    if (c->n <= 0 || c->d <= 0) return 0.0;
    return 8.0 * (double)tq_codes_payload_bytes(c) / ((double)c->n * (double)c->d);
}

void tq_qparams_default(tq_qparams *p, int method, int bits)
{
    memset(p, 0, sizeof *p);
    p->method = method;
    p->bits = bits;
    p->rotation = TQ_ROT_DENSE;
    p->codebook = TQ_CB_BETA;
    p->group = 32;
    p->qjl_m = 0;
    /* polar: 4 levels (blocks of 16). bits b maps to b+1 bits for the level-1 angles (uniform on [0, 2pi)) and
     * b-1 (at least 1) for the concentrated higher levels, so b = 3 is PolarQuant's 4,2,2,2 (3.875 bits). Other
     * methods (and out-of-range b) get 4,2,2,2. */
    int pb = method == TQ_M_POLAR && bits >= 1 && bits <= 7 ? bits : 3;
    p->polar_levels = 4;
    p->polar_bits[0] = pb + 1;
    for (int l = 1; l < 4; l++) p->polar_bits[l] = pb - 1 < 1 ? 1 : pb - 1;
    p->seed = 0;
}

static const char *rot_name(int r) { return tq_vocab_name(TQ_VOCAB_ROTATION, r); }
static const char *cb_name(int c) { return tq_vocab_name(TQ_VOCAB_CODEBOOK, c); }

/* Appends printf output at buf+*len, never overflowing; keeps *len at the end of what fit. */
static void app(char *buf, size_t n, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void app(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, n - *len, fmt, ap);
    va_end(ap);
    if (k > 0) *len = (*len + (size_t)k < n) ? *len + (size_t)k : n - 1;
}

const char *tq_qparams_describe(const tq_qparams *p, char *buf, size_t n)
{
    size_t len = 0;
    if (!n) return buf;
    buf[0] = 0;
    app(buf, n, &len, "%s", tq_vocab_name(TQ_VOCAB_METHOD, p->method));
    switch (p->method) {
    case TQ_M_FP16:
    case TQ_M_INT8: break;
    case TQ_M_KIVI:
        app(buf, n, &len, ",bits=%d,group=%d", p->bits, p->group);
        if (p->residual) app(buf, n, &len, ",residual=%d", p->residual);
        break;
    case TQ_M_POLAR:
        app(buf, n, &len, ",bits=");
        for (int l = 0; l < p->polar_levels && l < TQ_POLAR_MAX_LEVELS; l++)
            app(buf, n, &len, "%s%d", l ? "/" : "", p->polar_bits[l]);
        app(buf, n, &len, ",rot=%s,seed=%llu", rot_name(p->rotation), (unsigned long long)p->seed);
        break;
    default:
        app(buf, n, &len, ",bits=%d,rot=%s", p->bits, rot_name(p->rotation));
        if (p->method != TQ_M_QJL) app(buf, n, &len, ",cb=%s", cb_name(p->codebook));
        if (p->method == TQ_M_QJL && p->qjl_m) app(buf, n, &len, ",m=%d", p->qjl_m);
        if (p->outliers) app(buf, n, &len, ",outliers=%d", p->outliers);
        if (p->center) app(buf, n, &len, ",center");
        app(buf, n, &len, ",seed=%llu", (unsigned long long)p->seed);
        break;
    }
    if (p->norm_fp32) app(buf, n, &len, ",norms=fp32");
    return buf;
}
