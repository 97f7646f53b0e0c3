/* synth.c: `tq synth` — write a tq-kv dump of synthetic keys, values and queries (lib/synth.h) one layer at a time
 * through the dump writer, so the same seed gives the same datasets and controlled studies need no model; --window,
 * --attn-scale and --attn-softcap record an attention spec (dump format 2) that every attention metric honours. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"
#include "dump.h"
#include "options.h"
#include "synth.h"

/* "a,b,c" -> positive scales; dies on anything else. Returns the count. */
static int parse_scales(const char *s, double **out)
{
    int n = 1;
    for (const char *c = s; *c; c++) n += *c == ',';
    if (n > TQ_SYNTH_MAX_LAYERS)
        die_usage("synth: option '--layer-scales' has %d values, at most %d (one per layer)", n, TQ_SYNTH_MAX_LAYERS);
    double *v = malloc(sizeof(double) * (size_t)n);
    char *buf = strdup(s);
    if (!v || !buf) die("out of memory");
    int k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        v[k++] = parse_double("--layer-scales", tok, 1e-6, 1e3);
    free(buf);
    if (k != n) die_usage("synth: option '--layer-scales' has an empty entry in '%s' (want e.g. 0.5,1,4)", s);
    *out = v;
    return n;
}

typedef struct {
    tq_synth_params p;
    const char *dist, *out, *dtype, *scales_s;
    int have_q, pre_rope;
    double *scales;
    int window, set_window, set_scale, set_softcap; /* the attention spec written on every layer, when any is set */
    double attn_scale, softcap;
    const char *global_s;                            /* layers kept global (window 0) under --window */
    int *global;                                     /* [n_layers] 0/1 */
} synth_args;

static void synth_parse(synth_args *a, int argc, char **argv)
{
    tq_synth_params *p = &a->p;
    char layers_help[64], dof_help[96];
    snprintf(layers_help, sizeof layers_help, "layers, at most %d", TQ_SYNTH_MAX_LAYERS);
    snprintf(dof_help, sizeof dof_help, "heavy: Student-t degrees of freedom, 3..%d", TQ_SYNTH_DOF_MAX);
    const tq_option opts[] = {
        OPT_STR_("--dist", &a->dist, "NAME", NULL,
                 "gaussian    i.i.d. N(0,1) keys, values, queries\n"
                 "structured  keys in 8 directional clusters per head, queries near them (peaked)\n"
                 "outlier     round(4d/128) key channels at 10-20x the scale of the rest\n"
                 "heavy       standardized Student-t keys and values (--dof, default 3)\n"
                 "rope        post-RoPE keys/queries: per-head base + slowly varying content,\n"
                 "            rotated by position (theta_i = 10000^(-2i/d))"),
        {.kind = OPT_STRING, .name = "-o", .alias = "--output", .value = &a->out, .arg = "FILE",
         .help = "the dump to write (through a temporary name, renamed when complete)"},
        OPT_INT_("--layers", &p->n_layers, "L", "1", 1, TQ_SYNTH_MAX_LAYERS, layers_help),
        OPT_INT_("--heads", &p->n_kv_heads, "H", "1", 1, 1 << 20, "kv heads"),
        {.kind = OPT_INT, .name = "--q-heads", .value = &p->n_q_heads, .arg = "HQ", .lo = 1, .hi = 1 << 20,
         .seen = &a->have_q, .help = "query heads, a multiple of H for GQA (default H)"},
        OPT_INT_("--tokens", &p->n_tokens, "T", "256", 1, 1L << 30, "tokens"),
        OPT_INT_("--dim", &p->head_dim, "D", "128", 2, 1 << 20, "head dim, any D >= 2, even for rope"),
        OPT_U64_("--seed", &p->seed, "S", "0", "seed"),
        OPT_STR_("--dtype", &a->dtype, "f16|f32", "f16", "stored type"),
        OPT_INT_("--dof", &p->dof, "N", "3", 3, TQ_SYNTH_DOF_MAX, dof_help),
        OPT_STR_("--layer-scales", &a->scales_s, "a,b..", NULL, "one query scale per layer: multiplies that layer's "
                 "queries, so its\nattention logits (and the logit errors of quantized keys) grow with it"),
        OPT_FLAG_("--hetero", &p->hetero, "built-in heterogeneous layers: query scale 0.25*16^sin(pi(l+0.5)/L), "
                  "~0.25 at\nthe first/last layers (near-uniform attention), 4 in the middle (very peaky)"),
        OPT_FLAG_("--pre-rope", &a->pre_rope, "rope: write the keys/queries before rotation (rope attribute \"pre\")"),
        {.kind = OPT_INT, .name = "--window", .value = &a->window, .arg = "W", .lo = 0, .hi = 1 << 30,
         .seen = &a->set_window, .help = "sliding-window attention on every layer: query t sees keys t-W+1..t\n"
         "(attribute sliding_window; 0 = global)"},
        OPT_STR_("--global-layers", &a->global_s, "LIST", NULL, "with --window: these layers stay global (e.g. 5,11 "
                 "as in Gemma 3)"),
        {.kind = OPT_DOUBLE, .name = "--attn-scale", .value = &a->attn_scale, .arg = "S", .dlo = 1e-6, .dhi = 1e6,
         .seen = &a->set_scale, .help = "scores = S q.k (attribute attn_scale; default 1/sqrt(D))"},
        {.kind = OPT_DOUBLE, .name = "--attn-softcap", .value = &a->softcap, .arg = "C", .dlo = 0, .dhi = 1e6,
         .seen = &a->set_softcap, .help = "scores s -> C tanh(s/C) (attribute attn_softcap; 0 = none)"},
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "synth", "synth --dist gaussian|structured|outlier|heavy|rope -o FILE.h5 [options]",
        "\nWrite a tq-kv dump (datasets/FORMAT.md) of synthetic keys, values and queries. The models and their\n"
        "parameters are in datasets/SYNTHETIC.md. Same options and seed: identical datasets.\n",
        opts, "\nOne layer (keys + values + queries) may hold at most 2^31 values."};
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) die("out of memory");
    if (opt_parse(&spec, argc, argv, pos) > 0)
        die_usage("synth: unexpected argument '%s' (the output goes after -o; see 'tq synth --help')", pos[0]);
    free(pos);
}

/* every parameter checked before the file is created */
static void synth_check(synth_args *a)
{
    tq_synth_params *p = &a->p;
    if (!a->dist) die_usage("synth: missing --dist (gaussian, structured, outlier, heavy or rope)");
    if ((p->dist = tq_synth_dist_parse(a->dist)) < 0)
        die_usage("synth: unknown distribution '%s' (gaussian, structured, outlier, heavy, rope)", a->dist);
    if (!strcmp(a->dtype, "f16") || !strcmp(a->dtype, "float16")) p->dtype = TQ_DTYPE_F16;
    else if (!strcmp(a->dtype, "f32") || !strcmp(a->dtype, "float32")) p->dtype = TQ_DTYPE_F32;
    else die_usage("synth: option '--dtype' is '%s', expected f16 or f32", a->dtype);
    if (a->scales_s) {
        p->n_layer_scales = parse_scales(a->scales_s, &a->scales);
        p->layer_scales = a->scales;
    }
    p->rope_post = !a->pre_rope;
    if (!a->out) die_usage("synth: missing -o FILE.h5 (where to write the dump)");
    check_output(a->out, NULL, 0);
    if (!a->have_q) p->n_q_heads = p->n_kv_heads;
    if (p->n_q_heads % p->n_kv_heads)
        die_usage("synth: --q-heads %d is not a multiple of --heads %d (GQA: each kv head serves HQ/H query heads)",
                  p->n_q_heads, p->n_kv_heads);
    if (p->n_layer_scales && p->n_layer_scales != p->n_layers)
        die_usage("synth: --layer-scales has %d values for %d layers; give one per layer", p->n_layer_scales,
                  p->n_layers);
    if (p->dof != TQ_SYNTH_DOF_DEFAULT && p->dist != TQ_SYNTH_HEAVY)
        die_usage("synth: --dof applies to --dist heavy only");
    if (!p->rope_post && p->dist != TQ_SYNTH_ROPE) die_usage("synth: --pre-rope applies to --dist rope only");
    if (a->global_s && !a->set_window) die_usage("synth: --global-layers applies with --window only");
    if (!(a->global = calloc((size_t)p->n_layers, sizeof *a->global))) die("out of memory");
    if (a->global_s) {
        int *ls, n = parse_list("--global-layers", a->global_s, 0, p->n_layers - 1, NULL, &ls);
        for (int i = 0; i < n; i++) a->global[ls[i]] = 1;
        free(ls);
    }
    int st = tq_synth_check(p);
    if (st) {
        fprintf(stderr, "tq: synth: %s\n", tq_error_msg());
        exit(st == TQ_ERR_USAGE ? 2 : 1);
    }
}

/* the dump, layer by layer through the writer (nothing left behind on failure) */
static void synth_write(synth_args *a, const tq_synth_params *p, const char *out, double *scales)
{
    int st;
    tq_dump_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.model, sizeof meta.model, "synthetic:%s", tq_synth_dist_name(p->dist));
    tq_synth_describe(p, meta.source, sizeof meta.source);
    snprintf(meta.rope, sizeof meta.rope, "%s",
             p->dist == TQ_SYNTH_ROPE ? (p->rope_post ? "post" : "pre") : "none");
    meta.n_layers = p->n_layers;
    meta.shape.n_kv_heads = p->n_kv_heads;
    meta.shape.n_q_heads = p->n_q_heads;
    meta.shape.n_tokens = p->n_tokens;
    meta.shape.head_dim = p->head_dim;
    meta.shape.has_values = meta.shape.has_queries = 1;
    meta.shape.dtype = p->dtype;

    tq_dump_writer *w = NULL;
    if ((st = tq_dump_create(&w, out, &meta, p->dtype))) {
        free(scales);
        free(a->global);
        die_lib(st, NULL);
    }
    tq_progress prog;
    progress_start(&prog, "synth", p->n_layers);
    for (int l = 0; l < p->n_layers; l++) {
        tq_layer layer;
        int gen_failed = (st = tq_synth_layer(p, l, &layer)) != 0;
        /* the spec only when asked: a plain synthetic dump carries no attention attributes (the v1 defaults) */
        tq_attn_spec spec = {a->global[l] ? 0 : a->window, a->set_scale ? a->attn_scale : 0, a->softcap, 0};
        int with_spec = a->set_window || a->set_scale || a->set_softcap;
        if (gen_failed || (with_spec && (st = tq_dump_set_layer_attn(w, l, &spec))) ||
            (st = tq_dump_write_layer(w, l, &layer))) {
            char msg[700]; /* copied before abort can overwrite the message */
            snprintf(msg, sizeof msg, "%s", tq_error_msg());
            tq_layer_free(&layer);
            tq_dump_abort(w);
            free(scales);
            free(a->global);
            progress_end(&prog);
            if (gen_failed) die("synth: cannot generate layer %d for '%s': %s", l, out, msg);
            die("%s", msg);
        }
        tq_layer_free(&layer);
        progress_step(&prog, 1);
    }
    progress_end(&prog);
    free(scales);
    free(a->global);
    if ((st = tq_dump_commit(w))) die_lib(st, NULL);
    double mib = (double)p->n_layers * (2.0 * p->n_kv_heads + p->n_q_heads) * p->n_tokens * p->head_dim *
                 (p->dtype == TQ_DTYPE_F16 ? 2 : 4) / 1048576.0;
    printf("wrote '%s': %s, %d layer%s, %d kv heads, %d q heads, %d tokens, dim %d, %s (%.1f MiB of data)\n", out,
           meta.model, p->n_layers, p->n_layers == 1 ? "" : "s", p->n_kv_heads, p->n_q_heads, p->n_tokens,
           p->head_dim, p->dtype == TQ_DTYPE_F16 ? "float16" : "float32", mib);
}

int cmd_synth(int argc, char **argv)
{
    synth_args a = {0};
    tq_synth_params_default(&a.p);
    synth_parse(&a, argc, argv);
    synth_check(&a);
    synth_write(&a, &a.p, a.out, a.scales);
    return 0;
}
