/* model.c: the forward pass of llama / qwen2 / gemma2 / gemma3 GGUF models in float32 — weights dequantized once at
 * load, matmuls through OpenBLAS sgemm, attention over an explicit KV cache whose rows pass through a write hook.
 * The conventions each architecture needs are stated where they are applied, with where they come from. */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tq.h"

/* Threads: only OpenBLAS's, inside the matmuls. The element-wise work around them (norms, RoPE, activations) is
 * ~5% of a pass single-threaded, and OpenMP threads there fought OpenBLAS's spinning pthread pool (a 64-token
 * SmolLM2 pass went from 1.3 s to 7.5 s with both at 2 threads). */

/* Query rows per attention block: bounds the score buffer to QBLOCK * capacity floats and lets a block skip the
 * keys outside its causal (and sliding) range. */
#define QBLOCK 64

typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *q_norm, *k_norm, *post_attn_norm;
    float *ffn_norm, *w_gate, *w_up, *w_down, *post_ffw_norm;
    double *inv_freq; /* head_dim / 2 RoPE frequencies, theta^(-2i/d) / (freq factor) */
} layer_w;

struct tq_model {
    tq_model_config cfg;
    float *tok_embd, *output_norm, *output; /* output == tok_embd when tied */
    layer_w *L;
    int gelu;                               /* 1: GeGLU (tanh GELU), 0: SwiGLU */
    int batch_invariant;                    /* tq_model_set_batch_invariant */
    tq_model_timing timing;
    tq_layer_weights *exported;               /* tq_model_get_weights */
};

struct tq_kv_cache {
    const tq_model *m;
    int capacity, len;
    float *k, *v; /* [layer][kv_head][capacity][head_dim] */
    tq_kv_write_fn write_fn;
    void *write_ctx;
    tq_q_fn q_fn;
    void *q_ctx;
};

const char *tq_arch_name(int arch)
{
    switch (arch) {
    case TQ_ARCH_LLAMA: return "llama";
    case TQ_ARCH_QWEN2: return "qwen2";
    case TQ_ARCH_GEMMA2: return "gemma2";
    case TQ_ARCH_GEMMA3: return "gemma3";
    default: return "unknown";
    }
}

void tq_model_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Loading */

typedef struct {
    const char *path;
    tq_gguf *g;
    tq_model *m;
} loader;

static int meta_int(loader *ld, const char *key, int64_t dflt, int required, int64_t lo, int64_t hi, int *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", ld->m->cfg.arch_name, key);
    int64_t v = dflt;
    int rc = tq_gguf_get_int(ld->g, full, &v);
    if (rc < 0) return tq_error_prefix(TQ_ERR, "'%s': ", ld->path);
    if (rc == 1 && required) return tq_error_set(TQ_ERR, "'%s': metadata key '%s' is missing", ld->path, full);
    if (v < lo || v > hi)
        return tq_error_set(TQ_ERR, "'%s': metadata '%s' = %lld is out of range [%lld, %lld]", ld->path, full,
                            (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return TQ_OK;
}

/* A float key; *present says whether it was there (dflt is written otherwise). */
static int meta_float(loader *ld, const char *key, double dflt, double *out, int *present)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", ld->m->cfg.arch_name, key);
    double v = dflt;
    int rc = tq_gguf_get_float(ld->g, full, &v);
    if (rc < 0) return tq_error_prefix(TQ_ERR, "'%s': ", ld->path);
    if (!isfinite(v)) return tq_error_set(TQ_ERR, "'%s': metadata '%s' is not finite", ld->path, full);
    *out = v;
    if (present) *present = rc == 0;
    return TQ_OK;
}

/* Dequantize tensor `name` (required unless `optional`) of shape [rows][cols] (GGUF ne[0] = cols, ne[1] = rows;
 * rows 0 for a vector of cols). *out NULL when an optional tensor is absent. */
static int load_tensor(loader *ld, const char *name, int64_t cols, int64_t rows, int optional, float **out)
{
    *out = NULL;
    const tq_gguf_tensor *t = tq_gguf_find_tensor(ld->g, name);
    if (!t) {
        if (optional) return TQ_OK;
        return tq_error_set(TQ_ERR, "'%s': tensor '%s' is missing", ld->path, name);
    }
    int want_dims = rows ? 2 : 1;
    int ok = t->ne[0] == cols && (rows ? t->ne[1] == rows : 1) && t->n_elems == cols * (rows ? rows : 1);
    if (!ok)
        return tq_error_set(TQ_ERR, "'%s': tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] (%d-D)", ld->path,
                            name, (long long)t->ne[0], (long long)t->ne[1], (long long)cols,
                            (long long)(rows ? rows : 1), want_dims);
    if (!tq_ggml_can_dequantize(t->type)) {
        const char *tn = tq_ggml_type_name(t->type);
        if (tn)
            return tq_error_set(TQ_ERR, "'%s': tensor '%s' has type %s, which tq cannot dequantize", ld->path, name,
                                tn);
        return tq_error_set(TQ_ERR, "'%s': tensor '%s' has unknown type %d", ld->path, name, t->type);
    }
    float *buf = tq_malloc((size_t)t->n_elems * sizeof(float));
    if (!buf) return tq_error_prefix(TQ_ERR_NOMEM, "'%s': tensor '%s': ", ld->path, name);
    int rc = tq_gguf_tensor_to_f32(t, buf);
    if (rc < 0) {
        free(buf);
        return tq_error_prefix(rc, "'%s': tensor '%s': ", ld->path, name);
    }
    ld->m->cfg.weight_bytes += (size_t)t->n_elems * sizeof(float);
    *out = buf;
    return TQ_OK;
}

/* llama.cpp's converter permutes each head's Q/K rows so that its "normal" RoPE, which rotates adjacent channel
 * pairs (2i, 2i+1), equals the Hugging Face rotate-half RoPE, which pairs channel i with i + d/2: GGUF row 2i + j
 * of a head holds HF row j * d/2 + i. Undo it so one RoPE (rotate-half) serves every architecture. */
static int unpermute_rows(float *w, int n_heads, int d, int64_t cols)
{
    float *tmp = tq_malloc((size_t)d * cols * sizeof(float));
    if (!tmp) return TQ_ERR_NOMEM;
    for (int h = 0; h < n_heads; h++) {
        float *head = w + (size_t)h * d * cols;
        memcpy(tmp, head, (size_t)d * cols * sizeof(float));
        for (int i = 0; i < d / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(head + (size_t)(j * (d / 2) + i) * cols, tmp + (size_t)(2 * i + j) * cols, cols * sizeof(float));
    }
    free(tmp);
    return TQ_OK;
}

static void model_free_weights(tq_model *m)
{
    if (m->L) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            layer_w *w = &m->L[l];
            float *ps[] = {w->attn_norm, w->wq, w->wk, w->wv, w->wo, w->bq, w->bk, w->bv, w->q_norm, w->k_norm,
                           w->post_attn_norm, w->ffn_norm, w->w_gate, w->w_up, w->w_down, w->post_ffw_norm};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) free(ps[i]);
            free(w->inv_freq);
        }
        free(m->L);
    }
    if (m->output != m->tok_embd) free(m->output);
    free(m->tok_embd);
    free(m->output_norm);
    free(m->cfg.layer);
    free(m->exported);
}

void tq_model_free(tq_model *m)
{
    if (!m) return;
    model_free_weights(m);
    free(m);
}

const tq_model_config *tq_model_get_config(const tq_model *m) { return &m->cfg; }

int tq_model_get_weights(tq_model *m, tq_model_weights *w)
{
    if (!m->exported && !(m->exported = tq_calloc((size_t)m->cfg.n_layers, sizeof *m->exported))) return TQ_ERR_NOMEM;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_w *s = &m->L[l];
        m->exported[l] = (tq_layer_weights){s->attn_norm, s->wq, s->wk, s->wv, s->wo, s->bq, s->bk, s->bv, s->q_norm,
                                          s->k_norm, s->post_attn_norm, s->ffn_norm, s->w_gate, s->w_up, s->w_down,
                                          s->post_ffw_norm, s->inv_freq};
    }
    *w = (tq_model_weights){m->tok_embd, m->output_norm, m->output, m->gelu, m->cfg.n_layers, m->exported};
    return TQ_OK;
}
int tq_model_set_sliding_window(tq_model *m, int layer, int window)
{
    if (layer < 0 || layer >= m->cfg.n_layers || window < 0)
        return tq_error_set(TQ_ERR_USAGE, "sliding window %d for layer %d (the model has %d layers)", window, layer,
                            m->cfg.n_layers);
    m->cfg.layer[layer].sliding_window = window;
    return TQ_OK;
}

const tq_model_timing *tq_model_get_timing(const tq_model *m) { return &m->timing; }
void tq_model_reset_timing(tq_model *m) { memset(&m->timing, 0, sizeof m->timing); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int load_config(loader *ld)
{
    tq_model *m = ld->m;
    tq_model_config *c = &m->cfg;
    tq_gguf_str s;
    int rc = tq_gguf_get_str(ld->g, "general.architecture", &s);
    if (rc < 0) return tq_error_prefix(TQ_ERR, "'%s': ", ld->path);
    if (rc == 1) return tq_error_set(TQ_ERR, "'%s': metadata 'general.architecture' is missing", ld->path);
    static const struct { const char *name; int arch; } archs[] = {
        {"llama", TQ_ARCH_LLAMA}, {"qwen2", TQ_ARCH_QWEN2}, {"gemma2", TQ_ARCH_GEMMA2}, {"gemma3", TQ_ARCH_GEMMA3}};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (s.len == strlen(archs[i].name) && !memcmp(s.s, archs[i].name, s.len)) c->arch = archs[i].arch;
    if (!c->arch)
        return tq_error_set(TQ_ERR, "'%s': architecture '%.*s' is not supported (supported: llama, qwen2, gemma2, "
                            "gemma3)", ld->path, (int)(s.len > 64 ? 64 : s.len), s.s);
    snprintf(c->arch_name, sizeof c->arch_name, "%s", tq_arch_name(c->arch));
    if (tq_gguf_get_str(ld->g, "general.name", &s) == 0 && s.len > 0)
        snprintf(c->name, sizeof c->name, "%.*s", (int)(s.len > 127 ? 127 : s.len), s.s);
    else {
        const char *b = strrchr(ld->path, '/');
        snprintf(c->name, sizeof c->name, "%s", b ? b + 1 : ld->path);
    }
    const int BIG = 1 << 20;
    if ((rc = meta_int(ld, "block_count", 0, 1, 1, 4096, &c->n_layers)) < 0) return rc;
    if ((rc = meta_int(ld, "embedding_length", 0, 1, 1, BIG, &c->n_embd)) < 0) return rc;
    if ((rc = meta_int(ld, "feed_forward_length", 0, 1, 1, BIG, &c->n_ff)) < 0) return rc;
    if ((rc = meta_int(ld, "attention.head_count", 0, 1, 1, 4096, &c->n_head)) < 0) return rc;
    if ((rc = meta_int(ld, "attention.head_count_kv", c->n_head, 0, 1, 4096, &c->n_kv_head)) < 0) return rc;
    if ((rc = meta_int(ld, "attention.key_length", c->n_embd / c->n_head, 0, 2, 65536, &c->head_dim)) < 0) return rc;
    int vlen, rope_dim;
    if ((rc = meta_int(ld, "attention.value_length", c->head_dim, 0, 1, 65536, &vlen)) < 0) return rc;
    if ((rc = meta_int(ld, "rope.dimension_count", c->head_dim, 0, 1, 65536, &rope_dim)) < 0) return rc;
    if (vlen != c->head_dim)
        return tq_error_set(TQ_ERR, "'%s': value_length %d differs from key_length %d (not supported)", ld->path, vlen,
                            c->head_dim);
    if (rope_dim != c->head_dim || c->head_dim % 2)
        return tq_error_set(TQ_ERR, "'%s': partial rotary embedding (rope.dimension_count %d, head_dim %d) is not "
                            "supported", ld->path, rope_dim, c->head_dim);
    if (c->n_head % c->n_kv_head)
        return tq_error_set(TQ_ERR, "'%s': head_count %d is not a multiple of head_count_kv %d", ld->path, c->n_head,
                            c->n_kv_head);
    double eps, base;
    int present;
    if ((rc = meta_float(ld, "attention.layer_norm_rms_epsilon", 1e-5, &eps, NULL)) < 0) return rc;
    if ((rc = meta_float(ld, "rope.freq_base", 10000.0, &base, NULL)) < 0) return rc;
    if (!(eps > 0) || !(base > 1))
        return tq_error_set(TQ_ERR, "'%s': rms epsilon %g or rope base %g out of range", ld->path, eps, base);
    c->norm_eps = (float)eps;

    /* Linear RoPE scaling (positions divided by the factor) is the one llama.cpp form supported here; the others
     * (yarn, longrope) change the frequencies in ways not implemented, so they are refused rather than ignored. */
    double rope_scale = 1.0;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", c->arch_name);
    if (tq_gguf_get_str(ld->g, key, &s) == 0 && !(s.len == 4 && !memcmp(s.s, "none", 4))) {
        if ((rc = meta_float(ld, "rope.scaling.factor", 1.0, &rope_scale, NULL)) < 0) return rc;
        if (!(s.len == 6 && !memcmp(s.s, "linear", 6)) && rope_scale != 1.0)
            return tq_error_set(TQ_ERR, "'%s': rope scaling '%.*s' is not supported (only linear)", ld->path,
                                (int)(s.len > 32 ? 32 : s.len), s.s);
        if (!(rope_scale > 0)) return tq_error_set(TQ_ERR, "'%s': rope scaling factor %g", ld->path, rope_scale);
    }

    /* Attention scale: an explicit '<arch>.attention.scale' wins; otherwise 1/sqrt(head_dim), except Gemma 2/3 27B
     * whose query_pre_attn_scalar is n_embd / n_head (llama.cpp recognises them by layer count, as done here: 46
     * and 62 layers). Gemma 3 270M: query_pre_attn_scalar 256 = head_dim, scale 0.0625. */
    double attn_scale = 1.0 / sqrt((double)c->head_dim);
    if ((c->arch == TQ_ARCH_GEMMA2 && c->n_layers == 46) || (c->arch == TQ_ARCH_GEMMA3 && c->n_layers == 62))
        attn_scale = 1.0 / sqrt((double)c->n_embd / c->n_head);
    if ((rc = meta_float(ld, "attention.scale", attn_scale, &attn_scale, NULL)) < 0) return rc;

    double attn_softcap = 0, final_softcap = 0;
    if (c->arch == TQ_ARCH_GEMMA2 || c->arch == TQ_ARCH_GEMMA3) {
        /* Gemma 2 stores both caps (50 and 30); Gemma 3 has none unless its file says so. */
        double d_attn = c->arch == TQ_ARCH_GEMMA2 ? 50.0 : 0.0, d_final = c->arch == TQ_ARCH_GEMMA2 ? 30.0 : 0.0;
        if ((rc = meta_float(ld, "attn_logit_softcapping", d_attn, &attn_softcap, NULL)) < 0) return rc;
        if ((rc = meta_float(ld, "final_logit_softcapping", d_final, &final_softcap, NULL)) < 0) return rc;
        if (attn_softcap < 0 || final_softcap < 0)
            return tq_error_set(TQ_ERR, "'%s': negative logit soft-cap", ld->path);
    }
    c->final_softcap = (float)final_softcap;

    /* Sliding windows: Gemma 2 alternates (even layers local: HF is_sliding = not layer_idx % 2, llama.cpp swa
     * pattern 2); Gemma 3 has 5 local layers then 1 global (layer l local iff l % 6 < 5), local layers with RoPE
     * base 1e4 (llama.cpp's rope_freq_base_train_swa, unless the file has rope.freq_base_swa). llama and qwen2 run
     * every layer global, as llama.cpp does for these architectures. */
    int window = 0;
    double base_swa = base;
    if (c->arch == TQ_ARCH_GEMMA2 || c->arch == TQ_ARCH_GEMMA3) {
        if ((rc = meta_int(ld, "attention.sliding_window", 0, 1, 1, BIG * 64, &window)) < 0) return rc;
        if (c->arch == TQ_ARCH_GEMMA3 && (rc = meta_float(ld, "rope.freq_base_swa", 10000.0, &base_swa, &present)) < 0)
            return rc;
    }
    c->layer = tq_calloc((size_t)c->n_layers, sizeof *c->layer);
    if (!c->layer) return TQ_ERR_NOMEM;
    for (int l = 0; l < c->n_layers; l++) {
        tq_layer_attn *a = &c->layer[l];
        int local = (c->arch == TQ_ARCH_GEMMA2 && l % 2 == 0) || (c->arch == TQ_ARCH_GEMMA3 && l % 6 < 5);
        a->sliding_window = local ? window : 0;
        a->rope_base = (float)(local && c->arch == TQ_ARCH_GEMMA3 ? base_swa : base);
        /* Gemma 3's linear scaling applies to its global layers only (llama.cpp: freq_scale_swa stays 1). */
        a->rope_scale = (float)(local && c->arch == TQ_ARCH_GEMMA3 ? 1.0 : rope_scale);
        a->attn_scale = (float)attn_scale;
        a->attn_softcap = (float)attn_softcap;
    }
    c->qk_norm = c->arch == TQ_ARCH_GEMMA3;
    c->sandwich_norm = c->arch == TQ_ARCH_GEMMA2 || c->arch == TQ_ARCH_GEMMA3;
    c->has_qkv_bias = c->arch == TQ_ARCH_QWEN2;
    /* Gemma multiplies embeddings by sqrt(n_embd) (llama.cpp: ggml_scale(inp, sqrtf(n_embd))). */
    c->embd_scale = c->sandwich_norm ? sqrtf((float)c->n_embd) : 1.0f;
    m->gelu = c->sandwich_norm;
    return TQ_OK;
}

static int load_weights(loader *ld)
{
    tq_model *m = ld->m;
    tq_model_config *c = &m->cfg;
    const tq_gguf_tensor *te = tq_gguf_find_tensor(ld->g, "token_embd.weight");
    if (!te) return tq_error_set(TQ_ERR, "'%s': tensor 'token_embd.weight' is missing", ld->path);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return tq_error_set(TQ_ERR, "'%s': vocabulary of %lld tokens", ld->path, (long long)te->ne[1]);
    c->n_vocab = (int)te->ne[1];
    int E = c->n_embd, F = c->n_ff, D = c->head_dim, H = c->n_head, KV = c->n_kv_head, rc;
    if ((rc = load_tensor(ld, "token_embd.weight", E, c->n_vocab, 0, &m->tok_embd)) < 0) return rc;
    if ((rc = load_tensor(ld, "output_norm.weight", E, 0, 0, &m->output_norm)) < 0) return rc;
    if ((rc = load_tensor(ld, "output.weight", E, c->n_vocab, 1, &m->output)) < 0) return rc;
    c->tied_output = m->output == NULL;
    if (!m->output) m->output = m->tok_embd;
    /* Llama 3.1-style frequency factors: angle i divided by rope_freqs[i] (llama.cpp's freq_factors). */
    float *freq_factors = NULL;
    if ((rc = load_tensor(ld, "rope_freqs.weight", D / 2, 0, 1, &freq_factors)) < 0) return rc;
    if (freq_factors) c->weight_bytes -= (size_t)D / 2 * sizeof(float);

    m->L = tq_calloc((size_t)c->n_layers, sizeof *m->L);
    if (!m->L) {
        free(freq_factors);
        return TQ_ERR_NOMEM;
    }
    for (int l = 0; l < c->n_layers && rc >= 0; l++) {
        layer_w *w = &m->L[l];
        char n[96];
#define T(field, suffix, cols, rows, opt) \
        if (rc >= 0) { \
            snprintf(n, sizeof n, "blk.%d.%s", l, suffix); \
            rc = load_tensor(ld, n, cols, rows, opt, &w->field); \
        }
        T(attn_norm, "attn_norm.weight", E, 0, 0)
        T(wq, "attn_q.weight", E, H * D, 0)
        T(wk, "attn_k.weight", E, KV * D, 0)
        T(wv, "attn_v.weight", E, KV * D, 0)
        T(wo, "attn_output.weight", H * D, E, 0)
        T(ffn_norm, "ffn_norm.weight", E, 0, 0)
        T(w_gate, "ffn_gate.weight", E, F, 0)
        T(w_up, "ffn_up.weight", E, F, 0)
        T(w_down, "ffn_down.weight", F, E, 0)
        if (c->has_qkv_bias) {
            T(bq, "attn_q.bias", H * D, 0, 0)
            T(bk, "attn_k.bias", KV * D, 0, 0)
            T(bv, "attn_v.bias", KV * D, 0, 0)
        }
        if (c->qk_norm) {
            T(q_norm, "attn_q_norm.weight", D, 0, 0)
            T(k_norm, "attn_k_norm.weight", D, 0, 0)
        }
        if (c->sandwich_norm) {
            T(post_attn_norm, "post_attention_norm.weight", E, 0, 0)
            T(post_ffw_norm, "post_ffw_norm.weight", E, 0, 0)
        }
#undef T
        if (rc >= 0 && c->arch == TQ_ARCH_LLAMA) {
            if ((rc = unpermute_rows(w->wq, H, D, E)) >= 0) rc = unpermute_rows(w->wk, KV, D, E);
        }
        if (rc >= 0) {
            w->inv_freq = tq_malloc((size_t)D / 2 * sizeof(double));
            if (!w->inv_freq) rc = TQ_ERR_NOMEM;
        }
        if (rc >= 0) {
            const tq_layer_attn *a = &c->layer[l];
            for (int i = 0; i < D / 2; i++) {
                double f = pow((double)a->rope_base, -2.0 * i / D) / a->rope_scale;
                /* frequency factors apply to the global (non-sliding) layers */
                if (freq_factors && !a->sliding_window) f /= freq_factors[i];
                w->inv_freq[i] = f;
            }
        }
    }
    free(freq_factors);
    return rc < 0 ? rc : TQ_OK;
}

int tq_model_load(const char *path, tq_model **out)
{
    *out = NULL;
    loader ld = {.path = path};
    int rc = tq_gguf_open(path, &ld.g);
    if (rc < 0) return rc;
    ld.m = tq_calloc(1, sizeof *ld.m);
    if (!ld.m) {
        tq_gguf_close(ld.g);
        return TQ_ERR_NOMEM;
    }
    rc = load_config(&ld);
    if (rc >= 0) rc = load_weights(&ld);
    tq_gguf_close(ld.g);
    if (rc < 0) {
        if (rc == TQ_ERR_NOMEM) tq_error_prefix(rc, "'%s': ", path);
        tq_model_free(ld.m);
        return rc;
    }
    *out = ld.m;
    return TQ_OK;
}

/* ---------------------------------------------------------------------------------------------------------------
 * KV cache */

int tq_kv_cache_create(const tq_model *m, int capacity, tq_kv_cache **out)
{
    *out = NULL;
    if (capacity < 1) return tq_error_set(TQ_ERR_USAGE, "kv cache capacity %d must be positive", capacity);
    const tq_model_config *c = &m->cfg;
    size_t per = (size_t)c->n_layers * c->n_kv_head * (size_t)capacity * c->head_dim;
    tq_kv_cache *kc = tq_calloc(1, sizeof *kc);
    if (!kc) return TQ_ERR_NOMEM;
    kc->m = m;
    kc->capacity = capacity;
    kc->k = tq_malloc(per * sizeof(float));
    kc->v = tq_malloc(per * sizeof(float));
    if (!kc->k || !kc->v) {
        tq_kv_cache_free(kc);
        return tq_error_prefix(TQ_ERR_NOMEM, "kv cache of %d positions: ", capacity);
    }
    *out = kc;
    return TQ_OK;
}

void tq_kv_cache_free(tq_kv_cache *c)
{
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c);
}

void tq_kv_cache_reset(tq_kv_cache *c) { c->len = 0; }
int tq_kv_cache_len(const tq_kv_cache *c) { return c->len; }
int tq_kv_cache_capacity(const tq_kv_cache *c) { return c->capacity; }

void tq_kv_cache_set_write_hook(tq_kv_cache *c, tq_kv_write_fn fn, void *ctx)
{
    c->write_fn = fn;
    c->write_ctx = ctx;
}

void tq_kv_cache_set_query_hook(tq_kv_cache *c, tq_q_fn fn, void *ctx)
{
    c->q_fn = fn;
    c->q_ctx = ctx;
}

static size_t cache_off(const tq_kv_cache *c, int layer, int kv_head)
{
    const tq_model_config *m = &c->m->cfg;
    return ((size_t)layer * m->n_kv_head + kv_head) * (size_t)c->capacity * m->head_dim;
}

float *tq_kv_cache_keys(tq_kv_cache *c, int layer, int kv_head) { return c->k + cache_off(c, layer, kv_head); }
float *tq_kv_cache_values(tq_kv_cache *c, int layer, int kv_head) { return c->v + cache_off(c, layer, kv_head); }

/* ---------------------------------------------------------------------------------------------------------------
 * Forward pass */

/* y = RMSNorm(x) * w over n rows of dim floats (in place allowed); the sum of squares in double, as ggml does. */
static void rms_norm(float *y, const float *x, const float *w, int n, int dim, float eps)
{
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * dim;
        float *yr = y + (size_t)t * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * scale * w[i];
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Batch-invariant kernels (tq_model_set_batch_invariant): every output is a dot product or a weighted sum whose
 * order of operations depends only on its own row — never on how many rows the call carries — so a forward call
 * over 32 tokens gives each token the floats a 1-token call gives it. */

#define INV_LANES 16
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define INV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define INV_CLONES
#endif

/* Four dot products of x with w0..w3 (n floats each). Each keeps INV_LANES float accumulators (lane l sums the terms
 * i = l mod INV_LANES in order of i), folded pairwise in a fixed tree, then the tail in order. The lanes are
 * independent, so vectorizing (any width) reorders nothing, and -std=c11 keeps the multiply and add unfused: the
 * result is a function of (x, w, n) alone, the same on every clone. */
INV_CLONES static void dot4_fixed(const float *restrict x, const float *restrict w0, const float *restrict w1,
                                  const float *restrict w2, const float *restrict w3, int n, float out[4])
{
    float a0[INV_LANES] = {0}, a1[INV_LANES] = {0}, a2[INV_LANES] = {0}, a3[INV_LANES] = {0};
    int i = 0;
    for (; i + INV_LANES <= n; i += INV_LANES)
        for (int l = 0; l < INV_LANES; l++) {
            float xv = x[i + l];
            a0[l] += xv * w0[i + l];
            a1[l] += xv * w1[i + l];
            a2[l] += xv * w2[i + l];
            a3[l] += xv * w3[i + l];
        }
    float *acc[4] = {a0, a1, a2, a3};
    const float *ws[4] = {w0, w1, w2, w3};
    for (int k = 0; k < 4; k++) {
        float *a = acc[k];
        for (int h = INV_LANES / 2; h > 0; h /= 2)
            for (int l = 0; l < h; l++) a[l] += a[l + h];
        float s = a[0];
        for (int j = i; j < n; j++) s += x[j] * ws[k][j];
        out[k] = s;
    }
}

/* Y[n][out] = X[n][in] W^T, each y[t][o] by dot4_fixed: four weight rows at a time against every token (the rows
 * stay in cache across the tokens); a short last group repeats its last row and drops the copies. */
static void matmul_invariant(float *y, const float *x, const float *w, int n, int in, int out)
{
    for (int o = 0; o < out; o += 4) {
        const float *wr[4];
        for (int k = 0; k < 4; k++) wr[k] = w + (size_t)(o + k < out ? o + k : out - 1) * in;
        for (int t = 0; t < n; t++) {
            float r[4];
            dot4_fixed(x + (size_t)t * in, wr[0], wr[1], wr[2], wr[3], in, r);
            for (int k = 0; k < 4 && o + k < out; k++) y[(size_t)t * out + o + k] = r[k];
        }
    }
}

/* out[D] = sum_j p[j] V[j] over j in [lo, hi], in order of j (vectorized over the D channels). */
INV_CLONES static void wsum_fixed(const float *restrict p, const float *restrict V, int D, int lo, int hi,
                                  float *restrict out)
{
    for (int c = 0; c < D; c++) out[c] = 0;
    for (int j = lo; j <= hi; j++) {
        const float pj = p[j], *vr = V + (size_t)j * D;
        for (int c = 0; c < D; c++) out[c] += pj * vr[c];
    }
}

/* One query row against the keys it sees, [lo, hi] (absolute positions): scores by dot4_fixed, the default path's
 * soft-cap and softmax (already per row), then the weighted values by wsum_fixed. sc: hi + 1 floats of scratch. */
static void attend_invariant(const float *q, const float *K, const float *V, int D, int lo, int hi,
                             const tq_layer_attn *a, float *sc, float *out)
{
    for (int j = lo; j <= hi; j += 4) {
        const float *kr[4];
        for (int k = 0; k < 4; k++) kr[k] = K + (size_t)(j + k <= hi ? j + k : hi) * D;
        float r[4];
        dot4_fixed(q, kr[0], kr[1], kr[2], kr[3], D, r);
        for (int k = 0; k < 4 && j + k <= hi; k++) sc[j + k] = a->attn_scale * r[k];
    }
    if (a->attn_softcap > 0)
        for (int j = lo; j <= hi; j++) sc[j] = a->attn_softcap * tanhf(sc[j] / a->attn_softcap);
    float mx = sc[lo];
    for (int j = lo + 1; j <= hi; j++) mx = sc[j] > mx ? sc[j] : mx;
    double sum = 0;
    for (int j = lo; j <= hi; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = lo; j <= hi; j++) sc[j] *= inv;
    wsum_fixed(sc, V, D, lo, hi, out);
}

void tq_model_set_batch_invariant(tq_model *m, int on) { m->batch_invariant = on != 0; }

/* ---------------------------------------------------------------------------------------------------------------
 * The default kernels */

/* Y[n][out] (+)= X[n][in] W^T with W [out][in] row-major (GGUF's layout). */
static void matmul(tq_model *m, float *y, const float *x, const float *w, int n, int in, int out)
{
    double t0 = now_s();
    if (m->batch_invariant) matmul_invariant(y, x, w, n, in, out);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    m->timing.matmul_s += now_s() - t0;
}

/* Rotate-half RoPE on one head vector with the angles' cos/sin of its position: channel i pairs with i + d/2 at
 * angle pos * inv_freq[i]. */
static void rope(float *x, int d, const float *cs, const float *sn)
{
    int h = d / 2;
    for (int i = 0; i < h; i++) {
        float x1 = x[i], x2 = x[i + h];
        x[i] = x1 * cs[i] - x2 * sn[i];
        x[i + h] = x2 * cs[i] + x1 * sn[i];
    }
}

/* cos/sin of pos * inv_freq[i] for the n positions past.. of a call, in double (llama.cpp accumulates the angle in
 * float, a difference of ~1e-7 relative in the angle); layers with the same frequencies share the table. */
static void rope_table(float *cs, float *sn, const double *inv_freq, int half, int past, int n)
{
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)(past + t) * inv_freq[i];
            cs[(size_t)t * half + i] = (float)cos(a);
            sn[(size_t)t * half + i] = (float)sin(a);
        }
}

static float gelu_tanh(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

int tq_model_forward(tq_model *m, tq_kv_cache *kc, const int32_t *tokens, int n, float *logits)
{
    const tq_model_config *c = &m->cfg;
    if (kc->m != m) return tq_error_set(TQ_ERR_USAGE, "kv cache belongs to another model");
    if (n < 1) return tq_error_set(TQ_ERR_USAGE, "forward pass over %d tokens", n);
    if (n > kc->capacity - kc->len)
        return tq_error_set(TQ_ERR_USAGE, "kv cache full: %d positions held, %d more asked, capacity %d", kc->len, n,
                            kc->capacity);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->n_vocab)
            return tq_error_set(TQ_ERR_USAGE, "token id %d at %d is outside the vocabulary [0, %d)", tokens[t], t,
                                c->n_vocab);
    const int E = c->n_embd, F = c->n_ff, D = c->head_dim, H = c->n_head, KV = c->n_kv_head, G = H / KV;
    const int QD = H * D, KD = KV * D, past = kc->len;
    const int S_max = past + n;
    float *x = tq_malloc((size_t)n * E * sizeof(float));
    float *xb = tq_malloc((size_t)n * E * sizeof(float));
    float *q = tq_malloc((size_t)n * QD * sizeof(float));
    float *k = tq_malloc((size_t)n * KD * sizeof(float));
    float *v = tq_malloc((size_t)n * KD * sizeof(float));
    float *att = tq_malloc((size_t)n * QD * sizeof(float));
    float *gt = tq_malloc((size_t)n * F * sizeof(float));
    float *up = tq_malloc((size_t)n * F * sizeof(float));
    int qb = n < QBLOCK ? n : QBLOCK;
    float *sc = tq_malloc((size_t)qb * S_max * sizeof(float)); /* the invariant path uses its first S_max */
    float *rc_cos = tq_malloc((size_t)n * (D / 2) * sizeof(float));
    float *rc_sin = tq_malloc((size_t)n * (D / 2) * sizeof(float));
    const double *table_of = NULL; /* the inv_freq the table holds */
    int rc = TQ_OK;
    double t_start = now_s(), mm0 = m->timing.matmul_s, at0 = m->timing.attention_s;
    if (!x || !xb || !q || !k || !v || !att || !gt || !up || !sc || !rc_cos || !rc_sin) {
        rc = tq_error_prefix(TQ_ERR_NOMEM, "forward pass over %d tokens: ", n);
        goto done;
    }
    for (int t = 0; t < n; t++) {
        const float *e = m->tok_embd + (size_t)tokens[t] * E;
        for (int i = 0; i < E; i++) x[(size_t)t * E + i] = e[i] * c->embd_scale;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const layer_w *w = &m->L[l];
        const tq_layer_attn *a = &c->layer[l];
        rms_norm(xb, x, w->attn_norm, n, E, c->norm_eps);
        matmul(m, q, xb, w->wq, n, E, QD);
        matmul(m, k, xb, w->wk, n, E, KD);
        matmul(m, v, xb, w->wv, n, E, KD);
        if (!table_of || memcmp(table_of, w->inv_freq, (size_t)(D / 2) * sizeof(double))) {
            rope_table(rc_cos, rc_sin, w->inv_freq, D / 2, past, n);
            table_of = w->inv_freq;
        }
        for (int t = 0; t < n; t++) {
            const float *cs = rc_cos + (size_t)t * (D / 2), *sn = rc_sin + (size_t)t * (D / 2);
            float *qt = q + (size_t)t * QD, *kt = k + (size_t)t * KD, *vt = v + (size_t)t * KD;
            if (w->bq) {
                for (int i = 0; i < QD; i++) qt[i] += w->bq[i];
                for (int i = 0; i < KD; i++) kt[i] += w->bk[i];
                for (int i = 0; i < KD; i++) vt[i] += w->bv[i];
            }
            /* Gemma 3's QK-norm: RMSNorm of each head's query and key (weights over head_dim), before RoPE. */
            if (w->q_norm) {
                rms_norm(qt, qt, w->q_norm, H, D, c->norm_eps);
                rms_norm(kt, kt, w->k_norm, KV, D, c->norm_eps);
            }
            for (int h = 0; h < H; h++) rope(qt + (size_t)h * D, D, cs, sn);
            for (int h = 0; h < KV; h++) rope(kt + (size_t)h * D, D, cs, sn);
        }
        double ta = now_s();
        for (int h = 0; h < KV; h++) {
            float *K = tq_kv_cache_keys(kc, l, h), *V = tq_kv_cache_values(kc, l, h);
            for (int t = 0; t < n; t++) {
                memcpy(K + (size_t)(past + t) * D, k + (size_t)t * KD + (size_t)h * D, D * sizeof(float));
                memcpy(V + (size_t)(past + t) * D, v + (size_t)t * KD + (size_t)h * D, D * sizeof(float));
            }
            if (kc->write_fn) {
                rc = kc->write_fn(kc->write_ctx, l, h, past, n, K + (size_t)past * D, V + (size_t)past * D, D);
                if (rc) goto done;
            }
        }
        if (kc->q_fn && (rc = kc->q_fn(kc->q_ctx, l, past, n, q, H, D))) goto done;
        /* Without logits a call is read only through the cache and the hooks, which have seen everything of the
         * last layer they will: its attention, output projection and FFN feed nothing (a dump skips 1/n_layers of
         * the O and FFN work; the bytes of the cache and of every hook's rows are unchanged). */
        if (!logits && l == c->n_layers - 1) break;

        /* Attention, a block of query rows at a time against just the keys the block can see. */
        const int W = a->sliding_window;
        for (int h = 0; h < H && m->batch_invariant; h++) { /* or one row at a time: tq_model_set_batch_invariant */
            const float *K = tq_kv_cache_keys(kc, l, h / G), *V = tq_kv_cache_values(kc, l, h / G);
            for (int t = 0; t < n; t++) {
                int p = past + t;
                attend_invariant(q + (size_t)t * QD + (size_t)h * D, K, V, D, W && p - W + 1 > 0 ? p - W + 1 : 0, p,
                                 a, sc, att + (size_t)t * QD + (size_t)h * D);
            }
        }
        for (int h = 0; h < H && !m->batch_invariant; h++) {
            const float *K = tq_kv_cache_keys(kc, l, h / G), *V = tq_kv_cache_values(kc, l, h / G);
            for (int t0 = 0; t0 < n; t0 += QBLOCK) {
                int nb = n - t0 < QBLOCK ? n - t0 : QBLOCK;
                int p0 = past + t0, kend = past + t0 + nb; /* keys [kstart, kend) */
                int kstart = W && p0 - W + 1 > 0 ? p0 - W + 1 : 0;
                int S = kend - kstart;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, S, D, a->attn_scale,
                            q + (size_t)t0 * QD + (size_t)h * D, QD, K + (size_t)kstart * D, D, 0.0f, sc, S);
                for (int r = 0; r < nb; r++) {
                    float *row = sc + (size_t)r * S;
                    int p = p0 + r;
                    /* visible keys: (p - W, p] on a sliding layer, [0, p] otherwise */
                    int lo = W && p - W + 1 > kstart ? p - W + 1 - kstart : 0, hi = p - kstart; /* inclusive */
                    if (a->attn_softcap > 0)
                        for (int j = lo; j <= hi; j++) row[j] = a->attn_softcap * tanhf(row[j] / a->attn_softcap);
                    float mx = row[lo];
                    for (int j = lo + 1; j <= hi; j++) mx = row[j] > mx ? row[j] : mx;
                    double sum = 0;
                    for (int j = lo; j <= hi; j++) {
                        row[j] = expf(row[j] - mx);
                        sum += row[j];
                    }
                    float inv = (float)(1.0 / sum);
                    for (int j = 0; j < lo; j++) row[j] = 0;
                    for (int j = lo; j <= hi; j++) row[j] *= inv;
                    for (int j = hi + 1; j < S; j++) row[j] = 0;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, S, 1.0f, sc, S, V + (size_t)kstart * D,
                            D, 0.0f, att + (size_t)t0 * QD + (size_t)h * D, QD);
            }
        }
        m->timing.attention_s += now_s() - ta;
        matmul(m, xb, att, w->wo, n, QD, E);
        if (w->post_attn_norm) rms_norm(xb, xb, w->post_attn_norm, n, E, c->norm_eps);
        for (size_t i = 0; i < (size_t)n * E; i++) x[i] += xb[i];

        rms_norm(xb, x, w->ffn_norm, n, E, c->norm_eps);
        matmul(m, gt, xb, w->w_gate, n, E, F);
        matmul(m, up, xb, w->w_up, n, E, F);
        if (m->gelu) {
            for (size_t i = 0; i < (size_t)n * F; i++) gt[i] = gelu_tanh(gt[i]) * up[i];
        } else {
            for (size_t i = 0; i < (size_t)n * F; i++) gt[i] = gt[i] / (1.0f + expf(-gt[i])) * up[i];
        }
        matmul(m, xb, gt, w->w_down, n, F, E);
        if (w->post_ffw_norm) rms_norm(xb, xb, w->post_ffw_norm, n, E, c->norm_eps);
        for (size_t i = 0; i < (size_t)n * E; i++) x[i] += xb[i];
    }
    kc->len = past + n;
    if (logits) {
        rms_norm(xb, x, m->output_norm, n, E, c->norm_eps);
        matmul(m, logits, xb, m->output, n, E, c->n_vocab);
        if (c->final_softcap > 0) {
            float cap = c->final_softcap;
            for (size_t i = 0; i < (size_t)n * c->n_vocab; i++) logits[i] = cap * tanhf(logits[i] / cap);
        }
    }
    m->timing.other_s += (now_s() - t_start) - (m->timing.matmul_s - mm0) - (m->timing.attention_s - at0);
    m->timing.tokens += n;
done:
    free(x);
    free(xb);
    free(q);
    free(k);
    free(v);
    free(att);
    free(gt);
    free(up);
    free(sc);
    free(rc_cos);
    free(rc_sin);
    return rc;
}
