/*
 * Tests for monotonic time and deadlines (src/common/time.c).
 *
 * Timing assertions check lower bounds only ("slept at least until the
 * deadline"): an upper bound on a loaded CI machine is a flake, so where one
 * is stated it is seconds wide and only catches "did not sleep at all" or
 * "slept forever" bugs.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#include "common/time.h"
#include "weft_test.h"

static int64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

TEST(now_is_monotonic_clock) {
  /* weft_now_ns reads CLOCK_MONOTONIC: it must fall between two direct
   * readings taken around it. */
  for (int i = 0; i < 1000; i++) {
    int64_t a = clock_ns();
    int64_t n = weft_now_ns();
    int64_t b = clock_ns();
    ASSERT_LE(a, n);
    ASSERT_LE(n, b);
  }
}

TEST(now_never_goes_back) {
  int64_t prev = weft_now_ns();
  ASSERT_GT(prev, 0);
  for (int i = 0; i < 200000; i++) {
    int64_t t = weft_now_ns();
    ASSERT_GE(t, prev);
    prev = t;
  }
}

TEST(negative_timeout_is_forever) {
  ASSERT_EQ(weft_deadline_in_ns(-1), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_ns(-5), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_ns(INT64_MIN), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_ms(-1), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_ms(INT64_MIN), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_s(-1.0), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_s(-1e-300), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_s(-INFINITY), WEFT_FOREVER);
}

TEST(nan_timeout_is_forever) {
  ASSERT_EQ(weft_deadline_in_s(NAN), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in_s(-NAN), WEFT_FOREVER);
}

TEST(zero_timeout_is_due_now) {
  int64_t before = weft_now_ns();
  int64_t dn = weft_deadline_in_ns(0);
  int64_t dm = weft_deadline_in_ms(0);
  int64_t ds = weft_deadline_in_s(0.0);
  int64_t dz = weft_deadline_in_s(-0.0); /* -0.0 is not negative */
  int64_t after = weft_now_ns();
  ASSERT_GE(dn, before);
  ASSERT_LE(dn, after);
  ASSERT_GE(dm, before);
  ASSERT_LE(dm, after);
  ASSERT_GE(ds, before);
  ASSERT_LE(ds, after);
  ASSERT_GE(dz, before);
  ASSERT_LE(dz, after);
  ASSERT_EQ(weft_deadline_remaining_ns(dn), 0);
  ASSERT_EQ(weft_deadline_remaining_ns(ds), 0);
}

TEST(relative_timeouts_add_to_now) {
  int64_t before = weft_now_ns();
  int64_t dn = weft_deadline_in_ns(123456789);
  int64_t dm = weft_deadline_in_ms(1500);
  int64_t ds = weft_deadline_in_s(0.25);
  int64_t after = weft_now_ns();
  ASSERT_GE(dn, before + 123456789);
  ASSERT_LE(dn, after + 123456789);
  ASSERT_GE(dm, before + 1500000000);
  ASSERT_LE(dm, after + 1500000000);
  ASSERT_GE(ds, before + 250000000);
  ASSERT_LE(ds, after + 250000000);
}

TEST(seconds_round_up_to_whole_nanoseconds) {
  /* A deadline must never fall before the time asked for: 2.5 ns becomes
   * 3 ns, and a tiny positive timeout is still in the future. */
  int64_t before = weft_now_ns();
  int64_t d = weft_deadline_in_s(2.5e-9);
  int64_t tiny = weft_deadline_in_s(1e-15);
  int64_t after = weft_now_ns();
  ASSERT_GE(d, before + 3);
  ASSERT_LE(d, after + 3);
  ASSERT_GE(tiny, before + 1);
  ASSERT_LE(tiny, after + 1);
  /* An exact value is not bumped: 1 s is 1e9 ns, not 1e9 + 1. */
  before = weft_now_ns();
  d = weft_deadline_in_s(1.0);
  after = weft_now_ns();
  ASSERT_GE(d, before + 1000000000);
  ASSERT_LE(d, after + 1000000000);
}

/* Exact arithmetic, with "now" fixed by the test (src/common/time.h). */
TEST(deadline_after_is_exact) {
  ASSERT_EQ(weft__deadline_after(1000, 0), 1000);
  ASSERT_EQ(weft__deadline_after(1000, 1), 1001);
  ASSERT_EQ(weft__deadline_after(0, 0), 0);
  ASSERT_EQ(weft__deadline_after(1000, -1), WEFT_FOREVER);
  ASSERT_EQ(weft__deadline_after(1000, INT64_MIN), WEFT_FOREVER);
  /* The saturation boundary, to the nanosecond. */
  ASSERT_EQ(weft__deadline_after(1000, INT64_MAX - 1000), INT64_MAX);
  ASSERT_EQ(weft__deadline_after(1000, INT64_MAX - 1001), INT64_MAX - 1);
  ASSERT_EQ(weft__deadline_after(1000, INT64_MAX - 999), INT64_MAX);
  ASSERT_EQ(weft__deadline_after(INT64_MAX, 1), INT64_MAX);
  ASSERT_EQ(weft__deadline_after(INT64_MAX - 5, 5), INT64_MAX);
}

TEST(seconds_to_ns_is_exact_and_rounds_up) {
  ASSERT_EQ(weft__timeout_s_to_ns(0.0), 0);
  ASSERT_EQ(weft__timeout_s_to_ns(-0.0), 0);
  ASSERT_EQ(weft__timeout_s_to_ns(1.0), 1000000000);
  ASSERT_EQ(weft__timeout_s_to_ns(0.5), 500000000);
  ASSERT_EQ(weft__timeout_s_to_ns(2.5e-9), 3);
  ASSERT_EQ(weft__timeout_s_to_ns(1e-9), 1);
  ASSERT_EQ(weft__timeout_s_to_ns(1e-15), 1); /* positive never becomes 0 */
  ASSERT_EQ(weft__timeout_s_to_ns(0.1234567891), 123456790);
  ASSERT_EQ(weft__timeout_s_to_ns(3600.0), 3600000000000LL);
  ASSERT_EQ(weft__timeout_s_to_ns(-1.0), -1);
  ASSERT_EQ(weft__timeout_s_to_ns(-1e-300), -1);
  ASSERT_EQ(weft__timeout_s_to_ns(NAN), -1);
  ASSERT_EQ(weft__timeout_s_to_ns(-INFINITY), -1);
  ASSERT_EQ(weft__timeout_s_to_ns(INFINITY), INT64_MAX);
  ASSERT_EQ(weft__timeout_s_to_ns(9.2e9), INT64_MAX);
  ASSERT_EQ(weft__timeout_s_to_ns(1e300), INT64_MAX);
  /* Just below the cut-off still fits, and is not negative. */
  int64_t big = weft__timeout_s_to_ns(9.1999e9);
  ASSERT_GT(big, 9199000000000000000LL);
  ASSERT_LT(big, INT64_MAX);
}

TEST(overflow_saturates) {
  /* Each of these would wrap past INT64_MAX, into the past, if added
   * naively. Saturating keeps them "practically forever". */
  ASSERT_EQ(weft_deadline_in_ns(INT64_MAX), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_ns(INT64_MAX - 1), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_ms(INT64_MAX), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_ms(INT64_MAX / 1000000 + 1), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_ms(INT64_MAX / 1000000), INT64_MAX); /* + now overflows */
  ASSERT_EQ(weft_deadline_in_s(1e300), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_s(INFINITY), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_s(9.2e9), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_s(9.3e9), INT64_MAX);
  ASSERT_EQ(weft_deadline_in_s((double)INT64_MAX), INT64_MAX);
}

TEST(large_but_representable_timeouts_do_not_saturate) {
  /* 100 years fits easily in int64 nanoseconds (about 292 years). */
  int64_t century_s = 100LL * 365 * 24 * 3600;
  int64_t before = weft_now_ns();
  int64_t ds = weft_deadline_in_s((double)century_s);
  int64_t dm = weft_deadline_in_ms(century_s * 1000);
  int64_t after = weft_now_ns();
  ASSERT_GE(ds, before + century_s * 1000000000);
  ASSERT_LE(ds, after + century_s * 1000000000);
  ASSERT_GE(dm, before + century_s * 1000000000);
  ASSERT_LE(dm, after + century_s * 1000000000);
  ASSERT_LT(ds, INT64_MAX);
}

TEST(remaining_ns) {
  ASSERT_EQ(weft_deadline_remaining_ns(WEFT_FOREVER), INT64_MAX);
  ASSERT_EQ(weft_deadline_remaining_ns(0), 0);
  ASSERT_EQ(weft_deadline_remaining_ns(1), 0);
  ASSERT_EQ(weft_deadline_remaining_ns(weft_now_ns() - 1000), 0);
  /* A deadline below WEFT_FOREVER is invalid; it reads as already due. */
  ASSERT_EQ(weft_deadline_remaining_ns(-5), 0);
  ASSERT_EQ(weft_deadline_remaining_ns(INT64_MIN), 0);

  int64_t d = weft_deadline_in_ns(10 * 1000000000LL);
  int64_t left = weft_deadline_remaining_ns(d);
  ASSERT_GT(left, 0);
  ASSERT_LE(left, 10 * 1000000000LL);
  ASSERT_GT(left, 5 * 1000000000LL); /* 5 s of slack for a slow machine */

  int64_t far = weft_deadline_remaining_ns(INT64_MAX);
  ASSERT_GT(far, INT64_MAX / 2);
  ASSERT_LT(far, INT64_MAX);
}

TEST(remaining_ns_counts_down) {
  int64_t d = weft_deadline_in_ms(20);
  int64_t prev = weft_deadline_remaining_ns(d);
  while (prev > 0) {
    int64_t r = weft_deadline_remaining_ns(d);
    ASSERT_LE(r, prev);
    prev = r;
  }
  ASSERT_GE(weft_now_ns(), d);
}

TEST(sleep_until_reaches_deadline) {
  int64_t start = weft_now_ns();
  int64_t d = start + 50 * 1000000;
  ASSERT_OK(weft_sleep_until(d));
  int64_t end = weft_now_ns();
  ASSERT_GE(end, d);
  ASSERT_LT(end - start, 30 * 1000000000LL); /* it did not hang */
}

TEST(sleep_until_past_or_zero_returns_at_once) {
  int64_t start = weft_now_ns();
  ASSERT_OK(weft_sleep_until(0));
  ASSERT_OK(weft_sleep_until(1));
  ASSERT_OK(weft_sleep_until(start - 1000000));
  ASSERT_OK(weft_sleep_until(weft_deadline_in_ms(0)));
  ASSERT_LT(weft_now_ns() - start, 5 * 1000000000LL);
}

TEST(sleep_until_rejects_bad_deadline) {
  ASSERT_ERR(weft_sleep_until(-5), WEFT_EINVAL);
  ASSERT_ERR(weft_sleep_until(-2), WEFT_EINVAL);
  ASSERT_ERR(weft_sleep_until(INT64_MIN), WEFT_EINVAL);
}

static atomic_int g_signals;
static void on_usr1(int sig) {
  (void)sig;
  atomic_fetch_add(&g_signals, 1);
}

struct pester {
  pthread_t target;
  atomic_bool stop;
};

static void *pester_main(void *arg) {
  struct pester *p = arg;
  struct timespec gap = {0, 2 * 1000000};
  while (!atomic_load(&p->stop)) {
    pthread_kill(p->target, SIGUSR1);
    nanosleep(&gap, NULL);
  }
  return NULL;
}

TEST(sleep_until_is_not_cut_short_by_signals) {
  /* No SA_RESTART: clock_nanosleep returns EINTR on every signal, and
   * weft_sleep_until must go back to sleep until the deadline. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);

  struct pester p = {pthread_self(), false};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, pester_main, &p), 0);
  int64_t d = weft_deadline_in_ms(150);
  ASSERT_OK(weft_sleep_until(d));
  ASSERT_GE(weft_now_ns(), d);
  atomic_store(&p.stop, true);
  pthread_join(th, NULL);
  ASSERT_GT(atomic_load(&g_signals), 0); /* the sleep really was interrupted */
}

/* Forked child sleeping until d; the parent checks it is still asleep. */
static void expect_sleeps_on(int64_t d) {
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    weft_sleep_until(d);
    _exit(7);
  }
  struct timespec gap = {0, 200 * 1000000};
  nanosleep(&gap, NULL);
  int st;
  ASSERT_EQ(waitpid(pid, &st, WNOHANG), 0); /* still sleeping */
  kill(pid, SIGKILL);
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

TEST(sleep_until_forever_sleeps) {
  expect_sleeps_on(WEFT_FOREVER);
}

TEST(sleep_until_far_future_sleeps) {
  expect_sleeps_on(INT64_MAX);
  expect_sleeps_on(weft_deadline_in_s(1e300));
}
