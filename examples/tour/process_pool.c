/*
 * The process_pool demo: the seed's three process-pool snippets, in C on
 * weft's process executor (workers are forked processes, started when the
 * pool is made; arguments and results travel through shared memory).
 *
 *   p = Pool(4)                              weft_executor_create with
 *   print(p.map(f, range(10)))               WEFT_EXECUTOR_PROCESSES, map
 *
 *   with Pool(processes=4) as pool:          the same, the end of the block
 *       print(pool.map(f, range(10)))        is shutdown(wait) + destroy
 *
 *   with futures.ProcessPoolExecutor(max_workers=4) as ex:
 *       print(list(ex.map(f, range(10))))    weft_imap, taken lazily
 *       res = ex.submit(f, i)                weft_executor_submit
 *       print(res.result())                  weft_future_result
 *
 * f is the same C function as in the thread_pool demo: a task is bytes in,
 * bytes out, so it runs unchanged on threads or processes.
 */
#include <stdio.h>
#include <string.h>

#include "tour.h"
#include "weft.h"

/* def f(x): return x*x */
static int f(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x) return weft_task_fail(ctx, WEFT_EINVAL, "f takes an int64, got %zu bytes", len);
  memcpy(&x, arg, sizeof x);
  int64_t y = x * x;
  return weft_task_return(ctx, &y, sizeof y);
}
static const weft_task F = {"tour.process_pool.f", f};

static void print_list(const int64_t *v, size_t n) {
  printf("[");
  for (size_t i = 0; i < n; i++) printf("%s%lld", i ? ", " : "", (long long)v[i]);
  printf("]\n");
  fflush(stdout);
}

static int fail(const char *what, int r) {
  fprintf(stderr, "process_pool: %s: %s\n", what, weft_strerror(r));
  return 1;
}

typedef struct range {
  int64_t next, stop, cur;
} range;

static int range_next(void *ud, const void **arg, size_t *len) {
  range *r = ud;
  if (r->next >= r->stop) return WEFT_EEMPTY;
  r->cur = r->next++;
  *arg = &r->cur;
  *len = sizeof r->cur;
  return 0;
}

static int result_i64(weft_future *fut, int64_t *out) {
  const void *data;
  size_t len;
  int r = weft_future_result(fut, WEFT_FOREVER, &data, &len);
  if (r) return r;
  if (len != sizeof *out) return WEFT_EMSGSIZE;
  memcpy(out, data, sizeof *out);
  return 0;
}

/* print(pool.map(f, range(10))) on a fresh Pool(4). */
static int pool_map(const weft_executor_opts *opts, const char *python) {
  int64_t in[10], out[10];
  for (int i = 0; i < 10; i++) in[i] = i;
  weft_executor *p;
  int r = weft_executor_create(&p, opts);
  if (r) return fail("Pool(4)", r);
  printf("%s", python);
  r = weft_executor_map(p, &F, in, sizeof in[0], out, sizeof out[0], 10, NULL);
  if (r == 0) print_list(out, 10);
  int rs = weft_executor_shutdown(p, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER);
  weft_executor_destroy(p);
  if (r) return fail("pool.map", r);
  if (rs) return fail("leaving the with block", rs);
  return 0;
}

int tour_process_pool(const tour_opts *o) {
  (void)o;
  tour_title("process_pool", "Pool(4).map(f, range(10)); with Pool(processes=4) as pool: ...; "
                             "with ProcessPoolExecutor(max_workers=4) as ex: ...");
  weft_executor_opts opts = {.kind = WEFT_EXECUTOR_PROCESSES, .workers = 4, .name = "pool"};
  if (pool_map(&opts, ">>> p = Pool(4)\n>>> print(p.map(f, range(10)))\n")) return 1;
  if (pool_map(&opts, ">>> with Pool(processes=4) as pool:\n"
                      "...     print(pool.map(f, range(10)))\n"))
    return 1;

  weft_executor *ex;
  int r = weft_executor_create(&ex, &opts);
  if (r) return fail("ProcessPoolExecutor(max_workers=4)", r);
  printf(">>> with futures.ProcessPoolExecutor(max_workers=4) as ex:\n"
         "...     print(list(ex.map(f, range(10))))\n");
  range src = {0, 10, 0};
  weft_imap *it = NULL;
  r = weft_imap_create(&it, ex, &F, range_next, &src, NULL);
  int64_t got[10];
  size_t n = 0;
  weft_future *fut;
  while (r == 0 && (r = weft_imap_next(it, WEFT_FOREVER, &fut)) == 0) {
    r = result_i64(fut, &got[n]);
    weft_future_release(fut);
    if (r == 0 && ++n == 10) break;
  }
  if (r == WEFT_EEMPTY) r = 0;
  weft_imap_destroy(it); /* NULL if it was not made */
  if (r == 0) print_list(got, n);

  /* for i in range(10): res = ex.submit(f, i); print(res.result()),
   * gathered into one list as the map above. */
  if (r == 0)
    printf("...     print([ex.submit(f, i).result() for i in range(10)])\n");
  for (int64_t i = 0; r == 0 && i < 10; i++) {
    r = weft_executor_submit(ex, &F, &i, sizeof i, &fut);
    if (r) break;
    r = result_i64(fut, &got[i]);
    weft_future_release(fut);
  }
  if (r == 0) print_list(got, 10);
  int rs = weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER);
  weft_executor_destroy(ex);
  if (r) return fail("ex.map / ex.submit", r);
  if (rs) return fail("ex.shutdown", rs);
  return 0;
}
