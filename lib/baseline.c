/* baseline.c: the formats TurboQuant is compared with — fp16 (IEEE half), int8 (per-vector absmax with one scale)
 * and KIVI (arXiv 2402.02750: asymmetric min/max per group; keys grouped per channel along tokens, values per token
 * along channels). Each row keeps the bound |x - x̂| <= scale/2 exact by rounding stored side information outward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp16.h"
#include "pack.h"
#include "quant.h"
#include "tq.h"

/* ---------- side-information helpers ---------- */

/* Smallest fp16 >= v (v >= 0, finite): a scale rounded up keeps every |x|/s inside the code range. */
static uint16_t half_up(float v)
{
    uint16_t h = tq_float_to_half(v);
    if (tq_half_to_float(h) < v) h++; /* positive halves are ordered like their bit patterns */
    return h;
}

/* Largest fp16 <= v: a minimum rounded down keeps every x - min >= 0. */
static uint16_t half_down(float v)
{
    uint16_t h = tq_float_to_half(v);
    float f = tq_half_to_float(h);
    if (f > v) {
        if (h == 0x0000u) h = 0x8001u;            /* +0 > v (v negative tiny): smallest negative subnormal */
        else if (h & 0x8000u) h++;                /* negative: more negative is a larger bit pattern */
        else h--;
    }
    return h;
}

static int check_fixed(const char *name, int want, const tq_qparams *p)
{
    if (p->bits != want)
        return tq_error_set(TQ_ERR_USAGE, "%s stores %d bits per value, got --bits %d; drop --bits or use %d", name,
                            want, p->bits, want);
    return TQ_OK;
}

/* ---------- fp16 ---------- */

static int fp16_check(const tq_qparams *p, int d) { return check_fixed("fp16", 16, p); }

static int fp16_encode(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    c->p = *p;
    c->id = id;
    c->n = n;
    c->d = d;
    uint16_t *h = tq_codes_add(c, "codes", TQ_SEC_F16, (size_t)n * (size_t)d);
    if (!h) return TQ_ERR_NOMEM;
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++) h[i] = tq_float_to_half(x[i]);
    return TQ_OK;
}

static int fp16_decode(const tq_codes *c, float *xhat)
{
    const tq_section *s = tq_codes_find(c, "codes");
    size_t nd = (size_t)c->n * (size_t)c->d;
    if (!s || s->type != TQ_SEC_F16 || s->count != nd)
        return tq_error_set(TQ_ERR, "fp16 codes: section 'codes' missing or not %zu float16 values", nd);
    const uint16_t *h = s->data;
    for (size_t i = 0; i < nd; i++) xhat[i] = tq_half_to_float(h[i]);
    return TQ_OK;
}

static double fp16_bits_code(const tq_qparams *p, int d) { return 16.0; }
static double fp16_bits_total(const tq_qparams *p, int n, int d) { return 16.0; }

const tq_format tq_format_fp16 = {
    .name = "fp16", .method = TQ_M_FP16, .min_bits = 16, .max_bits = 16, .uses_rotation = 0,
    .check = fp16_check, .encode_ref = fp16_encode, .encode = fp16_encode,
    .decode_ref = fp16_decode, .decode = fp16_decode,
    .bits_code = fp16_bits_code, .bits_total = fp16_bits_total,
    .summary = "IEEE half precision (the uncompressed reference)",
};

/* ---------- int8 ---------- */

static int int8_check(const tq_qparams *p, int d) { return check_fixed("int8", 8, p); }

/* Scale s = absmax/127, stored as fp16 rounded up (fp32 with norm_fp32) so |x|/s <= 127 and code = round(x/s)
 * never clips: |x - code*s| <= s/2 for every coordinate. A zero vector has s = 0 and codes 0. */
static int int8_encode(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    c->p = *p;
    c->id = id;
    c->n = n;
    c->d = d;
    int8_t *q = tq_codes_add(c, "codes", TQ_SEC_U8, (size_t)n * (size_t)d);
    void *sc = q ? tq_codes_add(c, "scales", p->norm_fp32 ? TQ_SEC_F32 : TQ_SEC_F16, (size_t)n) : NULL;
    if (!sc) return TQ_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        const float *v = x + (size_t)i * d;
        float amax = 0.0f;
        for (int j = 0; j < d; j++) amax = fmaxf(amax, fabsf(v[j]));
        float s;
        if (p->norm_fp32) {
            s = amax / 127.0f;
            if (s * 127.0f < amax) s = nextafterf(s, INFINITY);
            ((float *)sc)[i] = s;
        } else {
            if (amax / 127.0f > 65504.0f)
                return tq_error_set(TQ_ERR, "int8: vector %d has |x| up to %g, beyond what an fp16 scale holds; "
                                    "use --norms fp32", i, amax);
            uint16_t h = half_up(amax / 127.0f);
            /* amax/127 may have rounded down in float: step up until the stored scale covers amax. */
            while (tq_half_to_float(h) * 127.0f < amax) h++;
            ((uint16_t *)sc)[i] = h;
            s = tq_half_to_float(h);
        }
        int8_t *qi = q + (size_t)i * d;
        if (s == 0.0f) continue; /* zero vector: codes stay 0 */
        for (int j = 0; j < d; j++) {
            float r = rintf(v[j] / s);
            qi[j] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
        }
    }
    return TQ_OK;
}

static int int8_decode(const tq_codes *c, float *xhat)
{
    const tq_section *q = tq_codes_find(c, "codes"), *sc = tq_codes_find(c, "scales");
    size_t nd = (size_t)c->n * (size_t)c->d;
    int st = c->p.norm_fp32 ? TQ_SEC_F32 : TQ_SEC_F16;
    if (!q || q->type != TQ_SEC_U8 || q->count != nd || !sc || sc->type != st || sc->count != (size_t)c->n)
        return tq_error_set(TQ_ERR, "int8 codes: sections 'codes' [%zu] / 'scales' [%d] missing or malformed", nd,
                            c->n);
    const int8_t *qq = q->data;
    for (int i = 0; i < c->n; i++) {
        float s = st == TQ_SEC_F32 ? ((const float *)sc->data)[i] : tq_half_to_float(((const uint16_t *)sc->data)[i]);
        for (int j = 0; j < c->d; j++) xhat[(size_t)i * c->d + j] = (float)qq[(size_t)i * c->d + j] * s;
    }
    return TQ_OK;
}

static double int8_bits_code(const tq_qparams *p, int d) { return 8.0; }
static double int8_bits_total(const tq_qparams *p, int n, int d) { return 8.0 + (p->norm_fp32 ? 32.0 : 16.0) / d; }

const tq_format tq_format_int8 = {
    .name = "int8", .method = TQ_M_INT8, .min_bits = 8, .max_bits = 8, .uses_rotation = 0,
    .check = int8_check, .encode_ref = int8_encode, .encode = int8_encode,
    .decode_ref = int8_decode, .decode = int8_decode,
    .bits_code = int8_bits_code, .bits_total = int8_bits_total,
    .summary = "int8 per vector: absmax scale (fp16), code = round(x/s)",
};

/* ---------- KIVI ---------- */

static int kivi_check(const tq_qparams *p, int d)
{
    if (p->bits < 1 || p->bits > 8)
        return tq_error_set(TQ_ERR_USAGE, "kivi needs --bits in 1..8, got %d (KIVI's settings are 2 and 4)", p->bits);
    if (p->group < 1)
        return tq_error_set(TQ_ERR_USAGE, "kivi needs --group >= 1, got %d (KIVI uses 32)", p->group);
    if (p->residual < 0)
        return tq_error_set(TQ_ERR_USAGE, "kivi needs --residual >= 0, got %d (KIVI uses 128)", p->residual);
    return TQ_OK;
}

/* Geometry of the groups. Keys (per channel, along tokens): group g of channel j covers tokens [g*G, g*G+G) of
 * column j; side info is indexed [g][j], ceil(n/G) x d. Values (per token, along channels): group g of token t
 * covers channels [g*G, g*G+G) of row t; side info [t][g], n x ceil(d/G). The last group may be shorter. */
typedef struct { int keys, G, ngroups; size_t nside; } kivi_geom;

static kivi_geom kivi_geometry(const tq_qparams *p, int tensor, int n, int d)
{
    kivi_geom g;
    g.keys = tensor == TQ_TENSOR_KEYS;
    g.G = p->group;
    if (g.keys) {
        g.ngroups = (n + g.G - 1) / g.G;
        g.nside = (size_t)g.ngroups * (size_t)d;
    } else {
        g.ngroups = (d + g.G - 1) / g.G;
        g.nside = (size_t)n * (size_t)g.ngroups;
    }
    return g;
}

/* Element k of group (side index s): keys: s = g*d + j -> x[(g*G + k)*d + j]; values: s = t*ng + g -> x[t*d + g*G+k]. */
static size_t kivi_elem(const kivi_geom *g, size_t s, int k, int d)
{
    if (g->keys) {
        size_t grp = s / (size_t)d, j = s % (size_t)d;
        return (grp * (size_t)g->G + (size_t)k) * (size_t)d + j;
    }
    size_t t = s / (size_t)g->ngroups, grp = s % (size_t)g->ngroups;
    return t * (size_t)d + grp * (size_t)g->G + (size_t)k;
}

static int kivi_group_len(const kivi_geom *g, size_t s, int n, int d)
{
    size_t grp = g->keys ? s / (size_t)d : s % (size_t)g->ngroups;
    int total = g->keys ? n : d;
    int len = total - (int)grp * g->G;
    return len < g->G ? len : g->G;
}

/* Per group: zero-point m = min (fp16 rounded down), scale s = (max - m)/(2^b - 1) (fp16 rounded up), code =
 * round((x - m)/s) in [0, 2^b - 1], so |x - (m + code*s)| <= s/2 for every element. */
static int kivi_recent(const tq_qparams *p, int n) { return p->residual < n ? p->residual : n; }

static int kivi_encode(const tq_qparams *p, tq_slice_id id, const float *x, int n_all, int d, tq_codes *c)
{
    c->p = *p;
    c->id = id;
    c->n = n_all;
    c->d = d;
    /* KIVI's recent window: the last r tokens stay fp16 (a section of their own); the first n are quantized. */
    const int r = kivi_recent(p, n_all), n = n_all - r;
    if (r) {
        uint16_t *h = tq_codes_add(c, "recent", TQ_SEC_F16, (size_t)r * d);
        if (!h) return TQ_ERR_NOMEM;
        for (size_t i = 0; i < (size_t)r * d; i++) h[i] = tq_float_to_half(x[(size_t)n * d + i]);
    }
    const int b = p->bits, L = (1 << b) - 1, f32 = p->norm_fp32;
    kivi_geom g = kivi_geometry(p, id.tensor, n, d);
    size_t rb = tq_pack_row_bytes(d, b);
    uint8_t *packed = tq_codes_add(c, "codes", TQ_SEC_U8, (size_t)n * rb);
    void *scales = packed ? tq_codes_add(c, "scales", f32 ? TQ_SEC_F32 : TQ_SEC_F16, g.nside) : NULL;
    void *zeros = scales ? tq_codes_add(c, "zeros", f32 ? TQ_SEC_F32 : TQ_SEC_F16, g.nside) : NULL;
    uint8_t *codes = zeros ? tq_malloc((size_t)n * (size_t)d) : NULL;
    if (!codes) return TQ_ERR_NOMEM;
    int rc = TQ_OK;
    for (size_t s = 0; s < g.nside; s++) {
        int len = kivi_group_len(&g, s, n, d);
        float lo = INFINITY, hi = -INFINITY;
        for (int k = 0; k < len; k++) {
            float v = x[kivi_elem(&g, s, k, d)];
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
        float m, sc;
        if (f32) {
            m = lo;
            sc = (hi - m) / (float)L;
            if (m + sc * (float)L < hi) sc = nextafterf(sc, INFINITY);
            ((float *)zeros)[s] = m;
            ((float *)scales)[s] = sc;
        } else {
            if (fabsf(lo) > 65504.0f || (hi - lo) / (float)L > 65504.0f) {
                rc = tq_error_set(TQ_ERR, "kivi: values up to %g exceed what fp16 scales hold; use --norms fp32",
                                  fmaxf(fabsf(lo), fabsf(hi)));
                break;
            }
            uint16_t mh = half_down(lo);
            m = tq_half_to_float(mh);
            uint16_t sh = half_up((hi - m) / (float)L);
            while (tq_half_to_float(sh) * (float)L < hi - m) sh++;
            sc = tq_half_to_float(sh);
            ((uint16_t *)zeros)[s] = mh;
            ((uint16_t *)scales)[s] = sh;
        }
        for (int k = 0; k < len; k++) {
            size_t e = kivi_elem(&g, s, k, d);
            float r = sc > 0.0f ? rintf((x[e] - m) / sc) : 0.0f;
            codes[e] = (uint8_t)(r < 0.0f ? 0 : r > (float)L ? L : r);
        }
    }
    if (rc == TQ_OK)
        for (int i = 0; i < n; i++) tq_pack_row_ref(codes + (size_t)i * d, d, b, packed + (size_t)i * rb);
    free(codes);
    return rc;
}

static int kivi_decode(const tq_codes *c, float *xhat)
{
    const int d = c->d, b = c->p.bits, f32 = c->p.norm_fp32;
    if (b < 1 || b > 8 || c->p.group < 1 || c->p.residual < 0)
        return tq_error_set(TQ_ERR, "kivi codes: bad bits %d / group %d / residual %d", b, c->p.group, c->p.residual);
    const int r = kivi_recent(&c->p, c->n), n = c->n - r;
    if (r) {
        const tq_section *rs = tq_codes_find(c, "recent");
        if (!rs || rs->type != TQ_SEC_F16 || rs->count != (size_t)r * d)
            return tq_error_set(TQ_ERR, "kivi codes: section 'recent' missing or not %zu float16 values", (size_t)r * d);
        for (size_t i = 0; i < (size_t)r * d; i++) xhat[(size_t)n * d + i] = tq_half_to_float(((const uint16_t *)rs->data)[i]);
    }
    kivi_geom g = kivi_geometry(&c->p, c->id.tensor, n, d);
    size_t rb = tq_pack_row_bytes(d, b);
    int st = f32 ? TQ_SEC_F32 : TQ_SEC_F16;
    const tq_section *q = tq_codes_find(c, "codes"), *sc = tq_codes_find(c, "scales"), *z = tq_codes_find(c, "zeros");
    if (!q || q->type != TQ_SEC_U8 || q->count != (size_t)n * rb || !sc || sc->type != st || sc->count != g.nside ||
        !z || z->type != st || z->count != g.nside)
        return tq_error_set(TQ_ERR, "kivi codes: sections 'codes' [%zu], 'scales'/'zeros' [%zu] missing or malformed",
                            (size_t)n * rb, g.nside);
    uint8_t *codes = tq_malloc((size_t)n * (size_t)d);
    if (!codes) return TQ_ERR_NOMEM;
    for (int i = 0; i < n; i++) tq_unpack_row_ref((const uint8_t *)q->data + (size_t)i * rb, d, b, codes + (size_t)i * d);
    for (size_t s = 0; s < g.nside; s++) {
        float m = f32 ? ((const float *)z->data)[s] : tq_half_to_float(((const uint16_t *)z->data)[s]);
        float k_s = f32 ? ((const float *)sc->data)[s] : tq_half_to_float(((const uint16_t *)sc->data)[s]);
        int len = kivi_group_len(&g, s, n, d);
        for (int k = 0; k < len; k++) {
            size_t e = kivi_elem(&g, s, k, d);
            xhat[e] = m + (float)codes[e] * k_s;
        }
    }
    free(codes);
    return TQ_OK;
}

static double kivi_bits_code(const tq_qparams *p, int d) { return p->bits; }

/* Keys' layout: n rows of packed codes plus a (scale, zero) pair per group of `group` tokens per channel (n: the
 * tokens before the fp16 recent window). The
 * values' layout has ceil(d/G) groups per token instead; both agree whenever G divides n and d (the table's
 * function has no tensor argument, so it reports the keys' layout). */
static double kivi_bits_total(const tq_qparams *p, int n_all, int d)
{
    if (n_all <= 0 || d <= 0) return 0.0;
    int r = kivi_recent(p, n_all), n = n_all - r;
    double side = (p->norm_fp32 ? 64.0 : 32.0) * (double)((n + p->group - 1) / p->group) * d;
    return (8.0 * (double)n * (double)tq_pack_row_bytes(d, p->bits) + side + 16.0 * r * d) / ((double)n_all * d);
}

const tq_format tq_format_kivi = {
    .name = "kivi", .method = TQ_M_KIVI, .min_bits = 1, .max_bits = 8, .uses_rotation = 0,
    .check = kivi_check, .encode_ref = kivi_encode, .encode = kivi_encode,
    .decode_ref = kivi_decode, .decode = kivi_decode,
    .bits_code = kivi_bits_code, .bits_total = kivi_bits_total,
    .summary = "KIVI asymmetric min/max per group (keys per channel, values per token), fp16 scale and zero",
};
