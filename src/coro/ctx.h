/*
 * The context switch contract, implemented once per architecture by the
 * file the build picks: src/arch/x86_64/switch.S, src/arch/aarch64/switch.S,
 * or the portable src/arch/generic/switch.c (ucontext) elsewhere.
 *
 * A context is one pointer. A context that switched away keeps everything
 * it needs to resume on its own stack, so the hub stores no registers.
 */
#ifndef WEFT_CORO_CTX_H
#define WEFT_CORO_CTX_H

#include <stddef.h>

typedef struct weft__ctx {
  void *sp; /* saved stack pointer (generic: address of a ucontext_t) */
} weft__ctx;

/* Prepare ctx so that the first switch to it runs entry(arg) on the stack
 * [stack_lo, stack_lo + size). entry must never return (it switches away
 * for the last time instead). */
void weft__ctx_make(weft__ctx *ctx, void *stack_lo, size_t size, void (*entry)(void *),
                    void *arg);

/* Save the running context into from and resume to. Returns when some
 * other context switches back to from. A context that was never made (a
 * thread's own stack) can be switched away from: from is filled in. */
void weft__ctx_switch(weft__ctx *from, weft__ctx *to);

#endif
