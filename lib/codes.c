/* codes.c: writing and reading tq-codes files (datasets/FORMAT.md "Codes files"). One group per (layer, tensor,
 * head) carries that slice's full tq_qparams as attributes and its sections as datasets of their real packed size;
 * the reader trusts nothing: every attribute, dataset type and size is checked against the format's own layout. */
#include "codes.h"
#include "tmpout.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fp16.h"
#include "tq.h"

static const char *const tensor_group[2] = {"keys", "values"};


/* ---------- attribute helpers (all return TQ_OK / TQ_ERR with a message naming the attribute) ---------- */

static int attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, int n, const void *val)
{
    hsize_t dim = (hsize_t)n;
    hid_t s = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL), a = -1;
    int rc = TQ_ERR;
    if (s >= 0 && (a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 && H5Awrite(a, mtype, val) >= 0)
        rc = TQ_OK;
    else
        tq_error_set(TQ_ERR, "cannot write attribute '%s'", name);
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int put_int(hid_t obj, const char *name, long long v) { return attr_put(obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, -1, &v); }
static int put_u64(hid_t obj, const char *name, uint64_t v) { return attr_put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, -1, &v); }
static int put_ints(hid_t obj, const char *name, const int *v, int n) { return attr_put(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, n, v); }

static int put_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return tq_error_set(TQ_ERR, "cannot write attribute '%s'", name);
    }
    int rc = attr_put(obj, name, t, t, -1, &val);
    H5Tclose(t);
    return rc;
}

/* Open attribute `name` of `obj` checking its class; *n gets the element count. */
static hid_t attr_open(hid_t obj, const char *name, H5T_class_t cls, hssize_t *n)
{
    if (H5Aexists(obj, name) <= 0) {
        tq_error_set(TQ_ERR, "missing attribute '%s'", name);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1, s = a >= 0 ? H5Aget_space(a) : -1;
    int ok = a >= 0 && t >= 0 && s >= 0 && H5Tget_class(t) == cls;
    if (ok) *n = H5Sget_simple_extent_npoints(s);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (!ok) {
        if (a >= 0) H5Aclose(a);
        tq_error_set(TQ_ERR, "attribute '%s' is not %s", name, cls == H5T_STRING ? "a string" : "an integer");
        return -1;
    }
    return a;
}

static int get_ints(hid_t obj, const char *name, long long *v, int want)
{
    hssize_t n;
    hid_t a = attr_open(obj, name, H5T_INTEGER, &n);
    if (a < 0) return TQ_ERR;
    int rc = TQ_OK;
    if (n != want) rc = tq_error_set(TQ_ERR, "attribute '%s' has %lld values, expected %d", name, (long long)n, want);
    else if (H5Aread(a, H5T_NATIVE_LLONG, v) < 0) rc = tq_error_set(TQ_ERR, "cannot read attribute '%s'", name);
    H5Aclose(a);
    return rc;
}

static int get_int(hid_t obj, const char *name, long long lo, long long hi, int *out)
{
    long long v;
    if (get_ints(obj, name, &v, 1)) return TQ_ERR;
    if (v < lo || v > hi) return tq_error_set(TQ_ERR, "attribute '%s' is %lld, expected %lld..%lld", name, v, lo, hi);
    *out = (int)v;
    return TQ_OK;
}

static int get_u64(hid_t obj, const char *name, uint64_t *out)
{
    hssize_t n;
    hid_t a = attr_open(obj, name, H5T_INTEGER, &n);
    if (a < 0) return TQ_ERR;
    int rc = n == 1 && H5Aread(a, H5T_NATIVE_UINT64, out) >= 0 ? TQ_OK : tq_error_set(TQ_ERR, "cannot read attribute '%s'", name);
    H5Aclose(a);
    return rc;
}

/* String attribute (variable or fixed length) into a malloc'd string. */
static char *get_str_alloc(hid_t obj, const char *name)
{
    hssize_t n;
    hid_t a = attr_open(obj, name, H5T_STRING, &n);
    if (a < 0) return NULL;
    char *out = NULL;
    hid_t t = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    htri_t vl = t >= 0 ? H5Tis_variable_str(t) : -1;
    if (n == 1 && vl > 0 && mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0) {
        char *p = NULL;
        if (H5Aread(a, mt, &p) >= 0 && p) {
            size_t len = strlen(p);
            out = malloc(len + 1);
            if (out) memcpy(out, p, len + 1);
            H5free_memory(p);
        }
    } else if (n == 1 && vl == 0 && mt >= 0) {
        size_t sz = H5Tget_size(t);
        out = calloc(sz + 1, 1);
        if (out && (H5Tset_size(mt, sz) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0 || H5Aread(a, mt, out) < 0)) {
            free(out);
            out = NULL;
        }
    }
    if (!out) tq_error_set(TQ_ERR, "cannot read string attribute '%s'", name);
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return out;
}

static int get_str(hid_t obj, const char *name, char *dst, size_t cap)
{
    char *s = get_str_alloc(obj, name);
    if (!s) return TQ_ERR;
    int rc = TQ_OK;
    if (strlen(s) >= cap) rc = tq_error_set(TQ_ERR, "attribute '%s' is longer than %zu characters", name, cap - 1);
    else strcpy(dst, s);
    free(s);
    return rc;
}

/* ---------- parameters as attributes ---------- */

static int put_params(hid_t g, const tq_qparams *p)
{
    const tq_format *f = tq_format_of(p->method);
    if (!f) return tq_error_set(TQ_ERR, "unknown method id %d", p->method);
    if (put_str(g, "method", f->name) || put_int(g, "bits", p->bits) ||
        put_str(g, "rotation", tq_rotation_name(p->rotation)) || put_str(g, "codebook", tq_codebook_name(p->codebook)) ||
        put_int(g, "outliers", p->outliers) || put_int(g, "center", p->center) ||
        put_str(g, "norms", p->norm_fp32 ? "fp32" : "fp16") || put_int(g, "group", p->group) || put_int(g, "residual", p->residual) ||
        put_int(g, "qjl_m", p->qjl_m) || put_ints(g, "polar_bits", p->polar_bits, p->polar_levels) ||
        put_u64(g, "seed", p->seed))
        return TQ_ERR;
    return TQ_OK;
}

static int get_params(hid_t g, tq_qparams *p)
{
    char s[32];
    memset(p, 0, sizeof *p);
    if (get_str(g, "method", s, sizeof s)) return TQ_ERR;
    const tq_format *f = tq_format_by_name(s);
    if (!f) return tq_error_set(TQ_ERR, "unknown method '%s' (written by a newer tq?)", s);
    p->method = f->method;
    if (get_int(g, "bits", 0, 64, &p->bits) || get_str(g, "rotation", s, sizeof s)) return TQ_ERR;
    if ((p->rotation = tq_rotation_parse(s)) < 0) return tq_error_set(TQ_ERR, "unknown rotation '%s'", s);
    if (get_str(g, "codebook", s, sizeof s)) return TQ_ERR;
    if ((p->codebook = tq_codebook_parse(s)) < 0) return tq_error_set(TQ_ERR, "unknown codebook '%s'", s);
    if (get_int(g, "outliers", 0, 1 << 20, &p->outliers) || get_int(g, "center", 0, 1, &p->center) ||
        get_str(g, "norms", s, sizeof s))
        return TQ_ERR;
    if (strcmp(s, "fp16") && strcmp(s, "fp32")) return tq_error_set(TQ_ERR, "attribute 'norms' is '%s', expected fp16 or fp32", s);
    p->norm_fp32 = !strcmp(s, "fp32");
    if (get_int(g, "group", 0, 1 << 30, &p->group) || get_int(g, "residual", 0, 1 << 30, &p->residual) || get_int(g, "qjl_m", 0, 1 << 20, &p->qjl_m)) return TQ_ERR;
    hssize_t n;
    hid_t a = attr_open(g, "polar_bits", H5T_INTEGER, &n);
    if (a < 0) return TQ_ERR;
    H5Aclose(a);
    if (n < 1 || n > TQ_POLAR_MAX_LEVELS)
        return tq_error_set(TQ_ERR, "attribute 'polar_bits' has %lld levels, expected 1..%d", (long long)n, TQ_POLAR_MAX_LEVELS);
    long long pb[TQ_POLAR_MAX_LEVELS];
    if (get_ints(g, "polar_bits", pb, (int)n)) return TQ_ERR;
    p->polar_levels = (int)n;
    for (int i = 0; i < n; i++) p->polar_bits[i] = pb[i] < 0 || pb[i] > 64 ? -1 : (int)pb[i];
    return get_u64(g, "seed", &p->seed);
}

/* ---------- writer ---------- */

struct tq_codes_writer {
    hid_t file, gcpl, dcpl, f16;
    char path[TQ_PATH_MAX], tmp[TQ_PATH_MAX];
    tq_codes_meta meta;
    int written, last_src;
    int *layers;             /* source index of each stored layer, written as the root attribute 'layers' */
};

static hid_t f16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int tq_codes_create(tq_codes_writer **out, const char *path, const tq_codes_meta *m)
{
    tq_h5_quiet();
    *out = NULL;
    if (m->n_layers < 1 || (m->dtype != TQ_DTYPE_F16 && m->dtype != TQ_DTYPE_F32))
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': bad metadata (%d layers, dtype %d)", path, m->n_layers,
                            m->dtype);
    tq_codes_writer *w = tq_calloc(1, sizeof *w);
    if (!w) return TQ_ERR_NOMEM;
    w->file = w->gcpl = w->dcpl = w->f16 = -1;
    w->meta = *m;
    w->meta.schedule = NULL; /* not owned: written now */
    w->last_src = -1;
    if (!(w->layers = tq_calloc((size_t)m->n_layers, sizeof(int)))) {
        free(w);
        return TQ_ERR_NOMEM;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    /* No timestamps: same inputs and seed give the same bytes. */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 || (w->gcpl = H5Pcreate(H5P_GROUP_CREATE)) < 0 ||
        H5Pset_obj_track_times(w->gcpl, 0) < 0 || (w->dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_obj_track_times(w->dcpl, 0) < 0 || (w->f16 = f16_type()) < 0) {
        if (fcpl >= 0) H5Pclose(fcpl);
        tq_codes_abort(w);
        return tq_error_set(TQ_ERR, "cannot write '%s': cannot set up HDF5 properties", path);
    }
    int fd = tq_tmp_create(path, w->tmp);
    if (fd < 0) {
        H5Pclose(fcpl);
        tq_codes_abort(w);
        return fd;
    }
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (w->file < 0) {
        close(fd);
        tq_error_set(TQ_ERR, "cannot write '%s': cannot create '%s' (does the folder exist and is it writable?)", path,
                     w->tmp);
        tq_codes_abort(w);
        return TQ_ERR;
    }
    int vr = tq_tmp_verify(fd, w->tmp, path);
    close(fd);
    if (vr) {
        tq_codes_abort(w);
        return vr;
    }
    char kd[160], vd[160];
    tq_qparams_describe(&m->keys, kd, sizeof kd);
    if (m->has_values) tq_qparams_describe(&m->values, vd, sizeof vd);
    else strcpy(vd, "none");
    if (put_str(w->file, "tq_format", TQ_CODES_FORMAT) || put_int(w->file, "tq_format_version", TQ_CODES_VERSION) ||
        put_str(w->file, "tq_version", TQ_VERSION) || put_str(w->file, "source", m->source) ||
        put_str(w->file, "model", m->model) || put_str(w->file, "rope", m->rope) ||
        put_int(w->file, "src_layers", m->src_layers) || put_int(w->file, "n_layers", m->n_layers) ||
        put_str(w->file, "dtype", m->dtype == TQ_DTYPE_F16 ? "float16" : "float32") ||
        put_int(w->file, "has_values", m->has_values) || put_str(w->file, "keys", kd) ||
        put_str(w->file, "values", vd) || (m->schedule && put_str(w->file, "schedule", m->schedule))) {
        tq_error_prefix(TQ_ERR, "cannot write '%s': ", path);
        tq_codes_abort(w);
        return TQ_ERR;
    }
    hid_t g[2] = {-1, -1};
    int rc = TQ_OK;
    for (int t = 0; t < 1 + m->has_values && !rc; t++) {
        /* The settings as asked, for readers that want them without opening a slice. */
        char name[32];
        snprintf(name, sizeof name, "params_%s", tensor_group[t]);
        g[t] = H5Gcreate2(w->file, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
        rc = g[t] < 0 ? tq_error_set(TQ_ERR, "cannot create group '/%s'", name)
                      : put_params(g[t], t ? &m->values : &m->keys);
        if (g[t] >= 0) H5Gclose(g[t]);
    }
    if (rc) {
        tq_error_prefix(TQ_ERR, "cannot write '%s': ", path);
        tq_codes_abort(w);
        return TQ_ERR;
    }
    *out = w;
    return TQ_OK;
}

/* model_layers [src n_layers] int64 -> the stored layers' entries; any other shape or type is copied as it is */
static int keep_model_layers(hid_t src, hid_t dst, const int *layers, int n, int src_layers)
{
    if (H5Aexists(src, "model_layers") <= 0) return TQ_OK;
    hid_t a = H5Aopen(src, "model_layers", H5P_DEFAULT), sp = a < 0 ? -1 : H5Aget_space(a), t = -1;
    int subset = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_npoints(sp) == src_layers &&
                 (t = H5Aget_type(a)) >= 0 && H5Tget_class(t) == H5T_INTEGER;
    int64_t *all = subset ? tq_malloc(sizeof *all * (size_t)src_layers) : NULL, *pick = NULL;
    int rc = TQ_OK;
    if (subset && (!all || !(pick = tq_malloc(sizeof *pick * (size_t)n)) || H5Aread(a, H5T_NATIVE_INT64, all) < 0))
        rc = tq_error_set(TQ_ERR, "cannot read attribute 'model_layers'");
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    if (!rc && subset) {
        for (int i = 0; i < n; i++) pick[i] = all[layers[i]];
        hid_t g = H5Gopen2(dst, "provenance", H5P_DEFAULT);
        rc = g < 0 ? TQ_ERR : attr_put(g, "model_layers", H5T_STD_I64LE, H5T_NATIVE_INT64, n, pick);
        if (g >= 0) H5Gclose(g);
    } else if (!rc) { /* as it is: the rest is there already (existing names are left alone) */
        rc = tq_h5_attrs_copy(src, "/", dst, "provenance", tq_dump_own_attrs);
    }
    free(all);
    free(pick);
    return rc;
}

int tq_codes_keep_provenance(tq_codes_writer *w, const tq_dump *d, const int *layers, int n)
{
    hid_t src = (hid_t)tq_dump_h5(d);
    int src_layers = tq_dump_get_meta(d)->n_layers;
    /* everything at the root but what a dump's reader owns, and model_layers (below) */
    const char *skip[16];
    int k = 0;
    for (const char *const *o = tq_dump_own_attrs; *o && k < 14; o++) skip[k++] = *o;
    skip[k++] = "model_layers";
    skip[k] = NULL;
    int rc = tq_h5_attrs_copy(src, "/", w->file, "provenance", skip);
    if (!rc) rc = keep_model_layers(src, w->file, layers, n, src_layers);
    for (int i = 0; i < n && !rc; i++) {
        char sg[32], dg[48];
        snprintf(sg, sizeof sg, "layer_%03d", layers[i]);
        snprintf(dg, sizeof dg, "provenance/layer_%03d", layers[i]);
        rc = tq_h5_attrs_copy(src, sg, w->file, dg, NULL);
    }
    return rc ? tq_error_prefix(rc, "cannot write '%s': provenance of '%s': ", w->path, tq_dump_path(d)) : TQ_OK;
}

/* Side information (norms, scales, codebooks) is checked finite before it is stored: a NaN/Inf codebook (e.g. fit on
 * subnormal tokens) was written with exit 0 and then refused by dequantize. */
static int section_finite(const tq_section *s)
{
    for (size_t i = 0; i < (size_t)s->count; i++) {
        int bad = s->type == TQ_SEC_F32 ? !isfinite(((const float *)s->data)[i])
                : s->type == TQ_SEC_F16 ? (((const uint16_t *)s->data)[i] & 0x7c00u) == 0x7c00u : 0;
        if (bad)
            return tq_error_set(TQ_ERR, "section '%s' element %zu is not finite (%s): the input's scale is out of reach "
                                "of this configuration (subnormal or huge values?)", s->name, i,
                                s->type == TQ_SEC_F32 ? "a float32 NaN/Inf" : "a float16 NaN/Inf");
    }
    return TQ_OK;
}

/* FNV-1a (64 bits) over a section's elements as the file stores them (little-endian), so an edited or corrupted byte
 * decodes to an error instead of to other numbers with exit 0 (format version 2; version-1 files carry none). */
static uint64_t section_fnv(int type, const void *data, size_t count)
{
    uint64_t h = 1469598103934665603ull;
    size_t w = type == TQ_SEC_U8 ? 1 : type == TQ_SEC_F16 ? 2 : 4;
    for (size_t i = 0; i < count; i++) {
        uint32_t v = 0;
        if (w == 1) v = ((const uint8_t *)data)[i];
        else if (w == 2) v = ((const uint16_t *)data)[i];
        else memcpy(&v, (const char *)data + 4 * i, 4);
        for (size_t b = 0; b < w; b++) h = (h ^ ((v >> (8 * b)) & 0xffu)) * 1099511628211ull;
    }
    return h;
}

static int write_section(tq_codes_writer *w, hid_t g, const tq_section *s)
{
    if (section_finite(s)) return TQ_ERR;
    hsize_t dim = (hsize_t)s->count;
    hid_t ft = s->type == TQ_SEC_U8 ? H5T_STD_U8LE : s->type == TQ_SEC_F16 ? H5T_STD_U16LE
             : s->type == TQ_SEC_F32 ? H5T_IEEE_F32LE : H5T_STD_I32LE;
    hid_t mt = s->type == TQ_SEC_U8 ? H5T_NATIVE_UINT8 : s->type == TQ_SEC_F16 ? H5T_NATIVE_UINT16
             : s->type == TQ_SEC_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
    hid_t sp = H5Screate_simple(1, &dim, NULL), ds = -1;
    int rc = TQ_ERR;
    if (sp >= 0 && (ds = H5Dcreate2(g, s->name, ft, sp, H5P_DEFAULT, w->dcpl, H5P_DEFAULT)) >= 0 &&
        (s->count == 0 || H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->data) >= 0) &&
        put_u64(ds, "fnv1a64", section_fnv(s->type, s->data, s->count)) == 0)
        rc = TQ_OK;
    else
        tq_error_set(TQ_ERR, "cannot write dataset '%s' (disk full?)", s->name);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static int write_slice(tq_codes_writer *w, hid_t tg, int head, const tq_codes *c)
{
    char name[32], secs[TQ_MAX_SECTIONS * 25] = "";
    snprintf(name, sizeof name, "head_%03d", head);
    hid_t g = H5Gcreate2(tg, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot create group '%s'", name);
    for (int i = 0; i < c->nsec; i++) {
        if (i) strcat(secs, ",");
        strcat(secs, c->sec[i].name);
    }
    int rc = put_params(g, &c->p);
    if (!rc) rc = put_int(g, "n", c->n) || put_int(g, "d", c->d) || put_str(g, "sections", secs);
    for (int i = 0; i < c->nsec && !rc; i++) rc = write_section(w, g, &c->sec[i]);
    if (H5Gclose(g) < 0 && !rc) rc = tq_error_set(TQ_ERR, "cannot close group '%s'", name);
    if (rc) tq_error_prefix(TQ_ERR, "%s: ", name);
    return rc ? TQ_ERR : TQ_OK;
}

int tq_codes_write_layer(tq_codes_writer *w, const tq_codes_layer *l)
{
    const tq_layer_shape *s = &l->s;
    if (w->written >= w->meta.n_layers || l->src_layer <= w->last_src || l->src_layer >= w->meta.src_layers)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d out of order or beyond %d layers", w->path,
                            l->src_layer, w->meta.src_layers);
    if (!!l->values != !!w->meta.has_values || (s->has_queries && !l->queries))
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d: values/queries do not match the metadata",
                            w->path, l->src_layer);
    char gname[32];
    snprintf(gname, sizeof gname, "layer_%03d", l->src_layer);
    hid_t g = H5Gcreate2(w->file, gname, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot write '%s': cannot create group '/%s'", w->path, gname);
    int rc = put_int(g, "n_kv_heads", s->n_kv_heads) || put_int(g, "n_q_heads", s->has_queries ? s->n_q_heads : 0) ||
             put_int(g, "n_tokens", s->n_tokens) || put_int(g, "head_dim", s->head_dim) ? TQ_ERR : TQ_OK;
    for (int t = 0; t < 1 + w->meta.has_values && !rc; t++) {
        hid_t tg = H5Gcreate2(g, tensor_group[t], H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
        if (tg < 0) { rc = tq_error_set(TQ_ERR, "cannot create group '%s'", tensor_group[t]); break; }
        const tq_codes *c = t ? l->values : l->keys;
        for (int h = 0; h < s->n_kv_heads && !rc; h++) rc = write_slice(w, tg, h, &c[h]);
        if (H5Gclose(tg) < 0 && !rc) rc = tq_error_set(TQ_ERR, "cannot close group '%s'", tensor_group[t]);
        if (rc) tq_error_prefix(TQ_ERR, "%s/", tensor_group[t]);
    }
    if (!rc && s->has_queries) {
        /* Queries keep the source's dtype (that of its keys), so dequantize writes a dump like the source. */
        hsize_t dims[3] = {(hsize_t)s->n_q_heads, (hsize_t)s->n_tokens, (hsize_t)s->head_dim};
        size_t n = (size_t)s->n_q_heads * s->n_tokens * s->head_dim;
        int f16 = w->meta.dtype == TQ_DTYPE_F16;
        uint16_t *h = f16 ? tq_malloc(n * 2) : NULL;
        hid_t sp = H5Screate_simple(3, dims, NULL), ds = -1;
        if (f16 && h)
            for (size_t i = 0; i < n; i++) h[i] = tq_float_to_half(l->queries[i]);
        if ((f16 && !h) || sp < 0 ||
            (ds = H5Dcreate2(g, "queries", f16 ? w->f16 : H5T_IEEE_F32LE, sp, H5P_DEFAULT, w->dcpl, H5P_DEFAULT)) < 0 ||
            H5Dwrite(ds, f16 ? w->f16 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, f16 ? (void *)h : (void *)l->queries) < 0)
            rc = tq_error_set(TQ_ERR, "cannot write dataset 'queries' (disk full?)");
        if (ds >= 0) H5Dclose(ds);
        if (sp >= 0) H5Sclose(sp);
        free(h);
    }
    if (H5Gclose(g) < 0 && !rc) rc = tq_error_set(TQ_ERR, "cannot close group");
    if (rc) return tq_error_prefix(TQ_ERR, "cannot write '%s': /%s/", w->path, gname);
    w->layers[w->written++] = l->src_layer;
    w->last_src = l->src_layer;
    return TQ_OK;
}

int tq_codes_commit(tq_codes_writer *w)
{
    if (w->written != w->meta.n_layers) {
        tq_error_set(TQ_ERR, "cannot write '%s': %d of %d layers written", w->path, w->written, w->meta.n_layers);
        tq_codes_abort(w);
        return TQ_ERR;
    }
    if (put_ints(w->file, "layers", w->layers, w->written)) {
        tq_error_prefix(TQ_ERR, "cannot write '%s': ", w->path);
        tq_codes_abort(w);
        return TQ_ERR;
    }
    int rc = tq_h5_commit(w->file, w->tmp, w->path);
    w->file = -1;
    tq_codes_abort(w); /* on success tmp is renamed away: abort only frees the writer */
    return rc;
}

void tq_codes_abort(tq_codes_writer *w)
{
    if (!w) return;
    if (w->file >= 0) H5Fclose(w->file);
    if (w->gcpl >= 0) H5Pclose(w->gcpl);
    if (w->dcpl >= 0) H5Pclose(w->dcpl);
    if (w->f16 >= 0) H5Tclose(w->f16);
    tq_tmp_discard(w->tmp);
    free(w->layers);
    free(w);
}

/* ---------- reader ---------- */

struct tq_codes_file {
    hid_t file;
    int version;             /* 1: no section checksums; 2: each section's fnv1a64 verified on read */
    char path[1024];
    tq_codes_meta meta;
    int *src;                /* stored layer i -> source layer */
    tq_layer_shape *shapes;
};

const tq_codes_meta *tq_codes_get_meta(const tq_codes_file *f) { return &f->meta; }

static int open_inner(tq_codes_file *f)
{
    char fmt[32], s[64];
    if (get_str(f->file, "tq_format", fmt, sizeof fmt)) return TQ_ERR;
    if (strcmp(fmt, TQ_CODES_FORMAT)) {
        if (!strcmp(fmt, "tq-kv")) return tq_error_set(TQ_ERR, "this is a dump (tq-kv), not a codes file; make one with 'tq quantize'");
        return tq_error_set(TQ_ERR, "tq_format is '%s', expected '%s'", fmt, TQ_CODES_FORMAT);
    }
    int v;
    if (get_int(f->file, "tq_format_version", 0, 1 << 20, &v)) return TQ_ERR;
    if (v < 1 || v > TQ_CODES_VERSION)
        return tq_error_set(TQ_ERR, "tq_format_version is %d, this tq reads 1..%d", v, TQ_CODES_VERSION);
    f->version = v;
    tq_codes_meta *m = &f->meta;
    if (get_str(f->file, "source", m->source, sizeof m->source) || get_str(f->file, "model", m->model, sizeof m->model) ||
        get_str(f->file, "rope", m->rope, sizeof m->rope) || get_int(f->file, "src_layers", 1, 100000, &m->src_layers) ||
        get_int(f->file, "n_layers", 1, m->src_layers, &m->n_layers) || get_str(f->file, "dtype", s, sizeof s) ||
        get_int(f->file, "has_values", 0, 1, &m->has_values))
        return TQ_ERR;
    if (!strcmp(s, "float16")) m->dtype = TQ_DTYPE_F16;
    else if (!strcmp(s, "float32")) m->dtype = TQ_DTYPE_F32;
    else return tq_error_set(TQ_ERR, "attribute 'dtype' is '%s', expected float16 or float32", s);
    if (H5Aexists(f->file, "schedule") > 0 && !(m->schedule = get_str_alloc(f->file, "schedule"))) return TQ_ERR;
    for (int t = 0; t < 1 + m->has_values; t++) {
        char name[32];
        snprintf(name, sizeof name, "params_%s", tensor_group[t]);
        hid_t g = H5Gopen2(f->file, name, H5P_DEFAULT);
        if (g < 0) return tq_error_set(TQ_ERR, "missing group '/%s'", name);
        int rc = get_params(g, t ? &m->values : &m->keys);
        H5Gclose(g);
        if (rc) return tq_error_prefix(TQ_ERR, "/%s: ", name);
    }
    f->src = tq_malloc(sizeof(int) * (size_t)m->n_layers);
    f->shapes = tq_calloc((size_t)m->n_layers, sizeof *f->shapes);
    if (!f->src || !f->shapes) return TQ_ERR_NOMEM;
    long long *ll = tq_malloc(sizeof(long long) * (size_t)m->n_layers);
    if (!ll) return TQ_ERR_NOMEM;
    int rc0 = get_ints(f->file, "layers", ll, m->n_layers);
    if (!rc0)
        for (int i = 0; i < m->n_layers; i++) f->src[i] = ll[i] < 0 || ll[i] > 1000000 ? -1 : (int)ll[i];
    free(ll);
    if (rc0) return TQ_ERR;
    for (int i = 0; i < m->n_layers; i++) {
        if (f->src[i] < 0 || f->src[i] >= m->src_layers || (i && f->src[i] <= f->src[i - 1]))
            return tq_error_set(TQ_ERR, "layer group %d is out of range or repeated (source has %d layers)", f->src[i],
                                m->src_layers);
        char gname[32];
        snprintf(gname, sizeof gname, "layer_%03d", f->src[i]);
        hid_t g = H5Gopen2(f->file, gname, H5P_DEFAULT);
        if (g < 0) return tq_error_set(TQ_ERR, "missing group '/%s' (layer names are zero-padded to 3 digits)", gname);
        tq_layer_shape *sh = &f->shapes[i];
        int rc = get_int(g, "n_kv_heads", 1, 1 << 16, &sh->n_kv_heads) || get_int(g, "n_q_heads", 0, 1 << 16, &sh->n_q_heads) ||
                 get_int(g, "n_tokens", 1, 1 << 30, &sh->n_tokens) || get_int(g, "head_dim", 1, 1 << 16, &sh->head_dim);
        H5Gclose(g);
        if (rc) return tq_error_prefix(TQ_ERR, "/%s: ", gname);
        if (sh->n_q_heads % sh->n_kv_heads)
            return tq_error_set(TQ_ERR, "/%s: n_q_heads %d is not a multiple of n_kv_heads %d", gname, sh->n_q_heads,
                                sh->n_kv_heads);
        /* the decoder allocates whole slices and layers: the dump reader's limit, checked before any allocation */
        uint64_t heads = (uint64_t)(sh->n_q_heads > sh->n_kv_heads ? sh->n_q_heads : sh->n_kv_heads);
        if (heads * (uint64_t)sh->n_tokens * (uint64_t)sh->head_dim > TQ_DUMP_MAX_ELEMS)
            return tq_error_set(TQ_ERR, "/%s: %llu heads x %d tokens x dim %d is more than 2^31 values per tensor",
                                gname, (unsigned long long)heads, sh->n_tokens, sh->head_dim);
        sh->has_values = m->has_values;
        sh->has_queries = sh->n_q_heads > 0;
        sh->dtype = m->dtype;
    }
    return TQ_OK;
}

int tq_codes_open(tq_codes_file **out, const char *path)
{
    tq_h5_quiet();
    *out = NULL;
    if (access(path, R_OK) != 0) return tq_error_set(TQ_ERR, "cannot read '%s': %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return tq_error_set(TQ_ERR, "cannot read '%s': is a directory, expected a tq-codes file", path);
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return tq_error_set(TQ_ERR, "cannot read '%s': not a regular file, expected a tq-codes file", path);
    if (stat(path, &st) == 0 && st.st_size == 0)
        return tq_error_set(TQ_ERR, "cannot read '%s': empty file (0 bytes), expected a tq-codes file", path);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) return tq_error_set(TQ_ERR, "cannot read '%s': not an HDF5 file", path);
    tq_codes_file *f = tq_calloc(1, sizeof *f);
    if (!f) return TQ_ERR_NOMEM;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f->file < 0 ? tq_h5_open_error() : tq_h5_check_sources(f->file, path);
    if (!rc) rc = open_inner(f);
    if (rc) {
        tq_error_prefix(rc, "cannot read codes file '%s': ", path);
        tq_codes_close(f);
        return rc;
    }
    *out = f;
    return TQ_OK;
}

/* Sizes are checked before anything is allocated: against the format's own layout `ref` when it has one (a 3 KB file
 * declaring a 2^32-element section allocated 4 GB before it was refused), else against `bound` elements. */
static int read_section(hid_t g, const char *name, tq_codes *c, const tq_codes *ref, size_t bound, int checksum)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) return tq_error_set(TQ_ERR, "missing dataset '%s'", name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int rc = TQ_ERR, type = 0;
    if (t >= 0 && sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1) {
        H5T_class_t cls = H5Tget_class(t);
        size_t sz = H5Tget_size(t);
        int sgn = cls == H5T_INTEGER ? H5Tget_sign(t) : -1;
        if (cls == H5T_INTEGER && sz == 1 && sgn == H5T_SGN_NONE) type = TQ_SEC_U8;
        else if (cls == H5T_INTEGER && sz == 2 && sgn == H5T_SGN_NONE) type = TQ_SEC_F16;
        else if (cls == H5T_FLOAT && sz == 4) type = TQ_SEC_F32;
        else if (cls == H5T_INTEGER && sz == 4 && sgn == H5T_SGN_2) type = TQ_SEC_I32;
    }
    if (!type) tq_error_set(TQ_ERR, "dataset '%s' is not a 1-D uint8/uint16/float32/int32 array", name);
    else {
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        hsize_t n = np < 0 ? 0 : (hsize_t)np;
        const tq_section *r = ref ? tq_codes_find(ref, name) : NULL;
        if (np < 0) {
            tq_error_set(TQ_ERR, "cannot read the size of dataset '%s'", name);
            goto out;
        }
        if (ref && !r) {
            tq_error_set(TQ_ERR, "dataset '%s' is not a section this method writes", name);
            goto out;
        }
        if (r && (r->type != type || (hsize_t)r->count != n)) {
            tq_error_set(TQ_ERR, "dataset '%s' has %llu elements of type %d, expected %zu of type %d", name,
                         (unsigned long long)n, type, r->count, r->type);
            goto out;
        }
        if (!ref && n > (hsize_t)bound) {
            tq_error_set(TQ_ERR, "dataset '%s' has %llu elements, more than the %zu a slice of this shape can hold",
                         name, (unsigned long long)n, bound);
            goto out;
        }
        void *data = tq_codes_add(c, name, type, (size_t)n);
        hid_t mt = type == TQ_SEC_U8 ? H5T_NATIVE_UINT8 : type == TQ_SEC_F16 ? H5T_NATIVE_UINT16
                 : type == TQ_SEC_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
        if (data && (n == 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0)) rc = TQ_OK;
        else if (data) tq_error_set(TQ_ERR, "cannot read dataset '%s'", name);
        uint64_t want = 0, got = data ? section_fnv(type, data, (size_t)n) : 0;
        if (!rc && checksum && get_u64(ds, "fnv1a64", &want)) rc = tq_error_prefix(TQ_ERR, "dataset '%s': ", name);
        else if (!rc && checksum && want != got)
            rc = tq_error_set(TQ_ERR, "dataset '%s' fails its checksum (stored %016llx, computed %016llx): the file was "
                              "edited or corrupted", name, (unsigned long long)want, (unsigned long long)got);
    }
out:
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

/* Reads one slice and proves it decodable: parameters pass the format's check, and re-encoding zeros with the same
 * parameters gives sections of exactly the stored names, types and sizes (the layout is the format's own). */
static int read_slice(hid_t tg, int head, int tensor, int layer, const tq_layer_shape *sh, tq_codes *c, int checksum)
{
    char name[32];
    snprintf(name, sizeof name, "head_%03d", head);
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "missing group '%s'", name);
    int rc = get_params(g, &c->p), n = 0, d = 0;
    char *secs = NULL;
    if (!rc) rc = get_int(g, "n", 0, 1 << 30, &n) || get_int(g, "d", 1, 1 << 16, &d) ? TQ_ERR : TQ_OK;
    if (!rc && (n != sh->n_tokens || d != sh->head_dim))
        rc = tq_error_set(TQ_ERR, "n=%d d=%d, but the layer has %d tokens of dim %d", n, d, sh->n_tokens, sh->head_dim);
    if (!rc && !(secs = get_str_alloc(g, "sections"))) rc = TQ_ERR;
    const tq_format *f = rc ? NULL : tq_format_of(c->p.method);
    if (f && f->check(&c->p, d) < 0) rc = tq_error_prefix(TQ_ERR, "bad parameters: ");
    c->id = (tq_slice_id){layer, head, tensor};
    c->n = n;
    c->d = d;
    /* The layout the format itself produces for these parameters, made before any section is read (zeros encode
     * fast; the empirical codebook, fitted on data, has the same size for any data). A format that cannot encode
     * zeros here (fitting a codebook) gets a size bound instead, and its decoder checks sizes. */
    tq_codes ref = {0};
    int have_ref = 0;
    if (!rc) {
        float *z = tq_calloc((size_t)n * d + 1, sizeof(float));
        if (!z) rc = TQ_ERR_NOMEM;
        else have_ref = f->encode(&c->p, c->id, z, n, d, &ref) == TQ_OK;
        free(z);
        tq_error_clear();
    }
    /* without a layout: 32 bits per element of each stored value plus a 64k-entry table covers every format */
    size_t bound = (size_t)n * (size_t)d + 65536;
    if (!rc) {
        for (char *tok = strtok(secs, ","); tok && !rc; tok = strtok(NULL, ","))
            rc = read_section(g, tok, c, have_ref ? &ref : NULL, bound, checksum);
    }
    if (!rc && have_ref) {
        if (ref.nsec != c->nsec) rc = tq_error_set(TQ_ERR, "%d sections, %s writes %d", c->nsec, f->name, ref.nsec);
        for (int i = 0; i < ref.nsec && !rc; i++)
            if (!tq_codes_find(c, ref.sec[i].name)) rc = tq_error_set(TQ_ERR, "missing dataset '%s'", ref.sec[i].name);
    }
    tq_codes_free(&ref);
    free(secs);
    H5Gclose(g);
    if (rc) {
        tq_codes_free(c);
        return tq_error_prefix(TQ_ERR, "%s: ", name);
    }
    return TQ_OK;
}

int tq_codes_read_layer(tq_codes_file *f, int i, tq_codes_layer *out)
{
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= f->meta.n_layers)
        return tq_error_set(TQ_ERR_USAGE, "codes file '%s' has %d layers, asked for %d", f->path, f->meta.n_layers, i);
    out->src_layer = f->src[i];
    out->s = f->shapes[i];
    const tq_layer_shape *sh = &out->s;
    char gname[32];
    snprintf(gname, sizeof gname, "layer_%03d", out->src_layer);
    hid_t g = H5Gopen2(f->file, gname, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot read codes file '%s': missing group '/%s'", f->path, gname);
    int rc = TQ_OK;
    for (int t = 0; t < 1 + f->meta.has_values && !rc; t++) {
        tq_codes *c = tq_calloc((size_t)sh->n_kv_heads, sizeof *c);
        if (!c) { rc = TQ_ERR_NOMEM; break; }
        if (t) out->values = c;
        else out->keys = c;
        hid_t tg = H5Gopen2(g, tensor_group[t], H5P_DEFAULT);
        if (tg < 0) { rc = tq_error_set(TQ_ERR, "missing group '%s'", tensor_group[t]); break; }
        for (int h = 0; h < sh->n_kv_heads && !rc; h++) rc = read_slice(tg, h, t, out->src_layer, sh, &c[h], f->version >= 2);
        H5Gclose(tg);
        if (rc) tq_error_prefix(TQ_ERR, "%s/", tensor_group[t]);
    }
    if (!rc && sh->has_queries) {
        size_t n = (size_t)sh->n_q_heads * sh->n_tokens * sh->head_dim;
        hid_t ds = H5Dopen2(g, "queries", H5P_DEFAULT), sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[3] = {0, 0, 0};
        if (ds < 0) rc = tq_error_set(TQ_ERR, "missing dataset 'queries' (n_q_heads is %d)", sh->n_q_heads);
        else if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 3 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 ||
                 dims[0] != (hsize_t)sh->n_q_heads || dims[1] != (hsize_t)sh->n_tokens || dims[2] != (hsize_t)sh->head_dim)
            rc = tq_error_set(TQ_ERR, "dataset 'queries' has the wrong shape, expected [%d, %d, %d]", sh->n_q_heads,
                              sh->n_tokens, sh->head_dim);
        else if (!(out->queries = tq_malloc(n * sizeof(float)))) rc = TQ_ERR_NOMEM;
        else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->queries) < 0)
            rc = tq_error_set(TQ_ERR, "cannot read dataset 'queries'");
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    H5Gclose(g);
    if (rc) {
        tq_error_prefix(rc, "cannot read codes file '%s': /%s/", f->path, gname);
        tq_codes_layer_free(out);
    }
    return rc;
}

void tq_codes_layer_free(tq_codes_layer *l)
{
    for (int h = 0; h < l->s.n_kv_heads; h++) {
        if (l->keys) tq_codes_free(&l->keys[h]);
        if (l->values) tq_codes_free(&l->values[h]);
    }
    free(l->keys);
    free(l->values);
    free(l->queries);
    memset(l, 0, sizeof *l);
}

int tq_codes_restore_provenance(const tq_codes_file *f, tq_dump_writer *w)
{
    if (H5Lexists(f->file, "provenance", H5P_DEFAULT) <= 0) return TQ_OK;
    hid_t dst = (hid_t)tq_dump_writer_h5(w);
    int rc = tq_h5_attrs_copy(f->file, "provenance", dst, "/", tq_dump_own_attrs);
    for (int i = 0; i < f->meta.n_layers && !rc; i++) {
        char sg[48], dg[32];
        snprintf(sg, sizeof sg, "provenance/layer_%03d", f->src[i]);
        snprintf(dg, sizeof dg, "layer_%03d", i);
        if (H5Lexists(f->file, sg, H5P_DEFAULT) > 0) rc = tq_h5_attrs_copy(f->file, sg, dst, dg, NULL);
    }
    return rc ? tq_error_prefix(rc, "cannot copy the provenance of '%s': ", f->path) : TQ_OK;
}

void tq_codes_close(tq_codes_file *f)
{
    if (!f) return;
    if (f->file >= 0) H5Fclose(f->file);
    free(f->meta.schedule);
    free(f->src);
    free(f->shapes);
    free(f);
}
