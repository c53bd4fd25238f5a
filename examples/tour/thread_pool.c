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

static int fail(const char *what, int r) {
  fprintf(stderr, "thread_pool: %s: %s\n", what, weft_strerror(r));
  return 1;
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
  r = weft_executor_map(p, &tour_square, in, sizeof in[0], out, sizeof out[0], 10, NULL);
  if (r) {
    weft_executor_destroy(p);
    return fail("p.map", r);
  }
  tour_print_list(out, 10);
  weft_executor_destroy(p);

  /* with futures.ThreadPoolExecutor(max_workers=4) as ex:
   *     print(list(ex.map(f, range(10)))) */
  weft_executor *ex;
  r = weft_executor_create(&ex, &opts);
  if (r) return fail("ThreadPoolExecutor(max_workers=4)", r);
  printf(">>> with futures.ThreadPoolExecutor(max_workers=4) as ex:\n"
         "...     print(list(ex.map(f, range(10))))\n");
  r = tour_print_imap_squares(ex);

  /* fut = ex.submit(f, i); print(fut.result()) */
  if (r == 0) printf(">>> for i in range(10):\n...     print(ex.submit(f, i).result())\n");
  weft_future *fut;
  for (int64_t i = 0; r == 0 && i < 10; i++) {
    r = weft_executor_submit(ex, &tour_square, &i, sizeof i, &fut);
    if (r) break;
    int64_t y;
    r = tour_result_i64(fut, &y);
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
