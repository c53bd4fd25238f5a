/*
 * The thread_pool demo: the seed's two thread-pool snippets, in C on weft's
 * thread executor, plus the submit/result pattern of concurrent.futures.
 *
 *   p = ThreadPool(4)                      weft_executor_create, 4 workers
 *   p.map(f, range(10))                    weft_executor_map over an array
 *
 *   def f(x): return x*x                   a task: bytes in, bytes out
 *   with ThreadPoolExecutor(max_workers=4) as ex:
 *       print(list(ex.map(f, range(10))))  weft_imap over range(10), taken
 *                                          lazily as Executor.map does; the
 *                                          end of `with` is shutdown(wait)
 *
 *   fut = ex.submit(f, i)                  weft_executor_submit
 *   fut.result()                           weft_future_result
 *
 * A weft task receives a copy of its argument bytes and returns result
 * bytes, so the same f runs on threads, processes and MPI ranks.
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
static const weft_task F = {"tour.f", f};

/* print(list) of n int64s, Python style. */
static void print_list(const int64_t *v, size_t n) {
  printf("[");
  for (size_t i = 0; i < n; i++) printf("%s%lld", i ? ", " : "", (long long)v[i]);
  printf("]\n");
  fflush(stdout);
}

static int fail(const char *what, int r) {
  fprintf(stderr, "thread_pool: %s: %s\n", what, weft_strerror(r));
  return 1;
}

/* range(10) as an imap source. */
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

/* The result of a finished future as an int64. */
static int result_i64(weft_future *fut, int64_t *out) {
  const void *data;
  size_t len;
  int r = weft_future_result(fut, WEFT_FOREVER, &data, &len);
  if (r) return r;
  if (len != sizeof *out) return WEFT_EMSGSIZE;
  memcpy(out, data, sizeof *out);
  return 0;
}

int tour_thread_pool(const tour_opts *o) {
  (void)o;
  tour_title("thread_pool", "ThreadPool(4).map(f, range(10)); with ThreadPoolExecutor("
                            "max_workers=4) as ex: print(list(ex.map(f, range(10))))");
  weft_executor_opts opts = {.kind = WEFT_EXECUTOR_THREADS, .workers = 4, .name = "pool"};
  int64_t in[10], out[10];
  for (int i = 0; i < 10; i++) in[i] = i;

  /* p = ThreadPool(4); p.map(f, range(10)) */
  weft_executor *p;
  int r = weft_executor_create(&p, &opts);
  if (r) return fail("ThreadPool(4)", r);
  printf(">>> p = ThreadPool(4)\n>>> p.map(f, range(10))\n");
  r = weft_executor_map(p, &F, in, sizeof in[0], out, sizeof out[0], 10, NULL);
  if (r) {
    weft_executor_destroy(p);
    return fail("p.map", r);
  }
  print_list(out, 10);
  weft_executor_destroy(p);

  /* with futures.ThreadPoolExecutor(max_workers=4) as ex:
   *     print(list(ex.map(f, range(10)))) */
  weft_executor *ex;
  r = weft_executor_create(&ex, &opts);
  if (r) return fail("ThreadPoolExecutor(max_workers=4)", r);
  printf(">>> with futures.ThreadPoolExecutor(max_workers=4) as ex:\n"
         "...     print(list(ex.map(f, range(10))))\n");
  range src = {0, 10, 0};
  weft_imap *it;
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
  weft_imap_destroy(it);
  if (r == 0) print_list(got, n);

  /* fut = ex.submit(f, i); print(fut.result()) */
  if (r == 0) printf(">>> for i in range(10):\n...     print(ex.submit(f, i).result())\n");
  for (int64_t i = 0; r == 0 && i < 10; i++) {
    r = weft_executor_submit(ex, &F, &i, sizeof i, &fut);
    if (r) break;
    int64_t y;
    r = result_i64(fut, &y);
    weft_future_release(fut);
    if (r == 0) printf("%lld\n", (long long)y);
  }
  fflush(stdout);
  /* Leaving the with block: shutdown(wait=True). */
  int rs = weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER);
  weft_executor_destroy(ex);
  if (r) return fail("ex.map / ex.submit", r);
  if (rs) return fail("ex.shutdown", rs);
  return 0;
}
