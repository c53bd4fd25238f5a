/*
 * bench/w2_cpu/weft_w2.c: W2 on weft's executors (the side under test).
 *
 *  IMPL            VARIANT    executor
 *  weft.threads    threads    WEFT_EXECUTOR_THREADS, 1 then 2 workers
 *  weft.processes  processes  WEFT_EXECUTOR_PROCESSES, 1 then 2 workers
 *
 * One weft_executor_submit per fib call, with a future; the task
 * ("bench.w2.fib", registered so that process workers find it) takes n as
 * a 4-byte argument and returns fib(n) as 8 bytes; the submitter waits for
 * all futures (weft_wait ALL_COMPLETED) and reads each result.
 *
 * When weft_executor_create says WEFT_ENOTSUP (that backend is not built
 * into this weft), the program says so on
 * stderr and exits with W2_EXIT_UNSUPPORTED, printing no measurement: the
 * harness reports the impl as not measured.
 */
#include <weft/executor.h>
#include <weft/future.h>

#include "w2.h"

__attribute__((noreturn)) static void die_rc(const char *call, int rc) {
  bench_die("%s failed: %s (%s)", call, weft_err_name(rc), weft_strerror(rc));
}

static int fib_fn(weft_task_ctx *ctx, const void *arg, size_t arg_len) {
  uint32_t n;
  if (arg_len != sizeof n)
    return weft_task_fail(ctx, WEFT_EINVAL, "argument of %zu bytes", arg_len);
  memcpy(&n, arg, sizeof n);
  uint64_t r = w2_fib(n);
  return weft_task_return(ctx, &r, sizeof r);
}
static const weft_task fib_task = {"bench.w2.fib", fib_fn};

static void *create_kind(weft_executor_kind kind, unsigned workers) {
  weft_executor_opts opts = {.kind = kind, .workers = workers, .name = "w2"};
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, &opts);
  if (rc == WEFT_ENOTSUP) {
    fprintf(stderr, "w2: weft_executor_create(%s): %s (%s): this backend is not built into "
            "this weft; no measurement\n",
            kind == WEFT_EXECUTOR_PROCESSES ? "WEFT_EXECUTOR_PROCESSES" : "WEFT_EXECUTOR_THREADS",
            weft_err_name(rc), weft_strerror(rc));
    exit(W2_EXIT_UNSUPPORTED);
  }
  if (rc != 0)
    die_rc("weft_executor_create", rc);
  if (weft_executor_workers(ex) != workers)
    bench_die("the executor has %u workers, asked for %u", weft_executor_workers(ex), workers);
  return ex;
}

static void *create_threads(unsigned workers) {
  return create_kind(WEFT_EXECUTOR_THREADS, workers);
}
static void *create_processes(unsigned workers) {
  return create_kind(WEFT_EXECUTOR_PROCESSES, workers);
}

static void run(void *pool, unsigned n, uint64_t *results, unsigned tasks) {
  weft_future **futs = calloc(tasks, sizeof *futs);
  if (futs == NULL)
    bench_die("out of memory");
  uint32_t arg = n;
  for (unsigned i = 0; i < tasks; i++) {
    int rc = weft_executor_submit(pool, &fib_task, &arg, sizeof arg, &futs[i]);
    if (rc != 0)
      die_rc("weft_executor_submit", rc);
  }
  int rc = weft_wait(futs, tasks, WEFT_ALL_COMPLETED, WEFT_FOREVER, NULL);
  if (rc != 0)
    die_rc("weft_wait", rc);
  for (unsigned i = 0; i < tasks; i++) {
    const void *data = NULL;
    size_t len = 0;
    rc = weft_future_result(futs[i], 0, &data, &len);
    if (rc != 0)
      bench_die("task %u failed: %s (%s): %s", i, weft_err_name(rc), weft_strerror(rc),
                weft_future_error_message(futs[i]));
    if (len != sizeof(uint64_t))
      bench_die("WRONG RESULT: task %u returned %zu bytes, want 8", i, len);
    memcpy(&results[i], data, sizeof(uint64_t));
    weft_future_release(futs[i]);
  }
  free(futs);
}

static void destroy(void *pool) { weft_executor_destroy(pool); }

static const w2_impl impls[] = {
    {"weft.threads", "threads", create_threads, run, destroy},
    {"weft.processes", "processes", create_processes, run, destroy},
};

int main(int argc, char **argv) {
  int rc = weft_task_register(&fib_task);
  if (rc != 0)
    die_rc("weft_task_register", rc);
  return w2_main(argc, argv, impls, sizeof impls / sizeof impls[0]);
}
