/*
 * Tests for the as_completed iterator (src/future/wait.c): already
 * finished futures first in input order, then completion order; WEFT_EEMPTY
 * at the end; duplicates yielded once; timeouts and deadline 0; the
 * references it holds (dropped at yield and at destroy, checked with a
 * counting allocator); cancelled and failed futures; the helper hook;
 * allocation failure; misuse.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "common/alloc.h"
#include "common/futex.h"
#include "future/future_impl.h"
#include "weft_test.h"

#define MS 1000000LL
#define MAXF 64

static weft_future *fs[MAXF];

static void make_n(size_t n) {
  for (size_t i = 0; i < n; i++) ASSERT_OK(weft_future_create(&fs[i]));
}
static void release_n(size_t n) {
  for (size_t i = 0; i < n; i++) weft_future_release(fs[i]);
}

static weft_as_completed *iter(weft_future *const *v, size_t n) {
  weft_as_completed *it = NULL;
  ASSERT_OK(weft_as_completed_create(&it, v, n));
  ASSERT_NOT_NULL(it);
  return it;
}

/* Index of f in fs, or -1. */
static int idx_of(weft_future *f) {
  for (int i = 0; i < MAXF; i++)
    if (fs[i] == f) return i;
  return -1;
}

static int next_idx(weft_as_completed *it, int64_t deadline) {
  weft_future *f = NULL;
  ASSERT_OK(weft_as_completed_next(it, deadline, &f));
  ASSERT_NOT_NULL(f);
  ASSERT(weft_future_done(f));
  return idx_of(f);
}

/* A thread that finishes fs[idx[k]] in order, delay_ms apart. */
typedef struct plan {
  int idx[MAXF];
  int n;
  int delay_ms;
} plan;

static void *run_plan(void *arg) {
  plan *p = arg;
  for (int k = 0; k < p->n; k++) {
    weft_sleep_until(weft_deadline_in_ms(p->delay_ms));
    ASSERT_OK(weft_future_set_result(fs[p->idx[k]], &k, sizeof k));
  }
  return NULL;
}

static pthread_t start(plan *p) {
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, run_plan, p), 0);
  return t;
}

static void join(pthread_t t) { ASSERT_EQ(pthread_join(t, NULL), 0); }

TEST(empty) {
  weft_as_completed *it = iter(NULL, 0);
  weft_future *f = (weft_future *)(uintptr_t)1;
  ASSERT_ERR(weft_as_completed_next(it, WEFT_FOREVER, &f), WEFT_EEMPTY);
  ASSERT_PTR_EQ(f, (weft_future *)(uintptr_t)1);
  weft_as_completed_destroy(it);
  weft_as_completed_destroy(NULL);
}

TEST(finished_first_in_input_order) {
  make_n(6);
  ASSERT_OK(weft_future_set_result(fs[4], NULL, 0));
  ASSERT_OK(weft_future_cancel(fs[1]));
  ASSERT_OK(weft_future_set_error(fs[3], WEFT_EIO, NULL));
  weft_as_completed *it = iter(fs, 6);
  /* Finish the rest in the order 5, 0, 2, after the iterator exists. */
  ASSERT_OK(weft_future_set_result(fs[5], NULL, 0));
  ASSERT_OK(weft_future_set_result(fs[0], NULL, 0));
  ASSERT_OK(weft_future_set_result(fs[2], NULL, 0));
  int want[] = {1, 3, 4, 5, 0, 2};
  for (int k = 0; k < 6; k++) ASSERT_EQ(next_idx(it, 0), want[k]);
  weft_future *f;
  ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_EEMPTY);
  ASSERT_ERR(weft_as_completed_next(it, WEFT_FOREVER, &f), WEFT_EEMPTY); /* stays empty */
  weft_as_completed_destroy(it);
  release_n(6);
}

TEST(completion_order_from_thread) {
  make_n(5);
  weft_as_completed *it = iter(fs, 5);
  plan p = {.idx = {3, 1, 4, 0, 2}, .n = 5, .delay_ms = 10};
  pthread_t t = start(&p);
  for (int k = 0; k < 5; k++) ASSERT_EQ(next_idx(it, weft_deadline_in_ms(2000)), p.idx[k]);
  weft_future *f;
  ASSERT_ERR(weft_as_completed_next(it, WEFT_FOREVER, &f), WEFT_EEMPTY);
  join(t);
  weft_as_completed_destroy(it);
  release_n(5);
}

/* Completions that pile up while nobody calls next come out in the order
 * they happened (the watch fns push newest first; next reverses). */
TEST(completion_order_batched) {
  make_n(40);
  weft_as_completed *it = iter(fs, 40);
  int order[40];
  for (int k = 0; k < 40; k++) order[k] = (k * 17) % 40;
  for (int k = 0; k < 40; k++) ASSERT_OK(weft_future_set_result(fs[order[k]], NULL, 0));
  for (int k = 0; k < 40; k++) ASSERT_EQ(next_idx(it, 0), order[k]);
  weft_as_completed_destroy(it);
  release_n(40);
}

TEST(duplicates_yielded_once) {
  make_n(3);
  weft_future *v[7] = {fs[2], fs[0], fs[2], fs[2], fs[1], fs[0], fs[2]};
  ASSERT_OK(weft_future_set_result(fs[0], NULL, 0));
  ASSERT_OK(weft_future_set_result(fs[2], NULL, 0));
  weft_as_completed *it = iter(v, 7);
  ASSERT_EQ(next_idx(it, 0), 2); /* input order of first occurrences */
  ASSERT_EQ(next_idx(it, 0), 0);
  weft_future *f;
  ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_future_cancel(fs[1]));
  ASSERT_EQ(next_idx(it, 0), 1);
  ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_EEMPTY);
  weft_as_completed_destroy(it);
  release_n(3);
}

TEST(timeouts) {
  make_n(2);
  weft_as_completed *it = iter(fs, 2);
  weft_future *f = NULL;
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_as_completed_next(it, 1, &f), WEFT_ETIMEDOUT); /* long past */
  ASSERT_LT(weft_now_ns() - t0, 200 * MS);
  t0 = weft_now_ns();
  ASSERT_ERR(weft_as_completed_next(it, t0 + 30 * MS, &f), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  ASSERT_NULL(f);
  /* A timeout loses nothing: a later completion still comes out. */
  plan p = {.idx = {1, 0}, .n = 2, .delay_ms = 10};
  pthread_t t = start(&p);
  ASSERT_EQ(next_idx(it, weft_deadline_in_ms(2000)), 1);
  ASSERT_EQ(next_idx(it, weft_deadline_in_ms(2000)), 0);
  join(t);
  weft_as_completed_destroy(it);
  release_n(2);
}

TEST(bad_deadline) {
  make_n(1);
  weft_as_completed *it = iter(fs, 1);
  weft_future *f = NULL;
  ASSERT_ERR(weft_as_completed_next(it, -2, &f), WEFT_EINVAL);
  ASSERT_OK(weft_future_set_result(fs[0], NULL, 0));
  ASSERT_ERR(weft_as_completed_next(it, INT64_MIN, &f), WEFT_EINVAL);
  ASSERT_NULL(f);
  ASSERT_EQ(next_idx(it, 0), 0);
  weft_as_completed_destroy(it);
  release_n(1);
}

/* ------------------------------------------------------------ references */


/* The iterator keeps each future alive until it yields it. */
TEST(holds_reference_until_yield) {
  weft_test_use_counting_allocator();
  make_n(3);
  weft_as_completed *it = iter(fs, 3);
  /* 3 futures, each with the block that holds its watches, and the
   * iterator. */
  ASSERT_EQ(weft_test_live_allocs(), 7);
  release_n(3); /* the caller lets go; the iterator still holds them */
  ASSERT_EQ(weft_test_live_allocs(), 7);
  ASSERT_OK(weft_future_set_result(fs[1], NULL, 0));
  weft_future *f;
  weft_future_retain(fs[1]); /* next() lends from the caller's reference */
  ASSERT_OK(weft_as_completed_next(it, 0, &f));
  ASSERT_PTR_EQ(f, fs[1]);
  ASSERT_EQ(weft_test_live_allocs(), 7);
  weft_future_release(f); /* the caller's was the last */
  ASSERT_EQ(weft_test_live_allocs(), 5);
  /* destroy before exhaustion drops the others. */
  weft_as_completed_destroy(it);
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

TEST(destroy_drops_references_once) {
  weft_test_use_counting_allocator();
  make_n(4);
  weft_future *v[6] = {fs[0], fs[1], fs[1], fs[2], fs[3], fs[0]};
  ASSERT_OK(weft_future_set_result(fs[2], NULL, 0));
  weft_as_completed *it = iter(v, 6);
  ASSERT_EQ(next_idx(it, 0), 2);
  ASSERT_OK(weft_future_set_result(fs[3], NULL, 0)); /* finished, never yielded */
  weft_as_completed_destroy(it);
  /* Each future still lives on the caller's reference, and only on it
   * (fs[0], fs[1] and fs[3] were watched: each keeps its watch block). */
  ASSERT_EQ(weft_test_live_allocs(), 7);
  release_n(4);
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

/* Futures finishing after destroy touch nothing of the iterator. */
TEST(finish_after_destroy) {
  make_n(8);
  weft_as_completed *it = iter(fs, 8);
  ASSERT_OK(weft_future_set_result(fs[0], NULL, 0));
  ASSERT_EQ(next_idx(it, 0), 0);
  weft_as_completed_destroy(it);
  for (int i = 1; i < 8; i++) ASSERT_OK(weft_future_set_result(fs[i], NULL, 0));
  release_n(8);
}

TEST(create_enomem_takes_nothing) {
  weft_test_use_counting_allocator();
  make_n(5);
  weft_as_completed *it = (weft_as_completed *)(uintptr_t)1;
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_as_completed_create(&it, fs, 5), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
  ASSERT_PTR_EQ(it, (weft_as_completed *)(uintptr_t)1);
  release_n(5); /* would leak if create had taken references */
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

/* The first watch of a pending future allocates: when that fails, create
 * fails and gives back every reference and watch it had taken. */
TEST(create_enomem_on_watch_takes_nothing) {
  weft_test_use_counting_allocator();
  make_n(5);
  ASSERT_OK(weft_future_set_result(fs[0], NULL, 0));
  weft_as_completed *it = (weft_as_completed *)(uintptr_t)1;
  weft__fault_alloc_fail_nth(3); /* the iterator, fs[1]'s watch block, then fs[2]'s */
  ASSERT_ERR(weft_as_completed_create(&it, fs, 5), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
  ASSERT_PTR_EQ(it, (weft_as_completed *)(uintptr_t)1);
  /* fs[1] keeps its (empty) watch block until it is freed. */
  ASSERT_OK(weft_future_set_result(fs[1], NULL, 0));
  release_n(5);
  ASSERT_EQ(weft_test_live_allocs(), 0);
}

TEST(yields_all_outcomes) {
  make_n(3);
  weft_as_completed *it = iter(fs, 3);
  ASSERT_OK(weft_future_set_error(fs[0], WEFT_EIO, "x"));
  ASSERT_OK(weft_future_cancel(fs[1]));
  ASSERT_OK(weft_future_set_result(fs[2], "r", 1));
  weft_future *f;
  ASSERT_OK(weft_as_completed_next(it, 0, &f));
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_EIO);
  ASSERT_OK(weft_as_completed_next(it, 0, &f));
  ASSERT_ERR(weft_future_result(f, 0, NULL, NULL), WEFT_ECANCELED);
  ASSERT_OK(weft_as_completed_next(it, 0, &f));
  ASSERT_OK(weft_future_result(f, 0, NULL, NULL));
  weft_as_completed_destroy(it);
  release_n(3);
}

/* Many futures finished by several threads: each yielded exactly once. */
typedef struct span {
  int from, to;
} span;
static void *finish_span(void *arg) {
  span *s = arg;
  for (int i = s->from; i < s->to; i++) ASSERT_OK(weft_future_set_result(fs[i], &i, sizeof i));
  return NULL;
}

TEST(many_threads_each_once) {
  make_n(MAXF);
  weft_as_completed *it = iter(fs, MAXF);
  span sp[4];
  pthread_t t[4];
  for (int k = 0; k < 4; k++) {
    sp[k] = (span){k * MAXF / 4, (k + 1) * MAXF / 4};
    ASSERT_EQ(pthread_create(&t[k], NULL, finish_span, &sp[k]), 0);
  }
  bool seen[MAXF] = {0};
  for (int k = 0; k < MAXF; k++) {
    int i = next_idx(it, weft_deadline_in_ms(2000));
    ASSERT(i >= 0);
    ASSERT(!seen[i]);
    seen[i] = true;
  }
  weft_future *f;
  ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_EEMPTY);
  for (int k = 0; k < 4; k++) join(t[k]);
  weft_as_completed_destroy(it);
  release_n(MAXF);
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
  make_n(2);
  weft_as_completed *it = iter(fs, 2);
  fake_helper h = {0};
  weft__current_helper.block = fake_block;
  weft__current_helper.ctx = &h;
  plan p = {.idx = {1, 0}, .n = 2, .delay_ms = 20};
  pthread_t t = start(&p);
  int64_t dl = weft_deadline_in_ms(2000);
  ASSERT_EQ(next_idx(it, dl), 1);
  ASSERT_EQ(next_idx(it, dl), 0);
  weft__current_helper.block = NULL;
  ASSERT_GE(atomic_load(&h.calls), 1);
  ASSERT_EQ(h.deadline, dl);
  join(t);
  weft_as_completed_destroy(it);
  release_n(2);
}

TEST(misuse) {
  make_n(2);
  weft_as_completed *it = iter(fs, 2);
  weft_future *f;
  weft_future *with_null[2] = {fs[0], NULL};
  ASSERT_ABORTS(weft_as_completed_create(NULL, fs, 2), "weft_as_completed_create");
  ASSERT_ABORTS(weft_as_completed_create(&it, NULL, 2), "weft_as_completed_create");
  ASSERT_ABORTS(weft_as_completed_create(&it, with_null, 2), "weft_as_completed_create");
  ASSERT_ABORTS(weft_as_completed_next(NULL, 0, &f), "weft_as_completed_next");
  ASSERT_ABORTS(weft_as_completed_next(it, 0, NULL), "weft_as_completed_next");
  weft_as_completed_destroy(it);
  release_n(2);
}
