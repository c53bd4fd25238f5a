/*
 * bench/w1_pool/uv_w1.c: W1 on libuv's thread pool, uv_queue_work (peer).
 *
 * "libuv.uv_queue_work", variant "submit+future": for each task one
 * uv_queue_work(loop, &req[i], work_cb, after_work_cb); work_cb is the
 * common task body (w1.h), after_work_cb runs on the loop thread (the
 * submitter) and counts completions; then uv_run(UV_RUN_DEFAULT) until no
 * request is left. The per-request completion delivered back to the
 * submitter is libuv's counterpart of a future, hence the variant. The
 * uv_work_t array is the caller's memory in libuv's API: allocated before
 * the clock.
 *
 * libuv's pool is process-wide and sized once from UV_THREADPOOL_SIZE: the
 * harness runs this program with UV_THREADPOOL_SIZE=2 in its environment,
 * and the program refuses to run with any other value.
 */
#include <uv.h>

#include "w1.h"

static uv_loop_t loop;
static uv_work_t *reqs;
static uint64_t after_count;
static int after_errors;

static void work_cb(uv_work_t *req) {
  (void)req;
  w1_task();
}

static void after_cb(uv_work_t *req, int status) {
  (void)req;
  if (status != 0)
    after_errors++;
  after_count++;
}

static void run_queue_work(void *p, uint64_t n) {
  (void)p;
  for (uint64_t i = 0; i < n; i++) {
    int rc = uv_queue_work(&loop, &reqs[i], work_cb, after_cb);
    if (rc != 0)
      bench_die("uv_queue_work failed: %s", uv_strerror(rc));
  }
  uv_run(&loop, UV_RUN_DEFAULT);
}

static void prepare(void *p, uint64_t n) {
  (void)p;
  (void)n;
  after_count = 0;
  after_errors = 0;
}

static void verify(void *p, uint64_t n) {
  (void)p;
  if (after_count != n || after_errors != 0)
    bench_die("libuv: WRONG RESULT: %" PRIu64 " after_work callbacks (%d with an error) for %" PRIu64
              " requests", after_count, after_errors, n);
}

int main(int argc, char **argv) {
  w1_args a = w1_parse(argc, argv, "  IMPL VARIANT: libuv.uv_queue_work submit+future\n"
                                   "  (with UV_THREADPOOL_SIZE=2 in the environment)\n");
  if (strcmp(a.impl, "libuv.uv_queue_work") != 0 || strcmp(a.variant, "submit+future") != 0)
    bench_die("unknown IMPL VARIANT '%s' '%s'", a.impl, a.variant);
  const char *size = getenv("UV_THREADPOOL_SIZE");
  if (size == NULL || strcmp(size, "2") != 0)
    bench_die("run with UV_THREADPOOL_SIZE=2 in the environment (it is %s)",
              size ? size : "unset");
  int rc = uv_loop_init(&loop);
  if (rc != 0)
    bench_die("uv_loop_init failed: %s", uv_strerror(rc));
  reqs = calloc(a.n, sizeof *reqs);
  if (reqs == NULL)
    bench_die("out of memory");
  const w1_round r = {run_queue_work, prepare, verify};
  w1_throughput(a.impl, a.variant, a.n, &r, NULL);
  rc = uv_loop_close(&loop);
  if (rc != 0)
    bench_die("uv_loop_close failed: %s", uv_strerror(rc));
  free(reqs);
  return 0;
}
