/*
 * weft_barrier: Python's threading.Barrier on one futex word, without a
 * lock (so that a process killed while it uses a shared barrier cannot
 * leave a lock held).
 *
 * Layout (32 bytes; may sit in shared memory, so no pointers, and checked
 * against the public size):
 *   state   - the futex word, packed so that one CAS moves a whole round:
 *               bits  0..15  arrivals in the current round
 *               bit   16     BROKEN: this round was broken (timeout, abort)
 *               bit   17     PREV_BROKEN: the previous round ended broken
 *                            (reset), not released
 *               bits 18..31  the round number (wraps at 2^14)
 *   waiters - threads that may sleep on state.
 *   history - bit r % 32 tells how round r ended (1: broken). Written for
 *             round r by whoever ends round r + 1, before that CAS publishes
 *             r + 2, so it is in place before anyone can need it.
 *   parties - fixed at init, 1..65535 (the arrivals field).
 *
 * Protocol. wait() arrives with a CAS on state: the arrival index is the
 * count it found; the last arrival (index parties-1) ends the round with the
 * same CAS (round + 1, count 0, PREV_BROKEN clear) and wakes the sleepers.
 * Others sleep until state shows another round or BROKEN. abort() and a
 * timed-out waiter set BROKEN (round unchanged); reset() ends the round with
 * PREV_BROKEN set. A waiter of round r that sees round r + 1 reads the
 * outcome from PREV_BROKEN in the same word; one that sees r + 2 or later
 * (it slept through resets, or more threads than parties share the barrier)
 * reads it from history. That holds for 32 rounds of lag; a thread that
 * sleeps through more (and is then not rescheduled for 2^14 rounds) could
 * misread its outcome. Threads beyond `parties` simply join the next round,
 * as Python's extra callers do after draining.
 *
 * Ordering: every change to state is a seq_cst read-modify-write, so a
 * waiter's acquire load of a new round sees every arrival of the old one
 * (release sequence) and the history bit written before it. The wake-up
 * argument (state changes, then waiters is read; the sleeper counts itself,
 * then reads state) is the event's: see event.c.
 *
 * Locking: none.
 */
#include <limits.h>
#include <stdatomic.h>

#include "common/assert.h"
#include "common/futex.h"
#include "common/spin.h"
#include "thread/sync.h"
#include "weft/thread.h"

typedef struct __attribute__((may_alias)) barrier_impl {
  _Atomic uint32_t state;   /* round, flags and arrivals; futex word */
  _Atomic uint32_t waiters; /* threads that may sleep on state */
  _Atomic uint32_t history; /* bit r % 32: round r ended broken */
  uint32_t parties;         /* threads per round; set by init */
  uint32_t tag;             /* WEFT__TAG_BARRIER | pshared bit; set by init */
  uint32_t spare_[3];       /* zero; pads to the public size */
} barrier_impl;

_Static_assert(sizeof(barrier_impl) == sizeof(weft_barrier), "weft_barrier layout");
_Static_assert(_Alignof(barrier_impl) <= _Alignof(weft_barrier), "weft_barrier alignment");

#define COUNT_MASK 0xffffu
#define BROKEN (1u << 16)
#define PREV_BROKEN (1u << 17)
#define GEN_SHIFT 18
#define GEN_ONE (1u << GEN_SHIFT)
#define GEN_MASK (UINT32_MAX >> GEN_SHIFT)
#define PARTIES_MAX COUNT_MASK

#define BAR(b) ((barrier_impl *)(void *)(b))

static uint32_t gen_of(uint32_t s) { return s >> GEN_SHIFT; }

/* The state that starts the round after s: round + 1, no arrivals. */
static uint32_t next_round(uint32_t s, bool ended_broken) {
  return ((s & ~(GEN_ONE - 1)) + GEN_ONE) | (ended_broken ? PREV_BROKEN : 0);
}

/* Before ending the round of s: record how the round before it ended (the
 * PREV_BROKEN that is about to be overwritten). Every thread that tries to
 * end this round writes the same value, as PREV_BROKEN is fixed while the
 * round lasts. */
static void record_history(barrier_impl *bi, uint32_t s) {
  uint32_t bit = 1u << ((gen_of(s) - 1) & 31);
  if (s & PREV_BROKEN)
    atomic_fetch_or_explicit(&bi->history, bit, memory_order_relaxed);
  else
    atomic_fetch_and_explicit(&bi->history, ~bit, memory_order_relaxed);
}

static void wake_all(barrier_impl *bi) {
  if (atomic_load_explicit(&bi->waiters, memory_order_seq_cst) != 0)
    weft__futex_wake(&bi->state, INT32_MAX, weft__tag_futex_flags(bi->tag));
}

/* How round `mine` ended, now that state s shows a later round. */
static int outcome(barrier_impl *bi, uint32_t mine, uint32_t s) {
  uint32_t lag = (gen_of(s) - mine) & GEN_MASK;
  bool broken;
  if (lag == 1)
    broken = (s & PREV_BROKEN) != 0;
  else
    broken = (atomic_load_explicit(&bi->history, memory_order_relaxed) >> (mine & 31)) & 1u;
  return broken ? WEFT_EBROKEN : 0;
}

int weft_barrier_init(weft_barrier *b, unsigned flags, unsigned parties) {
  WEFT_CHECK_HANDLE(b);
  if (flags & ~WEFT_SYNC_PSHARED) return WEFT_EINVAL;
  if (parties < 1 || parties > PARTIES_MAX) return WEFT_EINVAL;
  barrier_impl *bi = BAR(b);
  atomic_init(&bi->state, 0);
  atomic_init(&bi->waiters, 0);
  atomic_init(&bi->history, 0);
  bi->parties = parties;
  bi->tag = WEFT__TAG_BARRIER | ((flags & WEFT_SYNC_PSHARED) ? WEFT__TAG_PSHARED : 0);
  bi->spare_[0] = bi->spare_[1] = bi->spare_[2] = 0;
  return 0;
}

void weft_barrier_fini(weft_barrier *b) {
  barrier_impl *bi = BAR(b);
  WEFT__CHECK_TAG(b, bi, WEFT__TAG_BARRIER, "barrier");
  if (!(bi->tag & WEFT__TAG_PSHARED) &&
      atomic_load_explicit(&bi->waiters, memory_order_relaxed) != 0)
    weft__misuse(__func__, "threads are still waiting on the barrier");
  bi->tag = 0;
}

/* The caller timed out in round mine: break the round unless it ended (or
 * broke) meanwhile, in which case that outcome wins. */
static int time_out(barrier_impl *bi, uint32_t mine) {
  uint32_t s = atomic_load_explicit(&bi->state, memory_order_acquire);
  for (;;) {
    if (gen_of(s) != mine) return outcome(bi, mine, s);
    if (s & BROKEN) return WEFT_EBROKEN;
    if (atomic_compare_exchange_weak_explicit(&bi->state, &s, s | BROKEN, memory_order_seq_cst,
                                              memory_order_acquire)) {
      wake_all(bi);
      return WEFT_ETIMEDOUT;
    }
  }
}

/* Wait for round mine to end; 0 (released), WEFT_EBROKEN, WEFT_ETIMEDOUT. */
static int wait_round(barrier_impl *bi, uint32_t mine, int64_t deadline_ns) {
  if (deadline_ns == 0) return time_out(bi, mine);

  /* Spin first: in lock-step loops the last party is often only
   * microseconds behind. */
  uint32_t s;
  for (int i = 0; i < WEFT__SPIN_ROUNDS; i++) {
    weft__cpu_relax();
    s = atomic_load_explicit(&bi->state, memory_order_acquire);
    if (gen_of(s) != mine) return outcome(bi, mine, s);
    if (s & BROKEN) return WEFT_EBROKEN;
  }

  unsigned fl = weft__tag_futex_flags(bi->tag);
  int rc;
  atomic_fetch_add_explicit(&bi->waiters, 1, memory_order_seq_cst);
  for (;;) {
    s = atomic_load_explicit(&bi->state, memory_order_seq_cst);
    if (gen_of(s) != mine) {
      rc = outcome(bi, mine, s);
      break;
    }
    if (s & BROKEN) {
      rc = WEFT_EBROKEN;
      break;
    }
    /* Arrivals change s too: the futex then says EAGAIN and we look again. */
    if (weft__futex_wait(&bi->state, s, deadline_ns, fl) == -ETIMEDOUT) {
      rc = time_out(bi, mine);
      break;
    }
  }
  atomic_fetch_sub_explicit(&bi->waiters, 1, memory_order_relaxed);
  return rc;
}

int weft_barrier_wait(weft_barrier *b, int64_t deadline_ns, unsigned *index) {
  barrier_impl *bi = BAR(b);
  WEFT__CHECK_TAG(b, bi, WEFT__TAG_BARRIER, "barrier");
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;

  /* Arrive. */
  uint32_t s = atomic_load_explicit(&bi->state, memory_order_acquire), me;
  for (;;) {
    if (s & BROKEN) return WEFT_EBROKEN;
    me = s & COUNT_MASK;
    if (me + 1 == bi->parties) {
      record_history(bi, s);
      if (atomic_compare_exchange_weak_explicit(&bi->state, &s, next_round(s, false),
                                                memory_order_seq_cst, memory_order_acquire)) {
        wake_all(bi);
        if (index) *index = me;
        return 0;
      }
    } else if (atomic_compare_exchange_weak_explicit(&bi->state, &s, s + 1,
                                                     memory_order_seq_cst,
                                                     memory_order_acquire)) {
      break;
    }
  }
  uint32_t mine = gen_of(s);
  int rc = wait_round(bi, mine, deadline_ns);
  /* The index is the caller's only on success: a failed call changes
   * nothing the caller can see. */
  if (rc == 0 && index) *index = me;
  return rc;
}

void weft_barrier_abort(weft_barrier *b) {
  barrier_impl *bi = BAR(b);
  WEFT__CHECK_TAG(b, bi, WEFT__TAG_BARRIER, "barrier");
  uint32_t s = atomic_load_explicit(&bi->state, memory_order_relaxed);
  do {
    if (s & BROKEN) return;
  } while (!atomic_compare_exchange_weak_explicit(&bi->state, &s, s | BROKEN,
                                                  memory_order_seq_cst, memory_order_relaxed));
  wake_all(bi);
}

void weft_barrier_reset(weft_barrier *b) {
  barrier_impl *bi = BAR(b);
  WEFT__CHECK_TAG(b, bi, WEFT__TAG_BARRIER, "barrier");
  uint32_t s = atomic_load_explicit(&bi->state, memory_order_relaxed);
  for (;;) {
    /* Nobody waiting and not broken: already the initial state. */
    if ((s & (COUNT_MASK | BROKEN)) == 0) return;
    record_history(bi, s);
    if (atomic_compare_exchange_weak_explicit(&bi->state, &s, next_round(s, true),
                                              memory_order_seq_cst, memory_order_relaxed))
      break;
  }
  wake_all(bi);
}
