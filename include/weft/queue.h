/*
 * weft/queue.h: the in-process synchronized queue (Python's queue module).
 *
 * A weft_queue carries void * items (NULL included, so NULL can be the stop
 * sentinel of Python's worker pattern) between any number of threads, in
 * FIFO (queue.Queue), LIFO (queue.LifoQueue) or priority
 * (queue.PriorityQueue) order, bounded or not. It has put/get with a
 * deadline, non-blocking and batch forms, task_done/join, Python 3.13's
 * shutdown, and an eventfd so that an event loop can wait for items.
 *
 * Error codes: a full queue is WEFT_EFULL and an empty one WEFT_EEMPTY when
 * the call was not allowed to block (deadline 0); a call that did block and
 * reached its deadline is WEFT_ETIMEDOUT; a shut-down queue is
 * WEFT_ESHUTDOWN. Items are borrowed pointers: the queue never looks at what
 * they point to. Every item put ends exactly once: taken by get, or handed
 * to the free callback by shutdown(immediate) or destroy.
 */
#ifndef WEFT_QUEUE_H
#define WEFT_QUEUE_H

#include "weft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_queue weft_queue;

typedef enum weft_queue_order {
  WEFT_QUEUE_FIFO = 0, /* first in, first out (queue.Queue) */
  WEFT_QUEUE_LIFO,     /* last in, first out (queue.LifoQueue) */
  WEFT_QUEUE_PRIORITY  /* smallest by cmp first, ties in put order */
} weft_queue_order;

/* <0, 0, >0 as a < b, a == b, a > b. cmp is the one user function that runs
 * under the queue's lock (ordering needs it): it must be quick and must not
 * call into the queue. */
typedef int weft_queue_cmp_fn(const void *a, const void *b, void *ud);
/* Receives each item that leaves the queue without a get. */
typedef void weft_queue_free_fn(void *item, void *ud);

typedef struct weft_queue_opts {
  weft_queue_order order;      /* default FIFO */
  size_t maxsize;              /* 0: unbounded (Python's maxsize <= 0) */
  weft_queue_cmp_fn *cmp;      /* required for PRIORITY, ignored otherwise */
  weft_queue_free_fn *free_fn; /* may be NULL: leftover items are dropped */
  void *ud;                    /* passed to cmp and free_fn */
} weft_queue_opts;

/* Create a queue. opts NULL: an unbounded FIFO. Returns 0 and the queue in
 * *out, WEFT_EINVAL (unknown order, PRIORITY without cmp, maxsize above
 * WEFT_QUEUE_MAXSIZE_MAX), WEFT_ENOMEM. Ownership: the caller owns the queue
 * and destroys it. Thread-safety: any thread. */
WEFT_API int weft_queue_create(weft_queue **out, const weft_queue_opts *opts);
#define WEFT_QUEUE_MAXSIZE_MAX ((size_t)1 << 32)

/* Destroy q: every item still inside goes to free_fn (if set), in queue
 * order, from the calling thread. NULL is a no-op. No other thread may be
 * using q or blocked on it (shut it down and join your threads first).
 * Thread-safety: one thread, after all others are done with q. */
WEFT_API void weft_queue_destroy(weft_queue *q);

/* Put item, waiting for room until deadline_ns if q is bounded and full.
 * Returns 0 (q now holds item), WEFT_EFULL (deadline 0 and no room),
 * WEFT_ETIMEDOUT, WEFT_ESHUTDOWN (q was shut down: item not taken),
 * WEFT_ENOMEM (unbounded q could not grow), WEFT_EINVAL (bad deadline).
 * Ownership: on 0, item belongs to q until a get returns it; on error it
 * stays the caller's. Thread-safety: any thread. */
WEFT_API int weft_queue_put(weft_queue *q, void *item, int64_t deadline_ns);

/* Take the next item, waiting until deadline_ns while q is empty. Returns 0
 * and the item in *item, WEFT_EEMPTY (deadline 0 and empty),
 * WEFT_ETIMEDOUT, WEFT_ESHUTDOWN (q is shut down and empty, or was shut down
 * with immediate), WEFT_EINVAL (bad deadline). *item is written only on 0.
 * Ownership: the item passes to the caller. Thread-safety: any thread. */
WEFT_API int weft_queue_get(weft_queue *q, void **item, int64_t deadline_ns);

/* Put items[0..n-1] in order, waiting for room as put does. Returns 0 when
 * all n were put; otherwise the error of the first item that could not be
 * put (as put). *n_put (may be NULL) always tells how many were put; those
 * belong to q, the rest stay the caller's. Thread-safety: any thread. */
WEFT_API int weft_queue_put_many(weft_queue *q, void *const *items, size_t n,
                                 int64_t deadline_ns, size_t *n_put);

/* Wait until deadline_ns for at least one item, then take up to max without
 * waiting again. Returns 0 with *n_got >= 1, or the error get would return
 * with *n_got == 0. Thread-safety: any thread. */
WEFT_API int weft_queue_get_many(weft_queue *q, void **items, size_t max,
                                 int64_t deadline_ns, size_t *n_got);

/* Tell q that one item taken by get has been fully processed. Returns 0, or
 * WEFT_EINVAL when called more times than items were put (Python's
 * ValueError); the count is not changed then. Thread-safety: any thread. */
WEFT_API int weft_queue_task_done(weft_queue *q);

/* Wait until every item ever put has had its task_done (or was dropped by
 * shutdown(immediate)). Returns 0, WEFT_ETIMEDOUT, WEFT_EINVAL.
 * Thread-safety: any thread. */
WEFT_API int weft_queue_join(weft_queue *q, int64_t deadline_ns);

/* Shut q down (Python 3.13): puts fail with WEFT_ESHUTDOWN from now on;
 * gets still drain what is inside, then fail with WEFT_ESHUTDOWN; every
 * blocked put and get wakes. With immediate, the items inside are removed
 * at once and handed to free_fn (from the calling thread, after q's lock is
 * released), each counts as task_done so join returns, and gets fail at
 * once. Calling it again is harmless (immediate can still be applied).
 * Thread-safety: any thread. */
WEFT_API void weft_queue_shutdown(weft_queue *q, bool immediate);
WEFT_API bool weft_queue_is_shutdown(const weft_queue *q);

/* Number of items inside (a snapshot: other threads may change it at
 * once), whether that is 0, and whether a bounded q is at maxsize.
 * Thread-safety: any thread. */
WEFT_API size_t weft_queue_qsize(const weft_queue *q);
WEFT_API bool weft_queue_empty(const weft_queue *q);
WEFT_API bool weft_queue_full(const weft_queue *q);
/* The maxsize q was created with (0: unbounded). Thread-safety: any
 * thread. */
WEFT_API size_t weft_queue_maxsize(const weft_queue *q);

/* An eventfd for event loops (epoll, poll): readable while q may hold items
 * or is shut down; after get returns WEFT_EEMPTY it is no longer readable
 * until the next put. It can be spuriously readable, never falsely quiet:
 * on readiness, get with deadline 0 until WEFT_EEMPTY. The fd is made on
 * the first call (from then on puts keep it up to date) and stays q's:
 * never close or read it. Returns 0 and *fd, or -errno from eventfd(2).
 * Thread-safety: any thread. */
WEFT_API int weft_queue_fd(weft_queue *q, int *fd);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_QUEUE_H */
