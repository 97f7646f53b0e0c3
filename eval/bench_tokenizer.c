/* bench_tokenizer.c: tokenizer throughput on both bundled models (make bench). Validates first (the ids of the
 * hard-case text equal tests/golden's llama.cpp ids), then times tq_tokenize on ~1 MB of English in one call (the
 * three bundled texts repeated: the per-call word cache is hot, as it is on long real text) and on the 5 KB texts one
 * call each (cache cold at every call), best of 3, and writes results/bench/tokenizer.md. Skips a model that is not
 * fetched (scripts/get_models.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "tokenizer.h"
#include "tq.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[len] = 0; *n = (size_t)len; }
    return b;
}

static const char *model_path(const char *which, char *buf, size_t cap)
{
    const char *env = getenv(!strcmp(which, "smollm2") ? "TQ_GGUF_SMOLLM2" : "TQ_GGUF_GEMMA3");
    if (env && *env) return access(env, R_OK) ? NULL : env;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bash scripts/get_models.sh %s 2>/dev/null", which);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    if (!fgets(buf, (int)cap, p)) buf[0] = 0;
    pclose(p);
    buf[strcspn(buf, "\n")] = 0;
    return buf[0] && !access(buf, R_OK) ? buf : NULL;
}

int main(void)
{
    const char *texts[] = {"datasets/text/pride-and-prejudice.txt", "datasets/text/scandal-in-bohemia.txt",
                           "datasets/text/tale-of-two-cities.txt"};
    char *small[3];
    size_t small_n[3], total = 0;
    for (int i = 0; i < 3; i++) {
        small[i] = slurp(texts[i], &small_n[i]);
        if (!small[i]) { fprintf(stderr, "bench_tokenizer: cannot read '%s'\n", texts[i]); return 1; }
        total += small_n[i];
    }
    size_t big_n = 1 << 20;
    char *big = malloc(big_n);
    for (size_t at = 0, k = 0; at < big_n; k++) {
        size_t c = small_n[k % 3] < big_n - at ? small_n[k % 3] : big_n - at;
        memcpy(big + at, small[k % 3], c);
        at += c;
    }
    char md[4096];
    int mdn = snprintf(md, sizeof md, "# Tokenizer throughput\n\nOne thread, best of 3 (eval/bench_tokenizer.c). "
                       "\"1 MB\": the bundled texts repeated to 1 MiB, one call; \"5 KB texts\": the three texts, one "
                       "call each (the word cache starts empty at every call).\n\n"
                       "| model | tokenizer | 1 MB: tokens | s | tokens/s | MB/s | 5 KB texts: tokens/s |\n"
                       "|---|---|---|---|---|---|---|\n");
    const char *names[2] = {"smollm2", "gemma3"};
    for (int m = 0; m < 2; m++) {
        char pbuf[4096];
        const char *path = model_path(names[m], pbuf, sizeof pbuf);
        if (!path) { printf("bench_tokenizer: %s not fetched, skipped\n", names[m]); continue; }
        tq_gguf *g = NULL;
        tq_tokenizer *t = NULL;
        if (tq_gguf_open(path, &g) || tq_tokenizer_from_gguf(g, &t)) {
            fprintf(stderr, "bench_tokenizer: %s\n", tq_error_msg());
            return 1;
        }
        /* validate: the hard-case text against llama.cpp's ids */
        char gp[128];
        snprintf(gp, sizeof gp, "tests/golden/tokens/tokens_%s_hard.txt", names[m]);
        size_t hn, gn;
        char *hard = slurp("tests/golden/tokens/tokenizer_hard.txt", &hn), *gold = slurp(gp, &gn);
        if (!hard || !gold) { fprintf(stderr, "bench_tokenizer: cannot read the golden files\n"); return 1; }
        int32_t *ids = NULL;
        int n = 0;
        if (tq_tokenize(t, hard, hn, TQ_TOKENIZE_ADD_SPECIAL, &ids, &n)) { fprintf(stderr, "%s\n", tq_error_msg()); return 1; }
        int k = 0, ok = 1;
        for (char *p = gold; *p;) {
            if (*p == '#') { while (*p && *p != '\n') p++; continue; }
            char *e;
            long x = strtol(p, &e, 10);
            if (e == p) { p++; continue; }
            if (k >= n || ids[k] != x) ok = 0;
            k++;
            p = e;
        }
        free(ids);
        free(hard);
        free(gold);
        if (!ok || k != n) { fprintf(stderr, "bench_tokenizer: %s ids differ from %s\n", names[m], gp); return 1; }
        double best = 1e30, best_small = 1e30;
        int ntok = 0, nsmall = 0;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            if (tq_tokenize(t, big, big_n, 0, &ids, &ntok)) { fprintf(stderr, "%s\n", tq_error_msg()); return 1; }
            double dt = now() - t0;
            free(ids);
            if (dt < best) best = dt;
            t0 = now();
            nsmall = 0;
            for (int i = 0; i < 3; i++) {
                if (tq_tokenize(t, small[i], small_n[i], 0, &ids, &n)) { fprintf(stderr, "%s\n", tq_error_msg()); return 1; }
                nsmall += n;
                free(ids);
            }
            dt = now() - t0;
            if (dt < best_small) best_small = dt;
        }
        char desc[256];
        tq_tokenizer_describe(t, desc, sizeof desc);
        printf("bench_tokenizer: %s: 1 MiB -> %d tokens in %.3f s = %.0f tokens/s (%.2f MB/s); 5 KB texts %.0f tokens/s\n",
               names[m], ntok, best, ntok / best, big_n / best / 1e6, nsmall / best_small);
        mdn += snprintf(md + mdn, sizeof md - (size_t)mdn, "| %s | %s | %d | %.3f | %.0f | %.2f | %.0f |\n", names[m],
                        m == 0 ? "GPT-2 BPE, smollm" : "SentencePiece", ntok, best, ntok / best, big_n / best / 1e6,
                        nsmall / best_small);
        tq_tokenizer_free(t);
        tq_gguf_close(g);
    }
    (void)total;
    const char *out = "results/bench/tokenizer.md", *tmp = "results/bench/tokenizer.md.tmp";
    FILE *f = fopen(tmp, "w");
    if (!f || fwrite(md, 1, (size_t)mdn, f) != (size_t)mdn || fclose(f) || rename(tmp, out)) {
        fprintf(stderr, "bench_tokenizer: cannot write '%s'\n", out);
        return 1;
    }
    for (int i = 0; i < 3; i++) free(small[i]);
    free(big);
    return 0;
}
