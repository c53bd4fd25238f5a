/*
 * Internal to src/thread/: what the synchronization objects share.
 *
 * Every object in caller memory (weft_mutex, weft_cond, weft_event,
 * weft_sem, weft_barrier) keeps a 32-bit tag: a per-type magic number with
 * bit 0 set when the object was initialised with WEFT_SYNC_PSHARED. The
 * magic lets every call catch use before init or after fini (misuse: it
 * aborts naming the call); bit 0 picks the futex kind. Low bit 0 of every
 * magic is clear, so the two never mix.
 *
 * The opaque storage of the public structs is reached through types marked
 * may_alias: the caller's object is declared as the public union, and the
 * compiler must not assume the two types cannot overlap. The storage is
 * the whole public struct (a one-member union), so each file casts the
 * caller's pointer itself: nothing is dereferenced before the NULL check.
 */
#ifndef WEFT_THREAD_SYNC_H
#define WEFT_THREAD_SYNC_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/assert.h"
#include "common/futex.h"
#include "weft/thread.h"

#define WEFT__TAG_MUTEX   0x4d545800u /* "MTX" */
#define WEFT__TAG_COND    0x434e4400u /* "CND" */
#define WEFT__TAG_EVENT   0x45564e00u /* "EVN" */
#define WEFT__TAG_SEM     0x53454d00u /* "SEM" */
#define WEFT__TAG_BARRIER 0x42415200u /* "BAR" */
#define WEFT__TAG_PSHARED 0x1u        /* bit 0: initialised with WEFT_SYNC_PSHARED */

/* The futex flags for an object with this tag: shared futexes (keyed by the
 * physical page) only when other processes may wait on the same word. */
static inline unsigned weft__tag_futex_flags(uint32_t tag) {
  return (tag & WEFT__TAG_PSHARED) ? WEFT__FUTEX_SHARED : 0u;
}

/* Abort, naming the public call, unless the object behind argument `arg`
 * (already cast to its layout as `impl`) carries the magic `magic`. */
#define WEFT__CHECK_TAG(arg, impl, magic, what)                                  \
  do {                                                                           \
    WEFT_CHECK_HANDLE(arg);                                                      \
    if (WEFT_UNLIKELY(((impl)->tag & ~WEFT__TAG_PSHARED) != (magic)))            \
      weft__misuse(__func__, "argument '%s' is not an initialised %s (used "     \
                   "before init or after fini?)", #arg, what);                   \
  } while (0)

/* weft_event_wait with a choice of spinning: spin_rounds relax rounds are
 * spent watching the word before sleeping (0: sleep at once). The thread
 * layer waits on its stop and done events through this without spinning, as
 * those waits are long by nature. Same returns as weft_event_wait. */
int weft__event_wait(weft_event *e, int64_t deadline_ns, int spin_rounds);

#endif
