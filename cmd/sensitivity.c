/* sensitivity.c: `tq sensitivity` — the distortion curve of every unit (layer, or layer x kv head, of keys and/or
 * values): one metric of lib/metrics.h at each candidate bit width with the unit's coordinate count, written as JSON
 * for `tq mixed-schedule`; with --weights each curve multiplied by the unit's closed-loop sensitivity (<metric>_sw).
 * Each tensor is measured alone: the other one stays exact, so a curve is that tensor's.
 * Options (as data) -> tq_sensitivity (lib/evaluate.h) -> cmd/report.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "closedloop.h"
#include "cmd.h"
#include "dump.h"
#include "gguf.h"
#include "kvquant.h"
#include "tokenizer.h"
#include "evalcli.h"
#include "mpi_work.h"
#include "options.h"
#include "report.h"
#include "sensfile.h"
#include "vocab.h"

typedef struct {
    const char *in, *method, *bits_s, *metric, *rot, *device_s, *outp, *resume, *text, *model, *weights;
    int tensor, per_head, tokens, threads, top, np, closed_loop, prompt, chunk, threads_given, weight_bits;
    uint64_t seed;
    const char **pos;
} sens_args;

static void sens_parse(sens_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        OPT_STR_("--method", &a->method, "M", NULL, "quantizer (turbo-prod, turbo-mse, polar, kivi, ...)"),
        OPT_STR_("--bits", &a->bits_s, "LIST", NULL, "candidate code bits, e.g. 2-4 or 1-8 (default 1-4 within the "
                 "method's\nrange)"),
        OPT_STR_("--metric", &a->metric, "NAME", NULL, "attn_kl (default), out_rel, out_proj (needs --model), nmse, "
                 "ip_rmse,\nentropy_collapse; closed loop: cl_kl (default), cl_dppl"),
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
        OPT_STR_("--model", &a->model, "GGUF", NULL, "the dump's model: its output projections, for --metric out_proj"),
        OPT_STR_("--weights", &a->weights, "CLOSED.json", NULL, "weigh each unit's curve by its closed-loop "
                 "sensitivity: the cl_kl (or\ncl_dppl) of the same unit in CLOSED.json (tq sensitivity MODEL.gguf "
                 "--closed-loop),\nnormalised to mean 1; the metric is recorded as <metric>_sw (out_rel_sw)"),
        OPT_INT_("--weight-bits", &a->weight_bits, "B", NULL, 1, 8, "the width of CLOSED.json whose values are the "
                 "weights (default: its\nonly one)"),
        OPT_GROUP_("closed loop (tq sensitivity MODEL.gguf --closed-loop --text FILE):"),
        OPT_FLAG_("--closed-loop", &a->closed_loop, "run the model with one unit's cache quantized at a time, the "
                  "rest exact;\nthe metric is the next-token KL (cl_kl) or dppl (cl_dppl) against the exact cache"),
        OPT_STR_("--text", &a->text, "FILE", NULL, "the text the model runs over (closed loop)"),
        OPT_INT_("--prompt", &a->prompt, "N", NULL, 1, 1 << 30, "prompt (first chunk) tokens (default T/4, a "
                 "multiple of 32)"),
        OPT_INT_("--chunk", &a->chunk, "N", "32", 1, 4096, "tokens per forward call after the prompt"),
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
    a->threads_given = a->threads;
    if (!a->threads) a->threads = cli_threads_default();
    if (a->np > 1)
        die_usage("sensitivity: unexpected argument '%s' (one input %s)", a->pos[1], a->closed_loop ? "model" : "dump");
    a->in = a->np ? a->pos[0] : NULL;
    if (!a->in && a->closed_loop)
        die_usage("sensitivity: no model (usage: tq sensitivity MODEL.gguf --closed-loop --text FILE --method M)");
    if (!a->in) die_usage("sensitivity: no input dump (usage: tq sensitivity DUMP --method M -o SENS.json)");
    if (!a->method) die_usage("sensitivity: no method; add --method (e.g. turbo-prod)");
    if (!a->metric) a->metric = a->closed_loop ? "cl_kl" : "attn_kl";
    if (a->closed_loop) {
        if (!a->text) die_usage("sensitivity: --closed-loop needs --text FILE (the text the model runs over)");
        if (strcmp(a->metric, "cl_kl") && strcmp(a->metric, "cl_dppl"))
            die_usage("sensitivity: --closed-loop measures cl_kl or cl_dppl, not '%s' (offline metrics scan a dump)",
                      a->metric);
        if (a->model) die_usage("sensitivity: --model goes with a dump scan (out_proj); the closed loop runs it");
        if (a->weights)
            die_usage("sensitivity: --weights weighs a dump scan by a closed-loop one; --closed-loop measures the "
                      "weights themselves");
        if (a->device_s && strcmp(a->device_s, "cpu"))
            die_usage("sensitivity: --closed-loop runs on the cpu only");
    } else {
        if (a->text || a->prompt) die_usage("sensitivity: --text and --prompt go with --closed-loop");
        if (!strncmp(a->metric, "cl_", 3))
            die_usage("sensitivity: metric '%s' is measured in the closed loop: tq sensitivity MODEL.gguf "
                      "--closed-loop --text FILE", a->metric);
        if (!strcmp(a->metric, "out_proj") && !a->model)
            die_usage("sensitivity: metric 'out_proj' needs the dump's model for its output projections: add "
                      "--model MODEL.gguf");
        if (a->model && strcmp(a->metric, "out_proj"))
            die_usage("sensitivity: --model is read for --metric out_proj only");
    }
    if (a->weight_bits && !a->weights) die_usage("sensitivity: --weight-bits goes with --weights CLOSED.json");
    const char *in[4] = {a->in, a->text, a->model, a->weights};
    if (a->outp) check_output(a->outp, in, 4);
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
        if ((so->tensors[1] || so->metric->met == TQ_MET_OUT_REL || so->metric->met == TQ_SENS_OUT_PROJ) &&
            !s->has_values)
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

/* --closed-loop: the model over the text's tokens, one unit quantized at a time (lib/kvquant.h tq_cl_sensitivity),
 * against the reference pass computed once */
static int sens_closed_loop(sens_args *a, const tq_format *f)
{
    int rc, bits[8], nb;
    if (mpi_active()) die_usage("sensitivity: --closed-loop runs in one process (not under mpirun) so far");
    tq_qparams *P = sens_params(a, f, bits, &nb);
    tq_model_set_threads(a->threads_given);
    tq_model *m;
    if ((rc = tq_model_load(a->in, &m)) < 0) die_lib(rc, "sensitivity");
    const tq_model_config *mc = tq_model_get_config(m);
    for (int i = 0; i < nb; i++) {
        tq_error_clear();
        if (f->check(&P[i], mc->head_dim) < 0) die_usage("sensitivity: %s", tq_error_msg());
    }
    size_t len;
    char *text = cl_read_file("sensitivity", a->text, &len);
    tq_gguf *g;
    tq_tokenizer *tk;
    int32_t *tok;
    int T;
    if ((rc = tq_gguf_open(a->in, &g)) < 0) die_lib(rc, "sensitivity");
    if ((rc = tq_tokenizer_from_gguf(g, &tk)) < 0) die_lib(rc, "sensitivity");
    if ((rc = tq_tokenize(tk, text, len, TQ_TOKENIZE_ADD_SPECIAL, &tok, &T)) < 0) die_lib(rc, "sensitivity");
    tq_tokenizer_free(tk);
    tq_gguf_close(g);
    free(text);
    if (T < 2) die("sensitivity: '%s' gives %d token(s); the closed loop needs at least 2", a->text, T);
    if (a->tokens && T < a->tokens)
        die("sensitivity: '%s' gives %d tokens, fewer than --tokens %d", a->text, T, a->tokens);
    if (a->tokens) T = a->tokens;
    if (!a->prompt) { /* as tq perplexity: a quarter of the text, on the 32-token grid when it can be */
        int q = T / 4;
        a->prompt = q >= 32 ? q / 32 * 32 : (q ? q : 1);
    }
    if (a->prompt >= T) die_usage("sensitivity: --prompt %d leaves no token after it (%d tokens)", a->prompt, T);
    float *ref;
    if ((rc = tq_ppl_reference(m, tok, T, a->prompt, a->chunk, &ref)) < 0) die_lib(rc, "sensitivity");
    tq_progress pg;
    tq_cl_sens_opts co = {.params = P, .n_bits = nb, .tensors = {a->tensor != TQ_TENSOR_VALUES,
                          a->tensor != TQ_TENSOR_KEYS}, .per_head = a->per_head, .prompt = a->prompt,
                          .chunk = a->chunk, .device = TQ_DEVICE_CPU, .ref = ref, .progress = report_progress,
                          .progress_ctx = &pg};
    tq_sens_result res;
    double *dppl;
    if ((rc = tq_cl_sensitivity(m, tok, T, &co, &res, &dppl)) < 0) die_lib(rc, "sensitivity");
    double nll_ref = 0; /* the exact cache's perplexity, for the record (as tq_ppl_run sums it) */
    for (int t = 0; t < T - 1; t++) nll_ref -= ref[(size_t)t * mc->n_vocab + tok[t + 1]];
    free(ref);
    int cl_dppl = !strcmp(a->metric, "cl_dppl");
    for (int i = 0; cl_dppl && i < res.n; i++) memcpy(res.units[i].metric, dppl + (size_t)i * nb, nb * sizeof *dppl);
    const char *base = strrchr(a->in, '/');
    base = base ? base + 1 : a->in;
    static char model[256];
    size_t bl = strlen(base);
    snprintf(model, sizeof model, "%.*s", (int)(bl > 5 && !strcmp(base + bl - 5, ".gguf") ? bl - 5 : bl), base);
    report_sens_info info = {.dump = a->in, .model = model, .metric = a->metric,
                             .tensor = a->tensor == 2 ? "both" : tq_vocab_name(TQ_VOCAB_TENSOR, a->tensor),
                             .params = P, .bits = bits, .n_bits = nb, .n_layers = mc->n_layers,
                             .n_kv_heads = mc->n_kv_head, .head_dim = mc->head_dim, .tokens = T,
                             .per_head = a->per_head, .tensors = {co.tensors[0], co.tensors[1]}, .seed = a->seed,
                             .text = a->text, .prompt = a->prompt, .dppl = dppl,
                             .ppl_ref = exp(nll_ref / (T - 1))};
    if (a->outp) report_sens_json(a->outp, &info, &res);
    report_sens_summary(&info, &res, a->top, a->outp);
    free(dppl);
    tq_sens_free(&res);
    free(tok);
    free(P);
    free(a->pos);
    tq_model_free(m);
    return 0;
}

/* out_proj: every layer's output projection from the model's GGUF (blk.L.attn_output.weight, [hidden][heads x d]),
 * checked against the dump's shape: same layer count, query heads x head dim columns */
static float **sens_load_wo(const sens_args *a, const report_sens_info *info, int *rows, int *cols)
{
    tq_dump *dump;
    int rc = tq_dump_open(&dump, a->in);
    if (rc < 0) die_lib(rc, NULL);
    int nq = tq_dump_layer_shape(dump, 0)->n_q_heads, nl = info->n_layers, d = info->head_dim;
    tq_dump_close(dump);
    tq_gguf *g;
    if ((rc = tq_gguf_open(a->model, &g)) < 0) die_lib(rc, "sensitivity");
    int64_t nb = 0;
    tq_gguf_str arch;
    char key[96];
    if (tq_gguf_get_str(g, "general.architecture", &arch) < 0) die("sensitivity: '%s' has no general.architecture",
                                                                    a->model);
    snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 64 ? arch.len : 64), arch.s);
    if (tq_gguf_get_int(g, key, &nb) < 0 || nb != nl)
        die_usage("sensitivity: '%s' has %lld layers, the dump '%s' %d: --model must be the dump's model", a->model,
                  (long long)nb, a->in, nl);
    float **wo = calloc((size_t)nl, sizeof *wo);
    if (!wo) die("out of memory");
    for (int l = 0; l < nl; l++) {
        snprintf(key, sizeof key, "blk.%d.attn_output.weight", l);
        const tq_gguf_tensor *t = tq_gguf_find_tensor(g, key);
        if (!t) die("sensitivity: '%s' has no tensor '%s'", a->model, key);
        if (t->n_dims != 2 || t->ne[0] != (int64_t)nq * d)
            die_usage("sensitivity: '%s' tensor '%s' has %lld columns, the dump's %d query heads x %d = %d: --model "
                      "must be the dump's model", a->model, key, (long long)t->ne[0], nq, d, nq * d);
        *rows = (int)t->ne[1];
        *cols = (int)t->ne[0];
        if (!(wo[l] = malloc((size_t)t->n_elems * sizeof **wo))) die("out of memory");
        if ((rc = tq_gguf_tensor_to_f32(t, wo[l])) < 0) die_lib(rc, "sensitivity");
    }
    tq_gguf_close(g);
    return wo;
}

/* --weights: the closed-loop value of each unit this scan will have (same tensor, layer and head) at --weight-bits,
 * normalised to mean 1 by tq_sens_weights; all of it checked before the scan runs. Returns the weights in the scan's
 * unit order (tensor, layer, head) and fills the record of where they come from. */
static double *sens_load_weights(const sens_args *a, report_sens_info *info, sens_file *c)
{
    const char *p = a->weights;
    sens_file_load(p, c);
    if (!c->closed_loop)
        die("sensitivity: --weights '%s' is not a closed-loop scan (its metric is '%s'); give the JSON of tq "
            "sensitivity MODEL.gguf --closed-loop --text FILE -o CLOSED.json", p, c->metric);
    int nl = info->n_layers, nkv = info->n_kv_heads, d = info->head_dim;
    if (c->n_layers != nl || c->n_kv_heads != nkv || (c->head_dim && c->head_dim != d))
        die_usage("sensitivity: --weights '%s' is a scan of %d layers x %d kv heads of dim %d, the dump '%s' has %d x "
                  "%d of dim %d: the weights must come from the dump's model", p, c->n_layers, c->n_kv_heads,
                  c->head_dim, a->in, nl, nkv, d);
    if (c->per_head != a->per_head)
        die_usage("sensitivity: --weights '%s' has one unit per %s, this scan one per %s: scan both %s --per-head", p,
                  c->per_head ? "(layer, kv head)" : "layer", a->per_head ? "(layer, kv head)" : "layer",
                  a->per_head ? "with" : "without");
    for (int t = 0; t < 2; t++)
        if (info->tensors[t] && !c->tensors[t])
            die_usage("sensitivity: --weights '%s' has no %s units, which --tensor %s scans; rerun the closed-loop scan "
                      "with --tensor %s", p, t ? "values" : "keys", info->tensor, info->tensor);
    int b = -1;
    char have[64] = "";
    for (int i = 0; i < c->nb; i++) {
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%d", i ? "," : "", c->bits[i]);
        if (c->bits[i] == a->weight_bits) b = i;
    }
    if (!a->weight_bits && c->nb == 1) b = 0;
    else if (!a->weight_bits)
        die_usage("sensitivity: --weights '%s' has %d widths (%s bits); choose the one that weighs with --weight-bits",
                  p, c->nb, have);
    else if (b < 0) die_usage("sensitivity: --weight-bits %d is not a width of '%s' (it has %s)", a->weight_bits, p, have);
    int hu = a->per_head ? nkv : 1, n = (info->tensors[0] + info->tensors[1]) * nl * hu;
    int *row = malloc(sizeof(int) * 2 * (size_t)nl * hu);
    tq_sens_unit *u = calloc((size_t)n, sizeof *u);
    double *w = malloc(sizeof(double) * (size_t)n);
    if (!row || !u || !w) die("out of memory");
    for (int r = 0; r < c->nu; r++) row[(c->tensor[r] * nl + c->layer[r]) * hu + c->head[r]] = r;
    for (int i = 0, t = 0; t < 2; t++) /* the scan's order (lib/evaluate.c sens_units) */
        for (int l = 0; info->tensors[t] && l < nl; l++)
            for (int h = 0; h < hu; h++, i++)
                u[i] = (tq_sens_unit){t, l, a->per_head ? h : -1, 0, 0,
                                      c->metric_v + (size_t)row[(t * nl + l) * hu + h] * c->nb, NULL, NULL};
    tq_error_clear();
    if (tq_sens_weights(u, n, b, w) < 0) die("sensitivity: --weights '%s' (%s at %d bits): %s", p, c->metric,
                                              c->bits[b], tq_error_msg());
    free(row);
    free(u);
    info->weights = w;
    info->w_source = p, info->w_metric = c->metric, info->w_method = c->method, info->w_params = c->params;
    info->w_model = c->model, info->w_bits = c->bits[b];
    return w;
}

/* the curves times the weights, the scan's units checked against the order the weights were laid out in */
static void sens_apply_weights(const sens_args *a, report_sens_info *info, tq_sens_result *res, const double *w)
{
    static char name[48];
    int hu = a->per_head ? info->n_kv_heads : 1;
    for (int i = 0, t = 0; t < 2; t++)
        for (int l = 0; info->tensors[t] && l < info->n_layers; l++)
            for (int h = 0; h < hu; h++, i++) {
                TQ_ASSERT(i < res->n);
                const tq_sens_unit *u = &res->units[i];
                TQ_ASSERT(u->tensor == t && u->layer == l && u->head == (a->per_head ? h : -1));
            }
    tq_sens_weigh(res, info->n_bits, w);
    snprintf(name, sizeof name, "%s_sw", info->metric);
    info->metric = name;
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
    if (a.closed_loop) return sens_closed_loop(&a, f);
    if (!(so.metric = tq_sens_metric_find(a.metric)))
        die_usage("sensitivity: unknown metric '%s' (attn_kl, out_rel, out_proj, nmse, ip_rmse, "
                   "entropy_collapse; cl_kl, cl_dppl with --closed-loop)", a.metric);
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
    sens_file wf = {0};
    double *w = a.weights ? sens_load_weights(&a, &info, &wf) : NULL;
    float **wo = a.model ? sens_load_wo(&a, &info, &so.wo_rows, &so.wo_cols) : NULL;
    so.wo = (const float *const *)wo;
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
    if (w) sens_apply_weights(&a, &info, &res, w);
    if (a.outp) report_sens_json(a.outp, &info, &res);
    report_sens_summary(&info, &res, a.top, a.outp);
    tq_sens_free(&res);
    free(w);
    sens_file_free(&wf);
    for (int l = 0; wo && l < info.n_layers; l++) free(wo[l]);
    free(wo);
    free(P);
    free(a.pos);
    return 0;
}
