/*
 * weft/mpi.h: the MPI executor backend (Python's mpi4py.futures), in the
 * library weft_mpi, which links weft and MPI; weft itself needs neither.
 *
 * A program runs on every rank of an MPI job, launched as
 * `mpiexec -n N ./prog`, the way `mpiexec -n N python -m mpi4py.futures`
 * runs a script. One call at the top of main, weft_mpi_init, returns on
 * rank 0 only, which becomes the client: it makes executors of kind
 * WEFT_EXECUTOR_MPI and uses them as any other executor. Every other rank
 * becomes a worker inside that call: it runs the tasks the client sends
 * until the client calls weft_mpi_finalize (or exits), then finalizes MPI
 * and exits with status 0, never returning to the code after the call.
 *
 * Tasks cross the process image by name: register every task on every rank
 * before weft_mpi_init (the same calls, in the code before it, do that).
 * Creating an executor checks that every rank it uses registered the same
 * set of names and fails with WEFT_ENOTASK, naming the difference on
 * stderr, when they did not. Arguments and results travel as bytes, so they
 * must not hold pointers, and every host must run the same build of the
 * program on the same architecture (the bytes are not converted).
 *
 * What the MPI executor does differently from the thread pool:
 *  - workers: 0 means every worker rank (the job's size - 1); a number
 *    above that is WEFT_EINVAL. There are no worker threads to name, and no
 *    initializer or finalizer (WEFT_ENOTSUP: run per-rank set-up in main,
 *    before weft_mpi_init, where every rank runs it).
 *  - One MPI executor at a time per job: creating a second one while the
 *    first is alive is WEFT_EBUSY.
 *  - A task is "running" from the moment it is sent to a worker rank, as a
 *    ProcessPoolExecutor's call queue does. A worker is sent at most about a
 *    millisecond of work ahead (measured per rank; slow tasks go one at a
 *    time), so cancel() succeeds on every task that is still waiting in the
 *    client. Map chunks go two deep; one not yet started when the map's
 *    deadline passes is skipped.
 *  - Done callbacks run on the client's communication thread: they must not
 *    block on futures of the same executor.
 *  - A worker rank that dies ends the job under Open MPI's and MPICH's
 *    launchers by default: every rank is killed and the launcher exits
 *    non-zero. Under a launcher that keeps the job alive (mpirun
 *    --enable-recovery), the client sees a dead rank on its own host
 *    within about 0.1 s, and any MPI error on weft's communicator at once:
 *    the executor breaks, the dead rank's tasks fail with WEFT_EWORKERDIED,
 *    every other unfinished task with WEFT_EBROKEN, later submits return
 *    WEFT_EBROKEN, and weft_mpi_finalize ends the job (MPI_Abort) instead
 *    of waiting for the dead rank.
 *  - A malformed message or a task name a worker does not know comes back
 *    as a failed future (-EPROTO, WEFT_ENOTASK), never a crash.
 *
 * weft's messages run on a communicator of their own (duplicated from
 * MPI_COMM_WORLD), so they never mix with the program's own MPI traffic.
 * On the client one communication thread makes every MPI call of weft's
 * while an executor is alive; a program that makes MPI calls of its own on
 * rank 0 meanwhile must ask for MPI_THREAD_MULTIPLE (thread_level below).
 */
#ifndef WEFT_MPI_H
#define WEFT_MPI_H

#include "weft/common.h"
#include "weft/executor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_mpi_opts {
  int thread_level; /* the MPI_THREAD_* level to ask MPI_Init_thread for;
                     * 0: MPI_THREAD_SERIALIZED (what weft needs) */
} weft_mpi_opts;

/* Initialize MPI (MPI_Init_thread, unless the program already did) and
 * plug the MPI backend into weft. On rank 0 returns 0: this rank is the
 * client. On every other rank, serves tasks until the client finalizes,
 * then exits the process with status 0 (on an error that ends the serving,
 * with status 1 after a message on stderr): the call does not return there.
 * argc/argv may be NULL. opts may be NULL. Returns WEFT_EALREADY (called
 * before), WEFT_ENOTSUP (the MPI library gives less than
 * MPI_THREAD_SERIALIZED), WEFT_EIO (an MPI call failed; the message is on
 * stderr), WEFT_ENOMEM. Thread-safety: call once, from the main thread,
 * before any other weft_mpi call. */
WEFT_API int weft_mpi_init(int *argc, char ***argv, const weft_mpi_opts *opts);

/* On the client: tell every worker rank to finish, then finalize MPI
 * (only if weft_mpi_init initialized it). Returns 0, WEFT_EBUSY (an MPI
 * executor is still alive: destroy it first), WEFT_EALREADY (finalized
 * already, or never initialized). After an executor broke (a rank died),
 * ends the whole job with MPI_Abort instead, and does not return. If the
 * program never calls it, an exit handler does it (and aborts the job if an
 * executor is still alive then). Thread-safety: the thread that called
 * weft_mpi_init. */
WEFT_API int weft_mpi_finalize(void);

/* This process's rank in MPI_COMM_WORLD and the job's size, or -1 before
 * weft_mpi_init. Thread-safety: any thread. */
WEFT_API int weft_mpi_rank(void);
WEFT_API int weft_mpi_size(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_MPI_H */
