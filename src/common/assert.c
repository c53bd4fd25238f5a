/*
 * Failure reporting for WEFT_ASSERT and API misuse. Writes with write(2) so
 * that it works from any context, including a corrupted heap.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/assert.h"

static void emit(const char *buf, int len) {
  if (len < 0) return;
  ssize_t r = write(STDERR_FILENO, buf, (size_t)len);
  (void)r;
}

void weft__assert_fail(const char *expr, const char *file, int line, const char *func) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "weft: internal assertion failed: %s (%s:%d, %s)\n",
                   expr, file, line, func);
  emit(buf, n < (int)sizeof buf ? n : (int)sizeof buf - 1);
  abort();
}

void weft__misuse(const char *call, const char *fmt, ...) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "weft: misuse in %s(): ", call);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && n < (int)sizeof buf) n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof buf - 1) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  emit(buf, n);
  abort();
}
