/* dump.c: reading and writing tq-kv HDF5 dumps (datasets/FORMAT.md). The reader accepts what h5py writes (vlen or
 * fixed strings, any integer width, IEEE half as h5py declares it, float64) and turns every deviation into one
 * message naming the file, the object and what was expected; the writer goes through a temp name and a rename. */
#include "dump.h"
#include "tmpout.h"

#include "fp16.h"
#include "tq.h"

#include <errno.h>
#include <float.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tq_dump {
    hid_t file;
    char path[1024];
    tq_dump_meta meta;
    tq_layer_shape *shapes;  /* n_layers entries */
    tq_attn_spec *specs;     /* n_layers entries: each layer's attention (v1 defaults where absent) */
    int *dtypes;             /* n_layers x 3: keys, values, queries (0 when absent) */
};

struct tq_dump_writer {
    hid_t file;
    hid_t f16;               /* the IEEE half file/memory type (h5py reads it back as float16) */
    hid_t gcpl, dcpl;        /* creation properties without timestamps: same inputs -> same bytes */
    char path[TQ_PATH_MAX], tmp[TQ_PATH_MAX];
    tq_dump_meta meta;
    int dtype;
    unsigned char *written;  /* per layer: written once */
    tq_attn_spec *specs;     /* per layer: the attention attributes to write, where has_spec */
    unsigned char *has_spec;
    int *head_dims;          /* per written layer: its head dim (attn_scale's default) */
    int deflate;             /* 0: contiguous datasets; 1..9: chunked, shuffle + deflate at that level */
};

static const char *const tensor_names[3] = {"keys", "values", "queries"};

const char *const tq_dump_own_attrs[] = {"tq_format", "tq_format_version", "model", "source", "rope", "n_layers",
                                         NULL};

int64_t tq_dump_h5(const tq_dump *d) { return d->file; }
int64_t tq_dump_writer_h5(const tq_dump_writer *w) { return w->file; }

typedef struct {
    hid_t dst;
    const char *const *skip;
    char failed[256];
} attrs_copy_ctx;

/* one attribute: read in its native memory type, written with the file type it had (a copy, so a committed type
 * of the source file does not tie the new attribute to it); variable-length data read by HDF5 is reclaimed */
static herr_t attr_copy_one(hid_t obj, const char *name, const H5A_info_t *info, void *data)
{
    attrs_copy_ctx *c = data;
    for (const char *const *s = c->skip; s && *s; s++)
        if (!strcmp(*s, name)) return 0;
    if (H5Aexists(c->dst, name) > 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = -1, mt = -1, sp = -1, b = -1;
    void *buf = NULL;
    int ok = 0, vlen = 0;
    if (a < 0 || (sp = H5Aget_space(a)) < 0 || (t = H5Aget_type(a)) < 0) goto done;
    H5T_class_t cls = H5Tget_class(t);
    if (cls == H5T_REFERENCE) { ok = 1; goto done; }
    hid_t ft = t;
    if ((t = H5Tcopy(ft)) < 0) { t = ft; goto done; }
    H5Tclose(ft);
    if ((mt = H5Tget_native_type(t, H5T_DIR_DEFAULT)) < 0) goto done;
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(mt);
    if (n < 0 || sz == 0 || (uint64_t)n * sz > ((uint64_t)1 << 30)) goto done; /* 1 GiB: far above any real attribute */
    if (!(buf = tq_calloc(n ? (size_t)n : 1, sz))) goto done;
    vlen = H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tdetect_class(mt, H5T_STRING) > 0;
    if (H5Aread(a, mt, buf) < 0) { vlen = 0; goto done; }
    if ((b = H5Acreate2(c->dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 || H5Awrite(b, mt, buf) < 0) goto done;
    ok = 1;
done:
    if (buf && vlen) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    free(buf);
    if (b >= 0) H5Aclose(b);
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    if (ok) return 0;
    snprintf(c->failed, sizeof c->failed, "%s", name);
    return -1;
}

int tq_h5_attrs_copy(int64_t src, const char *src_obj, int64_t dst, const char *dst_obj, const char *const *skip)
{
    hid_t so = H5Oopen(src, src_obj, H5P_DEFAULT), dobj = -1;
    if (so < 0) return tq_error_set(TQ_ERR, "cannot open '%s' to copy its attributes", src_obj);
    htri_t has = H5Lexists(dst, dst_obj, H5P_DEFAULT);
    if (!strcmp(dst_obj, "/") || has > 0) dobj = H5Oopen(dst, dst_obj, H5P_DEFAULT);
    else if (has == 0) {
        hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE); /* no timestamps: the same inputs give the same bytes */
        if (gcpl >= 0 && H5Pset_obj_track_times(gcpl, 0) >= 0)
            dobj = H5Gcreate2(dst, dst_obj, H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (gcpl >= 0) H5Pclose(gcpl);
    }
    if (dobj < 0) {
        H5Oclose(so);
        return tq_error_set(TQ_ERR, "cannot open or create '%s' to copy attributes into", dst_obj);
    }
    attrs_copy_ctx c = {dobj, skip, ""};
    hsize_t idx = 0;
    /* by name: the same input gives the same output bytes */
    herr_t r = H5Aiterate2(so, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_copy_one, &c);
    H5Oclose(dobj);
    H5Oclose(so);
    if (r < 0)
        return c.failed[0] ? tq_error_set(TQ_ERR, "cannot copy attribute '%s' of '%s'", c.failed, src_obj)
                           : tq_error_set(TQ_ERR, "cannot list the attributes of '%s'", src_obj);
    return TQ_OK;
}

int tq_h5_commit(int64_t file, char *tmp, const char *path)
{
    if (H5Fclose((hid_t)file) < 0)
        return tq_error_set(TQ_ERR, "cannot write '%s': closing '%s' failed (disk full?)", path, tmp);
    return tq_tmp_commit(tmp, path);
}

void tq_h5_quiet(void)
{
    static int done;
    if (!done) {
        /* No HDF5 atexit hook: after a write fails (disk full) H5Fclose fails and leaves the file half-closed, and
         * HDF5 1.10's own shutdown then crashes in H5F__close_cb. Every tq handle is closed explicitly, so there is
         * nothing for that hook to do. Must precede the first HDF5 call (a later call just fails, harmlessly). */
        H5dont_atexit();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

const char *tq_dtype_name(int dtype)
{
    switch (dtype) {
    case TQ_DTYPE_F16: return "float16";
    case TQ_DTYPE_F32: return "float32";
    case TQ_DTYPE_F64: return "float64";
    default: return "none";
    }
}

/* IEEE binary16 little-endian, built the way h5py builds it: float32 layout narrowed to 1+5+10 bits, bias 15. */
static hid_t f16_type_create(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* ---------------------------------------------------------------------------------------------------------------
 * attributes */

/* Read a string attribute (scalar or one-element, variable- or fixed-length). Returns 0, 1 when absent, or TQ_ERR
 * with a message (no file prefix). */
static int attr_read_str(hid_t obj, const char *where, const char *name, char *out, size_t cap)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return tq_error_set(TQ_ERR, "cannot query %s attribute \'%s\'", where, name);
    if (!ex) return 1;
    int rc = TQ_ERR;
    hid_t a = -1, t = -1, s = -1, mt = -1;
    char *buf = NULL;
    if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) {
        tq_error_set(TQ_ERR, "cannot open %s attribute \'%s\' (file corrupt?)", where, name);
        goto done;
    }
    if (H5Tget_class(t) != H5T_STRING) {
        tq_error_set(TQ_ERR, "%s attribute \'%s\' is not a string, expected a string", where, name);
        goto done;
    }
    if (H5Sget_simple_extent_npoints(s) != 1) {
        tq_error_set(TQ_ERR, "%s attribute \'%s\' holds %lld strings, expected one", where, name,
                     (long long)H5Sget_simple_extent_npoints(s));
        goto done;
    }
    htri_t vl = H5Tis_variable_str(t);
    if (vl < 0) goto read_fail;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) goto read_fail;
    if (vl) {
        char *p = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &p) < 0) goto read_fail;
        snprintf(out, cap, "%s", p ? p : "");
        H5free_memory(p);
    } else {
        size_t n = H5Tget_size(t);
        if (n == 0 || n > (1u << 20)) goto read_fail;
        if (!(buf = calloc(n + 1, 1))) goto read_fail;
        /* Read with a null-padded memory type of the file's size so nullterm/nullpad/spacepad all come back as-is. */
        if (H5Tset_size(mt, n) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0 || H5Aread(a, mt, buf) < 0)
            goto read_fail;
        size_t len = strnlen(buf, n);
        while (len > 0 && buf[len - 1] == ' ') len--;  /* spacepad (Fortran-style) strings */
        buf[len] = 0;
        snprintf(out, cap, "%s", buf);
    }
    rc = 0;
    goto done;
read_fail:
    tq_error_set(TQ_ERR, "cannot read %s attribute \'%s\' as a string (file corrupt?)", where, name);
done:
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* Read an integer attribute of any integer width/sign. Returns 0, 1 when absent, or TQ_ERR. */
static int attr_read_int(hid_t obj, const char *where, const char *name, long long *out)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return tq_error_set(TQ_ERR, "cannot query %s attribute \'%s\'", where, name);
    if (!ex) return 1;
    int rc = TQ_ERR;
    hid_t a = -1, t = -1, s = -1;
    if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) {
        tq_error_set(TQ_ERR, "cannot open %s attribute \'%s\' (file corrupt?)", where, name);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(t);
    if (cls != H5T_INTEGER) {
        tq_error_set(TQ_ERR, "%s attribute \'%s\' is a %s, expected an integer", where, name,
                     cls == H5T_STRING ? "string" : cls == H5T_FLOAT ? "float" : "non-integer");
        goto done;
    }
    if (H5Sget_simple_extent_npoints(s) != 1) {
        tq_error_set(TQ_ERR, "%s attribute \'%s\' holds %lld values, expected one integer", where, name,
                     (long long)H5Sget_simple_extent_npoints(s));
        goto done;
    }
    /* An unsigned 64-bit value above LLONG_MAX would be clipped by the conversion; read it as unsigned first. */
    if (H5Tget_sign(t) == H5T_SGN_NONE && H5Tget_size(t) >= 8) {
        unsigned long long u;
        if (H5Aread(a, H5T_NATIVE_ULLONG, &u) < 0) goto read_fail;
        *out = u > (unsigned long long)LLONG_MAX ? LLONG_MAX : (long long)u;
    } else if (H5Aread(a, H5T_NATIVE_LLONG, out) < 0)
        goto read_fail;
    rc = 0;
    goto done;
read_fail:
    tq_error_set(TQ_ERR, "cannot read %s attribute \'%s\' as an integer (file corrupt?)", where, name);
done:
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* Read a numeric attribute (float or integer of any width) as double. Returns 0, 1 when absent, or TQ_ERR. */
static int attr_read_double(hid_t obj, const char *where, const char *name, double *out)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return tq_error_set(TQ_ERR, "cannot query %s attribute '%s'", where, name);
    if (!ex) return 1;
    int rc = TQ_ERR;
    hid_t a = -1, t = -1, s = -1;
    if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) {
        tq_error_set(TQ_ERR, "cannot open %s attribute '%s' (file corrupt?)", where, name);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(t);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
        tq_error_set(TQ_ERR, "%s attribute '%s' is a %s, expected a number", where, name,
                     cls == H5T_STRING ? "string" : "non-numeric type");
        goto done;
    }
    if (H5Sget_simple_extent_npoints(s) != 1) {
        tq_error_set(TQ_ERR, "%s attribute '%s' holds %lld values, expected one number", where, name,
                     (long long)H5Sget_simple_extent_npoints(s));
        goto done;
    }
    if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0) {
        tq_error_set(TQ_ERR, "cannot read %s attribute '%s' as a number (file corrupt?)", where, name);
        goto done;
    }
    rc = 0;
done:
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* The format-2 attention attributes of an open /layer_NNN group (datasets/FORMAT.md); each absent one takes its v1
 * default (global, 1/sqrt(head_dim), no soft-cap, base unknown). Errors carry no file prefix. */
static int layer_attn_read(hid_t g, const char *gname, int head_dim, tq_attn_spec *sp)
{
    char where[48];
    snprintf(where, sizeof where, "'/%s'", gname);
    *sp = (tq_attn_spec){0, 1.0 / sqrt((double)head_dim), 0, 0};
    long long w;
    int r = attr_read_int(g, where, "sliding_window", &w);
    if (r < 0) return r;
    if (r == 0 && (w < 0 || w > INT_MAX))
        return tq_error_set(TQ_ERR, "%s attribute 'sliding_window' is %lld, expected 0 (global attention) or a "
                            "window length 1..%d", where, w, INT_MAX);
    if (r == 0) sp->window = (int)w;
    static const char *const names[3] = {"attn_scale", "attn_softcap", "rope_base"};
    static const char *const expect[3] = {"a finite number > 0 (scores = attn_scale * q.k)",
                                          "a finite number >= 0 (0: no soft-cap)",
                                          "a finite number >= 0 (0: unknown)"};
    double *dst[3] = {&sp->scale, &sp->softcap, &sp->rope_base};
    for (int i = 0; i < 3; i++) {
        double x;
        if ((r = attr_read_double(g, where, names[i], &x)) < 0) return r;
        if (r == 1) continue;
        if (!isfinite(x) || x < 0 || (i == 0 && x == 0))
            return tq_error_set(TQ_ERR, "%s attribute '%s' is %g, expected %s", where, names[i], x, expect[i]);
        *dst[i] = x;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * reading */

/* Inspect /layer_NNN/<name>: rank 3, positive dims within limits, supported dtype. Returns 0 (present), 1 (absent),
 * or TQ_ERR. */
/* What HDF5 would read back silently wrong or not at all, refused at open: a compression filter this HDF5 library
 * lacks (h5py's LZF: the read fails mid-run), and storage never written (unwritten chunks and unallocated contiguous
 * data read as the fill value, zeros, with no error; a sparse 2^31-element dataset also costs gigabytes to read). */
static int dataset_storage_check(hid_t ds, const char *gname, const char *name, const hsize_t dims[3])
{
    hid_t dcpl = H5Dget_create_plist(ds);
    if (dcpl < 0) return tq_error_set(TQ_ERR, "cannot read the properties of '/%s/%s' (file corrupt?)", gname, name);
    int rc = TQ_OK;
    int nf = H5Pget_nfilters(dcpl);
    for (int i = 0; i < nf && !rc; i++) {
        unsigned flags = 0, cd[8];
        size_t ncd = 8;
        char fname[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof fname, fname, NULL);
        if (id < 0) rc = tq_error_set(TQ_ERR, "cannot read the filters of '/%s/%s' (file corrupt?)", gname, name);
        else if (H5Zfilter_avail(id) <= 0)
            rc = tq_error_set(TQ_ERR, "dataset '/%s/%s' is compressed with filter %d ('%s'%s), which this HDF5 "
                              "library lacks; rewrite it with gzip (h5repack -f GZIP=4, or h5py compression=\"gzip\")",
                              gname, name, (int)id, fname[0] ? fname : "unknown", id == 32000 ? ", h5py's LZF" : "");
    }
    H5D_layout_t lay = H5Pget_layout(dcpl);
    if (!rc && lay == H5D_CHUNKED) {
        hsize_t cdims[3], want = 1, have = 0;
        hid_t sp = H5Dget_space(ds);
        if (H5Pget_chunk(dcpl, 3, cdims) == 3 && sp >= 0 && H5Dget_num_chunks(ds, sp, &have) >= 0) {
            for (int i = 0; i < 3; i++) want *= (dims[i] + cdims[i] - 1) / (cdims[i] ? cdims[i] : 1);
            if (have < want)
                rc = tq_error_set(TQ_ERR, "dataset '/%s/%s' has %llu of its %llu chunks written (the rest would read "
                                  "as zeros): an incomplete dump?", gname, name, (unsigned long long)have,
                                  (unsigned long long)want);
        }
        if (sp >= 0) H5Sclose(sp);
    } else if (!rc && lay == H5D_CONTIGUOUS) {
        H5D_space_status_t st;
        if (H5Dget_space_status(ds, &st) >= 0 && st == H5D_SPACE_STATUS_NOT_ALLOCATED)
            rc = tq_error_set(TQ_ERR, "dataset '/%s/%s' was never written (it would read as zeros): an incomplete "
                              "dump?", gname, name);
    }
    H5Pclose(dcpl);
    return rc;
}

static int dataset_inspect(hid_t g, const char *gname, const char *name, hsize_t dims[3], int *dtype)
{
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex < 0) return tq_error_set(TQ_ERR, "cannot look up '/%s/%s' (file corrupt?)", gname, name);
    if (!ex) return 1;
    int rc = TQ_ERR;
    hid_t o = -1, s = -1, t = -1;
    if ((o = H5Oopen(g, name, H5P_DEFAULT)) < 0) {
        tq_error_set(TQ_ERR, "cannot open '/%s/%s' (file truncated or corrupt?)", gname, name);
        goto done;
    }
    if (H5Iget_type(o) != H5I_DATASET) {
        tq_error_set(TQ_ERR, "'/%s/%s' is not a dataset, expected a dataset [heads, tokens, dim]", gname, name);
        goto done;
    }
    if ((s = H5Dget_space(o)) < 0 || (t = H5Dget_type(o)) < 0) {
        tq_error_set(TQ_ERR, "cannot read the shape of dataset '/%s/%s' (file corrupt?)", gname, name);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(s);
    if (rank != 3) {
        tq_error_set(TQ_ERR, "dataset '/%s/%s' has rank %d, expected 3 [heads, tokens, dim]", gname, name, rank);
        goto done;
    }
    if (H5Sget_simple_extent_dims(s, dims, NULL) < 0) {
        tq_error_set(TQ_ERR, "cannot read the shape of dataset '/%s/%s' (file corrupt?)", gname, name);
        goto done;
    }
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0) {
        tq_error_set(TQ_ERR, "dataset '/%s/%s' has shape [%llu, %llu, %llu], expected every dimension >= 1", gname,
                     name, (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2]);
        goto done;
    }
    /* One dataset is read whole into memory as float: bound it by TQ_DUMP_MAX_ELEMS (and each dim by int). */
    unsigned long long n = 1;
    int over = 0;
    for (int i = 0; i < 3; i++) {
        if (dims[i] > (hsize_t)INT_MAX || __builtin_mul_overflow(n, (unsigned long long)dims[i], &n)) over = 1;
    }
    if (over || n > TQ_DUMP_MAX_ELEMS) {
        tq_error_set(TQ_ERR, "dataset '/%s/%s' has shape [%llu, %llu, %llu] (%s), expected at most 2^31 elements "
                     "per dataset", gname, name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                     (unsigned long long)dims[2], over ? "element count overflows" : "more than 2^31 elements");
        goto done;
    }
    if (dataset_storage_check(o, gname, name, dims) < 0) goto done;
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    *dtype = 0;
    if (cls == H5T_FLOAT && size == 2) {
        size_t spos, epos, esize, mpos, msize;
        if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && esize == 5 && msize == 10 &&
            H5Tget_ebias(t) == 15)
            *dtype = TQ_DTYPE_F16;
        else {
            tq_error_set(TQ_ERR, "dataset '/%s/%s' has a 2-byte float type that is not IEEE half (%zu exponent, "
                         "%zu mantissa bits; bfloat16?), expected float16 or float32", gname, name, esize, msize);
            goto done;
        }
    } else if (cls == H5T_FLOAT && size == 4)
        *dtype = TQ_DTYPE_F32;
    else if (cls == H5T_FLOAT && size == 8)
        *dtype = TQ_DTYPE_F64;
    else {
        const char *what = cls == H5T_INTEGER ? (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int")
                           : cls == H5T_FLOAT ? "float" : cls == H5T_STRING ? "string" : cls == H5T_COMPOUND ?
                           "compound" : "non-numeric";
        if (cls == H5T_INTEGER || cls == H5T_FLOAT)
            tq_error_set(TQ_ERR, "dataset '/%s/%s' has type %s%zu, expected float16 or float32 (float64 is "
                         "converted)", gname, name, what, 8 * size);
        else
            tq_error_set(TQ_ERR, "dataset '/%s/%s' has type %s, expected float16 or float32", gname, name, what);
        goto done;
    }
    rc = 0;
done:
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (o >= 0) H5Oclose(o);
    return rc;
}

/* Check one /layer_NNN group and fill its shape. Errors carry no file prefix. */
static int layer_inspect(hid_t file, int layer, tq_layer_shape *sh, int dt[3], tq_attn_spec *sp)
{
    char gname[32];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    htri_t ex = H5Lexists(file, gname, H5P_DEFAULT);
    if (ex < 0) return tq_error_set(TQ_ERR, "cannot look up group '/%s' (file corrupt?)", gname);
    if (!ex)
        return tq_error_set(TQ_ERR, "group '/%s' is missing, expected one group per layer up to n_layers",
                            gname);
    hid_t g = H5Oopen(file, gname, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot open group '/%s' (file truncated or corrupt?)", gname);
    int rc = TQ_ERR;
    if (H5Iget_type(g) != H5I_GROUP) {
        tq_error_set(TQ_ERR, "'/%s' is not a group, expected a group holding keys [heads, tokens, dim]", gname);
        goto done;
    }
    hsize_t dims[3][3];
    int present[3];
    for (int i = 0; i < 3; i++) {
        int r = dataset_inspect(g, gname, tensor_names[i], dims[i], &dt[i]);
        if (r < 0) goto done;
        present[i] = r == 0;
        if (!present[i]) dt[i] = 0;
    }
    if (!present[0]) {
        tq_error_set(TQ_ERR, "dataset '/%s/keys' is missing, expected keys [n_kv_heads, n_tokens, head_dim]",
                     gname);
        goto done;
    }
    if (present[1] && (dims[1][0] != dims[0][0] || dims[1][1] != dims[0][1] || dims[1][2] != dims[0][2])) {
        tq_error_set(TQ_ERR, "dataset '/%s/values' has shape [%llu, %llu, %llu], expected the keys' shape "
                     "[%llu, %llu, %llu]", gname, (unsigned long long)dims[1][0], (unsigned long long)dims[1][1],
                     (unsigned long long)dims[1][2], (unsigned long long)dims[0][0],
                     (unsigned long long)dims[0][1], (unsigned long long)dims[0][2]);
        goto done;
    }
    if (present[2]) {
        if (dims[2][1] != dims[0][1] || dims[2][2] != dims[0][2]) {
            tq_error_set(TQ_ERR, "dataset '/%s/queries' has %llu tokens x head_dim %llu, expected the keys' "
                         "%llu tokens x head_dim %llu", gname, (unsigned long long)dims[2][1],
                         (unsigned long long)dims[2][2], (unsigned long long)dims[0][1],
                         (unsigned long long)dims[0][2]);
            goto done;
        }
        if (dims[2][0] % dims[0][0] != 0) {
            tq_error_set(TQ_ERR, "dataset '/%s/queries' has %llu heads, expected a multiple of the %llu kv heads "
                         "(GQA: n_q_heads %% n_kv_heads == 0)", gname, (unsigned long long)dims[2][0],
                         (unsigned long long)dims[0][0]);
            goto done;
        }
    }
    sh->n_kv_heads = (int)dims[0][0];
    sh->n_tokens = (int)dims[0][1];
    sh->head_dim = (int)dims[0][2];
    sh->has_values = present[1];
    sh->has_queries = present[2];
    sh->n_q_heads = present[2] ? (int)dims[2][0] : 0;
    sh->dtype = dt[0];
    rc = layer_attn_read(g, gname, sh->head_dim, sp);
done:
    H5Oclose(g);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------------
 * files an HDF5 file reads besides itself */

typedef struct {
    const char *top;   /* the file being walked (relative targets resolve against its folder) */
    tq_h5_source_fn fn;
    void *ctx;
    int stop;
} sources_walk;

/* HDF5 looks for a relative external-link or virtual-dataset file first beside the file that names it, then as given
 * (relative to the working folder); both are candidates. */
static int source_report(sources_walk *w, const char *obj, const char *kind, const char *file)
{
    char cand[2][TQ_PATH_MAX];
    int n = 0;
    if (file[0] == '/') snprintf(cand[n++], TQ_PATH_MAX, "%s", file);
    else {
        const char *slash = strrchr(w->top, '/');
        if (slash) snprintf(cand[n++], TQ_PATH_MAX, "%.*s/%s", (int)(slash - w->top), w->top, file);
        snprintf(cand[n++], TQ_PATH_MAX, "%s", file);
    }
    const char *c[2] = {cand[0], n > 1 ? cand[1] : NULL};
    return w->fn(obj, kind, file, c, n, w->ctx);
}

static herr_t sources_visit(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    sources_walk *w = data;
    if (info->type == H5L_TYPE_EXTERNAL) {
        size_t n = info->u.val_size;
        if (n == 0 || n > (1u << 16)) return 0;
        char *buf = malloc(n);
        const char *file = NULL, *objp = NULL;
        unsigned flags = 0;
        if (buf && H5Lget_val(g, name, buf, n, H5P_DEFAULT) >= 0 &&
            H5Lunpack_elink_val(buf, n, &flags, &file, &objp) >= 0 && file)
            w->stop = source_report(w, name, "an external link to", file);
        free(buf);
        return w->stop ? 1 : 0;
    }
    if (info->type != H5L_TYPE_HARD) return 0;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) return 0;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) return 0;
    hid_t dcpl = H5Dget_create_plist(ds);
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_VIRTUAL) {
        size_t count = 0;
        if (H5Pget_virtual_count(dcpl, &count) >= 0)
            for (size_t i = 0; i < count && !w->stop; i++) {
                char file[TQ_PATH_MAX];
                ssize_t len = H5Pget_virtual_filename(dcpl, i, file, sizeof file);
                if (len <= 0 || (size_t)len >= sizeof file) continue;
                if (!strcmp(file, ".")) continue; /* the file itself */
                w->stop = source_report(w, name, "a virtual dataset whose source is", file);
            }
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Dclose(ds);
    return w->stop ? 1 : 0;
}

int tq_h5_sources(int64_t file, const char *path, tq_h5_source_fn fn, void *ctx)
{
    tq_h5_quiet();
    sources_walk w = {path, fn, ctx, 0};
    if (H5Lvisit((hid_t)file, H5_INDEX_NAME, H5_ITER_NATIVE, sources_visit, &w) < 0 && !w.stop) return 0;
    return w.stop;
}

int tq_h5_sources_of(const char *path, tq_h5_source_fn fn, void *ctx)
{
    tq_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || H5Fis_hdf5(path) <= 0) return 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    int rc = tq_h5_sources(f, path, fn, ctx);
    H5Fclose(f);
    return rc;
}

/* The reader's check: every external-link target and virtual source is a regular file that exists. A FIFO would
 * block the open forever, a device would be read as data, and a missing virtual source reads as zeros (its fill
 * value) with no error. */
static int source_check(const char *obj, const char *kind, const char *file, const char *const *cand, int n,
                        void *ctx)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(cand[i], &st) != 0) continue;
        if (!S_ISREG(st.st_mode)) {
            tq_error_set(TQ_ERR, "'/%s' is %s '%s', which is not a regular file (a FIFO or device would block or "
                         "read garbage)", obj, kind, cand[i]);
            return 1;
        }
        return 0;
    }
    tq_error_set(TQ_ERR, "'/%s' is %s '%s', which does not exist%s", obj, kind, file,
                 kind[0] == 'a' && kind[2] == 'v' ? " (HDF5 would read it as zeros)" : "");
    return 1;
}

int tq_h5_check_sources(int64_t file, const char *path)
{
    return tq_h5_sources(file, path, source_check, NULL) ? TQ_ERR : TQ_OK;
}

/* Whether the file looks like HDF5 before handing it to H5Fopen, so each kind of wrong file gets its own message. */
static int file_precheck(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return tq_error_set(TQ_ERR, "no such file (check the path)");
        return tq_error_set(TQ_ERR, "%s", strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return tq_error_set(TQ_ERR, "is a directory, expected an HDF5 dump file");
    if (!S_ISREG(st.st_mode)) return tq_error_set(TQ_ERR, "not a regular file, expected an HDF5 dump file");
    if (access(path, R_OK) != 0) return tq_error_set(TQ_ERR, "%s", strerror(errno));
    if (st.st_size == 0) return tq_error_set(TQ_ERR, "empty file (0 bytes), expected an HDF5 dump");
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0)
        return tq_error_set(TQ_ERR, "not an HDF5 file (no HDF5 signature; truncated or another format?), "
                            "expected a tq-kv dump (datasets/FORMAT.md)");
    return 0;
}

/* HDF5 says why an open failed only on its error stack; find the truncation report ("truncated file: eof = N, ...
 * stored_eof = M") so the message can give both sizes. */
typedef struct { long long eof, stored; int locked; } trunc_info;

static herr_t find_truncation(unsigned n, const H5E_error2_t *e, void *data)
{
    trunc_info *t = data;
    if (e->desc && strstr(e->desc, "unable to lock file")) t->locked = 1;
    const char *p = e->desc ? strstr(e->desc, "truncated file") : NULL;
    if (p) {
        const char *a = strstr(p, "eof = "), *b = strstr(p, "stored_eof = ");
        if (a) t->eof = atoll(a + 6);
        if (b) t->stored = atoll(b + 13);
        if (t->stored <= 0) t->stored = 1;
    }
    return 0;
}

int tq_h5_open_error(void)
{
    trunc_info t = {-1, 0, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_truncation, &t);
    if (t.locked) return tq_error_set(TQ_ERR, TQ_H5_LOCKED_MSG);
    if (t.stored > 0)
        return tq_error_set(TQ_ERR, "file is truncated: %lld bytes, its HDF5 superblock says %lld (copy or "
                            "download incomplete?)", t.eof, t.stored);
    return tq_error_set(TQ_ERR, "HDF5 cannot open it (file truncated or corrupt?)");
}

static int dump_open_inner(tq_dump *d, const char *path)
{
    if (file_precheck(path) < 0) return TQ_ERR;
    d->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (d->file < 0) return tq_h5_open_error();
    if (tq_h5_check_sources(d->file, path) < 0) return TQ_ERR;
    tq_dump_meta *m = &d->meta;
    char fmt[64];
    int r = attr_read_str(d->file, "root", "tq_format", fmt, sizeof fmt);
    if (r < 0) return r;
    if (r == 1)
        return tq_error_set(TQ_ERR, "root attribute 'tq_format' is missing, expected \"" TQ_DUMP_FORMAT "\" "
                            "(not a tq dump? see datasets/FORMAT.md)");
    if (strcmp(fmt, TQ_DUMP_FORMAT) != 0)
        return tq_error_set(TQ_ERR, "root attribute 'tq_format' is \"%s\", expected \"" TQ_DUMP_FORMAT "\"%s", fmt,
                            strcmp(fmt, "tq-codes") == 0 ? " (this is a codes file; tq dequantize turns it into a "
                            "dump)" : "");
    long long v;
    r = attr_read_int(d->file, "root", "tq_format_version", &v);
    if (r < 0) return r;
    if (r == 1) return tq_error_set(TQ_ERR, "root attribute 'tq_format_version' is missing, expected %d",
                                    TQ_DUMP_VERSION);
    if (v > TQ_DUMP_VERSION)
        return tq_error_set(TQ_ERR, "tq_format_version is %lld, newer than the %d this tq reads (upgrade tq)", v,
                            TQ_DUMP_VERSION);
    if (v < 1) return tq_error_set(TQ_ERR, "tq_format_version is %lld, expected %d", v, TQ_DUMP_VERSION);
    m->version = (int)v;
    r = attr_read_int(d->file, "root", "n_layers", &v);
    if (r < 0) return r;
    if (r == 1) return tq_error_set(TQ_ERR, "root attribute 'n_layers' is missing, expected the number of layers");
    if (v < 1 || v > TQ_DUMP_MAX_LAYERS)
        return tq_error_set(TQ_ERR, "root attribute 'n_layers' is %lld, expected 1..%d", v, TQ_DUMP_MAX_LAYERS);
    m->n_layers = (int)v;
    r = attr_read_str(d->file, "root", "rope", m->rope, sizeof m->rope);
    if (r < 0) return r;
    if (r == 1)
        return tq_error_set(TQ_ERR, "root attribute 'rope' is missing, expected \"post\", \"pre\" or \"none\"");
    if (strcmp(m->rope, "post") && strcmp(m->rope, "pre") && strcmp(m->rope, "none")) {
        char full[64];
        attr_read_str(d->file, "root", "rope", full, sizeof full);
        return tq_error_set(TQ_ERR, "root attribute 'rope' is \"%s\", expected \"post\", \"pre\" or \"none\"", full);
    }
    /* model and source describe provenance; a hand-made dump may leave them out. */
    if ((r = attr_read_str(d->file, "root", "model", m->model, sizeof m->model)) < 0) return r;
    if (r == 1) snprintf(m->model, sizeof m->model, "unknown");
    if ((r = attr_read_str(d->file, "root", "source", m->source, sizeof m->source)) < 0) return r;
    if (r == 1) snprintf(m->source, sizeof m->source, "unknown");
    /* format 2: the architecture the dumper ran ("llama", "gemma3", ...); v1 files do not say */
    if ((r = attr_read_str(d->file, "root", "architecture", m->architecture, sizeof m->architecture)) < 0) return r;
    if (r == 1 || !m->architecture[0]) snprintf(m->architecture, sizeof m->architecture, "unknown");

    d->shapes = tq_calloc((size_t)m->n_layers, sizeof *d->shapes);
    d->dtypes = tq_calloc((size_t)m->n_layers * 3, sizeof *d->dtypes);
    d->specs = tq_calloc((size_t)m->n_layers, sizeof *d->specs);
    if (!d->shapes || !d->dtypes || !d->specs) return TQ_ERR_NOMEM;
    for (int l = 0; l < m->n_layers; l++)
        if (layer_inspect(d->file, l, &d->shapes[l], &d->dtypes[3 * l], &d->specs[l]) < 0) return TQ_ERR;
    m->shape = d->shapes[0];
    return TQ_OK;
}

int tq_dump_open(tq_dump **out, const char *path)
{
    tq_h5_quiet();
    *out = NULL;
    tq_dump *d = tq_calloc(1, sizeof *d);
    if (!d) return TQ_ERR_NOMEM;
    d->file = -1;
    snprintf(d->path, sizeof d->path, "%s", path);
    int rc = dump_open_inner(d, path);
    if (rc < 0) {
        tq_dump_close(d);
        return tq_error_prefix(rc, "cannot read '%s': ", path);
    }
    *out = d;
    return TQ_OK;
}

const tq_dump_meta *tq_dump_get_meta(const tq_dump *d) { return &d->meta; }

const tq_layer_shape *tq_dump_layer_shape(const tq_dump *d, int layer)
{
    if (layer < 0 || layer >= d->meta.n_layers) return NULL;
    return &d->shapes[layer];
}

const char *tq_dump_path(const tq_dump *d) { return d->path; }

int tq_dump_layer_attn(const tq_dump *d, int layer, tq_attn_spec *out)
{
    if (layer < 0 || layer >= d->meta.n_layers)
        return tq_error_set(TQ_ERR_USAGE, "cannot read '%s': layer %d does not exist (the dump has %d layers)",
                            d->path, layer, d->meta.n_layers);
    *out = d->specs[layer];
    return TQ_OK;
}

void tq_dump_close(tq_dump *d)
{
    if (!d) return;
    if (d->file >= 0) H5Fclose(d->file);
    free(d->shapes);
    free(d->dtypes);
    free(d->specs);
    free(d);
}

void tq_layer_free(tq_layer *l)
{
    if (!l) return;
    free(l->keys);
    free(l->values);
    free(l->queries);
    l->keys = l->values = l->queries = NULL;
}

/* Read heads [h0, h0 + heads) x [0, tokens) x dim of /layer_NNN/<name> as float into out (a hyperslab: only those
 * bytes leave the file). */
static int dataset_read(hid_t file, int layer, const char *name, int dtype, int h0, int heads, int tokens, int dim,
                        float *out)
{
    char dpath[64];
    snprintf(dpath, sizeof dpath, "/layer_%03d/%s", layer, name);
    size_t n = (size_t)heads * (size_t)tokens * (size_t)dim;
    hsize_t start[3] = {(hsize_t)h0, 0, 0}, count[3] = {(hsize_t)heads, (hsize_t)tokens, (hsize_t)dim};
    void *tmp = NULL;
    if (dtype != TQ_DTYPE_F32 && !(tmp = tq_malloc(n * (dtype == TQ_DTYPE_F16 ? 2 : 8)))) return TQ_ERR_NOMEM;
    int rc = TQ_ERR;
    hid_t ds = -1, fs = -1, ms = -1, mt = -1;
    if ((ds = H5Dopen2(file, dpath, H5P_DEFAULT)) < 0 || (fs = H5Dget_space(ds)) < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        (ms = H5Screate_simple(3, count, NULL)) < 0)
        goto done;
    if (dtype == TQ_DTYPE_F32) {
        if (H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out) < 0) goto done;
    } else if (dtype == TQ_DTYPE_F16) {
        /* Raw halves converted here (exact), not by HDF5's soft float conversion. */
        uint16_t *h = tmp;
        if ((mt = f16_type_create()) < 0 || H5Dread(ds, mt, ms, fs, H5P_DEFAULT, h) < 0) goto done;
        for (size_t i = 0; i < n; i++) out[i] = tq_half_to_float(h[i]);
    } else {
        /* float64: values beyond float range become +-inf (then reported as non-finite), not clipped. */
        double *x = tmp;
        if (H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, x) < 0) goto done;
        for (size_t i = 0; i < n; i++) /* out-of-range double -> float is undefined in C: make the inf explicit */
            out[i] = isfinite(x[i]) && fabs(x[i]) > FLT_MAX ? copysignf(INFINITY, (float)(x[i] > 0 ? 1 : -1))
                                                            : (float)x[i];
    }
    rc = TQ_OK;
done:
    if (rc < 0) tq_error_set(TQ_ERR, "cannot read dataset '%s' (file truncated or corrupt?)", dpath);
    free(tmp);
    if (mt >= 0) H5Tclose(mt);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

int tq_dump_read_layer(tq_dump *d, int layer, int tokens, int allow_nonfinite, tq_layer *out)
{
    return tq_dump_read_heads(d, layer, 0, layer >= 0 && layer < d->meta.n_layers ? d->shapes[layer].n_kv_heads : 0,
                              tokens, allow_nonfinite, out);
}

int tq_dump_read_heads(tq_dump *d, int layer, int h0, int nh, int tokens, int allow_nonfinite, tq_layer *out)
{
    tq_h5_quiet();
    memset(out, 0, sizeof *out);
    if (layer < 0 || layer >= d->meta.n_layers)
        return tq_error_set(TQ_ERR_USAGE, "cannot read '%s': layer %d does not exist (the dump has %d layers)",
                            d->path, layer, d->meta.n_layers);
    const tq_layer_shape *sh = &d->shapes[layer];
    if (tokens < 0 || tokens > sh->n_tokens)
        return tq_error_set(TQ_ERR, "cannot read '%s': asked for %d tokens, layer %d has %d", d->path, tokens,
                            layer, sh->n_tokens);
    if (h0 < 0 || nh < 1 || h0 + nh > sh->n_kv_heads)
        return tq_error_set(TQ_ERR_USAGE, "cannot read '%s': kv heads %d..%d of layer %d do not exist (it has %d)",
                            d->path, h0, h0 + nh - 1, layer, sh->n_kv_heads);
    int T = tokens > 0 ? tokens : sh->n_tokens, G = sh->n_q_heads / sh->n_kv_heads;
    out->s = *sh;
    out->s.n_tokens = T;
    out->s.n_kv_heads = nh;
    out->s.n_q_heads = sh->n_q_heads ? nh * G : 0;
    int heads[3] = {nh, sh->has_values ? nh : 0, out->s.n_q_heads}, first[3] = {h0, h0, h0 * G};
    float **bufs[3] = {&out->keys, &out->values, &out->queries};
    long long bad = 0, nan = 0;
    int first_t = -1, first_h = 0, first_tok = 0, first_c = 0, first_nan = 0;
    for (int i = 0; i < 3; i++) {
        if (!heads[i]) continue;
        size_t n = (size_t)heads[i] * (size_t)T * (size_t)sh->head_dim;
        float *x = *bufs[i] = tq_malloc(n * sizeof *x);
        if (!x) {
            tq_layer_free(out);
            return TQ_ERR_NOMEM;
        }
        int r = dataset_read(d->file, layer, tensor_names[i], d->dtypes[3 * layer + i], first[i], heads[i], T,
                             sh->head_dim, x);
        if (r < 0) {
            tq_layer_free(out);
            return tq_error_prefix(r, "cannot read '%s': ", d->path);
        }
        if (allow_nonfinite) continue;
        for (size_t j = 0; j < n; j++) {
            if (isfinite(x[j])) continue;
            if (!bad++) {
                first_t = i;
                first_nan = isnan(x[j]);
                first_c = (int)(j % (size_t)sh->head_dim);
                first_tok = (int)(j / (size_t)sh->head_dim % (size_t)T);
                first_h = first[i] + (int)(j / ((size_t)sh->head_dim * (size_t)T));
            }
            nan += isnan(x[j]) != 0;
        }
    }
    if (bad) {
        tq_layer_free(out);
        return tq_error_set(TQ_ERR, "cannot read '%s': layer %d has %lld non-finite values (%lld nan, %lld inf); "
                            "the first is %s in '/layer_%03d/%s' at head %d, token %d, channel %d", d->path, layer,
                            bad, nan, bad - nan, first_nan ? "nan" : "inf", layer, tensor_names[first_t], first_h,
                            first_tok, first_c);
    }
    return TQ_OK;
}

/* ---------------------------------------------------------------------------------------------------------------
 * writing */

static int attr_write_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = -1, s = -1, a = -1;
    int rc = TQ_ERR;
    /* Variable-length UTF-8, as h5py writes Python str: h5py hands it back as str, not bytes. */
    if ((t = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
        (s = H5Screate(H5S_SCALAR)) < 0 || (a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, t, &val) < 0)
        tq_error_set(TQ_ERR, "cannot write attribute '%s'", name);
    else
        rc = 0;
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* One scalar attribute of file type ftype from *val in memory type mtype. */
static int attr_write_scalar(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val)
{
    hid_t s = -1, a = -1;
    int rc = TQ_ERR;
    if ((s = H5Screate(H5S_SCALAR)) < 0 || (a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, mtype, val) < 0)
        tq_error_set(TQ_ERR, "cannot write attribute '%s'", name);
    else
        rc = 0;
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int attr_write_int(hid_t obj, const char *name, long long val)
{
    return attr_write_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &val);
}

int tq_dump_create(tq_dump_writer **out, const char *path, const tq_dump_meta *meta, int dtype)
{
    tq_h5_quiet();
    *out = NULL;
    if (dtype != TQ_DTYPE_F16 && dtype != TQ_DTYPE_F32)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': dtype must be float16 or float32", path);
    if (meta->n_layers < 1 || meta->n_layers > TQ_DUMP_MAX_LAYERS)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': n_layers is %d, expected 1..%d", path, meta->n_layers,
                            TQ_DUMP_MAX_LAYERS);
    if (strcmp(meta->rope, "post") && strcmp(meta->rope, "pre") && strcmp(meta->rope, "none"))
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': rope is \"%s\", expected post, pre or none", path,
                            meta->rope);
    tq_dump_writer *w = tq_calloc(1, sizeof *w);
    if (!w) return TQ_ERR_NOMEM;
    w->file = w->f16 = w->gcpl = w->dcpl = -1;
    w->meta = *meta;
    w->dtype = dtype;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->written = tq_calloc((size_t)meta->n_layers, 1);
    w->has_spec = tq_calloc((size_t)meta->n_layers, 1);
    w->specs = tq_calloc((size_t)meta->n_layers, sizeof *w->specs);
    w->head_dims = tq_calloc((size_t)meta->n_layers, sizeof *w->head_dims);
    if (!w->written || !w->has_spec || !w->specs || !w->head_dims) {
        free(w->written);
        free(w->has_spec);
        free(w->specs);
        free(w->head_dims);
        free(w);
        return TQ_ERR_NOMEM;
    }
    if ((w->f16 = f16_type_create()) < 0) {
        tq_error_set(TQ_ERR, "cannot write '%s': cannot build the float16 HDF5 type", path);
        goto fail;
    }
    /* HDF5 stamps object headers with times by default; off everywhere so a dump is a function of its inputs. */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 || (w->gcpl = H5Pcreate(H5P_GROUP_CREATE)) < 0 ||
        H5Pset_obj_track_times(w->gcpl, 0) < 0 || (w->dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_obj_track_times(w->dcpl, 0) < 0) {
        if (fcpl >= 0) H5Pclose(fcpl);
        tq_error_set(TQ_ERR, "cannot write '%s': cannot set up HDF5 creation properties", path);
        goto fail;
    }
    int fd = tq_tmp_create(path, w->tmp);
    if (fd < 0) {
        H5Pclose(fcpl);
        goto fail;
    }
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (w->file < 0) {
        close(fd);
        tq_error_set(TQ_ERR, "cannot write '%s': cannot create '%s' (does the folder exist and is it writable?)",
                     path, w->tmp);
        goto fail;
    }
    int vr = tq_tmp_verify(fd, w->tmp, path);
    close(fd);
    if (vr) goto fail;
    if (attr_write_str(w->file, "tq_format", TQ_DUMP_FORMAT) < 0 ||
        attr_write_int(w->file, "tq_format_version", TQ_DUMP_VERSION) < 0 ||
        attr_write_str(w->file, "model", meta->model) < 0 || attr_write_str(w->file, "source", meta->source) < 0 ||
        attr_write_str(w->file, "rope", meta->rope) < 0 ||
        attr_write_int(w->file, "n_layers", meta->n_layers) < 0 ||
        (meta->architecture[0] && strcmp(meta->architecture, "unknown") &&
         attr_write_str(w->file, "architecture", meta->architecture) < 0)) {
        tq_error_prefix(TQ_ERR, "cannot write '%s': ", path);
        goto fail;
    }
    *out = w;
    return TQ_OK;
fail:
    tq_dump_abort(w);
    return TQ_ERR;
}

static int attr_write_double(hid_t obj, const char *name, double val)
{
    return attr_write_scalar(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &val);
}

/* sliding_window (int64), attn_scale, attn_softcap, rope_base (float64) on an open layer group */
static int layer_attn_write(hid_t g, const tq_attn_spec *a, int head_dim)
{
    if (attr_write_int(g, "sliding_window", a->window) < 0 ||
        attr_write_double(g, "attn_scale", tq_attn_spec_scale(a, head_dim)) < 0 ||
        attr_write_double(g, "attn_softcap", a->softcap) < 0 || attr_write_double(g, "rope_base", a->rope_base) < 0)
        return TQ_ERR;
    return TQ_OK;
}

int tq_dump_set_layer_attn(tq_dump_writer *w, int layer, const tq_attn_spec *spec)
{
    if (layer < 0 || layer >= w->meta.n_layers)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d is outside 0..%d", w->path, layer,
                            w->meta.n_layers - 1);
    if (w->has_spec[layer])
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': the attention of layer %d is set twice", w->path, layer);
    int rc = tq_attn_spec_check(spec);
    if (rc < 0) return tq_error_prefix(rc, "cannot write '%s': layer %d: ", w->path, layer);
    w->specs[layer] = *spec;
    w->has_spec[layer] = 1;
    if (!w->written[layer]) return TQ_OK; /* tq_dump_write_layer writes them with the group */
    char gname[32];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    hid_t g = H5Gopen2(w->file, gname, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot write '%s': cannot open group '/%s'", w->path, gname);
    rc = layer_attn_write(g, spec, w->head_dims[layer]);
    H5Gclose(g);
    return rc < 0 ? tq_error_prefix(rc, "cannot write '%s': /%s: ", w->path, gname) : TQ_OK;
}

static int dataset_write(tq_dump_writer *w, hid_t g, const char *name, int heads, int tokens, int dim,
                         const float *x)
{
    hsize_t dims[3] = {(hsize_t)heads, (hsize_t)tokens, (hsize_t)dim};
    size_t n = (size_t)heads * (size_t)tokens * (size_t)dim;
    hid_t s = -1, ds = -1;
    uint16_t *h = NULL;
    int rc = TQ_ERR;
    hid_t ft = w->dtype == TQ_DTYPE_F16 ? w->f16 : H5T_IEEE_F32LE, dcpl = w->dcpl;
    if (w->deflate) {
        /* One chunk per head and up to 1024 positions (512 KiB of f16 at head_dim 256): big enough that deflate sees
         * long runs of one tensor, small enough for HDF5's default 1 MiB chunk cache. The shuffle filter groups the
         * bytes of each element by significance, so the sign/exponent bytes compress apart from the noisy low
         * mantissa bytes. */
        hsize_t chunk[3] = {1, (hsize_t)(tokens < 1024 ? tokens : 1024), (hsize_t)dim};
        if ((dcpl = H5Pcopy(w->dcpl)) < 0 || H5Pset_chunk(dcpl, 3, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
            H5Pset_deflate(dcpl, (unsigned)w->deflate) < 0)
            goto done;
    }
    if ((s = H5Screate_simple(3, dims, NULL)) < 0 ||
        (ds = H5Dcreate2(g, name, ft, s, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        goto done;
    if (w->dtype == TQ_DTYPE_F16) {
        if (!(h = tq_malloc(n * sizeof *h))) {
            rc = TQ_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n; i++) h[i] = tq_float_to_half(x[i]);
        if (H5Dwrite(ds, w->f16, H5S_ALL, H5S_ALL, H5P_DEFAULT, h) < 0) goto done;
    } else if (H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        goto done;
    rc = TQ_OK;
done:
    if (rc == TQ_ERR) tq_error_set(TQ_ERR, "cannot write dataset '%s' (disk full?)", name);
    free(h);
    if (ds >= 0) H5Dclose(ds);
    if (s >= 0) H5Sclose(s);
    if (dcpl >= 0 && dcpl != w->dcpl) H5Pclose(dcpl);
    return rc;
}

int tq_dump_set_compression(tq_dump_writer *w, int level)
{
    if (level < 0 || level > 9)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': compression level %d, expected 0..9", w->path, level);
    if (level && (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0 || H5Zfilter_avail(H5Z_FILTER_SHUFFLE) <= 0))
        return tq_error_set(TQ_ERR, "cannot write '%s': this HDF5 library has no deflate/shuffle filter", w->path);
    for (int l = 0; l < w->meta.n_layers; l++)
        if (w->written[l])
            return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': compression set after layer %d was written",
                                w->path, l);
    w->deflate = level;
    return TQ_OK;
}

/* Every value tq writes is finite in the file's dtype: a NaN, an Inf or a float16 overflow (beyond 65504, e.g. a
 * reconstruction of values near the top of the float16 range, or decoded from non-finite side information) would
 * otherwise be written with exit 0 and refused by the next reader. The first offender is named. */
static int values_writable(const tq_dump_writer *w, int layer, const char *name, const float *x, int heads,
                           int tokens, int dim)
{
    size_t n = (size_t)heads * (size_t)tokens * (size_t)dim;
    int f16 = w->dtype == TQ_DTYPE_F16;
    for (size_t i = 0; i < n; i++) {
        int bad = !isfinite(x[i]) || (f16 && (tq_float_to_half(x[i]) & 0x7c00u) == 0x7c00u);
        if (!bad) continue;
        long h = (long)(i / ((size_t)tokens * (size_t)dim)), t = (long)(i / (size_t)dim % (size_t)tokens),
             c = (long)(i % (size_t)dim);
        if (!isfinite(x[i]))
            return tq_error_set(TQ_ERR, "cannot write '%s': layer %d %s [head %ld, token %ld, channel %ld] is %g: tq "
                                "writes only finite values (non-finite input or side information?)", w->path, layer,
                                name, h, t, c, (double)x[i]);
        return tq_error_set(TQ_ERR, "cannot write '%s': layer %d %s [head %ld, token %ld, channel %ld] is %g, beyond "
                            "float16's range (max 65504): the data sits at the top of float16, where a quantization "
                            "error overflows; write float32 instead", w->path, layer, name, h, t, c, (double)x[i]);
    }
    return TQ_OK;
}

int tq_dump_write_layer(tq_dump_writer *w, int layer, const tq_layer *l)
{
    const tq_layer_shape *s = &l->s;
    if (layer < 0 || layer >= w->meta.n_layers)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d is outside 0..%d", w->path, layer,
                            w->meta.n_layers - 1);
    if (w->written[layer])
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d written twice", w->path, layer);
    if (s->n_kv_heads < 1 || s->n_tokens < 1 || s->head_dim < 1 || !l->keys ||
        (s->has_values && !l->values) || (s->has_queries && (!l->queries || s->n_q_heads < 1 ||
                                                             s->n_q_heads % s->n_kv_heads != 0)))
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d has an invalid shape (%d kv heads, %d q heads, "
                            "%d tokens, dim %d)", w->path, layer, s->n_kv_heads, s->n_q_heads, s->n_tokens,
                            s->head_dim);
    for (int t = 0; t < 2 + s->has_queries; t++) {
        if (t == 1 && !s->has_values) continue;
        int rc = values_writable(w, layer, tensor_names[t], t == 0 ? l->keys : t == 1 ? l->values : l->queries,
                                 t == 2 ? s->n_q_heads : s->n_kv_heads, s->n_tokens, s->head_dim);
        if (rc) return rc;
    }
    char gname[32];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    hid_t g = H5Gcreate2(w->file, gname, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot write '%s': cannot create group '/%s'", w->path, gname);
    int rc = dataset_write(w, g, "keys", s->n_kv_heads, s->n_tokens, s->head_dim, l->keys);
    if (rc == 0 && s->has_values) rc = dataset_write(w, g, "values", s->n_kv_heads, s->n_tokens, s->head_dim, l->values);
    if (rc == 0 && s->has_queries)
        rc = dataset_write(w, g, "queries", s->n_q_heads, s->n_tokens, s->head_dim, l->queries);
    if (rc == 0 && w->has_spec[layer]) rc = layer_attn_write(g, &w->specs[layer], s->head_dim);
    if (H5Gclose(g) < 0 && rc == 0) rc = tq_error_set(TQ_ERR, "cannot close group '/%s'", gname);
    if (rc < 0) return tq_error_prefix(rc, "cannot write '%s': /%s: ", w->path, gname);
    w->written[layer] = 1;
    w->head_dims[layer] = s->head_dim;
    return TQ_OK;
}

int tq_dump_attr_str(tq_dump_writer *w, const char *name, const char *val)
{
    return attr_write_str(w->file, name, val) < 0 ? tq_error_prefix(TQ_ERR, "cannot write '%s': ", w->path) : TQ_OK;
}

static int attr_write_num(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v, int n, int scalar)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL), a = -1;
    int rc = TQ_ERR;
    if (s >= 0 && (a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 && H5Awrite(a, mtype, v) >= 0)
        rc = TQ_OK;
    else
        tq_error_set(TQ_ERR, "cannot write attribute '%s'", name);
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    return rc;
}

int tq_dump_attr_ints(tq_dump_writer *w, const char *name, const int64_t *v, int n)
{
    if (n < 1) return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': attribute '%s' is empty", w->path, name);
    if (attr_write_num(w->file, name, H5T_STD_I64LE, H5T_NATIVE_INT64, v, n, 0) < 0)
        return tq_error_prefix(TQ_ERR, "cannot write '%s': ", w->path);
    return TQ_OK;
}

int tq_dump_attr_double(tq_dump_writer *w, const char *name, double v)
{
    if (attr_write_num(w->file, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, 1, 1) < 0)
        return tq_error_prefix(TQ_ERR, "cannot write '%s': ", w->path);
    return TQ_OK;
}

static int layer_attr(tq_dump_writer *w, int layer, const char *name, hid_t ft, hid_t mt, const void *v)
{
    if (layer < 0 || layer >= w->meta.n_layers || !w->written[layer])
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d has no group yet", w->path, layer);
    char gname[32];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    hid_t g = H5Gopen2(w->file, gname, H5P_DEFAULT);
    if (g < 0) return tq_error_set(TQ_ERR, "cannot write '%s': cannot open group '/%s'", w->path, gname);
    int rc = attr_write_num(g, name, ft, mt, v, 1, 1);
    H5Gclose(g);
    return rc < 0 ? tq_error_prefix(TQ_ERR, "cannot write '%s': /%s: ", w->path, gname) : TQ_OK;
}

int tq_dump_layer_attr_double(tq_dump_writer *w, int layer, const char *name, double v)
{
    return layer_attr(w, layer, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

int tq_dump_layer_attr_int(tq_dump_writer *w, int layer, const char *name, long long v)
{
    return layer_attr(w, layer, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}

int tq_dump_commit(tq_dump_writer *w)
{
    for (int l = 0; l < w->meta.n_layers; l++)
        if (!w->written[l]) {
            tq_error_set(TQ_ERR_USAGE, "cannot write '%s': layer %d of %d was never written", w->path, l,
                         w->meta.n_layers);
            tq_dump_abort(w);
            return TQ_ERR_USAGE;
        }
    int rc = tq_h5_commit(w->file, w->tmp, w->path);
    w->file = -1;
    tq_dump_abort(w); /* on success tmp is renamed away: abort only releases the types and properties */
    return rc;
}

void tq_dump_abort(tq_dump_writer *w)
{
    if (!w) return;
    if (w->file >= 0) H5Fclose(w->file);
    if (w->f16 >= 0) H5Tclose(w->f16);
    if (w->gcpl >= 0) H5Pclose(w->gcpl);
    if (w->dcpl >= 0) H5Pclose(w->dcpl);
    tq_tmp_discard(w->tmp);
    free(w->written);
    free(w->has_spec);
    free(w->specs);
    free(w->head_dims);
    free(w);
}
