/*
 * Tests for weft_thread (src/thread/thread.c): start/join and return values,
 * names (Python's Thread-N, the kernel's 15-byte comm), ident, join with a
 * deadline, EDEADLK, detach, weft_thread_current() for weft, main and foreign
 * threads, the stop token, misuse aborts, fork, allocation failure.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/alloc.h"
#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

#define MS 1000000LL

/* ------------------------------------------------------------- helpers */

static void *add_one(void *arg) { return (char *)arg + 1; }

static void *wait_event(void *arg) {
  ASSERT_OK(weft_event_wait(arg, WEFT_FOREVER));
  return NULL;
}

/* The kernel's name of thread tid of this process ("" if unreadable). */
static void read_comm(uint64_t tid, char *buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%llu/comm", (unsigned long long)tid);
  FILE *f = fopen(path, "re");
  buf[0] = 0;
  if (!f) return;
  if (!fgets(buf, (int)size, f)) buf[0] = 0;
  fclose(f);
  buf[strcspn(buf, "\n")] = 0;
}

/* ------------------------------------------------------- start and join */

TEST(start_join_returns_value) {
  char base[4];
  weft_thread *t = NULL;
  ASSERT_OK(weft_thread_start(&t, add_one, base, NULL));
  ASSERT_NOT_NULL(t);
  void *ret = NULL;
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &ret));
  ASSERT_PTR_EQ(ret, base + 1);
}

TEST(join_ret_may_be_null) {
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, add_one, NULL, NULL));
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
}

static void *exit_early(void *arg) {
  pthread_exit(arg);
  return NULL;
}

/* pthread_exit inside the body still ends the weft thread properly: join
 * returns, with the value given to pthread_exit. */
TEST(pthread_exit_in_body) {
  int x;
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, exit_early, &x, NULL));
  void *ret = NULL;
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), &ret));
  ASSERT_PTR_EQ(ret, &x);
}

TEST(many_threads) {
  enum { N = 64 };
  weft_thread *t[N];
  char base[N];
  for (int i = 0; i < N; i++) ASSERT_OK(weft_thread_start(&t[i], add_one, base + i, NULL));
  for (int i = 0; i < N; i++) {
    void *ret;
    ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, &ret));
    ASSERT_PTR_EQ(ret, base + i + 1);
  }
}

static void *stack_of_self(void *arg) {
  pthread_attr_t a;
  size_t size = 0;
  ASSERT_EQ(pthread_getattr_np(pthread_self(), &a), 0);
  ASSERT_EQ(pthread_attr_getstacksize(&a, &size), 0);
  pthread_attr_destroy(&a);
  *(size_t *)arg = size;
  return NULL;
}

TEST(stack_size_rounded_and_at_least_min) {
  size_t got = 0;
  weft_thread *t;
  weft_thread_opts o = {NULL, 1};
  ASSERT_OK(weft_thread_start(&t, stack_of_self, &got, &o));
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_GE(got, (size_t)PTHREAD_STACK_MIN);

  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  o.stack_size = 1024 * 1024 + 1; /* rounds up to the next page */
  ASSERT_OK(weft_thread_start(&t, stack_of_self, &got, &o));
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_GE(got, 1024 * 1024 + page);
}

static atomic_int g_ran;
static void *mark_ran(void *arg) {
  (void)arg;
  atomic_store(&g_ran, 1);
  return NULL;
}

TEST(stack_size_too_large_is_einval) {
  weft_thread *t = (weft_thread *)&g_ran; /* must stay untouched */
  weft_thread_opts o = {NULL, SIZE_MAX};
  ASSERT_ERR(weft_thread_start(&t, mark_ran, NULL, &o), WEFT_EINVAL);
  ASSERT_PTR_EQ(t, (weft_thread *)&g_ran);
  o.stack_size = SIZE_MAX / 2 + 1;
  ASSERT_ERR(weft_thread_start(&t, mark_ran, NULL, &o), WEFT_EINVAL);
  usleep(20000);
  ASSERT_EQ(atomic_load(&g_ran), 0);
}

TEST(start_out_of_memory) {
  weft_thread *t = NULL;
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_thread_start(&t, mark_ran, NULL, NULL), WEFT_ENOMEM);
  ASSERT_NULL(t);
  usleep(20000);
  ASSERT_EQ(atomic_load(&g_ran), 0);
  /* The next start works. */
  ASSERT_OK(weft_thread_start(&t, mark_ran, NULL, NULL));
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_EQ(atomic_load(&g_ran), 1);
}

/* --------------------------------------------------------------- names */

TEST(default_names_are_thread_n) {
  weft_thread *a, *b;
  ASSERT_OK(weft_thread_start(&a, add_one, NULL, NULL));
  ASSERT_OK(weft_thread_start(&b, add_one, NULL, NULL));
  unsigned na = 0, nb = 0;
  char tail;
  ASSERT_EQ(sscanf(weft_thread_name(a), "Thread-%u%c", &na, &tail), 1);
  ASSERT_EQ(sscanf(weft_thread_name(b), "Thread-%u%c", &nb, &tail), 1);
  ASSERT_GE(na, 1);
  ASSERT_EQ(nb, na + 1);
  ASSERT_OK(weft_thread_join(a, WEFT_FOREVER, NULL));
  ASSERT_OK(weft_thread_join(b, WEFT_FOREVER, NULL));
  /* opts with a NULL name also get a default name. */
  weft_thread_opts o = {NULL, 0};
  ASSERT_OK(weft_thread_start(&a, add_one, NULL, &o));
  unsigned nc = 0;
  ASSERT_EQ(sscanf(weft_thread_name(a), "Thread-%u%c", &nc, &tail), 1);
  ASSERT_EQ(nc, nb + 1);
  ASSERT_OK(weft_thread_join(a, WEFT_FOREVER, NULL));
}

TEST(name_is_copied) {
  char name[32] = "worker";
  weft_event ev;
  ASSERT_OK(weft_event_init(&ev, 0));
  weft_thread *t;
  weft_thread_opts o = {name, 0};
  ASSERT_OK(weft_thread_start(&t, wait_event, &ev, &o));
  strcpy(name, "changed");
  ASSERT_STR_EQ(weft_thread_name(t), "worker");
  weft_event_set(&ev);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  weft_event_fini(&ev);
}

typedef struct comm_probe {
  weft_event go;   /* set by main when it has read comm from outside */
  char inside[32]; /* comm as the thread itself read it */
} comm_probe;

static void *read_own_comm(void *arg) {
  comm_probe *p = arg;
  read_comm((uint64_t)gettid(), p->inside, sizeof p->inside);
  ASSERT_OK(weft_event_wait(&p->go, WEFT_FOREVER));
  return NULL;
}

TEST(long_name_kept_whole_kernel_sees_15_bytes) {
  const char *longname = "a-rather-long-thread-name-for-weft";
  comm_probe p;
  memset(&p, 0, sizeof p);
  ASSERT_OK(weft_event_init(&p.go, 0));
  weft_thread *t;
  weft_thread_opts o = {longname, 0};
  ASSERT_OK(weft_thread_start(&t, read_own_comm, &p, &o));
  ASSERT_STR_EQ(weft_thread_name(t), longname);
  /* The name is set before the body runs, so once ident is known and the
   * body has started, /proc shows it; poll briefly for the body. */
  char outside[32] = "";
  for (int i = 0; i < 500 && strcmp(outside, "a-rather-long-t") != 0; i++) {
    read_comm(weft_thread_ident(t), outside, sizeof outside);
    if (strcmp(outside, "a-rather-long-t") != 0) usleep(2000);
  }
  ASSERT_STR_EQ(outside, "a-rather-long-t");
  weft_event_set(&p.go);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_STR_EQ(p.inside, "a-rather-long-t");
  weft_event_fini(&p.go);
}

/* --------------------------------------------------------------- ident */

static void *report_tid(void *arg) {
  atomic_store((atomic_ullong *)arg, (unsigned long long)gettid());
  return NULL;
}

TEST(ident_is_the_kernel_tid) {
  for (int i = 0; i < 20; i++) {
    atomic_ullong seen = 0;
    weft_thread *t;
    ASSERT_OK(weft_thread_start(&t, report_tid, &seen, NULL));
    /* Asked at once: ident waits for the thread to record its tid. */
    uint64_t id = weft_thread_ident(t);
    ASSERT_NE(id, 0);
    ASSERT_NE(id, (uint64_t)getpid());
    /* After the end and before join, the last value is kept. */
    while (weft_thread_is_alive(t)) usleep(1000);
    ASSERT_UEQ(weft_thread_ident(t), id);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_UEQ(atomic_load(&seen), id);
  }
}

/* ---------------------------------------------------- join with deadline */

TEST(join_timeout_then_join_again) {
  weft_event ev;
  ASSERT_OK(weft_event_init(&ev, 0));
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, wait_event, &ev, NULL));
  ASSERT_ERR(weft_thread_join(t, 0, NULL), WEFT_ETIMEDOUT);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_thread_join(t, weft_deadline_in_ms(30), NULL), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  /* The handle is still valid: name, alive, join again. */
  ASSERT_NOT_NULL(weft_thread_name(t));
  ASSERT(weft_thread_is_alive(t));
  ASSERT_ERR(weft_thread_join(t, -2, NULL), WEFT_EINVAL);
  ASSERT_ERR(weft_thread_join(t, INT64_MIN, NULL), WEFT_EINVAL);
  weft_event_set(&ev);
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
  weft_event_fini(&ev);
}

static void *join_self(void *arg) {
  atomic_store((atomic_int *)arg, weft_thread_join(weft_thread_current(), WEFT_FOREVER, NULL));
  return NULL;
}

TEST(join_self_is_edeadlk) {
  atomic_int r = 1;
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, join_self, &r, NULL));
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_ERR(atomic_load(&r), WEFT_EDEADLK);
}

TEST(is_alive_until_the_body_returns) {
  weft_event ev;
  ASSERT_OK(weft_event_init(&ev, 0));
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, wait_event, &ev, NULL));
  ASSERT(weft_thread_is_alive(t));
  usleep(20000);
  ASSERT(weft_thread_is_alive(t));
  weft_event_set(&ev);
  int64_t end = weft_deadline_in_s(10);
  while (weft_thread_is_alive(t) && weft_now_ns() < end) usleep(1000);
  ASSERT(!weft_thread_is_alive(t));
  ASSERT_OK(weft_thread_join(t, 0, NULL)); /* done: deadline 0 is enough */
  weft_event_fini(&ev);
}

/* -------------------------------------------- memory: a counting allocator */

/* Wait up to 5 s for every allocation to be freed. */
static void expect_all_freed(void) {
  int64_t end = weft_deadline_in_s(5);
  while (weft_test_frees() != weft_test_allocs() && weft_now_ns() < end) usleep(1000);
  ASSERT_EQ(weft_test_frees(), weft_test_allocs());
}

TEST(join_frees_the_handle) {
  weft_test_use_counting_allocator();
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, add_one, NULL, NULL));
  ASSERT_GE(weft_test_allocs(), 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_EQ(weft_test_frees(), weft_test_allocs());
}

TEST(detach_before_end_frees_at_end) {
  weft_test_use_counting_allocator();
  weft_event ev;
  ASSERT_OK(weft_event_init(&ev, 0));
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, wait_event, &ev, NULL));
  weft_thread_detach(t);
  ASSERT_EQ(weft_test_frees(), 0); /* the thread still holds it */
  weft_event_set(&ev);
  expect_all_freed();
  weft_event_fini(&ev);
}

TEST(detach_after_end_frees_at_once) {
  weft_test_use_counting_allocator();
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, add_one, NULL, NULL));
  while (weft_thread_is_alive(t)) usleep(1000);
  usleep(20000); /* let the thread run its exit path and drop its reference */
  weft_thread_detach(t);
  expect_all_freed();
}

/* ------------------------------------------------- weft_thread_current() */

TEST(current_of_main_is_mainthread) {
  weft_thread *m = weft_thread_current();
  ASSERT_NOT_NULL(m);
  ASSERT_PTR_EQ(weft_thread_current(), m);
  ASSERT_STR_EQ(weft_thread_name(m), "MainThread");
  ASSERT_UEQ(weft_thread_ident(m), (uint64_t)getpid());
  ASSERT(weft_thread_is_alive(m));
  ASSERT(!weft_thread_stop_requested(m));
}

typedef struct self_probe {
  weft_event go;           /* main published `handle` */
  weft_thread *handle;     /* what start returned */
  weft_thread *seen;       /* what the thread's current() said */
} self_probe;

static void *who_am_i(void *arg) {
  self_probe *p = arg;
  ASSERT_OK(weft_event_wait(&p->go, WEFT_FOREVER));
  p->seen = weft_thread_current();
  ASSERT_UEQ(weft_thread_ident(p->seen), (uint64_t)gettid());
  return NULL;
}

TEST(current_of_started_thread_is_its_handle) {
  self_probe p;
  memset(&p, 0, sizeof p);
  ASSERT_OK(weft_event_init(&p.go, 0));
  ASSERT_OK(weft_thread_start(&p.handle, who_am_i, &p, NULL));
  weft_event_set(&p.go);
  weft_thread *h = p.handle;
  ASSERT_OK(weft_thread_join(h, WEFT_FOREVER, NULL));
  ASSERT_PTR_EQ(p.seen, h);
  weft_event_fini(&p.go);
}

typedef struct foreign_probe {
  char name[64];        /* the Dummy handle's name */
  uint64_t ident;       /* its ident */
  uint64_t tid;         /* gettid() */
  int same;             /* current() returned the same handle twice */
  int stop_before;      /* weft_stop_requested() before any handle */
  int sleep_rc;         /* weft_thread_sleep_until(short) result */
} foreign_probe;

static void *foreign_body(void *arg) {
  foreign_probe *p = arg;
  p->stop_before = weft_stop_requested();
  p->sleep_rc = weft_thread_sleep_until(weft_deadline_in_ms(5));
  weft_thread *me = weft_thread_current();
  snprintf(p->name, sizeof p->name, "%s", weft_thread_name(me));
  p->ident = weft_thread_ident(me);
  p->tid = (uint64_t)gettid();
  p->same = weft_thread_current() == me;
  return NULL;
}

TEST(current_of_foreign_thread_is_dummy_and_freed) {
  weft_test_use_counting_allocator();
  foreign_probe p;
  memset(&p, 0, sizeof p);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, foreign_body, &p), 0);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_EQ(strncmp(p.name, "Dummy-", 6), 0);
  ASSERT_UEQ(p.ident, p.tid);
  ASSERT(p.same);
  ASSERT_EQ(p.stop_before, 0);
  ASSERT_OK(p.sleep_rc);
  ASSERT_GE(weft_test_allocs(), 1); /* the Dummy handle was on the heap... */
  expect_all_freed();                   /* ...and the key destructor freed it */
}

/* ----------------------------------------------------------- stop token */

typedef struct sleeper {
  int64_t deadline; /* how long it would sleep */
  int rc;           /* weft_thread_sleep_until's result */
  int64_t slept;    /* ns it slept */
  int saw_stop;     /* weft_stop_requested() afterwards */
  weft_event *gate; /* if set, wait on it before sleeping */
} sleeper;

static void *sleep_body(void *arg) {
  sleeper *s = arg;
  if (s->gate) ASSERT_OK(weft_event_wait(s->gate, WEFT_FOREVER));
  int64_t t0 = weft_now_ns();
  s->rc = weft_thread_sleep_until(s->deadline);
  s->slept = weft_now_ns() - t0;
  s->saw_stop = weft_stop_requested();
  return NULL;
}

TEST(stop_token_wakes_a_sleeper_early) {
  sleeper s = {weft_deadline_in_s(20), 1, 0, 0, NULL};
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, sleep_body, &s, NULL));
  usleep(50000);
  ASSERT(!weft_thread_stop_requested(t));
  weft_thread_request_stop(t);
  weft_thread_request_stop(t); /* idempotent */
  ASSERT(weft_thread_stop_requested(t));
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
  ASSERT_ERR(s.rc, WEFT_ECANCELED);
  ASSERT_LT(s.slept, 10000 * MS);
  ASSERT_EQ(s.saw_stop, 1);
}

TEST(stop_pending_on_entry_cancels_at_once) {
  weft_event gate;
  ASSERT_OK(weft_event_init(&gate, 0));
  sleeper s = {WEFT_FOREVER, 1, 0, 0, &gate};
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, sleep_body, &s, NULL));
  weft_thread_request_stop(t);
  weft_event_set(&gate);
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), NULL));
  ASSERT_ERR(s.rc, WEFT_ECANCELED);
  weft_event_fini(&gate);
}

TEST(sleep_until_sleeps_the_full_time_without_stop) {
  sleeper s = {weft_deadline_in_ms(40), 1, 0, 0, NULL};
  weft_thread *t;
  int64_t t0 = weft_now_ns();
  ASSERT_OK(weft_thread_start(&t, sleep_body, &s, NULL));
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  ASSERT_OK(s.rc);
  ASSERT_EQ(s.saw_stop, 0);
  ASSERT_GE(weft_now_ns() - t0, 40 * MS);
  /* Deadline 0: no sleep, no stop: 0. */
  ASSERT_OK(weft_thread_sleep_until(0));
  ASSERT_ERR(weft_thread_sleep_until(-2), WEFT_EINVAL);
}

TEST(stop_token_of_main_thread) {
  ASSERT(!weft_stop_requested());
  weft_thread_request_stop(weft_thread_current());
  ASSERT(weft_stop_requested());
  ASSERT_ERR(weft_thread_sleep_until(WEFT_FOREVER), WEFT_ECANCELED);
  ASSERT_ERR(weft_thread_sleep_until(0), WEFT_ECANCELED);
}

/* -------------------------------------------------------------- misuse */

static void join_after_detach(void) {
  weft_event ev;
  weft_event_init(&ev, 0);
  weft_thread *t;
  weft_thread_start(&t, wait_event, &ev, NULL);
  weft_thread_detach(t);
  weft_thread_join(t, WEFT_FOREVER, NULL); /* t is still alive: detectable */
}

static void detach_twice(void) {
  weft_event ev;
  weft_event_init(&ev, 0);
  weft_thread *t;
  weft_thread_start(&t, wait_event, &ev, NULL);
  weft_thread_detach(t);
  weft_thread_detach(t);
}

TEST(misuse_aborts_naming_the_call) {
  weft_thread *t = NULL;
  ASSERT_ABORTS(weft_thread_join(NULL, WEFT_FOREVER, NULL), "weft_thread_join");
  ASSERT_ABORTS(weft_thread_detach(NULL), "weft_thread_detach");
  ASSERT_ABORTS(weft_thread_start(NULL, add_one, NULL, NULL), "weft_thread_start");
  ASSERT_ABORTS(weft_thread_start(&t, NULL, NULL, NULL), "weft_thread_start");
  ASSERT_ABORTS(weft_thread_name(NULL), "weft_thread_name");
  ASSERT_ABORTS(weft_thread_ident(NULL), "weft_thread_ident");
  ASSERT_ABORTS(weft_thread_is_alive(NULL), "weft_thread_is_alive");
  ASSERT_ABORTS(weft_thread_request_stop(NULL), "weft_thread_request_stop");
  ASSERT_ABORTS(weft_thread_stop_requested(NULL), "weft_thread_stop_requested");
  ASSERT_ABORTS(join_after_detach(), "weft_thread_join(): handle of 'Thread-");
  ASSERT_ABORTS(detach_twice(), "weft_thread_detach(): handle of 'Thread-");
}

TEST(join_or_detach_of_foreign_handle_aborts) {
  ASSERT_ABORTS(weft_thread_join(weft_thread_current(), WEFT_FOREVER, NULL),
                "weft_thread_join(): handle of 'MainThread', a thread weft did not start");
  ASSERT_ABORTS(weft_thread_detach(weft_thread_current()),
                "weft_thread_detach(): handle of 'MainThread'");
}

/* ---------------------------------------------------------------- fork */

TEST(fork_child_fixes_its_own_ident_and_refuses_parent_handles) {
  weft_event ev;
  ASSERT_OK(weft_event_init(&ev, 0));
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, wait_event, &ev, NULL));
  weft_thread *me = weft_thread_current();
  ASSERT_UEQ(weft_thread_ident(me), (uint64_t)getpid());

  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    /* Same handle, new tid; the child's only thread is its main thread. */
    int ok = weft_thread_current() == me && weft_thread_ident(me) == (uint64_t)getpid() &&
             weft_thread_ident(me) == (uint64_t)gettid();
    _exit(ok ? 0 : 1);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);

  /* The worker thread does not exist in a child: joining it there aborts. */
  ASSERT_ABORTS(weft_thread_join(t, WEFT_FOREVER, NULL), "belongs to the parent process");
  weft_event_set(&ev);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
  weft_event_fini(&ev);
}

static void *fork_from_thread(void *arg) {
  (void)arg;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    weft_thread *me = weft_thread_current();
    int ok = weft_thread_ident(me) == (uint64_t)gettid() && strncmp(weft_thread_name(me), "Thread-", 7) == 0;
    _exit(ok ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return (void *)(intptr_t)(WIFEXITED(st) ? WEXITSTATUS(st) : 99);
}

TEST(fork_from_a_weft_thread) {
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, fork_from_thread, NULL, NULL));
  void *ret = (void *)1;
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &ret));
  ASSERT_EQ((intptr_t)ret, 0);
}
