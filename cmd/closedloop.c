/* closedloop.c: the command-line pieces tq perplexity and tq generate share (closedloop.h): runs from the axes,
 * configuration columns, the report table. */
#include "closedloop.h"

#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "report.h"
#include "schedule.h"
#include "tokenizer.h"

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

void cl_build(cl_set *s, cl_axes_args *a, const tq_model *m, const char *cmd, const char *model_path, int prompt)
{
    const tq_model_config *mc = tq_model_get_config(m);
    int *seeds, *rec, npf = 0;
    int ns = parse_list("--seed", a->seeds, 0, 2147483647L, NULL, &seeds);
    int nr = parse_list("--recent", a->recent, 0, 1 << 24, NULL, &rec);
    char **pf = parse_names("--prefill", a->prefill, &npf);
    for (int p = 0; p < npf; p++)
        if (strcmp(pf[p], "fp16") && strcmp(pf[p], "quantized"))
            die_usage("option '--prefill': want fp16, quantized or both, got '%s'", pf[p]);
    s->keep = keep_layers(a->keep, mc->n_layers, model_path);
    s->keep_spec = a->keep;
    static char sbits[16];
    if (a->sched_path) {
        if (a->ax.bits) die_usage("options '--schedule' and '--bits' contradict each other: the schedule sets them");
        int rc = tq_schedule_load(&s->sched, a->sched_path);
        if (rc < 0) die_lib(rc, NULL);
        snprintf(sbits, sizeof sbits, "%d", tq_schedule_bits(s->sched, 0, 0, TQ_TENSOR_KEYS));
        a->ax.bits = sbits;
    }
    if (!a->ax.bits) a->ax.bits = "2-4";
    tq_device dev = cli_device(cmd, a->device);
    s->cs = calloc((size_t)ns, sizeof *s->cs);
    if (!s->cs) die("out of memory");
    for (int k = 0; k < ns; k++) {
        cli_configs(&s->cs[k], &a->ax, (uint64_t)seeds[k], mc->head_dim, dev);
        s->n_cs++;
        s->runs = realloc(s->runs, ((size_t)s->n_runs + (size_t)s->cs[k].n * npf * nr + 1) * sizeof *s->runs);
        if (!s->runs) die("out of memory");
        for (int c = 0; c < s->cs[k].n; c++)
            for (int p = 0; p < npf; p++)
                for (int r = 0; r < nr; r++) {
                    cl_run *u = &s->runs[s->n_runs++];
                    memset(u, 0, sizeof *u);
                    u->o = (tq_kvq_opts){.cfg = s->cs[k].cfg[c], .sched = s->sched, .recent = rec[r],
                                         .keep = s->keep, .prefill_fp16 = !strcmp(pf[p], "fp16"),
                                         .prompt = prompt, .device = dev};
                    u->seed = (uint64_t)seeds[k];
                    tq_kvq *q;
                    int rc = tq_kvq_create(&u->o, m, &q);
                    if (rc < 0) die_lib(rc, cmd);
                    tq_kvq_free(q);
                }
    }
    free(seeds);
    free(rec);
    free(pf);
}

void cl_set_free(cl_set *s)
{
    for (int k = 0; k < s->n_cs; k++) tq_eval_configs_free(&s->cs[k]);
    free(s->cs);
    free(s->runs);
    free(s->keep);
    tq_schedule_free(s->sched);
    memset(s, 0, sizeof *s);
}

const char *const cl_config_cols[CL_N_CONFIG] = {"method", "params", "values", "recent", "prefill", "keep_layers",
                                                 "prompt", "seed"};

void cl_config_cells(const cl_set *s, const cl_run *u, char c[CL_N_CONFIG][200])
{
    const char *kd = u->o.cfg.kdesc, *comma = strchr(kd, ',');
    snprintf(c[0], 200, "%.*s", comma ? (int)(comma - kd) : (int)strlen(kd), kd);
    snprintf(c[1], 200, "%s", comma ? comma + 1 : "");
    if (s->sched) snprintf(c[1], 200, "bits=schedule");
    snprintf(c[2], 200, "%s", u->o.cfg.v.method < 0 ? "none" : u->o.cfg.vdesc);
    snprintf(c[3], 200, "%d", u->o.recent);
    snprintf(c[4], 200, "%s", u->o.prefill_fp16 ? "fp16" : "quantized");
    snprintf(c[5], 200, "%s", s->keep_spec ? s->keep_spec : "none");
    snprintf(c[6], 200, "%d", u->o.prompt);
    snprintf(c[7], 200, "%llu", (unsigned long long)u->seed);
}

char *cl_read_file(const char *cmd, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: cannot read '%s'", cmd, path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) die("%s: out of memory reading '%s'", cmd, path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        buf = realloc(buf, (cap *= 2) + 1);
    }
    int err = ferror(f);
    fclose(f);
    if (err) die("%s: cannot read '%s'", cmd, path);
    buf[n] = 0;
    *len = n;
    return buf;
}

void cl_table_begin(FILE *f, cl_table *t, int fmt, const char *tag, const char *const *cols, int n_cols, int n_text,
                    const char *align)
{
    *t = (cl_table){.fmt = fmt, .n_cols = n_cols, .n_text = n_text, .cols = cols};
    if (fmt == REPORT_JSON) {
        fprintf(f, "{\"%s\": 1, \"rows\": [", tag);
        return;
    }
    const char *sep = fmt == REPORT_CSV ? "," : " | ";
    if (fmt == REPORT_MD) fputs("| ", f);
    for (int i = 0; i < n_cols; i++) fprintf(f, "%s%s", i ? sep : "", cols[i]);
    if (fmt != REPORT_MD) return;
    fputs(" |\n", f);
    if (align) fprintf(f, "|%s", align);
    else {
        for (int i = 0; i < n_cols; i++) fputs(i < n_text ? "|---" : "|---:", f);
        fputs("|", f);
    }
}

/* A text cell, valid UTF-8 in every format: generated text can end inside a character (a byte-level token holding
 * part of one), and each incomplete or ill-formed sequence becomes U+FFFD (lib/tokenizer.h tq_utf8_sanitize). */
static void text_cell(FILE *f, int fmt, const char *raw)
{
    char *v;
    size_t n;
    if (tq_utf8_sanitize(raw, strlen(raw), &v, &n) < 0) die("out of memory");
    const char *s = v;
    if (fmt == REPORT_JSON) json_str(f, s);
    else if (fmt == REPORT_CSV) {
        int q = strpbrk(s, ",\"\n\r") != NULL;
        if (q) fputc('"', f);
        for (; *s; s++) fputs(*s == '"' && q ? "\"\"" : (char[2]){*s, 0}, f);
        if (q) fputc('"', f);
    } else
        for (; *s; s++) fputs(*s == '|' ? "\\|" : *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : (char[2]){*s, 0}, f);
    free(v);
}

void cl_table_row(FILE *f, cl_table *t, const char *const *text, const double *num)
{
    int fmt = t->fmt;
    const char *sep = fmt == REPORT_CSV ? "," : fmt == REPORT_MD ? " | " : ", ";
    fputs(fmt == REPORT_JSON ? (t->rows ? ",\n {" : "\n {") : fmt == REPORT_MD ? "\n| " : "\n", f);
    for (int i = 0, it = 0, in = 0; i < t->n_cols; i++) {
        fputs(i ? sep : "", f);
        if (fmt == REPORT_JSON) fprintf(f, "\"%s\": ", t->cols[i]);
        if (t->kinds ? t->kinds[i] == 't' : i < t->n_text) text_cell(f, fmt, text[it++]);
        else if (fmt == REPORT_JSON) json_num(f, num[in++]);
        else fprintf(f, fmt == REPORT_MD ? "%.5g" : "%.9g", num[in++]);
    }
    fputs(fmt == REPORT_JSON ? "}" : fmt == REPORT_MD ? " |" : "", f);
    t->rows++;
}

void cl_table_end(FILE *f, cl_table *t)
{
    fputs(t->fmt == REPORT_JSON ? "\n]}\n" : "\n", f);
}
