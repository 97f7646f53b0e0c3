/* bench_model_pp.c: prompt-processing speed of tq's forward pass (lib/model.h) on one GGUF, for eval/bench_model.py
 * (make bench), which runs it alternately with llama.cpp and reports medians. Prompt processing as llama.cpp does it:
 * N tokens through every layer with logits for the last one only (tokens 0..N-2 without the output head, then token
 * N-1 with it), weights loaded (load time reported apart) and an 8-token warm-up pass forgotten. Prints one JSON
 * line: seconds, tokens/s and where the time went (tq_model_get_timing: weight matmuls, attention, the rest).
 * usage: bench_model_pp MODEL.gguf TEXT N THREADS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"
#include "tq.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "bench_model_pp: %s: %s (%d)\n", what, tq_error_msg(), rc);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_model_pp MODEL.gguf TEXT N THREADS\n");
        return 2;
    }
    const char *model_path = argv[1], *text_path = argv[2];
    int n = atoi(argv[3]), threads = atoi(argv[4]);
    if (n < 8 || threads < 1) {
        fprintf(stderr, "bench_model_pp: N must be >= 8 and THREADS >= 1\n");
        return 2;
    }
    FILE *f = fopen(text_path, "rb");
    if (!f) {
        fprintf(stderr, "bench_model_pp: cannot read '%s'\n", text_path);
        return 1;
    }
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);

    int rc;
    tq_model_set_threads(threads);
    double t0 = now();
    tq_model *m;
    if ((rc = tq_model_load(model_path, &m)) < 0) return fail("load", rc);
    double load_s = now() - t0;
    const tq_model_config *c = tq_model_get_config(m);
    tq_gguf *g;
    tq_tokenizer *tok;
    if ((rc = tq_gguf_open(model_path, &g)) < 0) return fail("gguf", rc);
    if ((rc = tq_tokenizer_from_gguf(g, &tok)) < 0) return fail("tokenizer", rc);
    int32_t *ids;
    int n_ids;
    if ((rc = tq_tokenize(tok, text, len, TQ_TOKENIZE_ADD_SPECIAL, &ids, &n_ids)) < 0) return fail("tokenize", rc);
    if (n_ids < n) {
        fprintf(stderr, "bench_model_pp: '%s' gives %d tokens, fewer than %d\n", text_path, n_ids, n);
        return 1;
    }
    tq_kv_cache *kc;
    if ((rc = tq_kv_cache_create(m, n, &kc)) < 0) return fail("kv cache", rc);
    float *logits = malloc((size_t)c->n_vocab * sizeof *logits);
    if (!logits) return fail("logits", TQ_ERR_NOMEM);
    /* warm-up, as for llama.cpp: 8 tokens (thread pool, scratch), then forgotten */
    if ((rc = tq_model_forward(m, kc, ids, 8, NULL)) < 0) return fail("forward", rc);
    tq_kv_cache_reset(kc);
    tq_model_reset_timing(m);
    t0 = now();
    if ((rc = tq_model_forward(m, kc, ids, n - 1, NULL)) < 0 ||
        (rc = tq_model_forward(m, kc, ids + n - 1, 1, logits)) < 0)
        return fail("forward", rc);
    double s = now() - t0;
    const tq_model_timing *tm = tq_model_get_timing(m);
    printf("{\"model\": \"%s\", \"arch\": \"%s\", \"tokens\": %d, \"threads\": %d, \"load_s\": %.4f, "
           "\"seconds\": %.4f, "
           "\"tok_per_s\": %.2f, \"matmul_s\": %.4f, \"attention_s\": %.4f, \"other_s\": %.4f, "
           "\"weight_bytes\": %zu}\n",
           c->name, c->arch_name, n, threads, load_s, s, n / s, tm->matmul_s, tm->attention_s, tm->other_s,
           c->weight_bytes);
    free(logits);
    free(ids);
    tq_kv_cache_free(kc);
    tq_tokenizer_free(tok);
    tq_gguf_close(g);
    tq_model_free(m);
    return 0;
}
