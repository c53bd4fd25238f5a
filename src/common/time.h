/*
 * Internal: the deadline arithmetic behind weft_deadline_in_*, split from
 * the clock so that it can be used with a "now" the caller already has and
 * tested with exact values.
 */
#ifndef WEFT_COMMON_TIME_H
#define WEFT_COMMON_TIME_H

#include <stdint.h>

/* now_ns + timeout_ns, saturating at INT64_MAX. A negative timeout gives
 * WEFT_FOREVER. now_ns must be >= 0. */
int64_t weft__deadline_after(int64_t now_ns, int64_t timeout_ns);

/* A timeout in seconds as whole nanoseconds, rounded up (a deadline must
 * never fall before the time asked for). NaN and negative values give -1
 * ("forever"); values too large for int64 nanoseconds give INT64_MAX. */
int64_t weft__timeout_s_to_ns(double timeout_s);

#endif
