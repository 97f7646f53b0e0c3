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
#include "codebook.h"
#include "cuda/tq_cuda.h"
#include "fp16.h"
#include "pack.h"
#include "quant.h"
#include "rng.h"
#include "rotation.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tq bench [--device cpu|cuda] [--dim D] [--q-heads HQ] [--kv-heads HKV] [--batch 1,16]\n"
            "                [--tokens 4096,32768,65536,131072] [--bits B] [--rotation hadamard|dense] [--iters N]\n"
            "                [--encode-vectors N] [--only copy,encode,attn] [--seed S] [-o FILE.csv]\n"
            "\n"
            "Times decode attention of one query token per (batch, query head) over an L-token cache:\n"
            "  fused-turbo-mse / fused-turbo-prod   the fused kernel on packed codes (keys B bits: turbo-prod is\n"
            "                                       B-1 MSE bits + 1 QJL bit; values turbo-mse B bits)\n"
            "  fp16                                 flash-decoding over an fp16 cache (same split structure)\n"
            "  dequant+fp16                         decode keys and values to fp16, then the fp16 kernel\n"
            "and reports ms, GB/s read and its share of the measured device copy bandwidth, and speedups.\n"
            "Every row is validated first: the fused output must match dequantize-then-attend on the same codes\n"
            "within 1e-3 relative. --device cpu times the CPU encoders (tq_quantize) instead.\n"
            "Markdown on stdout; -o also writes the rows as CSV. Defaults: cuda sizes of a Llama-3-8B layer\n"
            "(32 query / 8 kv heads, d 128), 3 bits, hadamard, 20 timed iterations after 3 warm-ups.\n");
}

typedef struct {
    int device_cuda, d, hq, hkv, bits, rotation, iters, nb, nl;
    int batch[8];
    long tokens[8];
    long enc_n;
    int do_copy, do_encode, do_attn;
    uint64_t seed;
    const char *out;
} bench_opts;

static int parse_longs(const char *opt, const char *s, long lo, long hi, long *out, int max)
{
    char buf[256];
    if (strlen(s) >= sizeof buf || !*s) die_usage("option '%s': bad list '%s' (want e.g. 4096,32768)", opt, s);
    strcpy(buf, s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max) die_usage("option '%s': more than %d values", opt, max);
        out[n++] = parse_long(opt, tok, lo, hi);
    }
    return n;
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

/* Mean milliseconds of `iters` runs after 3 warm-ups, timed with CUDA events around the whole batch. */
typedef int (*bench_fn)(void *arg);
static double time_gpu(bench_fn fn, void *arg, int iters)
{
    for (int i = 0; i < 3; i++) CK(fn(arg));
    CK(tq_cuda_sync());
    CK(tq_cuda_timer_start());
    for (int i = 0; i < iters; i++) CK(fn(arg));
    float ms;
    CK(tq_cuda_timer_stop(&ms));
    return ms / iters;
}

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

/* The quantizer of one tensor: rotation from the seed (one per tensor: every kv head shares it in the benchmark, so
 * dequantize-then-attend can decode the whole cache in one launch), Beta Lloyd-Max codebook, S for QJL. */
typedef struct { tq_rotation *rot; float *S; tq_codebook cb; tq_cuda_qspec sp; } host_quant;

static void host_quant_make(host_quant *h, int method, int bits_total, int d, int rotation, uint64_t seed, int tensor)
{
    memset(h, 0, sizeof *h);
    tq_slice_id id = {0, 0, tensor};
    int mse_bits = method == TQ_M_TURBO_PROD ? bits_total - 1 : bits_total;
    CK(tq_rotation_make(&h->rot, rotation, d, seed, id, TQ_PURPOSE_ROTATION, 0));
    CK(tq_codebook_get(&h->cb, TQ_CB_BETA, d, mse_bits));
    if (method == TQ_M_TURBO_PROD) CK(tq_gaussian_matrix(&h->S, d, d, seed, id, TQ_PURPOSE_QJL, 0));
    tq_cuda_qspec sp = {method, d, mse_bits, rotation, d, 0, h->rot->m, h->rot->signs, h->cb.c, h->cb.t, h->S};
    h->sp = sp;
}

static void host_quant_free(host_quant *h)
{
    tq_rotation_free(h->rot);
    free(h->S);
}

static void bench_cuda(const bench_opts *o)
{
    char name[256];
    int sms;
    double gib;
    CK(tq_cuda_device(name, sizeof name, &sms, &gib));
    printf("# tq bench --device cuda: %s, %d SMs, %.1f GiB\n\n", name, sms, gib);
    if (csv) fprintf(csv, "# device: %s\nkind,config,batch,tokens,ms,gbs,pct_copy,speedup_vs_fp16,speedup_vs_dequant,check\n", name);
    printf("| kind     | config                 |   B |       L |        ms |     GB/s |  %%copy | vs fp16  | vs deq   | check   |\n");
    printf("|----------|------------------------|-----|---------|-----------|----------|--------|----------|----------|---------|\n");
    int d = o->d;
    /* copy bandwidth: bytes read + written per second, the roofline every other row is compared with */
    double copy_gbs = 0;
    {
        copy_arg c;
        c.bytes = (size_t)1 << 30;
        CK(tq_cuda_alloc(&c.src, c.bytes));
        CK(tq_cuda_alloc(&c.dst, c.bytes));
        double ms = time_gpu(run_copy, &c, 10);
        copy_gbs = 2.0 * c.bytes / (ms * 1e6);
        row("copy", "cudaMemcpy D2D 1 GiB", 0, 0, ms, copy_gbs, 100.0, 0, 0, 0);
        tq_cuda_free(c.src);
        tq_cuda_free(c.dst);
    }
    /* the PCG block everything is tiled from: T0 tokens of keys and values, values Gaussian, keys with a few
     * heavier channels (as real keys) */
    const long T0 = 4096;
    long nbase = (long)o->hkv * T0;
    float *hk = malloc(sizeof(float) * nbase * d), *hv = malloc(sizeof(float) * nbase * d);
    if (!hk || !hv) die("bench: out of memory");
    tq_rng r;
    tq_rng_derive(&r, o->seed, -1, -1, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, hk, nbase * d);
    tq_rng_normals(&r, hv, nbase * d);
    for (long i = 0; i < nbase; i++)
        for (int j = 0; j < 4; j++) hk[i * d + j] *= 8.0f;
    float *dkf, *dvf;
    uint16_t *dkh, *dvh;
    CK(tq_cuda_alloc((void **)&dkf, sizeof(float) * nbase * d));
    CK(tq_cuda_alloc((void **)&dvf, sizeof(float) * nbase * d));
    CK(tq_cuda_alloc((void **)&dkh, 2 * nbase * d));
    CK(tq_cuda_alloc((void **)&dvh, 2 * nbase * d));
    CK(tq_cuda_upload(dkf, hk, sizeof(float) * nbase * d));
    CK(tq_cuda_upload(dvf, hv, sizeof(float) * nbase * d));
    CK(tq_cuda_to_half(dkh, dkf, nbase * d));
    CK(tq_cuda_to_half(dvh, dvf, nbase * d));

    if (o->do_encode) {
        /* encode throughput: fp16 vectors in, codes + norms (+ signs + rnorms) out */
        long n = o->enc_n;
        void *x = tiled(dkh, 2 * (size_t)nbase * d, 2 * (size_t)n * d);
        const struct { int method, rotation; const char *name; } cf[] = {
            {TQ_M_TURBO_MSE, TQ_ROT_HADAMARD, "turbo-mse hadamard"},
            {TQ_M_TURBO_PROD, TQ_ROT_HADAMARD, "turbo-prod hadamard"},
            {TQ_M_TURBO_MSE, TQ_ROT_DENSE, "turbo-mse dense"},
        };
        for (int c = 0; c < 3; c++) {
            host_quant h;
            host_quant_make(&h, cf[c].method, o->bits, d, cf[c].rotation, o->seed, TQ_TENSOR_KEYS);
            enc_arg e = {0};
            e.x = x;
            e.n = n;
            CK(tq_cuda_quant_create(&e.q, &h.sp));
            size_t rb = tq_pack_row_bytes(d, h.sp.bits), sb = tq_pack_row_bytes(d, 1);
            CK(tq_cuda_alloc((void **)&e.c.codes, n * rb));
            CK(tq_cuda_alloc(&e.c.norms, n * 2));
            if (cf[c].method == TQ_M_TURBO_PROD) {
                CK(tq_cuda_alloc((void **)&e.c.signs, n * sb));
                CK(tq_cuda_alloc(&e.c.rnorms, n * 2));
            }
            double ms = time_gpu(run_encode, &e, o->iters);
            double bytes = (double)n * (2.0 * d + rb + 2 + (cf[c].method == TQ_M_TURBO_PROD ? sb + 2 : 0));
            char cfg[64];
            snprintf(cfg, sizeof cfg, "%s %db", cf[c].name, o->bits);
            row("encode", cfg, 0, n, ms, bytes / (ms * 1e6), 100.0 * bytes / (ms * 1e6) / copy_gbs, 0, 0, 0);
            tq_cuda_free(e.c.codes);
            tq_cuda_free(e.c.norms);
            tq_cuda_free(e.c.signs);
            tq_cuda_free(e.c.rnorms);
            tq_cuda_quant_free(e.q);
            host_quant_free(&h);
        }
        tq_cuda_free(x);
    }

    if (o->do_attn) {
        for (int km = 0; km < 2; km++) {
            int kmethod = km ? TQ_M_TURBO_PROD : TQ_M_TURBO_MSE;
            host_quant hk_, hv_;
            host_quant_make(&hk_, kmethod, o->bits, d, o->rotation, o->seed, TQ_TENSOR_KEYS);
            host_quant_make(&hv_, TQ_M_TURBO_MSE, o->bits, d, o->rotation, o->seed, TQ_TENSOR_VALUES);
            tq_cuda_quant *kq, *vq;
            CK(tq_cuda_quant_create(&kq, &hk_.sp));
            CK(tq_cuda_quant_create(&vq, &hv_.sp));
            /* the attention's per-kv-head tables: the one rotation repeated */
            size_t nr = o->rotation == TQ_ROT_DENSE ? (size_t)d * d : (size_t)d;
            float *krot = malloc(sizeof(float) * nr * o->hkv), *vrot = malloc(sizeof(float) * nr * o->hkv);
            float *kS = kmethod == TQ_M_TURBO_PROD ? malloc(sizeof(float) * (size_t)d * d * o->hkv) : NULL;
            for (int g = 0; g < o->hkv; g++) {
                memcpy(krot + g * nr, o->rotation == TQ_ROT_DENSE ? hk_.rot->m : hk_.rot->signs, sizeof(float) * nr);
                memcpy(vrot + g * nr, o->rotation == TQ_ROT_DENSE ? hv_.rot->m : hv_.rot->signs, sizeof(float) * nr);
                if (kS) memcpy(kS + (size_t)g * d * d, hk_.S, sizeof(float) * d * d);
            }
            tq_cuda_attn_spec as = {d, o->hkv, kmethod, hk_.sp.bits, hv_.sp.bits, o->rotation, krot, vrot,
                                    hk_.cb.c, hv_.cb.c, kS};
            tq_cuda_attn *at;
            CK(tq_cuda_attn_create(&at, &as));
            /* encode the base block once */
            size_t rk = tq_pack_row_bytes(d, hk_.sp.bits), rv = tq_pack_row_bytes(d, hv_.sp.bits), rs = d / 8;
            tq_cuda_codes bk = {0}, bv = {0};
            CK(tq_cuda_alloc((void **)&bk.codes, nbase * rk));
            CK(tq_cuda_alloc(&bk.norms, nbase * 2));
            CK(tq_cuda_alloc((void **)&bk.signs, nbase * rs));
            CK(tq_cuda_alloc(&bk.rnorms, nbase * 2));
            CK(tq_cuda_alloc((void **)&bv.codes, nbase * rv));
            CK(tq_cuda_alloc(&bv.norms, nbase * 2));
            CK(tq_cuda_encode(kq, dkh, 1, nbase, &bk));
            CK(tq_cuda_encode(vq, dvh, 1, nbase, &bv));
            for (int bi = 0; bi < o->nb; bi++)
                for (int li = 0; li < o->nl; li++) {
                    attn_arg t;
                    memset(&t, 0, sizeof t);
                    t.at = at;
                    t.kq = kq;
                    t.vq = vq;
                    t.B = o->batch[bi];
                    t.L = o->tokens[li];
                    t.hq = o->hq;
                    t.hkv = o->hkv;
                    t.d = d;
                    long n = (long)t.B * t.hkv * t.L;
                    /* rows [B][Hkv][L] tiled from the block (token t of head g = base row (g*T0 + t) mod nbase:
                     * the content repeats, the memory traffic is that of a real cache) */
                    t.kc.codes = tiled(bk.codes, nbase * rk, n * rk);
                    t.kc.norms = tiled(bk.norms, nbase * 2, n * 2);
                    t.kc.signs = kmethod == TQ_M_TURBO_PROD ? tiled(bk.signs, nbase * rs, n * rs) : NULL;
                    t.kc.rnorms = kmethod == TQ_M_TURBO_PROD ? tiled(bk.rnorms, nbase * 2, n * 2) : NULL;
                    t.vc.codes = tiled(bv.codes, nbase * rv, n * rv);
                    t.vc.norms = tiled(bv.norms, nbase * 2, n * 2);
                    tq_cuda_kv kv = {t.kc.codes, t.kc.norms, t.kc.signs, t.kc.rnorms, t.vc.codes, t.vc.norms};
                    t.kv = kv;
                    t.k16 = tiled(dkh, 2 * (size_t)nbase * d, 2 * (size_t)n * d);
                    t.v16 = tiled(dvh, 2 * (size_t)nbase * d, 2 * (size_t)n * d);
                    size_t nq = (size_t)t.B * t.hq * d;
                    float *hq = malloc(sizeof(float) * nq), *o1 = malloc(sizeof(float) * nq),
                          *o2 = malloc(sizeof(float) * nq);
                    tq_rng_normals(&r, hq, (long)nq);
                    CK(tq_cuda_alloc((void **)&t.q, sizeof(float) * nq));
                    CK(tq_cuda_alloc((void **)&t.out, sizeof(float) * nq));
                    CK(tq_cuda_upload(t.q, hq, sizeof(float) * nq));
                    double bytes_fp16 = 4.0 * n * d;
                    double bytes_q = (double)n * (rk + 2 + rv + 2 + (kmethod == TQ_M_TURBO_PROD ? rs + 2 : 0));
                    double ms16 = 0;
                    if (km == 0) { /* the fp16 row once per (B, L) */
                        ms16 = time_gpu(run_fp16, &t, o->iters);
                        row("attn", "fp16", t.B, t.L, ms16, bytes_fp16 / (ms16 * 1e6),
                            100.0 * bytes_fp16 / (ms16 * 1e6) / copy_gbs, 1.0, 0, 0);
                    } else ms16 = time_gpu(run_fp16, &t, o->iters);
                    /* validate: fused == dequantize-then-attend on the same codes (run_dequant overwrites the fp16
                     * cache, so it comes after the fp16 timing) */
                    CK(run_fused(&t));
                    CK(tq_cuda_sync());
                    CK(tq_cuda_download(o1, t.out, sizeof(float) * nq));
                    CK(run_dequant(&t));
                    CK(tq_cuda_sync());
                    CK(tq_cuda_download(o2, t.out, sizeof(float) * nq));
                    double en = 0, on = 0;
                    for (size_t i = 0; i < nq; i++) {
                        en += (double)(o1[i] - o2[i]) * (o1[i] - o2[i]);
                        on += (double)o2[i] * o2[i];
                    }
                    /* fp16 rounding of the dequantized cache (2^-11 relative) bounds the difference */
                    double check = sqrt(en / on);
                    if (!(check < 2e-3)) die("bench: fused attention disagrees with dequantize-then-attend: %.3g", check);
                    double msdq = time_gpu(run_dequant, &t, o->iters);
                    double msf = time_gpu(run_fused, &t, o->iters);
                    char cfg[64];
                    snprintf(cfg, sizeof cfg, "dequant+fp16 %s", km ? "prod" : "mse");
                    row("attn", cfg, t.B, t.L, msdq, (bytes_q + 2 * bytes_fp16) / (msdq * 1e6),
                        100.0 * (bytes_q + 2 * bytes_fp16) / (msdq * 1e6) / copy_gbs, ms16 / msdq, 1.0, 0);
                    snprintf(cfg, sizeof cfg, "fused-%s %db %s", km ? "turbo-prod" : "turbo-mse", o->bits,
                             o->rotation == TQ_ROT_DENSE ? "dense" : "had");
                    row("attn", cfg, t.B, t.L, msf, bytes_q / (msf * 1e6), 100.0 * bytes_q / (msf * 1e6) / copy_gbs,
                        ms16 / msf, msdq / msf, check);
                    free(hq); free(o1); free(o2);
                    tq_cuda_free(t.q); tq_cuda_free(t.out);
                    tq_cuda_free(t.kc.codes); tq_cuda_free(t.kc.norms); tq_cuda_free(t.kc.signs);
                    tq_cuda_free(t.kc.rnorms); tq_cuda_free(t.vc.codes); tq_cuda_free(t.vc.norms);
                    tq_cuda_free(t.k16); tq_cuda_free(t.v16);
                }
            tq_cuda_free(bk.codes); tq_cuda_free(bk.norms); tq_cuda_free(bk.signs); tq_cuda_free(bk.rnorms);
            tq_cuda_free(bv.codes); tq_cuda_free(bv.norms);
            tq_cuda_attn_free(at);
            tq_cuda_quant_free(kq);
            tq_cuda_quant_free(vq);
            free(krot); free(vrot); free(kS);
            host_quant_free(&hk_);
            host_quant_free(&hv_);
        }
    }
    tq_cuda_free(dkf); tq_cuda_free(dvf); tq_cuda_free(dkh); tq_cuda_free(dvh);
    free(hk); free(hv);
}

/* CPU: the format table's fast encoders on n vectors of one slice. */
static void bench_cpu(const bench_opts *o)
{
    printf("# tq bench --device cpu\n\n| kind     | config                 | vectors |        ms |   MB/s fp32 in |\n");
    printf("|----------|------------------------|---------|-----------|----------------|\n");
    long n = o->enc_n > 65536 ? 65536 : o->enc_n;
    int d = o->d;
    float *x = malloc(sizeof(float) * n * d);
    if (!x) die("bench: out of memory");
    tq_rng r;
    tq_rng_derive(&r, o->seed, -1, -1, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, x, n * d);
    if (csv) fprintf(csv, "kind,config,vectors,ms,mbs\n");
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
    o.d = 128;
    o.hq = 32;
    o.hkv = 8;
    o.bits = 3;
    o.rotation = TQ_ROT_HADAMARD;
    o.iters = 20;
    o.enc_n = 1L << 22;
    o.nb = 2;
    o.batch[0] = 1;
    o.batch[1] = 16;
    o.nl = 4;
    o.tokens[0] = 4096;
    o.tokens[1] = 32768;
    o.tokens[2] = 65536;
    o.tokens[3] = 131072;
    o.do_copy = o.do_encode = o.do_attn = 1;
    o.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) die_usage("bench: option '%s' needs a value (see 'tq bench --help')", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--device")) {
            if (!strcmp(v, "cuda")) o.device_cuda = 1;
            else if (!strcmp(v, "cpu")) o.device_cuda = 0;
            else die_usage("bench: unknown device '%s'; use cpu or cuda", v);
        } else if (!strcmp(a, "--dim")) o.d = (int)parse_long(a, v, 64, 256);
        else if (!strcmp(a, "--q-heads")) o.hq = (int)parse_long(a, v, 1, 256);
        else if (!strcmp(a, "--kv-heads")) o.hkv = (int)parse_long(a, v, 1, 256);
        else if (!strcmp(a, "--bits")) o.bits = (int)parse_long(a, v, 2, 4);
        else if (!strcmp(a, "--iters")) o.iters = (int)parse_long(a, v, 1, 100000);
        else if (!strcmp(a, "--encode-vectors")) o.enc_n = parse_long(a, v, 1, 1L << 26);
        else if (!strcmp(a, "--seed")) o.seed = parse_u64(a, v);
        else if (!strcmp(a, "-o")) o.out = v;
        else if (!strcmp(a, "--rotation")) {
            if (!strcmp(v, "hadamard")) o.rotation = TQ_ROT_HADAMARD;
            else if (!strcmp(v, "dense")) o.rotation = TQ_ROT_DENSE;
            else die_usage("bench: unknown rotation '%s'; use hadamard or dense", v);
        } else if (!strcmp(a, "--batch")) {
            long tmp[8];
            o.nb = parse_longs(a, v, 1, 1024, tmp, 8);
            for (int k = 0; k < o.nb; k++) o.batch[k] = (int)tmp[k];
        } else if (!strcmp(a, "--tokens")) o.nl = parse_longs(a, v, 1, 1L << 22, o.tokens, 8);
        else if (!strcmp(a, "--only")) {
            o.do_copy = !!strstr(v, "copy");
            o.do_encode = !!strstr(v, "encode");
            o.do_attn = !!strstr(v, "attn");
            if (!o.do_copy && !o.do_encode && !o.do_attn)
                die_usage("bench: --only '%s' names nothing; use copy, encode and/or attn", v);
        } else die_usage("bench: unknown option '%s' (see 'tq bench --help')", a);
    }
    if (o.hq % o.hkv) die_usage("bench: --q-heads %d is not a multiple of --kv-heads %d", o.hq, o.hkv);
    if (o.d != 64 && o.d != 128 && o.d != 256) die_usage("bench: --dim %d unsupported; use 64, 128 or 256", o.d);
    if (o.device_cuda) {
        int st = tq_cuda_device(NULL, 0, NULL, NULL);
        if (st) die_lib(st, "bench --device cuda");
    }
    if (o.out) {
        csv = out_open(o.out);
    }
    if (o.device_cuda) {
        bench_cuda(&o);
        tq_cuda_release();
    } else bench_cpu(&o);
    if (csv) out_commit(csv, o.out);
    return 0;
}
