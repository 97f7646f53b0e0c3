/* report.c: the writers of report.h — sweep tables (Markdown, CSV, JSON), the entropy summary, the sensitivity
 * curves and their ranking, and the progress bar adapter. Numbers print as they always have (goldens in
 * tests/golden/ hold every format). */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "vocab.h"

/* "turbo-mse,bits=3,rot=dense" -> "bits=3,rot=dense" (the method has its own column). */
static const char *params_of(const char *desc)
{
    const char *c = strchr(desc, ',');
    return c ? c + 1 : "";
}

/* ---------- output ---------- */

/* window: the layer's sliding window (0 = global attention), so a sweep shows a model's local and global layers;
 * absent (empty / null / "-") on an aggregate over layers whose windows differ. */
static const char *const fixed_cols[] = {"dump", "layer", "window", "head", "tensor", "method", "params",
                                         "bits_code", "bits_total", "compression"};
#define N_FIXED 10
#define N_STR 7 /* columns 0..6 are strings (layer, window and head are numbers or "all" / absent) */

static void row_strings(const tq_eval_opts *o, const tq_eval_row *r, char s[N_FIXED][256])
{
    const tq_eval_config *c = &o->cfg[r->cfg];
    const tq_qparams *p = r->tensor == TQ_TENSOR_KEYS ? &c->k : &c->v;
    const char *desc = r->tensor == TQ_TENSOR_KEYS ? c->kdesc : c->vdesc;
    snprintf(s[0], 256, "%s", o->inputs[r->input].label);
    if (r->layer < 0) strcpy(s[1], "all");
    else snprintf(s[1], 256, "%d", r->layer);
    if (r->window < 0) s[2][0] = 0;
    else snprintf(s[2], 256, "%d", r->window);
    if (r->head < 0) strcpy(s[3], "all");
    else snprintf(s[3], 256, "%d", r->head);
    strcpy(s[4], tq_tensor_name(r->tensor));
    snprintf(s[5], 256, "%s", tq_format_of(p->method)->name);
    snprintf(s[6], 256, "%s", params_of(desc));
}

static double row_num(const tq_eval_row *r, int col) /* col >= N_STR */
{
    if (col == 7) return r->bits_code;
    if (col == 8) return r->bits_total;
    if (col == 9) return r->bits_total > 0 ? 16.0 / r->bits_total : NAN;
    return r->m.v[col - N_FIXED];
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void md_num(char *buf, size_t n, int col, double v)
{
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (col == 7 || col == 8) snprintf(buf, n, "%.4g", v);
    else if (col == 9) snprintf(buf, n, "%.2f", v);
    else snprintf(buf, n, "%.4g", v);
}

void report_rows(FILE *f, int fmt, const tq_eval_opts *o, const tq_eval_rows *r)
{
    int ncol = N_FIXED + TQ_MET_COUNT;
    if (fmt == REPORT_CSV) {
        for (int c = 0; c < ncol; c++) fprintf(f, "%s%s", c ? "," : "", c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
        fputc('\n', f);
        for (long i = 0; i < r->n; i++) {
            char s[N_FIXED][256];
            row_strings(o, &r->rows[i], s);
            for (int c = 0; c < ncol; c++) {
                if (c) fputc(',', f);
                if (c < N_STR) csv_field(f, s[c]);
                else {
                    double v = row_num(&r->rows[i], c);
                    if (isfinite(v)) fprintf(f, "%.9g", v); /* absent: empty field */
                }
            }
            fputc('\n', f);
        }
    } else if (fmt == REPORT_JSON) {
        fprintf(f, "{\"tq_sweep\": 1, \"columns\": [");
        for (int c = 0; c < ncol; c++) {
            if (c) fputs(", ", f);
            json_str(f, c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
        }
        fprintf(f, "],\n \"rows\": [");
        for (long i = 0; i < r->n; i++) {
            const tq_eval_row *w = &r->rows[i];
            char s[N_FIXED][256];
            row_strings(o, w, s);
            fprintf(f, "%s\n  {", i ? "," : "");
            for (int c = 0; c < ncol; c++) {
                if (c) fputs(", ", f);
                json_str(f, c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
                fputs(": ", f);
                if ((c == 1 && w->layer >= 0) || (c == 2 && w->window >= 0) || (c == 3 && w->head >= 0))
                    fputs(s[c], f); /* numbers */
                else if (c == 2) fputs("null", f);
                else if (c < N_STR) json_str(f, s[c]);
                else {
                    double v = row_num(w, c);
                    if (isfinite(v)) fprintf(f, "%.9g", v);
                    else fputs("null", f);
                }
            }
            fputc('}', f);
        }
        fprintf(f, "\n]}\n");
    } else {
        for (int c = 0; c < ncol; c++) fprintf(f, "| %s ", c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
        fputs("|\n", f);
        for (int c = 0; c < ncol; c++) fputs(c < N_STR && c != 2 ? "|---" : "|---:", f);
        fputs("|\n", f);
        for (long i = 0; i < r->n; i++) {
            char s[N_FIXED][256], num[32];
            row_strings(o, &r->rows[i], s);
            for (int c = 0; c < ncol; c++) {
                if (c < N_STR) {
                    for (char *p = s[c]; *p; p++)
                        if (*p == '|') *p = '/'; /* a '|' would split the cell */
                    fprintf(f, "| %s ", *s[c] ? s[c] : "-");
                } else {
                    md_num(num, sizeof num, c, row_num(&r->rows[i], c));
                    fprintf(f, "| %s ", num);
                }
            }
            fputs("|\n", f);
        }
    }
}

int report_format(const char *fmt, const char *path)
{
    if (fmt) {
        if (!strcmp(fmt, "md") || !strcmp(fmt, "markdown")) return REPORT_MD;
        if (!strcmp(fmt, "csv")) return REPORT_CSV;
        if (!strcmp(fmt, "json")) return REPORT_JSON;
        die_usage("option '--format': unknown format '%s' (md, csv, json)", fmt);
    }
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (dot && !strcmp(dot, ".csv")) return REPORT_CSV;
    if (dot && !strcmp(dot, ".json")) return REPORT_JSON;
    return REPORT_MD;
}

void report_rows_path(const char *path, int fmt, const tq_eval_opts *o, const tq_eval_rows *r)
{
    if (!path || !strcmp(path, "-")) {
        report_rows(stdout, fmt, o, r);
        if (fflush(stdout) != 0) die("cannot write the report to stdout: %s", strerror(errno));
        return;
    }
    FILE *f = out_open(path);
    report_rows(f, fmt, o, r);
    out_commit(f, path);
}


/* ---------- tq entropy ---------- */

static double get(const tq_eval_row *r, int m) { return r->m.v[m]; }

/* A metric for the summary: "-" when absent (no queries in a dump), never "nan". */
static const char *cell(char *buf, size_t n, const char *f, double v, double scale)
{
    if (isfinite(v)) snprintf(buf, n, f, scale * v);
    else snprintf(buf, n, "-");
    return buf;
}

void report_entropy(const tq_eval_opts *o, const tq_eval_rows *rows)
{
    /* summary: one line per (input, configuration) */
    printf("## Attention entropy under key quantization\n\n");
    printf("| input | method | bits | entropy | entropy_q | entropy_collapse | attn_kl | top8 |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (long i = 0; i < rows->n; i++) {
        const tq_eval_row *r = &rows->rows[i];
        if (r->tensor != 0) continue;
        const tq_eval_config *c = &o->cfg[r->cfg];
        char b[5][32];
        printf("| %s | %s | %.4g | %s | %s | %s | %s | %s |\n", o->inputs[r->input].label,
               tq_method_name(c->k.method), r->bits_code, cell(b[0], 32, "%.4f", get(r, TQ_MET_ENTROPY), 1),
               cell(b[1], 32, "%.4f", get(r, TQ_MET_ENTROPY_Q), 1),
               cell(b[2], 32, "%.2f%%", get(r, TQ_MET_ENTROPY_COLLAPSE), 100),
               cell(b[3], 32, "%.4g", get(r, TQ_MET_ATTN_KL), 1), cell(b[4], 32, "%.3f", get(r, TQ_MET_TOP8), 1));
    }
    /* isotropic vs structured at 2 bits, where both were run */
    int gi = -1, si = -1;
    for (int i = 0; i < o->n_inputs; i++) {
        if (!o->inputs[i].path && o->inputs[i].synth == TQ_SYNTH_GAUSSIAN) gi = i;
        if (!o->inputs[i].path && o->inputs[i].synth == TQ_SYNTH_STRUCTURED) si = i;
    }
    int said = 0;
    for (int ci = 0; ci < o->n_cfg; ci++) {
        if (o->cfg[ci].k.bits != 2 || tq_format_of(o->cfg[ci].k.method)->min_bits == 16) continue;
        const tq_eval_row *g = NULL, *s = NULL;
        for (long i = 0; i < rows->n; i++) {
            const tq_eval_row *r = &rows->rows[i];
            if (r->cfg != ci || r->tensor != 0) continue;
            if (r->input == gi) g = r;
            if (r->input == si) s = r;
        }
        if (!g || !s) continue;
        if (!said++) printf("\nAt 2 bits, isotropic (gaussian) vs structured keys (the seed article claims ~65%% "
                            "collapse on structured keys):\n\n");
        printf("- %s: entropy collapse %.2f%% isotropic vs %.2f%% structured; attn_kl %.4g vs %.4g nats\n",
               o->cfg[ci].kdesc, 100 * get(g, TQ_MET_ENTROPY_COLLAPSE), 100 * get(s, TQ_MET_ENTROPY_COLLAPSE),
               get(g, TQ_MET_ATTN_KL), get(s, TQ_MET_ATTN_KL));
    }
}

/* ---------- tq sensitivity ---------- */

static void json_arr(FILE *f, const double *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_num(f, v[i]);
    }
    fputc(']', f);
}

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

void report_sens_json(const char *path, const report_sens_info *s, const tq_sens_result *r)
{
    char params[192];
    FILE *o = out_open(path);
    int nb = s->n_bits, nt = s->tensors[0] + s->tensors[1];
    shared_params(&s->params[0], params, sizeof params);
    fprintf(o, "{\"tq_sensitivity\": 1,\n \"dump\": ");
    json_str(o, s->dump);
    fprintf(o, ", \"model\": ");
    json_str(o, s->model);
    fprintf(o, ",\n \"method\": ");
    json_str(o, tq_method_name(s->params[0].method));
    fprintf(o, ", \"params\": ");
    json_str(o, params);
    fprintf(o, ", \"metric\": \"%s\", \"units\": \"%s\",\n \"n_layers\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, "
               "\"tokens\": %d, \"seed\": %llu,\n \"tensors\": [%s%s%s], \"bits\": [",
            s->metric, s->per_head ? "head" : "layer", s->n_layers, s->n_kv_heads, s->head_dim, s->tokens,
            (unsigned long long)s->seed, s->tensors[0] ? "\"keys\"" : "", nt == 2 ? ", " : "",
            s->tensors[1] ? "\"values\"" : "");
    for (int b = 0; b < nb; b++) fprintf(o, "%s%d", b ? ", " : "", s->bits[b]);
    fprintf(o, "],\n \"rows\": [");
    for (int i = 0; i < r->n; i++) {
        const tq_sens_unit *u = &r->units[i];
        fprintf(o, "%s\n  {\"tensor\": \"%s\", \"layer\": %d, \"head\": ", i ? "," : "", tq_tensor_name(u->tensor),
                u->layer);
        if (u->head >= 0) fprintf(o, "%d", u->head);
        else fputs("null", o);
        fprintf(o, ", \"window\": %d, \"coords\": %.0f, \"metric\": ", u->window, u->coords);
        json_arr(o, u->metric, nb);
        fputs(", \"bits_code\": ", o);
        json_arr(o, u->bits_code, nb);
        fputs(", \"bits_total\": ", o);
        json_arr(o, u->bits_total, nb);
        fputc('}', o);
    }
    fprintf(o, "\n]}\n");
    out_commit(o, path);
}

/* units ranked by the metric at the reference width, highest first, NaN last, ties by index */
static const tq_sens_unit *ref_units;
static int ref_bit;
static int unit_cmp(const void *a, const void *b)
{
    double x = ref_units[*(const int *)a].metric[ref_bit], y = ref_units[*(const int *)b].metric[ref_bit];
    int xn = isnan(x), yn = isnan(y);
    if (xn != yn) return xn - yn;
    if (!xn && x != y) return x > y ? -1 : 1;
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

static void summary_row(const tq_sens_unit *u, int nb, int rank)
{
    char head[16] = "all";
    if (u->head >= 0) snprintf(head, sizeof head, "%d", u->head);
    printf("| %d | %s | %d | %s |", rank, tq_tensor_name(u->tensor), u->layer, head);
    for (int b = 0; b < nb; b++) {
        if (isfinite(u->metric[b])) printf(" %.4g |", u->metric[b]);
        else printf(" - |");
    }
    printf("\n");
}

void report_sens_summary(const report_sens_info *s, const tq_sens_result *r, int top, const char *outp)
{
    int nu = r->n, nb = s->n_bits;
    int *ord = malloc(sizeof(int) * (size_t)nu);
    if (!ord) die("out of memory");
    for (int i = 0; i < nu; i++) ord[i] = i;
    ref_units = r->units;
    ref_bit = nb / 2;
    qsort(ord, (size_t)nu, sizeof *ord, unit_cmp);
    printf("## Sensitivity of '%s': %s, %s of %s, per %s (ranked at %d bits)\n\n", s->dump,
           tq_method_name(s->params[0].method), s->metric, s->tensor, s->per_head ? "layer x kv head" : "layer",
           s->bits[ref_bit]);
    printf("| rank | tensor | layer | head |");
    for (int b = 0; b < nb; b++) printf(" %d bits |", s->bits[b]);
    printf("\n|---:|---|---:|---:|");
    for (int b = 0; b < nb; b++) printf("---:|");
    printf("\n");
    int shown = 2 * top >= nu ? nu : top;
    for (int i = 0; i < shown; i++) summary_row(&r->units[ord[i]], nb, i + 1);
    if (shown < nu) {
        printf("| … |  |  |  |");
        for (int b = 0; b < nb; b++) printf("  |");
        printf("\n");
        for (int i = nu - top; i < nu; i++) summary_row(&r->units[ord[i]], nb, i + 1);
    }
    double lo = r->units[ord[nu - 1]].metric[ref_bit], hi = r->units[ord[0]].metric[ref_bit];
    printf("\nmost / least sensitive at %d bits: %.4g / %.4g (ratio %.3g)%s%s\n", s->bits[ref_bit], hi, lo,
           lo > 0 ? hi / lo : NAN, outp ? "; curves in " : "", outp ? outp : "");
    if (fflush(stdout) != 0) die("cannot write the summary to stdout: %s", strerror(errno));
    free(ord);
}

/* ---------- progress ---------- */

void report_progress(void *ctx, const char *label, long done, long total)
{
    tq_progress *p = ctx;
    if (done == 0) progress_start(p, label, total);
    else progress_step(p, done - p->done);
    if (done >= total) progress_end(p);
}
