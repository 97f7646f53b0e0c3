/* tq_cuda.h: the C-callable CUDA entry points of tq — device buffers, encode/decode of turbo-mse, turbo-prod and qjl
 * into exactly the CPU's packed sections (lib/pack.h), and the fused decode attention over packed codes. A CPU-only
 * build (TQ_HAVE_CUDA=0) links lib/cuda_stub.c instead: every entry point returns TQ_ERR_NOCUDA. */
#ifndef TQ_CUDA_H
#define TQ_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "quant.h"

/* ---- device and buffers ------------------------------------------------------------------------------------ */

/* TQ_OK when a CUDA device is usable (name/sm_count/mem filled, any may be NULL); TQ_ERR_NOCUDA in a CPU-only build;
 * TQ_ERR when the build has CUDA but no device answers (message says why). */
int tq_cuda_device(char *name, size_t name_len, int *sm_count, double *mem_gib);
/* MPI ranks (cmd/mpi.c): make GPU (local_rank mod the device count) this process's current device, before any other
 * CUDA call; *picked (may be NULL) = its index. TQ_ERR_NOCUDA in a CPU-only build, TQ_ERR without a device. */
int tq_cuda_select(int local_rank, int *picked);
int tq_cuda_alloc(void **dev, size_t bytes);   /* zero-filled */
void tq_cuda_free(void *dev);                  /* NULL-safe */
int tq_cuda_upload(void *dev, const void *host, size_t bytes);
int tq_cuda_download(void *host, const void *dev, size_t bytes);
int tq_cuda_copy(void *dst_dev, const void *src_dev, size_t bytes); /* device to device */
int tq_cuda_sync(void);
/* GPU-side timing with CUDA events on the default stream: start, then stop returns milliseconds in between. */
int tq_cuda_timer_start(void);
int tq_cuda_timer_stop(float *ms);
/* Milliseconds per call of fn(arg) on the device alone: fn's kernels captured `iters` times into a CUDA graph and
 * replayed (no host launch cost; fn may launch only the attention kernels, which follow the library's stream).
 * TQ_ERR when the capture fails (the caller times eagerly instead). */
int tq_cuda_time_graph(int (*fn)(void *), void *arg, int iters, float *ms);
/* Free what the library keeps between calls (the fp16 baseline's workspace, the timer events). */
void tq_cuda_release(void);
/* Kernel variants, process-wide, for side-by-side timing and tests: what "attn": "auto" (the default: the library
 * chooses), "v1" (k_attn_codes everywhere), "t64-plan16", "t64" (the fp32 CUDA-core kernels where the tensor-core ones
 * would run), "mma-t" (the k_attn_mma template in place of k_attn_mma33), "unfused" / "fused" (the tensor-core kernels
 * on the three-kernel path / the fused small-batch path at every batch); what "encode": "auto", "lpv8", "v1", "simt"
 * (fp16 input through the CUDA-core kernels where the tensor-core encoders would run: the arithmetic below). TQ_OK;
 * TQ_ERR_USAGE naming an unknown kind or name; TQ_ERR_NOCUDA in a CPU-only build. */
int tq_cuda_variant_set(const char *what, const char *name);
/* float -> IEEE half on the device (n elements), for fp16 inputs of the benchmark. */
int tq_cuda_to_half(uint16_t *dst_dev, const float *src_dev, long n);

/* ---- quantizers --------------------------------------------------------------------------------------------
 * A quantizer is described with plain host arrays (generated on the host from the same PCG seed as the CPU side:
 * lib/rotation.h, lib/codebook.h) and uploaded once. Arithmetic, fixed so the GPU and a scalar host emulation agree
 * bit for bit on the Hadamard path:
 *   norm = (float) sqrt(sum_j (double) x_j^2)              (double sum: rounding order does not reach the float)
 *   u_j  = norm > 0 ? x_j / norm : 0                       (IEEE division)
 *   y    = Pi u: hadamard: t_j = u_j * signs_j, in-place butterflies h = 1, 2, 4, ... (a+b, a-b), then * (float)
 *          (1/sqrt(d)) (as lib/rotation.c); dense: y_i = fmaf chain over j = 0..d-1 of Pi[i][j] * u_j from 0.
 *   code_j = number of thresholds t with y_j > t           (lib/codebook.h's rule)
 *   norms stored as fp16 (round to nearest even) unless norm_fp32.
 * turbo-prod: MSE part at `bits` (= b - 1), xm = Pi^T c[code] (inverse rotation, same arithmetic), r_j = x_j -
 *   nq * xm_j (fmaf, nq = the stored norm as decoded), rnorm = ||r|| as above, sign bit i = (S r)_i >= 0 with
 *   (S r)_i an fmaf chain over j. qjl: sign bits of S x, norms = ||x||. Decode: x^ = nq Pi^T c + (sqrt(pi/2)/m)
 *   rnorm S^T z (turbo-prod), x^ = (sqrt(pi/2)/m) norm S^T z (qjl).
 * Tensor cores: from fp16 input (x_half 1) at d = 64, 128, 256, dense turbo-mse (1-4 bits) and turbo-prod (MSE bits
 *   1-3, either rotation) run k_encode_mma (lib/cuda/encode.cu): norms as above; Hadamard codes as above; dense y = Pi x
 *   with 16 Pi split into two fp16 halves (fp32 accumulation), so a code may differ where y_j / norm lies within
 *   (4d + 16) 2^-24 of a threshold; turbo-prod signs from (S Pi^T)(Pi x - nq c[code]) (hi + lo halves of both, three
 *   passes), which may differ where |(S r)_i| is below a bound of the same order (tests/test_cuda.c derives both), and
 *   rnorm = ||Pi x - nq c[code]|| (float rounding). Variant "simt" keeps the arithmetic above for fp16 input. */
typedef struct {
    int method;               /* TQ_M_TURBO_MSE, TQ_M_TURBO_PROD or TQ_M_QJL (lib/quant.h) */
    int d;                    /* 64..1024, a multiple of 32 (hadamard: a power of two) */
    int bits;                 /* MSE code bits per coordinate, 1..8 (turbo-prod: b - 1); ignored for qjl */
    int rotation;             /* TQ_ROT_DENSE, TQ_ROT_HADAMARD or TQ_ROT_NONE */
    int m;                    /* QJL projections: turbo-prod needs m = d; qjl any multiple of 8 */
    int norm_fp32;            /* norms/rnorms as float instead of fp16 */
    const float *rot;         /* dense: Pi, d x d row-major (y_i = sum_j rot[i*d+j] u_j) */
    const float *signs;       /* hadamard: d values +-1 */
    const float *centroids;   /* 2^bits ascending */
    const float *thresholds;  /* 2^bits - 1 ascending (midpoints) */
    const float *S;           /* turbo-prod / qjl: m x d row-major */
} tq_cuda_qspec;

typedef struct tq_cuda_quant tq_cuda_quant;

/* Device pointers of one batch of n encoded vectors, laid out as the CPU's sections: codes n x
 * tq_pack_row_bytes(d, bits), norms n (uint16 half or float), signs n x tq_pack_row_bytes(m, 1), rnorms n. */
typedef struct {
    uint8_t *codes;
    void *norms;
    uint8_t *signs;
    void *rnorms;
} tq_cuda_codes;

int tq_cuda_quant_create(tq_cuda_quant **out, const tq_cuda_qspec *spec);
void tq_cuda_quant_free(tq_cuda_quant *q);
/* x: n x d on the device, float (x_half 0) or IEEE half (x_half 1). */
int tq_cuda_encode(const tq_cuda_quant *q, const void *x, int x_half, long n, const tq_cuda_codes *out);
/* xhat: n x d on the device, float (out_half 0) or half (out_half 1). */
int tq_cuda_decode(const tq_cuda_quant *q, const tq_cuda_codes *in, long n, void *xhat, int out_half);

/* tq_quantize on the GPU (lib/cuda_quant.c): the same sections, byte for byte on the Hadamard path, for turbo-mse,
 * turbo-prod (bits >= 2) and qjl (projections a multiple of 8) with dense or hadamard rotation and beta or gaussian
 * codebooks, head dims multiple of 32 up to 1024. Outliers, centering and empirical codebooks stay on the CPU:
 * TQ_ERR_USAGE says so. TQ_ERR_NOCUDA in a CPU-only build. */
int tq_cuda_quantize(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c);
/* The same, then the GPU decoder (tq_cuda_decode) on the GPU's codes into xhat (n x d floats on the host; NULL: no
 * decode). xhat equals tq_dequantize's output up to float rounding (the decoders sum in different orders). */
int tq_cuda_quantize_recon(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c,
                           float *xhat);
/* The kernel's description of a turbo quantizer built by tq_turbo_parts_make (lib/turbo.h): instance 0's MSE bits,
 * rotation, codebook and S, and the norms' type. The GPU runs one-instance quantizers (no --outliers, fixed
 * codebooks: tq_cuda_supports); the pointers are the parts' own, valid while they live. */
typedef struct tq_turbo_parts tq_turbo_parts;
void tq_cuda_qspec_of(tq_cuda_qspec *sp, const tq_turbo_parts *q);
/* TQ_OK when tq_cuda_quantize runs these parameters at head dim d; else TQ_ERR_USAGE (or the method's own check)
 * with a message naming the option to change. Needs no GPU: sweeps use it to skip configurations up front. */
int tq_cuda_supports(const tq_qparams *p, int d);

/* ---- fused decode attention ----------------------------------------------------------------------------------
 * One query token per (batch, query head) against L cached tokens per (batch, kv head), GQA: query head h uses kv
 * head h / (n_q_heads / n_kv_heads). Keys turbo-mse or turbo-prod (MSE part `key_bits`, QJL signs with m = d),
 * values turbo-mse, fp16 norms. Each kv head has its own rotation (and S) for keys and for values. The kernel
 * rotates each query once (and forms S q once), scores keys straight from the packed codes against the codebook,
 * splits the sequence across blocks with an online softmax merged afterwards (flash-decoding), accumulates values in
 * the rotated space and rotates back once per query. Scale 1/sqrt(d). Arithmetic is fp32 except where the tensor-core
 * kernels run (d = 128; turbo-mse keys/values 2/2, 3/3, 4/4 bits, turbo-prod MSE bits 1, 2, 3 with values of one bit
 * more; groups of 4 query heads, and for 3/3 and 2/3 any group size, 8 heads a block where G % 8 == 0): fp16 query, S q, centroids and softmax
 * weights, fp32 accumulation, outputs within ~6e-4 relative of exact (variant attn=t64: the fp32 kernels). */
typedef struct {
    int d;                    /* 64, 128 or 256 */
    int n_kv_heads;
    int key_method;           /* TQ_M_TURBO_MSE or TQ_M_TURBO_PROD */
    int key_bits, value_bits; /* MSE bits of the key codes (turbo-prod: b - 1) and the value codes, 1..4 */
    int rotation;             /* TQ_ROT_HADAMARD or TQ_ROT_DENSE, keys and values alike */
    const float *key_rot, *value_rot; /* dense: [n_kv_heads][d][d]; hadamard: signs [n_kv_heads][d] */
    const float *key_centroids, *value_centroids; /* 2^bits each */
    const float *key_S;       /* turbo-prod: [n_kv_heads][d][d] */
} tq_cuda_attn_spec;

typedef struct tq_cuda_attn tq_cuda_attn;

/* The cache on the device, every array [B][n_kv_heads][L] rows (the sections of tq_cuda_codes per kv head). */
typedef struct {
    const uint8_t *k_codes;
    const uint16_t *k_norms;
    const uint8_t *k_signs;   /* turbo-prod */
    const uint16_t *k_rnorms; /* turbo-prod */
    const uint8_t *v_codes;
    const uint16_t *v_norms;
} tq_cuda_kv;

int tq_cuda_attn_create(tq_cuda_attn **out, const tq_cuda_attn_spec *spec);
void tq_cuda_attn_free(tq_cuda_attn *a);
/* q: [B][n_q_heads][d] float on the device; out: the same shape. Workspace grows inside `a` as needed. */
int tq_cuda_attn_decode(tq_cuda_attn *a, int B, int n_q_heads, long L, const float *q, const tq_cuda_kv *kv,
                        float *out);

/* A sliding-window layer: attend only the last `window` of the L cached tokens of each (batch, kv head) (window 0 or
 * >= L: all of them, as tq_cuda_attn_decode); the cache keeps its [B][n_kv_heads][L] layout. */
int tq_cuda_attn_decode_window(tq_cuda_attn *a, int B, int n_q_heads, long L, long window, const float *q,
                               const tq_cuda_kv *kv, float *out);

/* Baseline: flash-decoding over an fp16 cache k, v: [B][n_kv_heads][L][d] half; q, out as above. */
int tq_cuda_attn_fp16(int B, int n_q_heads, int n_kv_heads, long L, int d, const float *q, const uint16_t *k,
                      const uint16_t *v, float *out);

/* ---- the model loop on the GPU (lib/cuda/model.cu) ---------------------------------------------------------
 * The forward pass of lib/model.c (llama, qwen2, gemma2, gemma3) one token per step on the device: the float32
 * weights tq_model_load dequantized, uploaded once as fp16 (or fp32), a warp-per-row matrix-vector kernel for every
 * dense layer (fp32 accumulation, fp32 activations: only the weights carry fp16 rounding), one small kernel per
 * element-wise step (RMSNorm, QK-norm, RoPE with the layer's frequencies, GQA/MQA, sliding windows, soft-caps,
 * SwiGLU/GeGLU, sandwich norms). A cache holds `capacity` positions and is one of:
 *   TQ_CUDA_CACHE_F16    K/V rows stored as fp16; attention by the flash-decoding fp16 kernel (tq_cuda_attn_fp16)
 *                        where the layer has no soft-cap, else by the plain reference kernel
 *   TQ_CUDA_CACHE_F32    K/V rows stored as fp32; the plain reference kernel (one block per query head, fp32
 *                        scores, softmax and weighted sum): with fp32 weights, the CPU forward up to float rounding
 *   TQ_CUDA_CACHE_QUANT  each new K/V row encoded on the device (tq_cuda_encode) into packed codes, attention by the
 *                        fused decode kernels straight on the codes (tq_cuda_attn_decode_window), one quantizer per
 *                        (layer, kv head, tensor); layers flagged in `keep` hold fp16 rows instead. */
#include "model.h"

enum { TQ_CUDA_CACHE_F16 = 0, TQ_CUDA_CACHE_F32 = 1, TQ_CUDA_CACHE_QUANT = 2 };

typedef struct tq_cuda_model tq_cuda_model;
typedef struct tq_cuda_cache tq_cuda_cache;

typedef struct {
    int kind;                   /* TQ_CUDA_CACHE_* */
    int capacity;               /* positions */
    /* TQ_CUDA_CACHE_QUANT: [n_layers][n_kv_heads] key and value quantizers (host arrays, read during create):
     * keys turbo-mse (bits 1..4) or turbo-prod (MSE bits 1..3, m = d), values turbo-mse (1..4 bits), fp16 norms,
     * one rotation kind (hadamard or dense) for both, head dim 64, 128 or 256 */
    const tq_cuda_qspec *kq, *vq;
    const unsigned char *keep;  /* NULL, or [n_layers]: 1 = that layer's rows stay fp16 */
    int ref_attn;               /* fp16 rows: 1 = the plain reference kernel instead of flash-decoding (tests) */
} tq_cuda_cache_spec;

/* Upload m's weights: fp16 (fp32_weights 0: half the bytes to read per token) or fp32 (for tests that want the CPU's
 * numbers up to float rounding). The result keeps its own copies: m may be freed before it. TQ_ERR_NOCUDA in a
 * CPU-only build; TQ_ERR_USAGE for a head dim other than 64, 128 or 256. */
int tq_cuda_model_create(tq_model *m, int fp32_weights, tq_cuda_model **out);
void tq_cuda_model_free(tq_cuda_model *g);
int tq_cuda_model_fp32(const tq_cuda_model *g); /* 1: fp32 weights (the reference cache is then fp32 too) */
int tq_cuda_cache_create(tq_cuda_model *g, const tq_cuda_cache_spec *spec, tq_cuda_cache **out);
void tq_cuda_cache_free(tq_cuda_cache *c);
void tq_cuda_cache_reset(tq_cuda_cache *c); /* forget every position */
int tq_cuda_cache_len(const tq_cuda_cache *c);
/* One decoding step: `token` at position len of the cache, its K/V appended; logits (NULL, or n_vocab floats on the
 * host) = the next-token logits. TQ_ERR_USAGE for a token outside the vocabulary or a full cache. */
int tq_cuda_model_step(tq_cuda_model *g, tq_cuda_cache *c, int32_t token, float *logits);

#ifdef __cplusplus
}
#endif

#endif
