/*
 * Bounded spinning before sleeping. weft__cpu_relax() comes from the
 * per-architecture header weft_arch.h (src/arch/<arch>/), chosen by the build.
 */
#ifndef WEFT_COMMON_SPIN_H
#define WEFT_COMMON_SPIN_H

#include "weft_arch.h"

/* How many relax rounds a waiter spins before it sleeps on a futex: about
 * 2 us where a pause costs ~11 ns (measured on the 2-core Xeon VM weft is
 * benchmarked on), 0.5-1 us on older x86. Long enough to catch a hand-off
 * from a peer running on another core; short enough that with more threads
 * than cores a spinner does not keep the thread it waits for off the CPU
 * for long. Chosen by W4 of bench/: 100-2000 rounds were tried, and longer
 * spins made 2-producer/2-consumer runs slower and more erratic. */
#define WEFT__SPIN_ROUNDS 200

/* Exponential backoff after losing a compare-and-swap to another thread:
 * wait 1, 2, 4 ... 32 relax rounds, so that the winner can go on with the
 * contended line in its cache instead of the two cores trading it on every
 * operation. */
typedef struct weft__backoff {
  unsigned n; /* rounds waited last time, as a power of two */
} weft__backoff;

static inline void weft__backoff_wait(weft__backoff *b) {
  for (unsigned i = 0; i < (1u << b->n); i++) weft__cpu_relax();
  if (b->n < 5) b->n++;
}

#endif
