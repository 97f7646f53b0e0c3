/* generate.c: `tq generate` — the closed loop in generation. Each prompt is continued greedily (or by seeded
 * sampling) with the reference cache and with the cache quantized under every configuration of the sweep axes
 * (lib/generate.h): first divergence, equal tokens, next-token KL, both texts. --needle: passkey retrieval accuracy
 * per (depth, configuration), the reference cache as the first row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "closedloop.h"
#include "cmd.h"
#include "cuda/tq_cuda.h"
#include "generate.h"
#include "gguf.h"
#include "report.h"
#include "tokenizer.h"
#include "vocab.h"

typedef struct {
    cl_axes_args cl;
    const char *prompt, *prompts, *fmt, *outp, *per_pos, *depths;
    int tokens, threads, sample, chat, needle, context, max_context, trials, answer_tokens, np;
    double temperature, top_p;
    uint64_t gseed;
    const char **pos;
} gen_args;

typedef struct {
    tq_model *m;
    tq_tokenizer *tok;
    int chat_style, ctx_train;
    int32_t stops[2];
    int n_stops;
    cl_set set;
    const char *model;  /* base name */
    tq_cuda_model *gpu; /* --device cuda: the model loop on the GPU (lib/generate.h tq_gen_opts.cuda) */
} gen_job;

static void gen_parse(gen_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        CL_AXES_OPTS(&a->cl),
        OPT_GROUP_("generation:"),
        OPT_STR_("--prompt", &a->prompt, "TEXT", NULL, "the prompt"),
        OPT_STR_("--prompts", &a->prompts, "FILE", NULL, "one prompt per line (empty lines skipped)"),
        OPT_FLAG_("--chat", &a->chat, "wrap each prompt as a user turn of the model's chat template (ChatML,\n"
                  "Gemma), the answer after it; the template's end of turn stops generation"),
        OPT_INT_("--tokens", &a->tokens, "N", "64", 1, 1 << 20, "tokens to generate (an end-of-text token stops earlier)"),
        OPT_FLAG_("--sample", &a->sample, "sample instead of greedy: reference and quantized runs share the seeded\n"
                  "draws step for step"),
        OPT_DOUBLE_("--temperature", &a->temperature, "T", "0.8", 1e-3, 100, "sampling temperature"),
        OPT_DOUBLE_("--top-p", &a->top_p, "P", "0.95", 1e-6, 1, "nucleus mass kept when sampling"),
        OPT_U64_("--sample-seed", &a->gseed, "S", "0", "seed of the sampler's draws and of --needle's keys\n"
                 "(--seed is the quantizer's, an axis)"),
        OPT_GROUP_("passkey retrieval (--needle):"),
        OPT_FLAG_("--needle", &a->needle, "a 5-digit key hidden in filler text, asked for at the end; the chat\n"
                  "template is used when the model has one; greedy answer"),
        OPT_INT_("--context", &a->context, "N", NULL, 16, 1 << 20, "prompt tokens (default the model's context length,"
                 "\ncapped by --max-context)"),
        OPT_INT_("--max-context", &a->max_context, "N", "2048", 16, 1 << 20, "cap of the default --context"),
        OPT_STR_("--depths", &a->depths, "LIST", "0,25,50,75,100", "where the key sits, % of the filler"),
        OPT_INT_("--trials", &a->trials, "N", "20", 1, 1 << 20, "keys per (depth, configuration)"),
        OPT_INT_("--answer-tokens", &a->answer_tokens, "N", "10", 6, 256, "greedy tokens of the answer"),
        OPT_GROUP_("run and output:"),
        OPT_INT_("--threads", &a->threads, "N", "0", 0, 1024, "BLAS threads (0: as set)"),
        OPT_STR_("--device", &a->cl.device, "cpu|cuda", NULL, "cuda: the whole model loop on the GPU, the cache as\n"
                 "packed codes read by the fused kernels, the reference with an fp16 cache (default cpu)"),
        OPT_STR_("--per-position", &a->per_pos, "FILE", NULL, "CSV: KL (teacher-forced, free-running) and both\n"
                 "tokens at every step of every run"),
        OPT_STR_("--format", &a->fmt, "md|csv|json", NULL, "report format (default Markdown; -o picks by name)"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "write the report to FILE (default stdout)"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {"generate",
                              "generate MODEL.gguf (--prompt TEXT | --prompts FILE) [--tokens N] [options]\n"
                              "generate MODEL.gguf --needle [--context N --depths LIST --trials N] [options]",
                              "Generation with the KV cache quantized against the reference cache's continuation,\n"
                              "or passkey retrieval accuracy (README \"Closed loop\").", opts, NULL};
    a->pos = calloc((size_t)argc, sizeof *a->pos);
    if (!a->pos) die("out of memory");
    a->np = opt_parse(&spec, argc, argv, a->pos);
    if (a->np != 1) die_usage("generate: want one MODEL.gguf (see 'tq generate --help')");
    if (a->needle && (a->prompt || a->prompts)) die_usage("generate: --needle writes its own prompts; drop --prompt(s)");
    if (!a->needle && !!a->prompt == !!a->prompts) die_usage("generate: want one of --prompt TEXT or --prompts FILE");
    if (a->prompt && !*a->prompt) die_usage("generate: --prompt is empty");
    if (a->needle && a->sample) die_usage("generate: --needle answers greedily; drop --sample");
    const char *in[3] = {a->pos[0], a->prompts, a->cl.sched_path};
    if (a->outp) check_output(a->outp, in, 3);
    if (a->per_pos) check_output(a->per_pos, in, 3);
}

static void gen_load(gen_job *j, const gen_args *a)
{
    int rc;
    tq_model_set_threads(a->threads);
    if ((rc = tq_model_load(a->pos[0], &j->m)) < 0) die_lib(rc, "generate");
    tq_gguf *g;
    if ((rc = tq_gguf_open(a->pos[0], &g)) < 0) die_lib(rc, "generate");
    if ((rc = tq_tokenizer_from_gguf(g, &j->tok)) < 0) die_lib(rc, "generate");
    j->chat_style = tq_chat_style(g);
    char key[64];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.context_length", tq_model_get_config(j->m)->arch_name);
    j->ctx_train = tq_gguf_get_int(g, key, &v) == TQ_OK && v > 0 && v < (1 << 30) ? (int)v : 0;
    tq_gguf_close(g);
    const char *base = strrchr(a->pos[0], '/');
    j->model = base ? base + 1 : a->pos[0];
}

/* ---------- generate ---------- */

typedef struct {
    int32_t *ids;
    int n;
    tq_gen_output ref;
    char *ref_text;
} gen_prompt;

static char *detok(const gen_job *j, const int32_t *ids, int n)
{
    char *s;
    size_t len;
    int rc = tq_detokenize(j->tok, ids, n, 0, &s, &len);
    if (rc < 0) die_lib(rc, "generate");
    return s;
}

static gen_prompt *load_prompts(gen_job *j, const gen_args *a, int *np)
{
    size_t len = 0;
    char *buf = a->prompts ? cl_read_file("generate", a->prompts, &len) : NULL;
    const char *src = buf ? buf : a->prompt;
    int cap = 1;
    for (const char *p = src; *p; p++) cap += *p == '\n';
    gen_prompt *ps = calloc((size_t)cap, sizeof *ps);
    if (!ps) die("out of memory");
    *np = 0;
    for (const char *p = src; *p;) {
        const char *e = buf ? strchr(p, '\n') : NULL;
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *line = strndup(p, n);
        if (!line) die("out of memory");
        p += n + (e != NULL);
        if (buf && (!n || (n == 1 && line[0] == '\r'))) {
            free(line);
            continue;
        }
        if (buf && line[n - 1] == '\r') line[n - 1] = 0;
        gen_prompt *g = &ps[(*np)++];
        int rc = a->chat ? tq_chat_tokens(j->tok, j->chat_style, line, "", &g->ids, &g->n)
                         : tq_tokenize(j->tok, line, strlen(line), TQ_TOKENIZE_ADD_SPECIAL, &g->ids, &g->n);
        free(line);
        if (rc < 0) die_lib(rc, "generate");
        if (g->n < 1) die("generate: prompt %d gives no token", *np);
    }
    free(buf);
    if (!*np) die("generate: '%s' holds no prompt (one per line, empty lines skipped)", a->prompts);
    return ps;
}

/* report: opened only when every number is in, so a failed run leaves nothing (one pending file at a time) */
static FILE *report_open(const gen_args *a)
{
    return a->outp && strcmp(a->outp, "-") ? out_open(a->outp) : stdout;
}

static void report_close(FILE *f, const gen_args *a)
{
    if (f != stdout) out_commit(f, a->outp);
}

/* --per-position: each run's teacher-forced and free-running KL per generated step, beside both tokens. */
static void write_per_position(const gen_job *j, const char *path, const gen_prompt *ps, int np,
                               const tq_gen_result *res)
{
    int nr = j->set.n_runs;
    FILE *pf = out_open(path);
    fprintf(pf, "run,prompt_id,method,params,values,recent,prefill,seed,step,kl_tf,kl_free,ref_token,token\n");
    for (int p = 0; p < np; p++)
        for (int k = 0; k < nr; k++) {
            const tq_gen_result *r = &res[(size_t)p * nr + k];
            char c[CL_N_CONFIG][200];
            cl_config_cells(&j->set, &j->set.runs[k], c);
            for (int t = 0; t < r->n_ref; t++) {
                fprintf(pf, "%d,%d,%s,\"%s\",\"%s\",%s,%s,%s,%d,%.9g,", k, p, c[0], c[1], c[2], c[3], c[4], c[7],
                        t, r->pos_kl_tf[t]);
                if (t < r->n) fprintf(pf, "%.9g,%d,%d\n", r->pos_kl_free[t], ps[p].ref.tokens[t], r->tokens[t]);
                else fprintf(pf, ",%d,\n", ps[p].ref.tokens[t]);
            }
        }
    out_commit(pf, path);
}

static void run_generate(gen_job *j, const gen_args *a, int fmt)
{
    int np, rc;
    gen_prompt *ps = load_prompts(j, a, &np);
    tq_gen_opts g = {.n_tokens = a->tokens, .sample = a->sample, .temperature = a->temperature, .top_p = a->top_p,
                     .seed = a->gseed, .stop = j->stops, .n_stop = j->n_stops, .cuda = j->gpu};
    int nr = j->set.n_runs;
    tq_gen_result *res = calloc((size_t)np * nr + 1, sizeof *res);
    if (!res) die("out of memory");
    tq_progress pg;
    progress_start(&pg, "generate", (long)np * (nr + 1));
    for (int p = 0; p < np; p++) {
        if ((rc = tq_generate(j->m, NULL, ps[p].ids, ps[p].n, &g, 1, &ps[p].ref)) < 0) die_lib(rc, "generate");
        ps[p].ref_text = detok(j, ps[p].ref.tokens, ps[p].ref.n);
        progress_step(&pg, 1);
        for (int k = 0; k < nr; k++) {
            if ((rc = tq_gen_compare(j->m, &j->set.runs[k].o, ps[p].ids, ps[p].n, &g, &ps[p].ref,
                                     &res[(size_t)p * nr + k])) < 0)
                die_lib(rc, "generate");
            progress_step(&pg, 1);
        }
    }
    progress_end(&pg);
    if (a->per_pos) write_per_position(j, a->per_pos, ps, np, res);
    static const char *const cols[] = {"model", "prompt_id", "method", "params", "values", "recent", "prefill",
                                       "keep_layers", "prompt", "seed", "tokens", "sampler", "bits_total", "n_ref",
                                       "n", "first_diff", "diverged", "equal_frac", "kl_tf", "kl_free", "text_ref",
                                       "text"};
    FILE *f = report_open(a);
    cl_table t;
    cl_table_begin(f, &t, fmt, "tq_generate", cols, 22, 12,
                   "---|---:|---|---|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
                   "---|");
    t.kinds = "ttttttttttttnnnnnnnntt";
    for (int p = 0; p < np; p++)
        for (int k = 0; k < nr; k++) {
            const tq_gen_result *r = &res[(size_t)p * nr + k];
            cl_run u = j->set.runs[k];
            u.o.prompt = ps[p].n;
            char c[CL_N_CONFIG][200], pid[16], tok[16], smp[96];
            cl_config_cells(&j->set, &u, c);
            snprintf(pid, sizeof pid, "%d", p);
            snprintf(tok, sizeof tok, "%d", a->tokens);
            if (a->sample)
                snprintf(smp, sizeof smp, "T=%g,top_p=%g,seed=%llu", a->temperature, a->top_p,
                         (unsigned long long)a->gseed);
            else snprintf(smp, sizeof smp, "greedy");
            char *text = detok(j, r->tokens, r->n);
            const char *tx[] = {j->model, pid, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], tok, smp,
                                ps[p].ref_text, text};
            double num[] = {r->bits_total, r->n_ref, r->n, r->first_diff, r->diverged, r->equal_frac, r->kl_tf,
                            r->kl_free};
            cl_table_row(f, &t, tx, num);
            free(text);
        }
    cl_table_end(f, &t);
    report_close(f, a);
    for (size_t i = 0; i < (size_t)np * nr; i++) tq_gen_result_free(&res[i]);
    free(res);
    for (int p = 0; p < np; p++) {
        free(ps[p].ids);
        free(ps[p].ref_text);
        tq_gen_output_free(&ps[p].ref);
    }
    free(ps);
}

/* ---------- needle ---------- */

static void run_needle(gen_job *j, const gen_args *a, int fmt)
{
    int ctx = a->context;
    if (!ctx) ctx = j->ctx_train && j->ctx_train < a->max_context ? j->ctx_train : a->max_context;
    if (j->ctx_train && ctx > j->ctx_train)
        die_usage("generate: --context %d is beyond the model's context length %d", ctx, j->ctx_train);
    int *depth, nd = parse_list("--depths", a->depths, 0, 100, NULL, &depth), nr = j->set.n_runs, rc;
    tq_gen_opts g = {.n_tokens = a->answer_tokens, .stop = j->stops, .n_stop = j->n_stops, .cuda = j->gpu};
    /* correct[(run + 1) * nd + d]: run -1 is the reference cache */
    int *correct = calloc((size_t)(nr + 1) * nd, sizeof *correct), *ntok = calloc((size_t)nd, sizeof *ntok);
    if (!correct || !ntok) die("out of memory");
    tq_progress pg;
    progress_start(&pg, "needle", (long)nd * a->trials * (nr + 1));
    for (int d = 0; d < nd; d++)
        for (int tr = 0; tr < a->trials; tr++) {
            int key = tq_needle_key(a->gseed, tr), n;
            int32_t *ids;
            if ((rc = tq_needle_tokens(j->tok, j->chat_style, ctx, depth[d], key, &ids, &n)) < 0)
                die_lib(rc, "generate");
            if (n > ntok[d]) ntok[d] = n;
            for (int k = -1; k < nr; k++) {
                tq_gen_output out;
                tq_kvq_opts *o = k < 0 ? NULL : &j->set.runs[k].o;
                if ((rc = tq_generate(j->m, o, ids, n, &g, 0, &out)) < 0) die_lib(rc, "generate");
                char *text = detok(j, out.tokens, out.n);
                correct[(size_t)(k + 1) * nd + d] += tq_needle_parse(text) == key;
                free(text);
                tq_gen_output_free(&out);
                progress_step(&pg, 1);
            }
            free(ids);
        }
    progress_end(&pg);
    static const char *const cols[] = {"model", "context", "method", "params", "values", "recent", "prefill",
                                       "keep_layers", "prompt", "seed", "depth_pct", "trials", "correct",
                                       "accuracy"};
    FILE *f = report_open(a);
    cl_table t;
    cl_table_begin(f, &t, fmt, "tq_needle", cols, 14, 10, "---|---:|---|---|---|---:|---|---|---:|---:|---:|---:|"
                   "---:|---:|");
    for (int k = -1; k < nr; k++)
        for (int d = 0; d < nd; d++) {
            char c[CL_N_CONFIG][200], cx[16];
            if (k < 0) {
                snprintf(c[0], 200, "reference");
                snprintf(c[1], 200, "fp16 cache");
                snprintf(c[2], 200, "reference");
                snprintf(c[3], 200, "0");
                snprintf(c[4], 200, "fp16");
                snprintf(c[5], 200, "all");
                snprintf(c[7], 200, "0");
            } else
                cl_config_cells(&j->set, &j->set.runs[k], c);
            snprintf(c[6], 200, "%d", ntok[d]);
            snprintf(cx, sizeof cx, "%d", ctx);
            const char *tx[] = {j->model, cx, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]};
            int cr = correct[(size_t)(k + 1) * nd + d];
            double num[] = {depth[d], a->trials, cr, (double)cr / a->trials};
            cl_table_row(f, &t, tx, num);
        }
    cl_table_end(f, &t);
    report_close(f, a);
    free(correct);
    free(ntok);
    free(depth);
}

int cmd_generate(int argc, char **argv)
{
    gen_args a = {0};
    gen_parse(&a, argc, argv);
    int fmt = report_format(a.fmt, a.outp);
    gen_job j = {0};
    gen_load(&j, &a);
    tq_chat_stops(j.tok, a.needle || a.chat ? j.chat_style : TQ_CHAT_NONE, j.stops, &j.n_stops);
    cl_build(&j.set, &a.cl, j.m, "generate", a.pos[0], 1);
    if (cli_device("generate", a.cl.device) == TQ_DEVICE_CUDA) { /* weights uploaded once for every pass */
        int rc;
        for (int k = 0; k < j.set.n_runs; k++)
            if ((rc = tq_kvq_cuda_supports(&j.set.runs[k].o, j.m)) < 0) die_lib(rc, "generate");
        if ((rc = tq_cuda_model_create(j.m, 0, &j.gpu)) < 0) die_lib(rc, "generate --device cuda");
    }
    if (a.needle) run_needle(&j, &a, fmt);
    else run_generate(&j, &a, fmt);
    tq_cuda_model_free(j.gpu);
    cl_set_free(&j.set);
    tq_tokenizer_free(j.tok);
    tq_model_free(j.m);
    free(a.pos);
    return 0;
}
