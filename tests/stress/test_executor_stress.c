/*
 * Stress tests for the thread-pool executor: cancel storms, shutdown racing
 * submitters, callbacks that submit, many submitters of every kind at once,
 * nested waits in depth, lazy maps from several threads, create/destroy
 * churn. Each checks that every submitted item ends exactly once: it ran
 * (once), or its future was cancelled, or its submit failed.
 *
 * Knobs: WEFT_STRESS_ITERS (tasks per thread and round), WEFT_STRESS_THREADS
 * (submitting threads), WEFT_STRESS_ROUNDS, WEFT_STRESS_WORKERS.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(120)

#ifdef WEFT_TSAN
#define DEFAULT_ITERS 2000
#define DEFAULT_ROUNDS 10
#else
#define DEFAULT_ITERS 100000
#define DEFAULT_ROUNDS 40
#endif
#define MAX_THREADS 16

static long iters(void) {
  long n = weft_test_knob("WEFT_STRESS_ITERS", DEFAULT_ITERS);
  return n < 16 ? 16 : n;
}
static int nthreads(void) {
  long n = weft_test_knob("WEFT_STRESS_THREADS", 4);
  return n < 2 ? 2 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}
static long rounds(void) {
  long n = weft_test_knob("WEFT_STRESS_ROUNDS", DEFAULT_ROUNDS);
  return n < 1 ? 1 : n;
}
static unsigned workers(void) {
  long n = weft_test_knob("WEFT_STRESS_WORKERS", 3);
  return n < 1 ? 1 : (unsigned)n;
}

static uint32_t rnd(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static weft_executor *make(unsigned n) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = n, .name = "stress"};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  return ex;
}

/* Each task marks its index; a second run of one index fails the test. */
static _Atomic unsigned char *marks;
static atomic_long total_ran;

static int t_mark(weft_task_ctx *ctx, const void *arg, size_t len) {
  uint32_t i;
  (void)len;
  memcpy(&i, arg, sizeof i);
  if (atomic_exchange(&marks[i], 1))
    weft_test_fail(__FILE__, __LINE__, "task %u ran twice", i);
  atomic_fetch_add(&total_ran, 1);
  return weft_task_return(ctx, &i, sizeof i);
}
static const weft_task T_MARK = {"stress.mark", t_mark};

static void marks_reset(size_t n) {
  free((void *)marks);
  marks = calloc(n, 1);
  ASSERT_NOT_NULL((void *)marks);
  atomic_store(&total_ran, 0);
}

/* ------------------------------------------------------- cancel storm */

struct cancel_run {
  weft_future **fs;
  long n;
  atomic_long cancelled;
  uint32_t seed;
};

static void *canceller(void *arg) {
  struct cancel_run *c = arg;
  uint32_t s = c->seed;
  for (long k = 0; k < c->n; k++) {
    long i = (long)(rnd(&s) % (uint32_t)c->n);
    int r = weft_future_cancel(c->fs[i]);
    ASSERT(r == 0 || r == WEFT_EBUSY || r == WEFT_EALREADY);
  }
  return NULL;
}

/* Futures cancelled from two threads while the workers run them: each
 * ends exactly once, as done (and its task ran once) or as cancelled (and
 * its task never ran). */
TEST(cancel_storm) {
  long n = iters();
  weft_executor *ex = make(workers());
  for (long round = 0; round < rounds() / 8 + 1; round++) {
    marks_reset((size_t)n);
    weft_future **fs = calloc((size_t)n, sizeof *fs);
    struct cancel_run c[2] = {{fs, n, 0, 7 + (uint32_t)round}, {fs, n, 0, 99 + (uint32_t)round}};
    /* Half submitted one by one, half as one batch. */
    for (long i = 0; i < n / 2; i++) {
      uint32_t idx = (uint32_t)i;
      ASSERT_OK(weft_executor_submit(ex, &T_MARK, &idx, sizeof idx, &fs[i]));
    }
    uint32_t *idx = malloc((size_t)(n - n / 2) * sizeof *idx);
    for (long i = n / 2; i < n; i++) idx[i - n / 2] = (uint32_t)i;
    ASSERT_OK(weft_executor_submit_many(ex, &T_MARK, idx, sizeof *idx, (size_t)(n - n / 2), fs + n / 2));
    pthread_t th[2];
    for (int t = 0; t < 2; t++) ASSERT_OK(-pthread_create(&th[t], NULL, canceller, &c[t]));
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    ASSERT_OK(weft_wait(fs, (size_t)n, WEFT_ALL_COMPLETED, weft_deadline_in_ms(60000), NULL));
    long done = 0, cancelled = 0;
    for (long i = 0; i < n; i++) {
      weft_future_state st = weft_future_state_get(fs[i]);
      if (st == WEFT_FUTURE_DONE) {
        done++;
        ASSERT_EQ(atomic_load(&marks[i]), 1);
        const void *d;
        ASSERT_OK(weft_future_result(fs[i], 0, &d, NULL));
        ASSERT_EQ(*(const uint32_t *)d, (uint32_t)i);
      } else {
        ASSERT_EQ(st, WEFT_FUTURE_CANCELLED);
        ASSERT_EQ(atomic_load(&marks[i]), 0);
        cancelled++;
      }
      weft_future_release(fs[i]);
    }
    ASSERT_EQ(done + cancelled, n);
    ASSERT_EQ(atomic_load(&total_ran), done);
    free(idx);
    free(fs);
  }
  weft_executor_destroy(ex);
}

/* ------------------------------------------------ shutdown vs submit */

struct sub_run {
  weft_executor *ex;
  int id;
  long per;
  weft_future **fs; /* per entries; NULL where the submit failed */
  long ok;
};

static void *submitter(void *arg) {
  struct sub_run *s = arg;
  for (long i = 0; i < s->per; i++) {
    uint32_t idx = (uint32_t)(s->id * s->per + i);
    int r;
    if (i % 3 == 2) {
      r = weft_executor_submit(s->ex, &T_MARK, &idx, sizeof idx, NULL);
      s->fs[i] = NULL;
    } else {
      r = weft_executor_submit(s->ex, &T_MARK, &idx, sizeof idx, &s->fs[i]);
      if (r) s->fs[i] = NULL;
    }
    if (r == 0)
      s->ok++;
    else
      ASSERT_ERR(r, WEFT_ESHUTDOWN);
  }
  return NULL;
}

/* Submitters race a shutdown (waiting or cancelling): every accepted task
 * runs or is cancelled, every refused one never runs, and shutdown(WAIT)
 * returns only when the accepted, uncancelled ones have run. */
TEST(shutdown_races_submit) {
  int nt = nthreads();
  long per = iters() / nt / 8 + 1;
  for (long round = 0; round < rounds() / 2 + 1; round++) {
    marks_reset((size_t)(nt * per));
    weft_executor *ex = make(workers());
    struct sub_run s[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < nt; t++) {
      s[t] = (struct sub_run){ex, t, per, calloc((size_t)per, sizeof(weft_future *)), 0};
      ASSERT_OK(-pthread_create(&th[t], NULL, submitter, &s[t]));
    }
    weft_sleep_until(weft_deadline_in_ns((round % 5) * 100000));
    bool cancel = round % 2;
    ASSERT_OK(weft_executor_shutdown(
        ex, WEFT_SHUTDOWN_WAIT | (cancel ? WEFT_SHUTDOWN_CANCEL_PENDING : 0), WEFT_FOREVER));
    long after = atomic_load(&total_ran);
    for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
    long accepted = 0, done = 0, cancelled = 0;
    for (int t = 0; t < nt; t++) {
      accepted += s[t].ok;
      for (long i = 0; i < per; i++) {
        weft_future *f = s[t].fs[i];
        uint32_t idx = (uint32_t)(t * per + i);
        if (!f) continue;
        /* Finished by the time shutdown(WAIT) returned. */
        ASSERT(weft_future_done(f));
        if (weft_future_state_get(f) == WEFT_FUTURE_DONE) {
          done++;
          ASSERT_EQ(atomic_load(&marks[idx]), 1);
        } else {
          ASSERT(cancel);
          cancelled++;
          ASSERT_EQ(atomic_load(&marks[idx]), 0);
        }
        weft_future_release(f);
      }
      free(s[t].fs);
    }
    /* Nothing ran after shutdown(WAIT) returned. */
    ASSERT_EQ(atomic_load(&total_ran), after);
    ASSERT_LE(atomic_load(&total_ran), accepted);
    if (!cancel) ASSERT_EQ(atomic_load(&total_ran), accepted);
    ASSERT_LE(done + cancelled, accepted);
    weft_executor_destroy(ex);
  }
}

/* ------------------------------------------------- callbacks that submit */

struct tree {
  weft_executor *ex;
  atomic_long nodes;
  atomic_long errors;
  atomic_int finished;
  long want;
};

static int t_leaf(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}
static const weft_task T_LEAF = {"stress.leaf", t_leaf};

static void tree_cb(weft_future *f, void *ud);

static void tree_spawn(struct tree *t, int depth) {
  weft_future *f;
  int r = weft_executor_submit(t->ex, &T_LEAF, &depth, sizeof depth, &f);
  if (r) {
    atomic_fetch_add(&t->errors, 1);
    return;
  }
  /* depth rides in the callback's ud: pack it with the tree pointer. */
  struct node {
    struct tree *t;
    int depth;
  } *n = malloc(sizeof *n);
  n->t = t;
  n->depth = depth;
  if (weft_future_on_done(f, tree_cb, n) != 0) atomic_fetch_add(&t->errors, 1);
  weft_future_release(f);
}

static void tree_cb(weft_future *f, void *ud) {
  struct node {
    struct tree *t;
    int depth;
  } *n = ud;
  struct tree *t = n->t;
  int depth = n->depth;
  free(n);
  if (weft_future_state_get(f) != WEFT_FUTURE_DONE) atomic_fetch_add(&t->errors, 1);
  if (depth > 0) {
    tree_spawn(t, depth - 1);
    tree_spawn(t, depth - 1);
  }
  if (atomic_fetch_add(&t->nodes, 1) + 1 == t->want) atomic_store(&t->finished, 1);
}

/* A binary tree of tasks, each node's callback submitting its children. */
TEST(callbacks_submit_tree) {
  int depth = 10;
#ifdef WEFT_TSAN
  depth = 8;
#endif
  for (unsigned w = 1; w <= 3; w++) {
    weft_executor *ex = make(w);
    struct tree t = {ex, 0, 0, 0, (1L << (depth + 1)) - 1};
    tree_spawn(&t, depth);
    int64_t dl = weft_deadline_in_ms(60000);
    while (!atomic_load(&t.finished) && weft_now_ns() < dl) weft_sleep_until(weft_deadline_in_ms(1));
    ASSERT(atomic_load(&t.finished));
    ASSERT_EQ(atomic_load(&t.errors), 0);
    weft_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&t.nodes), t.want);
  }
}

/* ------------------------------------------------------ many submitters */

struct mix_run {
  weft_executor *ex;
  int id;
  long per;
};

static int t_add(weft_task_ctx *ctx, const void *arg, size_t len) {
  int32_t x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  atomic_fetch_add(&total_ran, 1);
  x += 1;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task T_ADD = {"stress.add", t_add};

static void *mixer(void *arg) {
  struct mix_run *m = arg;
  int32_t in[64], out[64];
  weft_future *fs[64];
  for (int i = 0; i < 64; i++) in[i] = m->id * 1000 + i;
  for (long k = 0; k < m->per; k += 64 * 4) {
    for (int i = 0; i < 64; i++) ASSERT_OK(weft_executor_submit(m->ex, &T_ADD, &in[i], sizeof in[i], &fs[i]));
    for (int i = 0; i < 64; i++) {
      const void *d;
      ASSERT_OK(weft_future_result(fs[i], WEFT_FOREVER, &d, NULL));
      ASSERT_EQ(*(const int32_t *)d, in[i] + 1);
      weft_future_release(fs[i]);
    }
    ASSERT_OK(weft_executor_submit_many(m->ex, &T_ADD, in, sizeof in[0], 64, fs));
    ASSERT_OK(weft_wait(fs, 64, WEFT_ALL_COMPLETED, WEFT_FOREVER, NULL));
    for (int i = 0; i < 64; i++) {
      const void *d;
      ASSERT_OK(weft_future_result(fs[i], 0, &d, NULL));
      ASSERT_EQ(*(const int32_t *)d, in[i] + 1);
      weft_future_release(fs[i]);
    }
    for (int i = 0; i < 64; i++) ASSERT_OK(weft_executor_submit(m->ex, &T_ADD, &in[i], sizeof in[i], NULL));
    ASSERT_OK(weft_executor_map(m->ex, &T_ADD, in, sizeof in[0], out, sizeof out[0], 64, NULL));
    for (int i = 0; i < 64; i++) ASSERT_EQ(out[i], in[i] + 1);
  }
  return NULL;
}

/* Several threads use every way in at once. */
TEST(many_submitters) {
  int nt = nthreads();
  long per = iters() / nt + 256;
  atomic_store(&total_ran, 0);
  weft_executor *ex = make(workers());
  struct mix_run m[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  for (int t = 0; t < nt; t++) {
    m[t] = (struct mix_run){ex, t, per};
    ASSERT_OK(-pthread_create(&th[t], NULL, mixer, &m[t]));
  }
  for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER));
  long rounds_per = (per + 255) / 256;
  ASSERT_EQ(atomic_load(&total_ran), (long)nt * rounds_per * 64 * 4);
  weft_executor_stats st;
  weft_executor_stats_get(ex, &st);
  ASSERT_UEQ(st.completed, (uint64_t)atomic_load(&total_ran));
  ASSERT_UEQ(st.queued, 0);
  ASSERT_UEQ(st.running, 0);
  weft_executor_destroy(ex);
}

/* ------------------------------------------------------- nested waits */

struct fib_arg {
  weft_executor *ex;
  int n;
};

static int t_fib(weft_task_ctx *ctx, const void *arg, size_t len) {
  struct fib_arg a;
  (void)len;
  memcpy(&a, arg, sizeof a);
  int64_t v;
  if (a.n < 2) {
    v = a.n;
  } else {
    weft_task t = {NULL, t_fib};
    struct fib_arg b[2] = {{a.ex, a.n - 1}, {a.ex, a.n - 2}};
    weft_future *f[2];
    int r = weft_executor_submit_many(a.ex, &t, b, sizeof b[0], 2, f);
    if (r) return r;
    v = 0;
    for (int i = 0; i < 2; i++) {
      const void *d;
      r = weft_future_result(f[i], WEFT_FOREVER, &d, NULL);
      if (r) return r;
      v += *(const int64_t *)d;
      weft_future_release(f[i]);
    }
  }
  return weft_task_return(ctx, &v, sizeof v);
}

/* fib by recursive tasks that wait for their children: thousands of nested
 * waits, on one worker and on several. */
TEST(nested_fib) {
  int n = 18;
#ifdef WEFT_TSAN
  n = 14;
#endif
  int64_t want[2] = {0, 1};
  for (int i = 2; i <= n; i++) {
    int64_t t = want[0] + want[1];
    want[0] = want[1];
    want[1] = t;
  }
  for (unsigned w = 1; w <= 4; w *= 2) {
    weft_executor *ex = make(w);
    struct fib_arg a = {ex, n};
    weft_task t = {NULL, t_fib};
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, &t, &a, sizeof a, &f));
    const void *d;
    ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(60000), &d, NULL));
    ASSERT_EQ(*(const int64_t *)d, want[1]);
    weft_future_release(f);
    weft_executor_destroy(ex);
  }
}

/* ------------------------------------------------- lazy maps in parallel */

struct imap_run {
  weft_executor *ex;
  long n;
  int64_t next;
  int64_t cur;
  bool unordered;
};

static int src(void *ud, const void **arg, size_t *len) {
  struct imap_run *r = ud;
  if (r->next >= r->n) return WEFT_EEMPTY;
  r->cur = r->next++;
  *arg = &r->cur;
  *len = sizeof r->cur;
  return 0;
}

static int t_twice(weft_task_ctx *ctx, const void *arg, size_t len) {
  int64_t x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  x *= 2;
  return weft_task_return(ctx, &x, sizeof x);
}
static const weft_task T_TWICE = {"stress.twice", t_twice};

static void *imapper(void *arg) {
  struct imap_run *r = arg;
  weft_imap_opts o = {.unordered = r->unordered, .max_in_flight = 5};
  weft_imap *it;
  ASSERT_OK(weft_imap_create(&it, r->ex, &T_TWICE, src, r, &o));
  int64_t sum = 0;
  for (long i = 0; i < r->n; i++) {
    weft_future *f;
    ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &f));
    const void *d;
    ASSERT_OK(weft_future_result(f, 0, &d, NULL));
    int64_t v = *(const int64_t *)d;
    if (!r->unordered) ASSERT_EQ(v, 2 * i);
    sum += v;
    weft_future_release(f);
  }
  weft_future *f;
  ASSERT_ERR(weft_imap_next(it, 0, &f), WEFT_EEMPTY);
  ASSERT_EQ(sum, (int64_t)r->n * (r->n - 1));
  weft_imap_destroy(it);
  return NULL;
}

TEST(imap_many_threads) {
  int nt = nthreads();
  weft_executor *ex = make(workers());
  struct imap_run r[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  for (int t = 0; t < nt; t++) {
    r[t] = (struct imap_run){ex, iters() / nt, 0, 0, t % 2};
    ASSERT_OK(-pthread_create(&th[t], NULL, imapper, &r[t]));
  }
  for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
  weft_executor_destroy(ex);
}

/* ------------------------------------------------------------- churn */

static int t_spin(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  atomic_fetch_add(&total_ran, 1);
  return 0;
}
static const weft_task T_SPIN = {"stress.spin", t_spin};

/* Pools created, loaded and destroyed over and over: destroy waits for
 * every task, and no thread or job is left behind. */
TEST(create_destroy_churn) {
  atomic_store(&total_ran, 0);
  long total = 0;
  for (long round = 0; round < rounds() * 2; round++) {
    weft_executor *ex = make(1 + (unsigned)(round % 4));
    long k = 100 + round * 10;
    for (long i = 0; i < k; i++) ASSERT_OK(weft_executor_submit(ex, &T_SPIN, NULL, 0, NULL));
    total += k;
    if (round % 3 == 0) ASSERT_OK(weft_executor_shutdown(ex, 0, 0));
    weft_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&total_ran), total);
  }
}
