/*
 * bench/w1_pool/weft_w1.c: W1 on weft's thread-pool executor (the side
 * under test), 2 workers (WEFT_EXECUTOR_THREADS).
 *
 *  IMPL              VARIANT          what
 *  weft.threads      submit+future    weft_executor_submit with &fut for each
 *                                     task, then weft_wait(ALL_COMPLETED) on
 *                                     all N, then each future checked DONE and
 *                                     released (all inside the clock)
 *  weft.threads      fire-and-forget  weft_executor_submit with out == NULL;
 *                                     the last task posts a semaphore (w1.h)
 *  weft.submit_many  batch            weft_executor_submit_many of
 *                                     W1_BATCH tasks at a time with futures,
 *                                     then wait, check and release as above
 *  weft.map          batch            weft_executor_map over an int32 array
 *                                     (out[i] = in[i] + 1, weft's default
 *                                     chunking); the caller helps run tasks
 *                                     while it waits, as the API says
 *  weft.threads      wake-up latency  see w1.h (N samples)
 *  weft.threads      idle CPU         see w1.h (N ms)
 *
 * Every task is one call of w1_task() (count, and post when last), the task
 * argument a 4-byte index. Every weft call is checked: any error ends the
 * program with exit status 1.
 */
#include <weft/executor.h>
#include <weft/future.h>

#include "w1.h"

#define W1_BATCH 1024u

__attribute__((noreturn)) static void die_rc(const char *call, int rc) {
  bench_die("%s failed: %s (%s)", call, weft_err_name(rc), weft_strerror(rc));
}

static int noop_fn(weft_task_ctx *ctx, const void *arg, size_t arg_len) {
  (void)ctx;
  (void)arg;
  (void)arg_len;
  w1_task();
  return 0;
}
static const weft_task noop_task = {"bench.w1.noop", noop_fn};

static int incr_fn(weft_task_ctx *ctx, const void *arg, size_t arg_len) {
  if (arg_len != sizeof(int32_t))
    return weft_task_fail(ctx, WEFT_EINVAL, "argument of %zu bytes", arg_len);
  int32_t x;
  memcpy(&x, arg, sizeof x);
  void *out = weft_task_return_buf(ctx, sizeof(int32_t));
  if (out == NULL)
    return WEFT_ENOMEM;
  x += 1;
  memcpy(out, &x, sizeof x);
  w1_task();
  return 0;
}
static const weft_task incr_task = {"bench.w1.incr", incr_fn};

static int wake_fn(weft_task_ctx *ctx, const void *arg, size_t arg_len) {
  (void)ctx;
  (void)arg;
  (void)arg_len;
  w1_wake_task();
  return 0;
}
static const weft_task wake_task = {"bench.w1.wake", wake_fn};

/* Inputs and outputs, allocated once for the largest round. */
static weft_future **futs;
static uint32_t *idx;   /* idx[i] = i: the task arguments */
static int32_t *map_in, *map_out;

static void alloc_arrays(uint64_t n) {
  futs = calloc(n, sizeof *futs);
  idx = malloc(n * sizeof *idx);
  map_in = malloc(n * sizeof *map_in);
  map_out = malloc(n * sizeof *map_out);
  if (futs == NULL || idx == NULL || map_in == NULL || map_out == NULL)
    bench_die("out of memory");
  for (uint64_t i = 0; i < n; i++) {
    idx[i] = (uint32_t)i;
    map_in[i] = (int32_t)(i & 0x3fffffff);
  }
}

/* Wait for futs[0..n), check each finished well, release each. */
static void wait_release(uint64_t n) {
  size_t n_done = 0;
  int rc = weft_wait(futs, n, WEFT_ALL_COMPLETED, WEFT_FOREVER, &n_done);
  if (rc != 0)
    die_rc("weft_wait", rc);
  if (n_done != n)
    bench_die("WRONG RESULT: weft_wait(ALL_COMPLETED) returned 0 with %zu of %" PRIu64 " done",
              n_done, n);
  for (uint64_t i = 0; i < n; i++) {
    weft_future_state st = weft_future_state_get(futs[i]);
    if (st != WEFT_FUTURE_DONE)
      bench_die("WRONG RESULT: future %" PRIu64 " in state %d after the wait, not DONE", i,
                (int)st);
    weft_future_release(futs[i]);
    futs[i] = NULL;
  }
}

static void run_future(void *pool, uint64_t n) {
  weft_executor *ex = pool;
  for (uint64_t i = 0; i < n; i++) {
    int rc = weft_executor_submit(ex, &noop_task, &idx[i], sizeof idx[i], &futs[i]);
    if (rc != 0)
      die_rc("weft_executor_submit", rc);
  }
  wait_release(n);
}

static void run_forget(void *pool, uint64_t n) {
  weft_executor *ex = pool;
  for (uint64_t i = 0; i < n; i++) {
    int rc = weft_executor_submit(ex, &noop_task, &idx[i], sizeof idx[i], NULL);
    if (rc != 0)
      die_rc("weft_executor_submit", rc);
  }
  w1_wait_all();
}

static void run_submit_many(void *pool, uint64_t n) {
  weft_executor *ex = pool;
  for (uint64_t i = 0; i < n; i += W1_BATCH) {
    size_t k = n - i < W1_BATCH ? (size_t)(n - i) : W1_BATCH;
    int rc = weft_executor_submit_many(ex, &noop_task, &idx[i], sizeof idx[i], k, &futs[i]);
    if (rc != 0)
      die_rc("weft_executor_submit_many", rc);
  }
  wait_release(n);
}

static void prepare_map(void *pool, uint64_t n) {
  (void)pool;
  memset(map_out, 0, n * sizeof *map_out);
}

static void run_map(void *pool, uint64_t n) {
  size_t failed = SIZE_MAX;
  weft_map_opts opts = {.failed_index = &failed};
  int rc = weft_executor_map(pool, &incr_task, map_in, sizeof *map_in, map_out, sizeof *map_out,
                             n, &opts);
  if (rc != 0)
    bench_die("weft_executor_map failed at item %zu: %s (%s)", failed, weft_err_name(rc),
              weft_strerror(rc));
}

static void verify_map(void *pool, uint64_t n) {
  (void)pool;
  for (uint64_t i = 0; i < n; i++)
    if (map_out[i] != map_in[i] + 1)
      bench_die("weft.map: WRONG RESULT: out[%" PRIu64 "] = %d, want %d", i, map_out[i],
                map_in[i] + 1);
}

static void submit_wake(void *pool) {
  uint32_t a = 0;
  int rc = weft_executor_submit(pool, &wake_task, &a, sizeof a, NULL);
  if (rc != 0)
    die_rc("weft_executor_submit", rc);
}

static const struct {
  const char *impl, *variant;
  w1_round round;
} throughput[] = {
    {"weft.threads", "submit+future", {run_future, NULL, NULL}},
    {"weft.threads", "fire-and-forget", {run_forget, NULL, NULL}},
    {"weft.submit_many", "batch", {run_submit_many, NULL, NULL}},
    {"weft.map", "batch", {run_map, prepare_map, verify_map}},
};

static const char usage[] =
    "  IMPL VARIANT: weft.threads submit+future | weft.threads fire-and-forget |\n"
    "                weft.submit_many batch | weft.map batch |\n"
    "                weft.threads 'wake-up latency' (N samples) | weft.threads 'idle CPU' (N ms)\n";

int main(int argc, char **argv) {
  w1_args a = w1_parse(argc, argv, usage);
  weft_executor_opts opts = {.kind = WEFT_EXECUTOR_THREADS, .workers = W1_WORKERS,
                             .name = "w1"};
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, &opts);
  if (rc != 0)
    die_rc("weft_executor_create", rc);
  if (weft_executor_workers(ex) != W1_WORKERS)
    bench_die("the executor has %u workers, asked for %u", weft_executor_workers(ex), W1_WORKERS);

  bool done = false;
  for (size_t i = 0; i < sizeof throughput / sizeof throughput[0]; i++) {
    if (strcmp(a.impl, throughput[i].impl) == 0 && strcmp(a.variant, throughput[i].variant) == 0) {
      alloc_arrays(a.n);
      w1_throughput(a.impl, a.variant, a.n, &throughput[i].round, ex);
      done = true;
    }
  }
  if (!done && strcmp(a.impl, "weft.threads") == 0) {
    if (strcmp(a.variant, "wake-up latency") == 0) {
      w1_wakeup(a.impl, a.n, submit_wake, ex);
      done = true;
    } else if (strcmp(a.variant, "idle CPU") == 0) {
      const w1_round burst = {run_forget, NULL, NULL};
      alloc_arrays(10000);
      (void)w1_round_once(a.impl, &burst, ex, 10000);
      w1_idle_cpu(a.impl, a.n);
      done = true;
    }
  }
  if (!done)
    bench_die("unknown IMPL VARIANT '%s' '%s'\n%s", a.impl, a.variant, usage);
  weft_executor_destroy(ex);
  return 0;
}
