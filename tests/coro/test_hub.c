/* The hub: spawn, join, cancel, yield, sleep, groups, timers, the dump,
 * deadlock and stack-overflow reports, one hub per thread. */
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

static int ret_arg(void *arg) { return (int)(intptr_t)arg; }

TEST(spawn_join_status) {
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, ret_arg, (void *)(intptr_t)42, NULL));
  int st = -1;
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, &st));
  ASSERT_EQ(st, 42);
  /* Joining again gives the same status at once. */
  st = -1;
  ASSERT_OK(weft_coro_join(c, 0, &st));
  ASSERT_EQ(st, 42);
  weft_coro_release(c);
  ASSERT_EQ(weft_hub_count(), 0);
}

/* The child runs at once, up to its first switch point. */
static int set_flag(void *arg) {
  *(int *)arg = 1;
  weft_coro_yield();
  *(int *)arg = 2;
  return 0;
}

TEST(spawn_runs_child_first) {
  int flag = 0;
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, set_flag, &flag, NULL));
  ASSERT_EQ(flag, 1);
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
  ASSERT_EQ(flag, 2);
  weft_coro_release(c);
}

/* Yield order is FIFO: three coroutines interleave round-robin. */
static char trace[64];
static size_t ntrace;
static int tracer(void *arg) {
  for (int i = 0; i < 3; i++) {
    trace[ntrace++] = *(char *)arg;
    weft_coro_yield();
  }
  return 0;
}

TEST(yield_round_robin) {
  static char names[] = "abc";
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g};
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_coro_spawn(NULL, tracer, &names[i], &o));
  ASSERT_OK(weft_coro_group_join(g, WEFT_FOREVER));
  trace[ntrace] = 0;
  ASSERT_STR_EQ(trace, "abacbacbc");
  weft_coro_group_destroy(g);
}

static int sleeper(void *arg) {
  int64_t ns = *(int64_t *)arg;
  return weft_coro_sleep_until(weft_deadline_in_ns(ns));
}

TEST(sleeps_overlap) {
  /* 20 coroutines sleeping 200 ms each take about 200 ms, not 4 s. */
  int64_t d = 200 * 1000000LL;
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g};
  int64_t t0 = weft_now_ns();
  for (int i = 0; i < 20; i++) ASSERT_OK(weft_coro_spawn(NULL, sleeper, &d, &o));
  ASSERT_EQ(weft_coro_group_count(g), 20);
  ASSERT_OK(weft_coro_group_join(g, WEFT_FOREVER));
  int64_t el = weft_now_ns() - t0;
  ASSERT_GE(el, d);
  ASSERT_LT(el, 2 * 1000000000LL);
  weft_coro_group_destroy(g);
}

/* Timers fire in deadline order whatever the spawn order, with no range
 * limit (a deadline of INT64_MAX is fine). */
static int64_t fired[8];
static size_t nfired;
static int timed(void *arg) {
  int64_t at = *(int64_t *)arg;
  int e = weft_coro_sleep_until(at);
  if (e == 0) fired[nfired++] = at;
  return e;
}

TEST(timer_order_and_range) {
  /* Far enough ahead that all are armed before the first is due, even on
   * a loaded machine under qemu. */
  int64_t base = weft_now_ns() + 300000000;
  int64_t at[5] = {base + 240000000, base, base + 160000000, base + 80000000, INT64_MAX};
  weft_coro *c[5];
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_coro_spawn(&c[i], timed, &at[i], NULL));
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_coro_join(c[i], WEFT_FOREVER, NULL));
  ASSERT_EQ(nfired, 4);
  for (size_t i = 1; i < nfired; i++) ASSERT_LT(fired[i - 1], fired[i]);
  /* The far one is still asleep; cancel ends it. */
  ASSERT_ERR(weft_coro_join(c[4], weft_deadline_in_ms(20), NULL), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_coro_cancel(c[4]));
  int st = 0;
  ASSERT_OK(weft_coro_join(c[4], WEFT_FOREVER, &st));
  ASSERT_EQ(st, WEFT_ECANCELED);
  for (int i = 0; i < 5; i++) weft_coro_release(c[i]);
}

TEST(join_deadline) {
  int64_t d = 10LL * 1000000000;
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, sleeper, &d, NULL));
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_coro_join(c, weft_deadline_in_ms(50), NULL), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 50 * 1000000LL);
  ASSERT_ERR(weft_coro_join(c, 0, NULL), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_coro_join(c, -5, NULL), WEFT_EINVAL);
  ASSERT_ERR(weft_coro_join(weft_coro_self(), WEFT_FOREVER, NULL), WEFT_EDEADLK);
  ASSERT_OK(weft_coro_cancel(c));
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
  ASSERT_ERR(weft_coro_cancel(c), WEFT_EALREADY);
  weft_coro_release(c);
}

/* A cancelled coroutine's blocking calls keep returning WEFT_ECANCELED, so
 * its cleanup cannot get stuck; non-blocking steps still work. */
static int cancel_cleanup(void *arg) {
  int *log = arg;
  log[0] = weft_coro_sleep_until(WEFT_FOREVER);
  log[1] = weft_coro_sleep_until(weft_deadline_in_ms(1000));
  log[2] = weft_coro_cancelled();
  log[3] = weft_coro_yield();
  return 7;
}

TEST(cancel_is_sticky) {
  int log[4] = {1, 1, 0, 1};
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, cancel_cleanup, log, NULL));
  ASSERT_OK(weft_coro_cancel(c));
  int st;
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 7);
  ASSERT_EQ(log[0], WEFT_ECANCELED);
  ASSERT_EQ(log[1], WEFT_ECANCELED);
  ASSERT_EQ(log[2], 1);
  ASSERT_EQ(log[3], WEFT_ECANCELED);
  weft_coro_release(c);
}

static int group_member(void *arg) {
  (void)arg;
  int e = weft_coro_sleep_until(WEFT_FOREVER);
  return e == WEFT_ECANCELED ? 1 : 0;
}

TEST(group_cancel_and_destroy) {
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g, .name = "member"};
  weft_coro *keep;
  ASSERT_OK(weft_coro_spawn(&keep, group_member, NULL, &o));
  for (int i = 0; i < 99; i++) ASSERT_OK(weft_coro_spawn(NULL, group_member, NULL, &o));
  ASSERT_EQ(weft_coro_group_count(g), 100);
  ASSERT_EQ(weft_hub_count(), 100);
  ASSERT_ERR(weft_coro_group_join(g, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  weft_coro_group_cancel(g);
  ASSERT_OK(weft_coro_group_join(g, weft_deadline_in_s(5)));
  ASSERT_EQ(weft_coro_group_count(g), 0);
  int st;
  ASSERT_OK(weft_coro_join(keep, 0, &st));
  ASSERT_EQ(st, 1);
  weft_coro_release(keep);
  /* destroy cancels and waits for members still running. */
  for (int i = 0; i < 10; i++) ASSERT_OK(weft_coro_spawn(NULL, group_member, NULL, &o));
  weft_coro_group_destroy(g);
  ASSERT_EQ(weft_hub_count(), 0);
}

static int hub_waited;
static int short_sleep(void *arg) {
  (void)arg;
  weft_coro_sleep_until(weft_deadline_in_ms(30));
  hub_waited++;
  return 0;
}

TEST(hub_wait_all) {
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_coro_spawn(NULL, short_sleep, NULL, NULL));
  ASSERT_EQ(weft_hub_count(), 5);
  ASSERT_OK(weft_hub_wait(weft_deadline_in_s(5)));
  ASSERT_EQ(hub_waited, 5);
  ASSERT_EQ(weft_hub_count(), 0);
  ASSERT_OK(weft_hub_wait(0));
}

/* Many coroutines alive at once, each with its own stack (and its pages
 * in use), released together. */
static weft_coro_event *gate;
static int deep(void *arg) {
  volatile char buf[8192];
  buf[0] = (char)(intptr_t)arg;
  int e = weft_coro_event_wait(gate, WEFT_FOREVER);
  buf[sizeof buf - 1] = buf[0];
  return e ? e : buf[sizeof buf - 1];
}

TEST(many_alive) {
  enum { N = 2000 };
  ASSERT_OK(weft_coro_event_create(&gate));
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g, .stack_size = 32 * 1024};
  for (int i = 0; i < N; i++) ASSERT_OK(weft_coro_spawn(NULL, deep, (void *)(intptr_t)i, &o));
  ASSERT_EQ(weft_hub_count(), N);
  weft_coro_event_set(gate);
  ASSERT_OK(weft_coro_group_join(g, WEFT_FOREVER));
  ASSERT_EQ(weft_hub_count(), 0);
  weft_coro_group_destroy(g);
  weft_coro_event_destroy(gate);
}

/* Spawning in a loop with immediate start: short coroutines finish as the
 * loop goes, so few are alive at once. */
static int yield_once(void *arg) {
  (void)arg;
  return weft_coro_yield();
}

TEST(spawn_loop_stays_small) {
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g};
  size_t most = 0;
  for (int i = 0; i < 5000; i++) {
    ASSERT_OK(weft_coro_spawn(NULL, yield_once, NULL, &o));
    if (weft_hub_count() > most) most = weft_hub_count();
  }
  ASSERT_OK(weft_coro_group_join(g, WEFT_FOREVER));
  ASSERT_LE(most, 4);
  weft_coro_group_destroy(g);
}

/* Each thread has its own hub; handles of one are misuse on another. */
static void *thread_hub(void *arg) {
  int *out = arg;
  out[0] = weft_hub_active();
  weft_coro *c;
  if (weft_coro_spawn(&c, ret_arg, (void *)(intptr_t)5, NULL) != 0) return NULL;
  weft_coro_join(c, WEFT_FOREVER, &out[1]);
  weft_coro_release(c);
  out[2] = weft_hub_active();
  return NULL;
}

TEST(hub_per_thread) {
  int out[3] = {-1, -1, -1};
  weft_coro_self();
  ASSERT(weft_hub_active());
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_hub, out), 0);
  pthread_join(t, NULL);
  ASSERT_EQ(out[0], 0);
  ASSERT_EQ(out[1], 5);
  ASSERT_EQ(out[2], 1);
}

/* A thread that keeps a coroutine of its own hub alive until told. */
static weft_coro *other_coro;
static pthread_barrier_t other_bar;
static void *other_hub(void *arg) {
  (void)arg;
  int64_t d = 1000000000;
  weft_coro_spawn(&other_coro, sleeper, &d, NULL);
  pthread_barrier_wait(&other_bar); /* handle published */
  pthread_barrier_wait(&other_bar); /* test done */
  weft_coro_cancel(other_coro);
  weft_coro_join(other_coro, WEFT_FOREVER, NULL);
  weft_coro_release(other_coro);
  return NULL;
}

TEST(misuse_other_thread) {
  pthread_barrier_init(&other_bar, NULL, 2);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, other_hub, NULL), 0);
  pthread_barrier_wait(&other_bar);
  ASSERT_ABORTS(weft_coro_join(other_coro, WEFT_FOREVER, NULL),
                "weft_coro_join(): object belongs to another thread's hub");
  ASSERT_ABORTS(weft_coro_cancel(other_coro),
                "weft_coro_cancel(): object belongs to another thread's hub");
  ASSERT_ABORTS(weft_coro_spawn(NULL, NULL, NULL, NULL), "weft_coro_spawn_at(): argument 'fn'");
  pthread_barrier_wait(&other_bar);
  pthread_join(t, NULL);
}

static int dump_target(void *arg) {
  /* Not a tail call: dump_target keeps a frame below the sleep. */
  volatile int e = weft_coro_sleep_until(weft_deadline_in_s(*(int *)arg));
  return e;
}

TEST(dump_lists_everyone) {
  int secs = 100;
  weft_coro_opts o = {.name = "napper"};
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, dump_target, &secs, &o));
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ASSERT_EQ(weft_hub_dump(f), 2);
  fclose(f);
  ASSERT(strstr(text, "\"main\" running") != NULL);
  ASSERT(strstr(text, "\"napper\" blocked on sleep") != NULL);
  ASSERT(strstr(text, "test_hub.c:") != NULL);
  ASSERT(strstr(text, "s left") != NULL);
  /* The napper's backtrace, taken on its own suspended stack, passes
   * through dump_target: one of its return addresses lies inside it. */
  const char *nap = strstr(text, "\"napper\"");
  bool found = false;
  for (const char *q = strstr(nap, "      #"); q && !found; q = strstr(q + 1, "      #")) {
    unsigned long long a = 0;
    if (sscanf(q, " #%*d 0x%llx", &a) == 1 && a > (uintptr_t)dump_target &&
        a < (uintptr_t)dump_target + 512)
      found = true;
  }
  if (!found) fprintf(stderr, "%s", text);
  ASSERT(found);
  free(text);
  weft_coro_cancel(c);
  weft_coro_join(c, WEFT_FOREVER, NULL);
  weft_coro_release(c);
}

static int recurse(int n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  return n > 0 ? recurse(n - 1) + pad[0] : 0;
}
static int overflow(void *arg) {
  (void)arg;
  return recurse(1 << 20);
}

TEST(stack_overflow_names_coroutine) {
  weft_test_child ch = weft_test_fork_capture();
  if (ch.pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    weft_coro_opts o = {.name = "runaway", .stack_size = 64 * 1024};
    weft_coro_spawn(NULL, overflow, NULL, &o);
    _exit(0);
  }
  weft_test_expect_abort(ch, "weft: stack overflow in coroutine \"runaway\"", __FILE__, __LINE__,
                         "overflow");
}

/* A plain NULL dereference is not reported as an overflow. */
static int null_deref(void *arg) {
  return *(volatile int *)arg;
}

TEST(other_faults_pass_through) {
  weft_test_child ch = weft_test_fork_capture();
  if (ch.pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    weft_coro_spawn(NULL, null_deref, NULL, NULL);
    _exit(0);
  }
  char out[4096];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof out - 1 && (r = read(ch.fd, out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
  out[n] = 0;
  close(ch.fd);
  int st;
  ASSERT_EQ(waitpid(ch.pid, &st, 0), ch.pid);
  /* Killed by SIGSEGV, or (under a sanitizer, whose handler we chain to)
   * reported by it: never taken for an overflow, never survived. */
  ASSERT(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
  if (WIFSIGNALED(st)) ASSERT_EQ(WTERMSIG(st), SIGSEGV);
  ASSERT(strstr(out, "stack overflow") == NULL);
}

static int stuck(void *arg) {
  (void)arg;
  weft_coro_event *e;
  weft_coro_event_create(&e);
  return weft_coro_event_wait(e, WEFT_FOREVER);
}

TEST(deadlock_is_reported) {
  weft_test_child ch = weft_test_fork_capture();
  if (ch.pid == 0) {
    weft_coro_opts o = {.name = "forever"};
    weft_coro *c;
    weft_coro_spawn(&c, stuck, NULL, &o);
    weft_coro_join(c, WEFT_FOREVER, NULL);
    _exit(0);
  }
  weft_test_expect_abort(ch, "\"forever\" blocked on event", __FILE__, __LINE__, "deadlock");
}

/* Spawning from a coroutine, nested joins, and stacks reused. */
static int spawner(void *arg) {
  int depth = (int)(intptr_t)arg;
  if (depth == 0) return 1;
  weft_coro *a, *b;
  if (weft_coro_spawn(&a, spawner, (void *)(intptr_t)(depth - 1), NULL)) return -1000;
  if (weft_coro_spawn(&b, spawner, (void *)(intptr_t)(depth - 1), NULL)) return -1000;
  int x = 0, y = 0;
  weft_coro_join(a, WEFT_FOREVER, &x);
  weft_coro_join(b, WEFT_FOREVER, &y);
  weft_coro_release(a);
  weft_coro_release(b);
  return x + y;
}

TEST(tree_of_coroutines) {
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, spawner, (void *)(intptr_t)10, NULL));
  int st = 0;
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, &st));
  ASSERT_EQ(st, 1024);
  weft_coro_release(c);
}

/* Floating-point state survives switches (callee-saved registers). */
static int fp_work(void *arg) {
  double x = *(double *)arg;
  for (int i = 0; i < 100; i++) {
    x = x * 1.0000001 + 0.5;
    weft_coro_yield();
  }
  *(double *)arg = x;
  return 0;
}

TEST(fp_state_kept) {
  double a = 1.0, b = 2.0, ea = 1.0, eb = 2.0;
  for (int i = 0; i < 100; i++) {
    ea = ea * 1.0000001 + 0.5;
    eb = eb * 1.0000001 + 0.5;
  }
  weft_coro *x, *y;
  ASSERT_OK(weft_coro_spawn(&x, fp_work, &a, NULL));
  ASSERT_OK(weft_coro_spawn(&y, fp_work, &b, NULL));
  ASSERT_OK(weft_coro_join(x, WEFT_FOREVER, NULL));
  ASSERT_OK(weft_coro_join(y, WEFT_FOREVER, NULL));
  ASSERT(a == ea);
  ASSERT(b == eb);
  weft_coro_release(x);
  weft_coro_release(y);
}

/* The floating-point control state (rounding mode) is per coroutine: the
 * switch saves and restores it. */
static int round_up_coro(void *arg) {
  (void)arg;
  if (fesetround(FE_UPWARD) != 0) return -1;
  weft_coro_yield();
  int ok = fegetround() == FE_UPWARD;
  fesetround(FE_TONEAREST);
  return ok;
}

TEST(fp_control_per_coroutine) {
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, round_up_coro, NULL, NULL));
  /* c set FE_UPWARD and yielded: ours is untouched. */
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  int st = 0;
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, &st));
  ASSERT_EQ(st, 1);
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  weft_coro_release(c);
}

/* opts.deferred: gevent's timing. The child waits in the ready queue until
 * the spawner switches; cancelled before it starts, it never runs. */
TEST(deferred_spawn) {
  int flag = 0;
  weft_coro_opts o = {.deferred = true, .name = "later"};
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, set_flag, &flag, &o));
  ASSERT_EQ(flag, 0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  weft_hub_dump(f);
  fclose(f);
  ASSERT(strstr(text, "\"later\" new") != NULL);
  free(text);
  ASSERT_OK(weft_coro_yield());
  ASSERT_EQ(flag, 1);
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
  ASSERT_EQ(flag, 2);
  weft_coro_release(c);

  flag = 0;
  ASSERT_OK(weft_coro_spawn(&c, set_flag, &flag, &o));
  ASSERT_OK(weft_coro_cancel(c));
  int st = 0;
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, &st));
  ASSERT_EQ(st, WEFT_ECANCELED);
  ASSERT_EQ(flag, 0); /* fn never ran */
  weft_coro_release(c);
}

/* A deadline already past never blocks, and does not switch either. */
static int mark_ran(void *arg) {
  *(int *)arg = 1;
  return 0;
}

TEST(past_deadline_does_not_switch) {
  int ran = 0;
  weft_coro_opts o = {.deferred = true};
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, mark_ran, &ran, &o));
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, sizeof(int), 0));
  int v;
  ASSERT_ERR(weft_chan_recv(ch, &v, 1), WEFT_ETIMEDOUT);  /* 1 ns after boot */
  ASSERT_ERR(weft_chan_recv(ch, &v, weft_now_ns() - 1), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_coro_sleep_until(1));
  ASSERT_EQ(ran, 0); /* nothing switched */
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, NULL));
  ASSERT_EQ(ran, 1);
  weft_coro_release(c);
  weft_chan_destroy(ch);
}

/* More coroutines alive at once than guarded stacks allow (each guarded
 * stack is two kernel mappings; vm.max_map_count is 65530 by default):
 * stacks without a guard page are merged by the kernel into few mappings. */
static weft_coro_event *crowd_gate;
static int crowd_member(void *arg) {
  (void)arg;
  return weft_coro_event_wait(crowd_gate, WEFT_FOREVER);
}

TEST(many_alive_without_guard_pages) {
  long n = 40000;
#ifdef WEFT_TSAN
  n = 3000; /* a TSan fiber per coroutine is heavy; the limit is not TSan's */
#endif
  ASSERT_OK(weft_coro_event_create(&crowd_gate));
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g, .stack_size = WEFT_CORO_STACK_MIN, .no_guard_page = true};
  for (long i = 0; i < n; i++) ASSERT_OK(weft_coro_spawn(NULL, crowd_member, NULL, &o));
  ASSERT_EQ(weft_hub_count(), n);
  weft_coro_event_set(crowd_gate);
  ASSERT_OK(weft_coro_group_join(g, weft_deadline_in_s(60)));
  ASSERT_EQ(weft_hub_count(), 0);
  weft_coro_group_destroy(g);
  weft_coro_event_destroy(crowd_gate);
}
