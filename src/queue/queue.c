/*
 * The queue front end: the public weft_queue_* calls on top of the three
 * engines of queue_impl.h. It owns blocking, shutdown, task_done/join and
 * the eventfd.
 *
 * Blocking. Waiters spin briefly, then sleep on an event count
 * (common/evc.h): a sleeper registers, re-tries its operation and sleeps; a
 * notifier that changed the queue with a seq_cst operation wakes sleepers
 * only if one registered. No wake-up is lost, and an uncontended put or get
 * makes no system call.
 *
 * In the lock-free engines the seq_cst change is the CAS that claims a
 * position (tail for a put, head for a get), so a put costs one locked
 * instruction and no fence. The item is written after the claim, so a
 * sleeper's re-check looks at claims: a getter that finds a position claimed
 * but not yet written (engine not drained), or a putter that finds a cell
 * claimed by a getter but not yet freed (ring has room), does not sleep but
 * yields and looks again; the claimant finishes within instructions unless
 * preempted. The locked engine's unlock is only a release, so there the
 * notifier adds a fence.
 *
 * Task accounting. join waits until done >= puts, where puts is the engine's
 * count of successful puts and done counts task_done calls plus items that
 * shutdown(immediate) dropped. Neither put nor get touches done.
 *
 * Shutdown. First the engine is closed: from then on its try_put fails,
 * so the set of puts that succeed is fixed (puts already past the check
 * still land). Then state goes 0 (open) -> 1 (shut down) -> 2 (shut down,
 * immediate), never back. A getter that finds state != 0 therefore knows
 * that nothing beyond what was claimed will come, and returns
 * WEFT_ESHUTDOWN only once the engine is drained: no successful put is
 * stranded behind a consumer that already gave up. A put that landed after
 * an immediate shutdown's drain sees state 2 after its own fence and drains
 * again.
 *
 * Locking: no lock but fd_mu, which only serialises creation of the
 * eventfd. The locked engine has its own mutex (locked.c). free_fn is never
 * called under any lock.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/efd.h"
#include "common/evc.h"
#include "common/futex.h"
#include "common/spin.h"
#include "queue/queue_impl.h"

enum engine { ENGINE_RING, ENGINE_SEG, ENGINE_LOCKED };

enum { OPEN = 0, SHUT = 1, SHUT_IMMEDIATE = 2 };

/* An event count (see the top of the file). */
typedef struct evc {
  _Atomic uint32_t word; /* epoch << 1 | WEFT__EVC_SLEEPERS (common/evc.h) */
} evc;

struct weft_queue {
  /* Read-mostly: set at create, then only read. */
  enum engine engine;
  weft_queue_order order;
  size_t maxsize;              /* 0: unbounded */
  weft_queue_free_fn *free_fn; /* may be NULL */
  void *ud;
  _Atomic uint32_t state;      /* OPEN, SHUT, SHUT_IMMEDIATE; only grows */
  _Atomic int efd;             /* -1 until weft_queue_fd; then fixed */
  pthread_mutex_t fd_mu;       /* serialises eventfd creation */

  WEFT__CL_ALIGN evc not_empty;       /* getters sleep here; puts notify */
  WEFT__CL_ALIGN evc not_full;        /* putters sleep here; gets notify (bounded only) */
  WEFT__CL_ALIGN _Atomic uint64_t done; /* task_done calls + dropped items */
  evc joined;                         /* joiners sleep here */
  _Atomic uint32_t efd_signaled;      /* 1 while the eventfd counter is non-zero */

  union {
    weft__ring ring;
    weft__seg seg;
    weft__locked locked;
  } e; /* the engine; its own comments say what guards what */
};

/* ------------------------------------------------------------ dispatch */

static inline int try_put(weft_queue *q, void *item) {
  switch (q->engine) {
  case ENGINE_RING: return weft__ring_try_put(&q->e.ring, item);
  case ENGINE_SEG: return weft__seg_try_put(&q->e.seg, item);
  default: return weft__locked_try_put(&q->e.locked, item);
  }
}

static inline int try_get(weft_queue *q, void **item) {
  switch (q->engine) {
  case ENGINE_RING: return weft__ring_try_get(&q->e.ring, item);
  case ENGINE_SEG: return weft__seg_try_get(&q->e.seg, item);
  default: return weft__locked_try_get(&q->e.locked, item);
  }
}

static size_t engine_size(const weft_queue *q) {
  switch (q->engine) {
  case ENGINE_RING: return weft__ring_size(&q->e.ring);
  case ENGINE_SEG: return weft__seg_size(&q->e.seg);
  default: return atomic_load_explicit(&q->e.locked.size, memory_order_acquire);
  }
}

static void engine_close(weft_queue *q) {
  switch (q->engine) {
  case ENGINE_RING: weft__ring_close(&q->e.ring); break;
  case ENGINE_SEG: weft__seg_close(&q->e.seg); break;
  default: weft__locked_close(&q->e.locked); break;
  }
}

/* Has every claimed position been taken? The lock-free engines report
 * empty while a producer that claimed a position is still writing it. */
static bool engine_drained(const weft_queue *q) {
  switch (q->engine) {
  case ENGINE_RING: return weft__ring_drained(&q->e.ring);
  case ENGINE_SEG: return weft__seg_drained(&q->e.seg);
  default: return true;
  }
}

/* Will a put find room once the gets under way finish? Only the ring can
 * be full with gets under way; the locked engine has none. */
static bool engine_room_coming(const weft_queue *q) {
  return q->engine == ENGINE_RING && weft__ring_has_room(&q->e.ring);
}

static uint64_t engine_puts(const weft_queue *q) {
  switch (q->engine) {
  case ENGINE_RING: return weft__ring_puts(&q->e.ring);
  case ENGINE_SEG: return weft__seg_puts(&q->e.seg);
  default: return atomic_load_explicit(&q->e.locked.puts, memory_order_acquire);
  }
}

/* ---------------------------------------------------------- event count */

/* The queue's event counts; the protocol is in common/evc.h. */
static inline void evc_notify(evc *e) { weft__evc_notify(&e->word); }

static void evc_notify_all(evc *e) {
  atomic_thread_fence(memory_order_seq_cst);
  evc_notify(e);
}

static inline uint32_t evc_prepare(evc *e) { return weft__evc_prepare(&e->word); }

/* The condition came true after evc_prepare: nothing to undo (evc.h). */
static inline void evc_cancel(evc *e) { (void)e; }

/* Sleep until notified or deadline; returns -ETIMEDOUT on the deadline. */
static int evc_sleep(evc *e, uint32_t word, int64_t deadline_ns) {
  int r = weft__futex_wait(&e->word, word, deadline_ns, 0);
  return r == -ETIMEDOUT ? r : 0;
}

/* --------------------------------------------------------------- eventfd */

static void efd_signal(weft_queue *q, int fd) {
  if (atomic_load_explicit(&q->efd_signaled, memory_order_relaxed) == 0 &&
      atomic_exchange(&q->efd_signaled, 1) == 0) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: readable */
  }
}

/* After a get found q empty: make the fd quiet, unless items or a shutdown
 * arrived meanwhile (see the Dekker note at the top of the file). */
static void efd_clear(weft_queue *q) {
  int fd = atomic_load_explicit(&q->efd, memory_order_acquire);
  if (fd < 0) return;
  if (atomic_exchange(&q->efd_signaled, 0)) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
  }
  atomic_thread_fence(memory_order_seq_cst);
  if (engine_size(q) > 0 || atomic_load(&q->state) != OPEN) efd_signal(q, fd);
}

/* ------------------------------------------------------------- create */

int weft_queue_create(weft_queue **out, const weft_queue_opts *opts) {
  WEFT_CHECK_HANDLE(out);
  weft_queue_opts o = {0};
  if (opts) o = *opts;
  if ((unsigned)o.order > WEFT_QUEUE_PRIORITY) return WEFT_EINVAL;
  if (o.order == WEFT_QUEUE_PRIORITY && !o.cmp) return WEFT_EINVAL;
  if (o.maxsize > WEFT_QUEUE_MAXSIZE_MAX) return WEFT_EINVAL;

  weft_queue *q = weft__malloc_aligned(sizeof *q, WEFT__CACHELINE);
  if (!q) return WEFT_ENOMEM;
  memset(q, 0, sizeof *q);
  q->order = o.order;
  q->maxsize = o.maxsize;
  q->free_fn = o.free_fn;
  q->ud = o.ud;
  atomic_init(&q->state, OPEN);
  atomic_init(&q->efd, -1);
  int r;
  if (o.order == WEFT_QUEUE_FIFO && o.maxsize >= 2) {
    q->engine = ENGINE_RING;
    r = weft__ring_init(&q->e.ring, o.maxsize);
  } else if (o.order == WEFT_QUEUE_FIFO && o.maxsize == 0) {
    q->engine = ENGINE_SEG;
    r = weft__seg_init(&q->e.seg);
  } else {
    q->engine = ENGINE_LOCKED;
    r = weft__locked_init(&q->e.locked, o.order, o.maxsize, o.cmp, o.ud);
  }
  if (r) goto out_free;
  r = -pthread_mutex_init(&q->fd_mu, NULL);
  if (r) goto out_engine;
  *out = q;
  return 0;

out_engine:
  switch (q->engine) {
  case ENGINE_RING: weft__ring_fini(&q->e.ring); break;
  case ENGINE_SEG: weft__seg_fini(&q->e.seg); break;
  default: weft__locked_fini(&q->e.locked); break;
  }
out_free:
  weft__free_aligned(q);
  return r;
}

/* Remove every item and hand it to free_fn. Returns how many. */
static uint64_t drain(weft_queue *q) {
  uint64_t n = 0;
  void *item;
  while (try_get(q, &item) == 0) {
    if (q->free_fn) q->free_fn(item, q->ud);
    n++;
  }
  return n;
}

void weft_queue_destroy(weft_queue *q) {
  if (!q) return;
  drain(q);
  switch (q->engine) {
  case ENGINE_RING: weft__ring_fini(&q->e.ring); break;
  case ENGINE_SEG: weft__seg_fini(&q->e.seg); break;
  default: weft__locked_fini(&q->e.locked); break;
  }
  int fd = atomic_load(&q->efd);
  if (fd >= 0) close(fd);
  pthread_mutex_destroy(&q->fd_mu);
  weft__free_aligned(q);
}

/* ----------------------------------------------------------- shutdown */

/* Drop what is inside after an immediate shutdown and let joiners see it. */
static void drop_all(weft_queue *q) {
  uint64_t n = drain(q);
  if (n) {
    atomic_fetch_add(&q->done, n);
    evc_notify_all(&q->joined);
    evc_notify_all(&q->not_full);
  }
}

void weft_queue_shutdown(weft_queue *q, bool immediate) {
  WEFT_CHECK_HANDLE(q);
  uint32_t want = immediate ? SHUT_IMMEDIATE : SHUT;
  engine_close(q); /* before state: see the top of the file */
  uint32_t cur = atomic_load(&q->state);
  while (cur < want && !atomic_compare_exchange_weak(&q->state, &cur, want)) {
  }
  atomic_thread_fence(memory_order_seq_cst);
  if (immediate) drop_all(q);
  evc_notify_all(&q->not_empty);
  evc_notify_all(&q->not_full);
  evc_notify_all(&q->joined);
  int fd = atomic_load(&q->efd);
  if (fd >= 0) efd_signal(q, fd);
}

bool weft_queue_is_shutdown(const weft_queue *q) {
  WEFT_CHECK_HANDLE(q);
  return atomic_load(&q->state) != OPEN;
}

/* ---------------------------------------------------------------- put */

/* After successful puts: wake getters, signal the fd, and drop the items
 * again if an immediate shutdown overtook us. */
static inline void after_put(weft_queue *q) {
  if (q->engine == ENGINE_LOCKED) atomic_thread_fence(memory_order_seq_cst);
  evc_notify(&q->not_empty);
  int fd = atomic_load_explicit(&q->efd, memory_order_seq_cst);
  if (WEFT_UNLIKELY(fd >= 0)) efd_signal(q, fd);
  if (WEFT_UNLIKELY(atomic_load_explicit(&q->state, memory_order_seq_cst) == SHUT_IMMEDIATE))
    drop_all(q);
}

/* After successful gets from a bounded queue: wake putters. */
static inline void after_get(weft_queue *q) {
  if (q->maxsize == 0) return;
  if (q->engine == ENGINE_LOCKED) atomic_thread_fence(memory_order_seq_cst);
  evc_notify(&q->not_full);
}

static bool deadline_passed(int64_t deadline_ns) {
  return deadline_ns != WEFT_FOREVER && weft_now_ns() >= deadline_ns;
}

/* put for a full bounded queue: spin, then sleep on not_full. */
static int put_slow(weft_queue *q, void *item, int64_t deadline_ns) {
  if (deadline_ns == 0) return WEFT_EFULL;
  if (!deadline_passed(deadline_ns)) {
    for (int i = 0; i < WEFT__SPIN_ROUNDS; i++) {
      weft__cpu_relax();
      if ((i & 15) == 15) {
        int r = try_put(q, item);
        if (r != WEFT_EFULL) return r;
      }
    }
  }
  for (;;) {
    uint32_t seq = evc_prepare(&q->not_full);
    int r = try_put(q, item);
    if (r != WEFT_EFULL) {
      evc_cancel(&q->not_full);
      return r;
    }
    if (engine_room_coming(q)) {
      /* A get claimed a cell and is still taking the item out. */
      if (deadline_passed(deadline_ns)) return WEFT_ETIMEDOUT;
      sched_yield();
      continue;
    }
    if (evc_sleep(&q->not_full, seq, deadline_ns) == -ETIMEDOUT) {
      r = try_put(q, item);
      return r == WEFT_EFULL ? WEFT_ETIMEDOUT : r;
    }
  }
}

static inline int put_one(weft_queue *q, void *item, int64_t deadline_ns) {
  int r = try_put(q, item); /* WEFT_ESHUTDOWN once closed */
  if (WEFT_UNLIKELY(r == WEFT_EFULL)) r = put_slow(q, item, deadline_ns);
  return r;
}

int weft_queue_put(weft_queue *q, void *item, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(q);
  if (WEFT_UNLIKELY(!WEFT_DEADLINE_VALID(deadline_ns))) return WEFT_EINVAL;
  int r = put_one(q, item, deadline_ns);
  if (r == 0) after_put(q);
  return r;
}

int weft_queue_put_many(weft_queue *q, void *const *items, size_t n, int64_t deadline_ns,
                        size_t *n_put) {
  WEFT_CHECK_HANDLE(q);
  size_t done = 0, unsignalled = 0;
  int r = 0;
  if (n && !items) weft__misuse(__func__, "argument 'items' is NULL with n > 0");
  if (!WEFT_DEADLINE_VALID(deadline_ns)) {
    r = WEFT_EINVAL;
    goto out;
  }
  for (; done < n; done++) {
    r = try_put(q, items[done]);
    if (r == WEFT_EFULL) {
      /* Let getters at what we put before we wait for room. */
      if (unsignalled) after_put(q);
      unsignalled = 0;
      r = put_slow(q, items[done], deadline_ns);
    }
    if (r) break;
    unsignalled++;
  }
  if (unsignalled) after_put(q);
out:
  if (n_put) *n_put = done;
  return r;
}

/* ---------------------------------------------------------------- get */

/* Will gets never succeed again? */
static bool shut_and_drained(const weft_queue *q) {
  uint32_t st = atomic_load(&q->state);
  return st == SHUT_IMMEDIATE || (st == SHUT && engine_drained(q));
}

/* get for an empty queue: spin, then sleep on not_empty. */
/* Spin a while re-trying get: true once an item was taken. */
static bool spin_get(weft_queue *q, void **item) {
  for (int i = 0; i < WEFT__SPIN_ROUNDS; i++) {
    weft__cpu_relax();
    if ((i & 15) == 15) {
      if (try_get(q, item) == 0) return true;
      if (atomic_load_explicit(&q->state, memory_order_relaxed) != OPEN) return false;
      /* A producer claimed a position and still has not written it after
       * a while (a write takes nanoseconds): it was most likely preempted,
       * and spinning would only keep it off the CPU when there are more
       * threads than cores. Give the CPU away. (Yielding on every look,
       * claimed or not, cost a fifth of 1P/1C throughput in scheduler
       * calls and did not help 2P/2C.) */
      if (i >= 64 && !engine_drained(q)) sched_yield();
    }
  }
  return false;
}

static int get_slow(weft_queue *q, void **item, int64_t deadline_ns) {
  if (deadline_ns == 0) {
    if (shut_and_drained(q)) return WEFT_ESHUTDOWN;
    efd_clear(q);
    return WEFT_EEMPTY;
  }
  if (!deadline_passed(deadline_ns) && spin_get(q, item)) return 0;
  for (;;) {
    uint32_t seq = evc_prepare(&q->not_empty);
    uint32_t st = atomic_load(&q->state);
    if (st != SHUT_IMMEDIATE && try_get(q, item) == 0) {
      evc_cancel(&q->not_empty);
      return 0;
    }
    bool drained = engine_drained(q);
    if (st == SHUT_IMMEDIATE || (st == SHUT && drained)) {
      evc_cancel(&q->not_empty);
      return WEFT_ESHUTDOWN;
    }
    if (!drained) {
      /* A put claimed a position and is still writing it; its notify may
       * already have missed us (see "Blocking"), so do not sleep: spin
       * (and yield) until it lands. */
      if (deadline_passed(deadline_ns)) {
        efd_clear(q);
        return WEFT_ETIMEDOUT;
      }
      if (spin_get(q, item)) return 0;
      continue;
    }
    if (evc_sleep(&q->not_empty, seq, deadline_ns) == -ETIMEDOUT) {
      if (try_get(q, item) == 0) return 0;
      if (shut_and_drained(q)) return WEFT_ESHUTDOWN;
      efd_clear(q);
      return WEFT_ETIMEDOUT;
    }
  }
}

int weft_queue_get(weft_queue *q, void **item, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(q);
  WEFT_CHECK_HANDLE(item);
  if (WEFT_UNLIKELY(!WEFT_DEADLINE_VALID(deadline_ns))) return WEFT_EINVAL;
  void *it;
  int r = try_get(q, &it);
  if (WEFT_UNLIKELY(r != 0)) r = get_slow(q, &it, deadline_ns);
  if (r == 0) {
    *item = it;
    after_get(q);
  }
  return r;
}

int weft_queue_get_many(weft_queue *q, void **items, size_t max, int64_t deadline_ns,
                        size_t *n_got) {
  WEFT_CHECK_HANDLE(q);
  WEFT_CHECK_HANDLE(n_got);
  if (max && !items) weft__misuse(__func__, "argument 'items' is NULL with max > 0");
  *n_got = 0;
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (max == 0) return 0;
  int r = try_get(q, &items[0]);
  if (r != 0) r = get_slow(q, &items[0], deadline_ns);
  if (r != 0) return r;
  size_t n = 1;
  while (n < max && try_get(q, &items[n]) == 0) n++;
  *n_got = n;
  after_get(q);
  return 0;
}

/* ------------------------------------------------------- task accounting */

int weft_queue_task_done(weft_queue *q) {
  WEFT_CHECK_HANDLE(q);
  uint64_t done = atomic_load(&q->done), puts;
  do {
    /* Read after done: puts only grows, so done < puts stays true until
     * the CAS. A failed CAS brings a newer done, so read puts again. */
    puts = engine_puts(q);
    if (done >= puts) return WEFT_EINVAL;
  } while (!atomic_compare_exchange_weak(&q->done, &done, done + 1));
  atomic_thread_fence(memory_order_seq_cst);
  if (done + 1 >= puts) evc_notify(&q->joined);
  return 0;
}

/* All tasks done? Read done before puts: done only grows, so a done that
 * already covers a later puts is a true answer. */
static bool all_done(const weft_queue *q) {
  uint64_t done = atomic_load(&q->done);
  return done >= engine_puts(q);
}

int weft_queue_join(weft_queue *q, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(q);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  for (;;) {
    if (all_done(q)) return 0;
    if (deadline_ns == 0) return WEFT_ETIMEDOUT;
    uint32_t seq = evc_prepare(&q->joined);
    if (all_done(q)) {
      evc_cancel(&q->joined);
      return 0;
    }
    if (evc_sleep(&q->joined, seq, deadline_ns) == -ETIMEDOUT)
      return all_done(q) ? 0 : WEFT_ETIMEDOUT;
  }
}

/* ------------------------------------------------------------- queries */

size_t weft_queue_qsize(const weft_queue *q) {
  WEFT_CHECK_HANDLE(q);
  return engine_size(q);
}

bool weft_queue_empty(const weft_queue *q) { return weft_queue_qsize(q) == 0; }

bool weft_queue_full(const weft_queue *q) {
  WEFT_CHECK_HANDLE(q);
  return q->maxsize && engine_size(q) >= q->maxsize;
}

size_t weft_queue_maxsize(const weft_queue *q) {
  WEFT_CHECK_HANDLE(q);
  return q->maxsize;
}

int weft_queue_fd(weft_queue *q, int *fd) {
  WEFT_CHECK_HANDLE(q);
  WEFT_CHECK_HANDLE(fd);
  bool created;
  int f = weft__efd_get(&q->efd, &q->fd_mu, &created);
  if (f < 0) return f;
  if (created) {
    /* Items put before the fd existed must make it readable too. */
    atomic_thread_fence(memory_order_seq_cst);
    if (engine_size(q) > 0 || atomic_load(&q->state) != OPEN) efd_signal(q, f);
  }
  *fd = f;
  return 0;
}
