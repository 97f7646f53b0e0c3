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
#include "sensfile.h"
#include "options.h"
#include "tq.h"

/* null at every width: a relative metric of an all-zero slice (0/0). Nothing to lose there at any width, so it costs
 * 0 and gets the fewest bits, instead of making the whole allocation infeasible. */
static void ms_null_rows(sens_file *s)
{
    for (size_t i = 0, nb = (size_t)s->nb; i < (size_t)s->nu; i++) {
        int all_null = 1;
        for (size_t b = 0; b < nb; b++) all_null &= isnan(s->metric_v[i * nb + b]);
        for (size_t b = 0; all_null && b < nb; b++) s->metric_v[i * nb + b] = 0;
    }
}

static void write_bits(FILE *o, const sens_file *s, int t, const int *ub)
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
static int ms_widths(const ms_args *a, const sens_file *sp, int *opt)
{
    const sens_file s = *sp;
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

static void ms_solve(const ms_args *a, const sens_file *sp, const int *opt, ms_result *R)
{
    const sens_file s = *sp;
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

static void ms_write(const ms_args *a, const sens_file *sp, const int *opt, const ms_result *R)
{
    const sens_file s = *sp;
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
    sens_file s;
    sens_file_load(a.in, &s);
    ms_null_rows(&s);
    int opt[8];
    ms_result R = {.K = ms_widths(&a, &s, opt)};
    ms_solve(&a, &s, opt, &R);
    ms_write(&a, &s, opt, &R);
    if (fflush(stdout) != 0) die("cannot write to stdout: %s", strerror(errno));
    free(R.dist);
    free(R.choice);
    free(R.ub);
    sens_file_free(&s);
    return 0;
}
