/*
 * Ranks that registered different tasks: creating an executor fails at
 * once with WEFT_ENOTASK and a message naming the task and the rank, both
 * when the client has a task a worker lacks and the other way round.
 * The program initializes MPI itself (weft_mpi_init then takes the level
 * it got) so that it can register by rank. Run by mpi_run.sh with
 * --expect-fail under 3 ranks: it prints "EXPECTED:" lines, and exits 1.
 */
#define _GNU_SOURCE
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "mpi_harness.h"

static int t_echo(weft_task_ctx *ctx, const void *arg, size_t len) {
  return weft_task_return(ctx, arg, len);
}

int main(int argc, char **argv) {
  int provided, rank;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  weft_task common = {"common.echo", t_echo};
  weft_task on_client = {"only.on.client", t_echo};
  weft_task on_two = {"only.on.rank2", t_echo};
  ASSERT_OK(weft_task_register(&common));
  if (rank == 0) ASSERT_OK(weft_task_register(&on_client));
  if (rank == 2) ASSERT_OK(weft_task_register(&on_two));
  ASSERT_OK(weft_mpi_init(&argc, &argv, NULL));

  weft_executor *ex;
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_MPI, .workers = 1};
  int r = weft_executor_create(&ex, &o);
  if (r == WEFT_ENOTASK) {
    printf("EXPECTED: rank 1 lacks a client task: %s\n", weft_err_name(r));
  } else {
    printf("UNEXPECTED: create with rank 1 gave %s\n", weft_err_name(r));
    return 1;
  }
  o.workers = 0;
  r = weft_executor_create(&ex, &o);
  if (r == WEFT_ENOTASK) {
    printf("EXPECTED: registries differ across 3 ranks: %s\n", weft_err_name(r));
  } else {
    printf("UNEXPECTED: create with every rank gave %s\n", weft_err_name(r));
    return 1;
  }
  fflush(stdout);
  weft_mpi_finalize();
  MPI_Finalize(); /* ours: weft did not initialize MPI here */
  return 1;       /* the launcher must see a failed program */
}
