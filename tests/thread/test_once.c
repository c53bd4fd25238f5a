/*
 * Tests for weft_once (src/thread/once.c): one run over many calls, callers
 * that arrive during the run wait for it and see its writes, misuse aborts.
 * Cross-process use is in test_pshared.c.
 */
#include <stdatomic.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

static weft_once g_once = WEFT_ONCE_INIT;
static atomic_int g_runs;
static int g_value; /* written by the once function, plain */

static void init_value(void *arg) {
  atomic_fetch_add(&g_runs, 1);
  usleep(50000); /* long enough that the others arrive during the run */
  g_value = *(int *)arg;
}

static void *call_once(void *arg) {
  weft_once_call(&g_once, init_value, arg);
  /* Returning means the run is over and its writes are visible. */
  return (void *)(intptr_t)g_value;
}

TEST(runs_once_and_latecomers_wait_for_it) {
  enum { N = 8 };
  int v = 1234;
  weft_thread *t[N];
  for (int i = 0; i < N; i++) ASSERT_OK(weft_thread_start(&t[i], call_once, &v, NULL));
  for (int i = 0; i < N; i++) {
    void *ret = NULL;
    ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, &ret));
    ASSERT_EQ((intptr_t)ret, 1234);
  }
  ASSERT_EQ(atomic_load(&g_runs), 1);
  int other = 5;
  weft_once_call(&g_once, init_value, &other);
  ASSERT_EQ(atomic_load(&g_runs), 1);
  ASSERT_EQ(g_value, 1234);
}

static void count(void *arg) { (*(int *)arg)++; }

TEST(separate_onces_are_separate) {
  weft_once a = WEFT_ONCE_INIT, b = WEFT_ONCE_INIT;
  int n = 0;
  for (int i = 0; i < 3; i++) {
    weft_once_call(&a, count, &n);
    weft_once_call(&b, count, &n);
  }
  ASSERT_EQ(n, 2);
}

TEST(misuse_aborts_naming_the_call) {
  weft_once bad = {77};
  int n = 0;
  ASSERT_ABORTS(weft_once_call(NULL, count, &n), "weft_once_call");
  ASSERT_ABORTS(weft_once_call(&g_once, NULL, &n), "weft_once_call");
  ASSERT_ABORTS(weft_once_call(&bad, count, &n), "weft_once_call(): argument 'o' is not a weft_once");
}
