/*
 * Internal assertions and misuse checks.
 *
 * WEFT_ASSERT stays on in release builds: it guards cheap invariants whose
 * failure means memory is already wrong. WEFT_DASSERT is for expensive walks
 * and exists only in debug builds (WEFT_DEBUG). WEFT_CHECK_HANDLE and
 * weft__misuse() report programmer misuse of the public API: they print the
 * name of the public call and abort, as ARCHITECTURE.md asks.
 */
#ifndef WEFT_COMMON_ASSERT_H
#define WEFT_COMMON_ASSERT_H

#include <stdbool.h>
#include <stddef.h> /* NULL, for WEFT_CHECK_HANDLE */

#define WEFT_LIKELY(x)   __builtin_expect(!!(x), 1)
#define WEFT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Print "weft: internal assertion failed: <expr> (<file>:<line>, <func>)"
 * and abort. Called by WEFT_ASSERT. */
__attribute__((noreturn, cold)) void weft__assert_fail(const char *expr, const char *file,
                                                       int line, const char *func);
/* Print "weft: misuse in <call>(): <fmt...>" and a newline to stderr, then
 * abort. The whole line is at most 511 bytes (longer text is cut). */
__attribute__((noreturn, cold, format(printf, 2, 3))) void weft__misuse(const char *call,
                                                                      const char *fmt, ...);

#define WEFT_ASSERT(cond)                                                \
  do {                                                                   \
    if (WEFT_UNLIKELY(!(cond)))                                          \
      weft__assert_fail(#cond, __FILE__, __LINE__, __func__);            \
  } while (0)

#ifdef WEFT_DEBUG
#define WEFT_DASSERT(cond) WEFT_ASSERT(cond)
#else
#define WEFT_DASSERT(cond) ((void)0)
#endif

/* Abort with "weft: misuse in weft_queue_put(): argument 'q' is NULL" when a
 * handle argument of a public call is NULL. Use it in the public function
 * itself: __func__ is the name that the message reports. */
#define WEFT_CHECK_HANDLE(p)                                             \
  do {                                                                   \
    if (WEFT_UNLIKELY((p) == NULL))                                      \
      weft__misuse(__func__, "argument '%s' is NULL", #p);               \
  } while (0)

/* The deadline convention: WEFT_FOREVER (-1) or >= 0. */
#define WEFT_DEADLINE_VALID(d) ((d) >= -1)

#endif
