/* mpi.c: the commands' work units over MPI ranks (mpi_work.h, README "Scaling out"). Rank 0 owns the queue (units in
 * decreasing estimated cost) and the results, and computes units like any other rank: between two of its own units
 * it takes the results that arrived and tops up every rank's units, so each other rank always holds enough queued
 * work to outlast rank 0's current unit and never waits for it. Messages are sent without blocking (MPI_Isend).
 * Results travel as the bytes the library produced, so rank 0 aggregates and writes exactly what one process would.
 * Compiled only with MPI=1 (the Makefile); cmd/mpi_stub.c stands in otherwise. */
#include "mpi_work.h"

#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "cuda/tq_cuda.h"
#include "dump.h"

enum { TAG_WORK = 1, TAG_RESULT, TAG_FAIL };
#define DEPTH 3           /* units a rank holds at least: one computing, two queued (see top_up) */
#define NEED 3.0          /* and queued work of NEED times the estimated cost of rank 0's current unit */
#define HOLD_MAX 64       /* at most (more than DEPTH while rank 0's next unit outweighs what a rank has queued) */
#define NAME_LEN 200
#define POLL_NS 1000000L  /* 1 ms between polls when idle (a rank out of units, rank 0 after the last unit): MPI's
                           * blocking waits spin, taking the core from the ranks still computing */

static int g_state;       /* 0: not asked yet, 1: one process, 2: MPI ranks */
static int g_rank, g_size;

static long env_long(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : -1;
}

static void finish(void)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Finalize();
}

int mpi_active(void)
{
    if (g_state) return g_state == 2;
    g_state = 1;
    /* started by a launcher (mpirun, srun) with more than one task: only then pay for MPI_Init */
    if (env_long("OMPI_COMM_WORLD_SIZE") <= 1 && env_long("PMI_SIZE") <= 1 && env_long("SLURM_STEP_NUM_TASKS") <= 1)
        return 0;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) die("cannot initialise MPI");
    atexit(finish);
    tq_exit_hook = finish; /* tq_exit ends with _exit: atexit handlers do not run there */
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (provided < MPI_THREAD_FUNNELED) die("the MPI library does not allow threads (MPI_THREAD_FUNNELED)");
    if (g_size > 1) g_state = 2;
    return g_state == 2;
}

static void nap(void)
{
    struct timespec ts = {0, POLL_NS};
    nanosleep(&ts, NULL);
}

/* ---- faults: one message naming the rank and the unit, then the whole job ends ---- */

/* TQ_MPI_FAULT=RANK:kill|fail makes RANK die by SIGKILL, or fail its unit, at its first unit (the CLI tests' way to
 * kill a rank at a known point; README "Scaling out"). */
static int fault_check(void)
{
    static int used;
    const char *f = getenv("TQ_MPI_FAULT");
    if (!f || used) return TQ_OK;
    char *end;
    long r = strtol(f, &end, 10);
    if (end == f || *end != ':' || r != g_rank) return TQ_OK;
    used = 1;
    if (!strcmp(end + 1, "kill")) raise(SIGKILL);
    return tq_error_set(TQ_ERR, "injected fault (TQ_MPI_FAULT=%s)", f);
}

/* Ends the job after a message on stderr. Open MPI forwards a rank's stderr through its daemon, and an immediate
 * MPI_Abort can end the daemon before it has read the line (seen once in CI, under load: the job's only message
 * lost); 0.3 s lets the line through first. */
static _Noreturn void abort_job(int code)
{
    fflush(stderr);
    struct timespec ts = {0, 300000000L};
    nanosleep(&ts, NULL);
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

static _Noreturn void job_fail(const mpi_work *w, int rank, long unit, const char *msg)
{
    char name[NAME_LEN];
    w->name(w->ctx, unit, name, sizeof name);
    signal(SIGTERM, SIG_DFL); /* the launcher's SIGTERM after the abort is not a second message */
    fprintf(stderr, "tq: rank %d failed on unit %ld of %ld (%s): %s\n", rank, unit, w->n, name, msg);
    abort_job(1);
}

/* Rank 0 names the units in flight when the launcher stops the job (a rank was killed: the launcher's own message
 * names it; SIGTERM is how Open MPI and Slurm end the survivors). Written with write(2) only. */
static char (*g_flight)[HOLD_MAX][NAME_LEN];
static long (*g_flight_unit)[HOLD_MAX];
static int g_flight_ranks;

static void put(const char *s) { (void)!write(2, s, strlen(s)); }

static void on_term(int sig)
{
    put("tq: the job was stopped before every unit was done (a rank ended early); units in flight:");
    for (int r = 0; r < g_flight_ranks; r++)
        for (int k = 0; k < HOLD_MAX; k++) {
            if (!g_flight[r][k][0]) continue;
            char num[16];
            int n = 0, x = r;
            do num[n++] = (char)('0' + x % 10); while ((x /= 10) && n < 15);
            put(" rank ");
            while (n) (void)!write(2, &num[--n], 1);
            put(": ");
            put(g_flight[r][k]);
            put(";");
        }
    put("\n");
    _exit(1);
}

static void flight_set(const mpi_work *w, int rank, long unit)
{
    for (int k = 0; k < HOLD_MAX; k++)
        if (!g_flight[rank][k][0]) {
            w->name(w->ctx, unit, g_flight[rank][k], NAME_LEN);
            g_flight_unit[rank][k] = unit;
            return;
        }
}

static void flight_clear(const mpi_work *w, int rank, long unit)
{
    for (int k = 0; k < HOLD_MAX; k++)
        if (g_flight[rank][k][0] && g_flight_unit[rank][k] == unit) {
            g_flight[rank][k][0] = 0;
            return;
        }
}

/* ---- --resume FILE: rank 0's record of finished units (mpi_work.h) ----
 * Layout: a header {"tq-rsm1\0", units, result bytes, fingerprint} (4 x 8 bytes, native byte order: the same
 * binary on the same kind of machine, as for any bitwise claim), then one record per finished unit: the unit index
 * (int64) and its result bytes, appended with one write(2) each as results arrive. */

static char g_resume[4096];
static uint64_t g_resume_fp = 1469598103934665603ULL; /* FNV-1a 64 over the arguments, then the units' names */
static const char RESUME_MAGIC[8] = "tq-rsm1";

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 1099511628211ULL;
}

void mpi_resume_set(const char *path, int argc, char **argv)
{
    if (!mpi_active())
        die_usage("option '--resume' resumes an MPI job (mpirun/srun with 2 or more ranks); one process runs every "
                  "unit itself");
    if (strlen(path) >= sizeof g_resume) die_usage("option '--resume': path too long");
    snprintf(g_resume, sizeof g_resume, "%s", path);
    fnv(&g_resume_fp, TQ_VERSION, sizeof TQ_VERSION);
    for (int i = 0; i < argc; i++) { /* every argument but --resume's and -o's: the output's name is not the job */
        if (!strcmp(argv[i], "--resume") || !strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--resume=", 9) || !strncmp(argv[i], "--output=", 9)) continue;
        fnv(&g_resume_fp, argv[i], strlen(argv[i]) + 1);
    }
}

static _Noreturn void resume_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void resume_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    signal(SIGTERM, SIG_DFL);
    abort_job(code);
}

/* Opens (or creates) the file, checks it belongs to this job, copies its results and marks those units done;
 * returns the descriptor positioned for appending, *resumed = units found. */
static int resume_open(const mpi_work *w, char *results, unsigned char *done, long *resumed)
{
    uint64_t fp = g_resume_fp;
    for (long i = 0; i < w->n; i++) {
        char name[NAME_LEN];
        w->name(w->ctx, i, name, sizeof name);
        fnv(&fp, name, strlen(name) + 1);
    }
    uint64_t hdr[4] = {0, (uint64_t)w->n, (uint64_t)w->bytes, fp};
    memcpy(&hdr[0], RESUME_MAGIC, 8);
    int fd = open(g_resume, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) resume_die(1, "cannot open resume file '%s': %s", g_resume, strerror(errno));
    if (!S_ISREG(st.st_mode)) resume_die(2, "resume file '%s' is not a regular file", g_resume);
    *resumed = 0;
    if (st.st_size == 0) {
        if (write(fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr)
            resume_die(1, "cannot write resume file '%s': %s", g_resume, strerror(errno));
        return fd;
    }
    uint64_t got[4];
    if (st.st_size < (off_t)sizeof got || read(fd, got, sizeof got) != (ssize_t)sizeof got || memcmp(got, hdr, 8))
        resume_die(2, "'%s' is not a tq resume file; give a new name (it is created) or the file of this job",
                   g_resume);
    if (got[1] != hdr[1] || got[2] != hdr[2] || got[3] != hdr[3])
        resume_die(2, "resume file '%s' belongs to another job (%llu units; this one has %ld, or other arguments or "
                   "inputs); remove it or give another name", g_resume, (unsigned long long)got[1], w->n);
    size_t rec = sizeof(int64_t) + w->bytes;
    long k = (long)((st.st_size - (off_t)sizeof hdr) / (off_t)rec);
    char *buf = malloc(rec);
    if (!buf) resume_die(1, "out of memory");
    for (long r = 0; r < k; r++) {
        int64_t u;
        if (read(fd, buf, rec) != (ssize_t)rec) resume_die(1, "cannot read resume file '%s'", g_resume);
        memcpy(&u, buf, sizeof u);
        if (u < 0 || u >= w->n) resume_die(1, "resume file '%s' is corrupt: record %ld names unit %lld", g_resume, r,
                                           (long long)u);
        memcpy(results + (size_t)u * w->bytes, buf + sizeof u, w->bytes);
        if (!done[u]) done[u] = 1, (*resumed)++;
    }
    free(buf);
    off_t end = (off_t)sizeof hdr + (off_t)k * (off_t)rec;
    if (end != st.st_size && ftruncate(fd, end) < 0) /* a record cut short when the job was killed */
        resume_die(1, "cannot truncate resume file '%s': %s", g_resume, strerror(errno));
    if (lseek(fd, end, SEEK_SET) < 0) resume_die(1, "cannot seek in resume file '%s'", g_resume);
    return fd;
}

/* one record */
static int resume_put(int fd, const mpi_work *w, long u, const char *result, char *scratch)
{
    int64_t u64 = u;
    size_t rec = sizeof u64 + w->bytes;
    memcpy(scratch, &u64, sizeof u64);
    memcpy(scratch + sizeof u64, result, w->bytes);
    if (write(fd, scratch, rec) != (ssize_t)rec)
        return tq_error_set(TQ_ERR, "cannot write resume file '%s': %s", g_resume, strerror(errno));
    return TQ_OK;
}

/* ---- rank 0: the queue, the dispatch between its own units ---- */

typedef struct {
    const mpi_work *w;
    char *results;
    long *order, n_queue, next, done, self_done, work_msgs, work_units;
    int resume_fd; /* --resume: the record file, else -1 */
    char *resume_buf;
    long (*hold)[HOLD_MAX];       /* per rank: the units sent and not yet answered, oldest (computing) first */
    int *nhold;
    long (*wbuf)[2][HOLD_MAX];    /* per rank: two work-message buffers, sent with MPI_Isend */
    MPI_Request (*wreq)[2];
    int *wflip;
} pool;

static const double *g_cost; /* qsort's comparator has no context argument */

static int by_cost(const void *a, const void *b)
{
    const double *cost = g_cost;
    long x = *(const long *)a, y = *(const long *)b;
    if (cost && cost[x] != cost[y]) return cost[x] > cost[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static double cost_of(const pool *p, long u) { return p->w->cost ? p->w->cost[u] : 1; }

/* Tops up rank r's units in one work message: at least DEPTH held, and beyond that (up to HOLD_MAX) until what it
 * has queued behind the unit it is computing costs NEED times the unit rank 0 would compute next, so no rank runs
 * dry while rank 0 computes (the queue is in decreasing cost: a larger unit is always handed out first; NEED
 * covers the cost estimate's error: units of one estimate took 3-12 ms on the bundled dump). Near the end no rank
 * holds more than its share of what is left (+1), so the last units still spread over the ranks. */
static void top_up(pool *p, int r, long held)
{
    if (p->next >= p->n_queue) return;
    long share = (p->n_queue - p->next + held) / g_size + 1;
    int cap = share < DEPTH ? DEPTH : share < HOLD_MAX ? (int)share : HOLD_MAX;
    double queued = 0, need = NEED * cost_of(p, p->order[p->next]);
    for (int k = 1; k < p->nhold[r]; k++) queued += cost_of(p, p->hold[r][k]);
    int nb = 0, f = p->wflip[r], free_;
    long *batch = p->wbuf[r][f];
    /* the buffer's previous message (the one before last) still on its way: the rank has two messages of units
     * it has not even taken yet, so no top-up now (waiting here would spin until the rank's next MPI call) */
    MPI_Test(&p->wreq[r][f], &free_, MPI_STATUS_IGNORE);
    if (!free_) return;
    while (p->next < p->n_queue && p->nhold[r] < cap && (p->nhold[r] < DEPTH || queued < need)) {
        long u = p->order[p->next++];
        if (p->nhold[r]) queued += cost_of(p, u);
        batch[nb++] = u;
        p->hold[r][p->nhold[r]++] = u;
        flight_set(p->w, r, u);
    }
    if (!nb) return;
    MPI_Isend(batch, nb, MPI_LONG, r, TAG_WORK, MPI_COMM_WORLD, &p->wreq[r][f]);
    int sent; /* progress now: an Isend left alone moves only at rank 0's next MPI call, after its next unit */
    MPI_Test(&p->wreq[r][f], &sent, MPI_STATUS_IGNORE);
    p->wflip[r] = !f;
    p->work_msgs++;
    p->work_units += nb;
}

/* a finished unit (rank 0's or another's): its result stored, and recorded for --resume */
static void store(pool *p, int rank, long u, const char *result)
{
    const mpi_work *w = p->w;
    char *dst = p->results + (size_t)u * w->bytes;
    if (result != dst) memcpy(dst, result, w->bytes);
    flight_clear(w, rank, u);
    p->done++;
    if (p->resume_fd >= 0 && resume_put(p->resume_fd, w, u, dst, p->resume_buf) < 0) job_fail(w, 0, u, tq_error_msg());
}

/* every message already arrived: a failure ends the job; a result is stored and leaves the rank's hold list */
static void drain(pool *p, char *buf, size_t msg)
{
    for (;;) {
        int flag, count;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
        if (!flag) return;
        MPI_Get_count(&st, MPI_BYTE, &count);
        MPI_Recv(buf, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        long u;
        memcpy(&u, buf, sizeof u);
        int r = st.MPI_SOURCE;
        if (st.MPI_TAG == TAG_FAIL) {
            buf[count < (int)msg ? count : (int)msg - 1] = 0;
            job_fail(p->w, r, u, buf + sizeof u);
        }
        /* a rank computes its units in the order they were sent and MPI keeps a pair's messages in order: the
         * result is for the oldest unit the rank holds */
        if (!p->nhold[r] || p->hold[r][0] != u) job_fail(p->w, r, u, "internal: a result out of the order sent");
        memmove(&p->hold[r][0], &p->hold[r][1], (size_t)--p->nhold[r] * sizeof **p->hold);
        store(p, r, u, buf + sizeof u);
    }
}

static void dispatch(const mpi_work *w, void *results)
{
    double t0 = MPI_Wtime();
    pool p = {.w = w, .results = results, .resume_fd = -1};
    size_t n1 = (size_t)(w->n ? w->n : 1);
    p.order = malloc(n1 * sizeof *p.order);
    unsigned char *skip = calloc(n1, 1);
    p.resume_buf = malloc(sizeof(int64_t) + w->bytes);
    if (!p.order || !skip || !p.resume_buf) die("out of memory");
    long resumed = 0;
    if (g_resume[0]) {
        p.resume_fd = resume_open(w, results, skip, &resumed);
        fprintf(stderr, "tq: resuming from '%s': %ld of %ld units done, %ld to run\n", g_resume, resumed, w->n,
                w->n - resumed);
    }
    g_flight = calloc((size_t)g_size, sizeof *g_flight);
    g_flight_unit = calloc((size_t)g_size, sizeof *g_flight_unit);
    p.hold = calloc((size_t)g_size, sizeof *p.hold);
    p.nhold = calloc((size_t)g_size, sizeof *p.nhold);
    p.wbuf = calloc((size_t)g_size, sizeof *p.wbuf);
    p.wreq = malloc((size_t)g_size * sizeof *p.wreq);
    p.wflip = calloc((size_t)g_size, sizeof *p.wflip);
    size_t msg = sizeof(long) + (w->bytes > 600 ? w->bytes : 600);
    char *buf = malloc(msg);
    if (!g_flight || !g_flight_unit || !p.hold || !p.nhold || !p.wbuf || !p.wreq || !p.wflip || !buf)
        die("out of memory");
    for (int r = 0; r < g_size; r++) p.wreq[r][0] = p.wreq[r][1] = MPI_REQUEST_NULL;
    for (long i = 0; i < w->n; i++)
        if (!skip[i]) p.order[p.n_queue++] = i;
    p.done = resumed;
    g_cost = w->cost;
    qsort(p.order, (size_t)p.n_queue, sizeof *p.order, by_cost); /* largest first, ties in the natural order */
    g_flight_ranks = g_size;
    struct sigaction sa = {.sa_handler = on_term}, old;
    sigaction(SIGTERM, &sa, &old);
    for (;;) {
        drain(&p, buf, msg);
        long held = 0;
        for (int r = 1; r < g_size; r++) held += p.nhold[r];
        for (int r = 1; r < g_size; r++) top_up(&p, r, held);
        if (p.next < p.n_queue) { /* rank 0's own unit, computed here between two looks at the messages */
            long u = p.order[p.next++];
            char *dst = p.results + (size_t)u * w->bytes;
            flight_set(w, 0, u);
            tq_error_clear();
            int rc = fault_check();
            if (rc == TQ_OK) rc = w->run(w->ctx, u, dst);
            if (rc < 0) job_fail(w, 0, u, tq_error_msg());
            store(&p, 0, u, dst);
            p.self_done++;
            continue;
        }
        if (p.done == w->n) break;
        nap();
    }
    for (int r = 1; r < g_size; r++) { /* an empty work message: stop */
        int f = p.wflip[r];
        MPI_Wait(&p.wreq[r][f], MPI_STATUS_IGNORE);
        MPI_Isend(p.wbuf[r][f], 0, MPI_LONG, r, TAG_WORK, MPI_COMM_WORLD, &p.wreq[r][f]);
    }
    MPI_Waitall(2 * g_size, &p.wreq[0][0], MPI_STATUSES_IGNORE);
    if (getenv("TQ_MPI_STATS")) /* for eval/mpi_scaling.py: what the scaling model needs measured */
        fprintf(stderr, "tq: mpi: %ld units over %d ranks, rank 0 computed %ld; %ld result messages of %zu bytes, "
                "%ld work messages of %zu bytes; dispatch %.6f s\n", w->n, g_size, p.self_done,
                w->n - resumed - p.self_done, sizeof(long) + w->bytes, p.work_msgs + g_size - 1,
                (size_t)(p.work_msgs ? (double)p.work_units * sizeof(long) / (double)p.work_msgs + 0.5 : 0),
                MPI_Wtime() - t0);
    if (p.resume_fd >= 0 && close(p.resume_fd) < 0) die("cannot close resume file '%s': %s", g_resume, strerror(errno));
    sigaction(SIGTERM, &old, NULL);
    free(skip);
    free(p.resume_buf);
    free(g_flight);
    free(g_flight_unit);
    g_flight = NULL;
    g_flight_unit = NULL;
    g_flight_ranks = 0;
    free(p.order);
    free(p.hold);
    free(p.nhold);
    free(p.wbuf);
    free(p.wreq);
    free(p.wflip);
    free(buf);
}

/* ---- the other ranks: compute what rank 0 sends until it says stop, then leave ---- */

static _Noreturn void serve(const mpi_work *w)
{
    /* Results go out with MPI_Isend from a ring of NBUF buffers, a buffer reused once its send is done: a blocking
     * MPI_Send returned only when rank 0 next looked at its messages (measured: 0.5 ms a unit with a 1 ms poll).
     * At most HOLD_MAX results are ever unanswered (rank 0 sends a unit only for one it has received), so the
     * buffer reused has been received and its wait does not spin. */
    enum { NBUF = HOLD_MAX + 1 };
    size_t msg = sizeof(long) + (w->bytes > 600 ? w->bytes : 600);
    char *ring = malloc(NBUF * msg);
    long *queue = malloc(2 * HOLD_MAX * sizeof *queue), done = 0;
    if (!ring || !queue) die("out of memory");
    MPI_Request req[NBUF];
    for (int k = 0; k < NBUF; k++) req[k] = MPI_REQUEST_NULL;
    int nq = 0, stop = 0;
    double t_wait = 0, t_run = 0, t0 = MPI_Wtime();
    for (;;) {
        double tw = MPI_Wtime();
        for (;;) { /* take every unit already sent; wait (politely) only when there is nothing to do */
            int flag, count;
            MPI_Status st;
            MPI_Iprobe(0, TAG_WORK, MPI_COMM_WORLD, &flag, &st);
            if (flag) {
                MPI_Get_count(&st, MPI_LONG, &count);
                if (count > 2 * HOLD_MAX - nq) die("internal: rank %d was sent more units than it can hold", g_rank);
                MPI_Recv(queue + nq, count, MPI_LONG, 0, TAG_WORK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                if (!count) stop = 1;
                nq += count;
            } else if (!nq && !stop) nap();
            else break;
        }
        t_wait += MPI_Wtime() - tw;
        if (!nq) break;
        long u = queue[0];
        memmove(queue, queue + 1, (size_t)--nq * sizeof *queue);
        int slot = (int)(done % NBUF);
        char *buf = ring + (size_t)slot * msg;
        MPI_Wait(&req[slot], MPI_STATUS_IGNORE);
        memcpy(buf, &u, sizeof u);
        tq_error_clear();
        int rc = fault_check();
        double tr = MPI_Wtime();
        if (rc == TQ_OK) rc = w->run(w->ctx, u, buf + sizeof u);
        t_run += MPI_Wtime() - tr;
        done++;
        if (rc < 0) { /* rank 0 prints it and aborts the job */
            int n = snprintf(buf + sizeof u, msg - sizeof u, "%s", tq_error_msg());
            MPI_Send(buf, (int)(sizeof u + (size_t)n + 1), MPI_BYTE, 0, TAG_FAIL, MPI_COMM_WORLD);
            for (;;) pause();
        }
        MPI_Isend(buf, (int)(sizeof u + w->bytes), MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD, &req[slot]);
        int sent; /* progress now, not after the next unit (rank 0 tops this rank up when the result is in) */
        MPI_Test(&req[slot], &sent, MPI_STATUS_IGNORE);
    }
    MPI_Waitall(NBUF, req, MPI_STATUSES_IGNORE);
    if (getenv("TQ_MPI_STATS"))
        fprintf(stderr, "tq: mpi: rank %d computed %ld units in %.6f s, waited %.6f s, serve %.6f s\n", g_rank, done,
                t_run, t_wait, MPI_Wtime() - t0);
    free(ring);
    free(queue);
    MPI_Finalize();
    exit(0);
}

static void pick_gpu(tq_device dev)
{
    if (dev != TQ_DEVICE_CUDA) return;
    long lr = env_long("OMPI_COMM_WORLD_LOCAL_RANK");
    if (lr < 0) lr = env_long("SLURM_LOCALID");
    if (lr < 0) lr = env_long("MPI_LOCALRANKID");
    int g;
    if (tq_cuda_select((int)(lr > 0 ? lr : 0), &g) < 0) {
        fprintf(stderr, "tq: rank %d: cannot select a GPU: %s\n", g_rank, tq_error_msg());
        abort_job(1);
    }
}

void mpi_run(const mpi_work *w, void *results)
{
    pick_gpu(w->device);
    if (g_rank == 0) dispatch(w, results);
    else serve(w);
}

/* ---- sweep and entropy: (input, layer, kv head, configuration) units into tq_evaluate ---- */

typedef struct {
    const tq_eval_opts *o;
    tq_eval_unit *u;
    long n;
    tq_eval_reader *rd;
    tq_eval_result *res;
} eval_job;

static int eval_run(void *ctx, long i, void *out)
{
    eval_job *j = ctx;
    return tq_eval_unit_run(j->o, &j->rd, &j->u[i], out);
}

static void eval_name(void *ctx, long i, char *buf, size_t n)
{
    const eval_job *j = ctx;
    const tq_eval_unit *u = &j->u[i];
    snprintf(buf, n, "'%s' layer %d kv head %d, %.100s", j->o->inputs[u->input].label, u->layer, u->head,
             j->o->cfg[u->cfg].kdesc);
}

static int key_cmp(const tq_eval_unit *u, int in, int layer, int head, int cfg)
{
    int a[4] = {u->input, u->layer, u->head, u->cfg}, b[4] = {in, layer, head, cfg};
    for (int k = 0; k < 4; k++)
        if (a[k] != b[k]) return a[k] < b[k] ? -1 : 1;
    return 0;
}

/* the units are in tq_evaluate's order: a binary search finds each slice's result */
static int eval_lookup(void *ctx, int in, int layer, int head, int cfg, tq_eval_result *r)
{
    const eval_job *j = ctx;
    long lo = 0, hi = j->n - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        int c = key_cmp(&j->u[mid], in, layer, head, cfg);
        if (!c) {
            *r = j->res[mid];
            return TQ_OK;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return tq_error_set(TQ_ERR, "internal: no unit for input %d layer %d head %d configuration %d", in, layer, head,
                        cfg);
}

int mpi_evaluate(tq_eval_opts *o, tq_eval_rows *rows)
{
    if (!mpi_active()) return tq_evaluate(o, rows);
    eval_job j = {.o = o};
    int rc = tq_eval_units(o, &j.u, &j.n);
    if (rc < 0) return rc;
    double *cost = malloc((size_t)(j.n ? j.n : 1) * sizeof *cost);
    j.res = g_rank == 0 ? tq_calloc((size_t)(j.n ? j.n : 1), sizeof *j.res) : NULL;
    if (!cost || (g_rank == 0 && !j.res)) die("out of memory");
    for (long i = 0; i < j.n; i++) cost[i] = j.u[i].cost;
    mpi_work w = {.n = j.n, .bytes = sizeof(tq_eval_result), .cost = cost, .run = eval_run, .name = eval_name,
                  .ctx = &j, .device = o->device};
    mpi_run(&w, j.res);
    tq_eval_reader_free(j.rd);
    o->precomputed = eval_lookup;
    o->precomputed_ctx = &j;
    rc = tq_evaluate(o, rows); /* rank 0: the single process's aggregation and rows, from the gathered results */
    o->precomputed = NULL;
    free(cost);
    free(j.u);
    free(j.res);
    return rc;
}

/* ---- sensitivity: (layer, kv head, width) units into tq_sensitivity ---- */

typedef struct {
    const tq_sens_opts *o;
    int nkv;
    tq_eval_reader *rd;
    tq_sens_slice *res;
} sens_job;

static int sens_run(void *ctx, long i, void *out)
{
    sens_job *j = ctx;
    int nb = j->o->n_bits;
    return tq_sens_unit_run(j->o, &j->rd, (int)(i / nb / j->nkv), (int)(i / nb % j->nkv), (int)(i % nb), out);
}

static void sens_name(void *ctx, long i, char *buf, size_t n)
{
    const sens_job *j = ctx;
    int nb = j->o->n_bits;
    snprintf(buf, n, "'%s' layer %ld kv head %ld at %d bits", j->o->dump, i / nb / j->nkv, i / nb % j->nkv,
             j->o->params[i % nb].bits);
}

static int sens_lookup(void *ctx, int layer, int head, int b, tq_sens_slice *r)
{
    const sens_job *j = ctx;
    *r = j->res[((long)layer * j->nkv + head) * j->o->n_bits + b];
    return TQ_OK;
}

int mpi_sensitivity(tq_sens_opts *o, tq_sens_result *res)
{
    if (!mpi_active()) return tq_sensitivity(o, res);
    tq_dump *d;
    int rc = tq_dump_open(&d, o->dump);
    if (rc < 0) return rc;
    const tq_dump_meta *m = tq_dump_get_meta(d);
    sens_job j = {.o = o, .nkv = m->shape.n_kv_heads};
    long n = (long)m->n_layers * j.nkv * o->n_bits;
    double *cost = malloc((size_t)(n ? n : 1) * sizeof *cost);
    j.res = g_rank == 0 ? tq_calloc((size_t)(n ? n : 1), sizeof *j.res) : NULL;
    if (!cost || (g_rank == 0 && !j.res)) die("out of memory");
    for (long i = 0; i < n; i++) { /* the metrics' G*T^2*d dominate; layers may differ in tokens */
        const tq_layer_shape *s = tq_dump_layer_shape(d, (int)(i / o->n_bits / j.nkv));
        double T = o->tokens > 0 ? o->tokens : s->n_tokens;
        cost[i] = T * T * s->head_dim * (s->n_q_heads > 0 ? s->n_q_heads / s->n_kv_heads : 1);
    }
    tq_dump_close(d);
    mpi_work w = {.n = n, .bytes = sizeof(tq_sens_slice), .cost = cost, .run = sens_run, .name = sens_name,
                  .ctx = &j, .device = o->device};
    mpi_run(&w, j.res);
    tq_eval_reader_free(j.rd);
    o->precomputed = sens_lookup;
    o->precomputed_ctx = &j;
    rc = tq_sensitivity(o, res);
    o->precomputed = NULL;
    free(cost);
    free(j.res);
    return rc;
}
