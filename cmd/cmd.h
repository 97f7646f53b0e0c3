/* cmd.h: what every subcommand shares — the command table entry, dying with the right exit code
 * (1 runtime, 2 usage), strict number parsing, bit-width lists and the stderr progress bar. */
#ifndef TQ_CMD_H
#define TQ_CMD_H

#include <stdint.h>
#include <stdio.h>

#include "tq.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} tq_command;

/* End the process with `code`: stdio flushed, pending temporary outputs removed, then _exit (exit() would join
 * OpenBLAS's worker threads, which hang under an address-space limit). main and the die functions end through it. */
void tq_exit(int code) __attribute__((noreturn));
/* Run once by tq_exit before it ends the process (set by cmd/mpi.c: MPI_Finalize; tq_exit skips atexit handlers). */
extern void (*tq_exit_hook)(void);
/* Print "tq: <msg>\n" to stderr and exit(1) (runtime) or exit(2) (usage). */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* die(1) with the library's recorded message, prefixed by `what` when not NULL. */
void die_lib(int status, const char *what) __attribute__((noreturn));

/* Strict parsers: the whole string must be a number in [lo, hi], else die_usage naming the option. */
long parse_long(const char *opt, const char *s, long lo, long hi);
double parse_double(const char *opt, const char *s, double lo, double hi);
uint64_t parse_u64(const char *opt, const char *s);
/* The one list parser: "1-4", "2,3,4", "3" or mixes ("1,3-5") into *out (malloc'd, sorted, unique; free it);
 * returns the count (>= 1). Each value in [lo, hi], else die_usage naming the option; with `of` not NULL a value above
 * hi reads "N is out of range for '<of>', which has hi+1 (0..hi)" (layers or heads of an input). No cap. */
int parse_list(const char *opt, const char *s, long lo, long hi, const char *of, int **out);
/* "a,b,c" into *n names: one malloc'd block (free the returned pointer); an empty list or entry dies 2. */
char **parse_names(const char *opt, const char *s, int *n);
/* A vocabulary name (lib/vocab.h) for option `opt`, else die_usage "option 'opt': unknown <kind> 'x' (list)". */
int parse_vocab(const char *opt, int vocab, const char *s);

/* Progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct { long total, done; int active; double t0; const char *label; } tq_progress;
void progress_start(tq_progress *p, const char *label, long total);
void progress_step(tq_progress *p, long n);
void progress_end(tq_progress *p);

/* Before any work: die_usage when `out` is one of the n `inputs` (NULL entries skipped) or exists and is not a
 * regular file (writers rename a temporary file over it: /dev/full would be replaced); die (exit 1) when its folder
 * is missing or not writable, so a long run does not fail at its very end. */
void check_output(const char *out, const char *const *inputs, int n);

/* JSON output: a quoted, escaped string; a number with 9 significant digits, or null where not finite (JSON has no
 * NaN/Inf). */
void json_str(FILE *f, const char *s);
void json_num(FILE *f, double v);


/* Text outputs written through a temporary name (lib/tmpout.h: "<path>.tmp.XXXXXX", created O_EXCL|O_NOFOLLOW):
 * out_open creates it (dies naming `path` when it cannot) and out_commit closes it and renames it into place (dies,
 * removing it, on a write error). One pending text file at a time. */
FILE *out_open(const char *path);
void out_commit(FILE *f, const char *path);
/* Once, from main, before any work: under a small address-space limit (ulimit -v) re-execute single-threaded and
 * reserve OpenBLAS's work buffer now, or die cleanly when it cannot fit (OpenBLAS retries a failed one forever). */
void memory_limit_prepare(char **argv);
/* Once, from main: pending temporary outputs (text and HDF5 alike) are removed at exit and on SIGINT/SIGTERM/SIGHUP. */
void out_cleanup_install(void);

/* True when the option is -h/--help: the command prints its usage to stdout and exits 0. */
int is_help(const char *arg);

#endif
