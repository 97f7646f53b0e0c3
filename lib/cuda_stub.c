/* cuda_stub.c: the CUDA entry points of lib/cuda/tq_cuda.h in a build without CUDA (TQ_HAVE_CUDA=0). Each one says
 * "built without CUDA" through the error channel and returns TQ_ERR_NOCUDA, so `--device cuda` fails clearly instead
 * of pretending to work. With CUDA=1 this file compiles to nothing and the lib/cuda/ sources provide the symbols. */
#include "tq.h"

#if !TQ_HAVE_CUDA
#include "cuda/tq_cuda.h"

static int nocuda(void)
{
    return tq_error_set(TQ_ERR_NOCUDA, "built without CUDA; rebuild with 'make CUDA=1' on a machine with nvcc");
}

int tq_cuda_device(char *name, size_t name_len, int *sm_count, double *mem_gib) { return nocuda(); }
int tq_cuda_select(int local_rank, int *picked) { return nocuda(); }
int tq_cuda_alloc(void **dev, size_t bytes) { *dev = NULL; return nocuda(); }
void tq_cuda_free(void *dev) {}
int tq_cuda_upload(void *dev, const void *host, size_t bytes) { return nocuda(); }
int tq_cuda_download(void *host, const void *dev, size_t bytes) { return nocuda(); }
int tq_cuda_copy(void *dst_dev, const void *src_dev, size_t bytes) { return nocuda(); }
int tq_cuda_sync(void) { return nocuda(); }
int tq_cuda_timer_start(void) { return nocuda(); }
int tq_cuda_timer_stop(float *ms) { *ms = 0; return nocuda(); }
int tq_cuda_time_graph(int (*fn)(void *), void *arg, int iters, float *ms) { *ms = 0; return nocuda(); }
void tq_cuda_release(void) {}
int tq_cuda_variant_set(const char *what, const char *name) { return nocuda(); }
int tq_cuda_to_half(uint16_t *dst_dev, const float *src_dev, long n) { return nocuda(); }
int tq_cuda_quant_create(tq_cuda_quant **out, const tq_cuda_qspec *spec) { *out = NULL; return nocuda(); }
void tq_cuda_quant_free(tq_cuda_quant *q) {}
int tq_cuda_encode(const tq_cuda_quant *q, const void *x, int x_half, long n, const tq_cuda_codes *out)
{
    return nocuda();
}
int tq_cuda_decode(const tq_cuda_quant *q, const tq_cuda_codes *in, long n, void *xhat, int out_half)
{
    return nocuda();
}
int tq_cuda_attn_create(tq_cuda_attn **out, const tq_cuda_attn_spec *spec) { *out = NULL; return nocuda(); }
void tq_cuda_attn_free(tq_cuda_attn *a) {}
int tq_cuda_attn_decode(tq_cuda_attn *a, int B, int n_q_heads, long L, const float *q, const tq_cuda_kv *kv,
                        float *out)
{
    return nocuda();
}
int tq_cuda_attn_decode_window(tq_cuda_attn *a, int B, int n_q_heads, long L, long window, const float *q,
                               const tq_cuda_kv *kv, float *out)
{
    return nocuda();
}
int tq_cuda_attn_fp16(int B, int n_q_heads, int n_kv_heads, long L, int d, const float *q, const uint16_t *k,
                      const uint16_t *v, float *out)
{
    return nocuda();
}
int tq_cuda_model_create(tq_model *m, int fp32_weights, tq_cuda_model **out) { *out = NULL; return nocuda(); }
int tq_cuda_model_fp32(const tq_cuda_model *g) { (void)g; return 0; }
void tq_cuda_model_free(tq_cuda_model *g) {}
int tq_cuda_cache_create(tq_cuda_model *g, const tq_cuda_cache_spec *spec, tq_cuda_cache **out)
{
    *out = NULL;
    return nocuda();
}
void tq_cuda_cache_free(tq_cuda_cache *c) {}
void tq_cuda_cache_reset(tq_cuda_cache *c) {}
int tq_cuda_cache_len(const tq_cuda_cache *c) { return 0; }
int tq_cuda_model_step(tq_cuda_model *g, tq_cuda_cache *c, int32_t token, float *logits) { return nocuda(); }
#else
/* ISO C forbids an empty translation unit. */
typedef int tq_cuda_stub_unused;
#endif
