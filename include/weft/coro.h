/*
 * weft/coro.h: coroutines (gevent's greenlets, Go's goroutines on one
 * thread), the hub that runs them, channels, coroutine-aware sync objects,
 * cooperative I/O and offload of blocking calls to a thread pool.
 *
 * Every thread has its own hub, started by the first coroutine call made on
 * that thread. The thread's own stack is the hub's "main" coroutine: it can
 * spawn, join, sleep and use channels like any other. A coroutine runs until
 * it blocks (join, sleep, channel, event, I/O, offload, yield); the hub then
 * runs the next ready one, polling I/O and timers at least every 64
 * dispatches so busy coroutines cannot starve them. Nothing is preemptive.
 *
 * Rules that hold for the whole header:
 *  - Every blocking call takes an absolute deadline (CLOCK_MONOTONIC ns,
 *    WEFT_FOREVER, or 0 for "try once") and returns WEFT_ETIMEDOUT when it
 *    passes. A deadline below WEFT_FOREVER is WEFT_EINVAL.
 *  - Cancellation: once a coroutine is cancelled (weft_coro_cancel, or its
 *    group's cancel), the blocking call it is in and every later blocking
 *    call it makes return WEFT_ECANCELED at once, so it can clean up and
 *    return. Calls with deadline 0 still try their non-blocking step.
 *  - Coroutines, groups, channels and the sync objects belong to the hub of
 *    the thread that made them; using one from another thread is misuse and
 *    aborts naming the call. Offload and weft_coro_future_wait are the
 *    bridges to other threads.
 *  - weft_coro_spawn switches to the new coroutine at once (the spawner
 *    goes to the back of the ready queue, as in libdill): a spawn is a
 *    switch point, and a loop that spawns many short coroutines never holds
 *    more of them at once than it needs. weft_coro_opts.deferred gives
 *    gevent's timing instead (no switch at spawn).
 *
 * Thread-safety: as said above, every call acts on the calling thread's hub
 * and on objects of that hub, unless its contract says otherwise.
 */
#ifndef WEFT_CORO_H
#define WEFT_CORO_H

#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "weft/common.h"
#include "weft/executor.h"
#include "weft/future.h"

struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ coroutines */

typedef struct weft_coro weft_coro;
typedef struct weft_coro_group weft_coro_group;

/* A coroutine body. Its return value is the status that weft_coro_join
 * reports. */
typedef int weft_coro_fn(void *arg);

/* Default stack: 256 KiB of address space, committed page by page as it is
 * touched, with an inaccessible guard page below it. */
#define WEFT_CORO_STACK_DEFAULT ((size_t)256 * 1024)
/* Smallest stack accepted (smaller requests are rounded up to it). */
#define WEFT_CORO_STACK_MIN ((size_t)16 * 1024)

typedef struct weft_coro_opts {
  const char *name;        /* copied (at most 31 bytes kept); NULL: "coro-<id>" */
  size_t stack_size;       /* 0: WEFT_CORO_STACK_DEFAULT; rounded up to pages */
  weft_coro_group *group;  /* spawn into this group (see below); NULL: none */
  bool no_guard_page;      /* a stack without the guard page: a stack
                            * overflow then goes undetected, but such
                            * stacks do not count against the kernel's
                            * vm.max_map_count (below), for programs that
                            * keep more than ~32 k coroutines alive */
  bool deferred;           /* start the coroutine when the spawner next
                            * blocks or yields (gevent.spawn's timing), not
                            * at once; a deferred coroutine cancelled before
                            * it starts never runs fn (status WEFT_ECANCELED) */
} weft_coro_opts;

/* Spawn fn(arg) as a new coroutine on the calling thread's hub (started on
 * first use) and run it at once, until it blocks or yields; the caller
 * resumes after the coroutines ahead of it in the ready queue (with
 * opts->deferred, the new coroutine joins the back of the ready queue
 * instead and the caller goes on). file and
 * line say where it was spawned (for weft_hub_dump and the stack-overflow
 * message); the weft_coro_spawn macro fills them in.
 * With out non-NULL, *out is a handle the caller owns (join it, then
 * weft_coro_release it); with out NULL the coroutine is detached and frees
 * itself when it ends. opts may be NULL.
 * Returns 0; WEFT_ENOMEM (no memory or no address space for the stack: the
 * kernel's vm.max_map_count, 65530 by default, allows about 32 k guarded
 * stacks at once, as each is two mappings; see no_guard_page);
 * WEFT_EINVAL (stack_size above 1 GiB); WEFT_ECANCELED (the caller is a
 * cancelled coroutine: nothing was spawned). Misuse (aborts): fn NULL, a
 * group of another thread. Thread-safety: any thread, on its own hub. */
WEFT_API int weft_coro_spawn_at(weft_coro **out, weft_coro_fn *fn, void *arg,
                                const weft_coro_opts *opts, const char *file, int line);
#define weft_coro_spawn(out, fn, arg, opts) \
  weft_coro_spawn_at((out), (fn), (arg), (opts), __FILE__, __LINE__)

/* Wait until c has returned, then give its status (fn's return value) in
 * *status (may be NULL). Returns 0, WEFT_ETIMEDOUT, WEFT_ECANCELED (the
 * caller was cancelled), WEFT_EDEADLK (c is the caller itself), WEFT_EINVAL
 * (bad deadline). Joining a finished coroutine returns at once; any number
 * of coroutines may join the same one. Misuse (aborts): c NULL or of
 * another thread. */
WEFT_API int weft_coro_join(weft_coro *c, int64_t deadline_ns, int *status);

/* Ask c to stop: its current and later blocking calls return
 * WEFT_ECANCELED. c itself decides when to return. Cancelling the caller
 * itself is allowed (its next blocking call returns WEFT_ECANCELED).
 * Returns 0, or WEFT_EALREADY when c has already finished. */
WEFT_API int weft_coro_cancel(weft_coro *c);

/* Drop the handle that weft_coro_spawn gave. c may still be running: it
 * then goes on, detached, and frees itself when it ends. NULL is a no-op. */
WEFT_API void weft_coro_release(weft_coro *c);

/* Let every other ready coroutine run once, then continue (also polls I/O
 * and timers without blocking). Returns 0, or WEFT_ECANCELED when the
 * caller was cancelled (it has still yielded). */
WEFT_API int weft_coro_yield(void);

/* Sleep until deadline_ns, letting other coroutines run. Returns 0 at the
 * deadline, WEFT_ECANCELED when cancelled first, WEFT_EINVAL for a bad
 * deadline. Timers have no range limit: any deadline up to INT64_MAX. */
WEFT_API int weft_coro_sleep_until(int64_t deadline_ns);

/* The running coroutine's handle (borrowed; the thread's main coroutine
 * too). Starts the hub if needed; never NULL. */
WEFT_API weft_coro *weft_coro_self(void);

/* c's name, borrowed from c (valid while c's handle is held or while c
 * runs). Misuse (aborts): c NULL. */
WEFT_API const char *weft_coro_name(const weft_coro *c);

/* Whether the running coroutine has been cancelled. False outside a hub. */
WEFT_API bool weft_coro_cancelled(void);

/* ---------------------------------------------------------------- the hub */

/* Wait until every coroutine of this thread's hub other than the caller
 * has finished (gevent.wait() with no arguments). Returns 0 at once when
 * there are none; WEFT_ETIMEDOUT; WEFT_ECANCELED; WEFT_EINVAL. */
WEFT_API int weft_hub_wait(int64_t deadline_ns);

/* Whether the calling thread has a hub and the caller runs on it: true on
 * a thread that has made any coroutine call (its main coroutine included),
 * false on every other thread. Never starts a hub. Thread-safety: any
 * thread. */
WEFT_API bool weft_hub_active(void);

/* Write one line per coroutine of this thread's hub to out: id, name,
 * state (running, ready, blocked on what and for how long, finished),
 * whether it was cancelled, and where it was spawned; under each, its
 * backtrace ("#n address module+offset [symbol+offset]", the offset being
 * what addr2line -e module takes), taken on the coroutine's own stack by
 * switching to it and straight back (it stays suspended; nothing it waits
 * on is touched). A thread without a hub writes one line saying so.
 * Returns the number of coroutines listed. Thread-safety: the hub's own
 * thread. */
WEFT_API size_t weft_hub_dump(FILE *out);

/* What the watchdog reports about a stall. */
typedef struct weft_hub_stall {
  int tid;                 /* the hub's thread (gettid) */
  uint64_t coro_id;        /* the coroutine that runs; 0: the thread's main one */
  char coro_name[32];
  const char *spawn_file;  /* where it was spawned ("(thread)" for main) */
  int spawn_line;
  int64_t blocked_ns;      /* how long the hub has not switched, so far */
} weft_hub_stall;

typedef void weft_hub_stall_fn(const weft_hub_stall *stall, void *ud);

/* Watch this thread's hub (gevent's monitor thread): whenever one
 * coroutine keeps the hub from switching for threshold_ns or longer (a
 * blocking call that was not made cooperative, a long computation), call
 * fn(stall, ud) once for that stall, on weft's watchdog thread (one per
 * process, started on first use), while the coroutine is still running.
 * fn NULL prints "weft watchdog: coroutine "name" (#id, spawned at f:l)
 * has kept the hub of thread T from switching for X ms" to stderr. Time the
 * hub spends waiting in its poller is not a stall. Calling again replaces
 * the threshold and callback; threshold_ns 0 stops watching. Costs one
 * branch per switch when off and a few stores per switch when on. Returns
 * 0, WEFT_EINVAL (negative threshold), WEFT_ENOMEM, or -errno if the thread
 * cannot start. After fork the child's hub is not watched until this is
 * called again. Thread-safety: the hub's own thread; fn must be
 * thread-safe and must not call coroutine functions (it runs on another
 * thread). */
WEFT_API int weft_hub_watchdog(int64_t threshold_ns, weft_hub_stall_fn *fn, void *ud);

/* Number of coroutines of this thread's hub that have not finished (the
 * main coroutine not counted). 0 on a thread without a hub. */
WEFT_API size_t weft_hub_count(void);

/* ----------------------------------------------------------------- groups */

/* A structured group: coroutines spawned into it (weft_coro_opts.group) are
 * joined or cancelled together. Members need no handle of their own. */

/* Create an empty group. Returns 0 or WEFT_ENOMEM. */
WEFT_API int weft_coro_group_create(weft_coro_group **out);

/* Wait until every member has finished (members spawned while waiting
 * included). Returns 0, WEFT_ETIMEDOUT, WEFT_ECANCELED (the caller was
 * cancelled; the members go on), WEFT_EINVAL. */
WEFT_API int weft_coro_group_join(weft_coro_group *g, int64_t deadline_ns);

/* Cancel every member that has not finished. Members spawned later are not
 * cancelled. */
WEFT_API void weft_coro_group_cancel(weft_coro_group *g);

/* Members that have not finished. */
WEFT_API size_t weft_coro_group_count(const weft_coro_group *g);

/* Cancel the members still running, wait for all of them to finish (this
 * wait cannot be cancelled: a group never outlives its members), and free
 * g. NULL is a no-op. Misuse (aborts): called by a member of g. */
WEFT_API void weft_coro_group_destroy(weft_coro_group *g);

/* --------------------------------------------------------------- channels */

/* Go's channels between coroutines of one hub: elements of a fixed size
 * copied in and out. Capacity 0 is unbuffered: a send completes only when a
 * receiver takes the element. */
typedef struct weft_chan weft_chan;

/* Create a channel of elements of elem_size bytes (1 to 65536) that holds
 * up to capacity elements (0: unbuffered; at most 1 << 30). Returns 0,
 * WEFT_EINVAL, WEFT_ENOMEM. */
WEFT_API int weft_chan_create(weft_chan **out, size_t elem_size, size_t capacity);

/* Send a copy of elem (elem_size bytes). Returns 0 once a receiver took it
 * (unbuffered) or it is in the buffer; WEFT_EPIPE when the channel is
 * closed (also when it is closed while the sender waits); WEFT_ETIMEDOUT;
 * WEFT_ECANCELED; WEFT_EINVAL. */
WEFT_API int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline_ns);

/* Receive an element into elem (elem_size bytes). Elements buffered before
 * a close are still received; then WEFT_EPIPE. Also WEFT_ETIMEDOUT,
 * WEFT_ECANCELED, WEFT_EINVAL. */
WEFT_API int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline_ns);

/* Close: no more sends. Waiting senders and (once the buffer is empty)
 * receivers return WEFT_EPIPE. Closing twice is harmless. */
WEFT_API void weft_chan_close(weft_chan *ch);

/* Elements in the buffer now. */
WEFT_API size_t weft_chan_len(const weft_chan *ch);

/* Free ch. Misuse (aborts): a coroutine still waits on it. NULL is a
 * no-op. */
WEFT_API void weft_chan_destroy(weft_chan *ch);

#define WEFT_CHAN_SEND 1
#define WEFT_CHAN_RECV 2

/* One arm of a select. */
typedef struct weft_chan_op {
  weft_chan *chan; /* NULL: this arm is ignored */
  int op;          /* WEFT_CHAN_SEND or WEFT_CHAN_RECV */
  void *elem;      /* what to send, or where to receive */
} weft_chan_op;

/* Go's select: wait until one of the n operations can complete, complete
 * exactly that one and set *index to its position. When several are ready
 * at once, one is picked at random (no arm starves). Returns the chosen
 * operation's result (0, or WEFT_EPIPE for a closed channel: that arm is
 * ready too), WEFT_ETIMEDOUT (deadline 0 is Go's default: arm),
 * WEFT_ECANCELED, WEFT_EINVAL (bad deadline, n above 1024, a bad op code).
 * index may be NULL. */
WEFT_API int weft_chan_select(weft_chan_op *ops, size_t n, int64_t deadline_ns,
                              size_t *index);

/* ------------------------------------------------------- sync for coroutines */

/* gevent.event.Event, gevent.lock.Semaphore and gevent.queue.JoinableQueue:
 * the same objects as weft's thread ones, but a wait blocks only the
 * calling coroutine. */
typedef struct weft_coro_event weft_coro_event;
typedef struct weft_coro_sem weft_coro_sem;
typedef struct weft_coro_queue weft_coro_queue;

/* Create an event, initially clear. Returns 0 or WEFT_ENOMEM. */
WEFT_API int weft_coro_event_create(weft_coro_event **out);
/* Set: wake every waiter; later waits return at once until cleared. */
WEFT_API void weft_coro_event_set(weft_coro_event *e);
WEFT_API void weft_coro_event_clear(weft_coro_event *e);
WEFT_API bool weft_coro_event_is_set(const weft_coro_event *e);
/* Wait until set. Returns 0, WEFT_ETIMEDOUT, WEFT_ECANCELED, WEFT_EINVAL. */
WEFT_API int weft_coro_event_wait(weft_coro_event *e, int64_t deadline_ns);
/* Free e. Misuse (aborts): a coroutine waits on it. NULL is a no-op. */
WEFT_API void weft_coro_event_destroy(weft_coro_event *e);

/* Create a counting semaphore holding value permits. Returns 0 or
 * WEFT_ENOMEM. */
WEFT_API int weft_coro_sem_create(weft_coro_sem **out, unsigned value);
/* Take a permit, waiting for one (waiters are served in FIFO order).
 * Returns 0, WEFT_ETIMEDOUT, WEFT_ECANCELED, WEFT_EINVAL. */
WEFT_API int weft_coro_sem_acquire(weft_coro_sem *s, int64_t deadline_ns);
/* Give a permit back (to the first waiter, if any). Returns 0, or
 * WEFT_EOVERFLOW at UINT_MAX permits. */
WEFT_API int weft_coro_sem_release(weft_coro_sem *s);
/* Permits available now. */
WEFT_API unsigned weft_coro_sem_value(const weft_coro_sem *s);
/* Free s. Misuse (aborts): a coroutine waits on it. NULL is a no-op. */
WEFT_API void weft_coro_sem_destroy(weft_coro_sem *s);

/* Create a FIFO queue of pointers holding at most maxsize items (0:
 * unbounded). Returns 0 or WEFT_ENOMEM. */
WEFT_API int weft_coro_queue_create(weft_coro_queue **out, size_t maxsize);
/* Put item (the pointer is stored, never dereferenced), waiting for room.
 * Returns 0, WEFT_ETIMEDOUT (deadline 0: queue.Full), WEFT_ECANCELED,
 * WEFT_ENOMEM, WEFT_EINVAL. */
WEFT_API int weft_coro_queue_put(weft_coro_queue *q, void *item, int64_t deadline_ns);
/* Take the oldest item into *item, waiting for one. Returns 0,
 * WEFT_ETIMEDOUT (deadline 0: queue.Empty), WEFT_ECANCELED, WEFT_EINVAL. */
WEFT_API int weft_coro_queue_get(weft_coro_queue *q, void **item, int64_t deadline_ns);
/* One got item is processed (queue.task_done). Returns 0, or WEFT_EINVAL
 * when called more often than items were put. */
WEFT_API int weft_coro_queue_task_done(weft_coro_queue *q);
/* Wait until every item put has been marked done (queue.join). Returns 0,
 * WEFT_ETIMEDOUT, WEFT_ECANCELED, WEFT_EINVAL. */
WEFT_API int weft_coro_queue_join(weft_coro_queue *q, int64_t deadline_ns);
/* Items in the queue now. */
WEFT_API size_t weft_coro_queue_len(const weft_coro_queue *q);
/* Free q (items still in it are dropped, not freed: they are the caller's
 * pointers). Misuse (aborts): a coroutine waits on it. NULL is a no-op. */
WEFT_API void weft_coro_queue_destroy(weft_coro_queue *q);

/* ------------------------------------------------------- cooperative I/O */

/* Each call moves bytes like its POSIX namesake but, instead of blocking
 * the thread, parks the calling coroutine until the descriptor is ready.
 * The descriptor is registered with the hub's epoll once, on its first
 * wait, and stays registered until weft_coro_close or weft_coro_fd_forget.
 * weft never changes O_NONBLOCK on a descriptor (other processes may share
 * it): sockets get MSG_DONTWAIT per call; on a blocking pipe or terminal a
 * call first waits for readiness and then moves at most PIPE_BUF bytes, so
 * it does not block; regular files, which are always "ready", are read and
 * written directly. Results are a count >= 0 or a negative code: -errno
 * from the system call, WEFT_ETIMEDOUT, WEFT_ECANCELED, WEFT_EBADF when the
 * descriptor is closed with weft_coro_close while the call waits, and
 * WEFT_EINVAL for a bad deadline. */

#define WEFT_CORO_READABLE 0x1u
#define WEFT_CORO_WRITABLE 0x2u

/* Wait until fd is readable and/or writable (events, a mask of the two;
 * either one ready ends the wait). An error or hang-up on fd counts as
 * ready. Returns 0 or a code as above. */
WEFT_API int weft_coro_wait_fd(int fd, unsigned events, int64_t deadline_ns);

/* read(2), write(2), recv(2) and send(2), cooperatively: at most len
 * bytes, the count moved (0 from read/recv: end of file) or a code as
 * above. send never raises SIGPIPE (MSG_NOSIGNAL): a closed peer is
 * -EPIPE. recv/send flags are passed on (MSG_DONTWAIT is added). */
WEFT_API ssize_t weft_coro_read(int fd, void *buf, size_t len, int64_t deadline_ns);
WEFT_API ssize_t weft_coro_write(int fd, const void *buf, size_t len, int64_t deadline_ns);
WEFT_API ssize_t weft_coro_recv(int fd, void *buf, size_t len, int flags,
                                int64_t deadline_ns);
WEFT_API ssize_t weft_coro_send(int fd, const void *buf, size_t len, int flags,
                                int64_t deadline_ns);

/* Write all len bytes (several writes if needed). Returns len, or a code
 * as above; on an error some bytes may have been written. */
WEFT_API ssize_t weft_coro_write_all(int fd, const void *buf, size_t len,
                                     int64_t deadline_ns);

/* accept4(2) on a listening socket. Returns the new descriptor (>= 0) or a
 * code as above. flags as accept4 (SOCK_NONBLOCK, SOCK_CLOEXEC). */
WEFT_API int weft_coro_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
                              int64_t deadline_ns);

/* connect(2), waiting for the handshake cooperatively. Returns 0 or a code
 * as above (-ECONNREFUSED and the like from the handshake). A blocking
 * socket is switched to O_NONBLOCK for the handshake only and switched
 * back (a socket being connected is not yet shared with anyone). */
WEFT_API int weft_coro_connect(int fd, const struct sockaddr *addr, socklen_t addrlen,
                               int64_t deadline_ns);

/* Forget fd and close it: coroutines waiting on fd wake with WEFT_EBADF,
 * its registration is removed, then close(2). Returns 0 or -errno from
 * close. Use it (or weft_coro_fd_forget before close) for every descriptor
 * the hub has waited on: a plain close leaves the hub believing the number
 * is registered, and a new descriptor that reuses it would never be woken. */
WEFT_API int weft_coro_close(int fd);

/* As weft_coro_close without the close: wake the waiters with WEFT_EBADF
 * and drop the registration, for a descriptor about to be closed by other
 * means. A no-op for a descriptor the hub does not know. */
WEFT_API void weft_coro_fd_forget(int fd);

/* ------------------------------------------------- offload to threads */

/* Wait for f to finish without blocking the hub (the future may be
 * finished by any thread). Returns 0 once f is done, failed or cancelled
 * (read it with weft_future_result(f, 0, ...)), WEFT_ETIMEDOUT,
 * WEFT_ECANCELED, WEFT_EINVAL, WEFT_ENOMEM. f stays the caller's. */
WEFT_API int weft_coro_future_wait(weft_future *f, int64_t deadline_ns);

/* A function to run on a thread pool. */
typedef int weft_offload_fn(void *arg);

/* Run fn(arg) on the thread executor ex (NULL: weft's own offload pool of
 * 8 threads, made on first use) while the calling coroutine waits and the
 * hub serves the others (gevent's ThreadPool.apply). *result (may be NULL)
 * receives fn's return value. Returns 0; WEFT_ETIMEDOUT / WEFT_ECANCELED:
 * if fn had not started it never runs; if it was running the call waits
 * for it to end (a thread cannot be stopped, and fn may use arg) and *result
 * is set; WEFT_ESHUTDOWN (ex is shut down); WEFT_ENOMEM; WEFT_EINVAL.
 * To abandon a running call instead, submit a task whose argument is
 * copied (weft_executor_submit) and weft_coro_future_wait its future. */
WEFT_API int weft_coro_offload(weft_executor *ex, weft_offload_fn *fn, void *arg,
                               int64_t deadline_ns, int *result);

/* getaddrinfo(3) run on the offload pool, so a slow resolver does not stop
 * the hub. Arguments as getaddrinfo (they are copied); *res is freed with
 * freeaddrinfo. Returns 0; a getaddrinfo EAI_* code turned into a weft
 * code: WEFT_ENOENT (EAI_NONAME, EAI_NODATA), WEFT_EAGAIN (EAI_AGAIN),
 * WEFT_EINVAL (EAI_BADFLAGS, EAI_FAMILY, EAI_SOCKTYPE, EAI_SERVICE),
 * WEFT_ENOMEM, -errno (EAI_SYSTEM), WEFT_EIO (any other); WEFT_ETIMEDOUT or
 * WEFT_ECANCELED (the lookup is abandoned: it finishes on its thread and
 * its result is freed there). */
WEFT_API int weft_coro_getaddrinfo(const char *node, const char *service,
                                   const struct addrinfo *hints, struct addrinfo **res,
                                   int64_t deadline_ns);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_CORO_H */
