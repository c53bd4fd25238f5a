/*
 * Small jobs: a submit with a future and an argument of at most 8 bytes
 * keeps its job inside the future's result area on the thread backend.
 * The task's result overwrites that area, so these tests check that the
 * argument reaches the task intact whatever the task writes, that cancel
 * and shutdown of queued small jobs end each future exactly once, and
 * that sizes just past the limit take the ordinary path.
 */
#define _GNU_SOURCE
#include <string.h>

#include "weft_test.h"
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/thread.h>

WEFT_TEST_TIMEOUT(30)

/* Returns `want` bytes, each the argument's byte sum plus its index: the
 * result is written over the bytes where the job was kept. */
static int echo_fn(weft_task_ctx *ctx, const void *arg, size_t len) {
  size_t want = len ? ((const unsigned char *)arg)[0] : 0;
  unsigned char *out = weft_task_return_buf(ctx, want);
  if (want && !out) return WEFT_ENOMEM;
  /* Scribble over the result first: an argument that still lived where
   * the result goes would be corrupted before it is read below. */
  memset(out, 0xee, want);
  unsigned sum = 0;
  for (size_t i = 0; i < len; i++) sum += ((const unsigned char *)arg)[i];
  for (size_t i = 0; i < want; i++) out[i] = (unsigned char)(sum + i);
  return 0;
}
static const weft_task echo_task = {"test.small_jobs.echo", echo_fn};

static weft_executor *pool(unsigned n) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = n};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  return ex;
}

TEST(argument_intact_under_any_result_size) {
  weft_executor *ex = pool(2);
  enum { N = 64 * 10 };
  static weft_future *fs[N];
  static unsigned char args[N][9];
  size_t lens[N];
  for (int i = 0; i < N; i++) {
    lens[i] = 1 + (size_t)(i % 9); /* 1..9 bytes: 9 takes the ordinary path */
    args[i][0] = (unsigned char)(i % 64); /* result size 0..63 */
    for (size_t k = 1; k < lens[i]; k++) args[i][k] = (unsigned char)(i * 7 + k);
    ASSERT_OK(weft_executor_submit(ex, &echo_task, args[i], lens[i], &fs[i]));
  }
  for (int i = 0; i < N; i++) {
    const void *data;
    size_t len;
    ASSERT_OK(weft_future_result(fs[i], WEFT_FOREVER, &data, &len));
    unsigned sum = 0;
    for (size_t k = 0; k < lens[i]; k++) sum += args[i][k];
    ASSERT_EQ(len, (size_t)(i % 64));
    for (size_t k = 0; k < len; k++)
      ASSERT_EQ(((const unsigned char *)data)[k], (unsigned char)(sum + k));
    weft_future_release(fs[i]);
  }
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER));
  weft_executor_destroy(ex);
}

static weft_event gate;
static int gated_fn(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  weft_event_wait(&gate, WEFT_FOREVER);
  return 0;
}
static const weft_task gated_task = {"test.small_jobs.gated", gated_fn};

static int ends;
static void count_end(weft_future *f, void *ud) {
  (void)f;
  (void)ud;
  __atomic_add_fetch(&ends, 1, __ATOMIC_RELAXED);
}

/* Queued small jobs cancelled by their caller, then the rest cancelled by
 * a shutdown: every future ends once, and the caller may drop its
 * reference while the job is still queued (the executor's keeps the job's
 * memory alive). */
TEST(cancel_and_shutdown_of_queued_small_jobs) {
  ASSERT_OK(weft_event_init(&gate, 0));
  weft_executor *ex = pool(1);
  enum { N = 200 };
  weft_future *fs[N];
  uint64_t x = 42;
  for (int i = 0; i < N; i++) {
    ASSERT_OK(weft_executor_submit(ex, &gated_task, &x, sizeof x, &fs[i]));
    ASSERT_OK(weft_future_on_done(fs[i], count_end, NULL));
  }
  int cancelled = 0;
  for (int i = 1; i < N; i += 2) cancelled += weft_future_cancel(fs[i]) == 0;
  ASSERT_GE(cancelled, N / 2 - 1); /* the one running cannot be */
  for (int i = 2; i < N; i += 4) {
    weft_future_release(fs[i]); /* dropped while queued */
    fs[i] = NULL;
  }
  weft_event_set(&gate);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT | WEFT_SHUTDOWN_CANCEL_PENDING,
                                   WEFT_FOREVER));
  for (int i = 0; i < N; i++) {
    if (!fs[i]) continue;
    ASSERT(weft_future_done(fs[i]));
    weft_future_release(fs[i]);
  }
  ASSERT_EQ(__atomic_load_n(&ends, __ATOMIC_RELAXED), N);
  weft_executor_destroy(ex);
  weft_event_fini(&gate);
}
