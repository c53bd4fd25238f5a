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

static int fail(const char *what, int r) {
  fprintf(stderr, "process_pool: %s: %s\n", what, weft_strerror(r));
  return 1;
}

/* print(pool.map(f, range(10))) on a fresh Pool(4). */
static int pool_map(const weft_executor_opts *opts, const char *python) {
  int64_t in[10], out[10];
  for (int i = 0; i < 10; i++) in[i] = i;
  weft_executor *p;
  int r = weft_executor_create(&p, opts);
  if (r) return fail("Pool(4)", r);
  printf("%s", python);
  r = weft_executor_map(p, &tour_square, in, sizeof in[0], out, sizeof out[0], 10, NULL);
  if (r == 0) tour_print_list(out, 10);
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
  r = tour_print_imap_squares(ex);

  /* for i in range(10): res = ex.submit(f, i); print(res.result()),
   * gathered into one list as the map above. */
  if (r == 0)
    printf("...     print([ex.submit(f, i).result() for i in range(10)])\n");
  int64_t got[10];
  weft_future *fut;
  for (int64_t i = 0; r == 0 && i < 10; i++) {
    r = weft_executor_submit(ex, &tour_square, &i, sizeof i, &fut);
    if (r) break;
    r = tour_result_i64(fut, &got[i]);
    weft_future_release(fut);
  }
  if (r == 0) tour_print_list(got, 10);
  int rs = weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER);
  weft_executor_destroy(ex);
  if (r) return fail("ex.map / ex.submit", r);
  if (rs) return fail("ex.shutdown", rs);
  return 0;
}
