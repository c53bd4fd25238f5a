/*
 * Bounded spinning before sleeping. weft__cpu_relax() comes from the
 * per-architecture header weft_arch.h (src/arch/<arch>/), chosen by the build.
 */
#ifndef WEFT_COMMON_SPIN_H
#define WEFT_COMMON_SPIN_H

#include "weft_arch.h"

/* How many relax rounds a waiter spins before it sleeps on a futex. About
 * 2-10 us on current x86; long enough to catch a hand-off from a running
 * peer, short enough that an idle waiter costs no CPU. */
#define WEFT__SPIN_ROUNDS 2000

#endif
