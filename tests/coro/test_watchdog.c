/* The watchdog: a coroutine that blocks its hub is named; cooperative
 * waiting is not a stall. */
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int nreports;
static weft_hub_stall last;

static void record(const weft_hub_stall *s, void *ud) {
  (void)ud;
  pthread_mutex_lock(&mu);
  nreports++;
  last = *s;
  pthread_mutex_unlock(&mu);
}

static int reports(void) {
  pthread_mutex_lock(&mu);
  int n = nreports;
  pthread_mutex_unlock(&mu);
  return n;
}

/* Blocks the whole thread, as an uncooperative call would. */
static int hog(void *arg) {
  int ms = (int)(intptr_t)arg;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  return 0;
}

static int polite(void *arg) {
  (void)arg;
  return weft_coro_sleep_until(weft_deadline_in_ms(300));
}

TEST(names_the_blocking_coroutine) {
  ASSERT_OK(weft_hub_watchdog(50 * 1000000LL, record, NULL));
  weft_coro_opts o = {.name = "hog"};
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, hog, (void *)(intptr_t)600, &o));
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
  weft_coro_release(c);
  ASSERT_EQ(reports(), 1); /* once per stall */
  ASSERT_STR_EQ(last.coro_name, "hog");
  ASSERT_GE(last.blocked_ns, 50 * 1000000LL);
  ASSERT(strstr(last.spawn_file, "test_watchdog.c") != NULL);
  ASSERT_GT(last.spawn_line, 0);
  ASSERT_GT(last.coro_id, 0);
  ASSERT_EQ(last.tid, (int)gettid());
  ASSERT_OK(weft_hub_watchdog(0, NULL, NULL));
}

TEST(cooperative_waits_are_not_stalls) {
  /* 100 ms: a loaded machine may delay a switch by some tens of ms. */
  ASSERT_OK(weft_hub_watchdog(100 * 1000000LL, record, NULL));
  weft_coro *c[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_coro_spawn(&c[i], polite, NULL, NULL));
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(weft_coro_join(c[i], WEFT_FOREVER, NULL));
    weft_coro_release(c[i]);
  }
  ASSERT_EQ(reports(), 0);
  /* The main coroutine blocking the thread is named "main". */
  hog((void *)(intptr_t)600);
  ASSERT_EQ(reports(), 1);
  ASSERT_STR_EQ(last.coro_name, "main");
  ASSERT_EQ(last.coro_id, 0);
  /* Off: no more reports. */
  ASSERT_OK(weft_hub_watchdog(0, NULL, NULL));
  hog((void *)(intptr_t)200);
  ASSERT_EQ(reports(), 1);
  ASSERT_ERR(weft_hub_watchdog(-1, NULL, NULL), WEFT_EINVAL);
}

TEST(default_report_on_stderr) {
  weft_test_child ch = weft_test_fork_capture();
  if (ch.pid == 0) {
    weft_hub_watchdog(30 * 1000000LL, NULL, NULL);
    weft_coro_opts o = {.name = "slowpoke"};
    weft_coro_spawn(NULL, hog, (void *)(intptr_t)600, &o);
    abort();
  }
  weft_test_expect_abort(ch, "weft watchdog: coroutine \"slowpoke\" (#1, spawned at ", __FILE__,
                         __LINE__, "watchdog");
}
