/*
 * What the pool demos (thread_pool, process_pool) share: the seed's
 * f(x) = x*x as a weft task, range(n) as an imap source, a future's result
 * as an int64, and printing a list of int64s as Python prints a list.
 */
#include <stdio.h>
#include <string.h>

#include "tour.h"

/* def f(x): return x*x */
static int square(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x) return weft_task_fail(ctx, WEFT_EINVAL, "f takes an int64, got %zu bytes", len);
  memcpy(&x, arg, sizeof x);
  int64_t y = x * x;
  return weft_task_return(ctx, &y, sizeof y);
}
const weft_task tour_square = {"tour.f", square};

void tour_print_list(const int64_t *v, size_t n) {
  printf("[");
  for (size_t i = 0; i < n; i++) printf("%s%lld", i ? ", " : "", (long long)v[i]);
  printf("]\n");
  fflush(stdout);
}

int tour_range_next(void *ud, const void **arg, size_t *len) {
  tour_range *r = ud;
  if (r->next >= r->stop) return WEFT_EEMPTY;
  r->cur = r->next++;
  *arg = &r->cur;
  *len = sizeof r->cur;
  return 0;
}

int tour_result_i64(weft_future *fut, int64_t *out) {
  const void *data;
  size_t len;
  int r = weft_future_result(fut, WEFT_FOREVER, &data, &len);
  if (r) return r;
  if (len != sizeof *out) return WEFT_EMSGSIZE;
  memcpy(out, data, sizeof *out);
  return 0;
}

int tour_print_imap_squares(weft_executor *ex) {
  tour_range src = {0, 10, 0};
  weft_imap *it = NULL;
  int r = weft_imap_create(&it, ex, &tour_square, tour_range_next, &src, NULL);
  int64_t got[10];
  size_t n = 0;
  weft_future *fut;
  while (r == 0 && (r = weft_imap_next(it, WEFT_FOREVER, &fut)) == 0) {
    r = tour_result_i64(fut, &got[n]);
    weft_future_release(fut);
    if (r == 0 && ++n == 10) break;
  }
  if (r == WEFT_EEMPTY) r = 0;
  weft_imap_destroy(it); /* NULL if it was not made */
  if (r == 0) tour_print_list(got, n);
  return r;
}
