/* evaluate.c: the evaluation engine of evaluate.h — the configuration product, the per-slice round trip and metrics,
 * the per-layer / per-input aggregation in head order, and the sensitivity scan. Moved here from cmd/sweep.c and
 * cmd/sensitivity.c so that commands, studies and tests link it; it records errors and never prints. */
#include "evaluate.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if TQ_HAVE_OPENMP
#include <omp.h>
#endif

#include "dump.h"
#include "tq.h"
#include "vocab.h"

/* Parallelism is over heads (the callers' threads); OpenBLAS stays on one thread even with one caller thread: its
 * idle pool spins in sched_yield between the many small products (on the bundled dump: 4.9 s of system time, 7.8 s
 * instead of 6.2). Set on entry to an evaluation and restored on its way out, whatever the outcome. */
static int blas_hold(void)
{
    int n = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return n;
}

static void blas_release(int n) { openblas_set_num_threads(n); }

/* ---------- configurations ---------- */

typedef struct {
    tq_eval_configs *out;
    int cap, cap_notes, n_skipped;
    char last[320];
} cfg_builder;

static int note(cfg_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int note(cfg_builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->last, sizeof b->last, fmt, ap);
    va_end(ap);
    b->n_skipped++;
    tq_eval_configs *o = b->out;
    if (o->n_notes == b->cap_notes) {
        int cap = b->cap_notes ? 2 * b->cap_notes : 8;
        char **t = realloc(o->notes, (size_t)cap * sizeof *t);
        if (!t) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
        o->notes = t;
        b->cap_notes = cap;
    }
    if (!(o->notes[o->n_notes] = strdup(b->last))) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    o->n_notes++;
    return TQ_OK;
}

/* values: the keys' configuration (SAME), the fixed one, or none */
static int add_config(cfg_builder *b, const tq_qparams *k, const tq_eval_axes *ax, int d, tq_device dev)
{
    char kd[192], vd[192];
    tq_qparams_describe(k, kd, sizeof kd);
    const tq_format *f = tq_format_of(k->method);
    tq_error_clear();
    if (f->check(k, d) < 0) return note(b, "skipping %s for head dim %d: %s", kd, d, tq_error_msg());
    if (tq_backend_of(dev)->supports(k, d) < 0) /* like a configuration the method does not take */
        return note(b, "skipping %s: %s", kd, tq_error_msg());
    tq_qparams vv = ax->values == TQ_EVAL_VALUES_SAME ? *k : ax->values_params;
    if (ax->values == TQ_EVAL_VALUES_NONE) {
        vv.method = -1;
        strcpy(vd, "none");
    } else tq_qparams_describe(&vv, vd, sizeof vd);
    tq_eval_configs *o = b->out;
    for (int i = 0; i < o->n; i++) /* axes a method ignores (codebook for qjl, ...) collapse to one configuration */
        if (!strcmp(o->cfg[i].kdesc, kd) && !strcmp(o->cfg[i].vdesc, vd)) return TQ_OK;
    if (o->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        tq_eval_config *t = realloc(o->cfg, (size_t)cap * sizeof *t);
        if (!t) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
        o->cfg = t;
        b->cap = cap;
    }
    tq_eval_config *c = &o->cfg[o->n++];
    c->k = *k;
    c->v = vv;
    strcpy(c->kdesc, kd);
    strcpy(c->vdesc, vd);
    return TQ_OK;
}

/* the rotation axes of a rotation method: every (rotation, codebook, center, outliers) */
static int add_rotated(cfg_builder *b, const tq_qparams *p, const tq_eval_axes *ax, int d, tq_device dev)
{
    static const int zero = 0, dense = TQ_ROT_DENSE, beta = TQ_CB_BETA;
    const int *rot = ax->n_rotations ? ax->rotations : &dense, *cb = ax->n_codebooks ? ax->codebooks : &beta;
    const int *cen = ax->n_centers ? ax->centers : &zero, *out = ax->n_outliers ? ax->outliers : &zero;
    int nr = ax->n_rotations ? ax->n_rotations : 1, nc = ax->n_codebooks ? ax->n_codebooks : 1;
    int ne = ax->n_centers ? ax->n_centers : 1, no = ax->n_outliers ? ax->n_outliers : 1;
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            for (int e = 0; e < ne; e++)
                for (int u = 0; u < no; u++) {
                    tq_qparams q = *p;
                    q.rotation = rot[r];
                    q.codebook = cb[c];
                    q.center = cen[e];
                    q.outliers = out[u];
                    int rc = add_config(b, &q, ax, d, dev);
                    if (rc < 0) return rc;
                }
    return TQ_OK;
}

int tq_eval_configs_build(tq_eval_configs *out, const tq_eval_axes *ax, int d, tq_device dev)
{
    memset(out, 0, sizeof *out);
    if (!tq_backend_of(dev)) return tq_error_set(TQ_ERR_USAGE, "unknown device %d", (int)dev);
    cfg_builder b = {.out = out};
    int rc = TQ_OK;
    for (int mi = 0; mi < ax->n_methods && rc == TQ_OK; mi++) {
        const tq_format *f = tq_format_of(ax->methods[mi]);
        if (!f) return tq_error_set(TQ_ERR_USAGE, "unknown method id %d", ax->methods[mi]);
        int fixed = f->min_bits == f->max_bits;
        for (int bi = 0; bi < (fixed ? 1 : ax->n_bits) && rc == TQ_OK; bi++) {
            int bits = fixed ? f->min_bits : ax->bits[bi];
            if (!fixed && (bits < f->min_bits || bits > f->max_bits)) {
                rc = note(&b, "skipping %s at %d bits: it takes %d..%d", f->name, bits, f->min_bits, f->max_bits);
                continue;
            }
            tq_qparams p;
            tq_qparams_default(&p, f->method, bits);
            p.seed = ax->seed;
            rc = f->uses_rotation ? add_rotated(&b, &p, ax, d, dev) : add_config(&b, &p, ax, d, dev);
        }
    }
    if (rc < 0) return rc;
    if (!out->n) {
        if (b.n_skipped > 1)
            return tq_error_set(TQ_ERR_USAGE, "no configuration left to run: all %d were skipped; the last: %s",
                                b.n_skipped, b.last);
        return tq_error_set(TQ_ERR_USAGE, "no configuration left to run: %s",
                            b.last[0] ? b.last : "nothing was asked for");
    }
    return TQ_OK;
}

void tq_eval_configs_free(tq_eval_configs *c)
{
    for (int i = 0; i < c->n_notes; i++) free(c->notes[i]);
    free(c->notes);
    free(c->cfg);
    memset(c, 0, sizeof *c);
}

/* ---------- one slice ---------- */

/* scheduled bits for this slice (polar through its level mapping, as tq quantize does) */
static void sched_bits(const tq_schedule *s, int layer, int h, int tensor, tq_qparams *p)
{
    int b = s ? tq_schedule_bits(s, layer, h, tensor) : -1;
    if (b <= 0) return;
    p->bits = b;
    if (p->method == TQ_M_POLAR) {
        tq_qparams d;
        tq_qparams_default(&d, TQ_M_POLAR, b);
        p->polar_levels = d.polar_levels;
        memcpy(p->polar_bits, d.polar_bits, sizeof p->polar_bits);
    }
}

int tq_eval_slice(tq_device dev, const tq_eval_config *c, const tq_schedule *sched, tq_slice_id id, const float *q,
                  int G, const float *k, const float *v, int T, int d, uint64_t seed, int attention,
                  const tq_attn_spec *spec, tq_metrics *mk, tq_metrics *mv, double *kbits, double *vbits, double *kbc,
                  double *vbc)
{
    if (c->v.method < 0) v = NULL;
    tq_qparams kp = c->k, vp = c->v;
    sched_bits(sched, id.layer, id.head, TQ_TENSOR_KEYS, &kp);
    if (v) sched_bits(sched, id.layer, id.head, TQ_TENSOR_VALUES, &vp);
    *kbc = tq_format_of(kp.method)->bits_code(&kp, d);
    *vbc = v ? tq_format_of(vp.method)->bits_code(&vp, d) : NAN;
    float *kh = tq_malloc((size_t)T * d * sizeof(float)), *vh = v ? tq_malloc((size_t)T * d * sizeof(float)) : NULL;
    int rc = !kh || (v && !vh) ? TQ_ERR_NOMEM : TQ_OK;
    if (rc == TQ_OK)
        rc = tq_roundtrip(dev, &kp, (tq_slice_id){id.layer, id.head, TQ_TENSOR_KEYS}, k, T, d, kh, kbits);
    if (rc == TQ_OK && v)
        rc = tq_roundtrip(dev, &vp, (tq_slice_id){id.layer, id.head, TQ_TENSOR_VALUES}, v, T, d, vh, vbits);
    if (rc == TQ_OK) {
        tq_metrics_opts mo = {.seed = seed, .layer = id.layer, .head = id.head, .attention = attention};
        if (spec) mo.attn = *spec;
        rc = tq_metrics_head(&mo, q, G, k, kh, v, vh, T, d, mk, v ? mv : NULL);
    }
    free(kh);
    free(vh);
    return rc;
}

/* ---------- evaluation ---------- */

typedef struct {
    tq_metrics mk, mv;
    double kbits, vbits;
    double kbc, vbc;        /* nominal code bits of the slice's parameters (scheduled bits vary per slice) */
    int rc;
    char err[300];
} head_result;

static tq_eval_row *push_row(tq_eval_rows *out)
{
    if (out->n == out->cap) {
        long cap = out->cap ? 2 * out->cap : 256;
        tq_eval_row *t = realloc(out->rows, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        out->rows = t;
        out->cap = cap;
    }
    return &out->rows[out->n++];
}

/* bits ride along with the metrics in the accumulators: the weighted mean of bits_code and bits_total */
typedef struct { tq_metrics_acc a; double bc, bt, w; int window, n; } eval_acc;

/* window: the sliding window of the slice's layer; an aggregate over layers of different windows reports -1 */
static void acc_add(eval_acc *a, const tq_metrics *m, double bc, double bt, int window)
{
    a->window = a->n++ && a->window != window ? -1 : window;
    tq_metrics_acc_add(&a->a, m);
    a->bc += bc * (double)m->n_vectors;
    a->bt += bt * (double)m->n_vectors;
    a->w += (double)m->n_vectors;
}

static int acc_row(tq_eval_rows *out, const eval_acc *a, int input, int layer, int tensor, int cfg)
{
    if (a->w <= 0) return TQ_OK;
    tq_eval_row *r = push_row(out);
    if (!r) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    *r = (tq_eval_row){.input = input, .layer = layer, .head = -1, .tensor = tensor, .cfg = cfg,
                       .bits_code = a->bc / a->w, .bits_total = a->bt / a->w, .window = a->window};
    tq_metrics_acc_mean(&a->a, &r->m);
    return TQ_OK;
}

static int slice_row(tq_eval_rows *out, int input, int layer, int head, int tensor, int cfg, double bc, double bt,
                     const tq_metrics *m, int window)
{
    tq_eval_row *w = push_row(out);
    if (!w) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    *w = (tq_eval_row){.input = input, .layer = layer, .head = head, .tensor = tensor, .cfg = cfg, .bits_code = bc,
                       .bits_total = bt, .m = *m, .window = window};
    return TQ_OK;
}

/* 0/1 mask of n entries from a list (NULL: all), TQ_ERR_USAGE naming the input for an index out of range */
static unsigned char *select_mask(const int *list, int k, int n, const char *opt, const char *label, int *rc)
{
    unsigned char *m = tq_calloc(n > 0 ? (size_t)n : 1, 1);
    if (!m) {
        *rc = TQ_ERR_NOMEM;
        return NULL;
    }
    if (!list) memset(m, 1, (size_t)n);
    for (int i = 0; list && i < k; i++) {
        if (list[i] < 0 || list[i] >= n) {
            *rc = tq_error_set(TQ_ERR_USAGE, "option '%s': %d is out of range for '%s', which has %d (0..%d)", opt,
                               list[i], label, n, n - 1);
            free(m);
            return NULL;
        }
        m[list[i]] = 1;
    }
    *rc = TQ_OK;
    return m;
}

int tq_eval_input_shape(const tq_eval_opts *o, int input, int *n_layers, int *n_kv_heads, int *head_dim)
{
    const tq_eval_input *in = &o->inputs[input];
    if (!in->path) {
        *n_layers = o->sp.n_layers;
        *n_kv_heads = o->sp.n_kv_heads;
        *head_dim = o->sp.head_dim;
        return TQ_OK;
    }
    tq_dump *d;
    int rc = tq_dump_open(&d, in->path);
    if (rc < 0) return rc;
    const tq_dump_meta *m = tq_dump_get_meta(d);
    *n_layers = m->n_layers;
    *n_kv_heads = m->shape.n_kv_heads;
    *head_dim = m->shape.head_dim;
    tq_dump_close(d);
    return TQ_OK;
}

static int read_layer(const tq_eval_opts *o, int in, tq_dump *dump, const tq_synth_params *sp, int layer, tq_layer *L)
{
    if (!dump) return tq_synth_layer(sp, layer, L);
    const tq_layer_shape *s = tq_dump_layer_shape(dump, layer);
    if (o->tokens > s->n_tokens)
        return tq_error_set(TQ_ERR_USAGE, "option '--tokens': %d is more than the %d tokens of '%s' layer %d",
                            o->tokens, s->n_tokens, o->inputs[in].label, layer);
    return tq_dump_read_layer(dump, layer, o->tokens, 0, L);
}

/* The layer's shapes without its tensors (results precomputed): the checks read_layer makes, no data read */
static int layer_shape(const tq_eval_opts *o, int in, tq_dump *dump, const tq_synth_params *sp, int layer, tq_layer *L)
{
    memset(L, 0, sizeof *L);
    if (!dump) {
        L->s = (tq_layer_shape){.n_kv_heads = sp->n_kv_heads, .n_q_heads = sp->n_q_heads, .n_tokens = sp->n_tokens,
                                .head_dim = sp->head_dim, .has_values = 1, .has_queries = 1, .dtype = sp->dtype};
        return TQ_OK;
    }
    const tq_layer_shape *s = tq_dump_layer_shape(dump, layer);
    if (o->tokens > s->n_tokens)
        return tq_error_set(TQ_ERR_USAGE, "option '--tokens': %d is more than the %d tokens of '%s' layer %d",
                            o->tokens, s->n_tokens, o->inputs[in].label, layer);
    L->s = *s;
    if (o->tokens > 0) L->s.n_tokens = o->tokens;
    return TQ_OK;
}

/* One (layer, configuration): heads in parallel, then rows and sums serially in head order. */
static int eval_layer_cfg(const tq_eval_opts *o, int in, int layer, const tq_layer *L, const tq_attn_spec *spec,
                          const int *hs, int nh, int ci, head_result *res, eval_acc *tot, tq_eval_rows *out)
{
    const tq_eval_config *c = &o->cfg[ci];
    int T = L->s.n_tokens, d = L->s.head_dim, G = L->s.has_queries ? L->s.n_q_heads / L->s.n_kv_heads : 0;
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(o->threads > 0 ? o->threads : 1)
#endif
    for (int i = 0; i < nh; i++) {
        int h = hs[i];
        size_t off = (size_t)h * T * d;
        head_result *r = &res[i];
        tq_error_clear();
        if (o->precomputed) {
            tq_eval_result e;
            r->rc = o->precomputed(o->precomputed_ctx, in, layer, h, ci, &e);
            r->mk = e.mk, r->mv = e.mv, r->kbits = e.kbits, r->vbits = e.vbits, r->kbc = e.kbc, r->vbc = e.vbc;
            if (r->rc < 0) snprintf(r->err, sizeof r->err, "%s", tq_error_msg());
            continue;
        }
        r->rc = tq_eval_slice(o->device, c, o->sched, (tq_slice_id){layer, h, 0},
                              L->queries ? L->queries + (size_t)h * G * T * d : NULL, G, L->keys + off,
                              L->values ? L->values + off : NULL, T, d, o->seed, o->attention, spec, &r->mk,
                              &r->mv, &r->kbits, &r->vbits, &r->kbc, &r->vbc);
        if (r->rc < 0) snprintf(r->err, sizeof r->err, "%s", tq_error_msg());
    }
    eval_acc la[2] = {0};
    int vals = L->s.has_values && c->v.method >= 0, rc = TQ_OK;
    for (int i = 0; i < nh && rc == TQ_OK; i++) { /* serial, in head order: aggregates do not depend on threads */
        head_result *r = &res[i];
        if (r->rc < 0)
            return tq_error_set(TQ_ERR, "cannot evaluate '%s' layer %d head %d with %s: %s", o->inputs[in].label,
                                layer, hs[i], c->kdesc, r->err);
        int W = spec->window;
        if (o->per_head_rows)
            rc = slice_row(out, in, layer, hs[i], TQ_TENSOR_KEYS, ci, r->kbc, r->kbits, &r->mk, W);
        acc_add(&la[0], &r->mk, r->kbc, r->kbits, W);
        acc_add(&tot[2 * ci], &r->mk, r->kbc, r->kbits, W);
        if (!vals) continue;
        if (o->per_head_rows && rc == TQ_OK)
            rc = slice_row(out, in, layer, hs[i], TQ_TENSOR_VALUES, ci, r->vbc, r->vbits, &r->mv, W);
        acc_add(&la[1], &r->mv, r->vbc, r->vbits, W);
        acc_add(&tot[2 * ci + 1], &r->mv, r->vbc, r->vbits, W);
    }
    if (rc == TQ_OK && o->per_head_rows) rc = acc_row(out, &la[0], in, layer, TQ_TENSOR_KEYS, ci);
    if (rc == TQ_OK && o->per_head_rows) rc = acc_row(out, &la[1], in, layer, TQ_TENSOR_VALUES, ci);
    return rc;
}

/* One input: its selected layers, each read once and evaluated under every configuration. */
static int eval_input(const tq_eval_opts *o, int in, tq_eval_rows *out)
{
    const tq_eval_input *inp = &o->inputs[in];
    tq_dump *dump = NULL;
    tq_synth_params sp = o->sp;
    int n_layers, rc = TQ_OK;
    if (inp->path) {
        if ((rc = tq_dump_open(&dump, inp->path)) < 0) return rc;
        n_layers = tq_dump_get_meta(dump)->n_layers;
    } else {
        sp.dist = inp->synth;
        if (o->tokens) sp.n_tokens = o->tokens;
        if ((rc = tq_synth_check(&sp)) < 0) return rc;
        n_layers = sp.n_layers;
    }
    unsigned char *lmask = select_mask(dump ? o->layers : NULL, o->n_layers, n_layers, "--layers", inp->label, &rc);
    eval_acc *tot = tq_calloc((size_t)o->n_cfg * 2, sizeof *tot);
    if (!tot && rc == TQ_OK) rc = TQ_ERR_NOMEM;
    long nsel = 0, done = 0;
    for (int l = 0; lmask && l < n_layers; l++) nsel += lmask[l];
    if (o->progress && rc == TQ_OK) o->progress(o->progress_ctx, inp->label, 0, nsel * o->n_cfg);
    for (int layer = 0; layer < n_layers && rc == TQ_OK; layer++) {
        if (!lmask[layer]) continue;
        tq_layer L;
        tq_attn_spec spec = {0}; /* synthetic inputs: causal global attention, scale 1/sqrt(d) */
        if (dump && (rc = tq_dump_layer_attn(dump, layer, &spec)) < 0) break;
        rc = o->precomputed ? layer_shape(o, in, dump, &sp, layer, &L) : read_layer(o, in, dump, &sp, layer, &L);
        if (rc < 0) break;
        int nkv = L.s.n_kv_heads, nh = 0;
        unsigned char *hmask = select_mask(dump ? o->heads : NULL, o->n_heads, nkv, "--heads", inp->label, &rc);
        int *hs = tq_malloc((size_t)nkv * sizeof(int));
        head_result *res = tq_calloc((size_t)nkv, sizeof *res);
        if (rc == TQ_OK && (!hs || !res)) rc = TQ_ERR_NOMEM;
        for (int h = 0; rc == TQ_OK && h < nkv; h++)
            if (hmask[h]) hs[nh++] = h;
        for (int ci = 0; ci < o->n_cfg && rc == TQ_OK; ci++) {
            rc = eval_layer_cfg(o, in, layer, &L, &spec, hs, nh, ci, res, tot, out);
            if (o->progress && rc == TQ_OK) o->progress(o->progress_ctx, inp->label, ++done, nsel * o->n_cfg);
        }
        free(hmask);
        free(hs);
        free(res);
        tq_layer_free(&L);
    }
    for (int ci = 0; ci < o->n_cfg && rc == TQ_OK; ci++) {
        rc = acc_row(out, &tot[2 * ci], in, -1, TQ_TENSOR_KEYS, ci);
        if (rc == TQ_OK) rc = acc_row(out, &tot[2 * ci + 1], in, -1, TQ_TENSOR_VALUES, ci);
    }
    free(lmask);
    free(tot);
    if (dump) tq_dump_close(dump);
    return rc;
}

int tq_evaluate(const tq_eval_opts *o, tq_eval_rows *out)
{
    if (o->n_inputs < 1 || o->n_cfg < 1)
        return tq_error_set(TQ_ERR_USAGE, "nothing to evaluate: no input or no configuration");
    int rc = tq_device_available(o->device);
    if (rc < 0) return rc;
    int blas = blas_hold();
    for (int in = 0; in < o->n_inputs && rc == TQ_OK; in++) rc = eval_input(o, in, out);
    blas_release(blas);
    return rc;
}

void tq_eval_rows_free(tq_eval_rows *r)
{
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* ---------- work units ---------- */

/* the arithmetic of one slice under c: the round trips (a dense rotation is d^2 per vector, the rest ~16 d) and the
 * metrics (all query-key pairs with attention, one pass without) */
static double unit_cost(const tq_eval_opts *o, const tq_eval_config *c, const tq_layer_shape *s)
{
    double T = s->n_tokens, d = s->head_dim, G = s->has_queries ? s->n_q_heads / s->n_kv_heads : 1;
    const tq_format *f = tq_format_of(c->k.method);
    double q = T * d * (f && f->uses_rotation && c->k.rotation == TQ_ROT_DENSE ? d : 16);
    q *= s->has_values && c->v.method >= 0 ? 2 : 1;
    return q + (o->attention && s->has_queries ? G * T * T * d : T * d);
}

int tq_eval_units(const tq_eval_opts *o, tq_eval_unit **units, long *n)
{
    *units = NULL;
    *n = 0;
    long cap = 0;
    int rc = TQ_OK;
    for (int in = 0; in < o->n_inputs && rc == TQ_OK; in++) {
        const tq_eval_input *inp = &o->inputs[in];
        tq_dump *dump = NULL;
        tq_synth_params sp = o->sp;
        int n_layers;
        if (inp->path) {
            if ((rc = tq_dump_open(&dump, inp->path)) < 0) break;
            n_layers = tq_dump_get_meta(dump)->n_layers;
        } else {
            sp.dist = inp->synth;
            if (o->tokens) sp.n_tokens = o->tokens;
            if ((rc = tq_synth_check(&sp)) < 0) break;
            n_layers = sp.n_layers;
        }
        unsigned char *lm = select_mask(dump ? o->layers : NULL, o->n_layers, n_layers, "--layers", inp->label, &rc);
        for (int l = 0; lm && l < n_layers && rc == TQ_OK; l++) {
            if (!lm[l]) continue;
            tq_layer L;
            if ((rc = layer_shape(o, in, dump, &sp, l, &L)) < 0) break;
            unsigned char *hm = select_mask(dump ? o->heads : NULL, o->n_heads, L.s.n_kv_heads, "--heads",
                                            inp->label, &rc);
            for (int h = 0; hm && h < L.s.n_kv_heads; h++)
                for (int ci = 0; hm[h] && ci < o->n_cfg; ci++) {
                    if (*n == cap) {
                        cap = cap ? 2 * cap : 1024;
                        tq_eval_unit *t = realloc(*units, (size_t)cap * sizeof *t);
                        if (!t) {
                            free(hm);
                            free(lm);
                            if (dump) tq_dump_close(dump);
                            return tq_error_set(TQ_ERR_NOMEM, "out of memory");
                        }
                        *units = t;
                    }
                    (*units)[(*n)++] = (tq_eval_unit){in, l, h, ci, unit_cost(o, &o->cfg[ci], &L.s)};
                }
            free(hm);
        }
        free(lm);
        if (dump) tq_dump_close(dump);
    }
    if (rc < 0) {
        free(*units);
        *units = NULL;
        *n = 0;
    }
    return rc;
}

struct tq_eval_reader {
    int input, layer, head, whole; /* what L holds (whole: every kv head of the layer) */
    const char *path;              /* the open dump's */
    tq_dump *dump;
    tq_layer L;
    tq_attn_spec spec;
};

void tq_eval_reader_free(tq_eval_reader *rd)
{
    if (!rd) return;
    tq_layer_free(&rd->L);
    if (rd->dump) tq_dump_close(rd->dump);
    free(rd);
}

/* Make *rd hold (in, layer, head): one kv head of a dump through a hyperslab, or a whole synthetic layer (sp not
 * NULL), kept until another slice is asked for. */
static int reader_load(tq_eval_reader **rdp, int in, const char *path, const tq_synth_params *sp, int tokens,
                       int layer, int head)
{
    if (!*rdp && !(*rdp = tq_calloc(1, sizeof **rdp))) return TQ_ERR_NOMEM;
    tq_eval_reader *rd = *rdp;
    if (rd->L.keys && rd->input == in && rd->layer == layer && (rd->whole || rd->head == head)) return TQ_OK;
    tq_layer_free(&rd->L);
    int rc;
    rd->input = in, rd->layer = layer, rd->head = head, rd->whole = !path;
    if (!path) {
        memset(&rd->spec, 0, sizeof rd->spec); /* synthetic: causal global attention, scale 1/sqrt(d) */
        return tq_synth_layer(sp, layer, &rd->L);
    }
    if (rd->dump && rd->path != path) {
        tq_dump_close(rd->dump);
        rd->dump = NULL;
    }
    if (!rd->dump && (rc = tq_dump_open(&rd->dump, path)) < 0) return rc;
    rd->path = path;
    if ((rc = tq_dump_layer_attn(rd->dump, layer, &rd->spec)) < 0) return rc;
    return tq_dump_read_heads(rd->dump, layer, head, 1, tokens, 0, &rd->L);
}

int tq_eval_unit_run(const tq_eval_opts *o, tq_eval_reader **rdp, const tq_eval_unit *u, tq_eval_result *r)
{
    memset(r, 0, sizeof *r);
    const tq_eval_input *inp = &o->inputs[u->input];
    tq_synth_params sp = o->sp;
    sp.dist = inp->synth;
    if (o->tokens) sp.n_tokens = o->tokens;
    int rc = reader_load(rdp, u->input, inp->path, &sp, o->tokens, u->layer, u->head);
    if (rc < 0) return rc;
    const tq_eval_reader *rd = *rdp;
    const tq_layer *L = &rd->L;
    int T = L->s.n_tokens, d = L->s.head_dim, G = L->s.has_queries ? L->s.n_q_heads / L->s.n_kv_heads : 0;
    int hh = rd->whole ? u->head : 0;
    size_t off = (size_t)hh * T * d;
    int blas = blas_hold();
    /* inside a one-thread team, as tq_evaluate's heads are: the quantizers' own parallel loops stay serial (a rank
     * is one core; left alone they spin a team per slice and took 5x the time per unit next to a busy rank) */
#if TQ_HAVE_OPENMP
#pragma omp parallel num_threads(1)
#endif
    rc = tq_eval_slice(o->device, &o->cfg[u->cfg], o->sched, (tq_slice_id){u->layer, u->head, 0},
                       L->queries ? L->queries + (size_t)hh * G * T * d : NULL, G, L->keys + off,
                       L->values ? L->values + off : NULL, T, d, o->seed, o->attention, &rd->spec, &r->mk, &r->mv,
                       &r->kbits, &r->vbits, &r->kbc, &r->vbc);
    blas_release(blas);
    return rc;
}

/* ---------- sensitivity ---------- */

const tq_sens_metric tq_sens_metrics[] = {
    {"attn_kl", TQ_MET_ATTN_KL, 0, 1, 1},
    {"out_rel", TQ_MET_OUT_REL, 1, 1, 1},
    {"nmse", TQ_MET_NMSE, 1, 0, 0},
    {"ip_rmse", TQ_MET_IP_RMSE, 0, 1, 0},
    {"entropy_collapse", TQ_MET_ENTROPY_COLLAPSE, 0, 1, 1},
    {"out_proj", TQ_SENS_OUT_PROJ, 1, 1, 0},
};
const int tq_sens_n_metrics = (int)(sizeof tq_sens_metrics / sizeof *tq_sens_metrics);

const tq_sens_metric *tq_sens_metric_find(const char *name)
{
    for (int i = 0; i < tq_sens_n_metrics; i++)
        if (!strcmp(name, tq_sens_metrics[i].name)) return &tq_sens_metrics[i];
    return NULL;
}

typedef struct {
    double m[2];      /* the metric for keys [0] and values [1] of one (head, bits) */
    tq_metrics mk[2]; /* full metrics, aggregated per layer */
    double btot[2];
    double opn[2], opd[2]; /* out_proj's numerator and denominator */
    int rc;
    char err[300];
} sens_task;

/* One kv head at one bit width: keys quantized with exact values, then values quantized with exact keys. */
/* hh: the head's index in L (h itself for a whole layer, 0 for one read alone) */
static void sens_eval(const tq_sens_opts *o, const tq_qparams *p, int layer, int h, int hh, const tq_layer *L,
                      const tq_attn_spec *spec, sens_task *r)
{
    int T = L->s.n_tokens, d = L->s.head_dim, G = L->s.has_queries ? L->s.n_q_heads / L->s.n_kv_heads : 0;
    size_t off = (size_t)hh * T * d;
    const float *k = L->keys + off, *v = L->values ? L->values + off : NULL;
    const float *q = L->queries ? L->queries + (size_t)hh * G * T * d : NULL;
    float *xh = tq_malloc((size_t)T * d * sizeof(float));
    tq_metrics_opts mo = {.seed = o->seed, .layer = layer, .head = h, .attention = o->metric->attention,
                          .attn = *spec};
    int need_v = o->metric->met == TQ_MET_OUT_REL, oproj = o->metric->met == TQ_SENS_OUT_PROJ;
    r->rc = xh ? TQ_OK : TQ_ERR_NOMEM;
    if (oproj && r->rc == TQ_OK && (!o->wo || !o->wo[layer] || !q || !v || o->wo_cols < (h + 1) * G * d))
        r->rc = tq_error_set(TQ_ERR_USAGE, "out_proj needs the layer's output projection (%d columns for kv head %d "
                             "of %d query heads x %d), its queries and values", (h + 1) * G * d, h, G, d);
    tq_error_clear();
    for (int t = 0; t < 2 && r->rc == TQ_OK; t++) {
        r->m[t] = NAN;
        if (!o->tensors[t]) continue;
        tq_metrics mk, mv;
        r->rc = tq_roundtrip(o->device, p, (tq_slice_id){layer, h, t}, t ? v : k, T, d, xh, &r->btot[t]);
        if (r->rc < 0) break;
        if (oproj) { /* the output error through W_o: this kv head's query heads' block of columns */
            const float *wo = o->wo[layer] + (size_t)h * G * d;
            r->rc = t == TQ_TENSOR_KEYS
                        ? tq_attn_out_proj(q, G, k, xh, v, v, T, d, spec, wo, o->wo_rows, o->wo_cols, &r->opn[t],
                                           &r->opd[t])
                        : tq_attn_out_proj(q, G, k, k, v, xh, T, d, spec, wo, o->wo_rows, o->wo_cols, &r->opn[t],
                                           &r->opd[t]);
            r->m[t] = r->opd[t] > 0 ? r->opn[t] / r->opd[t] : NAN;
            memset(&r->mk[t], 0, sizeof r->mk[t]);
            continue;
        }
        if (t == TQ_TENSOR_KEYS)
            r->rc = tq_metrics_head(&mo, q, G, k, xh, need_v ? v : NULL, need_v ? v : NULL, T, d, &mk,
                                    need_v ? &mv : NULL);
        else r->rc = tq_metrics_head(&mo, q, G, k, k, v, xh, T, d, &mk, &mv);
        if (r->rc < 0) break;
        /* out_rel lives in the values row; everything else of keys in the keys row */
        r->mk[t] = t == TQ_TENSOR_KEYS && !need_v ? mk : mv;
        if (t == TQ_TENSOR_KEYS && need_v) r->mk[t].n_vectors = mk.n_vectors;
        r->m[t] = r->mk[t].v[o->metric->met];
    }
    if (r->rc < 0) snprintf(r->err, sizeof r->err, "%s", tq_error_msg());
    free(xh);
}

/* The units of one layer from its tasks, in head order (independent of the thread count). */
static int sens_collect(const tq_sens_opts *o, tq_sens_result *R, int l, int nl, int nkv, const tq_layer *L,
                        const sens_task *res)
{
    int nb = o->n_bits, hu = o->per_head ? nkv : 1, d = L->s.head_dim;
    for (int t = 0, base = 0; t < 2; t++) {
        if (!o->tensors[t]) continue;
        for (int b = 0; b < nb; b++) {
            tq_metrics_acc acc;
            tq_metrics_acc_init(&acc);
            double bt = 0, w = 0, opn = 0, opd = 0;
            for (int h = 0; h < nkv; h++) {
                const sens_task *r = &res[h * nb + b];
                if (r->rc < 0)
                    return tq_error_set(TQ_ERR, "cannot evaluate '%s' layer %d head %d at %d bits: %s", o->dump, l, h,
                                        o->params[b].bits, r->err);
                double coords = (double)L->s.n_tokens * d;
                if (o->per_head) {
                    tq_sens_unit *u = &R->units[base + l * hu + h];
                    u->metric[b] = r->m[t];
                    u->bits_total[b] = r->btot[t];
                    u->coords = coords;
                } else {
                    tq_metrics_acc_add(&acc, &r->mk[t]);
                    opn += r->opn[t];
                    opd += r->opd[t];
                    bt += r->btot[t] * coords;
                    w += coords;
                }
            }
            if (!o->per_head) {
                tq_metrics mean;
                tq_metrics_acc_mean(&acc, &mean);
                tq_sens_unit *u = &R->units[base + l];
                u->metric[b] = o->metric->met == TQ_SENS_OUT_PROJ ? (opd > 0 ? opn / opd : NAN)
                                                                   : mean.v[o->metric->met];
                u->bits_total[b] = bt / w;
                u->coords = w;
            }
        }
        base += nl * hu;
    }
    return TQ_OK;
}

static int sens_units(const tq_sens_opts *o, tq_sens_result *R, int nl, int nkv, int d)
{
    int nb = o->n_bits, hu = o->per_head ? nkv : 1, nt = !!o->tensors[0] + !!o->tensors[1];
    R->n = nt * nl * hu;
    if (R->n <= 0 || nkv <= 0) return tq_error_set(TQ_ERR, "cannot scan '%s': no layers or heads", o->dump);
    R->units = tq_calloc((size_t)R->n, sizeof *R->units);
    R->store = tq_calloc((size_t)R->n * 3 * nb, sizeof *R->store);
    if (!R->units || !R->store) return TQ_ERR_NOMEM;
    const tq_format *f = tq_format_of(o->params[0].method);
    for (int i = 0, t = 0; t < 2; t++) {
        if (!o->tensors[t]) continue;
        for (int l = 0; l < nl; l++)
            for (int h = 0; h < hu; h++, i++) {
                double *s = R->store + (size_t)i * 3 * nb;
                R->units[i] = (tq_sens_unit){t, l, o->per_head ? h : -1, 0, 0, s, s + nb, s + 2 * nb};
                for (int b = 0; b < nb; b++) R->units[i].bits_code[b] = f->bits_code(&o->params[b], d);
            }
    }
    return TQ_OK;
}

int tq_sensitivity(const tq_sens_opts *o, tq_sens_result *R)
{
    memset(R, 0, sizeof *R);
    if (o->n_bits < 1 || !o->metric) return tq_error_set(TQ_ERR_USAGE, "sensitivity: no bit width or no metric");
    int rc = tq_device_available(o->device);
    if (rc < 0) return rc;
    tq_dump *dump;
    if ((rc = tq_dump_open(&dump, o->dump)) < 0) return rc;
    const tq_dump_meta *meta = tq_dump_get_meta(dump);
    int nl = meta->n_layers, nkv = meta->shape.n_kv_heads, d = meta->shape.head_dim, nb = o->n_bits;
    rc = sens_units(o, R, nl, nkv, d);
    sens_task *res = rc == TQ_OK ? tq_calloc((size_t)nkv * nb, sizeof *res) : NULL;
    if (rc == TQ_OK && !res) rc = TQ_ERR_NOMEM;
    int blas = blas_hold();
    if (o->progress && rc == TQ_OK) o->progress(o->progress_ctx, o->dump, 0, nl);
    for (int l = 0; l < nl && rc == TQ_OK; l++) {
        tq_layer L;
        tq_attn_spec spec;
        if ((rc = tq_dump_layer_attn(dump, l, &spec)) < 0) break;
        if (o->precomputed) { /* the shapes only: sens_collect weighs by them */
            memset(&L, 0, sizeof L);
            L.s = *tq_dump_layer_shape(dump, l);
            if (o->tokens > 0) L.s.n_tokens = o->tokens;
        } else if ((rc = tq_dump_read_layer(dump, l, o->tokens, 0, &L)) < 0) break;
        for (int i = 0; i < R->n; i++)
            if (R->units[i].layer == l) R->units[i].window = spec.window;
        int ntask = nkv * nb;
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(o->threads > 0 ? o->threads : 1)
#endif
        for (int j = 0; j < ntask; j++) {
            if (!o->precomputed) {
                sens_eval(o, &o->params[j % nb], l, j / nb, j / nb, &L, &spec, &res[j]);
                continue;
            }
            tq_sens_slice e;
            tq_error_clear();
            res[j].rc = o->precomputed(o->precomputed_ctx, l, j / nb, j % nb, &e);
            memcpy(res[j].m, e.m, sizeof e.m);
            memcpy(res[j].mk, e.mk, sizeof e.mk);
            memcpy(res[j].btot, e.btot, sizeof e.btot);
            memcpy(res[j].opn, e.opn, sizeof e.opn);
            memcpy(res[j].opd, e.opd, sizeof e.opd);
            if (res[j].rc < 0) snprintf(res[j].err, sizeof res[j].err, "%s", tq_error_msg());
        }
        rc = sens_collect(o, R, l, nl, nkv, &L, res);
        tq_layer_free(&L);
        if (o->progress && rc == TQ_OK) o->progress(o->progress_ctx, o->dump, l + 1, nl);
    }
    blas_release(blas);
    free(res);
    tq_dump_close(dump);
    if (rc < 0) tq_sens_free(R);
    return rc;
}

int tq_sens_unit_run(const tq_sens_opts *o, tq_eval_reader **rdp, int layer, int head, int b, tq_sens_slice *r)
{
    memset(r, 0, sizeof *r);
    int rc = reader_load(rdp, 0, o->dump, NULL, o->tokens, layer, head);
    if (rc < 0) return rc;
    sens_task t;
    memset(&t, 0, sizeof t);
    int blas = blas_hold();
#if TQ_HAVE_OPENMP
#pragma omp parallel num_threads(1) /* as in tq_eval_unit_run */
#endif
    sens_eval(o, &o->params[b], layer, head, 0, &(*rdp)->L, &(*rdp)->spec, &t);
    blas_release(blas);
    if (t.rc < 0) return tq_error_set(t.rc, "%s", t.err);
    memcpy(r->m, t.m, sizeof t.m);
    memcpy(r->mk, t.mk, sizeof t.mk);
    memcpy(r->btot, t.btot, sizeof t.btot);
    memcpy(r->opn, t.opn, sizeof t.opn);
    memcpy(r->opd, t.opd, sizeof t.opd);
    return TQ_OK;
}

void tq_sens_free(tq_sens_result *r)
{
    free(r->units);
    free(r->store);
    memset(r, 0, sizeof *r);
}

int tq_sens_weights(const tq_sens_unit *units, int n, int b, double *w)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const tq_sens_unit *u = &units[i];
        double x = u->metric[b];
        if (isfinite(x) && x >= 0) {
            sum += x;
            continue;
        }
        char head[24] = "";
        if (u->head >= 0) snprintf(head, sizeof head, " head %d", u->head);
        if (isnan(x))
            return tq_error_set(TQ_ERR_USAGE, "%s layer %d%s has no value (null); weights must be finite and >= 0",
                                tq_tensor_name(u->tensor), u->layer, head);
        return tq_error_set(TQ_ERR_USAGE, "%s layer %d%s has %g; weights must be finite and >= 0",
                            tq_tensor_name(u->tensor), u->layer, head, x);
    }
    if (n < 1 || !(sum > 0 && isfinite(sum))) /* finite non-negative values summing to 0, or overflowing */
        return tq_error_set(TQ_ERR_USAGE, "the %d weights sum to %g; at least one must be > 0 (and the sum finite)", n,
                            sum);
    double mean = sum / n;
    for (int i = 0; i < n; i++) w[i] = units[i].metric[b] / mean;
    return TQ_OK;
}

void tq_sens_weigh(tq_sens_result *r, int n_bits, const double *w)
{
    for (int i = 0; i < r->n; i++)
        for (int b = 0; b < n_bits; b++) r->units[i].metric[b] *= w[i];
}
