/* synth.c: the synthetic distributions of lib/synth.h. Each (layer, kv head) owns one PCG stream derived from the
 * seed; it hands out four sub-seeds (head parameters, keys, values, queries of the query head with the same index),
 * so no number depends on generation order, on other heads, or on how many tokens come after it. */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp16.h"
#include "rng.h"
#include "tq.h"
#include "vocab.h"


enum { SUB_PARAMS, SUB_KEYS, SUB_VALUES, SUB_QUERIES, SUB_COUNT };

void tq_synth_params_default(tq_synth_params *p)
{
    memset(p, 0, sizeof *p);
    p->dist = TQ_SYNTH_GAUSSIAN;
    p->n_layers = p->n_kv_heads = p->n_q_heads = 1;
    p->n_tokens = 256;
    p->head_dim = 128;
    p->dtype = TQ_DTYPE_F32;
    p->dof = TQ_SYNTH_DOF_DEFAULT;
    p->rope_post = 1;
}

int tq_synth_dist_parse(const char *name) { return tq_vocab_find(TQ_VOCAB_SYNTH, name); }

const char *tq_synth_dist_name(int dist) { return tq_vocab_name(TQ_VOCAB_SYNTH, dist); }

int tq_synth_check(const tq_synth_params *p)
{
    if (p->dist < 0 || p->dist >= TQ_SYNTH_COUNT)
        return tq_error_set(TQ_ERR_USAGE, "unknown distribution %d (gaussian, structured, outlier, heavy, rope)",
                            p->dist);
    if (p->n_layers < 1 || p->n_layers > TQ_SYNTH_MAX_LAYERS)
        return tq_error_set(TQ_ERR_USAGE, "layers is %d, must be in 1..%d (/layer_NNN has three digits)",
                            p->n_layers, TQ_SYNTH_MAX_LAYERS);
    if (p->n_kv_heads < 1) return tq_error_set(TQ_ERR_USAGE, "heads is %d, must be at least 1", p->n_kv_heads);
    if (p->n_q_heads < 1 || p->n_q_heads % p->n_kv_heads)
        return tq_error_set(TQ_ERR_USAGE, "q-heads is %d, must be a positive multiple of heads (%d) for GQA",
                            p->n_q_heads, p->n_kv_heads);
    if (p->n_tokens < 1) return tq_error_set(TQ_ERR_USAGE, "tokens is %d, must be at least 1", p->n_tokens);
    if (p->head_dim < 2) return tq_error_set(TQ_ERR_USAGE, "dim is %d, must be at least 2", p->head_dim);
    if (p->dist == TQ_SYNTH_ROPE && p->head_dim % 2)
        return tq_error_set(TQ_ERR_USAGE, "dim is %d, rope needs an even head dim (channels rotate in pairs)",
                            p->head_dim);
    if (p->dtype != TQ_DTYPE_F16 && p->dtype != TQ_DTYPE_F32)
        return tq_error_set(TQ_ERR_USAGE, "dtype %d is neither f16 nor f32", p->dtype);
    if (p->dof < 3 || p->dof > TQ_SYNTH_DOF_MAX)
        return tq_error_set(TQ_ERR_USAGE, "dof is %d, must be in 3..%d (dof > 2 for a finite variance)", p->dof,
                            TQ_SYNTH_DOF_MAX);
    /* in double: three ints multiplied can overflow 64 bits */
    double elems = (2.0 * p->n_kv_heads + p->n_q_heads) * (double)p->n_tokens * (double)p->head_dim;
    if (elems > (double)TQ_SYNTH_MAX_ELEMS)
        return tq_error_set(TQ_ERR_USAGE,
                            "one layer would hold %.4g values (keys + values + queries), more than 2^31; "
                            "use fewer heads, tokens or a smaller dim", elems);
    if (p->hetero && p->n_layer_scales)
        return tq_error_set(TQ_ERR_USAGE, "hetero and layer-scales both set; use one of them");
    if (p->n_layer_scales) {
        if (!p->layer_scales || p->n_layer_scales != p->n_layers)
            return tq_error_set(TQ_ERR_USAGE, "layer-scales has %d values, need one per layer (%d)",
                                p->n_layer_scales, p->n_layers);
        for (int i = 0; i < p->n_layer_scales; i++)
            if (!(p->layer_scales[i] > 0) || !isfinite(p->layer_scales[i]) || p->layer_scales[i] > 1e3)
                return tq_error_set(TQ_ERR_USAGE, "layer-scales value %d is %g, must be in (0, 1000]", i + 1,
                                    p->layer_scales[i]);
    }
    return TQ_OK;
}

double tq_synth_layer_scale(const tq_synth_params *p, int layer)
{
    if (p->n_layer_scales) return p->layer_scales[layer];
    if (!p->hetero) return 1.0;
    /* A bump over depth like the middle-layer sensitivity peak reported for real models: 16x range. */
    double x = sin(3.14159265358979323846 * (layer + 0.5) / p->n_layers);
    return 0.25 * pow(16.0, x);
}

/* Sub-stream k of (layer, head): one 64-bit seed per part drawn from the derived stream, stream id k. */
static void sub_rng(tq_rng *r, uint64_t seed, int layer, int head, int part)
{
    tq_rng base;
    tq_rng_derive(&base, seed, layer, head, TQ_PURPOSE_SYNTH);
    uint64_t s = 0;
    for (int k = 0; k <= part; k++) s = ((uint64_t)tq_rng_u32(&base) << 32) | tq_rng_u32(&base);
    tq_rng_seed(r, s, (uint64_t)part + 1);
}

int tq_synth_outlier_count(int d)
{
    int n = (int)lround(TQ_SYNTH_OUTLIER_PER_128 * (double)d / 128.0);
    return n < 1 ? 1 : n > d ? d : n;
}

void tq_synth_outlier_channels(const tq_synth_params *p, int layer, int head, int *idx, double *scale)
{
    tq_rng r;
    sub_rng(&r, p->seed, layer, head, SUB_PARAMS);
    int d = p->head_dim, n = tq_synth_outlier_count(d);
    for (int i = 0; i < n; i++) {
        int c, dup;
        do { /* rejection needs no d-sized scratch; n <= d/32 + 1 so retries are rare */
            c = (int)tq_rng_bounded(&r, (uint32_t)d);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= idx[j] == c;
        } while (dup);
        idx[i] = c;
        scale[i] = TQ_SYNTH_OUTLIER_LO + (TQ_SYNTH_OUTLIER_HI - TQ_SYNTH_OUTLIER_LO) * tq_rng_double(&r);
    }
    for (int i = 1; i < n; i++) /* insertion sort by channel, scales follow */
        for (int j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
            int ti = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = ti;
            double ts = scale[j]; scale[j] = scale[j - 1]; scale[j - 1] = ts;
        }
}

void tq_synth_rope_apply(float *x, int d, long pos, double base)
{
    int h = d / 2;
    for (int i = 0; i < h; i++) {
        double th = (double)pos * pow(base, -2.0 * i / d);
        double c = cos(th), s = sin(th), a = x[i], b = x[i + h];
        x[i] = (float)(a * c - b * s);
        x[i + h] = (float)(a * s + b * c);
    }
}

/* Standardized Student-t: z / sqrt(chi2_nu / nu) has variance nu/(nu-2); divide by its square root. */
static double student_t(tq_rng *r, int nu)
{
    double z = tq_rng_normal(r), chi2 = 0;
    for (int k = 0; k < nu; k++) {
        double g = tq_rng_normal(r);
        chi2 += g * g;
    }
    return z / sqrt(chi2 / nu) * sqrt((nu - 2.0) / nu);
}

/* rope: per-pair base magnitudes, larger in the low-frequency pairs (large i) as in real post-RoPE keys, scaled so
 * that base + content has E|k|^2 = d. */
static void rope_magnitudes(int d, double *m)
{
    int h = d / 2;
    double sum = 0;
    for (int i = 0; i < h; i++) {
        m[i] = 0.25 + 1.75 * (h > 1 ? (double)i / (h - 1) : 1.0);
        sum += m[i];
    }
    double var = 1.0 - TQ_SYNTH_ROPE_CONTENT * TQ_SYNTH_ROPE_CONTENT;
    for (int i = 0; i < h; i++) m[i] = sqrt(m[i] / (sum / h) * var);
}

/* Per kv head parameters drawn from its SUB_PARAMS stream: structured directions, outlier channel scales, rope
 * base key. Sized for any dist; only the dist's part is filled. */
typedef struct {
    float *dirs;     /* [C][d] unit vectors */
    float *chscale;  /* [d] */
    float *rbase;    /* [d] */
} head_params;

static int head_params_fill(const tq_synth_params *p, int layer, int head, const double *m, head_params *hp)
{
    int d = p->head_dim;
    tq_rng r;
    if (p->dist == TQ_SYNTH_STRUCTURED) {
        sub_rng(&r, p->seed, layer, head, SUB_PARAMS);
        for (int c = 0; c < TQ_SYNTH_CLUSTERS; c++) {
            float *u = hp->dirs + (size_t)c * d;
            double nn = 0;
            for (int j = 0; j < d; j++) {
                u[j] = (float)tq_rng_normal(&r);
                nn += (double)u[j] * u[j];
            }
            double inv = 1.0 / sqrt(nn);
            for (int j = 0; j < d; j++) u[j] = (float)(u[j] * inv);
        }
    } else if (p->dist == TQ_SYNTH_OUTLIER) {
        int n = tq_synth_outlier_count(d), *idx = tq_malloc(sizeof(int) * n);
        double *sc = tq_malloc(sizeof(double) * n);
        if (!idx || !sc) {
            free(idx);
            free(sc);
            return TQ_ERR_NOMEM;
        }
        tq_synth_outlier_channels(p, layer, head, idx, sc);
        for (int j = 0; j < d; j++) hp->chscale[j] = 1.0f;
        for (int i = 0; i < n; i++) hp->chscale[idx[i]] = (float)sc[i];
        free(idx);
        free(sc);
    } else if (p->dist == TQ_SYNTH_ROPE) {
        sub_rng(&r, p->seed, layer, head, SUB_PARAMS);
        for (int j = 0; j < d; j++) hp->rbase[j] = (float)(m[j % (d / 2)] * tq_rng_normal(&r));
    }
    return TQ_OK;
}

/* AR(1) content of the rope model: c_0 ~ N(0, s^2), c_t = rho c_{t-1} + sqrt(1 - rho^2) s e_t (stationary, so
 * every token has the same content variance and neighbours are 0.98-correlated: slowly varying). */
static void rope_content_step(tq_rng *r, double *c, int d, int t)
{
    double s = TQ_SYNTH_ROPE_CONTENT, a = sqrt(1.0 - TQ_SYNTH_ROPE_RHO * TQ_SYNTH_ROPE_RHO);
    for (int j = 0; j < d; j++) {
        double e = tq_rng_normal(r);
        c[j] = t == 0 ? s * e : TQ_SYNTH_ROPE_RHO * c[j] + a * s * e;
    }
}

/* Keys (is_key) or values of one kv head: x[T][d]; c is d doubles of scratch. */
static void gen_kv(const tq_synth_params *p, int layer, int head, int is_key, const head_params *hp, double *c,
                   float *x)
{
    int d = p->head_dim, T = p->n_tokens;
    tq_rng r;
    sub_rng(&r, p->seed, layer, head, is_key ? SUB_KEYS : SUB_VALUES);
    int dist = p->dist;
    if (!is_key && dist != TQ_SYNTH_HEAVY) dist = TQ_SYNTH_GAUSSIAN; /* values: Gaussian except for heavy */
    for (int t = 0; t < T; t++) {
        float *k = x + (size_t)t * d;
        switch (dist) {
        case TQ_SYNTH_GAUSSIAN:
            for (int j = 0; j < d; j++) k[j] = (float)tq_rng_normal(&r);
            break;
        case TQ_SYNTH_HEAVY:
            for (int j = 0; j < d; j++) k[j] = (float)student_t(&r, p->dof);
            break;
        case TQ_SYNTH_OUTLIER:
            for (int j = 0; j < d; j++) k[j] = (float)(hp->chscale[j] * tq_rng_normal(&r));
            break;
        case TQ_SYNTH_STRUCTURED: {
            const float *u = hp->dirs + (size_t)tq_rng_bounded(&r, TQ_SYNTH_CLUSTERS) * d;
            double rho = exp(TQ_SYNTH_NORM_SPREAD * tq_rng_normal(&r)) * sqrt((double)d);
            double sn = TQ_SYNTH_KEY_NOISE / sqrt((double)d);
            for (int j = 0; j < d; j++) k[j] = (float)(rho * (u[j] + sn * tq_rng_normal(&r)));
            break;
        }
        case TQ_SYNTH_ROPE: /* k_t = R_t (base + c_t) */
            rope_content_step(&r, c, d, t);
            for (int j = 0; j < d; j++) k[j] = (float)(hp->rbase[j] + c[j]);
            if (p->rope_post) tq_synth_rope_apply(k, d, t, TQ_SYNTH_ROPE_BASE);
            break;
        }
    }
}

/* Queries of query head hq: x[T][d], times the layer scale; hp is its kv head's parameters, c 2d doubles. */
static void gen_q(const tq_synth_params *p, int layer, int hq, const head_params *hp, const double *m, double scale,
                  double *c, float *x)
{
    int d = p->head_dim, T = p->n_tokens;
    tq_rng r;
    sub_rng(&r, p->seed, layer, hq, SUB_QUERIES);
    if (p->dist == TQ_SYNTH_STRUCTURED) {
        /* near a cluster direction with norm kappa: the score of an aligned key of norm sqrt(d) is kappa */
        double sn = TQ_SYNTH_QUERY_NOISE / sqrt((double)d), g = TQ_SYNTH_KAPPA * scale;
        for (int t = 0; t < T; t++) {
            const float *u = hp->dirs + (size_t)tq_rng_bounded(&r, TQ_SYNTH_CLUSTERS) * d;
            float *q = x + (size_t)t * d;
            for (int j = 0; j < d; j++) q[j] = (float)(g * (u[j] + sn * tq_rng_normal(&r)));
        }
    } else if (p->dist == TQ_SYNTH_ROPE) {
        /* q_t = R_t (lambda (base + n + c'_t)), lambda = 4 * 8/sqrt(d) so scores do not grow with d. Aligned with
         * the key base, so scores peak at t - s = 0 and decay with distance (the recency pattern of real RoPE
         * heads: ~19% of the weight on the current token at d = 64); n and c' are this query head's own. */
        double lam = TQ_SYNTH_ROPE_QSCALE * 8.0 / sqrt((double)d) * scale, *nb = c + d;
        for (int j = 0; j < d; j++) nb[j] = hp->rbase[j] + m[j % (d / 2)] * tq_rng_normal(&r);
        for (int t = 0; t < T; t++) {
            float *q = x + (size_t)t * d;
            rope_content_step(&r, c, d, t);
            for (int j = 0; j < d; j++) q[j] = (float)(lam * (nb[j] + c[j]));
            if (p->rope_post) tq_synth_rope_apply(q, d, t, TQ_SYNTH_ROPE_BASE);
        }
    } else {
        for (int t = 0; t < T; t++) {
            float *q = x + (size_t)t * d;
            for (int j = 0; j < d; j++) q[j] = (float)(scale * tq_rng_normal(&r));
        }
    }
}

int tq_synth_layer(const tq_synth_params *p, int layer, tq_layer *out)
{
    memset(out, 0, sizeof *out);
    int st = tq_synth_check(p);
    if (st) return st;
    if (layer < 0 || layer >= p->n_layers)
        return tq_error_set(TQ_ERR_USAGE, "layer %d out of range 0..%d", layer, p->n_layers - 1);
    int H = p->n_kv_heads, HQ = p->n_q_heads, T = p->n_tokens, d = p->head_dim, g = HQ / H;
    size_t kv = (size_t)H * T * d, qn = (size_t)HQ * T * d;
    size_t per_head = (size_t)TQ_SYNTH_CLUSTERS * d + 2 * (size_t)d;
    out->keys = tq_malloc(sizeof(float) * kv);
    out->values = tq_malloc(sizeof(float) * kv);
    out->queries = tq_malloc(sizeof(float) * qn);
    float *hpbuf = tq_malloc(sizeof(float) * per_head * H);
    head_params *hp = tq_calloc((size_t)H, sizeof *hp);
    double *m = tq_malloc(sizeof(double) * (size_t)(d / 2 + 1));
    double *scratch = tq_malloc(sizeof(double) * 2 * (size_t)d * (size_t)(2 * H + HQ));
    if (!out->keys || !out->values || !out->queries || !hpbuf || !hp || !m || !scratch) {
        st = TQ_ERR_NOMEM;
        goto fail;
    }
    if (p->dist == TQ_SYNTH_ROPE) rope_magnitudes(d, m);
    for (int h = 0; h < H; h++) {
        hp[h].dirs = hpbuf + per_head * h;
        hp[h].chscale = hp[h].dirs + (size_t)TQ_SYNTH_CLUSTERS * d;
        hp[h].rbase = hp[h].chscale + d;
        if ((st = head_params_fill(p, layer, h, m, &hp[h]))) goto fail;
    }
    double scale = tq_synth_layer_scale(p, layer);
    /* Heads are independent streams, so threads cannot change a single number. */
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic)
#endif
    for (int i = 0; i < 2 * H + HQ; i++) {
        double *c = scratch + 2 * (size_t)d * i;
        if (i < H) gen_kv(p, layer, i, 1, &hp[i], c, out->keys + (size_t)i * T * d);
        else if (i < 2 * H) gen_kv(p, layer, i - H, 0, &hp[i - H], c, out->values + (size_t)(i - H) * T * d);
        else {
            int hq = i - 2 * H;
            gen_q(p, layer, hq, &hp[hq / g], m, scale, c, out->queries + (size_t)hq * T * d);
        }
    }
    if (p->dtype == TQ_DTYPE_F16) {
        for (size_t i = 0; i < kv; i++) {
            out->keys[i] = tq_round_half(out->keys[i]);
            out->values[i] = tq_round_half(out->values[i]);
        }
        for (size_t i = 0; i < qn; i++) out->queries[i] = tq_round_half(out->queries[i]);
    }
    out->s.n_kv_heads = H;
    out->s.n_q_heads = HQ;
    out->s.n_tokens = T;
    out->s.head_dim = d;
    out->s.has_values = 1;
    out->s.has_queries = 1;
    out->s.dtype = p->dtype;
    free(hpbuf);
    free(hp);
    free(m);
    free(scratch);
    return TQ_OK;
fail:
    free(hpbuf);
    free(hp);
    free(m);
    free(scratch);
    free(out->keys);
    free(out->values);
    free(out->queries);
    memset(out, 0, sizeof *out);
    return st;
}

const char *tq_synth_describe(const tq_synth_params *p, char *buf, size_t n)
{
    char scales[160] = "";
    if (p->hetero) snprintf(scales, sizeof scales, " --hetero");
    else if (p->n_layer_scales) {
        size_t off = (size_t)snprintf(scales, sizeof scales, " --layer-scales ");
        for (int i = 0; i < p->n_layer_scales && off < sizeof scales; i++)
            off += (size_t)snprintf(scales + off, sizeof scales - off, "%s%g", i ? "," : "", p->layer_scales[i]);
        if (off >= sizeof scales) snprintf(scales, sizeof scales, " --layer-scales <%d values>", p->n_layer_scales);
    }
    char model[200] = "", dof[24] = "";
    if (p->dist == TQ_SYNTH_HEAVY) snprintf(dof, sizeof dof, " --dof %d", p->dof);
    switch (p->dist) {
    case TQ_SYNTH_GAUSSIAN: snprintf(model, sizeof model, "k,v,q iid N(0,1)"); break;
    case TQ_SYNTH_STRUCTURED:
        snprintf(model, sizeof model, "clusters=%d kappa=%g key_noise=%g query_noise=%g norm_spread=%g",
                 TQ_SYNTH_CLUSTERS, TQ_SYNTH_KAPPA, TQ_SYNTH_KEY_NOISE, TQ_SYNTH_QUERY_NOISE, TQ_SYNTH_NORM_SPREAD);
        break;
    case TQ_SYNTH_OUTLIER:
        snprintf(model, sizeof model, "outlier_channels=%d scale=U[%g,%g]", tq_synth_outlier_count(p->head_dim),
                 TQ_SYNTH_OUTLIER_LO, TQ_SYNTH_OUTLIER_HI);
        break;
    case TQ_SYNTH_HEAVY: snprintf(model, sizeof model, "student-t dof=%d standardized", p->dof); break;
    case TQ_SYNTH_ROPE:
        snprintf(model, sizeof model, "rope_base=%g rho=%g content=%g qscale=%g %s-rope", TQ_SYNTH_ROPE_BASE,
                 TQ_SYNTH_ROPE_RHO, TQ_SYNTH_ROPE_CONTENT, TQ_SYNTH_ROPE_QSCALE, p->rope_post ? "post" : "pre");
        break;
    }
    snprintf(buf, n,
             "tq synth --dist %s --layers %d --heads %d --q-heads %d --tokens %d --dim %d --seed %llu --dtype %s%s%s%s "
             "(generator v%d: %s)",
             tq_synth_dist_name(p->dist), p->n_layers, p->n_kv_heads, p->n_q_heads, p->n_tokens, p->head_dim,
             (unsigned long long)p->seed, p->dtype == TQ_DTYPE_F16 ? "f16" : "f32", scales,
             p->dist == TQ_SYNTH_ROPE && !p->rope_post ? " --pre-rope" : "", dof, TQ_SYNTH_VERSION, model);
    return buf;
}
