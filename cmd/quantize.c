/* quantize.c: `tq quantize` and `tq dequantize` — a dump to a tq-codes file (one layer in memory at a time) and a
 * codes file back to a dump, decoded from the file alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "codes.h"
#include "commands.h"
#include "device.h"
#include "dump.h"
#include "evalcli.h"
#include "options.h"
#include "quant.h"
#include "schedule.h"
#include "vocab.h"

static const tq_format *method_or_die(const char *opt, const char *name)
{
    const tq_format *f = tq_format_by_name(name);
    if (!f) die_usage("quantize: unknown method '%s' for %s (fp16, int8, kivi, turbo-mse, turbo-prod, qjl, polar)",
                      name, opt);
    return f;
}

static int bits_or_die(const tq_format *f, const char *opt, const char *s)
{
    char *end;
    long b = strtol(s, &end, 10);
    if (!*s || *end) die_usage("quantize: option '%s' needs an integer number of bits, got '%s'", opt, s);
    if (b < f->min_bits || b > f->max_bits)
        die_usage("quantize: %s %ld is out of range for %s (%d..%d)", opt, b, f->name, f->min_bits, f->max_bits);
    return (int)b;
}

/* Same file? Equal strings, or the same inode when the output already exists. */
static int same_file(const char *a, const char *b)
{
    if (!strcmp(a, b)) return 1;
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The parameters of one slice: the tensor's settings, with the schedule's bits when it has them for this tensor
 * (values only when they use the keys' method). Polar takes scheduled bits through its level mapping unless
 * --polar-bits fixed the levels. */
static tq_qparams slice_params(const tq_qparams *base, const tq_format *f, const tq_format *fk,
                               const tq_schedule *sched, int layer, int head, int tensor, int polar_explicit)
{
    tq_qparams p = *base;
    int sb = sched ? tq_schedule_bits(sched, layer, head, tensor) : -1;
    if (sb > 0 && (tensor == TQ_TENSOR_KEYS || f == fk)) {
        p.bits = sb;
        if (f->method == TQ_M_POLAR && !polar_explicit) {
            tq_qparams d;
            tq_qparams_default(&d, TQ_M_POLAR, sb);
            p.polar_levels = d.polar_levels;
            memcpy(p.polar_bits, d.polar_bits, sizeof p.polar_bits);
        }
    }
    return p;
}

typedef struct {
    tq_codes_writer *w;
    tq_dump_writer *r;
    tq_dump *d;
    tq_schedule *sched;
} q_state;

static void q_cleanup(q_state *s)
{
    tq_codes_abort(s->w);
    tq_dump_abort(s->r);
    tq_dump_close(s->d);
    tq_schedule_free(s->sched);
    memset(s, 0, sizeof *s);
}

/* Die with the library's message after removing any temporary output. */
static void q_die(q_state *s, int rc, const char *what)
{
    q_cleanup(s);
    die_lib(rc, what);
}

typedef struct {
    const char *in, *out, *values_opt, *sched_path, *layers_opt, *recon, *method, *bits_s, *rot, *cb, *norms, *polar;
    const char *device_s;
    long outliers, group, qjl_m, residual; /* -1: not given */
    int center, keys_only, have_seed, device, force;
    uint64_t seed;
} q_args;

static void q_parse(q_args *a, int argc, char **argv)
{
    a->outliers = a->group = a->qjl_m = a->residual = -1;
    const tq_option opts[] = {
        OPT_STR_("--method", &a->method, "M", NULL, "fp16 | int8 | kivi | turbo-mse | turbo-prod | qjl | polar"),
        OPT_STR_("--bits", &a->bits_s, "B", NULL, "code bits per coordinate (method's range; fp16 and int8 default "
                 "to 16 and 8;\nturbo-prod: B-1 MSE bits + 1 QJL bit; polar: level bits B+1,B-1,B-1,B-1)"),
        OPT_STR_("--rotation", &a->rot, "R", NULL, "dense (default) | hadamard (power-of-two dims) | none   [turbo, "
                 "qjl, polar]"),
        OPT_STR_("--codebook", &a->cb, "C", NULL, "beta (default) | gaussian | empirical (fitted on the rotated unit "
                 "vectors of\nthe same slice; the fit is stored with the codes)   [turbo-mse, turbo-prod]"),
        OPT_LONG_("--outliers", &a->outliers, "N", NULL, 0, 1 << 16, "N highest-RMS channels at B+1 bits   [turbo]"),
        OPT_FLAG_("--center", &a->center, "subtract the slice's per-channel mean (stored)   [turbo]"),
        OPT_STR_("--norms", &a->norms, "fp16|fp32", NULL, "norms, scales and radii stored as fp16 (default) or fp32"),
        OPT_LONG_("--group", &a->group, "G", NULL, 1, 1 << 20, "kivi group size (default 32): keys per channel along "
                  "G tokens,\nvalues per token along G channels"),
        OPT_LONG_("--residual", &a->residual, "R", NULL, 0, 1L << 30, "kivi: keep the last R tokens of each slice in "
                  "fp16 (KIVI's recent\nwindow; default 0: every token quantized, the tensor-level comparison)"),
        OPT_LONG_("--qjl-m", &a->qjl_m, "M", NULL, 1, 1 << 16, "qjl projections (default d)"),
        OPT_STR_("--polar-bits", &a->polar, "LIST", NULL, "polar bits per level, level 1 first (default 4,2,2,2: "
                 "3.875 bits)"),
        {.kind = OPT_U64, .name = "--seed", .value = &a->seed, .arg = "S", .seen = &a->have_seed,
         .help = "seed of rotations and projections (default 0)"},
        OPT_STR_("--device", &a->device_s, "cpu|cuda", NULL, "encode turbo-mse / turbo-prod / qjl on the GPU (same "
                 "bytes as the CPU\non the Hadamard path; README \"CUDA\"); default cpu"),
        OPT_STR_("--values", &a->values_opt, "M:B", NULL, "values with another method and bits (default: as the keys)"),
        OPT_FLAG_("--keys-only", &a->keys_only, "leave the values out"),
        OPT_FLAG_("--force", &a->force, "use a schedule made for another model (name or shape differs)"),
        OPT_STR_("--schedule", &a->sched_path, "FILE", NULL, "per-layer / per-head bits from a schedule (README "
                 "\"Schedules\")"),
        OPT_STR_("--layers", &a->layers_opt, "LIST", NULL, "only these layers, e.g. 0,3-5 (dequantize renumbers them "
                 "from 0)"),
        OPT_STR_("--emit-recon", &a->recon, "FILE", NULL, "also write the in-memory reconstruction as a dump (for "
                 "checking\ndequantize)"),
        {.kind = OPT_STRING, .name = "-o", .alias = "--output", .value = &a->out, .arg = "FILE",
         .help = "the codes file to write (temporary name, renamed when complete)"},
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "quantize", "quantize DUMP.h5 --method M [--bits B] [options] -o CODES.h5",
        "\nQuantize the keys (and values) of a tq-kv dump, slice by slice (layer x kv head), into a tq-codes file\n"
        "(datasets/FORMAT.md) whose payload is the real packed size. Prints one summary line.\n",
        opts, "\nusage: tq dequantize CODES.h5 -o RECON.h5   (see 'tq dequantize --help')"};
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) die("out of memory");
    int np = opt_parse(&spec, argc, argv, pos);
    if (np > 1) die_usage("quantize: unexpected argument '%s' (one input dump; the output goes after -o)", pos[1]);
    a->in = np ? pos[0] : NULL;
    free(pos);
}

static void q_check(q_args *a)
{
    if (!a->in) die_usage("quantize: no input dump (usage: tq quantize DUMP.h5 --method M --bits B -o CODES.h5)");
    if (!a->out) die_usage("quantize: no output file; add -o CODES.h5");
    a->device = cli_device("quantize", a->device_s);
    if (!a->method)
        die_usage("quantize: no method; add --method (fp16, int8, kivi, turbo-mse, turbo-prod, qjl, polar)");
    if (same_file(a->in, a->out)) die_usage("quantize: output '%s' is the input; choose another -o", a->out);
    if (a->recon && (same_file(a->recon, a->in) || same_file(a->recon, a->out)))
        die_usage("quantize: --emit-recon '%s' is the input or the output; choose another name", a->recon);
    if (a->values_opt && a->keys_only) die_usage("quantize: --values and --keys-only contradict each other; drop one");
    check_output(a->out, (const char *const[]){a->in, a->sched_path}, 2);
    if (a->recon) check_output(a->recon, (const char *const[]){a->in, a->sched_path}, 2);
}

/* --polar-bits "4,2,2,2": bits per level, level 1 first */
static void q_polar_bits(const char *polar, tq_qparams *pk)
{
    int n = 0;
    char **lv = parse_names("--polar-bits", polar, &n);
    if (n > TQ_POLAR_MAX_LEVELS) die_usage("quantize: --polar-bits has more than %d levels", TQ_POLAR_MAX_LEVELS);
    pk->polar_levels = n;
    for (int l = 0; l < n; l++) pk->polar_bits[l] = (int)parse_long("--polar-bits", lv[l], 1, 8);
    free(lv);
}

/* the keys' parameters from the options */
static tq_qparams q_keys(const q_args *a, const tq_format *fk)
{
    const char *rot = a->rot, *cb = a->cb, *norms = a->norms;
    long outliers = a->outliers;
    int center = a->center;
    int bits;
    if (a->bits_s) bits = bits_or_die(fk, "--bits", a->bits_s);
    else if (fk->min_bits == fk->max_bits) bits = fk->min_bits;
    else if (fk->method == TQ_M_POLAR) bits = 3;
    else if (a->sched_path) bits = fk->min_bits; /* replaced per slice by the schedule */
    else die_usage("quantize: %s needs --bits (%d..%d)", fk->name, fk->min_bits, fk->max_bits);
    tq_qparams pk;
    tq_qparams_default(&pk, fk->method, bits);
    int is_turbo = fk->method == TQ_M_TURBO_MSE || fk->method == TQ_M_TURBO_PROD || fk->method == TQ_M_QJL;
    if (rot) {
        if (!fk->uses_rotation) die_usage("quantize: --rotation applies to turbo-mse, turbo-prod, qjl and polar, not %s", fk->name);
        if ((pk.rotation = tq_rotation_parse(rot)) < 0)
            die_usage("quantize: unknown rotation '%s' (%s)", rot, tq_vocab_list(TQ_VOCAB_ROTATION, ", "));
    }
    if (cb) {
        if (fk->method != TQ_M_TURBO_MSE && fk->method != TQ_M_TURBO_PROD)
            die_usage("quantize: --codebook applies to turbo-mse and turbo-prod, not %s", fk->name);
        if ((pk.codebook = tq_codebook_parse(cb)) < 0)
            die_usage("quantize: unknown codebook '%s' (%s)", cb, tq_vocab_list(TQ_VOCAB_CODEBOOK, ", "));
    }
    if ((outliers >= 0 || center) && !is_turbo)
        die_usage("quantize: --outliers and --center apply to turbo-mse, turbo-prod and qjl, not %s", fk->name);
    if (outliers >= 0) pk.outliers = (int)outliers;
    pk.center = center;
    if (norms) {
        if (!strcmp(norms, "fp32")) pk.norm_fp32 = 1;
        else if (strcmp(norms, "fp16")) die_usage("quantize: --norms is '%s', expected fp16 or fp32", norms);
    }
    if (a->group >= 0) {
        if (fk->method != TQ_M_KIVI) die_usage("quantize: --a->group applies to kivi, not %s", fk->name);
        pk.group = (int)a->group;
    }
    if (a->residual >= 0) {
        if (fk->method != TQ_M_KIVI) die_usage("quantize: --a->residual applies to kivi, not %s", fk->name);
        pk.residual = (int)a->residual;
    }
    if (a->qjl_m >= 0) {
        if (fk->method != TQ_M_QJL) die_usage("quantize: --qjl-m applies to qjl, not %s", fk->name);
        pk.qjl_m = (int)a->qjl_m;
    }
    if (a->polar) {
        if (fk->method != TQ_M_POLAR) die_usage("quantize: --polar-bits applies to polar, not %s", fk->name);
        q_polar_bits(a->polar, &pk);
    }
    pk.seed = a->have_seed ? a->seed : 0;
    return pk;
}

/* the values' parameters: the keys', or --values METHOD:BITS with the shared settings carried over */
static tq_qparams q_values(const q_args *a, const tq_format *fk, const tq_qparams *pkp)
{
    tq_qparams pk = *pkp;
    tq_qparams pv = pk;
    if (a->values_opt) {
        char buf[64];
        const char *colon = strchr(a->values_opt, ':');
        if (!colon || strlen(a->values_opt) >= sizeof buf)
            die_usage("quantize: --values wants METHOD:BITS (e.g. kivi:4), got '%s'", a->values_opt);
        memcpy(buf, a->values_opt, (size_t)(colon - a->values_opt));
        buf[colon - a->values_opt] = 0;
        const tq_format *fv = method_or_die("--values", buf);
        int vb = bits_or_die(fv, "--values bits", colon + 1);
        tq_qparams_default(&pv, fv->method, vb);
        /* Settings shared by both tensors carry over where the values' method takes them. */
        if (fv->uses_rotation && pk.method != TQ_M_KIVI && fk->uses_rotation) pv.rotation = pk.rotation;
        if ((fv->method == TQ_M_TURBO_MSE || fv->method == TQ_M_TURBO_PROD) && fk->uses_rotation) pv.codebook = pk.codebook;
        if (fv->method == TQ_M_KIVI && a->group >= 0) pv.group = (int)a->group;
        if (fv->method == TQ_M_KIVI && a->residual >= 0) pv.residual = (int)a->residual;
        pv.norm_fp32 = pk.norm_fp32;
        pv.seed = pk.seed;
    }

    return pv;
}

/* input, schedule and layer selection, every slice's parameters checked before any output */
static int *q_open(const q_args *a, q_state *stp, const tq_format *fk, const tq_qparams *pkp, const tq_qparams *pvp,
                   int *has_values_out, int *nsel_out)
{
    q_state st = *stp;
    const tq_qparams pk = *pkp, pv = *pvp;
    int rc = tq_dump_open(&st.d, a->in);
    if (rc) q_die(&st, rc, NULL);
    const tq_dump_meta *dm = tq_dump_get_meta(st.d);
    const tq_layer_shape *s0 = tq_dump_layer_shape(st.d, 0);
    int has_values = !a->keys_only && s0->has_values;
    if (a->values_opt && !s0->has_values) {
        q_cleanup(&st);
        die_usage("quantize: --values given but '%s' has no values; drop it", a->in);
    }
    const tq_format *fv = tq_format_of(pv.method);
    if (a->sched_path) {
        if ((rc = tq_schedule_load(&st.sched, a->sched_path))) q_die(&st, rc, NULL); /* unreadable or malformed: 1 */
        if (!a->force && (rc = tq_schedule_check_model(st.sched, a->sched_path, dm->model, dm->n_layers,
                                                       s0->n_kv_heads, s0->head_dim)))
            q_die(&st, rc, NULL);
        if ((rc = tq_schedule_check(st.sched, a->sched_path, dm->n_layers, s0->n_kv_heads, fk->name, fk->min_bits,
                                    fk->max_bits)))
            q_die(&st, rc, NULL);
        for (int l = 0; l < dm->n_layers && !rc; l++)
            rc = tq_schedule_check_heads(st.sched, a->sched_path, l, tq_dump_layer_shape(st.d, l)->n_kv_heads);
        if (rc) q_die(&st, rc, NULL);
        if (!st.sched->values && has_values && !a->values_opt && !a->bits_s && fk->min_bits != fk->max_bits &&
            fk->method != TQ_M_POLAR) {
            /* no bits for the values anywhere: they silently took the keys' lowest bits (the summary said bits=1) */
            q_cleanup(&st);
            die_usage("quantize: schedule '%s' has no values bits; add --values METHOD:BITS, --bits B or --keys-only",
                      a->sched_path);
        }
        if (st.sched->values && has_values && fv != fk) {
            q_cleanup(&st);
            die_usage("quantize: schedule '%s' sets values bits, but --values asks for another method", a->sched_path);
        }
    }
    int *sel = calloc((size_t)dm->n_layers, sizeof(int)), nsel = 0;
    if (!sel) die("out of memory");
    if (a->layers_opt) {
        int *ls, nl = parse_list("--layers", a->layers_opt, 0, dm->n_layers - 1, NULL, &ls);
        for (int i = 0; i < nl; i++) sel[ls[i]] = 1;
        free(ls);
    } else
        for (int l = 0; l < dm->n_layers; l++) sel[l] = 1;
    for (int l = 0; l < dm->n_layers; l++) nsel += sel[l];
    if (!nsel) {
        q_cleanup(&st);
        die_usage("quantize: --layers selects no layer");
    }
    /* Every parameter set that will be used must suit every selected layer's head dim: fail before any output. */
    for (int l = 0; l < dm->n_layers; l++) {
        if (!sel[l]) continue;
        const tq_layer_shape *sh = tq_dump_layer_shape(st.d, l);
        for (int h = 0; h < (st.sched && st.sched->n_heads ? sh->n_kv_heads : 1); h++)
            for (int t = 0; t < 1 + has_values; t++) {
                const tq_format *f = t ? fv : fk;
                tq_qparams p = slice_params(t ? &pv : &pk, f, fk, st.sched, l, h, t, a->polar != NULL);
                if ((rc = f->check(&p, sh->head_dim))) {
                    char what[96];
                    snprintf(what, sizeof what, "%s of layer %d (head dim %d)", t ? "values" : "keys", l, sh->head_dim);
                    q_die(&st, rc, what);
                }
            }
    }

    *stp = st;
    *has_values_out = has_values;
    *nsel_out = nsel;
    return sel;
}

typedef struct {
    const q_args *a;
    q_state st;
    const tq_format *fk, *fv;
    tq_qparams pk, pv;
    int has_values, nsel, *sel;
    double code_bits, elems, payload;
} q_run;

/* the codes file (and the --emit-recon dump) under temporary names */
static void q_create(q_run *q)
{
    const tq_dump_meta *dm = tq_dump_get_meta(q->st.d);
    const tq_layer_shape *s0 = tq_dump_layer_shape(q->st.d, 0);
    tq_codes_meta cm;
    memset(&cm, 0, sizeof cm);
    snprintf(cm.source, sizeof cm.source, "%s", q->a->in);
    snprintf(cm.model, sizeof cm.model, "%s", dm->model);
    snprintf(cm.rope, sizeof cm.rope, "%s", dm->rope);
    cm.src_layers = dm->n_layers;
    cm.n_layers = q->nsel;
    cm.dtype = s0->dtype == TQ_DTYPE_F16 ? TQ_DTYPE_F16 : TQ_DTYPE_F32;
    cm.has_values = q->has_values;
    cm.keys = q->pk;
    cm.values = q->pv;
    cm.schedule = q->st.sched ? q->st.sched->text : NULL;
    int rc;
    if ((rc = tq_codes_create(&q->st.w, q->a->out, &cm))) q_die(&q->st, rc, NULL);
    int *stored = malloc(sizeof *stored * (size_t)q->nsel), k = 0; /* the dump's provenance goes with the codes */
    if (!stored) q_die(&q->st, tq_error_set(TQ_ERR_NOMEM, "out of memory"), NULL);
    for (int l = 0; l < dm->n_layers; l++)
        if (q->sel[l]) stored[k++] = l;
    rc = tq_codes_keep_provenance(q->st.w, q->st.d, stored, k);
    free(stored);
    if (rc) q_die(&q->st, rc, NULL);
    if (q->a->recon) {
        tq_dump_meta rm = *dm;
        rm.n_layers = q->nsel;
        snprintf(rm.source, sizeof rm.source, "reconstruction of '%s' (%s)", q->a->in, q->a->method);
        if ((rc = tq_dump_create(&q->st.r, q->a->recon, &rm, cm.dtype))) q_die(&q->st, rc, NULL);
    }
}

/* source layer l -> output layer li: every slice quantized on the device, written, optionally reconstructed */
static void q_layer(q_run *q, int l, int li)
{
    int rc = 0;
        tq_layer lay;
        if ((rc = tq_dump_read_layer(q->st.d, l, 0, 0, &lay))) q_die(&q->st, rc, NULL);
        const tq_layer_shape *sh = &lay.s;
        const int H = sh->n_kv_heads, T = sh->n_tokens, D = sh->head_dim;
        tq_codes_layer cl = {.src_layer = l, .s = *sh};
        cl.s.has_values = q->has_values;
        cl.keys = calloc((size_t)H, sizeof(tq_codes));
        cl.values = q->has_values ? calloc((size_t)H, sizeof(tq_codes)) : NULL;
        cl.queries = lay.queries;
        float *xr = q->a->recon ? malloc(sizeof(float) * (size_t)H * T * D * (1 + q->has_values)) : NULL;
        if (!cl.keys || (q->has_values && !cl.values) || (q->a->recon && !xr)) die("out of memory");
        for (int t = 0; t < 1 + q->has_values && !rc; t++)
            for (int h = 0; h < H && !rc; h++) {
                const tq_format *f = t ? q->fv : q->fk;
                tq_qparams p = slice_params(t ? &q->pv : &q->pk, f, q->fk, q->st.sched, l, h, t, q->a->polar != NULL);
                const float *x = (t ? lay.values : lay.keys) + (size_t)h * T * D;
                tq_codes *c = t ? &cl.values[h] : &cl.keys[h];
                rc = tq_device_quantize((tq_device)q->a->device, &p, (tq_slice_id){l, h, t}, x, T, D, c);
                if (!rc && xr) rc = tq_dequantize(c, xr + ((size_t)t * H + h) * T * D);
                if (!rc) {
                    q->code_bits += f->bits_code(&p, D) * (double)T * D;
                    q->elems += (double)T * D;
                    q->payload += (double)tq_codes_payload_bytes(c);
                }
            }
        if (!rc) rc = tq_codes_write_layer(q->st.w, &cl);
        if (!rc && q->a->recon) {
            tq_attn_spec spec; /* the reconstruction keeps the source layer's attention (dump format 2) */
            rc = tq_dump_layer_attn(q->st.d, l, &spec);
            if (!rc) rc = tq_dump_set_layer_attn(q->st.r, li, &spec);
        }
        if (!rc && q->a->recon) {
            tq_layer rl = lay;
            rl.s.has_values = q->has_values;
            rl.keys = xr;
            rl.values = q->has_values ? xr + (size_t)H * T * D : NULL;
            rc = tq_dump_write_layer(q->st.r, li, &rl);
        }
        for (int h = 0; h < H; h++) {
            tq_codes_free(&cl.keys[h]);
            if (cl.values) tq_codes_free(&cl.values[h]);
        }
        free(cl.keys);
        free(cl.values);
        free(xr);
        tq_layer_free(&lay);
        if (rc) {
            char what[64];
            snprintf(what, sizeof what, "quantize: layer %d", l);
            q_die(&q->st, rc, what);
        }
}

int cmd_quantize(int argc, char **argv)
{
    q_args a = {0};
    q_parse(&a, argc, argv);
    q_check(&a);
    q_run q = {.a = &a};
    q.fk = method_or_die("--method", a.method);
    q.pk = q_keys(&a, q.fk);
    q.pv = q_values(&a, q.fk, &q.pk);
    q.fv = tq_format_of(q.pv.method);
    q.sel = q_open(&a, &q.st, q.fk, &q.pk, &q.pv, &q.has_values, &q.nsel);
    q_create(&q);
    tq_progress prog;
    progress_start(&prog, "quantize", q.nsel);
    for (int l = 0, li = 0, n = tq_dump_get_meta(q.st.d)->n_layers; l < n; l++) {
        if (!q.sel[l]) continue;
        q_layer(&q, l, li++);
        progress_step(&prog, 1);
    }
    progress_end(&prog);
    int rc = tq_codes_commit(q.st.w);
    q.st.w = NULL;
    if (rc) q_die(&q.st, rc, NULL);
    if (a.recon) {
        rc = tq_dump_commit(q.st.r);
        q.st.r = NULL;
        if (rc) q_die(&q.st, rc, NULL);
    }
    q_cleanup(&q.st);
    free(q.sel);
    char desc[160];
    tq_qparams_describe(&q.pk, desc, sizeof desc);
    printf("%s: %s%s%s, %d layer%s, bits_code %.4f, bits_total %.4f, payload %.0f bytes, %.2fx smaller than fp16\n",
           a.out, desc, q.has_values ? (a.values_opt ? " (values other)" : " (keys+values)") : " (keys only)",
           a.sched_path ? " scheduled" : "", q.nsel, q.nsel > 1 ? "s" : "", q.code_bits / q.elems,
           8.0 * q.payload / q.elems, q.payload, 2.0 * q.elems / q.payload);
    return 0;
}

int cmd_dequantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    const tq_option opts[] = {
        {.kind = OPT_STRING, .name = "-o", .alias = "--output", .value = &out, .arg = "FILE",
         .help = "the dump to write (temporary name, renamed when complete)"},
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "dequantize", "dequantize CODES.h5 -o RECON.h5",
        "\nRebuild a tq-kv dump from a tq-codes file alone: keys and values decoded, queries copied, in the\n"
        "source's dtype. Layers stored from a --layers subset are numbered from 0 in the output.\n",
        opts, NULL};
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) die("out of memory");
    int np = opt_parse(&spec, argc, argv, pos);
    if (np > 1) die_usage("dequantize: unexpected argument '%s' (one codes file; the output goes after -o)", pos[1]);
    in = np ? pos[0] : NULL;
    free(pos);
    if (!in) die_usage("dequantize: no input (usage: tq dequantize CODES.h5 -o RECON.h5)");
    if (!out) die_usage("dequantize: no output file; add -o RECON.h5");
    if (same_file(in, out)) die_usage("dequantize: output '%s' is the input; choose another -o", out);
    check_output(out, &in, 1);
    tq_codes_file *cf = NULL;
    int rc = tq_codes_open(&cf, in);
    if (rc) die_lib(rc, NULL);
    const tq_codes_meta *m = tq_codes_get_meta(cf);
    tq_dump_meta dm;
    memset(&dm, 0, sizeof dm);
    snprintf(dm.model, sizeof dm.model, "%s", m->model);
    snprintf(dm.rope, sizeof dm.rope, "%s", m->rope);
    snprintf(dm.source, sizeof dm.source, "dequantized from '%.200s' (codes of '%.200s')", in, m->source);
    dm.n_layers = m->n_layers;
    tq_dump_writer *w = NULL;
    if ((rc = tq_dump_create(&w, out, &dm, m->dtype))) {
        tq_codes_close(cf);
        die_lib(rc, NULL);
    }
    for (int i = 0; i < m->n_layers && !rc; i++) {
        tq_codes_layer cl;
        if ((rc = tq_codes_read_layer(cf, i, &cl))) break;
        const tq_layer_shape *sh = &cl.s;
        size_t slice = (size_t)sh->n_tokens * sh->head_dim;
        tq_layer l = {.s = *sh, .queries = cl.queries};
        l.keys = malloc(sizeof(float) * slice * sh->n_kv_heads);
        l.values = m->has_values ? malloc(sizeof(float) * slice * sh->n_kv_heads) : NULL;
        if (!l.keys || (m->has_values && !l.values)) die("out of memory");
        for (int h = 0; h < sh->n_kv_heads && !rc; h++) {
            rc = tq_dequantize(&cl.keys[h], l.keys + h * slice);
            if (!rc && m->has_values) rc = tq_dequantize(&cl.values[h], l.values + h * slice);
        }
        if (rc) tq_error_prefix(rc, "cannot decode '%s' layer %d: ", in, cl.src_layer);
        else rc = tq_dump_write_layer(w, i, &l);
        free(l.keys);
        free(l.values);
        tq_codes_layer_free(&cl);
    }
    if (!rc) rc = tq_codes_restore_provenance(cf, w); /* token_ids, model_layers, rope_theta, ... as the dump had */
    tq_codes_close(cf);
    if (rc) {
        tq_dump_abort(w);
        die_lib(rc, NULL);
    }
    if ((rc = tq_dump_commit(w))) die_lib(rc, NULL);
    return 0;
}
