/* info.c: `tq info FILE [--json]` — what a dump holds (shapes, dtype, provenance, architecture), each layer's
 * attention (sliding window, scale, soft-cap, RoPE base) and, per layer, the statistics that predict how hard it is
 * to quantize: vector norms, largest magnitudes, channel outliers, non-finite counts.
 * Reads one layer at a time with non-finite values allowed, so a broken dump is described rather than refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"
#include "dump.h"
#include "options.h"

typedef struct {
    double norm_mean;    /* mean L2 norm over the vectors whose entries are all finite; NAN when none */
    double abs_max;      /* over finite entries; NAN when none */
    double outlier;      /* max channel RMS / median channel RMS; INFINITY when the median is 0 */
    long long nan, inf;
} tensor_stats;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* x[h][t][d]: heads*tokens vectors of dim d. */
static tensor_stats stats_of(const float *x, int heads, int tokens, int d)
{
    tensor_stats s = {NAN, NAN, NAN, 0, 0};
    double *ch = calloc((size_t)d, sizeof *ch);
    long long *chn = calloc((size_t)d, sizeof *chn);
    if (!ch || !chn) die("out of memory");
    double norm_sum = 0, amax = -1;
    long long nvec = 0;
    size_t nv = (size_t)heads * (size_t)tokens;
    for (size_t v = 0; v < nv; v++) {
        const float *p = x + v * (size_t)d;
        double ss = 0;
        int finite = 1;
        for (int c = 0; c < d; c++) {
            float e = p[c];
            if (isnan(e)) { s.nan++; finite = 0; continue; }
            if (isinf(e)) { s.inf++; finite = 0; continue; }
            double e2 = (double)e * e;
            ss += e2;
            ch[c] += e2;
            chn[c]++;
            if (fabs(e) > amax) amax = fabs(e);
        }
        if (finite) {
            norm_sum += sqrt(ss);
            nvec++;
        }
    }
    if (nvec) s.norm_mean = norm_sum / (double)nvec;
    if (amax >= 0) s.abs_max = amax;
    int nc = 0;
    for (int c = 0; c < d; c++)
        if (chn[c]) ch[nc++] = sqrt(ch[c] / (double)chn[c]);
    if (nc) {
        qsort(ch, (size_t)nc, sizeof *ch, cmp_double);
        /* median of an even count: mean of the two middle channels */
        double med = nc % 2 ? ch[nc / 2] : 0.5 * (ch[nc / 2 - 1] + ch[nc / 2]);
        s.outlier = med > 0 ? ch[nc - 1] / med : INFINITY;
    }
    free(ch);
    free(chn);
    return s;
}

/* "key": number (null where not finite), then ", " when more follow. */
static void json_field(const char *key, double v, int comma)
{
    printf("\"%s\": ", key);
    json_num(stdout, v);
    if (comma) fputs(", ", stdout);
}

static void text_num(double v, int width)
{
    if (isnan(v)) printf(" %*s |", width, "-");
    else if (isinf(v)) printf(" %*s |", width, "inf");
    else printf(" %*.4g |", width, v);
}

typedef tensor_stats layer_stats[3]; /* keys, values, queries */

static const char *info_parse(int argc, char **argv, int *json, int *strict)
{
    const char *path = NULL;
    const tq_option opts[] = {
        OPT_FLAG_("--json", json, "one JSON object on stdout instead of the table"),
        OPT_FLAG_("--strict", strict, "fail (exit 1) on NaN/Inf values, as the other commands do, naming the first "
                  "one"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "info", "info FILE [--json] [--strict]",
        "\nDescribe a tq-kv dump (datasets/FORMAT.md): model, architecture, source, rope, layers, kv/q heads, tokens,\n"
        "head_dim, dtype, and per layer: its attention (sliding window or global, score scale, soft-cap, RoPE base:\n"
        "what every attention metric honours), mean key/value/query L2 norm, max |key|, max |value|, the channel outlier ratio\n"
        "(max channel RMS / median channel RMS over all heads and tokens of the layer) of keys and values, and\n"
        "the number of NaN and Inf values (statistics skip non-finite values).\n",
        opts, NULL};
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) die("out of memory");
    int np = opt_parse(&spec, argc, argv, pos);
    if (np > 1) die_usage("info: more than one file given ('%s' and '%s'); tq info takes one dump", pos[0], pos[1]);
    path = np ? pos[0] : NULL;
    free(pos);
    if (!path) die_usage("info: no file given (usage: tq info FILE [--json] [--strict])");
    return path;
}

/* every layer's statistics, one layer in memory at a time */
static layer_stats *info_scan(tq_dump *d, int strict)
{
    int L = tq_dump_get_meta(d)->n_layers;
    layer_stats *st = calloc((size_t)L, sizeof *st);
    if (!st) die("out of memory");
    tq_progress pr;
    progress_start(&pr, "info", L);
    for (int l = 0; l < L; l++) {
        tq_layer x;
        int rc = tq_dump_read_layer(d, l, 0, !strict, &x);
        if (rc < 0) {
            progress_end(&pr);
            die_lib(rc, NULL);
        }
        const tq_layer_shape *s = &x.s;
        st[l][0] = stats_of(x.keys, s->n_kv_heads, s->n_tokens, s->head_dim);
        tensor_stats none = {NAN, NAN, NAN, 0, 0};
        st[l][1] = s->has_values ? stats_of(x.values, s->n_kv_heads, s->n_tokens, s->head_dim) : none;
        st[l][2] = s->has_queries ? stats_of(x.queries, s->n_q_heads, s->n_tokens, s->head_dim) : none;
        tq_layer_free(&x);
        progress_step(&pr, 1);
    }
    progress_end(&pr);
    return st;
}

static void info_json(const char *path, tq_dump *d, layer_stats *st)
{
    const tq_dump_meta *m = tq_dump_get_meta(d);
    const tq_layer_shape *s0 = &m->shape;
    int L = m->n_layers;
    printf("{\"file\": ");
    json_str(stdout, path);
    printf(", \"format\": \"%s\", \"format_version\": %d, \"model\": ", TQ_DUMP_FORMAT, m->version);
    json_str(stdout, m->model);
    printf(", \"source\": ");
    json_str(stdout, m->source);
    printf(", \"architecture\": ");
    json_str(stdout, m->architecture);
    printf(", \"rope\": ");
    json_str(stdout, m->rope);
    printf(", \"n_layers\": %d, \"n_kv_heads\": %d, \"n_q_heads\": %d, \"n_tokens\": %d, \"head_dim\": %d, "
           "\"dtype\": \"%s\", \"has_values\": %s, \"has_queries\": %s,\n \"layers\": [",
           L, s0->n_kv_heads, s0->n_q_heads, s0->n_tokens, s0->head_dim, tq_dtype_name(s0->dtype),
           s0->has_values ? "true" : "false", s0->has_queries ? "true" : "false");
    for (int l = 0; l < L; l++) {
        const tq_layer_shape *s = tq_dump_layer_shape(d, l);
        tensor_stats *t = st[l];
        printf("%s\n  {\"layer\": %d, \"n_kv_heads\": %d, \"n_q_heads\": %d, \"n_tokens\": %d, \"head_dim\": %d, "
               "\"dtype\": \"%s\", ", l ? "," : "", l, s->n_kv_heads, s->n_q_heads, s->n_tokens, s->head_dim,
               tq_dtype_name(s->dtype));
        tq_attn_spec a;
        if (tq_dump_layer_attn(d, l, &a) < 0) die_lib(TQ_ERR, NULL);
        printf("\"sliding_window\": %d, ", a.window);
        json_field("attn_scale", a.scale, 1);
        json_field("attn_softcap", a.softcap, 1);
        json_field("rope_base", a.rope_base, 1);
        json_field("key_norm_mean", t[0].norm_mean, 1);
        json_field("value_norm_mean", t[1].norm_mean, 1);
        json_field("query_norm_mean", t[2].norm_mean, 1);
        json_field("key_abs_max", t[0].abs_max, 1);
        json_field("value_abs_max", t[1].abs_max, 1);
        json_field("key_outlier_ratio", t[0].outlier, 1);
        json_field("value_outlier_ratio", t[1].outlier, 1);
        printf("\"nan\": %lld, \"inf\": %lld}", t[0].nan + t[1].nan + t[2].nan, t[0].inf + t[1].inf + t[2].inf);
    }
    printf("\n ]}\n");
}

static void info_text(const char *path, tq_dump *d, layer_stats *st)
{
    const tq_dump_meta *m = tq_dump_get_meta(d);
    const tq_layer_shape *s0 = &m->shape;
    int L = m->n_layers;
    printf("file       %s\nmodel      %s\narch       %s\nsource     %s\nrope       %s\nlayers     %d\n"
           "kv heads   %d\n", path, m->model, m->architecture, m->source, m->rope, L, s0->n_kv_heads);
    if (s0->n_q_heads)
        printf("q heads    %d (%d per kv head)\n", s0->n_q_heads, s0->n_q_heads / s0->n_kv_heads);
    else
        printf("q heads    none (no queries)\n");
    printf("tokens     %d\nhead_dim   %d\ndtype      %s\nvalues     %s\n\n", s0->n_tokens, s0->head_dim,
           tq_dtype_name(s0->dtype), s0->has_values ? "yes" : "none (key-only dump)");
    printf("| layer |  window |    scale | softcap | rope base |  key norm | value norm | query norm | max abs key | "
           "max abs value | key outlier | value outlier |   nan |   inf |\n");
    printf("|------:|--------:|---------:|--------:|----------:|----------:|-----------:|-----------:|------------:|"
           "--------------:|------------:|--------------:|------:|------:|\n");
    int n_local = 0;
    for (int l = 0; l < L; l++) {
        tensor_stats *t = st[l];
        tq_attn_spec a;
        if (tq_dump_layer_attn(d, l, &a) < 0) die_lib(TQ_ERR, NULL);
        n_local += a.window > 0;
        printf("| %5d |", l);
        if (a.window > 0) printf(" %7d |", a.window);
        else printf(" %7s |", "global");
        printf(" %8.4g |", a.scale);
        if (a.softcap > 0) printf(" %7.4g |", a.softcap);
        else printf(" %7s |", "none");
        if (a.rope_base > 0) printf(" %9.4g |", a.rope_base);
        else printf(" %9s |", "-");
        text_num(t[0].norm_mean, 9);
        text_num(t[1].norm_mean, 10);
        text_num(t[2].norm_mean, 10);
        text_num(t[0].abs_max, 11);
        text_num(t[1].abs_max, 13);
        text_num(t[0].outlier, 11);
        text_num(t[1].outlier, 13);
        printf(" %5lld | %5lld |\n", t[0].nan + t[1].nan + t[2].nan, t[0].inf + t[1].inf + t[2].inf);
    }
    for (int l = 1; l < L; l++) {
        const tq_layer_shape *s = tq_dump_layer_shape(d, l);
        if (s->n_kv_heads != s0->n_kv_heads || s->n_q_heads != s0->n_q_heads || s->n_tokens != s0->n_tokens ||
            s->head_dim != s0->head_dim || s->dtype != s0->dtype || s->has_values != s0->has_values)
            printf("note: layer %d differs from layer 0: %d kv heads, %d q heads, %d tokens, head_dim %d, %s%s\n",
                   l, s->n_kv_heads, s->n_q_heads, s->n_tokens, s->head_dim, tq_dtype_name(s->dtype),
                   s->has_values ? "" : ", no values");
    }
    if (n_local)
        printf("note: %d of %d layers attend a sliding window (their queries see only the last `window` keys; every "
               "attention metric honours it)\n", n_local, L);
    long long bad = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 3; k++) bad += st[l][k].nan + st[l][k].inf;
    if (bad)
        printf("note: %lld non-finite values; other commands refuse this dump (statistics above skip them)\n",
               bad);
}

int cmd_info(int argc, char **argv)
{
    int json = 0, strict = 0;
    const char *path = info_parse(argc, argv, &json, &strict);
    tq_dump *d;
    int rc = tq_dump_open(&d, path);
    if (rc < 0) die_lib(rc, NULL);
    layer_stats *st = info_scan(d, strict);
    if (json) info_json(path, d, st);
    else info_text(path, d, st);
    free(st);
    tq_dump_close(d);
    if (fflush(stdout) != 0 || ferror(stdout)) die("info: cannot write to stdout");
    return 0;
}
