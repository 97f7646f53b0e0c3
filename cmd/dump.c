/* dump.c: `tq dump` — run a GGUF model (lib/model.h) over a text and write its post-RoPE keys, values and queries
 * as a tq-kv dump (datasets/FORMAT.md), with what each layer's attention needs to be evaluated faithfully (sliding
 * window, scale, soft-cap, RoPE base) as attributes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"
#include "options.h"
#include "dump.h"
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

/* Query capture: the hook scatters q[t][head][d] of each call into [head][T][d] for the kept layers. */
typedef struct {
    int n_layers_model, T, H, D;
    int *slot;    /* model layer -> index into q, -1 when not kept */
    float **q;    /* [kept][H][T][D] */
} capture;

static int on_query(void *ctx, int layer, int pos0, int n, const float *q, int n_head, int d)
{
    capture *c = ctx;
    if (c->slot[layer] < 0) return TQ_OK;
    float *dst = c->q[c->slot[layer]];
    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_head; h++)
            memcpy(dst + ((size_t)h * c->T + pos0 + t) * d, q + ((size_t)t * n_head + h) * d,
                   (size_t)d * sizeof(float));
    return TQ_OK;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("dump: cannot read '%s'", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) die("dump: out of memory reading '%s'", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    int err = ferror(f);
    fclose(f);
    if (err) die("dump: cannot read '%s'", path);
    *len = n;
    return buf;
}

static int over_f16(const float *x, size_t n, float *worst)
{
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        if (a > *worst) *worst = a;
    }
    return *worst > 65504.0f;
}

typedef struct {
    const char *text, *out, *layers;
    int tokens, threads, dtype, compress, np;
    const char **pos;
} dump_args;

static void dump_parse(dump_args *a, int argc, char **argv)
{
    const tq_option opts[] = {
        OPT_STR_("--text", &a->text, "FILE", NULL, "the text, tokenized by the model's own tokenizer (required)"),
        OPT_INT_("--tokens", &a->tokens, "N", NULL, 1, 1 << 20, "the first N tokens (default: the whole text)"),
        OPT_STR_("--layers", &a->layers, "SPEC", NULL, "model layers to keep, e.g. 0-3,7 (default: all), "
                 "renumbered layer_000..."),
        OPT_CHOICE_("--dtype", &a->dtype, "f16|f32", "f16", "element type of the dump"),
        OPT_FLAG_("--compress", &a->compress, "store the tensors chunked with HDF5's shuffle + deflate filters\n"
                  "(lossless; readers decompress transparently; ~12% smaller on real models' float16 tensors)"),
        OPT_INT_("--threads", &a->threads, "N", "1", 1, 1024, "OpenBLAS threads"),
        {.kind = OPT_STRING, .name = "-o", .alias = "--output", .value = &a->out, .arg = "DUMP.h5",
         .help = "the dump to write (required)"},
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "dump", "dump MODEL.gguf --text FILE [options] -o DUMP.h5",
        "Runs the model (llama, qwen2, gemma2, gemma3 GGUFs; float32, weights dequantized at load) over the\n"
        "text tokenized by its own tokenizer and writes every layer's post-RoPE keys, values and queries.",
        opts, NULL};
    a->pos = calloc((size_t)argc, sizeof *a->pos);
    if (!a->pos) die("out of memory");
    a->np = opt_parse(&spec, argc, argv, a->pos);
    if (a->np > 1) die_usage("dump: unexpected argument '%s' (one model; see 'tq dump --help')", a->pos[1]);
    if (!a->np) die_usage("dump: no model (usage: tq dump MODEL.gguf --text FILE -o DUMP.h5)");
    if (!a->text) die_usage("dump: --text FILE is required");
    if (!a->out) die_usage("dump: -o DUMP.h5 is required");
    const char *inputs[2] = {a->pos[0], a->text};
    check_output(a->out, inputs, 2);
}

/* The model, then the text's tokens (an unsupported architecture is the message to give, whatever its
 * tokenizer). */
static tq_model *dump_load(const dump_args *a, int32_t **ids, int *T)
{
    size_t len;
    char *text = read_text(a->text, &len);
    int rc, n;
    tq_model_set_threads(a->threads);
    tq_model *m;
    if ((rc = tq_model_load(a->pos[0], &m)) < 0) die_lib(rc, "dump");
    tq_gguf *g;
    tq_tokenizer *tok;
    if ((rc = tq_gguf_open(a->pos[0], &g)) < 0) die_lib(rc, "dump");
    if ((rc = tq_tokenizer_from_gguf(g, &tok)) < 0) die_lib(rc, "dump");
    if ((rc = tq_tokenize(tok, text, len, TQ_TOKENIZE_ADD_SPECIAL, ids, &n)) < 0) die_lib(rc, "dump");
    tq_tokenizer_free(tok);
    tq_gguf_close(g);
    free(text);
    if (a->tokens && n < a->tokens)
        die("dump: '%s' gives %d tokens, fewer than --tokens %d", a->text, n, a->tokens);
    *T = a->tokens ? a->tokens : n;
    if (*T < 1) die("dump: '%s' gives no tokens", a->text);
    return m;
}

/* The forward pass over T tokens, capturing the kept layers' queries (the cache holds their keys and values). */
static tq_kv_cache *dump_forward(tq_model *m, const int32_t *ids, int T, const int *layers, int n_keep,
                                 capture *cap)
{
    const tq_model_config *c = tq_model_get_config(m);
    int rc;
    *cap = (capture){.n_layers_model = c->n_layers, .T = T, .H = c->n_head, .D = c->head_dim};
    cap->slot = malloc((size_t)c->n_layers * sizeof *cap->slot);
    cap->q = calloc((size_t)n_keep, sizeof *cap->q);
    if (!cap->slot || !cap->q) die("dump: out of memory");
    for (int l = 0; l < c->n_layers; l++) cap->slot[l] = -1;
    for (int i = 0; i < n_keep; i++) {
        cap->slot[layers[i]] = i;
        if (!(cap->q[i] = malloc((size_t)c->n_head * T * c->head_dim * sizeof(float)))) die("dump: out of memory");
    }
    tq_kv_cache *kc;
    if ((rc = tq_kv_cache_create(m, T, &kc)) < 0) die_lib(rc, "dump");
    tq_kv_cache_set_query_hook(kc, on_query, cap);
    tq_progress pg; /* on a terminal only (cmd_util's progress bar) */
    progress_start(&pg, "dump", T);
    for (int t = 0; t < T; t += 256) { /* prompt processing in chunks: bounded scratch, the same numbers */
        if ((rc = tq_model_forward(m, kc, ids + t, T - t < 256 ? T - t : 256, NULL)) < 0) die_lib(rc, "dump");
        progress_step(&pg, T - t < 256 ? T - t : 256);
    }
    progress_end(&pg);
    return kc;
}

/* One kept layer's tensors (refused when float16 cannot hold them), its attention spec and its model index. */
static int dump_write_layer(tq_dump_writer *w, const tq_model_config *c, tq_kv_cache *kc, int i, int l,
                            float *q, int T, int dtype)
{
    tq_layer ly = {.s = {.n_kv_heads = c->n_kv_head, .n_q_heads = c->n_head, .n_tokens = T,
                         .head_dim = c->head_dim, .has_values = 1, .has_queries = 1, .dtype = dtype},
                   .keys = tq_kv_cache_keys(kc, l, 0), .values = tq_kv_cache_values(kc, l, 0), .queries = q};
    float worst;
    size_t nkv = (size_t)c->n_kv_head * T * c->head_dim, nq = (size_t)c->n_head * T * c->head_dim;
    const char *names[3] = {"keys", "values", "queries"};
    const float *ptrs[3] = {ly.keys, ly.values, ly.queries};
    for (int k = 0; k < 3 && dtype == TQ_DTYPE_F16; k++)
        if (over_f16(ptrs[k], k == 2 ? nq : nkv, &worst)) {
            tq_dump_abort(w);
            die("dump: model layer %d %s: |x| up to %.4g overflows float16; use --dtype f32", l, names[k], worst);
        }
    const tq_layer_attn *at = &c->layer[l];
    tq_attn_spec spec = {.window = at->sliding_window, .scale = at->attn_scale, .softcap = at->attn_softcap,
                         .rope_base = at->rope_base};
    int rc;
    if ((rc = tq_dump_set_layer_attn(w, i, &spec)) >= 0 && (rc = tq_dump_write_layer(w, i, &ly)) >= 0)
        rc = tq_dump_layer_attr_int(w, i, "model_layer", l);
    return rc;
}

/* The dump file: the kept layers, then the file attributes (model layers, token ids, RoPE facts). */
static void dump_write(const dump_args *a, const tq_model_config *c, tq_kv_cache *kc, const capture *cap,
                       const int *layers, int n_keep, const int32_t *ids, int T)
{
    int dtype = a->dtype ? TQ_DTYPE_F32 : TQ_DTYPE_F16, rc;
    const char *path = a->pos[0], *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    tq_dump_meta meta;
    memset(&meta, 0, sizeof meta);
    size_t nb = strlen(base);
    snprintf(meta.model, sizeof meta.model, "%.*s", (int)(nb > 5 && !strcmp(base + nb - 5, ".gguf") ? nb - 5 : nb),
             base);
    snprintf(meta.source, sizeof meta.source, "gguf %s (%s); text %s; %d tokens; tq dump %s (float32 forward pass)",
             base, c->arch_name, a->text, T, TQ_VERSION);
    snprintf(meta.rope, sizeof meta.rope, "post");
    snprintf(meta.architecture, sizeof meta.architecture, "%s", c->arch_name);
    meta.n_layers = n_keep;
    tq_dump_writer *w;
    if ((rc = tq_dump_create(&w, a->out, &meta, dtype)) < 0) die_lib(rc, NULL);
    if (a->compress && (rc = tq_dump_set_compression(w, 9)) < 0) {
        tq_dump_abort(w);
        die_lib(rc, NULL);
    }
    for (int i = 0; i < n_keep && rc >= 0; i++) rc = dump_write_layer(w, c, kc, i, layers[i], cap->q[i], T, dtype);
    int64_t *ml = malloc((size_t)(n_keep > T ? n_keep : T) * sizeof *ml);
    if (!ml) die("dump: out of memory");
    for (int i = 0; i < n_keep; i++) ml[i] = layers[i];
    if (rc >= 0) rc = tq_dump_attr_ints(w, "model_layers", ml, n_keep);
    for (int t = 0; t < T; t++) ml[t] = ids[t];
    if (rc >= 0) rc = tq_dump_attr_ints(w, "token_ids", ml, T);
    int64_t nl = c->n_layers;
    if (rc >= 0) rc = tq_dump_attr_ints(w, "model_n_layers", &nl, 1);
    if (rc >= 0) rc = tq_dump_attr_str(w, "channel_order", "rotate_half");
    if (rc >= 0) rc = tq_dump_attr_double(w, "rope_theta", c->layer[c->n_layers - 1].rope_base);
    free(ml);
    if (rc < 0) {
        tq_dump_abort(w);
        die_lib(rc, NULL);
    }
    if ((rc = tq_dump_commit(w)) < 0) die_lib(rc, NULL);
    fprintf(stderr, "dump: %d tokens, %d of %d layers of '%s' (%s) -> '%s'\n", T, n_keep, c->n_layers, base,
            c->arch_name, a->out);
}

int cmd_dump(int argc, char **argv)
{
    dump_args a = {0};
    dump_parse(&a, argc, argv);
    int32_t *ids;
    int T;
    tq_model *m = dump_load(&a, &ids, &T);
    const tq_model_config *c = tq_model_get_config(m);
    int *layers, n_keep = c->n_layers;
    if (a.layers) n_keep = parse_list("--layers", a.layers, 0, c->n_layers - 1, a.pos[0], &layers);
    else {
        if (!(layers = malloc((size_t)c->n_layers * sizeof *layers))) die("dump: out of memory");
        for (int l = 0; l < c->n_layers; l++) layers[l] = l;
    }
    capture cap;
    tq_kv_cache *kc = dump_forward(m, ids, T, layers, n_keep, &cap);
    dump_write(&a, c, kc, &cap, layers, n_keep, ids, T);
    for (int i = 0; i < n_keep; i++) free(cap.q[i]);
    free(cap.q);
    free(cap.slot);
    free(layers);
    free(ids);
    free(a.pos);
    tq_kv_cache_free(kc);
    tq_model_free(m);
    return 0;
}
