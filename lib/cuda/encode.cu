/* encode.cu: turbo-mse, turbo-prod and qjl encode/decode on the GPU, writing the CPU's sections byte for byte
 * (lib/pack.h rows, fp16 norms). One warp owns VPW vectors at a time with its scratch in shared memory; the dense
 * matrix-vector products stream the matrix once per VPW vectors. The arithmetic is spelled out in tq_cuda.h. */
#include "common.cuh"

#include <stdlib.h>
#include <string.h>

struct tq_cuda_quant {
    tq_cuda_qspec s;           /* scalars; the pointers in it are host pointers of the caller, not kept */
    float *rot, *rotT;         /* dense Pi and Pi^T, d x d */
    float *signs;              /* hadamard */
    float *cent, *thr;         /* 2^bits, 2^bits - 1 */
    float *S, *ST;             /* m x d and d x m */
    int dim_max;               /* max(d, m): scratch per vector */
};

/* Device-side copy of the parameters a kernel needs (passed by value). */
struct QP {
    int method, d, bits, rotation, m, norm_fp32, ncent;
    float fwht_scale, qjl_coef;
    const float *rot, *rotT, *signs, *cent, *thr, *S, *ST;
};

/* out[v][i] = fmaf chain over j of M[i][j] in[v][j], M is R x C given transposed (MT[j*R + i] = M[i][j]) so that
 * lanes read consecutive addresses; the matrix is read once for all VPW vectors. */
template <int VPW>
__device__ void matvec_warp(const float *__restrict__ MT, int R, int C, const float *in, int in_stride, float *out,
                            int out_stride, int lane)
{
    __syncwarp();
    for (int i0 = 0; i0 < R; i0 += 32) {
        int i = i0 + lane;
        if (i >= R) continue;
        float acc[VPW];
#pragma unroll
        for (int v = 0; v < VPW; v++) acc[v] = 0.0f;
        for (int j = 0; j < C; j++) {
            float mji = __ldg(&MT[(size_t)j * R + i]);
#pragma unroll
            for (int v = 0; v < VPW; v++) acc[v] = fmaf(mji, in[v * in_stride + j], acc[v]);
        }
#pragma unroll
        for (int v = 0; v < VPW; v++) out[v * out_stride + i] = acc[v];
    }
    __syncwarp();
}

/* y = Pi u for nv vectors (rows of `ws` floats). */
template <int VPW>
__device__ void rot_forward(const QP &p, const float *u, float *y, int ws, int lane)
{
    int d = p.d;
    if (p.rotation == TQ_ROT_DENSE) {
        matvec_warp<VPW>(p.rotT, d, d, u, ws, y, ws, lane);
        return;
    }
    __syncwarp();
    for (int v = 0; v < VPW; v++) {
        for (int j = lane; j < d; j += 32) y[v * ws + j] = p.rotation == TQ_ROT_HADAMARD ? u[v * ws + j] * p.signs[j]
                                                                                     : u[v * ws + j];
        if (p.rotation != TQ_ROT_HADAMARD) continue;
        tq_cu_fwht_warp(y + v * ws, d, lane);
        for (int j = lane; j < d; j += 32) y[v * ws + j] *= p.fwht_scale;
    }
    __syncwarp();
}

/* x = Pi^T y. */
template <int VPW>
__device__ void rot_inverse(const QP &p, const float *y, float *x, int ws, int lane)
{
    int d = p.d;
    if (p.rotation == TQ_ROT_DENSE) {
        matvec_warp<VPW>(p.rot, d, d, y, ws, x, ws, lane);
        return;
    }
    __syncwarp();
    for (int v = 0; v < VPW; v++) {
        for (int j = lane; j < d; j += 32) x[v * ws + j] = y[v * ws + j];
        if (p.rotation != TQ_ROT_HADAMARD) continue;
        tq_cu_fwht_warp(x + v * ws, d, lane);
        for (int j = lane; j < d; j += 32) x[v * ws + j] = (x[v * ws + j] * p.fwht_scale) * p.signs[j];
    }
    __syncwarp();
}

/* ||x|| exactly as lib/turbo.c's vnorm: 8 float partial sums (lane l takes j = l, l+8, ...; separate multiply and
 * add roundings, no FMA contraction), added in double in lane order, square root to float. Same in every lane. */
__device__ __forceinline__ float warp_norm(const float *x, int n, int lane)
{
    float acc = 0.0f;
    if (lane < 8)
        for (int j = lane; j + 8 - lane <= n; j += 8) acc = __fadd_rn(acc, __fmul_rn(x[j], x[j]));
    double s = 0;
    for (int l = 0; l < 8; l++) s += (double)__shfl_sync(TQ_FULL_MASK, acc, l);
    for (int j = n / 8 * 8; j < n; j++) s += (double)x[j] * x[j];
    return (float)sqrt(s);
}

/* out[v][i] = sign test of the double sum over j of M[i][j] in[v][j], in j order (lib/turbo.c's QJL projection:
 * products of floats are exact in double, so the sum is the CPU's bit for bit). MT as in matvec_warp. */
template <int VPW>
__device__ void signs_warp(const float *__restrict__ MT, int R, int C, const float *in, int in_stride, uint8_t *out,
                           int out_stride, int lane)
{
    __syncwarp();
    for (int i0 = 0; i0 < R; i0 += 32) {
        int i = i0 + lane;
        if (i >= R) continue;
        double acc[VPW];
#pragma unroll
        for (int v = 0; v < VPW; v++) acc[v] = 0.0;
        for (int j = 0; j < C; j++) {
            double mji = (double)__ldg(&MT[(size_t)j * R + i]);
#pragma unroll
            for (int v = 0; v < VPW; v++) acc[v] = fma(mji, (double)in[v * in_stride + j], acc[v]);
        }
#pragma unroll
        for (int v = 0; v < VPW; v++) out[v * out_stride + i] = acc[v] >= 0.0;
    }
    __syncwarp();
}

/* Pack `bits`-bit codes (one per byte in c) into a pack.h row: each lane assembles whole bytes. */
__device__ __forceinline__ void pack_row_warp(const uint8_t *c, int n, int bits, uint8_t *row, int lane)
{
    int nb = (int)tq_pack_row_bytes(n, bits);
    for (int k = lane; k < nb; k += 32) {
        int bit0 = 8 * k, i0 = bit0 / bits, i1 = (bit0 + 7) / bits;
        if (i1 > n - 1) i1 = n - 1;
        unsigned byte = 0;
        for (int i = i0; i <= i1; i++) {
            int sh = i * bits - bit0;
            unsigned cv = c[i];
            byte |= sh >= 0 ? cv << sh : cv >> (-sh);
        }
        row[k] = (uint8_t)byte;
    }
}

__device__ __forceinline__ void store_norm(void *base, long i, float v, int fp32)
{
    if (fp32) ((float *)base)[i] = v;
    else ((uint16_t *)base)[i] = tq_cu_to_half(v);
}

__device__ __forceinline__ float load_norm(const void *base, long i, int fp32)
{
    return fp32 ? ((const float *)base)[i] : tq_cu_half(((const uint16_t *)base)[i]);
}

/* Count of thresholds strictly below y, by lib/codebook.h's branchless search (same result as the linear scan). */
__device__ __forceinline__ int encode_one(const float *thr, int ncent, float y)
{
    int i = 0;
    for (int s = ncent >> 1; s > 0; s >>= 1) i += (y > thr[i + s - 1]) ? s : 0;
    return i;
}

/* tq_fwht's stages h0 .. E/2 inside one lane's E consecutive coordinates (lower index a + b, upper a - b). */
template <int E>
__device__ __forceinline__ void fwht_lane(float *y, int h0)
{
#pragma unroll
    for (int h = h0; h < E; h <<= 1)
#pragma unroll
        for (int e = 0; e < E; e++)
            if (!(e & h)) {
                float a = y[e], b = y[e + h];
                y[e] = __fadd_rn(a, b);
                y[e + h] = __fsub_rn(a, b);
            }
}

/* Fast path of the most common case, Hadamard turbo-mse with E = d/32 coordinates per lane and E * bits <= 32: one
 * warp per vector, coordinates [lane*E, lane*E + E) in registers. The butterflies with h < E run inside a lane, the
 * rest through shuffles (the lower index of a pair gets a + b, the upper a - b: tq_fwht's operations exactly); the
 * norm goes through shared memory so 8 lanes can add the squares in lib/turbo.c's order; codes are assembled into
 * 32-bit words of the packed row by shuffles. Same bytes as k_encode, several times fewer instructions. */
template <int E>
__global__ void __launch_bounds__(256) k_encode_had(QP p, const void *x, int x_half, long n, uint8_t *codes,
                                                    void *norms)
{
    constexpr int D = 32 * E;
    __shared__ float thr[256];
    __shared__ float sqs[8][D];
    for (int i = threadIdx.x; i < p.ncent - 1; i += blockDim.x) thr[i] = p.thr[i];
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int bits = p.bits, cb = E * bits, nwords = D * bits / 32, span = 32 / cb + 2;
    const size_t row = (size_t)D * bits / 8;
    float *sq = sqs[warp];
    float sg[E];
#pragma unroll
    for (int e = 0; e < E; e++) sg[e] = p.signs[lane * E + e];
    for (long v = (long)blockIdx.x * nwarps + warp; v < n; v += (long)gridDim.x * nwarps) {
        float xv[E];
        if (x_half) {
            const uint16_t *xr = (const uint16_t *)x + (size_t)v * D + lane * E;
            if constexpr (E == 2) {
                uint32_t w = *(const uint32_t *)xr;
                xv[0] = tq_cu_half((uint16_t)(w & 0xffff)); xv[1] = tq_cu_half((uint16_t)(w >> 16));
            } else {
#pragma unroll
                for (int e = 0; e < E; e += 4) {
                    uint2 w = *(const uint2 *)(xr + e);
                    xv[e] = tq_cu_half((uint16_t)(w.x & 0xffff)); xv[e + 1] = tq_cu_half((uint16_t)(w.x >> 16));
                    xv[e + 2] = tq_cu_half((uint16_t)(w.y & 0xffff)); xv[e + 3] = tq_cu_half((uint16_t)(w.y >> 16));
                }
            }
        } else {
            const float *xr = (const float *)x + (size_t)v * D + lane * E;
            if constexpr (E == 2) {
                float2 f = *(const float2 *)xr;
                xv[0] = f.x; xv[1] = f.y;
            } else {
#pragma unroll
                for (int e = 0; e < E; e += 4) {
                    float4 f = *(const float4 *)(xr + e);
                    xv[e] = f.x; xv[e + 1] = f.y; xv[e + 2] = f.z; xv[e + 3] = f.w;
                }
            }
        }
        /* norm: lib/turbo.c's 8 float partial sums of rounded squares, in order, then double */
#pragma unroll
        for (int e = 0; e < E; e++) sq[lane * E + e] = __fmul_rn(xv[e], xv[e]);
        __syncwarp();
        float acc = 0.0f;
        if (lane < 8)
            for (int k = 0; k < D / 8; k++) acc = __fadd_rn(acc, sq[8 * k + lane]);
        double s = 0;
#pragma unroll
        for (int l = 0; l < 8; l++) s += (double)__shfl_sync(TQ_FULL_MASK, acc, l);
        float nrm = (float)sqrt(s);
        __syncwarp(); /* sq is rewritten by the next vector */
        float y[E];
#pragma unroll
        for (int e = 0; e < E; e++) y[e] = __fmul_rn(xv[e], sg[e]);
        fwht_lane<E>(y, 1);
#pragma unroll
        for (int hl = 1; hl < 32; hl <<= 1) {
            bool hi = lane & hl;
#pragma unroll
            for (int e = 0; e < E; e++) {
                float o = __shfl_xor_sync(TQ_FULL_MASK, y[e], hl);
                y[e] = hi ? __fsub_rn(o, y[e]) : __fadd_rn(y[e], o);
            }
        }
        float inv = nrm > 0.0f ? 1.0f / nrm : 0.0f;
        unsigned chunk = 0;
#pragma unroll
        for (int e = 0; e < E; e++)
            chunk |= (unsigned)encode_one(thr, p.ncent, __fmul_rn(__fmul_rn(y[e], p.fwht_scale), inv)) << (e * bits);
        /* lane w assembles word w of the row from the lanes whose chunks overlap it */
        unsigned word = 0;
        const int bit0 = 32 * lane, l0 = bit0 / cb;
        for (int i = 0; i < span; i++) {
            int src = l0 + i;
            unsigned c = __shfl_sync(TQ_FULL_MASK, chunk, src & 31);
            int sh = src * cb - bit0;
            if (src < 32 && sh < 32 && sh > -cb) word |= sh >= 0 ? c << sh : c >> (-sh);
        }
        if (lane < nwords) ((uint32_t *)(codes + (size_t)v * row))[lane] = word;
        if (lane == 0) store_norm(norms, v, nrm, p.norm_fp32);
    }
}

/* Hadamard turbo-mse with LPV = 4 or 8 lanes per vector (32/LPV vectors per warp), d = 64, 128 or 256, 1-4 bits:
 * the fast path of the benchmark's shape. Lane l of a vector's LPV holds the contiguous coordinates [l*E, l*E + E),
 * E = d/LPV, read with 16-byte loads one step ahead. FWHT stages h < E run inside the lane (the first one with the
 * sign flip folded in: x*s is exact, so a + x1*s1 as one fmaf rounds like tq_fwht's a + b), h = E, 2E (, 4E) through
 * xor shuffles (fmaf(y, -+1, o): the same a + b / a - b roundings). lib/turbo.c's norm needs its partial sum l to run
 * over x[8k + l], k ascending: the vector goes through shared memory once (rows padded so neither the 16-byte stores
 * nor the strided reads conflict). Codes: a binary search over the thresholds held in registers on (y * scale) * inv,
 * each code bit ORed (predicated) straight into the lane's E*B contiguous bits of the row, stored directly. Same
 * bytes as k_encode_had / lib/turbo.c's encode_ref. */
__host__ __device__ constexpr int had8_stride(int d, int vpw, int s = 0)
{
    /* floats per staged vector: 16 bytes of pad per 128 (conflict-free 16-byte stores), then 4 more at a time until
     * the stride is an odd multiple of 32/vpw words mod 32, so the vpw vectors' strided reads land in disjoint banks */
    return s == 0 ? had8_stride(d, vpw, d * 9 / 8)
           : (s % (32 / vpw) == 0 && (s / (32 / vpw)) % 2 == 1) ? s : had8_stride(d, vpw, s + 4);
}
__device__ __forceinline__ int had8_pos(int j) { return j + 4 * (j >> 5); }

template <int D, int B, bool XH, int LPV>
__global__ void __launch_bounds__(256, LPV == 4 ? 2 : D == 256 ? 1 : 3) k_encode_had8(QP p, const void *__restrict__ x, long n,
                                                     uint8_t *__restrict__ codes, void *__restrict__ norms)
{
    constexpr int VPW = 32 / LPV, E = D / LPV, NT = (1 << B) - 1, VS = had8_stride(D, VPW), NW = (E * B + 31) / 32;
    constexpr int NA = 8 / LPV; /* of lib/turbo.c's 8 norm partial sums, lane l keeps l, l + LPV, ... */
    constexpr int RB = D * B / 8, LB = E * B / 8; /* bytes per row, per lane */
    __shared__ __align__(16) float stage[8][VPW][VS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane / LPV, l = lane % LPV;
    float t[NT], sg[E];
#pragma unroll
    for (int i = 0; i < NT; i++) t[i] = p.thr[i];
#pragma unroll
    for (int e = 0; e < E; e++) sg[e] = p.signs[l * E + e];
    const float fs = p.fwht_scale, s1 = (l & 1) ? -1.0f : 1.0f, s2 = (l & 2) ? -1.0f : 1.0f,
                s4 = (l & 4) ? -1.0f : 1.0f;
    float *st = stage[warp][g];
    const long step = (long)gridDim.x * 8 * VPW;
    /* raw input of the next step, loaded before this step's arithmetic so the DRAM latency overlaps it */
    constexpr int NR = E * (XH ? 2 : 4) / 16;
    uint4 raw[NR];
    auto load = [&](long b0) {
        const long vv = b0 + g;
        const uint4 *src = (const uint4 *)((const char *)x + ((size_t)vv * D + l * E) * (XH ? 2 : 4));
#pragma unroll
        for (int c = 0; c < NR; c++) raw[c] = vv < n ? __ldg(src + c) : make_uint4(0, 0, 0, 0);
    };
    long base = ((long)blockIdx.x * 8 + warp) * VPW;
    if (base < n) load(base);
    for (; base < n; base += step) {
        const long v = base + g;
        const bool ok = v < n;
        float xv[E];
#pragma unroll
        for (int c = 0; c < NR; c++) {
            const uint32_t ws[4] = {raw[c].x, raw[c].y, raw[c].z, raw[c].w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (XH) {
                    float2 f = __half22float2(*(const __half2 *)&ws[i]);
                    xv[8 * c + 2 * i] = f.x;
                    xv[8 * c + 2 * i + 1] = f.y;
                } else xv[4 * c + i] = __uint_as_float(ws[i]);
            }
        }
        if (base + step < n) load(base + step);
        /* norm: acc = sum over k ascending of x[8k + l]^2 (multiply and add rounded apart; for fp16 input the square
         * is exact in float, so one fmaf rounds the same), then the 8 partial sums in double in lane order */
#pragma unroll
        for (int c = 0; c < E / 4; c++)
            *(float4 *)(st + had8_pos(l * E + 4 * c)) = make_float4(xv[4 * c], xv[4 * c + 1], xv[4 * c + 2], xv[4 * c + 3]);
        __syncwarp();
        float acc[NA];
#pragma unroll
        for (int a = 0; a < NA; a++) {
            acc[a] = 0.0f;
#pragma unroll
            for (int k = 0; k < D / 8; k++) {
                float xk = st[had8_pos(8 * k + l + LPV * a)];
                acc[a] = XH ? fmaf(xk, xk, acc[a]) : __fadd_rn(acc[a], __fmul_rn(xk, xk));
            }
        }
        __syncwarp(); /* the stage is rewritten by the next vector */
        double s = 0;
#pragma unroll
        for (int j = 0; j < 8; j++) s += (double)__shfl_sync(TQ_FULL_MASK, acc[j / LPV], j % LPV, LPV);
        const float nrm = (float)sqrt(s);
        /* FWHT: h = 1 with the signs, h = 2 .. E/2 in the lane, h = E, 2E, 4E across lanes */
        float y[E];
#pragma unroll
        for (int e = 0; e < E; e += 2) {
            float a = __fmul_rn(xv[e], sg[e]);
            y[e] = fmaf(xv[e + 1], sg[e + 1], a);
            y[e + 1] = fmaf(-xv[e + 1], sg[e + 1], a);
        }
        fwht_lane<E>(y, 2);
#pragma unroll
        for (int e = 0; e < E; e++) y[e] = fmaf(y[e], s1, __shfl_xor_sync(TQ_FULL_MASK, y[e], 1));
#pragma unroll
        for (int e = 0; e < E; e++) y[e] = fmaf(y[e], s2, __shfl_xor_sync(TQ_FULL_MASK, y[e], 2));
        if constexpr (LPV == 8)
#pragma unroll
            for (int e = 0; e < E; e++) y[e] = fmaf(y[e], s4, __shfl_xor_sync(TQ_FULL_MASK, y[e], 4));
        const float inv = nrm > 0.0f ? 1.0f / nrm : 0.0f;
        uint32_t w[NW];
#pragma unroll
        for (int i = 0; i < NW; i++) w[i] = 0;
#pragma unroll
        for (int e = 0; e < E; e++) {
            const float z = __fmul_rn(__fmul_rn(y[e], fs), inv);
            /* code = count of thresholds below z, by binary search over the sorted thresholds in registers: level
             * L picks among 2^L candidates with a select tree on the bits found so far */
            bool pb[B];
            uint32_t c = 0;
            if constexpr (B == 4) { /* the select tree of 4 levels went to local memory: count instead */
#pragma unroll
                for (int i = 0; i < NT; i++) c += z > t[i] ? 1u : 0u;
            } else
#pragma unroll
            for (int L = 0; L < B; L++) {
                const int step = 1 << (B - 1 - L);
                float cand[1 << (B - 1)];
#pragma unroll
                for (int q = 0; q < (1 << L); q++) cand[q] = t[q * 2 * step + step - 1];
#pragma unroll
                for (int r = 0; r < L; r++)
#pragma unroll
                    for (int q = 0; q < (1 << (L - 1 - r)); q++)
                        cand[q] = pb[L - 1 - r] ? cand[2 * q + 1] : cand[2 * q];
                pb[L] = z > cand[0];
                /* the code's bit B-1-L straight into the packed word (one predicated OR) */
                const int bit = e * B + B - 1 - L;
                if (pb[L]) w[bit / 32] |= 1u << (bit % 32);
            }
            if constexpr (B == 4) {
                const int bit = e * B, wi = bit / 32, sh = bit % 32;
                w[wi] |= c << sh;
                if (sh + B > 32) w[wi + 1] |= c >> (32 - sh);
            }
        }
        if (ok) {
            uint8_t *row = codes + (size_t)v * RB + l * LB;
            if constexpr (LB % 4 == 0) {
#pragma unroll
                for (int i = 0; i < LB / 4; i++) ((uint32_t *)row)[i] = w[i];
            } else if constexpr (LB % 2 == 0) {
#pragma unroll
                for (int i = 0; i < LB / 2; i++) ((uint16_t *)row)[i] = (uint16_t)(w[i / 2] >> (16 * (i % 2)));
            } else {
#pragma unroll
                for (int i = 0; i < LB; i++) row[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
            }
            if (l == 0) store_norm(norms, v, nrm, p.norm_fp32);
        }
    }
}

/* Shared memory per warp: VPW rows of ws floats for u, the same for y, VPW rows of ws bytes for codes. */
template <int VPW>
__global__ void k_encode(QP p, const void *x, int x_half, long n, tq_cuda_codes out, int ws)
{
    extern __shared__ float smem[];
    __shared__ float thr[256], cent[256]; /* the codebook, read per coordinate: shared memory, not L1 */
    for (int i = threadIdx.x; p.method != TQ_M_QJL && i < p.ncent; i += blockDim.x) {
        if (i < p.ncent - 1) thr[i] = p.thr[i];
        cent[i] = p.cent[i];
    }
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float *u = smem + (size_t)warp * (2 * VPW * ws + VPW * ws / 4);
    float *y = u + VPW * ws;
    uint8_t *cb = (uint8_t *)(y + VPW * ws);
    int d = p.d;
    size_t code_bytes = tq_pack_row_bytes(d, p.bits), sign_bytes = tq_pack_row_bytes(p.m, 1);

    for (long v0 = ((long)blockIdx.x * nwarps + warp) * VPW; v0 < n; v0 += (long)gridDim.x * nwarps * VPW) {
        int nv = n - v0 < VPW ? (int)(n - v0) : VPW;
        float norm[VPW];
        /* load x as float and take its norm */
        for (int v = 0; v < VPW; v++) {
            float *uv = u + v * ws;
            for (int j = lane; j < d; j += 32)
                uv[j] = v >= nv ? 0.0f
                        : x_half ? tq_cu_half(((const uint16_t *)x)[(v0 + v) * d + j])
                                 : ((const float *)x)[(v0 + v) * d + j];
            __syncwarp();
            norm[v] = warp_norm(uv, d, lane);
        }
        if (p.method == TQ_M_QJL) {
            signs_warp<VPW>(p.ST, p.m, d, u, ws, cb, ws, lane);
            for (int v = 0; v < nv; v++) {
                pack_row_warp(cb + v * ws, p.m, 1, out.signs + (v0 + v) * sign_bytes, lane);
                if (lane == 0) store_norm(out.norms, v0 + v, norm[v], p.norm_fp32);
            }
            __syncwarp();
            continue;
        }
        /* as lib/turbo.c: rotate x itself, then code y_j * (1 / norm) */
        rot_forward<VPW>(p, u, y, ws, lane);
        for (int v = 0; v < VPW; v++) {
            float inv = norm[v] > 0.0f ? 1.0f / norm[v] : 0.0f;
            for (int j = lane; j < d; j += 32)
                cb[v * ws + j] = (uint8_t)encode_one(thr, p.ncent, __fmul_rn(y[v * ws + j], inv));
        }
        __syncwarp();
        float nq[VPW];
        for (int v = 0; v < VPW; v++) {
            nq[v] = p.norm_fp32 ? norm[v] : tq_cu_half(tq_cu_to_half(norm[v]));
            if (v >= nv) continue;
            pack_row_warp(cb + v * ws, d, p.bits, out.codes + (v0 + v) * code_bytes, lane);
            if (lane == 0) store_norm(out.norms, v0 + v, norm[v], p.norm_fp32);
        }
        if (p.method != TQ_M_TURBO_PROD) continue;
        /* residual r = x - nq Pi^T c[code], its norm, and the signs of S r */
        for (int v = 0; v < VPW; v++)
            for (int j = lane; j < d; j += 32) y[v * ws + j] = cent[cb[v * ws + j]];
        rot_inverse<VPW>(p, y, u, ws, lane);
        for (int v = 0; v < VPW; v++)
            for (int j = lane; j < d; j += 32) {
                float xj = v >= nv ? 0.0f
                           : x_half ? tq_cu_half(((const uint16_t *)x)[(v0 + v) * d + j])
                                    : ((const float *)x)[(v0 + v) * d + j];
                u[v * ws + j] = __fsub_rn(xj, __fmul_rn(u[v * ws + j], nq[v])); /* two roundings, as the CPU */
            }
        __syncwarp();
        float rn[VPW];
        for (int v = 0; v < VPW; v++) rn[v] = warp_norm(u + v * ws, d, lane);
        signs_warp<VPW>(p.ST, p.m, d, u, ws, cb, ws, lane);
        for (int v = 0; v < nv; v++) {
            pack_row_warp(cb + v * ws, p.m, 1, out.signs + (v0 + v) * sign_bytes, lane);
            if (lane == 0) store_norm(out.rnorms, v0 + v, rn[v], p.norm_fp32);
        }
        __syncwarp();
    }
}

template <int VPW>
__global__ void k_decode(QP p, tq_cuda_codes in, long n, void *xhat, int out_half, int ws)
{
    extern __shared__ float smem[];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float *u = smem + (size_t)warp * (3 * VPW * ws);
    float *y = u + VPW * ws, *z = y + VPW * ws;
    int d = p.d;
    size_t code_bytes = tq_pack_row_bytes(d, p.bits), sign_bytes = tq_pack_row_bytes(p.m, 1);

    for (long v0 = ((long)blockIdx.x * nwarps + warp) * VPW; v0 < n; v0 += (long)gridDim.x * nwarps * VPW) {
        int nv = n - v0 < VPW ? (int)(n - v0) : VPW;
        float nq[VPW], rq[VPW];
        for (int v = 0; v < VPW; v++) {
            nq[v] = v < nv ? load_norm(in.norms, v0 + v, p.norm_fp32) : 0.0f;
            rq[v] = v < nv && p.method == TQ_M_TURBO_PROD ? load_norm(in.rnorms, v0 + v, p.norm_fp32) : 0.0f;
        }
        if (p.method != TQ_M_QJL) {
            for (int v = 0; v < VPW; v++)
                for (int j = lane; j < d; j += 32)
                    u[v * ws + j] = v < nv ? p.cent[tq_pack_get(in.codes + (v0 + v) * code_bytes, j, p.bits)] : 0.0f;
            rot_inverse<VPW>(p, u, y, ws, lane);
        }
        if (p.method != TQ_M_TURBO_MSE) {
            for (int v = 0; v < VPW; v++)
                for (int i = lane; i < p.m; i += 32)
                    u[v * ws + i] = v < nv && tq_pack_get(in.signs + (v0 + v) * sign_bytes, i, 1) ? 1.0f : -1.0f;
            matvec_warp<VPW>(p.S, d, p.m, u, ws, z, ws, lane); /* S^T z: M = S^T (d x m), given as MT = S */
        }
        for (int v = 0; v < nv; v++)
            for (int j = lane; j < d; j += 32) {
                float o;
                if (p.method == TQ_M_TURBO_MSE) o = nq[v] * y[v * ws + j];
                else if (p.method == TQ_M_TURBO_PROD) o = nq[v] * y[v * ws + j] + (p.qjl_coef * rq[v]) * z[v * ws + j];
                else o = (p.qjl_coef * nq[v]) * z[v * ws + j];
                long idx = (v0 + v) * d + j;
                if (out_half) ((uint16_t *)xhat)[idx] = tq_cu_to_half(o);
                else ((float *)xhat)[idx] = o;
            }
        __syncwarp();
    }
}

static int upload_floats(float **dev, const float *host, size_t n, const char *what)
{
    if (!host) return tq_error_set(TQ_ERR_USAGE, "cuda quantizer: missing %s", what);
    int st = tq_cuda_alloc((void **)dev, n * sizeof(float));
    if (st) return st;
    return tq_cuda_upload(*dev, host, n * sizeof(float));
}

extern "C" void tq_cuda_quant_free(tq_cuda_quant *q)
{
    if (!q) return;
    tq_cuda_free(q->rot);
    tq_cuda_free(q->rotT);
    tq_cuda_free(q->signs);
    tq_cuda_free(q->cent);
    tq_cuda_free(q->thr);
    tq_cuda_free(q->S);
    tq_cuda_free(q->ST);
    free(q);
}

extern "C" int tq_cuda_quant_create(tq_cuda_quant **out, const tq_cuda_qspec *s)
{
    *out = NULL;
    int d = s->d, m = s->m;
    if (s->method != TQ_M_TURBO_MSE && s->method != TQ_M_TURBO_PROD && s->method != TQ_M_QJL)
        return tq_error_set(TQ_ERR_USAGE, "cuda quantizer: method %d is not turbo-mse, turbo-prod or qjl", s->method);
    if (d < 32 || d > 1024 || d % 32)
        return tq_error_set(TQ_ERR_USAGE, "cuda quantizer: head dim %d unsupported (a multiple of 32 up to 1024)", d);
    if (s->method != TQ_M_QJL && (s->bits < 1 || s->bits > 8))
        return tq_error_set(TQ_ERR_USAGE, "cuda quantizer: %d MSE bits, must be 1..8", s->bits);
    if (s->method == TQ_M_TURBO_PROD && m != d)
        return tq_error_set(TQ_ERR_USAGE, "cuda quantizer: turbo-prod needs m = d, got m = %d for d = %d", m, d);
    if (s->method == TQ_M_QJL && (m < 8 || m > 4096 || m % 8))
        return tq_error_set(TQ_ERR_USAGE, "cuda quantizer: qjl m = %d, must be a multiple of 8 in 8..4096", m);
    if (s->rotation == TQ_ROT_HADAMARD && (d & (d - 1)))
        return tq_error_set(TQ_ERR_USAGE, "hadamard rotation needs a power-of-two dim, got %d; use --rotation dense",
                            d);
    tq_cuda_quant *q = (tq_cuda_quant *)calloc(1, sizeof *q);
    if (!q) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    q->s = *s;
    q->dim_max = m > d ? m : d;
    int st = TQ_OK, ncent = 1 << s->bits;
    if (s->method != TQ_M_QJL) {
        if (s->rotation == TQ_ROT_DENSE) {
            float *t = (float *)malloc(sizeof(float) * (size_t)d * d);
            if (!t) st = tq_error_set(TQ_ERR_NOMEM, "out of memory");
            else {
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < d; j++) t[(size_t)j * d + i] = s->rot[(size_t)i * d + j];
                st = upload_floats(&q->rot, s->rot, (size_t)d * d, "rotation matrix");
                if (!st) st = upload_floats(&q->rotT, t, (size_t)d * d, "rotation matrix");
                free(t);
            }
        } else if (s->rotation == TQ_ROT_HADAMARD) st = upload_floats(&q->signs, s->signs, (size_t)d, "hadamard signs");
        if (!st) st = upload_floats(&q->cent, s->centroids, (size_t)ncent, "centroids");
        if (!st) st = upload_floats(&q->thr, s->thresholds, (size_t)ncent - 1, "thresholds");
    }
    if (!st && s->method != TQ_M_TURBO_MSE) {
        float *t = (float *)malloc(sizeof(float) * (size_t)m * d);
        if (!t) st = tq_error_set(TQ_ERR_NOMEM, "out of memory");
        else {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < d; j++) t[(size_t)j * m + i] = s->S[(size_t)i * d + j];
            st = upload_floats(&q->S, s->S, (size_t)m * d, "QJL matrix S");
            if (!st) st = upload_floats(&q->ST, t, (size_t)m * d, "QJL matrix S");
            free(t);
        }
    }
    if (st) {
        tq_cuda_quant_free(q);
        return st;
    }
    *out = q;
    return TQ_OK;
}

static QP qp_of(const tq_cuda_quant *q)
{
    QP p;
    p.method = q->s.method;
    p.d = q->s.d;
    p.bits = q->s.method == TQ_M_QJL ? 1 : q->s.bits;
    p.rotation = q->s.rotation;
    p.m = q->s.method == TQ_M_TURBO_MSE ? q->s.d : q->s.m;
    p.norm_fp32 = q->s.norm_fp32;
    p.ncent = 1 << p.bits;
    p.fwht_scale = tq_cu_fwht_scale(p.d);
    p.qjl_coef = (float)(sqrt(M_PI / 2) / (double)p.m);
    p.rot = q->rot;
    p.rotT = q->rotT;
    p.signs = q->signs;
    p.cent = q->cent;
    p.thr = q->thr;
    p.S = q->S;
    p.ST = q->ST;
    return p;
}

/* Warps per block such that the scratch fits in 48 KiB; blocks enough to fill the device a few times over. */
static void launch_shape(long n, int vpw, size_t per_warp, int *warps, long *blocks)
{
    int w = (int)(48 * 1024 / per_warp);
    if (w > 8) w = 8;
    if (w < 1) w = 1;
    *warps = w;
    long need = (n + (long)w * vpw - 1) / ((long)w * vpw);
    *blocks = need < 132L * 16 ? need : 132L * 16;
    if (*blocks < 1) *blocks = 1;
}

typedef void (*k_had8)(QP, const void *, long, uint8_t *, void *);

template <int D, int LPV>
static k_had8 pick_had8_d(int bits, int x_half)
{
    switch (bits) {
    case 1: return x_half ? k_encode_had8<D, 1, true, LPV> : k_encode_had8<D, 1, false, LPV>;
    case 2: return x_half ? k_encode_had8<D, 2, true, LPV> : k_encode_had8<D, 2, false, LPV>;
    case 3: return x_half ? k_encode_had8<D, 3, true, LPV> : k_encode_had8<D, 3, false, LPV>;
    case 4: return x_half ? k_encode_had8<D, 4, true, LPV> : k_encode_had8<D, 4, false, LPV>;
    default: return NULL;
    }
}

/* k_encode_had8 where it applies (d = 64, 128, 256 and 1-4 bits), else NULL: 4 lanes per vector (8 vectors a warp,
 * fewer shuffle stages and per-vector overhead) up to d = 128, 8 lanes at d = 256 (shared memory) or when lpv8 asks. */
static k_had8 pick_had8(int d, int bits, int x_half, bool lpv8, int *vpw)
{
    *vpw = lpv8 || d == 256 ? 4 : 8;
    if (*vpw == 4)
        return d == 64 ? pick_had8_d<64, 8>(bits, x_half) : d == 128 ? pick_had8_d<128, 8>(bits, x_half)
               : d == 256 ? pick_had8_d<256, 8>(bits, x_half) : NULL;
    return d == 64 ? pick_had8_d<64, 4>(bits, x_half) : d == 128 ? pick_had8_d<128, 4>(bits, x_half) : NULL;
}

/* Encoder variants for side-by-side timing (tq_cuda_variant_set("encode", name)): "v1" keeps the one-vector-per-warp
 * k_encode_had, "lpv8" the 8-lanes-per-vector k_encode_had8 at every d, "auto" (the default) k_encode_had8 at 4 lanes
 * up to d = 128 (test_cuda checks all three). Process-wide. */
enum { EV_AUTO, EV_LPV8, EV_V1, EV_N };
static const char *const encode_variant_names[EV_N] = {"auto", "lpv8", "v1"};
static int encode_variant;

extern "C" int tq_cuda_encode_variant(const char *name)
{
    for (int i = 0; i < EV_N; i++)
        if (name && !strcmp(name, encode_variant_names[i])) {
            encode_variant = i;
            return TQ_OK;
        }
    return tq_error_set(TQ_ERR_USAGE, "cuda: unknown encode variant '%s' (auto, lpv8, v1)", name ? name : "(null)");
}
static bool encode_forced(const char *what)
{
    return !strcmp(encode_variant_names[encode_variant], what);
}

extern "C" int tq_cuda_encode(const tq_cuda_quant *q, const void *x, int x_half, long n, const tq_cuda_codes *out)
{
    if (n <= 0) return TQ_OK;
    QP p = qp_of(q);
    int ws = (q->dim_max + 3) & ~3;
    int warps;
    long blocks;
    int E = p.d / 32;
    int vpw = 0;
    k_had8 k8 = p.method == TQ_M_TURBO_MSE && p.rotation == TQ_ROT_HADAMARD && !encode_forced("v1")
                ? pick_had8(p.d, p.bits, x_half, encode_forced("lpv8"), &vpw) : NULL;
    if (k8) {
        /* resident blocks on the device: the grid strides over the rest */
        int dev = 0, sm = 0, bps = 0;
        TQ_CU(cudaGetDevice(&dev), "cudaGetDevice");
        TQ_CU(cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
        TQ_CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, k8, 256, 0), "cudaOccupancy");
        long grid_max = (long)sm * (bps > 0 ? bps : 1);
        long need = (n + 8 * vpw - 1) / (8 * vpw); /* 8 warps of vpw vectors per block and step */
        k8<<<(unsigned)(need < grid_max ? need : grid_max), 256>>>(p, x, n, out->codes, out->norms);
    } else if (p.method == TQ_M_TURBO_MSE && p.rotation == TQ_ROT_HADAMARD && (E == 2 || E == 4 || E == 8) &&
        E * p.bits <= 32) {
        long blocks8 = (n + 7) / 8;
        unsigned g = (unsigned)(blocks8 < 132L * 32 ? blocks8 : 132L * 32);
        if (E == 2) k_encode_had<2><<<g, 256>>>(p, x, x_half, n, out->codes, out->norms);
        else if (E == 4) k_encode_had<4><<<g, 256>>>(p, x, x_half, n, out->codes, out->norms);
        else k_encode_had<8><<<g, 256>>>(p, x, x_half, n, out->codes, out->norms);
    } else if (p.rotation == TQ_ROT_DENSE || p.method != TQ_M_TURBO_MSE) {
        const int V = 4;
        size_t per_warp = sizeof(float) * (2 * V * ws + V * ws / 4);
        launch_shape(n, V, per_warp, &warps, &blocks);
        if (per_warp > 48 * 1024) return tq_error_set(TQ_ERR_USAGE, "cuda encode: dim %d too large", q->dim_max);
        k_encode<V><<<(unsigned)blocks, warps * 32, per_warp * warps>>>(p, x, x_half, n, *out, ws);
    } else {
        size_t per_warp = sizeof(float) * (2 * ws + ws / 4);
        launch_shape(n, 1, per_warp, &warps, &blocks);
        k_encode<1><<<(unsigned)blocks, warps * 32, per_warp * warps>>>(p, x, x_half, n, *out, ws);
    }
    TQ_CU_LAUNCH("encode kernel");
    return TQ_OK;
}

extern "C" int tq_cuda_decode(const tq_cuda_quant *q, const tq_cuda_codes *in, long n, void *xhat, int out_half)
{
    if (n <= 0) return TQ_OK;
    QP p = qp_of(q);
    int ws = (q->dim_max + 3) & ~3;
    int warps;
    long blocks;
    if (p.rotation == TQ_ROT_DENSE || p.method != TQ_M_TURBO_MSE) {
        const int V = 4;
        size_t per_warp = sizeof(float) * 3 * V * ws;
        if (per_warp > 48 * 1024) return tq_error_set(TQ_ERR_USAGE, "cuda decode: dim %d too large", q->dim_max);
        launch_shape(n, V, per_warp, &warps, &blocks);
        k_decode<V><<<(unsigned)blocks, warps * 32, per_warp * warps>>>(p, *in, n, xhat, out_half, ws);
    } else {
        size_t per_warp = sizeof(float) * 3 * ws;
        launch_shape(n, 1, per_warp, &warps, &blocks);
        k_decode<1><<<(unsigned)blocks, warps * 32, per_warp * warps>>>(p, *in, n, xhat, out_half, ws);
    }
    TQ_CU_LAUNCH("decode kernel");
    return TQ_OK;
}
