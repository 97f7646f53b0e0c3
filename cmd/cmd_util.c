/* cmd_util.c: the shared command-line plumbing declared in cmd.h. */
#include "cmd.h"

#include "dump.h"
#include "tmpout.h"
#include "vocab.h"

#include <cblas.h>
#include <errno.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void (*tq_exit_hook)(void);

void tq_exit(int code)
{
    if (tq_exit_hook) { /* once: MPI_Finalize (cmd/mpi.c), which exit's atexit handlers would have run */
        void (*h)(void) = tq_exit_hook;
        tq_exit_hook = NULL;
        h();
    }
#ifdef exit
    exit(code); /* the fuzz harnesses turn exit into a longjmp back to the fuzzer */
#else
    /* Not exit(): it joins OpenBLAS's worker threads, and under an address-space limit (ulimit -v) a worker can be
     * stuck retrying a failed mmap, so every command hung at its very end. What exit would do that matters is done
     * here: stdio flushed, pending temporary files removed, the leak check run under ASan. */
    fflush(stdout);
    fflush(stderr);
    tq_tmp_remove_all();
#if defined(__SANITIZE_ADDRESS__)
    __lsan_do_leak_check();
#endif
    _exit(code);
#endif
}

/* Under mpirun/srun every rank parses the same arguments and opens the same inputs, so a usage error (or a missing
 * input) is met by every rank: rank 0 says it, the others wait 2 s first. The launcher ends them as soon as rank 0
 * has exited, so the message appears once; a rank still alive after that has an error of its own (a file missing
 * on its node), which it then prints. Failures inside the work go through cmd/mpi.c's one message instead. */
static void rank_wait(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v && strtol(v, NULL, 10) > 0) {
            sleep(2);
            return;
        }
    }
}

static void vmsg(const char *fmt, va_list ap)
{
    fputs("tq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void die(const char *fmt, ...)
{
    rank_wait();
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    tq_exit(1);
}

void die_usage(const char *fmt, ...)
{
    rank_wait();
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    tq_exit(2);
}

void die_lib(int status, const char *what)
{
    rank_wait();
    if (what) fprintf(stderr, "tq: %s: %s\n", what, tq_error_msg());
    else fprintf(stderr, "tq: %s\n", tq_error_msg());
    tq_exit(status == TQ_ERR_USAGE ? 2 : 1);
}

long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno) die_usage("option '%s' needs an integer, got '%s'", opt, s);
    if (v < lo || v > hi) die_usage("option '%s' is %ld, must be in %ld..%ld", opt, v, lo, hi);
    return v;
}

double parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) die_usage("option '%s' needs a number, got '%s'", opt, s);
    if (v < lo || v > hi) die_usage("option '%s' is %g, must be in %g..%g", opt, v, lo, hi);
    return v;
}

uint64_t parse_u64(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-') die_usage("option '%s' needs a non-negative integer, got '%s'", opt, s);
    unsigned long long v = strtoull(s, &end, 0);
    if (*end || errno) die_usage("option '%s' needs a non-negative integer, got '%s'", opt, s);
    return (uint64_t)v;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* parse_list's failures free what it holds first: under the fuzz harness die() returns to the fuzzer by longjmp */
static void list_die(char *buf, int *v, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
static void list_die(char *buf, int *v, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(buf);
    free(v);
    die_usage("%s", msg);
}

/* parse_long with parse_list's cleanup: the same messages */
static long list_long(const char *opt, const char *tok, long lo, long hi, char *buf, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(tok, &end, 10);
    if (!*tok || *end || errno) list_die(buf, v, "option '%s' needs an integer, got '%.200s'", opt, tok);
    if (x < lo || x > hi) list_die(buf, v, "option '%s' is %ld, must be in %ld..%ld", opt, x, lo, hi);
    return x;
}

int parse_list(const char *opt, const char *s, long lo, long hi, const char *of, int **out)
{
    if (!s || !*s) die_usage("option '%s': bad list '%s' (want e.g. 1-4 or 2,3,4)", opt, s ? s : "");
    char *buf = strdup(s);
    int *v = NULL;
    size_t n = 0, cap = 0;
    if (!buf) die("out of memory");
    /* with `of`, numbers are read as any index and then checked against the input's count, naming it */
    long top = of ? 1L << 30 : hi;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok + 1, '-'); /* tok+1: a leading '-' is a sign, rejected by the range */
        long a, b;
        if (dash) {
            *dash = 0;
            a = list_long(opt, tok, lo, top, buf, v);
            b = list_long(opt, dash + 1, lo, top, buf, v);
            if (b < a) list_die(buf, v, "option '%s': empty range '%.200s-%.200s'", opt, tok, dash + 1);
        } else a = b = list_long(opt, tok, lo, top, buf, v);
        if (of && b > hi)
            list_die(buf, v, "option '%s': %ld is out of range for '%s', which has %ld (0..%ld)", opt, b, of, hi + 1,
                     hi);
        if (b - a >= (1L << 24) || n + (size_t)(b - a) >= (1u << 24))
            list_die(buf, v, "option '%s': more than 2^24 values in '%.200s'", opt, s);
        for (long x = a; x <= b; x++) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                int *t = realloc(v, cap * sizeof *v);
                if (!t) {
                    free(buf);
                    free(v);
                    die("out of memory");
                }
                v = t;
            }
            v[n++] = (int)x;
        }
    }
    free(buf);
    if (!n) list_die(NULL, v, "option '%s': bad list '%.200s' (want e.g. 1-4 or 2,3,4)", opt, s);
    qsort(v, n, sizeof *v, cmp_int);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!k || v[i] != v[k - 1]) v[k++] = v[i];
    *out = v;
    return (int)k;
}

char **parse_names(const char *opt, const char *s, int *n)
{
    if (!s || !*s) die_usage("option '%s': bad list '%s'", opt, s ? s : "");
    size_t len = strlen(s), k = 1;
    for (const char *p = s; *p; p++) k += *p == ',';
    char **out = malloc(k * sizeof *out + len + 1);
    if (!out) die("out of memory");
    char *text = (char *)(out + k);
    memcpy(text, s, len + 1);
    *n = 0;
    for (char *t = text;; t++) {
        char *c = strchr(t, ',');
        if (c) *c = 0;
        if (!*t) die_usage("option '%s': empty entry in '%s'", opt, s);
        out[(*n)++] = t;
        if (!c) break;
        t = c;
    }
    return out;
}

int parse_vocab(const char *opt, int vocab, const char *s)
{
    int v = tq_vocab_find((tq_vocab)vocab, s);
    if (v < 0) die_usage("option '%s': unknown %s '%s' (%s)", opt, tq_vocab_kind((tq_vocab)vocab), s,
                         tq_vocab_list((tq_vocab)vocab, ", "));
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_start(tq_progress *p, const char *label, long total)
{
    p->total = total > 0 ? total : 1;
    p->done = 0;
    p->label = label;
    p->active = isatty(2);
    p->t0 = now_s();
}

void progress_step(tq_progress *p, long n)
{
    p->done += n;
    if (!p->active) return;
    int w = 30, fill = (int)((double)w * (double)p->done / (double)p->total);
    if (fill > w) fill = w;
    fprintf(stderr, "\r%s [%.*s%*s] %ld/%ld %.1fs", p->label, fill, "##############################", w - fill, "",
            p->done, p->total, now_s() - p->t0);
    fflush(stderr);
}

void progress_end(tq_progress *p)
{
    if (p->active) fprintf(stderr, "\r%*s\r", 70, "");
}

int is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

typedef struct { const struct stat *out_st; const char *out, *input; } source_clash;

static int source_is_output(const char *obj, const char *kind, const char *file, const char *const *cand, int n,
                            void *ctx)
{
    const source_clash *c = ctx;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(cand[i], &st) == 0 && st.st_dev == c->out_st->st_dev && st.st_ino == c->out_st->st_ino)
            die_usage("output '%s' is a file the input '%s' reads ('/%s' is %s '%s'); choose another -o", c->out,
                      c->input, obj, kind, file);
    }
    return 0;
}

void check_output(const char *out, const char *const *inputs, int n)
{
    /* the temporary name adds TQ_TMP_SUFFIX_LEN bytes: a path that cannot take them would be truncated into the
     * final name (written in place, then deleted on failure) */
    size_t len = strlen(out);
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (len + TQ_TMP_SUFFIX_LEN >= TQ_PATH_MAX || strlen(base) + TQ_TMP_SUFFIX_LEN > 255) {
        die_usage("output '%.64s...' is too long (%zu bytes, file name %zu): tq writes through a temporary name %d "
                  "bytes longer, within %d for the path and 255 for the name", out, len, strlen(base),
                  TQ_TMP_SUFFIX_LEN, TQ_PATH_MAX - 1);
    }
    struct stat so, si;
    int exists = stat(out, &so) == 0;
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) continue;
        if (!strcmp(out, inputs[i]) || (exists && stat(inputs[i], &si) == 0 && si.st_dev == so.st_dev &&
                                        si.st_ino == so.st_ino))
            die_usage("output '%s' is the input '%s'; choose another -o", out, inputs[i]);
    }
    /* an input's external links and virtual datasets read other files: writing over one destroys the input's data */
    for (int i = 0; i < n && exists; i++) {
        if (!inputs[i]) continue;
        source_clash c = {&so, out, inputs[i]};
        tq_h5_sources_of(inputs[i], source_is_output, &c);
    }
    if (exists && !S_ISREG(so.st_mode))
        die_usage("output '%s' is not a regular file (tq writes a temporary file and renames it into place); "
                  "give a file path", out);
    char dir[4096];
    const char *slash = strrchr(out, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == out) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - out) < 4095 ? (int)(slash - out) : 4095, out);
    struct stat sd;
    if (stat(dir, &sd) != 0) die("cannot write '%s': folder '%s' does not exist (create it first)", out, dir);
    if (!S_ISDIR(sd.st_mode)) die("cannot write '%s': '%s' is not a folder", out, dir);
    if (access(dir, W_OK) != 0) die("cannot write '%s': folder '%s' is not writable (%s)", out, dir, strerror(errno));
}

void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void json_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

static char out_pending[TQ_PATH_MAX];

FILE *out_open(const char *path)
{
    int fd = tq_tmp_create(path, out_pending);
    if (fd < 0) die_lib(fd, NULL);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        tq_tmp_discard(out_pending);
        die("cannot write '%s': %s", path, strerror(e));
    }
    return f;
}

void out_commit(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) die("cannot write '%s': %s", path, strerror(errno ? errno : EIO));
    if (tq_tmp_commit(out_pending, path)) die_lib(TQ_ERR, NULL);
}

/* SIGINT/SIGTERM/SIGHUP: remove the pending temporary outputs (a half-written file of hundreds of MB otherwise stays),
 * then die of the same signal so the caller sees how the command ended. */
static void on_signal(int sig)
{
    tq_tmp_remove_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Under an address-space limit (ulimit -v) OpenBLAS's first call in each thread mallocs a 128 MiB work buffer and,
 * when that fails, retries forever: every command using a rotation hung (sometimes right after "out of memory").
 * So, when a limit is set and it leaves less than 256 MiB per core: run with one thread (tq's output is the same
 * for any thread count) by re-executing with OMP_THREAD_LIMIT=1 and OPENBLAS_NUM_THREADS=1 (both are read when the
 * libraries load), check that the buffer fits, and have OpenBLAS take it now, while the memory is free — later
 * calls reuse it. A limit too small for it is refused with a clean exit naming the size to ask for. */
#define BLAS_BUFFER_MIB 128

void memory_limit_prepare(char **argv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    unsigned long long mib = (unsigned long long)rl.rlim_cur >> 20;
    if (mib >= (unsigned long long)(cores + 2) * 256) return; /* room for a buffer per thread */
    if (!getenv("TQ_ONE_THREAD")) {
        setenv("TQ_ONE_THREAD", "1", 1);
        setenv("OMP_THREAD_LIMIT", "1", 1);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execv("/proc/self/exe", argv);
        return; /* no /proc: carry on, the probe below still guards the first call */
    }
    void *probe = malloc(((size_t)BLAS_BUFFER_MIB + 32) << 20);
    if (!probe)
        die("the address-space limit (ulimit -v) of %llu MiB leaves no room for OpenBLAS's %d MiB work buffer; allow "
            "at least %d MiB more than the data needs", mib, BLAS_BUFFER_MIB, BLAS_BUFFER_MIB + 64);
    free(probe);
    float a = 1, b = 1, c = 0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
}

void out_cleanup_install(void)
{
    atexit(tq_tmp_remove_all); /* die() mid-write: exit handlers run, the temporary goes */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int s = 0; s < 3; s++) {
        int sig = s == 0 ? SIGINT : s == 1 ? SIGTERM : SIGHUP;
        struct sigaction old;
        /* a signal ignored by whoever started tq (nohup, a shell's background job) stays ignored */
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sig, &sa, NULL);
    }
}
