/* quantize.c: `tq quantize` and `tq dequantize` — a dump to a tq-codes file (one layer in memory at a time) and a
 * codes file back to a dump, decoded from the file alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "codes.h"
#include "commands.h"
#include "cuda/tq_cuda.h"
#include "dump.h"
#include "quant.h"
#include "schedule.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tq quantize DUMP.h5 --method M [--bits B] [options] -o CODES.h5\n"
            "\n"
            "Quantize the keys (and values) of a tq-kv dump, slice by slice (layer x kv head), into a tq-codes file\n"
            "(datasets/FORMAT.md) whose payload is the real packed size. Prints one summary line.\n"
            "\n"
            "  --method M           fp16 | int8 | kivi | turbo-mse | turbo-prod | qjl | polar\n"
            "  --bits B             code bits per coordinate (method's range; fp16 and int8 default to 16 and 8;\n"
            "                       turbo-prod: B-1 MSE bits + 1 QJL bit; polar: level bits B+1,B-1,B-1,B-1)\n"
            "  --rotation R         dense (default) | hadamard (power-of-two dims) | none   [turbo, qjl, polar]\n"
            "  --codebook C         beta (default) | gaussian | empirical (fitted on the rotated unit vectors of the\n"
            "                       same slice; the fit is stored with the codes)           [turbo-mse, turbo-prod]\n"
            "  --outliers N         N highest-RMS channels at B+1 bits                       [turbo]\n"
            "  --center             subtract the slice's per-channel mean (stored)          [turbo]\n"
            "  --norms fp16|fp32    norms, scales and radii stored as fp16 (default) or fp32\n"
            "  --group G            kivi group size (default 32): keys per channel along G tokens, values per\n"
            "                       token along G channels\n"
            "  --residual R         kivi: keep the last R tokens of each slice in fp16 (KIVI's recent window;\n"
            "                       default 0: every token quantized, the tensor-level comparison)\n"
            "  --qjl-m M            qjl projections (default d)\n"
            "  --polar-bits LIST    polar bits per level, level 1 first (default 4,2,2,2: 3.875 bits)\n"
            "  --seed S             seed of rotations and projections (default 0)\n"
            "  --device cpu|cuda    encode turbo-mse / turbo-prod / qjl on the GPU (same bytes as the CPU on the\n"
            "                       Hadamard path; README \"CUDA\"); default cpu\n"
            "  --values M:B         values with another method and bits (default: as the keys)\n"
            "  --keys-only          leave the values out\n"
            "  --schedule FILE      per-layer / per-head bits from a schedule (README \"Schedules\")\n"
            "  --layers LIST        only these layers, e.g. 0,3-5 (dequantize renumbers them from 0)\n"
            "  --emit-recon FILE    also write the in-memory reconstruction as a dump (for checking dequantize)\n"
            "  -o, --output FILE    the codes file to write (temporary name, renamed when complete)\n"
            "\n"
            "usage: tq dequantize CODES.h5 -o RECON.h5   (see 'tq dequantize --help')\n");
}

static void usage_deq(FILE *f)
{
    fprintf(f,
            "usage: tq dequantize CODES.h5 -o RECON.h5\n"
            "\n"
            "Rebuild a tq-kv dump from a tq-codes file alone: keys and values decoded, queries copied, in the\n"
            "source's dtype. Layers stored from a --layers subset are numbered from 0 in the output.\n"
            "\n"
            "  -o, --output FILE    the dump to write (temporary name, renamed when complete)\n");
}

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

int cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *values_opt = NULL, *sched_path = NULL, *layers_opt = NULL, *recon = NULL;
    const char *method = NULL, *bits_s = NULL, *rot = NULL, *cb = NULL, *norms = NULL, *polar = NULL;
    long outliers = -1, group = -1, qjl_m = -1, residual = -1;
    int center = 0, keys_only = 0, have_seed = 0, device_cuda = 0;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--center")) { center = 1; continue; }
        if (!strcmp(a, "--keys-only")) { keys_only = 1; continue; }
        if (a[0] != '-' || !a[1]) {
            if (in) die_usage("quantize: unexpected argument '%s' (one input dump; the output goes after -o)", a);
            in = a;
            continue;
        }
        static const char *const with_value[] = {"--method", "--bits", "--rotation", "--codebook", "--outliers",
                                                 "--norms", "--group", "--residual", "--qjl-m", "--polar-bits", "--seed", "--values",
                                                 "--schedule", "--layers", "--emit-recon", "-o", "--output", "--device"};
        const char *v = option_value("quantize", with_value, sizeof with_value / sizeof *with_value, argc, argv, &i);
        if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--bits")) bits_s = v;
        else if (!strcmp(a, "--rotation")) rot = v;
        else if (!strcmp(a, "--codebook")) cb = v;
        else if (!strcmp(a, "--outliers")) outliers = parse_long(a, v, 0, 1 << 16);
        else if (!strcmp(a, "--norms")) norms = v;
        else if (!strcmp(a, "--group")) group = parse_long(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--residual")) residual = parse_long(a, v, 0, 1L << 30);
        else if (!strcmp(a, "--qjl-m")) qjl_m = parse_long(a, v, 1, 1 << 16);
        else if (!strcmp(a, "--polar-bits")) polar = v;
        else if (!strcmp(a, "--seed")) { seed = parse_u64(a, v); have_seed = 1; }
        else if (!strcmp(a, "--values")) values_opt = v;
        else if (!strcmp(a, "--schedule")) sched_path = v;
        else if (!strcmp(a, "--layers")) layers_opt = v;
        else if (!strcmp(a, "--emit-recon")) recon = v;
        else if (!strcmp(a, "--device")) {
            if (!strcmp(v, "cuda")) device_cuda = 1;
            else if (strcmp(v, "cpu")) die_usage("quantize: unknown device '%s'; use cpu or cuda", v);
        }
        else out = v;
    }
    if (!in) die_usage("quantize: no input dump (usage: tq quantize DUMP.h5 --method M --bits B -o CODES.h5)");
    if (!out) die_usage("quantize: no output file; add -o CODES.h5");
    if (device_cuda) {
        int cst = tq_cuda_device(NULL, 0, NULL, NULL);
        if (cst) die_lib(cst, "quantize --device cuda");
    }
    if (!method) die_usage("quantize: no method; add --method (fp16, int8, kivi, turbo-mse, turbo-prod, qjl, polar)");
    if (same_file(in, out)) die_usage("quantize: output '%s' is the input; choose another -o", out);
    if (recon && (same_file(recon, in) || same_file(recon, out)))
        die_usage("quantize: --emit-recon '%s' is the input or the output; choose another name", recon);
    if (values_opt && keys_only) die_usage("quantize: --values and --keys-only contradict each other; drop one");
    check_output(out, (const char *const[]){in, sched_path}, 2);
    if (recon) check_output(recon, (const char *const[]){in, sched_path}, 2);

    /* ---- parameters ---- */
    const tq_format *fk = method_or_die("--method", method);
    int bits;
    if (bits_s) bits = bits_or_die(fk, "--bits", bits_s);
    else if (fk->min_bits == fk->max_bits) bits = fk->min_bits;
    else if (fk->method == TQ_M_POLAR) bits = 3;
    else if (sched_path) bits = fk->min_bits; /* replaced per slice by the schedule */
    else die_usage("quantize: %s needs --bits (%d..%d)", fk->name, fk->min_bits, fk->max_bits);
    tq_qparams pk;
    tq_qparams_default(&pk, fk->method, bits);
    int is_turbo = fk->method == TQ_M_TURBO_MSE || fk->method == TQ_M_TURBO_PROD || fk->method == TQ_M_QJL;
    if (rot) {
        if (!fk->uses_rotation) die_usage("quantize: --rotation applies to turbo-mse, turbo-prod, qjl and polar, not %s", fk->name);
        if ((pk.rotation = tq_rotation_parse(rot)) < 0)
            die_usage("quantize: unknown rotation '%s' (dense, hadamard, none)", rot);
    }
    if (cb) {
        if (fk->method != TQ_M_TURBO_MSE && fk->method != TQ_M_TURBO_PROD)
            die_usage("quantize: --codebook applies to turbo-mse and turbo-prod, not %s", fk->name);
        if ((pk.codebook = tq_codebook_parse(cb)) < 0)
            die_usage("quantize: unknown codebook '%s' (beta, gaussian, empirical)", cb);
    }
    if ((outliers >= 0 || center) && !is_turbo)
        die_usage("quantize: --outliers and --center apply to turbo-mse, turbo-prod and qjl, not %s", fk->name);
    if (outliers >= 0) pk.outliers = (int)outliers;
    pk.center = center;
    if (norms) {
        if (!strcmp(norms, "fp32")) pk.norm_fp32 = 1;
        else if (strcmp(norms, "fp16")) die_usage("quantize: --norms is '%s', expected fp16 or fp32", norms);
    }
    if (group >= 0) {
        if (fk->method != TQ_M_KIVI) die_usage("quantize: --group applies to kivi, not %s", fk->name);
        pk.group = (int)group;
    }
    if (residual >= 0) {
        if (fk->method != TQ_M_KIVI) die_usage("quantize: --residual applies to kivi, not %s", fk->name);
        pk.residual = (int)residual;
    }
    if (qjl_m >= 0) {
        if (fk->method != TQ_M_QJL) die_usage("quantize: --qjl-m applies to qjl, not %s", fk->name);
        pk.qjl_m = (int)qjl_m;
    }
    if (polar) {
        if (fk->method != TQ_M_POLAR) die_usage("quantize: --polar-bits applies to polar, not %s", fk->name);
        int lv[TQ_POLAR_MAX_LEVELS + 1], n = 0;
        char buf[128];
        if (strlen(polar) >= sizeof buf) die_usage("quantize: --polar-bits '%s' is too long", polar);
        strcpy(buf, polar);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n == TQ_POLAR_MAX_LEVELS) die_usage("quantize: --polar-bits has more than %d levels", TQ_POLAR_MAX_LEVELS);
            lv[n++] = (int)parse_long("--polar-bits", t, 1, 8);
        }
        if (!n) die_usage("quantize: --polar-bits is empty (want e.g. 4,2,2,2)");
        pk.polar_levels = n;
        for (int l = 0; l < n; l++) pk.polar_bits[l] = lv[l];
    }
    pk.seed = have_seed ? seed : 0;
    tq_qparams pv = pk;
    if (values_opt) {
        char buf[64];
        const char *colon = strchr(values_opt, ':');
        if (!colon || strlen(values_opt) >= sizeof buf)
            die_usage("quantize: --values wants METHOD:BITS (e.g. kivi:4), got '%s'", values_opt);
        memcpy(buf, values_opt, (size_t)(colon - values_opt));
        buf[colon - values_opt] = 0;
        const tq_format *fv = method_or_die("--values", buf);
        int vb = bits_or_die(fv, "--values bits", colon + 1);
        tq_qparams_default(&pv, fv->method, vb);
        /* Settings shared by both tensors carry over where the values' method takes them. */
        if (fv->uses_rotation && pk.method != TQ_M_KIVI && fk->uses_rotation) pv.rotation = pk.rotation;
        if ((fv->method == TQ_M_TURBO_MSE || fv->method == TQ_M_TURBO_PROD) && fk->uses_rotation) pv.codebook = pk.codebook;
        if (fv->method == TQ_M_KIVI && group >= 0) pv.group = (int)group;
        if (fv->method == TQ_M_KIVI && residual >= 0) pv.residual = (int)residual;
        pv.norm_fp32 = pk.norm_fp32;
        pv.seed = pk.seed;
    }

    /* ---- input, schedule, layers ---- */
    q_state st = {0};
    int rc = tq_dump_open(&st.d, in);
    if (rc) q_die(&st, rc, NULL);
    const tq_dump_meta *dm = tq_dump_get_meta(st.d);
    const tq_layer_shape *s0 = tq_dump_layer_shape(st.d, 0);
    int has_values = !keys_only && s0->has_values;
    if (values_opt && !s0->has_values) {
        q_cleanup(&st);
        die_usage("quantize: --values given but '%s' has no values; drop it", in);
    }
    const tq_format *fv = tq_format_of(pv.method);
    if (sched_path) {
        if ((rc = tq_schedule_load(&st.sched, sched_path))) q_die(&st, rc, NULL); /* unreadable or malformed: 1 */
        if ((rc = tq_schedule_check(st.sched, sched_path, dm->n_layers, s0->n_kv_heads, fk->name, fk->min_bits,
                                    fk->max_bits)))
            q_die(&st, rc, NULL);
        if (st.sched->values && has_values && fv != fk) {
            q_cleanup(&st);
            die_usage("quantize: schedule '%s' sets values bits, but --values asks for another method", sched_path);
        }
    }
    int *sel = calloc((size_t)dm->n_layers, sizeof(int)), nsel = 0;
    if (!sel) die("out of memory");
    if (layers_opt) {
        int *ls, nl = parse_list("--layers", layers_opt, 0, dm->n_layers - 1, NULL, &ls);
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
                tq_qparams p = slice_params(t ? &pv : &pk, f, fk, st.sched, l, h, t, polar != NULL);
                if ((rc = f->check(&p, sh->head_dim))) {
                    char what[96];
                    snprintf(what, sizeof what, "%s of layer %d (head dim %d)", t ? "values" : "keys", l, sh->head_dim);
                    q_die(&st, rc, what);
                }
            }
    }

    /* ---- output ---- */
    tq_codes_meta cm;
    memset(&cm, 0, sizeof cm);
    snprintf(cm.source, sizeof cm.source, "%s", in);
    snprintf(cm.model, sizeof cm.model, "%s", dm->model);
    snprintf(cm.rope, sizeof cm.rope, "%s", dm->rope);
    cm.src_layers = dm->n_layers;
    cm.n_layers = nsel;
    cm.dtype = s0->dtype == TQ_DTYPE_F16 ? TQ_DTYPE_F16 : TQ_DTYPE_F32;
    cm.has_values = has_values;
    cm.keys = pk;
    cm.values = pv;
    cm.schedule = st.sched ? st.sched->text : NULL;
    if ((rc = tq_codes_create(&st.w, out, &cm))) q_die(&st, rc, NULL);
    if (recon) {
        tq_dump_meta rm = *dm;
        rm.n_layers = nsel;
        snprintf(rm.source, sizeof rm.source, "reconstruction of '%s' (%s)", in, method);
        if ((rc = tq_dump_create(&st.r, recon, &rm, cm.dtype))) q_die(&st, rc, NULL);
    }

    double code_bits = 0, elems = 0, payload = 0;
    tq_progress prog;
    progress_start(&prog, "quantize", nsel);
    for (int l = 0, li = 0; l < dm->n_layers; l++) {
        if (!sel[l]) continue;
        tq_layer lay;
        if ((rc = tq_dump_read_layer(st.d, l, 0, 0, &lay))) q_die(&st, rc, NULL);
        const tq_layer_shape *sh = &lay.s;
        const int H = sh->n_kv_heads, T = sh->n_tokens, D = sh->head_dim;
        tq_codes_layer cl = {.src_layer = l, .s = *sh};
        cl.s.has_values = has_values;
        cl.keys = calloc((size_t)H, sizeof(tq_codes));
        cl.values = has_values ? calloc((size_t)H, sizeof(tq_codes)) : NULL;
        cl.queries = lay.queries;
        float *xr = recon ? malloc(sizeof(float) * (size_t)H * T * D * (1 + has_values)) : NULL;
        if (!cl.keys || (has_values && !cl.values) || (recon && !xr)) die("out of memory");
        for (int t = 0; t < 1 + has_values && !rc; t++)
            for (int h = 0; h < H && !rc; h++) {
                const tq_format *f = t ? fv : fk;
                tq_qparams p = slice_params(t ? &pv : &pk, f, fk, st.sched, l, h, t, polar != NULL);
                const float *x = (t ? lay.values : lay.keys) + (size_t)h * T * D;
                tq_codes *c = t ? &cl.values[h] : &cl.keys[h];
                rc = device_cuda ? tq_cuda_quantize(&p, (tq_slice_id){l, h, t}, x, T, D, c)
                                 : tq_quantize(&p, (tq_slice_id){l, h, t}, x, T, D, c);
                if (!rc && xr) rc = tq_dequantize(c, xr + ((size_t)t * H + h) * T * D);
                if (!rc) {
                    code_bits += f->bits_code(&p, D) * (double)T * D;
                    elems += (double)T * D;
                    payload += (double)tq_codes_payload_bytes(c);
                }
            }
        if (!rc) rc = tq_codes_write_layer(st.w, &cl);
        if (!rc && recon) {
            tq_layer rl = lay;
            rl.s.has_values = has_values;
            rl.keys = xr;
            rl.values = has_values ? xr + (size_t)H * T * D : NULL;
            rc = tq_dump_write_layer(st.r, li, &rl);
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
            q_die(&st, rc, what);
        }
        li++;
        progress_step(&prog, 1);
    }
    progress_end(&prog);
    rc = tq_codes_commit(st.w);
    st.w = NULL;
    if (rc) q_die(&st, rc, NULL);
    if (recon) {
        rc = tq_dump_commit(st.r);
        st.r = NULL;
        if (rc) q_die(&st, rc, NULL);
    }
    q_cleanup(&st);
    free(sel);
    char desc[160];
    tq_qparams_describe(&pk, desc, sizeof desc);
    printf("%s: %s%s%s, %d layer%s, bits_code %.4f, bits_total %.4f, payload %.0f bytes, %.2fx smaller than fp16\n",
           out, desc, has_values ? (values_opt ? " (values other)" : " (keys+values)") : " (keys only)",
           sched_path ? " scheduled" : "", nsel, nsel > 1 ? "s" : "", code_bits / elems, 8.0 * payload / elems,
           payload, 2.0 * elems / payload);
    return 0;
}

int cmd_dequantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage_deq(stdout);
            return 0;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) die_usage("dequantize: option '%s' needs a value", a);
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) die_usage("dequantize: unknown option '%s' (see 'tq dequantize --help')", a);
        else if (in) die_usage("dequantize: unexpected argument '%s' (one codes file; the output goes after -o)", a);
        else in = a;
    }
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
    tq_codes_close(cf);
    if (rc) {
        tq_dump_abort(w);
        die_lib(rc, NULL);
    }
    if ((rc = tq_dump_commit(w))) die_lib(rc, NULL);
    return 0;
}
