/* polar.c: PolarQuant (Han et al., arXiv 2502.02617) — random preconditioning, then a recursive polar transform over
 * blocks of 2^L coordinates: level 1 turns pairs into radii and angles in [0, 2pi), each higher level turns pairs of
 * radii into a radius and an angle in [0, pi/2]. Angles are quantized with codebooks built for their known densities;
 * one radius per block is kept (fp16). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fp16.h"
#include "polar.h"
#include "quant.h"
#include "rotation.h"
#include "tq.h"

#define TWO_PI 6.283185307179586
#define HALF_PI 1.5707963267948966

/* ---------- angle codebooks ----------
 * Level 1: the angle of a pair of i.i.d. coordinates is uniform on [0, 2pi), so the uniform quantizer (cells of
 * 2pi/2^b, centroid at the cell centre) is its Lloyd-Max quantizer. Level l >= 2: psi = atan(r_b / r_a) for two
 * radii of 2^(l-1) coordinates each (chi with k = 2^(l-1) degrees of freedom) has density
 * proportional to sin^(k-1)(2 psi) on [0, pi/2]; its Lloyd-Max codebook is computed once per (level, bits) on a fine
 * grid (midpoint rule; the grid step 2.4e-5 rad is far below any cell) and cached. */

#define POLAR_GRID (1 << 16)

typedef struct {
    int ready;
    float cent[256], thr[255]; /* centroids, decision thresholds (midpoints), ascending */
    float cos_c[256], sin_c[256]; /* cosf / sinf of each centroid: the decoder's per-node trig, looked up */
    double mse;                /* E (psi - c(psi))^2 under the density */
} polar_cb;

static polar_cb polar_cache[TQ_POLAR_MAX_LEVELS + 1][9];

/* Level 1's decoder trig per bit width: (float)cos and (float)sin of each cell centre (k + 0.5) 2pi/2^b, computed
 * in double exactly as a per-pair evaluation would, so a lookup gives the same floats (the closed loop's polar pass
 * spent most of its quantizer time in these calls: README "Closed loop", Speed). */
typedef struct {
    int ready;
    float c[256], s[256];
} polar_trig;

static polar_trig polar_trig1[9];
static pthread_mutex_t polar_lock = PTHREAD_MUTEX_INITIALIZER;

static int lloyd_angle(int level, int bits, polar_cb *cb)
{
    const int K = 1 << bits, N = POLAR_GRID;
    const double h = HALF_PI / N, expo = (double)((1 << (level - 1)) - 1);
    double *w = malloc(sizeof(double) * N), *c0 = malloc(sizeof(double) * (N + 1)), *c1 = malloc(sizeof(double) * (N + 1));
    double *cent = malloc(sizeof(double) * K);
    int *cut = malloc(sizeof(int) * (K + 1));
    if (!w || !c0 || !c1 || !cent || !cut) {
        free(w); free(c0); free(c1); free(cent); free(cut);
        return tq_error_set(TQ_ERR_NOMEM, "polar: out of memory building the level-%d codebook", level);
    }
    c0[0] = c1[0] = 0.0;
    for (int i = 0; i < N; i++) {
        double t = (i + 0.5) * h;
        w[i] = pow(sin(2.0 * t), expo);
        c0[i + 1] = c0[i] + w[i];
        c1[i + 1] = c1[i] + w[i] * t;
    }
    /* Start from equal-probability cells' centroids; Lloyd converges to the unique optimum of this log-concave
     * density. */
    for (int k = 0; k < K; k++) {
        double target = c0[N] * (k + 0.5) / K;
        int i = 0;
        while (i < N - 1 && c0[i + 1] < target) i++;
        cent[k] = (i + 0.5) * h;
    }
    for (int it = 0; it < 10000; it++) {
        cut[0] = 0;
        cut[K] = N;
        for (int k = 1; k < K; k++) {
            double thr = 0.5 * (cent[k - 1] + cent[k]);
            int i = (int)floor(thr / h + 0.5); /* grid points with centre < thr: i such that (i+0.5)h < thr */
            cut[k] = i < 0 ? 0 : i > N ? N : i;
        }
        double move = 0.0;
        for (int k = 0; k < K; k++) {
            double m0 = c0[cut[k + 1]] - c0[cut[k]];
            double nc = m0 > 0 ? (c1[cut[k + 1]] - c1[cut[k]]) / m0 : cent[k];
            move = fmax(move, fabs(nc - cent[k]));
            cent[k] = nc;
        }
        if (move < 1e-12) break;
    }
    double err = 0.0;
    int k = 0;
    for (int i = 0; i < N; i++) {
        double t = (i + 0.5) * h;
        while (k < K - 1 && t > 0.5 * (cent[k] + cent[k + 1])) k++;
        err += w[i] * (t - cent[k]) * (t - cent[k]);
    }
    cb->mse = err / c0[N];
    for (int j = 0; j < K; j++) {
        cb->cent[j] = (float)cent[j];
        cb->cos_c[j] = cosf(cb->cent[j]);
        cb->sin_c[j] = sinf(cb->cent[j]);
    }
    for (int j = 0; j + 1 < K; j++) cb->thr[j] = (float)(0.5 * (cent[j] + cent[j + 1]));
    free(w); free(c0); free(c1); free(cent); free(cut);
    return TQ_OK;
}

/* The cached codebook of a level >= 2 (thread-safe). */
static const polar_cb *polar_codebook(int level, int bits)
{
    pthread_mutex_lock(&polar_lock);
    polar_cb *cb = &polar_cache[level][bits];
    if (!cb->ready && lloyd_angle(level, bits, cb) == TQ_OK) cb->ready = 1;
    const polar_cb *out = cb->ready ? cb : NULL;
    pthread_mutex_unlock(&polar_lock);
    return out;
}

/* The cached level-1 trig table of `bits` (thread-safe; always succeeds). */
static const polar_trig *polar_trig_level1(int bits)
{
    pthread_mutex_lock(&polar_lock);
    polar_trig *t = &polar_trig1[bits];
    if (!t->ready) {
        const double delta = TWO_PI / (double)(1 << bits);
        for (int k = 0; k < 1 << bits; k++) {
            double th = (k + 0.5) * delta;
            t->c[k] = (float)cos(th);
            t->s[k] = (float)sin(th);
        }
        t->ready = 1;
    }
    pthread_mutex_unlock(&polar_lock);
    return t;
}

/* Mean squared angle error of level `level` at `bits` (level 1: uniform cells, (2pi/2^b)^2/12). To first order in
 * the angle errors, D = E||x - x̂||^2/||x||^2 is the sum of these over levels: an angle error e at a node of radius R
 * moves its sub-vector by R*e orthogonally to everything else, and the R^2 of one level sum to ||x||^2. */
double tq_polar_angle_mse(int level, int bits)
{
    if (level < 1 || level > TQ_POLAR_MAX_LEVELS || bits < 1 || bits > 8) return NAN;
    if (level == 1) {
        double delta = TWO_PI / (double)(1 << bits);
        return delta * delta / 12.0;
    }
    const polar_cb *cb = polar_codebook(level, bits);
    return cb ? cb->mse : NAN;
}

double tq_polar_centroid(int level, int bits, int k)
{
    if (level < 2 || level > TQ_POLAR_MAX_LEVELS || bits < 1 || bits > 8 || k < 0 || k >= (1 << bits)) return NAN;
    const polar_cb *cb = polar_codebook(level, bits);
    return cb ? cb->cent[k] : NAN;
}

/* ---------- parameters and layout ---------- */

static int polar_check(const tq_qparams *p, int d)
{
    if (p->bits < 1 || p->bits > 7)
        return tq_error_set(TQ_ERR_USAGE, "polar needs --bits in 1..7 (or --polar-bits), got %d", p->bits);
    if (p->polar_levels < 1 || p->polar_levels > TQ_POLAR_MAX_LEVELS)
        return tq_error_set(TQ_ERR_USAGE, "polar needs 1..%d levels, got %d", TQ_POLAR_MAX_LEVELS, p->polar_levels);
    for (int l = 0; l < p->polar_levels; l++)
        if (p->polar_bits[l] < 1 || p->polar_bits[l] > 8)
            return tq_error_set(TQ_ERR_USAGE, "polar level %d has %d bits, must be 1..8 (e.g. --polar-bits 4,2,2,2)",
                                l + 1, p->polar_bits[l]);
    int B = 1 << p->polar_levels;
    if (d % B)
        return tq_error_set(TQ_ERR_USAGE, "polar with %d levels needs a head dim that is a multiple of %d, got %d; "
                            "use fewer levels in --polar-bits", p->polar_levels, B, d);
    if (p->outliers || p->center)
        return tq_error_set(TQ_ERR_USAGE, "polar does not take --outliers or --center (turbo methods do)");
    return tq_rotation_check(p->rotation, d);
}

/* Bits of one vector's angle codes: level l contributes d/2^l codes of polar_bits[l-1] bits. The codes of a vector
 * form one bit stream, level 1's angles first (block order within a level), each code LSB first as in pack.h; the
 * row is padded to a whole byte. */
static size_t polar_row_bits(const tq_qparams *p, int d)
{
    size_t bits = 0;
    for (int l = 1; l <= p->polar_levels; l++) bits += (size_t)(d >> l) * (size_t)p->polar_bits[l - 1];
    return bits;
}

static double polar_bits_code(const tq_qparams *p, int d) { return (double)polar_row_bits(p, d) / d; }

static double polar_bits_total(const tq_qparams *p, int n, int d)
{
    double row = 8.0 * (double)((polar_row_bits(p, d) + 7) / 8);
    double radii = (double)(d >> p->polar_levels) * (p->norm_fp32 ? 32.0 : 16.0);
    return (row + radii) / d;
}

/* b <= 8 bits at bit *pos of the row, least significant first: they span at most two bytes (bit 7 + 8 <= 16), so
 * one shifted 16-bit window writes or reads them (the bytes of a bit-by-bit loop, at a fraction of its cost). The
 * row starts zeroed, and a code never writes past the row's last byte: a second byte is touched only when
 * the code's bits reach it. */
static void put_bits(uint8_t *row, size_t *pos, unsigned v, int b)
{
    size_t i = *pos >> 3;
    unsigned sh = (unsigned)(*pos & 7), w = (v & ((1u << b) - 1)) << sh;
    row[i] |= (uint8_t)w;
    if (sh + (unsigned)b > 8) row[i + 1] |= (uint8_t)(w >> 8);
    *pos += (size_t)b;
}

static unsigned get_bits(const uint8_t *row, size_t *pos, int b)
{
    size_t i = *pos >> 3;
    unsigned sh = (unsigned)(*pos & 7), w = row[i];
    if (sh + (unsigned)b > 8) w |= (unsigned)row[i + 1] << 8;
    *pos += (size_t)b;
    return (w >> sh) & ((1u << b) - 1);
}

/* ---------- one vector ---------- */

typedef struct {
    const polar_cb *cb[TQ_POLAR_MAX_LEVELS + 1]; /* levels >= 2 */
    const polar_trig *trig1;                     /* level 1 */
} polar_tables;

static int polar_tables_get(const tq_qparams *p, polar_tables *t)
{
    memset(t, 0, sizeof *t);
    t->trig1 = polar_trig_level1(p->polar_bits[0]);
    for (int l = 2; l <= p->polar_levels; l++)
        if (!(t->cb[l] = polar_codebook(l, p->polar_bits[l - 1]))) return TQ_ERR_NOMEM;
    return TQ_OK;
}

/* Uniform level-1 code: cell of theta in [0, 2pi). */
static unsigned code_level1(float a, float b, int bits)
{
    double th = atan2((double)b, (double)a);
    if (th < 0) th += TWO_PI;
    int K = 1 << bits;
    int k = (int)floor(th * K / TWO_PI);
    return (unsigned)(k >= K ? K - 1 : k < 0 ? 0 : k);
}

static unsigned code_search(const polar_cb *cb, int bits, float psi)
{
    unsigned k = 0, K = 1u << bits;
    while (k + 1 < K && psi > cb->thr[k]) k++;
    return k;
}

/* y: the preconditioned vector (d floats, overwritten as scratch); writes the angle row and the block radii. */
static void polar_encode_vec(const tq_qparams *p, const polar_tables *t, float *y, int d, uint8_t *row, float *radii)
{
    const int L = p->polar_levels;
    size_t pos = 0;
    /* Level 1 over all pairs: codes in pair order, radii into y[0..d/2). */
    for (int i = 0; i < d / 2; i++) {
        float a = y[2 * i], b = y[2 * i + 1];
        put_bits(row, &pos, code_level1(a, b, p->polar_bits[0]), p->polar_bits[0]);
        y[i] = (float)hypot((double)a, (double)b); /* i <= 2i: reads happen before this write */
    }
    for (int l = 2; l <= L; l++) {
        int m = d >> l, bl = p->polar_bits[l - 1];
        for (int i = 0; i < m; i++) {
            float a = y[2 * i], b = y[2 * i + 1];
            float psi = (float)atan2((double)b, (double)a); /* radii >= 0: psi in [0, pi/2]; (0,0) gives 0 */
            put_bits(row, &pos, code_search(t->cb[l], bl, psi), bl);
            y[i] = (float)hypot((double)a, (double)b);
        }
    }
    for (int i = 0; i < (d >> L); i++) radii[i] = y[i];
}

static void polar_decode_vec(const tq_qparams *p, const polar_tables *t, const uint8_t *row, const float *radii,
                             int d, float *y)
{
    const int L = p->polar_levels;
    /* Offsets of each level's codes in the row, then top-down reconstruction in place: level l turns m radii into
     * 2m (children of node i at 2i, 2i+1), so iterating i downwards never overwrites an unread radius. */
    size_t off[TQ_POLAR_MAX_LEVELS + 2];
    off[1] = 0;
    for (int l = 1; l <= L; l++) off[l + 1] = off[l] + (size_t)(d >> l) * (size_t)p->polar_bits[l - 1];
    for (int i = 0; i < (d >> L); i++) y[i] = radii[i];
    for (int l = L; l >= 2; l--) {
        int m = d >> l, bl = p->polar_bits[l - 1];
        for (int i = m - 1; i >= 0; i--) {
            size_t pos = off[l] + (size_t)i * bl;
            unsigned k = get_bits(row, &pos, bl);
            float r = y[i];
            y[2 * i] = r * t->cb[l]->cos_c[k]; /* = r * cosf(cent[k]) */
            y[2 * i + 1] = r * t->cb[l]->sin_c[k];
        }
    }
    const int b1 = p->polar_bits[0];
    for (int i = d / 2 - 1; i >= 0; i--) {
        size_t pos = (size_t)i * b1;
        unsigned k = get_bits(row, &pos, b1);
        float r = y[i];
        y[2 * i] = r * t->trig1->c[k]; /* = r * (float)cos((k + 0.5) * 2pi / 2^b1) */
        y[2 * i + 1] = r * t->trig1->s[k];
    }
}

/* ---------- the row ---------- */

/* rot_in: the slice's rotation when the caller keeps it (prepared rows), else NULL: made and freed here. */
static int polar_encode_impl(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c, int fast,
                             const tq_rotation *rot_in, const polar_tables *tab_in)
{
    c->p = *p;
    c->id = id;
    c->n = n;
    c->d = d;
    polar_tables t;
    tq_rotation *own = NULL;
    int st = TQ_OK;
    if (tab_in) t = *tab_in;
    else st = polar_tables_get(p, &t);
    if (!st && !rot_in) st = tq_rotation_make(&own, p->rotation, d, p->seed, id, TQ_PURPOSE_POLAR, 0);
    if (st) return st;
    const tq_rotation *rot = rot_in ? rot_in : own;
    const int nr = d >> p->polar_levels;
    const size_t rb = (polar_row_bits(p, d) + 7) / 8;
    uint8_t *codes = tq_codes_add(c, "codes", TQ_SEC_U8, (size_t)n * rb);
    void *radii = codes ? tq_codes_add(c, "radii", p->norm_fp32 ? TQ_SEC_F32 : TQ_SEC_F16, (size_t)n * nr) : NULL;
    float *y = radii ? tq_malloc(sizeof(float) * (size_t)(fast ? n : 1) * d) : NULL;
    float *rad = y ? tq_malloc(sizeof(float) * (size_t)nr * (fast ? n : 1)) : NULL;
    if (!rad) {
        free(y);
        tq_rotation_free(own);
        return TQ_ERR_NOMEM;
    }
    if (fast) tq_rotation_forward(rot, x, y, n); /* batched sgemm / FWHT over the slice */
    for (int i = 0; i < n; i++) {
        float *yi = fast ? y + (size_t)i * d : y, *ri = fast ? rad + (size_t)i * nr : rad;
        if (!fast) tq_rotation_forward_ref(rot, x + (size_t)i * d, yi);
        polar_encode_vec(p, &t, yi, d, codes + (size_t)i * rb, ri);
        for (int j = 0; j < nr; j++) {
            if (p->norm_fp32) ((float *)radii)[(size_t)i * nr + j] = ri[j];
            else ((uint16_t *)radii)[(size_t)i * nr + j] = tq_float_to_half(ri[j]);
        }
    }
    free(y);
    free(rad);
    tq_rotation_free(own);
    return TQ_OK;
}

static int polar_encode_ref(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    return polar_encode_impl(p, id, x, n, d, c, 0, NULL, NULL);
}

static int polar_encode_fast(const tq_qparams *p, tq_slice_id id, const float *x, int n, int d, tq_codes *c)
{
    return polar_encode_impl(p, id, x, n, d, c, 1, NULL, NULL);
}

static int polar_decode_impl(const tq_codes *c, float *xhat, int fast, const tq_rotation *rot_in,
                             const polar_tables *tab_in)
{
    const tq_qparams *p = &c->p;
    const int n = c->n, d = c->d;
    if (polar_check(p, d) < 0) return tq_error_prefix(TQ_ERR, "polar codes: ");
    const int nr = d >> p->polar_levels;
    const size_t rb = (polar_row_bits(p, d) + 7) / 8;
    const tq_section *cs = tq_codes_find(c, "codes"), *rs = tq_codes_find(c, "radii");
    if (!cs || cs->type != TQ_SEC_U8 || cs->count != (size_t)n * rb || !rs ||
        rs->type != (p->norm_fp32 ? TQ_SEC_F32 : TQ_SEC_F16) || rs->count != (size_t)n * nr)
        return tq_error_set(TQ_ERR, "polar codes: sections 'codes' [%zu] / 'radii' [%zu] missing or malformed",
                            (size_t)n * rb, (size_t)n * nr);
    polar_tables t;
    tq_rotation *own = NULL;
    int st = TQ_OK;
    if (tab_in) t = *tab_in;
    else st = polar_tables_get(p, &t);
    if (!st && !rot_in) st = tq_rotation_make(&own, p->rotation, d, p->seed, c->id, TQ_PURPOSE_POLAR, 0);
    if (st) return st;
    const tq_rotation *rot = rot_in ? rot_in : own;
    float *y = tq_malloc(sizeof(float) * (size_t)(fast ? n : 1) * d), *rad = tq_malloc(sizeof(float) * (size_t)nr);
    if (!y || !rad) {
        free(y);
        free(rad);
        tq_rotation_free(own);
        return TQ_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < nr; j++)
            rad[j] = p->norm_fp32 ? ((const float *)rs->data)[(size_t)i * nr + j]
                                  : tq_half_to_float(((const uint16_t *)rs->data)[(size_t)i * nr + j]);
        float *yi = fast ? y + (size_t)i * d : y;
        polar_decode_vec(p, &t, (const uint8_t *)cs->data + (size_t)i * rb, rad, d, yi);
        if (!fast) tq_rotation_inverse_ref(rot, yi, xhat + (size_t)i * d);
    }
    if (fast) tq_rotation_inverse(rot, y, xhat, n);
    free(y);
    free(rad);
    tq_rotation_free(own);
    return TQ_OK;
}

static int polar_decode_ref(const tq_codes *c, float *xhat) { return polar_decode_impl(c, xhat, 0, NULL, NULL); }
static int polar_decode_fast(const tq_codes *c, float *xhat) { return polar_decode_impl(c, xhat, 1, NULL, NULL); }

/* ---------- prepared rows (polar.h) ---------- */

struct tq_polar_rows {
    tq_qparams p;
    tq_slice_id id;
    int d;
    tq_rotation *rot;
    polar_tables tab; /* the codebooks and trig tables, looked up once (no lock per row) */
};

int tq_polar_rows_make(tq_polar_rows **out, const tq_qparams *p, int d, tq_slice_id id)
{
    *out = NULL;
    int st = polar_check(p, d);
    if (st < 0) return st;
    tq_polar_rows *r = tq_calloc(1, sizeof *r);
    if (!r) return TQ_ERR_NOMEM;
    r->p = *p;
    r->id = id;
    r->d = d;
    if ((st = polar_tables_get(p, &r->tab)) < 0 ||
        (st = tq_rotation_make(&r->rot, p->rotation, d, p->seed, id, TQ_PURPOSE_POLAR, 0)) < 0) {
        free(r);
        return st;
    }
    *out = r;
    return TQ_OK;
}

void tq_polar_rows_free(tq_polar_rows *r)
{
    if (!r) return;
    tq_rotation_free(r->rot);
    free(r);
}

int tq_polar_rows_roundtrip(tq_polar_rows *r, const float *x, int n, float *xhat, double *bits_total)
{
    /* each row as a one-row slice through the fast path (the same calls tq_quantize + tq_dequantize make) */
    for (long i = 0; i < n; i++) {
        tq_codes c;
        memset(&c, 0, sizeof c);
        int st = polar_encode_impl(&r->p, r->id, x + i * r->d, 1, r->d, &c, 1, r->rot, &r->tab);
        if (!st) {
            *bits_total = tq_codes_bits_total(&c);
            st = polar_decode_impl(&c, xhat + i * r->d, 1, r->rot, &r->tab);
        }
        tq_codes_free(&c);
        if (st) return st;
    }
    return TQ_OK;
}

const tq_format tq_format_polar = {
    .name = "polar", .method = TQ_M_POLAR, .min_bits = 1, .max_bits = 7, .uses_rotation = 1,
    .check = polar_check, .encode_ref = polar_encode_ref, .encode = polar_encode_fast,
    .decode_ref = polar_decode_ref, .decode = polar_decode_fast,
    .bits_code = polar_bits_code, .bits_total = polar_bits_total,
    .summary = "PolarQuant: preconditioning + recursive polar transform over blocks of 16, fp16 radius per block",
};
