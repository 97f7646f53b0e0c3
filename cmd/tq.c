/* tq.c: entry point and the subcommand table. Adding a command: write cmd/<name>.c with
 * `int cmd_<name>(int argc, char **argv)` (argv[0] is the command name, --help prints usage to stdout and
 * returns 0), declare it in cmd/commands.h, add one row below, add a CLI test in tests/cli/ and a README line. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "commands.h"

static const tq_command commands[] = {
    {"version", NULL, "print the version and build features (also --version)"},
    {"synth", cmd_synth, "write a dump of synthetic keys/values/queries (gaussian, structured, outlier, heavy, rope)"},
    {"info", cmd_info, "describe a dump: shapes, dtype, per-layer norms, outliers, NaN/Inf counts"},
    {"quantize", cmd_quantize, "quantize a dump's keys and values into a tq-codes file (real packed size)"},
    {"dequantize", cmd_dequantize, "rebuild a dump from a tq-codes file alone"},
    {"sweep", cmd_sweep, "quantize every slice under many configurations and report the metrics"},
    {"entropy", cmd_entropy, "attention entropy, collapse and KL against bits, dumps and synthetic side by side"},
    {"sensitivity", cmd_sensitivity, "per-layer / per-head distortion curves against bits, for bit schedules"},
    {"mixed-schedule", cmd_mixed_schedule, "bits per layer/head under a budget from sensitivity curves (optimal or rank)"},
    {"bench", cmd_bench, "time encode and fused decode attention on packed codes (--device cpu|cuda)"},
    {"dump", cmd_dump, "run a GGUF model over a text and dump its post-RoPE keys, values and queries"},
    {"perplexity", cmd_perplexity, "closed loop: teacher-forced perplexity, KL and top-1 with the KV cache quantized"},
    {"generate", cmd_generate, "closed loop: greedy/sampled continuation and passkey retrieval with the KV cache quantized"},
    {"memory", cmd_memory, "KV-cache bytes of a model shape or preset: fp16, int8, packed codes with side info"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *f)
{
    fprintf(f, "usage: tq <command> [options]   (tq <command> --help for each)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit status: 0 ok, 1 runtime error, 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        tq_exit(0);
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("tq %s (cuda %s, openmp %s)\n", TQ_VERSION, TQ_HAVE_CUDA ? "yes" : "no", TQ_HAVE_OPENMP ? "yes" : "no");
        if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write the standard output (disk full?)");
        tq_exit(0);
    }
    out_cleanup_install();
    /* the commands that never call BLAS run as they are under any limit */
    if (strcmp(argv[1], "info") && strcmp(argv[1], "memory") && strcmp(argv[1], "mixed-schedule"))
        memory_limit_prepare(argv);
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].fn(argc - 1, argv + 1);
            /* a table or JSON piped into a full disk must not end with exit 0 */
            if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write the standard output (disk full?)");
            tq_exit(rc);
        }
    die_usage("unknown command '%s' (see 'tq --help')", argv[1]);
}
