/* fuzz_options.c: libFuzzer harness for option parsing — cmd_util's strict number and list parsers (their die()
 * becomes a longjmp back here: the build maps exit to tq_fuzz_exit) and the method / rotation / codebook / bits
 * spec: names, then a format's check and its bit counts on parameters taken from the input. */
#include "fuzz_common.h"

#include <math.h>
#include <setjmp.h>
#include <string.h>

#include "cmd.h"
#include "codes.h"
#include "quant.h"
#include "synth.h"
#include "tq.h"

static jmp_buf back;
static int exits;

void tq_fuzz_exit(int code) __attribute__((noreturn));
void tq_fuzz_exit(int code)
{
    if (code != 2) abort(); /* parsers only ever fail as usage errors */
    exits++;
    longjmp(back, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FILE *null = fopen("/dev/null", "w"); /* die's messages: thousands per second otherwise */
    if (null) stderr = null;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12) return 0;
    /* the first 12 bytes pick parameters, the rest is the option text */
    uint8_t k[12];
    memcpy(k, data, 12);
    char *s = malloc(size - 12 + 1);
    if (!s) return 0;
    memcpy(s, data + 12, size - 12);
    s[size - 12] = 0;
    volatile int stage = 0;
    if (setjmp(back) == 0) {
        switch (k[0] % 5) {
        case 0: (void)parse_long("--fuzz", s, -(long)k[1], (long)k[2] << (k[3] % 40)); break;
        case 1: (void)parse_double("--fuzz", s, -1.0 * k[1], 1.0 * k[2]); break;
        case 2: (void)parse_u64("--fuzz", s); break;
        case 3: {
            int lo = k[1] % 20 - 2, hi = lo + k[2] % 80, *out = NULL;
            /* half the inputs name what the list indexes: values above hi then get the "out of range for" message */
            int n = parse_list("--fuzz", s, lo, hi, k[3] & 1 ? "layers" : NULL, &out);
            for (int i = 0; i < n; i++)
                if (out[i] < lo || out[i] > hi || (i && out[i] <= out[i - 1])) abort(); /* sorted, unique, in range */
            free(out);
            break;
        }
        default: break;
        }
    }
    stage = 1;
    /* names: each parser answers a known id or -1, never anything else */
    const tq_format *f = tq_format_by_name(s);
    int rot = tq_rotation_parse(s), cb = tq_codebook_parse(s), dist = tq_synth_dist_parse(s);
    if ((f && strcmp(f->name, s)) || rot < -1 || cb < -1 || dist < -1) abort();
    /* a parameter set: method from the input, then whatever the check accepts must have sane bit counts */
    tq_qparams p;
    const tq_format *fm = tq_formats[k[4] % TQ_M_COUNT];
    tq_qparams_default(&p, fm->method, k[5] % 12 - 1);
    /* enumerations only ever come from the name parsers (CLI and codes files alike): valid ids */
    p.rotation = k[6] % 3;
    p.codebook = k[7] % 3;
    p.outliers = k[8] % 3 ? 0 : k[8] % 70;
    p.center = k[9] & 1;
    p.group = (k[9] >> 1) % 3 ? p.group : (k[9] >> 3) % 40;
    p.residual = k[10] % 4 ? 0 : k[10] % 50;
    p.qjl_m = k[11] % 3 ? 0 : k[11] % 300;
    if (k[10] & 128) {
        p.polar_levels = k[10] % 7;
        for (int i = 0; i < TQ_POLAR_MAX_LEVELS; i++) p.polar_bits[i] = (k[11] >> (i % 8)) % 10;
    }
    int d = 1 + (k[3] * 7 + k[2]) % 300;
    if (fm->check(&p, d) == TQ_OK) {
        double bc = fm->bits_code(&p, d), bt = fm->bits_total(&p, 1 + k[1] % 64, d);
        /* qjl with m > d projections has more than one code bit per coordinate: no upper bound but finiteness */
        if (!(bc > 0 && isfinite(bc) && isfinite(bt) && bt >= bc)) {
            char buf[256];
            dprintf(2, "%s %s at d=%d: bits_code %g, bits_total %g\n", fm->name, tq_qparams_describe(&p, buf, sizeof buf),
                    d, bc, bt);
            abort();
        }
        char buf[256];
        tq_qparams_describe(&p, buf, sizeof buf);
    }
    (void)stage;
    free(s);
    return 0;
}
