/* perplexity.c: `tq perplexity` — the closed loop. The model runs teacher-forced over a text with its KV cache
 * quantized by the shared quantizer core (lib/kvquant.h) under every configuration of the sweep axes, against the
 * reference cache computed once: ppl, ppl_ref, dppl_pct, mean KL(p_ref || p_q), top-1 agreement, bits_total. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "evalcli.h"
#include "gguf.h"
#include "kvquant.h"
#include "options.h"
#include "report.h"
#include "tokenizer.h"
#include "vocab.h"

typedef struct {
    cli_axes ax;
    const char *text, *fmt, *outp, *seeds, *recent, *prefill, *keep, *sched_path, *device, *per_pos, *per_layer;
    int tokens, threads, prompt, chunk, np, invariant;
    const char **pos;
} ppl_args;

typedef struct {            /* one row: a configuration under one (seed, prefill, recent) */
    tq_kvq_opts o;
    uint64_t seed;
    tq_ppl_result r;
} ppl_run;

typedef struct {
    tq_model *m;
    int32_t *tok;
    int T, n_runs;
    ppl_run *runs;
    unsigned char *keep;
    tq_schedule *sched;
    tq_eval_configs *cs;
    int n_cs;
} ppl_job;

static void ppl_parse(ppl_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        OPT_GROUP_("configuration axes (cartesian product, as tq sweep):"),
        OPT_STR_("--methods", &a->ax.methods, "LIST", "turbo-mse", tq_vocab_list(TQ_VOCAB_METHOD, ",")),
        OPT_STR_("--bits", &a->ax.bits, "LIST", NULL, "code bits, e.g. 2-4 (default 2-4)"),
        OPT_STR_("--rotation", &a->ax.rotation, "LIST", NULL, "dense,hadamard,none (default dense)"),
        OPT_STR_("--codebook", &a->ax.codebook, "LIST", NULL, "beta,gaussian (default beta)"),
        OPT_STR_("--center", &a->ax.center, "LIST", NULL, "off,on: key-mean removal, mean frozen on the prompt"),
        OPT_STR_("--outliers", &a->ax.outliers, "LIST", NULL, "0 only in the closed loop (no streaming definition)"),
        OPT_STR_("--values", &a->ax.values, "SPEC", NULL, "same (default), none (keys only), METHOD:BITS"),
        OPT_STR_("--seed", &a->seeds, "LIST", "0", "quantizer seeds, e.g. 0-4 (one row each)"),
        OPT_STR_("--schedule", &a->sched_path, "FILE", NULL, "bits per layer / kv head (tq mixed-schedule)"),
        OPT_GROUP_("cache knobs (axes too):"),
        OPT_STR_("--recent", &a->recent, "LIST", "0", "blocks of N newest tokens kept fp16 (KIVI residual), e.g. "
                 "0,32"),
        OPT_STR_("--prefill", &a->prefill, "LIST", "quantized", "fp16,quantized: the prompt's K/V exact or "
                 "quantized"),
        OPT_STR_("--keep-layers", &a->keep, "SPEC", NULL, "layers left exact: a list (0,29), all, none"),
        OPT_INT_("--prompt", &a->prompt, "N", NULL, 1, 1 << 30, "prompt (first chunk) tokens (default T/4, "
                 "a multiple of 32)"),
        OPT_GROUP_("input, run and output:"),
        OPT_STR_("--text", &a->text, "FILE", NULL, "the text (required)"),
        OPT_INT_("--tokens", &a->tokens, "N", NULL, 2, 1 << 24, "first N tokens of the text (default all)"),
        OPT_INT_("--chunk", &a->chunk, "N", "32", 1, 4096, "tokens per forward call after the prompt"),
        OPT_INT_("--threads", &a->threads, "N", "0", 0, 1024, "BLAS threads (0: as set)"),
        OPT_FLAG_("--batch-invariant", &a->invariant, "fixed-order matmuls: --chunk 1 (decoding) gives the same "
                  "numbers as any chunk (slower)"),
        OPT_STR_("--device", &a->device, "cpu|cuda", NULL, "where rows are round-tripped (default cpu)"),
        OPT_STR_("--per-position", &a->per_pos, "FILE", NULL, "CSV: run, position, kl, dlogp per position"),
        OPT_STR_("--per-layer", &a->per_layer, "FILE", NULL, "CSV: run, layer, in-loop attn_kl, out_rel, top8, "
                 "entropies per layer"),
        OPT_STR_("--format", &a->fmt, "md|csv|json", NULL, "report format (default Markdown; -o picks by name)"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "write the report to FILE (default stdout)"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {"perplexity", "perplexity MODEL.gguf --text FILE [options]",
                              "Teacher-forced perplexity of the model with its KV cache quantized, one row per\n"
                              "configuration, against the reference cache (README \"Closed loop\").", opts, NULL};
    a->pos = calloc((size_t)argc, sizeof *a->pos);
    if (!a->pos) die("out of memory");
    a->np = opt_parse(&spec, argc, argv, a->pos);
    if (a->np != 1) die_usage("perplexity: want one MODEL.gguf (see 'tq perplexity --help')");
    if (!a->text) die_usage("perplexity: --text FILE is required");
    const char *in[3] = {a->pos[0], a->text, a->sched_path};
    if (a->outp) check_output(a->outp, in, 3);
    if (a->per_pos) check_output(a->per_pos, in, 3);
    if (a->per_layer) check_output(a->per_layer, in, 3);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("perplexity: cannot read '%s'", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) die("perplexity: out of memory reading '%s'", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        buf = realloc(buf, cap *= 2);
    }
    int err = ferror(f);
    fclose(f);
    if (err) die("perplexity: cannot read '%s'", path);
    *len = n;
    return buf;
}

/* model first (an unsupported architecture is the message to give), then the text's tokens */
static void ppl_load(ppl_job *j, const ppl_args *a)
{
    int rc;
    tq_model_set_threads(a->threads);
    if ((rc = tq_model_load(a->pos[0], &j->m)) < 0) die_lib(rc, "perplexity");
    tq_model_set_batch_invariant(j->m, a->invariant);
    size_t len;
    char *text = read_all(a->text, &len);
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

/* --keep-layers: all, none or a list */
static unsigned char *keep_layers(const char *spec, int L, const char *model)
{
    if (!spec || !strcmp(spec, "none")) return NULL;
    unsigned char *k = calloc((size_t)L, 1);
    if (!k) die("out of memory");
    if (!strcmp(spec, "all")) {
        memset(k, 1, (size_t)L);
        return k;
    }
    int *l, n = parse_list("--keep-layers", spec, 0, L - 1, model, &l);
    for (int i = 0; i < n; i++) k[l[i]] = 1;
    free(l);
    return k;
}

/* prefill and recent lists, seeds: the runs are configs x seeds x prefill x recent, each checked now */
static void ppl_build(ppl_job *j, ppl_args *a)
{
    const tq_model_config *mc = tq_model_get_config(j->m);
    int *seeds, *rec, npf = 0;
    int ns = parse_list("--seed", a->seeds, 0, 2147483647L, NULL, &seeds);
    int nr = parse_list("--recent", a->recent, 0, 1 << 24, NULL, &rec);
    char **pf = parse_names("--prefill", a->prefill, &npf);
    j->keep = keep_layers(a->keep, mc->n_layers, a->pos[0]);
    static char sbits[16];
    if (a->sched_path) {
        if (a->ax.bits) die_usage("options '--schedule' and '--bits' contradict each other: the schedule sets them");
        int rc = tq_schedule_load(&j->sched, a->sched_path);
        if (rc < 0) die_lib(rc, NULL);
        snprintf(sbits, sizeof sbits, "%d", tq_schedule_bits(j->sched, 0, 0, TQ_TENSOR_KEYS));
        a->ax.bits = sbits;
    }
    if (!a->ax.bits) a->ax.bits = "2-4";
    if (!a->prompt) { /* a quarter of the text, on the 32-token grid when it can be */
        int q = j->T / 4;
        a->prompt = q >= 32 ? q / 32 * 32 : (q ? q : 1);
    }
    if (a->prompt >= j->T) die_usage("perplexity: --prompt %d leaves no token after it (%d tokens)", a->prompt, j->T);
    j->cs = calloc((size_t)ns, sizeof *j->cs);
    j->runs = calloc((size_t)ns * 64 * (size_t)npf * nr + 1, sizeof *j->runs);
    for (int s = 0; s < ns; s++) {
        cli_configs(&j->cs[s], &a->ax, (uint64_t)seeds[s], mc->head_dim, cli_device("perplexity", a->device));
        j->n_cs++;
        j->runs = realloc(j->runs, ((size_t)j->n_runs + (size_t)j->cs[s].n * npf * nr + 1) * sizeof *j->runs);
        for (int c = 0; c < j->cs[s].n; c++)
            for (int p = 0; p < npf; p++)
                for (int r = 0; r < nr; r++) {
                    if (strcmp(pf[p], "fp16") && strcmp(pf[p], "quantized"))
                        die_usage("option '--prefill': want fp16, quantized or both, got '%s'", pf[p]);
                    ppl_run *u = &j->runs[j->n_runs++];
                    memset(u, 0, sizeof *u);
                    u->o = (tq_kvq_opts){.cfg = j->cs[s].cfg[c], .sched = j->sched, .recent = rec[r],
                                         .keep = j->keep, .prefill_fp16 = !strcmp(pf[p], "fp16"),
                                         .prompt = a->prompt, .device = cli_device("perplexity", a->device)};
                    u->seed = (uint64_t)seeds[s];
                    tq_kvq *q;
                    int rc = tq_kvq_create(&u->o, j->m, &q);
                    if (rc < 0) die_lib(rc, "perplexity");
                    tq_kvq_free(q);
                }
    }
    free(seeds);
    free(rec);
    free(pf);
}

/* one row's cells (a run's configuration and its numbers) */
static const char *const cols[] = {"model", "tokens", "method", "params", "values", "recent", "prefill",
                                   "keep_layers", "prompt", "seed", "bits_total", "ppl", "ppl_ref", "dppl_pct",
                                   "kl", "top1"};
#define N_COLS 16
#define N_TEXT 10

static void cells(const ppl_job *j, const ppl_args *a, const ppl_run *u, char c[N_COLS][200], double *num)
{
    const char *base = strrchr(a->pos[0], '/');
    snprintf(c[0], 200, "%s", base ? base + 1 : a->pos[0]);
    snprintf(c[1], 200, "%d", j->T);
    const char *kd = u->o.cfg.kdesc, *comma = strchr(kd, ',');
    snprintf(c[2], 200, "%.*s", comma ? (int)(comma - kd) : (int)strlen(kd), kd);
    snprintf(c[3], 200, "%s", comma ? comma + 1 : "");
    if (j->sched) snprintf(c[3], 200, "bits=schedule");
    snprintf(c[4], 200, "%s", u->o.cfg.v.method < 0 ? "none" : u->o.cfg.vdesc);
    snprintf(c[5], 200, "%d", u->o.recent);
    snprintf(c[6], 200, "%s", u->o.prefill_fp16 ? "fp16" : "quantized");
    snprintf(c[7], 200, "%s", a->keep ? a->keep : "none");
    snprintf(c[8], 200, "%d", u->o.prompt);
    snprintf(c[9], 200, "%llu", (unsigned long long)u->seed);
    const tq_ppl_result *r = &u->r;
    double v[6] = {r->bits_total, r->ppl, r->ppl_ref, 100.0 * (r->ppl / r->ppl_ref - 1.0), r->kl, r->top1};
    memcpy(num, v, sizeof v);
}

static void ppl_report(FILE *f, int fmt, const ppl_job *j, const ppl_args *a)
{
    const char *sep = fmt == 1 ? "," : fmt == 0 ? " | " : ", ";
    if (fmt == 0) fputs("| ", f);
    if (fmt == 2) fputs("{\"tq_perplexity\": 1, \"rows\": [", f);
    for (int i = 0; fmt != 2 && i < N_COLS; i++) fprintf(f, "%s%s", i ? sep : "", cols[i]);
    if (fmt == 0) fputs(" |\n" "|---|---:|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|", f);
    for (int k = 0; k < j->n_runs; k++) {
        char c[N_COLS][200];
        double num[6];
        cells(j, a, &j->runs[k], c, num);
        fputs(fmt == 2 ? (k ? ",\n {" : "\n {") : fmt == 0 ? "\n| " : "\n", f);
        for (int i = 0; i < N_COLS; i++) {
            fputs(i ? sep : "", f);
            if (fmt == 2) fprintf(f, "\"%s\": ", cols[i]);
            if (i < N_TEXT && fmt == 2) json_str(f, c[i]);
            else if (i < N_TEXT) fputs(fmt == 1 && strchr(c[i], ',') ? "\"" : "", f), fputs(c[i], f),
                                 fputs(fmt == 1 && strchr(c[i], ',') ? "\"" : "", f);
            else if (fmt == 2) json_num(f, num[i - N_TEXT]);
            else fprintf(f, fmt == 0 ? "%.5g" : "%.9g", num[i - N_TEXT]);
        }
        fputs(fmt == 2 ? "}" : fmt == 0 ? " |" : "", f);
    }
    fputs(fmt == 2 ? "\n]}\n" : "\n", f);
}

static void ppl_per_position(const ppl_job *j, const char *path)
{
    FILE *f = out_open(path);
    fprintf(f, "run,method,params,values,recent,prefill,seed,position,kl,dlogp\n");
    for (int k = 0; k < j->n_runs; k++) {
        const ppl_run *u = &j->runs[k];
        const char *kd = u->o.cfg.kdesc, *comma = strchr(kd, ',');
        for (int t = 0; t < j->T - 1; t++)
            fprintf(f, "%d,%.*s,\"%s\",\"%s\",%d,%s,%llu,%d,%.9g,%.9g\n", k, comma ? (int)(comma - kd) : (int)strlen(kd),
                    kd, comma ? comma + 1 : "", u->o.cfg.v.method < 0 ? "none" : u->o.cfg.vdesc, u->o.recent,
                    u->o.prefill_fp16 ? "fp16" : "quantized", (unsigned long long)u->seed, t, u->r.pos_kl[t],
                    u->r.pos_dlogp[t]);
    }
    out_commit(f, path);
}

/* --per-layer: one row per (run, layer), the in-loop attention metrics (lib/kvquant.h tq_kvq_track_layers) */
static void ppl_per_layer(const ppl_job *j, const char *path)
{
    FILE *f = out_open(path);
    fprintf(f, "run,method,params,values,recent,prefill,seed,layer,attn_kl,out_rel,top8,entropy,entropy_q,rows\n");
    for (int k = 0; k < j->n_runs; k++) {
        const ppl_run *u = &j->runs[k];
        const char *kd = u->o.cfg.kdesc, *comma = strchr(kd, ',');
        for (int l = 0; l < u->r.n_layers; l++) {
            const tq_attn_stats *a = &u->r.layer[l];
            fprintf(f, "%d,%.*s,\"%s\",\"%s\",%d,%s,%llu,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%ld\n", k,
                    comma ? (int)(comma - kd) : (int)strlen(kd), kd, comma ? comma + 1 : "",
                    u->o.cfg.v.method < 0 ? "none" : u->o.cfg.vdesc, u->o.recent,
                    u->o.prefill_fp16 ? "fp16" : "quantized", (unsigned long long)u->seed, l, a->attn_kl, a->out_rel,
                    a->top8, a->entropy, a->entropy_q, a->rows);
        }
    }
    out_commit(f, path);
}

int cmd_perplexity(int argc, char **argv)
{
    ppl_args a = {0};
    ppl_parse(&a, argc, argv);
    int fmt = report_format(a.fmt, a.outp), rc;
    ppl_job j = {0};
    ppl_load(&j, &a);
    ppl_build(&j, &a);
    float *ref;
    if ((rc = tq_ppl_reference(j.m, j.tok, j.T, a.prompt, a.chunk, &ref)) < 0) die_lib(rc, "perplexity");
    tq_progress pg;
    progress_start(&pg, "perplexity", j.n_runs);
    for (int k = 0; k < j.n_runs; k++) {
        ppl_run *u = &j.runs[k];
        int chunk = tq_kvq_grid(&u->o, a.chunk);
        int flags = (a.per_pos ? TQ_PPL_PER_POSITION : 0) | (a.per_layer ? TQ_PPL_PER_LAYER : 0);
        if ((rc = tq_ppl_run(j.m, &u->o, j.tok, j.T, a.prompt, chunk, ref, flags, NULL, &u->r)) < 0)
            die_lib(rc, "perplexity");
        progress_step(&pg, 1);
    }
    progress_end(&pg);
    free(ref);
    if (a.per_pos) ppl_per_position(&j, a.per_pos);
    if (a.per_layer) ppl_per_layer(&j, a.per_layer);
    FILE *f = a.outp && strcmp(a.outp, "-") ? out_open(a.outp) : stdout;
    ppl_report(f, fmt, &j, &a);
    if (f != stdout) out_commit(f, a.outp);
    for (int k = 0; k < j.n_runs; k++) tq_ppl_result_free(&j.runs[k].r);
    for (int s = 0; s < j.n_cs; s++) tq_eval_configs_free(&j.cs[s]);
    free(j.cs);
    free(j.runs);
    free(j.keep);
    free(j.tok);
    free(a.pos);
    tq_schedule_free(j.sched);
    tq_model_free(j.m);
    return 0;
}
