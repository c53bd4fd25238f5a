/*
 * Stress for futures (src/future/): many threads completing, cancelling
 * and waiting on thousands of futures; weft_wait and as_completed against
 * completers; on_done racing the finish; references taken and dropped
 * around the finish; and watch/unwatch racing the finishing thread, the
 * protocol that lets wait and as_completed free their watches. Every case
 * checks exact counts at the end, so a lost wake-up shows as a hang (the
 * timeout) and a lost or doubled completion or callback as a wrong count.
 *
 * Knobs (environment): WEFT_STRESS_ITERS scales every case (default 100000,
 * under ThreadSanitizer 30000); WEFT_STRESS_THREADS is the thread
 * count for the cases with a variable number of threads (default 4).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common/futex.h"
#include "future/future_impl.h"
#include "weft_test.h"

WEFT_TEST_TIMEOUT(120)

#ifdef WEFT_TSAN
#define DEFAULT_ITERS 30000
#else
#define DEFAULT_ITERS 100000
#endif
#define MAX_THREADS 32

static long iters(void) {
  long n = weft_test_knob("WEFT_STRESS_ITERS", DEFAULT_ITERS);
  return n < 16 ? 16 : n;
}
static int nthreads(void) {
  long n = weft_test_knob("WEFT_STRESS_THREADS", 4);
  return n < 2 ? 2 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* xorshift: cheap per-thread randomness for jitter. */
static uint32_t rnd(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x ? x : 0x9e3779b9u;
}
static void jitter(uint32_t *s, uint32_t max) {
  for (uint32_t i = rnd(s) % max; i; i--) __asm__ __volatile__("" ::: "memory");
}

/* Run fn(i, arg) on n threads that start together. */
typedef void role_fn(int i, void *arg);
typedef struct role {
  role_fn *fn;
  void *arg;
  int i;
  pthread_barrier_t *gate;
} role;
static void *role_main(void *p) {
  role *r = p;
  pthread_barrier_wait(r->gate);
  r->fn(r->i, r->arg);
  return NULL;
}
static void run_roles(int n, role_fn *const *fns, void *arg) {
  pthread_t t[MAX_THREADS];
  role r[MAX_THREADS];
  pthread_barrier_t gate;
  ASSERT_EQ(pthread_barrier_init(&gate, NULL, (unsigned)n), 0);
  for (int i = 0; i < n; i++) {
    r[i] = (role){fns[i], arg, i, &gate};
    ASSERT_EQ(pthread_create(&t[i], NULL, role_main, &r[i]), 0);
  }
  for (int i = 0; i < n; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  pthread_barrier_destroy(&gate);
}

/* A helper hook that only counts sleeps: installed on waiting threads, it
 * shows that they really went to sleep (and exercises weft__block's hook
 * under load). */
static _Atomic long g_sleeps;
static int counting_block(void *ctx, _Atomic uint32_t *word, uint32_t expected,
                          int64_t deadline) {
  (void)ctx;
  atomic_fetch_add_explicit(&g_sleeps, 1, memory_order_relaxed);
  return weft__futex_wait(word, expected, deadline, 0);
}
static void count_sleeps(void) { weft__current_helper.block = counting_block; }

static weft_future **make_many(long n) {
  weft_future **fs = calloc((size_t)n, sizeof *fs);
  ASSERT_NOT_NULL(fs);
  for (long i = 0; i < n; i++) ASSERT_OK(weft_future_create(&fs[i]));
  return fs;
}
static void release_many(weft_future **fs, long n) {
  for (long i = 0; i < n; i++) weft_future_release(fs[i]);
  free(fs);
}

/* ---------------------------------------- completing, cancelling, waiting */

/* Two workers race set_running then finish (done or failed); a canceller
 * cancels; two waiters wait on every future, some with short deadlines.
 * Each future ends exactly once, its callback runs exactly once, and what
 * the waiters read agrees with who won. */
typedef struct race {
  long n;
  weft_future **fs;
  _Atomic int *won;      /* set_running returned 0 (per future) */
  _Atomic int *cancels;  /* cancel returned 0 */
  _Atomic int *cbs;      /* callback runs */
  _Atomic long reached;  /* highest future a waiter has started to wait on */
} race;

/* Loose lockstep: act on future i only once a waiter waits on it, so that
 * waiters really sleep and get woken rather than find everything done. */
static void race_gate(race *r, long i) {
  while (atomic_load_explicit(&r->reached, memory_order_relaxed) < i) sched_yield();
}

static void race_cb(weft_future *f, void *ud) {
  (void)f;
  atomic_fetch_add((_Atomic int *)ud, 1);
}

static void race_worker(int id, void *arg) {
  race *r = arg;
  uint32_t s = 0x1234u + (uint32_t)id;
  for (long i = 0; i < r->n; i++) {
    race_gate(r, i);
    jitter(&s, 64);
    int rc = weft_future_set_running(r->fs[i]);
    if (rc == 0) {
      atomic_fetch_add(&r->won[i], 1);
      if (i & 1) {
        ASSERT_OK(weft_future_set_error(r->fs[i], WEFT_EIO, (i & 2) ? "odd" : NULL));
      } else {
        long v = i;
        ASSERT_OK(weft_future_set_result(r->fs[i], &v, sizeof v));
      }
    } else if (rc != WEFT_ECANCELED && rc != WEFT_EALREADY) {
      weft_test_fail(__FILE__, __LINE__, "set_running: %s", weft_err_name(rc));
    }
  }
}

static void race_canceller(int id, void *arg) {
  race *r = arg;
  uint32_t s = 0x777u + (uint32_t)id;
  for (long i = 0; i < r->n; i++) {
    /* Try on a third of them: it wins nearly every race it enters (the
     * workers do more per future), and the other outcomes need exercise. */
    if (rnd(&s) % 3) continue;
    race_gate(r, i);
    jitter(&s, 96);
    int rc = weft_future_cancel(r->fs[i]);
    if (rc == 0)
      atomic_fetch_add(&r->cancels[i], 1);
    else if (rc != WEFT_EBUSY && rc != WEFT_EALREADY)
      weft_test_fail(__FILE__, __LINE__, "cancel: %s", weft_err_name(rc));
  }
}

static void race_waiter(int id, void *arg) {
  race *r = arg;
  uint32_t s = 0x4242u + (uint32_t)id;
  if (id == 3) count_sleeps(); /* one waiter through the hook, one without */
  for (long i = 0; i < r->n; i++) {
    long was = atomic_load(&r->reached);
    while (was < i && !atomic_compare_exchange_weak(&r->reached, &was, i)) {
    }
    const void *d;
    size_t len;
    int64_t dl = (rnd(&s) & 3) == 0 ? 0 : (rnd(&s) & 1) ? weft_deadline_in_ns(2000) : WEFT_FOREVER;
    int rc = weft_future_result(r->fs[i], dl, &d, &len);
    if (rc == WEFT_ETIMEDOUT) rc = weft_future_result(r->fs[i], WEFT_FOREVER, &d, &len);
    if (rc == 0) {
      ASSERT_EQ(len, sizeof(long));
      long v;
      memcpy(&v, d, sizeof v);
      ASSERT_EQ(v, i);
    } else if (rc == WEFT_EIO) {
      ASSERT_STR_EQ(weft_future_error_message(r->fs[i]), (i & 2) ? "odd" : "");
    } else {
      ASSERT_ERR(rc, WEFT_ECANCELED);
    }
  }
}

TEST(complete_cancel_wait_race) {
  race r = {.n = iters()};
  r.fs = make_many(r.n);
  r.won = calloc((size_t)r.n, sizeof *r.won);
  r.cancels = calloc((size_t)r.n, sizeof *r.cancels);
  r.cbs = calloc((size_t)r.n, sizeof *r.cbs);
  for (long i = 0; i < r.n; i++) ASSERT_OK(weft_future_on_done(r.fs[i], race_cb, &r.cbs[i]));
  role_fn *fns[] = {race_worker, race_worker, race_canceller, race_waiter, race_waiter};
  run_roles(5, fns, &r);
  long done = 0, failed = 0, cancelled = 0;
  for (long i = 0; i < r.n; i++) {
    ASSERT_EQ(atomic_load(&r.cbs[i]), 1);
    ASSERT_EQ(atomic_load(&r.won[i]) + atomic_load(&r.cancels[i]), 1);
    weft_future_state st = weft_future_state_get(r.fs[i]);
    if (atomic_load(&r.cancels[i])) {
      ASSERT_EQ(st, WEFT_FUTURE_CANCELLED);
      cancelled++;
    } else {
      ASSERT_EQ(st, (i & 1) ? WEFT_FUTURE_FAILED : WEFT_FUTURE_DONE);
      (i & 1) ? failed++ : done++;
    }
  }
  printf("done %ld failed %ld cancelled %ld; hooked waiter slept %ld times\n", done, failed,
         cancelled, atomic_load(&g_sleeps));
  free(r.won);
  free(r.cancels);
  free(r.cbs);
  release_many(r.fs, r.n);
}

/* ------------------------------------------------------------ weft_wait */

/* Groups of futures (some of 8, on the stack; some of 24, allocated);
 * completer threads finish them in a scrambled order, some failing; waiter
 * threads run weft_wait in every mode on every group. */
#define GROUPS_SMALL 8
#define GROUPS_LARGE 24
typedef struct wstorm {
  long ngroups;
  int nthreads;
  weft_future **fs;      /* ngroups * GROUPS_LARGE, a group uses its first size */
  _Atomic long finished; /* futures finished by completers */
  _Atomic long reached;  /* highest group a waiter has started on */
} wstorm;

static int group_size(long g) { return (g & 1) ? GROUPS_LARGE : GROUPS_SMALL; }

static void wstorm_completer(int id, void *arg) {
  wstorm *w = arg;
  int ncomp = w->nthreads / 2;
  uint32_t s = 99u + (uint32_t)id;
  for (long g = 0; g < w->ngroups; g++) {
    int n = group_size(g);
    weft_future **grp = &w->fs[g * GROUPS_LARGE];
    while (atomic_load_explicit(&w->reached, memory_order_relaxed) < g) sched_yield();
    /* Each completer takes every ncomp-th member, from a rotating start. */
    for (int k = id; k < n; k += ncomp) {
      int m = (k * 7 + (int)g) % n;
      jitter(&s, 200);
      int rc = (m % 5 == 3) ? weft_future_set_error(grp[m], WEFT_EPIPE, NULL)
                            : weft_future_set_result(grp[m], NULL, 0);
      if (rc == 0) atomic_fetch_add(&w->finished, 1);
    }
  }
}

static void wstorm_waiter(int id, void *arg) {
  wstorm *w = arg;
  if (id & 1) count_sleeps();
  for (long g = 0; g < w->ngroups; g++) {
    int n = group_size(g);
    weft_future **grp = &w->fs[g * GROUPS_LARGE];
    long was = atomic_load(&w->reached);
    while (was < g && !atomic_compare_exchange_weak(&w->reached, &was, g)) {
    }
    size_t nd = 0;
    int mode = 1 + (int)((g + id) % 3);
    ASSERT_OK(weft_wait(grp, (size_t)n, (weft_wait_mode)mode, WEFT_FOREVER, &nd));
    ASSERT_GE(nd, 1);
    if (mode == WEFT_FIRST_EXCEPTION && nd < (size_t)n) {
      bool any_failed = false;
      for (int k = 0; k < n; k++)
        any_failed |= weft_future_state_get(grp[k]) == WEFT_FUTURE_FAILED;
      ASSERT(any_failed);
    }
    if (mode == WEFT_ALL_COMPLETED) ASSERT_EQ(nd, n);
    /* A short timed wait too: either it returns at once or times out. */
    int rc = weft_wait(grp, (size_t)n, WEFT_ALL_COMPLETED, weft_deadline_in_ns(20000), &nd);
    if (rc == 0)
      ASSERT_EQ(nd, n);
    else
      ASSERT_ERR(rc, WEFT_ETIMEDOUT);
  }
  /* Finally everything finishes. */
  ASSERT_OK(weft_wait(w->fs, (size_t)w->ngroups * GROUPS_LARGE, WEFT_FIRST_COMPLETED, 0, NULL));
}

TEST(wait_storm) {
  wstorm w = {.nthreads = nthreads() < 4 ? 4 : nthreads()};
  if (w.nthreads > 8) w.nthreads = 8;
  w.ngroups = iters() / 20;
  long total = w.ngroups * GROUPS_LARGE;
  w.fs = make_many(total);
  /* Members past a small group's size are never waited on: finish them. */
  for (long g = 0; g < w.ngroups; g++)
    for (int k = group_size(g); k < GROUPS_LARGE; k++)
      ASSERT_OK(weft_future_set_result(w.fs[g * GROUPS_LARGE + k], NULL, 0));
  role_fn *fns[MAX_THREADS];
  int ncomp = w.nthreads / 2;
  for (int i = 0; i < w.nthreads; i++) fns[i] = i < ncomp ? wstorm_completer : wstorm_waiter;
  /* Waiter ids start at ncomp; completers use id < ncomp. */
  run_roles(w.nthreads, fns, &w);
  long expect = 0;
  for (long g = 0; g < w.ngroups; g++) expect += group_size(g);
  ASSERT_EQ(atomic_load(&w.finished), expect);
  printf("hooked waiters slept %ld times\n", atomic_load(&g_sleeps));
  size_t nd = 0;
  ASSERT_OK(weft_wait(w.fs, (size_t)total, WEFT_ALL_COMPLETED, 0, &nd));
  ASSERT_EQ(nd, total);
  release_many(w.fs, total);
}

/* ----------------------------------------------------------- as_completed */

/* Rounds of a few hundred futures (with duplicates in the input) finished
 * by completers in every way while the main thread iterates; every other
 * round is destroyed half-way. */
typedef struct acs {
  weft_future **fs;
  long n;
  int ncomp;
  _Atomic long yielded; /* by the consumer so far */
  _Atomic int gone;     /* the consumer stopped iterating */
} acs;

static void acs_completer(int id, void *arg) {
  acs *a = arg;
  uint32_t s = 5u + (uint32_t)id;
  for (long i = id; i < a->n; i += a->ncomp) {
    /* Keep close to the consumer, so that it often waits in next(). The
     * completer furthest behind is never held back, so all progress. */
    while (!atomic_load(&a->gone) && atomic_load(&a->yielded) < i * 3 / 4 - 10) sched_yield();
    jitter(&s, 300);
    switch (i % 4) {
    case 0: weft_future_set_result(a->fs[i], &i, sizeof i); break;
    case 1: weft_future_set_error(a->fs[i], WEFT_EIO, NULL); break;
    case 2: weft_future_cancel(a->fs[i]); break;
    default:
      if (weft_future_set_running(a->fs[i]) == 0) weft_future_set_result(a->fs[i], NULL, 0);
    }
  }
}

typedef struct acs_main_arg {
  acs *a;
  weft_future **input; /* fs with duplicates */
  long ninput;
  bool partial;
} acs_main_arg;

static void acs_consumer(int id, void *arg) {
  (void)id;
  acs_main_arg *m = arg;
  acs *a = m->a;
  count_sleeps();
  weft_as_completed *it;
  ASSERT_OK(weft_as_completed_create(&it, m->input, (size_t)m->ninput));
  char *seen = calloc((size_t)a->n, 1);
  long got = 0, stop = m->partial ? a->n / 2 : a->n;
  while (got < stop) {
    weft_future *f = NULL;
    int rc = weft_as_completed_next(it, weft_deadline_in_ms(1), &f);
    if (rc == WEFT_ETIMEDOUT) continue;
    ASSERT_OK(rc);
    ASSERT(weft_future_done(f));
    long i = -1;
    for (long k = 0; k < a->n; k++)
      if (a->fs[k] == f) i = k;
    ASSERT(i >= 0);
    ASSERT(!seen[i]);
    seen[i] = 1;
    got++;
    atomic_store(&a->yielded, got);
  }
  atomic_store(&a->gone, 1);
  if (!m->partial) {
    weft_future *f;
    ASSERT_ERR(weft_as_completed_next(it, 0, &f), WEFT_EEMPTY);
  }
  weft_as_completed_destroy(it);
  free(seen);
}

static void acs_role(int id, void *arg) {
  acs_main_arg *m = arg;
  if (id == 0)
    acs_consumer(id, m);
  else
    acs_completer(id - 1, m->a);
}

TEST(as_completed_storm) {
  long rounds = iters() / 500 < 4 ? 4 : iters() / 500;
  int nt = nthreads();
  for (long r = 0; r < rounds; r++) {
    acs a = {.n = 300, .ncomp = nt - 1, .yielded = 0, .gone = 0};
    a.fs = make_many(a.n);
    long ninput = a.n + a.n / 3;
    weft_future **input = malloc((size_t)ninput * sizeof *input);
    for (long i = 0; i < a.n; i++) input[i] = a.fs[i];
    for (long i = a.n; i < ninput; i++) input[i] = a.fs[(i * 13) % a.n];
    /* A few finished before the iterator exists. */
    for (long i = 0; i < a.n; i += 50) weft_future_set_result(a.fs[i], NULL, 0);
    acs_main_arg m = {&a, input, ninput, (r & 1) != 0};
    role_fn *fns[MAX_THREADS];
    for (int i = 0; i < nt; i++) fns[i] = acs_role;
    run_roles(nt, fns, &m);
    free(input);
    release_many(a.fs, a.n);
  }
  printf("%ld rounds; the consumer slept %ld times\n", rounds, atomic_load(&g_sleeps));
}

/* ------------------------------------------------------ on_done vs finish */

/* One thread adds K callbacks to each future while another finishes it:
 * each callback runs exactly once, either on the finisher or at once. */
#define K_CBS 6
typedef struct ondone {
  long n;
  weft_future **fs;
  _Atomic int *calls;
  _Atomic long *progress;
} ondone;

static void od_cb(weft_future *f, void *ud) {
  ASSERT(weft_future_done(f));
  atomic_fetch_add((_Atomic int *)ud, 1);
}

static void od_adder(int id, void *arg) {
  ondone *o = arg;
  (void)id;
  for (long i = 0; i < o->n; i++) {
    atomic_store(o->progress, i);
    for (int k = 0; k < K_CBS; k++) ASSERT_OK(weft_future_on_done(o->fs[i], od_cb, &o->calls[i]));
  }
}

static void od_finisher(int id, void *arg) {
  ondone *o = arg;
  uint32_t s = 31u + (uint32_t)id;
  for (long i = 0; i < o->n; i++) {
    while (atomic_load(o->progress) < i) sched_yield();
    jitter(&s, 200);
    if (i % 3 == 0)
      ASSERT_OK(weft_future_cancel(o->fs[i]));
    else
      ASSERT_OK(weft_future_set_result(o->fs[i], NULL, 0));
  }
}

TEST(on_done_vs_finish) {
  _Atomic long progress = 0;
  ondone o = {.n = iters(), .progress = &progress};
  o.fs = make_many(o.n);
  o.calls = calloc((size_t)o.n, sizeof *o.calls);
  role_fn *fns[] = {od_adder, od_finisher};
  run_roles(2, fns, &o);
  for (long i = 0; i < o.n; i++) ASSERT_EQ(atomic_load(&o.calls[i]), K_CBS);
  free(o.calls);
  release_many(o.fs, o.n);
}

/* ------------------------------------------------ references vs finish */

/* Every future is handed to the finisher and to waiters, each with its
 * own reference, and the creator lets go at once; the last release of any
 * of them frees it (ASan checks for leaks and uses after free). A callback
 * drops one more reference that was handed to it. */
typedef struct refs {
  long n;
  weft_future **slot; /* published one at a time */
  _Atomic long next;  /* slots published */
} refs;

static void refs_drop_cb(weft_future *f, void *ud) {
  (void)ud;
  weft_future_release(f);
}

static void refs_creator(int id, void *arg) {
  (void)id;
  refs *r = arg;
  for (long i = 0; i < r->n; i++) {
    weft_future *f;
    ASSERT_OK(weft_future_create(&f));
    weft_future_retain(f); /* the finisher's */
    weft_future_retain(f); /* the waiter's */
    weft_future_retain(f); /* the callback's */
    ASSERT_OK(weft_future_on_done(f, refs_drop_cb, NULL));
    r->slot[i] = f;
    atomic_store_explicit(&r->next, i + 1, memory_order_release);
    weft_future_release(f); /* the creator's own */
  }
}

static weft_future *refs_take(refs *r, long i) {
  while (atomic_load_explicit(&r->next, memory_order_acquire) <= i) sched_yield();
  return r->slot[i];
}

static void refs_finisher(int id, void *arg) {
  (void)id;
  refs *r = arg;
  for (long i = 0; i < r->n; i++) {
    weft_future *f = refs_take(r, i);
    ASSERT_OK(weft_future_set_result(f, &i, sizeof i));
    weft_future_release(f);
  }
}

static void refs_waiter(int id, void *arg) {
  (void)id;
  refs *r = arg;
  for (long i = 0; i < r->n; i++) {
    weft_future *f = refs_take(r, i);
    const void *d;
    size_t len;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_EQ(*(const long *)d, i);
    weft_future_release(f);
  }
}

TEST(references_vs_finish) {
  refs r = {.n = iters()};
  r.slot = calloc((size_t)r.n, sizeof *r.slot);
  role_fn *fns[] = {refs_creator, refs_finisher, refs_waiter};
  run_roles(3, fns, &r);
  free(r.slot);
}

/* ------------------------------------------------ watch/unwatch vs finish */

/* Two watcher threads each add a watch to future i and remove it again
 * after a random pause, while a finisher finishes future i after its own
 * random pause. The watch fn sometimes lingers, so that unwatch meets it
 * mid-run. Checked: a watch runs at most once; never after its unwatch
 * returned (closed is set right after unwatch, and the fn asserts it is
 * clear); when unwatch returns the fn is not running (entered == left);
 * a watch whose add returned false never runs. */
typedef struct wrec {
  weft__watch w;
  _Atomic int entered, left, closed;
  _Atomic int unwatching; /* slow variant: the watcher is about to unwatch */
  bool added;
} wrec;

typedef struct wrace {
  long n;
  weft_future **fs;
  wrec *recs;               /* 2 per future */
  _Atomic long progress[2]; /* per watcher: futures whose watch is added */
  _Atomic long waited;      /* unwatch found the fn mid-run */
  _Atomic long removed;     /* unwatch removed a watch that had not run */
} wrace;

static void wr_fn(weft__watch *w, weft_future *f) {
  wrec *r = weft__container_of(w, wrec, w);
  ASSERT(weft_future_done(f));
  if (atomic_load(&r->closed))
    weft_test_fail(__FILE__, __LINE__, "watch ran after its unwatch returned");
  ASSERT_EQ(atomic_fetch_add(&r->entered, 1), 0);
  /* Linger now and then, so that unwatch finds us running. */
  if (((uintptr_t)r >> 4) % 3 == 0)
    for (int i = 0; i < 2000; i++) __asm__ __volatile__("" ::: "memory");
  atomic_fetch_add(&r->left, 1);
}

static void wr_watcher(int id, void *arg) {
  wrace *x = arg;
  uint32_t s = 1000u + (uint32_t)id;
  for (long i = 0; i < x->n; i++) {
    wrec *r = &x->recs[2 * i + id];
    r->w.fn = wr_fn;
    r->w.ud = NULL;
    r->added = weft__future_watch(x->fs[i], &r->w);
    atomic_store(&x->progress[id], i + 1);
    jitter(&s, 400);
    int e0 = atomic_load(&r->entered), l0 = atomic_load(&r->left);
    weft__future_unwatch(x->fs[i], &r->w);
    if (e0 && !l0) atomic_fetch_add(&x->waited, 1);
    int e = atomic_load(&r->entered), l = atomic_load(&r->left);
    ASSERT_EQ(e, l); /* not running */
    atomic_store(&r->closed, 1);
    if (!r->added) ASSERT_EQ(e, 0);
    else if (e == 0) atomic_fetch_add(&x->removed, 1);
  }
}

static void wr_finisher(int id, void *arg) {
  (void)id;
  wrace *x = arg;
  uint32_t s = 77u;
  for (long i = 0; i < x->n; i++) {
    /* Loose lockstep: finish i once a watcher is about to race on it. */
    while (atomic_load(&x->progress[0]) < i && atomic_load(&x->progress[1]) < i) sched_yield();
    jitter(&s, 400);
    ASSERT_OK(weft_future_set_result(x->fs[i], NULL, 0));
  }
}

/* The same property with the fn caught mid-run every time: the fn holds
 * on until its watcher announces the unwatch (or 5 ms pass), then lingers
 * a little more, so that unwatch meets it running and must wait. */
static void wr_fn_slow(weft__watch *w, weft_future *f) {
  wrec *r = weft__container_of(w, wrec, w);
  (void)f;
  if (atomic_load(&r->closed))
    weft_test_fail(__FILE__, __LINE__, "watch ran after its unwatch returned");
  atomic_fetch_add(&r->entered, 1);
  int64_t give_up = weft_deadline_in_ms(5);
  while (!atomic_load(&r->unwatching) && weft_now_ns() < give_up) sched_yield();
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < 5000; i++) __asm__ __volatile__("" ::: "memory");
    sched_yield();
  }
  atomic_fetch_add(&r->left, 1);
}

static void wr_slow_watcher(int id, void *arg) {
  wrace *x = arg;
  for (long i = 0; i < x->n; i++) {
    wrec *r = &x->recs[2 * i + id];
    r->w.fn = wr_fn_slow;
    r->added = weft__future_watch(x->fs[i], &r->w);
    atomic_store(&x->progress[id], i + 1);
    if (r->added)
      while (!atomic_load(&r->entered)) sched_yield();
    int e0 = atomic_load(&r->entered), l0 = atomic_load(&r->left);
    atomic_store(&r->unwatching, 1);
    weft__future_unwatch(x->fs[i], &r->w);
    if (e0 && !l0) atomic_fetch_add(&x->waited, 1);
    ASSERT_EQ(atomic_load(&r->entered), atomic_load(&r->left));
    atomic_store(&r->closed, 1);
  }
}

static void wr_run(role_fn *watcher, long n) {
  wrace x = {.n = n};
  x.fs = make_many(n);
  x.recs = calloc((size_t)(2 * n), sizeof *x.recs);
  role_fn *fns[] = {watcher, watcher, wr_finisher};
  run_roles(3, fns, &x);
  for (long i = 0; i < 2 * n; i++) {
    ASSERT_LE(atomic_load(&x.recs[i].entered), 1);
    ASSERT_EQ(atomic_load(&x.recs[i].entered), atomic_load(&x.recs[i].left));
  }
  printf("unwatch removed %ld unrun watches, waited for %ld running ones\n",
         atomic_load(&x.removed), atomic_load(&x.waited));
  long waited = atomic_load(&x.waited);
  if (watcher == wr_slow_watcher) ASSERT_GT(waited, 0); /* the path under test was taken */
  free(x.recs);
  release_many(x.fs, n);
}

TEST(watch_unwatch_vs_finish) { wr_run(wr_watcher, iters()); }

TEST(unwatch_waits_for_running_watch) {
  long n = iters() / 50;
  wr_run(wr_slow_watcher, n < 20 ? 20 : n);
}
