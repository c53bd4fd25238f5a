/*
 * Waiting on many futures: weft_wait and the as_completed iterator
 * (Python's concurrent.futures.wait and as_completed).
 *
 * weft_wait with ALL_COMPLETED waits for the futures one by one, on each
 * future's own word: it needs them all anyway, and so needs no watch and
 * no allocation. The other modes and as_completed use one shared waiter
 * for all the futures: a watch (future_impl.h) on each future posts to it, and the waiting thread sleeps on one event
 * count, so a completion costs O(1) whatever the number of futures, and
 * the waiter never scans the set to learn what happened.
 *
 * The event count is the one of src/queue/queue.c: a futex word whose bit
 * 0 means "a thread may sleep on this epoch". The waiter sets bit 0, fences
 * (seq_cst), reads the word, re-checks its condition and only then sleeps
 * on the value it read; the watch fn changes the shared state with a
 * seq_cst read-modify-write and then loads the word, starting a new epoch
 * and waking only when bit 0 is set. Dekker's store-load pattern: either
 * the re-check sees the change or the notifier sees bit 0.
 *
 * Lifetime. The waiter (and, for as_completed, each slot) is memory that
 * watch fns touch on the finishing thread. Before it is freed or goes out
 * of scope every watch is removed with weft__future_unwatch, which returns
 * only once the fn is not running and will not run. as_completed unwatches
 * a slot when it yields it, since the fn may still be inside its wake-up.
 *
 * Locking: none here. weft_wait's counters and the as_completed ready stack
 * are atomics; the iterator's FIFO belongs to the iterator's thread. The
 * futures' own locks are taken inside watch/unwatch (see future.c).
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/evc.h"
#include "common/futex.h"
#include "future/future_impl.h"

static void check_entries(const char *call, weft_future *const *fs, size_t n) {
  if (n && !fs) weft__misuse(call, "argument 'fs' is NULL with n > 0");
  for (size_t i = 0; i < n; i++)
    if (!fs[i]) weft__misuse(call, "fs[%zu] is NULL", i);
}

/* ------------------------------------------------------------ weft_wait */

/* The shared waiter of one weft_wait call. */
typedef struct waiter {
  _Atomic uint32_t word;   /* event count; the waiting thread sleeps here */
  _Atomic size_t finished; /* watched entries that finished; watch fns add */
  _Atomic size_t failed;   /* ... and of those, failed ones; watch fns add */
} waiter;

#define WAIT_STACK_SLOTS 16 /* watches on the stack; more are allocated */

static void wait_fn(weft__watch *w, weft_future *f) {
  waiter *wt = w->ud;
  /* failed before finished: a waiter that sees the new finished count
   * sees the failure too. */
  if (weft_future_state_get(f) == WEFT_FUTURE_FAILED)
    atomic_fetch_add_explicit(&wt->failed, 1, memory_order_seq_cst);
  atomic_fetch_add_explicit(&wt->finished, 1, memory_order_seq_cst);
  weft__evc_notify(&wt->word);
}

static bool wait_met(weft_wait_mode mode, size_t n, size_t done, size_t failed) {
  if (done >= n) return true;
  if (mode == WEFT_FIRST_COMPLETED) return done > 0;
  if (mode == WEFT_FIRST_EXCEPTION) return failed > 0;
  return false;
}

static size_t count_done(weft_future *const *fs, size_t n, size_t *failed) {
  size_t done = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    weft_future_state s = weft_future_state_get(fs[i]);
    done += s >= WEFT_FUTURE_DONE;
    bad += s == WEFT_FUTURE_FAILED;
  }
  if (failed) *failed = bad;
  return done;
}

/* weft_wait without memory for the watches (the contract has no
 * WEFT_ENOMEM): ALL_COMPLETED waits on each future in turn, which is exact;
 * the other modes poll, sleeping (through weft__block, so a pool worker
 * still helps) from 50 us doubling up to 2 ms between looks. */
static int wait_unwatched(weft_future *const *fs, size_t n, weft_wait_mode mode,
                          int64_t deadline_ns) {
  if (mode == WEFT_ALL_COMPLETED) {
    for (size_t i = 0; i < n; i++) {
      int r = weft_future_wait(fs[i], deadline_ns);
      if (r) return r;
    }
    return 0;
  }
  _Atomic uint32_t never = 0; /* nobody changes it: block just sleeps */
  int64_t nap = 50000;
  for (;;) {
    size_t failed, done = count_done(fs, n, &failed);
    if (wait_met(mode, n, done, failed)) return 0;
    int64_t now = weft_now_ns();
    if (deadline_ns != WEFT_FOREVER && now >= deadline_ns) return WEFT_ETIMEDOUT;
    int64_t until = now + nap;
    if (deadline_ns != WEFT_FOREVER && until > deadline_ns) until = deadline_ns;
    weft__block(&never, 0, until);
    if (nap < 2000000) nap *= 2;
  }
}

int weft_wait(weft_future *const *fs, size_t n, weft_wait_mode mode, int64_t deadline_ns,
              size_t *n_done) {
  check_entries(__func__, fs, n);
  if (mode < WEFT_FIRST_COMPLETED || mode > WEFT_ALL_COMPLETED) return WEFT_EINVAL;
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;

  int r = 0;
  size_t failed, done = count_done(fs, n, &failed);
  if (wait_met(mode, n, done, failed)) goto out;
  if (deadline_ns == 0) {
    r = WEFT_ETIMEDOUT;
    goto out;
  }

  /* ALL_COMPLETED needs every future anyway: wait for each in turn on its
   * own word. No watch, no allocation, no lock, still O(1) per completion. */
  if (mode == WEFT_ALL_COMPLETED) {
    r = wait_unwatched(fs, n, mode, deadline_ns);
    goto out;
  }
  weft__watch stack_slots[WAIT_STACK_SLOTS];
  weft__watch *slots = stack_slots;
  if (n > WAIT_STACK_SLOTS && !(slots = weft__calloc(n, sizeof *slots))) {
    r = wait_unwatched(fs, n, mode, deadline_ns);
    goto out;
  }
  waiter wt;
  atomic_init(&wt.word, 0);
  atomic_init(&wt.finished, 0);
  atomic_init(&wt.failed, 0);

  /* Entries already finished are counted here; the rest get a watch. */
  size_t base_done = 0, base_failed = 0;
  bool no_mem = false;
  for (size_t i = 0; i < n; i++) {
    slots[i].fn = wait_fn;
    slots[i].ud = &wt;
    int k = no_mem ? WEFT_ENOMEM : weft__future_watch(fs[i], &slots[i]);
    if (k <= 0) slots[i].fn = NULL; /* not registered: nothing to unwatch */
    if (k == 0) {
      base_done++;
      base_failed += weft_future_state_get(fs[i]) == WEFT_FUTURE_FAILED;
    } else if (k < 0) {
      no_mem = true;
    }
  }
  /* Without memory for a watch, poll instead (after removing the others). */
  if (no_mem) {
    for (size_t i = 0; i < n; i++)
      if (slots[i].fn) weft__future_unwatch(fs[i], &slots[i]);
    if (slots != stack_slots) weft__free(slots);
    r = wait_unwatched(fs, n, mode, deadline_ns);
    goto out;
  }
  for (;;) {
    done = base_done + atomic_load_explicit(&wt.finished, memory_order_seq_cst);
    failed = base_failed + atomic_load_explicit(&wt.failed, memory_order_seq_cst);
    if (wait_met(mode, n, done, failed)) break;
    uint32_t seq = weft__evc_prepare(&wt.word);
    done = base_done + atomic_load_explicit(&wt.finished, memory_order_seq_cst);
    failed = base_failed + atomic_load_explicit(&wt.failed, memory_order_seq_cst);
    if (wait_met(mode, n, done, failed)) break;
    if (weft__block(&wt.word, seq, deadline_ns) == WEFT_ETIMEDOUT) {
      done = base_done + atomic_load_explicit(&wt.finished, memory_order_seq_cst);
      failed = base_failed + atomic_load_explicit(&wt.failed, memory_order_seq_cst);
      if (!wait_met(mode, n, done, failed)) r = WEFT_ETIMEDOUT;
      break;
    }
  }
  /* wt and slots die with this call: no watch fn may run after this. */
  for (size_t i = 0; i < n; i++)
    if (slots[i].fn) weft__future_unwatch(fs[i], &slots[i]);
  if (slots != stack_slots) weft__free(slots);

out:
  if (n_done) *n_done = count_done(fs, n, NULL);
  return r;
}

/* --------------------------------------------------------- as_completed */

enum { SLOT_DUP = 1, SLOT_WATCHED = 2, SLOT_YIELDED = 4 };

typedef struct ac_slot {
  weft__watch w;        /* on f, ud = the iterator; registered if SLOT_WATCHED */
  weft_future *f;       /* fs[idx]; the iterator's reference until yielded */
  struct ac_slot *next; /* in the ready stack (set by the watch fn before
                         * its push) or the FIFO (iterator's thread) */
  size_t idx;           /* position in fs: de-duplication keeps the first */
  unsigned flags;       /* SLOT_*; iterator's thread */
} ac_slot;

struct weft_as_completed {
  _Atomic uint32_t word;         /* event count; next() sleeps here */
  _Atomic(ac_slot *) stack;      /* finished slots, newest first: a Treiber
                                  * stack pushed by watch fns, taken whole by
                                  * next(); lock-free */
  ac_slot *head, *tail;          /* ready FIFO, oldest first; iterator's thread */
  size_t left;                   /* distinct futures not yet yielded; iterator's thread */
  size_t n;                      /* number of slots (fs entries); constant */
  ac_slot slots[];               /* one per fs entry */
};

static void fifo_push(weft_as_completed *it, ac_slot *s) {
  s->next = NULL;
  if (it->tail)
    it->tail->next = s;
  else
    it->head = s;
  it->tail = s;
}

static void ac_fn(weft__watch *w, weft_future *f) {
  (void)f;
  ac_slot *s = weft__container_of(w, ac_slot, w);
  weft_as_completed *it = w->ud;
  ac_slot *top = atomic_load_explicit(&it->stack, memory_order_relaxed);
  do {
    s->next = top;
  } while (!atomic_compare_exchange_weak_explicit(&it->stack, &top, s, memory_order_seq_cst,
                                                  memory_order_relaxed));
  weft__evc_notify(&it->word);
}

/* Move what the watch fns pushed to the FIFO, in the order they pushed. */
static void take_stack(weft_as_completed *it) {
  ac_slot *s = atomic_exchange_explicit(&it->stack, NULL, memory_order_acquire);
  ac_slot *rev = NULL;
  while (s) {
    ac_slot *next = s->next;
    s->next = rev;
    rev = s;
    s = next;
  }
  while (rev) {
    ac_slot *next = rev->next;
    fifo_push(it, rev);
    rev = next;
  }
}

static int by_future(const void *a, const void *b) {
  const ac_slot *x = a, *y = b;
  uintptr_t p = (uintptr_t)x->f, q = (uintptr_t)y->f;
  if (p != q) return p < q ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int by_index(const void *a, const void *b) {
  const ac_slot *x = a, *y = b;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int weft_as_completed_create(weft_as_completed **out, weft_future *const *fs, size_t n) {
  WEFT_CHECK_HANDLE(out);
  check_entries(__func__, fs, n);
  if (n > (SIZE_MAX - sizeof(weft_as_completed)) / sizeof(ac_slot)) return WEFT_ENOMEM;
  weft_as_completed *it = weft__malloc(sizeof *it + n * sizeof(ac_slot));
  if (!it) return WEFT_ENOMEM;
  atomic_init(&it->word, 0);
  atomic_init(&it->stack, NULL);
  it->head = it->tail = NULL;
  it->left = 0;
  it->n = n;
  for (size_t i = 0; i < n; i++) {
    it->slots[i].f = fs[i];
    it->slots[i].idx = i;
    it->slots[i].flags = 0;
  }
  /* Duplicates: sort by future (O(n log n), no extra memory), keep the
   * first of each run, and restore input order. */
  if (n > 1) {
    qsort(it->slots, n, sizeof(ac_slot), by_future);
    for (size_t i = 1; i < n; i++)
      if (it->slots[i].f == it->slots[i - 1].f) it->slots[i].flags = SLOT_DUP;
    qsort(it->slots, n, sizeof(ac_slot), by_index);
  }
  /* References first: from the first watch on, a watch fn may run. */
  for (size_t i = 0; i < n; i++) {
    ac_slot *s = &it->slots[i];
    if (s->flags & SLOT_DUP) continue;
    weft_future_retain(s->f);
    it->left++;
  }
  /* Those already finished come first, in input order... */
  for (size_t i = 0; i < n; i++) {
    ac_slot *s = &it->slots[i];
    if (!(s->flags & SLOT_DUP) && weft_future_done(s->f)) {
      s->flags |= SLOT_YIELDED; /* "in the FIFO"; counted as yielded once taken */
      fifo_push(it, s);
    }
  }
  /* ...then the others as they finish. */
  for (size_t i = 0; i < n; i++) {
    ac_slot *s = &it->slots[i];
    if (s->flags & (SLOT_DUP | SLOT_YIELDED)) continue;
    s->w.fn = ac_fn;
    s->w.ud = it;
    int k = weft__future_watch(s->f, &s->w);
    if (k > 0) {
      s->flags |= SLOT_WATCHED;
    } else if (k == 0) {
      fifo_push(it, s); /* finished since the pass above */
    } else {
      /* No memory for the watch: undo everything (destroy unwatches and
       * releases every slot that is neither a duplicate nor yielded). */
      for (size_t j = 0; j < n; j++) it->slots[j].flags &= ~(unsigned)SLOT_YIELDED;
      weft_as_completed_destroy(it);
      return WEFT_ENOMEM;
    }
  }
  /* SLOT_YIELDED was only a marker for the passes above. */
  for (size_t i = 0; i < n; i++) it->slots[i].flags &= ~(unsigned)SLOT_YIELDED;
  *out = it;
  return 0;
}

int weft_as_completed_next(weft_as_completed *it, int64_t deadline_ns, weft_future **f) {
  WEFT_CHECK_HANDLE(it);
  WEFT_CHECK_HANDLE(f);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (it->left == 0) return WEFT_EEMPTY;
  for (;;) {
    if (!it->head) take_stack(it);
    ac_slot *s = it->head;
    if (s) {
      it->head = s->next;
      if (!it->head) it->tail = NULL;
      /* The watch fn may still be in its wake-up, touching *it: wait it
       * out, so that destroy can free it at any time after. */
      if (s->flags & SLOT_WATCHED) weft__future_unwatch(s->f, &s->w);
      s->flags = SLOT_YIELDED;
      it->left--;
      *f = s->f;
      weft_future_release(s->f); /* *f is now the caller's own reference */
      return 0;
    }
    if (deadline_ns == 0) return WEFT_ETIMEDOUT;
    uint32_t seq = weft__evc_prepare(&it->word);
    if (atomic_load_explicit(&it->stack, memory_order_seq_cst)) continue;
    if (weft__block(&it->word, seq, deadline_ns) == WEFT_ETIMEDOUT &&
        !atomic_load_explicit(&it->stack, memory_order_seq_cst))
      return WEFT_ETIMEDOUT;
  }
}

void weft_as_completed_destroy(weft_as_completed *it) {
  if (!it) return;
  for (size_t i = 0; i < it->n; i++) {
    ac_slot *s = &it->slots[i];
    if (s->flags & (SLOT_DUP | SLOT_YIELDED)) continue;
    if (s->flags & SLOT_WATCHED) weft__future_unwatch(s->f, &s->w);
    weft_future_release(s->f);
  }
  weft__free(it);
}
