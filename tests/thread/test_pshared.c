/*
 * Process-shared synchronization (WEFT_SYNC_PSHARED): every object placed in
 * a MAP_SHARED | MAP_ANONYMOUS mapping and used by fork()ed children, the
 * robust mutex after its holder process exits or is SIGKILLed, and objects
 * that outlive a process killed while waiting on them.
 *
 * Children report through their exit status: 0 is success; a failed ASSERT
 * in a child aborts it, which the parent sees.
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

static void *shared_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(p != MAP_FAILED);
  return p;
}

/* fork(); the child runs fn(arg) and exits with its result. A child never
 * outlives the test (some wait forever on purpose, to be killed): it dies
 * with its parent. */
static pid_t spawn(int (*fn)(void *), void *arg) {
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(99);
    _exit(fn(arg));
  }
  return pid;
}

/* Reap pid; its exit status, or 128 + the signal that ended it. */
static int reap(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---------------------------------------------------------------- mutex */

typedef struct shared_counter {
  weft_mutex m; /* guards n */
  long n;       /* incremented under m by every process */
  long iters;   /* per process */
} shared_counter;

static int count_up(void *arg) {
  shared_counter *c = arg;
  for (long i = 0; i < c->iters; i++) {
    int64_t d = (i & 1) ? WEFT_FOREVER : weft_deadline_in_s(10);
    ASSERT_OK(weft_mutex_lock(&c->m, d));
    c->n++;
    ASSERT_OK(weft_mutex_unlock(&c->m));
  }
  return 0;
}

TEST(mutex_excludes_across_processes) {
  shared_counter *c = shared_map(sizeof *c);
  ASSERT_OK(weft_mutex_init(&c->m, WEFT_SYNC_PSHARED));
  c->iters = 20000;
  pid_t a = spawn(count_up, c), b = spawn(count_up, c);
  count_up(c);
  ASSERT_EQ(reap(a), 0);
  ASSERT_EQ(reap(b), 0);
  ASSERT_EQ(c->n, 3 * c->iters);
  weft_mutex_fini(&c->m);
}

typedef struct robust {
  weft_mutex m;      /* the robust mutex */
  weft_event locked; /* the child holds m */
  int data;          /* "guarded" by m */
} robust;

static int lock_and_exit(void *arg) {
  robust *r = arg;
  if (weft_mutex_lock(&r->m, WEFT_FOREVER) != 0) return 1;
  r->data = 1; /* half an update */
  return 0;    /* _exit holding m */
}

static int lock_and_hang(void *arg) {
  robust *r = arg;
  if (weft_mutex_lock(&r->m, WEFT_FOREVER) != 0) return 1;
  weft_event_set(&r->locked);
  for (;;) pause();
}

static robust *robust_new(void) {
  robust *r = shared_map(sizeof *r);
  ASSERT_OK(weft_mutex_init(&r->m, WEFT_SYNC_PSHARED));
  ASSERT_OK(weft_event_init(&r->locked, WEFT_SYNC_PSHARED));
  return r;
}

TEST(robust_mutex_after_holder_exits) {
  robust *r = robust_new();
  ASSERT_EQ(reap(spawn(lock_and_exit, r)), 0);
  ASSERT_ERR(weft_mutex_lock(&r->m, WEFT_FOREVER), WEFT_EOWNERDEAD);
  ASSERT_EQ(r->data, 1); /* the caller now repairs the data... */
  r->data = 0;
  ASSERT_OK(weft_mutex_consistent(&r->m)); /* ...and says so */
  ASSERT_OK(weft_mutex_unlock(&r->m));
  ASSERT_OK(weft_mutex_lock(&r->m, 0));
  ASSERT_OK(weft_mutex_unlock(&r->m));
  /* The deadline forms see a dead owner too. */
  ASSERT_EQ(reap(spawn(lock_and_exit, r)), 0);
  ASSERT_ERR(weft_mutex_lock(&r->m, weft_deadline_in_s(5)), WEFT_EOWNERDEAD);
  ASSERT_OK(weft_mutex_consistent(&r->m));
  ASSERT_OK(weft_mutex_unlock(&r->m));
  ASSERT_EQ(reap(spawn(lock_and_exit, r)), 0);
  ASSERT_ERR(weft_mutex_lock(&r->m, 0), WEFT_EOWNERDEAD);
  ASSERT_OK(weft_mutex_consistent(&r->m));
  ASSERT_OK(weft_mutex_unlock(&r->m));
  weft_mutex_fini(&r->m);
}

TEST(robust_mutex_after_holder_is_sigkilled) {
  robust *r = robust_new();
  pid_t pid = spawn(lock_and_hang, r);
  ASSERT_OK(weft_event_wait(&r->locked, weft_deadline_in_s(10)));
  /* Held by a live process: busy. */
  ASSERT_ERR(weft_mutex_lock(&r->m, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_mutex_lock(&r->m, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(reap(pid), 128 + SIGKILL);
  ASSERT_ERR(weft_mutex_lock(&r->m, weft_deadline_in_s(5)), WEFT_EOWNERDEAD);
  ASSERT_OK(weft_mutex_consistent(&r->m));
  ASSERT_OK(weft_mutex_unlock(&r->m));
  ASSERT_OK(weft_mutex_lock(&r->m, WEFT_FOREVER));
  ASSERT_OK(weft_mutex_unlock(&r->m));
  weft_mutex_fini(&r->m);
}

/* A thread asleep in lock() when the holder dies gets the mutex. */
static void *lock_repair_unlock(void *arg) {
  robust *r = arg;
  int rc = weft_mutex_lock(&r->m, WEFT_FOREVER); /* asleep in futex() in every build */
  if (rc == WEFT_EOWNERDEAD) {
    ASSERT_OK(weft_mutex_consistent(&r->m));
    ASSERT_OK(weft_mutex_unlock(&r->m));
  }
  return (void *)(intptr_t)rc;
}

TEST(robust_mutex_sleeping_waiter_inherits_from_killed_holder) {
  robust *r = robust_new();
  pid_t pid = spawn(lock_and_hang, r);
  ASSERT_OK(weft_event_wait(&r->locked, weft_deadline_in_s(10)));
  weft_thread *t;
  ASSERT_OK(weft_thread_start(&t, lock_repair_unlock, r, NULL));
  weft_test_wait_asleep_in_futex(getpid(), weft_thread_ident(t));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(reap(pid), 128 + SIGKILL);
  void *rc = NULL;
  ASSERT_OK(weft_thread_join(t, weft_deadline_in_s(10), &rc));
  ASSERT_ERR((int)(intptr_t)rc, WEFT_EOWNERDEAD);
  ASSERT_OK(weft_mutex_lock(&r->m, 0));
  ASSERT_OK(weft_mutex_unlock(&r->m));
  weft_mutex_fini(&r->m);
}

static int expect_unrecoverable(void *arg) {
  robust *r = arg;
  return weft_mutex_lock(&r->m, weft_deadline_in_s(5)) == WEFT_ENOTRECOVERABLE ? 0 : 1;
}

TEST(robust_mutex_unlocked_without_consistent_is_unrecoverable_everywhere) {
  robust *r = robust_new();
  ASSERT_EQ(reap(spawn(lock_and_exit, r)), 0);
  ASSERT_ERR(weft_mutex_lock(&r->m, WEFT_FOREVER), WEFT_EOWNERDEAD);
  ASSERT_OK(weft_mutex_unlock(&r->m)); /* gave up: m is now unusable */
  ASSERT_ERR(weft_mutex_lock(&r->m, WEFT_FOREVER), WEFT_ENOTRECOVERABLE);
  ASSERT_ERR(weft_mutex_lock(&r->m, 0), WEFT_ENOTRECOVERABLE);
  ASSERT_EQ(reap(spawn(expect_unrecoverable, r)), 0);
  weft_mutex_fini(&r->m);
}

/* ----------------------------------------------------------- condition */

typedef struct shared_box {
  weft_mutex m; /* guards ready */
  weft_cond c;  /* signalled when ready changes */
  int ready;    /* the predicate */
} shared_box;

static int wait_for_ready(void *arg) {
  shared_box *b = arg;
  int64_t end = weft_deadline_in_s(10);
  if (weft_mutex_lock(&b->m, WEFT_FOREVER) != 0) return 1;
  int r = 0;
  while (!b->ready && r == 0) r = weft_cond_wait(&b->c, &b->m, end);
  weft_mutex_unlock(&b->m);
  return r == 0 ? 0 : 2;
}

TEST(cond_across_processes) {
  shared_box *b = shared_map(sizeof *b);
  ASSERT_OK(weft_mutex_init(&b->m, WEFT_SYNC_PSHARED));
  ASSERT_OK(weft_cond_init(&b->c, WEFT_SYNC_PSHARED));
  pid_t p1 = spawn(wait_for_ready, b), p2 = spawn(wait_for_ready, b);
  weft_test_wait_asleep_in_futex(p1, (uint64_t)p1);
  weft_test_wait_asleep_in_futex(p2, (uint64_t)p2);
  ASSERT_OK(weft_mutex_lock(&b->m, WEFT_FOREVER));
  b->ready = 1;
  ASSERT_OK(weft_mutex_unlock(&b->m));
  weft_cond_broadcast(&b->c);
  ASSERT_EQ(reap(p1), 0);
  ASSERT_EQ(reap(p2), 0);
  weft_cond_fini(&b->c);
  weft_mutex_fini(&b->m);
}

/* --------------------------------------------------------------- event */

typedef struct shared_events {
  weft_event go;   /* parent -> child */
  weft_event back; /* child -> parent */
} shared_events;

static int event_child(void *arg) {
  shared_events *e = arg;
  if (weft_event_wait(&e->go, weft_deadline_in_s(10)) != 0) return 1;
  weft_event_set(&e->back);
  return 0;
}

TEST(event_across_processes) {
  shared_events *e = shared_map(sizeof *e);
  ASSERT_OK(weft_event_init(&e->go, WEFT_SYNC_PSHARED));
  ASSERT_OK(weft_event_init(&e->back, WEFT_SYNC_PSHARED));
  pid_t pid = spawn(event_child, e);
  weft_test_wait_asleep_in_futex(pid, (uint64_t)pid); /* the shared wake path, not the fast one */
  weft_event_set(&e->go);
  ASSERT_OK(weft_event_wait(&e->back, weft_deadline_in_s(10)));
  ASSERT_EQ(reap(pid), 0);
  weft_event_fini(&e->go);
  weft_event_fini(&e->back);
}

static int wait_forever(void *arg) {
  weft_event_wait(arg, WEFT_FOREVER);
  return 0;
}

/* A process killed inside wait() leaves its mark in the waiter count; the
 * event must keep working and fini must not call that misuse. */
TEST(event_survives_a_killed_waiter) {
  weft_event *e = shared_map(sizeof *e);
  ASSERT_OK(weft_event_init(e, WEFT_SYNC_PSHARED));
  pid_t pid = spawn(wait_forever, e);
  weft_test_wait_asleep_in_futex(pid, (uint64_t)pid);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(reap(pid), 128 + SIGKILL);
  weft_event_set(e);
  ASSERT_OK(weft_event_wait(e, 0));
  weft_event_clear(e);
  ASSERT_ERR(weft_event_wait(e, weft_deadline_in_ms(10)), WEFT_ETIMEDOUT);
  weft_event_fini(e);
}

/* ----------------------------------------------------------- semaphore */

typedef struct ping_pong {
  weft_sem ping; /* parent -> child */
  weft_sem pong; /* child -> parent */
  long rounds;   /* how many exchanges */
  long seen;     /* written by the child each round, read by the parent */
} ping_pong;

static int pong_child(void *arg) {
  ping_pong *p = arg;
  for (long i = 0; i < p->rounds; i++) {
    if (weft_sem_acquire(&p->ping, weft_deadline_in_s(10)) != 0) return 1;
    p->seen = i;
    if (weft_sem_release(&p->pong, 1) != 0) return 2;
  }
  return 0;
}

TEST(semaphore_ping_pong_across_processes) {
  ping_pong *p = shared_map(sizeof *p);
  ASSERT_OK(weft_sem_init(&p->ping, WEFT_SYNC_PSHARED, 0, 1));
  ASSERT_OK(weft_sem_init(&p->pong, WEFT_SYNC_PSHARED, 0, 0));
  p->rounds = 2000;
  pid_t pid = spawn(pong_child, p);
  for (long i = 0; i < p->rounds; i++) {
    ASSERT_OK(weft_sem_release(&p->ping, 1));
    ASSERT_OK(weft_sem_acquire(&p->pong, weft_deadline_in_s(10)));
    ASSERT_EQ(p->seen, i);
  }
  ASSERT_EQ(reap(pid), 0);
  ASSERT_UEQ(weft_sem_value(&p->ping), 0);
  ASSERT_UEQ(weft_sem_value(&p->pong), 0);
  weft_sem_fini(&p->ping);
  weft_sem_fini(&p->pong);
}

/* ------------------------------------------------------------- barrier */

enum { PROCS = 3, ROUNDS = 50 };
typedef struct shared_rounds {
  weft_barrier b;              /* PROCS parties */
  unsigned idx[ROUNDS][PROCS]; /* idx[round][process] */
} shared_rounds;
static int g_slot; /* process-private: each child's copy is its slot */

static int do_rounds(void *arg) {
  shared_rounds *r = arg;
  int me = g_slot;
  for (int k = 0; k < ROUNDS; k++)
    if (weft_barrier_wait(&r->b, weft_deadline_in_s(10), &r->idx[k][me]) != 0) return 1;
  return 0;
}

TEST(barrier_rounds_across_processes) {
  shared_rounds *r = shared_map(sizeof *r);
  ASSERT_OK(weft_barrier_init(&r->b, WEFT_SYNC_PSHARED, PROCS));
  pid_t kids[PROCS - 1];
  for (int i = 0; i < PROCS - 1; i++) {
    g_slot = i + 1;
    kids[i] = spawn(do_rounds, r);
  }
  g_slot = 0;
  ASSERT_EQ(do_rounds(r), 0);
  for (int i = 0; i < PROCS - 1; i++) ASSERT_EQ(reap(kids[i]), 0);
  for (int k = 0; k < ROUNDS; k++) {
    unsigned seen = 0;
    for (int i = 0; i < PROCS; i++) {
      ASSERT_LT(r->idx[k][i], PROCS);
      seen |= 1u << r->idx[k][i];
    }
    ASSERT_EQ(seen, (1u << PROCS) - 1);
  }
  weft_barrier_fini(&r->b);
}

static int expect_broken(void *arg) {
  return weft_barrier_wait(arg, weft_deadline_in_s(10), NULL) == WEFT_EBROKEN ? 0 : 1;
}

TEST(barrier_timeout_in_one_process_breaks_it_in_another) {
  weft_barrier *b = shared_map(sizeof *b);
  ASSERT_OK(weft_barrier_init(b, WEFT_SYNC_PSHARED, 3));
  pid_t pid = spawn(expect_broken, b);
  weft_test_wait_asleep_in_futex(pid, (uint64_t)pid);
  ASSERT_ERR(weft_barrier_wait(b, weft_deadline_in_ms(20), NULL), WEFT_ETIMEDOUT);
  ASSERT_EQ(reap(pid), 0);
  weft_barrier_fini(b);
}

/* ---------------------------------------------------------------- once */

typedef struct shared_once {
  weft_once once;     /* shared by all processes */
  atomic_int runs;    /* how many times fn ran, over all processes */
  int value;          /* written by fn */
} shared_once;

static void slow_init(void *arg) {
  shared_once *s = arg;
  atomic_fetch_add(&s->runs, 1);
  usleep(50000);
  s->value = 99;
}

static int call_shared_once(void *arg) {
  shared_once *s = arg;
  weft_once_call(&s->once, slow_init, s);
  return s->value == 99 ? 0 : 1;
}

TEST(once_across_processes) {
  shared_once *s = shared_map(sizeof *s);
  s->once = (weft_once)WEFT_ONCE_INIT;
  pid_t a = spawn(call_shared_once, s), b = spawn(call_shared_once, s);
  ASSERT_EQ(call_shared_once(s), 0);
  ASSERT_EQ(reap(a), 0);
  ASSERT_EQ(reap(b), 0);
  ASSERT_EQ(atomic_load(&s->runs), 1);
}
