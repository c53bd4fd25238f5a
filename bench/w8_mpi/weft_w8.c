/*
 * W8, weft's side: the MPI executor under `mpirun -n 3` (1 client, 2
 * worker ranks). Prints one JSON line per measurement (rank 0 only).
 *
 *   mpirun -n 3 weft_w8 IMPL VARIANT N
 *
 * VARIANT
 *   submit1  N tasks f(i) = i*i, each its own weft_executor_submit with its
 *            own future, then every result checked: tasks/s.
 *   rtt      N round trips, one at a time: submit f(i), wait for its
 *            result; the median, in us.
 *   map      weft_executor_map of f over N int64s with automatic chunking,
 *            every result checked: items/s.
 *   idle     the client's CPU use over 500 ms with the executor idle
 *            after a burst, in %CPU (N: the burst's size).
 * Exit 3 when this weft has no MPI backend (weft_executor_create says
 * WEFT_ENOTSUP); 1 on a wrong result.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft.h"

static int sq(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x) return WEFT_EINVAL;
  memcpy(&x, arg, sizeof x);
  x *= x;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task SQ = {"w8.sq", sq};

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int64_t result(weft_future *f) {
  const void *d;
  size_t len;
  if (weft_future_result(f, WEFT_FOREVER, &d, &len) != 0 || len != 8) return -1;
  int64_t v;
  memcpy(&v, d, 8);
  return v;
}

int main(int argc, char **argv) {
  weft_task_register(&SQ);
  int r = weft_mpi_init(&argc, &argv, NULL);
  if (r) {
    fprintf(stderr, "weft_w8: weft_mpi_init: %s\n", weft_strerror(r));
    return 1;
  }
  if (argc != 4) {
    fprintf(stderr, "usage: mpirun -n 3 weft_w8 IMPL VARIANT N\n");
    return 2;
  }
  const char *impl = argv[1], *variant = argv[2];
  long n = atol(argv[3]);
  weft_executor *ex;
  r = weft_executor_create(&ex, &(weft_executor_opts){.kind = WEFT_EXECUTOR_MPI});
  if (r == WEFT_ENOTSUP) {
    fprintf(stderr, "weft_w8: no MPI backend in this weft\n");
    return 3;
  }
  if (r) {
    fprintf(stderr, "weft_w8: weft_executor_create: %s\n", weft_strerror(r));
    return 1;
  }
  unsigned workers = weft_executor_workers(ex);
  /* Warm up: connections, windows. */
  {
    int64_t in[1000], out[1000];
    for (int i = 0; i < 1000; i++) in[i] = i;
    weft_executor_map(ex, &SQ, in, 8, out, 8, 1000, NULL);
  }
  int bad = 0;
  double value = 0, secs = 0;
  const char *unit = "tasks/s";
  if (strcmp(variant, "submit1") == 0) {
    weft_future **fs = malloc((size_t)n * sizeof *fs);
    int64_t t0 = weft_now_ns();
    for (int64_t i = 0; i < n; i++)
      if (weft_executor_submit(ex, &SQ, &i, sizeof i, &fs[i]) != 0) return 1;
    for (int64_t i = 0; i < n; i++) {
      bad += result(fs[i]) != i * i;
      weft_future_release(fs[i]);
    }
    secs = (weft_now_ns() - t0) / 1e9;
    value = n / secs;
    free(fs);
  } else if (strcmp(variant, "rtt") == 0) {
    int64_t *t = malloc((size_t)n * sizeof *t), t0 = weft_now_ns();
    for (int64_t i = 0; i < n; i++) {
      int64_t a = weft_now_ns();
      weft_future *f;
      if (weft_executor_submit(ex, &SQ, &i, sizeof i, &f) != 0) return 1;
      bad += result(f) != i * i;
      weft_future_release(f);
      t[i] = weft_now_ns() - a;
    }
    secs = (weft_now_ns() - t0) / 1e9;
    qsort(t, (size_t)n, sizeof *t, cmp_i64);
    value = t[n / 2] / 1e3;
    unit = "us";
    free(t);
  } else if (strcmp(variant, "map") == 0) {
    int64_t *in = malloc((size_t)n * 8), *out = malloc((size_t)n * 8);
    for (int64_t i = 0; i < n; i++) in[i] = i;
    int64_t t0 = weft_now_ns();
    if (weft_executor_map(ex, &SQ, in, 8, out, 8, (size_t)n, NULL) != 0) return 1;
    secs = (weft_now_ns() - t0) / 1e9;
    for (int64_t i = 0; i < n; i++) bad += out[i] != i * i;
    value = n / secs;
    unit = "items/s";
    free(in);
    free(out);
  } else if (strcmp(variant, "idle") == 0) {
    for (int64_t i = 0; i < n; i++) weft_executor_submit(ex, &SQ, &i, sizeof i, NULL);
    weft_executor_shutdown(ex, 0, 0);
    weft_executor_destroy(ex);
    r = weft_executor_create(&ex, &(weft_executor_opts){.kind = WEFT_EXECUTOR_MPI});
    if (r) return 1;
    weft_future *f;
    int64_t x = 3;
    weft_executor_submit(ex, &SQ, &x, 8, &f);
    bad += result(f) != 9;
    weft_future_release(f);
    weft_sleep_until(weft_deadline_in_ms(20));
    int64_t c0 = cpu_ns(), t0 = weft_now_ns();
    weft_sleep_until(weft_deadline_in_ms(500));
    secs = (weft_now_ns() - t0) / 1e9;
    value = 100.0 * (cpu_ns() - c0) / 1e9 / secs;
    unit = "%CPU";
  } else {
    fprintf(stderr, "weft_w8: unknown variant %s\n", variant);
    return 2;
  }
  weft_executor_destroy(ex);
  weft_mpi_finalize();
  if (bad) {
    fprintf(stderr, "weft_w8: %d wrong results\n", bad);
    return 1;
  }
  printf("{\"workload\":\"W8\",\"impl\":\"%s\",\"variant\":\"%s\",\"n\":%ld,\"value\":%.6g,"
         "\"unit\":\"%s\",\"secs\":%.4f,\"workers\":%u}\n",
         impl, variant, n, value, unit, secs, workers);
  return 0;
}
