/*
 * Internal: how executors drive futures, and how waiting cooperates with
 * thread-pool workers. Used by src/future/ (which implements it) and
 * src/executor/ (which calls it).
 */
#ifndef WEFT_FUTURE_IMPL_H
#define WEFT_FUTURE_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"
#include "weft/future.h"

/* A new pending future with one reference. 0 or WEFT_ENOMEM. Executor
 * futures come from per-thread slabs (see future.c); release them as any
 * other. */
int weft__future_alloc(weft_future **out);
/* The same with two references (the executor's and the caller's), which
 * saves the submitter an atomic increment. */
int weft__future_alloc_shared(weft_future **out);
/* Hand the calling thread's cached executor futures and its slab's unused
 * slots back, as its exit does; slabs with no future left are freed. For
 * tests that count memory. */
void weft__future_cache_flush(void);

/* Storage for a result of len bytes inside f (inline when small, so most
 * results cost no allocation), replacing an earlier one. The executor's
 * task context hands it to weft_task_return_buf. NULL: out of memory.
 * Only the thread that runs f's task calls this, before finishing f. */
void *weft__future_result_buf(weft_future *f, size_t len);

/* The offset of a future's result area, WEFT__FUTURE_EMBED_BYTES long:
 * while a driven future is pending, its executor may keep a small job
 * there (executor_impl.h, WEFT__JOB_SMALL), as long as it has read it
 * before the task runs. */
#define WEFT__FUTURE_EMBED_OFFSET 32
#define WEFT__FUTURE_EMBED_BYTES 32

/* Finish f: done with the bytes last placed by weft__future_result_buf
 * (empty if none), or failed with code (< 0) and message (copied, may be
 * NULL). Releases waiters, runs watches, then on_done callbacks, on the
 * calling thread, with no lock held. No-op if f already finished (a
 * cancel won the race). */
void weft__future_finish_done(weft_future *f);
void weft__future_finish_failed(weft_future *f, int code, const char *message);

/* A watch: fn(w, f) runs once when f finishes, on the finishing thread,
 * before the on_done callbacks, with no lock held. It must be quick and must
 * not block (wait and as_completed use one to post to their shared waiter;
 * the pool uses one to wake a worker that waits on f). */
typedef struct weft__watch {
  weft__list link;                                   /* in f's watch list */
  void (*fn)(struct weft__watch *w, weft_future *f); /* the notification */
  void *ud;
} weft__watch;

/* Add w to f's watches: 1, or 0 if f has already finished (w is not added
 * and fn does not run), or WEFT_ENOMEM (not added either: the first watch
 * or callback of a future allocates the part of it that holds them). O(1). The watcher must hold a reference to f
 * while w is registered (freeing a watched future trips an assertion), and
 * fn must not unwatch its own watch (it would wait for itself). */
int weft__future_watch(weft_future *f, weft__watch *w);
/* Remove w if it is still registered; after this returns fn is not running
 * and will not run for f. O(1). A no-op for a w that was never added (its
 * weft__future_watch returned 0 or an error). */
void weft__future_unwatch(weft_future *f, weft__watch *w);

/* How a blocking wait cooperates with a pool worker. Every sleep of the
 * future layer (future wait/result, weft_wait, as_completed) goes through
 * weft__block, which is weft__futex_wait unless the calling thread has set
 * weft__current_helper. A pool worker sets it for its life; its block hook
 * runs other tasks of the pool while *word == expected, then sleeps on word
 * and also wakes (by FUTEX_WAKE on word) when new work arrives, so nested
 * waits never deadlock. Return values as weft__futex_wait: 0 (woken or
 * spurious), -EAGAIN (*word changed), -ETIMEDOUT. */
typedef struct weft__wait_helper {
  int (*block)(void *ctx, _Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns);
  void *ctx;
} weft__wait_helper;
extern _Thread_local weft__wait_helper weft__current_helper;

int weft__block(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns);

#endif
