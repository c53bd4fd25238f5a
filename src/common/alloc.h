/*
 * Internal allocation entry points. Every allocation weft makes goes through
 * these, so the user's allocator hook (weft_set_allocator) and the test
 * suite's fault injection (fail the Nth allocation) see all of them.
 */
#ifndef WEFT_COMMON_ALLOC_H
#define WEFT_COMMON_ALLOC_H

#include <stddef.h>

/* As malloc, but size 0 still returns a unique pointer (1 byte is asked
 * for), so NULL always means "out of memory". */
void *weft__malloc(size_t size);
/* Zeroed; NULL when n * size overflows (that failure is not counted as an
 * allocation). */
void *weft__calloc(size_t n, size_t size);
/* As realloc: on NULL the old block stays valid and owned by the caller.
 * ptr NULL is weft__malloc(size), never the hook's realloc_fn. */
void *weft__realloc(void *ptr, size_t size);
void weft__free(void *ptr);                  /* NULL is a no-op */
char *weft__strdup(const char *s);
/* Memory aligned to align (a power of two, at most 4096; anything else is an
 * internal bug and trips WEFT_ASSERT) for structures that must sit on their
 * own cache lines. One allocation from the hook. Free with
 * weft__free_aligned, never weft__free. */
void *weft__malloc_aligned(size_t size, size_t align);
void weft__free_aligned(void *ptr);

/* Fault injection for tests: the nth allocation from now (1 = the next one)
 * fails, and only that one; injection is then off again. 0 (or a negative
 * n) turns it off. An allocation is one call of weft__malloc, weft__calloc,
 * weft__realloc, weft__strdup or weft__malloc_aligned. Safe to call while
 * other threads allocate: exactly one of them gets the failure. */
void weft__fault_alloc_fail_nth(long nth);
/* How many allocations have been attempted since the process started
 * (injected failures included), so a test can count the allocations a call
 * makes and then fail each of them in turn. */
long weft__fault_alloc_count(void);

#endif
