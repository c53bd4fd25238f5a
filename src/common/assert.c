/*
 * Failure reporting for WEFT_ASSERT and API misuse. Formats into a stack
 * buffer and writes with write(2), so that it works from any context,
 * including a corrupted heap or a signal handler's aftermath; then aborts.
 * A message too long for the buffer is cut, but always ends in a newline
 * so that the next line of output is not glued onto it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/assert.h"

#define MSG_MAX 512

/* Write buf[0..len) plus a newline. len is what snprintf reported: it may
 * exceed the buffer (the text was cut) or be negative (nothing usable). */
static void emit_line(char *buf, int len) {
  if (len < 0) len = 0;
  if (len > MSG_MAX - 2) len = MSG_MAX - 2;
  buf[len++] = '\n';
  const char *p = buf;
  size_t left = (size_t)len;
  while (left > 0) {
    ssize_t r = write(STDERR_FILENO, p, left);
    if (r <= 0) break; /* nowhere left to report; abort anyway */
    p += r;
    left -= (size_t)r;
  }
}

void weft__assert_fail(const char *expr, const char *file, int line, const char *func) {
  char buf[MSG_MAX];
  int n = snprintf(buf, sizeof buf, "weft: internal assertion failed: %s (%s:%d, %s)", expr,
                   file, line, func);
  emit_line(buf, n);
  abort();
}

void weft__misuse(const char *call, const char *fmt, ...) {
  char buf[MSG_MAX];
  int n = snprintf(buf, sizeof buf, "weft: misuse in %s(): ", call);
  if (n < 0) n = 0;
  if (n < (int)sizeof buf) {
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    /* A formatting error leaves the prefix alone, which still names the call. */
    if (m > 0) n += m;
  }
  emit_line(buf, n);
  abort();
}
