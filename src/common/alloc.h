/*
 * Internal allocation entry points. Every allocation weft makes goes through
 * these, so the user's allocator hook (weft_set_allocator) and the test
 * suite's fault injection (fail the Nth allocation) see all of them.
 */
#ifndef WEFT_COMMON_ALLOC_H
#define WEFT_COMMON_ALLOC_H

#include <stddef.h>

void *weft__malloc(size_t size);
void *weft__calloc(size_t n, size_t size);   /* overflow-checked, zeroed */
void *weft__realloc(void *ptr, size_t size);
void weft__free(void *ptr);
char *weft__strdup(const char *s);
/* Memory aligned to align (a power of two, at most 4096) for structures that
 * must sit on their own cache lines. Free with weft__free_aligned. */
void *weft__malloc_aligned(size_t size, size_t align);
void weft__free_aligned(void *ptr);

/* Fault injection for tests: the nth allocation from now (1 = the next one)
 * fails, and only that one. 0 turns injection off. */
void weft__fault_alloc_fail_nth(long nth);
/* How many allocations have been made since the process started. */
long weft__fault_alloc_count(void);

#endif
