/* bench_model_bound.c: the floor under `tq dump`'s forward pass on this CPU — OpenBLAS sgemm's rate measured at the
 * exact shapes a SmolLM2-135M dump of 1024 tokens multiplies (projections, FFN, blocked causal attention), times the
 * FLOPs the dump must do (every layer's Q/K/V; O and FFN of all layers but the last, whose output no dump reads; no
 * output head). Whatever else tq does (load, norms, softmax, writing) only adds to it. Writes results/bench/model_bound.md
 * (make bench) and prints one JSON line. usage: bench_model_bound [--threads N] [--out FILE|-] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

/* SmolLM2-135M (results/models/smollm2.md): 30 layers, hidden 576, 9 query / 3 kv heads of 64, FFN 1536. The query
 * block of lib/model.c's attention (QBLOCK) is 64 rows. */
enum { T = 1024, E = 576, H = 9, KV = 3, D = 64, F = 1536, LAYERS = 30, QB = 64 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *randn(size_t n, tq_rng *r)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_model_bound: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)(tq_rng_double(r) - 0.5);
    return p;
}

/* Best wall time of `reps` runs of Y[m][n] = X[m][k] W[n][k]^T (the weight matmuls' layout). */
static double time_proj(int m, int n, int k, int reps, tq_rng *r)
{
    float *x = randn((size_t)m * k, r), *w = randn((size_t)n * k, r), *y = randn((size_t)m * n, r);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    free(x);
    free(w);
    free(y);
    return best;
}

/* One layer's attention matmuls as lib/model.c issues them: per query head and 64-query block, scores against the
 * keys [0, block end) and the weighted sum of the values (softmax not included). Best of `reps`; *flops set. */
static double time_attention(int reps, tq_rng *r, double *flops)
{
    float *q = randn((size_t)T * H * D, r), *k = randn((size_t)T * D, r), *v = randn((size_t)T * D, r);
    float *sc = randn((size_t)QB * T, r), *o = randn((size_t)T * H * D, r);
    double best = 1e30;
    *flops = 0;
    for (int i = 0; i < reps; i++) {
        double t0 = now(), fl = 0;
        for (int h = 0; h < H; h++)
            for (int t0b = 0; t0b < T; t0b += QB) {
                int S = t0b + QB;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, QB, S, D, 0.125f, q + (size_t)t0b * H * D + h * D,
                            H * D, k, D, 0.0f, sc, S);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, QB, D, S, 1.0f, sc, S, v, D, 0.0f,
                            o + (size_t)t0b * H * D + h * D, H * D);
                fl += 4.0 * QB * S * D;
            }
        double dt = now() - t0;
        best = dt < best ? dt : best;
        *flops = fl;
    }
    free(q);
    free(k);
    free(v);
    free(sc);
    free(o);
    return best;
}

int main(int argc, char **argv)
{
    int threads = 1, reps = 15;
    const char *out = "results/bench/model_bound.md";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_model_bound [--threads N] [--reps R] [--out FILE|-]\n");
            return 2;
        }
    }
    if (threads < 1 || reps < 1) {
        fprintf(stderr, "bench_model_bound: --threads and --reps must be >= 1\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    tq_rng r;
    tq_rng_seed(&r, 14, 1);
    /* the shapes: rows = tokens, (out, in) of each weight, and how many layers the dump runs it in */
    struct {
        const char *name;
        int n, k, layers;
    } ops[] = {
        {"Q (576 -> 576)", H * D, E, LAYERS},
        {"K, V (576 -> 192, x2)", KV * D, E, 2 * LAYERS},
        {"O (576 -> 576)", E, H * D, LAYERS - 1},
        {"FFN gate, up (576 -> 1536, x2)", F, E, 2 * (LAYERS - 1)},
        {"FFN down (1536 -> 576)", E, F, LAYERS - 1},
    };
    int nops = (int)(sizeof ops / sizeof ops[0]);
    double tot_s = 0, tot_fl = 0, peak = 0;
    char rows[8][256];
    /* a large square product: the rate OpenBLAS reaches when the shape does not limit it */
    double tsq = time_proj(2048, 2048, 2048, 3, &r), sq_rate = 2.0 * 2048 * 2048 * 2048 / tsq / 1e9;
    for (int i = 0; i < nops; i++) {
        double s = time_proj(T, ops[i].n, ops[i].k, reps, &r), fl = 2.0 * T * ops[i].n * ops[i].k;
        double rate = fl / s / 1e9;
        peak = rate > peak ? rate : peak;
        tot_s += s * ops[i].layers;
        tot_fl += fl * ops[i].layers;
        snprintf(rows[i], sizeof rows[i], "| %s | %d x %d x %d | %d | %.2f | %.1f | %.3f |", ops[i].name, T, ops[i].n,
                 ops[i].k, ops[i].layers, fl * ops[i].layers / 1e9, rate, s * ops[i].layers);
    }
    double afl, as = time_attention(reps, &r, &afl);
    tot_s += as * LAYERS;
    tot_fl += afl * LAYERS;
    snprintf(rows[nops], sizeof rows[nops], "| attention QK^T, PV (9 heads, 64-query blocks) | 64 x S x 64, S <= 1024 | %d "
             "| %.2f | %.1f | %.3f |", LAYERS, afl * LAYERS / 1e9, afl / as / 1e9, as * LAYERS);
    double best = peak > sq_rate ? peak : sq_rate, floor_opt = tot_fl / 1e9 / best;
    printf("{\"threads\": %d, \"gflop\": %.2f, \"sgemm_floor_s\": %.3f, \"best_gflops\": %.1f, "
           "\"floor_at_best_s\": %.3f, \"square2048_gflops\": %.1f}\n", threads, tot_fl / 1e9, tot_s, best, floor_opt,
           sq_rate);
    if (strcmp(out, "-")) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        FILE *f = fopen(tmp, "w");
        if (!f) {
            fprintf(stderr, "bench_model_bound: cannot write '%s'\n", tmp);
            return 1;
        }
        fprintf(f, "# The sgemm floor under `tq dump` (eval/bench_model_bound.c, `make bench`)\n\n"
                   "OpenBLAS sgemm at the shapes a SmolLM2-135M dump of %d tokens multiplies, %d thread(s), best of %d "
                   "runs each (the 2-core development machine is shared with other jobs: a best-of is the closest to "
                   "its unloaded rate). Layers: how many times the dump needs the product (Q/K/V in all 30 layers; O "
                   "and FFN in 29, the last layer's feed nothing a dump reads; no output head).\n\n"
                   "| product | m x n x k | layers | GFLOP | GFLOP/s | seconds |\n|---|---|---:|---:|---:|---:|\n",
                T, threads, reps);
        for (int i = 0; i <= nops; i++) fprintf(f, "%s\n", rows[i]);
        fprintf(f, "| **total** | | | **%.1f** | %.1f | **%.2f** |\n\n", tot_fl / 1e9, tot_fl / tot_s / 1e9, tot_s);
        fprintf(f, "A 2048 x 2048 x 2048 sgemm runs at %.1f GFLOP/s here; the best rate any shape reached is %.1f. "
                   "The dump's %.1f GFLOP take %.2f s at the rates measured shape by shape, and %.2f s even if every "
                   "product ran at that best rate: **no float32 forward pass of this dump can take less than %.2f s "
                   "on this machine at %d thread(s)**, before loading the weights, norms, softmax and writing the "
                   "file.\n", sq_rate, best, tot_fl / 1e9, tot_s, floor_opt, floor_opt, threads);
        fclose(f);
        if (rename(tmp, out)) {
            fprintf(stderr, "bench_model_bound: cannot rename '%s' to '%s'\n", tmp, out);
            return 1;
        }
    }
    return 0;
}
