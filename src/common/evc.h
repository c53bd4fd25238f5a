/*
 * The event count: how weft's lock-free structures let threads sleep
 * without costing the fast path a system call. Used by the queue and by
 * weft_wait / as_completed.
 *
 * One futex word: bit 0 (WEFT__EVC_SLEEPERS) means "somebody may be asleep
 * on this epoch", the other bits count epochs. A sleeper calls
 * weft__evc_prepare (sets bit 0, seq_cst fence, reads the word), re-checks
 * its condition, and only then sleeps on the value prepare returned. A
 * notifier changes the condition with a seq_cst operation (or issues a
 * seq_cst fence) and calls weft__evc_notify, which loads the word and, only
 * when bit 0 is set, starts a new epoch (bit 0 clear) and wakes every
 * sleeper. This is Dekker's store-load pattern: either the sleeper's
 * re-check sees the change or the notifier sees bit 0. (C11: the change
 * precedes the notifier's seq_cst load in the total order S; if that load
 * misses bit 0, the sleeper's fence follows it in S, and a load after a
 * seq_cst fence sees every seq_cst write that precedes the fence.)
 *
 * A burst of notifies makes one FUTEX_WAKE, not one per notify while the
 * woken threads get going; waking all sleepers of an epoch (not one) means
 * none is passed over. A sleeper whose re-check succeeds leaves bit 0 set:
 * that costs the next notifier one spare FUTEX_WAKE, while clearing it could
 * hide another sleeper that set it too.
 */
#ifndef WEFT_COMMON_EVC_H
#define WEFT_COMMON_EVC_H

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/assert.h"
#include "common/futex.h"

#define WEFT__EVC_SLEEPERS 1u

/* Wake the sleepers of the epoch, if any (see above for what must come
 * first). The _flags form takes WEFT__FUTEX_SHARED for a word in memory
 * shared between processes (weft_shmq), whose sleepers then sleep with the
 * same flag. */
static inline void weft__evc_notify_flags(_Atomic uint32_t *word, unsigned futex_flags) {
  uint32_t w = atomic_load_explicit(word, memory_order_seq_cst);
  if (WEFT_LIKELY(!(w & WEFT__EVC_SLEEPERS))) return;
  /* A failed CAS means another notifier started the new epoch: its wake
   * covers our sleepers too. */
  if (atomic_compare_exchange_strong_explicit(word, &w, (w + 2u) & ~WEFT__EVC_SLEEPERS,
                                              memory_order_release, memory_order_relaxed))
    weft__futex_wake(word, INT_MAX, futex_flags);
}
static inline void weft__evc_notify(_Atomic uint32_t *word) { weft__evc_notify_flags(word, 0); }

/* Register as a sleeper; returns the value to sleep on. Re-check the
 * condition after this and before sleeping. */
static inline uint32_t weft__evc_prepare(_Atomic uint32_t *word) {
  atomic_fetch_or_explicit(word, WEFT__EVC_SLEEPERS, memory_order_seq_cst);
  atomic_thread_fence(memory_order_seq_cst);
  return atomic_load_explicit(word, memory_order_acquire) | WEFT__EVC_SLEEPERS;
}

#endif
