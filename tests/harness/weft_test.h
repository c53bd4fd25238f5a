/*
 * weft's test harness.
 *
 * A test file defines cases with TEST(name) { ... }. The build registers
 * every case with ctest as "<file>.<name>", run as `test_x name` in its own
 * process with a timeout. Run `test_x` with no argument to run all of its
 * cases, each in a forked child with a timeout; `test_x --list` lists them.
 *
 * Assertions print both sides and the location, then abort the test
 * process. Error codes are printed by name (WEFT_EFULL, ETIMEDOUT).
 * A file may set its per-case timeout (seconds) with WEFT_TEST_TIMEOUT(n)
 * on a line of its own; the default is 60.
 */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

typedef void weft_test_fn(void);
void weft_test_register(const char *name, weft_test_fn *fn);
__attribute__((noreturn)) void weft_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define WEFT_TEST_TIMEOUT(n) /* read by CMake; see tests/CMakeLists.txt */

#define TEST(name)                                                         \
  static void weft_test_##name(void);                                      \
  __attribute__((constructor)) static void weft_test_reg_##name(void) {    \
    weft_test_register(#name, weft_test_##name);                           \
  }                                                                        \
  static void weft_test_##name(void)

#define ASSERT(cond)                                                       \
  do {                                                                     \
    if (!(cond)) weft_test_fail(__FILE__, __LINE__, "ASSERT(%s)", #cond);  \
  } while (0)

#define WEFT_TEST_CMP_(a, op, b)                                           \
  do {                                                                     \
    intmax_t weft_a_ = (intmax_t)(a), weft_b_ = (intmax_t)(b);             \
    if (!(weft_a_ op weft_b_))                                             \
      weft_test_fail(__FILE__, __LINE__, "%s %s %s: %jd %s %jd", #a, #op,  \
                     #b, weft_a_, #op, weft_b_);                           \
  } while (0)
#define ASSERT_EQ(a, b) WEFT_TEST_CMP_(a, ==, b)
#define ASSERT_NE(a, b) WEFT_TEST_CMP_(a, !=, b)
#define ASSERT_LT(a, b) WEFT_TEST_CMP_(a, <, b)
#define ASSERT_LE(a, b) WEFT_TEST_CMP_(a, <=, b)
#define ASSERT_GT(a, b) WEFT_TEST_CMP_(a, >, b)
#define ASSERT_GE(a, b) WEFT_TEST_CMP_(a, >=, b)

#define ASSERT_UEQ(a, b)                                                   \
  do {                                                                     \
    uintmax_t weft_a_ = (uintmax_t)(a), weft_b_ = (uintmax_t)(b);          \
    if (weft_a_ != weft_b_)                                                \
      weft_test_fail(__FILE__, __LINE__, "%s == %s: %ju != %ju", #a, #b,   \
                     weft_a_, weft_b_);                                    \
  } while (0)

#define ASSERT_PTR_EQ(a, b)                                                \
  do {                                                                     \
    const void *weft_a_ = (a), *weft_b_ = (b);                             \
    if (weft_a_ != weft_b_)                                                \
      weft_test_fail(__FILE__, __LINE__, "%s == %s: %p != %p", #a, #b,     \
                     weft_a_, weft_b_);                                    \
  } while (0)
#define ASSERT_NULL(a) ASSERT_PTR_EQ(a, NULL)
#define ASSERT_NOT_NULL(a)                                                 \
  do {                                                                     \
    if ((a) == NULL) weft_test_fail(__FILE__, __LINE__, "%s is NULL", #a); \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                \
  do {                                                                     \
    const char *weft_a_ = (a), *weft_b_ = (b);                             \
    if (!weft_a_ || !weft_b_ || strcmp(weft_a_, weft_b_) != 0)             \
      weft_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, \
                     #b, weft_a_ ? weft_a_ : "(null)",                     \
                     weft_b_ ? weft_b_ : "(null)");                        \
  } while (0)

/* expr must return the error code err (0 for ASSERT_OK). */
#define ASSERT_ERR(expr, err)                                              \
  do {                                                                     \
    int weft_r_ = (expr), weft_e_ = (err);                                 \
    if (weft_r_ != weft_e_)                                                \
      weft_test_fail(__FILE__, __LINE__, "%s returned %s (%d), expected %s (%d)", \
                     #expr, weft_err_name(weft_r_), weft_r_,               \
                     weft_err_name(weft_e_), weft_e_);                     \
  } while (0)
#define ASSERT_OK(expr) ASSERT_ERR(expr, 0)

/* Run stmt in a forked child; it must abort (SIGABRT) and write a message
 * containing needle to stderr. For the "misuse aborts naming the call" rule. */
#define ASSERT_ABORTS(stmt, needle)                                        \
  do {                                                                     \
    weft_test_child weft_c_ = weft_test_fork_capture();                    \
    if (weft_c_.pid == 0) {                                                \
      stmt;                                                                \
      _exit(0);                                                            \
    }                                                                      \
    weft_test_expect_abort(weft_c_, needle, __FILE__, __LINE__, #stmt);    \
  } while (0)
typedef struct weft_test_child {
  int pid; /* 0 in the child */
  int fd;  /* the child's stderr, read by the parent */
} weft_test_child;
weft_test_child weft_test_fork_capture(void);
void weft_test_expect_abort(weft_test_child c, const char *needle, const char *file,
                            int line, const char *what);

/* Wait (up to 10 s, then fail) until thread tid of process pid (0: this
 * process) sleeps in the futex syscall, so that a test is sure to exercise
 * a wake-up path and not a fast path. */
void weft_test_wait_asleep_in_futex(int pid, uint64_t tid);

/* A counting allocator for leak checks: install it at the start of a test
 * (weft_set_allocator only works before weft's first allocation, and each
 * test runs in a fresh process). The counts are of allocations and frees
 * made through it since then; live = allocs - frees. */
void weft_test_use_counting_allocator(void);
long weft_test_allocs(void);
long weft_test_frees(void);
long weft_test_live_allocs(void);

/* A knob for stress tests: the integer in environment variable name, or def. */
long weft_test_knob(const char *name, long def);

#include <unistd.h>

#endif
