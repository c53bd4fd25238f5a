/*
 * Monotonic time and absolute deadlines (see weft/common.h for the
 * convention). All arithmetic saturates: a huge relative timeout becomes
 * "practically forever" rather than wrapping into the past.
 */
#include <math.h>
#include <time.h>

#include "common/assert.h"
#include "weft/common.h"

int64_t weft_now_ns(void) {
  struct timespec ts;
  /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t weft_deadline_in_ns(int64_t timeout_ns) {
  if (timeout_ns < 0) return WEFT_FOREVER;
  int64_t now = weft_now_ns();
  if (timeout_ns > INT64_MAX - now) return INT64_MAX;
  return now + timeout_ns;
}

int64_t weft_deadline_in_ms(int64_t timeout_ms) {
  if (timeout_ms < 0) return WEFT_FOREVER;
  if (timeout_ms > INT64_MAX / 1000000) return INT64_MAX;
  return weft_deadline_in_ns(timeout_ms * 1000000);
}

int64_t weft_deadline_in_s(double timeout_s) {
  if (isnan(timeout_s) || timeout_s < 0) return WEFT_FOREVER;
  if (timeout_s >= 9.2e9) return INT64_MAX; /* beyond int64 nanoseconds */
  return weft_deadline_in_ns((int64_t)(timeout_s * 1e9));
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
    ts.tv_sec = INT64_MAX / 1000000000;
    ts.tv_nsec = 0;
  } else {
    ts.tv_sec = deadline_ns / 1000000000;
    ts.tv_nsec = deadline_ns % 1000000000;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
  return 0;
}
