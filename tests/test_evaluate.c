/* test_evaluate.c: lib/evaluate run in memory, linked directly (no tq binary): the configuration product and its
 * skip notes, every slice row against the round trip and tq_metrics_head computed here, the aggregates against
 * tq_metrics_acc in head order, thread-count independence, the progress callback, the device table, and the
 * aggregate rows against the committed golden CSV of `tq sweep --synthetic ...` (tests/golden/sweep_synthetic.csv). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "evaluate.h"
#include "tq_test.h"
#include "vocab.h"

static const int METHODS[] = {TQ_M_TURBO_MSE, TQ_M_QJL, TQ_M_KIVI}, BITS[] = {2, 3};

/* the in-memory twin of: tq sweep --synthetic gaussian,rope --layers 2 --heads 2 --tokens 64 --dim 32
 *                         --methods turbo-mse,qjl,kivi --bits 2,3 --seed 5 --threads T */
static void setup(tq_eval_opts *o, tq_eval_input in[2], tq_eval_configs *cs, int threads)
{
    in[0] = (tq_eval_input){.label = "synthetic:gaussian", .synth = TQ_SYNTH_GAUSSIAN};
    in[1] = (tq_eval_input){.label = "synthetic:rope", .synth = TQ_SYNTH_ROPE};
    memset(o, 0, sizeof *o);
    tq_synth_params_default(&o->sp);
    o->sp.n_layers = 2, o->sp.n_kv_heads = o->sp.n_q_heads = 2, o->sp.n_tokens = 64, o->sp.head_dim = 32;
    o->sp.seed = 5;
    o->inputs = in, o->n_inputs = 2, o->tokens = 64, o->threads = threads, o->seed = 5, o->attention = 1;
    o->per_head_rows = 1;
    tq_eval_axes ax = {.methods = METHODS, .n_methods = 3, .bits = BITS, .n_bits = 2, .seed = 5};
    int rc = tq_eval_configs_build(cs, &ax, 32, TQ_DEVICE_CPU);
    CHECK(rc == TQ_OK, "configs: %s", tq_error_msg());
    o->cfg = cs->cfg, o->n_cfg = cs->n;
}

typedef struct { long calls, last_done, last_total, starts; } prog;
static void on_progress(void *ctx, const char *label, long done, long total)
{
    prog *p = ctx;
    p->calls++;
    p->starts += done == 0;
    p->last_done = done, p->last_total = total;
}

static int same_metrics(const tq_metrics *a, const tq_metrics *b)
{
    for (int i = 0; i < TQ_MET_COUNT; i++)
        if (!(a->v[i] == b->v[i] || (isnan(a->v[i]) && isnan(b->v[i])))) return 0;
    return a->n_vectors == b->n_vectors;
}

/* every slice row equals the round trip + tq_metrics_head done here, bit for bit: the same functions on the same
 * inputs in the same order, so the tolerance is zero */
static void check_slices(const tq_eval_opts *o, const tq_eval_rows *r)
{
    long checked = 0;
    for (long i = 0; i < r->n; i++) {
        const tq_eval_row *w = &r->rows[i];
        if (w->head < 0 || w->tensor != TQ_TENSOR_KEYS) continue;
        tq_synth_params sp = o->sp;
        sp.dist = o->inputs[w->input].synth;
        tq_layer L;
        CHECK(tq_synth_layer(&sp, w->layer, &L) == TQ_OK, "synth layer");
        int T = L.s.n_tokens, d = L.s.head_dim, G = L.s.n_q_heads / L.s.n_kv_heads;
        size_t off = (size_t)w->head * T * d;
        const tq_eval_config *c = &o->cfg[w->cfg];
        tq_codes ck = {0}, cv = {0};
        float *kh = malloc(sizeof(float) * T * d), *vh = malloc(sizeof(float) * T * d);
        int rc = tq_quantize(&c->k, (tq_slice_id){w->layer, w->head, 0}, L.keys + off, T, d, &ck);
        rc |= tq_dequantize(&ck, kh);
        rc |= tq_quantize(&c->v, (tq_slice_id){w->layer, w->head, 1}, L.values + off, T, d, &cv);
        rc |= tq_dequantize(&cv, vh);
        tq_metrics mk, mv;
        tq_metrics_opts mo = {.seed = 5, .layer = w->layer, .head = w->head, .attention = 1};
        rc |= tq_metrics_head(&mo, L.queries + (size_t)w->head * G * T * d, G, L.keys + off, kh, L.values + off, vh,
                              T, d, &mk, &mv);
        CHECK(rc == 0, "direct round trip");
        CHECK(same_metrics(&w->m, &mk), "keys row %ld equals the direct metrics", i);
        CHECK(same_metrics(&r->rows[i + 1].m, &mv) && r->rows[i + 1].tensor == TQ_TENSOR_VALUES,
              "values row %ld equals the direct metrics", i + 1);
        CHECK(w->bits_total == tq_codes_bits_total(&ck), "bits_total %g vs %g", w->bits_total,
              tq_codes_bits_total(&ck));
        tq_codes_free(&ck);
        tq_codes_free(&cv);
        free(kh);
        free(vh);
        tq_layer_free(&L);
        checked++;
    }
    CHECK(checked == 2 * 2 * 2 * o->n_cfg, "slice rows checked: %ld", checked);
}

/* the per-input aggregate of every (config, tensor) is tq_metrics_acc over its slice rows in order */
static void check_aggregates(const tq_eval_opts *o, const tq_eval_rows *r)
{
    for (long i = 0; i < r->n; i++) {
        const tq_eval_row *w = &r->rows[i];
        if (w->layer >= 0) continue;
        tq_metrics_acc a;
        tq_metrics_acc_init(&a);
        for (long j = 0; j < r->n; j++) {
            const tq_eval_row *s = &r->rows[j];
            if (s->head >= 0 && s->input == w->input && s->cfg == w->cfg && s->tensor == w->tensor)
                tq_metrics_acc_add(&a, &s->m);
        }
        tq_metrics m;
        tq_metrics_acc_mean(&a, &m);
        CHECK(same_metrics(&m, &w->m), "aggregate row %ld equals tq_metrics_acc of its slices", i);
    }
}

/* quote-aware split of one CSV line in place */
static int csv_split(char *p, char **f, int max)
{
    int n = 0;
    while (n < max) {
        if (*p == '"') {
            f[n++] = ++p;
            char *w = p;
            while (*p && !(*p == '"' && p[1] != '"')) *w++ = (*p == '"' ? (p += 2, '"') : *p++);
            p += *p == '"'; /* past the closing quote before ending the field (w may sit on it) */
            *w = 0;
        } else f[n++] = p;
        p += strcspn(p, ",\n");
        if (*p != ',') {
            *p = 0;
            break;
        }
        *p++ = 0;
    }
    return n;
}

/* every aggregate row, printed as the CSV writer prints it (%.9g), equals the golden file's line */
static void check_golden(const tq_eval_opts *o, const tq_eval_rows *r)
{
    FILE *f = fopen("tests/golden/sweep_synthetic.csv", "r");
    if (!f) {
        SKIP("tests/golden/sweep_synthetic.csv not found (run from the repository root)");
        return;
    }
    char line[4096], *fld[64];
    long matched = 0, want = 0;
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    while (fgets(line, sizeof line, f)) {
        int n = csv_split(line, fld, 64);
        if (n < 11 + TQ_MET_COUNT || strcmp(fld[1], "dump")) continue; /* scope: the dump-level aggregate */
        want++;
        for (long i = 0; i < r->n; i++) {
            const tq_eval_row *w = &r->rows[i];
            const tq_eval_config *c = &o->cfg[w->cfg];
            const char *desc = w->tensor ? c->vdesc : c->kdesc;
            if (w->layer >= 0 || strcmp(o->inputs[w->input].label, fld[0]) || strcmp(tq_tensor_name(w->tensor), fld[5])
                || strcmp(strchr(desc, ',') + 1, fld[7]))
                continue;
            char got[64];
            int ok = 1;
            snprintf(got, sizeof got, "%.9g", w->bits_total);
            ok &= !strcmp(got, fld[9]);
            ok &= !strcmp(fld[3], "0"); /* window: synthetic inputs are global */
            for (int k = 0; k < TQ_MET_COUNT; k++) {
                if (isfinite(w->m.v[k])) snprintf(got, sizeof got, "%.9g", w->m.v[k]);
                else got[0] = 0;
                ok &= !strcmp(got, fld[11 + k]);
            }
            CHECK(ok, "golden row %s %s %s %s", fld[0], fld[5], fld[6], fld[7]);
            matched++;
        }
    }
    fclose(f);
    CHECK(matched == want && want == 2 * 2 * o->n_cfg, "golden aggregate rows matched %ld of %ld", matched, want);
}

static void test_sweep(void)
{
    tq_eval_input in[2];
    tq_eval_opts o;
    tq_eval_configs cs;
    setup(&o, in, &cs, 1);
    /* turbo-mse 2,3 + qjl (fixed width: once) + kivi 2,3; no skips at d = 32 */
    CHECK(cs.n == 5 && cs.n_notes == 0, "configurations %d, notes %d", cs.n, cs.n_notes);
    prog p = {0};
    o.progress = on_progress, o.progress_ctx = &p;
    tq_eval_rows r1 = {0}, r4 = {0};
    CHECK(tq_evaluate(&o, &r1) == TQ_OK, "evaluate: %s", tq_error_msg());
    /* per input: 2 layers x 5 configs x (2 heads x 2 tensors + 2 layer aggregates) + 5 x 2 input aggregates */
    CHECK(r1.n == 2 * (2 * 5 * 6 + 10), "rows %ld", r1.n);
    CHECK(p.starts == 2 && p.calls == 2 * (1 + 2 * 5) && p.last_done == p.last_total && p.last_total == 10,
          "progress: %ld calls, %ld starts, last %ld/%ld", p.calls, p.starts, p.last_done, p.last_total);
    check_slices(&o, &r1);
    check_aggregates(&o, &r1);
    check_golden(&o, &r1);
    o.threads = 4, o.progress = NULL;
    CHECK(tq_evaluate(&o, &r4) == TQ_OK, "evaluate, 4 threads");
    int same = r4.n == r1.n;
    for (long i = 0; same && i < r1.n; i++) {
        const tq_eval_row *a = &r1.rows[i], *b = &r4.rows[i];
        same = a->input == b->input && a->layer == b->layer && a->head == b->head && a->tensor == b->tensor &&
               a->cfg == b->cfg && a->bits_code == b->bits_code && a->bits_total == b->bits_total &&
               same_metrics(&a->m, &b->m) && a->m.n_pairs == b->m.n_pairs && a->m.attn_rows == b->m.attn_rows;
    }
    CHECK(same, "4 threads give the same rows, every field equal");
    tq_eval_rows_free(&r1);
    tq_eval_rows_free(&r4);
    tq_eval_configs_free(&cs);
}

static void test_configs(void)
{
    /* hadamard needs a power-of-two dim: at d = 48 the hadamard turbo-mse configurations are skipped with a note,
     * the dense ones stay; kivi at 9 bits is outside its range (1..8) */
    int m[] = {TQ_M_TURBO_MSE, TQ_M_KIVI}, b[] = {2, 9}, rot[] = {TQ_ROT_DENSE, TQ_ROT_HADAMARD};
    tq_eval_axes ax = {.methods = m, .n_methods = 2, .bits = b, .n_bits = 2, .rotations = rot, .n_rotations = 2};
    tq_eval_configs cs;
    int rc = tq_eval_configs_build(&cs, &ax, 48, TQ_DEVICE_CPU);
    CHECK(rc == TQ_OK, "build: %s", tq_error_msg());
    /* turbo-mse 2 dense kept, hadamard 2 -> note, 9 bits (out of 1..8) -> note; kivi 2 kept, kivi 9 -> note */
    CHECK(cs.n == 2 && cs.n_notes == 3, "configs %d, notes %d", cs.n, cs.n_notes);
    CHECK(cs.n_notes > 1 && strstr(cs.notes[1], "skipping turbo-mse at 9 bits"), "note: %s",
          cs.n_notes > 1 ? cs.notes[1] : "");
    tq_eval_configs_free(&cs);
    int only_had[] = {TQ_ROT_HADAMARD};
    ax.methods = m, ax.n_methods = 1, ax.bits = b, ax.n_bits = 1, ax.rotations = only_had, ax.n_rotations = 1;
    rc = tq_eval_configs_build(&cs, &ax, 48, TQ_DEVICE_CPU);
    CHECK(rc == TQ_ERR_USAGE && strstr(tq_error_msg(), "no configuration left to run"), "none left: %d %s", rc,
          tq_error_msg());
    tq_eval_configs_free(&cs);
}

static void test_device(void)
{
    tq_qparams p;
    tq_qparams_default(&p, TQ_M_KIVI, 2);
    CHECK(tq_device_supports(TQ_DEVICE_CPU, &p, 64) == TQ_OK, "cpu runs kivi");
    /* the CUDA backend answers for kivi without a GPU: not a method it runs */
    CHECK(tq_device_supports(TQ_DEVICE_CUDA, &p, 64) == TQ_ERR_USAGE, "cuda does not run kivi");
    CHECK(!strcmp(tq_backend_of(TQ_DEVICE_CUDA)->name, tq_device_name(TQ_DEVICE_CUDA)), "backend names");
#if !TQ_HAVE_CUDA
    CHECK(tq_device_available(TQ_DEVICE_CUDA) == TQ_ERR_NOCUDA && strstr(tq_error_msg(), "built without CUDA"),
          "cpu-only build: %s", tq_error_msg());
#endif
    CHECK(tq_vocab_parse(TQ_VOCAB_ROTATION, "qr") == TQ_ERR_USAGE &&
          !strcmp(tq_error_msg(), "unknown rotation 'qr' (dense, hadamard, none)"), "vocab: %s", tq_error_msg());
    CHECK(tq_vocab_find(TQ_VOCAB_METHOD, "turbo-prod") == TQ_M_TURBO_PROD, "vocab method");
}

int main(void)
{
    test_sweep();
    test_configs();
    test_device();
    TQ_TEST_END();
}
