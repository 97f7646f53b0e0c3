/* model.h: a decoder-only transformer run from a GGUF file — llama (SmolLM2, TinyLlama, Llama 2/3, Mistral),
 * qwen2, gemma2 and gemma3 — in float32 with OpenBLAS matmuls, and the explicit KV cache it reads, with a write
 * hook through which the closed loop quantizes every K/V row before attention sees it. */
#ifndef TQ_MODEL_H
#define TQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

enum { TQ_ARCH_LLAMA = 1, TQ_ARCH_QWEN2, TQ_ARCH_GEMMA2, TQ_ARCH_GEMMA3 };

/* What attention in one layer needs to be reproduced elsewhere (the dump records it per layer). */
typedef struct {
    int sliding_window;   /* 0: global; W > 0: the query at t sees keys at positions (t - W, t] (W of them) */
    float rope_base;      /* RoPE theta of this layer */
    float rope_scale;     /* linear position scaling: angle = (pos / rope_scale) * theta^(-2i/d); 1 = none */
    float attn_scale;     /* scores = attn_scale * q.k */
    float attn_softcap;   /* 0: none; else scores = c * tanh(scores / c) (Gemma 2) */
} tq_layer_attn;

typedef struct {
    int arch;                 /* TQ_ARCH_* */
    char arch_name[16];       /* general.architecture */
    char name[128];           /* general.name, or the file's base name */
    int n_layers, n_embd, n_ff, n_vocab;
    int n_head, n_kv_head, head_dim;
    float norm_eps;
    float final_softcap;      /* 0: none (Gemma 2: 30) */
    int qk_norm, sandwich_norm, has_qkv_bias, tied_output;
    float embd_scale;         /* token embeddings are multiplied by it (Gemma: sqrt(n_embd)); 1 otherwise */
    size_t weight_bytes;      /* float32 weights held in memory */
    tq_layer_attn *layer;     /* n_layers entries */
} tq_model_config;

typedef struct tq_model tq_model;

/* Load `path`: metadata checked, every weight dequantized once to float32 (config->weight_bytes says how much).
 * Q/K rows of `llama` GGUFs are put back in Hugging Face channel order (llama.cpp's converter interleaves them for
 * its adjacent-pair RoPE), so every architecture runs the same rotate-half RoPE and cached keys are in the channel
 * order of the model's reference implementation. TQ_OK, or TQ_ERR / TQ_ERR_NOMEM with a message naming `path`. */
int tq_model_load(const char *path, tq_model **out);
void tq_model_free(tq_model *m);
const tq_model_config *tq_model_get_config(const tq_model *m);

/* KV cache: per layer keys[kv_head][capacity][head_dim] (post-RoPE) and values alike, float32, positions 0..len-1
 * filled. The write hook runs once per layer and kv head for each forward call, after that call's rows are
 * computed and stored at positions [pos0, pos0 + n) and before attention reads them; k and v point at the rows in
 * the cache itself (n rows of head_dim floats, contiguous), so the hook may replace them in place (the closed loop
 * quantizes and dequantizes there) or just copy them (a dumper). A non-zero return aborts the forward pass with
 * that status (the hook records its message with tq_error_set). */
typedef int (*tq_kv_write_fn)(void *ctx, int layer, int kv_head, int pos0, int n, float *k, float *v, int head_dim);
/* Query hook: the layer's post-RoPE queries of positions [pos0, pos0 + n) as q[t][head][head_dim]
 * (n_head * head_dim floats per token), read-only, before attention. */
typedef int (*tq_q_fn)(void *ctx, int layer, int pos0, int n, const float *q, int n_head, int head_dim);

typedef struct tq_kv_cache tq_kv_cache;

int tq_kv_cache_create(const tq_model *m, int capacity, tq_kv_cache **out);
void tq_kv_cache_free(tq_kv_cache *c);
/* Forget every position (capacity and hooks kept). */
void tq_kv_cache_reset(tq_kv_cache *c);
int tq_kv_cache_len(const tq_kv_cache *c);
int tq_kv_cache_capacity(const tq_kv_cache *c);
void tq_kv_cache_set_write_hook(tq_kv_cache *c, tq_kv_write_fn fn, void *ctx);
void tq_kv_cache_set_query_hook(tq_kv_cache *c, tq_q_fn fn, void *ctx);
/* Rows of one layer and kv head: capacity * head_dim floats, positions 0..len-1 valid. */
float *tq_kv_cache_keys(tq_kv_cache *c, int layer, int kv_head);
float *tq_kv_cache_values(tq_kv_cache *c, int layer, int kv_head);

/* Run tokens[0..n) at positions len..len+n-1 of the cache (teacher-forced prompt processing when n > 1, decoding
 * when n == 1: the same code, so the two agree up to float32 summation order) and append their K/V. logits: NULL,
 * or n * n_vocab floats (row t: next-token logits after tokens[t]). TQ_OK; TQ_ERR_USAGE for a token id out of the
 * vocabulary or a cache too small (nothing appended then); a hook's status. */
int tq_model_forward(tq_model *m, tq_kv_cache *c, const int32_t *tokens, int n, float *logits);

/* Batch-invariant forward passes (off by default). The default path's sgemm rounds a row differently for a 32-row
 * call than for a 1-row call (~1e-7 relative per matmul), so teacher forcing and token-by-token decoding differ in
 * the last bits, and a quantized cache can amplify that (a code near a decision boundary flips). On, every weight
 * matmul row, attention score and weighted value sum is computed by one fixed-order kernel that depends only on its
 * own row: a token gets bit-identical logits whether its call carries 1 or N tokens (tests/test_closed_loop.c).
 * Slower than OpenBLAS (plain C: ~3-6x a teacher-forced pass); meant for checks, `tq perplexity --batch-invariant`. */
void tq_model_set_batch_invariant(tq_model *m, int on);

/* Where forward passes spent their time since load or the last reset (wall seconds): the weight matmuls (Q, K,
 * V, O, FFN and the output head), attention (scores, softmax, weighted values, hooks included), everything else
 * (norms, RoPE, activations, embedding lookup, residual adds). */
typedef struct {
    double matmul_s, attention_s, other_s;
    int64_t tokens;
} tq_model_timing;
const tq_model_timing *tq_model_get_timing(const tq_model *m);
void tq_model_reset_timing(tq_model *m);

/* Override one layer's sliding window (0: global), e.g. to measure what the window changes. TQ_ERR_USAGE for a
 * layer out of range or W < 0. The KV cache keeps every position either way. */
int tq_model_set_sliding_window(tq_model *m, int layer, int window);

/* The weights are dequantized and the matmuls run on OpenBLAS; this sets its thread count (0: leave as is). */
void tq_model_set_threads(int n);

/* The float32 weights as loaded (read-only, owned by the model), for another implementation of the same forward
 * pass (lib/cuda/model.cu uploads them to the GPU). Matrices are [out][in] row-major, Q/K rows already in the
 * rotate-half channel order; absent tensors are NULL (biases, QK-norm, sandwich norms). inv_freq: head_dim / 2 RoPE
 * frequencies of the layer (pos * inv_freq[i] is the angle of channel pair (i, i + d/2)). */
typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *q_norm, *k_norm, *post_attn_norm;
    const float *ffn_norm, *w_gate, *w_up, *w_down, *post_ffw_norm;
    const double *inv_freq;
} tq_layer_weights;
typedef struct {
    const float *tok_embd;    /* [n_vocab][n_embd] */
    const float *output_norm; /* [n_embd] */
    const float *output;      /* [n_vocab][n_embd]; == tok_embd when tied */
    int gelu;                 /* 1: GeGLU (tanh GELU), 0: SwiGLU */
    int n_layers;
    const tq_layer_weights *layer; /* valid until the next call on this model */
} tq_model_weights;
/* Fill w (layer points into storage inside m, rewritten by each call). */
int tq_model_get_weights(tq_model *m, tq_model_weights *w);

/* Architecture name for TQ_ARCH_* ("llama", ...). */
const char *tq_arch_name(int arch);

#endif
