/* sweep.c: `tq sweep` — quantize every (layer, kv head, tensor) slice of dumps or synthetic inputs under the
 * cartesian product of method/bits/rotation/codebook/center/outlier axes and report lib/metrics.h for each, with
 * aggregates per layer and per input. Also the engine (sweep.h) that `tq entropy` reuses. */
#include "sweep.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if TQ_HAVE_OPENMP
#include <omp.h>
#endif

#include "cmd.h"
#include "cuda/tq_cuda.h"
#include "dump.h"
#include "tq.h"

/* ---------- configurations ---------- */

static int split_list(const char *opt, const char *s, char out[][32], int max)
{
    char buf[512];
    if (!s || !*s || strlen(s) >= sizeof buf) die_usage("option '%s': bad list '%s'", opt, s ? s : "");
    strcpy(buf, s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max) die_usage("option '%s': more than %d values", opt, max);
        if (strlen(tok) >= 32) die_usage("option '%s': value '%s' is too long", opt, tok);
        strcpy(out[n++], tok);
    }
    if (!n) die_usage("option '%s': empty list", opt);
    return n;
}

static const char *method_names(void)
{
    static char buf[256];
    buf[0] = 0;
    for (int m = 0; m < TQ_M_COUNT; m++)
        if (tq_formats[m]) {
            if (buf[0]) strcat(buf, ",");
            strcat(buf, tq_formats[m]->name);
        }
    return buf;
}

static const tq_format *method_or_die(const char *opt, const char *name)
{
    const tq_format *f = tq_format_by_name(name);
    if (!f) die_usage("option '%s': unknown method '%s' (known: %s)", opt, name, method_names());
    return f;
}

/* Parameters of a method at its defaults with the sweep's seed. Fixed-width methods (fp16, int8) ignore bits. */
static tq_qparams base_params(const tq_format *f, int bits, uint64_t seed)
{
    tq_qparams p;
    tq_qparams_default(&p, f->method, f->min_bits == f->max_bits ? f->min_bits : bits);
    p.seed = seed;
    return p;
}

/* "turbo-mse,bits=3,rot=dense" -> "bits=3,rot=dense" (the method has its own column). */
static const char *params_of(const char *desc)
{
    const char *c = strchr(desc, ',');
    return c ? c + 1 : "";
}

/* Skip notes are held back until the configurations are known: printed when some remain, folded into the one
 * error line when none does (a failing command says one thing). */
static char *skip_notes;
static size_t skip_len;
static char skip_last[320];
static int n_skipped;

static void skip_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void skip_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(skip_last, sizeof skip_last, fmt, ap);
    va_end(ap);
    n_skipped++;
    size_t n = strlen(skip_last);
    char *p = realloc(skip_notes, skip_len + n + 16);
    if (!p) die("out of memory");
    skip_notes = p;
    skip_len += (size_t)sprintf(skip_notes + skip_len, "tq: note: %s\n", skip_last);
}

/* vmode: 1 values use the keys' configuration, 0 the fixed *v, -1 none (keys only). */
static void add_config(sw_opts *o, const tq_qparams *k, const tq_qparams *v, int vmode, int d, int *cap)
{
    char kd[192], vd[192];
    tq_qparams_describe(k, kd, sizeof kd);
    const tq_format *f = tq_format_of(k->method);
    tq_error_clear();
    int rc = f->check(k, d);
    if (rc < 0) {
        skip_note("skipping %s for head dim %d: %s", kd, d, tq_error_msg());
        return;
    }
    if (o->device == SW_DEV_CUDA && tq_cuda_supports(k, d) < 0) { /* like a config the method does not take */
        skip_note("skipping %s: %s", kd, tq_error_msg());
        return;
    }
    tq_qparams vv = vmode == 1 ? *k : *v;
    if (vmode < 0) {
        vv.method = -1;
        strcpy(vd, "none");
    } else tq_qparams_describe(&vv, vd, sizeof vd);
    for (int i = 0; i < o->n_cfg; i++) /* axes a method ignores (codebook for qjl, ...) collapse to one config */
        if (!strcmp(o->cfg[i].kdesc, kd) && !strcmp(o->cfg[i].vdesc, vd)) return;
    if (o->n_cfg == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        o->cfg = realloc(o->cfg, (size_t)*cap * sizeof *o->cfg);
        if (!o->cfg) die("out of memory");
    }
    sw_config *c = &o->cfg[o->n_cfg++];
    c->k = *k;
    c->v = vv;
    strcpy(c->kdesc, kd);
    strcpy(c->vdesc, vd);
}

/* --values: "same", "none" or METHOD[:BITS]. Returns 1 same, 0 fixed (in *v), -1 none. */
static int parse_values(const char *s, uint64_t seed, int d, tq_qparams *v)
{
    if (!s || !strcmp(s, "same")) return 1;
    if (!strcmp(s, "none")) return -1;
    char name[32];
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    if (len == 0 || len >= sizeof name) die_usage("option '--values': want METHOD:BITS, same or none, got '%s'", s);
    memcpy(name, s, len);
    name[len] = 0;
    const tq_format *f = method_or_die("--values", name);
    int bits = f->min_bits;
    if (colon) bits = (int)parse_long("--values", colon + 1, 1, 16);
    else if (f->min_bits != f->max_bits)
        die_usage("option '--values': method '%s' needs bits, e.g. '%s:%d'", name, name, f->min_bits > 2 ? f->min_bits : 2);
    *v = base_params(f, bits, seed);
    if (f->min_bits != f->max_bits) v->bits = bits;
    int rc = f->check(v, d);
    if (rc < 0) die_usage("option '--values': %s", tq_error_msg());
    return 0;
}

int sw_device_parse(const char *cmd, const char *v)
{
    if (!strcmp(v, "cpu")) return SW_DEV_CPU;
    if (strcmp(v, "cuda")) die_usage("%s: unknown device '%s'; use cpu or cuda", cmd, v);
    int st = tq_cuda_device(NULL, 0, NULL, NULL);
    if (st) {
        if (st == TQ_ERR_NOCUDA)
            die("%s --device cuda: this tq is built without CUDA (rebuild with make CUDA=1 on a machine with nvcc, "
                "or use --device cpu)", cmd);
        die_lib(st, cmd);
    }
    return SW_DEV_CUDA;
}

void sw_build_configs(sw_opts *o, const sw_axes *ax, int d)
{
    char meth[TQ_M_COUNT * 2][32], rot[4][32], cb[4][32], cen[4][32];
    int bits[16], outl[16], *bl;
    int nm = split_list("--methods", ax->methods ? ax->methods : "turbo-mse,turbo-prod,polar,kivi", meth, TQ_M_COUNT * 2);
    int nb = parse_list("--bits", ax->bits ? ax->bits : "1-4", 1, 16, NULL, &bl);
    memcpy(bits, bl, (size_t)nb * sizeof *bl);
    free(bl);
    int nr = split_list("--rotation", ax->rotation ? ax->rotation : "dense", rot, 4);
    int nc = split_list("--codebook", ax->codebook ? ax->codebook : "beta", cb, 4);
    int ne = split_list("--center", ax->center ? ax->center : "off", cen, 4);
    char ol[16][32];
    int no = split_list("--outliers", ax->outliers ? ax->outliers : "0", ol, 16);
    int rotv[4], cbv[4], cenv[4];
    for (int i = 0; i < nr; i++) {
        if (!strcmp(rot[i], "dense")) rotv[i] = TQ_ROT_DENSE;
        else if (!strcmp(rot[i], "hadamard")) rotv[i] = TQ_ROT_HADAMARD;
        else if (!strcmp(rot[i], "none")) rotv[i] = TQ_ROT_NONE;
        else die_usage("option '--rotation': unknown rotation '%s' (dense, hadamard, none)", rot[i]);
    }
    for (int i = 0; i < nc; i++) {
        if (!strcmp(cb[i], "beta")) cbv[i] = TQ_CB_BETA;
        else if (!strcmp(cb[i], "gaussian")) cbv[i] = TQ_CB_GAUSSIAN;
        else if (!strcmp(cb[i], "empirical")) cbv[i] = TQ_CB_EMPIRICAL;
        else die_usage("option '--codebook': unknown codebook '%s' (beta, gaussian, empirical)", cb[i]);
    }
    for (int i = 0; i < ne; i++) {
        if (!strcmp(cen[i], "off") || !strcmp(cen[i], "0")) cenv[i] = 0;
        else if (!strcmp(cen[i], "on") || !strcmp(cen[i], "1")) cenv[i] = 1;
        else die_usage("option '--center': want off, on or off,on, got '%s'", cen[i]);
    }
    for (int i = 0; i < no; i++) outl[i] = (int)parse_long("--outliers", ol[i], 0, 1 << 20);
    tq_qparams vfix;
    memset(&vfix, 0, sizeof vfix);
    int vmode = parse_values(ax->values, o->seed, d, &vfix);
    if (vmode == 0 && o->device == SW_DEV_CUDA && tq_cuda_supports(&vfix, d) < 0)
        die_usage("option '--values': %s", tq_error_msg());
    int cap = 0;
    for (int mi = 0; mi < nm; mi++) {
        const tq_format *f = method_or_die("--methods", meth[mi]);
        int fixed = f->min_bits == f->max_bits;
        for (int bi = 0; bi < (fixed ? 1 : nb); bi++) {
            if (!fixed && (bits[bi] < f->min_bits || bits[bi] > f->max_bits)) {
                skip_note("skipping %s at %d bits: it takes %d..%d", f->name, bits[bi], f->min_bits, f->max_bits);
                continue;
            }
            tq_qparams p = base_params(f, bits[bi], o->seed);
            if (!f->uses_rotation) {
                add_config(o, &p, &vfix, vmode, d, &cap);
                continue;
            }
            for (int r = 0; r < nr; r++)
                for (int c = 0; c < nc; c++)
                    for (int e = 0; e < ne; e++)
                        for (int u = 0; u < no; u++) {
                            tq_qparams q = p;
                            q.rotation = rotv[r];
                            q.codebook = cbv[c];
                            q.center = cenv[e];
                            q.outliers = outl[u];
                            add_config(o, &q, &vfix, vmode, d, &cap);
                        }
        }
    }
    if (!o->n_cfg) {
        if (n_skipped > 1)
            die_usage("no configuration left to run: all %d were skipped; the last: %s", n_skipped, skip_last);
        die_usage("no configuration left to run: %s", skip_last[0] ? skip_last : "nothing was asked for");
    }
    if (skip_notes) fputs(skip_notes, stderr);
    free(skip_notes);
    skip_notes = NULL;
    skip_len = 0;
}

/* ---------- selections ---------- */

/* "0-3,7" into mask[0..n): die naming the input when a value is outside 0..n-1. NULL selects all. */
static void parse_sel(const char *opt, const char *s, int n, const char *input, unsigned char *mask)
{
    if (!s) {
        memset(mask, 1, (size_t)n);
        return;
    }
    memset(mask, 0, (size_t)n);
    char buf[512];
    if (!*s || strlen(s) >= sizeof buf) die_usage("option '%s': bad list '%s' (want e.g. 0-3,7)", opt, s);
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *dash = strchr(tok + 1, '-');
        long a, b;
        if (dash) {
            *dash = 0;
            a = parse_long(opt, tok, 0, 1L << 30);
            b = parse_long(opt, dash + 1, 0, 1L << 30);
            if (b < a) die_usage("option '%s': empty range '%s-%s'", opt, tok, dash + 1);
        } else a = b = parse_long(opt, tok, 0, 1L << 30);
        if (b >= n) die_usage("option '%s': %ld is out of range for '%s', which has %d (0..%d)", opt, b, input, n, n - 1);
        for (long v = a; v <= b; v++) mask[v] = 1;
    }
}

/* ---------- evaluation ---------- */

typedef struct {
    tq_metrics mk, mv;
    double kbits, vbits;
    double kbc, vbc;        /* nominal code bits of the slice's parameters (scheduled bits vary per slice) */
    int rc;
    char err[300];
} head_result;

int sw_quantize_slice(int device, const tq_qparams *p, tq_slice_id id, const float *x, int T, int d, float *xhat,
                      double *bits)
{
    tq_codes c;
    memset(&c, 0, sizeof c);
    int rc;
    if (device == SW_DEV_CUDA) {
        /* one slice at a time on the GPU (its calls sync the default stream); heads' metrics still run in parallel */
#if TQ_HAVE_OPENMP
#pragma omp critical(tq_sweep_cuda)
#endif
        rc = tq_cuda_quantize_recon(p, id, x, T, d, &c, xhat);
        if (rc < 0) return rc;
        *bits = tq_codes_bits_total(&c);
        tq_codes_free(&c);
        return TQ_OK;
    }
    rc = tq_quantize(p, id, x, T, d, &c);
    if (rc < 0) return rc;
    *bits = tq_codes_bits_total(&c);
    rc = tq_dequantize(&c, xhat);
    tq_codes_free(&c);
    return rc;
}

/* sweep --schedule: the schedule's bits for this slice (polar through its level mapping, as tq quantize does) */
static void sched_bits(const tq_schedule *s, int layer, int h, int tensor, tq_qparams *p)
{
    int b = s ? tq_schedule_bits(s, layer, h, tensor) : -1;
    if (b <= 0) return;
    p->bits = b;
    if (p->method == TQ_M_POLAR) {
        tq_qparams d;
        tq_qparams_default(&d, TQ_M_POLAR, b);
        p->polar_levels = d.polar_levels;
        memcpy(p->polar_bits, d.polar_bits, sizeof p->polar_bits);
    }
}

static void eval_head(const sw_opts *o, const sw_config *c, int layer, int h, const tq_layer *L, head_result *r)
{
    int T = L->s.n_tokens, d = L->s.head_dim, G = L->s.has_queries ? L->s.n_q_heads / L->s.n_kv_heads : 0;
    size_t off = (size_t)h * T * d;
    const float *k = L->keys + off, *v = L->values && c->v.method >= 0 ? L->values + off : NULL;
    const float *q = L->queries ? L->queries + (size_t)h * G * T * d : NULL;
    float *kh = tq_malloc((size_t)T * d * sizeof(float)), *vh = v ? tq_malloc((size_t)T * d * sizeof(float)) : NULL;
    tq_qparams kp = c->k, vp = c->v;
    sched_bits(o->sched, layer, h, TQ_TENSOR_KEYS, &kp);
    if (v) sched_bits(o->sched, layer, h, TQ_TENSOR_VALUES, &vp);
    r->kbc = tq_format_of(kp.method)->bits_code(&kp, d);
    r->vbc = v ? tq_format_of(vp.method)->bits_code(&vp, d) : NAN;
    r->rc = TQ_OK;
    tq_error_clear();
    if (!kh || (v && !vh)) r->rc = TQ_ERR_NOMEM;
    if (r->rc == TQ_OK)
        r->rc = sw_quantize_slice(o->device, &kp, (tq_slice_id){layer, h, TQ_TENSOR_KEYS}, k, T, d, kh, &r->kbits);
    if (r->rc == TQ_OK && v)
        r->rc = sw_quantize_slice(o->device, &vp, (tq_slice_id){layer, h, TQ_TENSOR_VALUES}, v, T, d, vh, &r->vbits);
    if (r->rc == TQ_OK) {
        tq_metrics_opts mo = {.seed = o->seed, .layer = layer, .head = h, .attention = o->attention};
        r->rc = tq_metrics_head(&mo, q, G, k, kh, v, vh, T, d, &r->mk, v ? &r->mv : NULL);
    }
    if (r->rc < 0) snprintf(r->err, sizeof r->err, "%s", tq_error_msg());
    free(kh);
    free(vh);
}

static sw_row *push_row(sw_rows *out)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 256;
        out->rows = realloc(out->rows, (size_t)out->cap * sizeof *out->rows);
        if (!out->rows) die("out of memory");
    }
    return &out->rows[out->n++];
}

/* bits ride along with the metrics in the accumulators: the weighted mean of bits_code and bits_total */
typedef struct { tq_metrics_acc a; double bc, bt, w; } sw_acc;

static void acc_add(sw_acc *a, const tq_metrics *m, double bc, double bt)
{
    tq_metrics_acc_add(&a->a, m);
    a->bc += bc * (double)m->n_vectors;
    a->bt += bt * (double)m->n_vectors;
    a->w += (double)m->n_vectors;
}

static void acc_row(sw_rows *out, const sw_acc *a, int input, int layer, int tensor, int cfg)
{
    if (a->w <= 0) return;
    sw_row *r = push_row(out);
    *r = (sw_row){.input = input, .layer = layer, .head = -1, .tensor = tensor, .cfg = cfg,
                  .bits_code = a->bc / a->w, .bits_total = a->bt / a->w};
    tq_metrics_acc_mean(&a->a, &r->m);
}

static void read_layer(const sw_opts *o, int in, tq_dump *dump, const tq_synth_params *sp, int layer, tq_layer *L)
{
    int rc;
    if (dump) {
        const tq_layer_shape *s = tq_dump_layer_shape(dump, layer);
        if (o->tokens > s->n_tokens)
            die_usage("option '--tokens': %d is more than the %d tokens of '%s' layer %d", o->tokens, s->n_tokens,
                      o->inputs[in], layer);
        rc = tq_dump_read_layer(dump, layer, o->tokens, 0, L);
    } else rc = tq_synth_layer(sp, layer, L);
    if (rc < 0) die_lib(rc, NULL);
}

void sw_run(const sw_opts *o, sw_rows *out)
{
    /* parallelism is over heads (--threads); OpenBLAS stays on one thread even at --threads 1: its idle pool spins in
     * sched_yield between the many small products (on the bundled dump: 4.9 s of system time, 7.8 s instead of 6.2) */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (int in = 0; in < o->n_inputs; in++) {
        tq_dump *dump = NULL;
        tq_synth_params sp = o->sp;
        int n_layers;
        if (o->input_synth[in] < 0) {
            int rc = tq_dump_open(&dump, o->inputs[in]);
            if (rc < 0) die_lib(rc, NULL);
            n_layers = tq_dump_get_meta(dump)->n_layers;
        } else {
            sp.dist = o->input_synth[in];
            if (o->tokens) sp.n_tokens = o->tokens;
            int rc = tq_synth_check(&sp);
            if (rc < 0) die_lib(rc, NULL);
            n_layers = sp.n_layers;
        }
        unsigned char *lmask = malloc((size_t)n_layers);
        sw_acc *tot = calloc((size_t)o->n_cfg * 2, sizeof *tot);
        if (!lmask || !tot) die("out of memory");
        parse_sel("--layers", dump ? o->layers_sel : NULL, n_layers, o->inputs[in], lmask);
        long nsel = 0;
        for (int l = 0; l < n_layers; l++) nsel += lmask[l];
        tq_progress pg;
        progress_start(&pg, o->inputs[in], nsel * o->n_cfg);
        for (int layer = 0; layer < n_layers; layer++) {
            if (!lmask[layer]) continue;
            tq_layer L;
            read_layer(o, in, dump, &sp, layer, &L);
            int nkv = L.s.n_kv_heads, nh = 0;
            unsigned char *hmask = malloc((size_t)nkv);
            int *hs = malloc((size_t)nkv * sizeof(int));
            head_result *res = calloc((size_t)nkv, sizeof *res);
            if (!hmask || !hs || !res) die("out of memory");
            parse_sel("--heads", dump ? o->heads_sel : NULL, nkv, o->inputs[in], hmask);
            for (int h = 0; h < nkv; h++)
                if (hmask[h]) hs[nh++] = h;
            for (int ci = 0; ci < o->n_cfg; ci++) {
                const sw_config *c = &o->cfg[ci];
#if TQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(o->threads > 0 ? o->threads : 1)
#endif
                for (int i = 0; i < nh; i++) eval_head(o, c, layer, hs[i], &L, &res[i]);
                sw_acc la[2] = {0};
                for (int i = 0; i < nh; i++) { /* serial, in head order: aggregates do not depend on threads */
                    head_result *r = &res[i];
                    if (r->rc < 0)
                        die("cannot evaluate '%s' layer %d head %d with %s: %s", o->inputs[in], layer, hs[i], c->kdesc,
                            r->err);
                    double kbc = r->kbc;
                    if (o->per_head_rows) {
                        sw_row *w = push_row(out);
                        *w = (sw_row){.input = in, .layer = layer, .head = hs[i], .tensor = TQ_TENSOR_KEYS, .cfg = ci,
                                      .bits_code = kbc, .bits_total = r->kbits, .m = r->mk};
                    }
                    acc_add(&la[0], &r->mk, kbc, r->kbits);
                    acc_add(&tot[2 * ci], &r->mk, kbc, r->kbits);
                    if (L.values && c->v.method >= 0) {
                        double vbc = r->vbc;
                        if (o->per_head_rows) {
                            sw_row *w = push_row(out);
                            *w = (sw_row){.input = in, .layer = layer, .head = hs[i], .tensor = TQ_TENSOR_VALUES,
                                          .cfg = ci, .bits_code = vbc, .bits_total = r->vbits, .m = r->mv};
                        }
                        acc_add(&la[1], &r->mv, vbc, r->vbits);
                        acc_add(&tot[2 * ci + 1], &r->mv, vbc, r->vbits);
                    }
                }
                if (o->per_head_rows) {
                    acc_row(out, &la[0], in, layer, TQ_TENSOR_KEYS, ci);
                    acc_row(out, &la[1], in, layer, TQ_TENSOR_VALUES, ci);
                }
                progress_step(&pg, 1);
            }
            free(hmask);
            free(hs);
            free(res);
            tq_layer_free(&L);
        }
        progress_end(&pg);
        for (int ci = 0; ci < o->n_cfg; ci++) {
            acc_row(out, &tot[2 * ci], in, -1, TQ_TENSOR_KEYS, ci);
            acc_row(out, &tot[2 * ci + 1], in, -1, TQ_TENSOR_VALUES, ci);
        }
        free(lmask);
        free(tot);
        if (dump) tq_dump_close(dump);
    }
    openblas_set_num_threads(blas_threads);
}

int sw_first_dim(const sw_opts *o)
{
    /* open every dump now: a bad file or an out-of-range --layers/--heads fails before any long run */
    int dim = o->input_synth[0] >= 0 ? o->sp.head_dim : 0;
    for (int in = 0; in < o->n_inputs; in++) {
        if (o->input_synth[in] >= 0) continue;
        tq_dump *d;
        int rc = tq_dump_open(&d, o->inputs[in]);
        if (rc < 0) die_lib(rc, NULL);
        const tq_dump_meta *m = tq_dump_get_meta(d);
        if (in == 0) dim = m->shape.head_dim;
        unsigned char *mask = malloc((size_t)m->n_layers + (size_t)m->shape.n_kv_heads);
        if (!mask) die("out of memory");
        parse_sel("--layers", o->layers_sel, m->n_layers, o->inputs[in], mask);
        parse_sel("--heads", o->heads_sel, m->shape.n_kv_heads, o->inputs[in], mask + m->n_layers);
        free(mask);
        tq_dump_close(d);
    }
    return dim;
}

/* ---------- output ---------- */

static const char *const fixed_cols[] = {"dump", "layer", "head", "tensor", "method", "params", "bits_code",
                                         "bits_total", "compression"};
#define N_FIXED 9

static void row_strings(const sw_opts *o, const sw_row *r, char s[N_FIXED][256])
{
    const sw_config *c = &o->cfg[r->cfg];
    const tq_qparams *p = r->tensor == TQ_TENSOR_KEYS ? &c->k : &c->v;
    const char *desc = r->tensor == TQ_TENSOR_KEYS ? c->kdesc : c->vdesc;
    snprintf(s[0], 256, "%s", o->inputs[r->input]);
    if (r->layer < 0) strcpy(s[1], "all");
    else snprintf(s[1], 256, "%d", r->layer);
    if (r->head < 0) strcpy(s[2], "all");
    else snprintf(s[2], 256, "%d", r->head);
    strcpy(s[3], r->tensor == TQ_TENSOR_KEYS ? "keys" : "values");
    snprintf(s[4], 256, "%s", tq_format_of(p->method)->name);
    snprintf(s[5], 256, "%s", params_of(desc));
}

static double row_num(const sw_row *r, int col) /* col >= 6 */
{
    if (col == 6) return r->bits_code;
    if (col == 7) return r->bits_total;
    if (col == 8) return r->bits_total > 0 ? 16.0 / r->bits_total : NAN;
    return r->m.v[col - N_FIXED];
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void md_num(char *buf, size_t n, int col, double v)
{
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (col == 6 || col == 7) snprintf(buf, n, "%.4g", v);
    else if (col == 8) snprintf(buf, n, "%.2f", v);
    else snprintf(buf, n, "%.4g", v);
}

void sw_write(FILE *f, int fmt, const sw_opts *o, const sw_rows *r)
{
    int ncol = N_FIXED + TQ_MET_COUNT;
    if (fmt == SW_FMT_CSV) {
        for (int c = 0; c < ncol; c++) fprintf(f, "%s%s", c ? "," : "", c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
        fputc('\n', f);
        for (long i = 0; i < r->n; i++) {
            char s[N_FIXED][256];
            row_strings(o, &r->rows[i], s);
            for (int c = 0; c < ncol; c++) {
                if (c) fputc(',', f);
                if (c < 6) csv_field(f, s[c]);
                else {
                    double v = row_num(&r->rows[i], c);
                    if (isfinite(v)) fprintf(f, "%.9g", v); /* absent: empty field */
                }
            }
            fputc('\n', f);
        }
    } else if (fmt == SW_FMT_JSON) {
        fprintf(f, "{\"tq_sweep\": 1, \"columns\": [");
        for (int c = 0; c < ncol; c++) {
            if (c) fputs(", ", f);
            json_str(f, c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
        }
        fprintf(f, "],\n \"rows\": [");
        for (long i = 0; i < r->n; i++) {
            const sw_row *w = &r->rows[i];
            char s[N_FIXED][256];
            row_strings(o, w, s);
            fprintf(f, "%s\n  {", i ? "," : "");
            for (int c = 0; c < ncol; c++) {
                if (c) fputs(", ", f);
                json_str(f, c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
                fputs(": ", f);
                if ((c == 1 && w->layer >= 0) || (c == 2 && w->head >= 0)) fputs(s[c], f); /* numbers */
                else if (c < 6) json_str(f, s[c]);
                else {
                    double v = row_num(w, c);
                    if (isfinite(v)) fprintf(f, "%.9g", v);
                    else fputs("null", f);
                }
            }
            fputc('}', f);
        }
        fprintf(f, "\n]}\n");
    } else {
        for (int c = 0; c < ncol; c++) fprintf(f, "| %s ", c < N_FIXED ? fixed_cols[c] : tq_metric_names[c - N_FIXED]);
        fputs("|\n", f);
        for (int c = 0; c < ncol; c++) fputs(c < 6 ? "|---" : "|---:", f);
        fputs("|\n", f);
        for (long i = 0; i < r->n; i++) {
            char s[N_FIXED][256], num[32];
            row_strings(o, &r->rows[i], s);
            for (int c = 0; c < ncol; c++) {
                if (c < 6) {
                    for (char *p = s[c]; *p; p++)
                        if (*p == '|') *p = '/'; /* a '|' would split the cell */
                    fprintf(f, "| %s ", *s[c] ? s[c] : "-");
                } else {
                    md_num(num, sizeof num, c, row_num(&r->rows[i], c));
                    fprintf(f, "| %s ", num);
                }
            }
            fputs("|\n", f);
        }
    }
}

int sw_format_pick(const char *fmt, const char *path)
{
    if (fmt) {
        if (!strcmp(fmt, "md") || !strcmp(fmt, "markdown")) return SW_FMT_MD;
        if (!strcmp(fmt, "csv")) return SW_FMT_CSV;
        if (!strcmp(fmt, "json")) return SW_FMT_JSON;
        die_usage("option '--format': unknown format '%s' (md, csv, json)", fmt);
    }
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (dot && !strcmp(dot, ".csv")) return SW_FMT_CSV;
    if (dot && !strcmp(dot, ".json")) return SW_FMT_JSON;
    return SW_FMT_MD;
}

void sw_write_path(const char *path, int fmt, const sw_opts *o, const sw_rows *r)
{
    if (!path || !strcmp(path, "-")) {
        sw_write(stdout, fmt, o, r);
        if (fflush(stdout) != 0) die("cannot write the report to stdout: %s", strerror(errno));
        return;
    }
    FILE *f = out_open(path);
    sw_write(f, fmt, o, r);
    out_commit(f, path);
}

void sw_rows_free(sw_rows *r)
{
    free(r->rows);
    r->rows = NULL;
    r->n = r->cap = 0;
}

void sw_opts_free(sw_opts *o)
{
    for (int i = 0; i < o->n_inputs; i++) free(o->inputs[i]);
    free(o->inputs);
    free(o->input_synth);
    free(o->cfg);
}

/* ---------- tq sweep ---------- */

/* --schedule: one dump, one method (--methods or the schedule's), bits from the schedule per slice; values need
 * the schedule's values bits or an explicit --values. Malformed files exit 1, mismatches with the dump exit 2. */
static tq_schedule *sweep_schedule(const char *path, sw_opts *o, sw_axes *ax, char *sbits)
{
    if (o->n_inputs != 1 || o->input_synth[0] >= 0)
        die_usage("option '--schedule' takes exactly one dump (a schedule is made for one model)");
    if (ax->bits) die_usage("options '--schedule' and '--bits' contradict each other: the schedule sets the bits");
    tq_schedule *s;
    int rc = tq_schedule_load(&s, path);
    if (rc < 0) die_lib(TQ_ERR, NULL);
    if (!ax->methods) {
        if (!s->method[0]) die_usage("schedule '%s' names no method; add --methods M", path);
        ax->methods = s->method;
    }
    const tq_format *f = tq_format_by_name(ax->methods);
    if (!f) die_usage("option '--schedule' wants one known method in --methods, got '%s'", ax->methods);
    tq_dump *d;
    if ((rc = tq_dump_open(&d, o->inputs[0])) < 0) die_lib(rc, NULL);
    const tq_dump_meta *m = tq_dump_get_meta(d);
    rc = tq_schedule_check(s, path, m->n_layers, m->shape.n_kv_heads, f->name, f->min_bits, f->max_bits);
    tq_dump_close(d);
    if (rc < 0) die_lib(rc, NULL);
    if (!s->values && !ax->values)
        die_usage("schedule '%s' has no values bits; add --values none or --values METHOD:BITS", path);
    if (s->values && ax->values && strcmp(ax->values, "same"))
        die_usage("schedule '%s' sets values bits; drop --values", path);
    /* one bits value so the configuration axes validate; each slice takes its own bits from the schedule */
    snprintf(sbits, 16, "%d", tq_schedule_bits(s, 0, 0, TQ_TENSOR_KEYS));
    ax->bits = sbits;
    o->sched = s;
    return s;
}

/* "turbo-prod,bits=3,rot=dense" -> "turbo-prod,bits=schedule,rot=dense" */
static void mark_scheduled(char *desc, size_t n)
{
    char *b = strstr(desc, ",bits="), tail[192];
    if (!b) return;
    char *e = strchr(b + 1, ',');
    snprintf(tail, sizeof tail, "%s", e ? e : "");
    snprintf(b, n - (size_t)(b - desc), ",bits=schedule%s", tail);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tq sweep DUMP... [options]\n"
        "       tq sweep --synthetic DIST[,DIST...] [--layers L] [--heads H] [--q-heads HQ] [--tokens T] [--dim d]\n"
        "                [options]\n"
        "Quantize every (layer, kv head, tensor) slice under each configuration and report the metrics of\n"
        "README.md \"Metrics\": rows per slice, per layer (head = all) and per input (layer = all).\n"
        "configuration axes (cartesian product; configurations a method does not take are skipped with a note):\n"
        "  --methods LIST      %s (default turbo-mse,turbo-prod,polar,kivi)\n"
        "  --bits LIST         code bits, e.g. 1-4 or 2,3 (default 1-4; fp16/int8 have fixed widths)\n"
        "  --rotation LIST     dense,hadamard,none (default dense; rotation methods only)\n"
        "  --codebook LIST     beta,gaussian,empirical (default beta)\n"
        "  --center LIST       off,on: key-mean removal (default off)\n"
        "  --outliers LIST     outlier channel counts at +1 bit, e.g. 0,32 (default 0)\n"
        "  --values SPEC       same (values use the keys' configuration; default), none (keys only), METHOD:BITS\n"
        "selection and run:\n"
        "  --layers LIST       layers of the dumps, e.g. 0-3,7 (default all); with --synthetic: the layer count\n"
        "  --heads LIST        kv heads of the dumps (default all); with --synthetic: the kv head count\n"
        "  --tokens N          first N tokens only (synthetic: tokens, default 256)\n"
        "  --threads N         heads evaluated in parallel (default 1; results do not depend on it)\n"
        "  --seed S            quantizer seed and inner-product sample seed (default 0)\n"
        "  --no-attention      skip the attention metrics (the O(T^2) part)\n"
        "  --device cpu|cuda   encode and decode on the GPU (turbo-mse, turbo-prod b>=2, qjl; other configurations\n"
        "                      are skipped with a note); metrics stay on the CPU (default cpu; README \"CUDA\")\n"
        "  --schedule FILE     bits per layer / kv head from a schedule (tq mixed-schedule), one dump, one method\n"
        "  --format md|csv|json, -o FILE   (default Markdown on stdout; -o FILE.csv/.json picks the format)\n",
        method_names());
}

int cmd_sweep(int argc, char **argv)
{
    sw_opts o;
    memset(&o, 0, sizeof o);
    sw_axes ax = {0};
    tq_synth_params_default(&o.sp);
    o.threads = 1;
    o.attention = 1;
    o.per_head_rows = 1;
    const char *fmt = NULL, *outp = NULL, *synth = NULL, *qheads = NULL, *dim = NULL;
    const char *layers = NULL, *heads = NULL, *sched_path = NULL, *device = NULL;
    char **dumps = calloc((size_t)argc, sizeof *dumps);
    int nd = 0;
    if (!dumps) die("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage(stdout);
            free(dumps);
            return 0;
        }
        if (a[0] != '-' || !strcmp(a, "-")) {
            dumps[nd++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--no-attention")) {
            o.attention = 0;
            continue;
        }
        const char *const valued[] = {"--methods", "--bits", "--rotation", "--codebook", "--center", "--outliers",
                                      "--values", "--layers", "--heads", "--tokens", "--threads", "--seed",
                                      "--schedule", "--format", "-o", "--synthetic", "--q-heads", "--dim",
                                      "--device"};
        const char *v = option_value("sweep", valued, sizeof valued / sizeof *valued, argc, argv, &i);
        if (!strcmp(a, "--methods")) ax.methods = v;
        else if (!strcmp(a, "--bits")) ax.bits = v;
        else if (!strcmp(a, "--rotation")) ax.rotation = v;
        else if (!strcmp(a, "--codebook")) ax.codebook = v;
        else if (!strcmp(a, "--center")) ax.center = v;
        else if (!strcmp(a, "--outliers")) ax.outliers = v;
        else if (!strcmp(a, "--values")) ax.values = v;
        else if (!strcmp(a, "--layers")) layers = v;
        else if (!strcmp(a, "--heads")) heads = v;
        else if (!strcmp(a, "--tokens")) o.tokens = (int)parse_long(a, v, 1, 1L << 30);
        else if (!strcmp(a, "--threads")) o.threads = (int)parse_long(a, v, 1, 1024);
        else if (!strcmp(a, "--seed")) o.seed = parse_u64(a, v);
        else if (!strcmp(a, "--schedule")) sched_path = v;
        else if (!strcmp(a, "--format")) fmt = v;
        else if (!strcmp(a, "-o")) outp = v;
        else if (!strcmp(a, "--synthetic")) synth = v;
        else if (!strcmp(a, "--q-heads")) qheads = v;
        else if (!strcmp(a, "--dim")) dim = v;
        else if (!strcmp(a, "--device")) device = v;
    }
    if (!nd && !synth) die_usage("no input: give dump files or --synthetic DIST (see 'tq sweep --help')");
    if (nd && synth) die_usage("give dump files or --synthetic, not both (--layers/--heads mean different things)");
    if (!synth && (qheads || dim)) die_usage("options '--q-heads' and '--dim' go with --synthetic");
    if (outp) {
        check_output(outp, (const char *const *)dumps, nd);
        check_output(outp, &sched_path, 1);
    }
    int fmtv = sw_format_pick(fmt, outp);
    if (device) o.device = sw_device_parse("sweep", device);
    if (synth) {
        char d[16][32];
        int n = split_list("--synthetic", synth, d, 16);
        o.sp.seed = 0;
        if (layers) o.sp.n_layers = (int)parse_long("--layers", layers, 1, TQ_SYNTH_MAX_LAYERS);
        if (heads) o.sp.n_kv_heads = (int)parse_long("--heads", heads, 1, 4096);
        o.sp.n_q_heads = qheads ? (int)parse_long("--q-heads", qheads, 1, 65536) : o.sp.n_kv_heads;
        if (dim) o.sp.head_dim = (int)parse_long("--dim", dim, 1, 65536);
        if (o.tokens) o.sp.n_tokens = o.tokens;
        o.sp.seed = o.seed;
        o.inputs = calloc((size_t)n, sizeof *o.inputs);
        o.input_synth = calloc((size_t)n, sizeof *o.input_synth);
        if (!o.inputs || !o.input_synth) die("out of memory");
        for (int i = 0; i < n; i++) {
            int dist = tq_synth_dist_parse(d[i]);
            if (dist < 0) die_usage("option '--synthetic': unknown distribution '%s' (gaussian, structured, outlier, "
                                    "heavy, rope)", d[i]);
            o.input_synth[i] = dist;
            o.inputs[i] = malloc(48);
            if (!o.inputs[i]) die("out of memory");
            snprintf(o.inputs[i], 48, "synthetic:%.31s", d[i]);
        }
        o.n_inputs = n;
        o.sp.dist = o.input_synth[0];
        if (tq_synth_check(&o.sp) < 0) die_usage("%s", tq_error_msg());
    } else {
        o.inputs = calloc((size_t)nd, sizeof *o.inputs);
        o.input_synth = calloc((size_t)nd, sizeof *o.input_synth);
        if (!o.inputs || !o.input_synth) die("out of memory");
        for (int i = 0; i < nd; i++) {
            o.inputs[i] = strdup(dumps[i]);
            o.input_synth[i] = -1;
        }
        o.n_inputs = nd;
        o.layers_sel = layers;
        o.heads_sel = heads;
    }
    free(dumps);
    tq_schedule *sched = NULL;
    char sbits[16];
    if (sched_path) sched = sweep_schedule(sched_path, &o, &ax, sbits);
    sw_build_configs(&o, &ax, sw_first_dim(&o));
    for (int i = 0; sched && i < o.n_cfg; i++) { /* the bits column comes from the schedule, slice by slice */
        mark_scheduled(o.cfg[i].kdesc, sizeof o.cfg[i].kdesc);
        if (sched->values) mark_scheduled(o.cfg[i].vdesc, sizeof o.cfg[i].vdesc);
    }
    sw_rows rows = {0};
    sw_run(&o, &rows);
    sw_write_path(outp, fmtv, &o, &rows);
    sw_rows_free(&rows);
    sw_opts_free(&o);
    tq_schedule_free(sched);
    return 0;
}
