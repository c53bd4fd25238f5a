/*
 * weft_process: real children, real signals. Exit codes as Python reports
 * them, join deadlines, names, the three ways a child is made (fork, the
 * spawner thread of a threaded parent, the fork server), no zombies, and no
 * orphans when the parent is SIGKILLed.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

#define MS 1000000LL

typedef struct shared {
  atomic_int ran;
  char name[64];
  char arg[256];
  size_t arg_len;
  atomic_int pids[16];
  atomic_int npids;
  atomic_int stage;
} shared;

static shared *sh;

static void setup(void) {
  void *p = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(p != MAP_FAILED);
  sh = p;
}

/* A process is gone or a zombie nobody of ours holds: not running. */
static bool running(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static bool exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

static void wait_gone(pid_t pid, int64_t ms) {
  int64_t dl = weft_deadline_in_ms(ms);
  while (running(pid) && weft_now_ns() < dl) weft_sleep_until(weft_deadline_in_ms(1));
  ASSERT(!running(pid));
}

static int c_record(const void *arg, size_t len) {
  snprintf(sh->name, sizeof sh->name, "%s", weft_process_current_name());
  memcpy(sh->arg, arg, len < sizeof sh->arg ? len : sizeof sh->arg);
  sh->arg_len = len;
  atomic_fetch_add(&sh->ran, 1);
  return 7;
}

static __attribute__((noreturn)) int c_sleep(const void *arg, size_t len) {
  (void)arg;
  (void)len;
  atomic_fetch_add(&sh->ran, 1);
  for (;;) pause();
}

static int c_segv(const void *arg, size_t len) {
  (void)arg;
  (void)len;
  signal(SIGSEGV, SIG_DFL); /* ASan catches SIGSEGV: die of it for real */
  raise(SIGSEGV);
  return 0;
}

static int c_return(const void *arg, size_t len) {
  int v;
  (void)len;
  memcpy(&v, arg, sizeof v);
  return v;
}

TEST(start_join_exitcode) {
  setup();
  weft_process *p;
  ASSERT_OK(weft_process_start(&p, c_record, "hello", 6, NULL));
  ASSERT_GT(weft_process_pid(p), 0);
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT(!weft_process_is_alive(p));
  int code = 99;
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, 7);
  ASSERT_STR_EQ(sh->arg, "hello");
  ASSERT_EQ(sh->arg_len, 6);
  ASSERT_STR_EQ(sh->name, weft_process_name(p));
  ASSERT_EQ(strncmp(weft_process_name(p), "Process-", 8), 0);
  /* Joined means reaped: no zombie left. */
  ASSERT(!exists(weft_process_pid(p)));
  ASSERT_STR_EQ(weft_process_current_name(), "MainProcess");
  weft_process_destroy(p);
  weft_process_destroy(NULL);
}

TEST(names_count_up) {
  setup();
  weft_process *a, *b, *c;
  ASSERT_OK(weft_process_start(&a, c_record, NULL, 0, NULL));
  ASSERT_OK(weft_process_start(&b, c_record, NULL, 0, NULL));
  /* a and b write the shared record too: let them finish first. */
  ASSERT_OK(weft_process_join(a, WEFT_FOREVER));
  ASSERT_OK(weft_process_join(b, WEFT_FOREVER));
  weft_process_opts o = {.name = "worker-x"};
  ASSERT_OK(weft_process_start(&c, c_record, NULL, 0, &o));
  int na = atoi(weft_process_name(a) + 8), nb = atoi(weft_process_name(b) + 8);
  ASSERT_EQ(nb, na + 1);
  ASSERT_STR_EQ(weft_process_name(c), "worker-x");
  ASSERT_OK(weft_process_join(c, WEFT_FOREVER));
  ASSERT_STR_EQ(sh->name, "worker-x");
  weft_process_destroy(a);
  weft_process_destroy(b);
  weft_process_destroy(c);
}

TEST(exit_statuses) {
  for (int v = 0; v < 256; v += 85) {
    weft_process *p;
    ASSERT_OK(weft_process_start(&p, c_return, &v, sizeof v, NULL));
    ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
    int code;
    ASSERT_OK(weft_process_exitcode(p, &code));
    ASSERT_EQ(code, v);
    weft_process_destroy(p);
  }
}

TEST(signals_give_negative_codes) {
  setup();
  weft_process *p;
  int code;
  ASSERT_OK(weft_process_start(&p, c_segv, NULL, 0, NULL));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGSEGV);
  weft_process_destroy(p);

  ASSERT_OK(weft_process_start(&p, c_sleep, NULL, 0, NULL));
  while (atomic_load(&sh->ran) < 1) weft_sleep_until(weft_deadline_in_ms(1));
  ASSERT(weft_process_is_alive(p));
  ASSERT_ERR(weft_process_exitcode(p, &code), WEFT_EBUSY);
  ASSERT_OK(weft_process_terminate(p));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGTERM);
  /* Signals after the end do nothing (and reach nobody else). */
  ASSERT_OK(weft_process_kill(p));
  ASSERT_ERR(weft_process_signal(p, -1), WEFT_EINVAL);
  weft_process_destroy(p);

  ASSERT_OK(weft_process_start(&p, c_sleep, NULL, 0, NULL));
  ASSERT_OK(weft_process_kill(p));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  weft_process_destroy(p);
}

TEST(join_deadline) {
  setup();
  weft_process *p;
  ASSERT_OK(weft_process_start(&p, c_sleep, NULL, 0, NULL));
  ASSERT_ERR(weft_process_join(p, 0), WEFT_ETIMEDOUT);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_process_join(p, weft_deadline_in_ms(50)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 45 * MS);
  ASSERT_ERR(weft_process_join(p, -5), WEFT_EINVAL);
  ASSERT(weft_process_is_alive(p));
  weft_process_kill(p);
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  weft_process_destroy(p);
}

/* A child that started a grandchild: destroying the running child's handle
 * kills both (its process group) and leaves no zombie. */
static __attribute__((noreturn)) int c_grandchild(const void *arg, size_t len) {
  (void)arg;
  (void)len;
  pid_t g = fork();
  if (g == 0) {
    for (;;) pause();
  }
  atomic_store(&sh->pids[0], g);
  atomic_fetch_add(&sh->ran, 1);
  for (;;) pause();
}

TEST(destroy_kills_group) {
  setup();
  weft_process *p;
  ASSERT_OK(weft_process_start(&p, c_grandchild, NULL, 0, NULL));
  while (atomic_load(&sh->ran) < 1) weft_sleep_until(weft_deadline_in_ms(1));
  pid_t child = weft_process_pid(p), grand = atomic_load(&sh->pids[0]);
  ASSERT(running(grand));
  weft_process_destroy(p);
  ASSERT(!exists(child));
  wait_gone(grand, 5000);
}

/* Several threads join the same child at once. */
static void *joiner(void *arg) {
  return (void *)(intptr_t)weft_process_join(arg, weft_deadline_in_ms(10000));
}

TEST(concurrent_joins) {
  setup();
  weft_process *p;
  ASSERT_OK(weft_process_start(&p, c_sleep, NULL, 0, NULL));
  weft_thread *t[4];
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_thread_start(&t[i], joiner, p, NULL));
  weft_sleep_until(weft_deadline_in_ms(20));
  weft_process_kill(p);
  for (int i = 0; i < 4; i++) {
    void *r;
    ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, &r));
    ASSERT_EQ((intptr_t)r, 0);
  }
  int code;
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  weft_process_destroy(p);
}

/* weft never reaps children it did not make. */
TEST(leaves_other_children_alone) {
  setup();
  pid_t mine = fork();
  if (mine == 0) _exit(42);
  weft_process *p;
  ASSERT_OK(weft_process_start(&p, c_record, NULL, 0, NULL));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  weft_process_destroy(p);
  int st;
  ASSERT_EQ(waitpid(mine, &st, 0), mine);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 42);
}

/* From a threaded parent with no fork server: forked by weft's spawner
 * thread, so the child survives the exit of the thread that asked. */
static void *start_from_thread(void *arg) {
  weft_process **out = arg;
  int r = weft_process_start(out, c_sleep, NULL, 0, NULL);
  return (void *)(intptr_t)r;
}

TEST(threaded_parent_thread_exits) {
  setup();
  weft_thread *t;
  weft_process *p = NULL;
  ASSERT_OK(weft_thread_start(&t, start_from_thread, &p, NULL));
  void *r;
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
  ASSERT_EQ((intptr_t)r, 0);
  /* The asking thread is gone; PR_SET_PDEATHSIG must not have fired. */
  while (atomic_load(&sh->ran) < 1) weft_sleep_until(weft_deadline_in_ms(1));
  weft_sleep_until(weft_deadline_in_ms(100));
  ASSERT(weft_process_is_alive(p));
  ASSERT_OK(weft_process_kill(p));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  int code;
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  weft_process_destroy(p);
}

/* The fork server: started while single-threaded; used by a threaded
 * parent; exit codes, signals, names and the argument come through it. */
static void *idle_thread(void *arg) {
  while (!atomic_load((atomic_int *)arg)) weft_sleep_until(weft_deadline_in_ms(1));
  return NULL;
}

TEST(forkserver) {
  setup();
  ASSERT(!weft_forkserver_running());
  weft_process *p;
  weft_process_opts fso = {.method = WEFT_START_FORKSERVER};
  ASSERT_ERR(weft_process_start(&p, c_record, NULL, 0, &fso), WEFT_ENOENT);
  ASSERT_OK(weft_forkserver_start());
  ASSERT_OK(weft_forkserver_start()); /* again: already runs */
  ASSERT(weft_forkserver_running());
  atomic_int stop = 0;
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, idle_thread, &stop, NULL));
  /* Threaded now: AUTO goes through the server. */
  weft_process_opts o = {.name = "via-server"};
  ASSERT_OK(weft_process_start(&p, c_record, "abc", 4, &o));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  int code;
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, 7);
  ASSERT_STR_EQ(sh->arg, "abc");
  ASSERT_STR_EQ(sh->name, "via-server");
  /* The child is the server's, not ours. */
  ASSERT(getppid() != weft_process_pid(p));
  weft_process_destroy(p);

  ASSERT_OK(weft_process_start(&p, c_segv, NULL, 0, &fso));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGSEGV);
  weft_process_destroy(p);

  atomic_store(&sh->ran, 0);
  ASSERT_OK(weft_process_start(&p, c_sleep, NULL, 0, &fso));
  while (atomic_load(&sh->ran) < 1) weft_sleep_until(weft_deadline_in_ms(1));
  ASSERT_ERR(weft_process_join(p, weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT(weft_process_is_alive(p));
  ASSERT_OK(weft_process_terminate(p));
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGTERM);
  weft_process_destroy(p);

  /* Many in a row: slots are reused. */
  for (int i = 0; i < 50; i++) {
    ASSERT_OK(weft_process_start(&p, c_return, &i, sizeof i, &fso));
    ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
    ASSERT_OK(weft_process_exitcode(p, &code));
    ASSERT_EQ(code, i);
    weft_process_destroy(p);
  }
  /* Stop with a child running: it is killed. */
  atomic_store(&sh->ran, 0);
  ASSERT_OK(weft_process_start(&p, c_sleep, NULL, 0, &fso));
  while (atomic_load(&sh->ran) < 1) weft_sleep_until(weft_deadline_in_ms(1));
  pid_t cp = weft_process_pid(p);
  weft_forkserver_stop();
  ASSERT(!weft_forkserver_running());
  ASSERT_OK(weft_process_join(p, weft_deadline_in_ms(10000)));
  ASSERT_OK(weft_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  wait_gone(cp, 5000);
  weft_process_destroy(p);
  atomic_store(&stop, 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
}

TEST(forkserver_refused_when_threaded) {
  atomic_int stop = 0;
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, idle_thread, &stop, NULL));
  ASSERT_ERR(weft_forkserver_start(), WEFT_EBUSY);
  atomic_store(&stop, 1);
  ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
}

/* SIGKILL of the parent: every child it made dies (direct children, a
 * child forked by the spawner, and the fork server with its children). */
static __attribute__((noreturn)) int c_note_and_sleep(const void *arg, size_t len) {
  (void)arg;
  (void)len;
  int k = atomic_fetch_add(&sh->npids, 1);
  atomic_store(&sh->pids[k], getpid());
  for (;;) pause();
}

static void parent_body(bool server) {
  if (server && weft_forkserver_start() != 0) _exit(2);
  weft_process *p;
  for (int i = 0; i < 3; i++)
    if (weft_process_start(&p, c_note_and_sleep, NULL, 0, NULL) != 0) _exit(3);
  atomic_int stop = 0;
  weft_thread *t;
  if (weft_thread_start(&t, idle_thread, &stop, NULL) != 0) _exit(4);
  for (int i = 0; i < 2; i++)
    if (weft_process_start(&p, c_note_and_sleep, NULL, 0, NULL) != 0) _exit(5);
  atomic_store(&sh->stage, 1);
  for (;;) pause();
}

static void parent_killed(bool server) {
  setup();
  fflush(NULL);
  pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) parent_body(server);
  int64_t dl = weft_deadline_in_ms(10000);
  while ((atomic_load(&sh->stage) == 0 || atomic_load(&sh->npids) < 5) && weft_now_ns() < dl)
    weft_sleep_until(weft_deadline_in_ms(1));
  ASSERT_EQ(atomic_load(&sh->npids), 5);
  for (int i = 0; i < 5; i++) ASSERT(running(atomic_load(&sh->pids[i])));
  kill(parent, SIGKILL);
  int st;
  ASSERT_EQ(waitpid(parent, &st, 0), parent);
  for (int i = 0; i < 5; i++) wait_gone(atomic_load(&sh->pids[i]), 5000);
}

TEST(parent_sigkill_no_orphans) { parent_killed(false); }
TEST(parent_sigkill_no_orphans_forkserver) {
#ifdef WEFT_TSAN
  /* ThreadSanitizer starts a helper thread in every forked child, so the
   * intermediate parent is threaded and (rightly) may not start a server. */
  return;
#endif
  parent_killed(true);
}

TEST(misuse) {
  ASSERT_ABORTS(weft_process_join(NULL, 0), "weft_process_join");
  weft_process *p;
  ASSERT_ABORTS(weft_process_start(&p, NULL, NULL, 0, NULL), "weft_process_start");
  weft_process_opts o = {.method = (weft_start_method)9};
  ASSERT_ERR(weft_process_start(&p, c_record, NULL, 0, &o), WEFT_EINVAL);
}
