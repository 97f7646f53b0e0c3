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
    uint4 *rotf, *mf;          /* tensor-core encoders: B fragments of 16 Pi (dense) and 16 S Pi^T (turbo-prod) */
    int mma;                   /* mma_kind: which tensor-core encoder serves fp16 input, -1 none */
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

/* ==== Tensor-core encoders (fp16 input): dense turbo-mse, turbo-prod with Hadamard or dense rotation ==============
 * A warp encodes 16 vectors at a time as the 16 rows of m16n8k16 mma tiles (fp16 operands, fp32 accumulation).
 * Lane (g, t) (g = lane / 4, t = lane % 4) loads rows g and g + 8 as 16-byte chunks: coordinates [32p + 8t, +8) of
 * each row for p < D/32 ("chunk order"). Because the k terms of a product may be taken in any order, chunk p's eight
 * halves are used as they arrive: its words 0, 1 are the A fragment's k slots (2t, 2t+1), (2t+8, 2t+9) of k-step 2p,
 * words 2, 3 those of k-step 2p+1, and the B fragments (built once on the host) list the matrix in the same k order.
 * The rotation matrix has no exact fp16 form: 16 Pi (a power of two, so that its small entries stay normal halves) is
 * split into hi + lo halves, two mma passes into separate accumulators, |16 Pi - hi - lo| <= 2^-22 |16 Pi|.
 * - norm: lib/turbo.c's vnorm order (partial sum l over x[8k + l], k ascending, then the 8 sums in double in order):
 *   lane t keeps l = 2t, 2t+1 and receives word t of its quad neighbours' chunks by 3 xor shuffles; the squares of
 *   halves are exact in float, so one fmaf rounds as the CPU's multiply-then-add. Identical to the CPU.
 * - dense turbo-mse: y = Pi x on the tensor cores, code = count of thresholds below (y * inv) (the CPU's search on
 *   the same floats); a quad's 8 codes of one n-tile are B whole bytes of the row, lanes t < B store one each.
 *   Codes may differ from the CPU's only where y/||x|| lies within (4d + 16) 2^-24 of a threshold (README).
 * - Hadamard turbo-prod: the butterflies run on the chunk layout in registers, exactly tq_fwht's operations (h = 1,
 *   2, 4 and h >= 32 inside a lane, h = 8, 16 by xor shuffles across the quad): codes and norms identical to the CPU.
 * - turbo-prod: the CPU's residual is r = x - ||x||_16 Pi^T c[idx] (||x||_16 the stored fp16 norm), so
 *   S r = (S Pi^T)(Pi x - ||x||_16 c[idx]) = M z with z formed in the rotated domain where the codes are; M = 16 S Pi^T
 *   is precomputed (double, then hi + lo halves), z is scaled by a power of two 2^k (||x||_16 2^k in [2^12, 2^13),
 *   so every |z 2^k| < 2^15 is a normal half) and split hi + lo; S r ~ M_hi z_hi + M_lo z_hi + M_hi z_lo (three mma
 *   passes); gamma = ||z|| (= ||r||, Pi orthogonal). The z fragments are staged in shared memory by the lane that
 *   will read them (no lane reads another's). Signs may differ from the CPU's where |(S r)_i| is below the bound
 *   derived in tests/test_cuda.c; gamma by float rounding before its fp16 rounding. */
struct MP {
    const uint4 *rotf; /* dense: 16 Pi as B fragments, hi + lo, chunk k order ([n-tile][k-step][lane]) */
    const uint4 *mf;   /* turbo-prod: 16 S Pi^T as B fragments; k order: chunk (Hadamard), accumulator (dense) */
    const float *thr, *cent, *signs;
    float fs;
    int norm_fp32;
};

__device__ __forceinline__ void mma_f16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t word_of(const uint4 &w, int i)
{
    return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w;
}

/* ||row|| from the quad's chunks (xr[p] = coordinates [32p + 8t, +8)) in lib/turbo.c's order; same in the 4 lanes. */
template <int D>
__device__ __forceinline__ float quad_norm(const uint4 *xr, int t)
{
    float a0 = 0.0f, a1 = 0.0f; /* partial sums l = 2t, 2t + 1 */
#pragma unroll
    for (int p = 0; p < D / 32; p++) {
        /* r_q = word t of lane t ^ q's chunk: x[8k + 2t], x[8k + 2t + 1] for k = 4p + (t ^ q) */
        const uint32_t own = word_of(xr[p], t), r1 = __shfl_xor_sync(TQ_FULL_MASK, word_of(xr[p], t ^ 1), 1),
                       r2 = __shfl_xor_sync(TQ_FULL_MASK, word_of(xr[p], t ^ 2), 2),
                       r3 = __shfl_xor_sync(TQ_FULL_MASK, word_of(xr[p], t ^ 3), 3);
#pragma unroll
        for (int tt = 0; tt < 4; tt++) { /* k = 4p + tt ascending */
            const int q = tt ^ t;
            const uint32_t w = q == 0 ? own : q == 1 ? r1 : q == 2 ? r2 : r3;
            const float2 f = __half22float2(*(const __half2 *)&w);
            a0 = fmaf(f.x, f.x, a0);
            a1 = fmaf(f.y, f.y, a1);
        }
    }
    double s = 0;
#pragma unroll
    for (int tt = 0; tt < 4; tt++) {
        s += (double)__shfl_sync(TQ_FULL_MASK, a0, tt, 4);
        s += (double)__shfl_sync(TQ_FULL_MASK, a1, tt, 4);
    }
    return (float)sqrt(s);
}

/* Count of thresholds strictly below z (lib/codebook.h's rule; the 2^B - 1 thresholds ascend), by binary search
 * with the thresholds in registers: level L compares z with the middle threshold of the interval its bits so far
 * select, picked by a select tree over compile-time indices (no local memory), B compares in all. With `cv` the
 * centroid of the code, by the same kind of tree. Equal to the linear count for any z (NaN: 0, as the CPU). */
template <int B, bool CENT>
__device__ __forceinline__ uint32_t code_cent(const float *th, const float *ce, float z, float &cv)
{
    bool pb[B];
    uint32_t c = 0;
#pragma unroll
    for (int L = 0; L < B; L++) {
        constexpr int NC = 1 << (B - 1);
        const int step = 1 << (B - 1 - L);
        float cand[NC];
#pragma unroll
        for (int q = 0; q < (1 << L); q++) cand[q] = th[q * 2 * step + step - 1];
#pragma unroll
        for (int r = 0; r < L; r++) /* fold the candidates by the bits found, the last found first */
#pragma unroll
            for (int q = 0; q < (1 << (L - 1 - r)); q++) cand[q] = pb[L - 1 - r] ? cand[2 * q + 1] : cand[2 * q];
        pb[L] = z > cand[0];
        c |= pb[L] ? (uint32_t)step : 0u;
    }
    if (CENT) {
        float cc[1 << B];
#pragma unroll
        for (int q = 0; q < (1 << B); q++) cc[q] = ce[q];
#pragma unroll
        for (int r = 0; r < B; r++)
#pragma unroll
            for (int q = 0; q < (1 << (B - 1 - r)); q++) cc[q] = pb[B - 1 - r] ? cc[2 * q + 1] : cc[2 * q];
        cv = cc[0];
    }
    return c;
}

/* 2^k with seen 2^k in [2^12, 2^13): |z| <= |y| + seen |c| < 2 seen keeps z 2^k below 2^14 (fp16 max 65504). */
__device__ __forceinline__ float z_scale(float seen)
{
    if (!(seen > 0.0f) || !(seen < 3.0e38f)) return 1.0f;
    int e;
    frexpf(seen, &e);
    int k = 13 - e;
    k = k < -120 ? -120 : k > 120 ? 120 : k;
    return ldexpf(1.0f, k);
}

/* z (two consecutive k slots of one row) scaled, split hi + lo and written into the lane's A fragment slot. */
__device__ __forceinline__ void stage_z(uint4 *zh, uint4 *zl, int ks, int lane, int reg, float z0, float z1, float sc)
{
    const float s0 = z0 * sc, s1 = z1 * sc; /* exact: a power of two */
    const __half2 h = __floats2half2_rn(s0, s1);
    const float2 hf = __half22float2(h);
    const __half2 l = __floats2half2_rn(s0 - hf.x, s1 - hf.y); /* the differences are exact */
    ((uint32_t *)&zh[ks * 32 + lane])[reg] = *(const uint32_t *)&h;
    ((uint32_t *)&zl[ks * 32 + lane])[reg] = *(const uint32_t *)&l;
}

constexpr int MMA_WARPS = 8;

template <int D, int B, bool PROD, bool HAD>
__global__ void __launch_bounds__(32 * MMA_WARPS, D == 256 ? 1 : 2) k_encode_mma(MP p, const __half *__restrict__ x, long n,
                                                               uint8_t *__restrict__ codes, void *__restrict__ norms,
                                                               uint8_t *__restrict__ sgn, void *__restrict__ rnorms)
{
    constexpr int NT = (1 << B) - 1, KS = D / 16, NP = D / 32, RB = D * B / 8, SB = D / 8, E = D / 4;
    extern __shared__ uint4 zsm[]; /* turbo-prod: per warp KS x 32 uint4 of z hi, then of z lo */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    float th[NT], ce[NT + 1];
#pragma unroll
    for (int i = 0; i < NT; i++) th[i] = p.thr[i];
#pragma unroll
    for (int i = 0; i <= NT; i++) ce[i] = PROD ? p.cent[i] : 0.0f;
    /* Hadamard: the sign bits of the half pairs of chunk q of lane t ([t][q][word]: bit 15 / 31 where signs[32q + 8t
     * + 2 word (+ 1)] < 0): x * (+-1) as the CPU computes it is x with its sign bit flipped */
    __shared__ __align__(16) uint32_t hmask[HAD ? 4 * NP * 4 : 1];
    if constexpr (HAD) {
        for (int i = threadIdx.x; i < 4 * NP * 4; i += blockDim.x) {
            const int tt = i / (NP * 4), q = i / 4 % NP, w = i % 4, j = 32 * q + 8 * tt + 2 * w;
            hmask[i] = (p.signs[j] < 0.0f ? 0x8000u : 0u) | (p.signs[j + 1] < 0.0f ? 0x80000000u : 0u);
        }
        __syncthreads();
    }
    uint4 *zh = zsm + (size_t)warp * 2 * KS * 32, *zl = zh + KS * 32;
    const long step = (long)gridDim.x * MMA_WARPS * 16;
    for (long base = ((long)blockIdx.x * MMA_WARPS + warp) * 16; base < n; base += step) {
        const long vr[2] = {base + g, base + g + 8};
        float nrm[2], seen[2], inv[2], sc[2], gam[2] = {0.0f, 0.0f};
        if constexpr (!HAD) {
            uint4 xr[2][NP];
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int q = 0; q < NP; q++)
                    xr[r][q] = vr[r] < n ? __ldg((const uint4 *)(x + (size_t)vr[r] * D + 32 * q + 8 * t))
                                         : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                nrm[r] = quad_norm<D>(xr[r], t);
                seen[r] = p.norm_fp32 ? nrm[r] : tq_cu_half(tq_cu_to_half(nrm[r]));
                inv[r] = nrm[r] > 0.0f ? 1.0f / nrm[r] : 0.0f;
                sc[r] = z_scale(seen[r]);
            }
            uint32_t a[KS][4];
#pragma unroll
            for (int q = 0; q < NP; q++) {
                a[2 * q][0] = xr[0][q].x; a[2 * q][1] = xr[1][q].x; a[2 * q][2] = xr[0][q].y; a[2 * q][3] = xr[1][q].y;
                a[2 * q + 1][0] = xr[0][q].z; a[2 * q + 1][1] = xr[1][q].z;
                a[2 * q + 1][2] = xr[0][q].w; a[2 * q + 1][3] = xr[1][q].w;
            }
#pragma unroll 2
            for (int nt = 0; nt < D / 8; nt++) {
                float ch[4] = {0.0f, 0.0f, 0.0f, 0.0f}, cl[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                const uint4 *f = p.rotf + (size_t)nt * KS * 32 + lane;
#pragma unroll
                for (int ks = 0; ks < KS; ks++) {
                    const uint4 b = __ldg(f + ks * 32);
                    mma_f16(ch, a[ks], b.x, b.y);
                    mma_f16(cl, a[ks], b.z, b.w);
                }
                /* accumulator c[2r + e]: row g + 8r, coordinate 8 nt + 2t + e */
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float y[2], cv[2];
                    uint32_t cd[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        y[e] = (ch[2 * r + e] + cl[2 * r + e]) * 0.0625f;
                        cd[e] = code_cent<B, PROD>(th, ce, __fmul_rn(y[e], inv[r]), cv[e]);
                    }
                    uint32_t grp = (cd[0] | cd[1] << B) << (2 * t * B);
                    grp |= __shfl_xor_sync(TQ_FULL_MASK, grp, 1);
                    grp |= __shfl_xor_sync(TQ_FULL_MASK, grp, 2);
                    if (t < B && vr[r] < n) codes[(size_t)vr[r] * RB + nt * B + t] = (uint8_t)(grp >> (8 * t));
                    if constexpr (PROD) {
                        const float z0 = fmaf(-seen[r], cv[0], y[0]), z1 = fmaf(-seen[r], cv[1], y[1]);
                        gam[r] = fmaf(z0, z0, fmaf(z1, z1, gam[r]));
                        stage_z(zh, zl, nt >> 1, lane, ((nt & 1) << 1) | r, z0, z1, sc[r]);
                    }
                }
            }
        } else {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                uint4 xr[NP];
#pragma unroll
                for (int q = 0; q < NP; q++)
                    xr[q] = vr[r] < n ? __ldg((const uint4 *)(x + (size_t)vr[r] * D + 32 * q + 8 * t))
                                      : make_uint4(0, 0, 0, 0);
                nrm[r] = quad_norm<D>(xr, t);
                seen[r] = p.norm_fp32 ? nrm[r] : tq_cu_half(tq_cu_to_half(nrm[r]));
                inv[r] = nrm[r] > 0.0f ? 1.0f / nrm[r] : 0.0f;
                sc[r] = z_scale(seen[r]);
                float y[E]; /* y[8q + e]: coordinate 32q + 8t + e */
#pragma unroll
                for (int q = 0; q < NP; q++) {
                    const uint4 mk = *(const uint4 *)&hmask[(t * NP + q) * 4];
                    const uint32_t w[4] = {xr[q].x ^ mk.x, xr[q].y ^ mk.y, xr[q].z ^ mk.z, xr[q].w ^ mk.w};
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const float2 f = __half22float2(*(const __half2 *)&w[i]);
                        y[8 * q + 2 * i] = f.x;
                        y[8 * q + 2 * i + 1] = f.y;
                    }
                }
                /* tq_fwht's stages in order: h = 1, 2, 4 in the lane, 8 and 16 across the quad, 32 .. D/2 in the lane */
#pragma unroll
                for (int h = 1; h < 8; h <<= 1)
#pragma unroll
                    for (int j = 0; j < E; j++)
                        if (!(j & h)) {
                            const float a = y[j], b = y[j + h];
                            y[j] = __fadd_rn(a, b);
                            y[j + h] = __fsub_rn(a, b);
                        }
#pragma unroll
                for (int hl = 1; hl <= 2; hl <<= 1) {
                    /* o + y (lower lane) or o - y (upper): one fmaf, the same rounding as tq_fwht's a + b / a - b */
                    const float sg = (t & hl) ? -1.0f : 1.0f;
#pragma unroll
                    for (int j = 0; j < E; j++) y[j] = fmaf(y[j], sg, __shfl_xor_sync(TQ_FULL_MASK, y[j], hl));
                }
#pragma unroll
                for (int hq = 1; hq < NP; hq <<= 1)
#pragma unroll
                    for (int q = 0; q < NP; q++)
                        if (!(q & hq))
#pragma unroll
                            for (int e = 0; e < 8; e++) {
                                const float a = y[8 * q + e], b = y[8 * (q + hq) + e];
                                y[8 * q + e] = __fadd_rn(a, b);
                                y[8 * (q + hq) + e] = __fsub_rn(a, b);
                            }
#pragma unroll
                for (int q = 0; q < NP; q++) {
                    uint32_t wd = 0;
                    float yv[8], cv[8];
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        yv[e] = __fmul_rn(y[8 * q + e], p.fs);
                        wd |= code_cent<B, PROD>(th, ce, __fmul_rn(yv[e], inv[r]), cv[e]) << (e * B);
                    }
                    if (vr[r] < n) { /* the chunk's 8 codes: B bytes at byte (4q + t) B of the row */
                        uint8_t *dst = codes + (size_t)vr[r] * RB + (4 * q + t) * B;
                        if constexpr (B == 4) *(uint32_t *)dst = wd;
                        else if constexpr (B == 2) *(uint16_t *)dst = (uint16_t)wd;
                        else
#pragma unroll
                            for (int i = 0; i < B; i++) dst[i] = (uint8_t)(wd >> (8 * i));
                    }
                    if constexpr (PROD)
#pragma unroll
                        for (int e = 0; e < 8; e += 2) {
                            const float z0 = fmaf(-seen[r], cv[e], yv[e]), z1 = fmaf(-seen[r], cv[e + 1], yv[e + 1]);
                            gam[r] = fmaf(z0, z0, fmaf(z1, z1, gam[r]));
                            stage_z(zh, zl, 2 * q + (e >> 2), lane, (((e >> 1) & 1) << 1) | r, z0, z1, sc[r]);
                        }
                }
            }
        }
        const long vt = t ? vr[1] : vr[0]; /* lanes t = 0, 1 store rows g, g + 8 */
        if (t < 2 && vt < n) store_norm(norms, vt, t ? nrm[1] : nrm[0], p.norm_fp32);
        if constexpr (PROD) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                gam[r] += __shfl_xor_sync(TQ_FULL_MASK, gam[r], 1);
                gam[r] += __shfl_xor_sync(TQ_FULL_MASK, gam[r], 2);
            }
            if (t < 2 && vt < n) store_norm(rnorms, vt, sqrtf(t ? gam[1] : gam[0]), p.norm_fp32);
            __syncwarp();
            for (int nt = 0; nt < SB; nt += 2) { /* n-tiles nt, nt + 1: outputs o = 8 nt' + 2t + e of rows g, g + 8 */
                float s0[2][4] = {}, s1[2][4] = {};
                const uint4 *f = p.mf + (size_t)nt * KS * 32 + lane;
#pragma unroll
                for (int ks = 0; ks < KS; ks++) {
                    const uint4 ah = zh[ks * 32 + lane], al = zl[ks * 32 + lane];
                    const uint32_t ahr[4] = {ah.x, ah.y, ah.z, ah.w}, alr[4] = {al.x, al.y, al.z, al.w};
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        const uint4 b = __ldg(f + (i * KS + ks) * 32);
                        mma_f16(s0[i], ahr, b.x, b.y);
                        mma_f16(s1[i], ahr, b.z, b.w);
                        mma_f16(s1[i], alr, b.x, b.y);
                    }
                }
                uint32_t by[2];
#pragma unroll
                for (int r = 0; r < 2; r++) { /* byte nt of the row in bits 0-7, byte nt + 1 in bits 8-15 */
                    by[r] = 0;
#pragma unroll
                    for (int i = 0; i < 2; i++)
                        by[r] |= ((s0[i][2 * r] + s1[i][2 * r] >= 0.0f ? 1u : 0u) |
                                  (s0[i][2 * r + 1] + s1[i][2 * r + 1] >= 0.0f ? 2u : 0u)) << (2 * t + 8 * i);
                    by[r] |= __shfl_xor_sync(TQ_FULL_MASK, by[r], 1);
                    by[r] |= __shfl_xor_sync(TQ_FULL_MASK, by[r], 2);
                }
                const long vs = t < 2 ? vr[0] : vr[1]; /* lane t: byte nt + (t & 1) of row g + 8 (t >> 1) */
                if (vs < n) sgn[(size_t)vs * SB + nt + (t & 1)] = (uint8_t)((t < 2 ? by[0] : by[1]) >> (8 * (t & 1)));
            }
            __syncwarp(); /* the stage is rewritten for the next 16 vectors */
        }
    }
}

/* Dense turbo-mse with two m-tiles a warp step (32 vectors: rows g, g + 8 of each): every B fragment of the rotation
 * is loaded once for both tiles' mma, where k_encode_mma loads it once per 16 vectors (ncu: its memory pipeline, at
 * 77% with DRAM at 16%, was the bound). The arithmetic of each vector is k_encode_mma's: the same codes and norms.
 * d = 64 and 128 (the two tiles' A fragments are 16 d / 16 registers). */
template <int D, int B>
__global__ void __launch_bounds__(32 * MMA_WARPS, 2) k_encode_mma2(MP p, const __half *__restrict__ x, long n,
                                                                uint8_t *__restrict__ codes, void *__restrict__ norms,
                                                                uint8_t *, void *)
{
    constexpr int NT = (1 << B) - 1, KS = D / 16, NP = D / 32, RB = D * B / 8;
    static_assert(D <= 128, "two tiles of A fragments in registers");
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    float th[NT], ce[NT + 1];
#pragma unroll
    for (int i = 0; i < NT; i++) th[i] = p.thr[i];
#pragma unroll
    for (int i = 0; i <= NT; i++) ce[i] = 0.0f;
    const long step = (long)gridDim.x * MMA_WARPS * 32;
    for (long base = ((long)blockIdx.x * MMA_WARPS + warp) * 32; base < n; base += step) {
        long vr[2][2];
        float nrm[2][2], inv[2][2];
        uint32_t a[2][KS][4];
#pragma unroll
        for (int m = 0; m < 2; m++) {
            vr[m][0] = base + 16 * m + g;
            vr[m][1] = vr[m][0] + 8;
            uint4 xr[2][NP];
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int q = 0; q < NP; q++)
                    xr[r][q] = vr[m][r] < n ? __ldg((const uint4 *)(x + (size_t)vr[m][r] * D + 32 * q + 8 * t))
                                            : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                nrm[m][r] = quad_norm<D>(xr[r], t);
                inv[m][r] = nrm[m][r] > 0.0f ? 1.0f / nrm[m][r] : 0.0f;
            }
#pragma unroll
            for (int q = 0; q < NP; q++) {
                a[m][2 * q][0] = xr[0][q].x; a[m][2 * q][1] = xr[1][q].x;
                a[m][2 * q][2] = xr[0][q].y; a[m][2 * q][3] = xr[1][q].y;
                a[m][2 * q + 1][0] = xr[0][q].z; a[m][2 * q + 1][1] = xr[1][q].z;
                a[m][2 * q + 1][2] = xr[0][q].w; a[m][2 * q + 1][3] = xr[1][q].w;
            }
        }
#pragma unroll 1
        for (int nt = 0; nt < D / 8; nt++) {
            float ch[2][4] = {}, cl[2][4] = {};
            const uint4 *f = p.rotf + (size_t)nt * KS * 32 + lane;
#pragma unroll
            for (int ks = 0; ks < KS; ks++) {
                const uint4 b = __ldg(f + ks * 32);
#pragma unroll
                for (int m = 0; m < 2; m++) {
                    mma_f16(ch[m], a[m][ks], b.x, b.y);
                    mma_f16(cl[m], a[m][ks], b.z, b.w);
                }
            }
#pragma unroll
            for (int m = 0; m < 2; m++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    uint32_t cd[2];
                    float cv;
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float y = (ch[m][2 * r + e] + cl[m][2 * r + e]) * 0.0625f;
                        cd[e] = code_cent<B, false>(th, ce, __fmul_rn(y, inv[m][r]), cv);
                    }
                    uint32_t grp = (cd[0] | cd[1] << B) << (2 * t * B);
                    grp |= __shfl_xor_sync(TQ_FULL_MASK, grp, 1);
                    grp |= __shfl_xor_sync(TQ_FULL_MASK, grp, 2);
                    if (t < B && vr[m][r] < n) codes[(size_t)vr[m][r] * RB + nt * B + t] = (uint8_t)(grp >> (8 * t));
                }
        }
#pragma unroll
        for (int m = 0; m < 2; m++) {
            const long vt = t ? vr[m][1] : vr[m][0]; /* lanes t = 0, 1 store rows g, g + 8 */
            if (t < 2 && vt < n) store_norm(norms, vt, t ? nrm[m][1] : nrm[m][0], p.norm_fp32);
        }
    }
}

typedef void (*k_mma)(MP, const __half *, long, uint8_t *, void *, uint8_t *, void *);

/* kind 0: dense turbo-mse (1-4 bits), 1: Hadamard turbo-prod, 2: dense turbo-prod (MSE bits 1-3) */
template <int D>
static k_mma pick_mma_d(int kind, int bits)
{
    if (kind == 0)
        switch (bits) {
        case 1: return k_encode_mma<D, 1, false, false>;
        case 2: return k_encode_mma<D, 2, false, false>;
        case 3: return k_encode_mma<D, 3, false, false>;
        case 4: return k_encode_mma<D, 4, false, false>;
        default: return NULL;
        }
    switch (bits) {
    case 1: return kind == 1 ? k_encode_mma<D, 1, true, true> : k_encode_mma<D, 1, true, false>;
    case 2: return kind == 1 ? k_encode_mma<D, 2, true, true> : k_encode_mma<D, 2, true, false>;
    case 3: return kind == 1 ? k_encode_mma<D, 3, true, true> : k_encode_mma<D, 3, true, false>;
    default: return NULL;
    }
}

/* Which tensor-core encoder serves a quantizer: -1 none, else the kind of pick_mma_d. */
static int mma_kind(const tq_cuda_qspec *s)
{
    if (s->d != 64 && s->d != 128 && s->d != 256) return -1;
    if (s->method == TQ_M_TURBO_MSE && s->rotation == TQ_ROT_DENSE && s->bits >= 1 && s->bits <= 4) return 0;
    if (s->method == TQ_M_TURBO_PROD && s->m == s->d && s->bits >= 1 && s->bits <= 3)
        return s->rotation == TQ_ROT_HADAMARD ? 1 : s->rotation == TQ_ROT_DENSE ? 2 : -1;
    return -1;
}

static k_mma pick_mma(int kind, int d, int bits)
{
    return d == 64 ? pick_mma_d<64>(kind, bits) : d == 128 ? pick_mma_d<128>(kind, bits)
           : d == 256 ? pick_mma_d<256>(kind, bits) : NULL;
}

/* B fragments of 16 W (N x K row-major, double) for m16n8k16, [n-tile][k-step][lane] uint4 = {hi b0, hi b1, lo b0,
 * lo b1}, lane (g, t) holding column n = 8 n-tile + g. k order: chunk (cmap 0: slots 2t, 2t+1 | 2t+8, 2t+9 of k-step
 * ks are k0 .. k0+3, k0 = 32 (ks / 2) + 8t + 4 (ks % 2)) or accumulator (cmap 1: 16 ks + 2t, +1 | 16 ks + 8 + 2t,
 * +1, the k order of an n-tile pair's accumulators). */
static int upload_frags(uint4 **dev, const double *W, int N, int K, int cmap)
{
    size_t cnt = (size_t)(N / 8) * (K / 16) * 32;
    uint4 *h = (uint4 *)malloc(cnt * sizeof(uint4));
    if (!h) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    for (int nt = 0; nt < N / 8; nt++)
        for (int ks = 0; ks < K / 16; ks++)
            for (int lane = 0; lane < 32; lane++) {
                int g = lane >> 2, t = lane & 3, nn = 8 * nt + g, k0, kk[4];
                if (cmap) {
                    k0 = 16 * ks + 2 * t;
                    kk[0] = k0; kk[1] = k0 + 1; kk[2] = k0 + 8; kk[3] = k0 + 9;
                } else {
                    k0 = 32 * (ks / 2) + 8 * t + 4 * (ks % 2);
                    for (int e = 0; e < 4; e++) kk[e] = k0 + e;
                }
                uint32_t hi[4], lo[4];
                for (int e = 0; e < 4; e++) {
                    double w = 16.0 * W[(size_t)nn * K + kk[e]];
                    __half hh = __float2half_rn((float)w);
                    __half hl = __float2half_rn((float)(w - (double)__half2float(hh)));
                    hi[e] = ((__half_raw)hh).x;
                    lo[e] = ((__half_raw)hl).x;
                }
                h[((size_t)nt * (K / 16) + ks) * 32 + lane] =
                    make_uint4(hi[0] | hi[1] << 16, hi[2] | hi[3] << 16, lo[0] | lo[1] << 16, lo[2] | lo[3] << 16);
            }
    int st = tq_cuda_alloc((void **)dev, cnt * sizeof(uint4));
    if (!st) st = tq_cuda_upload(*dev, h, cnt * sizeof(uint4));
    free(h);
    return st;
}

/* The tensor-core encoders' matrices: dense Pi, and for turbo-prod M = S Pi^T (Pi = fs H diag(signs) for Hadamard,
 * H_ij = (-1)^popcount(i & j) as tq_fwht's butterflies). */
static int mma_setup(tq_cuda_quant *q, const tq_cuda_qspec *s, int kind)
{
    int d = s->d;
    double *pi = (double *)malloc(sizeof(double) * (size_t)d * d), *m = NULL;
    if (!pi) return tq_error_set(TQ_ERR_NOMEM, "out of memory");
    double fs = tq_cu_fwht_scale(d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++)
            pi[(size_t)i * d + j] = kind == 1 ? fs * (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * s->signs[j]
                                              : (double)s->rot[(size_t)i * d + j];
    int st = kind == 1 ? TQ_OK : upload_frags(&q->rotf, pi, d, d, 0);
    if (!st && kind > 0) {
        m = (double *)malloc(sizeof(double) * (size_t)d * d);
        if (!m) st = tq_error_set(TQ_ERR_NOMEM, "out of memory");
        for (int o = 0; !st && o < d; o++)
            for (int i = 0; i < d; i++) {
                double a = 0;
                for (int j = 0; j < d; j++) a += (double)s->S[(size_t)o * d + j] * pi[(size_t)i * d + j];
                m[(size_t)o * d + i] = a;
            }
        if (!st) st = upload_frags(&q->mf, m, d, d, kind == 2);
    }
    free(pi);
    free(m);
    return st;
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
    tq_cuda_free(q->rotf);
    tq_cuda_free(q->mf);
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
    q->mma = mma_kind(s);
    if (!st && q->mma >= 0) st = mma_setup(q, s, q->mma);
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
 * up to d = 128 and the tensor-core k_encode_mma for fp16 input, "simt" the CUDA-core kernels for fp16 input too (the
 * generic k_encode where k_encode_mma would run: the CPU's arithmetic bit for bit), "mt2" "auto" with k_encode_mma2
 * (two m-tiles a warp) for dense turbo-mse at d = 64 / 128. test_cuda checks all five.
 * Process-wide. */
enum { EV_AUTO, EV_LPV8, EV_V1, EV_SIMT, EV_MT2, EV_N };
static const char *const encode_variant_names[EV_N] = {"auto", "lpv8", "v1", "simt", "mt2"};
static int encode_variant;

extern "C" int tq_cuda_encode_variant(const char *name)
{
    for (int i = 0; i < EV_N; i++)
        if (name && !strcmp(name, encode_variant_names[i])) {
            encode_variant = i;
            return TQ_OK;
        }
    return tq_error_set(TQ_ERR_USAGE, "cuda: unknown encode variant '%s' (auto, lpv8, v1, simt, mt2)",
                        name ? name : "(null)");
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
    k_mma km = x_half && q->mma >= 0 && !encode_forced("simt") ? pick_mma(q->mma, p.d, p.bits) : NULL;
    int vps = 16; /* vectors a warp encodes per step */
    if (km && q->mma == 0 && p.d <= 128 && encode_forced("mt2")) {
        k_mma k2[2][4] = {{k_encode_mma2<64, 1>, k_encode_mma2<64, 2>, k_encode_mma2<64, 3>, k_encode_mma2<64, 4>},
                          {k_encode_mma2<128, 1>, k_encode_mma2<128, 2>, k_encode_mma2<128, 3>, k_encode_mma2<128, 4>}};
        km = k2[p.d == 128][p.bits - 1];
        vps = 32;
    }
    if (km) {
        MP mp = {q->rotf, q->mf, q->thr, q->cent, q->signs, p.fwht_scale, p.norm_fp32};
        size_t shm = q->mma > 0 ? (size_t)MMA_WARPS * 2 * (p.d / 16) * 32 * sizeof(uint4) : 0;
        int sm = 0, bps = 0, st = tq_cu_occupancy((const void *)km, 32 * MMA_WARPS, shm, shm, &bps, &sm);
        if (st) return st;
        long grid_max = (long)sm * (bps > 0 ? bps : 1);
        long need = (n + (long)vps * MMA_WARPS - 1) / ((long)vps * MMA_WARPS); /* vps vectors a warp and step */
        km<<<(unsigned)(need < grid_max ? need : grid_max), 32 * MMA_WARPS, shm>>>(
            mp, (const __half *)x, n, out->codes, out->norms, out->signs, out->rnorms);
    } else if (k8) {
        /* resident blocks on the device: the grid strides over the rest */
        int sm = 0, bps = 0, st = tq_cu_occupancy((const void *)k8, 256, 0, 0, &bps, &sm);
        if (st) return st;
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
