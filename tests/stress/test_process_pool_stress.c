/*
 * Stress tests for the process-pool executor, with real SIGKILLs: a killer
 * thread shoots random workers in the middle of tasks and maps while
 * several threads submit, over many rounds. Every future must end exactly
 * once, DONE with the right result or FAILED with WEFT_EWORKERDIED; every
 * map must return 0 or WEFT_EWORKERDIED with right outputs for every item
 * but the one that crashed; nothing may hang. Also: shutdown racing
 * submitters and kills, and create/destroy churn.
 *
 * Knobs: WEFT_STRESS_ROUNDS, WEFT_STRESS_ITERS (tasks per submitter and
 * round), WEFT_STRESS_WORKERS.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(120)

#ifdef WEFT_TSAN
#define DEFAULT_ROUNDS 3
#define DEFAULT_ITERS 100
#else
#define DEFAULT_ROUNDS 25
#define DEFAULT_ITERS 600
#endif

typedef struct shared {
  atomic_int pids[64]; /* workers seen running a task, by slot (pid % 64) */
} shared;
static shared *sh;

static int t_square_note(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  atomic_store(&sh->pids[getpid() % 64], getpid());
  if (x % 7 == 0) usleep(200); /* some tasks long enough to be shot */
  x *= x;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task T = {"stress.square_note", t_square_note};

static int t_map_item(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  if (x % 50 == 0) {
    atomic_store(&sh->pids[getpid() % 64], getpid());
    usleep(100);
  }
  x = x * 3 + 1;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task M = {"stress.map_item", t_map_item};

typedef struct killer_arg {
  atomic_int stop;
  atomic_long kills;
} killer_arg;

static void *killer(void *p) {
  killer_arg *k = p;
  unsigned seed = 12345;
  while (!atomic_load(&k->stop)) {
    usleep(200 + rand_r(&seed) % 800);
    int slot = rand_r(&seed) % 64;
    int pid = atomic_exchange(&sh->pids[slot], 0);
    if (pid > 0 && kill(pid, SIGKILL) == 0) atomic_fetch_add(&k->kills, 1);
  }
  return NULL;
}

typedef struct sub_arg {
  weft_executor *ex;
  long iters;
  atomic_long done, died;
} sub_arg;

static void *submitter(void *p) {
  sub_arg *a = p;
  weft_future **fs = malloc(a->iters * sizeof *fs);
  for (long i = 0; i < a->iters; i++) {
    int64_t x = i;
    int r = weft_executor_submit(a->ex, &T, &x, sizeof x, &fs[i]);
    if (r) {
      fprintf(stderr, "submit: %s\n", weft_err_name(r));
      abort();
    }
  }
  for (long i = 0; i < a->iters; i++) {
    const void *d;
    size_t len;
    int r = weft_future_result(fs[i], weft_deadline_in_ms(30000), &d, &len);
    if (r == 0) {
      int64_t v;
      if (len != sizeof v) abort();
      memcpy(&v, d, sizeof v);
      if (v != (int64_t)i * i) abort();
      atomic_fetch_add(&a->done, 1);
    } else if (r == WEFT_EWORKERDIED) {
      atomic_fetch_add(&a->died, 1);
    } else {
      fprintf(stderr, "task %ld: %s\n", i, weft_err_name(r));
      abort();
    }
    weft_future_release(fs[i]);
  }
  free(fs);
  return NULL;
}

TEST(kill_storm) {
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(sh != MAP_FAILED);
  long rounds = weft_test_knob("WEFT_STRESS_ROUNDS", DEFAULT_ROUNDS);
  long iters = weft_test_knob("WEFT_STRESS_ITERS", DEFAULT_ITERS);
  unsigned workers = (unsigned)weft_test_knob("WEFT_STRESS_WORKERS", 3);
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_PROCESSES, .workers = workers, .name = "storm"};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  killer_arg k = {0};
  weft_thread *kt;
  ASSERT_OK(weft_thread_start(&kt, killer, &k, NULL));
  long total_done = 0, total_died = 0, map_fail = 0;
  for (long r = 0; r < rounds; r++) {
    sub_arg a[2] = {{ex, iters, 0, 0}, {ex, iters, 0, 0}};
    weft_thread *st[2];
    for (int i = 0; i < 2; i++) ASSERT_OK(weft_thread_start(&st[i], submitter, &a[i], NULL));
    /* A map meanwhile, from this thread. */
    enum { N = 4000 };
    static int32_t in[N], out[N];
    for (int i = 0; i < N; i++) in[i] = i;
    memset(out, 0, sizeof out);
    size_t failed = 0;
    weft_map_opts mo = {.failed_index = &failed, .deadline_ns = weft_deadline_in_ms(30000)};
    int mr = weft_executor_map(ex, &M, in, sizeof in[0], out, sizeof out[0], N, &mo);
    if (mr == WEFT_EWORKERDIED) {
      map_fail++;
    } else {
      ASSERT_OK(mr);
    }
    /* Every item but a crashed one (at most one per death) is right. */
    long wrong = 0;
    for (int i = 0; i < N; i++)
      if (out[i] != i * 3 + 1) wrong++;
    if (mr == 0) ASSERT_EQ(wrong, 0);
    ASSERT_LE(wrong, atomic_load(&k.kills) + 1);
    for (int i = 0; i < 2; i++) {
      ASSERT_OK(weft_thread_join(st[i], WEFT_FOREVER, NULL));
      ASSERT_EQ(atomic_load(&a[i].done) + atomic_load(&a[i].died), iters);
      total_done += atomic_load(&a[i].done);
      total_died += atomic_load(&a[i].died);
    }
  }
  atomic_store(&k.stop, 1);
  ASSERT_OK(weft_thread_join(kt, WEFT_FOREVER, NULL));
  fprintf(stderr, "kills %ld: tasks done %ld, died %ld; maps failed %ld of %ld\n",
          atomic_load(&k.kills), total_done, total_died, map_fail, rounds);
  ASSERT_GT(total_done, 0);
  /* At most one task fails per kill. */
  ASSERT_LE(total_died, atomic_load(&k.kills));
  /* The pool still serves, with all its workers. */
  weft_executor_stats s;
  weft_executor_stats_get(ex, &s);
  ASSERT_UEQ(s.queued, 0);
  int64_t x = 12;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T, &x, sizeof x, &f));
  ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(30000), NULL, NULL));
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* shutdown (with KILL, or not) while submitters run: every submit either
 * fails with WEFT_ESHUTDOWN or its future ends; destroy never hangs. */
typedef struct race_arg {
  weft_executor *ex;
  atomic_long ok, refused, ended;
} race_arg;

static void *race_submitter(void *p) {
  race_arg *a = p;
  for (int i = 0; i < 2000; i++) {
    int64_t x = i;
    weft_future *f;
    int r = weft_executor_submit(a->ex, &T, &x, sizeof x, &f);
    if (r == WEFT_ESHUTDOWN) {
      atomic_fetch_add(&a->refused, 1);
      break;
    }
    if (r) abort();
    atomic_fetch_add(&a->ok, 1);
    r = weft_future_wait(f, weft_deadline_in_ms(30000));
    if (r) abort();
    atomic_fetch_add(&a->ended, 1);
    weft_future_release(f);
  }
  return NULL;
}

TEST(shutdown_races_submitters) {
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(sh != MAP_FAILED);
  long rounds = weft_test_knob("WEFT_STRESS_ROUNDS", DEFAULT_ROUNDS);
  for (long r = 0; r < rounds; r++) {
    weft_executor_opts o = {.kind = WEFT_EXECUTOR_PROCESSES, .workers = 2};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &o));
    race_arg a = {ex, 0, 0, 0};
    weft_thread *t[3];
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_thread_start(&t[i], race_submitter, &a, NULL));
    usleep(2000 + (unsigned)r * 1500);
    unsigned flags = WEFT_SHUTDOWN_WAIT | (r % 2 ? WEFT_SHUTDOWN_KILL : WEFT_SHUTDOWN_CANCEL_PENDING);
    ASSERT_OK(weft_executor_shutdown(ex, flags, weft_deadline_in_ms(30000)));
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&a.ok), atomic_load(&a.ended));
    weft_executor_destroy(ex);
  }
}

TEST(create_destroy_churn) {
  long rounds = weft_test_knob("WEFT_STRESS_ROUNDS", DEFAULT_ROUNDS) * 3;
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(sh != MAP_FAILED);
  for (long r = 0; r < rounds; r++) {
    weft_executor_opts o = {.kind = WEFT_EXECUTOR_PROCESSES, .workers = 1 + (unsigned)(r % 4)};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &o));
    if (r % 2) {
      int64_t x = r;
      ASSERT_OK(weft_executor_submit(ex, &T, &x, sizeof x, NULL));
    }
    weft_executor_destroy(ex);
  }
}
