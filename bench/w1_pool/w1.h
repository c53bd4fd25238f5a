/*
 * bench/w1_pool/w1.h: the W1 scaffold shared by the C pool programs.
 *
 * W1 runs N no-op tasks on a pool of 2 workers and reports tasks/s = N /
 * wall time, from just before the first submit until the submitter knows
 * that all N have run. Every program (weft_w1.c, glib_w1.c, uv_w1.c,
 * omp_w1.c) runs the same task body, w1_task(): one relaxed atomic increment
 * of a shared counter, and a semaphore post by the task that brings the
 * counter to N (the completion signal of the pools that have no future).
 * The program dies with exit status 1 unless exactly N tasks ran.
 *
 * Each program creates its pool before the clock starts, runs the workload
 * once on N/8 tasks as a warm-up (not reported: threads started, caches and
 * allocators warm), then once on N, and prints one JSON line
 * (bench/common/bench.h).
 *
 * Two more figures of a parked pool, measured by weft_w1 and glib_w1:
 *  - "wake-up latency" (us): the pool has been idle for W1_PARK_MS and every
 *    other thread of the process is asleep (checked in /proc/self/task);
 *    the time from just before the submit of one task to the first
 *    instruction of that task. N samples, median reported.
 *  - "idle CPU" (%CPU): after a warm-up burst of 10,000 tasks the pool idles
 *    for 50 ms; then, over N ms of wall time in which the main thread
 *    sleeps, the CPU time of the whole process (CLOCK_PROCESS_CPUTIME_ID, ns
 *    resolution) less the main thread's own (CLOCK_THREAD_CPUTIME_ID: its
 *    wake-up and clock reads, ~50 us, the same for every pool), in percent
 *    of one CPU: what the pool's own threads burnt. The whole-process figure
 *    and /proc/self/stat utime+stime (in clock ticks, too coarse to show
 *    anything below 1 %) are printed on stderr beside it.
 *
 * Command line of each program: IMPL VARIANT N.
 */
#ifndef WEFT_BENCH_W1_H
#define WEFT_BENCH_W1_H

#include <dirent.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

#define W1_WORKERS 2u
#define W1_PARK_MS 10     /* idle time before each wake-up sample */
#define W1_IDLE_SETTLE_MS 50

/* ------------------------------------------------------------ the task */

/* Written by the tasks, read by main. On its own cache line, as a real
 * shared counter would be. */
static struct {
  _Alignas(64) atomic_uint_fast64_t ran;
  _Alignas(64) uint64_t want;
  sem_t done;
} w1_state;

/* Before each round: no task has run, n are wanted. */
static inline void w1_round_start(uint64_t n) {
  atomic_store_explicit(&w1_state.ran, 0, memory_order_relaxed);
  w1_state.want = n;
  if (sem_init(&w1_state.done, 0, 0) != 0)
    bench_die("sem_init failed");
}

/* The task body every C pool runs: count, and signal when it was the last. */
static inline void w1_task(void) {
  uint64_t prev = atomic_fetch_add_explicit(&w1_state.ran, 1, memory_order_acq_rel);
  if (prev + 1 == w1_state.want)
    sem_post(&w1_state.done);
}

/* For the pools without futures: block until the last task has run. */
static inline void w1_wait_all(void) {
  while (sem_wait(&w1_state.done) != 0)
    if (errno != EINTR)
      bench_die("sem_wait failed");
}

/* After each round: exactly n tasks ran, each once. */
static inline void w1_round_check(const char *impl, uint64_t n) {
  uint64_t ran = atomic_load_explicit(&w1_state.ran, memory_order_acquire);
  if (ran != n)
    bench_die("%s: WRONG RESULT: %" PRIu64 " tasks ran, %" PRIu64 " submitted", impl, ran, n);
  sem_destroy(&w1_state.done);
}

/* How one program runs one round of W1. */
typedef struct w1_round {
  /* Submit n tasks and return once all n have run (timed). */
  void (*run)(void *pool, uint64_t n);
  /* Optional, untimed: set up the inputs of a round of n / check its outputs
   * (dying on a wrong one), beyond the count that every round checks. */
  void (*prepare)(void *pool, uint64_t n);
  void (*verify)(void *pool, uint64_t n);
} w1_round;

static inline double w1_round_once(const char *impl, const w1_round *r, void *pool,
                                   uint64_t n) {
  if (r->prepare)
    r->prepare(pool, n);
  w1_round_start(n);
  double t0 = bench_now_s();
  r->run(pool, n);
  double secs = bench_now_s() - t0;
  w1_round_check(impl, n);
  if (r->verify)
    r->verify(pool, n);
  return secs;
}

/* Run a round on n/8 tasks as a warm-up, then on n; check both; emit
 * tasks/s for the second. */
static inline void w1_throughput(const char *impl, const char *variant, uint64_t n,
                                 const w1_round *r, void *pool) {
  (void)w1_round_once(impl, r, pool, n / 8 ? n / 8 : 1);
  double secs = w1_round_once(impl, r, pool, n);
  bench_emit("W1", impl, variant, n, (double)n / secs, "tasks/s", secs);
}

/* ------------------------------------------------- a parked pool's figures */

static inline void w1_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static inline int64_t w1_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* How many threads of this process other than the caller are runnable
 * (state R in /proc/self/task/<tid>/stat): 0 when the pool is parked. */
static inline int w1_threads_running(void) {
  long self = syscall(SYS_gettid);
  DIR *d = opendir("/proc/self/task");
  if (d == NULL)
    return 0; /* no /proc: cannot tell, assume parked */
  int running = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == self)
      continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    const char *rp = strrchr(buf, ')'); /* the name may hold spaces and parens */
    if (rp != NULL && rp[1] == ' ' && rp[2] == 'R')
      running++;
  }
  closedir(d);
  return running;
}

/* Sleep W1_PARK_MS, then until no other thread is runnable (up to 1 s
 * more). Returns false if some thread never stopped running. */
static inline bool w1_park(void) {
  w1_sleep_ms(W1_PARK_MS);
  for (int i = 0; i < 1000; i++) {
    if (w1_threads_running() == 0)
      return true;
    w1_sleep_ms(1);
  }
  return false;
}

/* Stamped by the wake-up task as its first act. */
static atomic_int_fast64_t w1_woke_ns;

static inline void w1_wake_task(void) {
  atomic_store_explicit(&w1_woke_ns, w1_now_ns(), memory_order_relaxed);
  sem_post(&w1_state.done);
}

static int w1_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Wake-up latency: samples times, park the pool, then submit_one(pool) a
 * task that runs w1_wake_task(); emit the median in microseconds. */
static inline void w1_wakeup(const char *impl, uint64_t samples,
                             void (*submit_one)(void *pool), void *pool) {
  if (samples > 100000)
    bench_die("at most 100000 wake-up samples");
  int64_t *lat = malloc(sizeof(int64_t) * samples);
  if (lat == NULL)
    bench_die("out of memory");
  if (sem_init(&w1_state.done, 0, 0) != 0)
    bench_die("sem_init failed");
  unsigned not_parked = 0;
  double t_start = bench_now_s();
  for (uint64_t i = 0; i < samples; i++) {
    if (!w1_park())
      not_parked++;
    atomic_store_explicit(&w1_woke_ns, 0, memory_order_relaxed);
    int64_t t0 = w1_now_ns();
    submit_one(pool);
    w1_wait_all();
    int64_t t1 = atomic_load_explicit(&w1_woke_ns, memory_order_relaxed);
    if (t1 == 0)
      bench_die("%s: WRONG RESULT: the wake-up task did not run", impl);
    lat[i] = t1 - t0;
  }
  double secs = bench_now_s() - t_start;
  sem_destroy(&w1_state.done);
  if (not_parked)
    fprintf(stderr, "w1: %s: %u of %" PRIu64 " samples taken with a thread still running "
            "after %d ms + 1 s idle (the pool did not park)\n", impl, not_parked, samples,
            W1_PARK_MS);
  qsort(lat, samples, sizeof(int64_t), w1_cmp_i64);
  double med_us = (samples % 2 ? (double)lat[samples / 2]
                               : 0.5 * (double)(lat[samples / 2 - 1] + lat[samples / 2])) / 1e3;
  fprintf(stderr, "w1: %s wake-up latency over %" PRIu64 " samples: min %.1f us, median %.1f us, "
          "p90 %.1f us, max %.1f us\n", impl, samples, (double)lat[0] / 1e3, med_us,
          (double)lat[samples * 9 / 10] / 1e3, (double)lat[samples - 1] / 1e3);
  free(lat);
  bench_emit("W1", impl, "wake-up latency", samples, med_us, "us", secs);
}

/* utime + stime of the process in clock ticks, from /proc/self/stat. */
static inline long long w1_proc_ticks(void) {
  FILE *f = fopen("/proc/self/stat", "r");
  if (f == NULL)
    return -1;
  char buf[1024];
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[got] = '\0';
  const char *p = strrchr(buf, ')');
  if (p == NULL)
    return -1;
  /* fields after the name: state(3) ... utime(14) stime(15) */
  unsigned long long ut = 0, st = 0;
  int field = 2;
  for (const char *q = p + 1; *q != '\0'; q++) {
    if (*q == ' ') {
      field++;
      if (field == 14)
        ut = strtoull(q + 1, NULL, 10);
      else if (field == 15) {
        st = strtoull(q + 1, NULL, 10);
        break;
      }
    }
  }
  return (long long)(ut + st);
}

static inline int64_t w1_clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Idle CPU: the pool has just run a burst (the caller's warm-up); let it
 * settle W1_IDLE_SETTLE_MS, then measure the process's CPU time over ms
 * milliseconds of sleep; emit it in % of one CPU. */
static inline void w1_idle_cpu(const char *impl, uint64_t ms) {
  w1_sleep_ms(W1_IDLE_SETTLE_MS);
  long long ticks0 = w1_proc_ticks();
  int64_t m0 = w1_clock_ns(CLOCK_THREAD_CPUTIME_ID);
  int64_t c0 = w1_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  int64_t t0 = w1_now_ns();
  w1_sleep_ms((long)ms);
  int64_t t1 = w1_now_ns();
  int64_t c1 = w1_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  int64_t m1 = w1_clock_ns(CLOCK_THREAD_CPUTIME_ID);
  long long ticks1 = w1_proc_ticks();
  int64_t pool_ns = (c1 - c0) - (m1 - m0);
  if (pool_ns < 0)
    pool_ns = 0;
  double pct = 100.0 * (double)pool_ns / (double)(t1 - t0);
  fprintf(stderr, "w1: %s idle CPU over %.3f s: pool threads %.1f us (%.4f %%), whole process "
          "%.1f us (%.4f %%); /proc/self/stat utime+stime: %lld ticks of 1/%ld s\n", impl,
          (double)(t1 - t0) / 1e9, (double)pool_ns / 1e3, pct, (double)(c1 - c0) / 1e3,
          100.0 * (double)(c1 - c0) / (double)(t1 - t0), ticks1 - ticks0, sysconf(_SC_CLK_TCK));
  bench_emit("W1", impl, "idle CPU", ms, pct, "%CPU", (double)(t1 - t0) / 1e9);
}

/* The arguments every C program takes: IMPL VARIANT N. */
typedef struct w1_args {
  const char *impl, *variant;
  uint64_t n;
} w1_args;

static inline w1_args w1_parse(int argc, char **argv, const char *usage) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s IMPL VARIANT N\n%s", argv[0], usage);
    exit(2);
  }
  w1_args a = {argv[1], argv[2], bench_parse_u64(argv[3], "N")};
  if (a.n > ((uint64_t)1 << 32))
    bench_die("N must be at most 2^32");
  return a;
}

#endif /* WEFT_BENCH_W1_H */
