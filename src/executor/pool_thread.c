/*
 * The thread backend: a work-stealing pool of weft threads.
 *
 * Queues. Each worker owns a Chase-Lev deque (the resizable array version,
 * with the C11 orderings of Le, Pop, Cohen and Zappa Nardelli, "Correct and
 * Efficient Work-Stealing for Weak Memory Models", PPoPP 2013): the owner
 * pushes and takes at the bottom, thieves steal from the top. Jobs
 * submitted by a task running on a worker go onto that worker's deque.
 * Jobs from other threads go onto the injection stack: a lock-free stack
 * whose head is one word, so a batch (submit_many, a map's chunks) is
 * published with one CAS. A worker takes the whole stack with one CAS (no
 * ABA: nothing is ever popped singly), keeps the oldest job to run and
 * pushes the rest onto its deque newest first, so that its own takes run
 * them oldest first: with one worker, outside submissions run in FIFO order
 * as in Python's ThreadPoolExecutor. Bit 0 of the head (CLOSED) is set by
 * shutdown; a push that finds it fails, so after shutdown no outside job
 * can land (the queue's "close the engine first" trick). A worker looks for
 * work in this order: its deque, the injection stack, the deques of the
 * others starting at a random victim.
 *
 * Parking. A worker that finds no work becomes a searcher (at most half the
 * workers search at once, and at least one may), spins over the queues for
 * a few tens of microseconds, then parks: it enters the idle list (under
 * idle_mu, counting itself in nidle), leaves the searchers, issues a
 * seq_cst fence, looks at every queue once more, and only then sleeps on
 * its own futex word park_seq. A submitter publishes its job with a seq_cst
 * RMW (or a push followed by a seq_cst fence) and then reads nidle and
 * nsearching: this is Dekker's store-load pattern again (see queue.c), so
 * either the parker's last look sees the job or the submitter sees the
 * parker. The submitter wakes a worker only when some worker is idle and
 * none is searching; a busy pool costs a submit two loads from a line the
 * submit has just written, and no system call. A wake pops ONE worker
 * from the idle list, counts it as searching (so that concurrent submitters
 * do not wake more), bumps its park_seq and FUTEX_WAKEs it. A searcher that
 * finds work stops searching; if it was the last searcher and work remains
 * visible while workers sleep, it wakes one more, so wake-ups fan out only
 * as far as the work does (the Go scheduler's "spinning M" rule).
 *
 * Nested waits. Each worker sets weft__current_helper, so every sleep of
 * the future layer (future wait/result, weft_wait, as_completed, map) on a
 * worker comes to helper_block: while the awaited word is unchanged the
 * worker runs other jobs of its pool; when there is none it parks on the
 * awaited word AND on its own park_seq at once (futex_waitv, Linux 5.16),
 * having entered the idle list like any parked worker, so that either the
 * awaited event or new work wakes it. A task that waits on a future of its
 * own pool therefore never deadlocks, even with one worker. Without
 * futex_waitv (older kernels) a waker FUTEX_WAKEs the awaited word instead,
 * and since that wake can slip in just before the worker sleeps, the worker
 * also re-checks every 2 ms.
 *
 * Shutdown. state goes OPEN -> SHUT -> SHUT_CANCEL, never back; the
 * injection head gets CLOSED; every idle worker is woken. Workers then run
 * what is queued (with SHUT_CANCEL they cancel it instead, and the caller
 * drains the queues itself so that futures are cancelled at once) and exit
 * once state != OPEN and no queue holds work. A running task can still
 * push onto its own deque (a submit that passed the state check before
 * shutdown); its worker is alive and runs it before exiting.
 *
 * Locking: idle_mu guards the idle list and each worker's idle, idle_link
 * and park_word; a worker's park_seq is bumped only under it. join_mu
 * serialises joining the worker threads. Everything else is lock-free.
 * No user code (task, callback, initializer) runs under either lock.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/futex.h"
#include "common/list.h"
#include "common/spin.h"
#include "executor/executor_impl.h"
#include "future/future_impl.h"
#include "weft/thread.h"

#define CL_ALIGN _Alignas(WEFT__CACHELINE)

/* TSan does not model atomic_thread_fence, so the fence-based release of a
 * deque push would look like a race on the job to it. TSan builds publish
 * with a release store instead: same algorithm, one ordering stronger. */
#ifdef WEFT_TSAN
#define MO_BOTTOM_PUBLISH memory_order_release
#else
#define MO_BOTTOM_PUBLISH memory_order_relaxed
#endif

enum { OPEN = 0, SHUT = 1, SHUT_CANCEL = 2 };

#define CLOSED ((uintptr_t)1) /* bit 0 of the injection head */

#define DEQUE_INITIAL 256 /* slots; doubles when full */
#define SEARCH_ROUNDS 256 /* looks over the queues before parking */
#define HELP_SPINS 64     /* looks before a nested wait parks */
#define MAX_DEPTH 128     /* nested job runs per worker (stack depth) */
#define FALLBACK_RECHECK_NS 2000000 /* see "Nested waits" above */
#define IDLE_TRIM_NS 20000000       /* idle this long: give spare memory back */

/* ------------------------------------------------------------- structures */

typedef struct darray {
  int64_t mask;               /* slots - 1; slots is a power of two; immutable */
  struct darray *older;       /* the array this one replaced (thieves may still
                               * read it); freed with the pool */
  _Atomic(weft__job *) slot[]; /* index i lives at slot[i & mask] */
} darray;

typedef struct pool pool;

typedef struct worker {
  /* The owner's end of the deque. */
  CL_ALIGN _Atomic int64_t bottom; /* next index to push; written by the owner only */
  _Atomic(darray *) arr;           /* replaced (release) by the owner when it grows */
  /* The thieves' end. */
  CL_ALIGN _Atomic int64_t top;    /* oldest index; advanced by CAS (thieves, and
                                    * the owner for the last job) */
  /* Counters: stored by the owner only (no RMW), read by stats. */
  CL_ALIGN _Atomic uint64_t taken; /* items this worker began (run or skipped) */
  _Atomic uint64_t completed;      /* items it ended */
  _Atomic uint64_t submitted;      /* items its tasks submitted to its deque */
  _Atomic uint64_t stolen;         /* jobs it stole from other workers */
  /* Parking. */
  weft__list idle_link;            /* in pool->idle while idle; idle_mu */
  bool idle;                       /* in pool->idle; idle_mu */
  _Atomic uint32_t *park_word;     /* what it sleeps on while idle: &park_seq,
                                    * or the word of a nested wait; idle_mu */
  _Atomic uint32_t park_seq;       /* bumped under idle_mu by whoever wakes it */
  /* The owner's own. */
  bool searching;                  /* counted in pool->nsearching */
  unsigned depth;                  /* jobs running on this thread (nesting) */
  uint64_t rng;                    /* victim choice (xorshift) */
  weft__scratch scratch;           /* results nobody keeps */
  /* Fixed at create. */
  pool *pool;                      /* the pool it belongs to; immutable */
  unsigned index;                  /* its place in pool->w, and its name's suffix; immutable */
  weft_thread *thread;             /* set by create; joined under pool->join_mu */
  bool joined;                     /* join_mu */
} worker;

struct pool {
  /* Read-mostly. */
  weft_executor *ex;              /* immutable */
  worker *w;                      /* n workers; immutable pointer */
  unsigned n;                     /* immutable */
  unsigned max_searching;         /* immutable */
  void (*init)(void *ud);         /* immutable */
  void (*fini)(void *ud);         /* immutable */
  void *ud;                       /* immutable */
  _Atomic uint32_t state;         /* OPEN, SHUT, SHUT_CANCEL; only grows */
  atomic_bool cancel;             /* state == SHUT_CANCEL, as weft__job_run reads it */
  /* What every submit touches, on one line: the push, then the two loads. */
  CL_ALIGN _Atomic uintptr_t inject; /* newest injected job | CLOSED */
  _Atomic uint64_t submitted;     /* items pushed onto the injection stack */
  _Atomic uint32_t nidle;         /* workers in the idle list */
  _Atomic uint32_t nsearching;    /* workers looking for work */
  /* Parking. */
  CL_ALIGN pthread_mutex_t idle_mu; /* guards idle and the workers' parking fields */
  weft__list idle;                /* idle workers, most recent first; idle_mu */
  /* Shutdown. */
  weft_mutex join_mu;             /* serialises joins */
  _Atomic uint64_t drained;       /* items a shutdown caller cancelled itself */
};

static _Thread_local worker *tls_worker; /* the calling thread's worker, if any */

static inline void owner_add(_Atomic uint64_t *c, uint64_t v) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                        memory_order_relaxed);
}

/* ---------------------------------------------------------------- deque */

static darray *darray_new(int64_t slots) {
  darray *a = weft__malloc(sizeof *a + (size_t)slots * sizeof a->slot[0]);
  if (!a) return NULL;
  a->mask = slots - 1;
  a->older = NULL;
  return a;
}

/* Owner: double the array. Thieves may still read the old one, so it is
 * kept (and freed with the pool). */
static darray *dq_grow(worker *w, darray *a, int64_t t, int64_t b) {
  darray *na = darray_new((a->mask + 1) * 2);
  if (!na) return NULL;
  na->older = a;
  for (int64_t i = t; i < b; i++)
    atomic_store_explicit(&na->slot[i & na->mask],
                          atomic_load_explicit(&a->slot[i & a->mask], memory_order_relaxed),
                          memory_order_relaxed);
  atomic_store_explicit(&w->arr, na, memory_order_release);
  return na;
}

/* Owner: push j at the bottom. false: no memory to grow. */
static bool dq_push(worker *w, weft__job *j) {
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
  int64_t t = atomic_load_explicit(&w->top, memory_order_acquire);
  darray *a = atomic_load_explicit(&w->arr, memory_order_relaxed);
  if (WEFT_UNLIKELY(b - t > a->mask)) {
    a = dq_grow(w, a, t, b);
    if (!a) return false;
  }
  atomic_store_explicit(&a->slot[b & a->mask], j, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&w->bottom, b + 1, MO_BOTTOM_PUBLISH);
  return true;
}

/* Owner: take from the bottom (newest), or NULL. */
static weft__job *dq_take(worker *w) {
  /* top only grows and bottom is ours: if it is empty now, it stays empty
   * for us, and we skip the fence. */
  if (atomic_load_explicit(&w->bottom, memory_order_relaxed) <=
      atomic_load_explicit(&w->top, memory_order_relaxed))
    return NULL;
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed) - 1;
  darray *a = atomic_load_explicit(&w->arr, memory_order_relaxed);
  atomic_store_explicit(&w->bottom, b, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
  int64_t t = atomic_load_explicit(&w->top, memory_order_relaxed);
  weft__job *j = NULL;
  if (t <= b) {
    j = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
    if (t == b) {
      /* The last job: race the thieves for it. */
      if (!atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1, memory_order_seq_cst,
                                                   memory_order_relaxed))
        j = NULL;
      atomic_store_explicit(&w->bottom, b + 1, memory_order_relaxed);
    }
  } else {
    atomic_store_explicit(&w->bottom, b + 1, memory_order_relaxed);
  }
  return j;
}

/* Anyone: steal from the top (oldest). NULL with *lost set: lost a race,
 * the deque may still hold work. */
static weft__job *dq_steal(worker *v, bool *lost) {
  int64_t t = atomic_load_explicit(&v->top, memory_order_acquire);
  atomic_thread_fence(memory_order_seq_cst);
  int64_t b = atomic_load_explicit(&v->bottom, memory_order_acquire);
  if (t >= b) return NULL;
  darray *a = atomic_load_explicit(&v->arr, memory_order_acquire);
  weft__job *j = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(&v->top, &t, t + 1, memory_order_seq_cst,
                                               memory_order_relaxed)) {
    *lost = true;
    return NULL;
  }
  return j;
}

static bool dq_nonempty(worker *v) {
  int64_t t = atomic_load_explicit(&v->top, memory_order_seq_cst);
  return atomic_load_explicit(&v->bottom, memory_order_seq_cst) > t;
}

/* ------------------------------------------------------- injection stack */

/* Push the chain newest..oldest (linked newest first). force: even when
 * CLOSED (a worker handing back jobs it already owned). */
static int inj_push(pool *p, weft__job *newest, weft__job *oldest, bool force) {
  uintptr_t h = atomic_load_explicit(&p->inject, memory_order_relaxed);
  do {
    if ((h & CLOSED) && !force) return WEFT_ESHUTDOWN;
    oldest->next = (weft__job *)(h & ~CLOSED);
  } while (!atomic_compare_exchange_weak_explicit(&p->inject, &h,
                                                  (uintptr_t)newest | (h & CLOSED),
                                                  memory_order_seq_cst, memory_order_relaxed));
  return 0;
}

/* Take every injected job: a NULL-terminated chain, newest first. */
static weft__job *inj_take(pool *p) {
  uintptr_t h = atomic_load_explicit(&p->inject, memory_order_relaxed);
  while (h & ~CLOSED) {
    if (atomic_compare_exchange_weak_explicit(&p->inject, &h, h & CLOSED, memory_order_acquire,
                                              memory_order_relaxed))
      return (weft__job *)(h & ~CLOSED);
  }
  return NULL;
}

static bool work_visible(pool *p) {
  if (atomic_load_explicit(&p->inject, memory_order_seq_cst) & ~CLOSED) return true;
  for (unsigned i = 0; i < p->n; i++)
    if (dq_nonempty(&p->w[i])) return true;
  return false;
}

/* ------------------------------------------------------------- parking */

/* Wake v, which a waker has just taken off the idle list (bumping its
 * park_seq under idle_mu). word is the park_word it had. */
static int g_waitv = -1; /* futex_waitv: 1 works, 0 not here, -1 unknown */

static void wake_worker(worker *v, _Atomic uint32_t *word) {
  if (word == &v->park_seq || __atomic_load_n(&g_waitv, __ATOMIC_RELAXED) == 1)
    weft__futex_wake(&v->park_seq, 1, 0);
  else
    weft__futex_wake(word, INT_MAX, 0); /* a waiter of a nested wait; spurious
                                         * wake-ups of other waiters are allowed */
}

/* Wake one idle worker, unless one is already searching (it will find the
 * work) or none is idle. */
static void wake_one(pool *p) {
  pthread_mutex_lock(&p->idle_mu);
  if (weft__list_empty(&p->idle) || atomic_load(&p->nsearching) != 0) {
    pthread_mutex_unlock(&p->idle_mu);
    return;
  }
  worker *v = weft__container_of(weft__list_pop_front(&p->idle), worker, idle_link);
  v->idle = false;
  atomic_fetch_sub(&p->nidle, 1);
  atomic_fetch_add(&p->nsearching, 1); /* v counts as searching from now on */
  _Atomic uint32_t *word = v->park_word;
  atomic_fetch_add_explicit(&v->park_seq, 1, memory_order_release);
  pthread_mutex_unlock(&p->idle_mu);
  wake_worker(v, word);
}

/* Wake every idle worker (shutdown). */
static void wake_all(pool *p) {
  pthread_mutex_lock(&p->idle_mu);
  weft__list *l;
  while ((l = weft__list_pop_front(&p->idle)) != NULL) {
    worker *v = weft__container_of(l, worker, idle_link);
    v->idle = false;
    atomic_fetch_sub(&p->nidle, 1);
    atomic_fetch_add(&p->nsearching, 1);
    atomic_fetch_add_explicit(&v->park_seq, 1, memory_order_release);
    /* Under the lock: a rare path, and v cannot leave meanwhile. */
    wake_worker(v, v->park_word);
  }
  pthread_mutex_unlock(&p->idle_mu);
}

/* New work was published (followed by a seq_cst operation). */
static inline void notify(pool *p) {
  if (atomic_load_explicit(&p->nidle, memory_order_seq_cst) != 0 &&
      atomic_load_explicit(&p->nsearching, memory_order_seq_cst) == 0)
    wake_one(p);
}

static void idle_enter(pool *p, worker *w, _Atomic uint32_t *word) {
  pthread_mutex_lock(&p->idle_mu);
  w->park_word = word;
  weft__list_push_front(&p->idle, &w->idle_link);
  w->idle = true;
  atomic_fetch_add_explicit(&p->nidle, 1, memory_order_seq_cst);
  pthread_mutex_unlock(&p->idle_mu);
  if (w->searching) {
    w->searching = false;
    atomic_fetch_sub_explicit(&p->nsearching, 1, memory_order_seq_cst);
  }
  atomic_thread_fence(memory_order_seq_cst);
}

/* Leave the idle list. If a waker took w off it first, w now counts as a
 * searcher. */
static void idle_leave(pool *p, worker *w) {
  pthread_mutex_lock(&p->idle_mu);
  if (w->idle) {
    weft__list_remove(&w->idle_link);
    w->idle = false;
    atomic_fetch_sub(&p->nidle, 1);
  } else {
    w->searching = true;
  }
  pthread_mutex_unlock(&p->idle_mu);
}

static bool start_searching(pool *p, worker *w) {
  if (w->searching) return true;
  if (atomic_load_explicit(&p->nsearching, memory_order_relaxed) >= p->max_searching)
    return false;
  atomic_fetch_add_explicit(&p->nsearching, 1, memory_order_seq_cst);
  w->searching = true;
  return true;
}

/* w found work (or returns to its task). If it was the last searcher and
 * work is still visible while others sleep, hand the search on. */
static void stop_searching(pool *p, worker *w) {
  if (!w->searching) return;
  w->searching = false;
  if (atomic_fetch_sub_explicit(&p->nsearching, 1, memory_order_seq_cst) == 1 &&
      atomic_load_explicit(&p->nidle, memory_order_seq_cst) != 0 && work_visible(p))
    wake_one(p);
}

/* Sleep on word == expected and on w's park_seq == seq at once. 0 (woken,
 * changed, or spurious) or -ETIMEDOUT. */
struct waitv_entry { /* the kernel's struct futex_waitv */
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};
#define WAITV_SIZE_U32 0x02u
#define WAITV_PRIVATE 128u

static int park_two(worker *w, _Atomic uint32_t *word, uint32_t expected, uint32_t seq,
                    int64_t deadline_ns) {
#ifdef SYS_futex_waitv
  if (__atomic_load_n(&g_waitv, __ATOMIC_RELAXED) != 0) {
    struct waitv_entry v[2] = {
        {expected, (uint64_t)(uintptr_t)word, WAITV_SIZE_U32 | WAITV_PRIVATE, 0},
        {seq, (uint64_t)(uintptr_t)&w->park_seq, WAITV_SIZE_U32 | WAITV_PRIVATE, 0},
    };
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != WEFT_FOREVER) {
      ts.tv_sec = deadline_ns / 1000000000;
      ts.tv_nsec = deadline_ns % 1000000000;
      tsp = &ts;
    }
    long r = syscall(SYS_futex_waitv, v, 2, 0, tsp, CLOCK_MONOTONIC);
    if (r >= 0 || errno != ENOSYS) {
      __atomic_store_n(&g_waitv, 1, __ATOMIC_RELAXED);
      return r < 0 && errno == ETIMEDOUT ? -ETIMEDOUT : 0;
    }
    __atomic_store_n(&g_waitv, 0, __ATOMIC_RELAXED);
  }
#endif
  (void)seq;
  int64_t until = weft_deadline_in_ns(FALLBACK_RECHECK_NS);
  bool real = deadline_ns != WEFT_FOREVER && deadline_ns <= until;
  int r = weft__futex_wait(word, expected, real ? deadline_ns : until, 0);
  return r == -ETIMEDOUT && real ? -ETIMEDOUT : 0;
}

/* --------------------------------------------------------------- workers */

static inline uint64_t rng_next(worker *w) {
  uint64_t x = w->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return w->rng = x;
}

static weft__job *steal_any(pool *p, worker *w) {
  if (p->n < 2) return NULL;
  unsigned start = (unsigned)(rng_next(w) % p->n);
  for (int pass = 0; pass < 2; pass++) {
    bool lost = false;
    for (unsigned i = 0; i < p->n; i++) {
      worker *v = &p->w[(start + i) % p->n];
      if (v == w) continue;
      weft__job *j = dq_steal(v, &lost);
      if (j) {
        owner_add(&w->stolen, 1);
        return j;
      }
    }
    if (!lost) break;
  }
  return NULL;
}

/* Take the injected jobs: run the oldest, queue the rest on w's deque. */
static weft__job *take_injected(pool *p, worker *w) {
  if (!(atomic_load_explicit(&p->inject, memory_order_relaxed) & ~CLOSED)) return NULL;
  weft__job *j = inj_take(p);
  if (!j) return NULL;
  bool queued = false;
  while (j->next) {
    weft__job *nx = j->next;
    if (WEFT_LIKELY(dq_push(w, j)))
      queued = true;
    else
      inj_push(p, j, j, true); /* no memory to grow the deque: hand it back */
    j = nx;
  }
  if (queued) {
    atomic_thread_fence(memory_order_seq_cst);
    notify(p); /* others may steal what we queued */
  }
  return j;
}

static weft__job *find_work(pool *p, worker *w) {
  weft__job *j = dq_take(w);
  if (j) return j;
  j = take_injected(p, w);
  if (j) return j;
  return steal_any(p, w);
}

static void run_job(pool *p, worker *w, weft__job *j) {
  uint64_t items = weft__job_items(j);
  owner_add(&w->taken, items);
  w->depth++;
  weft__job_run(p->ex, j, &w->scratch, &p->cancel);
  w->depth--;
  owner_add(&w->completed, items);
}

/* Spin over the queues as a searcher. */
static weft__job *search(pool *p, worker *w) {
  if (!start_searching(p, w)) return NULL;
  for (int i = 0; i < SEARCH_ROUNDS; i++) {
    for (int k = 0; k < 8; k++) weft__cpu_relax();
    weft__job *j = find_work(p, w);
    if (j) return j;
    if (atomic_load_explicit(&p->state, memory_order_relaxed) != OPEN) break;
    if ((i & 15) == 15) sched_yield(); /* let a preempted submitter run */
  }
  return NULL;
}

/* Park until woken. true: the pool is shut down and drained: exit. */
static bool park(pool *p, worker *w) {
  uint32_t seq = atomic_load_explicit(&w->park_seq, memory_order_acquire);
  idle_enter(p, w, &w->park_seq);
  bool work = work_visible(p);
  bool shut = atomic_load_explicit(&p->state, memory_order_seq_cst) != OPEN;
  if (!work && !shut) {
    /* The last worker to go idle gives spare jobs back once the pool has
     * stayed idle for IDLE_TRIM_NS: a pool that only pauses between tasks
     * keeps them (freeing them while a submitter allocates would fight it
     * for the allocator's lock). One extra wake-up per idle period. */
    if (atomic_load_explicit(&p->nidle, memory_order_relaxed) == p->n &&
        weft__futex_wait(&w->park_seq, seq, weft_deadline_in_ns(IDLE_TRIM_NS), 0) == -ETIMEDOUT)
      weft__executor_idle(p->ex);
    weft__futex_wait(&w->park_seq, seq, WEFT_FOREVER, 0);
  }
  idle_leave(p, w);
  if (!work && shut) {
    if (w->searching) {
      w->searching = false;
      atomic_fetch_sub(&p->nsearching, 1);
    }
    return true;
  }
  return false;
}

/* The block hook of weft__current_helper (see "Nested waits" above). */
static int helper_block(void *ctx, _Atomic uint32_t *word, uint32_t expected,
                        int64_t deadline_ns) {
  worker *w = ctx;
  pool *p = w->pool;
  int r;
  for (int spins = 0;;) {
    if (atomic_load_explicit(word, memory_order_acquire) != expected) {
      r = -EAGAIN;
      break;
    }
    if (deadline_ns != WEFT_FOREVER && (deadline_ns == 0 || weft_now_ns() >= deadline_ns)) {
      r = -ETIMEDOUT;
      break;
    }
    if (WEFT_UNLIKELY(w->depth >= MAX_DEPTH)) {
      /* Too deep to run more jobs on this stack: just wait. */
      r = weft__futex_wait(word, expected, deadline_ns, 0);
      if (r != -ETIMEDOUT) r = 0;
      break;
    }
    /* Later items of a batch chunk this very stack is running come first:
     * nobody else can run them. */
    w->depth++;
    bool ran = weft__job_run_nested_item(&w->scratch);
    w->depth--;
    if (ran) {
      spins = 0;
      continue;
    }
    weft__job *j = find_work(p, w);
    if (j) {
      stop_searching(p, w);
      run_job(p, w, j);
      spins = 0;
      continue;
    }
    if (spins++ < HELP_SPINS) {
      for (int k = 0; k < 8; k++) weft__cpu_relax();
      continue;
    }
    uint32_t seq = atomic_load_explicit(&w->park_seq, memory_order_acquire);
    idle_enter(p, w, word);
    int e = 0;
    if (!work_visible(p) && atomic_load_explicit(word, memory_order_seq_cst) == expected)
      e = park_two(w, word, expected, seq, deadline_ns);
    idle_leave(p, w);
    if (e == -ETIMEDOUT) {
      r = -ETIMEDOUT;
      break;
    }
    spins = 0;
  }
  stop_searching(p, w);
  return r;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  pool *p = w->pool;
  tls_worker = w;
  weft__current_helper.block = helper_block;
  weft__current_helper.ctx = w;
  if (p->init) p->init(p->ud);
  for (;;) {
    weft__job *j = find_work(p, w);
    if (!j) j = search(p, w);
    if (j) {
      stop_searching(p, w);
      run_job(p, w, j);
      continue;
    }
    if (park(p, w)) break;
  }
  if (p->fini) p->fini(p->ud);
  weft__current_helper.block = NULL;
  weft__current_helper.ctx = NULL;
  tls_worker = NULL;
  weft__scratch_fini(&w->scratch);
  return NULL;
}

/* --------------------------------------------------------------- the ops */

static void pool_free(pool *p) {
  for (unsigned i = 0; i < p->n; i++) {
    darray *a = atomic_load(&p->w[i].arr);
    while (a) {
      darray *older = a->older;
      weft__free(a);
      a = older;
    }
  }
  weft_mutex_fini(&p->join_mu);
  pthread_mutex_destroy(&p->idle_mu);
  weft__free_aligned(p->w);
  weft__free_aligned(p);
}

static int join_all(pool *p, int64_t deadline_ns) {
  int r = weft_mutex_lock(&p->join_mu, deadline_ns);
  if (r) return r;
  for (unsigned i = 0; i < p->n && r == 0; i++) {
    worker *w = &p->w[i];
    if (w->joined || !w->thread) continue;
    r = weft_thread_join(w->thread, deadline_ns, NULL);
    if (r == 0) w->joined = true;
  }
  weft_mutex_unlock(&p->join_mu);
  return r;
}

static void cancel_drained(pool *p, weft__job *j) {
  uint64_t items = weft__job_items(j);
  weft__job_cancel(p->ex, j);
  atomic_fetch_add(&p->drained, items);
}

/* Cancel everything queued, on the calling thread. */
static void drain_cancel(pool *p) {
  weft__job *j = inj_take(p);
  while (j) {
    weft__job *nx = j->next;
    cancel_drained(p, j);
    j = nx;
  }
  for (unsigned i = 0; i < p->n; i++) {
    for (;;) {
      bool lost = false;
      j = dq_steal(&p->w[i], &lost);
      if (j)
        cancel_drained(p, j);
      else if (!lost)
        break;
    }
  }
}

static int pool_shutdown(void *be, unsigned flags, int64_t deadline_ns) {
  pool *p = be;
  uint32_t want = (flags & WEFT_SHUTDOWN_CANCEL_PENDING) ? SHUT_CANCEL : SHUT;
  uint32_t cur = atomic_load(&p->state);
  while (cur < want && !atomic_compare_exchange_weak(&p->state, &cur, want)) {
  }
  if (want == SHUT_CANCEL) atomic_store(&p->cancel, true);
  atomic_fetch_or(&p->inject, CLOSED);
  if (want == SHUT_CANCEL) drain_cancel(p);
  wake_all(p);
  if (!(flags & WEFT_SHUTDOWN_WAIT)) return 0;
  return join_all(p, deadline_ns);
}

static int pool_create(weft_executor *ex, const weft_executor_opts *o, void **out) {
  pool *p = weft__malloc_aligned(sizeof *p, WEFT__CACHELINE);
  if (!p) return WEFT_ENOMEM;
  memset(p, 0, sizeof *p);
  unsigned n = o->workers;
  p->w = weft__malloc_aligned(n * sizeof *p->w, WEFT__CACHELINE);
  if (!p->w) {
    weft__free_aligned(p);
    return WEFT_ENOMEM;
  }
  memset(p->w, 0, n * sizeof *p->w);
  p->ex = ex;
  p->n = n;
  p->max_searching = n / 2 ? n / 2 : 1;
  p->init = o->initializer;
  p->fini = o->finalizer;
  p->ud = o->ud;
  atomic_init(&p->state, OPEN);
  atomic_init(&p->cancel, false);
  atomic_init(&p->inject, 0);
  weft__list_init(&p->idle);
  int r = -pthread_mutex_init(&p->idle_mu, NULL);
  if (r) {
    weft__free_aligned(p->w);
    weft__free_aligned(p);
    return r;
  }
  r = weft_mutex_init(&p->join_mu, 0);
  if (r) {
    pthread_mutex_destroy(&p->idle_mu);
    weft__free_aligned(p->w);
    weft__free_aligned(p);
    return r;
  }
  for (unsigned i = 0; i < n; i++) {
    worker *w = &p->w[i];
    w->pool = p;
    w->index = i;
    w->rng = 0x9e3779b97f4a7c15ull * (i + 1);
    weft__list_init(&w->idle_link);
    darray *a = darray_new(DEQUE_INITIAL);
    if (!a) {
      pool_free(p);
      return WEFT_ENOMEM;
    }
    atomic_init(&w->arr, a);
  }
  size_t nlen = strlen(o->name) + 16;
  char *tname = weft__malloc(nlen);
  if (!tname) {
    pool_free(p);
    return WEFT_ENOMEM;
  }
  for (unsigned i = 0; i < n; i++) {
    snprintf(tname, nlen, "%s-%u", o->name, i);
    weft_thread_opts to = {tname, 0};
    r = weft_thread_start(&p->w[i].thread, worker_main, &p->w[i], &to);
    if (r) break;
  }
  weft__free(tname);
  if (r) {
    /* Stop the workers that did start; nothing was submitted yet. */
    pool_shutdown(p, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER);
    pool_free(p);
    return r;
  }
  *out = p;
  return 0;
}

static int pool_submit(void *be, weft__job *newest, weft__job *oldest, uint64_t items) {
  pool *p = be;
  worker *w = tls_worker;
  if (w && w->pool == p) {
    /* From a task of this pool: onto this worker's own deque. */
    if (atomic_load_explicit(&p->state, memory_order_relaxed) != OPEN) return WEFT_ESHUTDOWN;
    for (weft__job *j = newest;;) {
      weft__job *nx = j == oldest ? NULL : j->next;
      if (WEFT_UNLIKELY(!dq_push(w, j))) {
        inj_push(p, j, oldest, true); /* no memory to grow: the rest go there */
        break;
      }
      if (!nx) break;
      j = nx;
    }
    owner_add(&w->submitted, items);
    atomic_thread_fence(memory_order_seq_cst);
    notify(p);
    return 0;
  }
  int r = inj_push(p, newest, oldest, false);
  if (WEFT_UNLIKELY(r)) return r;
  atomic_fetch_add_explicit(&p->submitted, items, memory_order_relaxed);
  notify(p);
  return 0;
}

static void pool_destroy(void *be) {
  pool *p = be;
  WEFT_ASSERT(!(atomic_load(&p->inject) & ~CLOSED));
  pool_free(p);
}

static void pool_stats(const void *be, weft_executor_stats *out) {
  const pool *p = be;
  uint64_t done = 0, taken = 0, sub = 0, stolen = 0;
  /* Read the later stages first, so that a snapshot taken while jobs move
   * errs towards queued, not towards negative counts. */
  uint64_t dr = atomic_load(&((pool *)p)->drained);
  for (unsigned i = 0; i < p->n; i++) done += atomic_load(&p->w[i].completed);
  for (unsigned i = 0; i < p->n; i++) {
    taken += atomic_load(&p->w[i].taken);
    stolen += atomic_load(&p->w[i].stolen);
  }
  for (unsigned i = 0; i < p->n; i++) sub += atomic_load(&p->w[i].submitted);
  sub += atomic_load(&((pool *)p)->submitted);
  done += dr;
  taken += dr;
  out->queued = sub > taken ? sub - taken : 0;
  out->running = taken > done ? taken - done : 0;
  out->completed = done;
  out->stolen = stolen;
}

static bool pool_on_worker(const void *be) {
  return tls_worker != NULL && tls_worker->pool == be;
}

const weft__executor_ops weft__pool_thread_ops = {
    .kind_name = "threads",
    .needs_names = false,
    .arg_max = WEFT__ARG_MAX,
    .small_jobs = true,
    .create = pool_create,
    .submit = pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
    .stats = pool_stats,
    .on_worker = pool_on_worker,
};
