/*
 * The allocator hook and fault injection.
 *
 * Locking: none. The allocator may only be replaced before weft's first
 * allocation (weft_set_allocator refuses afterwards), so the hot path reads
 * the hook without synchronization after that. The fault countdown is an
 * atomic so that tests can arm it while other threads allocate.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "weft/common.h"

static void *sys_malloc(size_t size, void *ud) { (void)ud; return malloc(size); }
static void *sys_realloc(void *p, size_t size, void *ud) { (void)ud; return realloc(p, size); }
static void sys_free(void *p, void *ud) { (void)ud; free(p); }

static weft_allocator g_alloc = {sys_malloc, sys_realloc, sys_free, NULL};
static atomic_bool g_used;       /* set by the first allocation */
static atomic_long g_fail_nth;   /* >0: countdown to the failing allocation */
static atomic_long g_count;      /* allocations made so far */

int weft_set_allocator(const weft_allocator *alloc) {
  weft_allocator a = {sys_malloc, sys_realloc, sys_free, NULL};
  if (alloc) {
    if (!alloc->malloc_fn || !alloc->realloc_fn || !alloc->free_fn) return WEFT_EINVAL;
    a = *alloc;
  }
  if (atomic_load(&g_used)) return WEFT_EBUSY;
  g_alloc = a;
  return 0;
}

void weft__fault_alloc_fail_nth(long nth) { atomic_store(&g_fail_nth, nth > 0 ? nth : 0); }
long weft__fault_alloc_count(void) { return atomic_load_explicit(&g_count, memory_order_relaxed); }

/* True when this allocation is the one a test asked to fail. */
static int inject_failure(void) {
  atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
  long n = atomic_load_explicit(&g_fail_nth, memory_order_relaxed);
  while (n > 0) {
    if (atomic_compare_exchange_weak(&g_fail_nth, &n, n - 1)) return n == 1;
  }
  return 0;
}

static void mark_used(void) {
  if (!atomic_load_explicit(&g_used, memory_order_relaxed))
    atomic_store_explicit(&g_used, 1, memory_order_relaxed);
}

void *weft__malloc(size_t size) {
  if (inject_failure()) return NULL;
  mark_used();
  return g_alloc.malloc_fn(size ? size : 1, g_alloc.ud);
}

void *weft__calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  void *p = weft__malloc(n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *weft__realloc(void *ptr, size_t size) {
  /* The hook's contract (weft/common.h) promises realloc_fn only pointers
   * that the allocator itself returned, so growing from nothing must go to
   * malloc_fn: a user allocator need not accept realloc(NULL, n). */
  if (!ptr) return weft__malloc(size);
  if (inject_failure()) return NULL;
  mark_used();
  return g_alloc.realloc_fn(ptr, size ? size : 1, g_alloc.ud);
}

void weft__free(void *ptr) {
  if (ptr) g_alloc.free_fn(ptr, g_alloc.ud);
}

char *weft__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = weft__malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Over-allocate and keep the raw pointer just below the aligned block. */
void *weft__malloc_aligned(size_t size, size_t align) {
  /* A bad alignment is a bug in weft, not bad data: the mask below would
   * silently misalign for a non-power of two. */
  WEFT_ASSERT(align != 0 && (align & (align - 1)) == 0 && align <= 4096);
  if (align < sizeof(void *)) align = sizeof(void *);
  if (size > SIZE_MAX - align - sizeof(void *)) return NULL;
  char *raw = weft__malloc(size + align + sizeof(void *));
  if (!raw) return NULL;
  uintptr_t p = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
  ((void **)p)[-1] = raw;
  return (void *)p;
}

void weft__free_aligned(void *ptr) {
  if (ptr) weft__free(((void **)ptr)[-1]);
}
