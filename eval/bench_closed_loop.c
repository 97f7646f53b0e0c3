/* bench_closed_loop.c: the closed loop's cost (make bench). A teacher-forced pass of the model with its KV cache
 * quantized (lib/kvquant.h) against the same pass on the fp16 cache — the model's own rows, no hook — timed
 * alternately in one process, medians and ratios; then a 24-configuration perplexity sweep over 512 tokens of SmolLM2
 * with the reference pass computed once, as `tq perplexity` runs it (the same library calls). Validates before
 * timing: the fp16 cache scores KL 0 against the reference, and per-row quantizers store their nominal bits.
 * Writes results/bench/closed_loop.md. Options: usage below. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "kvquant.h"
#include "model.h"
#include "tokenizer.h"
#include "tq.h"

static const char usage[] =
    "usage: bench_closed_loop [--reps R] [--threads N] [--skip-gemma] [--only METHOD] [-o FILE.md]\n"
    "  --reps R      timed passes per configuration, alternating with the fp16-cache pass (default 3; medians)\n"
    "  --threads N   OpenBLAS threads of the forward pass (default 1)\n"
    "  --skip-gemma  SmolLM2 only\n"
    "  --only METHOD the configurations of one method (e.g. polar) against the fp16-cache pass, no sweep\n"
    "  -o FILE.md    the report (default results/bench/closed_loop.md; written to a temporary name, then renamed)\n";

#define TEXT "results/closed_loop/text.txt"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[64];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* The GGUF of a bundled model: scripts/get_models.sh prints its path (fetching it when missing). */
static int model_path(const char *which, char *path, size_t cap)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "bash scripts/get_models.sh %s 2>/dev/null", which);
    FILE *p = popen(cmd, "r");
    if (!p) return tq_error_set(TQ_ERR, "cannot run scripts/get_models.sh");
    if (!fgets(path, (int)cap, p)) path[0] = 0;
    pclose(p);
    path[strcspn(path, "\n")] = 0;
    if (!path[0]) return tq_error_set(TQ_ERR, "%s is not fetched (bash scripts/get_models.sh %s)", which, which);
    return TQ_OK;
}

static int tokens_of(const char *gguf, int32_t **ids, int *n)
{
    FILE *f = fopen(TEXT, "rb");
    if (!f) return tq_error_set(TQ_ERR, "cannot read '%s' (run from the repository root)", TEXT);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    tq_gguf *g;
    tq_tokenizer *tok;
    int rc = tq_gguf_open(gguf, &g);
    if (rc < 0) return rc;
    if ((rc = tq_tokenizer_from_gguf(g, &tok)) >= 0) {
        rc = tq_tokenize(tok, text, len, TQ_TOKENIZE_ADD_SPECIAL, ids, n);
        tq_tokenizer_free(tok);
    }
    tq_gguf_close(g);
    return rc;
}

static tq_kvq_opts opts_of(int method, int bits, int rotation, int recent)
{
    tq_kvq_opts o = {.recent = recent, .device = TQ_DEVICE_CPU};
    tq_qparams_default(&o.cfg.k, method, bits);
    if (tq_format_of(method)->uses_rotation) o.cfg.k.rotation = rotation;
    o.cfg.v = o.cfg.k;
    return o;
}

static void label_of(const tq_kvq_opts *o, char *buf, size_t n)
{
    const tq_qparams *p = &o->cfg.k;
    const tq_format *f = tq_format_of(p->method);
    snprintf(buf, n, "%s %d bits%s%s", f->name, p->bits,
             f->uses_rotation ? (p->rotation == TQ_ROT_HADAMARD ? ", hadamard" : ", dense") : "",
             o->recent ? ", --recent 32" : "");
}

typedef struct {
    const char *which;
    char path[4096];
    tq_model *m;
    int32_t *tok;
    int T, prompt, chunk;
    float *ref;
} loop;

static int loop_open(loop *l, const char *which, int T)
{
    memset(l, 0, sizeof *l);
    l->which = which;
    l->T = T;
    l->prompt = T / 4;
    l->chunk = 32;
    int n, rc;
    if ((rc = model_path(which, l->path, sizeof l->path)) < 0) return rc;
    if ((rc = tq_model_load(l->path, &l->m)) < 0) return rc;
    if ((rc = tokens_of(l->path, &l->tok, &n)) < 0) return rc;
    if (n < T) return tq_error_set(TQ_ERR, "'%s' gives %d tokens, fewer than %d", TEXT, n, T);
    return TQ_OK;
}

static void loop_close(loop *l)
{
    free(l->ref);
    free(l->tok);
    tq_model_free(l->m);
}

/* One pass: o NULL = the fp16 cache (the model's own rows, no hook). */
static int pass(loop *l, const tq_kvq_opts *cfg, tq_ppl_result *r, double *secs, double *cpu)
{
    tq_kvq_opts o;
    if (cfg) {
        o = *cfg;
        o.prompt = l->prompt;
    }
    double t0 = now(), c0 = cpu_now();
    int rc = tq_ppl_run(l->m, cfg ? &o : NULL, l->tok, l->T, l->prompt, cfg ? tq_kvq_grid(&o, l->chunk) : l->chunk,
                        l->ref, 0, NULL, r);
    *secs = now() - t0;
    *cpu = cpu_now() - c0;
    return rc;
}

#define MAXC 8
#define MAXR 16

/* Quantized passes against the fp16-cache pass: reps rounds, each the fp16-cache pass then every configuration. */
static int ratio_section(FILE *f, const char *which, int T, const tq_kvq_opts *cfg, int nc, int reps, int threads)
{
    loop l;
    double t[MAXC + 1][MAXR], u[MAXC + 1][MAXR];
    tq_ppl_result res[MAXC + 1];
    int rc = loop_open(&l, which, T);
    if (rc >= 0) rc = tq_ppl_reference(l.m, l.tok, T, l.prompt, l.chunk, &l.ref);
    /* validation: the fp16 cache is the reference cache (KL 0, the same PPL) */
    tq_kvq_opts f16 = opts_of(TQ_M_FP16, 16, 0, 0);
    double s, sc;
    if (rc >= 0 && (rc = pass(&l, &f16, &res[0], &s, &sc)) >= 0 && (res[0].kl != 0 || res[0].ppl != res[0].ppl_ref))
        rc = tq_error_set(TQ_ERR, "%s: the fp16 cache is not the reference cache (kl %g)", which, res[0].kl);
    for (int k = 0; k < reps && rc >= 0; k++)
        for (int c = 0; c <= nc && rc >= 0; c++) {
            rc = pass(&l, c ? &cfg[c - 1] : NULL, &res[c], &t[c][k], &u[c][k]);
            const tq_qparams *p = c ? &cfg[c - 1].cfg.k : NULL;
            /* per-row quantizers without a window store exactly their format's bits (KIVI keys: block tails) */
            if (rc >= 0 && k == 0 && p && !cfg[c - 1].recent && p->method != TQ_M_KIVI) {
                double want = tq_format_of(p->method)->bits_total(p, 1, tq_model_get_config(l.m)->head_dim);
                if (fabs(res[c].bits_total - want) > 1e-9)
                    rc = tq_error_set(TQ_ERR, "%s: bits_total %g, want %g", which, res[c].bits_total, want);
            }
        }
    if (rc < 0) {
        loop_close(&l);
        return rc;
    }
    const tq_model_config *mc = tq_model_get_config(l.m);
    fprintf(f, "## %s (%s): a quantized-cache pass against the fp16-cache pass (%d tokens)\n\n",
            !strcmp(which, "smollm2") ? "SmolLM2-135M" : "Gemma-3-270M", mc->arch_name, T);
    fprintf(f, "Teacher-forced over the first %d tokens of " TEXT ": the prompt (%d tokens), then chunks of %d, every "
               "row's next-token distribution scored against the reference — one configuration of `tq perplexity`. "
               "%d rounds, each the fp16-cache pass (the model's own float32 rows, no hook) then every quantized "
               "cache; medians of wall and of process CPU time (with one BLAS thread the CPU time is the work "
               "itself, the steadier measure on a shared machine). %d BLAS thread(s); the quantizer runs on the "
               "calling thread.\n\n",
            T, l.prompt, l.chunk, reps, threads);
    fprintf(f, "| cache | wall runs (s) | wall median (s) | tokens/s | × fp16 (wall) | CPU median (s) | × fp16 (CPU) "
               "| bits_total | ΔPPL |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    double base = median(t[0], reps), ubase = median(u[0], reps);
    for (int c = 0; c <= nc; c++) {
        char lab[96], runs[256] = "";
        if (c) label_of(&cfg[c - 1], lab, sizeof lab);
        else snprintf(lab, sizeof lab, "fp16 (reference)");
        for (int k = 0; k < reps; k++)
            snprintf(runs + strlen(runs), sizeof runs - strlen(runs), "%s%.2f", k ? " / " : "", t[c][k]);
        double med = median(t[c], reps), umed = median(u[c], reps);
        fprintf(f, "| %s | %s | %.2f | %.1f | %.2fx | %.2f | %.2fx | %.4g | %+.2f%% |\n", lab, runs, med, T / med,
                med / base, umed, umed / ubase, c ? res[c].bits_total : 16.0,
                c ? 100 * (res[c].ppl / res[c].ppl_ref - 1) : 0.0);
        fprintf(stderr, "  %s %s: %.2f s (%.2fx), CPU %.2f s (%.2fx)\n", which, lab, med, med / base, umed,
                umed / ubase);
    }
    fprintf(f, "\n");
    loop_close(&l);
    return TQ_OK;
}

/* The 24-configuration sweep: {kivi, turbo-mse, turbo-prod, polar} x bits {2, 3, 4} x --recent {0, 32}, the
 * reference pass once, as `tq perplexity ... --methods kivi,turbo-mse,turbo-prod,polar --bits 2-4 --recent 0,32`. */
static int sweep_section(FILE *f, int T, int threads)
{
    loop l;
    int rc = loop_open(&l, "smollm2", T);
    if (rc < 0) {
        loop_close(&l);
        return rc;
    }
    const int methods[4] = {TQ_M_KIVI, TQ_M_TURBO_MSE, TQ_M_TURBO_PROD, TQ_M_POLAR};
    double w0 = now(), c0 = cpu_now(), wref = 0, worst = 0;
    rc = tq_ppl_reference(l.m, l.tok, T, l.prompt, l.chunk, &l.ref);
    wref = now() - w0;
    int n = 0;
    for (int mi = 0; mi < 4 && rc >= 0; mi++)
        for (int b = 2; b <= 4 && rc >= 0; b++)
            for (int rec = 0; rec <= 32 && rc >= 0; rec += 32) {
                tq_kvq_opts o = opts_of(methods[mi], b, TQ_ROT_DENSE, rec);
                tq_ppl_result r;
                double s, sc;
                rc = pass(&l, &o, &r, &s, &sc);
                worst = s > worst ? s : worst;
                n++;
            }
    double wall = now() - w0, cpu = cpu_now() - c0;
    if (rc >= 0) {
        fprintf(f, "## A 24-configuration perplexity sweep (SmolLM2-135M, %d tokens)\n\n", T);
        fprintf(f, "kivi, turbo-mse, turbo-prod, polar × bits 2, 3, 4 × `--recent 0,32` (dense rotation, seed 0, "
                   "keys and values), the reference pass computed once and shared — what `tq perplexity MODEL "
                   "--text " TEXT " --tokens %d --methods kivi,turbo-mse,turbo-prod,polar --bits 2-4 --recent 0,32` "
                   "runs after loading. %d BLAS thread(s).\n\n", T, threads);
        fprintf(f, "| configurations | wall (s) | CPU (s) | reference pass (s) | per configuration (s, mean) | "
                   "slowest (s) |\n|---:|---:|---:|---:|---:|---:|\n");
        fprintf(f, "| %d | %.1f | %.1f | %.2f | %.2f | %.2f |\n\n", n, wall, cpu, wref, (wall - wref) / n, worst);
        fprintf(stderr, "  sweep of %d: %.1f s wall, %.1f s CPU\n", n, wall, cpu);
    }
    loop_close(&l);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = 3, threads = 1, gemma = 1, only = -1;
    const char *out = "results/bench/closed_loop.md";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--skip-gemma")) {
            gemma = 0;
            continue;
        }
        if (v && !strcmp(a, "--reps") && (reps = atoi(v)) >= 1 && reps <= MAXR) {
            i++;
            continue;
        }
        if (v && !strcmp(a, "--threads") && (threads = atoi(v)) >= 1 && threads <= 256) {
            i++;
            continue;
        }
        if (v && !strcmp(a, "--only") && tq_format_by_name(v)) {
            only = tq_format_by_name(v)->method;
            i++;
            continue;
        }
        if (v && !strcmp(a, "-o") && *v) {
            out = v;
            i++;
            continue;
        }
        fprintf(stderr, "bench_closed_loop: bad option or value '%s'\n%s", a, usage);
        return 2;
    }
    tq_model_set_threads(threads);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "bench_closed_loop: cannot write '%s'\n", tmp);
        return 1;
    }
    fprintf(f, "# Closed-loop benchmarks (`make bench`, eval/bench_closed_loop.c)\n\n"
               "Measured on the shared development machine (2 cores shared by ~6 agents running builds and tests "
               "at the same time): expect run-to-run variation of tens of percent; the ratios come from passes "
               "alternated in one process, so both sides see the same load.\n\n");
    const tq_kvq_opts smol[] = {
        opts_of(TQ_M_TURBO_MSE, 3, TQ_ROT_DENSE, 0), opts_of(TQ_M_TURBO_MSE, 3, TQ_ROT_HADAMARD, 0),
        opts_of(TQ_M_TURBO_PROD, 3, TQ_ROT_DENSE, 0), opts_of(TQ_M_POLAR, 3, TQ_ROT_DENSE, 0),
        opts_of(TQ_M_KIVI, 2, 0, 32), opts_of(TQ_M_INT8, 8, 0, 0),
    };
    const tq_kvq_opts gem[] = {opts_of(TQ_M_TURBO_MSE, 3, TQ_ROT_DENSE, 0), opts_of(TQ_M_TURBO_PROD, 3, TQ_ROT_DENSE, 0),
                               opts_of(TQ_M_POLAR, 3, TQ_ROT_DENSE, 0)};
    /* --only: keep one method's configurations (a quick before/after of one quantizer's cost) */
    tq_kvq_opts s1[6], g1[3];
    int ns = 0, ng = 0;
    for (int c = 0; c < 6; c++)
        if (only < 0 || smol[c].cfg.k.method == only) s1[ns++] = smol[c];
    for (int c = 0; c < 3; c++)
        if (only < 0 || gem[c].cfg.k.method == only) g1[ng++] = gem[c];
    int rc = ns ? ratio_section(f, "smollm2", 512, s1, ns, reps, threads) : TQ_OK;
    if (rc >= 0 && gemma && ng) rc = ratio_section(f, "gemma3", 256, g1, ng, reps, threads);
    if (rc >= 0 && only < 0) rc = sweep_section(f, 512, threads);
    if (rc < 0) {
        fprintf(stderr, "bench_closed_loop: %s\n", tq_error_msg());
        fclose(f);
        remove(tmp);
        return 1;
    }
    if (fclose(f) != 0 || rename(tmp, out) != 0) {
        fprintf(stderr, "bench_closed_loop: cannot write '%s'\n", out);
        remove(tmp);
        return 1;
    }
    fprintf(stderr, "bench_closed_loop: wrote %s\n", out);
    return 0;
}
