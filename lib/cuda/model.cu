/* model.cu: lib/model.c's forward pass on the GPU, one token per step — weights uploaded once (fp16 or fp32), a
 * matrix-vector kernel for the dense layers, one plain kernel per element-wise step — over a KV cache held on the
 * device as fp16/fp32 rows or as packed TurboQuant codes written by the CUDA encoders and read by the fused decode
 * kernels. Every kernel here is the simple form (a warp per output row, a block per norm row or head, fp32
 * arithmetic, double where lib/model.c sums in double). Decoding one token is a matrix-vector product per layer, a
 * pure read of the weights, so a warp-per-row kernel is as fast as a GEMM library's there; and cuBLAS has no static
 * library on the machine that builds the carried binaries (only its 600 MB of shared objects). */
#include "common.cuh"

#include <stdlib.h>
#include <string.h>

#define NT 256 /* threads of the row kernels */

struct dlayer {
    void *wq, *wk, *wv, *wo, *wg, *wu, *wd; /* [out][in], half or float */
    float *attn_norm, *bq, *bk, *bv, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;
    double *inv_freq;
};

struct tq_cuda_model {
    tq_model_config cfg;    /* a copy; cfg.layer points at attn */
    tq_layer_attn *attn;
    int fp32, gelu;
    void *embd, *out;       /* [V][E]; out == embd when tied */
    float *out_norm;
    dlayer *L;
    /* one step's activations: x (residual stream), xb, q, qs (q scaled for the packed kernels), k, v, att, gt, up,
     * logits */
    float *x, *xb, *q, *qs, *k, *v, *att, *gt, *up, *logits;
};

struct qslice {
    tq_cuda_quant *kq, *vq;
    tq_cuda_attn *a;
    tq_cuda_codes kc, vc;   /* row 0 of each section, capacity rows */
    size_t krow, ksrow, vrow; /* bytes per row of key codes, key signs, value codes */
};

struct tq_cuda_cache {
    tq_cuda_model *g;
    int kind, cap, len, ref_attn;
    void **k, **v;          /* [L]: [KV][cap][D] rows (half, or float for F32), NULL for a quantized layer */
    qslice *qs;             /* [L][KV] (QUANT) */
    unsigned char *quant;   /* [L]: 1 = the layer's cache is packed codes */
    float *sc;              /* [H][cap]: the reference kernel's scores */
};

/* ------------------------------------------------------------------------------------------------------------
 * Kernels */

/* sum over the block (blockDim.x a multiple of 32, at most 1024) of one double per thread; every thread gets it */
__device__ double block_sum_d(double v)
{
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(TQ_FULL_MASK, v, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0) part[w] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++) s += part[i];
    return s;
}

__device__ float block_max_f(float v)
{
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(TQ_FULL_MASK, v, o));
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    float m = part[0];
    for (int i = 1; i < nw; i++) m = fmaxf(m, part[i]);
    return m;
}

template <typename T> __device__ __forceinline__ float ld(const T *p, size_t i);
template <> __device__ __forceinline__ float ld<float>(const float *p, size_t i) { return p[i]; }
template <> __device__ __forceinline__ float ld<uint16_t>(const uint16_t *p, size_t i) { return tq_cu_half(p[i]); }
template <typename T> __device__ __forceinline__ T st_of(float f);
template <> __device__ __forceinline__ float st_of<float>(float f) { return f; }
template <> __device__ __forceinline__ uint16_t st_of<uint16_t>(float f) { return tq_cu_to_half(f); }

/* x[i] = embd[token][i] * scale (lib/model.c: e[i] * embd_scale) */
template <typename T>
__global__ void k_embed(float *x, const T *embd, int token, int E, float scale)
{
    for (int i = threadIdx.x; i < E; i += blockDim.x) x[i] = ld(embd, (size_t)token * E + i) * scale;
}

/* y[o] = sum_i W[o][i] x[i], one warp per output row: each lane sums the terms i = lane mod 32 in fp32 (weights
 * converted exactly from fp16), then the warp's butterfly. Activations stay fp32: only the weights carry fp16
 * rounding. 8 rows a block. */
template <typename T>
__global__ void k_matvec(float *y, const T *W, const float *x, int in, int out)
{
    const int lane = threadIdx.x & 31, row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= out) return;
    const T *w = W + (size_t)row * in;
    float acc = 0;
    for (int i = lane; i < in; i += 32) acc += ld(w, i) * __ldg(x + i);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(TQ_FULL_MASK, acc, o);
    if (lane == 0) y[row] = acc;
}

/* The same for fp16 weights of an even row length, two weights per 32-bit load (a warp reads 128 contiguous bytes). */
__global__ void k_matvec_h2(float *y, const uint16_t *W, const float *x, int in, int out)
{
    const int lane = threadIdx.x & 31, row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= out) return;
    const __half2 *w = (const __half2 *)(W + (size_t)row * in);
    const float2 *x2 = (const float2 *)x;
    float acc = 0;
    for (int i = lane; i < in / 2; i += 32) {
        float2 wf = __half22float2(w[i]), xf = __ldg(x2 + i);
        acc += wf.x * xf.x;
        acc += wf.y * xf.y;
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(TQ_FULL_MASK, acc, o);
    if (lane == 0) y[row] = acc;
}

/* RMSNorm of `rows` rows of dim floats, one block per row: the sum of squares in double, then
 * y = x * (float)(1 / sqrt(ss / dim + eps)) * w, as lib/model.c's rms_norm. In place allowed (each thread rewrites
 * only the elements it read, after the block's sum). */
__global__ void k_rmsnorm(float *y, const float *x, const float *w, int dim, float eps)
{
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    double ss = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum_d(ss);
    float scale = (float)(1.0 / sqrt(ss / dim + eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

__global__ void k_add(float *x, const float *y, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] += y[i];
}

__global__ void k_scale(float *y, const float *x, int n, float f)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = x[i] * f;
}

__global__ void k_softcap(float *x, int n, float cap)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

/* gt = act(gt) * up: SwiGLU (silu) or GeGLU (tanh GELU), lib/model.c's formulas */
__global__ void k_glu(float *gt, const float *up, int n, int gelu)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float g = gt[i];
        if (gelu) {
            const float k = 0.7978845608028654f;
            g = 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)));
        } else
            g = g / (1.0f + expf(-g));
        gt[i] = g * up[i];
    }
}

/* Rotate-half RoPE of every head (one block per head, D/2 threads' worth of pairs): channel i with i + D/2 at angle
 * pos * inv_freq[i], cos and sin in double rounded to float (lib/model.c's rope_table). */
__global__ void k_rope(float *x, int D, const double *inv_freq, int pos)
{
    float *xh = x + (size_t)blockIdx.x * D;
    int h = D / 2;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        double a = (double)pos * inv_freq[i];
        float cs = (float)cos(a), sn = (float)sin(a);
        float x1 = xh[i], x2 = xh[i + h];
        xh[i] = x1 * cs - x2 * sn;
        xh[i + h] = x2 * cs + x1 * sn;
    }
}

/* k/v rows of this position into a layer's [KV][cap][D] arrays */
template <typename T>
__global__ void k_store(T *kc, T *vc, const float *k, const float *v, int D, int cap, int pos)
{
    int h = blockIdx.x;
    size_t o = ((size_t)h * cap + pos) * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        kc[o + c] = st_of<T>(k[(size_t)h * D + c]);
        vc[o + c] = st_of<T>(v[(size_t)h * D + c]);
    }
}

/* Reference attention of one query (the newest position, len - 1) per block and query head over keys [lo, len - 1]
 * of its kv head (h / G): scores scale * q.k in fp32 (then the soft-cap), softmax with the max subtracted and the sum
 * in double, the weighted sum of values in fp32 in order of position. sc: [H][cap] scratch. */
template <typename T>
__global__ void k_attn_ref(float *out, const float *q, const T *K, const T *V, int G, int cap, int D, int lo, int len,
                           float scale, float softcap, float *sc)
{
    const int h = blockIdx.x, kv = h / G;
    const float *qh = q + (size_t)h * D;
    const T *Kh = K + (size_t)kv * cap * D, *Vh = V + (size_t)kv * cap * D;
    float *s = sc + (size_t)h * cap;
    float mx = -INFINITY;
    for (int j = lo + threadIdx.x; j < len; j += blockDim.x) {
        float acc = 0;
        for (int c = 0; c < D; c++) acc += qh[c] * ld(Kh, (size_t)j * D + c);
        float v = scale * acc;
        if (softcap > 0) v = softcap * tanhf(v / softcap);
        s[j] = v;
        mx = fmaxf(mx, v);
    }
    mx = block_max_f(mx);
    double sum = 0;
    for (int j = lo + threadIdx.x; j < len; j += blockDim.x) {
        float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    sum = block_sum_d(sum); /* its __syncthreads also publishes s[] */
    float inv = (float)(1.0 / sum);
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = 0;
        for (int j = lo; j < len; j++) acc += (s[j] * inv) * ld(Vh, (size_t)j * D + c);
        out[(size_t)h * D + c] = acc;
    }
}

static unsigned grid_of(long n) { return (unsigned)((n + NT - 1) / NT < 4096 ? (n + NT - 1) / NT : 4096); }

/* ------------------------------------------------------------------------------------------------------------
 * Model */

static int up_f32(float **dev, const float *host, size_t n)
{
    *dev = NULL;
    if (!host) return TQ_OK;
    int st = tq_cuda_alloc((void **)dev, n * sizeof(float));
    return st ? st : tq_cuda_upload(*dev, host, n * sizeof(float));
}

/* A weight matrix of n floats: as is (fp32) or converted to half on the device through tmp (n floats of scratch). */
static int up_w(tq_cuda_model *g, void **dev, const float *host, size_t n, float *tmp)
{
    *dev = NULL;
    if (g->fp32) return up_f32((float **)dev, host, n);
    int st = tq_cuda_alloc(dev, n * sizeof(uint16_t));
    if (!st) st = tq_cuda_upload(tmp, host, n * sizeof(float));
    if (!st) st = tq_cuda_to_half((uint16_t *)*dev, tmp, (long)n);
    return st;
}

extern "C" void tq_cuda_model_free(tq_cuda_model *g)
{
    if (!g) return;
    if (g->L) {
        for (int l = 0; l < g->cfg.n_layers; l++) {
            dlayer *d = &g->L[l];
            void *ps[] = {d->wq, d->wk, d->wv, d->wo, d->wg, d->wu, d->wd, d->attn_norm, d->bq, d->bk, d->bv,
                          d->q_norm, d->k_norm, d->post_attn_norm, d->ffn_norm, d->post_ffw_norm, d->inv_freq};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) tq_cuda_free(ps[i]);
        }
        free(g->L);
    }
    if (g->out != g->embd) tq_cuda_free(g->out);
    tq_cuda_free(g->embd);
    void *bufs[] = {g->out_norm, g->x, g->xb, g->q, g->qs, g->k, g->v, g->att, g->gt, g->up, g->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tq_cuda_free(bufs[i]);
    free(g->attn);
    free(g);
}

extern "C" int tq_cuda_model_fp32(const tq_cuda_model *g) { return g && g->fp32; }

extern "C" int tq_cuda_model_create(tq_model *m, int fp32_weights, tq_cuda_model **out)
{
    *out = NULL;
    const tq_model_config *c = tq_model_get_config(m);
    if (c->head_dim != 64 && c->head_dim != 128 && c->head_dim != 256)
        return tq_error_set(TQ_ERR_USAGE, "cuda model loop: head dim %d unsupported (64, 128 or 256)", c->head_dim);
    tq_model_weights w;
    int st = tq_cuda_device(NULL, 0, NULL, NULL);
    if (st) return st;
    if ((st = tq_model_get_weights(m, &w)) < 0) return st;
    tq_cuda_model *g = (tq_cuda_model *)calloc(1, sizeof *g);
    if (!g) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    g->cfg = *c;
    g->attn = (tq_layer_attn *)malloc((size_t)c->n_layers * sizeof *g->attn);
    g->L = (dlayer *)calloc((size_t)c->n_layers, sizeof *g->L);
    if (!g->attn || !g->L) {
        tq_cuda_model_free(g);
        return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    }
    memcpy(g->attn, c->layer, (size_t)c->n_layers * sizeof *g->attn);
    g->cfg.layer = g->attn;
    g->fp32 = fp32_weights != 0;
    g->gelu = w.gelu;
    const size_t E = c->n_embd, F = c->n_ff, D = c->head_dim, H = c->n_head, KV = c->n_kv_head, V = c->n_vocab;
    const size_t QD = H * D, KD = KV * D;
    size_t big = V * E; /* the largest matrix: the conversion scratch */
    if (QD * E > big) big = QD * E;
    if (F * E > big) big = F * E;
    float *tmp = NULL;
    if (!g->fp32) st = tq_cuda_alloc((void **)&tmp, big * sizeof(float));
    if (!st) st = up_w(g, &g->embd, w.tok_embd, V * E, tmp);
    if (!st) {
        if (w.output == w.tok_embd) g->out = g->embd;
        else st = up_w(g, &g->out, w.output, V * E, tmp);
    }
    if (!st) st = up_f32(&g->out_norm, w.output_norm, E);
    for (int l = 0; l < c->n_layers && !st; l++) {
        const tq_layer_weights *s = &w.layer[l];
        dlayer *d = &g->L[l];
        if (!st) st = up_w(g, &d->wq, s->wq, QD * E, tmp);
        if (!st) st = up_w(g, &d->wk, s->wk, KD * E, tmp);
        if (!st) st = up_w(g, &d->wv, s->wv, KD * E, tmp);
        if (!st) st = up_w(g, &d->wo, s->wo, E * QD, tmp);
        if (!st) st = up_w(g, &d->wg, s->w_gate, F * E, tmp);
        if (!st) st = up_w(g, &d->wu, s->w_up, F * E, tmp);
        if (!st) st = up_w(g, &d->wd, s->w_down, E * F, tmp);
        if (!st) st = up_f32(&d->attn_norm, s->attn_norm, E);
        if (!st) st = up_f32(&d->bq, s->bq, QD);
        if (!st) st = up_f32(&d->bk, s->bk, KD);
        if (!st) st = up_f32(&d->bv, s->bv, KD);
        if (!st) st = up_f32(&d->q_norm, s->q_norm, D);
        if (!st) st = up_f32(&d->k_norm, s->k_norm, D);
        if (!st) st = up_f32(&d->post_attn_norm, s->post_attn_norm, E);
        if (!st) st = up_f32(&d->ffn_norm, s->ffn_norm, E);
        if (!st) st = up_f32(&d->post_ffw_norm, s->post_ffw_norm, E);
        if (!st) st = tq_cuda_alloc((void **)&d->inv_freq, D / 2 * sizeof(double));
        if (!st) st = tq_cuda_upload(d->inv_freq, s->inv_freq, D / 2 * sizeof(double));
    }
    float **acts[] = {&g->x, &g->xb, &g->q, &g->qs, &g->k, &g->v, &g->att, &g->gt, &g->up, &g->logits};
    size_t sizes[] = {E, E, QD, QD, KD, KD, QD, F, F, V};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !st; i++)
        st = tq_cuda_alloc((void **)acts[i], sizes[i] * sizeof(float));
    if (!st) st = tq_cuda_sync(); /* the conversions into tmp finished before it is freed */
    tq_cuda_free(tmp);
    if (st) {
        tq_cuda_model_free(g);
        return st;
    }
    *out = g;
    return TQ_OK;
}

/* y[out] = W[out][in] x[in] */
static int matvec(tq_cuda_model *g, float *y, const float *x, const void *W, int in, int out)
{
    const unsigned blocks = (unsigned)((out + 7) / 8);
    if (g->fp32) k_matvec<float><<<blocks, 256>>>(y, (const float *)W, x, in, out);
    else if (in % 2 == 0) k_matvec_h2<<<blocks, 256>>>(y, (const uint16_t *)W, x, in, out);
    else k_matvec<uint16_t><<<blocks, 256>>>(y, (const uint16_t *)W, x, in, out);
    TQ_CU_LAUNCH("cuda model: matvec");
    return TQ_OK;
}

/* ------------------------------------------------------------------------------------------------------------
 * Cache */

extern "C" void tq_cuda_cache_free(tq_cuda_cache *c)
{
    if (!c) return;
    const tq_model_config *mc = &c->g->cfg;
    for (int l = 0; l < mc->n_layers; l++) {
        if (c->k) tq_cuda_free(c->k[l]);
        if (c->v) tq_cuda_free(c->v[l]);
        for (int h = 0; c->qs && h < mc->n_kv_head; h++) {
            qslice *s = &c->qs[(size_t)l * mc->n_kv_head + h];
            tq_cuda_quant_free(s->kq);
            tq_cuda_quant_free(s->vq);
            tq_cuda_attn_free(s->a);
            void *ps[] = {s->kc.codes, s->kc.norms, s->kc.signs, s->kc.rnorms, s->vc.codes, s->vc.norms};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) tq_cuda_free(ps[i]);
        }
    }
    free(c->k);
    free(c->v);
    free(c->qs);
    free(c->quant);
    tq_cuda_free(c->sc);
    free(c);
}

/* Why the fused kernels cannot hold (layer, kv head)'s quantizers, or NULL. */
static const char *qspec_refusal(const tq_cuda_qspec *k, const tq_cuda_qspec *v, int d)
{
    if (k->method != TQ_M_TURBO_MSE && k->method != TQ_M_TURBO_PROD) return "keys must be turbo-mse or turbo-prod";
    if (v->method != TQ_M_TURBO_MSE) return "values must be turbo-mse (e.g. --values turbo-mse:3)";
    if (k->d != d || v->d != d) return "a quantizer's head dim differs from the model's";
    if (k->bits < 1 || k->bits > (k->method == TQ_M_TURBO_PROD ? 3 : 4))
        return "key MSE bits outside 1..4 (turbo-prod: 2..4 bits in all)";
    if (v->bits < 1 || v->bits > 4) return "value bits outside 1..4";
    if (k->rotation != v->rotation || (k->rotation != TQ_ROT_HADAMARD && k->rotation != TQ_ROT_DENSE))
        return "keys and values need the same rotation, hadamard or dense";
    if (k->norm_fp32 || v->norm_fp32) return "norms must be fp16 (drop --norms fp32)";
    if (k->method == TQ_M_TURBO_PROD && k->m != d) return "turbo-prod needs m = d projections";
    return NULL;
}

extern "C" int tq_cuda_cache_create(tq_cuda_model *g, const tq_cuda_cache_spec *sp, tq_cuda_cache **out)
{
    *out = NULL;
    const tq_model_config *mc = &g->cfg;
    const int L = mc->n_layers, KV = mc->n_kv_head, D = mc->head_dim, H = mc->n_head;
    if (sp->capacity < 1) return tq_error_set(TQ_ERR_USAGE, "cuda cache: capacity %d must be positive", sp->capacity);
    if (sp->kind != TQ_CUDA_CACHE_F16 && sp->kind != TQ_CUDA_CACHE_F32 && sp->kind != TQ_CUDA_CACHE_QUANT)
        return tq_error_set(TQ_ERR_USAGE, "cuda cache: unknown kind %d", sp->kind);
    if (sp->kind == TQ_CUDA_CACHE_QUANT) {
        if (!sp->kq || !sp->vq) return tq_error_set(TQ_ERR_USAGE, "cuda cache: quantized without quantizers");
        for (int l = 0; l < L; l++) {
            if (sp->keep && sp->keep[l]) continue;
            if (mc->layer[l].attn_softcap > 0)
                return tq_error_set(TQ_ERR_USAGE, "cuda cache: layer %d soft-caps its scores, which the fused "
                                    "kernels do not; keep the layer exact (--keep-layers) or use --device cpu", l);
            for (int h = 0; h < KV; h++) {
                const char *why = qspec_refusal(&sp->kq[l * KV + h], &sp->vq[l * KV + h], D);
                if (why) return tq_error_set(TQ_ERR_USAGE, "cuda cache, layer %d kv head %d: %s", l, h, why);
            }
        }
    }
    tq_cuda_cache *c = (tq_cuda_cache *)calloc(1, sizeof *c);
    if (!c) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    c->g = g;
    c->kind = sp->kind;
    c->cap = sp->capacity;
    c->ref_attn = sp->ref_attn;
    c->k = (void **)calloc((size_t)L, sizeof *c->k);
    c->v = (void **)calloc((size_t)L, sizeof *c->v);
    c->quant = (unsigned char *)calloc((size_t)L, 1);
    int st = c->k && c->v && c->quant ? TQ_OK : tq_error_set(TQ_ERR_NOMEM, "out of memory");
    if (!st && sp->kind == TQ_CUDA_CACHE_QUANT && !(c->qs = (qslice *)calloc((size_t)L * KV, sizeof *c->qs)))
        st = tq_error_set(TQ_ERR_NOMEM, "out of memory");
    if (!st) st = tq_cuda_alloc((void **)&c->sc, (size_t)H * c->cap * sizeof(float));
    const size_t rows = (size_t)KV * c->cap * D;
    for (int l = 0; l < L && !st; l++) {
        c->quant[l] = sp->kind == TQ_CUDA_CACHE_QUANT && !(sp->keep && sp->keep[l]);
        if (!c->quant[l]) {
            size_t el = sp->kind == TQ_CUDA_CACHE_F32 ? sizeof(float) : sizeof(uint16_t);
            st = tq_cuda_alloc(&c->k[l], rows * el);
            if (!st) st = tq_cuda_alloc(&c->v[l], rows * el);
            continue;
        }
        for (int h = 0; h < KV && !st; h++) {
            const tq_cuda_qspec *ks = &sp->kq[l * KV + h], *vs = &sp->vq[l * KV + h];
            qslice *s = &c->qs[(size_t)l * KV + h];
            const int prod = ks->method == TQ_M_TURBO_PROD;
            s->krow = tq_pack_row_bytes(D, ks->bits);
            s->ksrow = prod ? tq_pack_row_bytes(D, 1) : 0;
            s->vrow = tq_pack_row_bytes(D, vs->bits);
            st = tq_cuda_quant_create(&s->kq, ks);
            if (!st) st = tq_cuda_quant_create(&s->vq, vs);
            const int dense = ks->rotation == TQ_ROT_DENSE;
            tq_cuda_attn_spec as = {D, 1, ks->method, ks->bits, vs->bits, ks->rotation,
                                    dense ? ks->rot : ks->signs, dense ? vs->rot : vs->signs, ks->centroids,
                                    vs->centroids, prod ? ks->S : NULL};
            if (!st) st = tq_cuda_attn_create(&s->a, &as);
            if (!st) st = tq_cuda_alloc((void **)&s->kc.codes, s->krow * c->cap);
            if (!st) st = tq_cuda_alloc(&s->kc.norms, sizeof(uint16_t) * c->cap);
            if (!st && prod) st = tq_cuda_alloc((void **)&s->kc.signs, s->ksrow * c->cap);
            if (!st && prod) st = tq_cuda_alloc(&s->kc.rnorms, sizeof(uint16_t) * c->cap);
            if (!st) st = tq_cuda_alloc((void **)&s->vc.codes, s->vrow * c->cap);
            if (!st) st = tq_cuda_alloc(&s->vc.norms, sizeof(uint16_t) * c->cap);
        }
    }
    if (st) {
        tq_cuda_cache_free(c);
        return st;
    }
    *out = c;
    return TQ_OK;
}

extern "C" void tq_cuda_cache_reset(tq_cuda_cache *c) { c->len = 0; }
extern "C" int tq_cuda_cache_len(const tq_cuda_cache *c) { return c->len; }

/* ------------------------------------------------------------------------------------------------------------
 * One step */

/* Layer l's attention of the newest position (pos) into g->att, after q (RoPE'd) and k, v are ready. */
static int attend(tq_cuda_model *g, tq_cuda_cache *c, int l, int pos)
{
    const tq_model_config *mc = &g->cfg;
    const tq_layer_attn *a = &mc->layer[l];
    const int D = mc->head_dim, H = mc->n_head, KV = mc->n_kv_head, G = H / KV, len = pos + 1;
    const int W = a->sliding_window, lo = W && len - W > 0 ? len - W : 0; /* keys (pos - W, pos] */
    int st;
    if (!c->quant[l]) {
        if (c->kind == TQ_CUDA_CACHE_F32) {
            k_store<float><<<KV, 128>>>((float *)c->k[l], (float *)c->v[l], g->k, g->v, D, c->cap, pos);
            k_attn_ref<float><<<H, NT>>>(g->att, g->q, (const float *)c->k[l], (const float *)c->v[l], G, c->cap, D,
                                         lo, len, a->attn_scale, a->attn_softcap, c->sc);
            TQ_CU_LAUNCH("cuda model: attention (fp32 cache)");
            return TQ_OK;
        }
        uint16_t *K = (uint16_t *)c->k[l], *V = (uint16_t *)c->v[l];
        k_store<uint16_t><<<KV, 128>>>(K, V, g->k, g->v, D, c->cap, pos);
        TQ_CU_LAUNCH("cuda model: cache write");
        if (c->ref_attn || a->attn_softcap > 0) {
            k_attn_ref<uint16_t><<<H, NT>>>(g->att, g->q, K, V, G, c->cap, D, lo, len, a->attn_scale,
                                            a->attn_softcap, c->sc);
            TQ_CU_LAUNCH("cuda model: attention (fp16 cache)");
            return TQ_OK;
        }
        /* the flash-decoding fp16 kernel scales by 1/sqrt(d): the query carries attn_scale * sqrt(d) instead; the
         * window is the rows [lo, len) of each kv head, an offset and a length */
        k_scale<<<grid_of(H * D), NT>>>(g->qs, g->q, H * D, (float)(a->attn_scale * sqrt((double)D)));
        TQ_CU_LAUNCH("cuda model: query scale");
        for (int h = 0; h < KV; h++) {
            size_t o = ((size_t)h * c->cap + lo) * D;
            if ((st = tq_cuda_attn_fp16(1, G, 1, len - lo, D, g->qs + (size_t)h * G * D, K + o, V + o,
                                        g->att + (size_t)h * G * D)))
                return st;
        }
        return TQ_OK;
    }
    /* packed codes: encode this position's rows, then the fused kernel over rows [0, len) with the window */
    k_scale<<<grid_of(H * D), NT>>>(g->qs, g->q, H * D, (float)(a->attn_scale * sqrt((double)D)));
    TQ_CU_LAUNCH("cuda model: query scale");
    for (int h = 0; h < KV; h++) {
        qslice *s = &c->qs[(size_t)l * KV + h];
        tq_cuda_codes kc = {s->kc.codes + s->krow * pos, (uint16_t *)s->kc.norms + pos,
                            s->kc.signs ? s->kc.signs + s->ksrow * pos : NULL,
                            s->kc.rnorms ? (uint16_t *)s->kc.rnorms + pos : NULL};
        tq_cuda_codes vc = {s->vc.codes + s->vrow * pos, (uint16_t *)s->vc.norms + pos, NULL, NULL};
        if ((st = tq_cuda_encode(s->kq, g->k + (size_t)h * D, 0, 1, &kc))) return st;
        if ((st = tq_cuda_encode(s->vq, g->v + (size_t)h * D, 0, 1, &vc))) return st;
        tq_cuda_kv kv = {s->kc.codes, (const uint16_t *)s->kc.norms, s->kc.signs, (const uint16_t *)s->kc.rnorms,
                         s->vc.codes, (const uint16_t *)s->vc.norms};
        if ((st = tq_cuda_attn_decode_window(s->a, 1, G, len, W, g->qs + (size_t)h * G * D, &kv,
                                             g->att + (size_t)h * G * D)))
            return st;
    }
    return TQ_OK;
}

extern "C" int tq_cuda_model_step(tq_cuda_model *g, tq_cuda_cache *c, int32_t token, float *logits)
{
    const tq_model_config *mc = &g->cfg;
    if (c->g != g) return tq_error_set(TQ_ERR_USAGE, "cuda cache belongs to another model");
    if (token < 0 || token >= mc->n_vocab)
        return tq_error_set(TQ_ERR_USAGE, "token id %d is outside the vocabulary [0, %d)", token, mc->n_vocab);
    if (c->len >= c->cap)
        return tq_error_set(TQ_ERR_USAGE, "cuda cache full: %d positions held, capacity %d", c->len, c->cap);
    const int E = mc->n_embd, F = mc->n_ff, D = mc->head_dim, H = mc->n_head, KV = mc->n_kv_head, pos = c->len;
    const int QD = H * D, KD = KV * D;
    const float eps = mc->norm_eps;
    int st;
    if (g->fp32) k_embed<float><<<1, NT>>>(g->x, (const float *)g->embd, token, E, mc->embd_scale);
    else k_embed<uint16_t><<<1, NT>>>(g->x, (const uint16_t *)g->embd, token, E, mc->embd_scale);
    TQ_CU_LAUNCH("cuda model: embedding");
    for (int l = 0; l < mc->n_layers; l++) {
        const dlayer *w = &g->L[l];
        k_rmsnorm<<<1, NT>>>(g->xb, g->x, w->attn_norm, E, eps);
        TQ_CU_LAUNCH("cuda model: rmsnorm");
        if ((st = matvec(g, g->q, g->xb, w->wq, E, QD)) || (st = matvec(g, g->k, g->xb, w->wk, E, KD)) ||
            (st = matvec(g, g->v, g->xb, w->wv, E, KD)))
            return st;
        if (w->bq) {
            k_add<<<grid_of(QD), NT>>>(g->q, w->bq, QD);
            k_add<<<grid_of(KD), NT>>>(g->k, w->bk, KD);
            k_add<<<grid_of(KD), NT>>>(g->v, w->bv, KD);
        }
        if (w->q_norm) { /* QK-norm: RMSNorm of each head over head_dim, before RoPE */
            k_rmsnorm<<<H, 64>>>(g->q, g->q, w->q_norm, D, eps);
            k_rmsnorm<<<KV, 64>>>(g->k, g->k, w->k_norm, D, eps);
        }
        k_rope<<<H, 64>>>(g->q, D, w->inv_freq, pos);
        k_rope<<<KV, 64>>>(g->k, D, w->inv_freq, pos);
        TQ_CU_LAUNCH("cuda model: q/k");
        if ((st = attend(g, c, l, pos))) return st;
        if ((st = matvec(g, g->xb, g->att, w->wo, QD, E))) return st;
        if (w->post_attn_norm) k_rmsnorm<<<1, NT>>>(g->xb, g->xb, w->post_attn_norm, E, eps);
        k_add<<<grid_of(E), NT>>>(g->x, g->xb, E);
        k_rmsnorm<<<1, NT>>>(g->xb, g->x, w->ffn_norm, E, eps);
        TQ_CU_LAUNCH("cuda model: attention output");
        if ((st = matvec(g, g->gt, g->xb, w->wg, E, F)) || (st = matvec(g, g->up, g->xb, w->wu, E, F))) return st;
        k_glu<<<grid_of(F), NT>>>(g->gt, g->up, F, g->gelu);
        TQ_CU_LAUNCH("cuda model: glu");
        if ((st = matvec(g, g->xb, g->gt, w->wd, F, E))) return st;
        if (w->post_ffw_norm) k_rmsnorm<<<1, NT>>>(g->xb, g->xb, w->post_ffw_norm, E, eps);
        k_add<<<grid_of(E), NT>>>(g->x, g->xb, E);
        TQ_CU_LAUNCH("cuda model: ffn output");
    }
    c->len = pos + 1;
    if (!logits) return TQ_OK;
    k_rmsnorm<<<1, NT>>>(g->xb, g->x, g->out_norm, E, eps);
    TQ_CU_LAUNCH("cuda model: output norm");
    if ((st = matvec(g, g->logits, g->xb, g->out, E, mc->n_vocab))) return st;
    if (mc->final_softcap > 0) {
        k_softcap<<<grid_of(mc->n_vocab), NT>>>(g->logits, mc->n_vocab, mc->final_softcap);
        TQ_CU_LAUNCH("cuda model: final soft-cap");
    }
    return tq_cuda_download(logits, g->logits, (size_t)mc->n_vocab * sizeof(float));
}
