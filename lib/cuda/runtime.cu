/* runtime.cu: device discovery, buffers, copies and event timing behind tq_cuda.h, so the C side (tests, tq bench)
 * never includes cuda_runtime.h. Every failure is a TQ_ERR naming the call and CUDA's reason. */
#include "common.cuh"

#include <string.h>

extern "C" int tq_cuda_device(char *name, size_t name_len, int *sm_count, double *mem_gib)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return tq_error_set(TQ_ERR, "no usable CUDA device: %s", cudaGetErrorString(e));
    if (n < 1) return tq_error_set(TQ_ERR, "no CUDA device found");
    cudaDeviceProp pr;
    TQ_CU(cudaGetDeviceProperties(&pr, 0), "cudaGetDeviceProperties");
    if (name && name_len) {
        strncpy(name, pr.name, name_len - 1);
        name[name_len - 1] = 0;
    }
    if (sm_count) *sm_count = pr.multiProcessorCount;
    if (mem_gib) *mem_gib = (double)pr.totalGlobalMem / (1024.0 * 1024.0 * 1024.0);
    return TQ_OK;
}

extern "C" int tq_cuda_select(int local_rank, int *picked)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return tq_error_set(TQ_ERR, "no usable CUDA device: %s", cudaGetErrorString(e));
    if (n < 1) return tq_error_set(TQ_ERR, "no CUDA device found");
    int g = (local_rank > 0 ? local_rank : 0) % n;
    TQ_CU(cudaSetDevice(g), "cudaSetDevice");
    if (picked) *picked = g;
    return TQ_OK;
}

extern "C" int tq_cuda_alloc(void **dev, size_t bytes)
{
    *dev = NULL;
    cudaError_t e = cudaMalloc(dev, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *dev = NULL;
        return tq_error_set(TQ_ERR_NOMEM, "cuda: cannot allocate %zu bytes on the device: %s", bytes,
                            cudaGetErrorString(e));
    }
    TQ_CU(cudaMemset(*dev, 0, bytes ? bytes : 1), "cudaMemset");
    return TQ_OK;
}

extern "C" void tq_cuda_free(void *dev)
{
    if (dev) cudaFree(dev);
}

extern "C" int tq_cuda_upload(void *dev, const void *host, size_t bytes)
{
    TQ_CU(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
    return TQ_OK;
}

extern "C" int tq_cuda_download(void *host, const void *dev, size_t bytes)
{
    TQ_CU(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy from the device");
    return TQ_OK;
}

extern "C" int tq_cuda_copy(void *dst, const void *src, size_t bytes)
{
    TQ_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device to device");
    return TQ_OK;
}

extern "C" int tq_cuda_sync(void)
{
    TQ_CU(cudaDeviceSynchronize(), "kernel execution");
    return TQ_OK;
}

cudaStream_t tq_cu_stream = 0;

static cudaEvent_t ev_start, ev_stop;
static int ev_ready;

extern "C" int tq_cuda_timer_start(void)
{
    if (!ev_ready) {
        TQ_CU(cudaEventCreate(&ev_start), "cudaEventCreate");
        TQ_CU(cudaEventCreate(&ev_stop), "cudaEventCreate");
        ev_ready = 1;
    }
    TQ_CU(cudaEventRecord(ev_start, tq_cu_stream), "cudaEventRecord");
    return TQ_OK;
}

extern "C" int tq_cuda_timer_stop(float *ms)
{
    if (!ev_ready) return tq_error_set(TQ_ERR, "cuda: timer stopped before it was started");
    TQ_CU(cudaEventRecord(ev_stop, tq_cu_stream), "cudaEventRecord");
    TQ_CU(cudaEventSynchronize(ev_stop), "kernel execution");
    TQ_CU(cudaEventElapsedTime(ms, ev_start, ev_stop), "cudaEventElapsedTime");
    return TQ_OK;
}

/* Device time of fn without the host's launch cost: fn runs 3 times on a stream of its own (allocations happen
 * there), is then captured `iters` times into one CUDA graph, launched once to warm up and once timed. fn must launch
 * only on tq_cu_stream (the attention path does; a kernel on the legacy stream breaks the capture: TQ_ERR, and the
 * caller times it eagerly instead). */
extern "C" int tq_cuda_time_graph(int (*fn)(void *), void *arg, int iters, float *ms)
{
    static cudaStream_t s;
    if (!s) TQ_CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    int st = tq_cuda_timer_start(); /* creates the events */
    if (st) return st;
    TQ_CU(cudaDeviceSynchronize(), "kernel execution");
    cudaStream_t saved = tq_cu_stream;
    tq_cu_stream = s;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    for (int i = 0; i < 3 && !st; i++) st = fn(arg);
    cudaError_t e = st ? cudaSuccess : cudaStreamSynchronize(s);
    if (!st && e == cudaSuccess) e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (!st && e == cudaSuccess) {
        for (int i = 0; i < iters && !st; i++) st = fn(arg);
        cudaError_t e2 = cudaStreamEndCapture(s, &g);
        if (!st) e = e2;
    }
    if (!st && e == cudaSuccess) e = cudaGraphInstantiate(&ge, g, 0);
    if (!st && e == cudaSuccess) e = cudaGraphLaunch(ge, s);
    if (!st && e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (!st && e == cudaSuccess) e = cudaEventRecord(ev_start, s);
    if (!st && e == cudaSuccess) e = cudaGraphLaunch(ge, s);
    if (!st && e == cudaSuccess) e = cudaEventRecord(ev_stop, s);
    if (!st && e == cudaSuccess) e = cudaEventSynchronize(ev_stop);
    float t = 0;
    if (!st && e == cudaSuccess) e = cudaEventElapsedTime(&t, ev_start, ev_stop);
    tq_cu_stream = saved;
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (st) return st;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return tq_error_set(TQ_ERR, "cuda: graph timing failed: %s", cudaGetErrorString(e));
    }
    *ms = t / (float)iters;
    return TQ_OK;
}

int tq_cu_occupancy(const void *kernel, int threads, size_t smem, size_t smem_max, int *bps, int *sm)
{
    static struct { const void *k; int threads; size_t smem; int bps; } seen[64];
    static int n_seen, sm_count;
    if (sm && !sm_count) {
        int dev = 0;
        TQ_CU(cudaGetDevice(&dev), "cudaGetDevice");
        TQ_CU(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
    }
    if (sm) *sm = sm_count;
    for (int i = 0; i < n_seen; i++)
        if (seen[i].k == kernel && seen[i].threads == threads && seen[i].smem == smem) {
            *bps = seen[i].bps;
            return TQ_OK;
        }
    if (smem_max)
        TQ_CU(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_max),
              "cudaFuncSetAttribute");
    TQ_CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(bps, kernel, threads, smem), "cudaOccupancy");
    if (n_seen < 64) {
        seen[n_seen].k = kernel;
        seen[n_seen].threads = threads;
        seen[n_seen].smem = smem;
        seen[n_seen++].bps = *bps;
    }
    return TQ_OK;
}

extern "C" void tq_cuda_release_attn(void);

extern "C" void tq_cuda_release(void)
{
    tq_cuda_release_attn();
    if (ev_ready) {
        cudaEventDestroy(ev_start);
        cudaEventDestroy(ev_stop);
        ev_ready = 0;
    }
}

__global__ void k_to_half(uint16_t *dst, const float *src, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dst[i] = tq_cu_to_half(src[i]);
}

extern "C" int tq_cuda_to_half(uint16_t *dst, const float *src, long n)
{
    if (n <= 0) return TQ_OK;
    long blocks = (n + 255) / 256;
    k_to_half<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256>>>(dst, src, n);
    TQ_CU_LAUNCH("to_half kernel");
    return TQ_OK;
}

extern "C" int tq_cuda_variant_set(const char *what, const char *name)
{
    if (what && !strcmp(what, "attn")) return tq_cuda_attn_variant(name);
    if (what && !strcmp(what, "encode")) return tq_cuda_encode_variant(name);
    return tq_error_set(TQ_ERR_USAGE, "cuda: unknown variant kind '%s' (attn or encode)", what ? what : "(null)");
}
