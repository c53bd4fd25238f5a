/*
 * Futex wait and wake on a 32-bit word, with absolute CLOCK_MONOTONIC
 * deadlines. WEFT__FUTEX_SHARED is for words in memory shared between
 * processes; without it the cheaper process-private futex is used.
 */
#ifndef WEFT_COMMON_FUTEX_H
#define WEFT_COMMON_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

#define WEFT__FUTEX_SHARED 1u

/* Sleep while *addr == expected, until woken or deadline_ns (WEFT_FOREVER or
 * an absolute monotonic time). Returns 0 when woken (or spuriously),
 * -EAGAIN when *addr != expected on entry, -ETIMEDOUT, or -EINTR. */
int weft__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns,
                     unsigned flags);
/* Wake up to n sleepers (INT32_MAX for all). Returns how many woke. */
int weft__futex_wake(_Atomic uint32_t *addr, int n, unsigned flags);

#endif
