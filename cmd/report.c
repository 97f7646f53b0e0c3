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

/* "turbo-mse,bits=3,rot=dense" -> "bits=3,rot=dense" (the method has its own column); "none" for a method without
 * parameters (int8, fp16), so no identifying field is ever empty. */
static const char *params_of(const char *desc)
{
    const char *c = strchr(desc, ',');
    return c && c[1] ? c + 1 : "none";
}

/* ---------- the sweep table (README "Output schema") ---------- */

/* One tcell of a row: a string, an integer id (layer, window, kv_head: -1 where the scope aggregates it) or a metric
 * (absent = NaN: empty in CSV, null in JSON, "-" in Markdown). Markdown prints compression with 2 decimals. */
enum { CELL_STR, CELL_INT, CELL_NUM, CELL_NUM2 };
typedef struct { int kind; const char *s; long i; double d; } tcell;
#define MAX_COLS 48

static const char *scope_of(const tq_eval_row *r) { return r->layer < 0 ? "dump" : r->head < 0 ? "layer" : "slice"; }

/* rows kept at each --aggregate level: none keeps slices, layers and dumps; layer drops slices; dump keeps only the
 * input's aggregates */
static int row_kept(const report_table *t, const tq_eval_row *r)
{
    if (t->aggregate == REPORT_AGG_DUMP) return r->layer < 0;
    if (t->aggregate == REPORT_AGG_LAYER) return r->head < 0;
    return 1;
}

static int id_cells(tcell *c, const tq_eval_opts *o, const tq_eval_row *r)
{
    c[0] = (tcell){CELL_STR, o->inputs[r->input].label, 0, 0};
    c[1] = (tcell){CELL_STR, scope_of(r), 0, 0};
    c[2] = (tcell){CELL_INT, NULL, r->layer, 0};
    c[3] = (tcell){CELL_INT, NULL, r->window, 0};
    c[4] = (tcell){CELL_INT, NULL, r->head, 0};
    return 5;
}

static const char *const id_cols[] = {"dump", "scope", "layer", "window", "kv_head"};
static const char *const long_cols[] = {"tensor", "method", "params", "bits_code", "bits_total", "compression"};
/* wide rows: keys' method and metrics, values' method and the metrics values respond to */
static const char *const wide_cols[] = {"method", "params", "values_method", "values_params", "k_bits_code",
                                        "k_bits_total", "v_bits_code", "v_bits_total", "compression"};
static const int value_mets[] = {TQ_MET_NMSE, TQ_MET_DMSE, TQ_MET_COS, TQ_MET_OUT_REL};
#define N_VALUE_METS 4

static int columns(const report_table *t, const char **names, char store[][32])
{
    int n = 0;
    for (int i = 0; i < 5; i++) names[n++] = id_cols[i];
    if (!t->wide) {
        for (int i = 0; i < 6; i++) names[n++] = long_cols[i];
        for (int m = 0; m < TQ_MET_COUNT; m++) names[n++] = tq_metric_names[m];
        return n;
    }
    for (int i = 0; i < 9; i++) names[n++] = wide_cols[i];
    int k = 0;
    for (int m = 0; m < TQ_MET_COUNT; m++)
        if (m != TQ_MET_OUT_REL) {
            snprintf(store[k], 32, "k_%s", tq_metric_names[m]);
            names[n++] = store[k++];
        }
    for (int i = 0; i < N_VALUE_METS; i++) {
        snprintf(store[k], 32, "v_%s", tq_metric_names[value_mets[i]]);
        names[n++] = store[k++];
    }
    return n;
}

static double ratio16(double bits) { return bits > 0 ? 16.0 / bits : NAN; }

static int long_cells(tcell *c, const tq_eval_opts *o, const tq_eval_row *r)
{
    const tq_eval_config *cf = &o->cfg[r->cfg];
    int keys = r->tensor == TQ_TENSOR_KEYS;
    int n = id_cells(c, o, r);
    c[n++] = (tcell){CELL_STR, tq_tensor_name(r->tensor), 0, 0};
    c[n++] = (tcell){CELL_STR, tq_format_of(keys ? cf->k.method : cf->v.method)->name, 0, 0};
    c[n++] = (tcell){CELL_STR, params_of(keys ? cf->kdesc : cf->vdesc), 0, 0};
    c[n++] = (tcell){CELL_NUM, NULL, 0, r->bits_code};
    c[n++] = (tcell){CELL_NUM, NULL, 0, r->bits_total};
    c[n++] = (tcell){CELL_NUM2, NULL, 0, ratio16(r->bits_total)};
    for (int m = 0; m < TQ_MET_COUNT; m++) c[n++] = (tcell){CELL_NUM, NULL, 0, r->m.v[m]};
    return n;
}

/* keys row r and its values row v (NULL: keys only) on one line; compression over both tensors */
static int wide_cells(tcell *c, const tq_eval_opts *o, const tq_eval_row *r, const tq_eval_row *v)
{
    const tq_eval_config *cf = &o->cfg[r->cfg];
    int n = id_cells(c, o, r);
    c[n++] = (tcell){CELL_STR, tq_format_of(cf->k.method)->name, 0, 0};
    c[n++] = (tcell){CELL_STR, params_of(cf->kdesc), 0, 0};
    c[n++] = (tcell){CELL_STR, v ? tq_format_of(cf->v.method)->name : "none", 0, 0};
    c[n++] = (tcell){CELL_STR, v ? params_of(cf->vdesc) : "none", 0, 0};
    c[n++] = (tcell){CELL_NUM, NULL, 0, r->bits_code};
    c[n++] = (tcell){CELL_NUM, NULL, 0, r->bits_total};
    c[n++] = (tcell){CELL_NUM, NULL, 0, v ? v->bits_code : NAN};
    c[n++] = (tcell){CELL_NUM, NULL, 0, v ? v->bits_total : NAN};
    c[n++] = (tcell){CELL_NUM2, NULL, 0, v ? 2 * ratio16(r->bits_total + v->bits_total) : ratio16(r->bits_total)};
    for (int m = 0; m < TQ_MET_COUNT; m++)
        if (m != TQ_MET_OUT_REL) c[n++] = (tcell){CELL_NUM, NULL, 0, r->m.v[m]};
    for (int i = 0; i < N_VALUE_METS; i++) c[n++] = (tcell){CELL_NUM, NULL, 0, v ? v->m.v[value_mets[i]] : NAN};
    return n;
}

/* the values row of keys row i: the engine writes each configuration x scope's keys row, then its values row */
static const tq_eval_row *values_of(const tq_eval_rows *rs, long i)
{
    const tq_eval_row *k = &rs->rows[i];
    for (long j = i + 1; j < rs->n; j++) {
        const tq_eval_row *v = &rs->rows[j];
        if (v->tensor == TQ_TENSOR_VALUES && v->input == k->input && v->layer == k->layer && v->head == k->head &&
            v->cfg == k->cfg)
            return v;
    }
    return NULL;
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

static void emit_row(FILE *f, int fmt, const char *const *names, const tcell *c, int n, long index)
{
    if (fmt == REPORT_JSON) fprintf(f, "%s\n  {", index ? "," : "");
    for (int i = 0; i < n; i++) {
        if (fmt == REPORT_CSV) {
            if (i) fputc(',', f);
            if (c[i].kind == CELL_STR) csv_field(f, c[i].s);
            else if (c[i].kind == CELL_INT) fprintf(f, "%ld", c[i].i);
            else if (isfinite(c[i].d)) fprintf(f, "%.9g", c[i].d); /* absent: empty field */
        } else if (fmt == REPORT_JSON) {
            if (i) fputs(", ", f);
            json_str(f, names[i]);
            fputs(": ", f);
            if (c[i].kind == CELL_STR) json_str(f, c[i].s);
            else if (c[i].kind == CELL_INT) fprintf(f, "%ld", c[i].i);
            else if (isfinite(c[i].d)) fprintf(f, "%.9g", c[i].d);
            else fputs("null", f);
        } else {
            if (c[i].kind == CELL_STR) {
                fputs("| ", f);
                for (const char *p = c[i].s; *p; p++) fputc(*p == '|' ? '/' : *p, f); /* a '|' splits the tcell */
                fputc(' ', f);
            } else if (c[i].kind == CELL_INT) fprintf(f, "| %ld ", c[i].i);
            else if (!isfinite(c[i].d)) fputs("| - ", f);
            else fprintf(f, c[i].kind == CELL_NUM2 ? "| %.2f " : "| %.4g ", c[i].d);
        }
    }
    if (fmt == REPORT_JSON) fputc('}', f);
    else if (fmt == REPORT_CSV) fputc('\n', f);
    else fputs("|\n", f);
}

void report_rows(FILE *f, int fmt, const report_table *t, const tq_eval_opts *o, const tq_eval_rows *r)
{
    const char *names[MAX_COLS];
    char store[TQ_MET_COUNT + N_VALUE_METS][32];
    tcell c[MAX_COLS];
    int ncol = columns(t, names, store);
    if (fmt == REPORT_CSV) {
        for (int i = 0; i < ncol; i++) fprintf(f, "%s%s", i ? "," : "", names[i]);
        fputc('\n', f);
    } else if (fmt == REPORT_JSON) {
        fprintf(f, "{\"tq_sweep\": 2, \"columns\": [");
        for (int i = 0; i < ncol; i++) {
            if (i) fputs(", ", f);
            json_str(f, names[i]);
        }
        fprintf(f, "],\n \"rows\": [");
    } else {
        for (int i = 0; i < ncol; i++) fprintf(f, "| %s ", names[i]);
        fputs("|\n", f);
        tcell row0[MAX_COLS];
        if (t->wide) wide_cells(row0, o, &(tq_eval_row){.cfg = 0}, NULL);
        else long_cells(row0, o, &(tq_eval_row){.cfg = 0});
        for (int i = 0; i < ncol; i++) fputs(row0[i].kind == CELL_STR ? "|---" : "|---:", f);
        fputs("|\n", f);
    }
    long out = 0;
    for (long i = 0; i < r->n; i++) {
        const tq_eval_row *w = &r->rows[i];
        if (!row_kept(t, w)) continue;
        if (t->wide && w->tensor != TQ_TENSOR_KEYS) continue; /* written with its keys row */
        int n = t->wide ? wide_cells(c, o, w, values_of(r, i)) : long_cells(c, o, w);
        TQ_ASSERT(n == ncol);
        emit_row(f, fmt, names, c, n, out++);
    }
    if (fmt == REPORT_JSON) fprintf(f, "\n]}\n");
}

int report_aggregate(const char *s, int fmt)
{
    if (!s) return fmt == REPORT_MD ? REPORT_AGG_DUMP : REPORT_AGG_NONE;
    if (!strcmp(s, "none")) return REPORT_AGG_NONE;
    if (!strcmp(s, "layer")) return REPORT_AGG_LAYER;
    if (!strcmp(s, "dump")) return REPORT_AGG_DUMP;
    die_usage("option '--aggregate': unknown level '%s' (none, layer, dump)", s);
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

void report_rows_path(const char *path, int fmt, const report_table *t, const tq_eval_opts *o,
                      const tq_eval_rows *r)
{
    if (!path || !strcmp(path, "-")) {
        report_rows(stdout, fmt, t, o, r);
        if (fflush(stdout) != 0) die("cannot write the report to stdout: %s", strerror(errno));
        return;
    }
    FILE *f = out_open(path);
    report_rows(f, fmt, t, o, r);
    out_commit(f, path);
    report_wrote(path);
}

void report_wrote(const char *path) { fprintf(stderr, "tq: wrote %s\n", path); }


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
    if (s->text) { /* closed loop: what the model ran over */
        fprintf(o, ", \"closed_loop\": true, \"text\": ");
        json_str(o, s->text);
        fprintf(o, ", \"prompt\": %d, \"ppl_ref\": %.9g", s->prompt, s->ppl_ref);
    }
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
    fputc(']', o);
    if (s->weights) { /* what the curves were multiplied by: the closed-loop scan, its metric and width */
        fprintf(o, ",\n \"weights\": {\"source\": ");
        json_str(o, s->w_source);
        fprintf(o, ", \"metric\": ");
        json_str(o, s->w_metric);
        fprintf(o, ", \"bits\": %d, \"method\": ", s->w_bits);
        json_str(o, s->w_method);
        fprintf(o, ", \"params\": ");
        json_str(o, s->w_params);
        fprintf(o, ", \"model\": ");
        json_str(o, s->w_model);
        fputc('}', o);
    }
    fprintf(o, ",\n \"rows\": [");
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
        if (s->weights) {
            fputs(", \"weight\": ", o);
            json_num(o, s->weights[i]);
        }
        if (s->dppl) {
            fputs(", \"dppl_pct\": ", o);
            json_arr(o, s->dppl + (size_t)i * nb, nb);
        }
        fputc('}', o);
    }
    fprintf(o, "\n]}\n");
    out_commit(o, path);
    report_wrote(path);
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
    /* freed before a failure ends the process: `ord` is dead by then, so LeakSanitizer saw it as leaked (a
     * summary written to a full stdout exited 1 with a leak report) */
    int werr = fflush(stdout) != 0 ? errno : 0;
    free(ord);
    if (werr) die("cannot write the summary to stdout: %s", strerror(werr));
}

/* ---------- progress ---------- */

void report_progress(void *ctx, const char *label, long done, long total)
{
    tq_progress *p = ctx;
    if (done == 0) progress_start(p, label, total);
    else progress_step(p, done - p->done);
    if (done >= total) progress_end(p);
}
