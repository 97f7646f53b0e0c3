/* synth.c: `tq synth` — write a tq-kv dump of synthetic keys, values and queries (lib/synth.h) one layer at a time
 * through the dump writer, so the same seed gives the same datasets and controlled studies need no model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"
#include "dump.h"
#include "synth.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tq synth --dist gaussian|structured|outlier|heavy|rope -o FILE.h5 [options]\n"
            "\n"
            "Write a tq-kv dump (datasets/FORMAT.md) of synthetic keys, values and queries. The models and their\n"
            "parameters are in datasets/SYNTHETIC.md. Same options and seed: identical datasets.\n"
            "\n"
            "  --dist NAME          gaussian    i.i.d. N(0,1) keys, values, queries\n"
            "                       structured  keys in 8 directional clusters per head, queries near them (peaked)\n"
            "                       outlier     round(4d/128) key channels at 10-20x the scale of the rest\n"
            "                       heavy       standardized Student-t keys and values (--dof, default 3)\n"
            "                       rope        post-RoPE keys/queries: per-head base + slowly varying content,\n"
            "                                   rotated by position (theta_i = 10000^(-2i/d))\n"
            "  -o, --output FILE    the dump to write (through a temporary name, renamed when complete)\n"
            "  --layers L           layers (default 1, at most %d)\n"
            "  --heads H            kv heads (default 1)\n"
            "  --q-heads HQ         query heads, a multiple of H for GQA (default H)\n"
            "  --tokens T           tokens (default 256)\n"
            "  --dim D              head dim, any D >= 2, even for rope (default 128)\n"
            "  --seed S             seed (default 0)\n"
            "  --dtype f16|f32      stored type (default f16)\n"
            "  --dof N              heavy: Student-t degrees of freedom, 3..%d (default 3)\n"
            "  --layer-scales a,b.. one query scale per layer: multiplies that layer's queries, so its attention\n"
            "                       logits (and the logit errors of quantized keys) grow with it\n"
            "  --hetero             built-in heterogeneous layers: query scale 0.25*16^sin(pi(l+0.5)/L), ~0.25 at\n"
            "                       the first/last layers (near-uniform attention), 4 in the middle (very peaky)\n"
            "  --pre-rope           rope: write the keys/queries before rotation (rope attribute \"pre\")\n"
            "  -h, --help           this help\n"
            "\n"
            "One layer (keys + values + queries) may hold at most 2^31 values.\n",
            TQ_SYNTH_MAX_LAYERS, TQ_SYNTH_DOF_MAX);
}

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

int cmd_synth(int argc, char **argv)
{
    tq_synth_params p;
    tq_synth_params_default(&p);
    p.dtype = TQ_DTYPE_F16;
    const char *out = NULL;
    double *scales = NULL;
    int have_dist = 0, have_q = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage(stdout);
            free(scales);
            return 0;
        }
        if (!strcmp(a, "--hetero")) {
            p.hetero = 1;
            continue;
        }
        if (!strcmp(a, "--pre-rope")) {
            p.rope_post = 0;
            continue;
        }
        if (a[0] != '-' || !a[1])
            die_usage("synth: unexpected argument '%s' (the output goes after -o; see 'tq synth --help')", a);
        static const char *const with_value[] = {"--dist", "-o", "--output", "--layers", "--heads", "--q-heads",
                                                 "--tokens", "--dim", "--seed", "--dtype", "--dof", "--layer-scales"};
        const char *v = option_value("synth", with_value, sizeof with_value / sizeof *with_value, argc, argv, &i);
        if (!strcmp(a, "--dist")) {
            p.dist = tq_synth_dist_parse(v);
            if (p.dist < 0)
                die_usage("synth: unknown distribution '%s' (gaussian, structured, outlier, heavy, rope)", v);
            have_dist = 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--layers")) p.n_layers = (int)parse_long(a, v, 1, TQ_SYNTH_MAX_LAYERS);
        else if (!strcmp(a, "--heads")) p.n_kv_heads = (int)parse_long(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--q-heads")) {
            p.n_q_heads = (int)parse_long(a, v, 1, 1 << 20);
            have_q = 1;
        } else if (!strcmp(a, "--tokens")) p.n_tokens = (int)parse_long(a, v, 1, 1L << 30);
        else if (!strcmp(a, "--dim")) p.head_dim = (int)parse_long(a, v, 2, 1 << 20);
        else if (!strcmp(a, "--seed")) p.seed = parse_u64(a, v);
        else if (!strcmp(a, "--dof")) p.dof = (int)parse_long(a, v, 3, TQ_SYNTH_DOF_MAX);
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f16") || !strcmp(v, "float16")) p.dtype = TQ_DTYPE_F16;
            else if (!strcmp(v, "f32") || !strcmp(v, "float32")) p.dtype = TQ_DTYPE_F32;
            else die_usage("synth: option '--dtype' is '%s', expected f16 or f32", v);
        } else if (!strcmp(a, "--layer-scales")) {
            free(scales);
            p.n_layer_scales = parse_scales(v, &scales);
            p.layer_scales = scales;
        }
    }
    if (!have_dist) die_usage("synth: missing --dist (gaussian, structured, outlier, heavy or rope)");
    if (!out) die_usage("synth: missing -o FILE.h5 (where to write the dump)");
    check_output(out, NULL, 0);
    if (!have_q) p.n_q_heads = p.n_kv_heads;
    if (p.n_q_heads % p.n_kv_heads)
        die_usage("synth: --q-heads %d is not a multiple of --heads %d (GQA: each kv head serves HQ/H query heads)",
                  p.n_q_heads, p.n_kv_heads);
    if (p.n_layer_scales && p.n_layer_scales != p.n_layers)
        die_usage("synth: --layer-scales has %d values for %d layers; give one per layer", p.n_layer_scales,
                  p.n_layers);
    if (p.dof != TQ_SYNTH_DOF_DEFAULT && p.dist != TQ_SYNTH_HEAVY)
        die_usage("synth: --dof applies to --dist heavy only");
    if (!p.rope_post && p.dist != TQ_SYNTH_ROPE) die_usage("synth: --pre-rope applies to --dist rope only");
    int st = tq_synth_check(&p);
    if (st) {
        fprintf(stderr, "tq: synth: %s\n", tq_error_msg());
        exit(st == TQ_ERR_USAGE ? 2 : 1);
    }

    tq_dump_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.model, sizeof meta.model, "synthetic:%s", tq_synth_dist_name(p.dist));
    tq_synth_describe(&p, meta.source, sizeof meta.source);
    snprintf(meta.rope, sizeof meta.rope, "%s",
             p.dist == TQ_SYNTH_ROPE ? (p.rope_post ? "post" : "pre") : "none");
    meta.n_layers = p.n_layers;
    meta.shape.n_kv_heads = p.n_kv_heads;
    meta.shape.n_q_heads = p.n_q_heads;
    meta.shape.n_tokens = p.n_tokens;
    meta.shape.head_dim = p.head_dim;
    meta.shape.has_values = meta.shape.has_queries = 1;
    meta.shape.dtype = p.dtype;

    tq_dump_writer *w = NULL;
    if ((st = tq_dump_create(&w, out, &meta, p.dtype))) {
        free(scales);
        die_lib(st, NULL);
    }
    tq_progress prog;
    progress_start(&prog, "synth", p.n_layers);
    for (int l = 0; l < p.n_layers; l++) {
        tq_layer layer;
        int gen_failed = (st = tq_synth_layer(&p, l, &layer)) != 0;
        if (gen_failed || (st = tq_dump_write_layer(w, l, &layer))) {
            char msg[700]; /* copied before abort can overwrite the message */
            snprintf(msg, sizeof msg, "%s", tq_error_msg());
            tq_layer_free(&layer);
            tq_dump_abort(w);
            free(scales);
            progress_end(&prog);
            if (gen_failed) die("synth: cannot generate layer %d for '%s': %s", l, out, msg);
            die("%s", msg);
        }
        tq_layer_free(&layer);
        progress_step(&prog, 1);
    }
    progress_end(&prog);
    free(scales);
    if ((st = tq_dump_commit(w))) die_lib(st, NULL);
    double mib = (double)p.n_layers * (2.0 * p.n_kv_heads + p.n_q_heads) * p.n_tokens * p.head_dim *
                 (p.dtype == TQ_DTYPE_F16 ? 2 : 4) / 1048576.0;
    printf("wrote '%s': %s, %d layer%s, %d kv heads, %d q heads, %d tokens, dim %d, %s (%.1f MiB of data)\n", out,
           meta.model, p.n_layers, p.n_layers == 1 ? "" : "s", p.n_kv_heads, p.n_q_heads, p.n_tokens, p.head_dim,
           p.dtype == TQ_DTYPE_F16 ? "float16" : "float32", mib);
    return 0;
}
