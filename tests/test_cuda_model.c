/* test_cuda_model.c: the GPU model loop (lib/cuda/model.cu, lib/kvquant.h's *_cuda passes) against the CPU forward
 * pass (lib/model.c) and the CPU closed loop, on synthetic GGUFs this test writes — a llama (d = 64, GQA 3:1) and a
 * gemma3 (d = 256, MQA 4:1, 5 sliding-window layers then a global one, QK-norm, sandwich norms, GeGLU), random
 * weights, tied embeddings — and on the real models when they are present. Without CUDA or without a GPU it still
 * checks the CPU side (the files load and run, the GPU loop's refusals, the fp16 sensitivity it derives its
 * tolerance from) and prints one SKIP for the GPU part. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/tq_cuda.h"
#include "fp16.h"
#include "gguf.h"
#include "kvquant.h"
#include "model.h"
#include "rng.h"
#include "tokenizer.h"
#include "tq.h"
#include "tq_test.h"
#include "vocab.h"

/* ---------------------------------------------------------------- a GGUF writer (version 3, F32 / F16 tensors) */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t k)
{
    if (b->n + k > b->cap) {
        b->cap = (b->n + k) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, k);
    b->n += k;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); } /* little-endian hosts only, as tq's reader */
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void kv_u32(buf *b, const char *k, uint32_t v) { str(b, k); u32(b, 4); u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { str(b, k); u32(b, 6); put(b, &v, 4); }
static void kv_str(buf *b, const char *k, const char *v) { str(b, k); u32(b, 8); str(b, v); }

typedef struct {
    const char *arch;
    int n_layers, E, F, H, KV, D, V, window;
    float eps, base;
} shape;

static const shape LLAMA = {"llama", 3, 128, 256, 6, 2, 64, 160, 0, 1e-5f, 100000.0f};
static const shape GEMMA3 = {"gemma3", 6, 128, 256, 4, 1, 256, 160, 8, 1e-6f, 1e6f};

#define MAX_T 96
typedef struct {
    char name[64];
    int rows, cols; /* rows 0: a vector */
    float *x;
} tensor;

/* Random weights: matrices N(0, 1/in) (unit-variance outputs), norm weights 1 + 0.1 N(0, 1), embeddings N(0, 4/E):
 * the tied head then gives logits of standard deviation ~2, a next-token distribution neither flat nor one-hot, so
 * KL and perplexity respond to the cache (with N(0, 1) embeddings the logits' spread of ~11 made every KL ~1e-9). */
static int make_tensors(const shape *s, uint64_t seed, tensor *t)
{
    tq_rng r;
    tq_rng_seed(&r, seed, 1);
    int n = 0, QD = s->H * s->D, KD = s->KV * s->D, gemma = !strcmp(s->arch, "gemma3");
#define ADD(nm, R, C, norm) do { \
        tensor *x_ = &t[n++]; \
        snprintf(x_->name, sizeof x_->name, "%s", nm); \
        x_->rows = R; x_->cols = C; \
        size_t k_ = (size_t)(R ? R : 1) * C; \
        x_->x = malloc(k_ * sizeof(float)); \
        for (size_t i_ = 0; i_ < k_; i_++) { \
            double z_ = tq_rng_normal(&r); \
            x_->x[i_] = (float)(norm ? 1.0 + 0.1 * z_ : strcmp(nm, "token_embd.weight") ? z_ / sqrt(C) \
                                                                                  : 2.0 * z_ / sqrt(C)); \
        } \
    } while (0)
    ADD("token_embd.weight", s->V, s->E, 0);
    ADD("output_norm.weight", 0, s->E, 1);
    for (int l = 0; l < s->n_layers; l++) {
        char nm[64];
#define L_(suffix, R, C, norm) snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix); ADD(nm, R, C, norm)
        L_("attn_norm.weight", 0, s->E, 1);
        L_("attn_q.weight", QD, s->E, 0);
        L_("attn_k.weight", KD, s->E, 0);
        L_("attn_v.weight", KD, s->E, 0);
        L_("attn_output.weight", s->E, QD, 0);
        L_("ffn_norm.weight", 0, s->E, 1);
        L_("ffn_gate.weight", s->F, s->E, 0);
        L_("ffn_up.weight", s->F, s->E, 0);
        L_("ffn_down.weight", s->E, s->F, 0);
        if (gemma) {
            L_("attn_q_norm.weight", 0, s->D, 1);
            L_("attn_k_norm.weight", 0, s->D, 1);
            L_("post_attention_norm.weight", 0, s->E, 1);
            L_("post_ffw_norm.weight", 0, s->E, 1);
        }
#undef L_
    }
#undef ADD
    return n;
}

/* Write the model; f16: matrices stored as F16 (ggml type 1), norms F32. */
static int write_gguf(const char *path, const shape *s, tensor *t, int nt, int f16)
{
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, (uint64_t)nt);
    int gemma = !strcmp(s->arch, "gemma3");
    u64(&b, gemma ? 12 : 10);
    char k[96];
    kv_str(&b, "general.architecture", s->arch);
#define KEY(x) (snprintf(k, sizeof k, "%s.%s", s->arch, x), k)
    kv_u32(&b, KEY("block_count"), (uint32_t)s->n_layers);
    kv_u32(&b, KEY("embedding_length"), (uint32_t)s->E);
    kv_u32(&b, KEY("feed_forward_length"), (uint32_t)s->F);
    kv_u32(&b, KEY("attention.head_count"), (uint32_t)s->H);
    kv_u32(&b, KEY("attention.head_count_kv"), (uint32_t)s->KV);
    kv_u32(&b, KEY("attention.key_length"), (uint32_t)s->D);
    kv_u32(&b, KEY("attention.value_length"), (uint32_t)s->D);
    kv_f32(&b, KEY("attention.layer_norm_rms_epsilon"), s->eps);
    kv_f32(&b, KEY("rope.freq_base"), s->base);
    if (gemma) {
        kv_u32(&b, KEY("attention.sliding_window"), (uint32_t)s->window);
        kv_f32(&b, KEY("rope.freq_base_swa"), 10000.0f);
    }
#undef KEY
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        int half = f16 && t[i].rows;
        str(&b, t[i].name);
        u32(&b, t[i].rows ? 2 : 1);
        u64(&b, (uint64_t)t[i].cols);
        if (t[i].rows) u64(&b, (uint64_t)t[i].rows);
        u32(&b, half ? 1 : 0);
        u64(&b, off);
        off += (uint64_t)(t[i].rows ? t[i].rows : 1) * t[i].cols * (half ? 2 : 4);
        off = (off + 31) / 32 * 32;
    }
    while (b.n % 32) put(&b, "", 1);
    size_t data0 = b.n;
    for (int i = 0; i < nt; i++) {
        while ((b.n - data0) % 32) put(&b, "", 1);
        size_t k2 = (size_t)(t[i].rows ? t[i].rows : 1) * t[i].cols;
        if (f16 && t[i].rows)
            for (size_t j = 0; j < k2; j++) {
                uint16_t h = tq_float_to_half(t[i].x[j]);
                put(&b, &h, 2);
            }
        else put(&b, t[i].x, k2 * 4);
    }
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(b.p, 1, b.n, f) == b.n;
    if (f) ok &= fclose(f) == 0;
    free(b.p);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- comparisons */

/* RMS(a - b) / RMS(b) and max |a - b| / max |b| over n values */
static void rel_err(const float *a, const float *b, size_t n, double *rms, double *mx)
{
    double se = 0, sb = 0, me = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        se += e * e;
        sb += (double)b[i] * b[i];
        me = e > me ? e : me;
        mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
    }
    *rms = sb > 0 ? sqrt(se / sb) : 0;
    *mx = mb > 0 ? me / mb : 0;
}

/* the CPU forward pass, teacher-forced over tok[0..T) in one call: T x V logits */
static float *cpu_logits(tq_model *m, const int32_t *tok, int T)
{
    const tq_model_config *c = tq_model_get_config(m);
    float *lg = malloc((size_t)T * c->n_vocab * sizeof *lg);
    tq_kv_cache *kc = NULL;
    int st = tq_kv_cache_create(m, T, &kc);
    if (!st) st = tq_model_forward(m, kc, tok, T, lg);
    tq_kv_cache_free(kc);
    if (st) {
        free(lg);
        return NULL;
    }
    return lg;
}

/* the GPU loop over tok[0..T) one token a step into T x V logits; NULL on failure (message kept) */
static float *gpu_logits(tq_cuda_model *g, const tq_cuda_cache_spec *sp, const int32_t *tok, int T, int V)
{
    tq_cuda_cache *c = NULL;
    float *lg = malloc((size_t)T * V * sizeof *lg);
    int st = tq_cuda_cache_create(g, sp, &c);
    for (int t = 0; t < T && !st; t++) st = tq_cuda_model_step(g, c, tok[t], lg + (size_t)t * V);
    tq_cuda_cache_free(c);
    if (st) {
        fprintf(stderr, "gpu loop: %s\n", tq_error_msg());
        free(lg);
        return NULL;
    }
    return lg;
}

static tq_kvq_opts kvq_opts(int kmethod, int kbits, int vbits, int rotation)
{
    tq_kvq_opts o;
    memset(&o, 0, sizeof o);
    tq_qparams_default(&o.cfg.k, kmethod, kbits);
    o.cfg.k.rotation = rotation;
    o.cfg.k.seed = 11;
    tq_qparams_default(&o.cfg.v, TQ_M_TURBO_MSE, vbits);
    o.cfg.v.rotation = rotation;
    o.cfg.v.seed = 11;
    o.device = TQ_DEVICE_CPU;
    o.prompt = 1;
    return o;
}

/* ---------------------------------------------------------------- the tests */

/* The refusals of the GPU loop need no GPU. */
static void test_supports(tq_model *m)
{
    tq_kvq_opts o = kvq_opts(TQ_M_TURBO_MSE, 3, 3, TQ_ROT_HADAMARD);
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_OK, "turbo-mse 3/3 hadamard: %s", tq_error_msg());
    o = kvq_opts(TQ_M_TURBO_PROD, 3, 3, TQ_ROT_DENSE);
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_OK, "turbo-prod 3 + turbo-mse 3 dense: %s", tq_error_msg());
    o = kvq_opts(TQ_M_TURBO_PROD, 3, 3, TQ_ROT_DENSE);
    o.cfg.v = o.cfg.k; /* --values same: turbo-prod values, which the fused kernels cannot read */
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_ERR_USAGE && strstr(tq_error_msg(), "--values turbo-mse"),
          "turbo-prod values refused: %s", tq_error_msg());
    o = kvq_opts(TQ_M_QJL, 1, 3, TQ_ROT_DENSE);
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_ERR_USAGE, "qjl keys refused");
    o = kvq_opts(TQ_M_TURBO_MSE, 3, 3, TQ_ROT_HADAMARD);
    o.recent = 32;
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_ERR_USAGE && strstr(tq_error_msg(), "--recent"), "--recent refused");
    o = kvq_opts(TQ_M_TURBO_MSE, 3, 3, TQ_ROT_HADAMARD);
    o.cfg.v.method = -1;
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_ERR_USAGE, "values none refused");
    o = kvq_opts(TQ_M_TURBO_MSE, 3, 3, TQ_ROT_HADAMARD);
    o.cfg.v.rotation = TQ_ROT_DENSE;
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_ERR_USAGE, "mixed rotations refused");
    o = kvq_opts(TQ_M_TURBO_MSE, 5, 3, TQ_ROT_HADAMARD);
    CHECK(tq_kvq_cuda_supports(&o, m) == TQ_ERR_USAGE && strstr(tq_error_msg(), "1..4"), "5-bit keys refused: %s",
          tq_error_msg());
}

/* 1 while the attention variant is "fast" (the tensor-core kernels at every width: fp16 queries and probabilities) */
static int g_fp16_attn;

/* Packed caches: the GPU closed loop (fp32 weights, so only the cache differs) against the CPU closed loop with
 * the same quantizers. With the default kernels both quantize the same rows up to float32 rounding: a code flips
 * only where a rotated coordinate sits within ~1e-6 of a threshold (about one in 1e5 coordinates), so what remains
 * must be small beside what the quantization itself does to the logits: at most 0.1 of the CPU's
 * quantized-minus-exact difference, and ΔPPL within 1%.
 * Where fp16 operands enter (the tensor-core kernels, ~6e-4 relative per call; fp16 weights) the rows written to
 * the cache move by that much, and in a quantized loop a moved row flips the codes whose coordinates sit near a
 * threshold — each flip a full code step, carried to every later token and layer. That amplification cannot be
 * bounded by the perturbation; the scale it is judged on is the measurement's own noise: the spread of the CPU's
 * numbers over quantizer seeds (a new seed redraws every code). An fp16 path passes when it moves the logits by at
 * most a quarter of what a new seed does and ΔPPL by at most half the seeds' standard deviation (+1% of ΔPPL): its
 * answer is as good as the CPU's with another seed. g32 NULL (no GPU): the CPU side alone. */
static void test_quant(const shape *s, tq_model *m, tq_model *m16, tq_cuda_model *g32, tq_cuda_model *g16,
                       const int32_t *tok, int T, const float *ref)
{
    const int V = tq_model_get_config(m)->n_vocab;
    double rms, mx;
    int st;
    const int kinds[][4] = {{TQ_M_TURBO_MSE, 4, 4, TQ_ROT_HADAMARD}, {TQ_M_TURBO_MSE, 3, 3, TQ_ROT_DENSE},
                            {TQ_M_TURBO_PROD, 3, 3, TQ_ROT_HADAMARD}};
    /* the references every configuration is scored against, once: the CPU's log-probs (exact and fp16-rounded
     * weights) and the GPU fp16 loop's own (fp16 cache) with its decode time */
    float *lp = NULL, *lp16 = NULL, *lg16 = NULL;
    double ts_ref = 0;
    st = tq_ppl_reference(m, tok, T, 1, 1, &lp);
    CHECK(st == TQ_OK, "%s: cpu reference: %s", s->arch, tq_error_msg());
    if (!st && g16) {
        st = tq_ppl_reference(m16, tok, T, 1, 1, &lp16);
        if (!st) st = tq_ppl_reference_cuda(m, g16, tok, T, &lg16, &ts_ref);
        CHECK(st == TQ_OK, "%s: references for the fp16 loops: %s", s->arch, tq_error_msg());
    }
    for (int k = 0; k < 3 && !st; k++) {
        tq_kvq_opts o = kvq_opts(kinds[k][0], kinds[k][1], kinds[k][2], kinds[k][3]);
        const char *kn = kinds[k][0] == TQ_M_TURBO_PROD ? "turbo-prod" : "turbo-mse";
        float *cq = malloc((size_t)(T - 1) * V * sizeof *cq);
        tq_ppl_result rc_, rg_;
        memset(&rc_, 0, sizeof rc_);
        memset(&rg_, 0, sizeof rg_);
        st = tq_ppl_run(m, &o, tok, T, 1, 1, lp, 0, cq, &rc_);
        CHECK(st == TQ_OK, "%s %s: cpu closed loop: %s", s->arch, kn, tq_error_msg());
        float *gq = NULL;
        double e_quant = 0;
        if (!st) {
            rel_err(cq, ref, (size_t)(T - 1) * V, &e_quant, &mx);
            fprintf(stderr, "%s %s %d/%d %s: the quantization moves the cpu logits by %.3g RMS, kl %.4g\n", s->arch,
                    kn, kinds[k][1], kinds[k][2], kinds[k][3] == TQ_ROT_DENSE ? "dense" : "hadamard", e_quant, rc_.kl);
            CHECK(e_quant > 1e-3, "%s %s: the quantization changes the logits (%.3g)", s->arch, kn, e_quant);
        }
        /* the seeds' spread: the CPU loop with seeds 12..14 besides 11 (the logits' RMS move from seed 11, and the
         * standard deviation of ΔPPL over the four) */
        double e_seed = 0, d_sd = 0;
        if (!st) {
            double d[4] = {rc_.ppl / rc_.ppl_ref - 1}, dm = d[0];
            float *cs = malloc((size_t)(T - 1) * V * sizeof *cs);
            for (int j = 1; j < 4 && !st; j++) {
                tq_kvq_opts os = o;
                os.cfg.k.seed = os.cfg.v.seed = 11 + j;
                tq_ppl_result rs;
                memset(&rs, 0, sizeof rs);
                st = tq_ppl_run(m, &os, tok, T, 1, 1, lp, 0, cs, &rs);
                CHECK(st == TQ_OK, "%s %s: cpu closed loop, seed %d: %s", s->arch, kn, 11 + j, tq_error_msg());
                if (!st) {
                    rel_err(cs, cq, (size_t)(T - 1) * V, &rms, &mx);
                    e_seed += rms / 3;
                    dm += (d[j] = rs.ppl / rs.ppl_ref - 1);
                }
                tq_ppl_result_free(&rs);
            }
            free(cs);
            dm /= 4;
            for (int j = 0; j < 4; j++) d_sd += (d[j] - dm) * (d[j] - dm) / 3;
            d_sd = sqrt(d_sd);
            fprintf(stderr, "%s %s: seeds 11-14: the logits move by %.3g RMS from seed 11's, dppl %.5g %.5g %.5g %.5g "
                    "(sd %.3g)\n", s->arch, kn, e_seed, d[0], d[1], d[2], d[3], d_sd);
            /* two independent draws of the quantization: ~sqrt(2) times what one does to the exact logits */
            CHECK(!st && e_seed > 0.5 * e_quant && e_seed < 2.5 * e_quant,
                  "%s %s: a new seed moves the logits by %.3g, the quantization by %.3g", s->arch, kn, e_seed, e_quant);
        }
        if (!st && g32) {
            st = tq_ppl_run_cuda(m, g32, &o, tok, T, lp, 0, gq = malloc((size_t)(T - 1) * V * sizeof *gq), &rg_,
                                 NULL);
            CHECK(st == TQ_OK, "%s %s: gpu closed loop: %s", s->arch, kn, tq_error_msg());
        }
        if (!st && g32) {
            rel_err(gq, cq, (size_t)(T - 1) * V, &rms, &mx);
            fprintf(stderr, "%s %s: gpu vs cpu closed loop %.3g RMS; kl cpu %.4g gpu %.4g; bits %.4g / %.4g\n",
                    s->arch, kn, rms, rc_.kl, rg_.kl, rc_.bits_total, rg_.bits_total);
            if (g_fp16_attn)
                CHECK(rms <= 0.25 * e_seed, "%s %s: gpu closed loop (fp16 attention) vs cpu: %.3g RMS > 0.25 x a new "
                      "seed's %.3g", s->arch, kn, rms, e_seed);
            else
                CHECK(rms <= 0.1 * e_quant, "%s %s: gpu closed loop vs cpu: %.3g RMS > 0.1 x the quantization's %.3g",
                      s->arch, kn, rms, e_quant);
            /* the layouts are the same: stored bits per value exactly equal */
            CHECK_NEAR(rg_.bits_total, rc_.bits_total, 1e-12, "bits_total gpu vs cpu");
            /* KL is quadratic in the logit change: a relative logit difference of at most 0.1 between the two
             * loops gives KLs within (1 +- 0.1)^2, so within 25% */
            if (!g_fp16_attn) CHECK_REL(rg_.kl, rc_.kl, 0.25, "kl gpu vs cpu closed loop");
            /* ΔPPL (ppl / ppl_ref - 1, the same CPU reference on both sides): the acceptance is 1% relative on the
             * real models; here the logits differ by <= 0.1 of the quantization's change, and ΔPPL, first order in
             * it, by about that fraction of its second-order part: measured well under 1e-2 */
            double dc = rc_.ppl / rc_.ppl_ref - 1, dg = rg_.ppl / rg_.ppl_ref - 1;
            fprintf(stderr, "%s %s: dppl cpu %.5g gpu %.5g (fp32 weights)\n", s->arch, kn, dc, dg);
            if (g_fp16_attn)
                CHECK(fabs(dg - dc) <= 0.01 * fabs(dc) + 0.5 * d_sd, "%s %s: dppl gpu (fp16 attention) %.6g vs cpu %.6g "
                      "beyond 1%% + half the seeds' sd %.3g", s->arch, kn, dg, dc, d_sd);
            else
                CHECK(fabs(dg - dc) <= 0.01 * fabs(dc) + 1e-6, "%s %s: dppl gpu %.6g vs cpu %.6g beyond 1%%", s->arch,
                      kn, dg, dc);
        }
        if (!st && g16) { /* what tq perplexity --device cuda reports: fp16 weights, its own fp16-cache reference */
            tq_ppl_result r16, c16;
            memset(&r16, 0, sizeof r16);
            memset(&c16, 0, sizeof c16);
            double ts_q = 0;
            st = tq_ppl_run_cuda(m, g16, &o, tok, T, lg16, 0, NULL, &r16, &ts_q);
            CHECK(st == TQ_OK, "%s %s: gpu fp16 closed loop: %s", s->arch, kn, tq_error_msg());
            /* the CPU closed loop on the same weights rounded to fp16 (the f16 file): what the GPU's fp16 loop computes,
             * up to float32 reordering and the few codes that flip with it */
            if (!st) st = tq_ppl_run(m16, &o, tok, T, 1, 1, lp16, 0, NULL, &c16);
            CHECK(st == TQ_OK, "%s %s: cpu closed loop, fp16 weights: %s", s->arch, kn, tq_error_msg());
            if (!st) {
                double dc = rc_.ppl / rc_.ppl_ref - 1, dg = r16.ppl / r16.ppl_ref - 1, d16 = c16.ppl / c16.ppl_ref - 1;
                fprintf(stderr, "%s %s: dppl cpu %.5g, cpu fp16 weights %.5g, gpu fp16 %.5g; ppl cpu fp16 weights %.6g "
                        "gpu %.6g; ppl_ref cpu %.5g, cpu fp16 weights %.6g, gpu fp16 %.6g; %.0f tok/s vs fp16 cache "
                        "%.0f\n", s->arch, kn, dc, d16, dg, c16.ppl, r16.ppl, rc_.ppl_ref, c16.ppl_ref, r16.ppl_ref,
                        T / ts_q, T / ts_ref);
                /* the quantized loops themselves, the same computation on both sides up to fp16 operands and
                 * reordering (amplified by flipped codes, see above): their perplexities agree to 1% of what the
                 * quantization moved plus half the seeds' sd of ΔPPL, relative to the reference. The references are
                 * not compared so: the GPU's keeps an fp16 cache, the CPU's exact rows. */
                CHECK(fabs(r16.ppl - c16.ppl) <= (0.01 * fabs(d16) + 0.5 * d_sd) * c16.ppl_ref + 1e-6 * c16.ppl,
                      "%s %s: gpu fp16 quantized ppl %.8g vs the cpu's on fp16 weights %.8g: beyond 1%% of dppl %.5g "
                      "+ half the seeds' sd %.3g", s->arch, kn, r16.ppl, c16.ppl, d16, d_sd);
                /* the reference's perplexity: logits off by <= 4 e_w (~3e-3) of their spread of ~2 move each
                 * token's log-probability by <= ~6e-3 (aligned), the mean and so ppl by less: 1e-2 relative */
                CHECK_REL(r16.ppl_ref, rc_.ppl_ref, 1e-2, "ppl_ref gpu fp16 vs cpu");
            }
            tq_ppl_result_free(&c16);
            tq_ppl_result_free(&r16);
        }
        free(cq);
        free(gq);
        tq_ppl_result_free(&rc_);
        tq_ppl_result_free(&rg_);
    }
    free(lp);
    free(lp16);
    free(lg16);
}

/* One architecture: CPU side always, GPU side when there is one (*gpu). */
static void test_arch(const shape *s, const char *dir, int gpu)
{
    tensor t[128];
    int nt = make_tensors(s, 7, t);
    char p32[512], p16[512];
    snprintf(p32, sizeof p32, "%s/%s-f32.gguf", dir, s->arch);
    snprintf(p16, sizeof p16, "%s/%s-f16.gguf", dir, s->arch);
    CHECK(write_gguf(p32, s, t, nt, 0) == 0 && write_gguf(p16, s, t, nt, 1) == 0, "%s: write the GGUFs", s->arch);
    for (int i = 0; i < nt; i++) free(t[i].x);
    tq_model *m = NULL, *m16 = NULL;
    tq_cuda_model *g32 = NULL, *g16 = NULL;
    int st = tq_model_load(p32, &m);
    CHECK(st == TQ_OK, "%s: load: %s", s->arch, tq_error_msg());
    st = st ? st : tq_model_load(p16, &m16);
    CHECK(st == TQ_OK, "%s: load f16: %s", s->arch, tq_error_msg());
    if (st) {
        tq_model_free(m);
        return;
    }
    const tq_model_config *c = tq_model_get_config(m);
    CHECK(c->head_dim == s->D && c->n_kv_head == s->KV && c->tied_output, "%s: shape as written", s->arch);
    if (!strcmp(s->arch, "gemma3"))
        CHECK(c->layer[0].sliding_window == s->window && c->layer[5].sliding_window == 0 && c->qk_norm &&
              c->sandwich_norm, "gemma3: windows 0-4, layer 5 global, QK-norm, sandwich norms");
    const int T = 40, V = c->n_vocab; /* T = 5 windows: the window bites in every sliding layer */
    int32_t tok[MAX_T];
    tq_rng r;
    tq_rng_seed(&r, 99, 2);
    for (int i = 0; i < T; i++) tok[i] = (int32_t)tq_rng_bounded(&r, (uint32_t)V);
    float *ref = cpu_logits(m, tok, T), *ref16 = cpu_logits(m16, tok, T);
    CHECK(ref && ref16, "%s: cpu forward: %s", s->arch, tq_error_msg());
    if (!ref || !ref16) goto out;
    /* The fp16 sensitivity of this model, measured on the CPU: the same weights rounded to fp16 once (the f16
     * file) against the exact ones. The GPU's fp16 loop rounds every weight so (activations stay fp32) and also the
     * cached K/V rows (relative 2^-11 each, fewer values than the weights): its error is about e_w, at most
     * sqrt(2) e_w if the cache's rounding mattered as much as all the weights'; float32 reordering adds ~1e-5.
     * 4 e_w bounds it with room. */
    double e_w, e_w_max;
    rel_err(ref16, ref, (size_t)T * V, &e_w, &e_w_max);
    fprintf(stderr, "%s: fp16 weights on the CPU move the logits by %.3g RMS (%.3g of the max)\n", s->arch, e_w,
            e_w_max);
    CHECK(e_w > 1e-5 && e_w < 2e-2, "%s: fp16 sensitivity %.3g in the expected range (2^-11 = 4.9e-4 per weight, "
          "a few layers)", s->arch, e_w);
    if (!gpu) {
        test_quant(s, m, m16, NULL, NULL, tok, T, ref);
        goto out;
    }
    st = tq_cuda_model_create(m, 1, &g32);
    CHECK(st == TQ_OK, "%s: upload fp32: %s", s->arch, tq_error_msg());
    if (!st) st = tq_cuda_model_create(m, 0, &g16);
    CHECK(st == TQ_OK, "%s: upload fp16: %s", s->arch, tq_error_msg());
    if (st) goto out;
    /* 1. fp32 weights, fp32 cache, the plain reference kernels: the CPU's pass up to float32 rounding. A float32
     * dot product of K <= 384 terms (summed in 32 lanes here, in OpenBLAS's blocks there) carries ~sqrt(K) u =
     * 1.2e-6 relative error (u = 6e-8, random walk); ~8 such steps per layer on each side, 3-6 layers, the head:
     * ~1e-5 as a random walk, 6e-5 if all aligned; the GPU's expf/tanhf/cos are within 2 ulp. 2e-4 of the largest
     * logit bounds it; a convention error (a norm, RoPE pair, window off by one) moves logits by a good fraction of
     * their scale (>= 1e-2). */
    tq_cuda_cache_spec sp32 = {TQ_CUDA_CACHE_F32, T, NULL, NULL, NULL, 1};
    float *g = gpu_logits(g32, &sp32, tok, T, V);
    CHECK(g != NULL, "%s: gpu fp32 loop", s->arch);
    double rms, mx;
    if (g) {
        rel_err(g, ref, (size_t)T * V, &rms, &mx);
        fprintf(stderr, "%s: gpu fp32 loop vs cpu: %.3g RMS, %.3g of the max\n", s->arch, rms, mx);
        CHECK(mx <= 2e-4, "%s: gpu fp32 loop vs cpu forward: max error %.3g of the largest logit", s->arch, mx);
        free(g);
    }
    /* 2. fp16 weights, fp16 cache: flash-decoding attention, then the reference kernel on the same rows. */
    for (int ra = 0; ra < 2; ra++) {
        tq_cuda_cache_spec sp16 = {TQ_CUDA_CACHE_F16, T, NULL, NULL, NULL, ra};
        g = gpu_logits(g16, &sp16, tok, T, V);
        CHECK(g != NULL, "%s: gpu fp16 loop", s->arch);
        if (!g) continue;
        rel_err(g, ref, (size_t)T * V, &rms, &mx);
        fprintf(stderr, "%s: gpu fp16 loop (%s attention) vs cpu: %.3g RMS, %.3g of the max (4 e_w = %.3g)\n",
                s->arch, ra ? "reference" : "flash-decoding", rms, mx, 4 * e_w);
        CHECK(rms <= 4 * e_w, "%s: gpu fp16 loop vs cpu forward: %.3g RMS > 4 x the fp16 weights' %.3g", s->arch, rms,
              e_w);
        free(g);
    }
    test_quant(s, m, m16, g32, g16, tok, T, ref);
out:
    tq_cuda_model_free(g32);
    tq_cuda_model_free(g16);
    free(ref);
    free(ref16);
    tq_model_free(m);
    tq_model_free(m16);
    unlink(p32);
    unlink(p16);
}

/* Round every matrix the GPU loop uploads as fp16 (embeddings, head, Q/K/V/O, FFN) to fp16 in place: the arrays
 * are the loaded model's own malloc'd storage (read-only through the API; a test may measure what fp16 does). */
static void round_fp16(const float *p, size_t n)
{
    float *x = (float *)(uintptr_t)p;
    for (size_t j = 0; j < n; j++) x[j] = tq_half_to_float(tq_float_to_half(x[j]));
}

static void round_weights_fp16(tq_model *m)
{
    const tq_model_config *c = tq_model_get_config(m);
    tq_model_weights w;
    if (tq_model_get_weights(m, &w) < 0) return;
    const size_t E = c->n_embd, F = c->n_ff, QD = (size_t)c->n_head * c->head_dim;
    const size_t KD = (size_t)c->n_kv_head * c->head_dim;
    round_fp16(w.tok_embd, (size_t)c->n_vocab * E);
    if (w.output != w.tok_embd) round_fp16(w.output, (size_t)c->n_vocab * E);
    for (int l = 0; l < c->n_layers; l++) {
        const tq_layer_weights *L = &w.layer[l];
        const float *ps[] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
        const size_t ns[] = {QD * E, KD * E, KD * E, E * QD, F * E, F * E, E * F};
        for (int i = 0; i < 7; i++) round_fp16(ps[i], ns[i]);
    }
}

/* A real model when present: what rounding its weights to fp16 does to the logits over the first 32 tokens of a
 * text, measured on the CPU (e_w), and with a GPU the fp16 loop against the CPU forward of the exact weights within
 * 4 e_w (the synthetic models' bound and reasoning: activations fp32, the fp16 K/V rows a smaller share). */
static void test_real(const char *which, int gpu)
{
    char *path = tq_test_model_path(which);
    if (!path) {
        fprintf(stderr, "SKIP %s: not fetched\n", which);
        tq_t_skip++;
        return;
    }
#if defined(__SANITIZE_ADDRESS__)
    fprintf(stderr, "SKIP %s: real-model passes skipped under the sanitizers (-O1: minutes)\n", which);
    tq_t_skip++;
    return;
#endif
    tq_model *m = NULL;
    tq_gguf *gg = NULL;
    tq_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    int n = 0;
    const char *text = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
                       "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
                       "of Light, it was the season of Darkness.";
    int st = tq_model_load(path, &m);
    if (!st) st = tq_gguf_open(path, &gg);
    if (!st) st = tq_tokenizer_from_gguf(gg, &tk);
    if (!st) st = tq_tokenize(tk, text, strlen(text), TQ_TOKENIZE_ADD_SPECIAL, &ids, &n);
    CHECK(st == TQ_OK && n >= 32, "%s: load and tokenize: %s", which, tq_error_msg());
    if (!st && n >= 32) {
        const int T = 32, V = tq_model_get_config(m)->n_vocab;
        float *ref = cpu_logits(m, ids, T);
        round_weights_fp16(m);
        float *ref16 = cpu_logits(m, ids, T);
        CHECK(ref && ref16, "%s: cpu forward: %s", which, tq_error_msg());
        double e_w = 0, mx, rms;
        if (ref && ref16) {
            rel_err(ref16, ref, (size_t)T * V, &e_w, &mx);
            fprintf(stderr, "%s: fp16 weights on the CPU move the logits by %.3g RMS (%.3g of the max)\n", which, e_w,
                    mx);
            CHECK(e_w > 1e-5 && e_w < 2e-2, "%s: fp16 sensitivity %.3g", which, e_w);
        }
        tq_cuda_model *g = NULL;
        if (gpu && ref && ref16) {
            st = tq_cuda_model_create(m, 0, &g); /* the weights are already fp16 values: the upload is exact */
            CHECK(st == TQ_OK, "%s: upload: %s", which, tq_error_msg());
            tq_cuda_cache_spec sp = {TQ_CUDA_CACHE_F16, T, NULL, NULL, NULL, 0};
            float *gl = st ? NULL : gpu_logits(g, &sp, ids, T, V);
            CHECK(gl != NULL, "%s: gpu fp16 loop", which);
            if (gl) {
                rel_err(gl, ref, (size_t)T * V, &rms, &mx);
                fprintf(stderr, "%s: gpu fp16 loop vs cpu over %d tokens: %.3g RMS, %.3g of the max (4 e_w = %.3g)\n",
                        which, T, rms, mx, 4 * e_w);
                CHECK(rms <= 4 * e_w, "%s: gpu fp16 loop vs cpu: %.3g RMS > 4 x %.3g", which, rms, e_w);
            }
            free(gl);
            tq_cuda_model_free(g);
        }
        free(ref);
        free(ref16);
    }
    free(ids);
    tq_tokenizer_free(tk);
    tq_gguf_close(gg);
    tq_model_free(m);
}

int main(void)
{
    char dir[] = "/tmp/tq-cuda-model.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char name[256];
    int gpu = tq_cuda_device(name, sizeof name, NULL, NULL) == TQ_OK;
    /* the GPU loop's refusals need no GPU; a CPU-only build says so through the error channel */
    {
        tq_model *mm = NULL;
        char p[512];
        tensor t[128];
        int nt = make_tensors(&LLAMA, 7, t);
        snprintf(p, sizeof p, "%s/supports.gguf", dir);
        int ok = write_gguf(p, &LLAMA, t, nt, 0) == 0 && tq_model_load(p, &mm) == TQ_OK;
        CHECK(ok, "llama: write and load: %s", tq_error_msg());
        if (ok) {
            test_supports(mm);
            tq_cuda_model *none = NULL;
            if (!TQ_HAVE_CUDA)
                CHECK(tq_cuda_model_create(mm, 0, &none) == TQ_ERR_NOCUDA && strstr(tq_error_msg(), "without CUDA"),
                      "cpu-only build: 'built without CUDA'");
        }
        for (int i = 0; i < nt; i++) free(t[i].x);
        tq_model_free(mm);
        unlink(p);
    }
    test_arch(&LLAMA, dir, gpu);
    test_arch(&GEMMA3, dir, gpu);
    if (gpu && !getenv("TQ_CUDA_QUICK")) { /* TQ_CUDA_QUICK (compute-sanitizer runs): the default variant only */
        fprintf(stderr, "gpu: %s\n", name);
        tq_cuda_variant_set("attn", "fast"); /* the round-2 selection: fused small-batch path, d = 64/256 MMA */
        g_fp16_attn = 1;
        fprintf(stderr, "attention variant 'fast':\n");
        test_arch(&LLAMA, dir, gpu);
        test_arch(&GEMMA3, dir, gpu);
        tq_cuda_variant_set("attn", "auto");
        g_fp16_attn = 0;
    }
    if (gpu && !getenv("TQ_CUDA_QUICK")) { /* CPU-only builds skip them (GPU part below) */
        test_real("smollm2", gpu);
        test_real("gemma3", gpu);
    }
    if (gpu) tq_cuda_release();
    else {
        fprintf(stderr, "SKIP the GPU loop: %s\n", TQ_HAVE_CUDA ? "no CUDA device" : "built without CUDA");
        tq_t_skip++;
    }
    rmdir(dir);
    TQ_TEST_END();
}
