/* sweep.c: `tq sweep` — quantize every (layer, kv head, tensor) slice of dumps or synthetic inputs under the
 * cartesian product of method/bits/rotation/codebook/center/outlier axes and report lib/metrics.h for each, with
 * aggregates per layer and per input. A thin command: options (below, as data) -> lib/evaluate.h -> cmd/report.h. */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "dump.h"
#include "evalcli.h"
#include "mpi_work.h"
#include "options.h"
#include "report.h"
#include "vocab.h"

typedef struct {
    cli_axes ax;
    const char *resume;
    const char *fmt, *outp, *aggregate, *synth, *qheads, *dim, *layers, *heads, *sched_path, *device;
    int tokens, threads, no_attention, nd, wide, force;
    uint64_t seed;
    const char **dumps;
} sweep_args;

static void sweep_parse(sweep_args *a, int argc, char **argv)
{
    char methods_help[256];
    snprintf(methods_help, sizeof methods_help, "%s\n(default turbo-mse,turbo-prod,polar,kivi)",
             tq_vocab_list(TQ_VOCAB_METHOD, ","));
    const tq_option opts[] = {
        OPT_GROUP_("configuration axes (cartesian product; configurations a method does not take are skipped with a "
                   "note):"),
        OPT_STR_("--methods", &a->ax.methods, "LIST", NULL, methods_help),
        OPT_STR_("--bits", &a->ax.bits, "LIST", NULL, "code bits, e.g. 1-4 or 2,3 (default 1-4; fp16/int8 have "
                 "fixed widths)"),
        OPT_STR_("--rotation", &a->ax.rotation, "LIST", NULL, "dense,hadamard,none (default dense; rotation methods "
                 "only)"),
        OPT_STR_("--codebook", &a->ax.codebook, "LIST", NULL, "beta,gaussian,empirical (default beta)"),
        OPT_STR_("--center", &a->ax.center, "LIST", NULL, "off,on: key-mean removal (default off)"),
        OPT_STR_("--outliers", &a->ax.outliers, "LIST", NULL, "outlier channel counts at +1 bit, e.g. 0,32 "
                 "(default 0)"),
        OPT_STR_("--values", &a->ax.values, "SPEC", NULL, "same (values use the keys' configuration; default), none "
                 "(keys only),\nMETHOD:BITS"),
        OPT_GROUP_("inputs, selection and run:"),
        OPT_STR_("--synthetic", &a->synth, "DIST[,DIST]", NULL, "synthetic inputs instead of dumps: gaussian,\n"
                 "structured, outlier, heavy, rope"),
        OPT_STR_("--layers", &a->layers, "LIST", NULL, "layers of the dumps, e.g. 0-3,7 (default all); with "
                 "--synthetic:\nthe layer count"),
        OPT_STR_("--heads", &a->heads, "LIST", NULL, "kv heads of the dumps (default all); with --synthetic: the "
                 "kv head count"),
        OPT_STR_("--q-heads", &a->qheads, "HQ", NULL, "--synthetic: query heads (default: the kv heads)"),
        OPT_STR_("--dim", &a->dim, "d", NULL, "--synthetic: head dim (default 128)"),
        OPT_INT_("--tokens", &a->tokens, "N", NULL, 1, 1L << 30, "first N tokens only (synthetic: tokens, default "
                 "256)"),
        OPT_INT_("--threads", &a->threads, "N", NULL, 1, 1024, "heads evaluated in parallel (default: the machine's "
                 "cores; results do not depend on it)"),
        OPT_U64_("--seed", &a->seed, "S", "0", "quantizer seed and inner-product sample seed"),
        OPT_FLAG_("--no-attention", &a->no_attention, "skip the attention metrics (the O(T^2) part)"),
        OPT_STR_("--device", &a->device, "cpu|cuda", NULL, "encode and decode on the GPU (turbo-mse, turbo-prod "
                 "b>=2, qjl; other\nconfigurations are skipped with a note); metrics stay on the CPU (default cpu; "
                 "README \"CUDA\")"),
        OPT_STR_("--schedule", &a->sched_path, "FILE", NULL, "bits per layer / kv head from a schedule (tq "
                 "mixed-schedule), one\ndump, one method"),
        OPT_FLAG_("--force", &a->force, "use a schedule made for another model (name or shape differs)"),
        OPT_STR_("--format", &a->fmt, "md|csv|json", NULL, "report format (default Markdown; -o FILE.csv/.json "
                 "picks it)"),
        OPT_STR_("--aggregate", &a->aggregate, "none|layer|dump", NULL, "rows down to: none = every slice, layer "
                 "= per layer and per\ndump, dump = per dump only (default dump for Markdown, none for CSV/JSON)"),
        OPT_FLAG_("--wide", &a->wide, "keys and values metrics on one row (k_*, v_* columns)"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "write the report to FILE (default stdout)"),
        OPT_STR_("--resume", &a->resume, "FILE", NULL, "MPI (mpirun/srun): record finished units in FILE; rerun the same\ncommand with it to skip them (README \"Scaling out\")"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "sweep",
        "sweep DUMP... [options]\n"
        "sweep --synthetic DIST[,DIST...] [--layers L] [--heads H] [--q-heads HQ] [--tokens T] [--dim d] [options]",
        "Quantize every (layer, kv head, tensor) slice under each configuration and report the metrics of\n"
        "README.md \"Metrics\": rows per slice, per layer (head = all) and per input (layer = all).",
        opts, NULL};
    a->dumps = calloc((size_t)argc, sizeof *a->dumps);
    if (!a->dumps) die("out of memory");
    a->nd = opt_parse(&spec, argc, argv, a->dumps);
    if (a->resume) mpi_resume_set(a->resume, argc, argv);
    if (!a->threads) a->threads = cli_threads_default();
    if (!a->nd && !a->synth) die_usage("no input: give dump files or --synthetic DIST (see 'tq sweep --help')");
    if (a->nd && a->synth)
        die_usage("give dump files or --synthetic, not both (--layers/--heads mean different things)");
    if (!a->synth && (a->qheads || a->dim)) die_usage("options '--q-heads' and '--dim' go with --synthetic");
    if (a->outp) {
        check_output(a->outp, a->dumps, a->nd);
        check_output(a->outp, &a->sched_path, 1);
    }
}

/* --synthetic: the shapes (--layers/--heads are counts here) and the inputs */
static void sweep_synthetic(sweep_args *a, tq_eval_opts *o)
{
    if (a->layers) o->sp.n_layers = (int)parse_long("--layers", a->layers, 1, TQ_SYNTH_MAX_LAYERS);
    if (a->heads) o->sp.n_kv_heads = (int)parse_long("--heads", a->heads, 1, 4096);
    o->sp.n_q_heads = a->qheads ? (int)parse_long("--q-heads", a->qheads, 1, 65536) : o->sp.n_kv_heads;
    if (a->dim) o->sp.head_dim = (int)parse_long("--dim", a->dim, 1, 65536);
    if (a->tokens) o->sp.n_tokens = a->tokens;
    o->sp.seed = a->seed;
    cli_inputs(o, NULL, 0, a->synth);
    o->sp.dist = o->inputs[0].synth;
    if (tq_synth_check(&o->sp) < 0) die_usage("%s", tq_error_msg());
}

/* --schedule: one dump, one method (--methods or the schedule's), bits from the schedule per slice; values need the
 * schedule's values bits or an explicit --values. Malformed files exit 1, mismatches with the dump exit 2. */
static tq_schedule *sweep_schedule(const char *path, const tq_eval_opts *o, cli_axes *ax, char *sbits, int force)
{
    if (o->n_inputs != 1 || !o->inputs[0].path)
        die_usage("option '--schedule' takes exactly one dump (a schedule is made for one model)");
    if (ax->bits) die_usage("options '--schedule' and '--bits' contradict each other: the schedule sets the bits");
    tq_schedule *s;
    int rc = tq_schedule_load(&s, path);
    if (rc < 0) die_lib(TQ_ERR, NULL);
    if (!ax->methods) {
        if (!s->method[0]) die_usage("schedule '%s' names no method; add --methods M", path);
        ax->methods = s->method;
    }
    const tq_format *f = tq_format_by_name(ax->methods);
    if (!f) die_usage("option '--schedule' wants one known method in --methods, got '%s'", ax->methods);
    if (s->method[0] && strcmp(f->name, s->method))
        die_usage("schedule '%s' was made for method '%s', not '%s'; pass --methods %s", path, s->method, f->name,
                  s->method);
    tq_dump *d;
    if ((rc = tq_dump_open(&d, o->inputs[0].path)) < 0) die_lib(rc, NULL);
    const tq_dump_meta *m = tq_dump_get_meta(d);
    rc = force ? TQ_OK : tq_schedule_check_model(s, path, m->model, m->n_layers, m->shape.n_kv_heads,
                                                 m->shape.head_dim);
    if (rc == TQ_OK)
        rc = tq_schedule_check(s, path, m->n_layers, m->shape.n_kv_heads, f->name, f->min_bits, f->max_bits);
    for (int l = 0; l < m->n_layers && !rc; l++)
        rc = tq_schedule_check_heads(s, path, l, tq_dump_layer_shape(d, l)->n_kv_heads);
    tq_dump_close(d);
    if (rc < 0) die_lib(rc, NULL);
    if (!s->values && !ax->values)
        die_usage("schedule '%s' has no values bits; add --values none or --values METHOD:BITS", path);
    if (s->values && ax->values && strcmp(ax->values, "same"))
        die_usage("schedule '%s' sets values bits; drop --values", path);
    /* one bits value so the configuration axes validate; each slice takes its own bits from the schedule */
    snprintf(sbits, 16, "%d", tq_schedule_bits(s, 0, 0, TQ_TENSOR_KEYS));
    ax->bits = sbits;
    return s;
}

/* "turbo-prod,bits=3,rot=dense" -> "turbo-prod,bits=schedule,rot=dense" */
static void mark_scheduled(char *desc, size_t n)
{
    char *b = strstr(desc, ",bits="), tail[192];
    if (!b) return;
    char *e = strchr(b + 1, ',');
    snprintf(tail, sizeof tail, "%s", e ? e : "");
    snprintf(b, n - (size_t)(b - desc), ",bits=schedule%s", tail);
}

/* inputs, schedule and configurations from the parsed options */
static tq_schedule *sweep_build(sweep_args *a, tq_eval_opts *o, tq_eval_configs *cs)
{
    tq_synth_params_default(&o->sp);
    o->threads = a->threads;
    o->seed = a->seed;
    o->attention = !a->no_attention;
    o->per_head_rows = report_aggregate(a->aggregate, report_format(a->fmt, a->outp)) != REPORT_AGG_DUMP;
    o->device = cli_device("sweep", a->device);
    if (a->synth) sweep_synthetic(a, o);
    else {
        o->tokens = a->tokens;
        cli_inputs(o, a->dumps, a->nd, NULL);
    }
    tq_schedule *sched = NULL;
    static char sbits[16];
    if (a->sched_path) sched = sweep_schedule(a->sched_path, o, &a->ax, sbits, a->force);
    int d = cli_select(o, a->synth ? NULL : a->layers, a->synth ? NULL : a->heads);
    cli_configs(cs, &a->ax, a->seed, d, o->device);
    for (int i = 0; sched && i < cs->n; i++) { /* the bits column comes from the schedule, slice by slice */
        mark_scheduled(cs->cfg[i].kdesc, sizeof cs->cfg[i].kdesc);
        if (sched->values) mark_scheduled(cs->cfg[i].vdesc, sizeof cs->cfg[i].vdesc);
    }
    o->sched = sched;
    o->cfg = cs->cfg;
    o->n_cfg = cs->n;
    return sched;
}

int cmd_sweep(int argc, char **argv)
{
    sweep_args a = {0};
    sweep_parse(&a, argc, argv);
    int fmt = report_format(a.fmt, a.outp);
    tq_eval_opts o = {0};
    tq_eval_configs cs;
    tq_schedule *sched = sweep_build(&a, &o, &cs);
    tq_progress pg;
    o.progress = report_progress;
    o.progress_ctx = &pg;
    tq_eval_rows rows = {0};
    int rc = mpi_evaluate(&o, &rows); /* one process, or the MPI ranks (cmd/mpi_work.h) */
    if (rc < 0) die_lib(rc, NULL);
    report_table t = {report_aggregate(a.aggregate, fmt), a.wide};
    report_rows_path(a.outp, fmt, &t, &o, &rows);
    tq_eval_rows_free(&rows);
    tq_eval_configs_free(&cs);
    cli_inputs_free(&o);
    tq_schedule_free(sched);
    free(a.dumps);
    return 0;
}
