/*
 * Tests for the allocator hook and fault injection (src/common/alloc.c).
 *
 * The hook can be installed only before weft's first allocation, so every
 * test that installs one runs in a freshly forked child (in_child), whose
 * state is the state of a program that has not called weft yet. That
 * also checks that nothing in the library (a constructor, an atfork
 * handler) allocates before the user gets the chance to install a hook.
 * The internal weft__ entry points are called directly: every allocation
 * weft makes goes through them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "common/alloc.h"
#include "weft_test.h"

/* Run fn in a forked child; the test fails unless the child exits 0. An
 * ASSERT failing in the child aborts it, which fails the test here. */
static void in_child(void (*fn)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    fn();
    fflush(NULL);
    _exit(0);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    weft_test_fail(__FILE__, __LINE__, "child failed (status 0x%x)", st);
}

/* ------------------------------------------------ a counting allocator */

struct counts {
  atomic_long mallocs, reallocs, frees, live;
};
static struct counts g_c;
#define JUNK 0xA5

/* Fills new memory with junk so that a missing memset in calloc shows. */
static void *count_malloc(size_t size, void *ud) {
  ASSERT_PTR_EQ(ud, &g_c);
  ASSERT_GT(size, 0); /* weft asks for at least 1 byte */
  atomic_fetch_add(&g_c.mallocs, 1);
  atomic_fetch_add(&g_c.live, 1);
  void *p = malloc(size);
  if (p) memset(p, JUNK, size);
  return p;
}
static void *count_realloc(void *ptr, size_t size, void *ud) {
  ASSERT_PTR_EQ(ud, &g_c);
  /* The contract: realloc_fn only sees pointers this allocator returned. */
  ASSERT_NOT_NULL(ptr);
  ASSERT_GT(size, 0);
  atomic_fetch_add(&g_c.reallocs, 1);
  return realloc(ptr, size);
}
static void count_free(void *ptr, void *ud) {
  ASSERT_PTR_EQ(ud, &g_c);
  ASSERT_NOT_NULL(ptr); /* weft__free(NULL) must not reach the hook */
  atomic_fetch_add(&g_c.frees, 1);
  atomic_fetch_sub(&g_c.live, 1);
  free(ptr);
}
static const weft_allocator counting = {count_malloc, count_realloc, count_free, &g_c};

/* --------------------------------------------------------------- hook */

static void hook_is_used(void) {
  ASSERT_OK(weft_set_allocator(&counting));
  char *a = weft__malloc(10);
  ASSERT_NOT_NULL(a);
  ASSERT_EQ(g_c.mallocs, 1);
  memcpy(a, "abcdefghij", 10);
  a = weft__realloc(a, 100000);
  ASSERT_NOT_NULL(a);
  ASSERT_EQ(g_c.reallocs, 1);
  ASSERT_EQ(memcmp(a, "abcdefghij", 10), 0);
  char *s = weft__strdup("hello");
  ASSERT_STR_EQ(s, "hello");
  ASSERT_EQ(g_c.mallocs, 2);
  weft__free(s);
  weft__free(a);
  weft__free(NULL);
  ASSERT_EQ(g_c.frees, 2);
  ASSERT_EQ(g_c.live, 0);
}
TEST(hook_installed_first_is_used) { in_child(hook_is_used); }

static void hook_is_copied(void) {
  weft_allocator a = counting;
  ASSERT_OK(weft_set_allocator(&a));
  memset(&a, 0, sizeof a); /* the caller's struct may go away */
  weft__free(weft__malloc(1));
  ASSERT_EQ(g_c.mallocs, 1);
  ASSERT_EQ(g_c.frees, 1);
}
TEST(hook_struct_is_copied) { in_child(hook_is_copied); }

static void busy_after_use(void) {
  void *p = weft__malloc(16);
  ASSERT_NOT_NULL(p);
  ASSERT_ERR(weft_set_allocator(&counting), WEFT_EBUSY);
  ASSERT_ERR(weft_set_allocator(NULL), WEFT_EBUSY);
  /* Nothing changed: the block is freed by the allocator that made it, and
   * new blocks still come from malloc. */
  weft__free(p);
  weft__free(weft__malloc(16));
  ASSERT_EQ(g_c.mallocs, 0);
  ASSERT_EQ(g_c.frees, 0);
}
TEST(set_after_first_allocation_is_busy) { in_child(busy_after_use); }

static void busy_after_hook_used(void) {
  ASSERT_OK(weft_set_allocator(&counting));
  void *p = weft__malloc(16);
  ASSERT_ERR(weft_set_allocator(NULL), WEFT_EBUSY);
  weft__free(p); /* still goes to the counting allocator */
  ASSERT_EQ(g_c.frees, 1);
}
TEST(hook_cannot_be_removed_once_used) { in_child(busy_after_hook_used); }

static void busy_after_realloc(void) {
  /* Any of the entry points counts as "weft has allocated". */
  void *p = weft__realloc(NULL, 8);
  ASSERT_ERR(weft_set_allocator(&counting), WEFT_EBUSY);
  weft__free(p);
}
TEST(realloc_marks_allocator_used) { in_child(busy_after_realloc); }

static void replace_before_use(void) {
  /* Until weft allocates, the hook may be set, replaced and reset. */
  ASSERT_OK(weft_set_allocator(&counting));
  ASSERT_OK(weft_set_allocator(NULL));
  ASSERT_OK(weft_set_allocator(&counting));
  weft__free(weft__malloc(4));
  ASSERT_EQ(g_c.mallocs, 1);
}
TEST(hook_may_be_replaced_before_use) { in_child(replace_before_use); }

static void reset_to_default(void) {
  ASSERT_OK(weft_set_allocator(&counting));
  ASSERT_OK(weft_set_allocator(NULL));
  weft__free(weft__malloc(4));
  ASSERT_EQ(g_c.mallocs, 0);
  ASSERT_EQ(g_c.frees, 0);
}
TEST(null_restores_the_default) { in_child(reset_to_default); }

static void null_fn_is_einval(void) {
  weft_allocator a = counting;
  a.malloc_fn = NULL;
  ASSERT_ERR(weft_set_allocator(&a), WEFT_EINVAL);
  a = counting;
  a.realloc_fn = NULL;
  ASSERT_ERR(weft_set_allocator(&a), WEFT_EINVAL);
  a = counting;
  a.free_fn = NULL;
  ASSERT_ERR(weft_set_allocator(&a), WEFT_EINVAL);
  /* A rejected call changes nothing: the default is still in place and
   * weft is still unused, so a good hook is accepted now. */
  ASSERT_OK(weft_set_allocator(&counting));
  weft__free(weft__malloc(1));
  ASSERT_EQ(g_c.mallocs, 1);
}
TEST(null_function_pointer_is_einval) { in_child(null_fn_is_einval); }

static void realloc_null_goes_to_malloc(void) {
  ASSERT_OK(weft_set_allocator(&counting));
  char *p = weft__realloc(NULL, 32); /* count_realloc asserts on NULL */
  ASSERT_NOT_NULL(p);
  ASSERT_EQ(g_c.mallocs, 1);
  ASSERT_EQ(g_c.reallocs, 0);
  weft__free(p);
}
TEST(realloc_of_null_uses_malloc_fn) { in_child(realloc_null_goes_to_malloc); }

static void zero_sizes(void) {
  ASSERT_OK(weft_set_allocator(&counting)); /* count_malloc asserts size > 0 */
  void *a = weft__malloc(0);
  void *b = weft__malloc(0);
  ASSERT_NOT_NULL(a);
  ASSERT_NOT_NULL(b);
  ASSERT(a != b);
  void *c = weft__calloc(0, 8);
  void *d = weft__calloc(8, 0);
  ASSERT_NOT_NULL(c);
  ASSERT_NOT_NULL(d);
  a = weft__realloc(a, 0);
  ASSERT_NOT_NULL(a);
  weft__free(a);
  weft__free(b);
  weft__free(c);
  weft__free(d);
  ASSERT_EQ(g_c.live, 0);
}
TEST(zero_sizes_give_unique_pointers) { in_child(zero_sizes); }

/* ------------------------------------------------------------- calloc */

static void calloc_zeroes(void) {
  ASSERT_OK(weft_set_allocator(&counting)); /* hands out junk-filled memory */
  unsigned char *p = weft__calloc(100, 37);
  ASSERT_NOT_NULL(p);
  for (size_t i = 0; i < 3700; i++) ASSERT_EQ(p[i], 0);
  weft__free(p);
}
TEST(calloc_zeroes_memory_from_the_hook) { in_child(calloc_zeroes); }

TEST(calloc_overflow_returns_null) {
  long before = weft__fault_alloc_count();
  ASSERT_NULL(weft__calloc(SIZE_MAX / 2 + 1, 2));
  ASSERT_NULL(weft__calloc(2, SIZE_MAX / 2 + 1));
  ASSERT_NULL(weft__calloc(SIZE_MAX, SIZE_MAX));
  ASSERT_NULL(weft__calloc((size_t)1 << 33, (size_t)1 << 33));
  /* Refused before any allocator call. */
  ASSERT_EQ(weft__fault_alloc_count(), before);
}

/* ------------------------------------------------------------ aligned */

static void aligned_blocks(void) {
  ASSERT_OK(weft_set_allocator(&counting));
  static const size_t aligns[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096};
  static const size_t sizes[] = {0, 1, 7, 64, 1000, 65536};
  long n = 0;
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      unsigned char *p = weft__malloc_aligned(sizes[j], aligns[i]);
      ASSERT_NOT_NULL(p);
      ASSERT_EQ((uintptr_t)p % aligns[i], 0);
      ASSERT_EQ((uintptr_t)p % sizeof(void *), 0);
      /* The whole block is usable (ASan catches an overrun here). */
      memset(p, 0x5A, sizes[j]);
      n++;
      ASSERT_EQ(g_c.mallocs, n); /* one hook allocation per block */
      weft__free_aligned(p);
      ASSERT_EQ(g_c.frees, n); /* and its free returns that same block */
    }
  }
  weft__free_aligned(NULL);
  ASSERT_EQ(g_c.live, 0);
}
TEST(aligned_alloc_is_aligned) { in_child(aligned_blocks); }

TEST(aligned_alloc_overflow_returns_null) {
  ASSERT_NULL(weft__malloc_aligned(SIZE_MAX, 64));
  ASSERT_NULL(weft__malloc_aligned(SIZE_MAX - 64, 64));
}

TEST(aligned_alloc_rejects_bad_alignment) {
  /* An alignment that is not a power of two is weft's own bug: it must
   * abort loudly rather than hand out misaligned memory. */
  ASSERT_ABORTS(weft__malloc_aligned(16, 48), "internal assertion failed");
  ASSERT_ABORTS(weft__malloc_aligned(16, 8192), "internal assertion failed");
  ASSERT_ABORTS(weft__malloc_aligned(16, 0), "internal assertion failed");
}

/* ---------------------------------------------------- fault injection */

TEST(fail_nth_fails_exactly_that_one) {
  void *p[6];
  weft__fault_alloc_fail_nth(3);
  for (int i = 0; i < 6; i++) p[i] = weft__malloc(8);
  ASSERT_NOT_NULL(p[0]);
  ASSERT_NOT_NULL(p[1]);
  ASSERT_NULL(p[2]);
  ASSERT_NOT_NULL(p[3]);
  ASSERT_NOT_NULL(p[4]);
  ASSERT_NOT_NULL(p[5]);
  for (int i = 0; i < 6; i++) weft__free(p[i]);
}

TEST(fail_nth_one_is_the_next) {
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__malloc(8));
  void *q = weft__malloc(8);
  ASSERT_NOT_NULL(q); /* one-shot */
  weft__free(q);
}

TEST(fail_nth_zero_or_negative_disarms) {
  weft__fault_alloc_fail_nth(2);
  weft__fault_alloc_fail_nth(0);
  for (int i = 0; i < 5; i++) {
    void *p = weft__malloc(8);
    ASSERT_NOT_NULL(p);
    weft__free(p);
  }
  weft__fault_alloc_fail_nth(-3);
  void *p = weft__malloc(8);
  ASSERT_NOT_NULL(p);
  weft__free(p);
}

TEST(fail_nth_covers_every_entry_point) {
  char *keep = weft__malloc(16);
  ASSERT_NOT_NULL(keep);
  memcpy(keep, "still here", 11);

  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__calloc(4, 4));
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__strdup("x"));
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__malloc_aligned(64, 64));
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__realloc(NULL, 8));
  weft__fault_alloc_fail_nth(1);
  /* A failed realloc leaves the old block valid and unchanged. */
  ASSERT_NULL(weft__realloc(keep, 1 << 20));
  ASSERT_STR_EQ(keep, "still here");
  weft__free(keep);
}

TEST(alloc_count_counts_attempts) {
  long c0 = weft__fault_alloc_count();
  void *a = weft__malloc(1);
  void *b = weft__calloc(2, 2);
  void *c = weft__malloc_aligned(8, 64);
  char *d = weft__strdup("x");
  ASSERT_EQ(weft__fault_alloc_count(), c0 + 4);
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft__malloc(1));
  ASSERT_EQ(weft__fault_alloc_count(), c0 + 5); /* injected failures count */
  weft__free(a);
  weft__free(b);
  weft__free_aligned(c);
  weft__free(d);
  ASSERT_EQ(weft__fault_alloc_count(), c0 + 5); /* frees do not */
}

/* The pattern the fault-injection suite uses on a real call: count how many
 * allocations the operation makes, then fail each in turn and check that
 * the operation fails cleanly every time. Here the "operation" is a small
 * function of three allocations that must unwind on any failure. */
static int three_allocs(void **out) {
  void *a = weft__malloc(8), *b = NULL, *c = NULL;
  if (!a) goto fail;
  if (!(b = weft__calloc(1, 8))) goto fail;
  if (!(c = weft__strdup("abc"))) goto fail;
  weft__free(a);
  weft__free(b);
  *out = c;
  return 0;
fail:
  weft__free(a);
  weft__free(b);
  return WEFT_ENOMEM;
}

TEST(fail_each_allocation_in_turn) {
  void *r;
  long c0 = weft__fault_alloc_count();
  ASSERT_OK(three_allocs(&r));
  weft__free(r);
  long n = weft__fault_alloc_count() - c0;
  ASSERT_EQ(n, 3);
  for (long i = 1; i <= n; i++) {
    weft__fault_alloc_fail_nth(i);
    ASSERT_ERR(three_allocs(&r), WEFT_ENOMEM);
  }
  weft__fault_alloc_fail_nth(0);
  ASSERT_OK(three_allocs(&r));
  weft__free(r);
}

enum { THREADS = 4, PER_THREAD = 2000 };
static atomic_int g_nulls;

static void *alloc_loop(void *arg) {
  (void)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    void *p = weft__malloc(16);
    if (!p)
      atomic_fetch_add(&g_nulls, 1);
    else
      weft__free(p);
  }
  return NULL;
}

TEST(fail_nth_is_exact_under_concurrency) {
  /* Many threads race through the countdown: exactly one allocation may
   * fail, not zero (a lost decrement) and not two (a double hit). */
  pthread_t th[THREADS];
  weft__fault_alloc_fail_nth(THREADS * PER_THREAD / 2);
  for (int i = 0; i < THREADS; i++) ASSERT_EQ(pthread_create(&th[i], NULL, alloc_loop, NULL), 0);
  for (int i = 0; i < THREADS; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  ASSERT_EQ(atomic_load(&g_nulls), 1);
}
