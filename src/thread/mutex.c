/*
 * weft_mutex and weft_cond: thin wrappers over the pthread objects, kept in
 * the caller's memory (the public opaque storage), with the error rules of
 * weft/thread.h.
 *
 * Why pthread and not our own futex lock: glibc's mutex already does what
 * Python's Lock/RLock and a process-shared lock need, and it does the hard
 * parts that a home-made lock would get wrong: owner checks (a non-recursive
 * mutex is PTHREAD_MUTEX_ERRORCHECK, so relocking reports EDEADLK instead of
 * hanging and a stranger's unlock reports EPERM), recursion, and robustness
 * (the kernel's robust-futex list hands a dead owner's lock to the next
 * locker with EOWNERDEAD). Condition variables must pair with the mutex, so
 * they are pthread's too, on CLOCK_MONOTONIC so that weft's deadlines apply
 * directly.
 *
 * A WEFT_SYNC_PSHARED mutex is PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST:
 * a lock in shared memory whose holder can be killed must not hang the
 * survivors. A private mutex is not robust: a thread that ends holding one
 * is a bug, as in Python.
 *
 * Locking: the objects are the locks; this file keeps no state of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <time.h>

#include "common/assert.h"
#include "thread/sync.h"
#include "weft/thread.h"

typedef struct __attribute__((may_alias)) mutex_impl {
  pthread_mutex_t pm; /* the real mutex; guards what the caller says */
  uint32_t tag;       /* WEFT__TAG_MUTEX | pshared bit; set by init */
  uint32_t flags;     /* the flags given to init */
} mutex_impl;

typedef struct __attribute__((may_alias)) cond_impl {
  pthread_cond_t pc; /* the real condition variable (CLOCK_MONOTONIC) */
  uint32_t tag;      /* WEFT__TAG_COND | pshared bit; set by init */
} cond_impl;

_Static_assert(sizeof(mutex_impl) <= sizeof(weft_mutex), "weft_mutex storage too small");
_Static_assert(_Alignof(mutex_impl) <= _Alignof(weft_mutex), "weft_mutex alignment");
_Static_assert(sizeof(cond_impl) <= sizeof(weft_cond), "weft_cond storage too small");
_Static_assert(_Alignof(cond_impl) <= _Alignof(weft_cond), "weft_cond alignment");

#define MTX(m) ((mutex_impl *)(void *)(m))
#define CND(c) ((cond_impl *)(void *)(c))

static struct timespec ts_of(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  return ts;
}

#ifndef WEFT_TSAN
/* Lock with an absolute CLOCK_MONOTONIC deadline (0: already due, so it
 * never sleeps, but unlike trylock it still reports EDEADLK for an
 * error-checking mutex that the caller holds). */
static int clock_lock(mutex_impl *mi, int64_t deadline_ns) {
  struct timespec ts = ts_of(deadline_ns);
  return pthread_mutex_clocklock(&mi->pm, CLOCK_MONOTONIC, &ts);
}
#else
/* ThreadSanitizer builds only. GCC 12's TSan does not intercept
 * pthread_mutex_clocklock, so it would not see the lock taken and would
 * report races on everything the mutex guards; and its
 * pthread_mutex_timedlock interceptor ignores EOWNERDEAD, so after a dead
 * owner it would think the lock is not ours and report our unlock. So:
 *  - a non-robust mutex uses the intercepted pthread_mutex_timedlock on
 *    CLOCK_REALTIME, retrying if the wall clock jumped before the monotonic
 *    deadline passed;
 *  - a robust (WEFT_SYNC_PSHARED) one polls pthread_mutex_trylock, whose
 *    interceptor does handle EOWNERDEAD, with naps of up to 1 ms. trylock
 *    has the glibc flaw described in weft_mutex_lock (it leaves a
 *    not-recoverable mutex locked), so we first look at glibc's owner
 *    field, which holds PTHREAD_MUTEX_NOTRECOVERABLE (INT_MAX - 1, glibc's
 *    private constant since robust mutexes exist) once the mutex is
 *    unusable, and never changes back. A mutex that becomes unusable between
 *    that look and the trylock can still be caught by the flaw: a narrow
 *    window, in sanitizer builds only. */
#define GLIBC_MUTEX_NOTRECOVERABLE (INT_MAX - 1)
static int clock_lock(mutex_impl *mi, int64_t deadline_ns) {
  if (mi->flags & WEFT_SYNC_PSHARED) {
    int64_t nap_ns = 20000;
    for (;;) {
      if (__atomic_load_n(&mi->pm.__data.__owner, __ATOMIC_RELAXED) == GLIBC_MUTEX_NOTRECOVERABLE)
        return ENOTRECOVERABLE;
      int r = pthread_mutex_trylock(&mi->pm);
      if (r != EBUSY) return r;
      int64_t left = weft_deadline_remaining_ns(deadline_ns);
      if (left == 0) return ETIMEDOUT;
      weft_sleep_until(weft_deadline_in_ns(left < nap_ns ? left : nap_ns));
      if (nap_ns < 1000000) nap_ns *= 2;
    }
  }
  for (;;) {
    struct timespec ts = {0, 0};
    if (deadline_ns > 0) {
      int64_t left = weft_deadline_remaining_ns(deadline_ns);
      clock_gettime(CLOCK_REALTIME, &ts);
      ts = ts_of((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + left);
    }
    int r = pthread_mutex_timedlock(&mi->pm, &ts);
    if (r != ETIMEDOUT || weft_deadline_remaining_ns(deadline_ns) == 0) return r;
  }
}
#endif

int weft_mutex_init(weft_mutex *m, unsigned flags) {
  WEFT_CHECK_HANDLE(m);
  if (flags & ~(WEFT_SYNC_PSHARED | WEFT_MUTEX_RECURSIVE)) return WEFT_EINVAL;
  mutex_impl *mi = MTX(m);
  pthread_mutexattr_t a;
  int r = pthread_mutexattr_init(&a);
  if (r) return -r;
  r = pthread_mutexattr_settype(&a, (flags & WEFT_MUTEX_RECURSIVE) ? PTHREAD_MUTEX_RECURSIVE
                                                                   : PTHREAD_MUTEX_ERRORCHECK);
  if (!r && (flags & WEFT_SYNC_PSHARED)) {
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r) r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  }
  if (!r) r = pthread_mutex_init(&mi->pm, &a);
  pthread_mutexattr_destroy(&a);
  if (r) return -r;
  mi->flags = flags;
  mi->tag = WEFT__TAG_MUTEX | ((flags & WEFT_SYNC_PSHARED) ? WEFT__TAG_PSHARED : 0);
  return 0;
}

void weft_mutex_fini(weft_mutex *m) {
  mutex_impl *mi = MTX(m);
  WEFT__CHECK_TAG(m, mi, WEFT__TAG_MUTEX, "mutex");
  /* glibc reports EBUSY for a locked non-robust mutex; a robust one is not
   * checked (its owner may be a dead process). */
  if (pthread_mutex_destroy(&mi->pm) == EBUSY)
    weft__misuse(__func__, "the mutex is locked");
  mi->tag = 0;
}

int weft_mutex_lock(weft_mutex *m, int64_t deadline_ns) {
  mutex_impl *mi = MTX(m);
  WEFT__CHECK_TAG(m, mi, WEFT__TAG_MUTEX, "mutex");
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  int r;
  if (deadline_ns == WEFT_FOREVER) {
    r = pthread_mutex_lock(&mi->pm);
  } else if (deadline_ns == 0 && (mi->flags & WEFT_SYNC_PSHARED)) {
    /* Not trylock for a robust mutex: glibc's trylock on a mutex that is
     * not recoverable returns ENOTRECOVERABLE but leaves it locked by the
     * caller (its "oldval == id" test can never hold there), after which
     * every lock says EDEADLK. The timed lock unlocks it again. */
    r = clock_lock(mi, 0);
  } else if (deadline_ns == 0) {
    r = pthread_mutex_trylock(&mi->pm);
    /* trylock says EBUSY both when another thread holds an error-checking
     * mutex and when the caller does; the contract tells them apart
     * (ETIMEDOUT vs EDEADLK). Only on this slow path, ask a lock whose
     * deadline is already due: it checks the owner first. */
    if (r == EBUSY) r = (mi->flags & WEFT_MUTEX_RECURSIVE) ? ETIMEDOUT : clock_lock(mi, 0);
  } else {
    r = clock_lock(mi, deadline_ns);
  }
  return -r;
}

int weft_mutex_unlock(weft_mutex *m) {
  mutex_impl *mi = MTX(m);
  WEFT__CHECK_TAG(m, mi, WEFT__TAG_MUTEX, "mutex");
  return -pthread_mutex_unlock(&mi->pm);
}

int weft_mutex_consistent(weft_mutex *m) {
  mutex_impl *mi = MTX(m);
  WEFT__CHECK_TAG(m, mi, WEFT__TAG_MUTEX, "mutex");
  return -pthread_mutex_consistent(&mi->pm);
}

int weft_cond_init(weft_cond *c, unsigned flags) {
  WEFT_CHECK_HANDLE(c);
  if (flags & ~WEFT_SYNC_PSHARED) return WEFT_EINVAL;
  cond_impl *ci = CND(c);
  pthread_condattr_t a;
  int r = pthread_condattr_init(&a);
  if (r) return -r;
  r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  if (!r && (flags & WEFT_SYNC_PSHARED)) r = pthread_condattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (!r) r = pthread_cond_init(&ci->pc, &a);
  pthread_condattr_destroy(&a);
  if (r) return -r;
  ci->tag = WEFT__TAG_COND | ((flags & WEFT_SYNC_PSHARED) ? WEFT__TAG_PSHARED : 0);
  return 0;
}

void weft_cond_fini(weft_cond *c) {
  cond_impl *ci = CND(c);
  WEFT__CHECK_TAG(c, ci, WEFT__TAG_COND, "condition");
  pthread_cond_destroy(&ci->pc);
  ci->tag = 0;
}

int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t deadline_ns) {
  cond_impl *ci = CND(c);
  mutex_impl *mi = MTX(m);
  WEFT__CHECK_TAG(c, ci, WEFT__TAG_COND, "condition");
  WEFT__CHECK_TAG(m, mi, WEFT__TAG_MUTEX, "mutex");
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (deadline_ns == WEFT_FOREVER) return -pthread_cond_wait(&ci->pc, &mi->pm);
  /* The condition runs on CLOCK_MONOTONIC (see init), so the deadline is
   * passed through as is; 0 releases and retakes m, then times out, as
   * Python's cond.wait(0) does. */
  struct timespec ts = ts_of(deadline_ns);
  return -pthread_cond_timedwait(&ci->pc, &mi->pm, &ts);
}

void weft_cond_signal(weft_cond *c) {
  cond_impl *ci = CND(c);
  WEFT__CHECK_TAG(c, ci, WEFT__TAG_COND, "condition");
  pthread_cond_signal(&ci->pc);
}

void weft_cond_broadcast(weft_cond *c) {
  cond_impl *ci = CND(c);
  WEFT__CHECK_TAG(c, ci, WEFT__TAG_COND, "condition");
  pthread_cond_broadcast(&ci->pc);
}
