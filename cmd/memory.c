/* memory.c: `tq memory` — the KV-cache size of a model shape (or a preset) at a context length and batch, in fp16,
 * in int8 containers (int8 codes + an fp16 scale per vector) and in truly packed codes with their side information.
 * Options here; the presets, byte counts and the table writer are lib/memory.h (eval/repro's table 9 uses them too). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"
#include "options.h"
#include "vocab.h"
#include "memory.h"
#include "quant.h"

typedef struct {
    long context, batch;
    int n_cfg;
    tq_qparams cfg[64];
    int fmt_csv;
} mem_opts;

typedef struct {
    const char *preset, *methods, *bits;
    int layers, kv_heads, head_dim, all, outliers, group, norm32, fmt;
} mem_args;

static void memory_parse(mem_args *a, mem_opts *o, int argc, char **argv)
{
    const tq_option opts[] = {
        OPT_STR_("--preset", &a->preset, "NAME", NULL, "gemma-2b (18 layers, 1 kv head, d 256), llama-3.1-8b (32, 8, "
                 "128),\nllama-3.1-70b (80, 8, 128), smollm2-135m (30, 3, 64)"),
        OPT_FLAG_("--all-presets", &a->all, "one block of rows per preset"),
        OPT_INT_("--layers", &a->layers, "L", NULL, 1, 100000, "a custom shape (instead of --preset): layers,"),
        OPT_INT_("--kv-heads", &a->kv_heads, "H", NULL, 1, 65536, "kv heads"),
        OPT_INT_("--head-dim", &a->head_dim, "d", NULL, 1, 65536, "and head dim"),
        OPT_LONG_("--context", &o->context, "T", "8192", 1, 2147483647L, "tokens per sequence"),
        OPT_LONG_("--batch", &o->batch, "B", "1", 1, 1000000, "sequences"),
        {.kind = OPT_STRING, .name = "--methods", .alias = "--method", .value = &a->methods, .arg = "LIST",
         .help = "packed methods (default turbo-mse,turbo-prod,polar,kivi; fp16 and int8\nrows are always printed)"},
        OPT_STR_("--bits", &a->bits, "LIST", "3", "code bits, e.g. 3 or 2-4"),
        OPT_INT_("--outliers", &a->outliers, "N", "0", 0, 65535, "turbo: N channels at bits+1 (fractional bits)"),
        OPT_INT_("--group", &a->group, "G", "32", 1, 1 << 20, "kivi group size"),
        OPT_CHOICE_("--norms", &a->norm32, "fp16|fp32", "fp16", "side information precision"),
        OPT_CHOICE_("--format", &a->fmt, "md|csv", "md", "Markdown table or CSV"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "memory", "memory (--preset NAME | --layers L --kv-heads H --head-dim d) [options]\nmemory --all-presets "
        "[options]",
        "\nKV-cache bytes (keys + values, every layer, kv head, token and sequence) in fp16, in int8 containers\n"
        "(int8 codes + fp16 scale per vector) and in packed codes with side information (norms, scales,\n"
        "codebooks) exactly as tq quantize stores them: one slice per (sequence, layer, kv head, tensor) of\n"
        "--context tokens.\n",
        opts, NULL};
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) die("out of memory");
    if (opt_parse(&spec, argc, argv, pos) > 0)
        die_usage("memory: unexpected argument '%s' (see 'tq memory --help')", pos[0]);
    free(pos);
    o->fmt_csv = a->fmt == 1;
    int custom = a->layers || a->kv_heads || a->head_dim;
    if ((a->preset != NULL) + custom + a->all > 1)
        die_usage("memory: give one of --preset, --all-presets or --layers/--kv-heads/--head-dim");
    if (custom && !(a->layers && a->kv_heads && a->head_dim))
        die_usage("memory: a custom shape needs all of --layers, --kv-heads and --head-dim");
    if (!a->preset && !custom && !a->all)
        die_usage("memory: give --preset NAME, --all-presets or --layers L --kv-heads H --head-dim d");
}

/* configurations: fp16, int8, then each packed method at each bit width (lib/memory.h) */
static void memory_configs(const mem_args *a, mem_opts *o)
{
    int *blist, nm;
    int nb = parse_list("--bits", a->bits, 1, 8, NULL, &blist);
    char **names = parse_names("--methods", a->methods ? a->methods : "turbo-mse,turbo-prod,polar,kivi", &nm);
    int *methods = calloc((size_t)nm, sizeof *methods);
    if (!methods) die("out of memory");
    for (int mi = 0; mi < nm; mi++) {
        const tq_format *f = tq_format_by_name(names[mi]);
        if (!f) die_usage("memory: unknown method '%s' (%s)", names[mi], tq_vocab_list(TQ_VOCAB_METHOD, ", "));
        methods[mi] = f->method;
    }
    int max = (int)(sizeof o->cfg / sizeof o->cfg[0]);
    o->n_cfg = tq_mem_configs(o->cfg, max, methods, nm, blist, nb, a->group, a->norm32, a->outliers);
    if (o->n_cfg < 0) die_usage("memory: %s", tq_error_msg());
    free(methods);
    free(blist);
    free(names);
}

static void memory_check(const mem_args *a, mem_opts *o)
{
    int all = a->all, head_dim = a->head_dim;
    const char *preset_name = a->preset, *methods = a->methods;
    /* Every configuration must fit every shape before anything is printed: an explicit --methods list dies on the
     * first that does not, the default list drops it with a note (polar needs d % 16 == 0). */
    for (int k = 0; k < (all ? tq_mem_n_presets : 1); k++) {
        int d = all ? tq_mem_presets[k].head_dim : head_dim;
        const tq_mem_shape *ps = preset_name ? tq_mem_preset_find(preset_name) : NULL;
        if (ps) d = ps->head_dim;
        if (!d) break; /* unknown preset: reported below */
        for (int i = 0; i < o->n_cfg; i++) {
            const tq_format *f = tq_format_of(o->cfg[i].method);
            if (f->check(&o->cfg[i], d) == TQ_OK) continue;
            if (methods) die_lib(TQ_ERR_USAGE, f->name);
            fprintf(stderr, "tq: note: %s left out: %s\n", f->name, tq_error_msg());
            memmove(&o->cfg[i], &o->cfg[i + 1], sizeof o->cfg[0] * (size_t)(o->n_cfg - i - 1));
            o->n_cfg--;
            i--;
        }
    }
}

static void print_shape(const mem_opts *o, const tq_mem_shape *s, int header)
{
    int rc = tq_mem_write(stdout, s, o->cfg, o->n_cfg, o->context, o->batch, o->fmt_csv, header);
    if (rc == TQ_ERR_USAGE) die_usage("memory: %s", tq_error_msg());
    if (rc < 0) die_lib(rc, "memory");
}

int cmd_memory(int argc, char **argv)
{
    mem_args a = {0};
    mem_opts o;
    memset(&o, 0, sizeof o);
    memory_parse(&a, &o, argc, argv);
    memory_configs(&a, &o);
    memory_check(&a, &o);
    if (a.all) {
        for (int i = 0; i < tq_mem_n_presets; i++) print_shape(&o, &tq_mem_presets[i], i == 0);
        return 0;
    }
    tq_mem_shape s = {"custom", a.layers, a.kv_heads, a.head_dim};
    if (a.preset) {
        const tq_mem_shape *p = tq_mem_preset_find(a.preset);
        if (!p)
            die_usage("memory: unknown preset '%s' (gemma-2b, llama-3.1-8b, llama-3.1-70b, smollm2-135m)", a.preset);
        s = *p;
    }
    print_shape(&o, &s, 1);
    return 0;
}
