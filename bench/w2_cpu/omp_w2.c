/*
 * bench/w2_cpu/omp_w2.c: W2 on OpenMP tasks (peer; gcc -fopenmp, libgomp).
 *
 * "openmp.task", variant "threads": a parallel region of 1 or 2 threads;
 * one thread (omp single) creates one `#pragma omp task` per fib call and
 * waits in `#pragma omp taskwait` (where it runs tasks too), so with 2
 * threads both compute. Far fewer tasks than libgomp's inline threshold
 * (64 x threads queued), so every task is queued.
 */
#include <omp.h>

#include "w2.h"

static void *create(unsigned workers) {
  static unsigned w;
  w = workers;
  return &w;
}

static void run(void *pool, unsigned n, uint64_t *results, unsigned tasks) {
  unsigned workers = *(unsigned *)pool;
  int got = 0;
#pragma omp parallel num_threads(workers)
  {
#pragma omp single
    {
      got = omp_get_num_threads();
      for (unsigned i = 0; i < tasks; i++) {
#pragma omp task firstprivate(i)
        results[i] = w2_fib(n);
      }
#pragma omp taskwait
    }
  }
  if (got != (int)workers)
    bench_die("OpenMP gave %d threads, asked for %u", got, workers);
}

static void destroy(void *pool) { (void)pool; }

static const w2_impl impls[] = {{"openmp.task", "threads", create, run, destroy}};

int main(int argc, char **argv) {
  omp_set_dynamic(0);
  return w2_main(argc, argv, impls, sizeof impls / sizeof impls[0]);
}
