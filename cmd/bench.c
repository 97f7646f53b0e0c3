/* bench.c: `tq bench` — throughput of the quantizers and of decode attention over a packed KV cache. On CUDA: device
 * copy bandwidth (the roofline), encode throughput, and the fused attention against an fp16 flash-decoding kernel and
 * dequantize-then-attend, all in one process, each validated before it is timed. On the CPU: encode throughput. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "cuda/tq_cuda.h"
#include "options.h"
#include "pack.h"
#include "quant.h"
#include "rng.h"
#include "turbo.h"
#include "vocab.h"

typedef struct {
    int device_cuda, d, hq, hkv, bits, rotation, iters, nb, nl, graph;
    int *batch, *tokens;
    long enc_n;
    int do_copy, do_encode, do_attn;
    uint64_t seed;
    const char *out, *variant;
} bench_opts;

/* --variant KEY=NAME[,KEY=NAME]: simd -> tq_simd_set (CPU encoders), attn / encode -> tq_cuda_variant_set (CUDA
 * kernels). A name the library does not know is a usage error; a CUDA key in a build without CUDA says so (exit 1). */
static void bench_variants(const char *list)
{
    int n;
    char **kv = parse_names("--variant", list, &n);
    for (int i = 0; i < n; i++) {
        char *eq = strchr(kv[i], '=');
        if (!eq || eq == kv[i] || !eq[1])
            die_usage("option '--variant': '%s' is not KEY=NAME (simd=off, attn=t64, encode=v1)", kv[i]);
        *eq = 0;
        const char *key = kv[i], *name = eq + 1;
        int st;
        if (!strcmp(key, "simd")) st = tq_simd_set(name);
        else if (!strcmp(key, "attn") || !strcmp(key, "encode")) st = tq_cuda_variant_set(key, name);
        else die_usage("option '--variant': unknown key '%s'; use simd, attn or encode", key);
        if (st) die_lib(st, "bench --variant");
    }
    free(kv);
}

static void bench_parse(bench_opts *o, int argc, char **argv)
{
    const char *device = NULL, *rotation = NULL, *batch = NULL, *tokens = NULL, *only = NULL;
    const tq_option opts[] = {
        OPT_STR_("--device", &device, "cpu|cuda", "cpu", "time the CPU encoders or the CUDA kernels"),
        OPT_INT_("--dim", &o->d, "D", "128", 64, 256, "head dim: 64, 128 or 256"),
        OPT_INT_("--q-heads", &o->hq, "HQ", "32", 1, 256, "query heads"),
        OPT_INT_("--kv-heads", &o->hkv, "HKV", "8", 1, 256, "kv heads (HQ a multiple of HKV)"),
        OPT_STR_("--batch", &batch, "LIST", "1,16", "batch sizes (cuda)"),
        OPT_STR_("--tokens", &tokens, "LIST", "4096,32768,65536,131072", "cache lengths (cuda)"),
        OPT_INT_("--bits", &o->bits, "B", "3", 2, 4, "key bits (turbo-prod: B-1 MSE + 1 QJL) and value bits"),
        OPT_STR_("--rotation", &rotation, "R", "hadamard", "hadamard or dense"),
        OPT_INT_("--iters", &o->iters, "N", "20", 1, 100000, "timed iterations (cuda) after 3 warm-ups"),
        OPT_LONG_("--encode-vectors", &o->enc_n, "N", "4194304", 1, 1L << 26, "vectors per encode (cpu: at most "
                  "65536)"),
        OPT_STR_("--only", &only, "LIST", "copy,encode,attn", "what to time (cuda)"),
        OPT_STR_("--variant", &o->variant, "KEY=NAME,...", NULL, "kernel variants, timed in place of the defaults:\n"
                 "simd=auto|avx512|off (CPU encoders), attn=NAME and encode=NAME\n(CUDA kernels: README \"tq bench\")"),
        OPT_FLAG_("--graph", &o->graph, "time attention as CUDA graphs: each row's calls captured --iters times and\n"
                  "replayed, the device time without the host's launch cost (a decode engine's\n"
                  "setting); rows that cannot be captured (dequant+fp16) stay eager, marked '(eager)'"),
        OPT_U64_("--seed", &o->seed, "S", "1", "seed of the inputs, rotations and projections"),
        OPT_STR_("-o", &o->out, "FILE.csv", NULL, "also write the rows as CSV"),
        OPT_END_,
    };
    const tq_cmd_spec spec = {
        "bench", "bench [--device cpu|cuda] [options]",
        "Times decode attention of one query token per (batch, query head) over an L-token cache:\n"
        "  fused-turbo-mse / fused-turbo-prod   the fused kernel on packed codes (keys B bits: turbo-prod is\n"
        "                                       B-1 MSE bits + 1 QJL bit; values turbo-mse B bits)\n"
        "  fp16                                 flash-decoding over an fp16 cache (same split structure)\n"
        "  dequant+fp16                         decode keys and values to fp16, then the fp16 kernel\n"
        "and reports ms, GB/s read and its share of the measured device copy bandwidth, and speedups.\n"
        "Every row is validated first: the fused output must match dequantize-then-attend on the same codes\n"
        "within 1e-3 relative. --device cpu times the CPU encoders (tq_quantize) instead.\n"
        "Markdown on stdout; -o also writes the rows as CSV. Defaults: cuda sizes of a Llama-3-8B layer\n"
        "(32 query / 8 kv heads, d 128), 3 bits, hadamard.\n",
        opts, NULL};
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) die("out of memory");
    if (opt_parse(&spec, argc, argv, pos)) die_usage("bench: unexpected argument '%s' (see 'tq bench --help')", pos[0]);
    free(pos);
    o->device_cuda = parse_vocab("--device", TQ_VOCAB_DEVICE, device) == TQ_DEVICE_CUDA;
    o->rotation = parse_vocab("--rotation", TQ_VOCAB_ROTATION, rotation);
    if (o->rotation != TQ_ROT_HADAMARD && o->rotation != TQ_ROT_DENSE)
        die_usage("bench: rotation '%s' is not timed; use hadamard or dense", rotation);
    o->nb = parse_list("--batch", batch, 1, 1024, NULL, &o->batch);
    o->nl = parse_list("--tokens", tokens, 1, 1L << 22, NULL, &o->tokens);
    int n;
    char **what = parse_names("--only", only, &n);
    for (int i = 0; i < n; i++) {
        int *flag = !strcmp(what[i], "copy") ? &o->do_copy : !strcmp(what[i], "encode") ? &o->do_encode
                    : !strcmp(what[i], "attn") ? &o->do_attn : NULL;
        if (!flag) die_usage("bench: --only names '%s'; use copy, encode and/or attn", what[i]);
        *flag = 1;
    }
    free(what);
    if (o->hq % o->hkv) die_usage("bench: --q-heads %d is not a multiple of --kv-heads %d", o->hq, o->hkv);
    if (o->d != 64 && o->d != 128 && o->d != 256) die_usage("bench: --dim %d unsupported; use 64, 128 or 256", o->d);
    if (o->variant) bench_variants(o->variant);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static FILE *csv;

static void row(const char *kind, const char *config, int B, long L, double ms, double gbs, double pct,
                double vs_fp16, double vs_deq, double check)
{
    printf("| %-8s | %-22s | %3d | %7ld | %9.4f | %8.1f | %5.1f%% | %7.2fx | %7.2fx | %.1e |\n", kind, config, B, L, ms,
           gbs, pct, vs_fp16, vs_deq, check);
    fflush(stdout);
    if (csv)
        fprintf(csv, "%s,%s,%d,%ld,%.5f,%.2f,%.2f,%.3f,%.3f,%.3g\n", kind, config, B, L, ms, gbs, pct, vs_fp16, vs_deq,
                check);
}

#define CK(call) do { int st_ = (call); if (st_) die_lib(st_, "bench"); } while (0)

/* Mean milliseconds of `iters` runs after 3 warm-ups, timed with CUDA events around the whole batch; with --graph
 * (bench_graph) the calls replayed from a CUDA graph when they can be captured (*eager, if given, says whether they
 * could not). */
typedef int (*bench_fn)(void *arg);
static int bench_graph;
static double time_gpu_g(bench_fn fn, void *arg, int iters, int *eager)
{
    if (eager) *eager = 0;
    if (bench_graph && eager) {
        float gms;
        if (!tq_cuda_time_graph(fn, arg, iters, &gms)) return gms;
        tq_error_clear();
        if (eager) *eager = 1;
    }
    for (int i = 0; i < 3; i++) CK(fn(arg));
    CK(tq_cuda_sync());
    CK(tq_cuda_timer_start());
    for (int i = 0; i < iters; i++) CK(fn(arg));
    float ms;
    CK(tq_cuda_timer_stop(&ms));
    return ms / iters;
}
static double time_gpu(bench_fn fn, void *arg, int iters) { return time_gpu_g(fn, arg, iters, NULL); } /* eager */

/* ---- CUDA pieces ---------------------------------------------------------------------------------------------- */
typedef struct { void *dst, *src; size_t bytes; } copy_arg;
static int run_copy(void *a) { copy_arg *c = a; return tq_cuda_copy(c->dst, c->src, c->bytes); }

typedef struct { tq_cuda_quant *q; void *x; long n; tq_cuda_codes c; } enc_arg;
static int run_encode(void *a) { enc_arg *e = a; return tq_cuda_encode(e->q, e->x, 1, e->n, &e->c); }

typedef struct {
    tq_cuda_attn *at;
    tq_cuda_quant *kq, *vq;
    tq_cuda_kv kv;
    tq_cuda_codes kc, vc;
    int B, hq, hkv, d;
    long L;
    float *q, *out;
    uint16_t *k16, *v16;
} attn_arg;
static int run_fused(void *a) { attn_arg *t = a; return tq_cuda_attn_decode(t->at, t->B, t->hq, t->L, t->q, &t->kv, t->out); }
static int run_fp16(void *a)
{
    attn_arg *t = a;
    return tq_cuda_attn_fp16(t->B, t->hq, t->hkv, t->L, t->d, t->q, t->k16, t->v16, t->out);
}
static int run_dequant(void *a)
{
    attn_arg *t = a;
    long n = (long)t->B * t->hkv * t->L;
    int st = tq_cuda_decode(t->kq, &t->kc, n, t->k16, 1);
    if (!st) st = tq_cuda_decode(t->vq, &t->vc, n, t->v16, 1);
    if (!st) st = tq_cuda_attn_fp16(t->B, t->hq, t->hkv, t->L, t->d, t->q, t->k16, t->v16, t->out);
    return st;
}

/* Device buffer of `bytes`, filled by repeating `base` (base_bytes) — the benchmark's caches are tiles of a block
 * of PCG data encoded once, so building a 128k-token cache costs copies, not encodes. */
static void *tiled(const void *base_dev, size_t base_bytes, size_t bytes)
{
    void *p;
    CK(tq_cuda_alloc(&p, bytes));
    size_t done = 0;
    if (bytes >= base_bytes) {
        CK(tq_cuda_copy(p, base_dev, base_bytes));
        done = base_bytes;
        while (done < bytes) { /* doubling copies */
            size_t n = done < bytes - done ? done : bytes - done;
            CK(tq_cuda_copy((char *)p + done, p, n));
            done += n;
        }
    } else CK(tq_cuda_copy(p, base_dev, bytes));
    return p;
}

/* The quantizer of one tensor, from the library's one description (tq_turbo_parts_make, lib/turbo.h): rotation
 * from the seed (one per tensor: every kv head shares it in the benchmark, so dequantize-then-attend can decode the
 * whole cache in one launch), Beta Lloyd-Max codebook, S for QJL, fp16 norms, and the kernel's view of it. */
typedef struct { tq_turbo_parts q; tq_cuda_qspec sp; } host_quant;

static void host_quant_make(host_quant *h, int method, int bits, int d, int rotation, uint64_t seed, int tensor)
{
    tq_qparams p;
    tq_qparams_default(&p, method, bits);
    p.rotation = rotation;
    p.seed = seed;
    CK(tq_turbo_parts_make(&h->q, &p, d, (tq_slice_id){0, 0, tensor}));
    tq_cuda_qspec_of(&h->sp, &h->q);
}

static void host_quant_free(host_quant *h) { tq_turbo_parts_free(&h->q); }

/* The device pointer of each section the GPU writes (codes, norms, signs, rnorms), by TQ_TURBO_SEC_* index. */
static void **codes_slot(tq_cuda_codes *c, int i)
{
    return i == TQ_TURBO_SEC_CODES ? (void **)&c->codes : i == TQ_TURBO_SEC_NORMS ? &c->norms
         : i == TQ_TURBO_SEC_SIGNS ? (void **)&c->signs : &c->rnorms;
}

static size_t section_bytes(const tq_turbo_section *s, long n)
{
    return tq_turbo_section_count(s, n) * (s->type == TQ_SEC_U8 ? 1 : s->type == TQ_SEC_F16 ? 2 : 4);
}

/* Device sections for n vectors, as the quantizer's layout lists them: fresh (base NULL) or tiled from the nbase
 * vectors of `base`. */
static void codes_make(tq_cuda_codes *c, const tq_turbo_layout *L, long n, const tq_cuda_codes *base, long nbase)
{
    memset(c, 0, sizeof *c);
    for (int i = TQ_TURBO_SEC_CODES; i <= TQ_TURBO_SEC_RNORMS; i++) {
        if (!L->sec[i].present) continue;
        if (base)
            *codes_slot(c, i) = tiled(*codes_slot((tq_cuda_codes *)base, i), section_bytes(&L->sec[i], nbase),
                                      section_bytes(&L->sec[i], n));
        else CK(tq_cuda_alloc(codes_slot(c, i), section_bytes(&L->sec[i], n)));
    }
}

static void codes_free(tq_cuda_codes *c)
{
    tq_cuda_free(c->codes);
    tq_cuda_free(c->norms);
    tq_cuda_free(c->signs);
    tq_cuda_free(c->rnorms);
}

/* What the CUDA rows share: the copy bandwidth every row is compared with and the block of T0 tokens per kv head of
 * PCG keys and values (fp16 on the device) every cache is tiled from. */
typedef struct {
    const bench_opts *o;
    double copy_gbs;
    long nbase;
    float *dkf, *dvf;
    uint16_t *dkh, *dvh;
    tq_rng r;
} cuda_run;

/* copy bandwidth: bytes read + written per second, the roofline every other row is compared with */
static void cuda_copy_row(cuda_run *cr)
{
    copy_arg c;
    c.bytes = (size_t)1 << 30;
    CK(tq_cuda_alloc(&c.src, c.bytes));
    CK(tq_cuda_alloc(&c.dst, c.bytes));
    double ms = time_gpu(run_copy, &c, 10);
    cr->copy_gbs = 2.0 * c.bytes / (ms * 1e6);
    row("copy", "cudaMemcpy D2D 1 GiB", 0, 0, ms, cr->copy_gbs, 100.0, 0, 0, 0);
    tq_cuda_free(c.src);
    tq_cuda_free(c.dst);
}

/* the PCG block everything is tiled from: T0 tokens of keys and values, values Gaussian, keys with a few heavier
 * channels (as real keys) */
static void cuda_inputs(cuda_run *cr)
{
    const long T0 = 4096;
    int d = cr->o->d;
    long nbase = cr->nbase = (long)cr->o->hkv * T0;
    float *hk = malloc(sizeof(float) * nbase * d), *hv = malloc(sizeof(float) * nbase * d);
    if (!hk || !hv) die("bench: out of memory");
    tq_rng_derive(&cr->r, cr->o->seed, -1, -1, TQ_PURPOSE_TEST);
    tq_rng_normals(&cr->r, hk, nbase * d);
    tq_rng_normals(&cr->r, hv, nbase * d);
    for (long i = 0; i < nbase; i++)
        for (int j = 0; j < 4; j++) hk[i * d + j] *= 8.0f;
    CK(tq_cuda_alloc((void **)&cr->dkf, sizeof(float) * nbase * d));
    CK(tq_cuda_alloc((void **)&cr->dvf, sizeof(float) * nbase * d));
    CK(tq_cuda_alloc((void **)&cr->dkh, 2 * nbase * d));
    CK(tq_cuda_alloc((void **)&cr->dvh, 2 * nbase * d));
    CK(tq_cuda_upload(cr->dkf, hk, sizeof(float) * nbase * d));
    CK(tq_cuda_upload(cr->dvf, hv, sizeof(float) * nbase * d));
    CK(tq_cuda_to_half(cr->dkh, cr->dkf, nbase * d));
    CK(tq_cuda_to_half(cr->dvh, cr->dvf, nbase * d));
    free(hk);
    free(hv);
}

/* encode throughput: fp16 vectors in, the sections of the quantizer's layout out */
static void cuda_encode_rows(cuda_run *cr)
{
    const bench_opts *o = cr->o;
    long n = o->enc_n;
    int d = o->d;
    void *x = tiled(cr->dkh, 2 * (size_t)cr->nbase * d, 2 * (size_t)n * d);
    const struct { int method, rotation; const char *name; } cf[] = {
        {TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, "turbo-mse hadamard"},
        {TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, "turbo-prod hadamard"},
        {TQ_M_TURBO_MSE, TQ_ROT_DENSE, "turbo-mse dense"},
    };
    /* turbo-prod and dense turbo-mse run the tensor-core encoder (k_encode_mma) by default; the same configuration
     * through the CUDA-core kernel (variant encode=simt) follows as its baseline, unless --variant chose an encoder */
    int baseline = !o->variant || !strstr(o->variant, "encode=");
    for (int c = 0; c < 3; c++) {
        host_quant h;
        host_quant_make(&h, cf[c].method, o->bits, d, cf[c].rotation, o->seed, TQ_TENSOR_KEYS);
        enc_arg e = {0};
        e.x = x;
        e.n = n;
        CK(tq_cuda_quant_create(&e.q, &h.sp));
        codes_make(&e.c, &h.q.L, n, NULL, 0);
        double ms = time_gpu(run_encode, &e, o->iters);
        double bytes = (double)n * 2.0 * d + (double)tq_turbo_payload(&h.q.L, n);
        char cfg[64];
        snprintf(cfg, sizeof cfg, "%s %db", cf[c].name, o->bits);
        row("encode", cfg, 0, n, ms, bytes / (ms * 1e6), 100.0 * bytes / (ms * 1e6) / cr->copy_gbs, 0, 0, 0);
        if (baseline && c > 0) {
            CK(tq_cuda_variant_set("encode", "simt"));
            double ms0 = time_gpu(run_encode, &e, o->iters);
            CK(tq_cuda_variant_set("encode", "auto"));
            snprintf(cfg, sizeof cfg, "%s %db simt", cf[c].name, o->bits);
            row("encode", cfg, 0, n, ms0, bytes / (ms0 * 1e6), 100.0 * bytes / (ms0 * 1e6) / cr->copy_gbs, 0, 0, 0);
        }
        codes_free(&e.c);
        tq_cuda_quant_free(e.q);
        host_quant_free(&h);
    }
    tq_cuda_free(x);
}

/* validate: fused == dequantize-then-attend on the same codes, up to fp16 rounding: the dequantized cache on one
 * side, the tensor-core kernels' fp16 queries and probabilities on the other, each 2^-11 relative (measured up to
 * 2.0e-3 RMS at d = 64, L = 32k, turbo-prod): 4e-3 (8 x 2^-11). A wrong kernel is off by 1e-1 or more. Returns the
 * relative difference. */
static double attn_check(attn_arg *t)
{
    size_t nq = (size_t)t->B * t->hq * t->d;
    float *o1 = malloc(sizeof(float) * nq), *o2 = malloc(sizeof(float) * nq);
    if (!o1 || !o2) die("bench: out of memory");
    CK(run_fused(t));
    CK(tq_cuda_sync());
    CK(tq_cuda_download(o1, t->out, sizeof(float) * nq));
    CK(run_dequant(t));
    CK(tq_cuda_sync());
    CK(tq_cuda_download(o2, t->out, sizeof(float) * nq));
    double en = 0, on = 0;
    for (size_t i = 0; i < nq; i++) {
        en += (double)(o1[i] - o2[i]) * (o1[i] - o2[i]);
        on += (double)o2[i] * o2[i];
    }
    free(o1);
    free(o2);
    double check = sqrt(en / on);
    if (!(check < 4e-3)) die("bench: fused attention disagrees with dequantize-then-attend: %.3g", check);
    return check;
}

/* One (batch, cache length) point: the fp16 row (once per point, with turbo-mse keys), dequant+fp16 and fused. The
 * cache rows [B][Hkv][L] are tiled from the base block (token t of head g = base row (g*T0 + t) mod nbase: the
 * content repeats, the memory traffic is that of a real cache). */
static void cuda_attn_point(cuda_run *cr, attn_arg *t, const host_quant *hk, const host_quant *hv,
                            const tq_cuda_codes *bk, const tq_cuda_codes *bv)
{
    const bench_opts *o = cr->o;
    int d = o->d, prod = hk->q.L.method == TQ_M_TURBO_PROD;
    long n = (long)t->B * t->hkv * t->L;
    codes_make(&t->kc, &hk->q.L, n, bk, cr->nbase);
    codes_make(&t->vc, &hv->q.L, n, bv, cr->nbase);
    tq_cuda_kv kv = {t->kc.codes, t->kc.norms, t->kc.signs, t->kc.rnorms, t->vc.codes, t->vc.norms};
    t->kv = kv;
    t->k16 = tiled(cr->dkh, 2 * (size_t)cr->nbase * d, 2 * (size_t)n * d);
    t->v16 = tiled(cr->dvh, 2 * (size_t)cr->nbase * d, 2 * (size_t)n * d);
    size_t nq = (size_t)t->B * t->hq * d;
    float *hq = malloc(sizeof(float) * nq);
    if (!hq) die("bench: out of memory");
    tq_rng_normals(&cr->r, hq, (long)nq);
    CK(tq_cuda_alloc((void **)&t->q, sizeof(float) * nq));
    CK(tq_cuda_alloc((void **)&t->out, sizeof(float) * nq));
    CK(tq_cuda_upload(t->q, hq, sizeof(float) * nq));
    double bytes_fp16 = 4.0 * n * d;
    double bytes_q = (double)tq_turbo_payload(&hk->q.L, n) + (double)tq_turbo_payload(&hv->q.L, n);
    int e16, ef;
    double ms16 = time_gpu_g(run_fp16, t, o->iters, &e16), pct = 100.0 / cr->copy_gbs;
    if (!prod) row("attn", e16 ? "fp16 (eager)" : "fp16", t->B, t->L, ms16, bytes_fp16 / (ms16 * 1e6), pct * bytes_fp16 / (ms16 * 1e6), 1.0,
                   0, 0);
    double check = attn_check(t); /* run_dequant overwrites the fp16 cache, so it comes after the fp16 timing */
    int dq_eager;
    double msdq = time_gpu_g(run_dequant, t, o->iters, &dq_eager);
    double msf = time_gpu_g(run_fused, t, o->iters, &ef);
    char cfg[64];
    snprintf(cfg, sizeof cfg, "dequant+fp16 %s%s", prod ? "prod" : "mse", dq_eager ? " (eager)" : "");
    row("attn", cfg, t->B, t->L, msdq, (bytes_q + 2 * bytes_fp16) / (msdq * 1e6),
        pct * (bytes_q + 2 * bytes_fp16) / (msdq * 1e6), ms16 / msdq, 1.0, 0);
    snprintf(cfg, sizeof cfg, "fused-%s %db %s%s", prod ? "turbo-prod" : "turbo-mse", o->bits,
             o->rotation == TQ_ROT_DENSE ? "dense" : "had", ef ? " (eager)" : "");
    row("attn", cfg, t->B, t->L, msf, bytes_q / (msf * 1e6), pct * bytes_q / (msf * 1e6), ms16 / msf, msdq / msf,
        check);
    free(hq);
    tq_cuda_free(t->q);
    tq_cuda_free(t->out);
    codes_free(&t->kc);
    codes_free(&t->vc);
    tq_cuda_free(t->k16);
    tq_cuda_free(t->v16);
}

/* The attention rows with turbo-mse (km 0) or turbo-prod (km 1) keys, turbo-mse values, over every (B, L). */
static void cuda_attn_rows(cuda_run *cr, int km)
{
    const bench_opts *o = cr->o;
    int d = o->d, kmethod = km ? TQ_M_TURBO_PROD : TQ_M_TURBO_MSE;
    host_quant hk, hv;
    host_quant_make(&hk, kmethod, o->bits, d, o->rotation, o->seed, TQ_TENSOR_KEYS);
    host_quant_make(&hv, TQ_M_TURBO_MSE, o->bits, d, o->rotation, o->seed, TQ_TENSOR_VALUES);
    attn_arg t;
    memset(&t, 0, sizeof t);
    CK(tq_cuda_quant_create(&t.kq, &hk.sp));
    CK(tq_cuda_quant_create(&t.vq, &hv.sp));
    /* the attention's per-kv-head tables: the one rotation (and S) repeated */
    int dense = o->rotation == TQ_ROT_DENSE;
    size_t nr = dense ? (size_t)d * d : (size_t)d;
    float *krot = malloc(sizeof(float) * nr * o->hkv), *vrot = malloc(sizeof(float) * nr * o->hkv);
    float *kS = hk.q.S[0] ? malloc(sizeof(float) * (size_t)d * d * o->hkv) : NULL;
    if (!krot || !vrot || (hk.q.S[0] && !kS)) die("bench: out of memory");
    for (int g = 0; g < o->hkv; g++) {
        memcpy(krot + g * nr, dense ? hk.q.rot[0]->m : hk.q.rot[0]->signs, sizeof(float) * nr);
        memcpy(vrot + g * nr, dense ? hv.q.rot[0]->m : hv.q.rot[0]->signs, sizeof(float) * nr);
        if (kS) memcpy(kS + (size_t)g * d * d, hk.q.S[0], sizeof(float) * d * d);
    }
    tq_cuda_attn_spec as = {d, o->hkv, kmethod, hk.sp.bits, hv.sp.bits, o->rotation, krot, vrot,
                            hk.q.cb[0]->c, hv.q.cb[0]->c, kS};
    CK(tq_cuda_attn_create(&t.at, &as));
    /* encode the base block once */
    tq_cuda_codes bk, bv;
    codes_make(&bk, &hk.q.L, cr->nbase, NULL, 0);
    codes_make(&bv, &hv.q.L, cr->nbase, NULL, 0);
    CK(tq_cuda_encode(t.kq, cr->dkh, 1, cr->nbase, &bk));
    CK(tq_cuda_encode(t.vq, cr->dvh, 1, cr->nbase, &bv));
    t.hq = o->hq;
    t.hkv = o->hkv;
    t.d = d;
    for (int bi = 0; bi < o->nb; bi++)
        for (int li = 0; li < o->nl; li++) {
            t.B = o->batch[bi];
            t.L = o->tokens[li];
            cuda_attn_point(cr, &t, &hk, &hv, &bk, &bv);
        }
    codes_free(&bk);
    codes_free(&bv);
    tq_cuda_attn_free(t.at);
    tq_cuda_quant_free(t.kq);
    tq_cuda_quant_free(t.vq);
    free(krot);
    free(vrot);
    free(kS);
    host_quant_free(&hk);
    host_quant_free(&hv);
}

static void bench_cuda(const bench_opts *o)
{
    char name[256];
    int sms;
    double gib;
    CK(tq_cuda_device(name, sizeof name, &sms, &gib));
    bench_graph = o->graph;
    const char *timing = o->graph ? "; timing: CUDA graphs" : "";
    printf("# tq bench --device cuda: %s, %d SMs, %.1f GiB%s%s%s\n\n", name, sms, gib, o->variant ? "; --variant " : "",
           o->variant ? o->variant : "", timing);
    if (csv) fprintf(csv, "# device: %s%s%s%s\nkind,config,batch,tokens,ms,gbs,pct_copy,speedup_vs_fp16,"
                     "speedup_vs_dequant,check\n", name, o->variant ? "; variant " : "", o->variant ? o->variant : "",
                     timing);
    printf("| kind     | config                 |   B |       L |        ms |     GB/s |  %%copy | vs fp16  | vs deq   | "
           "check   |\n");
    printf("|----------|------------------------|-----|---------|-----------|----------|--------|----------|----------|"
           "---------|\n");
    cuda_run cr;
    memset(&cr, 0, sizeof cr);
    cr.o = o;
    cuda_copy_row(&cr);
    cuda_inputs(&cr);
    if (o->do_encode) cuda_encode_rows(&cr);
    if (o->do_attn)
        for (int km = 0; km < 2; km++) cuda_attn_rows(&cr, km);
    tq_cuda_free(cr.dkf);
    tq_cuda_free(cr.dvf);
    tq_cuda_free(cr.dkh);
    tq_cuda_free(cr.dvh);
}

/* CPU: the format table's fast encoders on n vectors of one slice. */
static void bench_cpu(const bench_opts *o)
{
    printf("# tq bench --device cpu: simd %s%s%s\n\n", tq_simd_get(), o->variant ? "; --variant " : "",
           o->variant ? o->variant : "");
    printf("| kind     | config                 | vectors |        ms |   MB/s fp32 in |\n");
    printf("|----------|------------------------|---------|-----------|----------------|\n");
    long n = o->enc_n > 65536 ? 65536 : o->enc_n;
    int d = o->d;
    float *x = malloc(sizeof(float) * n * d);
    if (!x) die("bench: out of memory");
    tq_rng r;
    tq_rng_derive(&r, o->seed, -1, -1, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, x, n * d);
    if (csv) fprintf(csv, "# simd: %s\nkind,config,vectors,ms,mbs\n", tq_simd_get());
    const int methods[] = {TQ_M_TURBO_MSE, TQ_M_TURBO_PROD, TQ_M_QJL, TQ_M_INT8, TQ_M_KIVI};
    for (int i = 0; i < 5; i++) {
        const tq_format *f = tq_format_of(methods[i]);
        if (!f || !f->encode) continue;
        /* qjl and int8 have one fixed width; the others take --bits */
        int bits = methods[i] == TQ_M_QJL ? 1 : methods[i] == TQ_M_INT8 ? 8 : o->bits;
        tq_qparams p;
        tq_qparams_default(&p, methods[i], bits);
        p.rotation = o->rotation;
        p.seed = o->seed;
        tq_slice_id id = {0, 0, TQ_TENSOR_KEYS};
        tq_codes c;
        memset(&c, 0, sizeof c);
        double t0 = now_s();
        int st = tq_quantize(&p, id, x, (int)n, d, &c);
        double ms = 1e3 * (now_s() - t0);
        tq_codes_free(&c);
        if (st) {
            fprintf(stderr, "tq: bench: %s skipped: %s\n", f->name, tq_error_msg());
            continue;
        }
        char cfg[64];
        snprintf(cfg, sizeof cfg, "%s %db", f->name, bits);
        printf("| encode   | %-22s | %7ld | %9.2f | %14.1f |\n", cfg, n, ms, 4.0 * n * d / (ms * 1e3));
        if (csv) fprintf(csv, "encode,%s,%ld,%.3f,%.1f\n", cfg, n, ms, 4.0 * n * d / (ms * 1e3));
    }
    free(x);
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o;
    memset(&o, 0, sizeof o);
    bench_parse(&o, argc, argv);
    if (o.device_cuda) {
        int st = tq_cuda_device(NULL, 0, NULL, NULL);
        if (st) die_lib(st, "bench --device cuda");
    }
    if (o.out) csv = out_open(o.out);
    if (o.device_cuda) {
        bench_cuda(&o);
        tq_cuda_release();
    } else bench_cpu(&o);
    if (csv) out_commit(csv, o.out);
    free(o.batch);
    free(o.tokens);
    return 0;
}
