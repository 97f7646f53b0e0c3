/* test_eval_units.c: the work units behind `mpirun tq ...` (README "Scaling out") without MPI. Each unit computed
 * alone by tq_eval_unit_run / tq_sens_unit_run, in reverse order and through one reader, then handed to
 * tq_evaluate / tq_sensitivity as precomputed results, must give rows and curves identical to the plain call, bit
 * for bit (the same functions on the same slices: tolerance zero). Also tq_dump_read_heads against the whole layer,
 * and the unit list against the selections. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "evaluate.h"
#include "tq_test.h"
#include "vocab.h"

#define DUMP "datasets/smollm2-135m.h5"

static const int METHODS[] = {TQ_M_TURBO_MSE, TQ_M_KIVI, TQ_M_INT8}, BITS[] = {2, 3};

/* same bytes, NaN included (memcmp of the rows: padding is zeroed by the row initialisers) */
static int same_rows(const tq_eval_rows *a, const tq_eval_rows *b)
{
    if (a->n != b->n) return 0;
    for (long i = 0; i < a->n; i++) {
        const tq_eval_row *x = &a->rows[i], *y = &b->rows[i];
        if (x->input != y->input || x->layer != y->layer || x->head != y->head || x->tensor != y->tensor ||
            x->cfg != y->cfg || x->window != y->window || memcmp(&x->bits_code, &y->bits_code, sizeof(double)) ||
            memcmp(&x->bits_total, &y->bits_total, sizeof(double)) || memcmp(x->m.v, y->m.v, sizeof x->m.v) ||
            x->m.n_vectors != y->m.n_vectors || x->m.n_pairs != y->m.n_pairs || x->m.attn_rows != y->m.attn_rows)
            return 0;
    }
    return 1;
}

typedef struct { const tq_eval_unit *u; long n; const tq_eval_result *res; long calls; } lookup_ctx;

static int lookup(void *ctx, int in, int layer, int head, int cfg, tq_eval_result *r)
{
    lookup_ctx *c = ctx;
    __atomic_add_fetch(&c->calls, 1, __ATOMIC_RELAXED); /* tq_evaluate calls it from its head threads (threads = 2) */
    for (long i = 0; i < c->n; i++)
        if (c->u[i].input == in && c->u[i].layer == layer && c->u[i].head == head && c->u[i].cfg == cfg) {
            *r = c->res[i];
            return TQ_OK;
        }
    return tq_error_set(TQ_ERR, "no unit");
}

/* units computed alone in reverse order, then aggregated by tq_evaluate: the plain call's rows exactly */
static void check_units(const char *what, tq_eval_opts *o, long want_units)
{
    tq_eval_rows plain = {0}, split = {0};
    int rc = tq_evaluate(o, &plain);
    CHECK(rc == TQ_OK, "%s: tq_evaluate: %s", what, tq_error_msg());
    tq_eval_unit *u;
    long n;
    rc = tq_eval_units(o, &u, &n);
    CHECK(rc == TQ_OK && n == want_units, "%s: %ld units (want %ld): %s", what, n, want_units, tq_error_msg());
    int ordered = 1, cost_ok = 1;
    for (long i = 1; i < n; i++) {
        const tq_eval_unit *a = &u[i - 1], *b = &u[i];
        long ka = ((long)a->input * 1000 + a->layer) * 1000000 + a->head * 1000 + a->cfg;
        long kb = ((long)b->input * 1000 + b->layer) * 1000000 + b->head * 1000 + b->cfg;
        ordered &= ka < kb;
    }
    for (long i = 0; i < n; i++) cost_ok &= u[i].cost > 0 && isfinite(u[i].cost);
    CHECK(ordered, "%s: units not in tq_evaluate's order (input, layer, head, configuration)", what);
    CHECK(cost_ok, "%s: a unit without a positive cost", what);
    tq_eval_result *res = calloc((size_t)n, sizeof *res);
    tq_eval_reader *rd = NULL;
    for (long i = n - 1; i >= 0 && rc == TQ_OK; i--) rc = tq_eval_unit_run(o, &rd, &u[i], &res[i]);
    CHECK(rc == TQ_OK, "%s: tq_eval_unit_run: %s", what, tq_error_msg());
    tq_eval_reader_free(rd);
    lookup_ctx lc = {u, n, res, 0};
    o->precomputed = lookup;
    o->precomputed_ctx = &lc;
    rc = tq_evaluate(o, &split);
    o->precomputed = NULL;
    CHECK(rc == TQ_OK, "%s: tq_evaluate from units: %s", what, tq_error_msg());
    CHECK(lc.calls == n, "%s: %ld lookups for %ld units", what, lc.calls, n);
    CHECK(plain.n > n && same_rows(&plain, &split), "%s: rows from units differ (%ld vs %ld rows)", what, plain.n,
          split.n);
    tq_eval_rows_free(&plain);
    tq_eval_rows_free(&split);
    free(res);
    free(u);
}

static void test_synthetic(void)
{
    tq_eval_input in[2] = {{.label = "synthetic:gaussian", .synth = TQ_SYNTH_GAUSSIAN},
                           {.label = "synthetic:rope", .synth = TQ_SYNTH_ROPE}};
    tq_eval_opts o = {0};
    tq_synth_params_default(&o.sp);
    o.sp.n_layers = 2, o.sp.n_kv_heads = 2, o.sp.n_q_heads = 4, o.sp.n_tokens = 48, o.sp.head_dim = 32;
    o.sp.seed = 3;
    o.inputs = in, o.n_inputs = 2, o.threads = 1, o.seed = 3, o.attention = 1, o.per_head_rows = 1;
    tq_eval_axes ax = {.methods = METHODS, .n_methods = 3, .bits = BITS, .n_bits = 2, .seed = 3};
    tq_eval_configs cs;
    CHECK(tq_eval_configs_build(&cs, &ax, 32, TQ_DEVICE_CPU) == TQ_OK, "configs: %s", tq_error_msg());
    o.cfg = cs.cfg, o.n_cfg = cs.n; /* turbo-mse x2, kivi x2, int8: 5 */
    check_units("synthetic", &o, 2L * 2 * 2 * cs.n);
    tq_eval_configs_free(&cs);
}

/* the scan's units in (layer, head, width) order, two widths */
typedef struct { const tq_sens_slice *sl; int nkv; } sens_ctx;
static int sens_lookup(void *ctx, int layer, int head, int b, tq_sens_slice *r)
{
    const sens_ctx *c = ctx;
    *r = c->sl[((long)layer * c->nkv + head) * 2 + b];
    return TQ_OK;
}

static void test_dump(void)
{
    tq_dump *d;
    if (tq_dump_open(&d, DUMP) < 0) {
        SKIP("no " DUMP);
        return;
    }
    /* one kv head through the hyperslab = that head of the whole layer, queries group included */
    tq_layer L, H;
    int rc = tq_dump_read_layer(d, 3, 100, 0, &L);
    CHECK(rc == TQ_OK, "read layer: %s", tq_error_msg());
    rc = tq_dump_read_heads(d, 3, 1, 2, 100, 0, &H);
    CHECK(rc == TQ_OK, "read heads: %s", tq_error_msg());
    if (rc == TQ_OK) {
        int T = 100, dd = L.s.head_dim, G = L.s.n_q_heads / L.s.n_kv_heads;
        size_t kv = (size_t)2 * T * dd, off = (size_t)T * dd;
        CHECK(H.s.n_kv_heads == 2 && H.s.n_q_heads == 2 * G && H.s.n_tokens == T, "heads' shape %d/%d/%d",
              H.s.n_kv_heads, H.s.n_q_heads, H.s.n_tokens);
        CHECK(!memcmp(H.keys, L.keys + off, kv * sizeof(float)), "keys of heads 1-2 differ from the layer's");
        CHECK(!memcmp(H.values, L.values + off, kv * sizeof(float)), "values of heads 1-2 differ");
        CHECK(!memcmp(H.queries, L.queries + (size_t)G * off, (size_t)G * kv * sizeof(float)),
              "queries of heads 1-2 differ");
        tq_layer_free(&H);
    }
    tq_layer_free(&L);
    CHECK(tq_dump_read_heads(d, 3, 2, 2, 0, 0, &H) == TQ_ERR_USAGE, "heads 2..3 of 3 must be refused");
    const tq_dump_meta *m = tq_dump_get_meta(d);
    int nl = m->n_layers, nkv = m->shape.n_kv_heads, d_head = m->shape.head_dim;
    tq_dump_close(d);

    tq_eval_input in = {.label = "smollm2", .path = DUMP};
    static const int layers[] = {0, 5}, heads[] = {0, 2};
    tq_eval_opts o = {.inputs = &in, .n_inputs = 1, .layers = layers, .n_layers = 2, .heads = heads, .n_heads = 2,
                      .tokens = 96, .threads = 2, .seed = 1, .attention = 1, .per_head_rows = 1};
    tq_eval_axes ax = {.methods = METHODS, .n_methods = 2, .bits = BITS, .n_bits = 2, .seed = 1};
    tq_eval_configs cs;
    CHECK(tq_eval_configs_build(&cs, &ax, d_head, TQ_DEVICE_CPU) == TQ_OK, "configs: %s", tq_error_msg());
    o.cfg = cs.cfg, o.n_cfg = cs.n;
    check_units("dump", &o, 2L * 2 * cs.n);
    tq_eval_configs_free(&cs);

    /* sensitivity: each (layer, head, width) alone, then aggregated per layer by tq_sensitivity */
    tq_qparams P[2];
    for (int b = 0; b < 2; b++) tq_qparams_default(&P[b], TQ_M_TURBO_MSE, BITS[b]);
    tq_sens_opts so = {.dump = DUMP, .params = P, .n_bits = 2, .metric = tq_sens_metric_find("out_rel"),
                       .tensors = {1, 1}, .tokens = 64, .threads = 1, .seed = 2};
    tq_sens_result a, b;
    rc = tq_sensitivity(&so, &a);
    CHECK(rc == TQ_OK, "sensitivity: %s", tq_error_msg());
    tq_sens_slice *sl = calloc((size_t)nl * nkv * 2, sizeof *sl);
    tq_eval_reader *rd = NULL;
    for (long i = (long)nl * nkv * 2 - 1; i >= 0 && rc == TQ_OK; i--)
        rc = tq_sens_unit_run(&so, &rd, (int)(i / 2 / nkv), (int)(i / 2 % nkv), (int)(i % 2), &sl[i]);
    CHECK(rc == TQ_OK, "tq_sens_unit_run: %s", tq_error_msg());
    tq_eval_reader_free(rd);
    sens_ctx sc = {sl, nkv};
    so.precomputed_ctx = &sc;
    if (rc == TQ_OK) {
        so.precomputed = sens_lookup;
        rc = tq_sensitivity(&so, &b);
        CHECK(rc == TQ_OK, "sensitivity from units: %s", tq_error_msg());
        int same = rc == TQ_OK && a.n == b.n;
        for (int i = 0; same && i < a.n; i++)
            same = !memcmp(a.units[i].metric, b.units[i].metric, 2 * sizeof(double)) &&
                   !memcmp(a.units[i].bits_total, b.units[i].bits_total, 2 * sizeof(double)) &&
                   a.units[i].coords == b.units[i].coords && a.units[i].window == b.units[i].window;
        CHECK(same, "sensitivity curves from units differ");
        if (rc == TQ_OK) tq_sens_free(&b);
    }
    free(sl);
    if (a.units) tq_sens_free(&a);
}

int main(void)
{
    test_synthetic();
    test_dump();
    TQ_TEST_END();
}
