/*
 * bench/common/bench.h: helpers shared by every C benchmark program.
 *
 * The output contract of bench/README.md lives here: one JSON object per
 * measurement on stdout (bench_emit), progress and errors on stderr, and a
 * non-zero exit status when a run produced a wrong result (bench_die). It
 * also has a monotonic clock and strict argument parsing. Header-only, so
 * that each benchmark program is one gcc command.
 */
#ifndef WEFT_BENCH_COMMON_H
#define WEFT_BENCH_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC, for wall-time measurements. */
static inline double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Print "<prog>: <message>" on stderr and exit 1. Used for every failed
 * call and every wrong result: a benchmark that carries on after losing an
 * item measures nothing. */
__attribute__((noreturn, format(printf, 1, 2))) static void bench_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* Parse a positive decimal integer argument or die naming it. */
static inline uint64_t bench_parse_u64(const char *s, const char *what) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v == 0 || s[0] == '-')
    bench_die("%s must be a positive integer, got '%s'", what, s);
  return (uint64_t)v;
}

/* Print one measurement as a JSON object on its own line of stdout and
 * flush, so that the harness sees it even if a later step crashes. secs is
 * the measured wall time behind value. The strings are ours (no escaping
 * needed: no quotes or backslashes in impl or variant names). */
static inline void bench_emit(const char *workload, const char *impl, const char *variant,
                              uint64_t n, double value, const char *unit, double secs) {
  printf("{\"workload\":\"%s\",\"impl\":\"%s\",\"variant\":\"%s\",\"n\":%" PRIu64
         ",\"value\":%.6g,\"unit\":\"%s\",\"secs\":%.6f}\n",
         workload, impl, variant, n, value, unit, secs);
  fflush(stdout);
}

#endif /* WEFT_BENCH_COMMON_H */
