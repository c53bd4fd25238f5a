/*
 * weft/thread.h: threads and synchronization (Python's threading module).
 *
 * weft_thread is an opaque, heap-allocated handle. The synchronization
 * objects (mutex, cond, event, semaphore, barrier, once) live in memory the
 * caller provides (init/fini), so that they can sit inside the caller's own
 * structs and inside memory shared between processes: pass WEFT_SYNC_PSHARED
 * to init for an object in a shared mapping. Their storage is opaque; its
 * size is fixed by this header and checked by the library at build time.
 *
 * Every blocking call takes an absolute deadline (see weft/common.h).
 *
 * Thread-safety of the sync objects: every call on an initialised object may
 * be made from any thread, and from any process that maps a
 * WEFT_SYNC_PSHARED object, concurrently with every other call on it, except
 * init and fini, which must not race with any other use of the object.
 * Using an object that was never initialised, or after fini, aborts with a
 * message that names the call (each object carries a tag).
 */
#ifndef WEFT_THREAD_H
#define WEFT_THREAD_H

#include "weft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- thread */

typedef struct weft_thread weft_thread;

/* A thread's body. Its return value is handed to weft_thread_join. */
typedef void *weft_thread_fn(void *arg);

typedef struct weft_thread_opts {
  const char *name;  /* NULL: "Thread-N" as Python names them. Copied. The
                      * kernel (/proc, gdb, top) sees the first 15 bytes. */
  size_t stack_size; /* 0: the system default; else rounded up to pages, and
                      * at least PTHREAD_STACK_MIN */
} weft_thread_opts;

/* Start fn(arg) on a new thread. opts may be NULL for the defaults.
 * Returns 0 and the handle in *out, or WEFT_EAGAIN (no resources for a
 * thread), WEFT_ENOMEM, WEFT_EINVAL (stack_size too large). On error *out is
 * untouched and fn never runs.
 * Ownership: the caller owns the handle and must either join or detach it
 * exactly once; arg is borrowed by the thread for its whole life.
 * Thread-safety: any thread. */
WEFT_API int weft_thread_start(weft_thread **out, weft_thread_fn *fn, void *arg,
                               const weft_thread_opts *opts);

/* Wait until t ends, then free the handle and store fn's return value in
 * *ret (ret may be NULL). Returns 0, WEFT_ETIMEDOUT (the handle stays
 * valid and may be joined again), WEFT_EDEADLK (t is the calling thread),
 * WEFT_EINVAL (bad deadline).
 * Misuse (aborts): t NULL, t already detached, t a handle of a thread that
 * weft did not start (weft_thread_current() of a foreign thread), t a
 * handle inherited from the parent in a fork()ed child (that thread does not
 * exist in the child).
 * Thread-safety: one joiner at a time per handle. */
WEFT_API int weft_thread_join(weft_thread *t, int64_t deadline_ns, void **ret);

/* Let t run on without a joiner: its resources are freed when it ends. The
 * handle must not be used after this call. Thread-safety: as join. */
WEFT_API void weft_thread_detach(weft_thread *t);

/* The calling thread's handle. Never NULL: a thread that weft did not start
 * gets a lasting handle of its own on first call ("MainThread" for the
 * process's initial thread, "Dummy-N" for others), freed when it exits.
 * Borrowed: do not join or detach it. Thread-safety: any thread. */
WEFT_API weft_thread *weft_thread_current(void);

/* The thread's kernel thread id (as Python's threading.get_native_id), unique
 * among live threads. Valid before the thread ends; after it ends the last
 * value is kept. Thread-safety: any thread. */
WEFT_API uint64_t weft_thread_ident(const weft_thread *t);

/* The thread's full name. Borrowed; valid while the handle is.
 * Thread-safety: any thread. */
WEFT_API const char *weft_thread_name(const weft_thread *t);

/* Whether t's function is still running. Thread-safety: any thread. */
WEFT_API bool weft_thread_is_alive(const weft_thread *t);

/* The stop token: ask t to stop. t sees it through weft_stop_requested() or
 * weft_thread_stop_requested(t), and its weft_thread_sleep_until returns
 * early. Nothing is forced: the thread stops when it looks. Idempotent.
 * Thread-safety: any thread. */
WEFT_API void weft_thread_request_stop(weft_thread *t);
WEFT_API bool weft_thread_stop_requested(const weft_thread *t);

/* Has a stop been requested for the calling thread? (The seed's exitFlag.)
 * Thread-safety: any thread; answers for the caller. */
WEFT_API bool weft_stop_requested(void);

/* Sleep until deadline_ns, or until a stop is requested for the calling
 * thread. Returns 0 after the full sleep, WEFT_ECANCELED when woken by a stop
 * request (also when one was pending on entry), WEFT_EINVAL for a bad
 * deadline. Thread-safety: any thread. */
WEFT_API int weft_thread_sleep_until(int64_t deadline_ns);

/* ------------------------------------------------------- sync: common flag */

/* The object lives in memory shared by several processes (MAP_SHARED). A
 * process-shared mutex is also robust: see weft_mutex_lock. */
#define WEFT_SYNC_PSHARED 0x1u

/* ----------------------------------------------------------------- mutex */

typedef struct weft_mutex {
  union { unsigned char bytes[64]; uint64_t align_; } opaque_;
} weft_mutex;

/* A recursive mutex (Python's RLock): the owner may lock it again and must
 * unlock it as many times. */
#define WEFT_MUTEX_RECURSIVE 0x100u

/* Initialise m with flags (WEFT_SYNC_PSHARED, WEFT_MUTEX_RECURSIVE).
 * Returns 0, WEFT_EINVAL (unknown flag), WEFT_ENOMEM/WEFT_EAGAIN.
 * Thread-safety: m must not be in use. */
WEFT_API int weft_mutex_init(weft_mutex *m, unsigned flags);
/* Release m's resources; m must be unlocked. Thread-safety: no other call
 * on m may run or follow. */
WEFT_API void weft_mutex_fini(weft_mutex *m);

/* Lock m, waiting until deadline_ns. Returns 0; WEFT_ETIMEDOUT (deadline 0:
 * m was busy); WEFT_EDEADLK (the caller already holds this non-recursive
 * mutex); WEFT_EINVAL (bad deadline). For a WEFT_SYNC_PSHARED mutex whose
 * holder died (process or thread ended without unlocking):
 * WEFT_EOWNERDEAD: the caller now holds m; the data it guards may be half
 * updated; repair it and call weft_mutex_consistent, or unlock without
 * doing so to mark m unusable; WEFT_ENOTRECOVERABLE: m is unusable.
 * Thread-safety: any thread. */
WEFT_API int weft_mutex_lock(weft_mutex *m, int64_t deadline_ns);
/* Unlock m. Returns 0 or WEFT_EPERM (the caller does not hold m).
 * Thread-safety: the holder. */
WEFT_API int weft_mutex_unlock(weft_mutex *m);
/* After WEFT_EOWNERDEAD: mark m usable again. 0 or WEFT_EINVAL.
 * Thread-safety: the holder. */
WEFT_API int weft_mutex_consistent(weft_mutex *m);

/* ------------------------------------------------------------- condition */

typedef struct weft_cond {
  union { unsigned char bytes[64]; uint64_t align_; } opaque_;
} weft_cond;

/* Initialise c / release its resources (flags: WEFT_SYNC_PSHARED, which the
 * mutex used with it must share). init returns 0 or WEFT_EINVAL.
 * Thread-safety: c must not be in use (see the top of this file). */
WEFT_API int weft_cond_init(weft_cond *c, unsigned flags);
WEFT_API void weft_cond_fini(weft_cond *c);
/* Atomically unlock m and wait for a signal, then relock m. Spurious
 * wake-ups happen: wait in a loop on your predicate. A recursive m must be
 * held exactly once. Returns 0, WEFT_ETIMEDOUT (m is relocked),
 * WEFT_EOWNERDEAD (as for weft_mutex_lock), WEFT_EPERM (caller does not
 * hold m), WEFT_EINVAL. Thread-safety: any thread that holds m. */
WEFT_API int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t deadline_ns);
/* Wake one / all waiters (Python's notify / notify_all). Holding the mutex
 * is not required. Thread-safety: any thread. */
WEFT_API void weft_cond_signal(weft_cond *c);
WEFT_API void weft_cond_broadcast(weft_cond *c);

/* ----------------------------------------------------------------- event */

typedef struct weft_event {
  union { unsigned char bytes[16]; uint64_t align_; } opaque_;
} weft_event;

/* Initialise e, cleared, / release it. init returns 0 or WEFT_EINVAL
 * (unknown flag). Thread-safety: e must not be in use. */
WEFT_API int weft_event_init(weft_event *e, unsigned flags);
WEFT_API void weft_event_fini(weft_event *e);
/* Set the flag and wake every waiter; clear it; read it. A set followed at
 * once by a clear still releases the threads that were waiting, as in
 * Python. Thread-safety: any thread. */
WEFT_API void weft_event_set(weft_event *e);
WEFT_API void weft_event_clear(weft_event *e);
WEFT_API bool weft_event_is_set(const weft_event *e);
/* Wait until the flag is set. Returns 0 (set), WEFT_ETIMEDOUT, WEFT_EINVAL.
 * Thread-safety: any thread. */
WEFT_API int weft_event_wait(weft_event *e, int64_t deadline_ns);

/* ------------------------------------------------------------- semaphore */

typedef struct weft_sem {
  union { unsigned char bytes[16]; uint64_t align_; } opaque_;
} weft_sem;

/* Initialise s with value / release it. max == 0: a plain counting
 * semaphore (Python's Semaphore); max > 0: a bounded one (BoundedSemaphore)
 * whose value may never exceed max. init returns 0 or WEFT_EINVAL (value >
 * max for a bounded one, value above INT32_MAX, unknown flag).
 * Thread-safety: s must not be in use. */
WEFT_API int weft_sem_init(weft_sem *s, unsigned flags, uint32_t value, uint32_t max);
WEFT_API void weft_sem_fini(weft_sem *s);
/* Take one unit, waiting until deadline_ns. 0, WEFT_ETIMEDOUT, WEFT_EINVAL.
 * Thread-safety: any thread. */
WEFT_API int weft_sem_acquire(weft_sem *s, int64_t deadline_ns);
/* Give back n units and wake waiters (n == 0 does nothing). Returns 0, or
 * WEFT_EINVAL when a bounded semaphore would go above max or the value would
 * pass INT32_MAX (nothing is released then). Thread-safety: any thread. */
WEFT_API int weft_sem_release(weft_sem *s, uint32_t n);
/* The current value (a snapshot). Thread-safety: any thread. */
WEFT_API uint32_t weft_sem_value(const weft_sem *s);

/* --------------------------------------------------------------- barrier */

typedef struct weft_barrier {
  union { unsigned char bytes[32]; uint64_t align_; } opaque_;
} weft_barrier;

/* Initialise b for parties threads (1 to 65535) / release it. init returns
 * 0 or WEFT_EINVAL. Thread-safety: b must not be in use. */
WEFT_API int weft_barrier_init(weft_barrier *b, unsigned flags, unsigned parties);
WEFT_API void weft_barrier_fini(weft_barrier *b);
/* Wait until parties threads have called wait. Returns 0 and, if index is
 * not NULL, the caller's arrival index 0..parties-1 (Python's return
 * value); WEFT_ETIMEDOUT: the caller timed out and broke the barrier;
 * WEFT_EBROKEN: the barrier was broken (a timeout, abort) before or while
 * waiting. A broken barrier stays broken until weft_barrier_reset.
 * Thread-safety: any thread. */
WEFT_API int weft_barrier_wait(weft_barrier *b, int64_t deadline_ns, unsigned *index);
/* Break the barrier: current and future waiters get WEFT_EBROKEN.
 * Thread-safety: any thread. */
WEFT_API void weft_barrier_abort(weft_barrier *b);
/* Return b to its initial, unbroken state; current waiters get
 * WEFT_EBROKEN. Thread-safety: any thread. */
WEFT_API void weft_barrier_reset(weft_barrier *b);

/* ------------------------------------------------------------------ once */

typedef struct weft_once {
  uint32_t opaque_;
} weft_once;
#define WEFT_ONCE_INIT {0}

/* Run fn(arg) exactly once over all calls on o; callers that arrive while
 * it runs wait for it to finish. fn must not call weft_once_call on the same
 * o (it would wait forever). Works in shared memory across processes too,
 * but a process that dies inside fn leaves o waiting forever.
 * Thread-safety: any thread. */
WEFT_API void weft_once_call(weft_once *o, void (*fn)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_THREAD_H */
