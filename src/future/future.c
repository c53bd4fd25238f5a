/*
 * The future: state machine, result storage, reference count, waiting,
 * watches and on_done callbacks (weft/future.h and future_impl.h).
 *
 * State. One 32-bit word holds the state (bits 0-2), SLEEPERS (bit 3,
 * "a thread may be asleep on this word") and HOOKED (bit 4, "a watch or a
 * callback was added"). It is also the futex word that waiters sleep on.
 * pending -> running is a lock-free CAS (the executor's hot path); every
 * move to a final state (done, failed, cancelled) is a CAS made while
 * holding f->lock, so finishers exclude each other and the first one wins.
 * A finisher from pending retries its CAS if set_running moved the word
 * meanwhile; cancel's CAS fails if it did (WEFT_EBUSY). One exception, the
 * executor's: a driven future that is done and was never HOOKED is
 * finished by a CAS alone, without the lock (no other finisher can race
 * it, and a watcher sets HOOKED with a CAS on the same word before adding
 * itself, so either the finisher's CAS fails and it takes the lock, or the
 * watcher sees the future final). A task's future thus costs the worker
 * three atomic read-modify-writes: running, done, and its reference.
 *
 * Waiting. A waiter sets SLEEPERS with an atomic OR, checks the state it
 * got back, and sleeps on the word with that value (through weft__block,
 * so a pool worker can run other tasks instead). The finishing CAS returns
 * the old word: only if SLEEPERS was set does it call FUTEX_WAKE. Both are
 * read-modify-writes of one location, so one of them sees the other: no
 * lost wake-up, and finishing a future nobody waits on makes no syscall.
 *
 * Finishing, in this order: under the lock, write the outcome, CAS the
 * word to the final state and take the callback list; unlock; wake the
 * sleepers; run the watches one by one; run the callbacks in order. The
 * finisher holds a reference throughout, so callbacks may drop the
 * caller's last one.
 *
 * Watches and unwatch. The watch list stays in f after it finished; the
 * finisher pops one watch at a time under the lock and records it in
 * f->firing while its fn runs (outside the lock). unwatch, under the lock:
 * a watch still linked is unlinked (its fn will never run); a watch that
 * is f->firing is running now, so unwatch sets bit 0 of fire_gen, drops
 * the lock and sleeps on fire_gen until the finisher has moved on (it
 * bumps fire_gen and wakes after each fn that had a waiting unwatcher);
 * anything else has already run. So when unwatch returns, fn is not running
 * and will not run, and the memory of w may be reused.
 *
 * Layout. One cache line per future; the watch and callback lists live in
 * a separate block (fext) that the first watch or callback of a pending
 * future allocates, outside the lock (see "layout" below).
 *
 * Locking: f->lock (a three-state futex lock, Drepper's "mutex 2") guards
 * f->ext and, in it, the watch list, the callback list, firing and
 * fire_gen, and the outcome written by finishers (err, msg, the result for
 * set_result). It is held
 * only for a few loads and stores: never across an allocation, a free, a
 * wake-up or user code. Lock and unwatch sleeps call weft__futex_wait
 * directly, not weft__block: they wait for a short critical section or a
 * quick watch fn, and running a pool task in between would only add
 * latency. No lock of another object is taken while f->lock is held.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/futex.h"
#include "common/spin.h"
#include "future/future_impl.h"

/* ------------------------------------------------------------- layout */

#define STATE_MASK 7u
#define SLEEPERS 8u
#define HOOKED 16u /* a watch or callback was added: finish under the lock */
#define INLINE_MAX 32 /* result bytes stored inside the future */

#define F_DRIVEN 1u /* made by weft__future_alloc: an executor completes it */
#define F_SLAB 2u   /* lives in a slab slot (see "slab" below), not its own block */

typedef struct cb_node {
  weft__list link; /* in f->callbacks, or the finisher's local list */
  weft_future_cb *cb;
  void *ud;
} cb_node;

/* What only watched futures and futures with callbacks need, allocated
 * the first time a watch or callback is added to a pending future, and
 * freed with the future. Everything here is guarded by the future's lock. */
typedef struct fext {
  weft__list watches;        /* weft__watch.link */
  weft__list callbacks;      /* cb_node.link */
  weft__watch *firing;       /* the watch whose fn runs now, or NULL */
  _Atomic uint32_t fire_gen; /* bit 0: an unwatcher sleeps; +2 per release */
} fext;

/* One cache line: everything that submitting, running, finishing without
 * watchers, reading the result and the last release touch. A failed
 * future keeps its code and message where a result would be (it has
 * none). Futures are many and short-lived, and a program that keeps a
 * million of them pending pays for their memory in page faults, so the
 * rarely used parts live in fext. */
struct weft_future {
  _Atomic uint32_t word;     /* state | SLEEPERS | HOOKED; futex word; see the top */
  _Atomic uint32_t refs;     /* reference count; atomic */
  _Atomic uint32_t lock;     /* 0 free, 1 held, 2 held with sleepers */
  uint16_t flags;            /* F_DRIVEN, F_SLAB; set at creation, then read-only */
  uint16_t slot;             /* F_SLAB: index in its slab; kept while cached */
  size_t len;                /* result length; the running task (result_buf)
                              * or the finisher (lock); read-only once final */
  union {
    fext *ext;                     /* NULL until needed; lock */
    struct weft_future *next_free; /* in a thread's slab cache (freed) */
  };
  union {
    unsigned char bytes[INLINE_MAX]; /* the result when len <= INLINE_MAX */
    void *heap;                      /* the result when len > INLINE_MAX */
    struct {
      int err;   /* FAILED: the code; written before the final CAS */
      char *msg; /* FAILED: owned message or NULL; likewise */
    } fail;
  } res;                     /* as len and the state */
};

_Static_assert(sizeof(struct weft_future) == 64, "weft_future is one cache line");
_Static_assert(offsetof(struct weft_future, res) == WEFT__FUTURE_EMBED_OFFSET &&
                   sizeof(((struct weft_future *)0)->res) == WEFT__FUTURE_EMBED_BYTES,
               "the executor's small jobs fit the result area");

_Thread_local weft__wait_helper weft__current_helper;

static inline uint32_t state_of(uint32_t w) { return w & STATE_MASK; }
static inline bool is_final(uint32_t w) { return state_of(w) >= WEFT_FUTURE_DONE; }

static inline void *result_ptr(weft_future *f) {
  return f->len > INLINE_MAX ? f->res.heap : (void *)f->res.bytes;
}

/* --------------------------------------------------------------- lock */

static void lock_slow(weft_future *f) {
  for (int i = 0; i < WEFT__SPIN_ROUNDS; i++) {
    weft__cpu_relax();
    uint32_t z = 0;
    if (atomic_load_explicit(&f->lock, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&f->lock, &z, 1, memory_order_acquire,
                                              memory_order_relaxed))
      return;
  }
  /* Mark the lock contended; whoever holds it wakes one sleeper on unlock. */
  while (atomic_exchange_explicit(&f->lock, 2, memory_order_acquire) != 0)
    weft__futex_wait(&f->lock, 2, WEFT_FOREVER, 0);
}

static inline void lock(weft_future *f) {
  uint32_t z = 0;
  if (WEFT_LIKELY(atomic_compare_exchange_strong_explicit(&f->lock, &z, 1, memory_order_acquire,
                                                          memory_order_relaxed)))
    return;
  lock_slow(f);
}

static inline void unlock(weft_future *f) {
  if (WEFT_UNLIKELY(atomic_exchange_explicit(&f->lock, 0, memory_order_release) == 2))
    weft__futex_wake(&f->lock, 1, 0);
}

/* --------------------------------------------------------------- slab */

/* Executor futures (weft__future_alloc) come from slabs: SLAB_SLOTS futures
 * in one allocation, carved in order by the thread that made the slab, and
 * recycled through a per-thread cache of freed futures (a future's last
 * release usually happens on the thread that made it: the submitter). This
 * replaces a malloc and a free per task with a pointer pop and push, and
 * packs futures at 128 bytes apart (malloc's header makes it 144), so a
 * burst of fresh futures touches fewer pages.
 *
 * live counts the slab's slots not yet retired. A slot is retired when its
 * future is freed and the freeing thread's cache is full, or when a thread
 * exits with it uncarved or cached; the thread that retires the last slot
 * frees the slab. So memory goes back to the allocator once every future of
 * a slab is gone, except that each thread's cache (at most CACHE_MAX
 * futures) keeps the slabs of its cached futures alive.
 *
 * Fork: all the state is per-thread (tls_futs) plus each slab's live count,
 * so the child's copy of the forking thread's cache is consistent and its
 * own. Slots that other threads had cached or uncarved are never retired
 * in the child: their slabs leak there, which is harmless.
 *
 * Under AddressSanitizer every future is its own block again, so that a
 * use after the last release is caught (a slab slot would be reused at
 * once, and is never poisoned). weft_future_create's futures always are:
 * they are not on a hot path. */
#if defined(__SANITIZE_ADDRESS__)
#define FUTURE_SLAB 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUTURE_SLAB 0
#endif
#endif
#ifndef FUTURE_SLAB
#define FUTURE_SLAB 1
#endif

#define SLAB_HEAD 64 /* the live count, on a line of its own */
#define SLAB_SLOTS 255u /* 16 KiB per slab with its header */
#define CACHE_MAX 256u  /* freed futures a thread keeps */

_Static_assert(sizeof(struct weft_future) == 64, "a slab slot is one cache line");

typedef struct slab {
  _Atomic uint32_t live; /* slots not retired; see above */
  char pad[SLAB_HEAD - sizeof(_Atomic uint32_t)];
  struct weft_future slots[SLAB_SLOTS];
} slab;

_Static_assert(SLAB_SLOTS <= UINT16_MAX, "slot index fits weft_future.slot");

#if FUTURE_SLAB
typedef struct slab_cache {
  weft_future *head; /* freed futures, linked by next_free (over msg) */
  unsigned n;        /* how many */
  slab *cur;         /* the slab being carved, or NULL */
  unsigned next;     /* cur's first uncarved slot */
  bool keyed;        /* the exit destructor is registered for this thread */
} slab_cache;

static _Thread_local slab_cache tls_futs;
static pthread_key_t g_futs_key;
static bool g_futs_key_ok; /* written once under g_futs_once */
static pthread_once_t g_futs_once = PTHREAD_ONCE_INIT;

static inline slab *slab_of(weft_future *f) {
  return (slab *)((char *)(f - f->slot) - offsetof(slab, slots));
}

/* Retire k slots of s; the last one frees it. acq_rel: every thread's use
 * of s's futures happens before the free. */
static void slab_retire(slab *s, uint32_t k) {
  if (atomic_fetch_sub_explicit(&s->live, k, memory_order_acq_rel) == k) weft__free_aligned(s);
}

static void cache_flush(slab_cache *c) {
  weft_future *f;
  while ((f = c->head)) {
    c->head = f->next_free;
    slab_retire(slab_of(f), 1);
  }
  c->n = 0;
  if (c->cur) slab_retire(c->cur, SLAB_SLOTS - c->next);
  c->cur = NULL;
}

static void futs_thread_exit(void *p) {
  slab_cache *c = p;
  cache_flush(c);
  /* pthread cleared the key: a later release on this thread (another
   * key's destructor) registers again, and this runs again. */
  c->keyed = false;
}

static void futs_key_init(void) {
  g_futs_key_ok = pthread_key_create(&g_futs_key, futs_thread_exit) == 0;
}

static inline void futs_keep(slab_cache *c) {
  if (WEFT_UNLIKELY(!c->keyed)) {
    pthread_once(&g_futs_once, futs_key_init);
    if (g_futs_key_ok) pthread_setspecific(g_futs_key, c);
    c->keyed = true;
  }
}

/* A slot for a future, its slot index set; NULL when out of memory. */
static weft_future *slab_get(void) {
  slab_cache *c = &tls_futs;
  weft_future *f = c->head;
  if (WEFT_LIKELY(f)) {
    c->head = f->next_free;
    c->n--;
    return f;
  }
  if (WEFT_UNLIKELY(!c->cur)) {
    slab *s = weft__malloc_aligned(sizeof *s, 64);
    if (!s) return NULL;
    atomic_init(&s->live, SLAB_SLOTS);
    futs_keep(c);
    c->cur = s;
    c->next = 0;
  }
  f = &c->cur->slots[c->next];
  f->slot = (uint16_t)c->next;
  if (++c->next == SLAB_SLOTS) c->cur = NULL;
  return f;
}

static void slab_put(weft_future *f) {
  slab_cache *c = &tls_futs;
  if (WEFT_LIKELY(c->n < CACHE_MAX)) {
    futs_keep(c);
    f->next_free = c->head;
    c->head = f;
    c->n++;
    return;
  }
  /* Full: hand the newest half back to their slabs, the run of futures
   * of one slab with one atomic (they were freed in order, typically). */
  f->next_free = c->head;
  c->head = f;
  c->n++;
  for (unsigned k = 0; k < CACHE_MAX / 2;) {
    weft_future *g = c->head;
    slab *s = slab_of(g);
    uint32_t run = 0;
    do {
      g = g->next_free;
      run++;
      k++;
    } while (k < CACHE_MAX / 2 && g && slab_of(g) == s);
    c->head = g;
    c->n -= run;
    slab_retire(s, run);
  }
}
#endif

void weft__future_cache_flush(void) {
#if FUTURE_SLAB
  cache_flush(&tls_futs);
#endif
}

/* ------------------------------------------------------------- create */

static int future_new(weft_future **out, uint32_t flags, uint32_t refs) {
  weft_future *f;
  uint16_t slot = 0;
#if FUTURE_SLAB
  if (flags & F_SLAB) {
    f = slab_get();
    if (!f) return WEFT_ENOMEM;
    slot = f->slot;
  } else
#endif
  {
    flags &= ~F_SLAB;
    f = weft__malloc(sizeof *f);
    if (!f) return WEFT_ENOMEM;
  }
  /* Everything but the result bytes, which len (0) says are unused. */
  memset(f, 0, offsetof(weft_future, res));
  atomic_init(&f->word, WEFT_FUTURE_PENDING);
  atomic_init(&f->refs, refs);
  atomic_init(&f->lock, 0);
  f->flags = (uint16_t)flags;
  f->slot = slot;
  *out = f;
  return 0;
}

int weft__future_alloc(weft_future **out) { return future_new(out, F_DRIVEN | F_SLAB, 1); }

int weft__future_alloc_shared(weft_future **out) {
  return future_new(out, F_DRIVEN | F_SLAB, 2);
}

int weft_future_create(weft_future **out) {
  WEFT_CHECK_HANDLE(out);
  return future_new(out, 0, 1);
}

/* ----------------------------------------------------- reference count */

void weft_future_retain(weft_future *f) {
  WEFT_CHECK_HANDLE(f);
  uint32_t old = atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  if (WEFT_UNLIKELY(old == 0)) weft__misuse(__func__, "the future was already freed");
}

static void future_free(weft_future *f) {
  fext *x = f->ext;
  if (x) {
    /* Every watcher holds a reference while its watch is registered. */
    WEFT_ASSERT(weft__list_empty(&x->watches));
    /* A future released before it finished: its callbacks never run. */
    weft__list *l;
    while ((l = weft__list_pop_front(&x->callbacks)))
      weft__free(weft__container_of(l, cb_node, link));
    weft__free(x);
  }
  uint32_t st = state_of(atomic_load_explicit(&f->word, memory_order_relaxed));
  if (st == WEFT_FUTURE_FAILED)
    weft__free(f->res.fail.msg);
  else if (f->len > INLINE_MAX)
    weft__free(f->res.heap);
#if FUTURE_SLAB
  if (f->flags & F_SLAB) {
    slab_put(f);
    return;
  }
#endif
  weft__free(f);
}

void weft_future_release(weft_future *f) {
  if (!f) return;
  /* acq_rel rather than release plus an acquire fence on the last drop:
   * the same code on x86, and ThreadSanitizer does not model fences. The
   * acquire half makes every other holder's writes happen before the free. */
  uint32_t old = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
  if (WEFT_LIKELY(old > 1)) return;
  if (WEFT_UNLIKELY(old == 0)) weft__misuse(__func__, "the future was already freed");
  future_free(f);
}

/* ----------------------------------------------------------- reading */

weft_future_state weft_future_state_get(const weft_future *f) {
  WEFT_CHECK_HANDLE(f);
  return (weft_future_state)state_of(
      atomic_load_explicit(&((weft_future *)f)->word, memory_order_acquire));
}

bool weft_future_done(const weft_future *f) {
  WEFT_CHECK_HANDLE(f);
  return is_final(atomic_load_explicit(&((weft_future *)f)->word, memory_order_acquire));
}

const char *weft_future_error_message(const weft_future *f) {
  WEFT_CHECK_HANDLE(f);
  uint32_t w = atomic_load_explicit(&((weft_future *)f)->word, memory_order_acquire);
  /* The acquire load above makes msg, written before the final CAS, visible. */
  if (state_of(w) != WEFT_FUTURE_FAILED || !f->res.fail.msg) return "";
  return f->res.fail.msg;
}

/* --------------------------------------------------------------- block */

int weft__block(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns) {
  if (WEFT_UNLIKELY(!WEFT_DEADLINE_VALID(deadline_ns))) return WEFT_EINVAL;
  weft__wait_helper h = weft__current_helper;
  if (h.block) return h.block(h.ctx, word, expected, deadline_ns);
  int r = weft__futex_wait(word, expected, deadline_ns, 0);
  /* A signal is a spurious wake-up to every caller here: they re-check. */
  return r == -EINTR ? 0 : r;
}

int weft_future_wait(weft_future *f, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(f);
  if (WEFT_UNLIKELY(!WEFT_DEADLINE_VALID(deadline_ns))) return WEFT_EINVAL;
  if (is_final(atomic_load_explicit(&f->word, memory_order_acquire))) return 0;
  if (deadline_ns == 0) return WEFT_ETIMEDOUT;
  /* A short spin catches tasks that are about to end, without a syscall on
   * either side. A pool worker skips it: its helper has better things to
   * do with the CPU. */
  if (!weft__current_helper.block) {
    for (int i = 0; i < WEFT__SPIN_ROUNDS; i++) {
      weft__cpu_relax();
      if ((i & 15) == 15 && is_final(atomic_load_explicit(&f->word, memory_order_acquire)))
        return 0;
    }
  }
  for (;;) {
    uint32_t w = atomic_fetch_or_explicit(&f->word, SLEEPERS, memory_order_acq_rel);
    if (is_final(w)) return 0;
    int r = weft__block(&f->word, w | SLEEPERS, deadline_ns);
    if (r == WEFT_ETIMEDOUT)
      return is_final(atomic_load_explicit(&f->word, memory_order_acquire)) ? 0
                                                                              : WEFT_ETIMEDOUT;
  }
}

int weft_future_result(weft_future *f, int64_t deadline_ns, const void **data, size_t *len) {
  WEFT_CHECK_HANDLE(f);
  int r = weft_future_wait(f, deadline_ns);
  if (r) return r;
  uint32_t w = atomic_load_explicit(&f->word, memory_order_acquire);
  switch (state_of(w)) {
  case WEFT_FUTURE_DONE:
    if (data) *data = result_ptr(f);
    if (len) *len = f->len;
    return 0;
  case WEFT_FUTURE_CANCELLED: return WEFT_ECANCELED;
  default: return f->res.fail.err;
  }
}

/* ---------------------------------------------------------- finishing */

/* What a finisher writes. Allocations (heap result, message) are made
 * before the lock is taken, and the blocks it replaces are freed after it
 * is dropped, so the allocator hook never runs under f->lock. */
typedef struct outcome {
  uint32_t state;      /* DONE, FAILED or CANCELLED */
  int err;             /* FAILED: the code */
  char *msg;           /* FAILED: owned message or NULL */
  bool set_result;     /* DONE: replace the result with data/heap below */
  const void *data;    /* set_result, small: bytes to copy inline */
  void *heap;          /* set_result, large: owned copy */
  size_t len;          /* set_result: length */
} outcome;

/* Run the watches of a finished f, one at a time (see the top). */
static void run_watches(weft_future *f, fext *x) {
  bool wake = false;
  lock(f);
  for (;;) {
    weft__list *l = weft__list_pop_front(&x->watches);
    weft__watch *w = l ? weft__container_of(l, weft__watch, link) : NULL;
    x->firing = w;
    unlock(f);
    /* The unwatcher of the watch that just ran re-checks under the lock,
     * which it can now take. */
    if (wake) weft__futex_wake(&x->fire_gen, INT_MAX, 0);
    if (!w) return;
    /* Do not touch w after fn: once firing moves on, its unwatcher may
     * free it. */
    w->fn(w, f);
    lock(f);
    uint32_t g = atomic_load_explicit(&x->fire_gen, memory_order_relaxed);
    wake = g & 1u;
    if (wake) atomic_store_explicit(&x->fire_gen, (g + 2u) & ~1u, memory_order_relaxed);
  }
}

/* Move f to o->state and do everything finishing entails. Returns 0, or
 * WEFT_EALREADY when f had finished already (o's allocations are freed),
 * or WEFT_EBUSY when o is a cancel and f is running. */
static int finish(weft_future *f, outcome *o) {
  /* The executor's hot path: a task's future done, its result already in
   * place (result_buf), nobody ever watched it or added a callback. Only
   * the executor finishes a driven future and cancel fails once it runs,
   * so no other finisher can race; a watcher or on_done sets HOOKED in the
   * word (under the lock) before adding anything, which fails this CAS and
   * sends us to the locked path below. */
  if (o->state == WEFT_FUTURE_DONE && !o->set_result && (f->flags & F_DRIVEN)) {
    uint32_t w = atomic_load_explicit(&f->word, memory_order_relaxed);
    while (!(w & HOOKED) && !is_final(w)) {
      if (atomic_compare_exchange_weak_explicit(&f->word, &w, WEFT_FUTURE_DONE,
                                                memory_order_acq_rel, memory_order_relaxed)) {
        if (w & SLEEPERS) weft__futex_wake(&f->word, INT_MAX, 0);
        return 0;
      }
    }
  }
  void *old_heap = NULL;
  weft__list cbs;
  weft__list_init(&cbs);

  lock(f);
  uint32_t w = atomic_load_explicit(&f->word, memory_order_relaxed);
  if (is_final(w)) {
    unlock(f);
    weft__free(o->heap);
    weft__free(o->msg);
    return state_of(w) == WEFT_FUTURE_CANCELLED && o->state == WEFT_FUTURE_CANCELLED
               ? 0
               : WEFT_EALREADY;
  }
  if (o->state == WEFT_FUTURE_CANCELLED) {
    /* Only from pending; set_running (lock-free) may beat us to it. */
    if (state_of(w) != WEFT_FUTURE_PENDING ||
        !atomic_compare_exchange_strong_explicit(&f->word, &w, WEFT_FUTURE_CANCELLED,
                                                 memory_order_acq_rel, memory_order_relaxed)) {
      unlock(f);
      return WEFT_EBUSY;
    }
  } else {
    if (o->state == WEFT_FUTURE_FAILED) {
      if (f->len > INLINE_MAX) old_heap = f->res.heap;
      f->len = 0;
      f->res.fail.err = o->err;
      f->res.fail.msg = o->msg;
      o->msg = NULL;
    } else if (o->set_result) {
      if (f->len > INLINE_MAX) old_heap = f->res.heap;
      if (o->len > INLINE_MAX)
        f->res.heap = o->heap;
      else if (o->len)
        memcpy(f->res.bytes, o->data, o->len);
      f->len = o->len;
    }
    /* Only set_running can move the word under us (pending -> running,
     * or SLEEPERS added): retry with what it left. */
    while (!atomic_compare_exchange_weak_explicit(&f->word, &w, o->state, memory_order_acq_rel,
                                                  memory_order_relaxed))
      WEFT_ASSERT(!is_final(w));
  }
  /* From here the future is final: no watch or callback can be added, and
   * run_watches owns the watch list. */
  fext *x = f->ext;
  bool watched = x && !weft__list_empty(&x->watches);
  if (x && !weft__list_empty(&x->callbacks)) {
    cbs = x->callbacks;
    cbs.next->prev = &cbs;
    cbs.prev->next = &cbs;
    weft__list_init(&x->callbacks);
  }
  /* Callbacks may drop the caller's reference: keep f alive to the end. */
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  unlock(f);

  weft__free(old_heap);
  if (w & SLEEPERS) weft__futex_wake(&f->word, INT_MAX, 0);
  if (watched) run_watches(f, x);
  weft__list *l;
  while ((l = weft__list_pop_front(&cbs))) {
    cb_node *n = weft__container_of(l, cb_node, link);
    n->cb(f, n->ud);
    weft__free(n);
  }
  weft_future_release(f);
  return 0;
}

int weft_future_cancel(weft_future *f) {
  WEFT_CHECK_HANDLE(f);
  uint32_t w = atomic_load_explicit(&f->word, memory_order_acquire);
  switch (state_of(w)) {
  case WEFT_FUTURE_RUNNING: return WEFT_EBUSY;
  case WEFT_FUTURE_CANCELLED: return 0;
  case WEFT_FUTURE_DONE:
  case WEFT_FUTURE_FAILED: return WEFT_EALREADY;
  default: break;
  }
  outcome o = {.state = WEFT_FUTURE_CANCELLED};
  return finish(f, &o);
}

int weft_future_set_running(weft_future *f) {
  WEFT_CHECK_HANDLE(f);
  uint32_t w = atomic_load_explicit(&f->word, memory_order_relaxed);
  do {
    if (state_of(w) == WEFT_FUTURE_CANCELLED) return WEFT_ECANCELED;
    if (state_of(w) != WEFT_FUTURE_PENDING) return WEFT_EALREADY;
  } while (!atomic_compare_exchange_weak_explicit(&f->word, &w,
                                                  (w & ~STATE_MASK) | WEFT_FUTURE_RUNNING,
                                                  memory_order_acq_rel, memory_order_relaxed));
  return 0;
}

static void check_not_driven(const weft_future *f, const char *call) {
  /* An executor's task may be writing the result storage right now
   * (weft__future_result_buf); only the executor finishes such a future. */
  if (WEFT_UNLIKELY(f->flags & F_DRIVEN))
    weft__misuse(call, "the future belongs to an executor; only futures from "
                       "weft_future_create may be completed by hand");
}

int weft_future_set_result(weft_future *f, const void *data, size_t len) {
  WEFT_CHECK_HANDLE(f);
  if (len && !data) weft__misuse(__func__, "argument 'data' is NULL with len > 0");
  check_not_driven(f, __func__);
  if (is_final(atomic_load_explicit(&f->word, memory_order_acquire))) return WEFT_EALREADY;
  outcome o = {.state = WEFT_FUTURE_DONE, .set_result = true, .data = data, .len = len};
  if (len > INLINE_MAX) {
    o.heap = weft__malloc(len);
    if (!o.heap) {
      outcome fail = {.state = WEFT_FUTURE_FAILED, .err = WEFT_ENOMEM};
      int r = finish(f, &fail);
      return r ? r : WEFT_ENOMEM;
    }
    memcpy(o.heap, data, len);
  }
  return finish(f, &o);
}

int weft_future_set_error(weft_future *f, int code, const char *message) {
  WEFT_CHECK_HANDLE(f);
  check_not_driven(f, __func__);
  if (code >= 0) return WEFT_EINVAL;
  if (is_final(atomic_load_explicit(&f->word, memory_order_acquire))) return WEFT_EALREADY;
  outcome o = {.state = WEFT_FUTURE_FAILED, .err = code};
  if (message && !(o.msg = weft__strdup(message))) {
    /* As the contract says: f still finishes, failed with WEFT_ENOMEM. */
    o.err = WEFT_ENOMEM;
    int r = finish(f, &o);
    return r ? r : WEFT_ENOMEM;
  }
  return finish(f, &o);
}

/* ------------------------------------------------- the executor's side */

void *weft__future_result_buf(weft_future *f, size_t len) {
  WEFT_ASSERT(f);
  WEFT_DASSERT(!is_final(atomic_load_explicit(&f->word, memory_order_relaxed)));
  /* Only the task's thread writes here before finishing, and nobody reads
   * before the final state is published: no lock needed. */
  if (len <= INLINE_MAX) {
    if (f->len > INLINE_MAX) weft__free(f->res.heap);
    f->len = len;
    return f->res.bytes;
  }
  void *p = f->len > INLINE_MAX ? weft__realloc(f->res.heap, len) : weft__malloc(len);
  if (!p) return NULL; /* the earlier result stays as it was */
  f->res.heap = p;
  f->len = len;
  return p;
}

void weft__future_finish_done(weft_future *f) {
  WEFT_ASSERT(f);
  outcome o = {.state = WEFT_FUTURE_DONE};
  (void)finish(f, &o);
}

void weft__future_finish_failed(weft_future *f, int code, const char *message) {
  WEFT_ASSERT(f);
  WEFT_ASSERT(code < 0);
  /* Without memory for the message the code still gets through: it says
   * more (a dead worker, the task's own error) than WEFT_ENOMEM would. */
  outcome o = {.state = WEFT_FUTURE_FAILED, .err = code,
               .msg = message ? weft__strdup(message) : NULL};
  (void)finish(f, &o);
}

/* ------------------------------------------------------------ watches */

/* Make sure f has its fext, for adding a watch or callback to a pending f.
 * Allocates outside the lock; 0 or WEFT_ENOMEM. A finished f needs none,
 * but the caller only learns that under the lock, so it may get one for
 * nothing (rare: it raced with the finisher). */
static int ext_ensure(weft_future *f) {
  lock(f);
  bool have = f->ext != NULL;
  unlock(f);
  if (have) return 0;
  fext *x = weft__malloc(sizeof *x);
  if (!x) return WEFT_ENOMEM;
  weft__list_init(&x->watches);
  weft__list_init(&x->callbacks);
  x->firing = NULL;
  atomic_init(&x->fire_gen, 0);
  lock(f);
  if (!f->ext) {
    f->ext = x;
    x = NULL;
  }
  unlock(f);
  weft__free(x); /* another thread installed one first */
  return 0;
}

/* With f->lock held: set HOOKED unless f is final. true: f is not final,
 * and its finisher will take the lock (and see what the caller adds). */
static bool hook(weft_future *f) {
  uint32_t w = atomic_load_explicit(&f->word, memory_order_relaxed);
  do {
    if (is_final(w)) return false;
    if (w & HOOKED) return true;
  } while (!atomic_compare_exchange_weak_explicit(&f->word, &w, w | HOOKED, memory_order_acq_rel,
                                                  memory_order_relaxed));
  return true;
}

int weft__future_watch(weft_future *f, weft__watch *w) {
  WEFT_ASSERT(f && w && w->fn);
  /* Unlinked, so that an unwatch of a watch not added is a harmless no-op. */
  weft__list_init(&w->link);
  if (is_final(atomic_load_explicit(&f->word, memory_order_acquire))) return 0;
  int r = ext_ensure(f);
  if (r) return r;
  lock(f);
  if (hook(f)) {
    weft__list_push_back(&f->ext->watches, &w->link);
    unlock(f);
    return 1;
  }
  unlock(f);
  return 0;
}

void weft__future_unwatch(weft_future *f, weft__watch *w) {
  WEFT_ASSERT(f && w);
  lock(f);
  for (;;) {
    if (w->link.next != &w->link) { /* still registered: fn never runs */
      weft__list_remove(&w->link);
      break;
    }
    fext *x = f->ext;
    if (!x || x->firing != w) break; /* already ran, or never registered */
    /* fn runs right now on the finishing thread: wait until it returned. */
    uint32_t g = atomic_load_explicit(&x->fire_gen, memory_order_relaxed) | 1u;
    atomic_store_explicit(&x->fire_gen, g, memory_order_relaxed);
    unlock(f);
    weft__futex_wait(&x->fire_gen, g, WEFT_FOREVER, 0);
    lock(f);
  }
  unlock(f);
}

/* ----------------------------------------------------------- callbacks */

int weft_future_on_done(weft_future *f, weft_future_cb *cb, void *ud) {
  WEFT_CHECK_HANDLE(f);
  WEFT_CHECK_HANDLE(cb);
  if (!is_final(atomic_load_explicit(&f->word, memory_order_acquire))) {
    if (ext_ensure(f)) return WEFT_ENOMEM;
    cb_node *n = weft__malloc(sizeof *n);
    if (!n) return WEFT_ENOMEM;
    n->cb = cb;
    n->ud = ud;
    lock(f);
    if (hook(f)) {
      weft__list_push_back(&f->ext->callbacks, &n->link);
      unlock(f);
      return 0;
    }
    unlock(f);
    weft__free(n);
  }
  /* Already finished: run here and now, keeping f valid even if cb drops
   * the caller's reference. */
  weft_future_retain(f);
  cb(f, ud);
  weft_future_release(f);
  return 0;
}
