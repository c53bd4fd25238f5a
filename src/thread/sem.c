/*
 * weft_sem: Python's Semaphore and BoundedSemaphore on one futex word.
 *
 * Layout (16 bytes; may sit in shared memory, so it holds no pointers and is
 * checked against the public size):
 *   value   - the count, 0..INT32_MAX. The futex word: sleepers sleep while
 *             it is 0.
 *   waiters - threads in acquire() that may sleep on value.
 *   max     - 0 for a counting semaphore, else the bound.
 *
 * Locking: none. acquire() takes a unit with a CAS that never lets value go
 * below 0; release() adds with a CAS that checks the bound first, so a
 * refused release changes nothing. The lost-wakeup argument is the event's
 * (see event.c): release() changes value then reads waiters, acquire() adds
 * itself to waiters then reads value, both seq_cst, and the futex sleeps only
 * while value is still 0. release(n) wakes up to n sleepers, one per unit;
 * a woken thread that finds the unit already taken by a thread that never
 * slept goes back to sleep, which is right, as that unit was consumed. A
 * sleeper that times out is out of the kernel's queue before the wake can
 * pick it, so a wake is never spent on a thread that then gives up: it
 * goes to the next sleeper. And a timed-out acquire() makes one last try,
 * so a unit that arrived with the timeout is not left behind.
 */
#include <limits.h>
#include <stdatomic.h>

#include "common/assert.h"
#include "common/futex.h"
#include "common/spin.h"
#include "thread/sync.h"
#include "weft/thread.h"

typedef struct __attribute__((may_alias)) sem_impl {
  _Atomic uint32_t value;   /* units available; futex word */
  _Atomic uint32_t waiters; /* threads that may sleep on value */
  uint32_t max;             /* bound, or 0 for none; set by init */
  uint32_t tag;             /* WEFT__TAG_SEM | pshared bit; set by init */
} sem_impl;

_Static_assert(sizeof(sem_impl) == sizeof(weft_sem), "weft_sem layout");
_Static_assert(_Alignof(sem_impl) <= _Alignof(weft_sem), "weft_sem alignment");

#define SEM(s) ((sem_impl *)(void *)(s))
#define CSEM(s) ((const sem_impl *)(const void *)(s))

int weft_sem_init(weft_sem *s, unsigned flags, uint32_t value, uint32_t max) {
  WEFT_CHECK_HANDLE(s);
  if (flags & ~WEFT_SYNC_PSHARED) return WEFT_EINVAL;
  if (value > INT32_MAX || max > INT32_MAX) return WEFT_EINVAL;
  if (max != 0 && value > max) return WEFT_EINVAL;
  sem_impl *si = SEM(s);
  atomic_init(&si->value, value);
  atomic_init(&si->waiters, 0);
  si->max = max;
  si->tag = WEFT__TAG_SEM | ((flags & WEFT_SYNC_PSHARED) ? WEFT__TAG_PSHARED : 0);
  return 0;
}

void weft_sem_fini(weft_sem *s) {
  sem_impl *si = SEM(s);
  WEFT__CHECK_TAG(s, si, WEFT__TAG_SEM, "semaphore");
  /* As for events: a dead process may leave a shared count up. */
  if (!(si->tag & WEFT__TAG_PSHARED) &&
      atomic_load_explicit(&si->waiters, memory_order_relaxed) != 0)
    weft__misuse(__func__, "threads are still waiting on the semaphore");
  si->tag = 0;
}

/* Take one unit if there is one. */
static bool try_take(sem_impl *si) {
  uint32_t v = atomic_load_explicit(&si->value, memory_order_relaxed);
  while (v != 0) {
    if (atomic_compare_exchange_weak_explicit(&si->value, &v, v - 1, memory_order_seq_cst,
                                              memory_order_relaxed))
      return true;
  }
  return false;
}

int weft_sem_acquire(weft_sem *s, int64_t deadline_ns) {
  sem_impl *si = SEM(s);
  WEFT__CHECK_TAG(s, si, WEFT__TAG_SEM, "semaphore");
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (try_take(si)) return 0;
  if (deadline_ns == 0) return WEFT_ETIMEDOUT;

  for (int i = 0; i < WEFT__SPIN_ROUNDS; i++) {
    weft__cpu_relax();
    if (atomic_load_explicit(&si->value, memory_order_relaxed) != 0 && try_take(si)) return 0;
  }

  unsigned fl = weft__tag_futex_flags(si->tag);
  int rc;
  atomic_fetch_add_explicit(&si->waiters, 1, memory_order_seq_cst);
  for (;;) {
    /* try_take's first load is relaxed, but a failed take leaves us about to
     * sleep with expected 0, and the futex re-reads value in the kernel; the
     * seq_cst fence orders that re-read after our waiters increment. */
    atomic_thread_fence(memory_order_seq_cst);
    if (try_take(si)) {
      rc = 0;
      break;
    }
    int r = weft__futex_wait(&si->value, 0, deadline_ns, fl);
    if (r == -ETIMEDOUT) {
      rc = try_take(si) ? 0 : WEFT_ETIMEDOUT;
      break;
    }
  }
  atomic_fetch_sub_explicit(&si->waiters, 1, memory_order_relaxed);
  return rc;
}

int weft_sem_release(weft_sem *s, uint32_t n) {
  sem_impl *si = SEM(s);
  WEFT__CHECK_TAG(s, si, WEFT__TAG_SEM, "semaphore");
  if (n == 0) return 0;
  uint64_t limit = si->max ? si->max : INT32_MAX;
  uint32_t v = atomic_load_explicit(&si->value, memory_order_relaxed);
  do {
    if ((uint64_t)v + n > limit) return WEFT_EINVAL;
  } while (!atomic_compare_exchange_weak_explicit(&si->value, &v, v + n, memory_order_seq_cst,
                                                  memory_order_relaxed));
  if (atomic_load_explicit(&si->waiters, memory_order_seq_cst) != 0)
    weft__futex_wake(&si->value, (int)n, weft__tag_futex_flags(si->tag));
  return 0;
}

uint32_t weft_sem_value(const weft_sem *s) {
  const sem_impl *si = CSEM(s);
  WEFT__CHECK_TAG(s, si, WEFT__TAG_SEM, "semaphore");
  return atomic_load_explicit(&si->value, memory_order_relaxed);
}
