/* Any other architecture: a compiler barrier as the spin-wait hint. */
#ifndef WEFT_ARCH_H
#define WEFT_ARCH_H
static inline void weft__cpu_relax(void) { __asm__ __volatile__("" ::: "memory"); }
#define WEFT__CACHELINE 128
#endif
