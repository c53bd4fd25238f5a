/*
 * Tests for weft_event (src/thread/event.c): set/clear/is_set, wait with
 * deadlines, waking every sleeper, the set-then-clear pulse that must not be
 * lost, misuse aborts. Cross-process use is in test_pshared.c.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

#define MS 1000000LL

typedef struct waiter {
  weft_event *e;    /* the event to wait on */
  int64_t deadline; /* for weft_event_wait */
  atomic_int rc;    /* its result; 1 while waiting */
} waiter;

static void *wait_body(void *arg) {
  waiter *w = arg;
  atomic_store(&w->rc, weft_event_wait(w->e, w->deadline));
  return NULL;
}

TEST(init_rejects_unknown_flags) {
  weft_event e;
  ASSERT_ERR(weft_event_init(&e, 0x2), WEFT_EINVAL);
  ASSERT_ERR(weft_event_init(&e, WEFT_MUTEX_RECURSIVE), WEFT_EINVAL);
  ASSERT_OK(weft_event_init(&e, WEFT_SYNC_PSHARED));
  weft_event_fini(&e);
}

TEST(set_clear_is_set_and_wait_deadlines) {
  weft_event e;
  ASSERT_OK(weft_event_init(&e, 0));
  ASSERT(!weft_event_is_set(&e));
  ASSERT_ERR(weft_event_wait(&e, 0), WEFT_ETIMEDOUT);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_event_wait(&e, weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  ASSERT_ERR(weft_event_wait(&e, weft_now_ns() - 1000), WEFT_ETIMEDOUT); /* past */

  weft_event_set(&e);
  ASSERT(weft_event_is_set(&e));
  weft_event_set(&e); /* idempotent */
  ASSERT(weft_event_is_set(&e));
  ASSERT_OK(weft_event_wait(&e, 0));
  ASSERT_OK(weft_event_wait(&e, WEFT_FOREVER));
  ASSERT_OK(weft_event_wait(&e, weft_deadline_in_ms(10)));

  weft_event_clear(&e);
  ASSERT(!weft_event_is_set(&e));
  weft_event_clear(&e);
  ASSERT(!weft_event_is_set(&e));
  ASSERT_ERR(weft_event_wait(&e, 0), WEFT_ETIMEDOUT);
  weft_event_fini(&e);
}

TEST(bad_deadline_is_einval) {
  weft_event e;
  ASSERT_OK(weft_event_init(&e, 0));
  ASSERT_ERR(weft_event_wait(&e, -2), WEFT_EINVAL);
  weft_event_set(&e);
  ASSERT_ERR(weft_event_wait(&e, INT64_MIN), WEFT_EINVAL); /* even when set */
  weft_event_fini(&e);
}

static void set_wakes_every_sleeper(unsigned flags) {
  enum { N = 4 };
  weft_event e;
  ASSERT_OK(weft_event_init(&e, flags));
  waiter w[N];
  weft_thread *t[N];
  for (int i = 0; i < N; i++) {
    w[i].e = &e;
    w[i].deadline = weft_deadline_in_s(20);
    atomic_init(&w[i].rc, 1);
    ASSERT_OK(weft_thread_start(&t[i], wait_body, &w[i], NULL));
  }
  for (int i = 0; i < N; i++) weft_test_wait_asleep_in_futex(0, weft_thread_ident(t[i]));
  for (int i = 0; i < N; i++) ASSERT_EQ(atomic_load(&w[i].rc), 1);
  weft_event_set(&e);
  for (int i = 0; i < N; i++) {
    ASSERT_OK(weft_thread_join(t[i], weft_deadline_in_s(10), NULL));
    ASSERT_OK(atomic_load(&w[i].rc));
  }
  weft_event_fini(&e);
}

TEST(set_wakes_every_sleeper) { set_wakes_every_sleeper(0); }
TEST(pshared_set_wakes_every_sleeper) { set_wakes_every_sleeper(WEFT_SYNC_PSHARED); }

/* A set() followed at once by clear() must still release a thread that was
 * waiting when set() ran (Python's Event.wait returns True then). Without
 * the generation count the waiter would wake, see the flag down and sleep
 * on until its deadline. */
TEST(set_then_clear_still_releases_sleepers) {
  for (int round = 0; round < 5; round++) {
    weft_event e;
    ASSERT_OK(weft_event_init(&e, 0));
    waiter w = {&e, weft_deadline_in_s(5), 1};
    weft_thread *t;
    ASSERT_OK(weft_thread_start(&t, wait_body, &w, NULL));
    weft_test_wait_asleep_in_futex(0, weft_thread_ident(t));
    weft_event_set(&e);
    weft_event_clear(&e);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_OK(atomic_load(&w.rc));
    ASSERT(!weft_event_is_set(&e));
    weft_event_fini(&e);
  }
}

TEST(timed_wait_released_by_set) {
  weft_event e;
  ASSERT_OK(weft_event_init(&e, 0));
  waiter w = {&e, weft_deadline_in_s(10), 1};
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, wait_body, &w, NULL));
  weft_test_wait_asleep_in_futex(0, weft_thread_ident(t));
  int64_t t0 = weft_now_ns();
  weft_event_set(&e);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_OK(atomic_load(&w.rc));
  ASSERT_LT(weft_now_ns() - t0, 5000 * MS);
  weft_event_fini(&e);
}

/* What a thread wrote before set() is visible to a thread after its wait. */
typedef struct handoff {
  weft_event e; /* published */
  long data;    /* written before set, read after wait */
} handoff;

static void *publish(void *arg) {
  handoff *h = arg;
  h->data = 42;
  weft_event_set(&h->e);
  return NULL;
}

TEST(set_publishes_prior_writes) {
  handoff h;
  h.data = 0;
  ASSERT_OK(weft_event_init(&h.e, 0));
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, publish, &h, NULL));
  ASSERT_OK(weft_event_wait(&h.e, WEFT_FOREVER));
  ASSERT_EQ(h.data, 42);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  weft_event_fini(&h.e);
}

/* ------------------------------------------------------------- misuse */

static void fini_with_sleeper(void) {
  static weft_event e;
  static waiter w;
  weft_event_init(&e, 0);
  w.e = &e;
  w.deadline = WEFT_FOREVER;
  weft_thread *t;
  weft_thread_start(&t, wait_body, &w, NULL);
  weft_test_wait_asleep_in_futex(0, weft_thread_ident(t));
  weft_event_fini(&e);
}

static void set_after_fini(void) {
  weft_event e;
  weft_event_init(&e, 0);
  weft_event_fini(&e);
  weft_event_set(&e);
}

TEST(misuse_aborts_naming_the_call) {
  weft_event z;
  memset(&z, 0, sizeof z);
  ASSERT_ABORTS(weft_event_init(NULL, 0), "weft_event_init");
  ASSERT_ABORTS(weft_event_set(NULL), "weft_event_set");
  ASSERT_ABORTS(weft_event_clear(NULL), "weft_event_clear");
  ASSERT_ABORTS(weft_event_is_set(NULL), "weft_event_is_set");
  ASSERT_ABORTS(weft_event_wait(NULL, 0), "weft_event_wait");
  ASSERT_ABORTS(weft_event_fini(NULL), "weft_event_fini");
  ASSERT_ABORTS(weft_event_set(&z), "weft_event_set(): argument 'e' is not an initialised event");
  ASSERT_ABORTS(weft_event_wait(&z, 0), "weft_event_wait(): argument 'e' is not an initialised event");
  ASSERT_ABORTS(fini_with_sleeper(), "weft_event_fini(): threads are still waiting");
  ASSERT_ABORTS(set_after_fini(), "weft_event_set(): argument 'e' is not an initialised event");
}
