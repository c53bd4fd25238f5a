/* Stress and fault injection for the hub: timers in random order,
 * completions from other threads racing with deadlines, allocation
 * failures. Knobs: WEFT_CORO_STRESS_N (default 2000). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "common/alloc.h"
#include "weft_test.h"

WEFT_TEST_TIMEOUT(60)

/* Many sleepers with random deadlines (many equal) wake in deadline order.
 * They all start sleeping after a gate opens, well before the earliest
 * deadline, so every timer is armed before any is due. */
static int64_t woke[20000];
static size_t nwoke;
static int64_t base_ns;
static weft_coro_event *gate;
static int sleep_random(void *arg) {
  int64_t offset = *(int64_t *)arg;
  int e = weft_coro_event_wait(gate, WEFT_FOREVER);
  if (e) return e;
  int64_t at = base_ns + offset;
  if (weft_now_ns() >= at) return -2; /* armed too late: the test is void */
  e = weft_coro_sleep_until(at);
  if (e == 0) {
    if (weft_now_ns() < at) return -1; /* woke early */
    woke[nwoke++] = at;
  }
  return e;
}

TEST(timers_random_order) {
  long n = weft_test_knob("WEFT_CORO_STRESS_N", 2000);
  if (n > 20000) n = 20000;
  int64_t *off = malloc(sizeof *off * (size_t)n);
  srand(7);
  ASSERT_OK(weft_coro_event_create(&gate));
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g, .stack_size = WEFT_CORO_STACK_MIN};
  for (long i = 0; i < n; i++) {
    off[i] = (rand() % 200) * 1000000LL;
    ASSERT_OK(weft_coro_spawn(NULL, sleep_random, &off[i], &o));
  }
  base_ns = weft_now_ns() + 2 * 1000000000LL;
  weft_coro_event_set(gate);
  ASSERT_OK(weft_coro_group_join(g, weft_deadline_in_s(30)));
  ASSERT_EQ(nwoke, (size_t)n);
  for (size_t i = 1; i < nwoke; i++) ASSERT_LE(woke[i - 1], woke[i]);
  weft_coro_group_destroy(g);
  weft_coro_event_destroy(gate);
  free(off);
}

/* Coroutines wait on futures finished by other threads, with deadlines
 * that sometimes pass first: every wait ends exactly once, nothing leaks
 * (ASan checks), and the hub never misses a completion. */
static weft_executor *pool;

static int tiny_task(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)len;
  int us;
  memcpy(&us, arg, sizeof us);
  if (us) {
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
  }
  return weft_task_return(ctx, &us, sizeof us);
}
static const weft_task TINY = {NULL, tiny_task};

static long completed, timed_out;
static int waiter(void *arg) {
  int i = (int)(intptr_t)arg;
  for (int k = 0; k < 20; k++) {
    int us = (i + k) % 7 == 0 ? 300 : 0;
    weft_future *f;
    int e = weft_executor_submit(pool, &TINY, &us, sizeof us, &f);
    if (e) return e;
    /* A short deadline for some: they race the completion. */
    int64_t d = (i + k) % 3 == 0 ? weft_deadline_in_ns(50000) : weft_deadline_in_s(20);
    e = weft_coro_future_wait(f, d);
    if (e == 0) {
      const void *data;
      size_t len;
      if (weft_future_result(f, 0, &data, &len) != 0 || len != sizeof(int)) return -1;
      completed++;
    } else if (e == WEFT_ETIMEDOUT) {
      timed_out++;
    } else {
      return e;
    }
    weft_future_release(f);
  }
  return 0;
}

TEST(future_waits_race_deadlines) {
  weft_executor_opts eo = {.kind = WEFT_EXECUTOR_THREADS, .workers = 3};
  ASSERT_OK(weft_executor_create(&pool, &eo));
  long n = weft_test_knob("WEFT_CORO_STRESS_N", 2000) / 10;
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g};
  for (long i = 0; i < n; i++) ASSERT_OK(weft_coro_spawn(NULL, waiter, (void *)(intptr_t)i, &o));
  ASSERT_OK(weft_coro_group_join(g, weft_deadline_in_s(50)));
  ASSERT_EQ(completed + timed_out, n * 20);
  ASSERT_GT(completed, 0);
  weft_coro_group_destroy(g);
  weft_executor_destroy(pool);
}

/* Several threads, each with its own hub, hammering offload at once. */
static int offloaded(void *arg) { return (int)(intptr_t)arg * 2; }

static int offload_many(void *arg) {
  (void)arg;
  for (int i = 0; i < 50; i++) {
    int r = 0;
    int e = weft_coro_offload(NULL, offloaded, (void *)(intptr_t)i, weft_deadline_in_s(20), &r);
    if (e) return e;
    if (r != 2 * i) return -1;
  }
  return 0;
}

static void *hub_thread(void *arg) {
  int *ok = arg;
  weft_coro_group *g;
  if (weft_coro_group_create(&g)) return NULL;
  weft_coro_opts o = {.group = g};
  for (int i = 0; i < 20; i++) weft_coro_spawn(NULL, offload_many, NULL, &o);
  *ok = weft_coro_group_join(g, weft_deadline_in_s(50)) == 0;
  weft_coro_group_destroy(g);
  return NULL;
}

TEST(hubs_on_many_threads_offload) {
  pthread_t t[4];
  int ok[4] = {0};
  for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_create(&t[i], NULL, hub_thread, &ok[i]), 0);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ASSERT_EQ(ok[i], 1);
  }
}

/* Every allocation that spawn and channel creation make can fail cleanly. */
static int nop(void *arg) {
  (void)arg;
  return 0;
}

TEST(allocation_failures) {
  weft_coro_self(); /* the hub's own allocations happen here */
  for (long k = 1; k <= 4; k++) {
    weft__fault_alloc_fail_nth(k);
    weft_coro *c = NULL;
    int e = weft_coro_spawn(&c, nop, NULL, NULL);
    weft__fault_alloc_fail_nth(0);
    if (e == 0) {
      ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
      weft_coro_release(c);
    } else {
      ASSERT_EQ(e, WEFT_ENOMEM);
    }
    weft__fault_alloc_fail_nth(k);
    weft_chan *ch = NULL;
    e = weft_chan_create(&ch, 8, 4);
    weft__fault_alloc_fail_nth(0);
    if (e == 0)
      weft_chan_destroy(ch);
    else
      ASSERT_EQ(e, WEFT_ENOMEM);
  }
  /* After the failures everything still works. */
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, nop, NULL, NULL));
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
  weft_coro_release(c);
  ASSERT_EQ(weft_hub_count(), 0);
}
