/* attention.cu: decode attention of one query token over a packed TurboQuant KV cache (flash-decoding), and the
 * fp16 baseline it is benchmarked against. Three kernels: prep (rotate each query once, S q once, fold in the
 * 1/sqrt(d) scale and log2 e), the split kernel (scores from packed codes, online softmax, values accumulated in the
 * rotated space) and combine (merge the splits' softmax states, rotate back once per query). */
#include "common.cuh"

#include <stdlib.h>
#include <string.h>

#define NWARP 4            /* warps per block of the split kernel; each warp is its own softmax split */
#define LOG2E 1.4426950408889634

struct tq_cuda_attn {
    tq_cuda_attn_spec s;
    int same_cent;         /* turbo-mse keys with the values' bits and centroids: one pair table can serve both */
    float *krot, *vrot;    /* dense: [Hkv][d][d]; hadamard: [Hkv][d] signs */
    float *kcent, *vcent, *kS;
    float *ws;             /* workspace: qrot, sq, partial m, l, acc */
    size_t ws_bytes;
    unsigned *cnt;         /* the fused path's arrival counters, one per head group */
    size_t cnt_n;
    int sm_count;
};

struct AttnArgs {
    int Hq, Hkv, G, nsub, NS, vbits;
    long L, chunk;       /* L: tokens attended (the window) */
    long stride, off;    /* rows per (batch, kv head) in the cache, and the window's first row among them */
    const float *qrot, *sq, *kcent, *vcent;
    tq_cuda_kv kv;
    const uint16_t *k16, *v16;  /* fp16 baseline */
    float *pm, *pl, *pacc;
    /* fused (the small-batch plan of the tensor-core kernels): NS = blocks per head group, each block merges its
     * warps' states into one; the last block of a group to finish merges the group's NS states, rotates back with
     * vrot and writes out; cnt[group] counts the finished blocks and is reset to 0 by that last block */
    int fused, rotation;
    const float *vrot;
    float *out;
    unsigned *cnt;
    /* the tensor-core kernels' own query preparation (their PREP forms read q, flip the signs krot and run the
     * Hadamard butterflies themselves, k_prep is not launched; NULL: qrot (and sq) come from k_prep) */
    const float *q, *krot;
    float scale;
    /* one pair table serves keys and values (the tensor-core template without ALIGN: same bits, same centroids, so the
     * two tables would be byte for byte the same); the dynamic shared memory is one table smaller */
    int share_tab;
};

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(TQ_FULL_MASK, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(TQ_FULL_MASK, v, o);
    return v;
}

/* Programmatic dependent launch (sm_90): k_prep lets the split kernel start at once, and the split kernel waits for
 * k_prep's results (qrot, S q) only after building its tables and issuing its first tile. Without the launch
 * attribute both are no-ops. */
__device__ __forceinline__ void grid_dep_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void grid_dep_launch() { asm volatile("griddepcontrol.launch_dependents;"); }

/* Rotate (rot: 0 none, TQ_ROT_HADAMARD signs, TQ_ROT_DENSE matrix) each query of the block's (b, h) and scale it. */
template <int D>
__global__ void k_prep(const float *q, int Hq, int G, int rotation, const float *krot, const float *kS, float scale,
                       float sq_scale, float *qrot, float *sq)
{
    __shared__ float x[D], y[D];
    grid_dep_launch(); /* the split kernel may start (it waits for qrot and S q before it reads them) */
    int bh = blockIdx.x, g = (bh % Hq) / G, i = threadIdx.x;
    x[i] = q[(size_t)bh * D + i];
    __syncthreads();
    if (rotation == TQ_ROT_HADAMARD) {
        y[i] = x[i] * krot[(size_t)g * D + i];
        tq_cu_fwht_block(y, D);
        y[i] *= tq_cu_fwht_scale_dev(D);
    } else if (rotation == TQ_ROT_DENSE) {
        const float *P = krot + (size_t)g * D * D + (size_t)i * D;
        float a = 0.0f;
        for (int j = 0; j < D; j++) a = fmaf(P[j], x[j], a);
        y[i] = a;
    } else y[i] = x[i];
    __syncthreads();
    qrot[(size_t)bh * D + i] = y[i] * scale;
    if (sq) {
        const float *S = kS + (size_t)g * D * D + (size_t)i * D;
        float a = 0.0f;
        for (int j = 0; j < D; j++) a = fmaf(S[j], x[j], a);
        sq[(size_t)bh * D + i] = a * sq_scale;
    }
}

/* The split kernel over packed codes. Block (split s, kv head g x query sub-group, batch b), NWARP warps; a warp
 * takes 32 tokens at a time: lane = token while scoring (the key row sits in the lane's registers, the codebook
 * entry comes from the lane holding it), lane = 1/32 of the coordinates while accumulating values. */
template <int D, int KB, int GT, bool PROD>
__global__ void __launch_bounds__(NWARP * 32, 5) k_attn_codes(AttnArgs a)
{
    /* value bits are a runtime parameter (they only set shifts and masks); key bits size the register row */
    constexpr int E = D / 32, NWK = D * KB / 32, RK = D * KB / 8;
    constexpr uint32_t KM = (1u << KB) - 1;
    const int VB = a.vbits, RV = D * VB / 8;
    const uint32_t VM = (1u << VB) - 1;
    __shared__ __align__(16) float qs[GT][D];
    __shared__ __align__(16) float sqs[PROD ? GT : 1][D];
    __shared__ __align__(16) float wsh[NWARP][32][GT]; /* softmax weight x value norm of each token of a tile */
    int s = blockIdx.x, g = blockIdx.y / a.nsub, sub = blockIdx.y % a.nsub, b = blockIdx.z;
    int h0 = g * a.G + sub * GT, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int idx = threadIdx.x; idx < GT * D; idx += blockDim.x) {
        size_t src = ((size_t)b * a.Hq + h0 + idx / D) * D + idx % D;
        qs[idx / D][idx % D] = a.qrot[src];
        if (PROD) sqs[idx / D][idx % D] = a.sq[src];
    }
    __syncthreads();
    float kc = lane < (1 << KB) ? a.kcent[lane] : 0.0f, vc = lane < (1 << VB) ? a.vcent[lane] : 0.0f;
    long start = (long)s * a.chunk, end = start + a.chunk < a.L ? start + a.chunk : a.L;
    long base = ((long)b * a.Hkv + g) * a.stride + a.off; /* the window's first row */
    float m[GT], l[GT], acc[GT][E];
#pragma unroll
    for (int hh = 0; hh < GT; hh++) {
        m[hh] = -INFINITY;
        l[hh] = 0.0f;
#pragma unroll
        for (int k = 0; k < E; k++) acc[hh][k] = 0.0f;
    }
    for (long t0 = start + warp * 32; t0 < end; t0 += NWARP * 32) {
        long t = t0 + lane;
        bool valid = t < end;
        long tc = valid ? t : t0;
        uint32_t w[NWK];
        const uint32_t *kr = (const uint32_t *)(a.kv.k_codes + (size_t)(base + tc) * RK);
        if (RK % 16 == 0) {
#pragma unroll
            for (int i = 0; i < NWK / 4; i++) {
                uint4 v4 = __ldg((const uint4 *)kr + i);
                w[4 * i] = v4.x; w[4 * i + 1] = v4.y; w[4 * i + 2] = v4.z; w[4 * i + 3] = v4.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < NWK; i++) w[i] = __ldg(kr + i);
        }
        float sc[GT];
#pragma unroll
        for (int hh = 0; hh < GT; hh++) sc[hh] = 0.0f;
#pragma unroll
        for (int i = 0; i < D; i++) {
            const int bit = i * KB, wi = bit >> 5, off = bit & 31;
            uint32_t code = off + KB <= 32 ? (w[wi] >> off) & KM : ((w[wi] >> off) | (w[wi + 1] << (32 - off))) & KM;
            float c = __shfl_sync(TQ_FULL_MASK, kc, (int)code);
#pragma unroll
            for (int hh = 0; hh < GT; hh++) sc[hh] = fmaf(qs[hh][i], c, sc[hh]);
        }
        float nk = tq_cu_half(a.kv.k_norms[base + tc]);
#pragma unroll
        for (int hh = 0; hh < GT; hh++) sc[hh] *= nk;
        if (PROD) {
            const uint32_t *sr = (const uint32_t *)(a.kv.k_signs + (size_t)(base + tc) * (D / 8));
            float sd[GT];
#pragma unroll
            for (int hh = 0; hh < GT; hh++) sd[hh] = 0.0f;
#pragma unroll
            for (int wi = 0; wi < D / 32; wi++) {
                uint32_t sw = __ldg(sr + wi);
#pragma unroll
                for (int k = 0; k < 32; k++) {
                    uint32_t flip = ((~sw >> k) & 1u) << 31; /* bit clear: sign -1 */
#pragma unroll
                    for (int hh = 0; hh < GT; hh++)
                        sd[hh] += __int_as_float(__float_as_int(sqs[hh][wi * 32 + k]) ^ flip);
                }
            }
            float gm = tq_cu_half(a.kv.k_rnorms[base + tc]);
#pragma unroll
            for (int hh = 0; hh < GT; hh++) sc[hh] = fmaf(gm, sd[hh], sc[hh]);
        }
        float nv = valid ? tq_cu_half(a.kv.v_norms[base + tc]) : 0.0f;
        float wv[GT];
#pragma unroll
        for (int hh = 0; hh < GT; hh++) {
            float x = valid ? sc[hh] : -INFINITY;
            float mnew = fmaxf(m[hh], warp_max(x));
            float alpha = exp2f(m[hh] - mnew), p = exp2f(x - mnew);
            l[hh] = l[hh] * alpha + p;
#pragma unroll
            for (int k = 0; k < E; k++) acc[hh][k] *= alpha;
            m[hh] = mnew;
            wv[hh] = p * nv;
        }
        /* one broadcast shared-memory read per token below instead of GT shuffles */
#pragma unroll
        for (int hh = 0; hh < GT; hh++) wsh[warp][lane][hh] = wv[hh];
        __syncwarp();
        int nvalid = end - t0 < 32 ? (int)(end - t0) : 32;
        const int bit0 = lane * E * VB, w0 = bit0 >> 5, sh = bit0 & 31;
        const bool two = sh + E * VB > 32;
        const uint32_t *vbase = (const uint32_t *)(a.kv.v_codes + (size_t)(base + t0) * RV);
        const int RVW = RV / 4;
        for (int j0 = 0; j0 < nvalid; j0 += 8) {
            uint64_t win[8];
#pragma unroll
            for (int u = 0; u < 8; u++) { /* all loads first: 8 tokens' windows in flight at once */
                int j = j0 + u < nvalid ? j0 + u : j0;
                const uint32_t *vr = vbase + (size_t)j * RVW;
                uint32_t lo = __ldg(vr + w0), hi = two ? __ldg(vr + w0 + 1) : 0u;
                win[u] = ((uint64_t)hi << 32 | lo) >> sh;
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
                if (j0 + u >= nvalid) break; /* uniform across the warp */
                float pj[GT];
                if constexpr (GT == 4) {
                    float4 t4 = *(const float4 *)&wsh[warp][j0 + u][0];
                    pj[0] = t4.x; pj[1] = t4.y; pj[2] = t4.z; pj[3] = t4.w;
                } else {
#pragma unroll
                    for (int hh = 0; hh < GT; hh++) pj[hh] = wsh[warp][j0 + u][hh];
                }
#pragma unroll
                for (int k = 0; k < E; k++) {
                    float c = __shfl_sync(TQ_FULL_MASK, vc, (int)((win[u] >> (k * VB)) & VM));
#pragma unroll
                    for (int hh = 0; hh < GT; hh++) acc[hh][k] = fmaf(pj[hh], c, acc[hh][k]);
                }
            }
        }
        __syncwarp(); /* wsh is rewritten by the next tile */
    }
    int split = s * NWARP + warp;
#pragma unroll
    for (int hh = 0; hh < GT; hh++) {
        float lsum = warp_sum(l[hh]);
        size_t bh = (size_t)b * a.Hq + h0 + hh;
        if (lane == 0) {
            a.pm[bh * a.NS + split] = m[hh];
            a.pl[bh * a.NS + split] = lsum;
        }
#pragma unroll
        for (int k = 0; k < E; k++) a.pacc[(bh * a.NS + split) * D + lane * E + k] = acc[hh][k];
    }
}

/* The split kernel for the common decode shape: d = 128, query heads in groups of 4 per kv head, turbo-mse keys.
 * k_attn_codes above spends its time in the MIO pipe (shared memory and shuffles), not on DRAM: its rotated-query
 * reads were one scalar shared load per coordinate and head (4 per codebook shuffle), its value windows two loads per
 * token per lane. Here a warp takes 64 tokens: while scoring a lane holds two key rows, so one float4 read of four
 * coordinates of a head feeds 8 FMAs (a quarter of the old shared loads per token); while accumulating values half a
 * warp takes one token and a lane owns 8 coordinates (8 codes are VB whole bytes), so one window and one float4
 * weight read feed 32 FMAs. The codebook lookups stay shuffles: one per code, the floor for exact fp32 centroids. */
template <int KB>
__global__ void __launch_bounds__(NWARP * 32, 4) k_attn_codes_t64(AttnArgs a)
{
    constexpr int D = 128, GT = 4, TT = 64, NWK = D * KB / 32, RK = D * KB / 8, EV = D / 16;
    constexpr uint32_t KM = (1u << KB) - 1;
    const int VB = a.vbits, RVW = D * VB / 32; /* value row in 32-bit words (d = 128: whole words) */
    const uint32_t VM = (1u << VB) - 1;
    __shared__ __align__(16) float qs[D / 4][GT][4];  /* head hh's query, coordinates 4 i4 .. 4 i4 + 3 */
    __shared__ __align__(16) float wsh[NWARP][TT][GT]; /* softmax weight x value norm, per token of the tile */
    int s = blockIdx.x, g = blockIdx.y / a.nsub, sub = blockIdx.y % a.nsub, b = blockIdx.z;
    int h0 = g * a.G + sub * GT, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int idx = threadIdx.x; idx < GT * D; idx += blockDim.x) {
        int hh = idx / D, i = idx % D;
        qs[i / 4][hh][i % 4] = a.qrot[((size_t)b * a.Hq + h0 + hh) * D + i];
    }
    __syncthreads();
    /* every lane holds centroid (lane mod 2^bits): a shuffle reads only the low 5 bits of its source lane, so a code
     * shifted down to bit 0 needs no mask (one shift or funnel shift per code on the busiest pipe, ALU) */
    float kc = a.kcent[lane & KM], vc = a.vcent[lane & VM];
    long start = (long)s * a.chunk, end = start + a.chunk < a.L ? start + a.chunk : a.L;
    long base = ((long)b * a.Hkv + g) * a.stride + a.off; /* the window's first row */
    float m[GT], l[GT], acc[GT][EV];
#pragma unroll
    for (int hh = 0; hh < GT; hh++) {
        m[hh] = -INFINITY;
        l[hh] = 0.0f;
#pragma unroll
        for (int k = 0; k < EV; k++) acc[hh][k] = 0.0f;
    }
    /* value phase: half-warp hw takes tokens 2u + hw, lane sl of it coordinates 8 sl .. 8 sl + 7 */
    const int hw = lane >> 4, sl = lane & 15;
    const int vbit0 = sl * EV * VB, vw0 = vbit0 >> 5, vsh = vbit0 & 31;
    const bool vtwo = vsh + EV * VB > 32;
    for (long t0 = start + warp * TT; t0 < end; t0 += NWARP * TT) {
        long ta = t0 + lane, tb = ta + 32;
        bool va = ta < end, vb = tb < end;
        long tca = va ? ta : t0, tcb = vb ? tb : t0; /* t0 < end: a valid row to read in place of a missing one */
        uint32_t wa[NWK], wb[NWK];
        const uint4 *ra = (const uint4 *)(a.kv.k_codes + (size_t)(base + tca) * RK);
        const uint4 *rb = (const uint4 *)(a.kv.k_codes + (size_t)(base + tcb) * RK);
#pragma unroll
        for (int i = 0; i < NWK / 4; i++) {
            uint4 x = __ldg(ra + i), y = __ldg(rb + i);
            wa[4 * i] = x.x; wa[4 * i + 1] = x.y; wa[4 * i + 2] = x.z; wa[4 * i + 3] = x.w;
            wb[4 * i] = y.x; wb[4 * i + 1] = y.y; wb[4 * i + 2] = y.z; wb[4 * i + 3] = y.w;
        }
        float nka = tq_cu_half(a.kv.k_norms[base + tca]), nkb = tq_cu_half(a.kv.k_norms[base + tcb]);
        float nva = tq_cu_half(a.kv.v_norms[base + tca]), nvb = tq_cu_half(a.kv.v_norms[base + tcb]);
        float sa[GT], sb[GT];
#pragma unroll
        for (int hh = 0; hh < GT; hh++) sa[hh] = sb[hh] = 0.0f;
#pragma unroll
        for (int i4 = 0; i4 < D / 4; i4++) {
            float4 q4[GT];
#pragma unroll
            for (int hh = 0; hh < GT; hh++) q4[hh] = *(const float4 *)&qs[i4][hh][0];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int bit = (4 * i4 + k) * KB, wi = bit >> 5, off = bit & 31;
                uint32_t ca = off + KB <= 32 ? wa[wi] >> off : __funnelshift_r(wa[wi], wa[wi + 1], off);
                uint32_t cb = off + KB <= 32 ? wb[wi] >> off : __funnelshift_r(wb[wi], wb[wi + 1], off);
                float ea = __shfl_sync(TQ_FULL_MASK, kc, (int)ca), eb = __shfl_sync(TQ_FULL_MASK, kc, (int)cb);
#pragma unroll
                for (int hh = 0; hh < GT; hh++) {
                    float qv = k == 0 ? q4[hh].x : k == 1 ? q4[hh].y : k == 2 ? q4[hh].z : q4[hh].w;
                    sa[hh] = fmaf(qv, ea, sa[hh]);
                    sb[hh] = fmaf(qv, eb, sb[hh]);
                }
            }
        }
        float pa[GT], pb[GT];
#pragma unroll
        for (int hh = 0; hh < GT; hh++) {
            float xa = va ? sa[hh] * nka : -INFINITY, xb = vb ? sb[hh] * nkb : -INFINITY;
            float mnew = fmaxf(m[hh], warp_max(fmaxf(xa, xb))); /* finite: token t0 is valid */
            float alpha = exp2f(m[hh] - mnew), ea = exp2f(xa - mnew), eb = exp2f(xb - mnew);
            l[hh] = l[hh] * alpha + (ea + eb);
#pragma unroll
            for (int k = 0; k < EV; k++) acc[hh][k] *= alpha;
            m[hh] = mnew;
            pa[hh] = ea * nva; /* 0 for a missing token: the value loop below needs no bounds test */
            pb[hh] = eb * nvb;
        }
        *(float4 *)&wsh[warp][lane][0] = make_float4(pa[0], pa[1], pa[2], pa[3]);
        *(float4 *)&wsh[warp][lane + 32][0] = make_float4(pb[0], pb[1], pb[2], pb[3]);
        __syncwarp();
        int nvalid = end - t0 < TT ? (int)(end - t0) : TT;
        const uint32_t *vbase = (const uint32_t *)(a.kv.v_codes + (size_t)(base + t0) * RVW * 4);
        for (int j0 = 0; j0 < nvalid; j0 += 16) { /* uniform trip count: missing tokens weigh 0 */
            uint32_t win[8];
#pragma unroll
            for (int u = 0; u < 8; u++) { /* all loads first: 8 tokens' windows in flight at once */
                int j = j0 + 2 * u + hw, jj = j < nvalid ? j : 0;
                const uint32_t *vr = vbase + (size_t)jj * RVW;
                uint32_t lo = __ldg(vr + vw0), hi = vtwo ? __ldg(vr + vw0 + 1) : 0u;
                win[u] = __funnelshift_r(lo, hi, vsh);
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
                float4 p4 = *(const float4 *)&wsh[warp][j0 + 2 * u + hw][0];
#pragma unroll
                for (int k = 0; k < EV; k++) {
                    float c = __shfl_sync(TQ_FULL_MASK, vc, (int)(win[u] >> (k * VB)));
                    acc[0][k] = fmaf(p4.x, c, acc[0][k]);
                    acc[1][k] = fmaf(p4.y, c, acc[1][k]);
                    acc[2][k] = fmaf(p4.z, c, acc[2][k]);
                    acc[3][k] = fmaf(p4.w, c, acc[3][k]);
                }
            }
        }
        __syncwarp(); /* wsh is rewritten by the next tile */
    }
    int split = s * NWARP + warp;
#pragma unroll
    for (int hh = 0; hh < GT; hh++) {
        float lsum = warp_sum(l[hh]);
        size_t bh = (size_t)b * a.Hq + h0 + hh;
        if (lane == 0) {
            a.pm[bh * a.NS + split] = m[hh];
            a.pl[bh * a.NS + split] = lsum;
        }
#pragma unroll
        for (int k = 0; k < EV; k++) { /* the two half-warps summed over different tokens */
            float v = acc[hh][k] + __shfl_xor_sync(TQ_FULL_MASK, acc[hh][k], 16);
            if (hw == 0) a.pacc[(bh * a.NS + split) * D + sl * EV + k] = v;
        }
    }
}

/* ---- tensor-core split kernel: d = 128, packed turbo-mse (or turbo-prod) keys and turbo-mse values -------------
 * k_attn_codes_t64 is bound by its CUDA-core FMAs and one codebook shuffle per code. Here both products run on the
 * tensor cores (mma.sync m16n8k16, fp16 operands, fp32 accumulation) over 64-token tiles that each warp streams into
 * shared memory with cp.async one tile ahead. Scores: M = 16 tokens, N = 8 heads (4 real, 4 zero), K = 16 coordinates;
 * P.V: M = 16 coordinates, N = 8 heads, K = 16 tokens. A code pair decodes with one shift, one LOP3 and one shared
 * load from a pair table (2^(2 bits) entries of two fp16 centroids, replicated per lane so the loads never conflict;
 * 4-bit tables, 256 entries, are replicated 16 times to fit: lanes l and l + 16 share a copy, a 2-way conflict when
 * their entries have the same parity).
 *  - keys: the coordinate order inside the dot product is free, so lane (g, t) of the mma takes the 32 coordinates
 *    [32t, 32t + 32) of its tokens (32 KB contiguous bits of the row): its A-fragment pairs at k-step s are
 *    coordinates 32t + 4s + {0,1} and {2,3}; the rotated query is laid out the same way once per block (B fragments
 *    in registers).
 *  - turbo-prod keys (KB = b - 1 MSE bits): the QJL term is one more mma per k-step with the same coordinate order:
 *    lane (g, t)'s 32 signs are word t of the token's 16-byte sign row; a pair of them becomes two fp16 +-1 with a
 *    shift and one LOP3 (sign_pair: the pairs are coordinates 15 - s and 31 - s, s = 0..15, not 4s + {0,1}), and the B
 *    operand is S q (k_prep) laid out in that order. score = ||k|| <q, c> + gamma <Sq, z>
 *    with sqrt(pi/2)/d, 1/sqrt(d) and log2 e folded into Sq by k_prep, as in k_attn_codes.
 *  - values: fragment pairs run along tokens, so a lane decodes (token, coordinate pair) as usual. Rows g / g+8 of
 *    m-tile j are coordinates 16g + 2j and +1, so lane g's 8 pairs are the 16 VB contiguous bits [16 VB g, ...) of
 *    each value row.
 *  - the scores' C fragment (tokens x heads) is written to shared memory as fp16 P = exp2(s - m) * value norm and read
 *    back as the B fragment of P.V (heads x tokens); the online softmax state per head lives in the lanes holding that
 *    head's columns, which are exactly the columns of the P.V accumulators they rescale.
 *  - GT query heads per block (8, 4, 2 or 1): GT < 4: B columns of heads >= GT are zero and their outputs are not
 *    written, so MHA and GQA-2 read each kv row once, like GQA-4 (the tensor cores have the idle width). GT = 8: the
 *    scores' N = 8 columns are 8 real heads (ordered so lane (g, t) holds heads t and t + 4), P.V runs one mma per
 *    4-head group on the same decoded value fragment, and a lane keeps two softmax states: GQA-8 reads the cache once
 *    instead of twice as two 4-head blocks.
 * fp16 query, centroids and probabilities: outputs within ~6e-4 relative of exact (the test's bound is 1e-3); t64 and
 * k_attn_codes stay the reference for every other shape and for the variant attn=t64. */
#define MMA_TT 64
#define MMA_PS (MMA_TT + 2) /* halves per head row of P in shared memory: the 4 heads' reads land in 4 banks */

/* pair table of B-bit codes: 2^(2B) entries, REP copies (lane mod REP reads its own); SH = log2 of an entry's bytes */
template <int B> struct MmaTab {
    static constexpr int REP = B == 4 ? 16 : 32, SH = B == 4 ? 6 : 7, BYTES = (1 << (2 * B)) * REP * 4;
};
/* Shared memory: ALIGN = false: [key table][value table][NWARP warp areas]; a table address is the table's base plus
 * (field << SH | lane copy). ptxas keeps that base in an ordinary register in most instantiations and adds it before
 * every lookup (IMAD.IADD, ~280 per tile). ALIGN = true (turbo-prod, where the smem fits): [warp areas][the larger
 * table at the first shared address aligned to its size][the smaller after it], so base | field | lane is one LOP3
 * with the base folded into the lane term; up to one table's size is reserved for the alignment. */
template <int KB, int VB, bool PROD, int GT, int D = 128> struct MmaCfg {
    static constexpr int RK = D * KB / 8, RV = D * VB / 8, RS = PROD ? D / 8 : 0; /* row bytes: keys, values, signs */
    static constexpr bool ALIGN = PROD;
    static constexpr int KT = MmaTab<KB>::BYTES, VT = MmaTab<VB>::BYTES, BIG = KT > VT ? KT : VT;
    static constexpr int TABS = ALIGN ? 2 * BIG + KT + VT - BIG : KT + VT; /* with room to align the larger */
    static constexpr int PH = GT == 8 ? 8 : 4; /* head rows of P */
    static constexpr int WARP = 2 * MMA_TT * (RK + RV + RS) + (PROD ? 3 : 2) * MMA_TT * 4 + PH * MMA_PS * 2;
    static constexpr int SMEM = TABS + NWARP * WARP;
};

__device__ __forceinline__ void mma16816(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int bytes)
{
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(bytes));
}
/* G = 16: cp.async.cg (L2 only); G = 8: cp.async.ca, the only form with 8-byte granules */
template <int G>
__device__ __forceinline__ void cp_async_g(void *smem, const void *gmem, int bytes)
{
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    if constexpr (G == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(bytes));
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

/* The pair-table byte address of the FW-bit field at bit O of the little-endian chunk w[]: field << SH (an entry's
 * REP copies) | the lane's copy. O is a compile-time constant after unrolling: one shift (or funnel shift when the
 * field straddles two words) and one LOP3. */
template <int O, int FW, int SH>
__device__ __forceinline__ uint32_t pair_addr(const uint32_t *w, uint32_t lanet)
{
    constexpr int wi = O / 32, sh = O % 32;
    uint32_t x;
    if constexpr (sh + FW > 32) x = __funnelshift_r(w[wi], w[wi + 1], sh - SH);
    else if constexpr (sh >= SH) x = w[wi] >> (sh - SH);
    else x = w[wi] << (SH - sh);
    return (x & (((1u << FW) - 1) << SH)) | lanet;
}

/* 2^x in one MUFU (ex2.approx.ftz: within 2 ulp; subnormal results flush to 0, far below fp16's P resolution) */
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* The fused end of a tensor-core split kernel (small batches, AttnArgs.fused): merge the NWARP warps' softmax states
 * of the block into one partial state (m, l, acc) of split s in shared memory and store it; the last block of the
 * (b, kv head, sub-group) to arrive (counted in cnt) merges all NS partial states, divides, rotates back (Hadamard
 * butterflies or the dense transpose) and writes the GT heads' outputs: the work of k_combine without its launch, and
 * NS = blocks instead of blocks x warps. m, l: the lane's heads tg + 4 c (l summed over the warp); acc[c][mt][0..3]:
 * coordinates 16 g + 4 mt + 0..3 of that head. smem: the kernel's dynamic shared memory (>= 20 KB), free by now. */
template <int D, int GT, int NH, int NMT>
__device__ __forceinline__ void mma_finish_fused(const AttnArgs &a, const float *m, const float *l,
                                              const float (*acc)[NMT][4], uint8_t *smem, int s, int kvh, int sub,
                                              int b, int h0)
{
    constexpr int HP = 8; /* heads per warp slot in shared memory */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tg = lane & 3, NT = NWARP * 32;
    float *wm = (float *)smem, *wl = wm + NWARP * HP, *wacc = wl + NWARP * HP; /* [NWARP][HP](+[D]) */
    int *flag = (int *)(wacc + NWARP * HP * D);
    __syncthreads(); /* every warp is done with the tiles and tables */
#pragma unroll
    for (int c = 0; c < NH; c++) {
        const int hh = tg + 4 * c;
        if (hh >= GT) continue;
        if (g == 0) {
            wm[warp * HP + hh] = m[c];
            wl[warp * HP + hh] = l[c];
        }
        float4 *dst = (float4 *)(wacc + (warp * HP + hh) * D + D / 8 * g);
#pragma unroll
        for (int mt = 0; mt < NMT; mt++)
            dst[mt] = make_float4(acc[c][mt][0], acc[c][mt][1], acc[c][mt][2], acc[c][mt][3]);
    }
    __syncthreads();
    const size_t bh0 = (size_t)b * a.Hq + h0;
    for (int idx = tid; idx < GT * D; idx += NT) {
        const int hh = idx / D, i = idx % D;
        float M = -INFINITY, num = 0.0f, den = 0.0f;
#pragma unroll
        for (int w = 0; w < NWARP; w++) M = fmaxf(M, wm[w * HP + hh]);
#pragma unroll
        for (int w = 0; w < NWARP; w++) { /* a warp that had no token: m = -inf, weight 0 */
            const float mw = wm[w * HP + hh], wt = mw == -INFINITY ? 0.0f : exp2f(mw - M);
            num = fmaf(wt, wacc[(w * HP + hh) * D + i], num);
            den = fmaf(wt, wl[w * HP + hh], den);
        }
        const size_t at = (bh0 + hh) * a.NS + s;
        a.pacc[at * D + i] = num;
        if (i == 0) {
            a.pm[at] = M;
            a.pl[at] = den;
        }
    }
    __threadfence(); /* this block's state is visible before the count says so */
    __syncthreads();
    if (tid == 0) {
        unsigned *cnt = a.cnt + ((size_t)b * a.Hkv + kvh) * a.nsub + sub;
        const int last = atomicAdd(cnt, 1u) == (unsigned)a.NS - 1;
        if (last) *cnt = 0; /* every block of the group has counted: ready for the next call */
        *flag = last;
    }
    __syncthreads();
    if (!*flag) return;
    __threadfence();
    /* the last block: weights of the NS states per head (shared), then the merged sums (L2 reads: __ldcg, the other
     * blocks' stores never sat in this SM's L1). This tail runs while most of the GPU idles, so the reads are issued
     * ahead of their use: the NS <= 256 states' m and l at once, 16 float4 sums in flight per thread (the same sums in
     * the same order as one at a time). (The heads' butterflies as one pass of 7 barriers instead of 4 x 7 made ptxas
     * spend 265 more LOP3 per tile in k_attn_mma33's main loop, which shares this code: kept per head.) */
    float *wt = (float *)smem, *den = wt + GT * a.NS, *o = den + HP; /* [GT][NS], [GT], [GT][D] */
    for (int hh = warp; hh < GT; hh += NWARP) {
        const float *pm = a.pm + (bh0 + hh) * a.NS, *pl = a.pl + (bh0 + hh) * a.NS;
        float mv[8], lv[8], M = -INFINITY; /* states lane + 32 k (plan_fused: NS <= 256) */
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int j = lane + 32 * k;
            mv[k] = j < a.NS ? __ldcg(pm + j) : -INFINITY;
            lv[k] = j < a.NS ? __ldcg(pl + j) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < 8; k++) M = fmaxf(M, mv[k]);
        M = warp_max(M);
        float dsum = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int j = lane + 32 * k;
            if (j >= a.NS) break;
            const float w = mv[k] == -INFINITY ? 0.0f : exp2f(mv[k] - M);
            wt[hh * a.NS + j] = w;
            dsum = fmaf(w, lv[k], dsum);
        }
        dsum = warp_sum(dsum);
        if (lane == 0) den[hh] = dsum;
    }
    __syncthreads();
    for (int idx = tid; idx < GT * D / 4; idx += NT) {
        const int hh = idx / (D / 4), c4 = idx % (D / 4);
        const float4 *src = (const float4 *)(a.pacc + (bh0 + hh) * a.NS * D) + c4;
        const float *w = wt + hh * a.NS;
        float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
        for (int j = 0; j < a.NS; j++) {
            const float4 v = __ldcg(src + (size_t)j * (D / 4));
            sum.x = fmaf(w[j], v.x, sum.x);
            sum.y = fmaf(w[j], v.y, sum.y);
            sum.z = fmaf(w[j], v.z, sum.z);
            sum.w = fmaf(w[j], v.w, sum.w);
        }
        const float dn = den[hh];
        float *oo = o + hh * D + 4 * c4;
        oo[0] = sum.x / dn; oo[1] = sum.y / dn; oo[2] = sum.z / dn; oo[3] = sum.w / dn;
    }
    __syncthreads();
    if (a.rotation == TQ_ROT_HADAMARD) {
        for (int hh = 0; hh < GT; hh++) tq_cu_fwht_block(o + hh * D, D);
        const float sc = tq_cu_fwht_scale_dev(D);
        for (int i = tid; i < D; i += NT) {
            const float sg = a.vrot[(size_t)kvh * D + i];
            for (int hh = 0; hh < GT; hh++) a.out[(bh0 + hh) * D + i] = (o[hh * D + i] * sc) * sg;
        }
    } else { /* dense: out_i = sum_j P[j][i] o_j, P read once for the GT heads */
        const float *P = a.vrot + (size_t)kvh * D * D;
        for (int i = tid; i < D; i += NT) {
            float r[GT];
#pragma unroll
            for (int hh = 0; hh < GT; hh++) r[hh] = 0.0f;
            for (int j = 0; j < D; j++) {
                const float pj = __ldg(P + (size_t)j * D + i);
#pragma unroll
                for (int hh = 0; hh < GT; hh++) r[hh] = fmaf(pj, o[hh * D + j], r[hh]);
            }
#pragma unroll
            for (int hh = 0; hh < GT; hh++) a.out[(bh0 + hh) * D + i] = r[hh];
        }
    }
}

/* a 32-bit shared load at base + off; the base as a shared-window address (the explicit form lets ptxas keep it in a
 * uniform register and fold it into the LDS: [R+UR], no add per lookup) */
__device__ __forceinline__ uint32_t lds_u32(uint32_t base, uint32_t off)
{
    uint32_t v;
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(base + off));
    return v;
}

/* one table of pairs (c[e & m], c[e >> B]) as fp16, REP copies per entry */
template <int B>
__device__ __forceinline__ void mma_table(uint8_t *tab, const float *cent)
{
    constexpr int REP = MmaTab<B>::REP, N = (1 << (2 * B)) * REP;
    for (int idx = threadIdx.x; idx < N; idx += blockDim.x) {
        int e = idx / REP;
        __half2 p = __halves2half2(__float2half_rn(cent[e & ((1 << B) - 1)]), __float2half_rn(cent[e >> B]));
        ((uint32_t *)tab)[idx] = *(uint32_t *)&p;
    }
}

/* the lane's D KB / 4 bits of a key row (coordinates [D/4 tg, D/4 (tg + 1))) from bit 0 of w[]: at d = 128 KB words,
 * vector loads where KB is even, so a quarter-warp's rows fall in distinct banks; at d = 256 2 KB words; at d = 64 the
 * chunk (16 KB bits) may start mid-word: two words funnel-shifted (the bits above the chunk are never read) */
template <int KB, int D = 128>
__device__ __forceinline__ void key_words(uint32_t *w, const uint32_t *row, int tg)
{
    if constexpr (D == 256) {
#pragma unroll
        for (int i = 0; i < 2 * KB; i++) w[i] = row[2 * KB * tg + i];
    } else if constexpr (D == 64) {
        const int bit = 16 * KB * tg, i0 = bit >> 5, sh = bit & 31;
        w[0] = __funnelshift_r(row[i0], row[i0 + 1], sh);
        if constexpr (KB > 2) w[1] = row[i0 + 1] >> sh | (sh ? row[i0 + 2] << (32 - sh) : 0u);
    } else if constexpr (KB == 2) {
        uint2 v = *(const uint2 *)(row + 2 * tg);
        w[0] = v.x; w[1] = v.y;
    } else if constexpr (KB == 4) {
        uint4 v = *(const uint4 *)(row + 4 * tg);
        w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
    } else {
#pragma unroll
        for (int i = 0; i < KB; i++) w[i] = row[KB * tg + i];
    }
}

/* key A fragment of k-step KS (pairs at bits 4 KS KB and 4 KS KB + 2 KB of the lane's chunks wa / wb) and its mma */
template <int KS, int B, int SH>
__device__ __forceinline__ void mma_key_step(float *c, uint32_t tab, const uint32_t *wa, const uint32_t *wb,
                                             uint32_t lanet, uint32_t b0, uint32_t b1)
{
    constexpr int O = 4 * KS * B, FW = 2 * B;
    uint32_t a0 = lds_u32(tab, pair_addr<O, FW, SH>(wa, lanet));
    uint32_t a1 = lds_u32(tab, pair_addr<O, FW, SH>(wb, lanet));
    uint32_t a2 = lds_u32(tab, pair_addr<O + FW, FW, SH>(wa, lanet));
    uint32_t a3 = lds_u32(tab, pair_addr<O + FW, FW, SH>(wb, lanet));
    mma16816(c, a0, a1, a2, a3, b0, b1);
}

/* value A fragment of m-tile MT (pairs at bits 4 MT VB and + 2 VB of the lane's chunks of tokens a and b), one mma
 * per group of 4 heads (NH: 1, or 2 for 8 heads a block) */
template <int MT, int B, int SH, int NH, int NM>
__device__ __forceinline__ void mma_value_step(float (*acc)[NM][4], uint32_t tab, const uint32_t *wa,
                                               const uint32_t *wb, uint32_t lanet, uint32_t (*bb)[2])
{
    constexpr int O = 4 * MT * B, FW = 2 * B;
    uint32_t x0 = lds_u32(tab, pair_addr<O, FW, SH>(wa, lanet));
    uint32_t x1 = lds_u32(tab, pair_addr<O + FW, FW, SH>(wa, lanet));
    uint32_t x2 = lds_u32(tab, pair_addr<O, FW, SH>(wb, lanet));
    uint32_t x3 = lds_u32(tab, pair_addr<O + FW, FW, SH>(wb, lanet));
#pragma unroll
    for (int gi = 0; gi < NH; gi++) mma16816(acc[gi][MT], x0, x1, x2, x3, bb[gi][0], bb[gi][1]);
}

/* the QJL signs (bit set: +1) of coordinates 15 - S and 31 - S of a lane's 32-sign word as a pair of fp16 +-1: shifted
 * to bits 15 and 31 they are the halves' sign bits, so one LOP3 ((x & 0x80008000) ^ bits of (-1, -1)) builds the pair */
template <int S>
__device__ __forceinline__ uint32_t sign_pair(uint32_t w)
{
    return ((w << S) & 0x80008000u) ^ 0xBC00BC00u;
}

/* k-step KS of the scores for the four m-tiles (independent accumulator chains), and the QJL term beside it */
template <int KS, int KB, int SH, bool PROD, int NW>
__device__ __forceinline__ void mma_score_step(float (*sc)[4], float (*ss)[4], uint32_t ktab,
                                               uint32_t (*kw)[2][NW], uint32_t (*sw)[2], uint32_t lanek,
                                               uint32_t (*qb)[2], uint32_t (*sb)[2])
{
#pragma unroll
    for (int mt = 0; mt < 4; mt++) {
        mma_key_step<KS, KB, SH>(sc[mt], ktab, kw[mt][0], kw[mt][1], lanek, qb[KS][0], qb[KS][1]);
        if constexpr (PROD)
            mma16816(ss[mt], sign_pair<2 * KS>(sw[mt][0]), sign_pair<2 * KS>(sw[mt][1]),
                     sign_pair<2 * KS + 1>(sw[mt][0]), sign_pair<2 * KS + 1>(sw[mt][1]), sb[KS][0], sb[KS][1]);
    }
}

/* The query of the warp's first head (xq[k]: coordinate lane + 32 k), loaded before the pair tables are built so
 * that its latency overlaps them (the PREP forms) */
template <int D>
__device__ __forceinline__ void mma_prep_load(const AttnArgs &a, int GT, int b, int h0, float *xq)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (warp < GT)
#pragma unroll
        for (int k = 0; k < D / 32; k++) xq[k] = a.q[((size_t)b * a.Hq + h0 + warp) * D + lane + 32 * k];
}

/* The query preparation inside the split kernel (its PREP form: Hadamard rotation, turbo-mse keys, where it costs
 * a few butterflies; a dense rotation or turbo-prod's S q is a d x d matrix-vector product that every block would
 * repeat, so those keep k_prep): k_prep's arithmetic in its order (so the same floats), without its launch. Warp w
 * prepares heads hh = w, w + NWARP of the block's GT into qs + (hh / NWARP) D, qs the warp's free second key stage.
 * xq: mma_prep_load's. */
template <int D>
__device__ __forceinline__ void mma_prep_warp(const AttnArgs &a, int GT, int kvh, int b, int h0, float *qs,
                                              const float *xq)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int j = 0, hh = warp; hh < GT; j++, hh += NWARP) {
        const float *qg = a.q + ((size_t)b * a.Hq + h0 + hh) * D;
        float *y = qs + j * D;
#pragma unroll
        for (int k = 0; k < D / 32; k++)
            y[lane + 32 * k] = (j ? qg[lane + 32 * k] : xq[k]) * a.krot[(size_t)kvh * D + lane + 32 * k];
        tq_cu_fwht_warp(y, D, lane);
        for (int i = lane; i < D; i += 32) y[i] = (y[i] * tq_cu_fwht_scale_dev(D)) * a.scale;
        __syncwarp(); /* y is read by every warp after the block's barrier */
    }
}

template <int KB, int VB, bool PROD, int GT, int D, bool PREP = false>
__global__ void __launch_bounds__(NWARP * 32, D == 256 ? 1 : (PROD || KB == 4 || VB == 4 || GT == 8 || D == 64) ? 2 : 3)
    k_attn_mma(AttnArgs a)
{
    using C = MmaCfg<KB, VB, PROD, GT, D>;
    static_assert(D == 128 || !PROD, "turbo-prod keys on the tensor cores at d = 128 only");
    constexpr int NH = GT == 8 ? 2 : 1; /* heads per lane: tg, and tg + 4 when GT = 8 */
    constexpr int TT = MMA_TT, RK = C::RK, RV = C::RV, RS = C::RS, RVW = RV / 4;
    /* d-dependent counts: k-steps of the scores (16 coordinates each, 4 per lane), m-tiles of P.V (16 coordinate
     * pairs each), key words per lane (D KB / 4 bits; d = 64: up to 2), value words per lane (D VB / 8 bits) */
    constexpr int NKS = D / 16, NMT = D / 32, NKW = D == 64 ? (KB > 2 ? 2 : 1) : D == 256 ? 2 * KB : KB;
    /* cp.async granule: rows of 8 KB bytes at d = 64 are 8-byte aligned only */
    constexpr int GK = RK % 16 == 0 ? 16 : 8, GV = RV % 16 == 0 ? 16 : 8;
    constexpr int KSH = MmaTab<KB>::SH, VSH = MmaTab<VB>::SH;
    static_assert(C::WARP % 16 == 0 && C::TABS % 16 == 0, "cp.async destinations need 16-byte alignment");
    static_assert(C::KT % C::VT == 0 || C::VT % C::KT == 0, "the smaller table must keep the larger's alignment");
    extern __shared__ __align__(16) uint8_t smem[];
    /* one table for keys and values: at d = 256 only, where it lets 2 blocks share an SM (119 KB of shared memory a
     * block without it); at d = 64 the runtime table base cost 15% more instructions in the main loop (870 -> 1006)
     * and bought no occupancy (registers limit it there) */
    const bool shr = !C::ALIGN && D == 256 && a.share_tab;
    const int tabs = C::ALIGN ? 0 : shr ? C::KT : C::TABS; /* bytes before the warp areas */
    uint8_t *ktab = smem, *vtab = shr ? smem : smem + C::KT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    uint8_t *wbase = smem + tabs + warp * C::WARP;
    if constexpr (C::ALIGN) {
        uint8_t *t0 = smem + NWARP * C::WARP;
        const uint32_t s0 = (uint32_t)__cvta_generic_to_shared(t0);
        uint8_t *big = t0 + (((s0 + C::BIG - 1) & ~(uint32_t)(C::BIG - 1)) - s0);
        if (C::KT >= C::VT) {
            ktab = big;
            vtab = big + C::KT;
        } else {
            vtab = big;
            ktab = big + C::VT;
        }
    }
    uint8_t *kst = wbase, *vst = kst + 2 * TT * RK, *sst = vst + 2 * TT * RV; /* [2 stages][TT rows][row bytes] */
    float *nks = (float *)(sst + 2 * TT * RS), *nvs = nks + TT, *nrs = nvs + TT; /* this tile's norms (and gammas) */
    __half *ps = (__half *)(nvs + (PROD ? 2 : 1) * TT);                         /* [PH heads][MMA_PS] P x value norm */
    /* ALIGN: the tables' bases ride in the lane terms and the lookups add 0 */
    const uint32_t ktab_a = (uint32_t)__cvta_generic_to_shared(ktab), vtab_a = (uint32_t)__cvta_generic_to_shared(vtab);
    const uint32_t ktab_s = C::ALIGN ? 0u : ktab_a, vtab_s = C::ALIGN ? 0u : vtab_a;
    int s = blockIdx.x, kvh = blockIdx.y / a.nsub, sub = blockIdx.y % a.nsub, b = blockIdx.z;
    int h0 = kvh * a.G + sub * GT;
    const uint32_t lanek = (C::ALIGN ? ktab_a : 0u) | (uint32_t)(lane & (MmaTab<KB>::REP - 1)) << 2,
                   lanev = (C::ALIGN ? vtab_a : 0u) | (uint32_t)(lane & (MmaTab<VB>::REP - 1)) << 2;
    long start = (long)s * a.chunk, end = start + a.chunk < a.L ? start + a.chunk : a.L;
    long base = ((long)b * a.Hkv + kvh) * a.stride + a.off; /* the window's first row */
    /* softmax state of head tg (+ 4 c) and its P.V accumulators: m-tile mt, C fragment [0..3] = coordinates
     * 16 g + 4 mt + 0..3 (see the P.V step below) */
    float m[NH], l[NH], acc[NH][NMT][4];
#pragma unroll
    for (int c = 0; c < NH; c++) {
        m[c] = -INFINITY;
        l[c] = 0.0f;
#pragma unroll
        for (int j = 0; j < NMT; j++) acc[c][j][0] = acc[c][j][1] = acc[c][j][2] = acc[c][j][3] = 0.0f;
    }
    const uint8_t *kg = a.kv.k_codes, *vg = a.kv.v_codes, *sg = a.kv.k_signs;
    auto issue = [&](long t0, int stg) { /* one tile's rows into stage stg; rows past end zero-filled */
        const size_t r0 = (size_t)(base + t0);
        const uint8_t *ksrc = kg + r0 * RK + 16 * lane, *vsrc = vg + r0 * RV + 16 * lane;
        uint8_t *kdst = kst + stg * TT * RK + 16 * lane, *vdst = vst + stg * TT * RV + 16 * lane;
        const uint8_t *ssrc = PROD ? sg + r0 * RS + 16 * lane : NULL;
        uint8_t *sdst = sst + stg * TT * RS + 16 * lane;
        if constexpr (GK == 8 || GV == 8) { /* d = 64, odd widths: 8-byte granules, lane-strided */
            const int lim = t0 + TT <= end ? TT : (int)(end - t0);
            const uint8_t *kb = kg + r0 * RK, *vb = vg + r0 * RV;
            uint8_t *kd = kst + stg * TT * RK, *vd = vst + stg * TT * RV;
#pragma unroll
            for (int j = 0; j < TT * RK / GK / 32; j++) {
                const int o = GK * (lane + 32 * j);
                const bool ok = o / RK < lim;
                cp_async_g<GK>(kd + o, ok ? kb + o : kb, ok ? GK : 0);
            }
#pragma unroll
            for (int j = 0; j < TT * RV / GV / 32; j++) {
                const int o = GV * (lane + 32 * j);
                const bool ok = o / RV < lim;
                cp_async_g<GV>(vd + o, ok ? vb + o : vb, ok ? GV : 0);
            }
        } else if (t0 + TT <= end) { /* a whole tile (all but a split's last): immediate offsets, no tests */
#pragma unroll
            for (int j = 0; j < TT * RK / 16 / 32; j++) cp_async16(kdst + 512 * j, ksrc + 512 * j, 16);
#pragma unroll
            for (int j = 0; j < TT * RV / 16 / 32; j++) cp_async16(vdst + 512 * j, vsrc + 512 * j, 16);
            if constexpr (PROD) {
#pragma unroll
                for (int j = 0; j < TT * RS / 16 / 32; j++) cp_async16(sdst + 512 * j, ssrc + 512 * j, 16);
            }
        } else { /* a missing row reads nothing from the first row's address */
            const int lim = (int)(end - t0);
#pragma unroll
            for (int j = 0; j < TT * RK / 16 / 32; j++) {
                const bool ok = (lane + 32 * j) / (RK / 16) < lim;
                cp_async16(kdst + 512 * j, ok ? ksrc + 512 * j : kg + r0 * RK, ok ? 16 : 0);
            }
#pragma unroll
            for (int j = 0; j < TT * RV / 16 / 32; j++) {
                const bool ok = (lane + 32 * j) / (RV / 16) < lim;
                cp_async16(vdst + 512 * j, ok ? vsrc + 512 * j : vg + r0 * RV, ok ? 16 : 0);
            }
            if constexpr (PROD) {
#pragma unroll
                for (int j = 0; j < TT * RS / 16 / 32; j++) {
                    const bool ok = lane + 32 * j < lim;
                    cp_async16(sdst + 512 * j, ok ? ssrc + 512 * j : sg + r0 * RS, ok ? 16 : 0);
                }
            }
        }
        cp_async_commit();
    };
    /* fp16 norms of tokens lane and lane + 32 of the next tile, kept raw: converting them at once would wait a
     * whole DRAM latency for the load (ncu: long-scoreboard stalls); they are converted a tile later */
    uint16_t nk0 = 0, nk1 = 0, nv0 = 0, nv1 = 0, nr0 = 0, nr1 = 0;
    auto norms = [&](long t0) {
        long ta = t0 + lane, tb = ta + 32;
        nk0 = ta < end ? __ldg(a.kv.k_norms + base + ta) : (uint16_t)0;
        nv0 = ta < end ? __ldg(a.kv.v_norms + base + ta) : (uint16_t)0;
        nk1 = tb < end ? __ldg(a.kv.k_norms + base + tb) : (uint16_t)0;
        nv1 = tb < end ? __ldg(a.kv.v_norms + base + tb) : (uint16_t)0;
        if (PROD) {
            nr0 = ta < end ? __ldg(a.kv.k_rnorms + base + ta) : (uint16_t)0;
            nr1 = tb < end ? __ldg(a.kv.k_rnorms + base + tb) : (uint16_t)0;
        }
    };
    long t0 = start + warp * TT;
    if (t0 < end) {
        issue(t0, 0);
        norms(t0);
    }
    float xq[D / 32];
    if (PREP) mma_prep_load<D>(a, GT, b, h0, xq);
    /* the pair tables while the first tile (and the query) are in flight */
    mma_table<KB>(ktab, a.kcent);
    if (!shr) mma_table<VB>(vtab, a.vcent);
    /* the queries: prepared here (PREP) into the warps' second stages, or k_prep's (on the fused path a programmatic
     * dependent launch: the above overlapped it) */
    static_assert(!(PREP && PROD), "turbo-prod's S q stays with k_prep");
    static_assert(2 * KB >= (GT + NWARP - 1) / NWARP, "the second key stage holds the warp's queries");
    auto qstage = [&](int hq) -> const float * {
        return (const float *)(smem + tabs + (hq % NWARP) * C::WARP + TT * RK) + (hq / NWARP) * D;
    };
    if (PREP) mma_prep_warp<D>(a, GT, kvh, b, h0, (float *)(kst + TT * RK), xq);
    __syncthreads();
    if (!PREP) grid_dep_wait();
    /* B fragments of the query (and S q): column n = g holds head g/2 for even g < 2 GT and zeros otherwise, so the
     * scores' C fragment gives lane (g, tg) head tg in its even columns; GT = 8: column g holds head g/2 + 4 (g % 2),
     * so lane (g, tg) gets heads tg and tg + 4, the heads of its P.V columns in the two 4-head groups. k-step ks
     * pairs = coordinates 32 tg + 4 ks + {0,1}, {2,3} */
    uint32_t qb[NKS][2], sb[PROD ? 8 : 1][2];
#pragma unroll
    for (int ks = 0; ks < NKS; ks++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            __half2 h = __float2half2_rn(0.0f), hs = h;
            const int hq = GT == 8 ? (g >> 1) + 4 * (g & 1) : g >> 1;
            if (GT == 8 || (!(g & 1) && (g >> 1) < GT)) {
                const float *qp = PREP ? qstage(hq) : a.qrot + ((size_t)b * a.Hq + h0 + hq) * D;
                const int at = D / 4 * tg + 4 * ks + 2 * j;
                h = __floats2half2_rn(qp[at], qp[at + 1]);
                if (PROD) {
                    const int sh = 2 * ks + j;
                    const float *sp = a.sq + ((size_t)b * a.Hq + h0 + hq) * D + 32 * tg;
                    hs = __floats2half2_rn(sp[15 - sh], sp[31 - sh]);
                }
            }
            qb[ks][j] = *(uint32_t *)&h;
            if (PROD) sb[ks][j] = *(uint32_t *)&hs;
        }
    if (PREP) __syncthreads(); /* every warp has its fragments: the second stages are the tiles' again */
    /* value rows: lane g's 8 coordinate pairs 8 g .. 8 g + 7 are the bits [16 VB g, 16 VB g + 16 VB) of a row; a
     * funnel shift brings them to bit 0 (VB = 2, 4: whole words, no shift) */
    constexpr int NVW = D == 256 ? VB : D == 64 ? 1 : VB > 2 ? 2 : 1;
    const int vbit = D / 8 * VB * g, vw = vbit >> 5, vsh = vbit & 31, hp = g >> 1, pe = 16 * (g & 1);
    for (int it = 0; t0 < end; t0 += NWARP * TT, it++) {
        const int stg = it & 1;
        nks[lane] = tq_cu_half(nk0); nks[lane + 32] = tq_cu_half(nk1);
        nvs[lane] = tq_cu_half(nv0); nvs[lane + 32] = tq_cu_half(nv1);
        if (PROD) {
            nrs[lane] = tq_cu_half(nr0);
            nrs[lane + 32] = tq_cu_half(nr1);
        }
        const long tn = t0 + NWARP * TT;
        if (tn < end) {
            issue(tn, stg ^ 1);
            norms(tn);
        } else cp_async_commit(); /* an empty group keeps the wait count uniform */
        cp_async_wait<1>();
        __syncwarp();
        const uint32_t *kr = (const uint32_t *)(kst + stg * TT * RK), *vr = (const uint32_t *)(vst + stg * TT * RV);
        const uint32_t *sr = (const uint32_t *)(sst + stg * TT * RS);
        /* scores: m-tile mt, C [0] = token 16 mt + g, [2] = token 16 mt + g + 8, head tg ([1], [3]: zero columns) */
        float sc[4][4], ss[PROD ? 4 : 1][4];
        uint32_t kw[4][2][NKW]; /* the lane's D KB / 4 bits of rows g and g + 8 of each m-tile */
        uint32_t sw[PROD ? 4 : 1][2];
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            sc[mt][0] = sc[mt][1] = sc[mt][2] = sc[mt][3] = 0.0f;
            key_words<KB, D>(kw[mt][0], (const uint32_t *)((const uint8_t *)kr + (16 * mt + g) * RK), tg);
            key_words<KB, D>(kw[mt][1], (const uint32_t *)((const uint8_t *)kr + (16 * mt + g + 8) * RK), tg);
            if constexpr (PROD) {
                ss[mt][0] = ss[mt][1] = ss[mt][2] = ss[mt][3] = 0.0f;
                sw[mt][0] = sr[(16 * mt + g) * 4 + tg];
                sw[mt][1] = sr[(16 * mt + g + 8) * 4 + tg];
            }
        }
        /* k-steps outside, m-tiles inside */
        mma_score_step<0, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
        mma_score_step<1, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
        mma_score_step<2, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
        mma_score_step<3, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
        if constexpr (NKS > 4) {
            mma_score_step<4, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<5, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<6, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<7, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
        }
        if constexpr (NKS > 8) {
            mma_score_step<8, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<9, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<10, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<11, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<12, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<13, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<14, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
            mma_score_step<15, KB, KSH, PROD>(sc, ss, ktab_s, kw, sw, lanek, qb, sb);
        }
        /* online softmax of head tg (+ 4 c: C columns 2 tg + c) over the tile's 64 tokens */
        const int lim = end - t0 < TT ? (int)(end - t0) : TT;
#pragma unroll
        for (int c = 0; c < NH; c++) {
            float mx = -INFINITY;
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    int tok = 16 * mt + g + 8 * r;
                    float x = sc[mt][2 * r + c] * nks[tok];
                    if constexpr (PROD) x = fmaf(ss[mt][2 * r + c], nrs[tok], x);
                    x = tok < lim ? x : -INFINITY;
                    sc[mt][2 * r + c] = x;
                    mx = fmaxf(mx, x);
                }
#pragma unroll
            for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(TQ_FULL_MASK, mx, o));
            const float mnew = fmaxf(m[c], mx); /* finite: token t0 is valid */
            const float alpha = fast_exp2(m[c] - mnew);
            m[c] = mnew;
            l[c] *= alpha;
            /* once the running maxima settle most tiles change none: skip the rescale then (warp-uniform test) */
            if (__any_sync(TQ_FULL_MASK, alpha != 1.0f)) {
#pragma unroll
                for (int j = 0; j < NMT; j++) { /* every m-tile of P.V: 8 at d = 256 (4 left half the output stale) */
                    acc[c][j][0] *= alpha; acc[c][j][1] *= alpha; acc[c][j][2] *= alpha; acc[c][j][3] *= alpha;
                }
            }
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    int tok = 16 * mt + g + 8 * r;
                    float p = fast_exp2(sc[mt][2 * r + c] - m[c]); /* 0 for a missing token */
                    l[c] += p;
                    ps[(tg + 4 * c) * MMA_PS + tok] = __float2half_rn(p * nvs[tok]);
                }
        }
        __syncwarp();
        /* P.V with the coordinate parity folded into K and N: K = 8 tokens x parity e', N = 4 heads x parity e,
         * B[(t, e')][(h, e)] = P[h][t] if e' = e else 0, A[pair p][(t, e')] = V[t][2p + e'], so an A pair is one
         * table entry as it comes (two consecutive coordinates of one token) and C[p][(h, e)] = O[h][2p + e].
         * k-step ks: tokens 8 ks + tg (A/B low) and + 4 (high); m-tile mt rows g / g + 8 = pairs 8 g + 2 mt and + 1,
         * the fields at bits 4 VB mt and 4 VB mt + 2 VB of the lane's normalised value chunk. Lane (g, tg) builds B
         * column g = (head g/2, parity g%2): P in the low or high half. */
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            const int ta = 8 * ks + tg, tb = ta + 4;
            uint32_t bb[NH][2];
#pragma unroll
            for (int gi = 0; gi < NH; gi++) {
                bb[gi][0] = (uint32_t)__half_as_ushort(ps[(4 * gi + hp) * MMA_PS + ta]) << pe;
                bb[gi][1] = (uint32_t)__half_as_ushort(ps[(4 * gi + hp) * MMA_PS + tb]) << pe;
            }
            uint32_t w[2][NVW > 2 ? NVW : 2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int tok = r ? tb : ta;
                if constexpr (D == 256) { /* D VB / 8 = 32 VB bits: VB whole words */
#pragma unroll
                    for (int i = 0; i < NVW; i++) w[r][i] = vr[tok * RVW + vw + i];
                    continue;
                } else if constexpr (D == 64) { /* 8 VB bits from any bit offset: one funnel shift */
                    const uint32_t *row = (const uint32_t *)((const uint8_t *)vr + tok * RV);
                    w[r][0] = __funnelshift_r(row[vw], row[vw + 1], vsh);
                    w[r][1] = 0;
                    continue;
                }
                uint32_t lo = vr[tok * RVW + vw];
                if constexpr (NVW == 2) {
                    uint32_t hi = vr[tok * RVW + vw + 1];
                    w[r][0] = __funnelshift_r(lo, hi, vsh);
                    w[r][1] = hi >> vsh;
                } else {
                    w[r][0] = lo >> vsh;
                    w[r][1] = 0;
                }
            }
            mma_value_step<0, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
            mma_value_step<1, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
            if constexpr (NMT > 2) {
                mma_value_step<2, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
                mma_value_step<3, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
            }
            if constexpr (NMT > 4) {
                mma_value_step<4, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
                mma_value_step<5, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
                mma_value_step<6, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
                mma_value_step<7, VB, VSH, NH>(acc, vtab_s, w[0], w[1], lanev, bb);
            }
        }
        __syncwarp(); /* stage stg, the norms and ps are rewritten next */
    }
    cp_async_wait<0>();
#pragma unroll
    for (int c = 0; c < NH; c++)
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) l[c] += __shfl_xor_sync(TQ_FULL_MASK, l[c], o);
    if (a.fused) {
        mma_finish_fused<D, GT, NH, NMT>(a, m, l, acc, smem, s, kvh, sub, b, h0);
        return;
    }
    int split = s * NWARP + warp;
#pragma unroll
    for (int c = 0; c < NH; c++) {
        if (tg >= GT) return; /* a padding head */
        size_t bh = (size_t)b * a.Hq + h0 + tg + 4 * c;
        if (g == 0) {
            a.pm[bh * a.NS + split] = m[c];
            a.pl[bh * a.NS + split] = l[c];
        }
        float4 *pa = (float4 *)(a.pacc + (bh * a.NS + split) * D + D / 8 * g);
#pragma unroll
        for (int mt = 0; mt < NMT; mt++)
            pa[mt] = make_float4(acc[c][mt][0], acc[c][mt][1], acc[c][mt][2], acc[c][mt][3]);
    }
}

/* k_attn_mma for 3-bit turbo-mse keys and values in 4-head groups, kept as first written (commit 8553896): the
 * template below computes the same thing, but ptxas keeps the shared-window base of its pair tables in an ordinary
 * register there and adds it before each of the 256 table loads of a tile (IMAD.IADD; 0.329 against 0.320 ms at B = 16,
 * L = 64k), where this form gets [R+UR] addressing. the variant attn=mma-t runs the template for this shape instead. */
#define MMA33_RK 48 /* bytes of a 3-bit row of 128 codes */
#define MMA33_WARP_SMEM (2 * 2 * MMA_TT * MMA33_RK + 2 * MMA_TT * 4 + 4 * MMA_PS * 2) /* a multiple of 16 */
#define MMA33_SMEM (2 * 64 * 32 * 4 + NWARP * MMA33_WARP_SMEM)
__device__ __forceinline__ uint32_t lds33(const uint8_t *base, uint32_t off)
{
    return *(const uint32_t *)(base + off);
}

template <bool PREP>
__global__ void __launch_bounds__(NWARP * 32, 3) k_attn_mma33(AttnArgs a)
{
    constexpr int D = 128, GT = 4, TT = MMA_TT, RK = MMA33_RK, RW = RK / 4;
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *ktab = smem, *vtab = smem + 64 * 32 * 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    static_assert(MMA33_WARP_SMEM % 16 == 0, "cp.async destinations need 16-byte alignment");
    uint8_t *wbase = smem + 2 * 64 * 32 * 4 + warp * MMA33_WARP_SMEM;
    uint8_t *kst = wbase, *vst = wbase + 2 * TT * RK;                /* [2 stages][TT rows][RK bytes] each */
    float *nks = (float *)(wbase + 4 * TT * RK), *nvs = nks + TT;     /* this tile's key and value norms */
    __half *ps = (__half *)(nvs + TT);                                /* [GT heads][MMA_PS] P x value norm */
    int s = blockIdx.x, kvh = blockIdx.y / a.nsub, sub = blockIdx.y % a.nsub, b = blockIdx.z;
    int h0 = kvh * a.G + sub * GT;
    const uint32_t lane4 = (uint32_t)lane << 2;
    long start = (long)s * a.chunk, end = start + a.chunk < a.L ? start + a.chunk : a.L;
    long base = ((long)b * a.Hkv + kvh) * a.stride + a.off; /* the window's first row */
    /* softmax state of head tg and its P.V accumulators: m-tile mt, C fragment [0..3] = coordinates 16 g + 4 mt + 0..3
     * (see the P.V step below) */
    float m = -INFINITY, l = 0.0f, acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    const uint8_t *kg = a.kv.k_codes, *vg = a.kv.v_codes;
    auto issue = [&](long t0, int stg) { /* one tile's key and value rows into stage stg; rows past end zero-filled */
        const size_t row0 = (size_t)(base + t0) * RK;
        const uint8_t *ksrc = kg + row0 + 16 * lane, *vsrc = vg + row0 + 16 * lane;
        uint8_t *kdst = kst + stg * TT * RK + 16 * lane, *vdst = vst + stg * TT * RK + 16 * lane;
        if (t0 + TT <= end) { /* a whole tile (all but a split's last): immediate offsets, no tests */
#pragma unroll
            for (int j = 0; j < TT * RK / 16 / 32; j++) {
                cp_async16(kdst + 512 * j, ksrc + 512 * j, 16);
                cp_async16(vdst + 512 * j, vsrc + 512 * j, 16);
            }
        } else {
            const int lim = (int)(end - t0);
#pragma unroll
            for (int j = 0; j < TT * RK / 16 / 32; j++) {
                const bool ok = (lane + 32 * j) / 3 < lim; /* a missing row reads nothing from row 0's address */
                cp_async16(kdst + 512 * j, ok ? ksrc + 512 * j : kg + row0, ok ? 16 : 0);
                cp_async16(vdst + 512 * j, ok ? vsrc + 512 * j : vg + row0, ok ? 16 : 0);
            }
        }
        cp_async_commit();
    };
    /* fp16 norms of tokens lane and lane + 32 of the next tile, kept raw: converting them at once would wait a
     * whole DRAM latency for the load (ncu: long-scoreboard stalls); they are converted a tile later */
    uint16_t nk0 = 0, nk1 = 0, nv0 = 0, nv1 = 0;
    auto norms = [&](long t0) {
        long ta = t0 + lane, tb = ta + 32;
        nk0 = ta < end ? __ldg(a.kv.k_norms + base + ta) : (uint16_t)0;
        nv0 = ta < end ? __ldg(a.kv.v_norms + base + ta) : (uint16_t)0;
        nk1 = tb < end ? __ldg(a.kv.k_norms + base + tb) : (uint16_t)0;
        nv1 = tb < end ? __ldg(a.kv.v_norms + base + tb) : (uint16_t)0;
    };
    long t0 = start + warp * TT;
    if (t0 < end) {
        issue(t0, 0);
        norms(t0);
    }
    float xq[D / 32];
    if (PREP) mma_prep_load<D>(a, GT, b, h0, xq);
    for (int idx = threadIdx.x; idx < 64 * 32; idx += blockDim.x) {
        int e = idx >> 5;
        __half2 kp = __halves2half2(__float2half_rn(a.kcent[e & 7]), __float2half_rn(a.kcent[e >> 3]));
        __half2 vp = __halves2half2(__float2half_rn(a.vcent[e & 7]), __float2half_rn(a.vcent[e >> 3]));
        ((uint32_t *)ktab)[idx] = *(uint32_t *)&kp;
        ((uint32_t *)vtab)[idx] = *(uint32_t *)&vp;
    }
    if (PREP) mma_prep_warp<D>(a, GT, kvh, b, h0, (float *)(kst + TT * RK), xq);
    __syncthreads();
    if (!PREP) grid_dep_wait();
    /* B fragments of the query: column n = g holds head g/2 for even g and zeros for odd g, so the scores' C fragment
     * gives lane (g, tg) head tg in its even columns; k-step ks pairs = coordinates 32 tg + 4 ks + {0,1}, {2,3} */
    uint32_t qb[8][2];
#pragma unroll
    for (int ks = 0; ks < 8; ks++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            __half2 h = __float2half2_rn(0.0f);
            if (!(g & 1)) {
                const float *qp = PREP ? (const float *)(smem + 2 * 64 * 32 * 4 + (g >> 1) * MMA33_WARP_SMEM + TT * RK)
                                      : a.qrot + ((size_t)b * a.Hq + h0 + (g >> 1)) * D;
                qp += 32 * tg + 4 * ks + 2 * j;
                h = __floats2half2_rn(qp[0], qp[1]);
            }
            qb[ks][j] = *(uint32_t *)&h;
        }
    if (PREP) __syncthreads(); /* every warp has its fragments: the second stages are the tiles' again */
    /* value rows: lane g's 8 coordinate pairs 8 g .. 8 g + 7 are the bits [48 g, 48 g + 48) of a row; a runtime funnel
     * shift brings them to bit 0 */
    const int vw = (3 * g) >> 1, vsh = 16 * (g & 1), hp = g >> 1, pe = 16 * (g & 1);
    for (int it = 0; t0 < end; t0 += NWARP * TT, it++) {
        const int stg = it & 1;
        nks[lane] = tq_cu_half(nk0); nks[lane + 32] = tq_cu_half(nk1);
        nvs[lane] = tq_cu_half(nv0); nvs[lane + 32] = tq_cu_half(nv1);
        const long tn = t0 + NWARP * TT;
        if (tn < end) {
            issue(tn, stg ^ 1);
            norms(tn);
        } else cp_async_commit(); /* an empty group keeps the wait count uniform */
        cp_async_wait<1>();
        __syncwarp();
        const uint32_t *kr = (const uint32_t *)(kst + stg * TT * RK), *vr = (const uint32_t *)(vst + stg * TT * RK);
        /* scores: m-tile mt, C [0] = token 16 mt + g, [2] = token 16 mt + g + 8, head tg ([1], [3]: zero columns) */
        float sc[4][4];
        uint32_t kw[4][2][3]; /* the lane's 96 bits of rows g and g + 8 of each m-tile */
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            sc[mt][0] = sc[mt][1] = sc[mt][2] = sc[mt][3] = 0.0f;
#pragma unroll
            for (int i = 0; i < 3; i++) {
                kw[mt][0][i] = kr[(16 * mt + g) * RW + 3 * tg + i];
                kw[mt][1][i] = kr[(16 * mt + g + 8) * RW + 3 * tg + i];
            }
        }
        /* k-steps outside, m-tiles inside: four independent accumulator chains in flight */
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                const uint32_t *wa = kw[mt][0], *wb = kw[mt][1];
                uint32_t a0, a1, a2, a3;
#define TQ_PAIRS(O)                                                                                                   \
    a0 = lds33(ktab, pair_addr<O, 6, 7>(wa, lane4));                                                                      \
    a1 = lds33(ktab, pair_addr<O, 6, 7>(wb, lane4));                                                                      \
    a2 = lds33(ktab, pair_addr<O + 6, 6, 7>(wa, lane4));                                                                  \
    a3 = lds33(ktab, pair_addr<O + 6, 6, 7>(wb, lane4));
                switch (ks) { /* the bit offsets as template constants */
                case 0: TQ_PAIRS(0) break;
                case 1: TQ_PAIRS(12) break;
                case 2: TQ_PAIRS(24) break;
                case 3: TQ_PAIRS(36) break;
                case 4: TQ_PAIRS(48) break;
                case 5: TQ_PAIRS(60) break;
                case 6: TQ_PAIRS(72) break;
                default: TQ_PAIRS(84) break;
                }
#undef TQ_PAIRS
                mma16816(sc[mt], a0, a1, a2, a3, qb[ks][0], qb[ks][1]);
            }
        }
        /* online softmax of head tg over the tile's 64 tokens */
        const int lim = end - t0 < TT ? (int)(end - t0) : TT;
        float mx = -INFINITY;
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int tok = 16 * mt + g + 8 * r;
                float x = tok < lim ? sc[mt][2 * r] * nks[tok] : -INFINITY;
                sc[mt][2 * r] = x;
                mx = fmaxf(mx, x);
            }
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(TQ_FULL_MASK, mx, o));
        const float mnew = fmaxf(m, mx); /* finite: token t0 is valid */
        const float alpha = fast_exp2(m - mnew);
        m = mnew;
        l *= alpha;
        /* once the running maxima settle most tiles change none: skip the rescale then (warp-uniform test) */
        if (__any_sync(TQ_FULL_MASK, alpha != 1.0f)) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                acc[j][0] *= alpha; acc[j][1] *= alpha; acc[j][2] *= alpha; acc[j][3] *= alpha;
            }
        }
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int tok = 16 * mt + g + 8 * r;
                float p = fast_exp2(sc[mt][2 * r] - m); /* 0 for a missing token */
                l += p;
                ps[tg * MMA_PS + tok] = __float2half_rn(p * nvs[tok]);
            }
        __syncwarp();
        /* P.V with the coordinate parity folded into K and N: K = 8 tokens x parity e', N = 4 heads x parity e,
         * B[(t, e')][(h, e)] = P[h][t] if e' = e else 0, A[pair p][(t, e')] = V[t][2p + e'], so an A pair is one
         * table entry as it comes (two consecutive coordinates of one token) and C[p][(h, e)] = O[h][2p + e].
         * k-step ks: tokens 8 ks + tg (A/B low) and + 4 (high); m-tile mt rows g / g + 8 = pairs 8 g + 2 mt and + 1,
         * the fields at bits 12 mt and 12 mt + 6 of the lane's normalised value chunk. Lane (g, tg) builds B column
         * g = (head g/2, parity g%2): P in the low or high half. */
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            const int ta = 8 * ks + tg, tb = ta + 4;
            uint32_t b0 = (uint32_t)__half_as_ushort(ps[hp * MMA_PS + ta]) << pe;
            uint32_t b1 = (uint32_t)__half_as_ushort(ps[hp * MMA_PS + tb]) << pe;
            uint32_t w[2][2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int tok = r ? tb : ta;
                uint32_t lo = vr[tok * RW + vw], hi = vr[tok * RW + vw + 1];
                w[r][0] = __funnelshift_r(lo, hi, vsh);
                w[r][1] = hi >> vsh;
            }
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                uint32_t x0, x1, x2, x3;
#define TQ_VP(O)                                                                                                      \
    x0 = lds33(vtab, pair_addr<O, 6, 7>(w[0], lane4));                                                                    \
    x1 = lds33(vtab, pair_addr<O + 6, 6, 7>(w[0], lane4));                                                                \
    x2 = lds33(vtab, pair_addr<O, 6, 7>(w[1], lane4));                                                                    \
    x3 = lds33(vtab, pair_addr<O + 6, 6, 7>(w[1], lane4));
                switch (mt) {
                case 0: TQ_VP(0) break;
                case 1: TQ_VP(12) break;
                case 2: TQ_VP(24) break;
                default: TQ_VP(36) break;
                }
#undef TQ_VP
                mma16816(acc[mt], x0, x1, x2, x3, b0, b1);
            }
        }
        __syncwarp(); /* stage stg, the norms and ps are rewritten next */
    }
    cp_async_wait<0>();
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) l += __shfl_xor_sync(TQ_FULL_MASK, l, o);
    if (a.fused) {
        mma_finish_fused<128, 4, 1, 4>(a, &m, &l, (float(*)[4][4])acc, smem, s, kvh, sub, b, h0);
        return;
    }
    int split = s * NWARP + warp;
    size_t bh = (size_t)b * a.Hq + h0 + tg;
    if (g == 0) {
        a.pm[bh * a.NS + split] = m;
        a.pl[bh * a.NS + split] = l;
    }
    float4 *pa = (float4 *)(a.pacc + (bh * a.NS + split) * D + 16 * g);
#pragma unroll
    for (int mt = 0; mt < 4; mt++) pa[mt] = make_float4(acc[mt][0], acc[mt][1], acc[mt][2], acc[mt][3]);
}
/* The fp16 baseline with the same split structure: scores lane = token from the fp16 key row, values lane = 1/32 of
 * the coordinates. No rotation, no norms. */
template <int D, int GT>
__global__ void __launch_bounds__(NWARP * 32) k_attn_fp16(AttnArgs a)
{
    constexpr int E = D / 32;
    __shared__ __align__(16) float qs[GT][D];
    int s = blockIdx.x, g = blockIdx.y / a.nsub, sub = blockIdx.y % a.nsub, b = blockIdx.z;
    int h0 = g * a.G + sub * GT, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int idx = threadIdx.x; idx < GT * D; idx += blockDim.x)
        qs[idx / D][idx % D] = a.qrot[((size_t)b * a.Hq + h0 + idx / D) * D + idx % D];
    __syncthreads();
    long start = (long)s * a.chunk, end = start + a.chunk < a.L ? start + a.chunk : a.L;
    long base = ((long)b * a.Hkv + g) * a.stride + a.off; /* the window's first row */
    float m[GT], l[GT], acc[GT][E];
#pragma unroll
    for (int hh = 0; hh < GT; hh++) {
        m[hh] = -INFINITY;
        l[hh] = 0.0f;
#pragma unroll
        for (int k = 0; k < E; k++) acc[hh][k] = 0.0f;
    }
    for (long t0 = start + warp * 32; t0 < end; t0 += NWARP * 32) {
        long t = t0 + lane;
        bool valid = t < end;
        long tc = valid ? t : t0;
        const uint4 *kr = (const uint4 *)(a.k16 + (size_t)(base + tc) * D);
        float sc[GT];
#pragma unroll
        for (int hh = 0; hh < GT; hh++) sc[hh] = 0.0f;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            uint4 v4 = __ldg(kr + i);
            const __half2 *h2 = (const __half2 *)&v4;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __half22float2(h2[k]);
#pragma unroll
                for (int hh = 0; hh < GT; hh++) sc[hh] = fmaf(qs[hh][8 * i + 2 * k + 1], f.y, fmaf(qs[hh][8 * i + 2 * k], f.x, sc[hh]));
            }
        }
        float wv[GT];
#pragma unroll
        for (int hh = 0; hh < GT; hh++) {
            float x = valid ? sc[hh] : -INFINITY;
            float mnew = fmaxf(m[hh], warp_max(x));
            float alpha = exp2f(m[hh] - mnew), p = exp2f(x - mnew);
            l[hh] = l[hh] * alpha + p;
#pragma unroll
            for (int k = 0; k < E; k++) acc[hh][k] *= alpha;
            m[hh] = mnew;
            wv[hh] = p;
        }
        int nvalid = end - t0 < 32 ? (int)(end - t0) : 32;
        for (int j = 0; j < nvalid; j++) {
            const __half *vr = (const __half *)(a.v16 + (size_t)(base + t0 + j) * D + lane * E);
            float vf[E];
            if (E % 4 == 0) {
#pragma unroll
                for (int k = 0; k < E; k += 4) {
                    uint2 u2 = __ldg((const uint2 *)(vr + k));
                    float2 f0 = __half22float2(*(const __half2 *)&u2.x), f1 = __half22float2(*(const __half2 *)&u2.y);
                    vf[k] = f0.x; vf[k + 1] = f0.y; vf[k + 2] = f1.x; vf[k + 3] = f1.y;
                }
            } else {
#pragma unroll
                for (int k = 0; k < E; k++) vf[k] = __half2float(vr[k]);
            }
            float pj[GT];
#pragma unroll
            for (int hh = 0; hh < GT; hh++) pj[hh] = __shfl_sync(TQ_FULL_MASK, wv[hh], j);
#pragma unroll
            for (int k = 0; k < E; k++)
#pragma unroll
                for (int hh = 0; hh < GT; hh++) acc[hh][k] = fmaf(pj[hh], vf[k], acc[hh][k]);
        }
    }
    int split = s * NWARP + warp;
#pragma unroll
    for (int hh = 0; hh < GT; hh++) {
        float lsum = warp_sum(l[hh]);
        size_t bh = (size_t)b * a.Hq + h0 + hh;
        if (lane == 0) {
            a.pm[bh * a.NS + split] = m[hh];
            a.pl[bh * a.NS + split] = lsum;
        }
#pragma unroll
        for (int k = 0; k < E; k++) a.pacc[(bh * a.NS + split) * D + lane * E + k] = acc[hh][k];
    }
}

/* Merge the NS softmax states of one (b, h) and rotate the value sum back with the kv head's value rotation. */
template <int D>
__global__ void k_combine(const float *pm, const float *pl, const float *pacc, int NS, int Hq, int G, int rotation,
                          const float *vrot, float *out)
{
    __shared__ float o[D];
    int bh = blockIdx.x, g = (bh % Hq) / G, i = threadIdx.x;
    const float *m = pm + (size_t)bh * NS, *l = pl + (size_t)bh * NS;
    float M = -INFINITY;
    for (int s = 0; s < NS; s++) M = fmaxf(M, m[s]);
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < NS; s++) {
        float w = m[s] == -INFINITY ? 0.0f : exp2f(m[s] - M);
        den = fmaf(w, l[s], den);
        num = fmaf(w, pacc[((size_t)bh * NS + s) * D + i], num);
    }
    o[i] = num / den;
    __syncthreads();
    float r;
    if (rotation == TQ_ROT_HADAMARD) {
        tq_cu_fwht_block(o, D);
        r = (o[i] * tq_cu_fwht_scale_dev(D)) * vrot[(size_t)g * D + i];
    } else if (rotation == TQ_ROT_DENSE) {
        const float *P = vrot + (size_t)g * D * D;
        r = 0.0f;
        for (int j = 0; j < D; j++) r = fmaf(P[(size_t)j * D + i], o[j], r);
    } else r = o[i];
    out[(size_t)bh * D + i] = r;
}

static int upload(float **dev, const float *host, size_t n, const char *what)
{
    if (!host) return tq_error_set(TQ_ERR_USAGE, "cuda attention: missing %s", what);
    int st = tq_cuda_alloc((void **)dev, n * sizeof(float));
    return st ? st : tq_cuda_upload(*dev, host, n * sizeof(float));
}

extern "C" void tq_cuda_attn_free(tq_cuda_attn *a)
{
    if (!a) return;
    tq_cuda_free(a->krot);
    tq_cuda_free(a->vrot);
    tq_cuda_free(a->kcent);
    tq_cuda_free(a->vcent);
    tq_cuda_free(a->kS);
    tq_cuda_free(a->ws);
    tq_cuda_free(a->cnt);
    free(a);
}

extern "C" int tq_cuda_attn_create(tq_cuda_attn **out, const tq_cuda_attn_spec *s)
{
    *out = NULL;
    if (s->d != 64 && s->d != 128 && s->d != 256)
        return tq_error_set(TQ_ERR_USAGE, "cuda attention: head dim %d unsupported (64, 128 or 256)", s->d);
    if (s->key_method != TQ_M_TURBO_MSE && s->key_method != TQ_M_TURBO_PROD)
        return tq_error_set(TQ_ERR_USAGE, "cuda attention: keys must be turbo-mse or turbo-prod");
    int kmax = s->key_method == TQ_M_TURBO_PROD ? 3 : 4;
    if (s->key_bits < 1 || s->key_bits > kmax || s->value_bits < 1 || s->value_bits > 4)
        return tq_error_set(TQ_ERR_USAGE,
                            "cuda attention: key MSE bits %d (1..%d) or value bits %d (1..4) out of range",
                            s->key_bits, kmax, s->value_bits);
    if (s->rotation != TQ_ROT_HADAMARD && s->rotation != TQ_ROT_DENSE)
        return tq_error_set(TQ_ERR_USAGE, "cuda attention: rotation must be hadamard or dense");
    if (s->n_kv_heads < 1) return tq_error_set(TQ_ERR_USAGE, "cuda attention: n_kv_heads %d", s->n_kv_heads);
    tq_cuda_attn *a = (tq_cuda_attn *)calloc(1, sizeof *a);
    if (!a) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    a->s = *s;
    a->same_cent = s->key_method == TQ_M_TURBO_MSE && s->key_bits == s->value_bits && s->key_centroids &&
                   s->value_centroids && !memcmp(s->key_centroids, s->value_centroids, sizeof(float) << s->key_bits);
    size_t d = (size_t)s->d, H = (size_t)s->n_kv_heads, nr = s->rotation == TQ_ROT_DENSE ? H * d * d : H * d;
    int st = tq_cuda_device(NULL, 0, &a->sm_count, NULL);
    if (!st) st = upload(&a->krot, s->key_rot, nr, "key rotation");
    if (!st) st = upload(&a->vrot, s->value_rot, nr, "value rotation");
    if (!st) st = upload(&a->kcent, s->key_centroids, (size_t)1 << s->key_bits, "key centroids");
    if (!st) st = upload(&a->vcent, s->value_centroids, (size_t)1 << s->value_bits, "value centroids");
    if (!st && s->key_method == TQ_M_TURBO_PROD) st = upload(&a->kS, s->key_S, H * d * d, "key QJL matrix S");
    if (st) {
        tq_cuda_attn_free(a);
        return st;
    }
    *out = a;
    return TQ_OK;
}

/* Splits: about 16 blocks per SM (several waves, so the last partial wave costs little), each split at least
 * 4 tiles per warp (NWARP*128 tokens) so the merge and the per-block set-up stay small beside the scan. */
static void plan_splits(int sm, long L, long groups, long *chunk, int *nsplit)
{
    long want = (16L * sm + groups - 1) / groups;
    long maxs = (L + NWARP * 128 - 1) / (NWARP * 128);
    if (want > maxs) want = maxs;
    if (want < 1) want = 1;
    long c = (L + want - 1) / want;
    c = (c + 31) / 32 * 32;
    *chunk = c;
    *nsplit = (int)((L + c - 1) / c);
}

/* Splits for k_attn_codes_t64, which holds only bps (4) blocks per SM: the 16-blocks-per-SM plan above left a
 * partial last wave (B = 16, L = 64k: 2176 blocks = 4.1 waves of 528). Choose the split count that minimises
 * waves x (tokens per block + a fixed cost per block, about 512 tokens' worth: set-up, softmax state, merge). */
static void plan_splits_waves(int sm, int bps, long L, long groups, long *chunk, int *nsplit)
{
    long W = (long)bps * sm, maxs = (L + NWARP * 128 - 1) / (NWARP * 128), best_c = 0;
    double best = 0;
    if (maxs < 1) maxs = 1;
    for (long ns = 1; ns <= maxs; ns++) {
        long c = ((L + ns - 1) / ns + 63) / 64 * 64, n = (L + c - 1) / c;
        double cost = (double)((n * groups + W - 1) / W) * (double)(c + 512);
        if (!best_c || cost < best) {
            best = cost;
            best_c = c;
        }
    }
    *chunk = best_c;
    *nsplit = (int)((L + best_c - 1) / best_c);
}

/* Splits of the fused path: the smallest chunk (a multiple of the 64-token tile, at least one tile per warp and at
 * most 256 splits, the merge's shared-memory bound) whose blocks fit one wave of resident blocks, so every SM holds
 * about bps blocks from start to end and the last block of each group merges few states. */
static void plan_fused(int sm, int bps, long L, long groups, long *chunk, int *nsplit)
{
    const long W = (long)(bps > 0 ? bps : 1) * sm;
    long c = (L + 255) / 256;
    c = (c + 63) / 64 * 64;
    if (c < NWARP * MMA_TT) c = NWARP * MMA_TT;
    while (c < L && (L + c - 1) / c * groups > W) c += 64;
    *chunk = c;
    *nsplit = (int)((L + c - 1) / c);
}

static int ensure_ws(float **ws, size_t *have, size_t need)
{
    if (*have >= need) return TQ_OK;
    tq_cuda_free(*ws);
    *ws = NULL;
    *have = 0;
    int st = tq_cuda_alloc((void **)ws, need);
    if (!st) *have = need;
    return st;
}

typedef void (*attn_kernel)(AttnArgs);

template <int D, int GT, bool PROD>
static attn_kernel pick_kb(int kb)
{
    switch (kb) {
    case 1: return k_attn_codes<D, 1, GT, PROD>;
    case 2: return k_attn_codes<D, 2, GT, PROD>;
    case 3: return k_attn_codes<D, 3, GT, PROD>;
    case 4: return PROD ? NULL : k_attn_codes<D, 4, GT, PROD>;
    default: return NULL;
    }
}

/* Kernel variants, so one run can time them side by side (tq_cuda_variant_set("attn", name)): "v1" keeps
 * k_attn_codes for every shape (and its split plan); "t64-plan16" runs k_attn_codes_t64 with k_attn_codes's split
 * plan; "t64" keeps k_attn_codes_t64 / k_attn_codes where the tensor-core kernels would run; "mma-t" runs the k_attn_mma
 * template where k_attn_mma33 would (3-bit turbo-mse, 4-head groups); "unfused" keeps the tensor-core kernels on the
 * split path (split kernel, then k_combine) at every batch, "fused" puts them on the fused one (the split kernel
 * merges and rotates back itself) at every batch, and both also run the d = 64 / 256 tensor-core kernels; "fast" is
 * the round-2 selection: the fused path at small batches, the split path at large ones, the tensor-core kernels at
 * d = 64 / 256 too. Under these three the tensor-core split kernels rotate and scale their heads' queries themselves
 * where the rotation is Hadamard and the keys turbo-mse (no k_prep: a fused call is one launch), and at d = 256, where keys and values have the same pair table, the
 * template builds one; "fast-r2" is "fast" as measured on 2026-12-07: k_prep in front of the split kernel (on the
 * fused path as its programmatic dependent), two pair tables. "auto" (the default) keeps the
 * selection measured before round 2 (three-kernel path, tensor cores at d = 128) until "fast" has been verified on a
 * GPU (test_cuda; it was written without one). Process-wide. */
enum { AV_AUTO, AV_V1, AV_T64_PLAN16, AV_T64, AV_MMA_T, AV_UNFUSED, AV_FUSED, AV_FAST, AV_FAST_R2, AV_N };
static const char *const attn_variant_names[AV_N] = {"auto", "v1", "t64-plan16", "t64", "mma-t", "unfused", "fused",
                                                     "fast", "fast-r2"};
static int attn_variant;

extern "C" int tq_cuda_attn_variant(const char *name)
{
    for (int i = 0; i < AV_N; i++)
        if (name && !strcmp(name, attn_variant_names[i])) {
            attn_variant = i;
            return TQ_OK;
        }
    return tq_error_set(TQ_ERR_USAGE, "cuda: unknown attention variant '%s' (auto, fast, fast-r2, v1, t64-plan16, "
                        "t64, mma-t, unfused, fused)", name ? name : "(null)");
}
static int attn_mode(void) { return attn_variant; }
static bool attn_v1_forced(void) { return attn_variant == AV_V1; }
/* the tensor-core kernels run where instantiated */
static bool attn_mma_allowed(void)
{
    return attn_variant == AV_AUTO || attn_variant == AV_MMA_T || attn_variant == AV_UNFUSED ||
           attn_variant == AV_FUSED || attn_variant == AV_FAST || attn_variant == AV_FAST_R2;
}
/* the round-2 kernels and paths (d = 64 / 256 on the tensor cores, the fused path) */
static bool attn_round2(void)
{
    return attn_variant == AV_UNFUSED || attn_variant == AV_FUSED || attn_variant == AV_FAST ||
           attn_variant == AV_FAST_R2;
}

template <int D>
static attn_kernel pick(int gt, bool prod, int kb, int vb)
{
    if (vb < 1 || vb > 4) return NULL;
    if (D == 128 && gt == 4 && !prod && !attn_v1_forced()) {
        switch (kb) {
        case 1: return k_attn_codes_t64<1>;
        case 2: return k_attn_codes_t64<2>;
        case 3: return k_attn_codes_t64<3>;
        case 4: return k_attn_codes_t64<4>;
        default: return NULL;
        }
    }
    if (gt == 4) return prod ? pick_kb<D, 4, true>(kb) : pick_kb<D, 4, false>(kb);
    return prod ? pick_kb<D, 1, true>(kb) : pick_kb<D, 1, false>(kb);
}

/* The tensor-core kernel's instantiations (d = 128): turbo-mse keys and values at 2, 3, 4 bits and turbo-prod keys of
 * 2, 3, 4 bits in all (1, 2, 3 MSE bits + the QJL bit) with values of the same total width, in groups of 4 query heads
 * (G = 4, 12, ...); the 3-bit pair (turbo-mse 3/3, turbo-prod 2+1/3) also in groups of 8 (G = 8, 16, ...: two P.V
 * mma per k-step, one cache read for 8 heads), 2 (G = 2, 6, ...) and 1 (MHA, G odd).
 * Every other shape: NULL (the CUDA-core kernels). */
/* the query-preparing form of a tensor-core instantiation: turbo-mse keys only */
template <int KB, int VB, bool P, int GT, int D>
static attn_kernel mma_prep_form()
{
    if constexpr (P) return NULL;
    else return k_attn_mma<KB, VB, false, GT, D, true>;
}

struct mma_pick {
    attn_kernel k, kp; /* kp: the same kernel preparing its queries itself (turbo-mse keys; NULL for turbo-prod) */
    int smem, gt, vt;  /* vt: the value table's bytes (the smem saved when one table serves both), 0: never shared */
};
static mma_pick pick_mma_gt(int d, bool prod, int kb, int vb, int gt)
{
#define TQ_MMA(DD, KB, VB, P, GT)                                                                                     \
    if (d == DD && kb == KB && vb == VB && prod == P && gt == GT)                                                    \
        return {k_attn_mma<KB, VB, P, GT, DD, false>, mma_prep_form<KB, VB, P, GT, DD>(),                          \
                MmaCfg<KB, VB, P, GT, DD>::SMEM, GT, MmaCfg<KB, VB, P, GT, DD>::ALIGN || KB != VB ? 0                  \
                : MmaCfg<KB, VB, P, GT, DD>::VT};
    if (d == 128 && kb == 3 && vb == 3 && !prod && gt == 4 && attn_mode() != AV_MMA_T)
        return {k_attn_mma33<false>, k_attn_mma33<true>, MMA33_SMEM, 4, 0};
    TQ_MMA(128, 3, 3, false, 4) TQ_MMA(128, 2, 2, false, 4) TQ_MMA(128, 4, 4, false, 4)
    TQ_MMA(128, 2, 3, true, 4) TQ_MMA(128, 1, 2, true, 4) TQ_MMA(128, 3, 4, true, 4)
    TQ_MMA(128, 3, 3, false, 8) TQ_MMA(128, 2, 3, true, 8)
    TQ_MMA(128, 3, 3, false, 2) TQ_MMA(128, 3, 3, false, 1) TQ_MMA(128, 2, 3, true, 2) TQ_MMA(128, 2, 3, true, 1)
    /* the bundled models' head dims, 3-bit turbo-mse: d = 64 in 3-head (SmolLM2, GQA 3:1), 4-head and 1-head
     * groups, d = 256 in 4-head (Gemma 3, MQA 4:1) and 1-head groups */
    TQ_MMA(64, 3, 3, false, 3) TQ_MMA(64, 3, 3, false, 4) TQ_MMA(64, 3, 3, false, 1)
    TQ_MMA(256, 3, 3, false, 4) TQ_MMA(256, 3, 3, false, 1)
#undef TQ_MMA
    return {NULL, NULL, 0, 0, 0};
}
/* the largest instantiated head group that divides G */
static mma_pick pick_mma(int d, bool prod, int kb, int vb, int G)
{
    static const int gts[] = {8, 4, 3, 2, 1};
    for (int i = 0; i < 5; i++) {
        if (G % gts[i]) continue;
        mma_pick p = pick_mma_gt(d, prod, kb, vb, gts[i]);
        if (p.k) return p;
    }
    return {NULL, NULL, 0, 0, 0};
}

/* a tensor-core split kernel launched as k_prep's programmatic dependent: it starts while k_prep runs and waits
 * for its results inside (grid_dep_wait) */
static cudaError_t launch_pdl(attn_kernel k, dim3 grid, int smem, AttnArgs args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(NWARP * 32);
    cfg.dynamicSmemBytes = (size_t)smem;
    cfg.stream = tq_cu_stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, k, args);
}

static int run_attn(tq_cuda_attn *a, int B, int Hq, int Hkv, long Lc, long window, int d, const float *q,
                    const tq_cuda_kv *kv, const uint16_t *k16, const uint16_t *v16, float *out, float **wsp,
                    size_t *ws_bytes, int sm, int rotation, const float *krot, const float *vrot)
{
    if (B < 1 || Lc < 1 || Hkv < 1 || Hq < Hkv || Hq % Hkv)
        return tq_error_set(TQ_ERR_USAGE, "cuda attention: bad shape B=%d L=%ld q heads %d kv heads %d (q heads must "
                            "be a multiple of kv heads)", B, Lc, Hq, Hkv);
    if (window < 0) return tq_error_set(TQ_ERR_USAGE, "cuda attention: window %ld is negative", window);
    const long L = window > 0 && window < Lc ? window : Lc; /* the tokens attended: the last L of Lc */
    int G = Hq / Hkv, GT = G % 4 == 0 ? 4 : 1, nsub = G / GT;
    long chunk;
    int nsplit;
    bool prod = kv && a->s.key_method == TQ_M_TURBO_PROD;
    int bps = 0, bps_prep = 0; /* blocks per SM of the 64-token-tile kernels, when one of them runs (bps_prep: the
                                * tensor-core kernel's query-preparing form, the fused path's) */
    /* the tensor-core kernel where it is instantiated for this shape (pick_mma) */
    mma_pick mp = {NULL, NULL, 0, 0, 0};
    if (kv && attn_mma_allowed() && (d == 128 || attn_round2()))
        mp = pick_mma(d, prod, a->s.key_bits, a->s.value_bits, G);
    bool use_mma = mp.k != NULL;
    /* one pair table for keys and values where they are the same table (d = 256, round-2 paths except fast-r2): one
     * table less shared memory a block, so 2 blocks fit an SM instead of 1 */
    const bool r2new = attn_round2() && attn_mode() != AV_FAST_R2; /* this session's forms (not fast-r2) */
    const bool share = use_mma && d == 256 && mp.vt > 0 && a->same_cent && r2new;
    /* the tensor-core kernels prepare their queries themselves where that is a few butterflies (Hadamard rotation,
     * turbo-mse keys): no k_prep (the fused path is then one launch a call, the split path two), and ptxas gives the
     * preparing form a leaner main loop (k_attn_mma33: 1364 instructions a tile against 1621). A dense rotation or
     * turbo-prod's S q is a d x d product every block would repeat: those keep k_prep. */
    const bool prep = use_mma && mp.kp && rotation == TQ_ROT_HADAMARD && r2new;
    if (share) mp.smem -= mp.vt;
    if (use_mma) {
        GT = mp.gt;
        nsub = G / GT;
        const int full = mp.smem + (share ? mp.vt : 0); /* the attribute: the largest size the kernel launches with */
        int st = tq_cu_occupancy((const void *)mp.k, NWARP * 32, mp.smem, full, &bps, NULL);
        if (!st && prep) st = tq_cu_occupancy((const void *)mp.kp, NWARP * 32, mp.smem, full, &bps_prep, NULL);
        if (st) return st;
    } else if (kv && d == 128 && GT == 4 && !prod && attn_mode() != AV_V1 && attn_mode() != AV_T64_PLAN16) {
        attn_kernel k = pick<128>(GT, prod, a->s.key_bits, a->s.value_bits);
        if (k && tq_cu_occupancy((const void *)k, NWARP * 32, 0, 0, &bps, NULL)) { /* then plan_splits */
            (void)cudaGetLastError();
            bps = 0;
        }
    }
    /* variant "fast", small batches (fewer than 8 blocks per head group fill one wave, e.g. B = 1 to 12 at 8 kv heads
     * and 4-head groups): the fused path, where launches and the merge, not the scan, would dominate */
    const long groups = (long)B * Hkv * nsub;
    const bool inprep = prep;
    if (inprep) bps = bps_prep;
    const bool fused = use_mma && a && (attn_mode() == AV_FUSED ||
                                        ((attn_mode() == AV_FAST || attn_mode() == AV_FAST_R2) &&
                                         groups * 8 <= (long)bps * sm));
    if (fused) plan_fused(sm, bps, L, groups, &chunk, &nsplit);
    else if (bps > 0) plan_splits_waves(sm, bps, L, groups, &chunk, &nsplit);
    else plan_splits(sm, L, groups, &chunk, &nsplit);
    int NS = fused ? nsplit : nsplit * NWARP;
    if (fused && a->cnt_n < (size_t)groups) { /* the arrival counters: zero, and left zero by every call */
        tq_cuda_free(a->cnt);
        a->cnt = NULL;
        a->cnt_n = 0;
        int st = tq_cuda_alloc((void **)&a->cnt, sizeof(unsigned) * (size_t)groups);
        if (st) return st;
        a->cnt_n = (size_t)groups;
    }
    size_t nq = (size_t)B * Hq;
    /* pacc is read and written as float4: pm and pl rounded up to 4 floats each (NS is odd on the fused path) */
    const size_t pl_n = (nq * NS + 3) / 4 * 4;
    size_t need = sizeof(float) * (nq * d * 2 + 2 * pl_n + nq * NS * (size_t)d);
    int st = ensure_ws(wsp, ws_bytes, need);
    if (st) return st;
    AttnArgs args;
    args.Hq = Hq;
    args.Hkv = Hkv;
    args.G = G;
    args.nsub = nsub;
    args.NS = NS;
    args.vbits = a ? a->s.value_bits : 0;
    args.L = L;
    args.stride = Lc;
    args.off = Lc - L;
    args.chunk = chunk;
    float *qrot = *wsp, *sq = qrot + nq * d;
    args.qrot = qrot;
    args.sq = sq;
    args.pm = sq + nq * d;
    args.pl = args.pm + pl_n;
    args.pacc = args.pl + pl_n;
    args.kcent = a ? a->kcent : NULL;
    args.vcent = a ? a->vcent : NULL;
    if (kv) args.kv = *kv;
    args.k16 = k16;
    args.v16 = v16;
    args.fused = fused;
    args.rotation = rotation;
    args.vrot = vrot;
    args.out = out;
    args.cnt = fused ? a->cnt : NULL;
    float scale = (float)(LOG2E / sqrt((double)d)), sq_scale = (float)(sqrt(M_PI / 2) / d) * scale;
    args.q = inprep ? q : NULL;
    args.krot = krot;
    args.scale = scale;
    args.share_tab = share;
    dim3 grid((unsigned)nsplit, (unsigned)(Hkv * nsub), (unsigned)B);
    attn_kernel kern = NULL;
#define TQ_D(DD) \
    if (!inprep) \
        k_prep<DD><<<(unsigned)nq, DD, 0, tq_cu_stream>>>(q, Hq, G, rotation, krot, prod ? a->kS : NULL, scale, \
                                                         sq_scale, qrot, prod ? sq : NULL); \
    if (use_mma) kern = inprep ? mp.kp : mp.k; \
    else if (kv) kern = pick<DD>(GT, prod, a->s.key_bits, a->s.value_bits); \
    else kern = GT == 4 ? k_attn_fp16<DD, 4> : k_attn_fp16<DD, 1>; \
    if (!kern) return tq_error_set(TQ_ERR_USAGE, "cuda attention: no kernel for these bits"); \
    if (fused && !inprep) TQ_CU(launch_pdl(kern, grid, mp.smem, args), "attention split kernel"); \
    else if (use_mma) kern<<<grid, NWARP * 32, mp.smem, tq_cu_stream>>>(args); \
    else kern<<<grid, NWARP * 32, 0, tq_cu_stream>>>(args); \
    if (!fused) k_combine<DD><<<(unsigned)nq, DD, 0, tq_cu_stream>>>(args.pm, args.pl, args.pacc, NS, Hq, G, \
                                                                      rotation, vrot, out);
    switch (d) {
    case 64: TQ_D(64) break;
    case 128: TQ_D(128) break;
    case 256: TQ_D(256) break;
    default: return tq_error_set(TQ_ERR_USAGE, "cuda attention: head dim %d unsupported (64, 128 or 256)", d);
    }
#undef TQ_D
    TQ_CU_LAUNCH("attention kernels");
    return TQ_OK;
}

extern "C" int tq_cuda_attn_decode(tq_cuda_attn *a, int B, int Hq, long L, const float *q, const tq_cuda_kv *kv,
                                   float *out)
{
    return run_attn(a, B, Hq, a->s.n_kv_heads, L, 0, a->s.d, q, kv, NULL, NULL, out, &a->ws, &a->ws_bytes,
                    a->sm_count, a->s.rotation, a->krot, a->vrot);
}

extern "C" int tq_cuda_attn_decode_window(tq_cuda_attn *a, int B, int Hq, long L, long window, const float *q,
                                          const tq_cuda_kv *kv, float *out)
{
    return run_attn(a, B, Hq, a->s.n_kv_heads, L, window, a->s.d, q, kv, NULL, NULL, out, &a->ws, &a->ws_bytes,
                    a->sm_count, a->s.rotation, a->krot, a->vrot);
}

static float *fp16_ws;
static size_t fp16_ws_bytes;

extern "C" void tq_cuda_release_attn(void)
{
    tq_cuda_free(fp16_ws);
    fp16_ws = NULL;
    fp16_ws_bytes = 0;
}

extern "C" int tq_cuda_attn_fp16(int B, int Hq, int Hkv, long L, int d, const float *q, const uint16_t *k,
                                 const uint16_t *v, float *out)
{
    static int sm; /* device properties are slow to ask: once per process */
    if (!sm) {
        int st = tq_cuda_device(NULL, 0, &sm, NULL);
        if (st) return st;
    }
    return run_attn(NULL, B, Hq, Hkv, L, 0, d, q, NULL, k, v, out, &fp16_ws, &fp16_ws_bytes, sm, TQ_ROT_NONE, NULL,
                    NULL);
}
