/* sensitivity.c: `tq sensitivity` — the distortion curve of every unit (layer, or layer x kv head, of keys and/or
 * values): one metric of lib/metrics.h at each candidate bit width with the unit's coordinate count, written as JSON
 * for `tq mixed-schedule`. Each tensor is measured alone: the other one stays exact, so a curve is that tensor's. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "cuda/tq_cuda.h"
#include "dump.h"
#include "metrics.h"
#include "quant.h"
#include "sweep.h"
#include "tq.h"

/* The metrics an allocator can minimise (lower is better) and which tensors they respond to. */
static const struct { const char *name; int met; int values_ok; int needs_q; int attention; } metrics[] = {
    {"attn_kl", TQ_MET_ATTN_KL, 0, 1, 1},
    {"out_rel", TQ_MET_OUT_REL, 1, 1, 1},
    {"nmse", TQ_MET_NMSE, 1, 0, 0},
    {"ip_rmse", TQ_MET_IP_RMSE, 0, 1, 0},
    {"entropy_collapse", TQ_MET_ENTROPY_COLLAPSE, 0, 1, 1},
};
#define N_METRICS (int)(sizeof metrics / sizeof *metrics)

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tq sensitivity DUMP --method M [options] [-o SENS.json]\n"
        "Quantize every layer (or layer x kv head) at each bit width and measure one metric, with the other tensor\n"
        "left exact: the distortion curves `tq mixed-schedule` allocates bits from. Prints the most and least\n"
        "sensitive units as Markdown; -o writes the curves as JSON (README \"Bit schedules\").\n"
        "  --method M        quantizer (turbo-prod, turbo-mse, polar, kivi, ...)\n"
        "  --bits LIST       candidate code bits, e.g. 2-4 or 1-8 (default 1-4 within the method's range)\n"
        "  --metric NAME     attn_kl (default), out_rel, nmse, ip_rmse, entropy_collapse\n"
        "  --tensor T        keys (default), values or both (values and both: nmse or out_rel)\n"
        "  --per-head        one unit per (layer, kv head) instead of per layer\n"
        "  --rotation R      dense (default) or hadamard, for rotation methods\n"
        "  --tokens N        first N tokens only (default all)\n"
        "  --seed S          quantizer and sampling seed (default 0)\n"
        "  --threads N       heads x bits evaluated in parallel (default 1; results do not depend on it)\n"
        "  --device cpu|cuda encode and decode on the GPU (turbo-mse, turbo-prod b>=2, qjl; without --bits, widths\n"
        "                    the GPU does not run are dropped with a note); metrics on the CPU (default cpu)\n"
        "  --top N           units listed at each end of the summary (default 5)\n"
        "  -o FILE           the JSON output (written to a temporary name, then renamed)\n");
}

typedef struct {
    double m[2];      /* the metric for keys [0] and values [1] of one (head, bits) */
    tq_metrics mk[2]; /* full metrics, aggregated per layer */
    double btot[2];
    int rc;
    char err[300];
} task_result;

typedef struct {
    int tensor, layer, head; /* head -1: the whole layer */
    double coords;
    double *metric, *bits_code, *bits_total; /* [nb] */
} unit;

/* One kv head at one bit width: keys quantized with exact values, then values quantized with exact keys. */
static void eval_task(int device, const tq_qparams *p, int mi, const int *tens, uint64_t seed, int layer, int h,
                      const tq_layer *L, task_result *r)
{
    int T = L->s.n_tokens, d = L->s.head_dim, G = L->s.has_queries ? L->s.n_q_heads / L->s.n_kv_heads : 0;
    size_t off = (size_t)h * T * d;
    const float *k = L->keys + off, *v = L->values ? L->values + off : NULL;
    const float *q = L->queries ? L->queries + (size_t)h * G * T * d : NULL;
    float *xh = tq_malloc((size_t)T * d * sizeof(float));
    tq_metrics_opts mo = {.seed = seed, .layer = layer, .head = h, .attention = metrics[mi].attention};
    int need_v = metrics[mi].met == TQ_MET_OUT_REL;
    r->rc = xh ? TQ_OK : TQ_ERR_NOMEM;
    tq_error_clear();
    for (int t = 0; t < 2 && r->rc == TQ_OK; t++) {
        r->m[t] = NAN;
        if (!tens[t]) continue;
        tq_metrics mk, mv;
        r->rc = sw_quantize_slice(device, p, (tq_slice_id){layer, h, t}, t ? v : k, T, d, xh, &r->btot[t]);
        if (r->rc < 0) break;
        if (t == TQ_TENSOR_KEYS)
            r->rc = tq_metrics_head(&mo, q, G, k, xh, need_v ? v : NULL, need_v ? v : NULL, T, d, &mk, need_v ? &mv : NULL);
        else
            r->rc = tq_metrics_head(&mo, q, G, k, k, v, xh, T, d, &mk, &mv);
        if (r->rc < 0) break;
        /* out_rel lives in the values row; everything else of keys in the keys row */
        r->mk[t] = t == TQ_TENSOR_KEYS && !need_v ? mk : mv;
        if (t == TQ_TENSOR_KEYS && need_v) r->mk[t].n_vectors = mk.n_vectors;
        r->m[t] = r->mk[t].v[metrics[mi].met];
    }
    if (r->rc < 0) snprintf(r->err, sizeof r->err, "%s", tq_error_msg());
    free(xh);
}

static void json_arr(FILE *f, const double *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_num(f, v[i]);
    }
    fputc(']', f);
}

static const char *tensor_name(int t) { return t == TQ_TENSOR_KEYS ? "keys" : "values"; }

/* "turbo-prod,bits=3,rot=dense,cb=beta,seed=0" without the method and bits: what every bit width shares */
static void shared_params(const tq_qparams *p, char *out, size_t n)
{
    char desc[192];
    tq_qparams_describe(p, desc, sizeof desc);
    out[0] = 0;
    char *save = NULL, *tok = strtok_r(desc, ",", &save);
    for (tok = strtok_r(NULL, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strncmp(tok, "bits=", 5)) continue;
        if (out[0]) strncat(out, ",", n - strlen(out) - 1);
        strncat(out, tok, n - strlen(out) - 1);
    }
}

static int ref_cmp_desc;
static const unit *ref_units;
static int ref_bit;
static int unit_cmp(const void *a, const void *b)
{
    double x = ref_units[*(const int *)a].metric[ref_bit], y = ref_units[*(const int *)b].metric[ref_bit];
    int xn = isnan(x), yn = isnan(y);
    if (xn != yn) return xn - yn;
    if (!xn && x != y) return (x > y ? -1 : 1) * (ref_cmp_desc ? 1 : -1);
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

static void summary_row(const unit *u, int nb, int rank)
{
    char head[16] = "all";
    if (u->head >= 0) snprintf(head, sizeof head, "%d", u->head);
    printf("| %d | %s | %d | %s |", rank, tensor_name(u->tensor), u->layer, head);
    for (int b = 0; b < nb; b++) {
        if (isfinite(u->metric[b])) printf(" %.4g |", u->metric[b]);
        else printf(" - |");
    }
    printf("\n");
}

int cmd_sensitivity(int argc, char **argv)
{
    const char *in = NULL, *method = NULL, *bits_s = NULL, *metric = "attn_kl", *tensor = "keys", *outp = NULL;
    const char *rot = NULL, *device_s = NULL;
    int per_head = 0, tokens = 0, threads = 1, top = 5, device = SW_DEV_CPU;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--per-head")) {
            per_head = 1;
            continue;
        }
        if (a[0] != '-' || !a[1]) {
            if (in) die_usage("sensitivity: unexpected argument '%s' (one input dump)", a);
            in = a;
            continue;
        }
        const char *const valued[] = {"--method", "--bits", "--metric", "--tensor", "--rotation", "--tokens", "--seed",
                                      "--threads", "--top", "-o", "--device"};
        const char *v = option_value("sensitivity", valued, sizeof valued / sizeof *valued, argc, argv, &i);
        if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--bits")) bits_s = v;
        else if (!strcmp(a, "--metric")) metric = v;
        else if (!strcmp(a, "--tensor")) tensor = v;
        else if (!strcmp(a, "--rotation")) rot = v;
        else if (!strcmp(a, "--tokens")) tokens = (int)parse_long(a, v, 1, 1L << 30);
        else if (!strcmp(a, "--seed")) seed = parse_u64(a, v);
        else if (!strcmp(a, "--threads")) threads = (int)parse_long(a, v, 1, 1024);
        else if (!strcmp(a, "--top")) top = (int)parse_long(a, v, 1, 1000000);
        else if (!strcmp(a, "--device")) device_s = v;
        else outp = v;
    }
    if (!in) die_usage("sensitivity: no input dump (usage: tq sensitivity DUMP --method M -o SENS.json)");
    if (!method) die_usage("sensitivity: no method; add --method (e.g. turbo-prod)");
    if (outp) check_output(outp, &in, 1);
    if (device_s) device = sw_device_parse("sensitivity", device_s);
    const tq_format *f = tq_format_by_name(method);
    if (!f) die_usage("sensitivity: unknown method '%s' (see 'tq sweep --help' for the list)", method);
    if (f->min_bits == f->max_bits)
        die_usage("sensitivity: method '%s' has a fixed width (%d bits); choose one with a bits range", f->name,
                  f->min_bits);
    int mi = -1;
    for (int i = 0; i < N_METRICS; i++)
        if (!strcmp(metric, metrics[i].name)) mi = i;
    if (mi < 0) die_usage("sensitivity: unknown metric '%s' (attn_kl, out_rel, nmse, ip_rmse, entropy_collapse)", metric);
    int tens[2] = {0, 0};
    if (!strcmp(tensor, "keys")) tens[0] = 1;
    else if (!strcmp(tensor, "values")) tens[1] = 1;
    else if (!strcmp(tensor, "both")) tens[0] = tens[1] = 1;
    else die_usage("sensitivity: --tensor is '%s', expected keys, values or both", tensor);
    if (tens[1] && !metrics[mi].values_ok)
        die_usage("sensitivity: metric '%s' does not depend on values; with --tensor %s use nmse or out_rel", metric,
                  tensor);
    int bits[8], nb = 0; /* at most the 8 widths 1..8 */
    if (bits_s) {
        int *w;
        nb = parse_list("--bits", bits_s, 1, 8, NULL, &w);
        memcpy(bits, w, (size_t)nb * sizeof *w);
        free(w);
        for (int i = 0; i < nb; i++)
            if (bits[i] < f->min_bits || bits[i] > f->max_bits)
                die_usage("sensitivity: --bits %d is out of range for %s (%d..%d)", bits[i], f->name, f->min_bits,
                          f->max_bits);
    } else
        for (int b = 1; b <= 4; b++)
            if (b >= f->min_bits && b <= f->max_bits) bits[nb++] = b;
    if (nb <= 0) die_usage("sensitivity: no bit width of 1..4 suits %s; give --bits", f->name);
    tq_qparams *P = calloc((size_t)nb, sizeof *P);
    if (!P) die("out of memory");
    for (int i = 0; i < nb; i++) {
        tq_qparams_default(&P[i], f->method, bits[i]);
        P[i].seed = seed;
        if (rot) {
            if (!f->uses_rotation) die_usage("sensitivity: --rotation applies to rotation methods, not %s", f->name);
            if (!strcmp(rot, "dense")) P[i].rotation = TQ_ROT_DENSE;
            else if (!strcmp(rot, "hadamard")) P[i].rotation = TQ_ROT_HADAMARD;
            else die_usage("sensitivity: unknown rotation '%s' (dense, hadamard)", rot);
        }
    }

    tq_dump *dump;
    int rc = tq_dump_open(&dump, in);
    if (rc < 0) die_lib(rc, NULL);
    tq_dump_meta meta_copy = *tq_dump_get_meta(dump); /* outlives tq_dump_close below */
    const tq_dump_meta *meta = &meta_copy;
    int nl = meta->n_layers, nkv = meta->shape.n_kv_heads, d = meta->shape.head_dim;
    for (int l = 0; l < nl; l++) {
        const tq_layer_shape *s = tq_dump_layer_shape(dump, l);
        if (s->n_kv_heads != nkv || s->head_dim != d)
            die("cannot scan '%s': layer %d has %d kv heads of dim %d, layer 0 %d of dim %d; schedules need one shape",
                in, l, s->n_kv_heads, s->head_dim, nkv, d);
        if (metrics[mi].needs_q && !s->has_queries)
            die_usage("sensitivity: '%s' layer %d has no queries; metric '%s' needs them (use --metric nmse)", in, l,
                      metric);
        if ((tens[1] || metrics[mi].met == TQ_MET_OUT_REL) && !s->has_values)
            die_usage("sensitivity: '%s' layer %d has no values; --tensor %s with metric '%s' needs them", in, l,
                      tensor, metric);
        if (tokens > s->n_tokens)
            die_usage("sensitivity: --tokens %d is more than the %d tokens of '%s' layer %d", tokens, s->n_tokens, in, l);
    }
    for (int i = 0; i < nb; i++) {
        tq_error_clear();
        if (f->check(&P[i], d) < 0) die_usage("sensitivity: %s", tq_error_msg());
    }
    for (int i = 0, k = 0, n0 = nb; device == SW_DEV_CUDA && i < n0; i++) {
        /* explicit --bits the GPU cannot run are an error; the default range just loses them, with a note */
        tq_error_clear();
        if (tq_cuda_supports(&P[i], d) < 0) {
            if (bits_s) die_usage("sensitivity: --bits %d: %s", bits[i], tq_error_msg());
            fprintf(stderr, "tq: note: skipping %d bits: %s\n", bits[i], tq_error_msg());
            nb--;
            continue;
        }
        P[k] = P[i];
        bits[k++] = bits[i];
    }
    if (nb <= 0) die_usage("sensitivity: no bit width of 1..4 runs on --device cuda for %s; use --device cpu", f->name);

    int hu = per_head ? nkv : 1, nt = tens[0] + tens[1];
    int nu = nt * nl * hu;
    if (nu <= 0 || nkv <= 0) die("cannot scan '%s': no layers or heads", in);
    unit *U = calloc((size_t)nu, sizeof *U);
    double *store = calloc((size_t)nu * 3 * nb, sizeof *store);
    task_result *res = calloc((size_t)nkv * nb, sizeof *res);
    if (!U || !store || !res) die("out of memory");
    for (int i = 0, t = 0; t < 2; t++) {
        if (!tens[t]) continue;
        for (int l = 0; l < nl; l++)
            for (int h = 0; h < hu; h++, i++) {
                U[i] = (unit){t, l, per_head ? h : -1, 0, store + (size_t)i * 3 * nb, store + (size_t)i * 3 * nb + nb,
                              store + (size_t)i * 3 * nb + 2 * nb};
                for (int b = 0; b < nb; b++) U[i].bits_code[b] = f->bits_code(&P[b], d);
            }
    }
    openblas_set_num_threads(1); /* parallel over tasks (--threads); an idle BLAS pool spins (see sw_run) */
    tq_progress pg;
    progress_start(&pg, in, nl);
    for (int l = 0; l < nl; l++) {
        tq_layer L;
        if ((rc = tq_dump_read_layer(dump, l, tokens, 0, &L)) < 0) die_lib(rc, NULL);
        int ntask = nkv * nb;
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
#endif
        for (int j = 0; j < ntask; j++) eval_task(device, &P[j % nb], mi, tens, seed, l, j / nb, &L, &res[j]);
        for (int t = 0, base = 0; t < 2; t++) {
            if (!tens[t]) continue;
            for (int b = 0; b < nb; b++) {
                tq_metrics_acc acc;
                tq_metrics_acc_init(&acc);
                double bt = 0, w = 0;
                for (int h = 0; h < nkv; h++) { /* serial, in head order: independent of --threads */
                    task_result *r = &res[h * nb + b];
                    if (r->rc < 0) die("cannot evaluate '%s' layer %d head %d at %d bits: %s", in, l, h, bits[b], r->err);
                    double coords = (double)L.s.n_tokens * d;
                    if (per_head) {
                        unit *u = &U[base + l * hu + h];
                        u->metric[b] = r->m[t];
                        u->bits_total[b] = r->btot[t];
                        u->coords = coords;
                    } else {
                        tq_metrics_acc_add(&acc, &r->mk[t]);
                        bt += r->btot[t] * coords;
                        w += coords;
                    }
                }
                if (!per_head) {
                    tq_metrics mean;
                    tq_metrics_acc_mean(&acc, &mean);
                    unit *u = &U[base + l];
                    u->metric[b] = mean.v[metrics[mi].met];
                    u->bits_total[b] = bt / w;
                    u->coords = w;
                }
            }
            base += nl * hu;
        }
        tq_layer_free(&L);
        progress_step(&pg, 1);
    }
    progress_end(&pg);
    tq_dump_close(dump);

    /* ---- JSON ---- */
    if (outp) {
        char params[192];
        FILE *o = out_open(outp);
        shared_params(&P[0], params, sizeof params);
        fprintf(o, "{\"tq_sensitivity\": 1,\n \"dump\": ");
        json_str(o, in);
        fprintf(o, ", \"model\": ");
        json_str(o, meta->model);
        fprintf(o, ",\n \"method\": ");
        json_str(o, f->name);
        fprintf(o, ", \"params\": ");
        json_str(o, params);
        fprintf(o, ", \"metric\": \"%s\", \"units\": \"%s\",\n \"n_layers\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, "
                   "\"tokens\": %d, \"seed\": %llu,\n \"tensors\": [%s%s%s], \"bits\": [",
                metric, per_head ? "head" : "layer", nl, nkv, d, tokens ? tokens : meta->shape.n_tokens,
                (unsigned long long)seed, tens[0] ? "\"keys\"" : "", nt == 2 ? ", " : "", tens[1] ? "\"values\"" : "");
        for (int b = 0; b < nb; b++) fprintf(o, "%s%d", b ? ", " : "", bits[b]);
        fprintf(o, "],\n \"rows\": [");
        for (int i = 0; i < nu; i++) {
            const unit *u = &U[i];
            fprintf(o, "%s\n  {\"tensor\": \"%s\", \"layer\": %d, \"head\": ", i ? "," : "", tensor_name(u->tensor),
                    u->layer);
            if (u->head >= 0) fprintf(o, "%d", u->head);
            else fputs("null", o);
            fprintf(o, ", \"coords\": %.0f, \"metric\": ", u->coords);
            json_arr(o, u->metric, nb);
            fputs(", \"bits_code\": ", o);
            json_arr(o, u->bits_code, nb);
            fputs(", \"bits_total\": ", o);
            json_arr(o, u->bits_total, nb);
            fputc('}', o);
        }
        fprintf(o, "\n]}\n");
        out_commit(o, outp);
    }

    /* ---- Markdown summary: ranked by the metric at the middle bit width ---- */
    int *ord = malloc(sizeof(int) * (size_t)nu);
    if (!ord) die("out of memory");
    for (int i = 0; i < nu; i++) ord[i] = i;
    ref_units = U;
    ref_bit = nb / 2;
    ref_cmp_desc = 1;
    qsort(ord, (size_t)nu, sizeof *ord, unit_cmp);
    printf("## Sensitivity of '%s': %s, %s of %s, per %s (ranked at %d bits)\n\n", in, f->name, metric, tensor,
           per_head ? "layer x kv head" : "layer", bits[ref_bit]);
    printf("| rank | tensor | layer | head |");
    for (int b = 0; b < nb; b++) printf(" %d bits |", bits[b]);
    printf("\n|---:|---|---:|---:|");
    for (int b = 0; b < nb; b++) printf("---:|");
    printf("\n");
    int shown = 2 * top >= nu ? nu : top;
    for (int i = 0; i < shown; i++) summary_row(&U[ord[i]], nb, i + 1);
    if (shown < nu) {
        printf("| … |  |  |  |");
        for (int b = 0; b < nb; b++) printf("  |");
        printf("\n");
        for (int i = nu - top; i < nu; i++) summary_row(&U[ord[i]], nb, i + 1);
    }
    double lo = U[ord[nu - 1]].metric[ref_bit], hi = U[ord[0]].metric[ref_bit];
    printf("\nmost / least sensitive at %d bits: %.4g / %.4g (ratio %.3g)%s%s\n", bits[ref_bit], hi, lo,
           lo > 0 ? hi / lo : NAN, outp ? "; curves in " : "", outp ? outp : "");
    if (fflush(stdout) != 0) die("cannot write the summary to stdout: %s", strerror(errno));
    free(ord);
    free(U);
    free(store);
    free(res);
    free(P);
    return 0;
}
