/* sensitivity.c: `tq sensitivity` — the distortion curve of every unit (layer, or layer x kv head, of keys and/or
 * values): one metric of lib/metrics.h at each candidate bit width with the unit's coordinate count, written as JSON
 * for `tq mixed-schedule`. Each tensor is measured alone: the other one stays exact, so a curve is that tensor's.
 * Options (as data) -> tq_sensitivity (lib/evaluate.h) -> cmd/report.h. */
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
    const char *in, *method, *bits_s, *metric, *rot, *device_s, *outp, *resume;
    int tensor, per_head, tokens, threads, top, np;
    uint64_t seed;
    const char **pos;
} sens_args;

static void sens_parse(sens_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        OPT_STR_("--method", &a->method, "M", NULL, "quantizer (turbo-prod, turbo-mse, polar, kivi, ...)"),
        OPT_STR_("--bits", &a->bits_s, "LIST", NULL, "candidate code bits, e.g. 2-4 or 1-8 (default 1-4 within the "
                 "method's\nrange)"),
        OPT_STR_("--metric", &a->metric, "NAME", "attn_kl", "attn_kl, out_rel, nmse, ip_rmse, entropy_collapse"),
        OPT_CHOICE_("--tensor", &a->tensor, "keys|values|both", "keys", "(values and both: nmse or out_rel)"),
        OPT_FLAG_("--per-head", &a->per_head, "one unit per (layer, kv head) instead of per layer"),
        OPT_STR_("--rotation", &a->rot, "R", NULL, "dense (default) or hadamard, for rotation methods"),
        OPT_INT_("--tokens", &a->tokens, "N", NULL, 1, 1L << 30, "first N tokens only (default all)"),
        OPT_U64_("--seed", &a->seed, "S", "0", "quantizer and sampling seed"),
        OPT_INT_("--threads", &a->threads, "N", NULL, 1, 1024, "heads x bits evaluated in parallel (default: the "
                 "machine's cores;\nresults do not depend on it)"),
        OPT_STR_("--device", &a->device_s, "cpu|cuda", NULL, "encode and decode on the GPU (turbo-mse, turbo-prod "
                 "b>=2, qjl; without\n--bits, widths the GPU does not run are dropped with a note); metrics on the "
                 "CPU (default cpu)"),
        OPT_INT_("--top", &a->top, "N", "5", 1, 1000000, "units listed at each end of the summary"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "the JSON output (written to a temporary name, then renamed)"),
        OPT_STR_("--resume", &a->resume, "FILE", NULL, "MPI (mpirun/srun): record finished units in FILE; rerun the same\ncommand with it to skip them (README \"Scaling out\")"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "sensitivity", "sensitivity DUMP --method M [options] [-o SENS.json]",
        "Quantize every layer (or layer x kv head) at each bit width and measure one metric, with the other tensor\n"
        "left exact: the distortion curves `tq mixed-schedule` allocates bits from. Prints the most and least\n"
        "sensitive units as Markdown; -o writes the curves as JSON (README \"Bit schedules\").",
        opts, NULL};
    a->pos = calloc((size_t)argc, sizeof *a->pos);
    if (!a->pos) die("out of memory");
    a->np = opt_parse(&spec, argc, argv, a->pos);
    if (a->resume) mpi_resume_set(a->resume, argc, argv);
    if (!a->threads) a->threads = cli_threads_default();
    if (a->np > 1) die_usage("sensitivity: unexpected argument '%s' (one input dump)", a->pos[1]);
    a->in = a->np ? a->pos[0] : NULL;
    if (!a->in) die_usage("sensitivity: no input dump (usage: tq sensitivity DUMP --method M -o SENS.json)");
    if (!a->method) die_usage("sensitivity: no method; add --method (e.g. turbo-prod)");
    if (a->outp) check_output(a->outp, &a->in, 1);
}

/* candidate widths: --bits (each in the method's range) or 1..4 within it; one parameter set per width */
static tq_qparams *sens_params(const sens_args *a, const tq_format *f, int *bits, int *nb)
{
    *nb = 0;
    if (a->bits_s) {
        int *w;
        *nb = parse_list("--bits", a->bits_s, 1, 8, NULL, &w);
        memcpy(bits, w, (size_t)*nb * sizeof *w);
        free(w);
        for (int i = 0; i < *nb; i++)
            if (bits[i] < f->min_bits || bits[i] > f->max_bits)
                die_usage("sensitivity: --bits %d is out of range for %s (%d..%d)", bits[i], f->name, f->min_bits,
                          f->max_bits);
    } else
        for (int b = 1; b <= 4; b++)
            if (b >= f->min_bits && b <= f->max_bits) bits[(*nb)++] = b;
    if (*nb <= 0) die_usage("sensitivity: no bit width of 1..4 suits %s; give --bits", f->name);
    tq_qparams *P = calloc((size_t)*nb, sizeof *P);
    if (!P) die("out of memory");
    for (int i = 0; i < *nb; i++) {
        tq_qparams_default(&P[i], f->method, bits[i]);
        P[i].seed = a->seed;
        if (a->rot) {
            if (!f->uses_rotation) die_usage("sensitivity: --rotation applies to rotation methods, not %s", f->name);
            int r = tq_vocab_find(TQ_VOCAB_ROTATION, a->rot);
            if (r != TQ_ROT_DENSE && r != TQ_ROT_HADAMARD)
                die_usage("sensitivity: unknown rotation '%s' (dense, hadamard)", a->rot);
            P[i].rotation = r;
        }
    }
    return P;
}

/* the dump must have one shape, the queries / values the metric needs and the tokens asked for */
static void sens_check_dump(const sens_args *a, const tq_sens_opts *so, report_sens_info *info)
{
    tq_dump *dump;
    int rc = tq_dump_open(&dump, a->in);
    if (rc < 0) die_lib(rc, NULL);
    const tq_dump_meta *meta = tq_dump_get_meta(dump);
    int nl = meta->n_layers, nkv = meta->shape.n_kv_heads, d = meta->shape.head_dim;
    const char *tensor = tq_vocab_name(TQ_VOCAB_TENSOR, a->tensor);
    if (a->tensor == 2) tensor = "both";
    for (int l = 0; l < nl; l++) {
        const tq_layer_shape *s = tq_dump_layer_shape(dump, l);
        if (s->n_kv_heads != nkv || s->head_dim != d)
            die("cannot scan '%s': layer %d has %d kv heads of dim %d, layer 0 %d of dim %d; schedules need one shape",
                a->in, l, s->n_kv_heads, s->head_dim, nkv, d);
        if (so->metric->needs_queries && !s->has_queries)
            die_usage("sensitivity: '%s' layer %d has no queries; metric '%s' needs them (use --metric nmse)", a->in, l,
                      a->metric);
        if ((so->tensors[1] || so->metric->met == TQ_MET_OUT_REL) && !s->has_values)
            die_usage("sensitivity: '%s' layer %d has no values; --tensor %s with metric '%s' needs them", a->in, l,
                      tensor, a->metric);
        if (a->tokens > s->n_tokens)
            die_usage("sensitivity: --tokens %d is more than the %d tokens of '%s' layer %d", a->tokens, s->n_tokens,
                      a->in, l);
    }
    static char model[sizeof meta->model];
    snprintf(model, sizeof model, "%s", meta->model);
    *info = (report_sens_info){.dump = a->in, .model = model, .metric = a->metric, .tensor = tensor,
                               .n_layers = nl, .n_kv_heads = nkv, .head_dim = d,
                               .tokens = a->tokens ? a->tokens : meta->shape.n_tokens, .per_head = a->per_head,
                               .tensors = {so->tensors[0], so->tensors[1]}, .seed = a->seed};
    tq_dump_close(dump);
}

/* every width must suit the head dim and the device: explicit --bits the GPU cannot run are an error, the default
 * range just loses them with a note */
static void sens_check_widths(const sens_args *a, tq_qparams *P, int *bits, int *nb, int d, tq_device dev)
{
    for (int i = 0; i < *nb; i++) {
        tq_error_clear();
        if (tq_format_of(P[i].method)->check(&P[i], d) < 0) die_usage("sensitivity: %s", tq_error_msg());
    }
    int k = 0;
    for (int i = 0, n0 = *nb; i < n0; i++) {
        tq_error_clear();
        if (tq_backend_of(dev)->supports(&P[i], d) < 0) {
            if (a->bits_s) die_usage("sensitivity: --bits %d: %s", bits[i], tq_error_msg());
            fprintf(stderr, "tq: note: skipping %d bits: %s\n", bits[i], tq_error_msg());
            continue;
        }
        P[k] = P[i];
        bits[k++] = bits[i];
    }
    *nb = k;
    if (k <= 0)
        die_usage("sensitivity: no bit width of 1..4 runs on --device cuda for %s; use --device cpu",
                  tq_method_name(P[0].method));
}

int cmd_sensitivity(int argc, char **argv)
{
    sens_args a = {0};
    sens_parse(&a, argc, argv);
    tq_sens_opts so = {.dump = a.in, .per_head = a.per_head, .tokens = a.tokens, .threads = a.threads,
                       .seed = a.seed, .device = cli_device("sensitivity", a.device_s)};
    const tq_format *f = tq_format_by_name(a.method);
    if (!f) die_usage("sensitivity: unknown method '%s' (see 'tq sweep --help' for the list)", a.method);
    if (f->min_bits == f->max_bits)
        die_usage("sensitivity: method '%s' has a fixed width (%d bits); choose one with a bits range", f->name,
                  f->min_bits);
    if (!(so.metric = tq_sens_metric_find(a.metric)))
        die_usage("sensitivity: unknown metric '%s' (attn_kl, out_rel, nmse, ip_rmse, entropy_collapse)", a.metric);
    so.tensors[0] = a.tensor != TQ_TENSOR_VALUES;
    so.tensors[1] = a.tensor != TQ_TENSOR_KEYS;
    if (so.tensors[1] && !so.metric->values_ok)
        die_usage("sensitivity: metric '%s' does not depend on values; with --tensor %s use nmse or out_rel",
                  a.metric, a.tensor == 2 ? "both" : "values");
    int bits[8], nb;
    tq_qparams *P = sens_params(&a, f, bits, &nb);
    report_sens_info info;
    sens_check_dump(&a, &so, &info);
    sens_check_widths(&a, P, bits, &nb, info.head_dim, so.device);
    so.params = P;
    so.n_bits = nb;
    tq_progress pg;
    so.progress = report_progress;
    so.progress_ctx = &pg;
    tq_sens_result res;
    int rc = mpi_sensitivity(&so, &res); /* one process, or the MPI ranks (cmd/mpi_work.h) */
    if (rc < 0) die_lib(rc, NULL);
    info.params = P;
    info.bits = bits;
    info.n_bits = nb;
    if (a.outp) report_sens_json(a.outp, &info, &res);
    report_sens_summary(&info, &res, a.top, a.outp);
    tq_sens_free(&res);
    free(P);
    free(a.pos);
    return 0;
}
