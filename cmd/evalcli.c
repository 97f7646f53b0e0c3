/* evalcli.c: the shared command-line glue of evalcli.h over lib/evaluate.h. */
#include "evalcli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "vocab.h"

int cli_threads_default(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

tq_device cli_device(const char *cmd, const char *v)
{
    if (!v) return TQ_DEVICE_CPU;
    int dev = tq_vocab_find(TQ_VOCAB_DEVICE, v);
    if (dev < 0) die_usage("%s: unknown device '%s'; use cpu or cuda", cmd, v);
    int st = tq_device_available((tq_device)dev);
    if (st < 0) {
        char what[64];
        snprintf(what, sizeof what, "%s --device %s", cmd, v);
        die_lib(st == TQ_ERR_USAGE ? TQ_ERR : st, what);
    }
    return (tq_device)dev;
}

/* a list of vocabulary names into enum values (malloc'd) */
static int *names_to(const char *opt, const char *s, int vocab, int *n)
{
    char **names = parse_names(opt, s, n);
    int *v = malloc((size_t)*n * sizeof *v);
    if (!v) die("out of memory");
    for (int i = 0; i < *n; i++) v[i] = parse_vocab(opt, vocab, names[i]);
    free(names);
    return v;
}

/* --values: "same", "none" or METHOD[:BITS] */
static void values_axis(tq_eval_axes *a, const char *s, int d, tq_device dev)
{
    if (!s || !strcmp(s, "same")) return;
    if (!strcmp(s, "none")) {
        a->values = TQ_EVAL_VALUES_NONE;
        return;
    }
    char name[32];
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    if (len == 0 || len >= sizeof name) die_usage("option '--values': want METHOD:BITS, same or none, got '%s'", s);
    memcpy(name, s, len);
    name[len] = 0;
    const tq_format *f = tq_format_of(parse_vocab("--values", TQ_VOCAB_METHOD, name));
    int bits = f->min_bits;
    if (colon) bits = (int)parse_long("--values", colon + 1, 1, 16);
    else if (f->min_bits != f->max_bits)
        die_usage("option '--values': method '%s' needs bits, e.g. '%s:%d'", name, name,
                  f->min_bits > 2 ? f->min_bits : 2);
    tq_qparams_default(&a->values_params, f->method, f->min_bits == f->max_bits ? f->min_bits : bits);
    a->values_params.seed = a->seed;
    if (f->min_bits != f->max_bits) a->values_params.bits = bits;
    a->values = TQ_EVAL_VALUES_FIXED;
    if (f->check(&a->values_params, d) < 0) die_usage("option '--values': %s", tq_error_msg());
    if (tq_backend_of(dev)->supports(&a->values_params, d) < 0) die_usage("option '--values': %s", tq_error_msg());
}

void cli_configs(tq_eval_configs *cs, const cli_axes *ax, uint64_t seed, int d, tq_device dev)
{
    tq_eval_axes a = {.seed = seed};
    int *lists[7] = {0};
    lists[0] = names_to("--methods", ax->methods ? ax->methods : "turbo-mse,turbo-prod,polar,kivi", TQ_VOCAB_METHOD,
                        &a.n_methods);
    a.n_bits = parse_list("--bits", ax->bits ? ax->bits : "1-4", 1, 16, NULL, &lists[1]);
    lists[2] = names_to("--rotation", ax->rotation ? ax->rotation : "dense", TQ_VOCAB_ROTATION, &a.n_rotations);
    lists[3] = names_to("--codebook", ax->codebook ? ax->codebook : "beta", TQ_VOCAB_CODEBOOK, &a.n_codebooks);
    char **cen = parse_names("--center", ax->center ? ax->center : "off", &a.n_centers);
    lists[4] = malloc((size_t)a.n_centers * sizeof(int));
    if (!lists[4]) die("out of memory");
    for (int i = 0; i < a.n_centers; i++) {
        if (!strcmp(cen[i], "off") || !strcmp(cen[i], "0")) lists[4][i] = 0;
        else if (!strcmp(cen[i], "on") || !strcmp(cen[i], "1")) lists[4][i] = 1;
        else die_usage("option '--center': want off, on or off,on, got '%s'", cen[i]);
    }
    free(cen);
    char **ol = parse_names("--outliers", ax->outliers ? ax->outliers : "0", &a.n_outliers);
    lists[5] = malloc((size_t)a.n_outliers * sizeof(int));
    if (!lists[5]) die("out of memory");
    for (int i = 0; i < a.n_outliers; i++) lists[5][i] = (int)parse_long("--outliers", ol[i], 0, 1 << 20);
    free(ol);
    a.methods = lists[0], a.bits = lists[1], a.rotations = lists[2], a.codebooks = lists[3];
    a.centers = lists[4], a.outliers = lists[5];
    values_axis(&a, ax->values, d, dev);
    int rc = tq_eval_configs_build(cs, &a, d, dev);
    for (int i = 0; i < 6; i++) free(lists[i]);
    if (rc < 0) {
        tq_eval_configs_free(cs);
        die_lib(rc, NULL);
    }
    for (int i = 0; i < cs->n_notes; i++) fprintf(stderr, "tq: note: %s\n", cs->notes[i]);
}

void cli_inputs(tq_eval_opts *o, const char *const *dumps, int nd, const char *synth)
{
    /* names held in a static while they are checked: a usage error exits with nothing unreachable (LeakSanitizer) */
    static char **names;
    int ns = 0;
    names = synth ? parse_names("--synthetic", synth, &ns) : NULL;
    for (int i = 0; i < ns; i++)
        if (tq_vocab_find(TQ_VOCAB_SYNTH, names[i]) < 0)
            die_usage("option '--synthetic': unknown distribution '%s' (%s)", names[i],
                      tq_vocab_list(TQ_VOCAB_SYNTH, ", "));
    tq_eval_input *in = calloc((size_t)(nd + ns) + 1, sizeof *in);
    if (!in) die("out of memory");
    for (int i = 0; i < nd; i++) in[i] = (tq_eval_input){.label = dumps[i], .path = dumps[i], .synth = -1};
    for (int i = 0; i < ns; i++) {
        char *label = malloc(strlen(names[i]) + 16);
        if (!label) die("out of memory");
        sprintf(label, "synthetic:%s", names[i]);
        in[nd + i] = (tq_eval_input){.label = label, .path = NULL, .synth = tq_vocab_find(TQ_VOCAB_SYNTH, names[i])};
    }
    free(names);
    names = NULL;
    o->inputs = in;
    o->n_inputs = nd + ns;
}

void cli_inputs_free(tq_eval_opts *o)
{
    for (int i = 0; i < o->n_inputs; i++)
        if (!o->inputs[i].path) free((char *)o->inputs[i].label);
    free((void *)o->inputs);
    free((void *)o->layers);
    free((void *)o->heads);
    o->inputs = NULL;
    o->layers = o->heads = NULL;
}

int cli_select(tq_eval_opts *o, const char *layers, const char *heads)
{
    int dim = 0;
    for (int in = 0; in < o->n_inputs; in++) {
        int nl, nkv, d, rc = tq_eval_input_shape(o, in, &nl, &nkv, &d);
        if (rc < 0) die_lib(rc, NULL);
        if (in == 0) dim = d;
        if (!o->inputs[in].path) continue;
        /* each dump checks the lists against its own counts; the lists are the same text for all */
        int *l = NULL, *h = NULL;
        if (layers) o->n_layers = parse_list("--layers", layers, 0, nl - 1, o->inputs[in].label, &l);
        if (heads) o->n_heads = parse_list("--heads", heads, 0, nkv - 1, o->inputs[in].label, &h);
        free((void *)o->layers);
        free((void *)o->heads);
        o->layers = l;
        o->heads = h;
    }
    return dim;
}
