/*
 * bench/w2_cpu/w2.h: the W2 scaffold shared by the C programs.
 *
 * W2 runs TASKS (64) CPU-bound tasks of about 20 ms each, a naive recursive
 * fib(n), on a pool of 1 worker and on a pool of 2, and reports the speedup
 * time(1 worker) / time(2 workers) in "x" (2.0 is the physical limit on 2
 * cores). Each program (weft_w2.c, glib_w2.c, omp_w2.c) supplies only the
 * pool calls (w2_impl); the calibration, the timing, the checks and the
 * output are here, so every implementation runs the very same fib.
 *
 * Calibration, once per program at start: the smallest n for which one
 * fib(n) takes at least W2_TASK_MS (best of 3), then n or n - 1, whichever
 * is nearer W2_TASK_MS (fib grows by 1.618x per step). n and the time of one
 * call are printed on stderr and in the JSON line ("fib_n", "task_ms").
 *
 * Timing: each pool is made (and warmed up with 2 x workers small tasks)
 * before its clock starts; the clock covers submitting the TASKS tasks and
 * waiting for all. The runs go 1 worker, 2, 2, 1 (the sums are compared, so
 * a load that rises or falls steadily during the run cancels out). Every
 * task's result is checked against an iterative fib: a wrong one exits 1.
 *
 * Command line: IMPL VARIANT TASKS. A program whose IMPL is not in this
 * build (weft's process backend before it exists) exits with
 * W2_EXIT_UNSUPPORTED (3) and prints no measurement.
 */
#ifndef WEFT_BENCH_W2_H
#define WEFT_BENCH_W2_H

#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "bench.h"

#define W2_TASK_MS 20.0
#define W2_EXIT_UNSUPPORTED 3 /* benchlib.EXIT_UNSUPPORTED */
#define W2_MAX_TASKS 4096u
#define W2_WARM_N 20u

/* The work: deliberately naive and exponential (about fib(n) calls). */
__attribute__((noinline)) static uint64_t w2_fib(unsigned n) {
  return n < 2 ? n : w2_fib(n - 1) + w2_fib(n - 2);
}

static uint64_t w2_fib_iter(unsigned n) {
  uint64_t a = 0, b = 1;
  for (unsigned i = 0; i < n; i++) {
    uint64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}

static volatile uint64_t w2_sink;

static double w2_time_one(unsigned n) {
  double best = 1e9;
  for (int k = 0; k < 3; k++) {
    double t0 = bench_now_s();
    w2_sink = w2_fib(n);
    double t = bench_now_s() - t0;
    if (t < best)
      best = t;
  }
  return best;
}

/* n such that one fib(n) takes about W2_TASK_MS here; *call_ms its time. */
static unsigned w2_calibrate(double *call_ms) {
  double target = W2_TASK_MS / 1e3;
  unsigned n = 20;
  double t = w2_time_one(n), prev = t;
  while (t < target && n < 60) {
    prev = t;
    n++;
    t = w2_time_one(n);
  }
  if (n > 20 && target / prev < t / target) { /* n - 1 is nearer, in ratio */
    n--;
    t = prev;
  }
  *call_ms = t * 1e3;
  return n;
}

/* A completion count for the pools that have no future. */
static struct {
  _Alignas(64) atomic_uint left;
  sem_t done;
} w2_state;

static inline void w2_expect(unsigned tasks) {
  atomic_store(&w2_state.left, tasks);
  if (sem_init(&w2_state.done, 0, 0) != 0)
    bench_die("sem_init failed");
}

static inline void w2_task_done(void) {
  if (atomic_fetch_sub_explicit(&w2_state.left, 1, memory_order_acq_rel) == 1)
    sem_post(&w2_state.done);
}

static inline void w2_wait_all(void) {
  while (sem_wait(&w2_state.done) != 0)
    if (errno != EINTR)
      bench_die("sem_wait failed");
  sem_destroy(&w2_state.done);
}

typedef struct w2_impl {
  const char *impl, *variant;
  /* A pool of `workers` workers, ready to run (threads started). May exit
   * with W2_EXIT_UNSUPPORTED, saying why on stderr. */
  void *(*create)(unsigned workers);
  /* Run fib(n) as `tasks` tasks, results[i] = the result of task i; return
   * once all have finished. */
  void (*run)(void *pool, unsigned n, uint64_t *results, unsigned tasks);
  void (*destroy)(void *pool);
} w2_impl;

static void w2_check(const w2_impl *im, const uint64_t *results, unsigned tasks, unsigned n) {
  uint64_t want = w2_fib_iter(n);
  for (unsigned i = 0; i < tasks; i++)
    if (results[i] != want)
      bench_die("%s: WRONG RESULT: task %u gave fib(%u) = %" PRIu64 ", want %" PRIu64, im->impl,
                i, n, results[i], want);
}

/* Make a pool of `workers`, warm it up, time the tasks, check, destroy. */
static double w2_time_pool(const w2_impl *im, unsigned workers, unsigned n, unsigned tasks) {
  uint64_t *results = calloc(tasks, sizeof *results);
  if (results == NULL)
    bench_die("out of memory");
  void *pool = im->create(workers);
  im->run(pool, W2_WARM_N, results, 2 * workers);
  w2_check(im, results, 2 * workers, W2_WARM_N);
  memset(results, 0, tasks * sizeof *results);
  double t0 = bench_now_s();
  im->run(pool, n, results, tasks);
  double secs = bench_now_s() - t0;
  w2_check(im, results, tasks, n);
  im->destroy(pool);
  free(results);
  return secs;
}

static int w2_main(int argc, char **argv, const w2_impl *impls, size_t n_impls) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s IMPL VARIANT TASKS\n  IMPL VARIANT:", argv[0]);
    for (size_t i = 0; i < n_impls; i++)
      fprintf(stderr, " | %s %s", impls[i].impl, impls[i].variant);
    fputc('\n', stderr);
    return 2;
  }
  const w2_impl *im = NULL;
  for (size_t i = 0; i < n_impls; i++)
    if (strcmp(argv[1], impls[i].impl) == 0 && strcmp(argv[2], impls[i].variant) == 0)
      im = &impls[i];
  if (im == NULL)
    bench_die("unknown IMPL VARIANT '%s' '%s'", argv[1], argv[2]);
  uint64_t tasks = bench_parse_u64(argv[3], "TASKS");
  if (tasks > W2_MAX_TASKS)
    bench_die("at most %u tasks", W2_MAX_TASKS);

  double call_ms;
  unsigned n = w2_calibrate(&call_ms);
  fprintf(stderr, "w2: %s: fib(%u) takes %.1f ms here (target %.0f ms)\n", im->impl, n, call_ms,
          W2_TASK_MS);
  double t1 = w2_time_pool(im, 1, n, (unsigned)tasks);
  double t2 = w2_time_pool(im, 2, n, (unsigned)tasks);
  t2 += w2_time_pool(im, 2, n, (unsigned)tasks);
  t1 += w2_time_pool(im, 1, n, (unsigned)tasks);
  double speedup = t1 / t2;
  fprintf(stderr, "w2: %s: %" PRIu64 " tasks: 1 worker %.3f s, 2 workers %.3f s (sums of two "
          "runs each): %.3fx\n", im->impl, tasks, t1, t2, speedup);
  printf("{\"workload\":\"W2\",\"impl\":\"%s\",\"variant\":\"%s\",\"n\":%" PRIu64
         ",\"value\":%.6g,\"unit\":\"x\",\"secs\":%.6f,\"fib_n\":%u,\"task_ms\":%.3f"
         ",\"secs_1_worker\":%.6f,\"secs_2_workers\":%.6f}\n",
         im->impl, im->variant, tasks, speedup, t1 + t2, n, call_ms, t1 / 2, t2 / 2);
  fflush(stdout);
  return 0;
}

#endif /* WEFT_BENCH_W2_H */
