/*
 * Monotonic time and absolute deadlines (see weft/common.h for the
 * convention). All arithmetic saturates: a huge relative timeout becomes
 * "practically forever" (INT64_MAX, about 292 years after boot) rather than
 * wrapping into the past.
 */
#include <math.h>
#include <time.h>

#include "common/assert.h"
#include "common/time.h"
#include "weft/common.h"

int64_t weft_now_ns(void) {
  struct timespec ts;
  /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t weft__deadline_after(int64_t now_ns, int64_t timeout_ns) {
  if (timeout_ns < 0) return WEFT_FOREVER;
  if (timeout_ns > INT64_MAX - now_ns) return INT64_MAX;
  return now_ns + timeout_ns;
}

int64_t weft__timeout_s_to_ns(double timeout_s) {
  if (isnan(timeout_s) || timeout_s < 0) return -1;
  /* 9.2e9 s is just below INT64_MAX ns (9.223e18), so the product below
   * always fits; +infinity lands here too. */
  if (timeout_s >= 9.2e9) return INT64_MAX;
  /* Round up, as Python does for timeouts: truncating would let a wait
   * return before the time the caller asked for, and would turn a tiny
   * positive timeout into "do not block". By hand, to keep libm out. */
  double x = timeout_s * 1e9;
  int64_t ns = (int64_t)x;
  if ((double)ns < x) ns++;
  return ns;
}

int64_t weft_deadline_in_ns(int64_t timeout_ns) {
  if (timeout_ns < 0) return WEFT_FOREVER; /* no clock read needed */
  return weft__deadline_after(weft_now_ns(), timeout_ns);
}

int64_t weft_deadline_in_ms(int64_t timeout_ms) {
  if (timeout_ms < 0) return WEFT_FOREVER;
  if (timeout_ms > INT64_MAX / 1000000) return INT64_MAX;
  return weft_deadline_in_ns(timeout_ms * 1000000);
}

int64_t weft_deadline_in_s(double timeout_s) {
  return weft_deadline_in_ns(weft__timeout_s_to_ns(timeout_s));
}

int64_t weft_deadline_remaining_ns(int64_t deadline_ns) {
  if (deadline_ns == WEFT_FOREVER) return INT64_MAX;
  int64_t now = weft_now_ns();
  return deadline_ns > now ? deadline_ns - now : 0;
}

int weft_sleep_until(int64_t deadline_ns) {
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  struct timespec ts;
  if (deadline_ns == WEFT_FOREVER) {
    /* The kernel clamps an absolute time this far out to "never". */
    ts.tv_sec = INT64_MAX / 1000000000;
    ts.tv_nsec = 0;
  } else {
    ts.tv_sec = deadline_ns / 1000000000;
    ts.tv_nsec = deadline_ns % 1000000000;
  }
  /* TIMER_ABSTIME makes a restart after a signal exact: no drift. */
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
  return 0;
}
