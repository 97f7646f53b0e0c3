/* test_dump.c: the tq-kv HDF5 writer and reader (lib/dump.c) — exact round trips in float32 and float16, token
 * subsets, and one check per error path that the message names the file, the object and what was expected.
 * Bad files are made here with the HDF5 C API (the CLI test makes the same kinds with h5py). */
#include "dump.h"
#include "fp16.h"
#include "rng.h"
#include "tq.h"
#include "tq_test.h"

#include <hdf5.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Values with known fp16 behaviour: normals, exact halves, ties, subnormals, overflow-adjacent. */
static void fill(float *x, size_t n, uint64_t seed)
{
    tq_rng r;
    tq_rng_derive(&r, seed, -1, -1, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, x, (long)n);
    for (size_t i = 0; i < n; i++) x[i] *= 3.0f;
}

typedef struct {
    int L, H, HQ, T, D, values;
} shape_cfg;

static tq_layer make_layer(shape_cfg c, int layer)
{
    tq_layer l;
    memset(&l, 0, sizeof l);
    l.s.n_kv_heads = c.H;
    l.s.n_q_heads = c.HQ;
    l.s.n_tokens = c.T;
    l.s.head_dim = c.D;
    l.s.has_values = c.values;
    l.s.has_queries = c.HQ > 0;
    size_t nk = (size_t)c.H * c.T * c.D, nq = (size_t)c.HQ * c.T * c.D;
    l.keys = malloc(nk * sizeof(float));
    fill(l.keys, nk, 100 + layer);
    if (c.values) {
        l.values = malloc(nk * sizeof(float));
        fill(l.values, nk, 200 + layer);
    }
    if (c.HQ) {
        l.queries = malloc(nq * sizeof(float));
        fill(l.queries, nq, 300 + layer);
    }
    return l;
}

static int write_dump(const char *path, shape_cfg c, int dtype)
{
    tq_dump_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.model, sizeof m.model, "test-model");
    snprintf(m.source, sizeof m.source, "test_dump.c");
    snprintf(m.rope, sizeof m.rope, "post");
    m.n_layers = c.L;
    tq_dump_writer *w;
    int rc = tq_dump_create(&w, path, &m, dtype);
    if (rc < 0) return rc;
    for (int l = c.L - 1; l >= 0; l--) { /* any order is allowed */
        tq_layer x = make_layer(c, l);
        rc = tq_dump_write_layer(w, l, &x);
        tq_layer_free(&x);
        if (rc < 0) {
            tq_dump_abort(w);
            return rc;
        }
    }
    return tq_dump_commit(w);
}

/* Max |read - expected| over a tensor; expected = the written float, rounded through fp16 when dtype is F16. */
static double max_diff(const float *got, const float *want, size_t n, int f16, int *exact)
{
    double m = 0;
    *exact = 1;
    for (size_t i = 0; i < n; i++) {
        float w = f16 ? tq_round_half(want[i]) : want[i];
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &w, 4);
        if (a != b) *exact = 0;
        double d = fabs((double)got[i] - (double)w);
        if (d > m) m = d;
    }
    return m;
}

static void test_roundtrip(int dtype)
{
    shape_cfg c = {3, 2, 4, 17, 24, 1};
    const char *p = tmp_path(dtype == TQ_DTYPE_F16 ? "rt16.h5" : "rt32.h5");
    int rc = write_dump(p, c, dtype);
    CHECK(rc == TQ_OK, "write: %s", tq_error_msg());
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", p, (long)getpid());
    CHECK(access(tmpname, F_OK) != 0, "temp file '%s' left behind after commit", tmpname);
    /* no timestamps in object headers: writing the same dump again gives the same bytes. HDF5 stamps whole
     * seconds, so the float32 case waits one second to make a stamped header differ. */
    if (dtype == TQ_DTYPE_F32) sleep(1);
    const char *p2 = tmp_path(dtype == TQ_DTYPE_F16 ? "rt16b.h5" : "rt32b.h5");
    CHECK(write_dump(p2, c, dtype) == TQ_OK, "second write: %s", tq_error_msg());
    FILE *fa = fopen(p, "rb"), *fb = fopen(p2, "rb");
    long same = -1, size = 0;
    if (fa && fb) {
        int ca, cb;
        same = 1;
        do {
            ca = fgetc(fa);
            cb = fgetc(fb);
            if (ca != cb) same = 0;
            size += ca != EOF;
        } while (ca != EOF && cb != EOF);
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    CHECK(same == 1 && size > 0, "two writes of the same dump differ (or are unreadable), %ld bytes", size);
    tq_dump *d;
    rc = tq_dump_open(&d, p);
    CHECK(rc == TQ_OK, "open: %s", tq_error_msg());
    if (rc) return;
    const tq_dump_meta *m = tq_dump_get_meta(d);
    CHECK(m->n_layers == 3 && !strcmp(m->model, "test-model") && !strcmp(m->rope, "post") &&
              !strcmp(m->source, "test_dump.c"), "meta: %d '%s' '%s'", m->n_layers, m->model, m->rope);
    CHECK(m->shape.n_kv_heads == 2 && m->shape.n_q_heads == 4 && m->shape.n_tokens == 17 && m->shape.head_dim == 24 &&
              m->shape.has_values && m->shape.has_queries && m->shape.dtype == dtype, "shape");
    for (int l = 0; l < 3; l++) {
        tq_layer got, want = make_layer(c, l);
        rc = tq_dump_read_layer(d, l, 0, 0, &got);
        CHECK(rc == TQ_OK, "read layer %d: %s", l, tq_error_msg());
        if (rc) { tq_layer_free(&want); continue; }
        size_t nk = (size_t)c.H * c.T * c.D, nq = (size_t)c.HQ * c.T * c.D;
        int ek, ev, eq;
        /* float32 is stored bit for bit; float16 must equal our round-to-nearest-even exactly (tolerance 0): the
         * writer rounds with tq_float_to_half and the reader widens exactly. */
        double dk = max_diff(got.keys, want.keys, nk, dtype == TQ_DTYPE_F16, &ek);
        double dv = max_diff(got.values, want.values, nk, dtype == TQ_DTYPE_F16, &ev);
        double dq = max_diff(got.queries, want.queries, nq, dtype == TQ_DTYPE_F16, &eq);
        CHECK(ek && ev && eq, "layer %d not bit-exact: max diff keys %g values %g queries %g", l, dk, dv, dq);
        /* token subset: the first 5 positions of every head, same bits */
        tq_layer sub;
        rc = tq_dump_read_layer(d, l, 5, 0, &sub);
        CHECK(rc == TQ_OK && sub.s.n_tokens == 5, "subset read: %s", tq_error_msg());
        if (rc == TQ_OK) {
            int same = 1;
            for (int h = 0; h < c.HQ; h++)
                for (int t = 0; t < 5; t++)
                    for (int k = 0; k < c.D; k++) {
                        size_t a = ((size_t)h * 5 + t) * c.D + k, b = ((size_t)h * c.T + t) * c.D + k;
                        if (h < c.H && (sub.keys[a] != got.keys[b] || sub.values[a] != got.values[b])) same = 0;
                        if (sub.queries[a] != got.queries[b]) same = 0;
                    }
            CHECK(same, "layer %d: token subset differs from the first 5 tokens of the full read", l);
        }
        tq_layer_free(&sub);
        tq_layer_free(&got);
        tq_layer_free(&want);
    }
    tq_layer x;
    rc = tq_dump_read_layer(d, 0, 18, 0, &x);
    CHECK(rc == TQ_ERR && strstr(tq_error_msg(), "asked for 18 tokens") && strstr(tq_error_msg(), "has 17"),
          "too many tokens: %s", tq_error_msg());
    rc = tq_dump_read_layer(d, 3, 0, 0, &x);
    CHECK(rc < 0 && strstr(tq_error_msg(), "layer 3 does not exist"), "layer out of range: %s", tq_error_msg());
    tq_dump_close(d);
}

/* fp16 specifics the writer must get right: ties to even, subnormals, signed zero, the top of the range; a value
 * that rounds to inf (65520) is refused naming where it is: tq writes only finite values. */
static void test_f16_values(void)
{
    const float vals[] = {1.0f + 1.0f / 2048, /* tie between 1 and 1+2^-10: rounds to even (1.0) */
                          1.0f + 3.0f / 2048, /* tie: rounds up to 1+2^-9 */
                          5.9604645e-8f,      /* 2^-24, smallest subnormal */
                          2.9802322e-8f,      /* 2^-25: tie with 0, rounds to even (0) */
                          65504.0f,           /* max half */
                          65519.0f,           /* below the 65520 midpoint: rounds down to max half */
                          -0.0f, -2.5f, 1e-3f};
    const float want[] = {1.0f, 1.0f + 2.0f / 1024, 5.9604645e-8f, 0.0f, 65504.0f, 65504.0f, -0.0f, -2.5f,
                          0.0010004044f /* nearest half to 1e-3 */};
    int n = (int)(sizeof vals / sizeof vals[0]);
    tq_dump_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.rope, sizeof m.rope, "none");
    m.n_layers = 1;
    tq_layer l;
    memset(&l, 0, sizeof l);
    l.s.n_kv_heads = 1;
    l.s.n_tokens = 1;
    l.s.head_dim = n;
    l.keys = (float *)vals;
    const char *p = tmp_path("f16vals.h5");
    tq_dump_writer *w;
    CHECK(tq_float_to_half(65520.0f) == 0x7c00u, "65520 rounds to +inf in half");
    float over[9];
    memcpy(over, vals, sizeof over);
    over[5] = 65520.0f;
    l.keys = over;
    int rc = tq_dump_create(&w, p, &m, TQ_DTYPE_F16);
    if (rc == 0) {
        rc = tq_dump_write_layer(w, 0, &l);
        CHECK(rc == TQ_ERR && strstr(tq_error_msg(), "channel 5] is 65520, beyond float16's range"),
              "a value rounding to inf is refused: %s", tq_error_msg());
        tq_dump_abort(w);
    }
    l.keys = (float *)vals;
    rc = tq_dump_create(&w, p, &m, TQ_DTYPE_F16);
    if (rc == 0) rc = tq_dump_write_layer(w, 0, &l);
    if (rc == 0) rc = tq_dump_commit(w);
    CHECK(rc == 0, "write: %s", tq_error_msg());
    tq_dump *d;
    rc = tq_dump_open(&d, p);
    CHECK(rc == 0, "open: %s", tq_error_msg());
    if (rc) return;
    tq_layer got;
    rc = tq_dump_read_layer(d, 0, 0, 1, &got);
    CHECK(rc == 0, "read (allow_nonfinite): %s", tq_error_msg());
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            CHECK(got.keys[i] == want[i] && signbit(got.keys[i]) == signbit(want[i]), "value %d: %.9g -> %.9g, want %.9g",
                  i, vals[i], got.keys[i], want[i]);
        tq_layer_free(&got);
    }
    tq_dump_close(d);
}

/* ---- bad files made with the HDF5 C API ---- */

static hid_t mk_file(const char *p) { return H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); }

static void put_str(hid_t o, const char *name, const char *v, int fixed)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    if (fixed) H5Tset_size(t, strlen(v) + 1);
    else H5Tset_size(t, H5T_VARIABLE);
    hid_t a = H5Acreate2(o, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (fixed) H5Awrite(a, t, v);
    else H5Awrite(a, t, &v);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void put_int(hid_t o, const char *name, hid_t type, long long v)
{
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(o, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a);
    H5Sclose(s);
}

static void put_ds(hid_t g, const char *name, hid_t type, int rank, const hsize_t *dims, float val)
{
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(g, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    if (n && n < (1u << 24)) {
        float *x = malloc(n * sizeof *x);
        for (hsize_t i = 0; i < n; i++) x[i] = val;
        H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
        free(x);
    }
    H5Dclose(ds);
    H5Sclose(s);
}

/* The variants of a small dump; each flag breaks one thing. */
enum {
    B_NONE, B_NOFORMAT, B_WRONGFORMAT, B_NEWVERSION, B_NOLAYERS, B_MISSINGGROUP, B_NOKEYS, B_RANK2, B_VTOKENS,
    B_QDIM, B_GQA, B_ZERO, B_INT32, B_F64, B_HUGE, B_NAN, B_FIXEDSTR, B_INT8ATTR, B_BADROPE, B_VERSTR, B_BF16,
};

/* bfloat16: a 2-byte float with float32's 8 exponent bits — must be refused, not misread as IEEE half */
static hid_t bf16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 7, 8, 0, 7);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 127);
    return t;
}

static const char *make_variant(int v)
{
    char name[32];
    snprintf(name, sizeof name, "bad%02d.h5", v);
    const char *p = tmp_path(name);
    hid_t f = mk_file(p);
    int fixed = v == B_FIXEDSTR;
    if (v != B_NOFORMAT) put_str(f, "tq_format", v == B_WRONGFORMAT ? "tq-codes" : "tq-kv", fixed);
    if (v == B_VERSTR) put_str(f, "tq_format_version", "1", 0);
    else put_int(f, "tq_format_version", v == B_INT8ATTR ? H5T_STD_U8LE : H5T_STD_I64LE, v == B_NEWVERSION ? TQ_DUMP_VERSION + 1 : 1);
    put_str(f, "model", "m", fixed);
    put_str(f, "source", "s", fixed);
    put_str(f, "rope", v == B_BADROPE ? "yes" : "none", fixed);
    if (v != B_NOLAYERS) put_int(f, "n_layers", v == B_INT8ATTR ? H5T_STD_I8LE : H5T_STD_I32LE, 2);
    for (int l = 0; l < 2; l++) {
        if (v == B_MISSINGGROUP && l == 1) break;
        char gn[32];
        snprintf(gn, sizeof gn, "layer_%03d", l);
        hid_t g = H5Gcreate2(f, gn, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t kd[3] = {2, 8, 16}, qd[3] = {4, 8, 16};
        int bad = l == 1; /* break the second layer so per-layer checks are exercised past layer 0 */
        hid_t bf = bf16_type();
        hid_t kt = bad && v == B_INT32 ? H5T_STD_I32LE : bad && v == B_F64 ? H5T_IEEE_F64LE
                   : bad && v == B_BF16 ? bf : H5T_IEEE_F32LE;
        if (!(bad && v == B_NOKEYS)) {
            if (bad && v == B_RANK2) put_ds(g, "keys", kt, 2, (hsize_t[]){2, 128}, 0.5f);
            else if (bad && v == B_ZERO) put_ds(g, "keys", kt, 3, (hsize_t[]){2, 0, 16}, 0.5f);
            else if (bad && v == B_HUGE) put_ds(g, "keys", kt, 3, (hsize_t[]){64, 1 << 20, 128}, 0.5f);
            else put_ds(g, "keys", kt, 3, kd, bad && v == B_NAN ? NAN : 0.5f);
        }
        put_ds(g, "values", H5T_IEEE_F32LE, 3, bad && v == B_VTOKENS ? (hsize_t[]){2, 7, 16} : kd, 0.25f);
        if (bad && v == B_QDIM) put_ds(g, "queries", H5T_IEEE_F32LE, 3, (hsize_t[]){4, 8, 32}, 1.0f);
        else if (bad && v == B_GQA) put_ds(g, "queries", H5T_IEEE_F32LE, 3, (hsize_t[]){3, 8, 16}, 1.0f);
        else put_ds(g, "queries", H5T_IEEE_F32LE, 3, qd, 1.0f);
        H5Tclose(bf);
        H5Gclose(g);
    }
    H5Fclose(f);
    return p;
}

/* Opening (and reading every layer of) `p` fails with TQ_ERR and a message holding every word in `words`
 * ('|'-separated). */
static void expect_error(const char *what, const char *p, const char *words)
{
    tq_dump *d = NULL;
    int rc = tq_dump_open(&d, p);
    if (rc == TQ_OK) {
        tq_layer l;
        for (int i = 0; i < tq_dump_get_meta(d)->n_layers && rc == TQ_OK; i++) {
            rc = tq_dump_read_layer(d, i, 0, 0, &l);
            if (rc == TQ_OK) tq_layer_free(&l);
        }
        tq_dump_close(d);
    } else
        CHECK(d == NULL, "%s: handle returned on failure", what);
    CHECK(rc == TQ_ERR, "%s: status %d, want TQ_ERR (%s)", what, rc, tq_error_msg());
    const char *msg = tq_error_msg();
    char prefix[600];
    snprintf(prefix, sizeof prefix, "cannot read '%s': ", p);
    CHECK(strncmp(msg, prefix, strlen(prefix)) == 0, "%s: message does not start with the file: %s", what, msg);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", words);
    for (char *w = strtok(buf, "|"); w; w = strtok(NULL, "|"))
        CHECK(strstr(msg, w) != NULL, "%s: message lacks '%s': %s", what, w, msg);
}

static void test_errors(void)
{
    expect_error("missing", tmp_path("nope.h5"), "no such file");
    expect_error("directory", dir, "is a directory");
    const char *p = tmp_path("empty.h5");
    FILE *f = fopen(p, "wb");
    fclose(f);
    expect_error("empty", p, "empty file");
    p = tmp_path("random.h5");
    f = fopen(p, "wb");
    tq_rng r;
    tq_rng_derive(&r, 7, -1, -1, TQ_PURPOSE_TEST);
    for (int i = 0; i < 4096; i++) fputc((int)(tq_rng_u32(&r) & 0xff), f);
    fclose(f);
    expect_error("random bytes", p, "not an HDF5 file");
    /* truncations of a valid dump: the signature half-present, superblock, metadata, mid-data */
    char good[512];
    snprintf(good, sizeof good, "%s", tmp_path("rt32.h5"));
    struct stat st;
    CHECK(stat(good, &st) == 0, "rt32.h5 exists");
    long cuts[] = {4, 100, 1000, (long)st.st_size / 2, (long)st.st_size - 1};
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "trunc%d.h5", i);
        const char *tp = tmp_path(name);
        FILE *in = fopen(good, "rb"), *out = fopen(tp, "wb");
        for (long k = 0; k < cuts[i]; k++) fputc(fgetc(in), out);
        fclose(in);
        fclose(out);
        char what[64];
        snprintf(what, sizeof what, "truncated at %ld", cuts[i]);
        /* past the 8-byte signature HDF5 reads the superblock, whose end-of-file address is the full size */
        char want[128];
        snprintf(want, sizeof want, "file is truncated: %ld bytes, its HDF5 superblock says %ld", cuts[i],
                 (long)st.st_size);
        expect_error(what, tp, cuts[i] < 8 ? "not an HDF5 file" : want);
    }
    expect_error("no tq_format", make_variant(B_NOFORMAT), "'tq_format' is missing|\"tq-kv\"");
    expect_error("wrong format", make_variant(B_WRONGFORMAT), "\"tq-codes\", expected \"tq-kv\"");
    expect_error("newer version", make_variant(B_NEWVERSION), "tq_format_version is 3|newer|upgrade");
    expect_error("version as string", make_variant(B_VERSTR), "'tq_format_version' is a string, expected an integer");
    expect_error("no n_layers", make_variant(B_NOLAYERS), "'n_layers' is missing");
    expect_error("missing group", make_variant(B_MISSINGGROUP), "group '/layer_001' is missing");
    expect_error("no keys", make_variant(B_NOKEYS), "'/layer_001/keys' is missing");
    expect_error("rank 2", make_variant(B_RANK2),
                 "dataset '/layer_001/keys' has rank 2, expected 3 [heads, tokens, dim]");
    expect_error("value tokens", make_variant(B_VTOKENS), "'/layer_001/values' has shape [2, 7, 16]|[2, 8, 16]");
    expect_error("query dim", make_variant(B_QDIM), "'/layer_001/queries'|head_dim 32|head_dim 16");
    expect_error("gqa", make_variant(B_GQA), "'/layer_001/queries' has 3 heads|multiple of the 2 kv heads");
    expect_error("zero dim", make_variant(B_ZERO), "'/layer_001/keys' has shape [2, 0, 16]|>= 1");
    expect_error("int32", make_variant(B_INT32), "'/layer_001/keys' has type int32|expected float16 or float32");
    expect_error("huge", make_variant(B_HUGE), "'/layer_001/keys' has shape [64, 1048576, 128]|2^31");
    expect_error("nan", make_variant(B_NAN),
                 "layer 1 has 256 non-finite values (256 nan, 0 inf)|nan in '/layer_001/keys' at head 0, token 0, "
                 "channel 0");
    expect_error("bfloat16", make_variant(B_BF16), "'/layer_001/keys' has a 2-byte float type that is not IEEE "
                 "half (8 exponent, 7 mantissa bits; bfloat16?)");
    expect_error("bad rope", make_variant(B_BADROPE), "'rope' is \"yes\"|\"post\", \"pre\" or \"none\"");

    /* accepted variants: fixed-length strings, 8-bit integer attributes, float64 data (converted) */
    int ok_variants[] = {B_NONE, B_FIXEDSTR, B_INT8ATTR, B_F64};
    for (int i = 0; i < 4; i++) {
        tq_dump *d;
        p = make_variant(ok_variants[i]);
        int rc = tq_dump_open(&d, p);
        CHECK(rc == TQ_OK, "variant %d should load: %s", ok_variants[i], tq_error_msg());
        if (rc) continue;
        const tq_dump_meta *m = tq_dump_get_meta(d);
        CHECK(m->n_layers == 2 && !strcmp(m->model, "m") && !strcmp(m->rope, "none"), "variant %d meta", ok_variants[i]);
        tq_layer l;
        rc = tq_dump_read_layer(d, 1, 0, 0, &l);
        CHECK(rc == TQ_OK && l.keys[0] == 0.5f && l.values[0] == 0.25f && l.queries[0] == 1.0f,
              "variant %d layer 1 values: %s", ok_variants[i], tq_error_msg());
        if (rc == TQ_OK) tq_layer_free(&l);
        if (ok_variants[i] == B_F64) CHECK(tq_dump_layer_shape(d, 1)->dtype == TQ_DTYPE_F64, "float64 dtype reported");
        tq_dump_close(d);
    }
}

static void test_writer_errors(void)
{
    tq_dump_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.rope, sizeof m.rope, "post");
    m.n_layers = 2;
    tq_dump_writer *w;
    int rc = tq_dump_create(&w, tmp_path("no/such/dir/x.h5"), &m, TQ_DTYPE_F32);
    CHECK(rc == TQ_ERR && strstr(tq_error_msg(), "No such file or directory"), "create in missing folder: %s", tq_error_msg());
    const char *p = tmp_path("partial.h5");
    rc = tq_dump_create(&w, p, &m, TQ_DTYPE_F32);
    CHECK(rc == TQ_OK, "create: %s", tq_error_msg());
    if (rc) return;
    shape_cfg c = {2, 1, 0, 3, 4, 0};
    tq_layer l = make_layer(c, 0);
    CHECK(tq_dump_write_layer(w, 0, &l) == TQ_OK, "write layer 0");
    CHECK(tq_dump_write_layer(w, 0, &l) == TQ_ERR_USAGE && strstr(tq_error_msg(), "written twice"), "twice");
    CHECK(tq_dump_write_layer(w, 2, &l) == TQ_ERR_USAGE, "layer out of range");
    tq_layer_free(&l);
    rc = tq_dump_commit(w); /* layer 1 missing: refused, nothing left behind */
    CHECK(rc == TQ_ERR_USAGE && strstr(tq_error_msg(), "layer 1 of 2 was never written"), "commit: %s", tq_error_msg());
    CHECK(access(p, F_OK) != 0, "no output after a refused commit");
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", p, (long)getpid());
    CHECK(access(tmpname, F_OK) != 0, "temp file removed after a refused commit");
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/test_dump.XXXXXX", getenv("TQ_TMP") ? getenv("TQ_TMP") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    tq_h5_quiet();
    test_roundtrip(TQ_DTYPE_F32);
    test_roundtrip(TQ_DTYPE_F16);
    test_f16_values();
    test_errors();
    test_writer_errors();
    if (getenv("KEEP")) { printf("kept %s\n", dir); TQ_TEST_END(); }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    TQ_TEST_END();
}
