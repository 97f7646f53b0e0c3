/* kvquant.c: the quantized KV cache behind `tq perplexity` (a lib/model.h write hook that round-trips rows through
 * lib/device.h, with the streaming semantics of kvquant.h) and the teacher-forced perplexity pass. */
#include "kvquant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/tq_cuda.h"

#include "polar.h"
#include "tq.h"
#include "turbo.h"
#include "vocab.h"

/* The quantizer of one slice, built on its first rows and kept for the state's life (a slice's parameters never
 * change within one tq_kvq): rotations are seeded per (layer, head, tensor) (lib/rotation.h), so every slice has its
 * own, as tq sweep's. NULL parts: the method has none worth keeping (int8, KIVI) or the device is not the CPU, and
 * rows go through tq_roundtrip one at a time. */
typedef struct {
    int ready;
    tq_turbo_rows *turbo;
    tq_polar_rows *polar;
} slice_q;

/* tq_kvq_track_layers: the exact rows of the pass beside the cache, and each layer's attention metrics as sums. */
typedef struct {
    int cap;
    float *k, *v;           /* [L][H][cap][d]: every row as the model wrote it, before quantization */
    float *qb;              /* [G][cap][d]: one kv head's query heads, the layout tq_attn_eval reads */
    tq_attn_stats *sum;     /* [L]: attn_kl, entropy, entropy_q, top8 summed over rows, out_rel over out_rows */
} layer_track;

struct tq_kvq {
    tq_kvq_opts o;
    int L, H, d;
    const tq_model_config *mc;
    tq_kv_cache *cache;
    slice_q *sq;            /* [L][H][2] */
    layer_track *tr;        /* NULL unless tq_kvq_track_layers */
    int *done;              /* [L][H][2]: positions below it are final (quantized or kept exact) */
    unsigned char *has_mean;
    float *mean;            /* [L][H][2][d]: the frozen --center mean */
    double qbits, qvals;    /* sum of bits over quantized values, and their count */
    float *x, *y;           /* scratch rows */
    size_t cap;
};

/* The parameters of (layer, head, tensor), or NULL when the tensor stays exact. */
static int opts_slice_params(const tq_kvq_opts *o, int H, int layer, int head, int tensor, tq_qparams *p)
{
    if (o->keep && o->keep[layer]) return 0;
    if (o->only && !o->only[layer * H + head]) return 0;
    *p = tensor == TQ_TENSOR_KEYS ? o->cfg.k : o->cfg.v;
    if (p->method < 0 || p->method == TQ_M_FP16) return 0; /* fp16: the reference cache itself (kvquant.h) */
    if (o->sched) {
        int b = tq_schedule_bits(o->sched, layer, head, tensor);
        if (b > 0) p->bits = b;
    }
    p->residual = 0; /* the stream keeps its own exact tail (blocks) */
    return 1;
}

static int slice_params(const tq_kvq *q, int layer, int head, int tensor, tq_qparams *p)
{
    return opts_slice_params(&q->o, q->H, layer, head, tensor, p);
}

/* Block size of a tensor's quantizer: 0 = each row when written. */
static int block_of(const tq_kvq_opts *o, const tq_qparams *p, int tensor)
{
    if (p->method == TQ_M_KIVI && tensor == TQ_TENSOR_KEYS) return o->recent > 0 ? o->recent : p->group;
    return o->recent > 0 ? o->recent : 0;
}

static int check_params(const tq_kvq_opts *o, const tq_qparams *p, int tensor, int d)
{
    const char *t = tq_tensor_name(tensor);
    if (p->method < 0 || p->method == TQ_M_FP16) return TQ_OK;
    if (p->outliers > 0)
        return tq_error_set(TQ_ERR_USAGE, "%s: --outliers has no streaming definition in the closed loop yet (the "
                            "channels are a whole slice's statistic); drop it", t);
    if (p->codebook == TQ_CB_EMPIRICAL && tq_format_of(p->method)->uses_rotation)
        return tq_error_set(TQ_ERR_USAGE, "%s: codebook 'empirical' is fitted on a whole slice and has no streaming "
                            "definition in the closed loop yet; use beta or gaussian", t);
    if (p->method == TQ_M_KIVI && tensor == TQ_TENSOR_KEYS && o->recent > 0 && o->recent % p->group)
        return tq_error_set(TQ_ERR_USAGE, "--recent %d must be a multiple of kivi's key group %d (keys are quantized "
                            "a group of tokens at a time)", o->recent, p->group);
    return tq_device_supports(o->device, p, d);
}

int tq_kvq_create(const tq_kvq_opts *o, const tq_model *m, tq_kvq **out)
{
    *out = NULL;
    const tq_model_config *mc = tq_model_get_config(m);
    if (o->recent < 0 || o->prompt < 0) return tq_error_set(TQ_ERR_USAGE, "--recent and the prompt must be >= 0");
    int st;
    for (int t = 0; t < 2; t++) {
        tq_qparams p = t ? o->cfg.v : o->cfg.k;
        if (o->sched && p.method >= 0 && p.method != TQ_M_FP16) {
            const tq_format *f = tq_format_of(p.method);
            if ((st = tq_schedule_check(o->sched, "schedule", mc->n_layers, mc->n_kv_head, f->name, f->min_bits,
                                        f->max_bits)) < 0)
                return st;
        }
        if ((st = check_params(o, &p, t, mc->head_dim)) < 0) return st;
    }
    tq_kvq *q = tq_calloc(1, sizeof *q);
    if (!q) return TQ_ERR_NOMEM;
    q->o = *o;
    q->mc = mc;
    q->L = mc->n_layers;
    q->H = mc->n_kv_head;
    q->d = mc->head_dim;
    size_t ns = (size_t)q->L * q->H * 2;
    q->done = tq_calloc(ns, sizeof *q->done);
    q->has_mean = tq_calloc(ns, 1);
    q->mean = tq_calloc(ns * q->d, sizeof *q->mean);
    q->sq = tq_calloc(ns, sizeof *q->sq);
    if (!q->done || !q->has_mean || !q->mean || !q->sq) {
        tq_kvq_free(q);
        return TQ_ERR_NOMEM;
    }
    *out = q;
    return TQ_OK;
}

void tq_kvq_free(tq_kvq *q)
{
    if (!q) return;
    if (q->sq)
        for (size_t s = 0; s < (size_t)q->L * q->H * 2; s++) {
            tq_turbo_rows_free(q->sq[s].turbo);
            tq_polar_rows_free(q->sq[s].polar);
        }
    free(q->sq);
    if (q->tr) {
        free(q->tr->k);
        free(q->tr->v);
        free(q->tr->qb);
        free(q->tr->sum);
        free(q->tr);
    }
    free(q->done);
    free(q->has_mean);
    free(q->mean);
    free(q->x);
    free(q->y);
    free(q);
}

static int grow(tq_kvq *q, size_t n)
{
    if (n <= q->cap) return TQ_OK;
    float *x = realloc(q->x, n * sizeof *x), *y = x ? realloc(q->y, n * sizeof *y) : NULL;
    if (x) q->x = x;
    if (!y) return tq_error_set(TQ_ERR_NOMEM, "out of memory for %zu cache values", n);
    q->y = y;
    q->cap = n;
    return TQ_OK;
}

/* Round-trip the m rows of q->x (already centered) into q->y. Every row is quantized on its own, so the cache comes
 * out the same whether rows arrive in a chunk or one at a time: KIVI keys are the exception (the group of tokens is
 * the unit, one call per block). A row alone through the core, not a batch: the batched fast paths may round
 * differently from a single row (dense rotations are an sgemm whose sums depend on the row count; turbo-mse 1e-6).
 * Turbo and polar rows on the CPU go through the slice's kept parts (tq_turbo_rows / tq_polar_rows: the bytes of a
 * one-row tq_roundtrip without rebuilding a d x d rotation per row). */
static int slice_roundtrip(tq_kvq *q, const tq_qparams *p, tq_slice_id id, int s, int m, double *bits)
{
    const int d = q->d;
    int st;
    slice_q *sq = &q->sq[s];
    if (!sq->ready && q->o.device == TQ_DEVICE_CPU) {
        if (p->method == TQ_M_TURBO_MSE || p->method == TQ_M_TURBO_PROD || p->method == TQ_M_QJL)
            st = tq_turbo_rows_make(&sq->turbo, p, d, id);
        else if (p->method == TQ_M_POLAR)
            st = tq_polar_rows_make(&sq->polar, p, d, id);
        else
            st = TQ_OK;
        if (st < 0) return st;
    }
    sq->ready = 1;
    if (sq->turbo) return tq_turbo_rows_roundtrip(sq->turbo, q->x, m, q->y, bits);
    if (sq->polar) return tq_polar_rows_roundtrip(sq->polar, q->x, m, q->y, bits);
    int unit = p->method == TQ_M_KIVI && id.tensor == TQ_TENSOR_KEYS ? m : 1;
    double bsum = 0, b;
    for (int r = 0; r < m; r += unit) {
        if ((st = tq_roundtrip(q->o.device, p, id, q->x + (size_t)r * d, unit, d, q->y + (size_t)r * d, &b)) < 0)
            return st;
        bsum += b * unit;
    }
    *bits = bsum / m;
    return TQ_OK;
}

/* Rows [pos0, pos0 + n) of one slice were just written into rows (the cache's array of that slice). */
static int on_slice(tq_kvq *q, int layer, int head, int tensor, int pos0, int n, float *rows)
{
    tq_qparams p;
    if (!slice_params(q, layer, head, tensor, &p)) return TQ_OK;
    const int d = q->d, s = (layer * q->H + head) * 2 + tensor;
    float *mu = q->mean + (size_t)s * d;
    if (p.center && !q->has_mean[s]) { /* calibrated on the first write (the prompt chunk), then frozen */
        for (int j = 0; j < d; j++) {
            double acc = 0;
            for (int t = 0; t < n; t++) acc += rows[(size_t)(pos0 + t) * d + j];
            mu[j] = (float)(acc / n);
        }
        q->has_mean[s] = 1;
    }
    const int S = q->o.prefill_fp16 ? q->o.prompt : 0, end = pos0 + n, B = block_of(&q->o, &p, tensor);
    if (q->done[s] < S) q->done[s] = S;
    if (end <= S) return TQ_OK;
    int target = B == 0 ? end : S + (end - 1 - S) / B * B;
    int from = q->done[s], m = target - from;
    if (m <= 0) return TQ_OK;
    int st = grow(q, (size_t)m * d);
    if (st < 0) return st;
    float *x = rows + (size_t)from * d;
    memcpy(q->x, x, (size_t)m * d * sizeof *x);
    if (p.center)
        for (int t = 0; t < m; t++)
            for (int j = 0; j < d; j++) q->x[(size_t)t * d + j] -= mu[j];
    int centered = p.center;
    p.center = 0; /* the frozen mean is removed here, not re-estimated on these rows */
    double bits;
    if ((st = slice_roundtrip(q, &p, (tq_slice_id){layer, head, tensor}, s, m, &bits)) < 0)
        return tq_error_prefix(st, "closed loop, layer %d head %d %s: ", layer, head, tq_tensor_name(tensor));
    for (int t = 0; t < m; t++)
        for (int j = 0; j < d; j++) x[(size_t)t * d + j] = q->y[(size_t)t * d + j] + (centered ? mu[j] : 0.0f);
    q->qbits += bits * m * d;
    q->qvals += (double)m * d;
    q->done[s] = target;
    return TQ_OK;
}

static int kvq_hook(void *ctx, int layer, int kv_head, int pos0, int n, float *k, float *v, int head_dim)
{
    tq_kvq *q = ctx;
    layer_track *tr = q->tr;
    if (tr) { /* the exact rows, before anything below rewrites them */
        if (pos0 + n > tr->cap)
            return tq_error_set(TQ_ERR_USAGE, "per-layer tracking holds %d positions, rows up to %d written",
                                tr->cap, pos0 + n);
        size_t off = ((size_t)(layer * q->H + kv_head) * tr->cap + pos0) * q->d, bytes = (size_t)n * q->d * 4;
        memcpy(tr->k + off, tq_kv_cache_keys(q->cache, layer, kv_head) + (size_t)pos0 * q->d, bytes);
        memcpy(tr->v + off, tq_kv_cache_values(q->cache, layer, kv_head) + (size_t)pos0 * q->d, bytes);
    }
    int st = on_slice(q, layer, kv_head, TQ_TENSOR_KEYS, pos0, n, tq_kv_cache_keys(q->cache, layer, kv_head));
    if (st >= 0)
        st = on_slice(q, layer, kv_head, TQ_TENSOR_VALUES, pos0, n, tq_kv_cache_values(q->cache, layer, kv_head));
    return st;
}

int tq_kvq_write(tq_kvq *q, int layer, int kv_head, int pos0, int n)
{
    if (!q->cache || layer < 0 || layer >= q->L || kv_head < 0 || kv_head >= q->H || pos0 < 0 || n < 1 ||
        pos0 + n > tq_kv_cache_capacity(q->cache))
        return tq_error_set(TQ_ERR_USAGE, "kv write: layer %d head %d rows [%d, %d) outside the cache", layer, kv_head,
                            pos0, pos0 + n);
    return kvq_hook(q, layer, kv_head, pos0, n, NULL, NULL, q->d);
}

/* Query hook (tracking): the layer's queries of this call against the rows attention is about to read (the cache,
 * quantized where the semantics made them final) and against the exact rows of the same pass, through the offline
 * metrics' own evaluator (lib/attention.h) under the layer's window, scale and soft-cap. */
static int kvq_query_hook(void *ctx, int layer, int pos0, int n, const float *qr, int n_head, int d)
{
    tq_kvq *q = ctx;
    layer_track *tr = q->tr;
    const int G = n_head / q->H, T = pos0 + n;
    const tq_layer_attn *la = &q->mc->layer[layer];
    tq_attn_spec spec = {.window = la->sliding_window, .scale = la->attn_scale, .softcap = la->attn_softcap};
    for (int h = 0; h < q->H; h++) {
        for (int g = 0; g < G; g++) /* layout [G][T][d]: only the rows of this call are read (t_lo = pos0) */
            for (int t = 0; t < n; t++)
                memcpy(tr->qb + ((size_t)g * T + pos0 + t) * d, qr + ((size_t)t * n_head + h * G + g) * d,
                       (size_t)d * sizeof *qr);
        size_t off = (size_t)(layer * q->H + h) * tr->cap * d;
        tq_attn_stats a;
        int st = tq_attn_eval(tr->qb, G, tr->k + off, tq_kv_cache_keys(q->cache, layer, h), tr->v + off,
                              tq_kv_cache_values(q->cache, layer, h), T, d, &spec, pos0, T, &a);
        if (st < 0) return tq_error_prefix(st, "per-layer metrics, layer %d head %d: ", layer, h);
        tq_attn_stats *sm = &tr->sum[layer];
        sm->attn_kl += a.attn_kl * a.rows;
        sm->entropy += a.entropy * a.rows;
        sm->entropy_q += a.entropy_q * a.rows;
        sm->top8 += a.top8 * a.rows;
        sm->rows += a.rows;
        if (a.out_rows > 0) {
            sm->out_rel += a.out_rel * a.out_rows;
            sm->out_rows += a.out_rows;
        }
    }
    return TQ_OK;
}

int tq_kvq_track_layers(tq_kvq *q, int capacity)
{
    if (q->tr) return TQ_OK;
    layer_track *tr = tq_calloc(1, sizeof *tr);
    if (!tr) return TQ_ERR_NOMEM;
    size_t rows = (size_t)q->L * q->H * capacity * q->d, G = (size_t)(q->mc->n_head / q->H);
    tr->cap = capacity;
    tr->k = tq_malloc(rows * sizeof *tr->k);
    tr->v = tq_malloc(rows * sizeof *tr->v);
    tr->qb = tq_malloc(G * capacity * q->d * sizeof *tr->qb);
    tr->sum = tq_calloc((size_t)q->L, sizeof *tr->sum);
    if (!tr->k || !tr->v || !tr->qb || !tr->sum) {
        free(tr->k);
        free(tr->v);
        free(tr->qb);
        free(tr->sum);
        free(tr);
        return tq_error_set(TQ_ERR_NOMEM, "per-layer tracking of %d positions: out of memory", capacity);
    }
    q->tr = tr;
    if (q->cache) tq_kv_cache_set_query_hook(q->cache, kvq_query_hook, q);
    return TQ_OK;
}

int tq_kvq_layer_stats(const tq_kvq *q, int layer, tq_attn_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!q->tr || layer < 0 || layer >= q->L)
        return tq_error_set(TQ_ERR_USAGE, "layer stats: layer %d of %d, tracking %s", layer, q->L,
                            q->tr ? "on" : "off (tq_kvq_track_layers)");
    const tq_attn_stats *sm = &q->tr->sum[layer];
    double r = sm->rows > 0 ? (double)sm->rows : NAN;
    out->attn_kl = sm->attn_kl / r;
    out->entropy = sm->entropy / r;
    out->entropy_q = sm->entropy_q / r;
    out->top8 = sm->top8 / r;
    out->out_rel = sm->out_rows > 0 ? sm->out_rel / (double)sm->out_rows : NAN;
    out->rows = sm->rows;
    out->out_rows = sm->out_rows;
    return TQ_OK;
}

void tq_kvq_attach(tq_kvq *q, tq_kv_cache *c)
{
    q->cache = c;
    size_t ns = (size_t)q->L * q->H * 2;
    memset(q->done, 0, ns * sizeof *q->done);
    memset(q->has_mean, 0, ns);
    q->qbits = q->qvals = 0;
    tq_kv_cache_set_write_hook(c, kvq_hook, q);
    if (q->tr) {
        memset(q->tr->sum, 0, (size_t)q->L * sizeof *q->tr->sum);
        tq_kv_cache_set_query_hook(c, kvq_query_hook, q);
    }
}

double tq_kvq_bits_total(const tq_kvq *q, int T)
{
    double total = (double)q->L * q->H * T * q->d * 2;
    return total > 0 ? (q->qbits + 16.0 * (total - q->qvals)) / total : NAN;
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int tq_kvq_grid(const tq_kvq_opts *o, int max_chunk)
{
    int c = max_chunk > 0 ? max_chunk : 1, blocks = 0;
    for (int t = 0; o && t < 2; t++) {
        const tq_qparams *p = t ? &o->cfg.v : &o->cfg.k;
        if (p->method < 0 || p->method == TQ_M_FP16) continue;
        int B = block_of(o, p, t);
        if (B > 0) c = gcd(c, B), blocks = 1;
    }
    if (blocks && o->prompt > 0) c = gcd(c, o->prompt); /* blocks counted from 0 must start on the grid */
    return c;
}

/* ---------- perplexity ---------- */

/* log-softmax of one row into out (double sums); returns the argmax. */
static int log_softmax(const float *x, int V, double *out)
{
    int am = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[am]) am = i;
    double mx = x[am], s = 0;
    for (int i = 0; i < V; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    /* rounded to float as the stored reference is, so identical logits score exactly 0 KL and 0 ΔPPL */
    for (int i = 0; i < V; i++) out[i] = (float)((double)x[i] - lse);
    return am;
}

typedef struct {
    const int32_t *tok;
    int T, V;
    const float *ref;       /* NULL: the reference pass itself */
    float *ref_out, *logits_out;
    tq_ppl_result *r;
    double *lp;
    double kl, nll, nll_ref, top1;
} scorer;

/* The pass's sums over its T - 1 scored positions into r's means (the CPU and GPU loops alike). */
static void ppl_means(tq_ppl_result *r, const scorer *s, int T, double bits_total)
{
    double np = T - 1;
    r->nll = s->nll / np;
    r->nll_ref = s->nll_ref / np;
    r->ppl = exp(r->nll);
    r->ppl_ref = exp(r->nll_ref);
    r->kl = s->kl / np;
    r->top1 = s->top1 / np;
    r->bits_total = bits_total;
}

static void score_rows(scorer *s, int pos0, int n, const float *logits)
{
    for (int i = 0; i < n; i++) {
        int t = pos0 + i;
        if (t >= s->T - 1) break;
        const float *row = logits + (size_t)i * s->V;
        if (s->logits_out) memcpy(s->logits_out + (size_t)t * s->V, row, (size_t)s->V * sizeof *row);
        int am = log_softmax(row, s->V, s->lp);
        int next = s->tok[t + 1];
        s->nll -= s->lp[next];
        if (s->ref_out)
            for (int v = 0; v < s->V; v++) s->ref_out[(size_t)t * s->V + v] = (float)s->lp[v];
        if (!s->ref) continue;
        const float *rf = s->ref + (size_t)t * s->V;
        double kl = 0;
        int ram = 0;
        for (int v = 0; v < s->V; v++) {
            kl += exp((double)rf[v]) * ((double)rf[v] - s->lp[v]);
            if (rf[v] > rf[ram]) ram = v;
        }
        s->kl += kl;
        s->nll_ref -= rf[next];
        s->top1 += am == ram;
        if (s->r && s->r->pos_kl) {
            s->r->pos_kl[t] = kl;
            s->r->pos_dlogp[t] = s->lp[next] - rf[next];
        }
    }
}

/* The pass: [0, prompt) then `chunk` tokens at a time, scored as they come. */
static int ppl_pass(tq_model *m, tq_kvq *q, int prompt, int chunk, scorer *s)
{
    int T = s->T, st;
    if (prompt < 1 || prompt > T) prompt = T < chunk ? T : chunk;
    int maxn = prompt > chunk ? prompt : chunk;
    tq_kv_cache *c = NULL;
    float *logits = tq_malloc((size_t)maxn * s->V * sizeof *logits);
    s->lp = tq_malloc((size_t)s->V * sizeof *s->lp);
    if (!logits || !s->lp) {
        st = TQ_ERR_NOMEM;
        goto out;
    }
    if ((st = tq_kv_cache_create(m, T, &c)) < 0) goto out;
    if (q) tq_kvq_attach(q, c);
    for (int t = 0; t < T;) {
        int n = t == 0 ? prompt : (T - t < chunk ? T - t : chunk);
        if ((st = tq_model_forward(m, c, s->tok + t, n, logits)) < 0) goto out;
        score_rows(s, t, n, logits);
        t += n;
    }
out:
    tq_kv_cache_free(c);
    free(logits);
    free(s->lp);
    s->lp = NULL;
    return st;
}

int tq_ppl_reference(tq_model *m, const int32_t *tok, int T, int prompt, int chunk, float **logp)
{
    *logp = NULL;
    if (T < 2) return tq_error_set(TQ_ERR_USAGE, "perplexity needs at least 2 tokens, got %d", T);
    int V = tq_model_get_config(m)->n_vocab;
    float *out = tq_malloc((size_t)(T - 1) * V * sizeof *out);
    if (!out) return TQ_ERR_NOMEM;
    scorer s = {.tok = tok, .T = T, .V = V, .ref_out = out};
    int st = ppl_pass(m, NULL, prompt, chunk < 1 ? 1 : chunk, &s);
    if (st < 0) {
        free(out);
        return st;
    }
    *logp = out;
    return TQ_OK;
}

/* One pass with q (NULL: the reference cache) attached, scored into r (tq_ppl_run's semantics). */
static int ppl_run_q(tq_model *m, tq_kvq *q, const int32_t *tok, int T, int prompt, int chunk, const float *ref,
                     int flags, float *logits_out, tq_ppl_result *r)
{
    int st;
    if (q && (flags & TQ_PPL_PER_LAYER)) {
        r->n_layers = q->L;
        r->layer = tq_calloc((size_t)q->L, sizeof *r->layer);
        st = r->layer ? tq_kvq_track_layers(q, T) : TQ_ERR_NOMEM;
        if (st < 0) {
            tq_ppl_result_free(r);
            return st;
        }
    }
    if (flags & TQ_PPL_PER_POSITION) {
        r->pos_kl = tq_calloc((size_t)T, sizeof *r->pos_kl);
        r->pos_dlogp = tq_calloc((size_t)T, sizeof *r->pos_dlogp);
        if (!r->pos_kl || !r->pos_dlogp) {
            tq_ppl_result_free(r);
            return TQ_ERR_NOMEM;
        }
    }
    scorer s = {.tok = tok, .T = T, .V = tq_model_get_config(m)->n_vocab, .ref = ref, .logits_out = logits_out,
                .r = r};
    st = ppl_pass(m, q, prompt, chunk < 1 ? 1 : chunk, &s);
    if (st >= 0) {
        ppl_means(r, &s, T, q ? tq_kvq_bits_total(q, T) : 16.0);
        for (int l = 0; l < r->n_layers && r->layer; l++) tq_kvq_layer_stats(q, l, &r->layer[l]);
    } else
        tq_ppl_result_free(r);
    return st;
}

int tq_ppl_run(tq_model *m, const tq_kvq_opts *o, const int32_t *tok, int T, int prompt, int chunk, const float *ref,
               int flags, float *logits_out, tq_ppl_result *r)
{
    memset(r, 0, sizeof *r);
    if (T < 2) return tq_error_set(TQ_ERR_USAGE, "perplexity needs at least 2 tokens, got %d", T);
    tq_kvq *q = NULL;
    int st;
    if (o && (st = tq_kvq_create(o, m, &q)) < 0) return st;
    st = ppl_run_q(m, q, tok, T, prompt, chunk, ref, flags, logits_out, r);
    tq_kvq_free(q);
    return st;
}

void tq_ppl_result_free(tq_ppl_result *r)
{
    free(r->pos_kl);
    free(r->pos_dlogp);
    free(r->layer);
    r->pos_kl = r->pos_dlogp = NULL;
    r->layer = NULL;
}

/* ---------- the closed loop on the GPU ---------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cuda_refuse(const char *what)
{
    return tq_error_set(TQ_ERR_USAGE, "the GPU model loop (--device cuda) does not run %s; use --device cpu", what);
}

int tq_kvq_cuda_supports(const tq_kvq_opts *o, const tq_model *m)
{
    const tq_model_config *mc = tq_model_get_config(m);
    const int d = mc->head_dim;
    if (d != 64 && d != 128 && d != 256) return cuda_refuse("head dims other than 64, 128 and 256");
    if (o->recent > 0) return cuda_refuse("--recent (fp16 rows beside the codes)");
    if (o->prefill_fp16) return cuda_refuse("--prefill fp16 (fp16 rows beside the codes)");
    const tq_qparams *k = &o->cfg.k, *v = &o->cfg.v;
    if (k->method != TQ_M_TURBO_MSE && k->method != TQ_M_TURBO_PROD)
        return tq_error_set(TQ_ERR_USAGE, "the GPU model loop (--device cuda) runs keys turbo-mse or turbo-prod, not "
                            "'%s'; use --device cpu", tq_format_of(k->method) ? tq_format_of(k->method)->name : "?");
    if (v->method != TQ_M_TURBO_MSE)
        return tq_error_set(TQ_ERR_USAGE, "the GPU model loop (--device cuda) runs values turbo-mse only (the fused "
                            "kernels' value codes), got '%s'; add --values turbo-mse:B", v->method < 0 ? "none"
                            : tq_format_of(v->method) ? tq_format_of(v->method)->name : "?");
    for (int t = 0; t < 2; t++) {
        const tq_qparams *p = t ? v : k;
        if (p->outliers > 0) return cuda_refuse("--outliers");
        if (p->center) return cuda_refuse("--center on");
        if (p->norm_fp32) return cuda_refuse("--norms fp32");
        if (p->codebook == TQ_CB_EMPIRICAL) return cuda_refuse("--codebook empirical");
        if (p->rotation != TQ_ROT_HADAMARD && p->rotation != TQ_ROT_DENSE) return cuda_refuse("--rotation none");
    }
    if (k->rotation != v->rotation)
        return tq_error_set(TQ_ERR_USAGE, "the GPU model loop (--device cuda) needs one rotation for keys and values, "
                            "got %s and %s (--values METHOD:BITS takes the default, dense: use --rotation dense)",
                            tq_vocab_name(TQ_VOCAB_ROTATION, k->rotation), tq_vocab_name(TQ_VOCAB_ROTATION, v->rotation));
    for (int l = 0; l < mc->n_layers; l++) {
        if (o->keep && o->keep[l]) continue;
        if (mc->layer[l].attn_softcap > 0) return cuda_refuse("soft-capped attention (keep those layers exact)");
        for (int h = 0; h < mc->n_kv_head; h++)
            for (int t = 0; t < 2; t++) {
                tq_qparams p;
                if (!opts_slice_params(o, mc->n_kv_head, l, h, t, &p)) continue;
                int lo = t == 0 && p.method == TQ_M_TURBO_PROD ? 2 : 1, hi = lo + 3;
                if (p.bits < lo || p.bits > hi)
                    return tq_error_set(TQ_ERR_USAGE, "the GPU model loop (--device cuda) runs %s %s at %d..%d bits, "
                                        "layer %d head %d asks %d; use --device cpu", t ? "values" : "keys",
                                        tq_format_of(p.method)->name, lo, hi, l, h, p.bits);
            }
    }
    return TQ_OK;
}

int tq_kvq_cuda_cache(const tq_model *m, tq_cuda_model *g, const tq_kvq_opts *o, int capacity, tq_cuda_cache **out,
                      double *bits_total)
{
    const tq_model_config *mc = tq_model_get_config(m);
    const int L = mc->n_layers, H = mc->n_kv_head, d = mc->head_dim;
    *out = NULL;
    if (!o) {
        *bits_total = 16.0; /* the reference: fp16 rows, or fp32 beside fp32 weights (the CPU's exact rows) */
        const int kind = tq_cuda_model_fp32(g) ? TQ_CUDA_CACHE_F32 : TQ_CUDA_CACHE_F16;
        return tq_cuda_cache_create(g, &(tq_cuda_cache_spec){kind, capacity, NULL, NULL, NULL, 0}, out);
    }
    int st = tq_kvq_cuda_supports(o, m);
    if (st < 0) return st;
    size_t ns = (size_t)L * H;
    tq_turbo_parts *parts = tq_calloc(ns * 2, sizeof *parts);
    tq_cuda_qspec *qs = tq_calloc(ns * 2, sizeof *qs);
    unsigned char *keep = tq_calloc((size_t)L, 1);
    if (!parts || !qs || !keep) st = TQ_ERR_NOMEM;
    double bits = 0;
    for (int l = 0; l < L && st >= 0; l++)
        for (int h = 0; h < H && st >= 0; h++)
            for (int t = 0; t < 2 && st >= 0; t++) {
                tq_qparams p;
                size_t i = (size_t)t * ns + (size_t)l * H + h;
                if (!opts_slice_params(o, H, l, h, t, &p)) {
                    keep[l] = 1; /* only --keep-layers leaves a slice exact here (tq_kvq_cuda_supports) */
                    bits += 16.0;
                    continue;
                }
                if ((st = tq_turbo_parts_make(&parts[i], &p, d, (tq_slice_id){l, h, t})) < 0) break;
                tq_cuda_qspec_of(&qs[i], &parts[i]);
                bits += 8.0 * (double)tq_turbo_payload(&parts[i].L, 1) / d;
            }
    if (st >= 0) {
        tq_cuda_cache_spec sp = {TQ_CUDA_CACHE_QUANT, capacity, qs, qs + ns, keep, 0};
        st = tq_cuda_cache_create(g, &sp, out);
    }
    for (size_t i = 0; parts && i < ns * 2; i++) tq_turbo_parts_free(&parts[i]);
    free(parts);
    free(qs);
    free(keep);
    *bits_total = bits / (2.0 * ns);
    return st;
}

/* T steps of one token, each scored as it comes (the last token's logits are not needed). */
static int ppl_pass_cuda(tq_cuda_model *g, tq_cuda_cache *c, scorer *s, double *seconds)
{
    int st = TQ_OK;
    float *logits = tq_malloc((size_t)s->V * sizeof *logits);
    s->lp = tq_malloc((size_t)s->V * sizeof *s->lp);
    double secs = 0;
    if (!logits || !s->lp) st = TQ_ERR_NOMEM;
    for (int t = 0; t < s->T && st >= 0; t++) {
        double t0 = now_s();
        st = tq_cuda_model_step(g, c, s->tok[t], t < s->T - 1 ? logits : NULL);
        if (st >= 0 && t == s->T - 1) st = tq_cuda_sync();
        secs += now_s() - t0;
        if (st >= 0 && t < s->T - 1) score_rows(s, t, 1, logits);
    }
    free(logits);
    free(s->lp);
    s->lp = NULL;
    if (seconds) *seconds = secs;
    return st;
}

int tq_ppl_reference_cuda(const tq_model *m, tq_cuda_model *g, const int32_t *tok, int T, float **logp,
                          double *seconds)
{
    *logp = NULL;
    if (T < 2) return tq_error_set(TQ_ERR_USAGE, "perplexity needs at least 2 tokens, got %d", T);
    int V = tq_model_get_config(m)->n_vocab;
    double bits;
    tq_cuda_cache *c = NULL;
    int st = tq_kvq_cuda_cache(m, g, NULL, T, &c, &bits);
    float *out = st >= 0 ? tq_malloc((size_t)(T - 1) * V * sizeof *out) : NULL;
    if (st >= 0 && !out) st = TQ_ERR_NOMEM;
    if (st >= 0) {
        scorer s = {.tok = tok, .T = T, .V = V, .ref_out = out};
        st = ppl_pass_cuda(g, c, &s, seconds);
    }
    tq_cuda_cache_free(c);
    if (st < 0) {
        free(out);
        return st;
    }
    *logp = out;
    return TQ_OK;
}

int tq_ppl_run_cuda(const tq_model *m, tq_cuda_model *g, const tq_kvq_opts *o, const int32_t *tok, int T,
                    const float *ref, int flags, float *logits_out, tq_ppl_result *r, double *seconds)
{
    memset(r, 0, sizeof *r);
    if (T < 2) return tq_error_set(TQ_ERR_USAGE, "perplexity needs at least 2 tokens, got %d", T);
    if (flags & TQ_PPL_PER_LAYER)
        return tq_error_set(TQ_ERR_USAGE, "--per-layer reads the cache on the host; use --device cpu for it");
    tq_cuda_cache *c = NULL;
    double bits;
    int st = tq_kvq_cuda_cache(m, g, o, T, &c, &bits);
    if (st >= 0 && (flags & TQ_PPL_PER_POSITION)) {
        r->pos_kl = tq_calloc((size_t)T, sizeof *r->pos_kl);
        r->pos_dlogp = tq_calloc((size_t)T, sizeof *r->pos_dlogp);
        if (!r->pos_kl || !r->pos_dlogp) st = TQ_ERR_NOMEM;
    }
    scorer s = {.tok = tok, .T = T, .V = tq_model_get_config(m)->n_vocab, .ref = ref, .logits_out = logits_out,
                .r = r};
    if (st >= 0) st = ppl_pass_cuda(g, c, &s, seconds);
    tq_cuda_cache_free(c);
    if (st < 0) {
        tq_ppl_result_free(r);
        return st;
    }
    ppl_means(r, &s, T, bits);
    return TQ_OK;
}

/* ---------- closed-loop sensitivity ---------- */

int tq_cl_sensitivity(tq_model *m, const int32_t *tok, int T, const tq_cl_sens_opts *o, tq_sens_result *R,
                      double **dppl)
{
    memset(R, 0, sizeof *R);
    if (dppl) *dppl = NULL;
    if (T < 2) return tq_error_set(TQ_ERR_USAGE, "closed-loop sensitivity needs at least 2 tokens, got %d", T);
    if (o->n_bits < 1 || !o->params || !o->ref || !(o->tensors[0] || o->tensors[1]))
        return tq_error_set(TQ_ERR_USAGE, "closed-loop sensitivity: no bit width, tensor or reference");
    const tq_model_config *mc = tq_model_get_config(m);
    const int L = mc->n_layers, H = mc->n_kv_head, d = mc->head_dim, nb = o->n_bits, hu = o->per_head ? H : 1;
    const int nt = !!o->tensors[0] + !!o->tensors[1];
    const tq_format *f = tq_format_of(o->params[0].method);
    R->n = nt * L * hu;
    R->units = tq_calloc((size_t)R->n, sizeof *R->units);
    R->store = tq_calloc((size_t)R->n * 3 * nb, sizeof *R->store);
    double *dp = tq_calloc((size_t)R->n * nb, sizeof *dp);
    unsigned char *only = tq_calloc((size_t)L * H, 1);
    int st = R->units && R->store && dp && only ? TQ_OK : TQ_ERR_NOMEM;
    long done = 0, total = (long)R->n * nb;
    if (st == TQ_OK && o->progress) o->progress(o->progress_ctx, "closed loop", 0, total);
    for (int i = 0, t = 0; t < 2 && st == TQ_OK; t++) {
        if (!o->tensors[t]) continue;
        for (int l = 0; l < L && st == TQ_OK; l++)
            for (int h = 0; h < hu && st == TQ_OK; h++, i++) {
                double *s = R->store + (size_t)i * 3 * nb;
                tq_sens_unit *u = &R->units[i];
                *u = (tq_sens_unit){t, l, o->per_head ? h : -1, mc->layer[l].sliding_window,
                                    (double)T * d * (o->per_head ? 1 : H), s, s + nb, s + 2 * nb};
                memset(only, 0, (size_t)L * H);
                for (int k = 0; k < H; k++) only[l * H + k] = !o->per_head || k == h;
                for (int b = 0; b < nb && st == TQ_OK; b++) {
                    tq_kvq_opts ko = {.prompt = o->prompt, .device = o->device, .only = only};
                    ko.cfg.k = o->params[b];
                    ko.cfg.v = o->params[b];
                    if (t == TQ_TENSOR_KEYS) ko.cfg.v.method = -1; /* the other tensor stays exact */
                    else ko.cfg.k.method = TQ_M_FP16;
                    u->bits_code[b] = f->bits_code(&o->params[b], d);
                    tq_kvq *q = NULL;
                    tq_ppl_result r;
                    memset(&r, 0, sizeof r);
                    if ((st = tq_kvq_create(&ko, m, &q)) < 0) break;
                    st = ppl_run_q(m, q, tok, T, o->prompt, tq_kvq_grid(&ko, o->chunk), o->ref, 0, NULL, &r);
                    if (st >= 0) {
                        u->metric[b] = r.kl;
                        u->bits_total[b] = q->qvals > 0 ? q->qbits / q->qvals : NAN;
                        dp[(size_t)i * nb + b] = 100.0 * (r.ppl / r.ppl_ref - 1.0);
                    } else
                        tq_error_prefix(st, "closed-loop sensitivity, %s layer %d%s at %d bits: ", tq_tensor_name(t),
                                        l, o->per_head ? " (one kv head)" : "", o->params[b].bits);
                    tq_ppl_result_free(&r);
                    tq_kvq_free(q);
                    if (st >= 0 && o->progress) o->progress(o->progress_ctx, "closed loop", ++done, total);
                }
            }
    }
    free(only);
    if (st < 0) {
        free(dp);
        tq_sens_free(R);
        return st;
    }
    if (dppl) *dppl = dp;
    else free(dp);
    return TQ_OK;
}
