/* mpi_work.h: scale-out over MPI ranks (README "Scaling out"). Under mpirun/srun the commands' work units — (input,
 * layer, kv head, configuration) of sweep/entropy, (layer, kv head, width) of sensitivity, one run of perplexity —
 * go to the ranks through a dynamic queue on rank 0, largest estimated cost first; rank 0 gathers every unit's
 * result and hands them to the same library aggregation and the same writer as one process, so the output bytes are
 * the same. Built without MPI (cmd/mpi_stub.c) or started without a launcher, each call is the plain library call. */
#ifndef TQ_CMD_MPI_WORK_H
#define TQ_CMD_MPI_WORK_H

#include <stddef.h>

#include "evaluate.h"

/* 1 when this process is one of several MPI ranks (MPI initialised on the first call, finalised at exit); 0 for a
 * single process. A build without MPI started as several ranks dies here, before any work. */
int mpi_active(void);

/* tq_evaluate / tq_sensitivity, distributed when mpi_active(). Ranks other than 0 never return: they finalise and
 * exit 0 once rank 0 has every result; rank 0 returns the rows a single process returns. A unit that fails ends the
 * job (one message naming the rank and the unit, exit 1, nothing written). */
int mpi_evaluate(tq_eval_opts *o, tq_eval_rows *rows);
int mpi_sensitivity(tq_sens_opts *o, tq_sens_result *res);

/* Generic units (perplexity): run(ctx, i, out) fills `bytes` bytes of unit i's result or returns a negative status
 * with tq_error_set; name(ctx, i, buf, n) describes unit i for messages; cost[i] orders the queue (NULL: given
 * order). With mpi_active(), rank 0 returns with results[i * bytes] filled for every i and the other ranks exit 0. */
typedef struct {
    long n;
    size_t bytes;
    const double *cost;
    int (*run)(void *ctx, long i, void *out);
    void (*name)(void *ctx, long i, char *buf, size_t n);
    void *ctx;
    tq_device device;       /* cuda: each rank takes the GPU of its node-local rank */
} mpi_work;
void mpi_run(const mpi_work *w, void *results);

/* --resume FILE (README "Scaling out"): rank 0 appends every finished unit's result to FILE as it arrives; a job
 * started again with the same arguments and the same FILE computes only the units FILE lacks (a record cut short by
 * a kill is dropped) and writes the same output bytes. FILE starts with a fingerprint of the job (tq version, the
 * arguments but --resume and -o, the units' names): a file of another job is refused. argv is the command's own. Takes
 * effect under a launcher with 2+ ranks; one process (or a build without MPI) refuses the option. */
void mpi_resume_set(const char *path, int argc, char **argv);

#endif
