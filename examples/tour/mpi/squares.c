/*
 * Tour part 4, "many machines, many processes": the seed's squares map,
 *
 *   def f(x): return x*x
 *   print(list(ex.map(f, range(10))))
 *
 * on MPI ranks instead of threads. Launched by the tour (or by hand) as
 *
 *   mpiexec -n 3 weft_tour_mpi
 *
 * Rank 0 runs main past weft_mpi_init and maps f over range(10) with an
 * MPI executor; ranks 1 and 2 run the tasks. The task is found by its
 * registered name on every rank, so the only differences from the thread
 * pool's demo are the executor's kind and the launch line.
 */
#include <stdio.h>
#include <string.h>

#include "weft.h"
#include "weft/mpi.h"

/* def f(x): return x*x, and the rank it ran on. */
static int f(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x) return weft_task_fail(ctx, WEFT_EINVAL, "f takes an int64, got %zu bytes", len);
  memcpy(&x, arg, sizeof x);
  int64_t y[2] = {x * x, weft_mpi_rank()};
  return weft_task_return(ctx, y, sizeof y);
}
static const weft_task F = {"tour.mpi.f", f};

int main(int argc, char **argv) {
  weft_task_register(&F); /* on every rank, before weft_mpi_init */
  int r = weft_mpi_init(&argc, &argv, NULL);
  if (r) {
    fprintf(stderr, "weft_mpi_init: %s\n", weft_strerror(r));
    return 1;
  }
  /* Only rank 0 gets here. */
  weft_executor *ex;
  r = weft_executor_create(&ex, &(weft_executor_opts){.kind = WEFT_EXECUTOR_MPI});
  if (r) {
    fprintf(stderr, "weft_executor_create: %s\n", weft_strerror(r));
    return 1;
  }
  int64_t in[10], out[10][2];
  for (int i = 0; i < 10; i++) in[i] = i;
  /* One item per chunk, so that the items spread over both workers. */
  weft_map_opts mo = {.chunksize = 1};
  r = weft_executor_map(ex, &F, in, sizeof in[0], out, sizeof out[0], 10, &mo);
  if (r) {
    fprintf(stderr, "weft_executor_map: %s\n", weft_strerror(r));
    return 1;
  }
  printf("rank 0 of %d: map(f, range(10)) on %u worker ranks\n", weft_mpi_size(),
         weft_executor_workers(ex));
  printf("[");
  for (int i = 0; i < 10; i++) printf("%s%lld", i ? ", " : "", (long long)out[i][0]);
  printf("]\n");
  int used[64] = {0};
  for (int i = 0; i < 10; i++)
    if (out[i][1] > 0 && out[i][1] < 64) used[out[i][1]] = 1;
  printf("ran on ranks:");
  for (int k = 1; k < 64; k++)
    if (used[k]) printf(" %d", k);
  printf("\n");
  fflush(stdout);
  weft_executor_destroy(ex);
  return weft_mpi_finalize() != 0;
}
