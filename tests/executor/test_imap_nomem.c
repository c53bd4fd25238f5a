/*
 * imap_unordered when the watch of a future cannot be allocated: the
 * iterator looks at that future instead of waiting for its watch, and
 * still yields every result exactly once.
 */
#define _GNU_SOURCE
#include <string.h>

#include "common/alloc.h"
#include "weft_test.h"
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/thread.h>

WEFT_TEST_TIMEOUT(30)

static weft_event gate_ev;
static weft_event *const gate = &gate_ev;

/* Waits for the gate, then returns its argument doubled. */
static int slow_double(weft_task_ctx *ctx, const void *arg, size_t len) {
  if (len != sizeof(int)) return weft_task_fail(ctx, WEFT_EINVAL, "bad argument");
  weft_event_wait(gate, WEFT_FOREVER);
  int x;
  memcpy(&x, arg, sizeof x);
  x *= 2;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task slow_task = {"test.imap_nomem.double", slow_double};

static int inputs[8];
static int next_in;
static int source(void *ud, const void **arg, size_t *len) {
  (void)ud;
  if (next_in == 8) return WEFT_EEMPTY;
  *arg = &inputs[next_in++];
  *len = sizeof(int);
  return 0;
}

/* Fail each of the first allocations of a refill in turn (the job, the
 * future's slab, the watch block of a pending future: which one comes
 * first depends on the caches). Whichever fails, every task submitted is
 * yielded exactly once with its right result, and a failed submit ends the
 * iteration with WEFT_ENOMEM once the rest are yielded. */
TEST(unordered_without_memory_for_a_watch) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 2};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  ASSERT_OK(weft_event_init(gate, 0));
  for (int i = 0; i < 8; i++) inputs[i] = i + 1;
  for (long nth = 1; nth <= 6; nth++) {
    weft_event_clear(gate);
    next_in = 0;
    weft_imap *it;
    weft_imap_opts io = {.unordered = true, .max_in_flight = 3};
    ASSERT_OK(weft_imap_create(&it, ex, &slow_task, source, NULL, &io));
    weft__fault_alloc_fail_nth(nth);
    weft_future *f = NULL;
    /* Nothing can finish yet: the refill happens, then the wait times out
     * (or the first submit failed and nothing is in flight). */
    int r = weft_imap_next(it, weft_deadline_in_ms(20), &f);
    weft__fault_alloc_fail_nth(0);
    ASSERT(r == WEFT_ETIMEDOUT || r == WEFT_ENOMEM);
    weft_event_set(gate);
    unsigned seen_mask = 0;
    int seen = 0;
    while (r != WEFT_EEMPTY && r != WEFT_ENOMEM) {
      r = weft_imap_next(it, weft_deadline_in_ms(5000), &f);
      if (r == WEFT_EEMPTY || r == WEFT_ENOMEM) break;
      ASSERT_OK(r);
      const void *data;
      size_t len;
      ASSERT_OK(weft_future_result(f, 0, &data, &len));
      ASSERT_EQ(len, sizeof(int));
      int v;
      memcpy(&v, data, sizeof v);
      ASSERT(v % 2 == 0 && v >= 2 && v <= 16);
      ASSERT_EQ(seen_mask & (1u << (v / 2)), 0u); /* each once */
      seen_mask |= 1u << (v / 2);
      seen++;
      weft_future_release(f);
    }
    if (r == WEFT_EEMPTY)
      ASSERT_EQ(seen, 8);
    else /* the input whose submit failed is the one not yielded */
      ASSERT_EQ(seen, next_in - 1);
    weft_imap_destroy(it);
  }
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER));
  weft_executor_destroy(ex);
  weft_event_fini(gate);
}
