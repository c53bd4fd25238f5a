/*
 * The conformance suite (conformance.h) on the process backend, plus what
 * only a process pool can show, with real processes and real signals:
 * workers that crash (SIGSEGV, SIGKILL from outside, exit) in the middle of
 * a task fail only that task and are replaced; per-task deadlines and
 * cancelling a running task kill and replace the worker;
 * max_tasks_per_child; the initializer and finalizer run in every worker;
 * an initializer that crashes breaks the pool instead of forking forever;
 * shutdown with KILL never hangs; no worker outlives the pool, nor a parent
 * that is SIGKILLed or dies of Ctrl-C; the program's own children are left
 * alone.
 *
 * Where the process backend honestly differs from threads: a task cannot
 * submit to, wait on or shut down its own pool (it runs in another process,
 * where the pool is a copy: WEFT_EBROKEN); pointers inside arguments mean
 * nothing there. The shared cases do neither.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "conformance.h"

WEFT_TEST_TIMEOUT(60)

static const weft_executor_opts procs = {.kind = WEFT_EXECUTOR_PROCESSES, .name = "conf"};

TEST(roundtrip) { conf_roundtrip(&procs); }
TEST(task_fails) { conf_fail(&procs); }
TEST(fire_and_forget) { conf_fire_and_forget(&procs); }
TEST(submit_many) { conf_submit_many(&procs); }
TEST(map) { conf_map(&procs); }
TEST(map_chunking) { conf_map_chunking(&procs); }
TEST(map_errors) { conf_map_errors(&procs); }
TEST(map_deadline) { conf_map_deadline(&procs); }
TEST(imap) { conf_imap(&procs); }
TEST(imap_endless) { conf_imap_endless(&procs); }
TEST(imap_deadline) { conf_imap_deadline(&procs); }
TEST(cancel_pending) { conf_cancel_pending(&procs); }
TEST(fifo_one_worker) { conf_fifo_one_worker(&procs); }
TEST(shutdown_wait) { conf_shutdown_wait(&procs); }
TEST(shutdown_cancel) { conf_shutdown_cancel(&procs); }
TEST(shutdown_cancel_batch) { conf_shutdown_cancel_batch(&procs); }
TEST(shutdown_deadline) { conf_shutdown_deadline(&procs); }
TEST(submit_after_shutdown) { conf_submit_after_shutdown(&procs); }
TEST(callbacks_submit) { conf_callbacks_submit(&procs); }
TEST(wait_as_completed) { conf_wait_as_completed(&procs); }
TEST(stats) { conf_stats(&procs); }
TEST(fd) { conf_fd(&procs); }

/* ------------------------------------------------ process backend only */

#define MS 1000000LL

/* What the tasks below share with the test: in conf_sh's mapping would be
 * cleaner, but these are this file's own. */
typedef struct proc_shared {
  atomic_int pids[64];
  atomic_int npids;
  atomic_int inits, finis;
  atomic_int running_pid;
} proc_shared;
static proc_shared *psh;

static void psetup(void) {
  if (!psh) {
    void *p = mmap(NULL, sizeof *psh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    psh = p;
  }
  memset(psh, 0, sizeof *psh);
}

static bool running(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static void wait_gone(pid_t pid, int64_t ms) {
  int64_t dl = weft_deadline_in_ms(ms);
  while (running(pid) && weft_now_ns() < dl) weft_sleep_until(weft_deadline_in_ms(1));
  ASSERT(!running(pid));
}

/* Returns its worker's pid (int32). */
static int t_pid(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  int32_t pid = getpid();
  return weft_task_return(ctx, &pid, sizeof pid);
}

/* int32 arg: 0 SIGSEGV, 1 SIGKILL itself, 2 exit(3), 3 wait to be killed
 * from outside (publishes its pid), 4 sleep forever quietly. */
static int t_die(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t how;
  (void)ctx;
  (void)len;
  memcpy(&how, arg, sizeof how);
  switch (how) {
  case 0:
    signal(SIGSEGV, SIG_DFL); /* ASan would catch it: die of it for real */
    raise(SIGSEGV);
    break;
  case 1: raise(SIGKILL); break;
  case 2: exit(3);
  case 3: atomic_store(&psh->running_pid, getpid()); /* fall through */
  default:
    for (;;) pause();
  }
  return 0;
}

static const weft_task T_PID = {"proc.pid", t_pid};
static const weft_task T_DIE = {"proc.die", t_die};

static int32_t result_i32(weft_future *f) {
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(10000), &d, &len));
  ASSERT_EQ(len, sizeof(int32_t));
  int32_t v;
  memcpy(&v, d, sizeof v);
  return v;
}

static weft_executor *make(unsigned workers) {
  conf_setup();
  psetup();
  weft_executor_opts o = procs;
  o.workers = workers;
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  return ex;
}

/* A crash in the middle of a task, over many rounds: only that future
 * fails, with WEFT_EWORKERDIED and a message naming the signal or status;
 * the others finish; the pool keeps serving with a new worker. */
TEST(worker_crash_fails_only_its_task) {
  weft_executor *ex = make(2);
  for (int round = 0; round < 30; round++) {
    int32_t how = round % 3;
    weft_future *bad, *good[6];
    for (int i = 0; i < 3; i++) {
      int64_t x = i;
      ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &good[i]));
    }
    ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &bad));
    for (int i = 3; i < 6; i++) {
      int64_t x = i;
      ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &good[i]));
    }
    ASSERT_ERR(weft_future_result(bad, weft_deadline_in_ms(10000), NULL, NULL), WEFT_EWORKERDIED);
    const char *m = weft_future_error_message(bad);
    if (how == 0) ASSERT(strstr(m, "killed by signal 11") != NULL);
    if (how == 1) ASSERT(strstr(m, "killed by signal 9") != NULL);
    if (how == 2) ASSERT(strstr(m, "exited with status 3") != NULL);
    ASSERT(strstr(m, "conf-") != NULL);
    weft_future_release(bad);
    for (int i = 0; i < 6; i++) {
      ASSERT_EQ(conf_result_i64(good[i]), (int64_t)i * i);
      weft_future_release(good[i]);
    }
  }
  weft_executor_destroy(ex);
}

/* SIGKILL from outside, in the middle of a task. */
TEST(sigkill_from_outside) {
  weft_executor *ex = make(2);
  for (int round = 0; round < 10; round++) {
    atomic_store(&psh->running_pid, 0);
    int32_t how = 3;
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &f));
    CONF_EVENTUALLY(atomic_load(&psh->running_pid) != 0);
    pid_t victim = atomic_load(&psh->running_pid);
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_EWORKERDIED);
    weft_future_release(f);
    wait_gone(victim, 5000);
    /* Still two workers serving, the victim not among them. */
    weft_future *fs[8];
    for (int i = 0; i < 8; i++) ASSERT_OK(weft_executor_submit(ex, &T_PID, NULL, 0, &fs[i]));
    for (int i = 0; i < 8; i++) {
      ASSERT_NE(result_i32(fs[i]), victim);
      weft_future_release(fs[i]);
    }
  }
  weft_executor_destroy(ex);
}

/* A worker killed while idle is replaced too. */
TEST(idle_worker_killed) {
  weft_executor *ex = make(1);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_PID, NULL, 0, &f));
  pid_t pid = result_i32(f);
  weft_future_release(f);
  kill(pid, SIGKILL);
  wait_gone(pid, 5000);
  ASSERT_OK(weft_executor_submit(ex, &T_PID, NULL, 0, &f));
  int32_t np = result_i32(f);
  ASSERT_NE(np, pid);
  ASSERT_GT(np, 0);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* A map whose worker dies in the middle: only the item that was running
 * fails (WEFT_EWORKERDIED at its index); the rest of its chunk runs on the
 * replacement; the pool still maps afterwards. Both ways a map travels:
 * the workers copying from and to the caller's arrays, and the shared
 * data area. */
static int t_map_die_at(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  if (x == 57) raise(SIGKILL);
  x *= 2;
  return weft_task_return(ctx, &x, sizeof x);
}

TEST(map_worker_dies) {
  weft_executor *ex = make(2);
  enum { N = 200 };
  int32_t in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = i;
  weft_task t = {"proc.map_die", t_map_die_at};
  size_t failed = 0;
  weft_map_opts mo = {.chunksize = 20, .failed_index = &failed};
  memset(out, 0, sizeof out);
  ASSERT_ERR(weft_executor_map(ex, &t, in, sizeof in[0], out, sizeof out[0], N, &mo),
             WEFT_EWORKERDIED);
  ASSERT_EQ(failed, 57);
  ASSERT_EQ(out[56], 112); /* the chunk's items before it were kept */
  ASSERT_EQ(out[58], 116);  /* and those after it ran on the replacement */
  ASSERT_EQ(out[59], 118);
  ASSERT_EQ(out[199], 398); /* other chunks ran */
  in[57] = 1;
  ASSERT_OK(weft_executor_map(ex, &t, in, sizeof in[0], out, sizeof out[0], N, &mo));
  ASSERT_EQ(out[57], 2);
  weft_executor_destroy(ex);
}

TEST(map_worker_dies_shared_area) {
  setenv("WEFT_PROCESS_POOL_NO_DIRECT", "1", 1);
  weft_test_map_worker_dies();
}

/* Per-task deadline: the worker is killed and replaced; the future fails
 * with WEFT_ETIMEDOUT; a task whose deadline passed while it was queued
 * never runs. */
TEST(task_deadline) {
  weft_executor *ex = make(1);
  int32_t how = 4;
  weft_future *f, *g, *h;
  weft_submit_opts so = {.deadline_ns = weft_deadline_in_ms(100)};
  int64_t t0 = weft_now_ns();
  ASSERT_OK(weft_executor_submit_opts(ex, &T_DIE, &how, sizeof how, &so, &f));
  /* Queued behind it, with a deadline that passes while it waits. */
  weft_submit_opts so2 = {.deadline_ns = weft_deadline_in_ms(50)};
  int64_t x = 3;
  ASSERT_OK(weft_executor_submit_opts(ex, &T_SQUARE, &x, sizeof x, &so2, &g));
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &h));
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_ETIMEDOUT);
  int64_t took = weft_now_ns() - t0;
  ASSERT_GE(took, 95 * MS);
  ASSERT_LT(took, 5000 * MS);
  ASSERT(strstr(weft_future_error_message(f), "deadline") != NULL);
  ASSERT_ERR(weft_future_result(g, weft_deadline_in_ms(10000), NULL, NULL), WEFT_ETIMEDOUT);
  ASSERT_EQ(conf_result_i64(h), 9);
  /* A deadline that is not reached changes nothing. */
  weft_future *k;
  weft_submit_opts far = {.deadline_ns = weft_deadline_in_ms(10000)};
  ASSERT_OK(weft_executor_submit_opts(ex, &T_SQUARE, &x, sizeof x, &far, &k));
  ASSERT_EQ(conf_result_i64(k), 9);
  weft_submit_opts bad = {.deadline_ns = -4};
  ASSERT_ERR(weft_executor_submit_opts(ex, &T_SQUARE, &x, sizeof x, &bad, &k), WEFT_EINVAL);
  weft_future_release(f);
  weft_future_release(g);
  weft_future_release(h);
  weft_future_release(k);
  weft_executor_destroy(ex);
}

TEST(deadline_not_on_threads) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  conf_setup();
  int64_t x = 2;
  weft_future *f;
  weft_submit_opts so = {.deadline_ns = weft_deadline_in_ms(100)};
  ASSERT_ERR(weft_executor_submit_opts(ex, &T_SQUARE, &x, sizeof x, &so, &f), WEFT_ENOTSUP);
  ASSERT_OK(weft_executor_submit_opts(ex, &T_SQUARE, &x, sizeof x, NULL, &f));
  ASSERT_EQ(conf_result_i64(f), 4);
  ASSERT_ERR(weft_executor_cancel(ex, f), WEFT_EALREADY);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* Cancelling a running task kills its worker; a queued one is cancelled
 * as usual. */
TEST(cancel_running) {
  weft_executor *ex = make(1);
  atomic_store(&psh->running_pid, 0);
  int32_t how = 3;
  weft_future *f, *g;
  ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &f));
  int64_t x = 5;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &g));
  CONF_EVENTUALLY(atomic_load(&psh->running_pid) != 0);
  ASSERT_ERR(weft_future_cancel(f), WEFT_EBUSY);
  ASSERT_OK(weft_executor_cancel(ex, f));
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_ECANCELED);
  ASSERT_EQ(conf_result_i64(g), 25);
  ASSERT_ERR(weft_executor_cancel(ex, g), WEFT_EALREADY);
  wait_gone(atomic_load(&psh->running_pid), 5000);
  /* Queued: plain cancel. */
  atomic_store(&psh->running_pid, 0);
  ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &f));
  weft_future *q;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &q));
  CONF_EVENTUALLY(atomic_load(&psh->running_pid) != 0);
  ASSERT_OK(weft_executor_cancel(ex, q));
  ASSERT_EQ(weft_future_state_get(q), WEFT_FUTURE_CANCELLED);
  ASSERT_OK(weft_executor_cancel(ex, f));
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_ECANCELED);
  weft_future_release(f);
  weft_future_release(g);
  weft_future_release(q);
  weft_executor_destroy(ex);
}

/* max_tasks_per_child: a worker is replaced after that many tasks. */
TEST(max_tasks_per_child) {
  conf_setup();
  psetup();
  weft_executor_opts o = procs;
  o.workers = 1;
  o.max_tasks_per_child = 3;
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  int32_t pids[9];
  for (int i = 0; i < 9; i++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, &T_PID, NULL, 0, &f));
    pids[i] = result_i32(f);
    weft_future_release(f);
  }
  for (int i = 0; i < 9; i++) ASSERT_EQ(pids[i], pids[i - i % 3]);
  ASSERT_NE(pids[0], pids[3]);
  ASSERT_NE(pids[3], pids[6]);
  ASSERT_NE(pids[0], pids[6]);
  weft_executor_destroy(ex);
}

/* Initializer and finalizer run in every worker, replacements too. */
static void on_init(void *ud) {
  ASSERT_PTR_EQ(ud, &psh);
  atomic_fetch_add(&psh->inits, 1);
}
static void on_fini(void *ud) {
  ASSERT_PTR_EQ(ud, &psh);
  atomic_fetch_add(&psh->finis, 1);
}

TEST(initializer_finalizer) {
  conf_setup();
  psetup();
  weft_executor_opts o = procs;
  o.workers = 3;
  o.initializer = on_init;
  o.finalizer = on_fini;
  o.ud = &psh;
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  CONF_EVENTUALLY(atomic_load(&psh->inits) == 3);
  int32_t how = 1;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &f));
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_EWORKERDIED);
  weft_future_release(f);
  CONF_EVENTUALLY(atomic_load(&psh->inits) == 4); /* the replacement */
  weft_executor_destroy(ex);
  ASSERT_EQ(atomic_load(&psh->finis), 3); /* the killed one never finished */
}

/* An initializer that crashes: the pool gives up instead of forking
 * forever, and says so. */
static void bad_init(void *ud) {
  (void)ud;
  raise(SIGKILL);
}

TEST(crashing_initializer_breaks_pool) {
  conf_setup();
  weft_executor_opts o = procs;
  o.workers = 2;
  o.initializer = bad_init;
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  int64_t x = 2;
  weft_future *f;
  int r = weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f);
  if (r == 0) {
    ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(20000), NULL, NULL), WEFT_EBROKEN);
    weft_future_release(f);
  } else {
    ASSERT_ERR(r, WEFT_EBROKEN);
  }
  int64_t dl = weft_deadline_in_ms(20000);
  while ((r = weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, NULL)) == 0 && weft_now_ns() < dl)
    weft_sleep_until(weft_deadline_in_ms(5));
  ASSERT_ERR(r, WEFT_EBROKEN);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(10000)));
  weft_executor_destroy(ex);
}

/* shutdown(KILL) with tasks that never end: returns at once, running
 * futures fail with WEFT_ECANCELED, queued ones are cancelled. */
TEST(shutdown_kill_never_hangs) {
  weft_executor *ex = make(2);
  int32_t how = 4;
  weft_future *run[2], *queued[3];
  for (int i = 0; i < 2; i++) ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &run[i]));
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &queued[i]));
  CONF_EVENTUALLY(weft_future_state_get(run[0]) == WEFT_FUTURE_RUNNING &&
                  weft_future_state_get(run[1]) == WEFT_FUTURE_RUNNING);
  weft_sleep_until(weft_deadline_in_ms(20));
  int64_t t0 = weft_now_ns();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT | WEFT_SHUTDOWN_KILL,
                                   weft_deadline_in_ms(10000)));
  ASSERT_LT(weft_now_ns() - t0, 5000 * MS);
  for (int i = 0; i < 2; i++) {
    ASSERT_ERR(weft_future_result(run[i], 0, NULL, NULL), WEFT_ECANCELED);
    weft_future_release(run[i]);
  }
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(weft_future_state_get(queued[i]), WEFT_FUTURE_CANCELLED);
    weft_future_release(queued[i]);
  }
  weft_executor_destroy(ex);
}

/* After destroy no worker is left, not even as a zombie. */
TEST(destroy_leaves_no_worker) {
  weft_executor *ex = make(3);
  weft_future *fs[12];
  for (int i = 0; i < 12; i++) ASSERT_OK(weft_executor_submit(ex, &T_PID, NULL, 0, &fs[i]));
  int32_t pids[12];
  for (int i = 0; i < 12; i++) {
    pids[i] = result_i32(fs[i]);
    weft_future_release(fs[i]);
  }
  weft_executor_destroy(ex);
  for (int i = 0; i < 12; i++) ASSERT(kill(pids[i], 0) != 0 && errno == ESRCH);
}

/* The program's own children are never reaped by the pool. */
TEST(leaves_other_children_alone) {
  weft_executor *ex = make(2);
  pid_t mine = fork();
  if (mine == 0) _exit(42);
  /* Crashes make the pool reap its own workers meanwhile. */
  for (int i = 0; i < 5; i++) {
    int32_t how = 1;
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, &T_DIE, &how, sizeof how, &f));
    ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_EWORKERDIED);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
  int st;
  ASSERT_EQ(waitpid(mine, &st, 0), mine);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 42);
}

/* A task cannot use its own pool from inside a worker process: the pool
 * there is a copy with no workers. */
static int t_use_pool(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_executor *ex;
  (void)len;
  memcpy(&ex, arg, sizeof ex);
  int32_t r = weft_executor_submit(ex, &T_PID, NULL, 0, NULL);
  return weft_task_return(ctx, &r, sizeof r);
}

TEST(task_cannot_use_own_pool) {
  weft_executor *ex = make(1);
  weft_task t = {"proc.use_pool", t_use_pool};
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &t, &ex, sizeof ex, &f));
  ASSERT_EQ(result_i32(f), WEFT_EBROKEN);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* SIGKILL of the parent: every worker dies with it. And Ctrl-C (SIGINT,
 * default action) while a map runs: the same. */
static void parent_body(void) {
  weft_executor *ex = make(3);
  weft_future *fs[3];
  int32_t how = 3;
  (void)how;
  for (int i = 0; i < 3; i++)
    if (weft_executor_submit(ex, &T_PID, NULL, 0, &fs[i]) != 0) _exit(2);
  for (int i = 0; i < 3; i++) {
    const void *d;
    if (weft_future_result(fs[i], weft_deadline_in_ms(10000), &d, NULL) != 0) _exit(3);
  }
  /* Now a long map, so that every worker is busy. */
  enum { N = 64 };
  int32_t in[N];
  int64_t out[N];
  for (int i = 0; i < N; i++) in[i] = 100;
  weft_map_opts mo = {.chunksize = 1};
  atomic_store(&psh->npids, 1);
  weft_executor_map(ex, &T_SLEEP_SQUARE, in, sizeof in[0], out, sizeof out[0], N, &mo);
  _exit(4);
}

static void parent_dies(int sig) {
  conf_setup();
  psetup();
  fflush(NULL);
  pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* SIGINT's default action, as from a terminal (a shell's background
     * job inherits it ignored). */
    signal(SIGINT, SIG_DFL);
    parent_body();
  }
  CONF_EVENTUALLY(atomic_load(&psh->npids) == 1 && atomic_load(&conf_sh->ran) >= 3);
  /* The workers: the parent's children (forked by its collector thread, so
   * read every thread's list). */
  pid_t kids[16];
  int nk = 0;
  for (int tries = 0; tries < 1000 && nk < 3; tries++) {
    nk = 0;
    char dir[64], path[400];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)parent);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      snprintf(path, sizeof path, "%s/%s/children", dir, e->d_name);
      FILE *f = fopen(path, "r");
      if (!f) continue;
      int k;
      while (nk < 16 && fscanf(f, "%d", &k) == 1) kids[nk++] = k;
      fclose(f);
    }
    if (d) closedir(d);
    if (nk < 3) weft_sleep_until(weft_deadline_in_ms(5));
  }
  ASSERT_GE(nk, 3);
  int64_t t0 = weft_now_ns();
  kill(parent, sig);
  int st;
  ASSERT_EQ(waitpid(parent, &st, 0), parent);
  ASSERT(WIFSIGNALED(st));
  ASSERT_EQ(WTERMSIG(st), sig);
  for (int i = 0; i < nk; i++) wait_gone(kids[i], 5000);
  int64_t took = weft_now_ns() - t0;
  fprintf(stderr, "all %d workers gone %.2f ms after signal %d\n", nk, took / 1e6, sig);
}

TEST(parent_sigkill_no_orphans) { parent_dies(SIGKILL); }
TEST(parent_ctrl_c_during_map) { parent_dies(SIGINT); }

/* A pool made by a threaded parent works as well. */
static void *idle_thread(void *arg) {
  while (!atomic_load((atomic_int *)arg)) weft_sleep_until(weft_deadline_in_ms(1));
  return NULL;
}

TEST(threaded_parent) {
  atomic_int stop = 0;
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, idle_thread, &stop, NULL));
  weft_executor_opts th = {.kind = WEFT_EXECUTOR_THREADS, .workers = 2};
  weft_executor *tp;
  ASSERT_OK(weft_executor_create(&tp, &th));
  weft_executor *ex = make(2);
  int64_t x = 7;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f));
  ASSERT_EQ(conf_result_i64(f), 49);
  weft_future_release(f);
  weft_executor_destroy(ex);
  weft_executor_destroy(tp);
  atomic_store(&stop, 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
}

/* Nothing named: neither the parent nor a worker maps anything from
 * /dev/shm (or any other file) for the pool, so a SIGKILL anywhere cannot
 * leave a segment behind. */
static bool maps_dev_shm(pid_t pid) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(path, "r");
  ASSERT_NOT_NULL(f);
  bool found = false;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "/dev/shm/")) found = true;
  fclose(f);
  return found;
}

TEST(nothing_named) {
  weft_executor *ex = make(2);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_PID, NULL, 0, &f));
  pid_t worker = result_i32(f);
  weft_future_release(f);
  ASSERT(!maps_dev_shm(getpid()));
  ASSERT(!maps_dev_shm(worker));
  weft_executor_destroy(ex);
}

/* What a task starts in its worker (a grandchild) dies with the worker,
 * whether the worker crashed or was killed for a deadline. */
static __attribute__((noreturn)) int t_fork_then(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t how;
  (void)ctx;
  (void)len;
  memcpy(&how, arg, sizeof how);
  pid_t g = fork();
  if (g == 0) {
    for (;;) pause();
  }
  atomic_fetch_add(&psh->npids, 1);
  atomic_store(&psh->pids[0], g);
  if (how == 1) raise(SIGKILL);
  for (;;) pause();
}

TEST(task_children_die_with_worker) {
  weft_executor *ex = make(1);
  weft_task t = {"proc.fork_then", t_fork_then};
  for (int32_t how = 0; how < 2; how++) {
    atomic_store(&psh->npids, 0);
    weft_future *f;
    weft_submit_opts so = {.deadline_ns = weft_deadline_in_ms(300)};
    ASSERT_OK(weft_executor_submit_opts(ex, &t, &how, sizeof how, &so, &f));
    ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL),
               how ? WEFT_EWORKERDIED : WEFT_ETIMEDOUT);
    ASSERT_EQ(atomic_load(&psh->npids), 1);
    wait_gone(atomic_load(&psh->pids[0]), 5000);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
}

/* A task may start processes of its own (weft_process), also when the
 * parent runs a fork server (which stays the parent's). */
static int c_exit_code(const void *arg, size_t len) {
  int32_t v;
  (void)len;
  memcpy(&v, arg, sizeof v);
  return v;
}

static int t_start_process(weft_task_ctx *ctx, const void *arg, size_t len) {
  weft_process *pr;
  int r = weft_process_start(&pr, c_exit_code, arg, len, NULL);
  if (r) return r;
  r = weft_process_join(pr, weft_deadline_in_ms(10000));
  int32_t code = -1000;
  if (r == 0) r = weft_process_exitcode(pr, &code);
  weft_process_destroy(pr);
  if (r) return r;
  return weft_task_return(ctx, &code, sizeof code);
}

TEST(task_starts_process) {
  ASSERT_OK(weft_forkserver_start());
  weft_executor *ex = make(2);
  weft_task t = {"proc.start_process", t_start_process};
  for (int32_t i = 0; i < 6; i++) {
    weft_future *f;
    int32_t v = 10 + i;
    ASSERT_OK(weft_executor_submit(ex, &t, &v, sizeof v, &f));
    ASSERT_EQ(result_i32(f), v);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
  weft_forkserver_stop();
}
