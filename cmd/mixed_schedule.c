/* mixed_schedule.c: `tq mixed-schedule` — turn the distortion curves of `tq sensitivity` into a bit schedule (the
 * JSON of lib/schedule.h that `tq quantize --schedule` and `tq sweep --schedule` read): the exact budgeted optimum
 * (lib/allocate.h) or the seed article's rank rule. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "allocate.h"
#include "cmd.h"
#include "quant.h"
#include "schedule.h"
#include "options.h"
#include "tq.h"

typedef struct {
    int n_layers, n_kv_heads, per_head, nb, nu, head_dim;
    char model[256];                 /* the scanned dump's model ("" in files without one) */
    int bits[8];
    char method[32], metric[32], params[192];
    int *tensor, *layer, *head;      /* [nu] */
    double *coords;                  /* [nu] */
    double *metric_v, *bcode, *btot; /* [nu * nb] */
    unsigned char *seen;             /* while loading: here, not in a local, so a die() midway leaks nothing */
} sens;

static void sens_free(sens *s)
{
    free(s->tensor);
    free(s->layer);
    free(s->head);
    free(s->coords);
    free(s->metric_v);
    free(s->bcode);
    free(s->btot);
}

/* Everything wrong with the file is exit 1 ("bad file"), located as 'file':line:col. */
static void bad(const char *path, const tq_json *at, const char *what) __attribute__((noreturn));
static void bad(const char *path, const tq_json *at, const char *what)
{
    die("'%s':%d:%d: %s (is this the output of tq sensitivity?)", path, at->line, at->col, what);
}

static const tq_json *need(const char *path, const tq_json *obj, const char *key, int type)
{
    static const char *const tn[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    const tq_json *v = tq_json_get(obj, key);
    char m[128];
    if (!v) {
        snprintf(m, sizeof m, "missing \"%s\"", key);
        bad(path, obj, m);
    }
    if (v->type != type) {
        snprintf(m, sizeof m, "\"%s\" must be %s", key, tn[type]);
        bad(path, v, m);
    }
    return v;
}

static int need_int(const char *path, const tq_json *obj, const char *key, int lo, int hi)
{
    const tq_json *v = need(path, obj, key, TQ_JSON_NUMBER);
    if (v->num != floor(v->num) || v->num < lo || v->num > hi) {
        char m[128];
        snprintf(m, sizeof m, "\"%s\" must be an integer in %d..%d", key, lo, hi);
        bad(path, v, m);
    }
    return (int)v->num;
}

static void num_array(const char *path, const tq_json *row, const char *key, int n, int allow_null, double *out)
{
    const tq_json *a = need(path, row, key, TQ_JSON_ARRAY);
    char m[128];
    if (a->n != n) {
        snprintf(m, sizeof m, "\"%s\" has %d entries, \"bits\" has %d", key, a->n, n);
        bad(path, a, m);
    }
    for (int i = 0; i < n; i++) {
        const tq_json *v = &a->items[i];
        if (v->type == TQ_JSON_NULL && allow_null) out[i] = NAN;
        else if (v->type == TQ_JSON_NUMBER && (allow_null || v->num >= 0)) out[i] = v->num;
        else {
            snprintf(m, sizeof m, "\"%s\" entries must be %snumbers", key, allow_null ? "null or " : "non-negative ");
            bad(path, v, m);
        }
    }
}

/* the whole file into memory (bounded by TQ_JSON_MAX_BYTES); *n its length */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open '%s': %s", path, strerror(errno));
    /* a dump or codes file given by mistake: say what it is before its size or its bytes get in the way */
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89HDF\r\n\x1a\n", 8)) {
        fclose(f);
        die("'%s' is not a sensitivity file: it is HDF5 (a dump or codes file?); give the JSON written by "
            "tq sensitivity DUMP -o SENS.json", path);
    }
    rewind(f);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap > TQ_JSON_MAX_BYTES) {
                fclose(f);
                die("'%s' is larger than %u bytes", path, TQ_JSON_MAX_BYTES);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) die("out of memory reading '%s'", path);
    if (err) die("cannot read '%s': %s", path, strerror(errno));
    *len = n;
    return buf;
}

/* the scan's description: method, metric, params, units, shape, bit widths */
static void sens_header(const char *path, const tq_json *rootp, sens *s)
{
    const tq_json root = *rootp;
    if (root.type != TQ_JSON_OBJECT) bad(path, &root, "a sensitivity file is a JSON object");
    const tq_json *v = tq_json_get(&root, "tq_sensitivity");
    if (!v) bad(path, &root, "missing \"tq_sensitivity\"");
    if (v->type != TQ_JSON_NUMBER || v->num != 1) bad(path, v, "unsupported \"tq_sensitivity\" version (this tq reads 1)");
    v = need(path, &root, "method", TQ_JSON_STRING);
    if (!tq_format_by_name(v->str)) bad(path, v, "unknown \"method\"");
    snprintf(s->method, sizeof s->method, "%s", v->str);
    v = need(path, &root, "metric", TQ_JSON_STRING);
    snprintf(s->metric, sizeof s->metric, "%s", v->str);
    v = tq_json_get(&root, "params");
    if (v && v->type == TQ_JSON_STRING) snprintf(s->params, sizeof s->params, "%s", v->str);
    v = need(path, &root, "units", TQ_JSON_STRING);
    if (strcmp(v->str, "layer") && strcmp(v->str, "head")) bad(path, v, "\"units\" must be \"layer\" or \"head\"");
    s->per_head = !strcmp(v->str, "head");
    s->n_layers = need_int(path, &root, "n_layers", 1, 100000);
    s->n_kv_heads = need_int(path, &root, "n_kv_heads", 1, 65536);
    v = tq_json_get(&root, "model");
    if (v && v->type == TQ_JSON_STRING) snprintf(s->model, sizeof s->model, "%s", v->str);
    v = tq_json_get(&root, "head_dim");
    if (v && v->type == TQ_JSON_NUMBER && v->num >= 1 && v->num <= 65536) s->head_dim = (int)v->num;
    const tq_json *ba = need(path, &root, "bits", TQ_JSON_ARRAY);
    if (ba->n < 1 || ba->n > 8) bad(path, ba, "\"bits\" must list 1 to 8 bit widths");
    s->nb = ba->n;
    for (int i = 0; i < s->nb; i++) {
        const tq_json *b = &ba->items[i];
        if (b->type != TQ_JSON_NUMBER || b->num != floor(b->num) || b->num < 1 || b->num > 8 ||
            (i && b->num <= s->bits[i - 1]))
            bad(path, b, "\"bits\" must be ascending integers in 1..8");
        s->bits[i] = (int)b->num;
    }
}

/* row i: one unit's curve; `seen` catches a unit listed twice */
static void sens_row(const char *path, const tq_json *r, sens *s, int i, int hu, int *nt)
{
    size_t nb = (size_t)s->nb;
    const tq_json *v;
    if (r->type != TQ_JSON_OBJECT) bad(path, r, "each row must be an object");
    v = need(path, r, "tensor", TQ_JSON_STRING);
    if (!strcmp(v->str, "keys")) s->tensor[i] = TQ_TENSOR_KEYS;
    else if (!strcmp(v->str, "values")) s->tensor[i] = TQ_TENSOR_VALUES;
    else bad(path, v, "\"tensor\" must be \"keys\" or \"values\"");
    s->layer[i] = need_int(path, r, "layer", 0, s->n_layers - 1);
    v = tq_json_get(r, "head");
    if (s->per_head) s->head[i] = need_int(path, r, "head", 0, s->n_kv_heads - 1);
    else if (v && v->type != TQ_JSON_NULL) bad(path, v, "units \"layer\": \"head\" must be null");
    else s->head[i] = 0;
    v = need(path, r, "coords", TQ_JSON_NUMBER);
    if (!(v->num >= 1) || v->num != floor(v->num)) bad(path, v, "\"coords\" must be a positive integer");
    s->coords[i] = v->num;
    num_array(path, r, "metric", s->nb, 1, s->metric_v + (size_t)i * nb);
    /* null at every width: a relative metric of an all-zero slice (0/0). Nothing to lose there at any width,
     * so it costs 0 and gets the fewest bits, instead of making the whole allocation infeasible. */
    int all_null = 1;
    for (int b = 0; b < s->nb; b++) all_null &= isnan(s->metric_v[(size_t)i * nb + b]);
    for (int b = 0; all_null && b < s->nb; b++) s->metric_v[(size_t)i * nb + b] = 0;
    num_array(path, r, "bits_code", s->nb, 0, s->bcode + (size_t)i * nb);
    num_array(path, r, "bits_total", s->nb, 0, s->btot + (size_t)i * nb);
    size_t key = ((size_t)s->tensor[i] * s->n_layers + s->layer[i]) * hu + s->head[i];
    if (s->seen[key]) bad(path, r, "this (tensor, layer, head) appears twice");
    s->seen[key] = 1;
    nt[s->tensor[i]]++;
}

static void sens_load(const char *path, sens *s)
{
    memset(s, 0, sizeof *s);
    size_t n;
    char *buf = read_all(path, &n);
    tq_json root;
    int rc = tq_json_parse(&root, buf, n, path);
    free(buf);
    if (rc < 0) die_lib(TQ_ERR, NULL); /* malformed JSON: 1, with line:col */
    sens_header(path, &root, s);
    const tq_json *rows = need(path, &root, "rows", TQ_JSON_ARRAY);
    int hu = s->per_head ? s->n_kv_heads : 1;
    s->nu = rows->n;
    if (rows->n < 1) bad(path, rows, "\"rows\" is empty");
    size_t nu = (size_t)rows->n, nb = (size_t)s->nb;
    s->tensor = calloc(nu, sizeof(int));
    s->layer = calloc(nu, sizeof(int));
    s->head = calloc(nu, sizeof(int));
    s->coords = calloc(nu, sizeof(double));
    s->metric_v = calloc(nu * nb, sizeof(double));
    s->bcode = calloc(nu * nb, sizeof(double));
    s->btot = calloc(nu * nb, sizeof(double));
    s->seen = calloc(2 * (size_t)s->n_layers * hu, 1);
    if (!s->tensor || !s->layer || !s->head || !s->coords || !s->metric_v || !s->bcode || !s->btot || !s->seen)
        die("out of memory");
    int nt[2] = {0, 0};
    for (int i = 0; i < rows->n; i++) sens_row(path, &rows->items[i], s, i, hu, nt);
    for (int t = 0; t < 2; t++)
        if (nt[t] && nt[t] != s->n_layers * hu) {
            char m[160];
            snprintf(m, sizeof m, "%s cover %d units, expected %d (%d layers x %d)", t ? "values" : "keys", nt[t],
                     s->n_layers * hu, s->n_layers, hu);
            bad(path, rows, m);
        }
    free(s->seen);
    s->seen = NULL;
    tq_json_free(&root);
}

static void write_bits(FILE *o, const sens *s, int t, const int *ub)
{
    int hu = s->per_head ? s->n_kv_heads : 1;
    int *grid = malloc(sizeof(int) * (size_t)s->n_layers * hu);
    if (!grid) die("out of memory");
    for (int i = 0; i < s->nu; i++)
        if (s->tensor[i] == t) grid[s->layer[i] * hu + s->head[i]] = ub[i];
    fprintf(o, "[");
    for (int l = 0; l < s->n_layers; l++) {
        if (l) fputs(", ", o);
        if (s->per_head) {
            fputc('[', o);
            for (int h = 0; h < hu; h++) fprintf(o, "%s%d", h ? ", " : "", grid[l * hu + h]);
            fputc(']', o);
        } else fprintf(o, "%d", grid[l]);
    }
    fprintf(o, "]");
    free(grid);
}

typedef struct {
    const char *in, *bits_s, *fr_s, *outp;
    int rank, side, want[8], nw, nf;   /* side: 0 include, 1 exclude (the choice order) */
    int policy, edge;                  /* policy: 0 optimal, 1 rank, 2 boundary; edge: --boundary K */
    double budget, frac[8];
} ms_args;

static void ms_fractions(ms_args *a)
{
    int nw = a->nw, nf = 0;
    double *frac = a->frac;
    if (!a->bits_s) {
        a->want[0] = 2, a->want[1] = 3, a->want[2] = 4;
        nw = a->nw = 3;
    }
    if (a->fr_s) {
        int n = 0;
        char **f = parse_names("--fractions", a->fr_s, &n);
        if (n > 8) die_usage("mixed-schedule: --fractions has more than 8 values");
        for (int k = 0; k < n; k++) frac[nf++] = parse_double("--fractions", f[k], 0.0, 1.0);
        free(f);
    } else if (nw == 3) {
        frac[0] = 0.25, frac[1] = 0.5, frac[2] = 0.25;
        nf = 3;
    } else
        die_usage("mixed-schedule: rank with %d bit widths needs --fractions (one per width, summing to 1)", nw);
    if (nf != nw) die_usage("mixed-schedule: --fractions has %d values for %d bit widths", nf, nw);
    double sum = 0;
    for (int k = 0; k < nf; k++) sum += frac[k];
    if (fabs(sum - 1) > 1e-6) die_usage("mixed-schedule: --fractions sum to %g, must sum to 1", sum);
    a->nf = nf;
}

static void ms_parse(ms_args *a, int argc, char **argv)
{
    a->budget = NAN;
    const tq_option opts[] = {
        OPT_DOUBLE_("--budget", &a->budget, "B", NULL, 0.0, 64.0, "average bits per coordinate (required for optimal; "
                    "a ceiling check for rank)"),
        OPT_CHOICE_("--policy", &a->policy, "optimal|rank|boundary", "optimal", "optimal: minimise sum over units "
                    "of coords x metric, exactly;\nrank: the seed article's rule, most sensitive units get the most "
                    "bits;\nboundary: the first and last --boundary layers at the top width, the others raised "
                    "from\nthe lowest nearest-to-the-edges first while --budget allows"),
        OPT_INT_("--boundary", &a->edge, "K", NULL, 1, 1 << 20, "boundary: layers at each end given the top width "
                 "(default 1)"),
        OPT_STR_("--bits", &a->bits_s, "LIST", NULL, "candidate bits, a subset of the scanned ones (default: all "
                 "scanned for\noptimal, 2,3,4 for rank)"),
        OPT_STR_("--fractions", &a->fr_s, "LIST", NULL, "rank: share of coordinates per bit width, lowest bits "
                 "first (default\n0.25,0.5,0.25); ranks use the metric at the median of --bits"),
        OPT_CHOICE_("--side-info", &a->side, "include|exclude", "exclude", "exclude: the budget counts code bits, as "
                    "--bits does everywhere;\ninclude: norms, scales and other side information count too"),
        OPT_STR_("-o", &a->outp, "FILE", NULL, "the schedule (default stdout); with -o a summary goes to stdout"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "mixed-schedule", "mixed-schedule SENS.json --budget B [options] [-o SCHEDULE.json]",
        "Choose bits per unit (layer or layer x kv head, keys and/or values, as scanned by tq sensitivity) so that\n"
        "the coordinate-weighted average bits stay <= B.",
        opts, NULL};
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) die("out of memory");
    int np = opt_parse(&spec, argc, argv, pos);
    a->rank = a->policy == 1;
    if (a->edge && a->policy != 2) die_usage("mixed-schedule: --boundary goes with --policy boundary");
    if (!a->edge) a->edge = 1;
    if (np > 1) die_usage("mixed-schedule: unexpected argument '%s' (one sensitivity file)", pos[1]);
    a->in = np ? pos[0] : NULL;
    free(pos);
    if (!a->in)
        die_usage("mixed-schedule: no sensitivity file (usage: tq mixed-schedule SENS.json --budget B -o S.json)");
    if (a->outp) check_output(a->outp, &a->in, 1);
    if (!a->rank && isnan(a->budget))
        die_usage("mixed-schedule: policy %s needs --budget (average bits, e.g. 3.0)",
                  a->policy == 2 ? "boundary" : "optimal");
    if (a->fr_s && !a->rank) die_usage("mixed-schedule: --fractions goes with --policy rank");
    if (a->bits_s) {
        int *w;
        a->nw = parse_list("--bits", a->bits_s, 1, 8, NULL, &w);
        memcpy(a->want, w, (size_t)a->nw * sizeof *w);
        free(w);
    }
    if (a->rank) ms_fractions(a);
}

/* the chosen bit widths, as indices into the scan */
static int ms_widths(const ms_args *a, const sens *sp, int *opt)
{
    const sens s = *sp;
    const int nw = a->nw, *want = a->want;
    const char *in = a->in;
    const tq_format *fmt = tq_format_by_name(s.method);
    int K = 0;
    if (!nw) {
        for (int b = 0; b < s.nb; b++) opt[K++] = b;
    } else
        for (int i = 0; i < nw; i++) {
            int found = -1;
            for (int b = 0; b < s.nb; b++)
                if (s.bits[b] == want[i]) found = b;
            if (found < 0) {
                char have[64] = "";
                for (int b = 0; b < s.nb; b++) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%d",
                                                        b ? "," : "", s.bits[b]);
                die_usage("mixed-schedule: %d bits were not scanned in '%s' (it has %s); rerun tq sensitivity with "
                          "--bits covering them", want[i], in, have);
            }
            if (want[i] < fmt->min_bits || want[i] > fmt->max_bits)
                die_usage("mixed-schedule: %d bits out of range %d..%d for %s", want[i], fmt->min_bits, fmt->max_bits,
                          s.method);
            opt[K++] = found;
        }
    return K;
}

typedef struct {
    int K, *choice, *ub;
    double *dist, avg, pred, acode, atot, uni[8];
} ms_result;

static void ms_solve(const ms_args *a, const sens *sp, const int *opt, ms_result *R)
{
    const sens s = *sp;
    int K = R->K, rank = a->rank, incl = a->side == 0;
    double budget = a->budget;
    const double *frac = a->frac;
    size_t nu = (size_t)s.nu;
    double *cost = malloc(sizeof(double) * nu * K), *dist = malloc(sizeof(double) * nu * K);
    int *choice = malloc(sizeof(int) * nu), *ub = malloc(sizeof(int) * nu);
    if (!cost || !dist || !choice || !ub) die("out of memory");
    for (size_t u = 0; u < nu; u++)
        for (int k = 0; k < K; k++) {
            size_t j = u * s.nb + opt[k];
            cost[u * K + k] = incl ? s.btot[j] : s.bcode[j];
            dist[u * K + k] = s.metric_v[j];
        }
    tq_alloc_problem P = {s.nu, K, s.coords, cost, dist};
    double total = NAN, avg = NAN, W = 0;
    for (size_t u = 0; u < nu; u++) W += s.coords[u];
    int ref = K / 2; /* rank reference: the median bit width (3 of 2,3,4) */
    if (rank) {
        double *score = malloc(sizeof(double) * nu);
        if (!score) die("out of memory");
        for (size_t u = 0; u < nu; u++) score[u] = dist[u * K + ref];
        int rc = tq_alloc_rank(s.nu, s.coords, score, K, frac, choice);
        free(score);
        if (rc < 0) die_lib(rc, "mixed-schedule");
        tq_alloc_eval(&P, choice, &total, &avg);
        if (!isnan(budget) && avg > budget * (1 + 1e-12))
            die_usage("mixed-schedule: the rank schedule averages %.4g bits, above --budget %g; give --fractions "
                      "with less weight on the high bit widths", avg, budget);
    } else if (a->policy == 2) {
        if (a->edge * 2 > s.n_layers)
            die_usage("mixed-schedule: --boundary %d takes more than the %d layers", a->edge, s.n_layers);
        tq_error_clear();
        int rc = tq_alloc_boundary(&P, s.layer, s.n_layers, a->edge, budget, choice);
        if (rc == TQ_ERR_USAGE) die_usage("mixed-schedule: %s; raise --budget or lower --boundary", tq_error_msg());
        if (rc < 0) die_lib(rc, "mixed-schedule");
        tq_alloc_eval(&P, choice, &total, &avg);
    } else {
        tq_error_clear();
        int rc = tq_alloc_optimal(&P, budget, choice, &total, &avg);
        if (rc == TQ_ERR_USAGE)
            die_usage("mixed-schedule: %s; raise --budget or scan lower --bits", tq_error_msg());
        if (rc < 0) die_lib(rc, "mixed-schedule");
    }
    /* the other accounting, for the record */
    double acode = 0, atot = 0;
    for (size_t u = 0; u < nu; u++) {
        size_t j = u * s.nb + opt[choice[u]];
        ub[u] = s.bits[opt[choice[u]]];
        acode += s.coords[u] * s.bcode[j];
        atot += s.coords[u] * s.btot[j];
    }
    acode /= W;
    atot /= W;
    double pred = total / W; /* coordinate-weighted mean metric: the all-units aggregate tq sweep reports */
    double uni[8];
    for (int k = 0; k < K; k++) {
        double d = 0;
        for (size_t u = 0; u < nu; u++) d += s.coords[u] * dist[u * K + k];
        uni[k] = d / W;
    }

    R->choice = choice, R->ub = ub, R->dist = dist;
    R->avg = avg, R->pred = pred, R->acode = acode, R->atot = atot;
    memcpy(R->uni, uni, sizeof uni);
    free(cost);
}

static const char *const POLICY[] = {"optimal", "rank", "boundary"};

static void ms_write(const ms_args *a, const sens *sp, const int *opt, const ms_result *R)
{
    const sens s = *sp;
    size_t nu = (size_t)s.nu;
    int K = R->K, rank = a->rank, incl = a->side == 0;
    const int *choice = R->choice, *ub = R->ub;
    double budget = a->budget, avg = R->avg, pred = R->pred, acode = R->acode, atot = R->atot;
    const double *uni = R->uni, *frac = a->frac;
    const char *outp = a->outp, *in = a->in;
    FILE *o = outp ? out_open(outp) : stdout;
    fprintf(o, "{\"tq_schedule\": %d,\n \"method\": ", TQ_SCHEDULE_VERSION);
    json_str(o, s.method);
    if (s.model[0] && s.head_dim) { /* the fingerprint sweep and quantize check the dump against */
        fprintf(o, ", \"model\": {\"name\": ");
        json_str(o, s.model);
        fprintf(o, ", \"n_layers\": %d, \"n_kv_heads\": %d, \"head_dim\": %d}", s.n_layers, s.n_kv_heads,
                s.head_dim);
    }
    fprintf(o, ", \"params\": ");
    json_str(o, s.params);
    fprintf(o, ", \"policy\": \"%s\", \"metric\": ", POLICY[a->policy]);
    json_str(o, s.metric);
    fprintf(o, ", \"side_info\": \"%s\",\n \"budget\": ", incl ? "include" : "exclude");
    json_num(o, budget);
    fprintf(o, ", \"achieved_bits\": %.9g, \"achieved_code_bits\": %.9g, \"achieved_total_bits\": %.9g,\n", avg, acode,
            atot);
    fprintf(o, " \"predicted\": ");
    json_num(o, pred);
    fprintf(o, ", \"predicted_uniform\": {");
    for (int k = 0; k < K; k++) {
        fprintf(o, "%s\"%d\": ", k ? ", " : "", s.bits[opt[k]]);
        json_num(o, uni[k]);
    }
    fprintf(o, "},\n \"source\": ");
    json_str(o, in);
    if (a->policy == 2) fprintf(o, ", \"boundary\": %d", a->edge);
    if (rank) {
        fprintf(o, ", \"fractions\": [");
        for (int k = 0; k < K; k++) fprintf(o, "%s%.9g", k ? ", " : "", frac[k]);
        fprintf(o, "]");
    }
    fprintf(o, ", \"units\": \"%s\"", s.per_head ? "head" : "layer");
    for (int t = 0; t < 2; t++) {
        int any = 0;
        for (size_t u = 0; u < nu; u++) any |= s.tensor[u] == t;
        if (!any) continue;
        fprintf(o, ",\n \"%s\": ", t ? "values" : "keys");
        write_bits(o, &s, t, ub);
    }
    fprintf(o, "\n}\n");
    if (outp) {
        out_commit(o, outp);
        int cnt[8] = {0};
        for (size_t u = 0; u < nu; u++) cnt[choice[u]]++;
        printf("%s schedule for %s (%s, %d units): %.4g bits per coordinate (%s side info)", POLICY[a->policy],
               s.method, s.metric, s.nu, avg, incl ? "with" : "without");
        if (!isnan(budget)) printf(", budget %g", budget);
        printf("\n  units per bit width:");
        for (int k = 0; k < K; k++) printf(" %d bits x %d", s.bits[opt[k]], cnt[k]);
        printf("\n  predicted %s %.4g", s.metric, pred);
        for (int k = 0; k < K; k++) printf("; uniform %d bits %.4g", s.bits[opt[k]], uni[k]);
        printf("\n  written to %s\n", outp);
    }
}

int cmd_mixed_schedule(int argc, char **argv)
{
    ms_args a = {0};
    ms_parse(&a, argc, argv);
    sens s;
    sens_load(a.in, &s);
    int opt[8];
    ms_result R = {.K = ms_widths(&a, &s, opt)};
    ms_solve(&a, &s, opt, &R);
    ms_write(&a, &s, opt, &R);
    if (fflush(stdout) != 0) die("cannot write to stdout: %s", strerror(errno));
    free(R.dist);
    free(R.choice);
    free(R.ub);
    sens_free(&s);
    return 0;
}
