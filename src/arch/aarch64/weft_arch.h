/* aarch64: the spin-wait hint. */
#ifndef WEFT_ARCH_H
#define WEFT_ARCH_H
static inline void weft__cpu_relax(void) { __asm__ __volatile__("yield" ::: "memory"); }
#define WEFT__CACHELINE 64
#endif
