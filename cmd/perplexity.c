/* perplexity.c: `tq perplexity` — the closed loop. The model runs teacher-forced over a text with its KV cache
 * quantized by the shared quantizer core (lib/kvquant.h) under every configuration of the sweep axes, against the
 * reference cache computed once: ppl, ppl_ref, dppl_pct, mean KL(p_ref || p_q), top-1 agreement, bits_total. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "closedloop.h"
#include "cmd.h"
#include "cuda/tq_cuda.h"
#include "gguf.h"
#include "kvquant.h"
#include "mpi_work.h"
#include "options.h"
#include "report.h"
#include "tokenizer.h"
#include "vocab.h"

typedef struct {
    cl_axes_args cl;
    const char *text, *fmt, *outp, *per_pos, *per_layer, *cuda_attn, *resume, *gpu_weights;
    int tokens, threads, prompt, chunk, np, invariant;
    const char **pos;
} ppl_args;

typedef struct {
    tq_model *m;
    int32_t *tok;
    int T;
    cl_set set;             /* the runs: configurations x seeds x prefill x recent (cmd/closedloop.h) */
    tq_ppl_result *r;       /* one per run */
    int gpu;                /* --device cuda: the model loop on the GPU (lib/kvquant.h tq_ppl_run_cuda) */
    double *tok_s, tok_s_ref; /* GPU: decode steps per second of each run and of the fp16-cache reference */
} ppl_job;

static void ppl_parse(ppl_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        CL_AXES_OPTS(&a->cl),
        OPT_INT_("--prompt", &a->prompt, "N", NULL, 1, 1 << 30, "prompt (first chunk) tokens (default T/4, "
                 "a multiple of 32)"),
        OPT_GROUP_("input, run and output:"),
        OPT_STR_("--text", &a->text, "FILE", NULL, "the text (required)"),
        OPT_INT_("--tokens", &a->tokens, "N", NULL, 2, 1 << 24, "first N tokens of the text (default all)"),
        OPT_INT_("--chunk", &a->chunk, "N", "32", 1, 4096, "tokens per forward call after the prompt"),
        OPT_INT_("--threads", &a->threads, "N", "0", 0, 1024, "BLAS threads (0: as set)"),
        OPT_FLAG_("--batch-invariant", &a->invariant, "fixed-order matmuls: --chunk 1 (decoding) gives the same "
                  "numbers as any chunk (slower)"),
        OPT_STR_("--device", &a->cl.device, "cpu|cuda", NULL, "cuda: the whole model loop on the GPU, the cache as\n"
                 "packed codes read by the fused kernels, against an fp16 cache (default cpu)"),
        OPT_STR_("--cuda-attn", &a->cuda_attn, "NAME", NULL, "--device cuda: the attention kernels' variant (auto,\n"
                 "fast: the fused small-batch and d = 64/256 tensor-core paths; tq bench --variant attn=...)"),
        OPT_STR_("--gpu-weights", &a->gpu_weights, "fp16|fp32", NULL, "--device cuda: the weights on the GPU: fp16\n"
                 "(default: half the bytes a step) or fp32 with an fp32 reference cache (the CPU's numbers, for checks)"),
        OPT_STR_("--per-position", &a->per_pos, "FILE", NULL, "CSV: run, position, kl, dlogp per position"),
        OPT_STR_("--per-layer", &a->per_layer, "FILE", NULL, "CSV: run, layer, in-loop attn_kl, out_rel, top8, "
                 "entropies per layer"),
        OPT_STR_("--format", &a->fmt, "md|csv|json", NULL, "report format (default Markdown; -o picks by name)"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "write the report to FILE (default stdout)"),
        OPT_STR_("--resume", &a->resume, "FILE", NULL, "MPI (mpirun/srun): record finished units in FILE; rerun the same\ncommand with it to skip them (README \"Scaling out\")"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {"perplexity", "perplexity MODEL.gguf --text FILE [options]",
                              "Teacher-forced perplexity of the model with its KV cache quantized, one row per\n"
                              "configuration, against the reference cache (README \"Closed loop\").", opts, NULL};
    a->pos = calloc((size_t)argc, sizeof *a->pos);
    if (!a->pos) die("out of memory");
    a->np = opt_parse(&spec, argc, argv, a->pos);
    if (a->resume) mpi_resume_set(a->resume, argc, argv);
    if (a->np != 1) die_usage("perplexity: want one MODEL.gguf (see 'tq perplexity --help')");
    if (!a->text) die_usage("perplexity: --text FILE is required");
    if (a->gpu_weights && strcmp(a->gpu_weights, "fp16") && strcmp(a->gpu_weights, "fp32"))
        die_usage("perplexity: --gpu-weights '%s': fp16 or fp32", a->gpu_weights);
    if (a->gpu_weights && (!a->cl.device || strcmp(a->cl.device, "cuda")))
        die_usage("perplexity: --gpu-weights needs --device cuda");
    const char *in[3] = {a->pos[0], a->text, a->cl.sched_path};
    if (a->outp) check_output(a->outp, in, 3);
    if (a->per_pos) check_output(a->per_pos, in, 3);
    if (a->per_layer) check_output(a->per_layer, in, 3);
}

/* model first (an unsupported architecture is the message to give), then the text's tokens */
static void ppl_load(ppl_job *j, const ppl_args *a)
{
    int rc;
    tq_model_set_threads(a->threads);
    if ((rc = tq_model_load(a->pos[0], &j->m)) < 0) die_lib(rc, "perplexity");
    tq_model_set_batch_invariant(j->m, a->invariant);
    size_t len;
    char *text = cl_read_file("perplexity", a->text, &len);
    tq_gguf *g;
    tq_tokenizer *tok;
    if ((rc = tq_gguf_open(a->pos[0], &g)) < 0) die_lib(rc, "perplexity");
    if ((rc = tq_tokenizer_from_gguf(g, &tok)) < 0) die_lib(rc, "perplexity");
    if ((rc = tq_tokenize(tok, text, len, TQ_TOKENIZE_ADD_SPECIAL, &j->tok, &j->T)) < 0) die_lib(rc, "perplexity");
    tq_tokenizer_free(tok);
    tq_gguf_close(g);
    free(text);
    if (j->T < 2) die("perplexity: '%s' gives %d token(s); perplexity needs at least 2", a->text, j->T);
    if (a->tokens && j->T < a->tokens)
        die("perplexity: '%s' gives %d tokens, fewer than --tokens %d", a->text, j->T, a->tokens);
    if (a->tokens) j->T = a->tokens;
}

/* the default prompt, then the runs (each checked against the model now) */
static void ppl_build(ppl_job *j, ppl_args *a)
{
    if (!a->prompt) { /* a quarter of the text, on the 32-token grid when it can be */
        int q = j->T / 4;
        a->prompt = q >= 32 ? q / 32 * 32 : (q ? q : 1);
    }
    if (a->prompt >= j->T) die_usage("perplexity: --prompt %d leaves no token after it (%d tokens)", a->prompt, j->T);
    cl_build(&j->set, &a->cl, j->m, "perplexity", a->pos[0], a->prompt);
    j->r = calloc((size_t)j->set.n_runs + 1, sizeof *j->r);
    if (!j->r) die("out of memory");
}

/* the report: the model and its token count, the configuration columns, the numbers */
static void ppl_report(FILE *f, int fmt, const ppl_job *j, const ppl_args *a)
{
    /* --device cuda adds the decode speed of the run's GPU loop and of the fp16-cache GPU loop, and their ratio */
    static const char *const cols[] = {"model", "tokens", "method", "params", "values", "recent", "prefill",
                                       "keep_layers", "prompt", "seed", "bits_total", "ppl", "ppl_ref", "dppl_pct",
                                       "kl", "top1", "tok_s", "tok_s_fp16", "speedup"};
    const char *base = strrchr(a->pos[0], '/');
    char T[16];
    snprintf(T, sizeof T, "%d", j->T);
    cl_table t;
    cl_table_begin(f, &t, fmt, "tq_perplexity", cols, j->gpu ? 19 : 16, 2 + CL_N_CONFIG,
                   j->gpu ? "---|---:|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                          : "---|---:|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (int k = 0; k < j->set.n_runs; k++) {
        char c[CL_N_CONFIG][200];
        cl_config_cells(&j->set, &j->set.runs[k], c);
        const char *tx[2 + CL_N_CONFIG] = {base ? base + 1 : a->pos[0], T};
        for (int i = 0; i < CL_N_CONFIG; i++) tx[2 + i] = c[i];
        const tq_ppl_result *r = &j->r[k];
        double num[9] = {r->bits_total, r->ppl, r->ppl_ref, 100.0 * (r->ppl / r->ppl_ref - 1.0), r->kl, r->top1,
                         j->gpu ? j->tok_s[k] : 0, j->tok_s_ref, j->gpu ? j->tok_s[k] / j->tok_s_ref : 0};
        cl_table_row(f, &t, tx, num);
    }
    cl_table_end(f, &t);
}

static void ppl_per_position(const ppl_job *j, const char *path)
{
    FILE *f = out_open(path);
    fprintf(f, "run,method,params,values,recent,prefill,seed,position,kl,dlogp\n");
    for (int k = 0; k < j->set.n_runs; k++) {
        const cl_run *u = &j->set.runs[k];
        const char *kd = u->o.cfg.kdesc, *comma = strchr(kd, ',');
        for (int t = 0; t < j->T - 1; t++)
            fprintf(f, "%d,%.*s,\"%s\",\"%s\",%d,%s,%llu,%d,%.9g,%.9g\n", k, comma ? (int)(comma - kd) : (int)strlen(kd),
                    kd, comma ? comma + 1 : "", u->o.cfg.v.method < 0 ? "none" : u->o.cfg.vdesc, u->o.recent,
                    u->o.prefill_fp16 ? "fp16" : "quantized", (unsigned long long)u->seed, t, j->r[k].pos_kl[t],
                    j->r[k].pos_dlogp[t]);
    }
    out_commit(f, path);
}

/* MPI (cmd/mpi_work.h): one unit per run; its result travels as 7 doubles, then with --per-position the two [T-1]
 * curves. Every rank computed the same reference (same binary, same BLAS threads), so rank 0's rows are one
 * process's rows. */
typedef struct { ppl_job *j; const ppl_args *a; const float *ref; } ppl_mpi;

static int ppl_unit(void *ctx, long k, void *out)
{
    const ppl_mpi *c = ctx;
    cl_run *u = &c->j->set.runs[k];
    tq_ppl_result r;
    if (c->a->per_layer) { /* the per-layer curves do not travel yet */
        tq_error_set(TQ_ERR_USAGE, "--per-layer runs in one process (not under mpirun)");
        return TQ_ERR_USAGE;
    }
    int rc = tq_ppl_run(c->j->m, &u->o, c->j->tok, c->j->T, c->a->prompt, tq_kvq_grid(&u->o, c->a->chunk), c->ref,
                        c->a->per_pos != NULL, NULL, &r);
    if (rc < 0) return rc;
    double *d = out, v[7] = {r.ppl, r.ppl_ref, r.kl, r.top1, r.bits_total, r.nll, r.nll_ref};
    size_t P = (size_t)c->j->T - 1;
    memcpy(d, v, sizeof v);
    if (c->a->per_pos) memcpy(d + 7, r.pos_kl, P * sizeof *d), memcpy(d + 7 + P, r.pos_dlogp, P * sizeof *d);
    tq_ppl_result_free(&r);
    return TQ_OK;
}

static void ppl_unit_name(void *ctx, long k, char *buf, size_t n)
{
    const ppl_mpi *c = ctx;
    const cl_run *u = &c->j->set.runs[k];
    snprintf(buf, n, "run %ld: %.100s, seed %llu, recent %d, prefill %s", k, u->o.cfg.kdesc,
             (unsigned long long)u->seed, u->o.recent, u->o.prefill_fp16 ? "fp16" : "quantized");
}

static void ppl_distribute(ppl_job *j, const ppl_args *a, const float *ref)
{
    ppl_mpi c = {j, a, ref};
    size_t P = (size_t)j->T - 1, nd = 7 + (a->per_pos ? 2 * P : 0);
    double *res = calloc((size_t)j->set.n_runs * nd + 1, sizeof *res);
    if (!res) die("out of memory");
    mpi_work w = {.n = j->set.n_runs, .bytes = nd * sizeof *res, .run = ppl_unit, .name = ppl_unit_name, .ctx = &c,
                  .device = cli_device("perplexity", a->cl.device)};
    mpi_run(&w, res); /* rank 0 only returns */
    for (int k = 0; k < j->set.n_runs; k++) {
        const double *d = res + (size_t)k * nd;
        tq_ppl_result *r = &j->r[k];
        *r = (tq_ppl_result){.ppl = d[0], .ppl_ref = d[1], .kl = d[2], .top1 = d[3], .bits_total = d[4],
                             .nll = d[5], .nll_ref = d[6]};
        if (!a->per_pos) continue;
        if (!(r->pos_kl = malloc(P * sizeof *d)) || !(r->pos_dlogp = malloc(P * sizeof *d))) die("out of memory");
        memcpy(r->pos_kl, d + 7, P * sizeof *d);
        memcpy(r->pos_dlogp, d + 7 + P, P * sizeof *d);
    }
    free(res);
}

/* --per-layer: one row per (run, layer), the in-loop attention metrics (lib/kvquant.h tq_kvq_track_layers) */
static void ppl_per_layer(const ppl_job *j, const char *path)
{
    FILE *f = out_open(path);
    fprintf(f, "run,method,params,values,recent,prefill,seed,layer,attn_kl,out_rel,top8,entropy,entropy_q,rows\n");
    for (int k = 0; k < j->set.n_runs; k++) {
        const cl_run *u = &j->set.runs[k];
        const tq_ppl_result *r = &j->r[k];
        const char *kd = u->o.cfg.kdesc, *comma = strchr(kd, ',');
        for (int l = 0; l < r->n_layers; l++) {
            const tq_attn_stats *a = &r->layer[l];
            fprintf(f, "%d,%.*s,\"%s\",\"%s\",%d,%s,%llu,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%ld\n", k,
                    comma ? (int)(comma - kd) : (int)strlen(kd), kd, comma ? comma + 1 : "",
                    u->o.cfg.v.method < 0 ? "none" : u->o.cfg.vdesc, u->o.recent,
                    u->o.prefill_fp16 ? "fp16" : "quantized", (unsigned long long)u->seed, l, a->attn_kl, a->out_rel,
                    a->top8, a->entropy, a->entropy_q, a->rows);
        }
    }
    out_commit(f, path);
}

/* the CPU loop: the reference pass, then every run (shared over MPI ranks when under mpirun) */
static void ppl_cpu(ppl_job *j, const ppl_args *a)
{
    int rc;
    float *ref;
    if ((rc = tq_ppl_reference(j->m, j->tok, j->T, a->prompt, a->chunk, &ref)) < 0) die_lib(rc, "perplexity");
    tq_progress pg;
    progress_start(&pg, "perplexity", j->set.n_runs);
    if (mpi_active()) ppl_distribute(j, a, ref);
    for (int k = 0; !mpi_active() && k < j->set.n_runs; k++) {
        cl_run *u = &j->set.runs[k];
        int chunk = tq_kvq_grid(&u->o, a->chunk);
        int flags = (a->per_pos ? TQ_PPL_PER_POSITION : 0) | (a->per_layer ? TQ_PPL_PER_LAYER : 0);
        if ((rc = tq_ppl_run(j->m, &u->o, j->tok, j->T, a->prompt, chunk, ref, flags, NULL, &j->r[k])) < 0)
            die_lib(rc, "perplexity");
        progress_step(&pg, 1);
    }
    progress_end(&pg);
    free(ref);
}

/* --device cuda: the model itself on the GPU (lib/cuda/tq_cuda.h's model loop), weights uploaded once as fp16;
 * the reference is the same loop with an fp16 cache, every run the loop with its packed cache. Each pass is T
 * decode steps of one token (teacher forcing), so --prompt and --chunk change nothing here. */
static void ppl_gpu(ppl_job *j, const ppl_args *a)
{
    if (mpi_active()) die_usage("perplexity: the GPU model loop runs in one process (not under mpirun)");
    if (a->per_layer) die_usage("perplexity: --per-layer reads the cache on the host; use --device cpu for it");
    if (a->invariant)
        die_usage("perplexity: --batch-invariant is a CPU option (the GPU loop decodes one token a step)");
    int rc;
    for (int k = 0; k < j->set.n_runs; k++)
        if ((rc = tq_kvq_cuda_supports(&j->set.runs[k].o, j->m)) < 0) die_lib(rc, "perplexity");
    if (a->cuda_attn && (rc = tq_cuda_variant_set("attn", a->cuda_attn)) < 0) die_lib(rc, "perplexity --cuda-attn");
    tq_cuda_model *g;
    if ((rc = tq_cuda_model_create(j->m, a->gpu_weights && !strcmp(a->gpu_weights, "fp32"), &g)) < 0)
        die_lib(rc, "perplexity --device cuda");
    j->tok_s = calloc((size_t)j->set.n_runs + 1, sizeof *j->tok_s);
    if (!j->tok_s) die("out of memory");
    float *ref;
    double secs;
    if ((rc = tq_ppl_reference_cuda(j->m, g, j->tok, j->T, &ref, &secs)) < 0) die_lib(rc, "perplexity");
    j->tok_s_ref = j->T / secs;
    tq_progress pg;
    progress_start(&pg, "perplexity", j->set.n_runs);
    int flags = a->per_pos ? TQ_PPL_PER_POSITION : 0;
    for (int k = 0; k < j->set.n_runs; k++) {
        if ((rc = tq_ppl_run_cuda(j->m, g, &j->set.runs[k].o, j->tok, j->T, ref, flags, NULL, &j->r[k], &secs)) < 0)
            die_lib(rc, "perplexity");
        j->tok_s[k] = j->T / secs;
        progress_step(&pg, 1);
    }
    progress_end(&pg);
    free(ref);
    tq_cuda_model_free(g);
    tq_cuda_release();
}

int cmd_perplexity(int argc, char **argv)
{
    ppl_args a = {0};
    ppl_parse(&a, argc, argv);
    int fmt = report_format(a.fmt, a.outp);
    ppl_job j = {0};
    ppl_load(&j, &a);
    ppl_build(&j, &a);
    j.gpu = cli_device("perplexity", a.cl.device) == TQ_DEVICE_CUDA;
    if (j.gpu) ppl_gpu(&j, &a);
    else ppl_cpu(&j, &a);
    if (a.per_pos) ppl_per_position(&j, a.per_pos);
    if (a.per_layer) ppl_per_layer(&j, a.per_layer);
    FILE *f = a.outp && strcmp(a.outp, "-") ? out_open(a.outp) : stdout;
    ppl_report(f, fmt, &j, &a);
    if (f != stdout) out_commit(f, a.outp);
    for (int k = 0; k < j.set.n_runs; k++) tq_ppl_result_free(&j.r[k]);
    free(j.r);
    free(j.tok_s);
    cl_set_free(&j.set);
    free(j.tok);
    free(a.pos);
    tq_model_free(j.m);
    return 0;
}
