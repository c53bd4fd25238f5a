/*
 * Tests for misuse reports and internal assertions (src/common/assert.c):
 * the process aborts, and stderr carries one line that names the public
 * call (misuse) or the failed expression and its place (assertion).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>

#include "common/assert.h"
#include "weft_test.h"

/* Run fn in a child with stderr captured; it must abort. Returns what it
 * wrote to stderr in out (NUL-terminated). */
static size_t capture_abort(void (*fn)(void), char *out, size_t size) {
  weft_test_child c = weft_test_fork_capture();
  if (c.pid == 0) {
    fn();
    _exit(0);
  }
  size_t n = 0;
  ssize_t r;
  while (n < size - 1 && (r = read(c.fd, out + n, size - 1 - n)) > 0) n += (size_t)r;
  out[n] = 0;
  close(c.fd);
  int st;
  ASSERT_EQ(waitpid(c.pid, &st, 0), c.pid);
  ASSERT(WIFSIGNALED(st));
  ASSERT_EQ(WTERMSIG(st), SIGABRT);
  return n;
}

TEST(misuse_names_the_call) {
  ASSERT_ABORTS(weft__misuse("weft_queue_put", "argument '%s' is NULL", "q"),
                "weft: misuse in weft_queue_put(): argument 'q' is NULL\n");
}

static void misuse_plain(void) { weft__misuse("weft_thread_join", "thread %d was detached", 7); }

TEST(misuse_is_exactly_one_line) {
  char out[4096];
  size_t n = capture_abort(misuse_plain, out, sizeof out);
  ASSERT_STR_EQ(out, "weft: misuse in weft_thread_join(): thread 7 was detached\n");
  ASSERT_EQ(n, strlen(out));
}

static void misuse_long(void) {
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  weft__misuse("weft_queue_get", "%s", big);
}

TEST(misuse_long_message_is_cut_but_ends_the_line) {
  char out[4096];
  size_t n = capture_abort(misuse_long, out, sizeof out);
  ASSERT_GT(n, 100);
  ASSERT_LE(n, 511);
  ASSERT_EQ(out[n - 1], '\n');
  ASSERT_NULL(memchr(out, '\n', n - 1)); /* one line only */
  ASSERT_EQ(strncmp(out, "weft: misuse in weft_queue_get(): xxx", 37), 0);
}

static void misuse_long_name(void) {
  char name[2000];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = 0;
  weft__misuse(name, "detail");
}

TEST(misuse_long_call_name_is_cut_but_ends_the_line) {
  char out[4096];
  size_t n = capture_abort(misuse_long_name, out, sizeof out);
  ASSERT_LE(n, 511);
  ASSERT_EQ(out[n - 1], '\n');
  ASSERT_EQ(strncmp(out, "weft: misuse in nnnn", 20), 0);
}

static void misuse_empty(void) { weft__misuse("weft_once_call", "%s", ""); }

TEST(misuse_with_empty_detail) {
  char out[4096];
  capture_abort(misuse_empty, out, sizeof out);
  ASSERT_STR_EQ(out, "weft: misuse in weft_once_call(): \n");
}

/* A stand-in public function, to check that WEFT_CHECK_HANDLE reports the
 * name of the function it is used in and the argument's name. */
static int weft_fake_call(void *handle) {
  WEFT_CHECK_HANDLE(handle);
  return 1;
}

TEST(check_handle_aborts_on_null) {
  ASSERT_ABORTS(weft_fake_call(NULL),
                "weft: misuse in weft_fake_call(): argument 'handle' is NULL\n");
}

TEST(check_handle_passes_non_null) {
  int x;
  ASSERT_EQ(weft_fake_call(&x), 1);
}

static int checked_div(int a, int b) {
  WEFT_ASSERT(b != 0);
  return a / b;
}

TEST(assert_failure_names_expression_and_place) {
  ASSERT_ABORTS(checked_div(1, 0), "weft: internal assertion failed: b != 0 (");
  ASSERT_ABORTS(checked_div(1, 0), "test_assert.c:");
  ASSERT_ABORTS(checked_div(1, 0), ", checked_div)\n");
}

static void assert_line(void) { weft__assert_fail("x < y", "file.c", 42, "fn"); }

TEST(assert_message_format) {
  char out[1024];
  capture_abort(assert_line, out, sizeof out);
  ASSERT_STR_EQ(out, "weft: internal assertion failed: x < y (file.c:42, fn)\n");
}

TEST(assert_passes_and_evaluates_once) {
  int n = 0;
  WEFT_ASSERT(++n == 1);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(checked_div(6, 3), 2);
}

static void dassert_false(void) { WEFT_DASSERT(0 == 1); }

TEST(dassert_only_in_debug_builds) {
#ifdef WEFT_DEBUG
  ASSERT_ABORTS(dassert_false(), "internal assertion failed: 0 == 1");
#else
  dassert_false(); /* compiled out: must not abort */
#endif
}

TEST(deadline_validity) {
  ASSERT(WEFT_DEADLINE_VALID(WEFT_FOREVER));
  ASSERT(WEFT_DEADLINE_VALID(0));
  ASSERT(WEFT_DEADLINE_VALID(INT64_MAX));
  ASSERT(!WEFT_DEADLINE_VALID(-2));
  ASSERT(!WEFT_DEADLINE_VALID(INT64_MIN));
}
