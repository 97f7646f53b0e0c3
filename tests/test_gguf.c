/* test_gguf.c: the GGUF reader on a file built here byte by byte (every value type, arrays of strings, nested
 * arrays, tensors at aligned offsets), on every truncation and on targeted corruptions of it, and on the two bundled
 * real models when fetched (scripts/get_models.sh; skipped otherwise). With arguments it is the driver the Python
 * check tests/py/test_gguf_dequant.py compares against the `gguf` package:
 *   test_gguf --blocks TYPE IN OUT       dequantize the raw blocks in file IN, write float32 to OUT
 *   test_gguf --hashes MODEL [MAX]       per tensor: name, type, elements, position-weighted hash of its floats
 *                                        (of its first and last rows only when it has more than MAX elements)
 *   test_gguf --tensor MODEL NAME OUT    one tensor's floats to OUT
 *   test_gguf --gold-blocks DIR          the golden test's blocks, DIR/<type id>.bin (tests/test_gguf_golden.h) */
#include "tq_test.h"

#include <stdint.h>
#include <unistd.h>

#include "fp16.h"
#include "gguf.h"
#include "rng.h"
#include "tq.h"

/* ---------------------------------------------------------------- a little GGUF writer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t k)
{
    if (b->n + k > b->cap) {
        b->cap = (b->n + k) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, k);
    b->n += k;
}
static void u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void u32(buf *b, uint32_t v) { for (int i = 0; i < 4; i++) u8(b, (uint8_t)(v >> 8 * i)); }
static void u64(buf *b, uint64_t v) { for (int i = 0; i < 8; i++) u8(b, (uint8_t)(v >> 8 * i)); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void key(buf *b, const char *k, uint32_t type) { str(b, k); u32(b, type); }
static void pad_to(buf *b, size_t align) { while (b->n % align) u8(b, 0); }

/* Offsets of the fields the corruption tests overwrite, recorded while writing. */
typedef struct {
    size_t version, n_tensors, n_kv, bool_val, nested_type, strarr_n, align_val, t0_ndims, t0_dim0, t0_type,
        t0_offset, t1_name, data_start;
} layout;

#define N_ROWS 3
#define ROW 64 /* two Q8_0 blocks */

/* 15 keys: one of every scalar type, a string, an array of strings, an array of arrays of u16 and of strings,
 * general.alignment 64; 2 tensors: "a" f32 [ROW, N_ROWS], "b" q8_0 [ROW, N_ROWS] with known values. */
static buf build(layout *L, int version)
{
    buf b = {0};
    put(&b, "GGUF", 4);
    L->version = b.n; u32(&b, (uint32_t)version);
    L->n_tensors = b.n; u64(&b, 2);
    L->n_kv = b.n; u64(&b, 15);
    key(&b, "t.u8", TQ_GGUF_U8); u8(&b, 200);
    key(&b, "t.i8", TQ_GGUF_I8); u8(&b, 0x80); /* -128 */
    key(&b, "t.u16", TQ_GGUF_U16); u8(&b, 0x34); u8(&b, 0x12);
    key(&b, "t.i16", TQ_GGUF_I16); u8(&b, 0xfe); u8(&b, 0xff); /* -2 */
    key(&b, "t.u32", TQ_GGUF_U32); u32(&b, 4000000000u);
    key(&b, "t.i32", TQ_GGUF_I32); u32(&b, (uint32_t)-7);
    float f = 1.5f; uint32_t fb; memcpy(&fb, &f, 4);
    key(&b, "t.f32", TQ_GGUF_F32); u32(&b, fb);
    key(&b, "t.bool", TQ_GGUF_BOOL); L->bool_val = b.n; u8(&b, 1);
    key(&b, "t.u64", TQ_GGUF_U64); u64(&b, UINT64_MAX);
    key(&b, "t.i64", TQ_GGUF_I64); u64(&b, (uint64_t)INT64_MIN);
    double d = -0.25; uint64_t db; memcpy(&db, &d, 8);
    key(&b, "t.f64", TQ_GGUF_F64); u64(&b, db);
    key(&b, "general.architecture", TQ_GGUF_STRING); str(&b, "llama");
    key(&b, "tokens", TQ_GGUF_ARRAY); u32(&b, TQ_GGUF_STRING); L->strarr_n = b.n; u64(&b, 3);
    str(&b, "<s>"); str(&b, ""); str(&b, "h\xc3\xa9llo");
    key(&b, "nested", TQ_GGUF_ARRAY); L->nested_type = b.n; u32(&b, TQ_GGUF_ARRAY); u64(&b, 2);
    u32(&b, TQ_GGUF_U16); u64(&b, 2); u8(&b, 1); u8(&b, 0); u8(&b, 2); u8(&b, 0);
    u32(&b, TQ_GGUF_STRING); u64(&b, 1); str(&b, "x");
    /* 14 keys announced, 13 written so far: alignment last */
    key(&b, "general.alignment", TQ_GGUF_U32); L->align_val = b.n; u32(&b, 64);
    /* tensors */
    str(&b, "a"); L->t0_ndims = b.n; u32(&b, 2); L->t0_dim0 = b.n; u64(&b, ROW); u64(&b, N_ROWS);
    L->t0_type = b.n; u32(&b, TQ_GGML_F32); L->t0_offset = b.n; u64(&b, 0);
    L->t1_name = b.n; str(&b, "b"); u32(&b, 2); u64(&b, ROW); u64(&b, N_ROWS); u32(&b, TQ_GGML_Q8_0);
    u64(&b, 768); /* "a" takes 64 * 3 * 4 = 768 bytes, a multiple of 64 */
    pad_to(&b, 64);
    L->data_start = b.n;
    for (int i = 0; i < ROW * N_ROWS; i++) {
        float v = (float)i * 0.5f - 3.0f; uint32_t vb; memcpy(&vb, &v, 4);
        u32(&b, vb);
    }
    /* q8_0: block k has scale 2^-k (exact in fp16) and quants i - 16 */
    for (int k = 0; k < ROW * N_ROWS / 32; k++) {
        uint16_t h = tq_float_to_half(ldexpf(1.0f, -k));
        u8(&b, (uint8_t)h); u8(&b, (uint8_t)(h >> 8));
        for (int i = 0; i < 32; i++) u8(&b, (uint8_t)(int8_t)(i - 16));
    }
    return b;
}

static int streq(tq_gguf_str s, const char *want) { return s.len == strlen(want) && !memcmp(s.s, want, s.len); }

static void test_good(int version)
{
    layout L;
    buf b = build(&L, version);
    tq_gguf *g = NULL;
    int rc = tq_gguf_open_buffer(b.p, b.n, "mem.gguf", &g);
    CHECK(rc == TQ_OK, "open: %s", tq_error_msg());
    if (rc) { free(b.p); return; }
    CHECK(tq_gguf_version(g) == (uint32_t)version, "version");
    CHECK(tq_gguf_n_kv(g) == 15 && tq_gguf_n_tensors(g) == 2, "counts");
    int64_t v;
    double x;
    CHECK(tq_gguf_get_int(g, "t.u8", &v) == 0 && v == 200, "u8");
    CHECK(tq_gguf_get_int(g, "t.i8", &v) == 0 && v == -128, "i8");
    CHECK(tq_gguf_get_int(g, "t.u16", &v) == 0 && v == 0x1234, "u16");
    CHECK(tq_gguf_get_int(g, "t.i16", &v) == 0 && v == -2, "i16");
    CHECK(tq_gguf_get_int(g, "t.u32", &v) == 0 && v == 4000000000LL, "u32");
    CHECK(tq_gguf_get_int(g, "t.i32", &v) == 0 && v == -7, "i32");
    CHECK(tq_gguf_get_int(g, "t.bool", &v) == 0 && v == 1, "bool");
    CHECK(tq_gguf_get_int(g, "t.i64", &v) == 0 && v == INT64_MIN, "i64");
    tq_error_clear();
    CHECK(tq_gguf_get_int(g, "t.u64", &v) == TQ_ERR && strstr(tq_error_msg(), "t.u64"), "u64 beyond int64: %s",
          tq_error_msg());
    CHECK(tq_gguf_get_float(g, "t.u64", &x) == 0 && x == 18446744073709551615.0, "u64 as float");
    CHECK(tq_gguf_get_float(g, "t.f32", &x) == 0 && x == 1.5, "f32");
    CHECK(tq_gguf_get_float(g, "t.f64", &x) == 0 && x == -0.25, "f64");
    CHECK(tq_gguf_get_float(g, "t.i32", &x) == 0 && x == -7, "int as float");
    CHECK(tq_gguf_get_int(g, "t.f32", &v) == TQ_ERR && strstr(tq_error_msg(), "'t.f32'"), "float as int refused");
    CHECK(tq_gguf_get_int(g, "absent", &v) == 1, "absent key -> 1");
    tq_gguf_str s;
    CHECK(tq_gguf_get_str(g, "general.architecture", &s) == 0 && streq(s, "llama"), "string");
    CHECK(tq_gguf_get_str(g, "t.u8", &s) == TQ_ERR, "u8 as string refused");
    int et;
    uint64_t n;
    CHECK(tq_gguf_get_arr(g, "tokens", &et, &n) == 0 && et == TQ_GGUF_STRING && n == 3, "string array");
    CHECK(tq_gguf_arr_str(g, "tokens", 0, &s) == 0 && streq(s, "<s>"), "tokens[0]");
    CHECK(tq_gguf_arr_str(g, "tokens", 1, &s) == 0 && s.len == 0, "tokens[1] empty");
    CHECK(tq_gguf_arr_str(g, "tokens", 2, &s) == 0 && streq(s, "h\xc3\xa9llo"), "tokens[2]");
    CHECK(tq_gguf_arr_str(g, "tokens", 3, &s) == TQ_ERR && strstr(tq_error_msg(), "tokens"), "tokens[3] out of range");
    CHECK(tq_gguf_arr_int(g, "tokens", 0, &v) == TQ_ERR, "string array as int refused");
    CHECK(tq_gguf_get_arr(g, "nested", &et, &n) == 0 && et == TQ_GGUF_ARRAY && n == 2, "nested array");
    CHECK(tq_gguf_arr_data(g, "tokens", TQ_GGUF_STRING, &n) == NULL, "no raw pointer to strings");
    int64_t ki = tq_gguf_find_key(g, "general.alignment");
    CHECK(ki == 14 && tq_gguf_kv_type(g, ki) == TQ_GGUF_U32 && streq(tq_gguf_key(g, ki), "general.alignment"),
          "key 14");
    CHECK(tq_gguf_find_key(g, "general.alignmen") == -1, "prefix is not a key");

    /* the listing form of each value */
    char line[96];
    const char *want_fmt[][2] = {
        {"t.u8", "200"}, {"t.i8", "-128"}, {"t.u16", "4660"}, {"t.i16", "-2"}, {"t.u32", "4000000000"},
        {"t.i32", "-7"}, {"t.f32", "1.5"}, {"t.bool", "true"}, {"t.u64", "18446744073709551615"},
        {"t.i64", "-9223372036854775808"}, {"t.f64", "-0.25"}, {"general.architecture", "\"llama\""},
        {"tokens", "[3 string: \"<s>\", \"\", \"h\xc3\xa9llo\"]"}, {"nested", "[2 array]"},
        {"general.alignment", "64"},
    };
    for (size_t k = 0; k < sizeof want_fmt / sizeof want_fmt[0]; k++) {
        tq_gguf_kv_format(g, tq_gguf_find_key(g, want_fmt[k][0]), line, sizeof line);
        CHECK(!strcmp(line, want_fmt[k][1]), "format '%s': '%s', expected '%s'", want_fmt[k][0], line, want_fmt[k][1]);
    }
    /* cut to the buffer: 12 bytes hold 8 of the text, "..." and the NUL */
    tq_gguf_kv_format(g, tq_gguf_find_key(g, "tokens"), line, 12);
    CHECK(!strcmp(line, "[3 strin..."), "format cut: '%s'", line);
    tq_gguf_kv_format(g, tq_gguf_find_key(g, "t.u64"), line, 3); /* no room for the dots: what fits */
    CHECK(!strcmp(line, "18"), "format into 3 bytes: '%s'", line);
    CHECK(tq_gguf_kv_format(g, 15, line, sizeof line)[0] == 0, "format of a missing entry is empty");

    const tq_gguf_tensor *a = tq_gguf_find_tensor(g, "a"), *q = tq_gguf_find_tensor(g, "b");
    CHECK(a && q && tq_gguf_tensor_at(g, 0) == a && tq_gguf_tensor_at(g, 1) == q, "tensors found");
    CHECK(!tq_gguf_find_tensor(g, "c") && !tq_gguf_tensor_at(g, 2), "absent tensor");
    if (a && q) {
        CHECK(a->n_dims == 2 && a->ne[0] == ROW && a->ne[1] == N_ROWS && a->ne[2] == 1 && a->n_elems == ROW * N_ROWS,
              "a dims");
        CHECK(a->nbytes == ROW * N_ROWS * 4 && q->nbytes == ROW * N_ROWS / 32 * 34, "nbytes");
        CHECK((const uint8_t *)a->data == b.p + L.data_start && (const uint8_t *)q->data == b.p + L.data_start + 768,
              "data pointers");
        float out[ROW * N_ROWS];
        int bad = 0;
        CHECK(tq_gguf_tensor_to_f32(a, out) == TQ_OK, "f32 tensor");
        for (int i = 0; i < ROW * N_ROWS; i++) bad += out[i] != (float)i * 0.5f - 3.0f;
        CHECK(bad == 0, "f32 values: %d wrong", bad);
        /* rows 1..2 of the q8_0 tensor: element i of block k is (i - 16) * 2^-k, exact */
        CHECK(tq_gguf_tensor_rows_f32(q, 1, 2, out) == TQ_OK, "q8_0 rows");
        bad = 0;
        for (int i = 0; i < 2 * ROW; i++) bad += out[i] != ldexpf((float)(i % 32 - 16), -(2 + i / 32));
        CHECK(bad == 0, "q8_0 values: %d wrong", bad);
        CHECK(tq_gguf_tensor_rows_f32(q, 2, 2, out) == TQ_ERR_USAGE, "rows past the end refused");
    }
    tq_gguf_close(g);
    free(b.p);
}

/* Every proper prefix of the file is refused with a message naming it (the tensor data sits at the end, so no
 * prefix is a valid file); ASan checks no byte past the prefix is read. */
static void test_truncations(void)
{
    layout L;
    buf b = build(&L, 3);
    int refused = 0, named = 0;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exact size: a read past n trips ASan */
        memcpy(cut, b.p, n);
        tq_gguf *g = NULL;
        tq_error_clear();
        if (tq_gguf_open_buffer(cut, n, "cut.gguf", &g) != TQ_OK) {
            refused++;
            named += strstr(tq_error_msg(), "'cut.gguf'") != NULL;
        } else
            tq_gguf_close(g);
        CHECK(!g || n == b.n, "prefix of %zu bytes accepted", n);
        free(cut);
    }
    CHECK(refused == (int)b.n && named == (int)b.n, "%d of %zu prefixes refused, %d named the file", refused, b.n,
          named);
    free(b.p);
}

typedef struct {
    const char *what;
    size_t (*at)(const layout *);
    int width;          /* bytes written at the offset */
    uint64_t value;
    const char *expect; /* a fragment of the message */
} corruption;

static size_t at_magic(const layout *L) { (void)L; return 0; }
static size_t at_version(const layout *L) { return L->version; }
static size_t at_ntensors(const layout *L) { return L->n_tensors; }
static size_t at_nkv(const layout *L) { return L->n_kv; }
static size_t at_bool(const layout *L) { return L->bool_val; }
static size_t at_nested(const layout *L) { return L->nested_type; }
static size_t at_strarr(const layout *L) { return L->strarr_n; }
static size_t at_align(const layout *L) { return L->align_val; }
static size_t at_ndims(const layout *L) { return L->t0_ndims; }
static size_t at_dim0(const layout *L) { return L->t0_dim0; }
static size_t at_type(const layout *L) { return L->t0_type; }
static size_t at_offset(const layout *L) { return L->t0_offset; }
static size_t at_t1name(const layout *L) { return L->t1_name + 8; }
static size_t at_t1dim0(const layout *L) { return L->t1_name + 8 + 1 + 4; }
static size_t at_nested_inner(const layout *L) { return L->nested_type + 4 + 8; }
static size_t at_t1len(const layout *L) { return L->t1_name; }
static size_t at_key0(const layout *L) { (void)L; return 24 + 8 + 2; } /* "t.u8" -> "t.i8": second key repeated */

static void test_corruptions(void)
{
    const corruption cs[] = {
        {"magic", at_magic, 4, 0x46554746, "magic"},
        {"version 1", at_version, 4, 1, "version 1"},
        {"big-endian", at_version, 4, 0x03000000, "big-endian"},
        {"tensor count huge", at_ntensors, 8, 1ull << 62, "tensor count"},
        {"kv count huge", at_nkv, 8, UINT64_MAX, "metadata count"},
        {"kv count one more", at_nkv, 8, 16, "truncated"},
        {"bool 2", at_bool, 1, 2, "bool"},
        {"array of arrays of arrays", at_nested_inner, 4, TQ_GGUF_ARRAY, "nests arrays"},
        {"array element type unknown", at_nested, 4, 13, "unknown value type"},
        {"string array huge", at_strarr, 8, 1ull << 60, "more than the"},
        {"alignment 48", at_align, 4, 48, "power of two"},
        {"alignment 0", at_align, 4, 0, "power of two"},
        {"0 dims", at_ndims, 4, 0, "dimensions"},
        {"5 dims", at_ndims, 4, 5, "dimensions"},
        {"dim 0", at_dim0, 8, 0, "dimension 0 of size 0"},
        {"dim overflow", at_dim0, 8, 1ull << 62, "64-bit"},
        {"row not a block multiple", at_t1dim0, 8, 48, "not a multiple of q8_0's block of 32"},
        {"tensor past the end", at_dim0, 8, ROW, "runs past"}, /* "b" made longer below */
        {"type unknown", at_type, 4, 4, "unknown ggml type 4"},
        {"type huge", at_type, 4, 0xffffffffu, "unknown ggml type"},
        {"offset misaligned", at_offset, 8, 32, "alignment"},
        {"offset past the end", at_offset, 8, 1ull << 40, "runs past"},
        {"offset near 2^64", at_offset, 8, UINT64_MAX - 63, "runs past"},
        {"duplicate tensor", at_t1name, 1, 'a', "appears twice"},
        {"tensor name length huge", at_t1len, 8, 1ull << 50, "truncated"},
        {"duplicate key", at_key0, 1, 'i', "appears twice"},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        layout L;
        buf b = build(&L, 3);
        size_t at = cs[k].at(&L);
        for (int i = 0; i < cs[k].width; i++) b.p[at + i] = (uint8_t)(cs[k].value >> 8 * i);
        if (!strcmp(cs[k].what, "tensor past the end")) {
            /* "b" gets 4 rows instead of 3: two q8_0 blocks (68 bytes) more than the file holds */
            b.p[at_t1dim0(&L) + 8] = 4;
        }
        tq_gguf *g = NULL;
        tq_error_clear();
        int rc = tq_gguf_open_buffer(b.p, b.n, "bad.gguf", &g);
        CHECK(rc == TQ_ERR && !g && strstr(tq_error_msg(), "'bad.gguf'") && strstr(tq_error_msg(), cs[k].expect),
              "%s: rc %d, message '%s'", cs[k].what, rc, tq_error_msg());
        tq_gguf_close(g);
        free(b.p);
    }
    /* general.alignment of the wrong type */
    layout L;
    buf b = build(&L, 3);
    b.p[L.align_val - 4] = TQ_GGUF_I32;
    tq_gguf *g = NULL;
    CHECK(tq_gguf_open_buffer(b.p, b.n, "bad.gguf", &g) == TQ_ERR && strstr(tq_error_msg(), "expected u32"),
          "alignment as i32: %s", tq_error_msg());
    free(b.p);
    /* a missing file and a directory */
    CHECK(tq_gguf_open("/nonexistent/x.gguf", &g) == TQ_ERR && strstr(tq_error_msg(), "x.gguf") && !g, "missing file");
    CHECK(tq_gguf_open("/tmp", &g) == TQ_ERR && strstr(tq_error_msg(), "regular") && !g, "directory");
}

/* ---------------------------------------------------------------- dequantization goldens */

/* Offsets of the fp16 scale fields in a block of each quantized type (-1 ends the list). */
static const struct { int type, scales[3]; } scale_fields[] = {
    {TQ_GGML_Q4_0, {0, -1}}, {TQ_GGML_Q4_1, {0, 2, -1}}, {TQ_GGML_Q5_0, {0, -1}}, {TQ_GGML_Q5_1, {0, 2, -1}},
    {TQ_GGML_Q8_0, {0, -1}}, {TQ_GGML_Q2_K, {80, 82, -1}}, {TQ_GGML_Q3_K, {108, -1}}, {TQ_GGML_Q4_K, {0, 2, -1}},
    {TQ_GGML_Q5_K, {0, 2, -1}}, {TQ_GGML_Q6_K, {208, -1}}, {TQ_GGML_F16, {-1}}, {TQ_GGML_BF16, {-1}},
    {TQ_GGML_F32, {-1}},
};
#define N_GOLD_BLOCKS 64

/* N_GOLD_BLOCKS blocks of random bytes (PCG, seed 14 + type) whose fp16 scales, and F16/BF16/F32 values, are finite. */
static uint8_t *gold_blocks(int type, size_t *n)
{
    size_t bb = tq_ggml_block_bytes(type);
    *n = bb * N_GOLD_BLOCKS;
    uint8_t *p = malloc(*n);
    tq_rng r;
    tq_rng_seed(&r, 14 + (uint64_t)type, 0);
    for (size_t i = 0; i < *n; i++) p[i] = (uint8_t)tq_rng_u32(&r);
    for (size_t k = 0; k < sizeof scale_fields / sizeof scale_fields[0]; k++) {
        if (scale_fields[k].type != type) continue;
        for (int b = 0; b < N_GOLD_BLOCKS; b++)
            for (int j = 0; scale_fields[k].scales[j] >= 0; j++)
                p[b * bb + (size_t)scale_fields[k].scales[j] + 1] &= 0xBF; /* fp16 exponent never all ones */
    }
    if (type == TQ_GGML_F16)
        for (size_t i = 1; i < *n; i += 2) p[i] &= 0xBF;
    if (type == TQ_GGML_BF16 || type == TQ_GGML_F32) /* the top byte holds the sign and 7 exponent bits */
        for (size_t i = (type == TQ_GGML_F32 ? 3 : 1); i < *n; i += (type == TQ_GGML_F32 ? 4 : 2)) p[i] &= 0xBF;
    return p;
}

/* The same blocks through gguf.quants.dequantize (gguf 0.19.0, `--gold-blocks` writes them for it), hashed as in
 * hash_floats: the C test needs no Python to catch a changed bit. */
static const struct { int type; uint64_t hash; } goldens[] = {
    {TQ_GGML_Q4_0, 10805303040736470016ull},
    {TQ_GGML_Q4_1, 3528876934649341658ull},
    {TQ_GGML_Q5_0, 12631988453464563712ull},
    {TQ_GGML_Q5_1, 12086548532595106236ull},
    {TQ_GGML_Q8_0, 8302033465272037504ull},
    {TQ_GGML_Q2_K, 9054192251633388867ull},
    {TQ_GGML_Q3_K, 1301116356932461824ull},
    {TQ_GGML_Q4_K, 15244301778765502721ull},
    {TQ_GGML_Q5_K, 11912129956785497629ull},
    {TQ_GGML_Q6_K, 15353174557267317952ull},
    {TQ_GGML_F16, 13754871802238279680ull},
    {TQ_GGML_BF16, 13876655580881813504ull},
    {TQ_GGML_F32, 5302750933095510227ull},
};

static uint64_t hash_floats(const float *x, int64_t n);

static void test_goldens(void)
{
    for (size_t k = 0; k < sizeof scale_fields / sizeof scale_fields[0]; k++) {
        int type = scale_fields[k].type;
        size_t n;
        uint8_t *p = gold_blocks(type, &n);
        int64_t ne = (int64_t)N_GOLD_BLOCKS * tq_ggml_block_elems(type);
        float *y = malloc(sizeof(float) * (size_t)ne);
        CHECK(tq_ggml_dequantize(type, p, y, ne) == TQ_OK, "%s: %s", tq_ggml_type_name(type), tq_error_msg());
        uint64_t h = hash_floats(y, ne), want = 0;
        for (size_t g = 0; g < sizeof goldens / sizeof goldens[0]; g++)
            if (goldens[g].type == type) want = goldens[g].hash;
        CHECK(h == want, "%s: hash %llu, golden %llu", tq_ggml_type_name(type), (unsigned long long)h,
              (unsigned long long)want);
        free(p);
        free(y);
    }
    float y[64];
    CHECK(tq_ggml_dequantize(TQ_GGML_Q4_0, y, y, 48) == TQ_ERR_USAGE, "48 q4_0 elements refused");
    CHECK(tq_ggml_dequantize(16, y, y, 256) == TQ_ERR_USAGE && strstr(tq_error_msg(), "iq2_xxs"), "iq2_xxs refused");
    CHECK(tq_ggml_dequantize(4, y, y, 32) == TQ_ERR_USAGE && strstr(tq_error_msg(), "unknown"), "type 4 refused");
}

/* ---------------------------------------------------------------- real models */


typedef struct {
    const char *name, *arch;
    int64_t n_tensors, block_count, embd, vocab;
    int counts[TQ_GGML_BF16 + 1]; /* tensors by type: the facts in the model's documentation */
} model_facts;

static void test_model(const model_facts *m)
{
    char *path = tq_test_model_path(m->name);
    if (!path) {
        char why[128];
        snprintf(why, sizeof why, "%s not fetched (bash scripts/get_models.sh %s)", m->name, m->name);
        SKIP(why);
        return;
    }
    tq_gguf *g = NULL;
    int rc = tq_gguf_open(path, &g);
    CHECK(rc == TQ_OK, "%s: %s", m->name, tq_error_msg());
    if (rc) return;
    CHECK(tq_gguf_version(g) == 3 && !strcmp(tq_gguf_path(g), path), "%s version", m->name);
    tq_gguf_str s;
    CHECK(tq_gguf_get_str(g, "general.architecture", &s) == 0 && streq(s, m->arch), "%s architecture", m->name);
    char k[128];
    int64_t v;
    snprintf(k, sizeof k, "%s.block_count", m->arch);
    CHECK(tq_gguf_get_int(g, k, &v) == 0 && v == m->block_count, "%s block_count %lld", m->name, (long long)v);
    snprintf(k, sizeof k, "%s.embedding_length", m->arch);
    CHECK(tq_gguf_get_int(g, k, &v) == 0 && v == m->embd, "%s embedding_length %lld", m->name, (long long)v);
    int et;
    uint64_t n = 0, ns = 0;
    CHECK(tq_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) == 0 && et == TQ_GGUF_STRING && (int64_t)n == m->vocab,
          "%s vocabulary %llu", m->name, (unsigned long long)n);
    /* every token string readable through the O(1) index */
    uint64_t total = 0;
    int bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        bad += tq_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s) != TQ_OK;
        total += s.len;
    }
    CHECK(bad == 0 && total > n, "%s token strings: %d unreadable, %llu bytes", m->name, bad,
          (unsigned long long)total);
    const void *tt = tq_gguf_arr_data(g, "tokenizer.ggml.token_type", TQ_GGUF_I32, &ns);
    CHECK(tt && ns == n, "%s token types %llu", m->name, (unsigned long long)ns);
    CHECK(tq_gguf_n_tensors(g) == m->n_tensors, "%s tensors %lld", m->name, (long long)tq_gguf_n_tensors(g));
    int counts[TQ_GGML_BF16 + 1] = {0};
    uint64_t end = 0;
    for (int64_t i = 0; i < tq_gguf_n_tensors(g); i++) {
        const tq_gguf_tensor *t = tq_gguf_tensor_at(g, i);
        if (t->type >= 0 && t->type <= TQ_GGML_BF16) counts[t->type]++;
        /* gguf writers lay the tensors out in table order, each padded to the 32-byte alignment */
        CHECK(t->offset == (end + 31) / 32 * 32, "%s '%s' at offset %llu, expected %llu", m->name, t->name,
              (unsigned long long)t->offset, (unsigned long long)(end + 31) / 32 * 32);
        end = t->offset + t->nbytes;
        CHECK(tq_gguf_find_tensor(g, t->name) == t, "%s find '%s'", m->name, t->name);
    }
    for (int t = 0; t <= TQ_GGML_BF16; t++)
        CHECK(counts[t] == m->counts[t], "%s: %d tensors of type %s, expected %d", m->name, counts[t],
              tq_ggml_type_name(t) ? tq_ggml_type_name(t) : "?", m->counts[t]);
    const tq_gguf_tensor *e = tq_gguf_find_tensor(g, "token_embd.weight");
    CHECK(e && e->n_dims == 2 && e->ne[0] == m->embd && e->ne[1] == m->vocab, "%s token_embd shape", m->name);
    tq_gguf_close(g);
}

/* ---------------------------------------------------------------- driver modes */

static int read_file(const char *path, uint8_t **p, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = (size_t)sz;
    int ok = *p && fread(*p, 1, *n, f) == *n;
    fclose(f);
    return ok ? 0 : -1;
}
static int write_floats(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(x, sizeof *x, n, f) == n;
    if (f && fclose(f)) ok = 0;
    return ok ? 0 : -1;
}
/* Position-weighted sum of the float bits, mod 2^64: any single changed value or swapped pair changes it
 * (every weight is odd). tests/py/test_gguf_dequant.py computes the same with NumPy. */
static uint64_t hash_floats(const float *x, int64_t n)
{
    uint64_t h = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        h += (uint64_t)b * ((uint64_t)i * 0x9E3779B97F4A7C15ull | 1);
    }
    return h;
}

static int driver(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "--blocks")) {
        int type = atoi(argv[2]);
        uint8_t *p;
        size_t n;
        if (read_file(argv[3], &p, &n)) { fprintf(stderr, "cannot read '%s'\n", argv[3]); return 1; }
        size_t bb = tq_ggml_block_bytes(type);
        int64_t ne = bb ? (int64_t)(n / bb) * tq_ggml_block_elems(type) : 0;
        float *y = malloc(sizeof(float) * (size_t)(ne ? ne : 1));
        int rc = !bb || n % bb ? TQ_ERR_USAGE : tq_ggml_dequantize(type, p, y, ne);
        if (rc || write_floats(argv[4], y, (size_t)ne)) {
            fprintf(stderr, "test_gguf: %s\n", rc ? tq_error_msg() : "cannot write");
            return 1;
        }
        free(p);
        free(y);
        return 0;
    }
    if (((argc == 3 || argc == 4) && !strcmp(argv[1], "--hashes")) || (argc == 5 && !strcmp(argv[1], "--tensor"))) {
        /* --hashes MODEL MAX: a tensor of more than MAX elements is hashed over its first R and last R rows only,
         * R = max(1, MAX / 2 / row), read through tq_gguf_tensor_rows_f32 (the whole tensor otherwise) */
        int64_t max = argc == 4 ? atoll(argv[3]) : INT64_MAX;
        tq_gguf *g;
        if (tq_gguf_open(argv[2], &g)) { fprintf(stderr, "test_gguf: %s\n", tq_error_msg()); return 1; }
        int rc = 0;
        for (int64_t i = 0; i < tq_gguf_n_tensors(g) && !rc; i++) {
            const tq_gguf_tensor *t = tq_gguf_tensor_at(g, i);
            if (argc == 5 && strcmp(t->name, argv[3])) continue;
            if (!tq_ggml_can_dequantize(t->type)) {
                printf("%s %d %lld -\n", t->name, t->type, (long long)t->n_elems);
                continue;
            }
            int64_t rows = t->n_elems / t->ne[0], r = max / 2 / t->ne[0];
            if (r < 1) r = 1;
            int sample = argc != 5 && t->n_elems > max && 2 * r < rows;
            int64_t n = sample ? 2 * r * t->ne[0] : t->n_elems;
            float *y = malloc(sizeof(float) * (size_t)n);
            if (!y || (sample ? tq_gguf_tensor_rows_f32(t, 0, r, y) ||
                                    tq_gguf_tensor_rows_f32(t, rows - r, r, y + n / 2)
                              : tq_gguf_tensor_to_f32(t, y)))
                rc = 1;
            else if (argc == 5) rc = write_floats(argv[4], y, (size_t)n) ? 1 : 0;
            else printf("%s %d %lld %llu\n", t->name, t->type, (long long)n, (unsigned long long)hash_floats(y, n));
            free(y);
        }
        if (rc) fprintf(stderr, "test_gguf: %s\n", tq_error_msg());
        tq_gguf_close(g);
        return rc;
    }
    if (argc == 3 && !strcmp(argv[1], "--gold-blocks")) { /* one file per type: DIR/<type id>.bin */
        for (size_t k = 0; k < sizeof scale_fields / sizeof scale_fields[0]; k++) {
            size_t n;
            uint8_t *p = gold_blocks(scale_fields[k].type, &n);
            char path[4096];
            snprintf(path, sizeof path, "%s/%d.bin", argv[2], scale_fields[k].type);
            FILE *f = fopen(path, "wb");
            int ok = f && fwrite(p, 1, n, f) == n;
            if (f && fclose(f)) ok = 0;
            free(p);
            if (!ok) { fprintf(stderr, "test_gguf: cannot write '%s'\n", path); return 1; }
        }
        return 0;
    }
    fprintf(stderr, "usage: test_gguf [--blocks TYPE IN OUT | --hashes MODEL [MAX] | --tensor MODEL NAME OUT]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc > 1) return driver(argc, argv);
    test_good(3);
    test_good(2);
    test_truncations();
    test_corruptions();
    test_goldens();
    const model_facts smol = {"smollm2", "llama", 272, 30, 576, 49152,
                              {[TQ_GGML_Q4_1] = 210, [TQ_GGML_Q8_0] = 1, [TQ_GGML_F32] = 61}};
    const model_facts gemma = {"gemma3", "gemma3", 236, 18, 640, 262144,
                               {[TQ_GGML_Q5_0] = 81, [TQ_GGML_Q4_K] = 27, [TQ_GGML_Q6_K] = 9, [TQ_GGML_Q8_0] = 10,
                                [TQ_GGML_F32] = 109}};
    test_model(&smol);
    test_model(&gemma);
    TQ_TEST_END();
}
