/* memory.c: `tq memory` — the KV-cache size of a model shape (or a preset) at a context length and batch, in fp16,
 * in int8 containers (int8 codes + an fp16 scale per vector) and in truly packed codes with their side information,
 * taken from the format table's bits_total so the numbers are the ones `tq quantize` writes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"
#include "options.h"
#include "vocab.h"
#include "quant.h"

typedef struct { const char *name; int layers, kv_heads, head_dim; } preset;

/* Shapes from the models' configs (TURBOQUANT.md for Gemma-2B; Llama 3.1 config.json; the bundled SmolLM2 dump). */
static const preset presets[] = {
    {"gemma-2b", 18, 1, 256},
    {"llama-3.1-8b", 32, 8, 128},
    {"llama-3.1-70b", 80, 8, 128},
    {"smollm2-135m", 30, 3, 64},
};
static const int n_presets = (int)(sizeof presets / sizeof presets[0]);

typedef struct {
    const char *model;
    int layers, kv_heads, head_dim;
} shape;

typedef struct {
    long context, batch;
    int n_cfg;
    tq_qparams cfg[64];
    int fmt_csv;
} mem_opts;

/* Bytes of the whole cache for one configuration: per slice = bits_total * n * d / 8 (an integer: the payload in
 * bytes; rounded to absorb the division's float error), times 2 tensors x layers x kv heads x batch. */
static double cache_bytes(const tq_qparams *p, const shape *s, long context, long batch, double *bits_total)
{
    const tq_format *f = tq_format_of(p->method);
    *bits_total = f->bits_total(p, (int)context, s->head_dim);
    double slice = round(*bits_total * (double)context * s->head_dim / 8);
    return slice * 2.0 * s->layers * s->kv_heads * (double)batch;
}

static const char *params_text(const tq_qparams *p, char *buf, size_t n)
{
    if (p->method == TQ_M_FP16 || p->method == TQ_M_INT8) {
        snprintf(buf, n, "%s", p->method == TQ_M_FP16 ? "" : p->norm_fp32 ? "fp32 scale per vector" : "fp16 scale per vector");
        return buf;
    }
    /* "turbo-mse,bits=3,rot=dense,cb=beta,seed=0" -> "rot=dense,cb=beta": the method and bits have their own
     * columns and the seed does not change a size. */
    char full[256];
    tq_qparams_describe(p, full, sizeof full);
    const char *s = strchr(full, ',');
    s = s ? s + 1 : full;
    if (!strncmp(s, "bits=", 5) && p->method != TQ_M_POLAR) s = strchr(s, ',') ? strchr(s, ',') + 1 : s + strlen(s);
    /* a cut cell is harmless here; copying by hand keeps -O1's -Wformat-truncation quiet */
    size_t len = strlen(s) < n ? strlen(s) : n - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *seed = strstr(buf, "seed=");
    if (seed) {
        if (seed > buf && seed[-1] == ',') seed--;
        *seed = 0;
    }
    return buf;
}

static void print_shape(const mem_opts *o, const shape *s, int header)
{
    double fp16_bytes = 0, bt;
    {
        tq_qparams p;
        tq_qparams_default(&p, TQ_M_FP16, 16);
        fp16_bytes = cache_bytes(&p, s, o->context, o->batch, &bt);
    }
    if (header) {
        if (o->fmt_csv)
            printf("model,layers,kv_heads,head_dim,context,batch,method,bits,params,bits_total,bytes,gib,vs_fp16\n");
        else {
            printf("| model | layers × kv heads × d | context | batch | method | bits | params | bits/coord (total) | "
                   "bytes | GiB | × smaller than fp16 |\n");
            printf("|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|\n");
        }
    }
    for (int i = 0; i < o->n_cfg; i++) {
        const tq_qparams *p = &o->cfg[i];
        const tq_format *f = tq_format_of(p->method);
        double bytes = cache_bytes(p, s, o->context, o->batch, &bt);
        if (!(bytes < 1.8e19)) die_usage("memory: the cache of '%s' is too large to count in 64 bits", s->model);
        char desc[192];
        params_text(p, desc, sizeof desc);
        unsigned long long ub = (unsigned long long)bytes;
        double gib = bytes / (1024.0 * 1024 * 1024), ratio = fp16_bytes / bytes;
        if (o->fmt_csv)
            printf("%s,%d,%d,%d,%ld,%ld,%s,%d,\"%s\",%.6f,%llu,%.6f,%.4f\n", s->model, s->layers, s->kv_heads,
                   s->head_dim, o->context, o->batch, f->name, p->bits, desc, bt, ub, gib, ratio);
        else
            printf("| %s | %d × %d × %d | %ld | %ld | %s | %d | %s | %.4f | %llu | %.4f | %.2f |\n", s->model, s->layers,
                   s->kv_heads, s->head_dim, o->context, o->batch, f->name, p->bits, desc, bt, ub, gib, ratio);
    }
}

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

/* configurations: fp16, int8, then each packed method at each bit width */
static void memory_configs(const mem_args *a, mem_opts *o)
{
    const char *methods = a->methods, *bits = a->bits;
    int group = a->group, norm32 = a->norm32, outliers = a->outliers;
    int *blist;
    int nb = parse_list("--bits", bits, 1, 8, NULL, &blist);
    tq_qparams_default(&o->cfg[o->n_cfg++], TQ_M_FP16, 16);
    tq_qparams_default(&o->cfg[o->n_cfg++], TQ_M_INT8, 8);
    int nm;
    char **names = parse_names("--methods", methods ? methods : "turbo-mse,turbo-prod,polar,kivi", &nm);
    for (int mi = 0; mi < nm; mi++) {
        const tq_format *f = tq_format_by_name(names[mi]);
        if (!f) die_usage("memory: unknown method '%s' (%s)", names[mi], tq_vocab_list(TQ_VOCAB_METHOD, ", "));
        if (f->method == TQ_M_FP16 || f->method == TQ_M_INT8) continue; /* always printed */
        for (int j = 0; j < nb; j++) {
            if (blist[j] < f->min_bits || blist[j] > f->max_bits) {
                if (f->min_bits == f->max_bits) { /* qjl: one width, whatever --bits says */
                    if (j) continue;
                } else die_usage("memory: --bits %d is out of range for %s (%d..%d)", blist[j], f->name, f->min_bits,
                                 f->max_bits);
            }
            if (o->n_cfg == (int)(sizeof o->cfg / sizeof o->cfg[0])) die_usage("memory: too many configurations");
            tq_qparams *p = &o->cfg[o->n_cfg++];
            tq_qparams_default(p, f->method, f->min_bits == f->max_bits ? f->min_bits : blist[j]);
            p->group = group;
            p->norm_fp32 = norm32;
            if (outliers && (f->method == TQ_M_TURBO_MSE || f->method == TQ_M_TURBO_PROD)) p->outliers = outliers;
        }
    }
    free(blist);
    free(names);
    o->cfg[0].norm_fp32 = o->cfg[1].norm_fp32 = norm32;

}

static void memory_check(const mem_args *a, mem_opts *o)
{
    int all = a->all, head_dim = a->head_dim;
    const char *preset_name = a->preset, *methods = a->methods;
    /* Every configuration must fit every shape before anything is printed: an explicit --methods list dies on the
     * first that does not, the default list drops it with a note (polar needs d % 16 == 0). */
    for (int k = 0; k < (all ? n_presets : 1); k++) {
        int d = all ? presets[k].head_dim : head_dim;
        if (preset_name)
            for (int i = 0; i < n_presets; i++)
                if (!strcmp(presets[i].name, preset_name)) d = presets[i].head_dim;
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

int cmd_memory(int argc, char **argv)
{
    mem_args a = {0};
    mem_opts o;
    memset(&o, 0, sizeof o);
    memory_parse(&a, &o, argc, argv);
    memory_configs(&a, &o);
    memory_check(&a, &o);
    int all = a.all, layers = a.layers, kv_heads = a.kv_heads, head_dim = a.head_dim;
    const char *preset_name = a.preset;
    if (all) {
        for (int i = 0; i < n_presets; i++) {
            shape s = {presets[i].name, presets[i].layers, presets[i].kv_heads, presets[i].head_dim};
            print_shape(&o, &s, i == 0);
        }
        return 0;
    }
    shape s = {"custom", layers, kv_heads, head_dim};
    if (preset_name) {
        int k = -1;
        for (int i = 0; i < n_presets; i++)
            if (!strcmp(presets[i].name, preset_name)) k = i;
        if (k < 0)
            die_usage("memory: unknown preset '%s' (gemma-2b, llama-3.1-8b, llama-3.1-70b, smollm2-135m)", preset_name);
        s = (shape){presets[k].name, presets[k].layers, presets[k].kv_heads, presets[k].head_dim};
    }
    print_shape(&o, &s, 1);
    return 0;
}
