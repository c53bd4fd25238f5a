/*
 * Tasks: the name registry (including names in hostile memory) and the
 * task context, driven directly through the internal interface.
 */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common/alloc.h"
#include "executor/executor_impl.h"
#include "future/future_impl.h"
#include "weft_test.h"

WEFT_TEST_TIMEOUT(20)

static int fa(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}
static int fb(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 1;
}

TEST(register_and_find) {
  weft_task a = {"math.square", fa};
  ASSERT_OK(weft_task_register(&a));
  ASSERT_OK(weft_task_register(&a)); /* again, same fn: fine */
  weft_task b = {"math.square", fb};
  ASSERT_ERR(weft_task_register(&b), WEFT_EEXIST);
  const weft_task *t = NULL;
  ASSERT_OK(weft_task_find("math.square", &t));
  ASSERT_PTR_EQ((void *)(uintptr_t)t->fn, (void *)(uintptr_t)fa);
  ASSERT_STR_EQ(t->name, "math.square");
  /* The name was copied: the caller's buffer may change. */
  char buf[32] = "tmp:name-1";
  weft_task c = {buf, fb};
  ASSERT_OK(weft_task_register(&c));
  strcpy(buf, "zzz");
  ASSERT_OK(weft_task_find("tmp:name-1", &t));
  ASSERT_STR_EQ(t->name, "tmp:name-1");
  ASSERT_ERR(weft_task_find("zzz", &t), WEFT_ENOTASK);
  ASSERT_ERR(weft_task_find("math.squar", &t), WEFT_ENOTASK);
  ASSERT_ERR(weft_task_find("math.square2", &t), WEFT_ENOTASK);
  /* Names differing only in the last character. */
  weft_task d1 = {"x_1", fa}, d2 = {"x_2", fb};
  ASSERT_OK(weft_task_register(&d1));
  ASSERT_OK(weft_task_register(&d2));
  ASSERT_OK(weft_task_find("x_2", &t));
  ASSERT_PTR_EQ((void *)(uintptr_t)t->fn, (void *)(uintptr_t)fb);
}

TEST(names_validated) {
  const char *bad[] = {"", "a b", "tab\t", "slash/x", "caf\xc3\xa9", "new\nline", "q?", "*",
                       "0123456789012345678901234567890123456789012345678901234567890123"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    weft_task t = {bad[i], fa};
    ASSERT_ERR(weft_task_register(&t), WEFT_EINVAL);
    const weft_task *f;
    ASSERT_ERR(weft_task_find(bad[i], &f), WEFT_EINVAL);
  }
  weft_task null_name = {NULL, fa};
  ASSERT_ERR(weft_task_register(&null_name), WEFT_EINVAL);
  const weft_task *f;
  ASSERT_ERR(weft_task_find(NULL, &f), WEFT_EINVAL);
  weft_task no_fn = {"ok", NULL};
  ASSERT_ERR(weft_task_register(&no_fn), WEFT_EINVAL);
  /* 63 characters is the longest name. */
  const char *longest = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
  ASSERT_EQ(strlen(longest), 63);
  weft_task l = {longest, fa};
  ASSERT_OK(weft_task_register(&l));
  ASSERT_OK(weft_task_find(longest, &f));
  ASSERT_EQ(weft__task_name_check("A.b:c-d_0"), 9);
  ASSERT_EQ(weft__task_name_check("a..b"), 4);
}

/* A name at the very end of readable memory, without a terminating NUL
 * inside the first 64 bytes: the check must not read past 64 bytes. */
TEST(names_in_hostile_memory) {
  long page = sysconf(_SC_PAGESIZE);
  unsigned char *m = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT(m != MAP_FAILED);
  ASSERT_OK(mprotect(m + page, (size_t)page, PROT_NONE));
  const weft_task *f;
  /* 64 valid characters and then the guard page: too long, no crash. */
  char *p = (char *)m + page - 64;
  memset(p, 'a', 64);
  ASSERT_ERR(weft_task_find(p, &f), WEFT_EINVAL);
  weft_task t = {p, fa};
  ASSERT_ERR(weft_task_register(&t), WEFT_EINVAL);
  /* 63 characters and the NUL as the last readable byte: valid. */
  p[63] = 0;
  ASSERT_ERR(weft_task_find(p, &f), WEFT_ENOTASK);
  ASSERT_OK(weft_task_register(&t));
  ASSERT_OK(weft_task_find(p, &f));
  /* Binary junk of every byte value (no NUL until the guard). */
  for (int i = 0; i < 64; i++) p[i] = (char)(0x80 + i);
  ASSERT_ERR(weft_task_find(p, &f), WEFT_EINVAL);
  for (int b = 1; b < 256; b++) {
    p[0] = (char)b;
    (void)weft__task_name_check(p);
  }
  /* A bad byte stops the check at once: here it is the last readable one. */
  char *q = (char *)m + page - 1;
  *q = '!';
  ASSERT_ERR(weft_task_find(q, &f), WEFT_EINVAL);
  munmap(m, 2 * (size_t)page);
}

TEST(many_names) {
  char name[32];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "bulk.%d", i);
    weft_task t = {name, (i & 1) ? fa : fb};
    ASSERT_OK(weft_task_register(&t));
  }
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "bulk.%d", i);
    const weft_task *t;
    ASSERT_OK(weft_task_find(name, &t));
    ASSERT_PTR_EQ((void *)(uintptr_t)t->fn, (void *)(uintptr_t)((i & 1) ? fa : fb));
  }
}

TEST(register_misuse) {
  ASSERT_ABORTS(weft_task_register(NULL), "weft_task_register");
  ASSERT_ABORTS(weft_task_find("x", NULL), "weft_task_find");
}

/* ---------------------------------------------------------- the context */

TEST(ctx_scratch) {
  weft__scratch s = {0};
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  ASSERT_OK(weft_task_return(&ctx, "hello", 5));
  ASSERT_EQ(memcmp(s.p, "hello", 5), 0);
  unsigned char *b = weft_task_return_buf(&ctx, 100000);
  ASSERT_NOT_NULL(b);
  memset(b, 7, 100000);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 5), WEFT_ETASKFAILED);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, WEFT_EIO), WEFT_EIO);
  weft__task_ctx_fini(&ctx);
  /* A big scratch shrinks back on the next small use. */
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  ASSERT_NOT_NULL(weft_task_return_buf(&ctx, 10));
  ASSERT_LE(s.cap, 64 * 1024);
  weft__task_ctx_fini(&ctx);
  weft__scratch_fini(&s);
}

/* An empty result on a scratch buffer not yet allocated (a fresh worker's
 * first discarded result) is a result, not WEFT_ENOMEM. */
TEST(ctx_scratch_empty_first) {
  weft__scratch s = {0};
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  ASSERT_OK(weft_task_return(&ctx, NULL, 0));
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  weft__task_ctx_fini(&ctx);
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  ASSERT_NOT_NULL(weft_task_return_buf(&ctx, 0));
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  weft__task_ctx_fini(&ctx);
  weft__scratch_fini(&s);
}

TEST(ctx_slot) {
  weft__scratch s = {0};
  weft_task_ctx ctx;
  int64_t slot = 0;
  int64_t v = 77;
  weft__task_ctx_init(&ctx, WEFT__SINK_SLOT, NULL, &slot, sizeof slot, &s);
  ASSERT_OK(weft_task_return(&ctx, &v, sizeof v));
  ASSERT_EQ(slot, 77);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  /* The right size through return_buf: the slot itself. */
  ASSERT_PTR_EQ(weft_task_return_buf(&ctx, sizeof slot), &slot);
  /* A wrong size never touches the slot and is WEFT_EMSGSIZE. */
  slot = 5;
  ASSERT_OK(weft_task_return(&ctx, "abc", 3));
  ASSERT_EQ(slot, 5);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), WEFT_EMSGSIZE);
  /* ... unless a right-sized result replaces it. */
  ASSERT_OK(weft_task_return(&ctx, &v, sizeof v));
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  weft__task_ctx_fini(&ctx);
  /* No result at all: fine for out_size 0, EMSGSIZE otherwise. */
  weft__task_ctx_init(&ctx, WEFT__SINK_SLOT, NULL, NULL, 0, &s);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  ASSERT_OK(weft_task_return(&ctx, NULL, 0));
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  weft__task_ctx_fini(&ctx);
  weft__task_ctx_init(&ctx, WEFT__SINK_SLOT, NULL, &slot, sizeof slot, &s);
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), WEFT_EMSGSIZE);
  weft__task_ctx_fini(&ctx);
  weft__scratch_fini(&s);
}

TEST(ctx_future) {
  weft_future *f;
  ASSERT_OK(weft__future_alloc(&f));
  ASSERT_OK(weft_future_set_running(f));
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_FUTURE, f, NULL, 0, NULL);
  /* Replace a result with a slice of itself (aliasing). */
  unsigned char *b = weft_task_return_buf(&ctx, 200);
  for (int i = 0; i < 200; i++) b[i] = (unsigned char)i;
  ASSERT_OK(weft_task_return(&ctx, b + 10, 20));
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  weft__future_finish_done(f);
  weft__task_ctx_fini(&ctx);
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_EQ(len, 20);
  for (int i = 0; i < 20; i++) ASSERT_EQ(((const unsigned char *)d)[i], 10 + i);
  weft_future_release(f);
}

TEST(ctx_fail) {
  weft__scratch s = {0};
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  ASSERT_EQ(weft_task_fail(&ctx, WEFT_EINVAL, "x=%d y=%s", 3, "no"), WEFT_EINVAL);
  ASSERT_STR_EQ(weft__task_ctx_message(&ctx), "x=3 y=no");
  /* A second call replaces the first; a long message is kept whole. */
  char longmsg[1000];
  memset(longmsg, 'm', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = 0;
  ASSERT_EQ(weft_task_fail(&ctx, WEFT_ERANGE, "%s", longmsg), WEFT_ERANGE);
  ASSERT_EQ(strlen(weft__task_ctx_message(&ctx)), 999);
  /* A non-negative code still means failure. */
  ASSERT_EQ(weft_task_fail(&ctx, 0, "zero"), WEFT_ETASKFAILED);
  ASSERT_EQ(weft_task_fail(&ctx, 22, NULL), WEFT_ETASKFAILED);
  ASSERT_NULL(weft__task_ctx_message(&ctx));
  weft__task_ctx_fini(&ctx);
  weft__scratch_fini(&s);
}

TEST(ctx_out_of_memory) {
  weft__scratch s = {0};
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  weft__fault_alloc_fail_nth(1);
  ASSERT_NULL(weft_task_return_buf(&ctx, 1000));
  /* A task that ignores the failure and returns 0 still fails. */
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_task_return(&ctx, "abcdef", 6), WEFT_ENOMEM);
  ASSERT_OK(weft_task_return(&ctx, "abcdef", 6));
  ASSERT_EQ(weft__task_ctx_outcome(&ctx, 0), 0);
  /* No memory for a long message: the truncated inline text stands. */
  char longmsg[500];
  memset(longmsg, 'q', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = 0;
  weft__fault_alloc_fail_nth(1);
  ASSERT_EQ(weft_task_fail(&ctx, WEFT_EIO, "%s", longmsg), WEFT_EIO);
  ASSERT_EQ(strlen(weft__task_ctx_message(&ctx)), WEFT__MSG_INLINE - 1);
  weft__task_ctx_fini(&ctx);
  weft__scratch_fini(&s);
}

TEST(ctx_misuse) {
  ASSERT_ABORTS(weft_task_return(NULL, "x", 1), "weft_task_return");
  weft__scratch s = {0};
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, &s);
  ASSERT_ABORTS(weft_task_return(&ctx, NULL, 4), "weft_task_return");
  weft__task_ctx_fini(&ctx);
}

/* Out of memory in the executor's own paths: submit, submit_many and map
 * fail whole, with nothing left behind (checked by ASan's leak check). */
static int t_noop(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}

TEST(executor_out_of_memory) {
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 2};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &o));
  weft_task t = {NULL, t_noop};
  int64_t args[100] = {0};
  weft_future *fs[100];
  for (long nth = 1; nth <= 6; nth++) {
    weft__fault_alloc_fail_nth(nth);
    int r = weft_executor_submit_many(ex, &t, args, sizeof args[0], 100, fs);
    weft__fault_alloc_fail_nth(0);
    if (r == 0) {
      ASSERT_OK(weft_wait(fs, 100, WEFT_ALL_COMPLETED, weft_deadline_in_ms(10000), NULL));
      for (int i = 0; i < 100; i++) weft_future_release(fs[i]);
    } else {
      ASSERT_ERR(r, WEFT_ENOMEM);
    }
    weft_future *f;
    char big[100] = {0};
    weft__fault_alloc_fail_nth(nth);
    r = weft_executor_submit(ex, &t, big, sizeof big, &f);
    weft__fault_alloc_fail_nth(0);
    if (r == 0) {
      ASSERT_OK(weft_future_wait(f, weft_deadline_in_ms(10000)));
      weft_future_release(f);
    } else {
      ASSERT_ERR(r, WEFT_ENOMEM);
    }
    weft__fault_alloc_fail_nth(nth);
    r = weft_executor_map(ex, &t, args, sizeof args[0], NULL, 0, 100, NULL);
    weft__fault_alloc_fail_nth(0);
    ASSERT(r == 0 || r == WEFT_ENOMEM);
  }
  weft_executor_destroy(ex);
}
