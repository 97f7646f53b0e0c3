/* common.cuh: what the CUDA sources share — the C headers (with C linkage), the status-returning error macro, and the
 * in-shared-memory butterflies of the Hadamard rotation, performed in the order of lib/rotation.c's tq_fwht. */
#ifndef TQ_CUDA_COMMON_CUH
#define TQ_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

extern "C" {
#include "quant.h"
#include "tq.h"
}
#include "cuda/tq_cuda.h"
#include "pack.h"

/* A failed CUDA call becomes a TQ_ERR with the call's name and CUDA's reason; lib/ never prints. */
#define TQ_CU(call, what) do { \
        cudaError_t e_ = (call); \
        if (e_ != cudaSuccess) return tq_error_set(TQ_ERR, "cuda: %s failed: %s", what, cudaGetErrorString(e_)); \
    } while (0)
#define TQ_CU_LAUNCH(what) TQ_CU(cudaGetLastError(), what)

#define TQ_FULL_MASK 0xffffffffu

/* The stream the attention kernels launch on: the legacy default stream (0) unless tq_cuda_time_graph has set its own
 * while it captures a graph (runtime.cu). */
extern cudaStream_t tq_cu_stream;

/* A kernel's resident blocks per SM at `threads` a block and `smem` bytes of dynamic shared memory (runtime.cu),
 * asked of CUDA once per (kernel, threads, smem) and process: the query costs microseconds of host time, more than a
 * decode step's kernels take. smem_max > 0 first sets the kernel's dynamic shared-memory maximum. sm: the device's
 * SM count (may be NULL). */
int tq_cu_occupancy(const void *kernel, int threads, size_t smem, size_t smem_max, int *bps, int *sm);

/* the variant switches of attention.cu and encode.cu, behind tq_cuda_variant_set (runtime.cu) */
extern "C" int tq_cuda_attn_variant(const char *name);
extern "C" int tq_cuda_encode_variant(const char *name);

/* 1/sqrt(d) rounded once to float, the constant lib/rotation.c multiplies by. */
static inline float tq_cu_fwht_scale(int d) { return (float)(1.0 / sqrt((double)d)); }
__device__ __forceinline__ float tq_cu_fwht_scale_dev(int d) { return (float)(1.0 / sqrt((double)d)); }

/* Unnormalized butterflies over x[0..d) by one warp: stage h pairs (i, i+h) inside blocks of 2h, a+b low, a-b high;
 * exactly tq_fwht's float operations, only distributed over lanes. */
__device__ __forceinline__ void tq_cu_fwht_warp(float *x, int d, int lane)
{
    for (int h = 1, lg = 0; h < d; h <<= 1, lg++) {
        __syncwarp();
        for (int p = lane; p < d / 2; p += 32) {
            int i = ((p >> lg) << (lg + 1)) + (p & (h - 1)); /* (p / h) * 2h + p % h, h a power of two */
            float a = x[i], b = x[i + h];
            x[i] = a + b;
            x[i + h] = a - b;
        }
    }
    __syncwarp();
}

/* The same by a whole block (blockDim.x threads). */
__device__ __forceinline__ void tq_cu_fwht_block(float *x, int d)
{
    for (int h = 1, lg = 0; h < d; h <<= 1, lg++) {
        __syncthreads();
        for (int p = threadIdx.x; p < d / 2; p += blockDim.x) {
            int i = ((p >> lg) << (lg + 1)) + (p & (h - 1));
            float a = x[i], b = x[i + h];
            x[i] = a + b;
            x[i + h] = a - b;
        }
    }
    __syncthreads();
}

__device__ __forceinline__ float tq_cu_half(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t tq_cu_to_half(float f) { return __half_as_ushort(__float2half_rn(f)); }

#endif
