/* entropy.c: `tq entropy` — what quantized keys do to attention entropy (collapse), KL and top-8 agreement as bits
 * go down, for dumps and synthetic distributions side by side. A thin report over lib/evaluate.h: keys only, one
 * aggregate row per (input, configuration). */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "evalcli.h"
#include "mpi_work.h"
#include "options.h"
#include "report.h"

typedef struct {
    cli_axes ax;
    const char *fmt, *outp, *synth, *device, *aggregate, *resume;
    int layers, heads, qheads, tokens, dim, threads, nd, wide;
    uint64_t seed;
    const char **dumps;
} entropy_args;

static void entropy_parse(entropy_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        OPT_STR_("--methods", &a->ax.methods, "LIST", "turbo-mse,turbo-prod,kivi", ""),
        OPT_STR_("--bits", &a->ax.bits, "LIST", "1-4", ""),
        OPT_STR_("--rotation", &a->ax.rotation, "R", NULL, "one value (default dense)"),
        OPT_STR_("--codebook", &a->ax.codebook, "C", NULL, "one value (default beta)"),
        OPT_STR_("--synthetic", &a->synth, "LIST", NULL, "gaussian,structured,outlier,heavy,rope"),
        OPT_INT_("--layers", &a->layers, "L", "1", 1, TQ_SYNTH_MAX_LAYERS, "synthetic layers"),
        OPT_INT_("--heads", &a->heads, "H", "4", 1, 4096, "synthetic kv heads"),
        OPT_INT_("--q-heads", &a->qheads, "HQ", NULL, 1, 65536, "synthetic query heads (default: the kv heads)"),
        OPT_INT_("--tokens", &a->tokens, "T", NULL, 1, 1L << 30, "synthetic tokens (default 1024); also limits the "
                 "dumps' tokens"),
        OPT_INT_("--dim", &a->dim, "d", "128", 1, 65536, "synthetic head dim"),
        OPT_STR_("--device", &a->device, "cpu|cuda", NULL, "encode and decode the keys on the GPU (turbo-mse, "
                 "turbo-prod b>=2, qjl;\nthe rest is skipped with a note); metrics stay on the CPU (default cpu; "
                 "README \"CUDA\")"),
        OPT_U64_("--seed", &a->seed, "S", "0", ""),
        OPT_INT_("--threads", &a->threads, "N", NULL, 1, 1024, "heads evaluated in parallel (default: the machine's "
                 "cores; results do not depend on it)"),
        OPT_STR_("--format", &a->fmt, "md|csv|json", NULL, "format of -o"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "also write the full sweep table (.csv, .json or .md)"),
        OPT_STR_("--resume", &a->resume, "FILE", NULL, "MPI (mpirun/srun): record finished units in FILE; rerun the same\ncommand with it to skip them (README \"Scaling out\")"),
        OPT_STR_("--aggregate", &a->aggregate, "none|layer|dump", "dump", "rows of -o's table down to slices, layers "
                 "or dumps"),
        OPT_FLAG_("--wide", &a->wide, "-o's table with keys and values on one row"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "entropy", "entropy [DUMP...] [--synthetic DIST[,DIST...]] [options]",
        "Attention entropy (exact and with quantized keys), entropy_collapse = 1 - entropy_q/entropy, attn_kl and\n"
        "top8 against bits, per input and method (means over all layers, kv heads, query heads and positions).\n"
        "Prints a Markdown summary and the table; -o FILE also writes the full sweep table (.csv, .json or .md).",
        opts, NULL};
    a->dumps = calloc((size_t)argc, sizeof *a->dumps);
    if (!a->dumps) die("out of memory");
    a->nd = opt_parse(&spec, argc, argv, a->dumps);
    if (a->resume) mpi_resume_set(a->resume, argc, argv);
    if (!a->threads) a->threads = cli_threads_default();
    if (a->ax.rotation && strchr(a->ax.rotation, ','))
        die_usage("option '--rotation': one value here (tq sweep takes lists)");
    if (a->ax.codebook && strchr(a->ax.codebook, ','))
        die_usage("option '--codebook': one value here (tq sweep takes lists)");
    if (!a->nd && !a->synth) die_usage("no input: give dump files and/or --synthetic gaussian,structured");
    if (a->outp) check_output(a->outp, a->dumps, a->nd);
}

static void entropy_build(entropy_args *a, tq_eval_opts *o, tq_eval_configs *cs)
{
    o->device = cli_device("entropy", a->device);
    tq_synth_params_default(&o->sp);
    o->sp.n_layers = a->layers;
    o->sp.n_kv_heads = a->heads;
    o->sp.n_q_heads = a->qheads ? a->qheads : a->heads;
    o->sp.n_tokens = a->tokens ? a->tokens : 1024;
    o->sp.head_dim = a->dim;
    o->sp.seed = a->seed;
    o->tokens = a->tokens;
    o->threads = a->threads;
    o->per_head_rows = report_aggregate(a->aggregate, REPORT_CSV) != REPORT_AGG_DUMP;
    o->seed = a->seed;
    o->attention = 1;
    a->ax.values = "none";
    cli_inputs(o, a->dumps, a->nd, a->synth);
    for (int i = a->nd; i < o->n_inputs; i++) {
        o->sp.dist = o->inputs[i].synth;
        if (tq_synth_check(&o->sp) < 0) die_usage("%s", tq_error_msg());
    }
    cli_configs(cs, &a->ax, a->seed, cli_select(o, NULL, NULL), o->device);
    o->cfg = cs->cfg;
    o->n_cfg = cs->n;
}

int cmd_entropy(int argc, char **argv)
{
    entropy_args a = {0};
    entropy_parse(&a, argc, argv);
    int fmt = report_format(a.fmt, a.outp);
    tq_eval_opts o = {0};
    tq_eval_configs cs;
    entropy_build(&a, &o, &cs);
    tq_progress pg;
    o.progress = report_progress;
    o.progress_ctx = &pg;
    tq_eval_rows rows = {0};
    int rc = mpi_evaluate(&o, &rows); /* one process, or the MPI ranks (cmd/mpi_work.h) */
    if (rc < 0) die_lib(rc, NULL);
    report_entropy(&o, &rows);
    report_table t = {report_aggregate(a.aggregate, fmt), a.wide};
    if (a.outp) report_rows_path(a.outp, fmt, &t, &o, &rows);
    tq_eval_rows_free(&rows);
    tq_eval_configs_free(&cs);
    cli_inputs_free(&o);
    free(a.dumps);
    return 0;
}
