/*
 * The conformance suite (conformance.h) on the thread backend, plus what
 * only a thread pool can show: nested waits on futures passed by pointer,
 * worker hooks and names, work stealing, parking, misuse from a worker.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "conformance.h"
#include "executor/executor_impl.h"

WEFT_TEST_TIMEOUT(30)

static const weft_executor_opts threads = {.kind = WEFT_EXECUTOR_THREADS, .name = "conf"};

TEST(roundtrip) { conf_roundtrip(&threads); }
TEST(task_fails) { conf_fail(&threads); }
TEST(fire_and_forget) { conf_fire_and_forget(&threads); }
TEST(submit_many) { conf_submit_many(&threads); }
TEST(map) { conf_map(&threads); }
TEST(map_chunking) { conf_map_chunking(&threads); }
TEST(map_errors) { conf_map_errors(&threads); }
TEST(map_deadline) { conf_map_deadline(&threads); }
TEST(imap) { conf_imap(&threads); }
TEST(imap_endless) { conf_imap_endless(&threads); }
TEST(imap_deadline) { conf_imap_deadline(&threads); }
TEST(cancel_pending) { conf_cancel_pending(&threads); }
TEST(fifo_one_worker) { conf_fifo_one_worker(&threads); }
TEST(shutdown_wait) { conf_shutdown_wait(&threads); }
TEST(shutdown_cancel) { conf_shutdown_cancel(&threads); }
TEST(shutdown_cancel_batch) { conf_shutdown_cancel_batch(&threads); }
TEST(shutdown_deadline) { conf_shutdown_deadline(&threads); }
TEST(submit_after_shutdown) { conf_submit_after_shutdown(&threads); }
TEST(callbacks_submit) { conf_callbacks_submit(&threads); }
TEST(wait_as_completed) { conf_wait_as_completed(&threads); }
TEST(stats) { conf_stats(&threads); }
TEST(fd) { conf_fd(&threads); }

/* ------------------------------------------------- thread backend only */

TEST(create_options) {
  weft_executor *ex;
  weft_executor_opts o = {0};
  o.kind = WEFT_EXECUTOR_MPI;
  ASSERT_ERR(weft_executor_create(&ex, &o), WEFT_ENOTSUP);
  o.kind = (weft_executor_kind)7;
  ASSERT_ERR(weft_executor_create(&ex, &o), WEFT_EINVAL);
  o.kind = WEFT_EXECUTOR_THREADS;
  o.workers = 4097;
  ASSERT_ERR(weft_executor_create(&ex, &o), WEFT_EINVAL);
  ASSERT_OK(weft_executor_create(&ex, NULL));
  ASSERT_EQ(weft_executor_workers(ex), (unsigned)weft_cpu_count());
  weft_executor_destroy(ex);
  weft_executor_destroy(NULL);
  o.workers = 64;
  ASSERT_OK(weft_executor_create(&ex, &o));
  ASSERT_EQ(weft_executor_workers(ex), 64);
  weft_executor_destroy(ex);
}

/* Initializer and finalizer run once on each worker; workers are named
 * "<name>-<i>". */
static atomic_int inits, finis;
static void on_init(void *ud) {
  ASSERT_PTR_EQ(ud, &inits);
  atomic_fetch_add(&inits, 1);
}
static void on_fini(void *ud) {
  ASSERT_PTR_EQ(ud, &inits);
  atomic_fetch_add(&finis, 1);
}
static int t_name(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  const char *n = weft_thread_name(weft_thread_current());
  return weft_task_return(ctx, n, strlen(n) + 1);
}

TEST(hooks_and_names) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 3, .name = "hook",
                          .initializer = on_init, .finalizer = on_fini, .ud = &inits};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  weft_task t = {NULL, t_name};
  weft_future *fs[30];
  for (int i = 0; i < 30; i++) ASSERT_OK(weft_executor_submit(ex, &t, NULL, 0, &fs[i]));
  for (int i = 0; i < 30; i++) {
    const void *d;
    ASSERT_OK(weft_future_result(fs[i], WEFT_FOREVER, &d, NULL));
    const char *n = d;
    ASSERT(strcmp(n, "hook-0") == 0 || strcmp(n, "hook-1") == 0 || strcmp(n, "hook-2") == 0);
    weft_future_release(fs[i]);
  }
  weft_executor_destroy(ex);
  ASSERT_EQ(atomic_load(&inits), 3);
  ASSERT_EQ(atomic_load(&finis), 3);
  /* The default prefix. */
  o.name = NULL;
  o.workers = 1;
  ASSERT_OK(weft_executor_create(&ex, &o));
  ASSERT_OK(weft_executor_submit(ex, &t, NULL, 0, &fs[0]));
  const void *d;
  ASSERT_OK(weft_future_result(fs[0], WEFT_FOREVER, &d, NULL));
  ASSERT_STR_EQ(d, "weft-pool-0");
  weft_future_release(fs[0]);
  weft_executor_destroy(ex);
}

/* Nested waits: a task that waits for a task of its own pool. */
typedef struct nest_arg {
  weft_executor *ex;
  int depth;
} nest_arg;

static int t_nest(weft_task_ctx *ctx, const void *arg, size_t len) {
  nest_arg a;
  ASSERT_EQ(len, sizeof a);
  memcpy(&a, arg, sizeof a);
  if (a.depth == 0) {
    int64_t one = 1;
    return weft_task_return(ctx, &one, sizeof one);
  }
  nest_arg b = {a.ex, a.depth - 1};
  weft_task t = {NULL, t_nest};
  weft_future *f[2];
  for (int i = 0; i < 2; i++) {
    int r = weft_executor_submit(a.ex, &t, &b, sizeof b, &f[i]);
    if (r) return r;
  }
  int64_t sum = 0;
  for (int i = 0; i < 2; i++) {
    const void *d;
    int r = weft_future_result(f[i], WEFT_FOREVER, &d, NULL);
    if (r) return r;
    int64_t v;
    memcpy(&v, d, sizeof v);
    sum += v;
    weft_future_release(f[i]);
  }
  return weft_task_return(ctx, &sum, sizeof sum);
}

TEST(nested_wait_one_worker) {
  for (unsigned workers = 1; workers <= 2; workers++) {
    weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = workers};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &o));
    nest_arg a = {ex, 8}; /* a binary tree of 511 tasks, each waiting on two */
    weft_task t = {NULL, t_nest};
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, &t, &a, sizeof a, &f));
    const void *d;
    ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(10000), &d, NULL));
    int64_t v;
    memcpy(&v, d, sizeof v);
    ASSERT_EQ(v, 256);
    weft_future_release(f);
    weft_executor_destroy(ex);
  }
}

/* A task waits on a future that is completed from outside, while the only
 * worker must also run work submitted after it began to wait: the parked
 * worker wakes for new work as well as for its future. */
static weft_future *outer_future;
static atomic_int waiter_started;
static int t_wait_outer(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  atomic_store(&waiter_started, 1);
  int r = weft_future_wait(outer_future, weft_deadline_in_ms(10000));
  if (r) return r;
  int64_t ok = 42;
  return weft_task_return(ctx, &ok, sizeof ok);
}

TEST(nested_wait_wakes_for_new_work) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  ASSERT_OK(weft_future_create(&outer_future));
  weft_task tw = {NULL, t_wait_outer};
  weft_future *fw;
  ASSERT_OK(weft_executor_submit(ex, &tw, NULL, 0, &fw));
  while (!atomic_load(&waiter_started)) weft_sleep_until(weft_deadline_in_ms(1));
  weft_sleep_until(weft_deadline_in_ms(20)); /* let it park */
  for (int round = 0; round < 20; round++) {
    int64_t x = round;
    weft_future *f;
    weft_task ts = {NULL, t_square};
    if (!conf_sh) conf_setup();
    ASSERT_OK(weft_executor_submit(ex, &ts, &x, sizeof x, &f));
    ASSERT_EQ(conf_result_i64(f), x * x); /* ran while the worker waits */
    weft_future_release(f);
    if (round % 5 == 4) weft_sleep_until(weft_deadline_in_ms(5));
  }
  ASSERT(!weft_future_done(fw));
  ASSERT_OK(weft_future_set_result(outer_future, NULL, 0));
  ASSERT_EQ(conf_result_i64(fw), 42);
  weft_future_release(fw);
  weft_future_release(outer_future);
  weft_executor_destroy(ex);
}

/* map and submit_many from inside a task, with one worker. */
static int t_inner_map(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_executor *ex;
  (void)len;
  memcpy(&ex, arg, sizeof ex);
  int32_t in[50], out[50];
  for (int i = 0; i < 50; i++) in[i] = i;
  weft_map_opts mo = {.chunksize = 3};
  int r = weft_executor_map(ex, &T_MAP_ITEM, in, sizeof in[0], out, sizeof out[0], 50, &mo);
  if (r) return r;
  int64_t sum = 0;
  for (int i = 0; i < 50; i++) sum += out[i];
  return weft_task_return(ctx, &sum, sizeof sum);
}

TEST(nested_map) {
  conf_setup();
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  weft_task t = {NULL, t_inner_map};
  weft_future *f[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_executor_submit(ex, &t, &ex, sizeof ex, &f[i]));
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(conf_result_i64(f[i]), 50 * 51 / 2);
    weft_future_release(f[i]);
  }
  weft_executor_destroy(ex);
}

/* Items of one submit_many batch that wait on later items of the same
 * batch: the later items run in the wait, even on one worker. */
static weft_future *_Atomic batch_futs[64];
static int t_wait_next(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t i;
  (void)len;
  memcpy(&i, arg, sizeof i);
  int64_t v = i;
  if (i < 63) {
    weft_future *next;
    while (!(next = atomic_load(&batch_futs[i + 1]))) weft_sleep_until(weft_deadline_in_ms(1));
    const void *d;
    int r = weft_future_result(next, weft_deadline_in_ms(10000), &d, NULL);
    if (r) return r;
    int64_t w;
    memcpy(&w, d, sizeof w);
    v += w;
  }
  return weft_task_return(ctx, &v, sizeof v);
}

TEST(nested_wait_in_batch) {
  conf_setup();
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  int32_t args[64];
  weft_future *fs[64];
  for (int i = 0; i < 64; i++) args[i] = i;
  weft_task t = {NULL, t_wait_next};
  ASSERT_OK(weft_executor_submit_many(ex, &t, args, sizeof args[0], 64, fs));
  for (int i = 0; i < 64; i++) atomic_store(&batch_futs[i], fs[i]);
  ASSERT_EQ(conf_result_i64(fs[0]), 63 * 64 / 2);
  for (int i = 0; i < 64; i++) weft_future_release(fs[i]);
  weft_executor_destroy(ex);
}

/* Jobs a task pushes onto its own worker's deque get stolen by the others. */
static int t_fan_out(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_executor *ex;
  (void)len;
  memcpy(&ex, arg, sizeof ex);
  weft_future *fs[64];
  int32_t ms = 1;
  for (int i = 0; i < 64; i++) {
    int r = weft_executor_submit(ex, &T_SLEEP_SQUARE, &ms, sizeof ms, &fs[i]);
    if (r) return r;
  }
  for (int i = 0; i < 64; i++) {
    weft_future_wait(fs[i], WEFT_FOREVER);
    weft_future_release(fs[i]);
  }
  return weft_task_return(ctx, NULL, 0);
}

TEST(stealing) {
  conf_setup();
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 3};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  weft_task t = {NULL, t_fan_out};
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &t, &ex, sizeof ex, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in_ms(10000)));
  ASSERT_EQ(weft_future_state_get(f), WEFT_FUTURE_DONE);
  weft_future_release(f);
  weft_executor_stats st;
  weft_executor_stats_get(ex, &st);
  ASSERT_GT(st.stolen, 0);
  ASSERT_EQ(atomic_load(&conf_sh->ran), 64);
  weft_executor_destroy(ex);
}

/* A parked pool burns no CPU, and wakes for the next task. */
static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

TEST(parked_pool_is_idle) {
  conf_setup();
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 4};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  for (int64_t i = 0; i < 10000; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, NULL));
  CONF_EVENTUALLY(atomic_load(&conf_sh->ran) == 10000);
  weft_sleep_until(weft_deadline_in_ms(20));
  int64_t c0 = cpu_ns();
  weft_sleep_until(weft_deadline_in_ms(200));
  int64_t used = cpu_ns() - c0;
  ASSERT_LT(used, 10 * 1000000ll); /* a busy worker would burn 200 ms */
  int64_t x = 9;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f));
  ASSERT_EQ(conf_result_i64(f), 81);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* A burst leaves many spare jobs behind; a pool that stays idle gives most
 * of them back, a busy one keeps what it recycles. */
TEST(idle_pool_trims_spare_jobs) {
  conf_setup();
  conf_register_tasks();
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 2};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  conf_block_all(ex, 2);
  for (int64_t i = 0; i < 50000; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, NULL));
  conf_open_gate();
  CONF_EVENTUALLY(atomic_load(&conf_sh->ran) == 50002);
  /* The workers freed ~50000 jobs; after 20 ms of idle the last one trims. */
  CONF_EVENTUALLY(weft__job_cache_spare() <= 4096);
  weft_executor_destroy(ex);
}

/* Waiting for the pool's own shutdown from a worker is refused; destroying
 * it from a worker aborts. */
static int t_shutdown_self(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_executor *ex;
  (void)len;
  (void)ctx;
  memcpy(&ex, arg, sizeof ex);
  return weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER) == WEFT_EDEADLK
             ? 0
             : WEFT_EPERM;
}
static int t_destroy_self(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_executor *ex;
  (void)len;
  (void)ctx;
  memcpy(&ex, arg, sizeof ex);
  weft_executor_destroy(ex);
  return 0;
}

static void destroy_from_worker(void) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  weft_executor *ex;
  weft_executor_create(&ex, &o);
  weft_task t = {NULL, t_destroy_self};
  weft_future *f;
  weft_executor_submit(ex, &t, &ex, sizeof ex, &f);
  weft_future_wait(f, weft_deadline_in_ms(5000));
}

TEST(misuse_from_worker) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  weft_task t = {NULL, t_shutdown_self};
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &t, &ex, sizeof ex, &f));
  ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL));
  weft_future_release(f);
  /* The refused call changed nothing: the pool still takes work. */
  ASSERT_OK(weft_executor_submit(ex, &t, &ex, sizeof ex, NULL));
  weft_executor_destroy(ex);
  ASSERT_ABORTS(destroy_from_worker(), "weft_executor_destroy");
}

TEST(misuse_null_handles) {
  int64_t x = 0;
  ASSERT_ABORTS(weft_executor_submit(NULL, &T_SQUARE, &x, sizeof x, NULL), "weft_executor_submit");
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, NULL));
  ASSERT_ABORTS(weft_executor_submit(ex, NULL, &x, sizeof x, NULL), "argument 'task' is NULL");
  ASSERT_ABORTS(weft_executor_submit(ex, &T_SQUARE, NULL, 8, NULL), "weft_executor_submit");
  ASSERT_ABORTS(weft_executor_map(ex, &T_SQUARE, NULL, 8, NULL, 0, 3, NULL), "weft_executor_map");
  weft_task nofn = {"x", NULL};
  ASSERT_ERR(weft_executor_submit(ex, &nofn, NULL, 0, NULL), WEFT_EINVAL);
  weft_executor_destroy(ex);
}

/* In the child of a fork() the pool's workers do not exist: every call on
 * it says WEFT_EBROKEN at once (no hang), destroy does not wait for them,
 * and the child can make a pool of its own. The parent's pool is unharmed. */
TEST(fork_child) {
  conf_setup();
  conf_register_tasks();
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 2};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  int64_t x = 5;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, NULL));
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    alarm(10);
    weft_future *f;
    int64_t out;
    if (weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f) != WEFT_EBROKEN) _exit(1);
    if (weft_executor_submit_many(ex, &T_SQUARE, &x, sizeof x, 1, NULL) != WEFT_EBROKEN) _exit(2);
    if (weft_executor_map(ex, &T_SQUARE, &x, sizeof x, &out, sizeof out, 1, NULL) != WEFT_EBROKEN)
      _exit(3);
    if (weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER) != WEFT_EBROKEN) _exit(4);
    weft_executor_destroy(ex);
#if defined(WEFT_TSAN) || defined(__SANITIZE_ADDRESS__)
    /* The sanitizers' own allocator locks are not fork-safe: a thread
     * started in the child of a threaded fork can block on one forever
     * (glibc's malloc has atfork handlers; ASan's and TSan's do not). */
    _exit(0);
#endif
    weft_executor *ex2;
    if (weft_executor_create(&ex2, &o) != 0) _exit(5);
    if (weft_executor_submit(ex2, &T_SQUARE, &x, sizeof x, &f) != 0) _exit(6);
    const void *d;
    int rr = weft_future_result(f, weft_deadline_in_ms(5000), &d, NULL);
    if (rr != 0 || *(const int64_t *)d != 25) {
      fprintf(stderr, "child: result %s, state %d\n", weft_err_name(rr), (int)weft_future_state_get(f));
      _exit(7);
    }
    weft_future_release(f);
    weft_executor_destroy(ex2);
    _exit(0);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f));
  ASSERT_EQ(conf_result_i64(f), 25);
  weft_future_release(f);
  weft_executor_destroy(ex);
}
