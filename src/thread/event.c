/*
 * weft_event: Python's threading.Event on one futex word.
 *
 * Layout (16 bytes; may sit in memory shared between processes, so it is
 * checked against the public size and holds no pointers):
 *   word    - bit 0 is the flag; bits 1..31 count the set() calls that found
 *             the flag clear (the generation). The futex word.
 *   waiters - threads in wait() that may sleep on word.
 *
 * Locking: none. Every field is atomic; the ordering rules are:
 *  - set() changes word, then reads waiters; wait() adds itself to waiters,
 *    then reads word. Both sides are seq_cst, so (as in Dekker's algorithm)
 *    at least one sees the other: either set() sees a waiter and wakes it,
 *    or the waiter sees the new word and does not sleep. The futex syscall
 *    closes the last gap: it sleeps only if word still holds the value the
 *    waiter read, atomically with queueing the waiter.
 *  - set() skips the wake syscall when waiters is 0, the common case.
 *  - The generation is why wait() cannot miss a set(): a waiter remembers
 *    the word it saw (flag clear) and returns 0 as soon as the word differs.
 *    Only set() changes an even word (clear() clears bit 0, which is already
 *    0), so any difference means "set() ran since I looked", even if clear()
 *    ran right after and the flag is down again by the time the waiter runs.
 *    Python's Event.wait returns True in that case too.
 * The generation wraps after 2^31 sets; a waiter asleep across exactly that
 * many would sleep on. We accept that.
 */
#include <limits.h>
#include <stdatomic.h>

#include "common/assert.h"
#include "common/futex.h"
#include "common/spin.h"
#include "thread/sync.h"
#include "weft/thread.h"

typedef struct __attribute__((may_alias)) event_impl {
  _Atomic uint32_t word;    /* flag (bit 0) and generation; futex word */
  _Atomic uint32_t waiters; /* threads that may sleep on word */
  uint32_t tag;             /* WEFT__TAG_EVENT | pshared bit; set by init */
  uint32_t spare_;          /* zero; pads to the public size */
} event_impl;

_Static_assert(sizeof(event_impl) == sizeof(weft_event), "weft_event layout");
_Static_assert(_Alignof(event_impl) <= _Alignof(weft_event), "weft_event alignment");

#define EV(e) ((event_impl *)(void *)(e))
#define CEV(e) ((const event_impl *)(const void *)(e))

int weft_event_init(weft_event *e, unsigned flags) {
  WEFT_CHECK_HANDLE(e);
  if (flags & ~WEFT_SYNC_PSHARED) return WEFT_EINVAL;
  event_impl *ev = EV(e);
  atomic_init(&ev->word, 0);
  atomic_init(&ev->waiters, 0);
  ev->tag = WEFT__TAG_EVENT | ((flags & WEFT_SYNC_PSHARED) ? WEFT__TAG_PSHARED : 0);
  ev->spare_ = 0;
  return 0;
}

void weft_event_fini(weft_event *e) {
  event_impl *ev = EV(e);
  WEFT__CHECK_TAG(e, ev, WEFT__TAG_EVENT, "event");
  /* Only for a private event: a process killed inside wait() leaves a
   * shared event's count up for good, and that must not make fini abort. */
  if (!(ev->tag & WEFT__TAG_PSHARED) &&
      atomic_load_explicit(&ev->waiters, memory_order_relaxed) != 0)
    weft__misuse(__func__, "threads are still waiting on the event");
  ev->tag = 0;
}

void weft_event_set(weft_event *e) {
  event_impl *ev = EV(e);
  WEFT__CHECK_TAG(e, ev, WEFT__TAG_EVENT, "event");
  uint32_t w = atomic_load_explicit(&ev->word, memory_order_relaxed);
  do {
    /* Already set: every sleeper went to sleep on a clear word, and the
     * set() that raised the flag since then has woken it (see the top). */
    if (w & 1u) return;
  } while (!atomic_compare_exchange_weak_explicit(&ev->word, &w, (w + 2u) | 1u,
                                                  memory_order_seq_cst,
                                                  memory_order_relaxed));
  if (atomic_load_explicit(&ev->waiters, memory_order_seq_cst) != 0)
    weft__futex_wake(&ev->word, INT32_MAX, weft__tag_futex_flags(ev->tag));
}

void weft_event_clear(weft_event *e) {
  event_impl *ev = EV(e);
  WEFT__CHECK_TAG(e, ev, WEFT__TAG_EVENT, "event");
  atomic_fetch_and_explicit(&ev->word, ~1u, memory_order_seq_cst);
}

bool weft_event_is_set(const weft_event *e) {
  const event_impl *ev = CEV(e);
  WEFT__CHECK_TAG(e, ev, WEFT__TAG_EVENT, "event");
  return atomic_load_explicit(&ev->word, memory_order_acquire) & 1u;
}

int weft__event_wait(weft_event *e, int64_t deadline_ns, int spin_rounds) {
  event_impl *ev = EV(e);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  uint32_t seen = atomic_load_explicit(&ev->word, memory_order_acquire);
  if (seen & 1u) return 0;
  if (deadline_ns == 0) return WEFT_ETIMEDOUT;

  /* A set() from a running peer often lands within microseconds: watch for
   * it before paying for a sleep and a wake syscall. */
  for (int i = 0; i < spin_rounds; i++) {
    weft__cpu_relax();
    if (atomic_load_explicit(&ev->word, memory_order_acquire) != seen) return 0;
  }

  unsigned fl = weft__tag_futex_flags(ev->tag);
  int rc;
  atomic_fetch_add_explicit(&ev->waiters, 1, memory_order_seq_cst);
  for (;;) {
    /* seq_cst: this load must not move above the waiters increment. */
    if (atomic_load_explicit(&ev->word, memory_order_seq_cst) != seen) {
      rc = 0;
      break;
    }
    int r = weft__futex_wait(&ev->word, seen, deadline_ns, fl);
    if (r == -ETIMEDOUT) {
      /* A set() that raced with the timeout still counts. */
      rc = atomic_load_explicit(&ev->word, memory_order_acquire) != seen ? 0 : WEFT_ETIMEDOUT;
      break;
    }
    /* 0 (woken, maybe spuriously), -EAGAIN (word changed), -EINTR: look again. */
  }
  atomic_fetch_sub_explicit(&ev->waiters, 1, memory_order_relaxed);
  return rc;
}

int weft_event_wait(weft_event *e, int64_t deadline_ns) {
  event_impl *ev = EV(e);
  WEFT__CHECK_TAG(e, ev, WEFT__TAG_EVENT, "event");
  return weft__event_wait(e, deadline_ns, WEFT__SPIN_ROUNDS);
}
