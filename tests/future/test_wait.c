/*
 * Tests for weft_wait (src/future/wait.c): the three modes, with futures
 * finished before the call and by other threads during it, timeouts and
 * deadline 0, *n_done, duplicates, failure versus cancellation in
 * FIRST_EXCEPTION, more futures than fit on the stack, the fallback when
 * the watches cannot be allocated, that no watch outlives the call, the
 * helper hook, bad arguments and misuse.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "common/alloc.h"
#include "common/futex.h"
#include "future/future_impl.h"
#include "weft_test.h"

#define MS 1000000LL
#define MAXF 256

static weft_future *fs[MAXF];

static void make_n(size_t n) {
  for (size_t i = 0; i < n; i++) ASSERT_OK(weft_future_create(&fs[i]));
}
static void release_n(size_t n) {
  for (size_t i = 0; i < n; i++) weft_future_release(fs[i]);
}

/* A thread that finishes fs[idx[k]] one after the other, delay_ms apart,
 * each as done, failed (fail set) or cancelled (cancel set). */
typedef struct plan {
  size_t idx[MAXF];
  size_t n;
  int delay_ms;
  bool fail, cancel;
} plan;

static void *run_plan(void *arg) {
  plan *p = arg;
  for (size_t k = 0; k < p->n; k++) {
    weft_sleep_until(weft_deadline_in_ms(p->delay_ms));
    weft_future *f = fs[p->idx[k]];
    if (p->cancel)
      ASSERT_OK(weft_future_cancel(f));
    else if (p->fail)
      ASSERT_OK(weft_future_set_error(f, WEFT_EIO, NULL)); /* no allocation */
    else
      ASSERT_OK(weft_future_set_result(f, &k, sizeof k));
  }
  return NULL;
}

static pthread_t start(plan *p) {
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, run_plan, p), 0);
  return t;
}

static void join(pthread_t t) { ASSERT_EQ(pthread_join(t, NULL), 0); }

TEST(empty_set_returns_at_once) {
  size_t nd = 99;
  ASSERT_OK(weft_wait(NULL, 0, WEFT_FIRST_COMPLETED, WEFT_FOREVER, &nd));
  ASSERT_EQ(nd, 0);
  ASSERT_OK(weft_wait(NULL, 0, WEFT_FIRST_EXCEPTION, WEFT_FOREVER, &nd));
  ASSERT_OK(weft_wait(NULL, 0, WEFT_ALL_COMPLETED, 0, &nd));
  ASSERT_EQ(nd, 0);
}

TEST(already_finished) {
  make_n(3);
  ASSERT_OK(weft_future_set_result(fs[0], "a", 1));
  ASSERT_OK(weft_future_cancel(fs[1]));
  ASSERT_OK(weft_future_set_error(fs[2], WEFT_EIO, NULL));
  size_t nd = 0;
  for (int mode = WEFT_FIRST_COMPLETED; mode <= WEFT_ALL_COMPLETED; mode++) {
    nd = 0;
    ASSERT_OK(weft_wait(fs, 3, (weft_wait_mode)mode, 0, &nd));
    ASSERT_EQ(nd, 3);
  }
  ASSERT_OK(weft_wait(fs, 3, WEFT_ALL_COMPLETED, WEFT_FOREVER, NULL)); /* n_done NULL */
  release_n(3);
}

TEST(first_completed_one_already_done) {
  make_n(4);
  ASSERT_OK(weft_future_set_result(fs[2], NULL, 0));
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, 4, WEFT_FIRST_COMPLETED, WEFT_FOREVER, &nd));
  ASSERT_EQ(nd, 1);
  ASSERT(weft_future_done(fs[2]));
  ASSERT(!weft_future_done(fs[0]));
  release_n(4);
}

TEST(deadline_zero) {
  make_n(3);
  size_t nd = 99;
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_wait(fs, 3, WEFT_FIRST_COMPLETED, 0, &nd), WEFT_ETIMEDOUT);
  ASSERT_EQ(nd, 0);
  ASSERT_OK(weft_future_set_result(fs[1], NULL, 0));
  ASSERT_ERR(weft_wait(fs, 3, WEFT_ALL_COMPLETED, 0, &nd), WEFT_ETIMEDOUT);
  ASSERT_EQ(nd, 1);
  ASSERT_ERR(weft_wait(fs, 3, WEFT_FIRST_EXCEPTION, 0, &nd), WEFT_ETIMEDOUT);
  ASSERT_EQ(nd, 1);
  ASSERT_LT(weft_now_ns() - t0, 200 * MS);
  release_n(3);
}

TEST(first_completed_times_out) {
  make_n(5);
  size_t nd = 99;
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_wait(fs, 5, WEFT_FIRST_COMPLETED, t0 + 30 * MS, &nd), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  ASSERT_EQ(nd, 0);
  release_n(5);
}

TEST(first_completed_wakes_on_completion) {
  make_n(5);
  plan p = {.idx = {3}, .n = 1, .delay_ms = 30};
  int64_t t0 = weft_now_ns(); /* before the thread: its 30 ms cannot start earlier */
  pthread_t t = start(&p);
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, 5, WEFT_FIRST_COMPLETED, weft_deadline_in_ms(2000), &nd));
  ASSERT_GE(weft_now_ns() - t0, 20 * MS);
  ASSERT_EQ(nd, 1);
  ASSERT(weft_future_done(fs[3]));
  join(t);
  release_n(5);
}

TEST(all_completed_waits_for_all) {
  make_n(6);
  plan p = {.idx = {5, 0, 3, 1, 4, 2}, .n = 6, .delay_ms = 5};
  pthread_t t = start(&p);
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, 6, WEFT_ALL_COMPLETED, weft_deadline_in_ms(2000), &nd));
  ASSERT_EQ(nd, 6);
  for (int i = 0; i < 6; i++) ASSERT(weft_future_done(fs[i]));
  join(t);
  release_n(6);
}

TEST(all_completed_times_out_with_count) {
  make_n(4);
  plan p = {.idx = {2, 0}, .n = 2, .delay_ms = 5};
  pthread_t t = start(&p);
  size_t nd = 0;
  ASSERT_ERR(weft_wait(fs, 4, WEFT_ALL_COMPLETED, weft_deadline_in_ms(150), &nd),
             WEFT_ETIMEDOUT);
  ASSERT_EQ(nd, 2);
  join(t);
  release_n(4);
}

TEST(first_exception_on_failure) {
  make_n(4);
  plan p = {.idx = {1}, .n = 1, .delay_ms = 20, .fail = true};
  pthread_t t = start(&p);
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, 4, WEFT_FIRST_EXCEPTION, weft_deadline_in_ms(2000), &nd));
  ASSERT_EQ(nd, 1);
  ASSERT_EQ(weft_future_state_get(fs[1]), WEFT_FUTURE_FAILED);
  join(t);
  release_n(4);
}

TEST(first_exception_already_failed) {
  make_n(3);
  ASSERT_OK(weft_future_set_error(fs[2], WEFT_EIO, NULL));
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, 3, WEFT_FIRST_EXCEPTION, WEFT_FOREVER, &nd));
  ASSERT_EQ(nd, 1);
  release_n(3);
}

/* Cancelled and done are not exceptions: FIRST_EXCEPTION waits on. */
TEST(first_exception_ignores_cancel_and_done) {
  make_n(3);
  plan p = {.idx = {0}, .n = 1, .delay_ms = 5, .cancel = true};
  pthread_t t = start(&p);
  ASSERT_OK(weft_future_set_result(fs[1], NULL, 0));
  size_t nd = 0;
  ASSERT_ERR(weft_wait(fs, 3, WEFT_FIRST_EXCEPTION, weft_deadline_in_ms(80), &nd),
             WEFT_ETIMEDOUT);
  ASSERT_EQ(nd, 2);
  join(t);
  /* ... and when all finish without a failure, it returns. */
  plan q = {.idx = {2}, .n = 1, .delay_ms = 10};
  t = start(&q);
  ASSERT_OK(weft_wait(fs, 3, WEFT_FIRST_EXCEPTION, weft_deadline_in_ms(2000), &nd));
  ASSERT_EQ(nd, 3);
  join(t);
  release_n(3);
}

TEST(duplicates) {
  make_n(2);
  weft_future *dup[4] = {fs[0], fs[1], fs[0], fs[0]};
  plan p = {.idx = {0, 1}, .n = 2, .delay_ms = 10};
  pthread_t t = start(&p);
  size_t nd = 0;
  ASSERT_OK(weft_wait(dup, 4, WEFT_FIRST_COMPLETED, weft_deadline_in_ms(2000), &nd));
  ASSERT_GE(nd, 3); /* fs[0] finished: three entries done */
  ASSERT_OK(weft_wait(dup, 4, WEFT_ALL_COMPLETED, weft_deadline_in_ms(2000), &nd));
  ASSERT_EQ(nd, 4);
  join(t);
  release_n(2);
}

/* More futures than fit on the stack: the watches are allocated. */
TEST(many_futures) {
  make_n(MAXF);
  plan p = {.n = MAXF, .delay_ms = 0};
  for (size_t i = 0; i < MAXF; i++) p.idx[i] = MAXF - 1 - i;
  size_t nd = 0;
  pthread_t t = start(&p);
  ASSERT_OK(weft_wait(fs, MAXF, WEFT_FIRST_COMPLETED, weft_deadline_in_ms(2000), &nd));
  ASSERT_GE(nd, 1);
  ASSERT_OK(weft_wait(fs, MAXF, WEFT_ALL_COMPLETED, weft_deadline_in_ms(2000), &nd));
  ASSERT_EQ(nd, MAXF);
  join(t);
  release_n(MAXF);
}

/* The watch array for > 16 futures cannot be allocated: weft_wait still
 * works (the contract has no WEFT_ENOMEM). */
TEST(no_memory_for_watches) {
  make_n(40);
  for (int mode = WEFT_FIRST_COMPLETED; mode <= WEFT_ALL_COMPLETED; mode++) {
    size_t nd = 0;
    weft__fault_alloc_fail_nth(1);
    ASSERT_ERR(weft_wait(fs, 40, (weft_wait_mode)mode, weft_deadline_in_ms(20), &nd),
               WEFT_ETIMEDOUT);
    weft__fault_alloc_fail_nth(0);
    ASSERT_EQ(nd, 0);
  }
  plan p = {.idx = {7}, .n = 1, .delay_ms = 20, .fail = true};
  pthread_t t = start(&p);
  size_t nd = 0;
  weft__fault_alloc_fail_nth(1);
  ASSERT_OK(weft_wait(fs, 40, WEFT_FIRST_EXCEPTION, weft_deadline_in_ms(2000), &nd));
  weft__fault_alloc_fail_nth(0);
  ASSERT_EQ(nd, 1);
  join(t);
  plan q = {.n = 39, .delay_ms = 0};
  for (size_t i = 0, k = 0; i < 40; i++)
    if (i != 7) q.idx[k++] = i;
  t = start(&q);
  weft__fault_alloc_fail_nth(1);
  ASSERT_OK(weft_wait(fs, 40, WEFT_ALL_COMPLETED, weft_deadline_in_ms(2000), &nd));
  weft__fault_alloc_fail_nth(0);
  ASSERT_EQ(nd, 40);
  join(t);
  release_n(40);
}

/* The first watch of a pending future allocates: when the 5th of 8 cannot,
 * weft_wait removes the 4 it added and polls instead, with the same
 * result. */
TEST(no_memory_for_one_watch) {
  make_n(8);
  plan p = {.idx = {6}, .n = 1, .delay_ms = 30};
  pthread_t t = start(&p);
  size_t nd = 0;
  weft__fault_alloc_fail_nth(5);
  ASSERT_OK(weft_wait(fs, 8, WEFT_FIRST_COMPLETED, weft_deadline_in_ms(5000), &nd));
  weft__fault_alloc_fail_nth(0);
  ASSERT_EQ(nd, 1);
  ASSERT_EQ(weft_future_state_get(fs[6]), WEFT_FUTURE_DONE);
  join(t);
  release_n(8); /* a watch left behind would trip an assertion here */
}

/* ALL_COMPLETED waits on each future's own word: it allocates nothing. */
TEST(all_completed_allocates_nothing) {
  weft_test_use_counting_allocator();
  make_n(40);
  plan q = {.n = 40, .delay_ms = 10};
  for (size_t i = 0; i < 40; i++) q.idx[i] = 39 - i;
  pthread_t t = start(&q);
  long before = weft_test_allocs();
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, 40, WEFT_ALL_COMPLETED, weft_deadline_in_ms(5000), &nd));
  ASSERT_EQ(nd, 40);
  ASSERT_EQ(weft_test_allocs(), before);
  join(t);
  release_n(40);
}

/* No watch may outlive the call: a future freed while still watched trips
 * an assertion, and one finished later would write to a dead stack frame. */
TEST(watches_removed_on_return) {
  make_n(20);
  size_t nd;
  ASSERT_ERR(weft_wait(fs, 3, WEFT_FIRST_COMPLETED, weft_deadline_in_ms(10), &nd),
             WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_wait(fs, 20, WEFT_FIRST_EXCEPTION, weft_deadline_in_ms(10), &nd),
             WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_wait(fs, 20, WEFT_ALL_COMPLETED, weft_deadline_in_ms(10), &nd),
             WEFT_ETIMEDOUT);
  ASSERT_OK(weft_future_set_result(fs[0], NULL, 0));
  ASSERT_OK(weft_wait(fs, 20, WEFT_FIRST_COMPLETED, WEFT_FOREVER, &nd));
  release_n(20); /* unfinished ones are freed with an empty watch list */
}

/* The same through the watch list of a future that finishes after the
 * call: its watches must be gone (ASan: stack-use-after-return otherwise). */
static atomic_int finish_go;
static void *slow_finish_all(void *arg) {
  (void)arg;
  /* Only once the wait below has returned, however late threads run. */
  while (!atomic_load(&finish_go)) weft_sleep_until(weft_deadline_in_ms(1));
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_future_set_result(fs[i], NULL, 0));
  return NULL;
}
/* FIRST_EXCEPTION: a mode that watches (ALL_COMPLETED waits on each
 * future's own word and leaves nothing behind to test). */
static int __attribute__((noinline)) wait_briefly(void) {
  return weft_wait(fs, 4, WEFT_FIRST_EXCEPTION, weft_deadline_in_ms(5), NULL);
}
TEST(late_completion_after_timeout) {
  make_n(4);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, slow_finish_all, NULL), 0);
  ASSERT_ERR(wait_briefly(), WEFT_ETIMEDOUT);
  char scribble[4096];
  memset(scribble, 0x5a, sizeof scribble); /* reuse the dead frame */
  __asm__ __volatile__("" ::"r"(scribble) : "memory");
  atomic_store(&finish_go, 1);
  join(t);
  for (int i = 0; i < 4; i++) ASSERT(weft_future_done(fs[i]));
  release_n(4);
}

typedef struct fake_helper {
  _Atomic int calls;
  int64_t deadline;
} fake_helper;

static int fake_block(void *ctx, _Atomic uint32_t *word, uint32_t expected, int64_t deadline) {
  fake_helper *h = ctx;
  atomic_fetch_add(&h->calls, 1);
  h->deadline = deadline;
  return weft__futex_wait(word, expected, deadline, 0);
}

TEST(uses_helper_hook) {
  make_n(3);
  fake_helper h = {0};
  weft__current_helper.block = fake_block;
  weft__current_helper.ctx = &h;
  plan p = {.idx = {0, 1, 2}, .n = 3, .delay_ms = 10};
  pthread_t t = start(&p);
  int64_t dl = weft_deadline_in_ms(2000);
  size_t nd;
  ASSERT_OK(weft_wait(fs, 3, WEFT_ALL_COMPLETED, dl, &nd));
  weft__current_helper.block = NULL;
  ASSERT_EQ(nd, 3);
  ASSERT_GE(atomic_load(&h.calls), 1);
  ASSERT_EQ(h.deadline, dl);
  join(t);
  release_n(3);
}

TEST(bad_arguments) {
  make_n(2);
  size_t nd = 77;
  ASSERT_ERR(weft_wait(fs, 2, (weft_wait_mode)0, 0, &nd), WEFT_EINVAL);
  ASSERT_ERR(weft_wait(fs, 2, (weft_wait_mode)4, 0, &nd), WEFT_EINVAL);
  ASSERT_ERR(weft_wait(fs, 2, WEFT_ALL_COMPLETED, -2, &nd), WEFT_EINVAL);
  ASSERT_ERR(weft_wait(NULL, 0, WEFT_ALL_COMPLETED, INT64_MIN, &nd), WEFT_EINVAL);
  ASSERT_EQ(nd, 77); /* an error changes nothing */
  release_n(2);
}

TEST(misuse) {
  make_n(2);
  weft_future *with_null[3] = {fs[0], NULL, fs[1]};
  ASSERT_ABORTS(weft_wait(with_null, 3, WEFT_ALL_COMPLETED, 0, NULL), "weft_wait");
  ASSERT_ABORTS(weft_wait(NULL, 2, WEFT_ALL_COMPLETED, 0, NULL), "weft_wait");
  release_n(2);
}
