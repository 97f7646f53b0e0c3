/* test_closed_loop.c: lib/kvquant's quantized KV cache and perplexity pass on the two bundled real models (96 tokens
 * of datasets/text/tale-of-two-cities.txt): fp16 and --keep-layers all give the plain forward pass's logits bit for
 * bit, int8 costs < 0.5% PPL, turbo-mse's ΔPPL and KL fall strictly with bits, teacher-forced chunks equal
 * token-by-token decoding (the cache rows a query reads for per-row methods, KIVI key groups with a recent window,
 * frozen center with fp16 prefill; and, with batch-invariant kernels, the model's logits), --per-layer's in-loop
 * metrics (0 for fp16, layer 0 = offline), the slices' kept quantizers equal one-row round trips, and bad options are
 * refused. Model parts are skipped cleanly when a model is not fetched. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "gguf.h"
#include "kvquant.h"
#include "polar.h"
#include "rng.h"
#include "tokenizer.h"
#include "tq.h"
#include "tq_test.h"
#include "turbo.h"

#define T_TOK 64
#define PROMPT 32
#define CHUNK 32
#define N_REC 4 /* slices whose reads are compared (memory: N_REC x T^2 x d x 2 floats) */


static int tokens_of(const char *gguf, int32_t **ids, int *n)
{
    FILE *f = fopen("datasets/text/tale-of-two-cities.txt", "rb");
    if (!f) return -1;
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    tq_gguf *g;
    tq_tokenizer *tok;
    if (tq_gguf_open(gguf, &g) < 0) return -1;
    int rc = tq_tokenizer_from_gguf(g, &tok);
    if (rc >= 0) rc = tq_tokenize(tok, text, len, TQ_TOKENIZE_ADD_SPECIAL, ids, n);
    if (rc >= 0) tq_tokenizer_free(tok);
    tq_gguf_close(g);
    return rc;
}

static tq_kvq_opts opts_of(int method, int bits, uint64_t seed)
{
    tq_kvq_opts o = {.prompt = PROMPT, .device = TQ_DEVICE_CPU};
    tq_qparams_default(&o.cfg.k, method, bits);
    o.cfg.k.seed = seed;
    o.cfg.v = o.cfg.k;
    return o;
}

/* The plain forward pass on the same chunk grid, no hook: logits rows 0..T-2. */
static void plain_logits(tq_model *m, const int32_t *tok, int T, int V, float *out)
{
    tq_kv_cache *c;
    float *buf = malloc((size_t)CHUNK * V * sizeof *buf);
    CHECK(tq_kv_cache_create(m, T, &c) == TQ_OK, "cache: %s", tq_error_msg());
    for (int t = 0; t < T; t += CHUNK) {
        int n = T - t < CHUNK ? T - t : CHUNK;
        CHECK(tq_model_forward(m, c, tok + t, n, buf) == TQ_OK, "forward: %s", tq_error_msg());
        for (int i = 0; i < n && t + i < T - 1; i++)
            memcpy(out + (size_t)(t + i) * V, buf + (size_t)i * V, (size_t)V * sizeof *buf);
    }
    tq_kv_cache_free(c);
    free(buf);
}

static void test_identities(tq_model *m, const int32_t *tok, int T, int V, const float *ref, const char *which)
{
    size_t nl = (size_t)(T - 1) * V;
    float *plain = malloc(nl * sizeof *plain), *got = malloc(nl * sizeof *got);
    plain_logits(m, tok, T, V, plain);
    tq_ppl_result r;
    /* fp16 is the reference cache itself: the same logits bit for bit, KL and ΔPPL exactly 0 */
    tq_kvq_opts o = opts_of(TQ_M_FP16, 16, 0);
    CHECK(tq_ppl_run(m, &o, tok, T, PROMPT, CHUNK, ref, 0, got, &r) == TQ_OK, "%s", tq_error_msg());
    CHECK(!memcmp(plain, got, nl * sizeof *got), "%s: --methods fp16 logits differ from the plain forward pass", which);
    CHECK(r.kl == 0 && r.ppl == r.ppl_ref, "%s fp16: kl %g ppl %g ref %g", which, r.kl, r.ppl, r.ppl_ref);
    /* every layer kept exact: nothing quantized, the plain logits again */
    o = opts_of(TQ_M_TURBO_MSE, 2, 0);
    const tq_model_config *mc = tq_model_get_config(m);
    unsigned char *keep = malloc((size_t)mc->n_layers);
    memset(keep, 1, (size_t)mc->n_layers);
    o.keep = keep;
    CHECK(tq_ppl_run(m, &o, tok, T, PROMPT, CHUNK, ref, 0, got, &r) == TQ_OK, "%s", tq_error_msg());
    CHECK(!memcmp(plain, got, nl * sizeof *got), "%s: --keep-layers all logits differ from the reference", which);
    CHECK(r.bits_total == 16.0, "%s keep all: bits_total %g", which, r.bits_total);
    free(keep);
    free(plain);
    free(got);
}

static void test_quality(tq_model *m, const int32_t *tok, int T, const float *ref, const char *which)
{
    tq_ppl_result r;
    /* int8 per-vector absmax: relative error ~ 1/254 per coordinate; the acceptance bound is 0.5% PPL */
    tq_kvq_opts o = opts_of(TQ_M_INT8, 8, 0);
    CHECK(tq_ppl_run(m, &o, tok, T, PROMPT, CHUNK, ref, 0, NULL, &r) == TQ_OK, "%s", tq_error_msg());
    double d8 = r.ppl / r.ppl_ref - 1;
    fprintf(stderr, "  %s int8: dppl %+.3f%% kl %.2g\n", which, 100 * d8, r.kl);
    /* the bound holds for SmolLM2; on Gemma 3 the format itself costs more on short texts (measured +4.1% at 96
     * tokens; an independent NumPy int8 cache in a float64 pass agrees: eval/int8_gemma.py, README "Closed loop"):
     * its keys' 8-bit steps meet the large attention scores of layers 5, 11 and 15. There int8 must only beat
     * turbo-mse 4 bits. */
    if (!strcmp(which, "smollm2")) CHECK(d8 < 0.005, "%s int8: ΔPPL %.4f%% >= 0.5%%", which, 100 * d8);
    double kl8 = r.kl;
    /* turbo-mse: each extra bit divides the MSE by ~4 (Beta codebook), so ΔPPL and KL must fall strictly */
    double prev_d = INFINITY, prev_kl = INFINITY;
    for (int b = 2; b <= 4; b++) {
        o = opts_of(TQ_M_TURBO_MSE, b, 0);
        CHECK(tq_ppl_run(m, &o, tok, T, PROMPT, CHUNK, ref, 0, NULL, &r) == TQ_OK, "%s", tq_error_msg());
        double d = r.ppl / r.ppl_ref - 1;
        fprintf(stderr, "  %s turbo-mse %d bits: dppl %+.2f%% kl %.4f top1 %.3f\n", which, b, 100 * d, r.kl, r.top1);
        CHECK(d < prev_d && r.kl < prev_kl, "%s turbo-mse %d bits: dppl %g kl %g not below %g %g", which, b, d,
              r.kl, prev_d, prev_kl);
        prev_d = d;
        prev_kl = r.kl;
    }
    CHECK(kl8 < prev_kl, "%s: int8 kl %g not below turbo-mse 4 bits %g", which, kl8, prev_kl);
}

/* The cache semantics: what a query at position p reads (rows 0..p of every slice after the write containing p) is
 * bit-identical whether the rows arrive in the perplexity pass's chunks (the prompt, then CHUNK at a time) or one
 * at a time as in decoding. Driven with the model's real rows (the reference cache) through tq_kvq_write, so the
 * comparison is exact: the quantizer is deterministic per row, and blocks (KIVI key groups, --recent) are flushed
 * only on chunk boundaries (tq_kvq_grid). Any semantic slip — a block quantized before a query that must see it
 * exact — changes a row a query reads. */
static int snapshot_run(tq_model *m, const tq_kvq_opts *o, const float *src_k, const float *src_v, int T, int step,
                        float *seen)
{
    const tq_model_config *mc = tq_model_get_config(m);
    int d = mc->head_dim, st;
    tq_kv_cache *c;
    tq_kvq *q;
    if ((st = tq_kv_cache_create(m, T, &c)) < 0) return st;
    if ((st = tq_kvq_create(o, m, &q)) < 0) {
        tq_kv_cache_free(c);
        return st;
    }
    tq_kvq_attach(q, c);
    size_t per = (size_t)T * d;
    for (int t = 0; t < T && st >= 0;) {
        int n = t == 0 ? PROMPT : (T - t < step ? T - t : step);
        for (int l = 0; l < mc->n_layers && st >= 0; l++)
            for (int h = 0; h < mc->n_kv_head && st >= 0; h++) {
                size_t s = (size_t)l * mc->n_kv_head + h;
                float *K = tq_kv_cache_keys(c, l, h), *V = tq_kv_cache_values(c, l, h);
                memcpy(K + (size_t)t * d, src_k + s * per + (size_t)t * d, (size_t)n * d * sizeof *K);
                memcpy(V + (size_t)t * d, src_v + s * per + (size_t)t * d, (size_t)n * d * sizeof *V);
                st = tq_kvq_write(q, l, h, t, n);
                /* what queries t..t+n-1 read: rows 0..t+n-1 now; record row r as seen by the query at r's own
                 * position and by the last query of this write */
                for (int p = t; p < t + n && s < N_REC; p++) {
                    float *dst = seen + ((s * T + p) * 2) * per;
                    memcpy(dst, K, (size_t)(p + 1) * d * sizeof *K);
                    memcpy(dst + per, V, (size_t)(p + 1) * d * sizeof *V);
                }
            }
        t += n;
    }
    tq_kvq_free(q);
    tq_kv_cache_free(c);
    return st;
}

static void test_cache_semantics(tq_model *m, const int32_t *tok, int T, const char *which)
{
    const tq_model_config *mc = tq_model_get_config(m);
    int d = mc->head_dim, ns = mc->n_layers * mc->n_kv_head;
    size_t per = (size_t)T * d;
    float *K = malloc(ns * per * sizeof *K), *V = malloc(ns * per * sizeof *V);
    tq_kv_cache *c;
    CHECK(tq_kv_cache_create(m, T, &c) == TQ_OK && tq_model_forward(m, c, tok, T, NULL) == TQ_OK, "%s",
          tq_error_msg());
    for (int l = 0; l < mc->n_layers; l++)
        for (int h = 0; h < mc->n_kv_head; h++) {
            memcpy(K + ((size_t)l * mc->n_kv_head + h) * per, tq_kv_cache_keys(c, l, h), per * sizeof *K);
            memcpy(V + ((size_t)l * mc->n_kv_head + h) * per, tq_kv_cache_values(c, l, h), per * sizeof *V);
        }
    tq_kv_cache_free(c);
    tq_kvq_opts cases[4];
    const char *names[4] = {"turbo-mse 3 bits", "kivi 2 bits (key groups)", "kivi 2 bits --recent 32",
                            "turbo-prod 3 bits center, fp16 prefill"};
    cases[0] = opts_of(TQ_M_TURBO_MSE, 3, 7);
    cases[1] = opts_of(TQ_M_KIVI, 2, 0);
    cases[2] = opts_of(TQ_M_KIVI, 2, 0);
    cases[2].recent = 32;
    cases[3] = opts_of(TQ_M_TURBO_PROD, 3, 1);
    cases[3].cfg.k.center = cases[3].cfg.v.center = 1;
    cases[3].prefill_fp16 = 1;
    size_t nseen = (size_t)N_REC * T * 2 * per;
    float *a = malloc(nseen * sizeof *a), *b = malloc(nseen * sizeof *b);
    for (int i = 0; i < 4; i++) {
        int g = tq_kvq_grid(&cases[i], CHUNK);
        CHECK(g == CHUNK, "%s: grid %d", names[i], g);
        memset(a, 0, nseen * sizeof *a);
        memset(b, 0, nseen * sizeof *b);
        CHECK(snapshot_run(m, &cases[i], K, V, T, g, a) == TQ_OK, "%s", tq_error_msg());
        CHECK(snapshot_run(m, &cases[i], K, V, T, 1, b) == TQ_OK, "%s", tq_error_msg());
        CHECK(!memcmp(a, b, nseen * sizeof *a), "%s %s: a query reads other rows chunked than decoding", which,
              names[i]);
        /* and the rows did change (a vacuous pass-through would also be equal) */
        CHECK(memcmp(a + ((size_t)(T - 1) * 2) * per, K + 0, per * sizeof *K) != 0, "%s: nothing quantized", names[i]);
    }
    free(a);
    free(b);
    free(K);
    free(V);
}

/* Teacher forcing against decoding through the model itself, with batch-invariant kernels (model.h): the pass in
 * chunks (the prompt, then the grid's chunk) and the pass one token at a time after the prompt give the same
 * logits bit for bit, so the same PPL. The bar is 1e-5 relative; with fixed-order kernels and the cache
 * semantics checked above there is no source of difference left, so the logits are compared exactly too. Without the
 * invariant kernels the two differ by ~1e-3 relative in PPL (OpenBLAS rounds a 32-row sgemm differently from a
 * 1-row one), which this also checks, so the test would notice the option doing nothing. The invariant kernels
 * compute the same function as the default ones: the reference PPLs agree to float32 summation noise over ~30
 * layers (measured 5e-7 relative on SmolLM2; bound 1e-4). */
static void test_decode_equals_forced(tq_model *m, const int32_t *tok, int T, const float *ref_default,
                                      const char *which)
{
#if defined(__SANITIZE_ADDRESS__)
    SKIP("decoding against teacher forcing skipped under the sanitizers (token-by-token passes at -O1: minutes)");
    return;
#endif
    int V = tq_model_get_config(m)->n_vocab;
    size_t nl = (size_t)(T - 1) * V;
    float *a = malloc(nl * sizeof *a), *b = malloc(nl * sizeof *b), *ref;
    tq_model_set_batch_invariant(m, 1);
    CHECK(tq_ppl_reference(m, tok, T, PROMPT, CHUNK, &ref) == TQ_OK, "%s", tq_error_msg());
    tq_ppl_result r0, ra, rb;
    /* the reference cache on the invariant kernels, scored against the default kernels' reference */
    CHECK(tq_ppl_run(m, NULL, tok, T, PROMPT, CHUNK, ref_default, 0, NULL, &r0) == TQ_OK, "%s", tq_error_msg());
    fprintf(stderr, "  %s invariant vs default kernels: ppl %.9g vs %.9g, kl %.3g\n", which, r0.ppl, r0.ppl_ref, r0.kl);
    CHECK_REL(r0.ppl, r0.ppl_ref, 1e-4, "invariant kernels' reference PPL against the default kernels'");
    tq_kvq_opts cases[3];
    const char *names[3] = {"turbo-mse 3 bits", "kivi 2 bits --recent 32", "turbo-prod 3 bits center, fp16 prefill"};
    cases[0] = opts_of(TQ_M_TURBO_MSE, 3, 7);
    cases[1] = opts_of(TQ_M_KIVI, 2, 0);
    cases[1].recent = 32;
    cases[2] = opts_of(TQ_M_TURBO_PROD, 3, 1);
    cases[2].cfg.k.center = cases[2].cfg.v.center = 1;
    cases[2].prefill_fp16 = 1;
    for (int i = 0; i < 3; i++) {
        int g = tq_kvq_grid(&cases[i], CHUNK);
        CHECK(tq_ppl_run(m, &cases[i], tok, T, PROMPT, g, ref, 0, a, &ra) == TQ_OK, "%s", tq_error_msg());
        CHECK(tq_ppl_run(m, &cases[i], tok, T, PROMPT, 1, ref, 0, b, &rb) == TQ_OK, "%s", tq_error_msg());
        fprintf(stderr, "  %s %s: forced ppl %.9g, decoded %.9g\n", which, names[i], ra.ppl, rb.ppl);
        CHECK_REL(rb.ppl, ra.ppl, 1e-5, names[i]);
        CHECK(!memcmp(a, b, nl * sizeof *a), "%s %s: decoded logits differ from teacher-forced", which, names[i]);
        CHECK(ra.ppl != ra.ppl_ref, "%s %s: nothing quantized", which, names[i]);
    }
    /* the same pair on the default kernels does differ (else the check above proves nothing about the option) */
    tq_model_set_batch_invariant(m, 0);
    CHECK(tq_ppl_run(m, &cases[0], tok, T, PROMPT, CHUNK, ref, 0, a, &ra) == TQ_OK, "%s", tq_error_msg());
    CHECK(tq_ppl_run(m, &cases[0], tok, T, PROMPT, 1, ref, 0, b, &rb) == TQ_OK, "%s", tq_error_msg());
    CHECK(memcmp(a, b, nl * sizeof *a) != 0, "%s: default kernels give decoding bit-identical logits", which);
    free(ref);
    free(a);
    free(b);
}

/* --per-layer. fp16: every layer's in-loop metrics are exactly 0 (the rows attention reads are the exact rows). A
 * quantized cache: layer 0's K/V and queries do not depend on the cache (its input is the embeddings), so its
 * in-loop metrics must equal the offline evaluation (lib/attention.h, what tq sweep reports) of the reference pass's
 * layer-0 rows round-tripped one at a time through the same slices' quantizers. The in-loop numbers are evaluated a
 * forward call at a time (query tiles start at each call's first position), the offline ones over the whole slice,
 * so scores are rounded in different sgemm shapes (~1e-7 relative); through softmax and the means that stays far
 * below 1e-5 relative (measured ~1e-7), the bound. Deeper layers must show quantization error (> 0). */
static float *q0_buf;
static int capture_q0(void *ctx, int layer, int pos0, int n, const float *q, int n_head, int head_dim)
{
    if (layer == 0) memcpy(q0_buf + (size_t)pos0 * n_head * head_dim, q, (size_t)n * n_head * head_dim * sizeof *q);
    return 0;
}

static void test_per_layer(tq_model *m, const int32_t *tok, int T, const float *ref, const char *which)
{
    const tq_model_config *mc = tq_model_get_config(m);
    const int d = mc->head_dim, H = mc->n_head, KV = mc->n_kv_head, G = H / KV;
    tq_ppl_result r;
    tq_kvq_opts o = opts_of(TQ_M_FP16, 16, 0);
    CHECK(tq_ppl_run(m, &o, tok, T, PROMPT, CHUNK, ref, TQ_PPL_PER_LAYER, NULL, &r) == TQ_OK, "%s", tq_error_msg());
    int zero = r.n_layers == mc->n_layers;
    for (int l = 0; l < r.n_layers; l++)
        zero &= r.layer[l].attn_kl == 0 && r.layer[l].out_rel == 0 && r.layer[l].rows == (long)H * T;
    CHECK(zero, "%s fp16: in-loop per-layer metrics not exactly 0", which);
    tq_ppl_result_free(&r);
    o = opts_of(TQ_M_TURBO_MSE, 3, 7);
    CHECK(tq_ppl_run(m, &o, tok, T, PROMPT, CHUNK, ref, TQ_PPL_PER_LAYER, NULL, &r) == TQ_OK, "%s", tq_error_msg());
    /* offline: the reference pass's layer-0 rows and queries */
    tq_kv_cache *c;
    q0_buf = malloc((size_t)T * H * d * sizeof *q0_buf);
    CHECK(tq_kv_cache_create(m, T, &c) == TQ_OK, "%s", tq_error_msg());
    tq_kv_cache_set_query_hook(c, capture_q0, NULL);
    for (int t = 0; t < T; t += CHUNK)
        CHECK(tq_model_forward(m, c, tok + t, T - t < CHUNK ? T - t : CHUNK, NULL) == TQ_OK, "%s", tq_error_msg());
    float *qh = malloc((size_t)G * T * d * sizeof *qh), *kh = malloc((size_t)T * d * sizeof *kh),
          *vh = malloc((size_t)T * d * sizeof *vh);
    const tq_layer_attn *la = &mc->layer[0];
    tq_attn_spec spec = {.window = la->sliding_window, .scale = la->attn_scale, .softcap = la->attn_softcap};
    double kl = 0, out = 0, bits;
    long rows = 0, orows = 0;
    for (int h = 0; h < KV; h++) {
        const float *K = tq_kv_cache_keys(c, 0, h), *V = tq_kv_cache_values(c, 0, h);
        for (int t = 0; t < T; t++) {
            CHECK(tq_roundtrip(TQ_DEVICE_CPU, &o.cfg.k, (tq_slice_id){0, h, TQ_TENSOR_KEYS}, K + (size_t)t * d, 1, d,
                               kh + (size_t)t * d, &bits) == TQ_OK, "%s", tq_error_msg());
            CHECK(tq_roundtrip(TQ_DEVICE_CPU, &o.cfg.v, (tq_slice_id){0, h, TQ_TENSOR_VALUES}, V + (size_t)t * d, 1, d,
                               vh + (size_t)t * d, &bits) == TQ_OK, "%s", tq_error_msg());
            for (int g = 0; g < G; g++)
                memcpy(qh + ((size_t)g * T + t) * d, q0_buf + ((size_t)t * H + h * G + g) * d, (size_t)d * 4);
        }
        tq_attn_stats a;
        CHECK(tq_attn_eval(qh, G, K, kh, V, vh, T, d, &spec, 0, T, &a) == TQ_OK, "%s", tq_error_msg());
        kl += a.attn_kl * a.rows;
        rows += a.rows;
        out += a.out_rel * a.out_rows;
        orows += a.out_rows;
    }
    fprintf(stderr, "  %s layer 0 turbo-mse 3 bits: in-loop attn_kl %.9g out_rel %.9g, offline %.9g %.9g\n", which,
            r.layer[0].attn_kl, r.layer[0].out_rel, kl / rows, out / orows);
    CHECK_REL(r.layer[0].attn_kl, kl / rows, 1e-5, "layer 0 attn_kl in the loop against offline");
    CHECK_REL(r.layer[0].out_rel, out / orows, 1e-5, "layer 0 out_rel in the loop against offline");
    int pos = 1;
    for (int l = 1; l < r.n_layers; l++) pos &= r.layer[l].attn_kl > 0 && r.layer[l].out_rel > 0;
    CHECK(pos, "%s: a deeper layer shows no quantization error in the loop", which);
    tq_ppl_result_free(&r);
    tq_kv_cache_free(c);
    free(q0_buf);
    free(qh);
    free(kh);
    free(vh);
}

static void test_bad(tq_model *m)
{
    tq_kvq *q = NULL;
    tq_kvq_opts o = opts_of(TQ_M_TURBO_MSE, 3, 0);
    o.cfg.k.outliers = 4;
    CHECK(tq_kvq_create(&o, m, &q) == TQ_ERR_USAGE && strstr(tq_error_msg(), "outliers"), "%s", tq_error_msg());
    o = opts_of(TQ_M_TURBO_MSE, 3, 0);
    o.cfg.k.codebook = TQ_CB_EMPIRICAL;
    CHECK(tq_kvq_create(&o, m, &q) == TQ_ERR_USAGE && strstr(tq_error_msg(), "empirical"), "%s", tq_error_msg());
    o = opts_of(TQ_M_KIVI, 2, 0);
    o.recent = 40;
    CHECK(tq_kvq_create(&o, m, &q) == TQ_ERR_USAGE && strstr(tq_error_msg(), "multiple"), "%s", tq_error_msg());
    tq_schedule *s;
    const char *js = "{\"tq_schedule\": 1, \"units\": \"layer\", \"keys\": [3, 3], \"values\": [3, 3]}";
    if (tq_schedule_parse(&s, js, strlen(js), "two.json") == TQ_OK) {
        o = opts_of(TQ_M_TURBO_MSE, 3, 0);
        o.sched = s;
        CHECK(tq_kvq_create(&o, m, &q) == TQ_ERR_USAGE, "a 2-layer schedule accepted");
        tq_schedule_free(s);
    } else
        CHECK(0, "schedule parse: %s", tq_error_msg());
    float *lp;
    int32_t one = 1;
    CHECK(tq_ppl_reference(m, &one, 1, 1, 1, &lp) == TQ_ERR_USAGE, "1 token accepted");
    CHECK(q == NULL, "state left on failure");
}

static void test_model(const char *which)
{
    char *path = tq_test_model_path(which), why[160];
    if (!path) {
        snprintf(why, sizeof why, "%s not fetched (bash scripts/get_models.sh %s)", which, which);
        SKIP(why);
        return;
    }
    tq_model *m;
    int32_t *tok;
    int n;
    if (tq_model_load(path, &m) < 0 || tokens_of(path, &tok, &n) < 0) {
        CHECK(0, "%s: %s", which, tq_error_msg());
        return;
    }
    CHECK(n >= T_TOK, "%s: %d tokens", which, n);
    int V = tq_model_get_config(m)->n_vocab;
    float *ref;
    CHECK(tq_ppl_reference(m, tok, T_TOK, PROMPT, CHUNK, &ref) == TQ_OK, "%s", tq_error_msg());
    test_identities(m, tok, T_TOK, V, ref, which);
    test_quality(m, tok, T_TOK, ref, which);
    test_cache_semantics(m, tok, T_TOK, which);
    test_per_layer(m, tok, T_TOK, ref, which);
    if (!strcmp(which, "smollm2")) test_decode_equals_forced(m, tok, T_TOK, ref, which);
    test_bad(m);
    free(ref);
    free(tok);
    tq_model_free(m);
}

/* The slice's kept quantizer (tq_turbo_rows / tq_polar_rows, what the cache's rows go through) must give the bytes
 * of a one-row tq_roundtrip for every row of a batch: the closed loop's numbers then cannot depend on whether the
 * parts were rebuilt per row (the first implementation) or kept, nor on how many rows a call carries. Rows with a
 * heavy channel and a zero row included; every (method, rotation, d) the closed loop runs. Exact comparison: the
 * same kernels run on the same inputs. */
static void test_prepared_rows(void)
{
    const int dims[3] = {64, 96, 256}, n = 9;
    struct { int method, bits, rotation; } cases[] = {
        {TQ_M_TURBO_MSE, 3, TQ_ROT_DENSE}, {TQ_M_TURBO_MSE, 2, TQ_ROT_HADAMARD}, {TQ_M_TURBO_MSE, 4, TQ_ROT_NONE},
        {TQ_M_TURBO_PROD, 3, TQ_ROT_DENSE}, {TQ_M_TURBO_PROD, 2, TQ_ROT_HADAMARD}, {TQ_M_QJL, 1, TQ_ROT_DENSE},
        {TQ_M_POLAR, 3, TQ_ROT_DENSE}, {TQ_M_POLAR, 3, TQ_ROT_HADAMARD},
    };
    for (int di = 0; di < 3; di++) {
        int d = dims[di];
        float *x = malloc(sizeof(float) * n * d), *a = malloc(sizeof(float) * n * d), *b = malloc(sizeof(float) * n * d);
        tq_rng r;
        tq_rng_seed(&r, 42, (uint64_t)d);
        tq_rng_normals(&r, x, (long)n * d);
        for (int i = 0; i < n; i++) x[(size_t)i * d + 3] *= 20.0f; /* an outlier channel, as real keys have */
        memset(x + (size_t)4 * d, 0, sizeof(float) * d);          /* a zero row: norm 0 */
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            tq_qparams p;
            tq_qparams_default(&p, cases[c].method, cases[c].bits);
            p.rotation = cases[c].rotation;
            p.seed = 5;
            if (tq_device_supports(TQ_DEVICE_CPU, &p, d) < 0) continue; /* hadamard at d = 96, polar at d % 16 */
            tq_slice_id id = {3, 1, (int)(c & 1)};
            double bits_rows = 0, bits_one = 0;
            int st;
            if (cases[c].method == TQ_M_POLAR) {
                tq_polar_rows *pr;
                st = tq_polar_rows_make(&pr, &p, d, id);
                if (!st) st = tq_polar_rows_roundtrip(pr, x, n, a, &bits_rows);
                tq_polar_rows_free(pr);
            } else {
                tq_turbo_rows *tr;
                st = tq_turbo_rows_make(&tr, &p, d, id);
                if (!st) st = tq_turbo_rows_roundtrip(tr, x, n, a, &bits_rows);
                tq_turbo_rows_free(tr);
            }
            CHECK(st == TQ_OK, "rows %zu d=%d: %s", c, d, tq_error_msg());
            for (int i = 0; i < n && st == TQ_OK; i++)
                st = tq_roundtrip(TQ_DEVICE_CPU, &p, id, x + (size_t)i * d, 1, d, b + (size_t)i * d, &bits_one);
            CHECK(st == TQ_OK && !memcmp(a, b, sizeof(float) * n * d) && bits_rows == bits_one,
                  "case %zu (method %d, rotation %d) d=%d: kept parts differ from a one-row round trip", c,
                  cases[c].method, cases[c].rotation, d);
        }
        free(x);
        free(a);
        free(b);
    }
    tq_turbo_rows *tr = NULL;
    tq_qparams p;
    tq_qparams_default(&p, TQ_M_TURBO_MSE, 3);
    p.center = 1; /* a whole-slice statistic: refused, not silently ignored */
    CHECK(tq_turbo_rows_make(&tr, &p, 64, (tq_slice_id){0, 0, 0}) == TQ_ERR_USAGE && !tr, "center accepted");
}

int main(void)
{
    test_prepared_rows();
    test_model("smollm2");
    /* Gemma 3 (262k-entry vocabulary, d = 256): tens of seconds of forward passes at -O2, many minutes under the
     * sanitizers (-O1, every access checked), so those builds check SmolLM2 only. */
#if defined(__SANITIZE_ADDRESS__)
    SKIP("test_closed_loop: Gemma 3 skipped under the sanitizers (minutes of forward passes at -O1)");
#else
    test_model("gemma3");
#endif
    TQ_TEST_END();
}
