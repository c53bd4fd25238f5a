/*
 * Tests for weft_barrier (src/thread/barrier.c): arrival indices cover
 * 0..parties-1 every round, a timeout breaks the barrier for everyone,
 * abort and reset, deadline 0 for the last and for an early arrival, bad
 * deadlines, misuse aborts. Cross-process use is in test_pshared.c.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

#define MS 1000000LL

typedef struct arriver {
  weft_barrier *b;  /* the barrier */
  int64_t deadline; /* for wait */
  atomic_int rc;    /* result; 1 while waiting */
  unsigned index;   /* arrival index on success */
} arriver;

static void *arrive_body(void *arg) {
  arriver *a = arg;
  unsigned idx = 999;
  int r = weft_barrier_wait(a->b, a->deadline, &idx);
  a->index = idx;
  atomic_store(&a->rc, r);
  return NULL;
}

/* Start a thread that arrives at b and wait until it sleeps there. */
static weft_thread *sleeper(arriver *a, weft_barrier *b, int64_t deadline) {
  a->b = b;
  a->deadline = deadline;
  atomic_init(&a->rc, 1);
  a->index = 999;
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, arrive_body, a, NULL));
  weft_test_wait_asleep_in_futex(0, weft_thread_ident(t));
  return t;
}

TEST(init_limits) {
  weft_barrier b;
  ASSERT_ERR(weft_barrier_init(&b, 0, 0), WEFT_EINVAL);
  ASSERT_ERR(weft_barrier_init(&b, 0, 65536), WEFT_EINVAL);
  ASSERT_ERR(weft_barrier_init(&b, 0x4, 2), WEFT_EINVAL);
  ASSERT_OK(weft_barrier_init(&b, WEFT_SYNC_PSHARED, 65535));
  weft_barrier_fini(&b);
}

TEST(one_party_never_waits) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 1));
  for (int i = 0; i < 100; i++) {
    unsigned idx = 7;
    ASSERT_OK(weft_barrier_wait(&b, 0, &idx));
    ASSERT_EQ(idx, 0);
  }
  ASSERT_OK(weft_barrier_wait(&b, WEFT_FOREVER, NULL));
  weft_barrier_fini(&b);
}

enum { PARTIES = 4, ROUNDS = 50 };
typedef struct rounds {
  weft_barrier b;                  /* PARTIES parties */
  unsigned idx[ROUNDS][PARTIES];   /* idx[r][thread] */
  atomic_int next_id;              /* hands out thread numbers */
} rounds;

static void *round_body(void *arg) {
  rounds *r = arg;
  int me = atomic_fetch_add(&r->next_id, 1);
  for (int k = 0; k < ROUNDS; k++) ASSERT_OK(weft_barrier_wait(&r->b, weft_deadline_in_s(20), &r->idx[k][me]));
  return NULL;
}

static void indices_cover_every_round(unsigned flags) {
  static rounds r;
  memset(&r, 0, sizeof r);
  ASSERT_OK(weft_barrier_init(&r.b, flags, PARTIES));
  weft_thread *t[PARTIES];
  for (int i = 0; i < PARTIES; i++) ASSERT_OK(weft_thread_start(&t[i], round_body, &r, NULL));
  for (int i = 0; i < PARTIES; i++) ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
  for (int k = 0; k < ROUNDS; k++) {
    unsigned seen = 0;
    for (int i = 0; i < PARTIES; i++) {
      ASSERT_LT(r.idx[k][i], PARTIES);
      seen |= 1u << r.idx[k][i];
    }
    ASSERT_EQ(seen, (1u << PARTIES) - 1);
  }
  weft_barrier_fini(&r.b);
}

TEST(indices_cover_0_to_n_minus_1_every_round) { indices_cover_every_round(0); }
TEST(pshared_indices_cover_every_round) { indices_cover_every_round(WEFT_SYNC_PSHARED); }

TEST(last_arrival_with_deadline_zero_passes) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 2));
  arriver a;
  weft_thread *t = sleeper(&a, &b, weft_deadline_in_s(20));
  unsigned idx = 9;
  ASSERT_OK(weft_barrier_wait(&b, 0, &idx));
  ASSERT_EQ(idx, 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_OK(atomic_load(&a.rc));
  ASSERT_EQ(a.index, 0);
  weft_barrier_fini(&b);
}

TEST(timeout_breaks_it_for_everyone_until_reset) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 3));
  arriver a;
  weft_thread *t = sleeper(&a, &b, weft_deadline_in_s(20));
  int64_t t0 = weft_now_ns();
  unsigned idx = 77;
  ASSERT_ERR(weft_barrier_wait(&b, weft_deadline_in_ms(30), &idx), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  ASSERT_EQ(idx, 77); /* untouched on error */
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
  ASSERT_ERR(atomic_load(&a.rc), WEFT_EBROKEN);
  /* Broken until reset: new arrivals fail at once, whatever the deadline. */
  ASSERT_ERR(weft_barrier_wait(&b, WEFT_FOREVER, NULL), WEFT_EBROKEN);
  ASSERT_ERR(weft_barrier_wait(&b, 0, NULL), WEFT_EBROKEN);
  weft_barrier_reset(&b);
  arriver x, y;
  weft_thread *tx = sleeper(&x, &b, weft_deadline_in_s(20));
  weft_thread *ty = sleeper(&y, &b, weft_deadline_in_s(20));
  ASSERT_OK(weft_barrier_wait(&b, 0, &idx));
  ASSERT_EQ(idx, 2);
  ASSERT_OK(weft_thread_join(tx, WEFT_FOREVER, NULL));
  ASSERT_OK(weft_thread_join(ty, WEFT_FOREVER, NULL));
  ASSERT_OK(atomic_load(&x.rc));
  ASSERT_OK(atomic_load(&y.rc));
  ASSERT_EQ(x.index + y.index, 1); /* 0 and 1 */
  weft_barrier_fini(&b);
}

TEST(early_arrival_with_deadline_zero_times_out_and_breaks) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 2));
  ASSERT_ERR(weft_barrier_wait(&b, 0, NULL), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_barrier_wait(&b, 0, NULL), WEFT_EBROKEN);
  weft_barrier_reset(&b);
  arriver a;
  weft_thread *t = sleeper(&a, &b, weft_deadline_in_s(20));
  ASSERT_OK(weft_barrier_wait(&b, 0, NULL));
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_OK(atomic_load(&a.rc));
  weft_barrier_fini(&b);
}

TEST(abort_wakes_waiters_with_ebroken_until_reset) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 3));
  arriver a1, a2;
  weft_thread *t1 = sleeper(&a1, &b, WEFT_FOREVER);
  weft_thread *t2 = sleeper(&a2, &b, WEFT_FOREVER);
  weft_barrier_abort(&b);
  weft_barrier_abort(&b); /* idempotent */
  ASSERT_OK(weft_thread_join(t1, weft_deadline_in_s(10), NULL));
  ASSERT_OK(weft_thread_join(t2, weft_deadline_in_s(10), NULL));
  ASSERT_ERR(atomic_load(&a1.rc), WEFT_EBROKEN);
  ASSERT_ERR(atomic_load(&a2.rc), WEFT_EBROKEN);
  ASSERT_ERR(weft_barrier_wait(&b, WEFT_FOREVER, NULL), WEFT_EBROKEN);
  weft_barrier_reset(&b);
  /* Usable again: three parties pass. */
  t1 = sleeper(&a1, &b, weft_deadline_in_s(20));
  t2 = sleeper(&a2, &b, weft_deadline_in_s(20));
  ASSERT_OK(weft_barrier_wait(&b, weft_deadline_in_s(10), NULL));
  ASSERT_OK(weft_thread_join(t1, WEFT_FOREVER, NULL));
  ASSERT_OK(weft_thread_join(t2, WEFT_FOREVER, NULL));
  ASSERT_OK(atomic_load(&a1.rc));
  ASSERT_OK(atomic_load(&a2.rc));
  weft_barrier_fini(&b);
}

TEST(reset_breaks_current_waiters_but_not_the_barrier) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 2));
  weft_barrier_reset(&b); /* fresh: a no-op */
  arriver a;
  weft_thread *t = sleeper(&a, &b, WEFT_FOREVER);
  weft_barrier_reset(&b);
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
  ASSERT_ERR(atomic_load(&a.rc), WEFT_EBROKEN);
  /* Not broken: the count restarted, so two fresh arrivals pass. */
  t = sleeper(&a, &b, weft_deadline_in_s(20));
  unsigned idx = 5;
  ASSERT_OK(weft_barrier_wait(&b, 0, &idx));
  ASSERT_EQ(idx, 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_OK(atomic_load(&a.rc));
  ASSERT_EQ(a.index, 0);
  weft_barrier_fini(&b);
}

/* A waiter that cannot run before several rounds end (resets, aborts) must
 * still learn that its own round was broken: the outcome history. The main
 * thread runs reset/abort cycles while the waiter is stopped in the kernel
 * right after being woken; whichever path it takes, EBROKEN is right. */
TEST(waiter_lagging_several_rounds_still_sees_its_round_broken) {
  for (int rep = 0; rep < 20; rep++) {
    weft_barrier b;
    ASSERT_OK(weft_barrier_init(&b, 0, 2));
    arriver a;
    weft_thread *t = sleeper(&a, &b, WEFT_FOREVER);
    for (int k = 0; k < 5; k++) {
      weft_barrier_reset(&b);
      weft_barrier_abort(&b);
    }
    weft_barrier_reset(&b);
    ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
    ASSERT_ERR(atomic_load(&a.rc), WEFT_EBROKEN);
    /* And a released round in between reads as released. */
    t = sleeper(&a, &b, WEFT_FOREVER);
    ASSERT_OK(weft_barrier_wait(&b, 0, NULL));
    for (int k = 0; k < 5; k++) {
      weft_barrier_abort(&b);
      weft_barrier_reset(&b);
    }
    ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
    ASSERT_OK(atomic_load(&a.rc));
    weft_barrier_fini(&b);
  }
}

TEST(bad_deadline_is_einval_and_does_not_arrive) {
  weft_barrier b;
  ASSERT_OK(weft_barrier_init(&b, 0, 2));
  ASSERT_ERR(weft_barrier_wait(&b, -2, NULL), WEFT_EINVAL);
  arriver a;
  weft_thread *t = sleeper(&a, &b, weft_deadline_in_s(20));
  unsigned idx = 5;
  ASSERT_OK(weft_barrier_wait(&b, 0, &idx));
  ASSERT_EQ(idx, 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_EQ(a.index, 0);
  weft_barrier_fini(&b);
}

static void wait_after_fini(void) {
  weft_barrier b;
  weft_barrier_init(&b, 0, 1);
  weft_barrier_fini(&b);
  weft_barrier_wait(&b, 0, NULL);
}

TEST(misuse_aborts_naming_the_call) {
  weft_barrier z;
  memset(&z, 0, sizeof z);
  ASSERT_ABORTS(weft_barrier_init(NULL, 0, 1), "weft_barrier_init");
  ASSERT_ABORTS(weft_barrier_wait(NULL, 0, NULL), "weft_barrier_wait");
  ASSERT_ABORTS(weft_barrier_abort(NULL), "weft_barrier_abort");
  ASSERT_ABORTS(weft_barrier_reset(NULL), "weft_barrier_reset");
  ASSERT_ABORTS(weft_barrier_fini(NULL), "weft_barrier_fini");
  ASSERT_ABORTS(weft_barrier_wait(&z, 0, NULL), "weft_barrier_wait(): argument 'b' is not an initialised barrier");
  ASSERT_ABORTS(wait_after_fini(), "weft_barrier_wait(): argument 'b' is not an initialised barrier");
}
