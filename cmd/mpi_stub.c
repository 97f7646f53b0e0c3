/* mpi_stub.c: cmd/mpi_work.h in a build without MPI (MPI=0 or no mpicc): one process does everything, as before MPI
 * existed. Started as several ranks anyway (mpirun tq ...), it says so instead of running every unit N times over. */
#include <stdlib.h>

#include "cmd.h"
#include "mpi_work.h"

static long env_long(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : -1;
}

int mpi_active(void)
{
    if (env_long("OMPI_COMM_WORLD_SIZE") > 1 || env_long("PMI_SIZE") > 1 || env_long("SLURM_STEP_NUM_TASKS") > 1)
        die("this tq was built without MPI but started as several ranks; rebuild with 'make MPI=1' (README "
            "\"Scaling out\")");
    return 0;
}

void mpi_resume_set(const char *path, int argc, char **argv)
{
    mpi_active();
    die_usage("option '--resume' resumes an MPI job, and this tq is built without MPI (make MPI=1; README "
              "\"Scaling out\")");
}

int mpi_evaluate(tq_eval_opts *o, tq_eval_rows *rows)
{
    mpi_active();
    return tq_evaluate(o, rows);
}

int mpi_sensitivity(tq_sens_opts *o, tq_sens_result *res)
{
    mpi_active();
    return tq_sensitivity(o, res);
}

void mpi_run(const mpi_work *w, void *results) { die("internal: mpi_run without MPI"); }
