/* kvquant.h: the closed loop — a KV cache whose every K/V row goes through the shared quantizer core (lib/device.h's
 * round trip) through lib/model.h's write hook, and the teacher-forced perplexity pass that scores a quantized cache
 * against the reference cache (ppl, mean KL(p_ref || p_q), top-1 agreement, per position).
 *
 * Streaming semantics (README "Closed loop"): a row is quantized once, in place, and never again; rows of a slice
 * (layer, kv head, tensor) share its seed-derived rotation, so offline and closed-loop rows join on the config.
 *  - per-row methods (fp16 pass-through, int8, turbo-mse, turbo-prod, qjl, polar, KIVI values): a row is quantized
 *    when it is written — alone or in a chunk, the same bits. Each slice keeps its quantizer (rotation, codebook,
 *    QJL matrix) for the state's life; the rows of a call go through it together, each on its own.
 *  - blocks: KIVI keys (per-channel groups of G tokens) and --recent N are quantized a block at a time: block k
 *    (positions S + [kB, kB + B)) is quantized when the first token after it is written, so the newest 1..B rows stay
 *    in fp16 as KIVI's residual does. B = G for KIVI keys, N with --recent (KIVI keys then need N % G == 0).
 *  - --prefill fp16: rows of the first `prompt` positions stay exact; blocks then count from S = prompt (else 0).
 *  - --center: the per-channel mean is calibrated on the slice's first write (the prompt chunk) and frozen; later
 *    rows are quantized as (x - mean) with the frozen mean, as a deployed cache must.
 *  - --outliers and the empirical codebook are statistics of a whole slice with no streaming definition here yet:
 *    refused with a message.
 * Chunked (teacher-forced) processing equals token-by-token decoding when every block boundary is a chunk boundary:
 * tq_kvq_grid gives the chunk size that guarantees it. */
#ifndef TQ_KVQUANT_H
#define TQ_KVQUANT_H

#include <stdint.h>

#include "attention.h"
#include "device.h"
#include "evaluate.h"
#include "model.h"
#include "schedule.h"

typedef struct {
    tq_eval_config cfg;          /* keys and values quantizers (v.method < 0: values stay exact) */
    const tq_schedule *sched;    /* per (layer, head) bits replacing cfg's, or NULL */
    int recent;                  /* N > 0: blocks of N (the newest 1..N rows stay exact); 0: none */
    const unsigned char *keep;   /* n_layers flags: 1 = the layer's cache stays exact; NULL: none */
    int prefill_fp16;            /* 1: the first `prompt` positions stay exact */
    int prompt;                  /* the prompt (first chunk) length */
    tq_device device;
    const unsigned char *only;   /* n_layers x n_kv_heads flags: quantize only these (layer, kv head) slices, the
                                  * rest stay exact (the closed-loop sensitivity scan's units); NULL: all */
} tq_kvq_opts;

typedef struct tq_kvq tq_kvq;

/* Check o against model m (methods run at its head dim, schedule shape, options the stream cannot honour) and
 * create the state; install it on a cache with tq_kvq_attach. */
int tq_kvq_create(const tq_kvq_opts *o, const tq_model *m, tq_kvq **out);
void tq_kvq_free(tq_kvq *q);
/* Install q as c's write hook and forget every slice's state (call after tq_kv_cache_reset). */
void tq_kvq_attach(tq_kvq *q, tq_kv_cache *c);
/* What the hook does when rows [pos0, pos0 + n) of (layer, kv_head) have been written into the attached cache's
 * arrays: quantize in place whatever the semantics make final. Public so tests can drive the cache semantics with
 * exact rows (chunked writes against one row at a time) without the model's float32 summation-order noise. */
int tq_kvq_write(tq_kvq *q, int layer, int kv_head, int pos0, int n);
/* Stored bits per K/V value of the cache as it stands after a pass of T tokens: quantized rows at their
 * bits_total (side information included), exact rows at 16 (fp16). */
double tq_kvq_bits_total(const tq_kvq *q, int T);
/* Per-layer attention metrics in the loop: from now on (and after every tq_kvq_attach) keep the exact K/V rows of
 * the pass beside the cache (up to `capacity` positions; 2 x L x H x capacity x d floats) and, at every forward
 * call, score each layer's queries against the rows attention reads (the cache, quantized where final) and against
 * those exact rows of the same pass — the K/V the model actually produced under quantization, not the reference
 * pass's — with lib/attention.h's evaluator under the layer's window, scale and soft-cap. */
int tq_kvq_track_layers(tq_kvq *q, int capacity);
/* Layer l's means over every (query head, position) scored since tq_kvq_attach: attn_kl = KL(p_exact || p_cache),
 * out_rel, top8, entropy (exact), entropy_q (cache); README "Metrics" defines them. TQ_ERR_USAGE without tracking. */
int tq_kvq_layer_stats(const tq_kvq *q, int layer, tq_attn_stats *out);
/* The largest chunk c <= max_chunk such that chunked processing equals decoding: every block size of o divides by it
 * (1 when none fits). */
int tq_kvq_grid(const tq_kvq_opts *o, int max_chunk);

/* ---- teacher-forced perplexity ---- */

/* The reference: the model's own float32 cache, no hook. logp: (T-1) x n_vocab log-probabilities of the next token
 * after tokens[0..T-2], malloc'd (free with free()). Chunks: [0, prompt), then `chunk` tokens at a time. */
int tq_ppl_reference(tq_model *m, const int32_t *tok, int T, int prompt, int chunk, float **logp);

typedef struct {
    double ppl, ppl_ref, kl, top1, bits_total, nll, nll_ref;
    double *pos_kl, *pos_dlogp;  /* [T-1] when asked for (free with tq_ppl_result_free) */
    tq_attn_stats *layer;        /* [n_layers] with TQ_PPL_PER_LAYER (tq_kvq_layer_stats of the pass), else NULL */
    int n_layers;
} tq_ppl_result;

/* tq_ppl_run's flags (1 keeps meaning "per position", as the argument once did). */
enum { TQ_PPL_PER_POSITION = 1, TQ_PPL_PER_LAYER = 2 };

/* One configuration: the model run over tok[0..T) with its cache quantized by o (NULL: the reference cache),
 * compared with ref (from tq_ppl_reference). flags: TQ_PPL_PER_POSITION fills pos_kl / pos_dlogp;
 * TQ_PPL_PER_LAYER fills layer (o not NULL). logits_out (may be NULL): (T-1) x n_vocab raw logits, for
 * bit-identity tests. */
int tq_ppl_run(tq_model *m, const tq_kvq_opts *o, const int32_t *tok, int T, int prompt, int chunk, const float *ref,
               int flags, float *logits_out, tq_ppl_result *r);
void tq_ppl_result_free(tq_ppl_result *r);

/* ---- the closed loop on the GPU (lib/cuda/tq_cuda.h's model loop) -------------------------------------------
 * The model's own forward pass on the device, one token per step (teacher forcing over T tokens = T decode steps,
 * which the cache semantics above make equal to chunked processing), the reference with an fp16 cache, a
 * configuration with every K/V row encoded by the CUDA encoders into packed codes that the fused decode kernels
 * read. Runs keys turbo-mse (1-4 bits) or turbo-prod (2-4 bits), values turbo-mse (1-4 bits), hadamard or dense
 * rotation (the same for both), beta or gaussian codebooks, fp16 norms, schedules and --keep-layers; everything
 * else (other methods, values none or of another method, --recent, --prefill fp16, --center, --outliers, fp32
 * norms, soft-capped layers) is refused with a message saying what to change. */
typedef struct tq_cuda_model tq_cuda_model;
typedef struct tq_cuda_cache tq_cuda_cache;

/* TQ_OK when the GPU loop runs o on m (needs no GPU); else TQ_ERR_USAGE naming the option. */
int tq_kvq_cuda_supports(const tq_kvq_opts *o, const tq_model *m);
/* A GPU cache of `capacity` positions for o (NULL: the fp16 reference cache): every (layer, kv head)'s quantizers
 * from the CPU's own parts (same seeds, rotations, codebooks, QJL matrices as tq_kvq's slices); *bits_total: the
 * stored bits per K/V value it makes (tq_kvq_bits_total's number). Free with tq_cuda_cache_free. */
int tq_kvq_cuda_cache(const tq_model *m, tq_cuda_model *g, const tq_kvq_opts *o, int capacity, tq_cuda_cache **out,
                      double *bits_total);
/* The reference on the GPU (fp16 cache): logp as tq_ppl_reference's; *seconds (may be NULL): wall time of the T
 * steps (logits copied back included, scoring excluded). */
int tq_ppl_reference_cuda(const tq_model *m, tq_cuda_model *g, const int32_t *tok, int T, float **logp,
                          double *seconds);
/* One configuration on the GPU (o->device is not read): r as tq_ppl_run's (TQ_PPL_PER_LAYER refused). */
int tq_ppl_run_cuda(const tq_model *m, tq_cuda_model *g, const tq_kvq_opts *o, const int32_t *tok, int T,
                    const float *ref, int flags, float *logits_out, tq_ppl_result *r, double *seconds);

/* ---- closed-loop sensitivity: one unit quantized at a time in the loop ---- */

typedef struct {
    const tq_qparams *params;   /* one per candidate width, same method */
    int n_bits;
    int tensors[2];             /* scan keys [0] / values [1]: each quantized alone, the other tensor exact */
    int per_head;               /* units (layer, kv head) instead of layers */
    int prompt, chunk;          /* as tq_ppl_run (the chunk on the grid of every width: tq_kvq_grid) */
    tq_device device;
    const float *ref;           /* tq_ppl_reference over the same tokens, prompt and chunk: shared by every unit */
    tq_progress_fn progress;    /* may be NULL: called with (units x widths) done */
    void *progress_ctx;
} tq_cl_sens_opts;

/* For every unit (tensor, layer[, kv head]) and width: the model run over tok[0..T) with only that unit's cache
 * quantized (quantized prefill, no recent window: tq_kvq_opts.only; every other slice exact), scored against o->ref.
 * out gets tq_sensitivity's units — metric[b] = mean next-token KL(p_ref || p_q) (README "cl_kl"), coords = T x d
 * (x kv heads for a layer), bits_code from the format, bits_total = the quantized rows' stored bits — in tensor,
 * layer, head order; dppl (may be NULL) a malloc'd [n_units x n_bits] of 100 (ppl / ppl_ref - 1) in the same order.
 * A layer unit's numbers equal tq_ppl_run with keep = every other layer, bit for bit. */
int tq_cl_sensitivity(tq_model *m, const int32_t *tok, int T, const tq_cl_sens_opts *o, tq_sens_result *out,
                      double **dppl);

#endif
