/*
 * weft/future.h: futures, wait and as_completed (Python's
 * concurrent.futures.Future, wait() and as_completed()).
 *
 * A weft_future holds the outcome of one task: pending, then running, then
 * done (result bytes), failed (an error code and message) or cancelled.
 * Futures are reference-counted: the executor holds one reference until the
 * task ends, the submitter receives one, and a future may outlive its
 * executor. Results are bytes that the future owns; the pointer that
 * weft_future_result returns stays valid while the caller holds a
 * reference.
 *
 * Thread-safety: every call may be made from any thread, concurrently with
 * any other call on the same future, except where a contract says
 * otherwise. No user callback runs under a weft lock.
 */
#ifndef WEFT_FUTURE_H
#define WEFT_FUTURE_H

#include "weft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_future weft_future;

typedef enum weft_future_state {
  WEFT_FUTURE_PENDING = 0, /* created or queued, not started */
  WEFT_FUTURE_RUNNING,     /* a worker runs it; can no longer be cancelled */
  WEFT_FUTURE_DONE,        /* finished with a result */
  WEFT_FUTURE_FAILED,      /* finished with an error code and message */
  WEFT_FUTURE_CANCELLED    /* cancelled before it ran */
} weft_future_state;

/* --------------------------------------------------- reading the outcome */

/* The state now (a snapshot). Thread-safety: any thread. */
WEFT_API weft_future_state weft_future_state_get(const weft_future *f);

/* Whether f is done, failed or cancelled (Python's done()).
 * Thread-safety: any thread. */
WEFT_API bool weft_future_done(const weft_future *f);

/* Wait until f is done, failed or cancelled. Returns 0, WEFT_ETIMEDOUT or
 * WEFT_EINVAL (bad deadline). Thread-safety: any thread; a call made from a
 * worker of a weft thread pool runs other tasks of that pool while it waits,
 * so nested waits do not deadlock. */
WEFT_API int weft_future_wait(weft_future *f, int64_t deadline_ns);

/* Wait as weft_future_wait, then report the outcome (Python's result()):
 *   0               done; *data and *len (either may be NULL) give the
 *                   result, borrowed from f: valid while the caller holds a
 *                   reference to f. A task that returned nothing gives
 *                   *len == 0 and a non-NULL *data.
 *   WEFT_ECANCELED  cancelled
 *   WEFT_ETIMEDOUT  the deadline passed first
 *   other < 0       failed: the task's error code (WEFT_ETASKFAILED when the
 *                   task gave none, WEFT_EWORKERDIED when its worker died);
 *                   weft_future_error_message tells more.
 * Thread-safety: any thread (see weft_future_wait on nested waits). */
WEFT_API int weft_future_result(weft_future *f, int64_t deadline_ns, const void **data,
                                size_t *len);

/* The error message of a failed future ("" when there is none or f did not
 * fail). Borrowed from f, like the result. Thread-safety: any thread. */
WEFT_API const char *weft_future_error_message(const weft_future *f);

/* Cancel f if it has not started (Python's cancel()). Returns 0 when f is
 * now cancelled (also when it already was), WEFT_EBUSY when it is running,
 * WEFT_EALREADY when it already finished. A cancelled future's callbacks
 * run and its waiters wake. Thread-safety: any thread. */
WEFT_API int weft_future_cancel(weft_future *f);

/* ------------------------------------------------------------ callbacks */

typedef void weft_future_cb(weft_future *f, void *ud);

/* Call cb(f, ud) exactly once when f finishes in any way (Python's
 * add_done_callback). If f has already finished, cb runs at once on the
 * calling thread, before this returns; otherwise on the thread that
 * finishes f, after f's waiters were released and never under a weft lock.
 * Callbacks run in the order they were added. cb may call any weft
 * function, including submitting new tasks. Returns 0, or WEFT_ENOMEM (cb
 * will not run). f stays valid during cb. Thread-safety: any thread. */
WEFT_API int weft_future_on_done(weft_future *f, weft_future_cb *cb, void *ud);

/* -------------------------------------------------------- reference count */

/* Take / drop a reference. The last release frees f and its result.
 * release(NULL) is a no-op. Thread-safety: any thread. */
WEFT_API void weft_future_retain(weft_future *f);
WEFT_API void weft_future_release(weft_future *f);

/* ------------------------------------------- futures you complete yourself */

/* A pending future that the caller completes (for code that hands work to
 * its own threads or event loop, as Python code does with Future()). The
 * caller holds one reference. Returns 0 or WEFT_ENOMEM.
 * Thread-safety: any thread. */
WEFT_API int weft_future_create(weft_future **out);

/* Move f from pending to running (Python's set_running_or_notify_cancel).
 * Returns 0, WEFT_ECANCELED (f was cancelled: do not run the work), or
 * WEFT_EALREADY (f is not pending). Thread-safety: any thread. */
WEFT_API int weft_future_set_running(weft_future *f);

/* Finish f with a copy of data[0..len) / with an error code (< 0) and a
 * message (copied; may be NULL). Returns 0, WEFT_EALREADY (f had already
 * finished: nothing changes), WEFT_ENOMEM (f is then failed with
 * WEFT_ENOMEM, so it still finishes), WEFT_EINVAL (code >= 0).
 * Misuse (aborts): f is an executor's future (only futures from
 * weft_future_create are completed by hand; an executor's task writes its
 * result without a lock). Thread-safety: any thread; the first finisher
 * wins. */
WEFT_API int weft_future_set_result(weft_future *f, const void *data, size_t len);
WEFT_API int weft_future_set_error(weft_future *f, int code, const char *message);

/* ------------------------------------------------- waiting on many futures */

typedef enum weft_wait_mode {
  WEFT_FIRST_COMPLETED = 1, /* return when any future finishes */
  WEFT_FIRST_EXCEPTION,     /* ... when any fails, or all finish */
  WEFT_ALL_COMPLETED        /* ... when all finish */
} weft_wait_mode;

/* Wait on fs[0..n) as Python's concurrent.futures.wait. Returns 0 when the
 * condition holds, WEFT_ETIMEDOUT when the deadline passed first,
 * WEFT_EINVAL (bad mode or deadline; *n_done is then untouched). On 0 and
 * WEFT_ETIMEDOUT *n_done (may be NULL) is the number of finished futures;
 * weft_future_done tells which. Cancelled counts as finished, not as an
 * exception. Each completion costs O(1): ALL_COMPLETED waits for the
 * futures one by one on their own words (no allocation); the other modes
 * share one waiter among all the futures, with a watch on each (past 16
 * futures the watches are allocated, and a future's first watch allocates
 * a small block; if either fails, wait still works, by polling every 50 us
 * to 2 ms). NULL entries are misuse.
 * Thread-safety: any thread. */
WEFT_API int weft_wait(weft_future *const *fs, size_t n, weft_wait_mode mode,
                       int64_t deadline_ns, size_t *n_done);

typedef struct weft_as_completed weft_as_completed;

/* An iterator over fs[0..n) that yields each future as it finishes (those
 * already finished first), as Python's as_completed. The iterator holds a
 * reference to each future until it has yielded it. Duplicates in fs are
 * yielded once. Returns 0, WEFT_ENOMEM. Thread-safety: any thread; one
 * thread at a time per iterator. */
WEFT_API int weft_as_completed_create(weft_as_completed **out, weft_future *const *fs,
                                      size_t n);

/* The next finished future in *f (borrowed from the caller's own
 * reference). Returns 0; WEFT_ETIMEDOUT; WEFT_EEMPTY when every future has
 * been yielded; WEFT_EINVAL (bad deadline). Each completion costs O(1).
 * Thread-safety: the iterator's thread. */
WEFT_API int weft_as_completed_next(weft_as_completed *it, int64_t deadline_ns,
                                    weft_future **f);

/* Free it and drop its references. NULL is a no-op. */
WEFT_API void weft_as_completed_destroy(weft_as_completed *it);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_FUTURE_H */
