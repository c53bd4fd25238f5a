/*
 * bench/w1_pool/omp_w1.c: W1 on OpenMP tasks (peer; gcc -fopenmp, libgomp).
 *
 * "openmp.task", variant "fire-and-forget": a parallel region of 2 threads;
 * one thread (omp single) creates N `#pragma omp task`s, each the common
 * task body (w1.h), then `#pragma omp taskwait`. The team is made by the
 * warm-up round and reused (libgomp keeps its threads), so the clock covers
 * entering the region, the N tasks and the barrier at its end.
 *
 * Not a queue hand-off all the way: libgomp runs a new task at once on the
 * creating thread when more than 64 x threads tasks are already queued, so
 * most of the N tasks run inline on the submitter. The figure is what an
 * OpenMP programmer gets, not the cost of handing a task to another thread.
 */
#include <omp.h>

#include "w1.h"

static void run_tasks(void *p, uint64_t n) {
  (void)p;
#pragma omp parallel num_threads(W1_WORKERS)
  {
#pragma omp single
    {
      for (uint64_t i = 0; i < n; i++) {
#pragma omp task firstprivate(i)
        {
          (void)i;
          w1_task();
        }
      }
#pragma omp taskwait
    }
  }
}

int main(int argc, char **argv) {
  w1_args a = w1_parse(argc, argv, "  IMPL VARIANT: openmp.task fire-and-forget\n");
  if (strcmp(a.impl, "openmp.task") != 0 || strcmp(a.variant, "fire-and-forget") != 0)
    bench_die("unknown IMPL VARIANT '%s' '%s'", a.impl, a.variant);
  omp_set_dynamic(0);
  int threads = 0;
#pragma omp parallel num_threads(W1_WORKERS)
#pragma omp single
  threads = omp_get_num_threads();
  if (threads != (int)W1_WORKERS)
    bench_die("OpenMP gave %d threads, asked for %u", threads, W1_WORKERS);
  const w1_round r = {run_tasks, NULL, NULL};
  w1_throughput(a.impl, a.variant, a.n, &r, NULL);
  return 0;
}
