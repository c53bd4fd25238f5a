/*
 * bench/w3_procpool/weft_w3.c: W3 and W3b on weft's process pool.
 *
 *   weft_w3 weft.processes map N           W3: square of each of N int64s
 *                                           with weft_executor_map on a pool
 *                                           of 2 worker processes, weft's own
 *                                           chunking (no chunksize given);
 *                                           items/s
 *   weft_w3 weft.processes 'round trip' N  W3b: N submit -> result round
 *                                           trips of one small task on a pool
 *                                           of 2, one at a time; the median,
 *                                           in us
 *   weft_w3 weft.processes 'crash to replacement' N
 *                                           a pool of 1: SIGKILL its worker,
 *                                           then time until a task submitted
 *                                           at once has been run by the new
 *                                           worker; N rounds, the median, ms
 *   weft_w3 weft.processes 'ctrl-c to all stopped' N
 *                                           a child process runs a map on a
 *                                           pool of 2; SIGINT to that child
 *                                           (its default action, as Ctrl-C);
 *                                           time until every worker has
 *                                           ended (pidfds); N rounds, the
 *                                           median, ms
 *
 * Every result is checked; a wrong one exits 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <weft.h>

#include "bench.h"

__attribute__((noreturn)) static void die_rc(const char *call, int rc) {
  bench_die("%s failed: %s (%s)", call, weft_err_name(rc), weft_strerror(rc));
}

static int square(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  x *= x;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task SQUARE = {"bench.w3.square", square};

static int getpid_task(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  int32_t pid = getpid();
  return weft_task_return(ctx, &pid, sizeof pid);
}
static const weft_task GETPID = {"bench.w3.getpid", getpid_task};

static weft_executor *make_pool(unsigned workers) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_PROCESSES, .workers = workers, .name = "w3"};
  weft_executor *ex;
  int rc = weft_executor_create(&ex, &o);
  if (rc == WEFT_ENOTSUP) {
    fprintf(stderr, "w3: WEFT_EXECUTOR_PROCESSES is not built into this weft\n");
    exit(3);
  }
  if (rc) die_rc("weft_executor_create", rc);
  return ex;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double run_map(weft_executor *ex, int64_t *in, int64_t *out, size_t n) {
  memset(out, 0, n * sizeof *out);
  double t0 = bench_now_s();
  int rc = weft_executor_map(ex, &SQUARE, in, sizeof *in, out, sizeof *out, n, NULL);
  double t = bench_now_s() - t0;
  if (rc) die_rc("weft_executor_map", rc);
  for (size_t i = 0; i < n; i++)
    if (out[i] != in[i] * in[i]) bench_die("map: out[%zu] = %lld", i, (long long)out[i]);
  return t;
}

static void bench_map(uint64_t n) {
  int64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  if (!in || !out) bench_die("out of memory");
  for (uint64_t i = 0; i < n; i++) in[i] = (int64_t)i;
  weft_executor *ex = make_pool(2);
  run_map(ex, in, out, n / 8); /* warm-up: workers up, pages touched */
  double t = run_map(ex, in, out, n);
  weft_executor_destroy(ex);
  bench_emit("W3", "weft.processes", "map", n, (double)n / t, "items/s", t);
  free(in);
  free(out);
}

static int64_t one_round_trip(weft_executor *ex, int64_t x) {
  weft_future *f;
  int rc = weft_executor_submit(ex, &SQUARE, &x, sizeof x, &f);
  if (rc) die_rc("weft_executor_submit", rc);
  const void *d;
  size_t len;
  rc = weft_future_result(f, WEFT_FOREVER, &d, &len);
  if (rc) die_rc("weft_future_result", rc);
  int64_t y;
  if (len != sizeof y) bench_die("result of %zu bytes", len);
  memcpy(&y, d, sizeof y);
  weft_future_release(f);
  return y;
}

static void bench_round_trip(uint64_t n) {
  weft_executor *ex = make_pool(2);
  for (int64_t i = 0; i < 200; i++)
    if (one_round_trip(ex, i) != i * i) bench_die("wrong square");
  double *v = malloc(n * sizeof *v);
  double total = 0;
  for (uint64_t k = 0; k < n; k++) {
    int64_t x = (int64_t)k;
    double t0 = bench_now_s();
    int64_t y = one_round_trip(ex, x);
    v[k] = bench_now_s() - t0;
    total += v[k];
    if (y != x * x) bench_die("wrong square");
  }
  double med = median(v, n);
  weft_executor_destroy(ex);
  bench_emit("W3b", "weft.processes", "round trip", n, med * 1e6, "us", total);
  free(v);
}

static int32_t worker_pid(weft_executor *ex) {
  weft_future *f;
  int rc = weft_executor_submit(ex, &GETPID, NULL, 0, &f);
  if (rc) die_rc("weft_executor_submit", rc);
  const void *d;
  rc = weft_future_result(f, WEFT_FOREVER, &d, NULL);
  if (rc) die_rc("weft_future_result", rc);
  int32_t pid;
  memcpy(&pid, d, sizeof pid);
  weft_future_release(f);
  return pid;
}

static void bench_crash(uint64_t n) {
  weft_executor *ex = make_pool(1);
  double *v = malloc(n * sizeof *v), total = 0;
  for (uint64_t k = 0; k < n; k++) {
    int32_t old = worker_pid(ex);
    double t0 = bench_now_s();
    kill(old, SIGKILL);
    int32_t now = worker_pid(ex); /* run by the replacement */
    v[k] = bench_now_s() - t0;
    total += v[k];
    if (now == old || now <= 0) bench_die("the task ran on pid %d, the killed worker was %d", now, old);
  }
  double med = median(v, n);
  weft_executor_destroy(ex);
  bench_emit("W3b", "weft.processes", "crash to replacement", n, med * 1e3, "ms", total);
  free(v);
}

static int sleepy(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  (void)ctx;
  weft_sleep_until(weft_deadline_in_ms(50));
  return 0;
}
static const weft_task SLEEPY = {"bench.w3.sleepy", sleepy};

static int slow_pid(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_sleep_until(weft_deadline_in_ms(100));
  return getpid_task(ctx, arg, len);
}
static const weft_task SLOW_PID = {"bench.w3.slow_pid", slow_pid};

/* The child: a pool of 2 and a long map; it dies of the SIGINT. */
static __attribute__((noreturn)) void ctrl_c_child(int ready_fd) {
  /* As in a program run from a terminal: SIGINT kills. (A shell starts
   * background jobs with SIGINT ignored, and that is inherited.) */
  signal(SIGINT, SIG_DFL);
  weft_executor *ex = make_pool(2);
  /* Both workers up and known to the parent before the map starts: two
   * tasks that each hold a worker for a while. */
  int32_t pids[2];
  weft_future *f[2];
  for (int i = 0; i < 2; i++) {
    int rc = weft_executor_submit(ex, &SLOW_PID, NULL, 0, &f[i]);
    if (rc) die_rc("weft_executor_submit", rc);
  }
  for (int i = 0; i < 2; i++) {
    const void *d;
    int rc = weft_future_result(f[i], WEFT_FOREVER, &d, NULL);
    if (rc) die_rc("weft_future_result", rc);
    memcpy(&pids[i], d, sizeof pids[i]);
    weft_future_release(f[i]);
  }
  if (pids[0] == pids[1]) _exit(3);
  if (write(ready_fd, pids, sizeof pids) != sizeof pids) _exit(1);
  int64_t in[400], out[400];
  memset(in, 0, sizeof in);
  weft_map_opts mo = {.chunksize = 1};
  weft_executor_map(ex, &SLEEPY, in, sizeof in[0], out, 0, 400, &mo);
  _exit(2);
}

static void bench_ctrl_c(uint64_t n) {
  double *v = malloc(n * sizeof *v), total = 0;
  for (uint64_t k = 0; k < n; k++) {
    int fds[2];
    if (pipe(fds) != 0) bench_die("pipe");
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
      close(fds[0]);
      ctrl_c_child(fds[1]);
    }
    close(fds[1]);
    int32_t pids[2];
    if (read(fds[0], pids, sizeof pids) != sizeof pids) bench_die("child failed to start");
    close(fds[0]);
    int pfd[2];
    for (int i = 0; i < 2; i++) {
      pfd[i] = (int)syscall(SYS_pidfd_open, pids[i], 0);
      if (pfd[i] < 0) bench_die("pidfd_open");
    }
    weft_sleep_until(weft_deadline_in_ms(30)); /* the map is under way */
    double t0 = bench_now_s();
    kill(child, SIGINT);
    for (int i = 0; i < 2; i++) {
      struct pollfd p = {pfd[i], POLLIN, 0};
      if (poll(&p, 1, 10000) != 1) bench_die("worker %d still runs 10 s after Ctrl-C", pids[i]);
    }
    v[k] = bench_now_s() - t0;
    total += v[k];
    for (int i = 0; i < 2; i++) close(pfd[i]);
    int st;
    waitpid(child, &st, 0);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGINT) bench_die("child did not die of SIGINT");
  }
  double med = median(v, n);
  bench_emit("W3b", "weft.processes", "ctrl-c to all stopped", n, med * 1e3, "ms", total);
  free(v);
}

int main(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[1], "weft.processes") != 0)
    bench_die("usage: weft_w3 weft.processes VARIANT N");
  uint64_t n = bench_parse_u64(argv[3], "N");
  if (strcmp(argv[2], "map") == 0)
    bench_map(n);
  else if (strcmp(argv[2], "round trip") == 0)
    bench_round_trip(n);
  else if (strcmp(argv[2], "crash to replacement") == 0)
    bench_crash(n);
  else if (strcmp(argv[2], "ctrl-c to all stopped") == 0)
    bench_ctrl_c(n);
  else
    bench_die("unknown variant '%s'", argv[2]);
  return 0;
}
