/*
 * weft_thread: pthreads with Python's names, a deadline on join, and a stop
 * token.
 *
 * A handle made by weft_thread_start holds two references: the owner's
 * (dropped by join or detach) and the thread's own (dropped when the thread
 * exits, by the destructor of a pthread key, so that the handle stays valid
 * for weft_thread_current() while other TLS destructors run). Whoever drops
 * the last one frees the handle. The thread announces "my function has
 * returned" on the `done` event; join waits on that with the caller's
 * deadline and only then calls pthread_join, which can then block just for
 * the few instructions of thread exit. A timed-out join has changed nothing.
 *
 * Threads weft did not start get a handle on their first call to
 * weft_thread_current(): the process's initial thread a static one named
 * "MainThread", the others a heap one named "Dummy-N" that the key
 * destructor frees when the thread exits. Such handles cannot be joined or
 * detached. Thread-N and Dummy-N share one counter, as in Python.
 *
 * The kernel thread id is recorded by the thread itself before it runs the
 * user's function; weft_thread_ident() on a thread that has not got that
 * far sleeps on the tid word until it has (start does not wait for it).
 *
 * Fork: in the child only the forking thread exists. An atfork handler gives
 * that thread's handle (if it has one) the child's tid and pid. Every other
 * handle copied into the child names a thread that is not there: joining or
 * detaching it aborts (misuse, caught by the pid the handle records); its
 * memory is simply not reclaimed in the child.
 *
 * Locking: no locks. The handle's mutable fields are atomics or events, or
 * are written before the handle is shared (by start, or by the thread itself
 * for has_key); refs decides who frees. The global name counter is atomic;
 * the key and the atfork handler are set up once through pthread_once.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/futex.h"
#include "thread/sync.h"
#include "weft/thread.h"

enum thread_kind {
  KIND_STARTED = 1, /* made by weft_thread_start: joinable */
  KIND_MAIN,        /* the process's initial thread, adopted; static */
  KIND_DUMMY        /* another foreign thread, adopted; freed at its exit */
};

#define THREAD_MAGIC 0x54485244u /* "THRD": a live handle */
#define THREAD_DEAD 0x44454144u  /* "DEAD": written just before free */

struct weft_thread {
  uint32_t magic;               /* THREAD_MAGIC while the handle lives */
  enum thread_kind kind;        /* fixed at creation */
  _Atomic uint32_t refs;        /* STARTED only: owner + thread; last one frees */
  atomic_bool detached;         /* set by detach; a later join/detach aborts */
  bool has_key;                 /* the key destructor will run for this thread;
                                 * written and read by the thread itself */
  pthread_t pth;                /* written by start (or adopt) before sharing */
  pid_t pid;                    /* process the thread lives in; atfork-updated */
  _Atomic uint32_t tid;         /* kernel tid; 0 until the thread records it.
                                 * The futex word for ident() waiters. */
  _Atomic uint32_t tid_waiters; /* ident() callers that may sleep on tid */
  weft_event done;              /* set when the thread's function has ended */
  weft_event stop;              /* the stop token */
  weft_thread_fn *fn;           /* the body; read only by the new thread */
  void *arg;                    /* its argument; borrowed */
  const char *name;             /* full name; after the struct, or static */
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;          /* its destructor ends a handle's thread life */
static bool g_key_ok;                /* g_key exists; written once under g_once */
static atomic_uint g_name_counter;   /* last N used for Thread-N / Dummy-N */
static weft_thread g_main;           /* the MainThread handle */
static _Thread_local weft_thread *tls_self; /* the calling thread's handle or NULL */

static void key_destructor(void *p);

/* In the child of fork(): the forking thread has a new tid and pid. */
static void atfork_child(void) {
  weft_thread *t = tls_self;
  if (t) {
    atomic_store_explicit(&t->tid, (uint32_t)gettid(), memory_order_relaxed);
    t->pid = getpid();
  }
}

static void global_init(void) {
  g_key_ok = pthread_key_create(&g_key, key_destructor) == 0;
  /* If this fails the child of a fork keeps a stale tid in the forking
   * thread's handle; nothing else depends on it. */
  (void)pthread_atfork(NULL, NULL, atfork_child);
}

static unsigned next_number(void) {
  return atomic_fetch_add_explicit(&g_name_counter, 1, memory_order_relaxed) + 1;
}

/* A handle with its name stored right after it. */
static weft_thread *handle_alloc(enum thread_kind kind, const char *name) {
  size_t len = strlen(name);
  weft_thread *t = weft__malloc(sizeof *t + len + 1);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  char *copy = (char *)(t + 1);
  memcpy(copy, name, len + 1);
  t->magic = THREAD_MAGIC;
  t->kind = kind;
  t->name = copy;
  weft_event_init(&t->done, 0);
  weft_event_init(&t->stop, 0);
  return t;
}

static void handle_free(weft_thread *t) {
  weft_event_fini(&t->done);
  weft_event_fini(&t->stop);
  t->magic = THREAD_DEAD;
  weft__free(t);
}

static void handle_release(weft_thread *t) {
  /* acq_rel: the freeing side must see every write the other side made. */
  if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) handle_free(t);
}

/* The end of a thread's life as a weft thread: runs at thread exit as the
 * key destructor, or at the end of the trampoline if the key could not be
 * set. */
static void key_destructor(void *p) {
  weft_thread *t = p;
  tls_self = NULL;
  switch (t->kind) {
  case KIND_STARTED:
    /* Normally set by the trampoline; not if fn called pthread_exit. */
    weft_event_set(&t->done);
    handle_release(t);
    break;
  case KIND_MAIN:
    /* The initial thread called pthread_exit; the static handle stays. */
    weft_event_set(&t->done);
    break;
  case KIND_DUMMY:
    handle_free(t);
    break;
  }
}

/* Kernel names are 15 bytes and a NUL; /proc and gdb show them. */
static void set_kernel_name(const char *name) {
  char buf[16];
  strncpy(buf, name, sizeof buf - 1);
  buf[sizeof buf - 1] = 0;
  (void)pthread_setname_np(pthread_self(), buf);
}

static void record_tid(weft_thread *t, uint32_t tid) {
  /* seq_cst store, then seq_cst load of the waiter count; ident() does the
   * opposite, so one of the two sees the other (see event.c). */
  atomic_store_explicit(&t->tid, tid, memory_order_seq_cst);
  if (atomic_load_explicit(&t->tid_waiters, memory_order_seq_cst) != 0)
    weft__futex_wake(&t->tid, INT32_MAX, 0);
}

static void *trampoline(void *p) {
  weft_thread *t = p;
  tls_self = t;
  t->has_key = g_key_ok && pthread_setspecific(g_key, t) == 0;
  record_tid(t, (uint32_t)gettid());
  set_kernel_name(t->name);
  void *ret = t->fn(t->arg);
  weft_event_set(&t->done);
  if (!t->has_key) key_destructor(t);
  return ret; /* join takes it from pthread_join, which also sees pthread_exit's */
}

int weft_thread_start(weft_thread **out, weft_thread_fn *fn, void *arg,
                      const weft_thread_opts *opts) {
  WEFT_CHECK_HANDLE(out);
  WEFT_CHECK_HANDLE(fn);
  pthread_once(&g_once, global_init);

  size_t stack = opts ? opts->stack_size : 0;
  if (stack) {
    /* No system maps a stack of half the address space; refusing here also
     * keeps the rounding below from wrapping. */
    if (stack > SIZE_MAX / 2) return WEFT_EINVAL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stack = (stack + page - 1) & ~(page - 1);
    if (stack < (size_t)PTHREAD_STACK_MIN) stack = (size_t)PTHREAD_STACK_MIN;
  }

  char defname[32];
  const char *name = opts ? opts->name : NULL;
  if (!name) {
    snprintf(defname, sizeof defname, "Thread-%u", next_number());
    name = defname;
  }
  weft_thread *t = handle_alloc(KIND_STARTED, name);
  if (!t) return WEFT_ENOMEM;
  atomic_init(&t->refs, 2);
  t->fn = fn;
  t->arg = arg;
  t->pid = getpid();

  pthread_attr_t attr;
  int r = pthread_attr_init(&attr);
  if (r == 0 && stack) r = pthread_attr_setstacksize(&attr, stack);
  if (r == 0) {
    r = pthread_create(&t->pth, &attr, trampoline, t);
    pthread_attr_destroy(&attr);
  }
  if (r != 0) {
    handle_free(t);
    return -r;
  }
  *out = t;
  return 0;
}

/* Abort unless t is a live, joinable handle of this process. */
static void check_joinable(const weft_thread *t, const char *call) {
  if (t->magic != THREAD_MAGIC)
    weft__misuse(call, "argument 't' is not a live thread handle (joined or detached already?)");
  if (t->kind != KIND_STARTED)
    weft__misuse(call, "handle of '%s', a thread weft did not start (from "
                 "weft_thread_current()): it cannot be joined or detached", t->name);
  if (atomic_load_explicit(&t->detached, memory_order_relaxed))
    weft__misuse(call, "handle of '%s' was detached", t->name);
  if (t->pid != getpid())
    weft__misuse(call, "handle of '%s' belongs to the parent process: that thread does "
                 "not exist after fork()", t->name);
}

int weft_thread_join(weft_thread *t, int64_t deadline_ns, void **ret) {
  WEFT_CHECK_HANDLE(t);
  check_joinable(t, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (t == tls_self) return WEFT_EDEADLK;
  int r = weft__event_wait(&t->done, deadline_ns, 0);
  if (r != 0) return r;
  void *val = NULL;
  r = pthread_join(t->pth, &val);
  WEFT_ASSERT(r == 0);
  if (ret) *ret = val;
  handle_release(t);
  return 0;
}

void weft_thread_detach(weft_thread *t) {
  WEFT_CHECK_HANDLE(t);
  check_joinable(t, __func__);
  atomic_store_explicit(&t->detached, true, memory_order_relaxed);
  int r = pthread_detach(t->pth);
  WEFT_ASSERT(r == 0);
  handle_release(t);
}

/* First weft_thread_current() call of a thread weft did not start. */
static weft_thread *adopt(void) {
  pthread_once(&g_once, global_init);
  pid_t tid = gettid(), pid = getpid();
  weft_thread *t;
  if (tid == pid) {
    /* Only one thread of a process has tid == pid, and it adopts once (or,
     * in a fork child, the forking thread may: the old main is gone), so
     * the static handle is never in two threads' hands. */
    t = &g_main;
    memset(t, 0, sizeof *t);
    t->magic = THREAD_MAGIC;
    t->kind = KIND_MAIN;
    t->name = "MainThread";
    weft_event_init(&t->done, 0);
    weft_event_init(&t->stop, 0);
  } else {
    char name[32];
    snprintf(name, sizeof name, "Dummy-%u", next_number());
    t = handle_alloc(KIND_DUMMY, name);
    if (!t) {
      /* The contract promises a handle; there is no error to return. */
      static const char msg[] = "weft: weft_thread_current(): out of memory for a thread handle\n";
      ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
      (void)w;
      abort();
    }
  }
  atomic_store_explicit(&t->tid, (uint32_t)tid, memory_order_relaxed);
  t->pid = pid;
  t->pth = pthread_self();
  tls_self = t;
  /* Without the key (no key slots left) a Dummy handle is not freed at
   * thread exit: a leak, never a crash. */
  t->has_key = g_key_ok && pthread_setspecific(g_key, t) == 0;
  return t;
}

weft_thread *weft_thread_current(void) {
  weft_thread *t = tls_self;
  return WEFT_LIKELY(t != NULL) ? t : adopt();
}

uint64_t weft_thread_ident(const weft_thread *t) {
  WEFT_CHECK_HANDLE(t);
  /* The waiter count and the tid are the thread's mutable bookkeeping, not
   * part of what const promises the caller. */
  weft_thread *m = (weft_thread *)t;
  uint32_t tid = atomic_load_explicit(&m->tid, memory_order_acquire);
  if (WEFT_LIKELY(tid != 0)) return tid;
  atomic_fetch_add_explicit(&m->tid_waiters, 1, memory_order_seq_cst);
  while ((tid = atomic_load_explicit(&m->tid, memory_order_seq_cst)) == 0)
    weft__futex_wait(&m->tid, 0, WEFT_FOREVER, 0);
  atomic_fetch_sub_explicit(&m->tid_waiters, 1, memory_order_relaxed);
  return tid;
}

const char *weft_thread_name(const weft_thread *t) {
  WEFT_CHECK_HANDLE(t);
  return t->name;
}

bool weft_thread_is_alive(const weft_thread *t) {
  WEFT_CHECK_HANDLE(t);
  return !weft_event_is_set(&t->done);
}

void weft_thread_request_stop(weft_thread *t) {
  WEFT_CHECK_HANDLE(t);
  weft_event_set(&t->stop);
}

bool weft_thread_stop_requested(const weft_thread *t) {
  WEFT_CHECK_HANDLE(t);
  return weft_event_is_set(&t->stop);
}

bool weft_stop_requested(void) {
  /* A thread without a handle yet cannot have been asked to stop: nobody
   * could have named it. So no handle is made here. */
  weft_thread *t = tls_self;
  return t != NULL && weft_event_is_set(&t->stop);
}

int weft_thread_sleep_until(int64_t deadline_ns) {
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  weft_thread *t = tls_self;
  if (t == NULL) return weft_sleep_until(deadline_ns); /* see weft_stop_requested */
  /* A sleep, not a hand-off: no spinning. */
  int r = weft__event_wait(&t->stop, deadline_ns, 0);
  if (r == 0) return WEFT_ECANCELED;
  return r == WEFT_ETIMEDOUT ? 0 : r;
}
