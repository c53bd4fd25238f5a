/*
 * Stress for the threads-and-synchronization layer: many threads hammering
 * a mutex-guarded counter, semaphore ping-pong and a bounded pool, event
 * set/clear/wait storms, barrier rounds (also with more threads than
 * parties), once storms, condition-variable producers and consumers, and
 * thread start/stop/join churn. Every case checks an exact total at the end,
 * so a lost wake-up shows as a hang (caught by the timeout) and a lost or
 * doubled update as a wrong count.
 *
 * Knobs (environment): WEFT_STRESS_ITERS scales every case (default 50000,
 * a fifth of that under ThreadSanitizer); WEFT_STRESS_THREADS is the
 * thread count (default 4).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(120)

#ifdef WEFT_TSAN
#define DEFAULT_ITERS 10000
#else
#define DEFAULT_ITERS 50000
#endif
#define MAX_THREADS 64

static long iters(void) {
  long n = weft_test_knob("WEFT_STRESS_ITERS", DEFAULT_ITERS);
  return n < 10 ? 10 : n;
}
static int nthreads(void) {
  long n = weft_test_knob("WEFT_STRESS_THREADS", 4);
  return n < 2 ? 2 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* Opened once all threads of a case exist, so that they start together and
 * really contend (a thread started first could otherwise finish its share
 * before the next one runs). */
static weft_event g_gate;

static void gate_wait(void) { ASSERT_OK(weft_event_wait(&g_gate, WEFT_FOREVER)); }

/* Run fn(arg) on n threads, opening the gate once all are started, and
 * join them all. fn calls gate_wait() first. */
static void run_threads(int n, weft_thread_fn *fn, void *arg) {
  weft_thread *t[MAX_THREADS];
  ASSERT_OK(weft_event_init(&g_gate, 0));
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_start(&t[i], fn, arg, NULL));
  weft_event_set(&g_gate);
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
  weft_event_fini(&g_gate);
}

/* --------------------------------------------------------- mutex counter */

typedef struct counter {
  weft_mutex m; /* guards n */
  long n;       /* the counter */
  long per;     /* increments per thread */
  bool nested;  /* recursive mutex: lock twice per increment */
} counter;

static void *hammer(void *arg) {
  counter *c = arg;
  gate_wait();
  for (long i = 0; i < c->per; i++) {
    int r;
    switch (i % 3) {
    case 0: r = weft_mutex_lock(&c->m, WEFT_FOREVER); break;
    case 1: r = weft_mutex_lock(&c->m, weft_deadline_in_s(30)); break;
    default:
      while ((r = weft_mutex_lock(&c->m, 0)) == WEFT_ETIMEDOUT) sched_yield();
      break;
    }
    ASSERT_OK(r);
    if (c->nested) ASSERT_OK(weft_mutex_lock(&c->m, 0));
    c->n++;
    if (c->nested) ASSERT_OK(weft_mutex_unlock(&c->m));
    ASSERT_OK(weft_mutex_unlock(&c->m));
  }
  return NULL;
}

static void mutex_counter(unsigned flags) {
  counter c;
  memset(&c, 0, sizeof c);
  ASSERT_OK(weft_mutex_init(&c.m, flags));
  c.per = iters();
  c.nested = flags & WEFT_MUTEX_RECURSIVE;
  int n = nthreads();
  run_threads(n, hammer, &c);
  ASSERT_EQ(c.n, n * c.per);
  weft_mutex_fini(&c.m);
}

TEST(mutex_counter) { mutex_counter(0); }
TEST(recursive_mutex_counter) { mutex_counter(WEFT_MUTEX_RECURSIVE); }
TEST(pshared_mutex_counter) { mutex_counter(WEFT_SYNC_PSHARED); }

/* ---------------------------------------------------- semaphore ping-pong */

typedef struct pingpong {
  weft_sem ball[2]; /* ball[i]: side i may hit */
  long rounds;      /* exchanges */
  long hits[2];     /* per side, written only by that side */
  atomic_int side;  /* hands out sides */
} pingpong;

static void *play(void *arg) {
  pingpong *p = arg;
  gate_wait();
  int me = atomic_fetch_add(&p->side, 1);
  for (long i = 0; i < p->rounds; i++) {
    ASSERT_OK(weft_sem_acquire(&p->ball[me], weft_deadline_in_s(30)));
    p->hits[me]++;
    ASSERT_OK(weft_sem_release(&p->ball[!me], 1));
  }
  return NULL;
}

TEST(semaphore_ping_pong) {
  pingpong p;
  memset(&p, 0, sizeof p);
  ASSERT_OK(weft_sem_init(&p.ball[0], 0, 1, 1));
  ASSERT_OK(weft_sem_init(&p.ball[1], 0, 0, 1));
  p.rounds = iters();
  run_threads(2, play, &p);
  ASSERT_EQ(p.hits[0], p.rounds);
  ASSERT_EQ(p.hits[1], p.rounds);
  ASSERT_UEQ(weft_sem_value(&p.ball[0]), 1);
  ASSERT_UEQ(weft_sem_value(&p.ball[1]), 0);
  weft_sem_fini(&p.ball[0]);
  weft_sem_fini(&p.ball[1]);
}

typedef struct pool {
  weft_sem s;        /* bounded: POOL units */
  atomic_int in_use; /* holders right now */
  atomic_int peak;   /* most holders seen at once */
  long per;          /* acquisitions per thread */
  atomic_long timeouts; /* short-deadline acquires that gave up */
} pool;
#define POOL 3

static void *use_pool(void *arg) {
  pool *p = arg;
  gate_wait();
  for (long i = 0; i < p->per; i++) {
    int64_t d = (i & 7) == 0 ? weft_deadline_in_ns(2000) : WEFT_FOREVER;
    int r = weft_sem_acquire(&p->s, d);
    if (r == WEFT_ETIMEDOUT) {
      atomic_fetch_add(&p->timeouts, 1);
      continue;
    }
    ASSERT_OK(r);
    int now = atomic_fetch_add(&p->in_use, 1) + 1;
    int peak = atomic_load(&p->peak);
    while (now > peak && !atomic_compare_exchange_weak(&p->peak, &peak, now)) {
    }
    ASSERT_LE(now, POOL);
    atomic_fetch_sub(&p->in_use, 1);
    ASSERT_OK(weft_sem_release(&p->s, 1));
  }
  return NULL;
}

TEST(bounded_semaphore_pool) {
  pool p;
  memset(&p, 0, sizeof p);
  ASSERT_OK(weft_sem_init(&p.s, 0, POOL, POOL));
  p.per = iters();
  run_threads(nthreads() + 2, use_pool, &p);
  ASSERT_UEQ(weft_sem_value(&p.s), POOL); /* every unit came back */
  ASSERT_LE(atomic_load(&p.peak), POOL);
  ASSERT_GE(atomic_load(&p.peak), 1);
  weft_sem_fini(&p.s);
}

/* ----------------------------------------------------------- event storm */

typedef struct storm {
  weft_event e;        /* toggled by the stormer */
  weft_event done;     /* the stormer has finished: e stays set */
  long toggles;        /* set/clear pairs */
  atomic_long passes;  /* waits that returned 0 */
} storm;

static void *stormer(void *arg) {
  storm *s = arg;
  for (long i = 0; i < s->toggles; i++) {
    weft_event_set(&s->e);
    if (i & 1) sched_yield();
    weft_event_clear(&s->e);
  }
  weft_event_set(&s->e);
  weft_event_set(&s->done);
  return NULL;
}

static void *storm_waiter(void *arg) {
  storm *s = arg;
  while (!weft_event_is_set(&s->done)) {
    int r = weft_event_wait(&s->e, weft_deadline_in_ms(5));
    if (r == 0) {
      atomic_fetch_add(&s->passes, 1);
      /* While the flag is up every wait passes at once; a tight loop here
       * would starve the stormer on a small machine. */
      weft_sleep_until(weft_deadline_in_ns(20000));
    } else {
      ASSERT_ERR(r, WEFT_ETIMEDOUT);
    }
  }
  /* The flag is up for good now: a wait must pass at once. */
  ASSERT_OK(weft_event_wait(&s->e, 0));
  ASSERT_OK(weft_event_wait(&s->e, WEFT_FOREVER));
  return NULL;
}

TEST(event_set_clear_wait_storm) {
  storm s;
  memset(&s, 0, sizeof s);
  ASSERT_OK(weft_event_init(&s.e, 0));
  ASSERT_OK(weft_event_init(&s.done, 0));
  s.toggles = iters() * 2;
  int n = nthreads();
  weft_thread *w[MAX_THREADS], *st;
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_start(&w[i], storm_waiter, &s, NULL));
  ASSERT_OK(weft_thread_start(&st, stormer, &s, NULL));
  ASSERT_OK(weft_thread_join(st, WEFT_FOREVER, NULL));
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_join(w[i], WEFT_FOREVER, NULL));
  ASSERT_GT(atomic_load(&s.passes), 0);
  weft_event_fini(&s.e);
  weft_event_fini(&s.done);
}

/* Every set() must release every thread that was waiting when it ran, even
 * when clear() follows at once: rounds of "all wait, one pulses". The pulser
 * makes sure each waiter is asleep in futex() on the event's own word (not
 * still on its way, which would rightly miss the pulse) by reading
 * /proc/self/task/<tid>/syscall: the syscall number and its first argument,
 * the futex address. */
typedef struct pulse {
  weft_event e;                  /* pulsed */
  weft_barrier b;                /* n waiters + the pulser */
  long rounds;                   /* pulses */
  atomic_ullong tid[MAX_THREADS]; /* waiters' kernel tids */
  atomic_int next;               /* hands out waiter slots */
} pulse;

static bool asleep_on(uint64_t tid, const void *addr) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/self/task/%llu/syscall", (unsigned long long)tid);
  FILE *f = fopen(path, "re");
  ASSERT_NOT_NULL(f);
  long nr = -1;
  unsigned long long a0 = 0;
  if (fgets(buf, sizeof buf, f)) sscanf(buf, "%ld %llx", &nr, &a0);
  fclose(f);
  return nr == SYS_futex && a0 == (unsigned long long)(uintptr_t)addr;
}

static void *pulse_waiter(void *arg) {
  pulse *p = arg;
  atomic_store(&p->tid[atomic_fetch_add(&p->next, 1)], (unsigned long long)gettid());
  for (long i = 0; i < p->rounds; i++) {
    ASSERT_OK(weft_barrier_wait(&p->b, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_event_wait(&p->e, weft_deadline_in_s(30)));
    ASSERT_OK(weft_barrier_wait(&p->b, WEFT_FOREVER, NULL));
  }
  return NULL;
}

TEST(event_pulse_rounds) {
  pulse *p = calloc(1, sizeof *p);
  ASSERT_NOT_NULL(p);
  int n = nthreads();
  ASSERT_OK(weft_event_init(&p->e, 0));
  ASSERT_OK(weft_barrier_init(&p->b, 0, (unsigned)n + 1));
  p->rounds = iters() / 40;
  weft_thread *t[MAX_THREADS];
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_start(&t[i], pulse_waiter, p, NULL));
  for (long i = 0; i < p->rounds; i++) {
    ASSERT_OK(weft_barrier_wait(&p->b, WEFT_FOREVER, NULL));
    for (int k = 0; k < n; k++) {
      int64_t end = weft_deadline_in_s(10);
      while (!asleep_on(atomic_load(&p->tid[k]), &p->e) && weft_now_ns() < end) sched_yield();
      ASSERT(asleep_on(atomic_load(&p->tid[k]), &p->e));
    }
    weft_event_set(&p->e);
    weft_event_clear(&p->e);
    ASSERT_OK(weft_barrier_wait(&p->b, WEFT_FOREVER, NULL));
  }
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
  weft_barrier_fini(&p->b);
  weft_event_fini(&p->e);
  free(p);
}

/* ---------------------------------------------------------- barrier rounds */

typedef struct brounds {
  weft_barrier b;     /* parties */
  unsigned parties;   /* as initialised */
  long rounds;        /* waits per thread */
  unsigned *idx;      /* idx[round * parties + thread] (when threads == parties) */
  atomic_int next;    /* hands out thread numbers */
  atomic_long count[MAX_THREADS]; /* how often each index was returned */
} brounds;

static void *barrier_body(void *arg) {
  brounds *r = arg;
  gate_wait();
  int me = atomic_fetch_add(&r->next, 1);
  for (long k = 0; k < r->rounds; k++) {
    unsigned idx = 999;
    ASSERT_OK(weft_barrier_wait(&r->b, weft_deadline_in_s(30), &idx));
    ASSERT_LT(idx, r->parties);
    atomic_fetch_add(&r->count[idx], 1);
    if (r->idx) r->idx[k * r->parties + (unsigned)me] = idx;
  }
  return NULL;
}

TEST(barrier_rounds) {
  brounds *r = calloc(1, sizeof *r);
  ASSERT_NOT_NULL(r);
  int n = nthreads();
  r->parties = (unsigned)n;
  r->rounds = iters() / 4;
  r->idx = calloc((size_t)r->rounds * (size_t)n, sizeof *r->idx);
  ASSERT_NOT_NULL(r->idx);
  ASSERT_OK(weft_barrier_init(&r->b, 0, r->parties));
  run_threads(n, barrier_body, r);
  for (long k = 0; k < r->rounds; k++) {
    unsigned long seen = 0;
    for (int i = 0; i < n; i++) seen |= 1ul << r->idx[k * n + i];
    ASSERT_EQ(seen, (1ul << n) - 1);
  }
  weft_barrier_fini(&r->b);
  free(r->idx);
  free(r);
}

/* More threads than parties: each round takes any `parties` of them, and a
 * thread may be overtaken by several rounds while it waits to run. Threads
 * go on until enough rounds are done; then abort() releases the ones left
 * in an unfilled round. Each completed round hands out every index once. */
typedef struct crowd {
  weft_barrier b;                  /* parties < threads */
  unsigned parties;                /* as initialised */
  long target;                     /* rounds to complete */
  atomic_long rounds_done;         /* counted by each round's last arrival */
  atomic_long count[MAX_THREADS];  /* how often each index was returned */
} crowd;

static void *crowd_body(void *arg) {
  crowd *c = arg;
  while (atomic_load(&c->rounds_done) < c->target) {
    unsigned idx = 999;
    int r = weft_barrier_wait(&c->b, weft_deadline_in_s(30), &idx);
    if (r == WEFT_EBROKEN) break;
    ASSERT_OK(r);
    ASSERT_LT(idx, c->parties);
    atomic_fetch_add(&c->count[idx], 1);
    if (idx == c->parties - 1) atomic_fetch_add(&c->rounds_done, 1);
  }
  return NULL;
}

TEST(barrier_more_threads_than_parties) {
  crowd *c = calloc(1, sizeof *c);
  ASSERT_NOT_NULL(c);
  int n = nthreads() + 2;
  c->parties = (unsigned)n - 2;
  c->target = iters() / 8;
  ASSERT_OK(weft_barrier_init(&c->b, 0, c->parties));
  weft_thread *t[MAX_THREADS];
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_start(&t[i], crowd_body, c, NULL));
  while (atomic_load(&c->rounds_done) < c->target) usleep(1000);
  weft_barrier_abort(&c->b);
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
  long done = atomic_load(&c->rounds_done);
  ASSERT_GE(done, c->target);
  for (unsigned i = 0; i < c->parties; i++) ASSERT_EQ(atomic_load(&c->count[i]), done);
  weft_barrier_fini(&c->b);
  free(c);
}

/* -------------------------------------------------------------- once storm */

#define ONCES 256
typedef struct once_storm {
  weft_once o[ONCES];  /* all WEFT_ONCE_INIT */
  atomic_int runs[ONCES]; /* how often each fn ran */
  int value[ONCES];    /* written by fn, read by every caller after */
} once_storm;

static once_storm g_os;

static void once_fn(void *arg) {
  int i = (int)(intptr_t)arg;
  atomic_fetch_add(&g_os.runs[i], 1);
  g_os.value[i] = i + 1;
}

static void *once_body(void *arg) {
  (void)arg;
  gate_wait();
  for (int i = 0; i < ONCES; i++) {
    weft_once_call(&g_os.o[i], once_fn, (void *)(intptr_t)i);
    ASSERT_EQ(g_os.value[i], i + 1);
  }
  return NULL;
}

TEST(once_storm) {
  long reps = iters() / 2000 + 1;
  int n = nthreads();
  for (long rep = 0; rep < reps; rep++) {
    memset(&g_os, 0, sizeof g_os);
    run_threads(n, once_body, NULL);
    for (int i = 0; i < ONCES; i++) ASSERT_EQ(atomic_load(&g_os.runs[i]), 1);
  }
}

/* ------------------------------------------- condition: bounded buffer */

#define SLOTS 8
typedef struct buffer {
  weft_mutex m;        /* guards everything below */
  weft_cond not_full;  /* signalled when a slot frees */
  weft_cond not_empty; /* signalled when an item arrives */
  long items[SLOTS];   /* ring */
  int head, count;     /* ring state */
  long per;            /* items per producer */
  long sum;            /* consumed total */
  long taken;          /* consumed count */
  long want;           /* items to consume in all */
} buffer;

static void *producer(void *arg) {
  buffer *b = arg;
  for (long i = 1; i <= b->per; i++) {
    ASSERT_OK(weft_mutex_lock(&b->m, WEFT_FOREVER));
    while (b->count == SLOTS) {
      int r = weft_cond_wait(&b->not_full, &b->m, weft_deadline_in_ms(50));
      if (r != WEFT_ETIMEDOUT) ASSERT_OK(r);
    }
    b->items[(b->head + b->count++) % SLOTS] = i;
    ASSERT_OK(weft_mutex_unlock(&b->m));
    weft_cond_signal(&b->not_empty);
  }
  return NULL;
}

static void *consumer(void *arg) {
  buffer *b = arg;
  ASSERT_OK(weft_mutex_lock(&b->m, WEFT_FOREVER));
  for (;;) {
    while (b->count == 0 && b->taken < b->want) ASSERT_OK(weft_cond_wait(&b->not_empty, &b->m, WEFT_FOREVER));
    if (b->taken == b->want) break;
    b->sum += b->items[b->head];
    b->head = (b->head + 1) % SLOTS;
    b->count--;
    if (++b->taken == b->want) weft_cond_broadcast(&b->not_empty); /* release the others */
    weft_cond_signal(&b->not_full);
  }
  ASSERT_OK(weft_mutex_unlock(&b->m));
  return NULL;
}

TEST(cond_bounded_buffer) {
  buffer b;
  memset(&b, 0, sizeof b);
  ASSERT_OK(weft_mutex_init(&b.m, 0));
  ASSERT_OK(weft_cond_init(&b.not_full, 0));
  ASSERT_OK(weft_cond_init(&b.not_empty, 0));
  int n = nthreads() / 2;
  if (n < 1) n = 1;
  b.per = iters();
  b.want = b.per * n;
  weft_thread *p[MAX_THREADS], *c[MAX_THREADS];
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_start(&c[i], consumer, &b, NULL));
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_start(&p[i], producer, &b, NULL));
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_join(p[i], WEFT_FOREVER, NULL));
  for (int i = 0; i < n; i++) ASSERT_OK(weft_thread_join(c[i], WEFT_FOREVER, NULL));
  ASSERT_EQ(b.taken, b.want);
  ASSERT_EQ(b.sum, (long)n * b.per * (b.per + 1) / 2);
  weft_cond_fini(&b.not_full);
  weft_cond_fini(&b.not_empty);
  weft_mutex_fini(&b.m);
}

/* -------------------------------------------------- thread churn + stop */

static void *sleepy(void *arg) {
  atomic_long *stopped = arg;
  if (weft_thread_sleep_until(weft_deadline_in_s(30)) == WEFT_ECANCELED && weft_stop_requested())
    atomic_fetch_add(stopped, 1);
  return NULL;
}

static void *quick(void *arg) {
  atomic_fetch_add((atomic_long *)arg, 1);
  return NULL;
}

TEST(thread_churn_with_stop_and_detach) {
  long rounds = iters() / 200 + 1;
  atomic_long stopped = 0, ran = 0;
  for (long r = 0; r < rounds; r++) {
    weft_thread *s[4], *q[4];
    for (int i = 0; i < 4; i++) {
      ASSERT_OK(weft_thread_start(&s[i], sleepy, &stopped, NULL));
      ASSERT_OK(weft_thread_start(&q[i], quick, &ran, NULL));
    }
    for (int i = 0; i < 4; i++) {
      weft_thread_request_stop(s[i]);
      if (i & 1) weft_thread_detach(q[i]);
      else ASSERT_OK(weft_thread_join(q[i], WEFT_FOREVER, NULL));
    }
    for (int i = 0; i < 4; i++) ASSERT_OK(weft_thread_join(s[i], weft_deadline_in_s(30), NULL));
  }
  ASSERT_EQ(atomic_load(&stopped), rounds * 4);
  /* Detached threads finish on their own; wait for the count. */
  int64_t end = weft_deadline_in_s(30);
  while (atomic_load(&ran) != rounds * 4 && weft_now_ns() < end) usleep(1000);
  ASSERT_EQ(atomic_load(&ran), rounds * 4);
}
