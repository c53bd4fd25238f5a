/*
 * Portable coroutine context switch (any architecture without a switch.S):
 * POSIX ucontext. Slower than the hand-written switches (swapcontext saves
 * and restores the signal mask with a system call), but correct everywhere
 * glibc or musl provide makecontext.
 *
 * The contract is the one of src/coro/ctx.h: a suspended context is one
 * pointer, here the address of a ucontext_t that lives on the suspended
 * context's own stack (a local of weft__ctx_switch for a context that
 * switched away, or a block at the top of a fresh stack for a new one).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <ucontext.h>

#include "coro/ctx.h"

/* What a fresh stack carries at its top until its first run. */
struct fresh {
  ucontext_t uc;
  void (*entry)(void *);
  void *arg;
};

/* makecontext passes int arguments only: the block's address in two halves. */
static void start(unsigned hi, unsigned lo) {
  struct fresh *f = (struct fresh *)(uintptr_t)(((uint64_t)hi << 32) | lo);
  f->entry(f->arg);
  __builtin_trap(); /* entry never returns */
}

void weft__ctx_make(weft__ctx *ctx, void *stack_lo, size_t size, void (*entry)(void *),
                    void *arg) {
  uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
  struct fresh *f = (struct fresh *)((top - sizeof(struct fresh)) & ~(uintptr_t)63);
  getcontext(&f->uc);
  f->entry = entry;
  f->arg = arg;
  /* The stack for start() is everything below the block. */
  char *lo = stack_lo;
  f->uc.uc_stack.ss_sp = lo;
  f->uc.uc_stack.ss_size = (size_t)((char *)f - lo);
  f->uc.uc_link = NULL;
  uint64_t p = (uint64_t)(uintptr_t)f;
  makecontext(&f->uc, (void (*)(void))start, 2, (unsigned)(p >> 32), (unsigned)p);
  ctx->sp = &f->uc;
}

void weft__ctx_switch(weft__ctx *from, weft__ctx *to) {
  ucontext_t here;
  from->sp = &here;
  swapcontext(&here, (ucontext_t *)to->sp);
}
