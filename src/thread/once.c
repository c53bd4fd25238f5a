/*
 * weft_once: run a function exactly once, on one futex word.
 *
 * The word goes 0 (not run) -> RUNNING -> DONE, or RUNNING -> CONTENDED
 * (someone sleeps) -> DONE. The caller that moves it from 0 runs fn; the
 * others sleep until DONE. The runner publishes DONE with release order and
 * callers read it with acquire, so whatever fn wrote is visible to every
 * caller that returns. The runner wakes sleepers only when one announced
 * itself by moving the word to CONTENDED, so the common path makes no
 * syscall.
 *
 * weft_once has no flags, and it may sit in memory shared between
 * processes (the header allows it), so it always uses a shared futex: it
 * works on private memory too, a little slower, and only sleepers pay.
 *
 * Locking: none; the word is the whole state.
 */
#include <limits.h>
#include <stdatomic.h>

#include "common/assert.h"
#include "common/futex.h"
#include "weft/thread.h"

enum { ONCE_NEW = 0, ONCE_RUNNING = 1, ONCE_CONTENDED = 2, ONCE_DONE = 3 };

_Static_assert(sizeof(_Atomic uint32_t) == sizeof(weft_once), "weft_once layout");

void weft_once_call(weft_once *o, void (*fn)(void *arg), void *arg) {
  WEFT_CHECK_HANDLE(o);
  WEFT_CHECK_HANDLE(fn);
  /* The public field is a plain uint32_t so WEFT_ONCE_INIT stays a constant
   * initialiser; every access goes through this atomic view of it. */
  _Atomic uint32_t *w = (_Atomic uint32_t *)(void *)&o->opaque_;
  uint32_t s = atomic_load_explicit(w, memory_order_acquire);
  if (s == ONCE_DONE) return;
  if (s > ONCE_DONE) weft__misuse(__func__, "argument 'o' is not a weft_once (use WEFT_ONCE_INIT)");

  s = ONCE_NEW;
  if (atomic_compare_exchange_strong_explicit(w, &s, ONCE_RUNNING, memory_order_acquire,
                                              memory_order_acquire)) {
    fn(arg);
    if (atomic_exchange_explicit(w, ONCE_DONE, memory_order_release) == ONCE_CONTENDED)
      weft__futex_wake(w, INT32_MAX, WEFT__FUTEX_SHARED);
    return;
  }
  for (;;) {
    if (s == ONCE_DONE) return;
    /* Announce ourselves so the runner knows to wake; a CAS failure just
     * means the state moved on (to CONTENDED or DONE): look again. */
    if (s == ONCE_RUNNING &&
        !atomic_compare_exchange_strong_explicit(w, &s, ONCE_CONTENDED, memory_order_acquire,
                                                 memory_order_acquire))
      continue;
    weft__futex_wait(w, ONCE_CONTENDED, WEFT_FOREVER, WEFT__FUTEX_SHARED);
    s = atomic_load_explicit(w, memory_order_acquire);
  }
}
