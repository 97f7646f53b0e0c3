/* test_model_synth.c: lib/model's qwen2 and gemma2 paths, which no small real GGUF exercises, on tiny random-weight
 * GGUFs (tests/golden/models/tiny_*.gguf) against logits from an independent float64 NumPy pass written from the
 * architectures' definitions (scripts/make_tiny_models.py, which also wrote the files): Qwen2's Q/K/V biases and
 * untied head; Gemma 2's embedding scale, sandwich norms, GeGLU, alternating sliding windows and both soft-caps.
 * The whole pass, prompt-then-decode, and (Gemma 2) every layer made global against the reference without windows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tq.h"
#include "tq_test.h"

/* Tolerance, as a fraction of the largest |logit|. tq runs float32, the reference float64 on the same (exactly
 * dequantized) weights: a float32 dot product of length K <= 64 carries a relative rounding error of about
 * sqrt(K) u = 8 * 6e-8 = 5e-7 (u: float32 unit roundoff, errors adding as a random walk), each layer adds ~8 such
 * matmul/norm/softmax errors to the residual stream, 3-4 layers and the head: ~30 errors, 1.5e-5 if every one
 * aligned, ~3e-6 as a random walk (measured: 3e-7 qwen2, 1.6e-6 gemma2). 2e-5 bounds the aligned case; any convention error (a missing bias, norm
 * offset, soft-cap, window off by one) moves the logits by 0.3 or more of their scale (make_tiny_models.py
 * measures each feature's effect, recorded in the golden's header, and refuses to write one under 1e-2). */
#define REL_TOL 2e-5

typedef struct {
    int T, V, n_ref;
    int32_t tok[64];
    char name[4][32];
    double *lg[4]; /* T * V each */
} golden;

static void golden_free(golden *g)
{
    for (int i = 0; i < g->n_ref; i++) free(g->lg[i]);
}

/* Format: '#' comment lines; "tokens T ids..."; then per reference "logits NAME T V" and T rows of V numbers. */
static int golden_load(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char word[64];
    int rc = 0;
    while (rc == 0 && fscanf(f, "%63s", word) == 1) {
        if (word[0] == '#') {
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {}
        } else if (!strcmp(word, "tokens")) {
            if (fscanf(f, "%d", &g->T) != 1 || g->T < 2 || g->T > 64) rc = -1;
            for (int i = 0; i < g->T && rc == 0; i++)
                if (fscanf(f, "%d", &g->tok[i]) != 1) rc = -1;
        } else if (!strcmp(word, "logits") && g->n_ref < 4) {
            int i = g->n_ref++, T, V;
            if (fscanf(f, "%31s %d %d", g->name[i], &T, &V) != 3 || T != g->T || V < 2 || V > 4096) {
                rc = -1;
                break;
            }
            g->V = V;
            g->lg[i] = malloc((size_t)T * V * sizeof(double));
            for (int j = 0; j < T * V && rc == 0; j++)
                if (fscanf(f, "%lf", &g->lg[i][j]) != 1) rc = -1;
        } else rc = -1;
    }
    fclose(f);
    return rc;
}

static const double *golden_find(const golden *g, const char *name)
{
    for (int i = 0; i < g->n_ref; i++)
        if (!strcmp(g->name[i], name)) return g->lg[i];
    return NULL;
}

/* max |tq - ref| / max |ref| over every logit */
static double rel_err(const float *lg, const double *ref, size_t n)
{
    double sc = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        sc = fmax(sc, fabs(ref[i]));
        e = fmax(e, fabs(lg[i] - ref[i]));
    }
    return e / sc;
}

static void test_arch(const char *arch)
{
    char gp[128], mp[128];
    snprintf(gp, sizeof gp, "tests/golden/models/tiny_%s.txt", arch);
    snprintf(mp, sizeof mp, "tests/golden/models/tiny_%s.gguf", arch);
    golden g;
    if (golden_load(gp, &g) < 0) {
        CHECK(0, "cannot read golden file '%s'", gp);
        golden_free(&g);
        return;
    }
    tq_model *m = NULL;
    int rc = tq_model_load(mp, &m);
    CHECK(rc == TQ_OK, "load '%s': %s", mp, tq_error_msg());
    if (rc != TQ_OK) {
        golden_free(&g);
        return;
    }
    const tq_model_config *c = tq_model_get_config(m);
    int gem = !strcmp(arch, "gemma2"), T = g.T, V = g.V;
    CHECK(c->n_vocab == V, "%s: vocabulary %d, golden %d", arch, c->n_vocab, V);
    if (gem) {
        /* what make_tiny_models.py wrote: 4 layers, 4 q / 2 kv heads of 16 (4 x 16 != hidden 32), window 6 on the
         * even layers, soft-caps 8 and 5, scale 16^-1/2, embeddings x sqrt(32), tied head */
        int ok = c->arch == TQ_ARCH_GEMMA2 && c->n_layers == 4 && c->n_head == 4 && c->n_kv_head == 2 &&
                 c->head_dim == 16 && c->sandwich_norm && !c->qk_norm && !c->has_qkv_bias && c->tied_output &&
                 c->final_softcap == 5.0f && fabsf(c->embd_scale - sqrtf(32.0f)) < 1e-6f;
        for (int l = 0; l < c->n_layers; l++)
            ok &= c->layer[l].sliding_window == (l % 2 ? 0 : 6) && c->layer[l].attn_softcap == 8.0f &&
                  c->layer[l].attn_scale == 0.25f;
        CHECK(ok, "gemma2 config read from the GGUF");
    } else {
        CHECK(c->arch == TQ_ARCH_QWEN2 && c->n_layers == 3 && c->n_head == 4 && c->n_kv_head == 2 && c->head_dim == 8 &&
              c->has_qkv_bias && !c->tied_output && !c->sandwich_norm && c->embd_scale == 1.0f &&
              c->layer[0].sliding_window == 0 && c->final_softcap == 0, "qwen2 config read from the GGUF");
    }
    const double *ref = golden_find(&g, "ref");
    CHECK(ref != NULL, "%s: golden has no 'ref' logits", arch);
    float *full = malloc((size_t)T * V * sizeof(float)), *step = malloc((size_t)T * V * sizeof(float));
    tq_kv_cache *kc = NULL;
    CHECK(tq_kv_cache_create(m, T, &kc) == TQ_OK, "cache");
    CHECK(tq_model_forward(m, kc, g.tok, T, full) == TQ_OK, "%s forward: %s", arch, tq_error_msg());
    if (ref) {
        double e = rel_err(full, ref, (size_t)T * V);
        CHECK(e <= REL_TOL, "%s: whole pass vs float64 reference: %.3g of the largest |logit| (bound %g)", arch, e,
              REL_TOL);
    }
    /* a 10-token prompt, then one token at a time: the windows cut across calls (Gemma 2: positions >= 6) */
    tq_kv_cache_reset(kc);
    rc = tq_model_forward(m, kc, g.tok, 10, step);
    for (int t = 10; t < T && rc == TQ_OK; t++) rc = tq_model_forward(m, kc, g.tok + t, 1, step + (size_t)t * V);
    CHECK(rc == TQ_OK, "%s stepwise: %s", arch, tq_error_msg());
    if (ref) {
        double e = rel_err(step, ref, (size_t)T * V);
        CHECK(e <= REL_TOL, "%s: prompt then decoding vs float64 reference: %.3g (bound %g)", arch, e, REL_TOL);
    }
    if (gem) {
        /* every layer global: equal to the reference without windows, and far from the windowed one */
        const double *rg = golden_find(&g, "ref-global");
        CHECK(rg != NULL, "gemma2 golden has no 'ref-global'");
        for (int l = 0; l < c->n_layers; l++) tq_model_set_sliding_window(m, l, 0);
        tq_kv_cache_reset(kc);
        CHECK(tq_model_forward(m, kc, g.tok, T, step) == TQ_OK, "global forward");
        if (rg && ref) {
            double e = rel_err(step, rg, (size_t)T * V), moved = rel_err(step, ref, (size_t)T * V);
            CHECK(e <= REL_TOL, "gemma2 windows ignored vs float64 without windows: %.3g (bound %g)", e, REL_TOL);
            CHECK(moved > 100 * REL_TOL, "gemma2: ignoring the windows moved the logits by only %.3g", moved);
            /* positions 0..5 see every key either way: bit-identical there */
            CHECK(!memcmp(step, full, (size_t)6 * V * sizeof(float)), "gemma2: rows before the window differ");
        }
    }
    tq_kv_cache_free(kc);
    free(full);
    free(step);
    tq_model_free(m);
    golden_free(&g);
}

int main(void)
{
    tq_model_set_threads(1);
    test_arch("qwen2");
    test_arch("gemma2");
    TQ_TEST_END();
}
