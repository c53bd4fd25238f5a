/*
 * Coroutine stacks and stack-overflow reports.
 *
 * A stack is one anonymous private mapping: a PROT_NONE guard page at the
 * low end, then the usable stack. MAP_NORESERVE and the kernel's demand
 * paging commit a page only when it is first touched, so a 256 KiB stack
 * that a coroutine uses 3 pages of costs 12 KiB of memory. Finished
 * coroutines' stacks go to a per-hub cache (up to 64) and are reused
 * as they are, without a system call; stacks beyond that are unmapped.
 *
 * Unguarded stacks (weft_coro_opts.no_guard_page) are one plain mapping
 * each; the kernel merges neighbouring ones into one mapping, so they do
 * not count against vm.max_map_count the way guarded ones (two mappings
 * each) do. An overflow of one is not detected.
 *
 * Overflow: a coroutine that runs off the low end of its stack touches the
 * guard page and takes SIGSEGV. The handler (installed once per process,
 * chained to whatever handler was there before) runs on an alternate signal
 * stack, since the faulting stack has no room left. It looks for the
 * faulting address among the guard pages of the thread's hub and, when it
 * finds one, writes "weft: stack overflow in coroutine ..." with the
 * coroutine's name, spawn site and stack size, and aborts. Any other fault
 * is handed to the previous handler (or to the default action), so weft
 * does not hide a program's own crashes.
 *
 * Locking: the cache is per hub (one thread). The handler reads the hub of
 * the faulting thread only.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"
#include "coro/sanitize.h"

/* Every hub thread may ask first: a relaxed atomic (they all store the
 * same value). */
static size_t page_size(void) {
  static size_t ps;
  size_t v = __atomic_load_n(&ps, __ATOMIC_RELAXED);
  if (!v) {
    v = (size_t)sysconf(_SC_PAGESIZE);
    __atomic_store_n(&ps, v, __ATOMIC_RELAXED);
  }
  return v;
}

size_t weft__stack_round(size_t size) {
  size_t ps = page_size();
  if (size < WEFT_CORO_STACK_MIN) size = WEFT_CORO_STACK_MIN;
  return (size + ps - 1) & ~(ps - 1);
}

int weft__stack_get(weft__hub *h, size_t size, bool guarded, weft__stack *out) {
  size = weft__stack_round(size);
  size_t guard = guarded ? page_size() : 0;
  /* Newest first: its pages are the likeliest to be in cache. */
  for (size_t i = h->nstack_cache; i-- > 0;) {
    if (h->stack_cache[i].size == size && h->stack_cache[i].guard == guard) {
      *out = h->stack_cache[i];
      h->stack_cache[i] = h->stack_cache[--h->nstack_cache];
      return 0;
    }
  }
  void *base = mmap(NULL, size + guard, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) return WEFT_ENOMEM;
  if (guard && mprotect(base, guard, PROT_NONE) != 0) {
    munmap(base, size + guard);
    return WEFT_ENOMEM;
  }
  out->base = base;
  out->guard = guard;
  out->lo = (char *)base + guard;
  out->size = size;
  out->vg_id = weft__vg_stack_register(out->lo, (char *)out->lo + size);
  return 0;
}

static void stack_unmap(weft__stack *s) {
  weft__vg_stack_deregister(s->vg_id);
  munmap(s->base, s->size + s->guard);
  s->base = NULL;
}

void weft__stack_put(weft__hub *h, weft__stack *s) {
  if (!s->base) return;
  if (h->nstack_cache < sizeof h->stack_cache / sizeof h->stack_cache[0]) {
    h->stack_cache[h->nstack_cache++] = *s;
    s->base = NULL;
    return;
  }
  stack_unmap(s);
}

void weft__stack_cache_fini(weft__hub *h) {
  while (h->nstack_cache) stack_unmap(&h->stack_cache[--h->nstack_cache]);
}

/* ------------------------------------------------------- overflow reports */

static struct sigaction old_segv, old_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

/* Async-signal-safe formatting into a fixed buffer. */
typedef struct {
  char buf[512];
  size_t len;
} msgbuf;

static void put_str(msgbuf *m, const char *s) {
  while (*s && m->len < sizeof m->buf - 1) m->buf[m->len++] = *s++;
}

static void put_uint(msgbuf *m, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n && m->len < sizeof m->buf - 1) m->buf[m->len++] = tmp[--n];
}

static bool in_guard(const weft_coro *c, uintptr_t a) {
  if (c->is_root || !c->stack.base || !c->stack.guard) return false;
  uintptr_t lo = (uintptr_t)c->stack.base;
  /* The guard page, and a little below it: a big frame may skip past it. */
  return a >= lo - 16 * c->stack.guard && a < lo + c->stack.guard;
}

static void chain(int sig, siginfo_t *si, void *uc) {
  struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
  if (old->sa_flags & SA_SIGINFO) {
    if (old->sa_sigaction) {
      old->sa_sigaction(sig, si, uc);
      return;
    }
  } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
    old->sa_handler(sig);
    return;
  }
  /* Default action: reinstall it and return; the faulting instruction
   * runs again and the fault kills the process as usual. */
  signal(sig, SIG_DFL);
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
  weft__hub *h = weft__hub_get();
  uintptr_t a = (uintptr_t)si->si_addr;
  const weft_coro *hit = NULL;
  if (h) {
    if (in_guard(h->current, a)) {
      hit = h->current;
    } else {
      const weft__list *p;
      weft__list_for_each(p, &h->all) {
        const weft_coro *c = weft__container_of(p, weft_coro, all_link);
        if (in_guard(c, a)) {
          hit = c;
          break;
        }
      }
    }
  }
  if (!hit) {
    chain(sig, si, uc);
    return;
  }
  msgbuf m = {.len = 0};
  put_str(&m, "weft: stack overflow in coroutine \"");
  put_str(&m, hit->name);
  put_str(&m, "\" (#");
  put_uint(&m, hit->id);
  put_str(&m, ", spawned at ");
  put_str(&m, hit->file);
  put_str(&m, ":");
  put_uint(&m, (unsigned long long)hit->line);
  put_str(&m, "): it used all of its ");
  put_uint(&m, hit->stack.size / 1024);
  put_str(&m, " KiB stack; give it more with weft_coro_opts.stack_size\n");
  ssize_t r = write(STDERR_FILENO, m.buf, m.len);
  (void)r;
  /* abort(): SIGABRT with a core, like every other weft fatal report. */
  signal(SIGABRT, SIG_DFL);
  abort();
}

static void install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
}

int weft__overflow_init(weft__hub *h) {
  pthread_once(&handler_once, install_handler);
  /* Keep an alternate stack the thread already has (a sanitizer's, the
   * program's own); otherwise give it one. */
  stack_t cur;
  if (sigaltstack(NULL, &cur) != 0) return -errno;
  if (!(cur.ss_flags & SS_DISABLE)) return 0;
  size_t size = 64 * 1024;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return -errno;
  stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) {
    int e = -errno;
    munmap(mem, size);
    return e;
  }
  h->altstack = mem;
  h->altstack_size = size;
  return 0;
}

void weft__overflow_fini(weft__hub *h) {
  if (!h->altstack) return;
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == h->altstack) {
    stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
  }
  munmap(h->altstack, h->altstack_size);
  h->altstack = NULL;
}
