/*
 * A worker rank killed mid-run (SIGKILL, from inside a task) while the
 * other worker is busy and the client waits: the job must end, with the
 * launcher exiting non-zero, never hang. Open MPI's and MPICH's launchers
 * end the whole job when a rank dies (the client is killed while it
 * waits); under one that lets the client live on (mpirun --enable-recovery)
 * the executor sees the rank's process gone, fails its task with
 * WEFT_EWORKERDIED and the rest with WEFT_EBROKEN, destroy returns, and
 * weft_mpi_finalize ends the job non-zero. Run by mpi_run.sh with
 * --expect-fail under 3 ranks.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mpi_harness.h"

static int t_die(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  raise(SIGKILL);
  return 0;
}

static int t_nap(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t ms;
  if (len != sizeof ms) return WEFT_EINVAL;
  memcpy(&ms, arg, sizeof ms);
  weft_sleep_until(weft_deadline_in_ms(ms));
  return weft_task_return(ctx, &ms, sizeof ms);
}

static const weft_task T_DIE = {"kill.die", t_die};
static const weft_task T_NAP = {"kill.nap", t_nap};

int main(int argc, char **argv) {
  ASSERT_OK(weft_task_register(&T_DIE));
  ASSERT_OK(weft_task_register(&T_NAP));
  ASSERT_OK(weft_mpi_init(&argc, &argv, NULL));
  weft_executor *ex;
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_MPI};
  ASSERT_OK(weft_executor_create(&ex, &o));
  /* Work that succeeds first, then a long task beside the fatal one. */
  int32_t ms = 1;
  weft_future *f;
  for (int i = 0; i < 20; i++) {
    ASSERT_OK(weft_executor_submit(ex, &T_NAP, &ms, sizeof ms, &f));
    ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL));
    weft_future_release(f);
  }
  ms = 3000;
  weft_future *slow, *fatal;
  ASSERT_OK(weft_executor_submit(ex, &T_NAP, &ms, sizeof ms, &slow));
  printf("EXPECTED: sending the task that kills its worker rank\n");
  fflush(stdout);
  ASSERT_OK(weft_executor_submit(ex, &T_DIE, NULL, 0, &fatal));
  int r = weft_future_result(fatal, weft_deadline_in_ms(60000), NULL, NULL);
  if (r == WEFT_ETIMEDOUT) {
    printf("UNEXPECTED: no news of the dead rank after 60 s\n");
    return 1;
  }
  /* The launcher let the client live on (Open MPI's --enable-recovery):
   * the executor must say so, and the job must still end non-zero. */
  if (r == WEFT_EWORKERDIED) {
    printf("EXPECTED: the killed task failed with %s\n", weft_err_name(r));
  } else {
    printf("UNEXPECTED: the killed task says %s\n", weft_err_name(r));
    fflush(stdout);
    _exit(1);
  }
  int s = weft_future_result(slow, weft_deadline_in_ms(60000), NULL, NULL);
  int sub = weft_executor_submit(ex, &T_NAP, &ms, sizeof ms, NULL);
  printf("%s: the other task %s, submit %s\n",
         (s == 0 || s == WEFT_EBROKEN) && sub == WEFT_EBROKEN ? "EXPECTED" : "UNEXPECTED",
         weft_err_name(s), weft_err_name(sub));
  fflush(stdout);
  weft_future_release(fatal);
  weft_future_release(slow);
  weft_executor_destroy(ex); /* must not hang */
  printf("EXPECTED: destroyed; finalizing aborts the job\n");
  fflush(stdout);
  weft_mpi_finalize(); /* MPI_Abort: does not return */
  printf("UNEXPECTED: weft_mpi_finalize returned\n");
  fflush(stdout);
  _exit(1);
}
