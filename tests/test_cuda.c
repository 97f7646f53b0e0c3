/* test_cuda.c: the CUDA kernels against host references. Encodes: bit for bit against a scalar emulation of the
 * documented arithmetic (lib/cuda/tq_cuda.h) on both rotations, and on the dense path against lib/rotation.c's
 * double-accumulated reference up to codes whose rotated coordinate lies within a derived rounding bound of a
 * threshold. Decodes and the fused attention against double-precision host references on the same codes.
 * Without CUDA or without a GPU it prints one SKIP and "0 passed, 0 failed, 1 skipped". */
#include "tq_test.h"

#include <stdint.h>

#include "codebook.h"
#include "cuda/tq_cuda.h"
#include "fp16.h"
#include "pack.h"
#include "quant.h"
#include "rng.h"
#include "rotation.h"
#include "tq.h"

/* The Beta Lloyd-Max codebook the CPU side uses (lib/codebook.c). */
static void codebook(int d, int bits, float *c, float *t)
{
    tq_codebook cb;
    TQ_ASSERT(tq_codebook_get(&cb, TQ_CB_BETA, d, bits) == TQ_OK);
    memcpy(c, cb.c, sizeof(float) * cb.n);
    memcpy(t, cb.t, sizeof(float) * (cb.n - 1));
}

/* Selects a kernel variant (tq_cuda_variant_set) and remembers it for the checks' labels. */
static char cur_attn[32] = "";
static void variant(const char *what, const char *name)
{
    int st = tq_cuda_variant_set(what, name);
    CHECK(st == TQ_OK, "variant %s=%s: %s", what, name, tq_error_msg());
    if (!strcmp(what, "attn")) snprintf(cur_attn, sizeof cur_attn, "%s", strcmp(name, "auto") ? name : "");
}

/* Unknown variant kinds and names are usage errors that name the culprit; nothing changes. */
static void check_variant_errors(void)
{
    int st = tq_cuda_variant_set("attn", "warp9");
    CHECK(st == TQ_ERR_USAGE && strstr(tq_error_msg(), "'warp9'"), "variant attn=warp9: status %d, '%s'", st,
          tq_error_msg());
    st = tq_cuda_variant_set("encode", "t64");
    CHECK(st == TQ_ERR_USAGE && strstr(tq_error_msg(), "'t64'"), "variant encode=t64: status %d, '%s'", st,
          tq_error_msg());
    st = tq_cuda_variant_set("decode", "auto");
    CHECK(st == TQ_ERR_USAGE && strstr(tq_error_msg(), "'decode'"), "variant kind decode: status %d, '%s'", st,
          tq_error_msg());
}

/* ---- host emulation of the GPU arithmetic (tq_cuda.h, which follows lib/turbo.c) ----------------------------- */
static float emu_norm(const float *x, int n) /* lib/turbo.c's vnorm: 8 float lanes, then double */
{
    float acc[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[j + l] * x[j + l];
    double s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    for (; j < n; j++) s += (double)x[j] * x[j];
    return (float)sqrt(s);
}

static uint8_t emu_sign(const float *S, int d, int i, const float *r)
{
    double a = 0;
    for (int j = 0; j < d; j++) a += (double)S[(size_t)i * d + j] * r[j];
    return a >= 0;
}

static void emu_forward(const tq_rotation *r, const float *u, float *y)
{
    int d = r->d;
    if (r->kind == TQ_ROT_DENSE) {
        for (int i = 0; i < d; i++) {
            float a = 0.0f;
            for (int j = 0; j < d; j++) a = fmaf(r->m[(size_t)i * d + j], u[j], a);
            y[i] = a;
        }
    } else tq_rotation_forward_ref(r, u, y); /* hadamard: the same butterflies and constant */
}

static void emu_inverse(const tq_rotation *r, const float *y, float *x)
{
    int d = r->d;
    if (r->kind == TQ_ROT_DENSE) {
        for (int j = 0; j < d; j++) {
            float a = 0.0f;
            for (int i = 0; i < d; i++) a = fmaf(r->m[(size_t)i * d + j], y[i], a);
            x[j] = a;
        }
    } else tq_rotation_inverse_ref(r, y, x);
}

static int encode_lin(const float *t, int n, float y)
{
    int i = 0;
    for (int j = 0; j < n - 1; j++)
        if (y > t[j]) i++;
    return i;
}

/* One vector: codes row, fp16 norm, signs row, fp16 rnorm, as the GPU should write them. */
static void emu_encode(int method, const tq_rotation *r, int bits, const float *c, const float *t, const float *S,
                       int m, const float *x, int d, uint8_t *codes, uint16_t *norm, uint8_t *signs, uint16_t *rnorm)
{
    float u[256], y[256], xm[256];
    uint8_t cd[256];
    float nrm = emu_norm(x, d);
    *norm = tq_float_to_half(nrm);
    if (method == TQ_M_QJL) {
        for (int i = 0; i < m; i++) cd[i] = emu_sign(S, d, i, x);
        tq_pack_row_ref(cd, m, 1, signs);
        return;
    }
    float inv = nrm > 0.0f ? 1.0f / nrm : 0.0f;
    emu_forward(r, x, y);
    for (int j = 0; j < d; j++) cd[j] = (uint8_t)encode_lin(t, 1 << bits, y[j] * inv);
    tq_pack_row_ref(cd, d, bits, codes);
    if (method != TQ_M_TURBO_PROD) return;
    float nq = tq_half_to_float(*norm);
    for (int j = 0; j < d; j++) y[j] = c[cd[j]];
    emu_inverse(r, y, xm);
    for (int j = 0; j < d; j++) u[j] = x[j] - xm[j] * nq;
    *rnorm = tq_float_to_half(emu_norm(u, d));
    for (int i = 0; i < m; i++) cd[i] = emu_sign(S, d, i, u);
    tq_pack_row_ref(cd, m, 1, signs);
}

/* Double-precision decode of one vector from its sections. */
static void ref_decode(int method, const tq_rotation *r, int bits, const float *c, const float *S, int m, int d,
                       const uint8_t *codes, uint16_t norm, const uint8_t *signs, uint16_t rnorm, double *out)
{
    double nq = tq_half_to_float(norm), coef = sqrt(M_PI / 2) / m;
    for (int j = 0; j < d; j++) out[j] = 0;
    if (method != TQ_M_QJL) {
        double cv[256];
        for (int i = 0; i < d; i++) cv[i] = c[tq_pack_get(codes, i, bits)];
        for (int j = 0; j < d; j++) {
            double a = 0;
            if (r->kind == TQ_ROT_DENSE)
                for (int i = 0; i < d; i++) a += (double)r->m[(size_t)i * d + j] * cv[i];
            else { /* Pi^T = D H / sqrt(d): row j of H is (-1)^popcount(i & j) */
                for (int i = 0; i < d; i++) a += (__builtin_popcount(i & j) & 1 ? -cv[i] : cv[i]);
                a *= r->signs[j] / sqrt((double)d);
            }
            out[j] = nq * a;
        }
    }
    if (method == TQ_M_TURBO_MSE) return;
    double g = method == TQ_M_TURBO_PROD ? tq_half_to_float(rnorm) : nq;
    for (int j = 0; j < d; j++) {
        double a = 0;
        for (int i = 0; i < m; i++) a += (double)S[(size_t)i * d + j] * (tq_pack_get(signs, i, 1) ? 1.0 : -1.0);
        out[j] += coef * g * a;
    }
}

static void gen_vectors(float *x, long n, int d, uint64_t seed)
{
    tq_rng r;
    tq_rng_derive(&r, seed, -1, -1, TQ_PURPOSE_TEST);
    for (long i = 0; i < n; i++) {
        double scale = 0.05 + 20.0 * tq_rng_double(&r); /* norms over 3 decades: fp16 rounding matters */
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(scale * tq_rng_normal(&r));
    }
    for (int j = 0; j < d; j++) x[j] = 0.0f; /* a zero vector quantizes to zero, never NaN */
}

/* Encode n vectors on the GPU with one quantizer and check every section against the emulation (must be identical)
 * and, for dense, the codes against the double reference (may differ only near thresholds). Then decode. */
static void check_codec(int method, int rot_kind, int d, int bits, long n)
{
    char what[160];
    snprintf(what, sizeof what, "%s %s d=%d bits=%d", method == TQ_M_TURBO_MSE ? "turbo-mse"
             : method == TQ_M_TURBO_PROD ? "turbo-prod" : "qjl", rot_kind == TQ_ROT_DENSE ? "dense" : "hadamard", d,
             bits);
    tq_slice_id id = {1, 2, TQ_TENSOR_KEYS};
    tq_rotation *rot = NULL;
    float *S = NULL, c[256], t[256];
    int m = d;
    if (tq_rotation_make(&rot, rot_kind, d, 42, id, TQ_PURPOSE_ROTATION, 0)) {
        CHECK(0, "%s: rotation: %s", what, tq_error_msg());
        return;
    }
    if (method != TQ_M_TURBO_MSE && tq_gaussian_matrix(&S, m, d, 42, id, TQ_PURPOSE_QJL, 0)) {
        CHECK(0, "%s: S: %s", what, tq_error_msg());
        tq_rotation_free(rot);
        return;
    }
    int cb_bits = method == TQ_M_QJL ? 1 : bits;
    codebook(d, cb_bits, c, t);
    tq_cuda_qspec sp = {method, d, bits, rot_kind, m, 0, rot->m, rot->signs, c, t, S};
    size_t rb = tq_pack_row_bytes(d, cb_bits), sb = tq_pack_row_bytes(m, 1);
    float *x = malloc(sizeof(float) * n * d), *xh = malloc(sizeof(float) * n * d);
    uint8_t *codes = calloc(n, rb), *signs = calloc(n, sb), *ecodes = calloc(n, rb), *esigns = calloc(n, sb);
    uint16_t *norms = calloc(n, 2), *rnorms = calloc(n, 2), *enorms = calloc(n, 2), *ernorms = calloc(n, 2);
    tq_cuda_quant *q = NULL;
    void *dx = NULL, *dxh = NULL;
    tq_cuda_codes dc = {0};
    gen_vectors(x, n, d, 7 + d + bits);
    int st = tq_cuda_quant_create(&q, &sp);
    if (!st) st = tq_cuda_alloc(&dx, sizeof(float) * n * d);
    if (!st) st = tq_cuda_alloc(&dxh, sizeof(float) * n * d);
    if (!st) st = tq_cuda_alloc((void **)&dc.codes, n * rb);
    if (!st) st = tq_cuda_alloc((void **)&dc.signs, n * sb);
    if (!st) st = tq_cuda_alloc(&dc.norms, n * 2);
    if (!st) st = tq_cuda_alloc(&dc.rnorms, n * 2);
    if (!st) st = tq_cuda_upload(dx, x, sizeof(float) * n * d);
    if (!st) st = tq_cuda_encode(q, dx, 0, n, &dc);
    if (!st) st = tq_cuda_decode(q, &dc, n, dxh, 0);
    if (!st) st = tq_cuda_sync();
    if (!st) st = tq_cuda_download(codes, dc.codes, n * rb);
    if (!st) st = tq_cuda_download(signs, dc.signs, n * sb);
    if (!st) st = tq_cuda_download(norms, dc.norms, n * 2);
    if (!st) st = tq_cuda_download(rnorms, dc.rnorms, n * 2);
    if (!st) st = tq_cuda_download(xh, dxh, sizeof(float) * n * d);
    CHECK(st == TQ_OK, "%s: cuda: %s", what, tq_error_msg());
    if (st) goto done;

    long bad_codes = 0, bad_norms = 0, bad_signs = 0, bad_rn = 0;
    for (long i = 0; i < n; i++) {
        emu_encode(method, rot, bits, c, t, S, m, x + i * d, d, ecodes + i * rb, enorms + i, esigns + i * sb,
                   ernorms + i);
        if (method != TQ_M_QJL) bad_codes += memcmp(codes + i * rb, ecodes + i * rb, rb) != 0;
        if (method != TQ_M_TURBO_MSE) bad_signs += memcmp(signs + i * sb, esigns + i * sb, sb) != 0;
        bad_norms += norms[i] != enorms[i];
        if (method == TQ_M_TURBO_PROD) bad_rn += rnorms[i] != ernorms[i];
    }
    /* Identical operations in identical order: nothing may differ (the double norm sums differ in order only, far
     * below float resolution). */
    CHECK(bad_codes == 0 && bad_norms == 0 && bad_signs == 0 && bad_rn == 0,
          "%s: GPU vs emulation: %ld code rows, %ld norms, %ld sign rows, %ld rnorms differ of %ld", what, bad_codes,
          bad_norms, bad_signs, bad_rn, n);

    /* Against the CPU library's own scalar reference (lib/turbo.c encode_ref) when this tree has it: on the Hadamard
     * path the same float operations in the same order, so every section must be identical. */
    const tq_format *f = tq_format_of(method);
    if (f && f->encode_ref && rot_kind == TQ_ROT_HADAMARD) {
        tq_qparams qp;
        tq_qparams_default(&qp, method, method == TQ_M_TURBO_PROD ? bits + 1 : bits);
        qp.rotation = rot_kind;
        qp.seed = 42;
        tq_codes cc;
        memset(&cc, 0, sizeof cc);
        if (f->check(&qp, d) != TQ_OK || f->encode_ref(&qp, id, x, (int)n, d, &cc) != TQ_OK) {
            char why[300];
            snprintf(why, sizeof why, "%s: CPU encode_ref: %s", what, tq_error_msg());
            SKIP(why);
        } else {
            const tq_section *sc = tq_codes_find(&cc, "codes"), *sn = tq_codes_find(&cc, "norms"),
                             *ss = tq_codes_find(&cc, "signs"), *sr = tq_codes_find(&cc, "rnorms");
            long diff = 0;
            if (method != TQ_M_QJL) diff += !sc || sc->count != n * rb || memcmp(sc->data, codes, n * rb);
            diff += !sn || sn->count != (size_t)n || memcmp(sn->data, norms, n * 2);
            if (method != TQ_M_TURBO_MSE) diff += !ss || ss->count != n * sb || memcmp(ss->data, signs, n * sb);
            if (method == TQ_M_TURBO_PROD) diff += !sr || sr->count != (size_t)n || memcmp(sr->data, rnorms, n * 2);
            CHECK(diff == 0, "%s: %ld sections differ from lib/turbo.c's encode_ref", what, diff);
        }
        tq_codes_free(&cc);
    }

    if (method != TQ_M_QJL && rot_kind == TQ_ROT_DENSE) {
        /* Against lib/rotation.c's double reference: a float fmaf chain over d terms of |Pi_ij u_j| (sum <= ||Pi_i||
         * ||u|| = 1) errs by at most d * 2^-24, the division u = x / norm by 2^-24 more: a code may differ only where
         * the exact coordinate is within tol = (d + 2) 2^-24 of a threshold. The expected count of such coordinates
         * is below n d (2^b - 1) 2 tol f_max, f_max = sqrt(d / 2 pi) the peak of N(0, 1/d). */
        double tol = (d + 2) * ldexp(1.0, -24), fmax = sqrt(d / (2 * M_PI));
        double bound = (double)n * d * ((1 << bits) - 1) * 2 * tol * fmax;
        long diff = 0, far = 0;
        float yr[256];
        for (long i = 0; i < n; i++) {
            float nrm = emu_norm(x + i * d, d), inv = nrm > 0 ? 1.0f / nrm : 0.0f;
            tq_rotation_forward_ref(rot, x + i * d, yr);
            for (int j = 0; j < d; j++) yr[j] *= inv;
            for (int j = 0; j < d; j++) {
                int want = encode_lin(t, 1 << bits, yr[j]), got = (int)tq_pack_get(codes + i * rb, j, bits);
                if (want == got) continue;
                diff++;
                double near = 1e30;
                for (int k = 0; k < (1 << bits) - 1; k++) near = fmin(near, fabs((double)yr[j] - t[k]));
                if (near > tol || abs(want - got) != 1) far++;
            }
        }
        CHECK(far == 0, "%s: %ld codes differ from the double reference farther than %.3g from a threshold", what, far,
              tol);
        CHECK(diff <= bound, "%s: %ld codes differ from the double reference, bound %.1f", what, diff, bound);
        fprintf(stderr, "  %s: %ld of %ld codes differ from the double-precision rotation (bound %.1f, tol %.2g)\n",
                what, diff, n * d, bound, tol);
    }

    /* Decode against double: each output is a float combination of d (or m) terms whose magnitudes sum to at most
     * nq ||c|| for the MSE part (Pi orthogonal, ||c|| <= 1.2 with these codebooks) and coef g sum_i |S_ij| for the
     * QJL part; float rounding of a k-term chain is within k 2^-24 of that sum, plus a few roundings of the scaling:
     * tol_j = (d + 4) 2^-24 (nq * 1.2 + coef g max_j sum_i |S_ij|). */
    double colmax = 0;
    if (S)
        for (int j = 0; j < d; j++) {
            double a = 0;
            for (int i = 0; i < m; i++) a += fabs(S[(size_t)i * d + j]);
            colmax = fmax(colmax, a);
        }
    long dec_bad = 0;
    double worst = 0;
    for (long i = 0; i < n; i++) {
        double ref[256];
        ref_decode(method, rot, bits, c, S, m, d, codes + i * rb, norms[i], signs + i * sb, rnorms[i], ref);
        double nq = tq_half_to_float(norms[i]), g = method == TQ_M_TURBO_PROD ? tq_half_to_float(rnorms[i]) : nq;
        double tol = (d + 4) * ldexp(1.0, -24) * ((method != TQ_M_QJL ? nq * 1.2 : 0) +
                                                   (method != TQ_M_TURBO_MSE ? sqrt(M_PI / 2) / m * g * colmax : 0));
        for (int j = 0; j < d; j++) {
            double e = fabs(xh[i * d + j] - ref[j]);
            if (e > tol) dec_bad++;
            if (tol > 0) worst = fmax(worst, e / tol);
        }
    }
    CHECK(dec_bad == 0, "%s: %ld decoded values outside the rounding bound (worst %.2f of it)", what, dec_bad, worst);

done:
    tq_cuda_free(dx);
    tq_cuda_free(dxh);
    tq_cuda_free(dc.codes);
    tq_cuda_free(dc.signs);
    tq_cuda_free(dc.norms);
    tq_cuda_free(dc.rnorms);
    tq_cuda_quant_free(q);
    free(x); free(xh); free(codes); free(signs); free(ecodes); free(esigns);
    free(norms); free(rnorms); free(enorms); free(ernorms);
    free(S);
    tq_rotation_free(rot);
}

/* Hadamard turbo-mse from fp16 and from float input, through k_encode_had8 (4 lanes per vector up to d = 128, 8 at
 * d = 256), with the variant encode=lpv8 its 8-lane form at every d, and with encode=v1 the one-vector-per-warp
 * k_encode_had: all six must write exactly the emulation's bytes for the fp16-rounded vectors (the same floats
 * whichever way they arrive). n is odd, so the last group of vectors of a warp and the last step of a block are
 * partial. */
static void check_had_inputs(int d, int bits, long n)
{
    char what[96];
    snprintf(what, sizeof what, "turbo-mse hadamard d=%d bits=%d fp16/float in, both kernels", d, bits);
    tq_slice_id id = {1, 2, TQ_TENSOR_KEYS};
    tq_rotation *rot = NULL;
    float c[256], t[256];
    if (tq_rotation_make(&rot, TQ_ROT_HADAMARD, d, 42, id, TQ_PURPOSE_ROTATION, 0)) {
        CHECK(0, "%s: rotation: %s", what, tq_error_msg());
        return;
    }
    codebook(d, bits, c, t);
    tq_cuda_qspec sp = {TQ_M_TURBO_MSE, d, bits, TQ_ROT_HADAMARD, d, 0, NULL, rot->signs, c, t, NULL};
    size_t rb = tq_pack_row_bytes(d, bits);
    float *x = malloc(sizeof(float) * n * d);
    uint16_t *xh = malloc(2 * n * d), *norms = calloc(n, 2), *enorms = calloc(n, 2);
    uint8_t *codes = calloc(n, rb), *ecodes = calloc(n, rb);
    tq_cuda_quant *q = NULL;
    void *dx = NULL, *dh = NULL;
    tq_cuda_codes dc = {0};
    gen_vectors(x, n, d, 11 + d + bits);
    for (long i = 0; i < n * d; i++) x[i] = tq_half_to_float(xh[i] = tq_float_to_half(x[i]));
    for (long i = 0; i < n; i++) emu_encode(TQ_M_TURBO_MSE, rot, bits, c, t, NULL, d, x + i * d, d, ecodes + i * rb,
                                            enorms + i, NULL, NULL);
    int st = tq_cuda_quant_create(&q, &sp);
    if (!st) st = tq_cuda_alloc(&dx, sizeof(float) * n * d);
    if (!st) st = tq_cuda_alloc(&dh, 2 * n * d);
    if (!st) st = tq_cuda_alloc((void **)&dc.codes, n * rb);
    if (!st) st = tq_cuda_alloc(&dc.norms, n * 2);
    if (!st) st = tq_cuda_upload(dx, x, sizeof(float) * n * d);
    if (!st) st = tq_cuda_upload(dh, xh, 2 * n * d);
    for (int v = 0; v < 6 && !st; v++) {
        static const char *name[6] = {"default fp16", "default float", "lpv8 fp16", "lpv8 float", "v1 fp16",
                                      "v1 float"};
        variant("encode", v >= 4 ? "v1" : v >= 2 ? "lpv8" : "auto");
        st = tq_cuda_copy(dc.codes, dx, n * rb); /* poison: stale bytes from the last variant must not pass */
        if (!st) st = tq_cuda_encode(q, v % 2 ? dx : dh, v % 2 == 0, n, &dc);
        if (!st) st = tq_cuda_sync();
        if (!st) st = tq_cuda_download(codes, dc.codes, n * rb);
        if (!st) st = tq_cuda_download(norms, dc.norms, n * 2);
        if (st) break;
        long bad = 0, badn = 0;
        for (long i = 0; i < n; i++) {
            bad += memcmp(codes + i * rb, ecodes + i * rb, rb) != 0;
            badn += norms[i] != enorms[i];
        }
        CHECK(bad == 0 && badn == 0, "%s (%s): %ld code rows and %ld norms of %ld differ from the emulation", what,
              name[v], bad, badn, n);
    }
    variant("encode", "auto");
    CHECK(st == TQ_OK, "%s: cuda: %s", what, tq_error_msg());
    tq_cuda_free(dx);
    tq_cuda_free(dh);
    tq_cuda_free(dc.codes);
    tq_cuda_free(dc.norms);
    tq_cuda_quant_free(q);
    free(x); free(xh); free(norms); free(enorms); free(codes); free(ecodes);
    tq_rotation_free(rot);
}

/* The tensor-core encoders (k_encode_mma, fp16 input: dense turbo-mse, turbo-prod with either rotation) against the
 * emulation of lib/turbo.c on the same fp16-exact vectors; the variant encode=simt (the CUDA-core kernels on fp16
 * input) must match the emulation byte for byte. Tolerances from the kernels' arithmetic (lib/cuda/encode.cu), with
 * u = 2^-24 and the tensor cores' fp32 accumulation taken as one truncation (<= 2u relative of the running sum, whose
 * magnitude is at most the sum of |terms|) per product added; fp16 x fp16 products are exact in fp32:
 * - norms: the CPU's order and roundings: identical. Hadamard codes: tq_fwht's operations: identical.
 * - dense codes: y = Pi x from two passes (hi, lo) of d products each: accumulation <= 2d * 2u, the split of 16 Pi
 *   <= 4u, the hi + lo sum, 1/||x|| and the product by it a few u, all relative to sum_j |Pi_ij x_j| <= ||x||; the
 *   double reference rounds twice more: a code may differ only where y/||x|| is within (4d + 16) u of a threshold.
 * - turbo-prod signs: GPU S r = M z (M = S Pi^T, z = Pi x - nq c in the rotated domain) against the CPU's double sum
 *   of S_ij r_j over its float residual r = x - nq Pi^T c. Elementwise, the CPU's r is within
 *   dc = u ((d + 2) nq ||c|| + max|r|) of the exact residual (Pi^T c as a d-term chain, the product, the difference)
 *   and the GPU's z within dg = u ((4d + 16) ||x|| + 2 max|r|) of the exact z (as the codes, plus fmaf's rounding).
 *   The sign sum then errs by ||S_i||_1 dc + ||M_i||_1 dg (||M_i||_1 <= sqrt(d) ||M_i||, ||M_i|| <= 1.01 ||S_i||),
 *   plus three passes of d products (6d u) and the splits of z and M (12 u) relative to sum_k |M_ik z_k| <=
 *   ||M_i|| ||z||, plus Pi's deviation from orthogonality as stored in float ((2 sqrt(d) + 2) u ||S_i|| ||x||).
 *   A sign may differ only where |(S r)_i| is below that eps_i; their count must stay within 3x its expectation + 3
 *   (density of (S r)_i at 0: sqrt(d / 2 pi) / (||S_i|| ||r||), r's direction roughly uniform).
 * - gamma: ||z|| against the CPU's ||r||: within sqrt(d) (dc + dg) + (2d + 4) u ||r|| + (2 sqrt(d) + 2) u ||x||; the
 *   fp16 values may differ by one step only where the CPU's float lies within that of their midpoint.
 * On the dense path a vector whose codes differ has another residual: its signs and gamma are not compared. */
static void check_mma_codec(int method, int rot_kind, int d, int bits, long n)
{
    char what[160];
    snprintf(what, sizeof what, "%s %s d=%d bits=%d fp16 in, tensor cores", method == TQ_M_TURBO_MSE ? "turbo-mse"
             : "turbo-prod", rot_kind == TQ_ROT_DENSE ? "dense" : "hadamard", d, bits);
    tq_slice_id id = {1, 2, TQ_TENSOR_KEYS};
    tq_rotation *rot = NULL;
    float *S = NULL, c[256], t[256];
    int m = d, prod = method == TQ_M_TURBO_PROD;
    if (tq_rotation_make(&rot, rot_kind, d, 42, id, TQ_PURPOSE_ROTATION, 0)) {
        CHECK(0, "%s: rotation: %s", what, tq_error_msg());
        return;
    }
    if (prod && tq_gaussian_matrix(&S, m, d, 42, id, TQ_PURPOSE_QJL, 0)) {
        CHECK(0, "%s: S: %s", what, tq_error_msg());
        tq_rotation_free(rot);
        return;
    }
    codebook(d, bits, c, t);
    tq_cuda_qspec sp = {method, d, bits, rot_kind, m, 0, rot->m, rot->signs, c, t, S};
    size_t rb = tq_pack_row_bytes(d, bits), sb = tq_pack_row_bytes(m, 1);
    float *x = malloc(sizeof(float) * n * d);
    uint16_t *xh = malloc(2 * n * d);
    uint8_t *codes = calloc(n, rb), *signs = calloc(n, sb), *ecodes = calloc(n, rb), *esigns = calloc(n, sb);
    uint8_t *scodes = calloc(n, rb), *ssigns = calloc(n, sb);
    uint16_t *norms = calloc(n, 2), *rnorms = calloc(n, 2), *enorms = calloc(n, 2), *ernorms = calloc(n, 2);
    uint16_t *snorms = calloc(n, 2), *srnorms = calloc(n, 2);
    tq_cuda_quant *q = NULL;
    void *dh = NULL;
    tq_cuda_codes dc = {0};
    gen_vectors(x, n, d, 13 + d + bits);
    for (long i = 0; i < n * d; i++) x[i] = tq_half_to_float(xh[i] = tq_float_to_half(x[i]));
    int st = tq_cuda_quant_create(&q, &sp);
    if (!st) st = tq_cuda_alloc(&dh, 2 * n * d);
    if (!st) st = tq_cuda_alloc((void **)&dc.codes, n * rb);
    if (!st) st = tq_cuda_alloc((void **)&dc.signs, n * sb);
    if (!st) st = tq_cuda_alloc(&dc.norms, n * 2);
    if (!st) st = tq_cuda_alloc(&dc.rnorms, n * 2);
    if (!st) st = tq_cuda_upload(dh, xh, 2 * n * d);
    for (int v = 0; v < 2 && !st; v++) { /* simt, then auto (the tensor cores) */
        variant("encode", v ? "auto" : "simt");
        st = tq_cuda_copy(dc.codes, dh, n * rb); /* poison: stale bytes of the other variant must not pass */
        if (!st) st = tq_cuda_copy(dc.signs, dh, n * sb);
        if (!st) st = tq_cuda_encode(q, dh, 1, n, &dc);
        if (!st) st = tq_cuda_sync();
        if (!st) st = tq_cuda_download(v ? codes : scodes, dc.codes, n * rb);
        if (!st) st = tq_cuda_download(v ? norms : snorms, dc.norms, n * 2);
        if (!st && prod) st = tq_cuda_download(v ? signs : ssigns, dc.signs, n * sb);
        if (!st && prod) st = tq_cuda_download(v ? rnorms : srnorms, dc.rnorms, n * 2);
    }
    variant("encode", "auto");
    if (!st && !prod && rot_kind == TQ_ROT_DENSE && d <= 128) {
        /* the variant mt2 (k_encode_mma2: two m-tiles a warp) computes each vector as k_encode_mma: the same bytes */
        uint8_t *c2 = calloc(n, rb);
        uint16_t *n2 = calloc(n, 2);
        variant("encode", "mt2");
        st = c2 && n2 ? tq_cuda_copy(dc.codes, dh, n * rb) : TQ_ERR_NOMEM; /* poison codes and norms */
        if (!st) st = tq_cuda_copy(dc.norms, dh, n * 2);
        if (!st) st = tq_cuda_encode(q, dh, 1, n, &dc);
        if (!st) st = tq_cuda_sync();
        if (!st) st = tq_cuda_download(c2, dc.codes, n * rb);
        if (!st) st = tq_cuda_download(n2, dc.norms, n * 2);
        variant("encode", "auto");
        if (!st) {
            long diff = 0;
            for (long i = 0; i < n; i++) diff += memcmp(c2 + i * rb, codes + i * rb, rb) || n2[i] != norms[i];
            CHECK(diff == 0, "%s: variant mt2: %ld of %ld vectors differ from k_encode_mma's", what, diff, n);
        }
        free(c2);
        free(n2);
    }
    CHECK(st == TQ_OK, "%s: cuda: %s", what, tq_error_msg());
    if (st) goto done;

    const double u = ldexp(1.0, -24), fpk = sqrt(d / (2 * M_PI)), tol = (4.0 * d + 16) * u;
    double s1[256], s2[256]; /* ||S_i||_1, ||S_i||_2 */
    for (int i = 0; prod && i < m; i++) {
        s1[i] = s2[i] = 0;
        for (int j = 0; j < d; j++) {
            s1[i] += fabs(S[(size_t)i * d + j]);
            s2[i] += (double)S[(size_t)i * d + j] * S[(size_t)i * d + j];
        }
        s2[i] = sqrt(s2[i]);
    }
    long simt_bad = 0, bad_norms = 0, bad_rows = 0, code_diff = 0, code_far = 0, sign_diff = 0, sign_far = 0,
         rn_diff = 0, rn_far = 0;
    double code_bound = 0, sign_expect = 0;
    for (long i = 0; i < n; i++) {
        const float *xi = x + i * d;
        emu_encode(method, rot, bits, c, t, S, m, xi, d, ecodes + i * rb, enorms + i, esigns + i * sb, ernorms + i);
        simt_bad += memcmp(scodes + i * rb, ecodes + i * rb, rb) || snorms[i] != enorms[i] ||
                    (prod && (memcmp(ssigns + i * sb, esigns + i * sb, sb) || srnorms[i] != ernorms[i]));
        bad_norms += norms[i] != enorms[i];
        int same_row = !memcmp(codes + i * rb, ecodes + i * rb, rb);
        bad_rows += !same_row;
        float nrm = emu_norm(xi, d), inv = nrm > 0 ? 1.0f / nrm : 0.0f;
        if (rot_kind == TQ_ROT_DENSE) { /* codes against lib/rotation.c's double reference */
            float yr[256];
            tq_rotation_forward_ref(rot, xi, yr);
            for (int j = 0; j < d; j++) {
                yr[j] *= inv;
                int want = encode_lin(t, 1 << bits, yr[j]), got = (int)tq_pack_get(codes + i * rb, j, bits);
                if (want == got) continue;
                code_diff++;
                double near = 1e30;
                for (int k = 0; k < (1 << bits) - 1; k++) near = fmin(near, fabs((double)yr[j] - t[k]));
                if (near > tol || abs(want - got) != 1) code_far++;
            }
        }
        if (!prod) continue;
        if (!same_row) continue; /* another residual: nothing to compare (dense only: Hadamard rows are checked) */
        /* the emulation's residual, as emu_encode forms it */
        float y[256], xm[256], r[256];
        uint8_t cd[256];
        double nq = tq_half_to_float(enorms[i]), cn = 0, rmax = 0, rn = 0;
        for (int j = 0; j < d; j++) {
            cd[j] = (uint8_t)tq_pack_get(ecodes + i * rb, j, bits);
            y[j] = c[cd[j]];
            cn += (double)y[j] * y[j];
        }
        cn = sqrt(cn);
        emu_inverse(rot, y, xm);
        for (int j = 0; j < d; j++) {
            r[j] = xi[j] - xm[j] * (float)nq;
            rmax = fmax(rmax, fabs(r[j]));
            rn += (double)r[j] * r[j];
        }
        rn = sqrt(rn);
        double dcpu = u * ((d + 2) * nq * cn + rmax), dgpu = u * ((4.0 * d + 16) * nrm + 2 * rmax);
        double orth = (2 * sqrt(d) + 2) * u;
        for (int k = 0; k < m; k++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += (double)S[(size_t)k * d + j] * r[j];
            double eps = s1[k] * dcpu + 1.01 * sqrt(d) * s2[k] * dgpu +
                         1.01 * (6.0 * d + 16) * u * s2[k] * (rn + sqrt(d) * (dcpu + dgpu)) + orth * s2[k] * nrm;
            if (rn > 0) sign_expect += 2 * eps * fpk / (s2[k] * rn);
            if (tq_pack_get(signs + i * sb, k, 1) == tq_pack_get(esigns + i * sb, k, 1)) continue;
            sign_diff++;
            if (fabs(s) > eps) sign_far++;
        }
        if (rnorms[i] != ernorms[i]) {
            rn_diff++;
            double ge = emu_norm(r, d), tolg = sqrt(d) * (dcpu + dgpu) + (2.0 * d + 4) * u * rn + orth * nrm;
            double mid = 0.5 * ((double)tq_half_to_float(rnorms[i]) + tq_half_to_float(ernorms[i]));
            if (abs((int)rnorms[i] - (int)ernorms[i]) != 1 || fabs(ge - mid) > tolg) rn_far++;
        }
    }
    code_bound = (double)n * d * ((1 << bits) - 1) * 2 * tol * fpk;
    CHECK(simt_bad == 0, "%s: variant simt: %ld of %ld vectors differ from the emulation", what, simt_bad, n);
    CHECK(bad_norms == 0, "%s: %ld of %ld norms differ from the emulation", what, bad_norms, n);
    if (rot_kind == TQ_ROT_HADAMARD)
        CHECK(bad_rows == 0, "%s: %ld of %ld code rows differ from the emulation", what, bad_rows, n);
    else {
        CHECK(code_far == 0, "%s: %ld codes differ from the double reference farther than %.3g from a threshold", what,
              code_far, tol);
        CHECK(code_diff <= code_bound, "%s: %ld codes differ from the double reference, bound %.1f", what, code_diff,
              code_bound);
    }
    if (prod) {
        CHECK(sign_far == 0, "%s: %ld signs differ from the emulation where |(S r)_i| exceeds the bound", what,
              sign_far);
        CHECK(sign_diff <= 3 * sign_expect + 3, "%s: %ld signs differ from the emulation, bound %.1f", what,
              sign_diff, 3 * sign_expect + 3);
        CHECK(rn_far == 0, "%s: %ld residual norms differ from the emulation beyond float rounding", what, rn_far);
    }
    fprintf(stderr, "  %s: %ld/%ld code rows differ (%ld codes, bound %.1f); of the other rows %ld signs (bound %.1f) "
            "and %ld rnorms\n", what, bad_rows, n, code_diff, code_bound, sign_diff, 3 * sign_expect + 3, rn_diff);
done:
    tq_cuda_free(dh);
    tq_cuda_free(dc.codes);
    tq_cuda_free(dc.signs);
    tq_cuda_free(dc.norms);
    tq_cuda_free(dc.rnorms);
    tq_cuda_quant_free(q);
    free(x); free(xh); free(codes); free(signs); free(ecodes); free(esigns); free(scodes); free(ssigns);
    free(norms); free(rnorms); free(enorms); free(ernorms); free(snorms); free(srnorms);
    free(S);
    tq_rotation_free(rot);
}

/* The queries' scale: 1 in the suite; the diagnostic run (TQ_CUDA_DIAG) raises it to see how the tensor-core paths'
 * fp16 query error grows with the scores' magnitude (a model's attention logits reach tens of nats). */
static double q_scale = 1.0;

/* Fused attention on codes the GPU encoded, against double-precision attention over the same codes decoded in
 * double. Float scores are chains of d products of magnitude <= |q| |k|, the softmax sums L terms and exp2f is
 * within 2 ulp: the relative output error is of order (d + L) 2^-24 ~ 1e-4 for L ~ 1000, so 1e-3 holds with margin. */
static void check_attention_w(int key_method, int rot_kind, int d, int B, int Hq, int Hkv, long L, int kbits,
                              int vbits, long window)
{
    char what[192];
    const char *mode = cur_attn[0] ? cur_attn : NULL;
    snprintf(what, sizeof what, "attention %s %s d=%d B=%d Hq=%d Hkv=%d L=%ld kbits=%d vbits=%d%s%s%s",
             key_method == TQ_M_TURBO_PROD ? "turbo-prod" : "turbo-mse", rot_kind == TQ_ROT_DENSE ? "dense" : "hadamard",
             d, B, Hq, Hkv, L, kbits, vbits, window ? " window" : "", mode ? " " : "", mode ? mode : "");
    if (window) snprintf(what + strlen(what), sizeof what - strlen(what), " W=%ld", window);
    const long t_lo = window > 0 && window < L ? L - window : 0; /* the reference attends tokens t_lo .. L-1 */
    size_t nr = rot_kind == TQ_ROT_DENSE ? (size_t)d * d : (size_t)d;
    float *krot = malloc(sizeof(float) * nr * Hkv), *vrot = malloc(sizeof(float) * nr * Hkv);
    float *kS = malloc(sizeof(float) * (size_t)d * d * Hkv);
    float kc[16], kt[16], vc[16], vt[16];
    codebook(d, kbits, kc, kt);
    codebook(d, vbits, vc, vt);
    tq_rotation *kr[16] = {0}, *vr[16] = {0};
    float *S[16] = {0};
    tq_cuda_quant *kq[16] = {0}, *vq[16] = {0};
    int st = TQ_OK;
    for (int g = 0; g < Hkv && !st; g++) {
        tq_slice_id ik = {0, g, TQ_TENSOR_KEYS}, iv = {0, g, TQ_TENSOR_VALUES};
        st = tq_rotation_make(&kr[g], rot_kind, d, 9, ik, TQ_PURPOSE_ROTATION, 0);
        if (!st) st = tq_rotation_make(&vr[g], rot_kind, d, 9, iv, TQ_PURPOSE_ROTATION, 0);
        if (!st) st = tq_gaussian_matrix(&S[g], d, d, 9, ik, TQ_PURPOSE_QJL, 0);
        if (st) break;
        memcpy(krot + g * nr, rot_kind == TQ_ROT_DENSE ? kr[g]->m : kr[g]->signs, sizeof(float) * nr);
        memcpy(vrot + g * nr, rot_kind == TQ_ROT_DENSE ? vr[g]->m : vr[g]->signs, sizeof(float) * nr);
        memcpy(kS + (size_t)g * d * d, S[g], sizeof(float) * d * d);
        tq_cuda_qspec ks = {key_method, d, kbits, rot_kind, d, 0, kr[g]->m, kr[g]->signs, kc, kt, S[g]};
        tq_cuda_qspec vs = {TQ_M_TURBO_MSE, d, vbits, rot_kind, d, 0, vr[g]->m, vr[g]->signs, vc, vt, NULL};
        st = tq_cuda_quant_create(&kq[g], &ks);
        if (!st) st = tq_cuda_quant_create(&vq[g], &vs);
    }
    long nvec = (long)B * Hkv * L;
    size_t rk = tq_pack_row_bytes(d, kbits), rv = tq_pack_row_bytes(d, vbits), rs = (size_t)d / 8;
    float *k = malloc(sizeof(float) * nvec * d), *v = malloc(sizeof(float) * nvec * d);
    float *q = malloc(sizeof(float) * (size_t)B * Hq * d), *o = malloc(sizeof(float) * (size_t)B * Hq * d);
    uint8_t *kcodes = malloc(nvec * rk), *vcodes = malloc(nvec * rv), *ksigns = malloc(nvec * rs);
    uint16_t *kn = malloc(nvec * 2), *krn = malloc(nvec * 2), *vn = malloc(nvec * 2);
    tq_rng r;
    tq_rng_derive(&r, 77, -1, -1, TQ_PURPOSE_TEST);
    /* keys with a shared direction so attention is peaked rather than uniform (a stricter test of the softmax) */
    for (long i = 0; i < nvec * d; i++) {
        k[i] = (float)(tq_rng_normal(&r) + ((i % d) < 4 ? 2.0 : 0.0));
        v[i] = (float)tq_rng_normal(&r);
    }
    for (long i = 0; i < (long)B * Hq * d; i++)
        q[i] = (float)(q_scale * (tq_rng_normal(&r) + ((i % d) < 4 ? 1.5 : 0.0)));
    void *dk = NULL, *dv = NULL, *dq = NULL, *dout = NULL;
    tq_cuda_kv kv = {0};
    tq_cuda_attn *at = NULL;
    tq_cuda_attn_spec as = {d, Hkv, key_method, kbits, vbits, rot_kind, krot, vrot, kc, vc, kS};
    if (!st) st = tq_cuda_alloc(&dk, sizeof(float) * nvec * d);
    if (!st) st = tq_cuda_alloc(&dv, sizeof(float) * nvec * d);
    if (!st) st = tq_cuda_alloc(&dq, sizeof(float) * B * Hq * d);
    if (!st) st = tq_cuda_alloc(&dout, sizeof(float) * B * Hq * d);
    if (!st) st = tq_cuda_alloc((void **)&kv.k_codes, nvec * rk);
    if (!st) st = tq_cuda_alloc((void **)&kv.k_norms, nvec * 2);
    if (!st) st = tq_cuda_alloc((void **)&kv.k_signs, nvec * rs);
    if (!st) st = tq_cuda_alloc((void **)&kv.k_rnorms, nvec * 2);
    if (!st) st = tq_cuda_alloc((void **)&kv.v_codes, nvec * rv);
    if (!st) st = tq_cuda_alloc((void **)&kv.v_norms, nvec * 2);
    if (!st) st = tq_cuda_upload(dk, k, sizeof(float) * nvec * d);
    if (!st) st = tq_cuda_upload(dv, v, sizeof(float) * nvec * d);
    if (!st) st = tq_cuda_upload(dq, q, sizeof(float) * B * Hq * d);
    for (int b = 0; b < B && !st; b++)
        for (int g = 0; g < Hkv && !st; g++) {
            long row = ((long)b * Hkv + g) * L;
            tq_cuda_codes ck = {(uint8_t *)kv.k_codes + row * rk, (uint16_t *)kv.k_norms + row,
                                (uint8_t *)kv.k_signs + row * rs, (uint16_t *)kv.k_rnorms + row};
            tq_cuda_codes cv = {(uint8_t *)kv.v_codes + row * rv, (uint16_t *)kv.v_norms + row, NULL, NULL};
            st = tq_cuda_encode(kq[g], (float *)dk + row * d, 0, L, &ck);
            if (!st) st = tq_cuda_encode(vq[g], (float *)dv + row * d, 0, L, &cv);
        }
    if (!st) st = tq_cuda_attn_create(&at, &as);
    if (!st) st = window ? tq_cuda_attn_decode_window(at, B, Hq, L, window, dq, &kv, dout)
                         : tq_cuda_attn_decode(at, B, Hq, L, dq, &kv, dout);
    if (!st) st = tq_cuda_sync();
    if (!st) st = tq_cuda_download(o, dout, sizeof(float) * B * Hq * d);
    if (!st) st = tq_cuda_download(kcodes, kv.k_codes, nvec * rk);
    if (!st) st = tq_cuda_download(vcodes, kv.v_codes, nvec * rv);
    if (!st) st = tq_cuda_download(ksigns, kv.k_signs, nvec * rs);
    if (!st) st = tq_cuda_download(kn, kv.k_norms, nvec * 2);
    if (!st) st = tq_cuda_download(krn, kv.k_rnorms, nvec * 2);
    if (!st) st = tq_cuda_download(vn, kv.v_norms, nvec * 2);
    CHECK(st == TQ_OK, "%s: cuda: %s", what, tq_error_msg());
    if (!st) {
        double *kh = malloc(sizeof(double) * L * d), *vh = malloc(sizeof(double) * L * d), *p = malloc(sizeof(double) * L);
        double worst = 0;
        int G = Hq / Hkv;
        for (int b = 0; b < B; b++)
            for (int g = 0; g < Hkv; g++) {
                long row = ((long)b * Hkv + g) * L;
                for (long tt = 0; tt < L; tt++) {
                    ref_decode(key_method, kr[g], kbits, kc, S[g], d, d, kcodes + (row + tt) * rk, kn[row + tt],
                               ksigns + (row + tt) * rs, krn[row + tt], kh + tt * d);
                    ref_decode(TQ_M_TURBO_MSE, vr[g], vbits, vc, NULL, d, d, vcodes + (row + tt) * rv, vn[row + tt],
                               NULL, 0, vh + tt * d);
                }
                for (int hh = 0; hh < G; hh++) {
                    const float *qq = q + ((size_t)b * Hq + g * G + hh) * d;
                    double mx = -1e300, den = 0, out[256] = {0}, on = 0, en = 0;
                    for (long tt = t_lo; tt < L; tt++) {
                        double s = 0;
                        for (int j = 0; j < d; j++) s += qq[j] * kh[tt * d + j];
                        p[tt] = s / sqrt((double)d);
                        mx = fmax(mx, p[tt]);
                    }
                    for (long tt = t_lo; tt < L; tt++) {
                        p[tt] = exp(p[tt] - mx);
                        den += p[tt];
                        for (int j = 0; j < d; j++) out[j] += p[tt] * vh[tt * d + j];
                    }
                    const float *og = o + ((size_t)b * Hq + g * G + hh) * d;
                    for (int j = 0; j < d; j++) {
                        out[j] /= den;
                        on += out[j] * out[j];
                        en += (og[j] - out[j]) * (og[j] - out[j]);
                    }
                    worst = fmax(worst, sqrt(en / on));
                }
            }
        if (q_scale == 1.0) CHECK(worst <= 1e-3, "%s: relative error %.3g against the double reference", what, worst);
        fprintf(stderr, "  %s%s: max relative error %.2e\n", what, q_scale == 1.0 ? "" : " (q scaled)", worst);
        free(kh); free(vh); free(p);
    }
    tq_cuda_attn_free(at);
    tq_cuda_free(dk); tq_cuda_free(dv); tq_cuda_free(dq); tq_cuda_free(dout);
    tq_cuda_free((void *)kv.k_codes); tq_cuda_free((void *)kv.k_norms); tq_cuda_free((void *)kv.k_signs);
    tq_cuda_free((void *)kv.k_rnorms); tq_cuda_free((void *)kv.v_codes); tq_cuda_free((void *)kv.v_norms);
    for (int g = 0; g < 16; g++) {
        tq_rotation_free(kr[g]); tq_rotation_free(vr[g]); free(S[g]);
        tq_cuda_quant_free(kq[g]); tq_cuda_quant_free(vq[g]);
    }
    free(krot); free(vrot); free(kS); free(k); free(v); free(q); free(o);
    free(kcodes); free(vcodes); free(ksigns); free(kn); free(krn); free(vn);
}

static void check_attention(int key_method, int rot_kind, int d, int B, int Hq, int Hkv, long L, int kbits, int vbits)
{
    check_attention_w(key_method, rot_kind, d, B, Hq, Hkv, L, kbits, vbits, 0);
}

/* The fp16 baseline kernel against double attention over the same half-rounded keys and values. */
static void check_fp16(int d, int B, int Hq, int Hkv, long L)
{
    long nvec = (long)B * Hkv * L;
    uint16_t *k = malloc(nvec * d * 2), *v = malloc(nvec * d * 2);
    float *q = malloc(sizeof(float) * B * Hq * d), *o = malloc(sizeof(float) * B * Hq * d);
    tq_rng r;
    tq_rng_derive(&r, 78, -1, -1, TQ_PURPOSE_TEST);
    for (long i = 0; i < nvec * d; i++) {
        k[i] = tq_float_to_half((float)(tq_rng_normal(&r) + ((i % d) < 4 ? 2.0 : 0.0)));
        v[i] = tq_float_to_half((float)tq_rng_normal(&r));
    }
    for (long i = 0; i < (long)B * Hq * d; i++) q[i] = (float)(tq_rng_normal(&r) + ((i % d) < 4 ? 1.5 : 0.0));
    void *dk = NULL, *dv = NULL, *dq = NULL, *dout = NULL;
    int st = tq_cuda_alloc(&dk, nvec * d * 2);
    if (!st) st = tq_cuda_alloc(&dv, nvec * d * 2);
    if (!st) st = tq_cuda_alloc(&dq, sizeof(float) * B * Hq * d);
    if (!st) st = tq_cuda_alloc(&dout, sizeof(float) * B * Hq * d);
    if (!st) st = tq_cuda_upload(dk, k, nvec * d * 2);
    if (!st) st = tq_cuda_upload(dv, v, nvec * d * 2);
    if (!st) st = tq_cuda_upload(dq, q, sizeof(float) * B * Hq * d);
    if (!st) st = tq_cuda_attn_fp16(B, Hq, Hkv, L, d, dq, dk, dv, dout);
    if (!st) st = tq_cuda_sync();
    if (!st) st = tq_cuda_download(o, dout, sizeof(float) * B * Hq * d);
    CHECK(st == TQ_OK, "fp16 attention: cuda: %s", tq_error_msg());
    if (!st) {
        int G = Hq / Hkv;
        double worst = 0, *p = malloc(sizeof(double) * L);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < Hq; h++) {
                long row = ((long)b * Hkv + h / G) * L;
                const float *qq = q + ((size_t)b * Hq + h) * d;
                double mx = -1e300, den = 0, out[256] = {0}, on = 0, en = 0;
                for (long tt = 0; tt < L; tt++) {
                    double s = 0;
                    for (int j = 0; j < d; j++) s += qq[j] * (double)tq_half_to_float(k[(row + tt) * d + j]);
                    p[tt] = s / sqrt((double)d);
                    mx = fmax(mx, p[tt]);
                }
                for (long tt = 0; tt < L; tt++) {
                    p[tt] = exp(p[tt] - mx);
                    den += p[tt];
                    for (int j = 0; j < d; j++) out[j] += p[tt] * tq_half_to_float(v[(row + tt) * d + j]);
                }
                for (int j = 0; j < d; j++) {
                    out[j] /= den;
                    on += out[j] * out[j];
                    double e = o[((size_t)b * Hq + h) * d + j] - out[j];
                    en += e * e;
                }
                worst = fmax(worst, sqrt(en / on));
            }
        /* same derivation as the fused kernel's bound */
        CHECK(worst <= 1e-3, "fp16 attention d=%d: relative error %.3g", d, worst);
        fprintf(stderr, "  fp16 attention d=%d B=%d Hq=%d Hkv=%d L=%ld: max relative error %.2e\n", d, B, Hq, Hkv, L,
                worst);
        free(p);
    }
    tq_cuda_free(dk); tq_cuda_free(dv); tq_cuda_free(dq); tq_cuda_free(dout);
    free(k); free(v); free(q); free(o);
}

/* tq_cuda_quantize (lib/cuda_quant.c) against lib/turbo.c's encode_ref through the format table: same sections,
 * same bytes on the Hadamard path. */
static void check_quantize_wrapper(int method, int bits, int d, int n)
{
    const tq_format *f = tq_format_of(method);
    if (!f || !f->encode_ref) {
        SKIP("tq_cuda_quantize: no CPU format row in this build");
        return;
    }
    tq_qparams p;
    tq_qparams_default(&p, method, bits);
    p.rotation = TQ_ROT_HADAMARD;
    p.seed = 5;
    tq_slice_id id = {3, 1, TQ_TENSOR_VALUES};
    float *x = malloc(sizeof(float) * n * d);
    gen_vectors(x, n, d, 99);
    tq_codes g, r;
    memset(&g, 0, sizeof g);
    memset(&r, 0, sizeof r);
    int sg = tq_cuda_quantize(&p, id, x, n, d, &g), sr = f->encode_ref(&p, id, x, n, d, &r);
    CHECK(sg == TQ_OK && sr == TQ_OK, "tq_cuda_quantize %s: %s", f->name, tq_error_msg());
    if (!sg && !sr) {
        int same = g.nsec == r.nsec;
        for (int k = 0; same && k < r.nsec; k++) {
            const tq_section *a = tq_codes_find(&g, r.sec[k].name);
            same = a && a->type == r.sec[k].type && a->count == r.sec[k].count &&
                   !memcmp(a->data, r.sec[k].data, tq_section_bytes(a));
        }
        CHECK(same, "tq_cuda_quantize %s %d bits d=%d: sections differ from encode_ref", f->name, bits, d);
        CHECK(tq_codes_payload_bytes(&g) == tq_codes_payload_bytes(&r), "payload sizes differ");
    }
    tq_codes_free(&g);
    tq_codes_free(&r);
    free(x);
}

int main(void)
{
    char name[256];
    if (tq_cuda_device(name, sizeof name, NULL, NULL) != TQ_OK) {
        char why[300];
        snprintf(why, sizeof why, "CUDA tests: %s", tq_error_msg());
        SKIP(why);
        TQ_TEST_END();
    }
    fprintf(stderr, "  device: %s\n", name);
    if (getenv("TQ_CUDA_QUICK")) { /* small shapes for compute-sanitizer (memcheck, racecheck), every kernel once */
        check_codec(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 3, 100);
        check_had_inputs(128, 3, 101);
        check_codec(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 64, 2, 50);
        check_codec(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 2, 50);
        check_codec(TQ_M_QJL, TQ_ROT_HADAMARD, 64, 1, 50);
        /* k_encode_mma: dense turbo-mse, Hadamard and dense turbo-prod (n = 50: a partial 16-vector tile) */
        check_mma_codec(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 3, 50);
        check_mma_codec(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 2, 50);
        check_mma_codec(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 64, 2, 50);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 8, 2, 300, 2, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 64, 2, 3, 3, 100, 3, 2);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 300, 3, 3); /* the tensor-core kernel */
        /* k_attn_mma's other instantiations: 4-bit tables (16 copies), turbo-prod's sign mma, 2 and 1 heads a block */
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 300, 4, 4);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 4, 2, 300, 2, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 2, 2, 300, 3, 3);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 16, 2, 300, 2, 3); /* 8 heads a block */
        variant("attn", "mma-t"); /* the k_attn_mma template in place of k_attn_mma33 */
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 300, 3, 3);
        variant("attn", "t64"); /* the same shape through the 64-token-tile CUDA-core kernel */
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 300, 3, 3);
        check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 500, 3, 3, 200); /* a window */
        variant("attn", "fast"); /* round 2: the fused small-batch path, d = 64 / 256 on the tensor cores */
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 300, 3, 3);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 16, 2, 300, 2, 3);
        check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 500, 3, 3, 200);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 64, 1, 9, 3, 300, 3, 3);  /* d = 64, 3-head groups */
        check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 256, 1, 4, 1, 700, 3, 3, 512); /* d = 256, window */
        variant("attn", "auto");
        check_fp16(128, 1, 4, 2, 200);
        tq_cuda_release();
        TQ_TEST_END();
    }
    /* A stub build must have said "built without CUDA"; a real one reaches here. */
    for (int di = 0; di < 3; di++) {
        int d = 64 << di;
        for (int bits = 1; bits <= 4; bits++) {
            check_codec(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, d, bits, 3000);
            check_codec(TQ_M_TURBO_MSE, TQ_ROT_DENSE, d, bits, 1000);
        }
        for (int bits = 1; bits <= 4; bits++) check_had_inputs(d, bits, 2001);
        for (int bits = 1; bits <= 3; bits++) check_codec(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, d, bits, 1000);
        check_codec(TQ_M_TURBO_PROD, TQ_ROT_DENSE, d, 2, 500);
        check_codec(TQ_M_QJL, TQ_ROT_HADAMARD, d, 1, 1000);
    }
    /* the tensor-core encoders (fp16 input) at every instantiated width; n = 1001: the last 16-vector tile has 9 */
    for (int di = 0; di < 3; di++) {
        int d = 64 << di;
        for (int bits = 1; bits <= 4; bits++) check_mma_codec(TQ_M_TURBO_MSE, TQ_ROT_DENSE, d, bits, 1001);
        for (int bits = 1; bits <= 3; bits++) check_mma_codec(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, d, bits, 1001);
        for (int bits = 1; bits <= 3; bits += 2) check_mma_codec(TQ_M_TURBO_PROD, TQ_ROT_DENSE, d, bits, 501);
    }
    check_quantize_wrapper(TQ_M_TURBO_MSE, 3, 128, 700);
    check_quantize_wrapper(TQ_M_TURBO_PROD, 4, 256, 300);
    check_quantize_wrapper(TQ_M_QJL, 1, 64, 300);
    /* GQA 4:1 (the sub-group path of 4 heads) and MHA (1 head per kv head); L not a multiple of any tile */
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 2, 8, 2, 1000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 2, 8, 2, 1000, 2, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 8, 2, 777, 2, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 64, 1, 6, 3, 513, 4, 2);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 256, 1, 8, 1, 300, 3, 4);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 64, 3, 2, 2, 33, 1, 1);
    /* d = 128 turbo-mse with 4-head groups runs k_attn_codes_t64: every key/value width, two sub-groups (G = 8) */
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 1, 16, 2, 2049, 4, 1);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 1, 1500, 2, 4);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 1, 700, 1, 2);
    /* 3-bit keys and values at d = 128 in 4-head groups run k_attn_mma (tensor cores, fp16 operands): two batches, two
     * sub-groups, L not a multiple of its 64-token tile, both rotations; then the same shapes through t64 */
    for (int v = 0; v < 2; v++) {
        if (v) variant("attn", "t64");
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 2, 16, 2, 4099, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 1, 8, 2, 777, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 1, 65, 3, 3);
    }
    variant("attn", "auto");
    /* k_attn_mma's other instantiations (d = 128): turbo-mse 2/2 and 4/4 bits, turbo-prod 1+1/2, 2+1/3, 3+1/4 (the
     * QJL term as a second mma), 2 heads a block (G = 2, 6) and 1 (MHA, G = 3); then the same shapes through the fp32
     * kernels (variant attn=t64: k_attn_codes_t64 / k_attn_codes). L not a multiple of 64 everywhere. */
    for (int v = 0; v < 2; v++) {
        if (v) variant("attn", "t64");
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 2, 2);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 2, 8, 2, 777, 4, 4);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 1, 2);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 2, 16, 2, 4099, 2, 3);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 3, 4);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 2, 1000, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 12, 2, 513, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 2, 2, 1000, 3, 3);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 4, 2, 777, 2, 3);
        check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 6, 2, 300, 2, 3);
    }
    variant("attn", "auto");
    /* 8 heads a block (G = 8, and G = 16 as two blocks), 3-bit turbo-mse and turbo-prod */
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 1, 16, 2, 777, 3, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 32, 2, 1000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 2, 16, 2, 1000, 2, 3);
    variant("attn", "mma-t"); /* the template's 3-bit turbo-mse 4-head form, which k_attn_mma33 replaces */
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 2, 8, 2, 4099, 3, 3);
    variant("attn", "auto");
    /* Round 2 (variant "fast"): the fused small-batch path (the split kernel merges its warps, the last block of a
     * head group merges the group's states and rotates back) on the tensor-core instantiations at B <= 2 (every
     * width, turbo-prod, 8-, 4-, 2-, 1-head blocks, both rotations); the fused path forced at a batch where "fast"
     * would not take it (B = 16, 8 kv heads); one block merging many states (one head group: 79 splits at L = 20000) */
    variant("attn", "fast");
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 2, 16, 2, 4099, 3, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 1, 8, 2, 777, 3, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 1, 65, 3, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 2, 2);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 128, 2, 8, 2, 777, 4, 4);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 1, 2);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 2, 16, 2, 4099, 2, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 3, 4);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 2, 2, 1000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 4, 2, 777, 2, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 1, 6, 2, 300, 2, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 32, 2, 1000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 2, 16, 2, 1000, 2, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 1, 20000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 4, 1, 20000, 2, 3);
    /* B = 16, 8 kv heads: "fast" takes the split path, its kernels preparing their own queries (no k_prep) */
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 16, 32, 8, 3000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 16, 32, 8, 3000, 2, 3);
    variant("attn", "fused");
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 16, 32, 8, 600, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, 128, 16, 32, 8, 600, 2, 3);
    /* fast-r2: the fused path with k_prep in front (the split kernel waits for its queries) instead of preparing them
     * itself, and separate key and value pair tables where "fast" shares one (d = 64 / 256 here, 3/3 bits) */
    variant("attn", "fast-r2");
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 8, 2, 1000, 3, 3);
    check_attention(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 16, 2, 1000, 2, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 64, 1, 9, 3, 1001, 3, 3);
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 256, 2, 4, 1, 1001, 3, 3);   /* fused */
    check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 256, 16, 8, 2, 3000, 3, 3);  /* 32 groups: the split path */
    variant("attn", "auto");
    /* sliding windows (the last W of L tokens; the rows before the window hold other data the kernel must skip):
     * Gemma 3's MQA 4:1 at d = 256, a d = 128 tensor-core shape fused and unfused, SmolLM2's GQA 3:1 at d = 64 */
    for (int v = 0; v < 2; v++) { /* the selection before round 2, then "fast" */
        variant("attn", v ? "fast" : "auto");
        check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 256, 2, 4, 1, 1500, 3, 3, 512);
        check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 2, 8, 2, 2000, 3, 3, 700);
        check_attention_w(TQ_M_TURBO_PROD, TQ_ROT_DENSE, 128, 1, 8, 2, 1000, 2, 3, 333);
        check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 64, 1, 9, 3, 1200, 3, 3, 100);
    }
    variant("attn", "auto");
    /* the tensor-core kernel at d = 64 (3-, 4- and 1-head groups) and d = 256 (4- and 1-head groups), 3-bit turbo-mse,
     * fused and unfused; L not a multiple of the tile, odd rows of 24 bytes at d = 64 (8-byte copies) */
    for (int v = 0; v < 2; v++) {
        variant("attn", v ? "unfused" : "fast");
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 64, 2, 9, 3, 1001, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 64, 1, 8, 2, 777, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 64, 1, 3, 3, 301, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 256, 2, 4, 1, 1001, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 256, 1, 2, 2, 555, 3, 3);
        /* several tiles per warp at d = 256 and 64: the fused plan gives each warp one 64-token tile until the splits
         * outgrow a wave (here B = 2, L = 40000 at d = 256: 63 splits of 640 tokens, 2-3 tiles a warp), so the online
         * softmax's rescale of a warp's running sums — once missing half of d = 256's m-tiles — ran only unfused */
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 256, 2, 4, 1, 40000, 3, 3);
        check_attention(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 64, 2, 9, 3, 40000, 3, 3);
    }
    /* the model loop's calls (lib/cuda/model.cu): one kv head a call, B = 1, a cache that grows from one row, Gemma
     * 3's window of 8 (the synthetic model of test_cuda_model) or none; SmolLM2's 3-head and Gemma's 4-head groups */
    for (int v = 0; v < 2; v++) {
        variant("attn", v ? "fast" : "auto");
        const long Ls[] = {1, 2, 7, 9, 40, 63, 65, 130};
        for (int i = 0; i < 8; i++)
            for (int rot = 0; rot < 2; rot++) {
                const int rk = rot ? TQ_ROT_DENSE : TQ_ROT_HADAMARD;
                check_attention_w(TQ_M_TURBO_MSE, rk, 256, 1, 4, 1, Ls[i], 3, 3, Ls[i] % 2 ? 8 : 0);
                check_attention_w(TQ_M_TURBO_MSE, rk, 64, 1, 3, 1, Ls[i], 3, 3, 0);
            }
    }
    if (getenv("TQ_CUDA_DIAG")) { /* the fp16-operand error against the scores' scale, fast path and fp32 kernels */
        for (int v = 0; v < 2; v++) {
            variant("attn", v ? "fast" : "auto");
            for (int sc = 0; sc < 3; sc++) {
                q_scale = sc == 0 ? 2.0 : sc == 1 ? 4.0 : 8.0;
                check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 256, 1, 4, 1, 40, 3, 3, 8);
                check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_DENSE, 64, 1, 3, 1, 40, 3, 3, 0);
                check_attention_w(TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, 128, 1, 4, 1, 1000, 3, 3, 0);
            }
            q_scale = 1.0;
        }
    }
    variant("attn", "auto");
    check_variant_errors();
    check_fp16(128, 2, 8, 2, 1000);
    check_fp16(64, 1, 3, 3, 100);
    tq_cuda_release();
    TQ_TEST_END();
}
