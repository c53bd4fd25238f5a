/*
 * The executor conformance suite: the behaviour every backend (threads now,
 * processes and MPI later) must show through the public API. Each case is
 * a function taking the weft_executor_opts of the backend under test; a
 * file per backend (test_conformance_threads.c, ...) instantiates them with
 * TEST(name) { conf_name(&opts); }.
 *
 * Tasks are registered by name (conf_register_tasks) so that backends which
 * run another process image can find them; arguments and results are plain
 * bytes, never pointers, except in cases a backend can opt out of
 * (shared-memory counters: CONF_SHARED below).
 *
 * Timing: cases use short sleeps (a few ms) to order events and generous
 * deadlines for what must happen; none asserts a speed.
 */
#ifndef WEFT_TESTS_CONFORMANCE_H
#define WEFT_TESTS_CONFORMANCE_H

#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "weft_test.h"

#define CONF_CASE static __attribute__((unused)) void

/* ------------------------------------------------------------ shared state */

/* What tasks and the test share. In anonymous shared memory, so that tasks
 * running in forked workers still update the parent's view. */
typedef struct conf_shared {
  atomic_long ran;          /* tasks that ran */
  atomic_long live;         /* imap: submitted and not yet yielded */
  atomic_long max_live;
  atomic_int gate;          /* blockers wait until this is non-zero */
  atomic_int blocked;       /* blockers currently waiting on gate */
  atomic_long order[4096];  /* ordered runs: order[k] = index of the k-th run */
  atomic_long norder;
  atomic_long after_return; /* map deadline: items that ran after map returned */
  atomic_int map_returned;
} conf_shared;

static conf_shared *conf_sh;

/* Workers that are not forked from the test (MPI ranks, launched apart)
 * share the state through this file instead, mapped by every process
 * before it starts serving (conf_map_shared); NULL: anonymous shared memory. */
static const char *conf_shared_file;

static void conf_map_shared(void) {
  if (conf_sh) return;
  void *p;
  if (conf_shared_file) {
    int fd = open(conf_shared_file, O_RDWR | O_CREAT, 0600);
    ASSERT(fd >= 0);
    ASSERT(ftruncate(fd, sizeof *conf_sh) == 0);
    p = mmap(NULL, sizeof *conf_sh, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
  } else {
    p = mmap(NULL, sizeof *conf_sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  }
  ASSERT(p != MAP_FAILED);
  conf_sh = p;
}

static void conf_setup(void) {
  conf_map_shared();
  memset(conf_sh, 0, sizeof *conf_sh);
}

static void conf_sleep_ms(long ms) { weft_sleep_until(weft_deadline_in_ms(ms)); }

/* Poll cond (an expression) for up to 5 s. */
#define CONF_EVENTUALLY(cond)                                                  \
  do {                                                                         \
    int64_t conf_dl_ = weft_deadline_in_ms(5000);                              \
    while (!(cond) && weft_now_ns() < conf_dl_) conf_sleep_ms(1);              \
    ASSERT(cond);                                                              \
  } while (0)

/* ------------------------------------------------------------------ tasks */

/* Echo the argument back. */
static int t_echo(weft_task_ctx *ctx, const void *arg, size_t len) {
  atomic_fetch_add(&conf_sh->ran, 1);
  return weft_task_return(ctx, arg, len);
}

/* The argument reversed, written through weft_task_return_buf. */
static int t_reverse(weft_task_ctx *ctx, const void *arg, size_t len) {
  unsigned char *out = weft_task_return_buf(ctx, len);
  if (!out) return WEFT_ENOMEM;
  for (size_t i = 0; i < len; i++) out[i] = ((const unsigned char *)arg)[len - 1 - i];
  atomic_fetch_add(&conf_sh->ran, 1);
  return 0;
}

/* arg: uint32 n. Result: n bytes, byte i = (i * 7) & 0xff. */
static int t_big_result(weft_task_ctx *ctx, const void *arg, size_t len) {
  uint32_t n;
  if (len != sizeof n) return weft_task_fail(ctx, WEFT_EINVAL, "len %zu", len);
  memcpy(&n, arg, sizeof n);
  unsigned char *out = weft_task_return_buf(ctx, n);
  if (!out) return WEFT_ENOMEM;
  for (uint32_t i = 0; i < n; i++) out[i] = (unsigned char)(i * 7);
  return 0;
}

/* int64 square. */
static int t_square(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x) return weft_task_fail(ctx, WEFT_EINVAL, "argument of %zu bytes", len);
  memcpy(&x, arg, sizeof x);
  x *= x;
  atomic_fetch_add(&conf_sh->ran, 1);
  return weft_task_return(ctx, &x, sizeof x);
}

/* Fails: arg int32 code; 0 means "return a positive number". */
static int t_fail(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t code;
  (void)len;
  memcpy(&code, arg, sizeof code);
  atomic_fetch_add(&conf_sh->ran, 1);
  if (code == 0) return 3;
  if (code == WEFT_EIO) return WEFT_EIO; /* no message */
  if (code == WEFT_ERANGE)
    return weft_task_fail(ctx, code, "%0300d|end", 7); /* a long message */
  return weft_task_fail(ctx, code, "bad x %d", 7);
}

/* Records its int64 argument in conf_sh->order. */
static int t_record(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  (void)ctx;
  (void)len;
  memcpy(&x, arg, sizeof x);
  long k = atomic_fetch_add(&conf_sh->norder, 1);
  if (k < 4096) atomic_store(&conf_sh->order[k], (long)x);
  atomic_fetch_add(&conf_sh->ran, 1);
  return 0;
}

/* t_record, then a 50 us nap: slower than its submitter. */
static int t_record_slow(weft_task_ctx *ctx, const void *arg, size_t len) {
  int r = t_record(ctx, arg, len);
  weft_sleep_until(weft_deadline_in_ns(50000));
  return r;
}

/* Waits until conf_sh->gate opens. */
static int t_block(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  atomic_fetch_add(&conf_sh->blocked, 1);
  while (!atomic_load(&conf_sh->gate)) conf_sleep_ms(1);
  atomic_fetch_sub(&conf_sh->blocked, 1);
  atomic_fetch_add(&conf_sh->ran, 1);
  return 0;
}

/* int64 arg: 0 blocks like t_block; anything else is recorded. */
static int t_gated(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  memcpy(&x, arg, sizeof x);
  if (x == 0) return t_block(ctx, arg, len);
  return t_record(ctx, arg, len);
}

/* Sleeps arg (int32) ms, then squares it as an int64 result. */
static int t_sleep_square(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t ms;
  (void)len;
  memcpy(&ms, arg, sizeof ms);
  conf_sleep_ms(ms);
  int64_t y = (int64_t)ms * ms;
  atomic_fetch_add(&conf_sh->ran, 1);
  if (atomic_load(&conf_sh->map_returned)) atomic_fetch_add(&conf_sh->after_return, 1);
  return weft_task_return(ctx, &y, sizeof y);
}

/* Map item: int32 in; int32 out = in + 1, except: in == -1 returns a result
 * of the wrong size, in <= -100 fails with code in. */
static int t_map_item(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t x;
  if (len != sizeof x) return WEFT_EINVAL;
  memcpy(&x, arg, sizeof x);
  atomic_fetch_add(&conf_sh->ran, 1);
  if (x == -1) {
    int64_t wide = 1;
    return weft_task_return(ctx, &wide, sizeof wide);
  }
  if (x <= -100) return weft_task_fail(ctx, x, "item %d", x);
  x += 1;
  return weft_task_return(ctx, &x, sizeof x);
}

/* Map item that records (chunk detection): out = (int64) thread ident. */
static int t_map_ident(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  uint64_t id = weft_thread_ident(weft_thread_current());
  return weft_task_return(ctx, &id, sizeof id);
}

static const weft_task T_ECHO = {"conf.echo", t_echo};
static const weft_task T_REVERSE = {"conf.reverse", t_reverse};
static const weft_task T_BIG = {"conf.big_result", t_big_result};
static const weft_task T_SQUARE = {"conf.square", t_square};
static const weft_task T_FAIL = {"conf.fail", t_fail};
static const weft_task T_RECORD = {"conf.record", t_record};
static const weft_task T_BLOCK = {"conf.block", t_block};
static const weft_task T_SLEEP_SQUARE = {"conf.sleep_square", t_sleep_square};
static const weft_task T_MAP_ITEM = {"conf.map_item", t_map_item};
static const weft_task T_MAP_IDENT = {"conf.map_ident", t_map_ident};
static const weft_task T_GATED = {"conf.gated", t_gated};
static const weft_task T_RECORD_SLOW = {"conf.record_slow", t_record_slow};

static void conf_register_tasks(void) {
  const weft_task *all[] = {&T_ECHO,   &T_REVERSE,      &T_BIG,     &T_SQUARE,   &T_FAIL,
                            &T_RECORD, &T_BLOCK, &T_SLEEP_SQUARE, &T_MAP_ITEM, &T_MAP_IDENT,
                            &T_GATED, &T_RECORD_SLOW};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ASSERT_OK(weft_task_register(all[i]));
}

static weft_executor *conf_make(const weft_executor_opts *base, unsigned workers) {
  conf_setup();
  conf_register_tasks();
  weft_executor_opts o = *base;
  o.workers = workers;
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  ASSERT_EQ(weft_executor_workers(ex), workers);
  return ex;
}

/* Open the gate and wait until no blocker is left inside. */
static void conf_open_gate(void) { atomic_store(&conf_sh->gate, 1); }

/* Submit a blocker on each of ex's workers and wait until all block. */
static void conf_block_all(weft_executor *ex, unsigned workers) {
  for (unsigned i = 0; i < workers; i++)
    ASSERT_OK(weft_executor_submit(ex, &T_BLOCK, NULL, 0, NULL));
  CONF_EVENTUALLY(atomic_load(&conf_sh->blocked) == (int)workers);
}

static int64_t conf_result_i64(weft_future *f) {
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(10000), &d, &len));
  ASSERT_EQ(len, sizeof(int64_t));
  int64_t v;
  memcpy(&v, d, sizeof v);
  return v;
}

/* ------------------------------------------------------------------ cases */

/* Result bytes come back exactly: small and large arguments and results,
 * empty ones too. */
CONF_CASE conf_roundtrip(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  weft_future *f;
  const void *d;
  size_t len;

  int64_t x = 12345;
  ASSERT_OK(weft_executor_submit(ex, &T_ECHO, &x, sizeof x, &f));
  ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
  ASSERT_EQ(len, sizeof x);
  ASSERT_EQ(memcmp(d, &x, sizeof x), 0);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  weft_future_release(f);

  /* Empty argument, empty result: non-NULL data, length 0. */
  ASSERT_OK(weft_executor_submit(ex, &T_ECHO, NULL, 0, &f));
  d = NULL;
  len = 99;
  ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
  ASSERT_EQ(len, 0);
  ASSERT_NOT_NULL(d);
  weft_future_release(f);

  /* Arguments around the inline size and far beyond it. */
  size_t sizes[] = {1, 31, 32, 33, 47, 48, 49, 64, 1000, 100000};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 13 + k);
    ASSERT_OK(weft_executor_submit(ex, &T_REVERSE, buf, n, &f));
    memset(buf, 0, n); /* the argument was copied: this must not matter */
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_EQ(len, n);
    for (size_t i = 0; i < n; i++)
      ASSERT_EQ(((const unsigned char *)d)[i], (unsigned char)((n - 1 - i) * 13 + k));
    weft_future_release(f);
    free(buf);
  }

  /* A large result. */
  uint32_t big = 3u << 20;
  ASSERT_OK(weft_executor_submit(ex, &T_BIG, &big, sizeof big, &f));
  ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
  ASSERT_EQ(len, big);
  for (uint32_t i = 0; i < big; i += 4099) ASSERT_EQ(((const unsigned char *)d)[i], (unsigned char)(i * 7));
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* A failing task: its code and message reach the future. */
CONF_CASE conf_fail(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  weft_future *f;
  int32_t code = WEFT_EINVAL;
  ASSERT_OK(weft_executor_submit(ex, &T_FAIL, &code, sizeof code, &f));
  ASSERT_ERR(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_EINVAL);
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_FAILED);
  ASSERT_STR_EQ(weft_future_error_message(f), "bad x 7");
  weft_future_release(f);

  code = WEFT_EIO; /* returned without weft_task_fail: no message */
  ASSERT_OK(weft_executor_submit(ex, &T_FAIL, &code, sizeof code, &f));
  ASSERT_ERR(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_EIO);
  ASSERT_STR_EQ(weft_future_error_message(f), "");
  weft_future_release(f);

  code = 0; /* a positive return is a failure */
  ASSERT_OK(weft_executor_submit(ex, &T_FAIL, &code, sizeof code, &f));
  ASSERT_ERR(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_ETASKFAILED);
  weft_future_release(f);

  code = WEFT_ERANGE; /* a message longer than any inline buffer */
  ASSERT_OK(weft_executor_submit(ex, &T_FAIL, &code, sizeof code, &f));
  ASSERT_ERR(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_ERANGE);
  const char *m = weft_future_error_message(f);
  ASSERT_EQ(strlen(m), 304);
  ASSERT_STR_EQ(m + 299, "7|end");
  weft_future_release(f);

  /* An unknown own code passes through too. */
  code = WEFT_ENOTASK;
  ASSERT_OK(weft_executor_submit(ex, &T_FAIL, &code, sizeof code, &f));
  ASSERT_ERR(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_ENOTASK);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* Fire and forget: every task runs, with no future at all. */
CONF_CASE conf_fire_and_forget(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  for (int64_t i = 0; i < 1000; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, NULL));
  /* Large results nobody keeps. */
  uint32_t big = 100000;
  for (int i = 0; i < 10; i++) ASSERT_OK(weft_executor_submit(ex, &T_BIG, &big, sizeof big, NULL));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 1000);
  weft_executor_destroy(ex);
}

/* submit_many: one call, n futures in order; all or nothing. */
CONF_CASE conf_submit_many(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  enum { N = 1000 };
  int64_t args[N];
  weft_future *fs[N];
  for (int i = 0; i < N; i++) args[i] = i - 500;
  ASSERT_OK(weft_executor_submit_many(ex, &T_SQUARE, args, sizeof args[0], N, fs));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(conf_result_i64(fs[i]), (int64_t)(i - 500) * (i - 500));
    weft_future_release(fs[i]);
  }
  /* Without futures. */
  atomic_store(&conf_sh->ran, 0);
  ASSERT_OK(weft_executor_submit_many(ex, &T_SQUARE, args, sizeof args[0], N, NULL));
  CONF_EVENTUALLY(atomic_load(&conf_sh->ran) == N);
  /* n == 0 is a no-op. */
  ASSERT_OK(weft_executor_submit_many(ex, &T_SQUARE, NULL, 0, 0, NULL));
  /* Large arguments. */
  enum { BIG = 100 };
  unsigned char *big = malloc(BIG * 200);
  for (int i = 0; i < BIG * 200; i++) big[i] = (unsigned char)i;
  weft_future *bf[BIG];
  ASSERT_OK(weft_executor_submit_many(ex, &T_REVERSE, big, 200, BIG, bf));
  for (int i = 0; i < BIG; i++) {
    const void *d;
    size_t len;
    ASSERT_OK(weft_future_result(bf[i], WEFT_FOREVER, &d, &len));
    ASSERT_EQ(len, 200);
    ASSERT_EQ(((const unsigned char *)d)[0], big[i * 200 + 199]);
    weft_future_release(bf[i]);
  }
  free(big);
  /* After shutdown: nothing submitted, outs untouched. */
  ASSERT_OK(weft_executor_shutdown(ex, 0, 0));
  for (int i = 0; i < N; i++) fs[i] = (weft_future *)(uintptr_t)0x5a5a;
  ASSERT_ERR(weft_executor_submit_many(ex, &T_SQUARE, args, sizeof args[0], N, fs), WEFT_ESHUTDOWN);
  for (int i = 0; i < N; i++) ASSERT_PTR_EQ(fs[i], (weft_future *)(uintptr_t)0x5a5a);
  weft_executor_destroy(ex);
}

/* map: ordered results, any chunking. */
CONF_CASE conf_map(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 3);
  enum { N = 1000 };
  int32_t in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = i * 3;
  size_t chunks[] = {0, 1, 7, 100, N, 5 * N};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    memset(out, 0, sizeof out);
    weft_map_opts mo = {.chunksize = chunks[c]};
    ASSERT_OK(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], N, &mo));
    for (int i = 0; i < N; i++) ASSERT_EQ(out[i], i * 3 + 1);
  }
  /* NULL opts, a single item, no items. */
  memset(out, 0, sizeof out);
  ASSERT_OK(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], 1, NULL));
  ASSERT_EQ(out[0], 1);
  ASSERT_OK(weft_executor_map(ex, &T_MAP_ITEM, NULL, 0, NULL, 0, 0, NULL));
  weft_executor_destroy(ex);
}

/* map's automatic chunking: consecutive items in runs handled by one thread;
 * an explicit chunksize of n puts everything on one thread. */
CONF_CASE conf_map_chunking(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  enum { N = 800 };
  uint64_t out[N];
  /* 2 workers, about 4 chunks each: chunks of 100 items. */
  ASSERT_OK(weft_executor_map(ex, &T_MAP_IDENT, NULL, 0, out, sizeof out[0], N, NULL));
  int changes = 0;
  for (int i = 1; i < N; i++) {
    if (out[i] != out[i - 1]) {
      changes++;
      ASSERT_EQ(i % 100, 0); /* threads change only at chunk boundaries */
    }
  }
  ASSERT_LE(changes, 7);
  weft_map_opts mo = {.chunksize = N};
  ASSERT_OK(weft_executor_map(ex, &T_MAP_IDENT, NULL, 0, out, sizeof out[0], N, &mo));
  for (int i = 1; i < N; i++) ASSERT_UEQ(out[i], out[0]);
  weft_executor_destroy(ex);
}

/* map errors: a result of the wrong size, the lowest failing index. */
CONF_CASE conf_map_errors(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  enum { N = 200 };
  int32_t in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = i;
  in[137] = -1; /* wrong size */
  size_t failed = 9999;
  weft_map_opts mo = {.chunksize = 10, .failed_index = &failed};
  ASSERT_ERR(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], N, &mo),
             WEFT_EMSGSIZE);
  ASSERT_EQ(failed, 137);
  ASSERT_EQ(out[136], 137); /* the others still ran */
  ASSERT_EQ(out[199], 200);

  /* Several failures: the lowest index wins, whatever finished first. */
  in[137] = 137;
  in[150] = -101;
  in[40] = -102;
  in[170] = -1;
  failed = 9999;
  ASSERT_ERR(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], N, &mo), -102);
  ASSERT_EQ(failed, 40);
  /* failed_index is optional. */
  mo.failed_index = NULL;
  ASSERT_ERR(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], N, &mo), -102);
  /* Bad deadline. */
  weft_map_opts bad = {.deadline_ns = -5};
  ASSERT_ERR(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], N, &bad),
             WEFT_EINVAL);
  weft_executor_destroy(ex);
}

/* map's deadline: items not started are cancelled, running ones are waited
 * for, and nothing writes to out after the call returns. */
CONF_CASE conf_map_deadline(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  enum { N = 100 };
  int32_t in[N];
  int64_t out[N];
  for (int i = 0; i < N; i++) in[i] = 20; /* 20 ms each: 1 s in all on 2 workers */
  memset(out, 0, sizeof out);
  weft_map_opts mo = {.chunksize = 1, .deadline_ns = weft_deadline_in_ms(100)};
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_executor_map(ex, &T_SLEEP_SQUARE, in, sizeof in[0], out, sizeof out[0], N, &mo),
             WEFT_ETIMEDOUT);
  atomic_store(&conf_sh->map_returned, 1);
  int64_t took = weft_now_ns() - t0;
  ASSERT_LT(took, 600 * 1000000ll); /* not the whole map */
  long ran = atomic_load(&conf_sh->ran);
  ASSERT_GT(ran, 0);
  ASSERT_LT(ran, N);
  int64_t snap[N];
  memcpy(snap, out, sizeof out);
  conf_sleep_ms(100);
  ASSERT_EQ(memcmp(snap, out, sizeof out), 0);
  ASSERT_EQ(atomic_load(&conf_sh->after_return), 0);
  ASSERT_EQ(atomic_load(&conf_sh->ran), ran);
  /* Two chunks of 50 items, both running at the deadline: each stops
   * before its next item. */
  atomic_store(&conf_sh->map_returned, 0);
  atomic_store(&conf_sh->ran, 0);
  mo.chunksize = 50;
  mo.deadline_ns = weft_deadline_in_ms(100);
  t0 = weft_now_ns();
  ASSERT_ERR(weft_executor_map(ex, &T_SLEEP_SQUARE, in, sizeof in[0], out, sizeof out[0], N, &mo),
             WEFT_ETIMEDOUT);
  atomic_store(&conf_sh->map_returned, 1);
  ASSERT_LT(weft_now_ns() - t0, 600 * 1000000ll);
  ran = atomic_load(&conf_sh->ran);
  ASSERT_LT(ran, 40);
  conf_sleep_ms(60);
  ASSERT_EQ(atomic_load(&conf_sh->ran), ran);
  ASSERT_EQ(atomic_load(&conf_sh->after_return), 0);
  /* The executor still works. */
  in[0] = 3;
  mo.deadline_ns = 0;
  ASSERT_OK(weft_executor_map(ex, &T_SLEEP_SQUARE, in, sizeof in[0], out, sizeof out[0], 1, &mo));
  ASSERT_EQ(out[0], 9);
  weft_executor_destroy(ex);
}

/* An imap source over int64 0..limit-1 (limit < 0: endless). */
typedef struct conf_src {
  int64_t next, limit, fail_at;
  int64_t cur;
} conf_src;

static int conf_source(void *ud, const void **arg, size_t *len) {
  conf_src *s = ud;
  if (s->fail_at >= 0 && s->next == s->fail_at) return WEFT_EIO;
  if (s->limit >= 0 && s->next >= s->limit) return WEFT_EEMPTY;
  s->cur = s->next++;
  *arg = &s->cur;
  *len = sizeof s->cur;
  long live = atomic_fetch_add(&conf_sh->live, 1) + 1;
  long mx = atomic_load(&conf_sh->max_live);
  while (live > mx && !atomic_compare_exchange_weak(&conf_sh->max_live, &mx, live)) {
  }
  return 0;
}

/* imap in input order and in completion order. */
CONF_CASE conf_imap(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 3);
  for (int unordered = 0; unordered < 2; unordered++) {
    conf_src src = {0, 500, -1, 0};
    weft_imap_opts io = {.unordered = unordered, .max_in_flight = 16};
    weft_imap *it;
    ASSERT_OK(weft_imap_create(&it, ex, &T_SQUARE, conf_source, &src, &io));
    static bool seen[500];
    memset(seen, 0, sizeof seen);
    weft_future *f;
    for (int i = 0; i < 500; i++) {
      ASSERT_OK(weft_imap_next(it, weft_deadline_in_ms(10000), &f));
      atomic_fetch_sub(&conf_sh->live, 1);
      int64_t v = conf_result_i64(f);
      weft_future_release(f);
      if (!unordered) {
        ASSERT_EQ(v, (int64_t)i * i);
      } else {
        int64_t r = 0;
        while (r * r < v) r++;
        ASSERT_EQ(r * r, v);
        ASSERT(!seen[r]);
        seen[r] = true;
      }
    }
    ASSERT_ERR(weft_imap_next(it, 0, &f), WEFT_EEMPTY);
    ASSERT_ERR(weft_imap_next(it, 0, &f), WEFT_EEMPTY);
    ASSERT_LE(atomic_load(&conf_sh->max_live), 16);
    weft_imap_destroy(it);
  }
  /* A source that fails: the results before it, then its error. */
  conf_src src = {0, -1, 20, 0};
  weft_imap *it;
  ASSERT_OK(weft_imap_create(&it, ex, &T_SQUARE, conf_source, &src, NULL));
  weft_future *f;
  for (int i = 0; i < 20; i++) {
    ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &f));
    ASSERT_EQ(conf_result_i64(f), (int64_t)i * i);
    weft_future_release(f);
  }
  ASSERT_ERR(weft_imap_next(it, WEFT_FOREVER, &f), WEFT_EIO);
  weft_imap_destroy(it);
  weft_executor_destroy(ex);
}

/* An endless source: memory stays bounded (never more than max_in_flight
 * tasks exist), and destroy cancels what is left. */
CONF_CASE conf_imap_endless(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  for (int unordered = 0; unordered < 2; unordered++) {
    atomic_store(&conf_sh->live, 0);
    atomic_store(&conf_sh->max_live, 0);
    conf_src src = {0, -1, -1, 0};
    weft_imap_opts io = {.unordered = unordered, .max_in_flight = 8};
    weft_imap *it;
    ASSERT_OK(weft_imap_create(&it, ex, &T_SQUARE, conf_source, &src, &io));
    for (int i = 0; i < 20000; i++) {
      weft_future *f;
      ASSERT_OK(weft_imap_next(it, weft_deadline_in_ms(10000), &f));
      atomic_fetch_sub(&conf_sh->live, 1);
      weft_future_release(f);
      if (i % 1000 == 0) {
        weft_executor_stats st;
        weft_executor_stats_get(ex, &st);
        /* A snapshot: a worker may not have counted the task it just
         * finished when the next one is submitted. */
        ASSERT_LE(st.queued + st.running, 8 + 2);
      }
    }
    ASSERT_LE(atomic_load(&conf_sh->max_live), 8);
    ASSERT_GE(src.next, 20000);
    ASSERT_LE(src.next, 20000 + 8);
    weft_imap_destroy(it);
  }
  /* With the default bound (2 x workers). */
  atomic_store(&conf_sh->live, 0);
  atomic_store(&conf_sh->max_live, 0);
  conf_src src = {0, -1, -1, 0};
  weft_imap *it;
  ASSERT_OK(weft_imap_create(&it, ex, &T_SQUARE, conf_source, &src, NULL));
  for (int i = 0; i < 1000; i++) {
    weft_future *f;
    ASSERT_OK(weft_imap_next(it, weft_deadline_in_ms(10000), &f));
    atomic_fetch_sub(&conf_sh->live, 1);
    weft_future_release(f);
  }
  ASSERT_LE(atomic_load(&conf_sh->max_live), 4);
  weft_imap_destroy(it);
  weft_executor_destroy(ex);
}

/* imap: a deadline on next, and destroy with tasks still running. */
CONF_CASE conf_imap_deadline(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 1);
  conf_block_all(ex, 1);
  conf_src src = {0, 10, -1, 0};
  weft_future *f;
  for (int unordered = 0; unordered < 2; unordered++) {
    weft_imap_opts io = {.unordered = unordered};
    weft_imap *it;
    ASSERT_OK(weft_imap_create(&it, ex, &T_SQUARE, conf_source, &src, &io));
    ASSERT_ERR(weft_imap_next(it, 0, &f), WEFT_ETIMEDOUT);
    int64_t t0 = weft_now_ns();
    ASSERT_ERR(weft_imap_next(it, weft_deadline_in_ms(20), &f), WEFT_ETIMEDOUT);
    ASSERT_GE(weft_now_ns() - t0, 19 * 1000000ll);
    ASSERT_ERR(weft_imap_next(it, -7, &f), WEFT_EINVAL);
    weft_imap_destroy(it); /* cancels the two queued tasks */
  }
  conf_open_gate();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 1); /* only the blocker */
  weft_executor_destroy(ex);
}

/* Cancelling futures that have not started. */
CONF_CASE conf_cancel_pending(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 1);
  conf_block_all(ex, 1);
  weft_future *fs[10];
  for (int64_t i = 0; i < 10; i++) ASSERT_OK(weft_executor_submit(ex, &T_RECORD, &i, sizeof i, &fs[i]));
  for (int i = 0; i < 10; i += 2) {
    ASSERT_OK(weft_future_cancel(fs[i]));
    ASSERT_OK(weft_future_cancel(fs[i])); /* again: still 0 */
    ASSERT_EQ(weft_future_state_get(fs[i]), WEFT_FUTURE_CANCELLED);
  }
  conf_open_gate();
  for (int i = 0; i < 10; i++) {
    int r = weft_future_result(fs[i], weft_deadline_in_ms(10000), NULL, NULL);
    ASSERT_ERR(r, i % 2 ? 0 : WEFT_ECANCELED);
    if (i % 2) ASSERT_ERR(weft_future_cancel(fs[i]), WEFT_EALREADY);
    weft_future_release(fs[i]);
  }
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 1 + 5);
  /* The five that ran did so in submission order (one worker). */
  ASSERT_EQ(atomic_load(&conf_sh->norder), 5);
  for (int k = 0; k < 5; k++) ASSERT_EQ(atomic_load(&conf_sh->order[k]), 2 * k + 1);
  weft_executor_destroy(ex);
}

/* One worker runs outside submissions in FIFO order, as Python's
 * ThreadPoolExecutor(max_workers=1) does. */
CONF_CASE conf_fifo_one_worker(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 1);
  /* The worker is slower than the submitter, so new submissions arrive
   * while older ones still wait: they must not overtake them. */
  for (int64_t i = 0; i < 300; i++) {
    ASSERT_OK(weft_executor_submit(ex, &T_RECORD_SLOW, &i, sizeof i, NULL));
    if (i % 10 == 0) weft_sleep_until(weft_deadline_in_ns(100000));
  }
  int64_t more[100];
  for (int i = 0; i < 100; i++) more[i] = 300 + i;
  ASSERT_OK(weft_executor_submit_many(ex, &T_RECORD, more, sizeof more[0], 100, NULL));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->norder), 400);
  for (int k = 0; k < 400; k++) ASSERT_EQ(atomic_load(&conf_sh->order[k]), k);
  weft_executor_destroy(ex);
}

/* shutdown(WAIT) runs everything queued first. */
CONF_CASE conf_shutdown_wait(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  int32_t ms = 2;
  weft_future *fs[20];
  for (int i = 0; i < 20; i++) ASSERT_OK(weft_executor_submit(ex, &T_SLEEP_SQUARE, &ms, sizeof ms, &fs[i]));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 20);
  for (int i = 0; i < 20; i++) {
    ASSERT(weft_future_done(fs[i]));
    ASSERT_EQ(conf_result_i64(fs[i]), 4);
    weft_future_release(fs[i]);
  }
  /* Again: nothing left to wait for. */
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, 0));
  ASSERT_ERR(weft_executor_shutdown(ex, 0, -3), WEFT_EINVAL);
  weft_executor_destroy(ex);
}

/* shutdown(CANCEL_PENDING): what has not started is cancelled at once. */
CONF_CASE conf_shutdown_cancel(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 1);
  conf_block_all(ex, 1);
  weft_future *fs[10];
  for (int64_t i = 0; i < 10; i++) ASSERT_OK(weft_executor_submit(ex, &T_RECORD, &i, sizeof i, &fs[i]));
  int64_t more[5] = {1, 2, 3, 4, 5};
  weft_future *ms[5];
  ASSERT_OK(weft_executor_submit_many(ex, &T_RECORD, more, sizeof more[0], 5, ms));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL_PENDING, 0));
  for (int i = 0; i < 10; i++) ASSERT_EQ(weft_future_state_get(fs[i]), WEFT_FUTURE_CANCELLED);
  for (int i = 0; i < 5; i++) ASSERT_EQ(weft_future_state_get(ms[i]), WEFT_FUTURE_CANCELLED);
  conf_open_gate();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 1);
  for (int i = 0; i < 10; i++) weft_future_release(fs[i]);
  for (int i = 0; i < 5; i++) weft_future_release(ms[i]);
  weft_executor_destroy(ex);
}

/* shutdown(CANCEL_PENDING) while a submit_many batch is under way: the
 * items not started are cancelled, also those queued behind the running
 * one in the same batch. */
CONF_CASE conf_shutdown_cancel_batch(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 1);
  enum { N = 40 };
  int64_t args[N];
  weft_future *fs[N];
  for (int i = 0; i < N; i++) args[i] = i; /* item 0 blocks */
  ASSERT_OK(weft_executor_submit_many(ex, &T_GATED, args, sizeof args[0], N, fs));
  CONF_EVENTUALLY(atomic_load(&conf_sh->blocked) == 1);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL_PENDING, 0));
  conf_open_gate();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(weft_future_state_get(fs[0]), WEFT_FUTURE_DONE);
  for (int i = 1; i < N; i++) ASSERT_EQ(weft_future_state_get(fs[i]), WEFT_FUTURE_CANCELLED);
  ASSERT_EQ(atomic_load(&conf_sh->ran), 1);
  for (int i = 0; i < N; i++) weft_future_release(fs[i]);
  weft_executor_destroy(ex);
}

/* shutdown(WAIT) with a deadline: ETIMEDOUT while a task runs; call again. */
CONF_CASE conf_shutdown_deadline(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  conf_block_all(ex, 1);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(50)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 45 * 1000000ll);
  ASSERT_ERR(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_executor_submit(ex, &T_ECHO, NULL, 0, NULL), WEFT_ESHUTDOWN);
  conf_open_gate();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  weft_executor_destroy(ex);
}

/* After shutdown every way in says WEFT_ESHUTDOWN, and nothing runs. */
CONF_CASE conf_submit_after_shutdown(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  ASSERT_OK(weft_executor_shutdown(ex, 0, 0));
  weft_future *f = (weft_future *)(uintptr_t)0x77;
  int64_t x = 3;
  ASSERT_ERR(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f), WEFT_ESHUTDOWN);
  ASSERT_PTR_EQ(f, (weft_future *)(uintptr_t)0x77);
  ASSERT_ERR(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, NULL), WEFT_ESHUTDOWN);
  ASSERT_ERR(weft_executor_submit_many(ex, &T_SQUARE, &x, sizeof x, 1, NULL), WEFT_ESHUTDOWN);
  int64_t out;
  ASSERT_ERR(weft_executor_map(ex, &T_SQUARE, &x, sizeof x, &out, sizeof out, 1, NULL),
             WEFT_ESHUTDOWN);
  weft_imap *it;
  conf_src src = {0, 10, -1, 0};
  ASSERT_ERR(weft_imap_create(&it, ex, &T_SQUARE, conf_source, &src, NULL), WEFT_ESHUTDOWN);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 0);
  weft_executor_destroy(ex);
}

/* on_done callbacks that submit more work: a chain of 200. */
typedef struct conf_chain {
  weft_executor *ex;
  atomic_int left;
  atomic_int done;
  atomic_int errors;
} conf_chain;

static void conf_chain_cb(weft_future *f, void *ud) {
  conf_chain *c = ud;
  if (weft_future_state_get(f) != WEFT_FUTURE_DONE) atomic_fetch_add(&c->errors, 1);
  if (atomic_fetch_sub(&c->left, 1) <= 1) {
    atomic_store(&c->done, 1);
    return;
  }
  int64_t x = atomic_load(&c->left);
  weft_future *nf;
  if (weft_executor_submit(c->ex, &T_SQUARE, &x, sizeof x, &nf) != 0) {
    atomic_fetch_add(&c->errors, 1);
    atomic_store(&c->done, 1);
    return;
  }
  if (weft_future_on_done(nf, conf_chain_cb, c) != 0) atomic_fetch_add(&c->errors, 1);
  weft_future_release(nf);
}

CONF_CASE conf_callbacks_submit(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  static conf_chain c;
  c.ex = ex;
  atomic_store(&c.left, 200);
  atomic_store(&c.done, 0);
  atomic_store(&c.errors, 0);
  int64_t x = 1;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f));
  ASSERT_OK(weft_future_on_done(f, conf_chain_cb, &c));
  weft_future_release(f);
  CONF_EVENTUALLY(atomic_load(&c.done));
  ASSERT_EQ(atomic_load(&c.errors), 0);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  ASSERT_EQ(atomic_load(&conf_sh->ran), 200);
  weft_executor_destroy(ex);
}

/* weft_wait and as_completed over executor futures. */
CONF_CASE conf_wait_as_completed(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  enum { N = 10 };
  weft_future *fs[N];
  for (int i = 0; i < N; i++) {
    int32_t ms = (N - i) * 3;
    ASSERT_OK(weft_executor_submit(ex, &T_SLEEP_SQUARE, &ms, sizeof ms, &fs[i]));
  }
  size_t nd = 0;
  ASSERT_OK(weft_wait(fs, N, WEFT_FIRST_COMPLETED, weft_deadline_in_ms(10000), &nd));
  ASSERT_GE(nd, 1);
  ASSERT_OK(weft_wait(fs, N, WEFT_ALL_COMPLETED, weft_deadline_in_ms(10000), &nd));
  ASSERT_EQ(nd, N);
  weft_as_completed *it;
  ASSERT_OK(weft_as_completed_create(&it, fs, N));
  bool seen[N] = {0};
  for (int k = 0; k < N; k++) {
    weft_future *f;
    ASSERT_OK(weft_as_completed_next(it, weft_deadline_in_ms(10000), &f));
    int i = 0;
    while (fs[i] != f) i++;
    ASSERT(!seen[i]);
    seen[i] = true;
  }
  weft_future *f;
  ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_EEMPTY);
  weft_as_completed_destroy(it);

  /* as_completed while they are still running. */
  weft_future *gs[N];
  for (int i = 0; i < N; i++) {
    int32_t ms = (i % 3) * 5;
    ASSERT_OK(weft_executor_submit(ex, &T_SLEEP_SQUARE, &ms, sizeof ms, &gs[i]));
  }
  ASSERT_OK(weft_as_completed_create(&it, gs, N));
  for (int k = 0; k < N; k++) {
    ASSERT_OK(weft_as_completed_next(it, weft_deadline_in_ms(10000), &f));
    ASSERT(weft_future_done(f));
  }
  weft_as_completed_destroy(it);
  for (int i = 0; i < N; i++) {
    weft_future_release(fs[i]);
    weft_future_release(gs[i]);
  }
  weft_executor_destroy(ex);
}

/* The stats: queued, running, completed. */
CONF_CASE conf_stats(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 1);
  weft_executor_stats st;
  weft_executor_stats_get(ex, &st);
  ASSERT_UEQ(st.queued, 0);
  ASSERT_UEQ(st.running, 0);
  ASSERT_UEQ(st.completed, 0);
  conf_block_all(ex, 1);
  for (int64_t i = 0; i < 5; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, NULL));
  weft_executor_stats_get(ex, &st);
  ASSERT_UEQ(st.running, 1);
  ASSERT_UEQ(st.queued, 5);
  ASSERT_UEQ(st.completed, 0);
  conf_open_gate();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  weft_executor_stats_get(ex, &st);
  ASSERT_UEQ(st.queued, 0);
  ASSERT_UEQ(st.running, 0);
  ASSERT_UEQ(st.completed, 6);
  weft_executor_destroy(ex);
}

/* The eventfd counts completions. */
CONF_CASE conf_fd(const weft_executor_opts *o) {
  weft_executor *ex = conf_make(o, 2);
  int fd, fd2;
  ASSERT_OK(weft_executor_fd(ex, &fd));
  ASSERT_OK(weft_executor_fd(ex, &fd2));
  ASSERT_EQ(fd, fd2);
  struct pollfd p = {fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 0), 0);
  weft_future *fs[3];
  for (int64_t i = 0; i < 3; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, &fs[i]));
  ASSERT_OK(weft_wait(fs, 3, WEFT_ALL_COMPLETED, weft_deadline_in_ms(10000), NULL));
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  uint64_t total = 0, v;
  while (total < 3) {
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    ASSERT_EQ(read(fd, &v, sizeof v), (ssize_t)sizeof v);
    total += v;
  }
  ASSERT_UEQ(total, 3);
  ASSERT_EQ(poll(&p, 1, 20), 0); /* read resets it */
  for (int i = 0; i < 3; i++) weft_future_release(fs[i]);
  /* A map counts its items. */
  int32_t in[10] = {0}, out[10];
  ASSERT_OK(weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], 10, NULL));
  total = 0;
  while (total < 10) {
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    ASSERT_EQ(read(fd, &v, sizeof v), (ssize_t)sizeof v);
    total += v;
  }
  ASSERT_UEQ(total, 10);
  weft_executor_destroy(ex); /* closes fd */
}

#endif
