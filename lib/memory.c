/* memory.c: KV-cache byte counts per configuration and shape (lib/memory.h) and their Markdown/CSV rows; the
 * writer prints to the FILE* it is given, never to stdout by itself. */
#include "memory.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tq.h"

/* Shapes from the models' configs (TURBOQUANT.md for Gemma-2B; Llama 3.1 config.json; the bundled SmolLM2 dump). */
const tq_mem_shape tq_mem_presets[] = {
    {"gemma-2b", 18, 1, 256},
    {"llama-3.1-8b", 32, 8, 128},
    {"llama-3.1-70b", 80, 8, 128},
    {"smollm2-135m", 30, 3, 64},
};
const int tq_mem_n_presets = (int)(sizeof tq_mem_presets / sizeof tq_mem_presets[0]);

const tq_mem_shape *tq_mem_preset_find(const char *name)
{
    for (int i = 0; i < tq_mem_n_presets; i++)
        if (!strcmp(tq_mem_presets[i].name, name)) return &tq_mem_presets[i];
    return NULL;
}

int tq_mem_configs(tq_qparams *out, int max, const int *methods, int nm, const int *bits, int nb, int group,
                   int norm32, int outliers)
{
    if (max < 2) return tq_error_set(TQ_ERR_USAGE, "too many configurations");
    int n = 0;
    tq_qparams_default(&out[n++], TQ_M_FP16, 16);
    tq_qparams_default(&out[n++], TQ_M_INT8, 8);
    for (int mi = 0; mi < nm; mi++) {
        const tq_format *f = tq_format_of(methods[mi]);
        if (f->method == TQ_M_FP16 || f->method == TQ_M_INT8) continue; /* always listed */
        for (int j = 0; j < nb; j++) {
            if (bits[j] < f->min_bits || bits[j] > f->max_bits) {
                if (f->min_bits == f->max_bits) { /* qjl: one width, whatever the widths asked */
                    if (j) continue;
                } else
                    return tq_error_set(TQ_ERR_USAGE, "--bits %d is out of range for %s (%d..%d)", bits[j], f->name,
                                        f->min_bits, f->max_bits);
            }
            if (n == max) return tq_error_set(TQ_ERR_USAGE, "too many configurations");
            tq_qparams *p = &out[n++];
            tq_qparams_default(p, f->method, f->min_bits == f->max_bits ? f->min_bits : bits[j]);
            p->group = group;
            p->norm_fp32 = norm32;
            if (outliers && (f->method == TQ_M_TURBO_MSE || f->method == TQ_M_TURBO_PROD)) p->outliers = outliers;
        }
    }
    out[0].norm_fp32 = out[1].norm_fp32 = norm32;
    return n;
}

/* Bytes of the whole cache for one configuration: per slice = bits_total * n * d / 8 (an integer: the payload in
 * bytes; rounded to absorb the division's float error), times 2 tensors x layers x kv heads x batch. */
static double cache_bytes(const tq_qparams *p, const tq_mem_shape *s, long context, long batch, double *bits_total)
{
    const tq_format *f = tq_format_of(p->method);
    *bits_total = f->bits_total(p, (int)context, s->head_dim);
    double slice = round(*bits_total * (double)context * s->head_dim / 8);
    return slice * 2.0 * s->layers * s->kv_heads * (double)batch;
}

static void params_text(const tq_qparams *p, char *buf, size_t n)
{
    if (p->method == TQ_M_FP16 || p->method == TQ_M_INT8) {
        const char *side = p->norm_fp32 ? "fp32 scale per vector" : "fp16 scale per vector";
        snprintf(buf, n, "%s", p->method == TQ_M_FP16 ? "" : side);
        return;
    }
    /* "turbo-mse,bits=3,rot=dense,cb=beta,seed=0" -> "rot=dense,cb=beta": the method and bits have their own
     * columns and the seed does not change a size. */
    char full[256];
    tq_qparams_describe(p, full, sizeof full);
    const char *s = strchr(full, ',');
    s = s ? s + 1 : full;
    if (!strncmp(s, "bits=", 5) && p->method != TQ_M_POLAR) s = strchr(s, ',') ? strchr(s, ',') + 1 : s + strlen(s);
    /* a cut cell is harmless here; copying by hand keeps -O1's -Wformat-truncation quiet */
    size_t len = strlen(s) < n ? strlen(s) : n - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *seed = strstr(buf, "seed=");
    if (seed) {
        if (seed > buf && seed[-1] == ',') seed--;
        *seed = 0;
    }
}

int tq_mem_row_of(const tq_qparams *p, const tq_mem_shape *s, long context, long batch, tq_mem_row *r)
{
    tq_qparams f16;
    double bt;
    tq_qparams_default(&f16, TQ_M_FP16, 16);
    double fp16_bytes = cache_bytes(&f16, s, context, batch, &bt);
    memset(r, 0, sizeof *r);
    r->bytes = cache_bytes(p, s, context, batch, &r->bits_total);
    if (!(r->bytes < 1.8e19))
        return tq_error_set(TQ_ERR_USAGE, "the cache of '%s' is too large to count in 64 bits", s->name);
    r->gib = r->bytes / (1024.0 * 1024 * 1024);
    r->vs_fp16 = fp16_bytes / r->bytes;
    params_text(p, r->params, sizeof r->params);
    return TQ_OK;
}

int tq_mem_write(FILE *f, const tq_mem_shape *s, const tq_qparams *cfg, int n, long context, long batch, int csv,
                 int header)
{
    tq_mem_row *rows = tq_malloc((size_t)(n > 0 ? n : 1) * sizeof *rows);
    if (!rows) return TQ_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int rc = tq_mem_row_of(&cfg[i], s, context, batch, &rows[i]);
        if (rc < 0) {
            free(rows);
            return rc;
        }
    }
    if (header && csv)
        fprintf(f, "model,layers,kv_heads,head_dim,context,batch,method,bits,params,bits_total,bytes,gib,vs_fp16\n");
    else if (header)
        fprintf(f, "| model | layers × kv heads × d | context | batch | method | bits | params | bits/coord (total) | "
                   "bytes | GiB | × smaller than fp16 |\n|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const tq_mem_row *r = &rows[i];
        const char *name = tq_format_of(cfg[i].method)->name;
        unsigned long long ub = (unsigned long long)r->bytes;
        if (csv)
            fprintf(f, "%s,%d,%d,%d,%ld,%ld,%s,%d,\"%s\",%.6f,%llu,%.6f,%.4f\n", s->name, s->layers, s->kv_heads,
                    s->head_dim, context, batch, name, cfg[i].bits, r->params, r->bits_total, ub, r->gib, r->vs_fp16);
        else
            fprintf(f, "| %s | %d × %d × %d | %ld | %ld | %s | %d | %s | %.4f | %llu | %.4f | %.2f |\n", s->name,
                    s->layers, s->kv_heads, s->head_dim, context, batch, name, cfg[i].bits, r->params, r->bits_total,
                    ub, r->gib, r->vs_fp16);
    }
    free(rows);
    return TQ_OK;
}
