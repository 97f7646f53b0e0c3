/* b1_floor.cu: what the GPU allows a single-stream (B = 1) decode call, measured the way tq bench --graph times its
 * kernels (calls captured into one CUDA graph and replayed, time per call). Rows: an empty kernel (the cost of one
 * graph node), two empty kernels in sequence (prep + split) with and without programmatic dependent launch, and a
 * read-only scan of N bytes by a full wave of blocks that ends in the fused path's merge (the last block to finish,
 * found by an atomic counter, sums every block's partial) - the floor of a one-kernel fused decode over a cache of N
 * bytes. The scan folds every word it reads (xor) and the result is checked against the host's fold of the same
 * words before any time is printed.
 * Build: nvcc -O3 -arch=sm_90 -o b1_floor eval/cuda_dev/b1_floor.cu (eval/gpu_pack.sh does). */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                                        \
    do {                                                                                                             \
        cudaError_t e_ = (x);                                                                                        \
        if (e_ != cudaSuccess) {                                                                                     \
            fprintf(stderr, "b1_floor: %s: %s\n", #x, cudaGetErrorString(e_));                                       \
            exit(1);                                                                                                 \
        }                                                                                                            \
    } while (0)

__global__ void k_empty(int *p)
{
    if (p && threadIdx.x == 1024) *p = 0; /* never: keeps the argument live */
}

__global__ void k_empty_pdl_first(int *p)
{
    asm volatile("griddepcontrol.launch_dependents;");
    if (p && threadIdx.x == 1024) *p = 0;
}

__global__ void k_empty_pdl_second(int *p)
{
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (p && threadIdx.x == 1024) *p = 0;
}

/* each block sums its contiguous share of n16 16-byte words (xor-folded into one word, so the loads cannot be
 * dropped), writes the partial, and the last block to arrive folds all partials into *out and resets the counter */
template <int UNROLL>
__global__ void __launch_bounds__(256) k_scan(const uint4 *src, long n16, unsigned *part, unsigned *cnt,
                                              unsigned *out)
{
    long per = (n16 + gridDim.x - 1) / gridDim.x, beg = (long)blockIdx.x * per, end = beg + per;
    if (end > n16) end = n16;
    unsigned x = 0;
    long i = beg + threadIdx.x;
    for (; i + (UNROLL - 1) * 256L < end; i += UNROLL * 256L) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) v[u] = __ldcs(src + i + u * 256L);
#pragma unroll
        for (int u = 0; u < UNROLL; u++) x ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < end; i += 256) {
        uint4 v = __ldcs(src + i);
        x ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    for (int o = 16; o; o >>= 1) x ^= __shfl_xor_sync(0xffffffffu, x, o);
    __shared__ unsigned w[8];
    __shared__ bool last;
    if ((threadIdx.x & 31) == 0) w[threadIdx.x >> 5] = x;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned s = 0;
        for (int k = 0; k < 8; k++) s ^= w[k];
        part[blockIdx.x] = s;
        __threadfence();
        last = atomicAdd(cnt, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    unsigned s = 0;
    for (unsigned k = threadIdx.x; k < gridDim.x; k += 256) s ^= ((volatile unsigned *)part)[k];
    for (int o = 16; o; o >>= 1) s ^= __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) w[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned t = 0;
        for (int k = 0; k < 8; k++) t ^= w[k];
        *out = t;
        *cnt = 0;
    }
}

/* word i of the scanned buffer: distinct words, so the xor of a prefix depends on every word of it */
__host__ __device__ static inline unsigned fill_word(long i) { return (unsigned)i * 2654435761u + 12345u; }

__global__ void k_fill(unsigned *p, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        p[i] = fill_word(i);
}

static cudaStream_t st;

/* time per call of fn over `iters` calls captured in one graph (one warm-up replay, then the median of 5 replays) */
template <typename F>
static double time_graph(F fn, int iters)
{
    for (int i = 0; i < 3; i++) fn();
    CK(cudaStreamSynchronize(st));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < iters; i++) fn();
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaStreamSynchronize(st));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float t[5];
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&t[r], a, b));
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) {
                float x = t[i]; t[i] = t[j]; t[j] = x;
            }
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return 1e3 * t[2] / iters; /* microseconds */
}

static void launch_pdl(void (*k)(int *), int *p)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(1);
    cfg.blockDim = dim3(128);
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, k, p));
}

int main(int argc, char **argv)
{
    /* -o FILE: the rows also as CSV (row,bytes,blocks,us), read by eval/bench_round2.py */
    FILE *csv = NULL;
    if (argc == 3 && !strcmp(argv[1], "-o")) {
        if (!(csv = fopen(argv[2], "w"))) {
            fprintf(stderr, "b1_floor: cannot write '%s'\n", argv[2]);
            return 1;
        }
        fprintf(csv, "row,bytes,blocks,us\n");
    } else if (argc != 1) {
        fprintf(stderr, "usage: b1_floor [-o floor.csv]\n");
        return 2;
    }
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaDeviceProp pr;
    CK(cudaGetDeviceProperties(&pr, 0));
    const int sm = pr.multiProcessorCount, iters = 200;
    printf("# b1_floor: %s, %d SMs; CUDA-graph replays of %d calls, microseconds per call (median of 5)\n", pr.name,
           sm, iters);
    /* the copy rate tq bench reports against: a 1 GiB device-to-device copy, read + write bytes */
    size_t big = 1UL << 30;
    void *x, *y;
    CK(cudaMalloc(&x, big));
    CK(cudaMalloc(&y, big));
    CK(cudaMemset(x, 1, big));
    double tc = time_graph([&] { CK(cudaMemcpyAsync(y, x, big, cudaMemcpyDeviceToDevice, st)); }, 5);
    double copy_gbs = 2.0 * big / (tc * 1e-6) / 1e9;
    printf("copy 1 GiB D2D: %.1f us, %.1f GB/s (read + write)\n", tc, copy_gbs);
    if (csv) fprintf(csv, "copy,%zu,0,%.3f\n", 2 * big, tc);
    CK(cudaFree(y));
    printf("| row | us per call |\n|---|---|\n");
    auto row = [&](const char *what, const char *key, int blocks, double us) {
        printf("| %s | %.2f |\n", what, us);
        if (csv) fprintf(csv, "%s,0,%d,%.3f\n", key, blocks, us);
    };
    row("empty kernel, 1 block", "empty", 1, time_graph([&] { k_empty<<<1, 128, 0, st>>>(NULL); }, iters));
    row("empty kernel, 3 blocks per SM", "empty-wave", 3 * sm,
        time_graph([&] { k_empty<<<3 * sm, 128, 0, st>>>(NULL); }, iters));
    row("two empty kernels", "two-empty", 1, time_graph([&] {
            k_empty<<<1, 128, 0, st>>>(NULL);
            k_empty<<<1, 128, 0, st>>>(NULL);
        }, iters));
    row("two empty kernels, the second a programmatic dependent", "two-empty-pdl", 1, time_graph([&] {
            k_empty_pdl_first<<<1, 128, 0, st>>>(NULL);
            launch_pdl(k_empty_pdl_second, NULL);
        }, iters));
    /* scans: the sizes of the round-2 shapes' 3-bit caches (codes + fp16 norms of keys and values, B = 1) */
    struct { const char *key, *what; size_t bytes; } sz[] = {
        {"smollm2-b1-32768", "SmolLM2 d 64, 3 kv, L 32k", 3UL * 32768 * (24 + 24 + 4)},
        {"gemma3-b1-32768", "Gemma 3 d 256, 1 kv, L 32k", 1UL * 32768 * (96 + 96 + 4)},
        {"main-b1-32768", "d 128, 8 kv, L 32k", 8UL * 32768 * (48 + 48 + 4)},
        {"main-b1-131072", "d 128, 8 kv, L 128k", 8UL * 131072 * (48 + 48 + 4)},
        {"main-b16-65536", "d 128, 8 kv, L 64k, B 16", 16UL * 8 * 65536 * (48 + 48 + 4)},
    };
    unsigned *part, *cnt, *out;
    CK(cudaMalloc(&part, 4 * 4096));
    CK(cudaMalloc(&cnt, 4));
    CK(cudaMalloc(&out, 4));
    CK(cudaMemset(cnt, 0, 4));
    /* the scans read fill_word(i) at word i; the host folds the same words (a scan that skips or repeats a 16-byte
     * load changes the xor) */
    k_fill<<<4 * sm, 256, 0, st>>>((unsigned *)x, (long)(big / 4));
    CK(cudaStreamSynchronize(st));
    printf("\n| scan + last-block merge | bytes | blocks | us | GB/s | %% of copy rate |\n|---|---|---|---|---|---|\n");
    for (auto &s : sz) {
        long n16 = (long)(s.bytes / 16);
        unsigned want = 0;
        for (long i = 0; i < 4 * n16; i++) want ^= fill_word(i);
        for (int bps : {2, 4, 8}) {
            int nb = bps * sm;
            double t = time_graph([&] { k_scan<4><<<nb, 256, 0, st>>>((const uint4 *)x, n16, part, cnt, out); },
                                  iters);
            unsigned got;
            CK(cudaMemcpy(&got, out, 4, cudaMemcpyDeviceToHost));
            if (got != want) {
                fprintf(stderr, "b1_floor: scan check failed (%08x, expected %08x)\n", got, want);
                return 1;
            }
            double gbs = (double)s.bytes / (t * 1e-6) / 1e9;
            printf("| %s | %zu | %d | %.2f | %.1f | %.1f%% |\n", s.what, s.bytes, nb, t, gbs, 100 * gbs / copy_gbs);
            if (csv) fprintf(csv, "scan %s,%zu,%d,%.3f\n", s.key, s.bytes, nb, t);
        }
    }
    if (csv && fclose(csv)) {
        fprintf(stderr, "b1_floor: write error\n");
        return 1;
    }
    CK(cudaFree(x));
    CK(cudaFree(part));
    CK(cudaFree(cnt));
    CK(cudaFree(out));
    return 0;
}
