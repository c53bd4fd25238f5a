/*
 * Tests for one future (src/future/future.c): every state transition and
 * error code, result storage (inline, heap, empty), error messages,
 * cancellation in each state, on_done callbacks (order, exactly once,
 * immediate, nested, releasing, thread, no lock held), the reference count,
 * deadlines, waiting across threads, the internal executor interface
 * (result_buf, finish, watches and unwatch), the weft__block helper hook,
 * allocation failures and misuse, and the slabs that executor futures
 * come from (threads, reuse, memory returned, fork, allocation failure).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/futex.h"
#include "future/future_impl.h"
#include "weft_test.h"

#define MS 1000000LL

static weft_future *make(void) {
  weft_future *f = NULL;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_NOT_NULL(f);
  return f;
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, fn, arg), 0);
  return t;
}

static void join(pthread_t t) { ASSERT_EQ(pthread_join(t, NULL), 0); }

/* Spin (with naps) until *flag is non-zero; fails after 2 s. */
static void await_flag(_Atomic int *flag) {
  int64_t end = weft_deadline_in_ms(2000);
  while (!atomic_load(flag)) {
    ASSERT_LT(weft_now_ns(), end);
    weft_sleep_until(weft_deadline_in_ns(100000));
  }
}

/* ------------------------------------------------------ state machine */

TEST(create_is_pending) {
  weft_future *f = make();
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_PENDING);
  ASSERT(!weft_future_done(f));
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  ASSERT_ERR(weft_future_wait(f, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_ETIMEDOUT);
  weft_future_release(f);
}

TEST(set_running) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_RUNNING);
  ASSERT(!weft_future_done(f));
  ASSERT_ERR(weft_future_set_running(f), WEFT_EALREADY);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_RUNNING);
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_ERR(weft_future_set_running(f), WEFT_EALREADY);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  weft_future_release(f);
}

TEST(set_running_after_cancel) {
  weft_future *f = make();
  ASSERT_OK(weft_future_cancel(f));
  ASSERT_ERR(weft_future_set_running(f), WEFT_ECANCELED);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_CANCELLED);
  weft_future_release(f);
}

TEST(set_running_after_failure) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_error(f, WEFT_EIO, NULL));
  ASSERT_ERR(weft_future_set_running(f), WEFT_EALREADY);
  weft_future_release(f);
}

TEST(result_inline) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_running(f));
  char msg[] = "hello";
  ASSERT_OK(weft_future_set_result(f, msg, sizeof msg));
  msg[0] = 'X'; /* set_result copied */
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  ASSERT(weft_future_done(f));
  const void *data = NULL;
  size_t len = 0;
  ASSERT_OK(weft_future_result(f, 0, &data, &len));
  ASSERT_EQ(len, sizeof msg);
  ASSERT_STR_EQ(data, "hello");
  /* Stable: the same bytes at the same place on every call. */
  const void *again = NULL;
  ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &again, NULL));
  ASSERT_PTR_EQ(again, data);
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  /* The first finisher won. */
  ASSERT_ERR(weft_future_set_result(f, "other", 6), WEFT_EALREADY);
  ASSERT_ERR(weft_future_set_error(f, WEFT_EIO, "no"), WEFT_EALREADY);
  ASSERT_OK(weft_future_result(f, 0, &data, &len));
  ASSERT_STR_EQ(data, "hello");
  weft_future_release(f);
}

/* Sizes around the inline limit and well past it. */
TEST(result_sizes) {
  size_t sizes[] = {1, 31, 32, 47, 48, 49, 64, 1000, 1 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t n = sizes[k];
    unsigned char *buf = malloc(n);
    ASSERT_NOT_NULL(buf);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 7 + k);
    weft_future *f = make();
    ASSERT_OK(weft_future_set_result(f, buf, n)); /* straight from pending */
    memset(buf, 0, n);
    const unsigned char *data;
    size_t len;
    ASSERT_OK(weft_future_result(f, 0, (const void **)&data, &len));
    ASSERT_UEQ(len, n);
    for (size_t i = 0; i < n; i++)
      if (data[i] != (unsigned char)(i * 7 + k))
        weft_test_fail(__FILE__, __LINE__, "size %zu: byte %zu differs", n, i);
    weft_future_release(f);
    free(buf);
  }
}

TEST(empty_result_is_non_null) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_result(f, NULL, 0));
  const void *data = NULL;
  size_t len = 99;
  ASSERT_OK(weft_future_result(f, 0, &data, &len));
  ASSERT_NOT_NULL(data);
  ASSERT_EQ(len, 0);
  weft_future_release(f);
}

TEST(result_outputs_may_be_null) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_result(f, "abc", 3));
  ASSERT_OK(weft_future_result(f, 0, NULL, NULL));
  size_t len = 0;
  ASSERT_OK(weft_future_result(f, 0, NULL, &len));
  ASSERT_EQ(len, 3);
  weft_future_release(f);
}

TEST(error_and_message) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_running(f));
  char m[] = "disk on fire";
  ASSERT_OK(weft_future_set_error(f, WEFT_EIO, m));
  m[0] = 'X'; /* copied */
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_FAILED);
  ASSERT(weft_future_done(f));
  const void *data = (const void *)1;
  size_t len = 77;
  ASSERT_ERR(weft_future_result(f, WEFT_FOREVER, &data, &len), WEFT_EIO);
  ASSERT_PTR_EQ(data, (const void *)1); /* untouched on error */
  ASSERT_EQ(len, 77);
  ASSERT_STR_EQ(weft_future_error_message(f), "disk on fire");
  ASSERT_ERR(weft_future_set_result(f, "x", 1), WEFT_EALREADY);
  ASSERT_ERR(weft_future_set_error(f, WEFT_EPERM, "later"), WEFT_EALREADY);
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_EIO);
  ASSERT_STR_EQ(weft_future_error_message(f), "disk on fire");
  weft_future_release(f);
}

TEST(error_own_code_and_no_message) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_error(f, WEFT_ETASKFAILED, NULL));
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_ETASKFAILED);
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  weft_future_release(f);
}

TEST(error_code_must_be_negative) {
  weft_future *f = make();
  ASSERT_ERR(weft_future_set_error(f, 0, "zero"), WEFT_EINVAL);
  ASSERT_ERR(weft_future_set_error(f, 5, "five"), WEFT_EINVAL);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_PENDING);
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_ERR(weft_future_set_error(f, 1, NULL), WEFT_EINVAL);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_RUNNING);
  weft_future_release(f);
}

/* ----------------------------------------------------------- cancel */

TEST(cancel_pending) {
  weft_future *f = make();
  ASSERT_OK(weft_future_cancel(f));
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_CANCELLED);
  ASSERT(weft_future_done(f));
  ASSERT_OK(weft_future_cancel(f)); /* again: still 0 */
  ASSERT_OK(weft_future_wait(f, 0));
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_ECANCELED);
  ASSERT_ERR(weft_future_set_result(f, "x", 1), WEFT_EALREADY);
  ASSERT_ERR(weft_future_set_error(f, WEFT_EIO, NULL), WEFT_EALREADY);
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_CANCELLED);
  weft_future_release(f);
}

TEST(cancel_running) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_ERR(weft_future_cancel(f), WEFT_EBUSY);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_RUNNING);
  ASSERT_OK(weft_future_set_result(f, NULL, 0));
  weft_future_release(f);
}

TEST(cancel_finished) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_result(f, "r", 1));
  ASSERT_ERR(weft_future_cancel(f), WEFT_EALREADY);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  weft_future_release(f);

  f = make();
  ASSERT_OK(weft_future_set_error(f, WEFT_EIO, "x"));
  ASSERT_ERR(weft_future_cancel(f), WEFT_EALREADY);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_FAILED);
  weft_future_release(f);
}

/* -------------------------------------------------------- callbacks */

typedef struct rec {
  _Atomic int calls;
  int order[16];
  _Atomic int n;
  pthread_t thread;
  weft_future_state seen;
} rec;

static rec g_rec;

static void cb_record(weft_future *f, void *ud) {
  int id = (int)(intptr_t)ud;
  int i = atomic_fetch_add(&g_rec.n, 1);
  if (i < 16) g_rec.order[i] = id;
  atomic_fetch_add(&g_rec.calls, 1);
  g_rec.thread = pthread_self();
  g_rec.seen = weft_future_state_get(f);
}

TEST(callbacks_in_order_exactly_once) {
  weft_future *f = make();
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)i));
  ASSERT_EQ(atomic_load(&g_rec.calls), 0);
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_EQ(atomic_load(&g_rec.calls), 0);
  ASSERT_OK(weft_future_set_result(f, "v", 1));
  ASSERT_EQ(atomic_load(&g_rec.calls), 5);
  for (int i = 0; i < 5; i++) ASSERT_EQ(g_rec.order[i], i);
  ASSERT_EQ(g_rec.seen, WEFT_FUTURE_DONE);
  /* Finishing attempts after the first run nothing again. */
  ASSERT_ERR(weft_future_set_result(f, "v", 1), WEFT_EALREADY);
  ASSERT_ERR(weft_future_cancel(f), WEFT_EALREADY);
  ASSERT_EQ(atomic_load(&g_rec.calls), 5);
  weft_future_release(f);
}

TEST(callback_after_completion_runs_at_once) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_error(f, WEFT_EIO, NULL));
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)7));
  ASSERT_EQ(atomic_load(&g_rec.calls), 1); /* before on_done returned */
  ASSERT(pthread_equal(g_rec.thread, pthread_self()));
  ASSERT_EQ(g_rec.order[0], 7);
  ASSERT_EQ(g_rec.seen, WEFT_FUTURE_FAILED);
  weft_future_release(f);
}

TEST(callbacks_run_on_cancel) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)1));
  ASSERT_OK(weft_future_cancel(f));
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  ASSERT_EQ(g_rec.seen, WEFT_FUTURE_CANCELLED);
  ASSERT_OK(weft_future_cancel(f)); /* already cancelled: nothing runs */
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  weft_future_release(f);
}

static void *finish_after_delay(void *arg) {
  weft_future *f = arg;
  weft_sleep_until(weft_deadline_in_ms(30));
  ASSERT_OK(weft_future_set_result(f, "late", 5));
  return NULL;
}

TEST(callback_runs_on_finishing_thread) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)3));
  pthread_t t = spawn(finish_after_delay, f);
  ASSERT_OK(weft_future_wait(f, weft_deadline_in_ms(2000)));
  join(t);
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  ASSERT(pthread_equal(g_rec.thread, t));
  ASSERT(!pthread_equal(g_rec.thread, pthread_self()));
  weft_future_release(f);
}

/* A callback that uses f in every way it may while its finisher is in
 * mid-finish: any lock held here would deadlock (and time out). */
static _Atomic int g_inner;
static void cb_inner(weft_future *f, void *ud) {
  (void)f;
  (void)ud;
  atomic_fetch_add(&g_inner, 1);
}
static void noop_watch(weft__watch *w, weft_future *f) {
  (void)w;
  (void)f;
  ASSERT(0); /* never registered, so never run */
}
static void cb_uses_future(weft_future *f, void *ud) {
  (void)ud;
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  ASSERT(weft_future_done(f));
  ASSERT_OK(weft_future_wait(f, 0));
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
  ASSERT_EQ(len, 2);
  ASSERT_ERR(weft_future_cancel(f), WEFT_EALREADY);
  ASSERT_ERR(weft_future_set_result(f, "z", 1), WEFT_EALREADY);
  weft_future_retain(f);
  weft_future_release(f);
  /* Added during finishing: runs at once, nested. */
  int before = atomic_load(&g_inner);
  ASSERT_OK(weft_future_on_done(f, cb_inner, NULL));
  ASSERT_EQ(atomic_load(&g_inner), before + 1);
  weft__watch w = {.fn = noop_watch};
  ASSERT(!weft__future_watch(f, &w)); /* already final */
  weft__future_unwatch(f, &w);
  atomic_fetch_add(&g_rec.calls, 1);
}

TEST(callback_holds_no_lock) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_uses_future, NULL));
  ASSERT_OK(weft_future_on_done(f, cb_inner, NULL));
  ASSERT_OK(weft_future_set_result(f, "ok", 2));
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  ASSERT_EQ(atomic_load(&g_inner), 2); /* nested one, then the second callback */
  weft_future_release(f);
}

/* A callback that adds another callback while f is finishing. */
static void cb_chain(weft_future *f, void *ud) {
  cb_record(f, ud);
  if ((intptr_t)ud < 3) ASSERT_OK(weft_future_on_done(f, cb_chain, (void *)((intptr_t)ud + 1)));
}

TEST(callback_adds_callback) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_chain, (void *)(intptr_t)0));
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)10));
  ASSERT_OK(weft_future_set_result(f, NULL, 0));
  /* 0 runs and adds 1, which runs at once and adds 2 ..., then 10. */
  ASSERT_EQ(atomic_load(&g_rec.calls), 5);
  int want[] = {0, 1, 2, 3, 10};
  for (int i = 0; i < 5; i++) ASSERT_EQ(g_rec.order[i], want[i]);
  weft_future_release(f);
}

/* The first callback drops the only reference; f must stay valid for the
 * callbacks after it (ASan reports a use after free otherwise). */
static void cb_release(weft_future *f, void *ud) {
  (void)ud;
  weft_future_release(f);
  atomic_fetch_add(&g_rec.calls, 1);
}
static void cb_after_release(weft_future *f, void *ud) {
  (void)ud;
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_EQ(len, 100);
  ASSERT_EQ(((const char *)d)[99], 'q');
  atomic_fetch_add(&g_rec.calls, 1);
}

TEST(callback_releases_future) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_release, NULL));
  ASSERT_OK(weft_future_on_done(f, cb_after_release, NULL));
  char big[100];
  memset(big, 'q', sizeof big);
  ASSERT_OK(weft_future_set_result(f, big, sizeof big)); /* f freed at its end */
  ASSERT_EQ(atomic_load(&g_rec.calls), 2);
}

TEST(callback_releases_future_immediately) {
  weft_future *f = make();
  ASSERT_OK(weft_future_cancel(f));
  /* Runs at once and drops the caller's only reference. */
  ASSERT_OK(weft_future_on_done(f, cb_release, NULL));
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
}

/* Waiters are released before callbacks run: the callback waits for the
 * waiter thread to report that it woke. */
static _Atomic int g_woke;
static void *waiter_thread(void *arg) {
  ASSERT_OK(weft_future_wait(arg, weft_deadline_in_ms(2000)));
  atomic_store(&g_woke, 1);
  return NULL;
}
static void cb_needs_waiter_awake(weft_future *f, void *ud) {
  (void)f;
  (void)ud;
  await_flag(&g_woke);
  atomic_fetch_add(&g_rec.calls, 1);
}

TEST(waiters_released_before_callbacks) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_needs_waiter_awake, NULL));
  pthread_t t = spawn(waiter_thread, f);
  weft_sleep_until(weft_deadline_in_ms(30)); /* let it go to sleep */
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  join(t);
  weft_future_release(f);
}

TEST(callbacks_dropped_with_unfinished_future) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  weft_future_release(f); /* never finished: the nodes are freed, not run */
  ASSERT_EQ(atomic_load(&g_rec.calls), 0);
}

TEST(on_done_enomem) {
  weft_future *f = make();
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_future_on_done(f, cb_record, (void *)(intptr_t)1), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)2));
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_EQ(atomic_load(&g_rec.calls), 1); /* only the second one */
  ASSERT_EQ(g_rec.order[0], 2);
  /* A finished future needs no node: no allocation, no failure. */
  long before = weft__fault_alloc_count();
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)3));
  ASSERT_EQ(weft__fault_alloc_count(), before);
  ASSERT_EQ(atomic_load(&g_rec.calls), 2);
  weft_future_release(f);
}

/* ---------------------------------------------------- reference count */

/* A counting allocator: precise leak checks even without ASan. Each test
 * runs in its own process, so it can be installed before weft allocates. */

TEST(last_release_frees_everything) {
  weft_test_use_counting_allocator();
  weft_future *f = make();
  ASSERT_EQ(weft_test_live_allocs(), 1);
  char big[500] = {1};
  ASSERT_OK(weft_future_set_result(f, big, sizeof big));
  ASSERT_EQ(weft_test_live_allocs(), 2); /* future + heap result */
  weft_future_retain(f);
  weft_future_release(f);
  ASSERT_EQ(weft_test_live_allocs(), 2);
  weft_future_release(f);
  ASSERT_EQ(weft_test_live_allocs(), 0);

  f = make();
  ASSERT_OK(weft_future_set_error(f, WEFT_EIO, "message"));
  ASSERT_EQ(weft_test_live_allocs(), 2); /* future + message */
  weft_future_release(f);
  ASSERT_EQ(weft_test_live_allocs(), 0);

  f = make();
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  weft_future_release(f);
  ASSERT_EQ(weft_test_live_allocs(), 0);
  weft_future_release(NULL); /* no-op */
}

static void *finish_and_release(void *arg) {
  weft_future *f = arg;
  weft_sleep_until(weft_deadline_in_ms(20));
  ASSERT_OK(weft_future_set_result(f, "bye", 4));
  weft_future_release(f);
  return NULL;
}

TEST(future_outlives_creator) {
  weft_test_use_counting_allocator();
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  weft_future_retain(f); /* the thread's reference */
  pthread_t t = spawn(finish_and_release, f);
  weft_future_release(f); /* the creator lets go at once */
  join(t);
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

/* ---------------------------------------------------------- deadlines */

TEST(deadline_zero_and_past) {
  weft_future *f = make();
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_future_wait(f, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_future_wait(f, 1), WEFT_ETIMEDOUT); /* long past */
  ASSERT_ERR(weft_future_wait(f, weft_now_ns()), WEFT_ETIMEDOUT);
  ASSERT_LT(weft_now_ns() - t0, 500 * MS);
  ASSERT_OK(weft_future_set_result(f, NULL, 0));
  ASSERT_OK(weft_future_wait(f, 0));
  ASSERT_OK(weft_future_wait(f, 1));
  weft_future_release(f);
}

TEST(deadline_short) {
  weft_future *f = make();
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_future_result(f, t0 + 30 * MS, NULL, NULL), WEFT_ETIMEDOUT);
  int64_t el = weft_now_ns() - t0;
  ASSERT_GE(el, 30 * MS);
  ASSERT_LT(el, 1000 * MS);
  weft_future_release(f);
}

TEST(deadline_bad) {
  weft_future *f = make();
  ASSERT_ERR(weft_future_wait(f, -2), WEFT_EINVAL);
  ASSERT_ERR(weft_future_result(f, INT64_MIN, NULL, NULL), WEFT_EINVAL);
  ASSERT_OK(weft_future_set_result(f, NULL, 0));
  ASSERT_ERR(weft_future_wait(f, -5), WEFT_EINVAL); /* even when done */
  ASSERT_ERR(weft__block(&(_Atomic uint32_t){0}, 0, -2), WEFT_EINVAL);
  weft_future_release(f);
}

/* ------------------------------------------------- waiting across threads */

static void *wait_forever(void *arg) {
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(arg, WEFT_FOREVER, &d, &len));
  ASSERT_EQ(len, 5);
  ASSERT_STR_EQ(d, "late");
  return NULL;
}

TEST(many_waiters_wake) {
  weft_future *f = make();
  pthread_t w[4];
  for (int i = 0; i < 4; i++) w[i] = spawn(wait_forever, f);
  weft_sleep_until(weft_deadline_in_ms(20));
  pthread_t t = spawn(finish_after_delay, f);
  for (int i = 0; i < 4; i++) join(w[i]);
  join(t);
  weft_future_release(f);
}

static void *fail_after_delay(void *arg) {
  weft_sleep_until(weft_deadline_in_ms(30));
  ASSERT_OK(weft_future_set_error(arg, WEFT_EPIPE, "broken"));
  return NULL;
}

TEST(wait_sees_failure_from_thread) {
  weft_future *f = make();
  ASSERT_OK(weft_future_set_running(f));
  /* The clock starts before the thread: its 30 ms sleep cannot have begun
   * earlier, however late this thread runs again. */
  int64_t t0 = weft_now_ns();
  pthread_t t = spawn(fail_after_delay, f);
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(2000), NULL, NULL), WEFT_EPIPE);
  ASSERT_GE(weft_now_ns() - t0, 20 * MS);
  ASSERT_STR_EQ(weft_future_error_message(f), "broken");
  join(t);
  weft_future_release(f);
}

static void *cancel_after_delay(void *arg) {
  weft_sleep_until(weft_deadline_in_ms(30));
  ASSERT_OK(weft_future_cancel(arg));
  return NULL;
}

TEST(cancel_wakes_waiters) {
  weft_future *f = make();
  pthread_t t = spawn(cancel_after_delay, f);
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(2000), NULL, NULL), WEFT_ECANCELED);
  join(t);
  weft_future_release(f);
}

/* ------------------------------------------------------- helper hook */

typedef struct fake_helper {
  _Atomic int calls;
  _Atomic uint32_t *last_word;
  uint32_t last_expected;
  int64_t last_deadline;
} fake_helper;

/* Records the call, then sleeps as weft__block would without a helper. */
static int fake_block(void *ctx, _Atomic uint32_t *word, uint32_t expected, int64_t deadline) {
  fake_helper *h = ctx;
  atomic_fetch_add(&h->calls, 1);
  h->last_word = word;
  h->last_expected = expected;
  h->last_deadline = deadline;
  return weft__futex_wait(word, expected, deadline, 0);
}

typedef struct hook_run {
  weft_future *f;
  fake_helper h;
  int64_t deadline;
  int rc;
} hook_run;

static void *wait_with_helper(void *arg) {
  hook_run *r = arg;
  weft__current_helper.block = fake_block;
  weft__current_helper.ctx = &r->h;
  r->rc = weft_future_wait(r->f, r->deadline);
  weft__current_helper.block = NULL;
  return NULL;
}

TEST(block_uses_helper_hook) {
  hook_run r = {.f = make(), .deadline = weft_deadline_in_ms(2000)};
  pthread_t t = spawn(wait_with_helper, &r);
  pthread_t c = spawn(finish_after_delay, r.f);
  join(t);
  join(c);
  ASSERT_OK(r.rc);
  ASSERT_GE(atomic_load(&r.h.calls), 1);
  ASSERT_NOT_NULL(r.h.last_word);
  ASSERT_EQ(r.h.last_deadline, r.deadline);
  /* It slept on a pending or running word, with the sleepers bit. */
  ASSERT_LT(r.h.last_expected & 7u, WEFT_FUTURE_DONE);
  ASSERT_NE(r.h.last_expected & 8u, 0);
  weft_future_release(r.f);
}

TEST(block_helper_sees_timeout) {
  hook_run r = {.f = make()};
  r.deadline = weft_deadline_in_ms(20);
  pthread_t t = spawn(wait_with_helper, &r);
  join(t);
  ASSERT_ERR(r.rc, WEFT_ETIMEDOUT);
  ASSERT_GE(atomic_load(&r.h.calls), 1);
  ASSERT_EQ(r.h.last_deadline, r.deadline);
  weft_future_release(r.f);
}

/* The hook is per thread, and unset by default. */
TEST(block_without_helper) {
  ASSERT_NULL((void *)weft__current_helper.block);
  _Atomic uint32_t word = 5;
  ASSERT_ERR(weft__block(&word, 4, WEFT_FOREVER), -EAGAIN);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft__block(&word, 5, t0 + 10 * MS), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 10 * MS);
  fake_helper h = {0};
  weft__current_helper.block = fake_block;
  weft__current_helper.ctx = &h;
  ASSERT_ERR(weft__block(&word, 4, WEFT_FOREVER), -EAGAIN);
  ASSERT_EQ(atomic_load(&h.calls), 1);
  ASSERT_PTR_EQ((void *)h.last_word, (void *)&word);
  ASSERT_EQ(h.last_expected, 4);
  weft__current_helper.block = NULL;
}

/* ------------------------------------------ the executor's interface */

TEST(result_buf_inline_heap_and_replace) {
  weft_test_use_counting_allocator();
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_set_running(f));
  long live = weft_test_live_allocs();
  char *p = weft__future_result_buf(f, 16);
  ASSERT_NOT_NULL(p);
  ASSERT_EQ(weft_test_live_allocs(), live); /* inline: no allocation */
  memcpy(p, "sixteen bytes!!", 16);
  char *q = weft__future_result_buf(f, 4000); /* replaces it */
  ASSERT_NOT_NULL(q);
  ASSERT_EQ(weft_test_live_allocs(), live + 1);
  memset(q, 'h', 4000);
  char *r = weft__future_result_buf(f, 9000); /* grows the heap block */
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(weft_test_live_allocs(), live + 1);
  memset(r, 'g', 9000);
  char *s = weft__future_result_buf(f, 3); /* back to inline, heap freed */
  ASSERT_EQ(weft_test_live_allocs(), live);
  memcpy(s, "abc", 3);
  weft__future_finish_done(f);
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_EQ(len, 3);
  ASSERT(memcmp(d, "abc", 3) == 0);
  weft_future_release(f);
  weft__future_cache_flush(); /* the future's slab, if it has one */
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

TEST(finish_done_heap_result) {
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_set_running(f));
  unsigned char *p = weft__future_result_buf(f, 300);
  for (int i = 0; i < 300; i++) p[i] = (unsigned char)i;
  weft__future_finish_done(f);
  const unsigned char *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, (const void **)&d, &len));
  ASSERT_EQ(len, 300);
  for (int i = 0; i < 300; i++) ASSERT_EQ(d[i], (unsigned char)i);
  weft__future_finish_done(f); /* second finish: no-op */
  weft__future_finish_failed(f, WEFT_EIO, "late");
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  weft_future_release(f);
}

TEST(finish_done_without_result_is_empty) {
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_set_running(f));
  weft__future_finish_done(f);
  const void *d = NULL;
  size_t len = 5;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(len, 0);
  weft_future_release(f);
}

TEST(finish_failed_drops_result) {
  weft_test_use_counting_allocator();
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_NOT_NULL(weft__future_result_buf(f, 1000)); /* then the task fails */
  weft__future_finish_failed(f, WEFT_EWORKERDIED, "worker 3 died");
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_EWORKERDIED);
  ASSERT_STR_EQ(weft_future_error_message(f), "worker 3 died");
  ASSERT_EQ(weft_test_live_allocs(), 2); /* future (or its slab) + message; the result went */
  weft_future_release(f);
  weft__future_cache_flush();
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

TEST(finish_after_cancel_is_noop) {
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  ASSERT_OK(weft_future_cancel(f));
  weft__future_finish_done(f);
  weft__future_finish_failed(f, WEFT_EIO, NULL);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_CANCELLED);
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  weft_future_release(f);
}

TEST(finish_failed_without_memory_keeps_code) {
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  weft__fault_alloc_fail_nth(1); /* the message copy */
  weft__future_finish_failed(f, WEFT_EWORKERDIED, "a long story");
  weft__fault_alloc_fail_nth(0);
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_EWORKERDIED);
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  weft_future_release(f);
}

TEST(driven_future_set_result_is_misuse) {
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_ABORTS(weft_future_set_result(f, "x", 1), "weft_future_set_result");
  ASSERT_ABORTS(weft_future_set_error(f, WEFT_EIO, NULL), "weft_future_set_error");
  /* An executor may cancel and start its futures through the public calls. */
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_ERR(weft_future_cancel(f), WEFT_EBUSY);
  weft__future_finish_done(f);
  weft_future_release(f);
}

/* -------------------------------------------------------------- watches */

typedef struct wrec {
  weft__watch w;
  _Atomic int runs;
  _Atomic int cbs_before; /* g_rec.calls when the watch ran */
  weft_future *seen;
} wrec;

static void watch_fn(weft__watch *w, weft_future *f) {
  wrec *r = weft__container_of(w, wrec, w);
  r->seen = f;
  atomic_store(&r->cbs_before, atomic_load(&g_rec.calls));
  ASSERT(weft_future_done(f)); /* state is final before watches run */
  atomic_fetch_add(&r->runs, 1);
}

TEST(watch_runs_before_callbacks) {
  weft_future *f = make();
  wrec a = {.w = {.fn = watch_fn}}, b = {.w = {.fn = watch_fn}};
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  ASSERT(weft__future_watch(f, &a.w));
  ASSERT(weft__future_watch(f, &b.w));
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_EQ(atomic_load(&a.runs), 1);
  ASSERT_EQ(atomic_load(&b.runs), 1);
  ASSERT_PTR_EQ(a.seen, f);
  ASSERT_EQ(atomic_load(&a.cbs_before), 0);
  ASSERT_EQ(atomic_load(&b.cbs_before), 0);
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  /* After it ran, unwatch is a no-op. */
  weft__future_unwatch(f, &a.w);
  weft_future_release(f);
}

TEST(watch_on_finished_future) {
  weft_future *f = make();
  ASSERT_OK(weft_future_cancel(f));
  wrec a = {.w = {.fn = watch_fn}};
  ASSERT(!weft__future_watch(f, &a.w));
  weft__future_unwatch(f, &a.w); /* harmless */
  ASSERT_EQ(atomic_load(&a.runs), 0);
  weft_future_release(f);
}

TEST(unwatch_before_finish) {
  weft_future *f = make();
  wrec a = {.w = {.fn = watch_fn}}, b = {.w = {.fn = watch_fn}}, c = {.w = {.fn = watch_fn}};
  ASSERT(weft__future_watch(f, &a.w));
  ASSERT(weft__future_watch(f, &b.w));
  ASSERT(weft__future_watch(f, &c.w));
  weft__future_unwatch(f, &b.w);
  weft__future_unwatch(f, &b.w); /* twice: harmless */
  ASSERT_OK(weft_future_set_error(f, WEFT_EIO, NULL));
  ASSERT_EQ(atomic_load(&a.runs), 1);
  ASSERT_EQ(atomic_load(&b.runs), 0);
  ASSERT_EQ(atomic_load(&c.runs), 1);
  weft_future_release(f);
}

/* unwatch of a watch whose fn is running waits until it returned. */
typedef struct slow_watch {
  weft__watch w;
  _Atomic int entered, left;
} slow_watch;

static void slow_fn(weft__watch *w, weft_future *f) {
  (void)f;
  slow_watch *s = weft__container_of(w, slow_watch, w);
  atomic_store(&s->entered, 1);
  weft_sleep_until(weft_deadline_in_ms(100));
  atomic_store(&s->left, 1);
}

static void *finish_now(void *arg) {
  ASSERT_OK(weft_future_set_result(arg, "x", 1));
  return NULL;
}

TEST(unwatch_waits_for_running_fn) {
  weft_future *f = make();
  slow_watch s = {.w = {.fn = slow_fn}};
  ASSERT(weft__future_watch(f, &s.w));
  pthread_t t = spawn(finish_now, f);
  await_flag(&s.entered);
  weft__future_unwatch(f, &s.w);
  /* fn had entered and was still sleeping: unwatch returned only after it
   * left (no timing assertion: a loaded machine may run this thread late). */
  ASSERT_EQ(atomic_load(&s.left), 1);
  join(t);
  weft_future_release(f);
}

/* While one watch runs, unwatching another that has not run yet removes it
 * without waiting, and it never runs. */
static slow_watch g_slow;
static wrec g_later = {.w = {.fn = watch_fn}};

TEST(unwatch_pending_watch_while_another_runs) {
  weft_future *f = make();
  g_slow.w.fn = slow_fn;
  ASSERT(weft__future_watch(f, &g_slow.w));
  ASSERT(weft__future_watch(f, &g_later.w));
  pthread_t t = spawn(finish_now, f);
  await_flag(&g_slow.entered);
  weft__future_unwatch(f, &g_later.w);
  /* It returned while the other watch's fn is still running: no wait. */
  ASSERT_EQ(atomic_load(&g_slow.left), 0);
  join(t);
  ASSERT_EQ(atomic_load(&g_later.runs), 0);
  weft_future_release(f);
}

/* ----------------------------------------------------- allocation failure */

TEST(create_enomem) {
  weft_future *f = (weft_future *)(uintptr_t)1;
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_future_create(&f), WEFT_ENOMEM);
  ASSERT_PTR_EQ(f, (weft_future *)(uintptr_t)1);
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft__future_alloc(&f), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
}

TEST(set_result_large_enomem_fails_future) {
  weft_future *f = make();
  ASSERT_OK(weft_future_on_done(f, cb_record, NULL));
  char big[200] = {0};
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_future_set_result(f, big, sizeof big), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_FAILED);
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_ENOMEM);
  ASSERT_EQ(atomic_load(&g_rec.calls), 1); /* it still finished */
  weft_future_release(f);
}

TEST(set_result_small_needs_no_memory) {
  weft_future *f = make();
  long before = weft__fault_alloc_count();
  ASSERT_OK(weft_future_set_result(f, "0123456789012345678901234567890", 32));
  ASSERT_EQ(weft__fault_alloc_count(), before);
  weft_future_release(f);
}

TEST(set_error_message_enomem) {
  weft_future *f = make();
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_future_set_error(f, WEFT_EIO, "message"), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_ENOMEM);
  weft_future_release(f);
}

TEST(result_buf_enomem_keeps_earlier) {
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_set_running(f));
  memcpy(weft__future_result_buf(f, 5), "first", 5);
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__future_result_buf(f, 100000));
  weft__fault_alloc_fail_nth(0);
  weft__future_finish_done(f);
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_EQ(len, 5);
  ASSERT(memcmp(d, "first", 5) == 0);
  weft_future_release(f);
}

/* -------------------------------------------------------------- misuse */

TEST(misuse_aborts_naming_the_call) {
  weft_future *f = make();
  ASSERT_ABORTS(weft_future_state_get(NULL), "weft_future_state_get");
  ASSERT_ABORTS(weft_future_done(NULL), "weft_future_done");
  ASSERT_ABORTS(weft_future_wait(NULL, 0), "weft_future_wait");
  ASSERT_ABORTS(weft_future_cancel(NULL), "weft_future_cancel");
  ASSERT_ABORTS(weft_future_on_done(NULL, cb_record, NULL), "weft_future_on_done");
  ASSERT_ABORTS(weft_future_on_done(f, NULL, NULL), "weft_future_on_done");
  ASSERT_ABORTS(weft_future_create(NULL), "weft_future_create");
  ASSERT_ABORTS(weft_future_set_running(NULL), "weft_future_set_running");
  ASSERT_ABORTS(weft_future_set_result(NULL, "x", 1), "weft_future_set_result");
  ASSERT_ABORTS(weft_future_set_result(f, NULL, 3), "weft_future_set_result");
  ASSERT_ABORTS(weft_future_set_error(NULL, WEFT_EIO, NULL), "weft_future_set_error");
  ASSERT_ABORTS(weft_future_error_message(NULL), "weft_future_error_message");
  ASSERT_ABORTS(weft_future_retain(NULL), "weft_future_retain");
  ASSERT_ABORTS(weft_future_result(NULL, 0, NULL, NULL), "weft_future_result");
  weft_future_release(f);
}

/* ------------------------------------------------ executor future slabs */

/* Executor futures come from per-thread slabs with a cache of freed ones
 * (future.c); under AddressSanitizer each is its own block. These tests
 * hold in both modes. */

#define SLAB_TEST_N 3000 /* many slabs' worth, and more than a cache keeps */

static void finish_one(weft_future *f, size_t i) {
  ASSERT_OK(weft_future_set_running(f));
  if (i % 3 == 0) {
    memcpy(weft__future_result_buf(f, sizeof i), &i, sizeof i);
    weft__future_finish_done(f);
  } else if (i % 3 == 1) {
    char *p = weft__future_result_buf(f, 200); /* a heap result */
    ASSERT_NOT_NULL(p);
    memset(p, (int)(i & 0x7f), 200);
    weft__future_finish_done(f);
  } else {
    weft__future_finish_failed(f, WEFT_EIO, "slab test failure");
  }
}

static void check_fresh(weft_future *f) {
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_PENDING);
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  ASSERT_ERR(weft_future_wait(f, 0), WEFT_ETIMEDOUT);
}

static weft_future *g_slab_futs[SLAB_TEST_N];

static void *slab_alloc_all(void *arg) {
  (void)arg;
  for (size_t i = 0; i < SLAB_TEST_N; i++) {
    ASSERT_OK(weft__future_alloc(&g_slab_futs[i]));
    check_fresh(g_slab_futs[i]);
  }
  return NULL;
}

static void *slab_finish_release_all(void *arg) {
  (void)arg;
  for (size_t i = 0; i < SLAB_TEST_N; i++) {
    weft_future *f = g_slab_futs[i];
    finish_one(f, i);
    weft_future_release(f);
  }
  return NULL;
}

TEST(slab_futures_made_and_freed_on_other_threads_return_memory) {
  weft_test_use_counting_allocator();
  for (int round = 0; round < 3; round++) {
    join(spawn(slab_alloc_all, NULL));
    /* Every future is distinct and usable. */
    for (size_t i = 1; i < SLAB_TEST_N; i++) ASSERT(g_slab_futs[i] != g_slab_futs[i - 1]);
    join(spawn(slab_finish_release_all, NULL));
    /* Both threads are gone: their caches and unused slots went back. */
    ASSERT_EQ(weft_test_live_allocs(), 0);
  }
  /* Made, finished and freed on this thread, then flushed. */
  slab_alloc_all(NULL);
  slab_finish_release_all(NULL);
  weft__future_cache_flush();
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

TEST(slab_future_released_by_another_thread_is_reused_cleanly) {
  /* Made here, used and freed on another thread (so cached there, or
   * retired), then made here again, over and over. */
  for (int round = 0; round < 4; round++) {
    slab_alloc_all(NULL);
    join(spawn(slab_finish_release_all, NULL));
  }
  /* Made and freed here: the cache hands back used slots. */
  for (int round = 0; round < 3; round++) {
    slab_alloc_all(NULL);
    slab_finish_release_all(NULL);
  }
  weft__future_cache_flush();
  slab_alloc_all(NULL); /* after a flush: fresh slabs */
  slab_finish_release_all(NULL);
  /* A reused slot behaves like a new future in every respect. */
  weft_future *f = NULL;
  ASSERT_OK(weft__future_alloc_shared(&f));
  check_fresh(f);
  g_rec.calls = 0;
  ASSERT_OK(weft_future_on_done(f, cb_record, (void *)(intptr_t)7));
  ASSERT_OK(weft_future_set_running(f));
  memcpy(weft__future_result_buf(f, 3), "abc", 3);
  weft__future_finish_done(f);
  ASSERT_EQ(atomic_load(&g_rec.calls), 1);
  weft_future_release(f); /* the executor's reference */
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_EQ(len, 3);
  ASSERT(memcmp(d, "abc", 3) == 0);
  weft_future_release(f);
}

TEST(slab_alloc_fails_cleanly_when_a_new_slab_is_out_of_memory) {
  /* Hold more futures than a slab has, so that the cache is empty and the
   * current slab used up at some point: from then on the nth allocation
   * fails exactly when it needs memory. */
  enum { HOLD = 600 };
  static weft_future *held[HOLD];
  int failed = 0;
  for (int i = 0; i < HOLD; i++) {
    weft_future *f = (weft_future *)(uintptr_t)1;
    weft__fault_alloc_fail_nth(1);
    int r = weft__future_alloc(&f);
    weft__fault_alloc_fail_nth(0);
    if (r) {
      ASSERT_ERR(r, WEFT_ENOMEM);
      ASSERT_PTR_EQ(f, (weft_future *)(uintptr_t)1);
      failed++;
      ASSERT_OK(weft__future_alloc(&f)); /* memory again: it works */
    }
    check_fresh(f);
    held[i] = f;
  }
  ASSERT_GT(failed, 0);
  for (int i = 0; i < HOLD; i++) {
    ASSERT_OK(weft_future_set_running(held[i]));
    weft__future_finish_done(held[i]);
    weft_future_release(held[i]);
  }
  /* The same with the two-reference variant. */
  for (int i = 0; i < HOLD; i++) ASSERT_OK(weft__future_alloc_shared(&held[i]));
  weft_future *f = (weft_future *)(uintptr_t)1;
  weft__fault_alloc_fail_nth(1);
  int r = weft__future_alloc_shared(&f);
  weft__fault_alloc_fail_nth(0);
  if (r) {
    ASSERT_ERR(r, WEFT_ENOMEM);
    ASSERT_PTR_EQ(f, (weft_future *)(uintptr_t)1);
  } else {
    weft_future_release(f);
    weft_future_release(f);
  }
  for (int i = 0; i < HOLD; i++) {
    weft_future_release(held[i]);
    weft_future_release(held[i]);
  }
}

TEST(slab_cache_survives_fork_in_child_and_parent) {
  /* Fill this thread's cache (and its spill path), then fork. */
  slab_alloc_all(NULL);
  slab_finish_release_all(NULL);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    /* The child uses the cache it inherited, carves and frees more. */
    for (int round = 0; round < 2; round++) {
      slab_alloc_all(NULL);
      slab_finish_release_all(NULL);
    }
    _exit(0);
  }
  /* The parent's cache is its own, untouched by the child. */
  for (int round = 0; round < 2; round++) {
    slab_alloc_all(NULL);
    slab_finish_release_all(NULL);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}
