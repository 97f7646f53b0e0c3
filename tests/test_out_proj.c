/* test_out_proj.c: the out_proj sensitivity metric (lib/attention.h tq_attn_out_proj) — the attention-output error of
 * one kv head's query heads propagated through their block of the output projection — against a plain scalar
 * reference written here in double (scores, window, scale, soft-cap, softmax, P·V and the projection), its exact
 * zero when nothing is quantized, and the refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "rng.h"
#include "tq.h"
#include "tq_test.h"

static float *randn(long n, uint64_t seed, int stream, float sd)
{
    float *x = malloc((size_t)n * sizeof(float));
    tq_rng r;
    tq_rng_derive(&r, seed, 0, stream, TQ_PURPOSE_TEST);
    tq_rng_normals(&r, x, n);
    for (long i = 0; i < n; i++) x[i] *= sd;
    return x;
}

/* The definition, literally: for each t, e_t = sum_g W_g (p̂ V̂ − p V)_{g,t}, y_t = sum_g W_g (p V)_{g,t}. */
static void ref_out_proj(const float *q, int G, const float *k, const float *kh, const float *v, const float *vh,
                         int T, int d, int W, double scale, double cap, const float *wo, int E, int ld, double *num,
                         double *den)
{
    double *o = calloc((size_t)G * d, sizeof *o), *oh = calloc((size_t)G * d, sizeof *oh);
    double *s = malloc((size_t)T * sizeof *s), *sh = malloc((size_t)T * sizeof *sh);
    *num = *den = 0;
    for (int t = 0; t < T; t++) {
        int j0 = W > 0 && t - W + 1 > 0 ? t - W + 1 : 0;
        for (int g = 0; g < G; g++) {
            const float *qt = q + ((size_t)g * T + t) * d;
            double z = 0, zh = 0;
            for (int j = j0; j <= t; j++) {
                double a = 0, b = 0;
                for (int c = 0; c < d; c++) a += (double)qt[c] * k[(size_t)j * d + c], b += (double)qt[c] * kh[(size_t)j * d + c];
                a *= scale, b *= scale;
                if (cap > 0) a = cap * tanh(a / cap), b = cap * tanh(b / cap);
                s[j] = exp(a), sh[j] = exp(b); /* scores here are O(1): no max shift needed in double */
                z += s[j], zh += sh[j];
            }
            for (int c = 0; c < d; c++) {
                double a = 0, b = 0;
                for (int j = j0; j <= t; j++) a += s[j] / z * v[(size_t)j * d + c], b += sh[j] / zh * vh[(size_t)j * d + c];
                o[g * d + c] = a;
                oh[g * d + c] = b;
            }
        }
        for (int r = 0; r < E; r++) {
            double y = 0, e = 0;
            for (int i = 0; i < G * d; i++) {
                y += (double)wo[(size_t)r * ld + i] * o[i];
                e += (double)wo[(size_t)r * ld + i] * (oh[i] - o[i]);
            }
            *num += e * e;
            *den += y * y;
        }
    }
    free(o), free(oh), free(s), free(sh);
}

static void test_against_reference(void)
{
    /* G = 3 query heads of one kv head in a layer of 2 kv heads (ld = 2 * 3 * d), kv head 1's block; windows none,
     * 5 and T; scale 1/sqrt(d) and 0.3; soft-cap none and 2. Tolerance: the function rounds P·V and its error to
     * float (relative 6e-8 each) and sums the projection in float over G·d = 48 terms (~48 · 6e-8 = 3e-6 relative
     * worst case per entry); squared and summed, 1e-5 relative covers it with margin. */
    const int T = 37, d = 16, G = 3, E = 24, ld = 2 * G * d;
    float *q = randn((long)G * T * d, 1, 0, 1.0f), *k = randn((long)T * d, 1, 1, 1.0f),
          *kh = randn((long)T * d, 1, 2, 0.2f), *v = randn((long)T * d, 1, 3, 1.0f),
          *vh = randn((long)T * d, 1, 4, 0.2f), *wo = randn((long)E * ld, 1, 5, 0.1f);
    for (long i = 0; i < (long)T * d; i++) kh[i] += k[i], vh[i] += v[i]; /* quantized = exact + noise */
    const int windows[] = {0, 5, T};
    const double scales[] = {0, 0.3}, caps[] = {0, 2};
    for (int wi = 0; wi < 3; wi++)
        for (int si = 0; si < 2; si++)
            for (int ci = 0; ci < 2; ci++) {
                tq_attn_spec sp = {.window = windows[wi], .scale = scales[si], .softcap = caps[ci]};
                double n1, d1, n2, d2;
                int rc = tq_attn_out_proj(q, G, k, kh, v, vh, T, d, &sp, wo + G * d, E, ld, &n1, &d1);
                CHECK(rc == TQ_OK, "out_proj: %s", tq_error_msg());
                ref_out_proj(q, G, k, kh, v, vh, T, d, windows[wi], scales[si] ? scales[si] : 1 / sqrt(d), caps[ci],
                             wo + G * d, E, ld, &n2, &d2);
                char what[96];
                snprintf(what, sizeof what, "num, window %d scale %g cap %g", windows[wi], scales[si], caps[ci]);
                CHECK_REL(n1, n2, 1e-5, what);
                snprintf(what, sizeof what, "den, window %d scale %g cap %g", windows[wi], scales[si], caps[ci]);
                CHECK_REL(d1, d2, 1e-5, what);
            }
    /* keys only (vhat = v) and values only (khat = k) are the two cases the sensitivity scan asks for */
    double n1, d1, n2, d2;
    tq_attn_out_proj(q, G, k, kh, v, v, T, d, NULL, wo, E, ld, &n1, &d1);
    ref_out_proj(q, G, k, kh, v, v, T, d, 0, 1 / sqrt(d), 0, wo, E, ld, &n2, &d2);
    CHECK_REL(n1, n2, 1e-5, "keys only");
    tq_attn_out_proj(q, G, k, k, v, vh, T, d, NULL, wo, E, ld, &n1, &d1);
    ref_out_proj(q, G, k, k, v, vh, T, d, 0, 1 / sqrt(d), 0, wo, E, ld, &n2, &d2);
    CHECK_REL(n1, n2, 1e-5, "values only");
    /* nothing quantized: the error is exactly zero (b - a of the same double sums), the denominator is not */
    tq_attn_out_proj(q, G, k, k, v, v, T, d, NULL, wo, E, ld, &n1, &d1);
    CHECK(n1 == 0 && d1 > 0, "exact: num %g den %g", n1, d1);
    /* bad shapes: a leading dimension narrower than the group's columns */
    CHECK(tq_attn_out_proj(q, G, k, k, v, v, T, d, NULL, wo, E, G * d - 1, &n1, &d1) == TQ_ERR_USAGE &&
              strstr(tq_error_msg(), "out_proj"), "%s", tq_error_msg());
    CHECK(isnan(n1) && isnan(d1), "refused: NaN results");
    free(q), free(k), free(kh), free(v), free(vh), free(wo);
}

int main(void)
{
    test_against_reference();
    TQ_TEST_END();
}
