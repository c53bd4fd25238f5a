/*
 * weft/executor.h: tasks and executors (Python's concurrent.futures
 * executors and multiprocessing.pool.ThreadPool).
 *
 * One task model for every backend. A task is a C function from bytes to
 * bytes: it receives a copy of its argument bytes and returns result bytes,
 * or fails with an error code and a message. The same task runs on threads,
 * on forked processes and on MPI ranks; arguments are always copied (small
 * ones inline in the job, with no allocation), so pointers inside them are
 * valid only on the thread backend, as Python objects are shared by
 * reference only in a ThreadPoolExecutor. Tasks that cross a process image
 * boundary are found by a registered name, never by function pointer; an
 * unknown name is WEFT_ENOTASK, never a jump.
 *
 * Thread-safety: every call may be made from any thread, including from
 * tasks and future callbacks running on the executor itself, except where a
 * contract says otherwise.
 */
#ifndef WEFT_EXECUTOR_H
#define WEFT_EXECUTOR_H

#include "weft/common.h"
#include "weft/future.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ tasks */

typedef struct weft_task_ctx weft_task_ctx;

/* A task body. arg[0..arg_len) is the task's own copy of the argument,
 * valid until the function returns. Return 0 for success (the result is
 * what weft_task_return / weft_task_return_buf set, empty if neither was
 * called) or a negative error code to fail the future with it. */
typedef int weft_task_fn(weft_task_ctx *ctx, const void *arg, size_t arg_len);

typedef struct weft_task {
  const char *name; /* for the registry: [A-Za-z0-9_.:-]{1,63}; may be NULL
                     * for tasks used only on the thread backend */
  weft_task_fn *fn;
} weft_task;

/* Set the task's result to a copy of data[0..len). Replaces an earlier
 * result. Returns 0 or WEFT_ENOMEM. Thread-safety: the task's own thread,
 * while the task runs. */
WEFT_API int weft_task_return(weft_task_ctx *ctx, const void *data, size_t len);

/* A buffer of len bytes that becomes the task's result: fill it before the
 * task returns. In a map whose out_size is len it is the output slot
 * itself (no copy). NULL when memory runs out (return WEFT_ENOMEM then).
 * Thread-safety: as weft_task_return. */
WEFT_API void *weft_task_return_buf(weft_task_ctx *ctx, size_t len);

/* Record an error message (printf format) and return code, so that a task
 * can end with `return weft_task_fail(ctx, WEFT_EINVAL, "bad x %d", x);`.
 * code must be negative; WEFT_ETASKFAILED is the generic one.
 * Thread-safety: as weft_task_return. */
WEFT_API int weft_task_fail(weft_task_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Register task under its name so that other process images (forked
 * workers exec'd afresh, MPI ranks) find it. The name is copied; the
 * function pointer must stay valid. Returns 0 (also when the same name and
 * function are registered again), WEFT_EEXIST (the name is taken by another
 * function), WEFT_EINVAL (name NULL or not of the allowed form), WEFT_ENOMEM.
 * Thread-safety: any thread; register before creating executors that need
 * the task. */
WEFT_API int weft_task_register(const weft_task *task);

/* Find a registered task by name. Returns 0 and *out (valid for the life of
 * the process), WEFT_ENOTASK, or WEFT_EINVAL (name NULL or malformed). Never
 * crashes on arbitrary bytes in name. Thread-safety: any thread. */
WEFT_API int weft_task_find(const char *name, const weft_task **out);

/* -------------------------------------------------------------- executors */

typedef struct weft_executor weft_executor;

/* The process backend (WEFT_EXECUTOR_PROCESSES; docs/design/process.md):
 * the workers are processes forked when the executor is created, each a
 * copy of the program at that moment (so task functions, and what they
 * read, are simply there); arguments and results travel through shared
 * memory, and a map's workers read the caller's input and write its output
 * themselves where the system allows it. A worker that dies (a crash, a
 * kill, exit) fails only the task it was running, with WEFT_EWORKERDIED and
 * a message naming the signal or exit status, and is replaced at once; in
 * a map only the item that was running fails. Processes a task starts in
 * its worker die with the worker (its process group). The initializer and finalizer
 * run in every worker process, replacements included. Future callbacks run
 * on the pool's own collector thread in the parent: a callback may submit,
 * but must not wait for another future of the same pool (the collector
 * would wait for itself). A task cannot use its
 * own executor (in the worker it is a copy with no workers: WEFT_EBROKEN).
 * If workers keep dying before their initializer returns (three in a row),
 * the executor is broken: work fails with WEFT_EBROKEN. */
typedef enum weft_executor_kind {
  WEFT_EXECUTOR_THREADS = 0, /* a work-stealing thread pool */
  WEFT_EXECUTOR_PROCESSES,   /* forked, self-healing worker processes */
  WEFT_EXECUTOR_MPI          /* ranks of an MPI job */
} weft_executor_kind;

typedef struct weft_executor_opts {
  weft_executor_kind kind;
  unsigned workers;                  /* 0: weft_cpu_count() */
  const char *name;                  /* worker name prefix; NULL: "weft-pool" */
  void (*initializer)(void *ud);     /* runs on each worker before its first task */
  void (*finalizer)(void *ud);       /* runs on each worker as it exits */
  void *ud;                          /* for initializer and finalizer */
  unsigned max_tasks_per_child;      /* processes: replace a worker after this many; 0: never */
} weft_executor_opts;

/* Create an executor and start its workers. opts NULL: a thread pool of
 * weft_cpu_count() workers. Returns 0 and *out, WEFT_EINVAL (bad kind,
 * workers above 4096), WEFT_ENOTSUP (that kind is not built into this
 * weft), WEFT_EAGAIN/WEFT_ENOMEM (no resources for the workers: threads,
 * processes, shared memory).
 * Ownership: the caller owns the executor and destroys it.
 * Thread-safety: any thread. */
WEFT_API int weft_executor_create(weft_executor **out, const weft_executor_opts *opts);

/* Run task(arg[0..arg_len)) on a worker. The argument is copied before this
 * returns. With out non-NULL, *out receives a new future (the caller owns
 * one reference); with out NULL the task runs with no future at all (fire
 * and forget: cheapest). Returns 0; WEFT_ESHUTDOWN (shutdown was called:
 * nothing runs); WEFT_ENOTASK (a backend that needs a registered name and
 * task's is not registered); WEFT_ENOMEM; WEFT_E2BIG (arg_len above the
 * backend's limit). Thread-safety: any thread, tasks included. */
WEFT_API int weft_executor_submit(weft_executor *ex, const weft_task *task, const void *arg,
                                  size_t arg_len, weft_future **out);

typedef struct weft_submit_opts {
  int64_t deadline_ns; /* the task must have ended by then (absolute, as
                        * every deadline; 0 in a zeroed struct: none) */
} weft_submit_opts;

/* weft_executor_submit with options. With a deadline, a task still running
 * at deadline_ns is stopped and its future fails with WEFT_ETIMEDOUT (its
 * message says so); one not yet started by then is never started and fails
 * the same way. Only executors whose workers can be stopped from outside
 * take a deadline: the process backend kills the worker running the task
 * and starts another in its place (Python has no per-task timeout at all).
 * Returns as weft_executor_submit, and WEFT_ENOTSUP (a deadline on the
 * thread backend: a thread cannot be stopped safely), WEFT_EINVAL (a
 * deadline below WEFT_FOREVER). opts may be NULL. Thread-safety: any
 * thread. */
WEFT_API int weft_executor_submit_opts(weft_executor *ex, const weft_task *task, const void *arg,
                                       size_t arg_len, const weft_submit_opts *opts,
                                       weft_future **out);

/* Cancel f, a future that ex returned, even while its task runs. A task
 * not started is cancelled as weft_future_cancel does (state CANCELLED). A
 * running one is stopped where the backend can stop it: the process backend
 * kills the worker process running it (a new worker takes its place) and f
 * fails with WEFT_ECANCELED. Returns 0; WEFT_EALREADY (f had already
 * finished); WEFT_EBUSY (f runs on a backend that cannot stop a running
 * task: threads); WEFT_ENOENT (f is not one of ex's running futures).
 * Thread-safety: any thread. */
WEFT_API int weft_executor_cancel(weft_executor *ex, weft_future *f);

/* Submit n tasks at once, task(args + i * arg_size) for i in [0, n): one
 * hand-off for the whole batch. outs (may be NULL for fire-and-forget)
 * receives n futures. All or nothing: on error no task was submitted and
 * outs is untouched. Errors as weft_executor_submit. Thread-safety: any
 * thread. */
WEFT_API int weft_executor_submit_many(weft_executor *ex, const weft_task *task,
                                       const void *args, size_t arg_size, size_t n,
                                       weft_future **outs);

typedef struct weft_map_opts {
  size_t chunksize;     /* items per job; 0: chosen by weft (about 4 jobs per worker) */
  int64_t deadline_ns;  /* 0 in a zeroed struct means WEFT_FOREVER here */
  size_t *failed_index; /* if not NULL, receives the index of the failed item */
} weft_map_opts;

/* Ordered map, as Python's Executor.map / Pool.map over arrays: run task on
 * each in + i * in_size (in_size bytes) for i in [0, n) and write its
 * result, which must be exactly out_size bytes, to out + i * out_size.
 * Blocks until all are done. Returns 0; the error of the lowest-index item
 * that failed (its index in *failed_index; a result of the wrong size is
 * WEFT_EMSGSIZE; the other items still ran or were cancelled); WEFT_ETIMEDOUT
 * (items not yet started are cancelled and waited for, so no task touches
 * out after this returns); WEFT_ESHUTDOWN. opts may be NULL.
 * Thread-safety: any thread, tasks included (the caller helps run tasks
 * while it waits). */
WEFT_API int weft_executor_map(weft_executor *ex, const weft_task *task, const void *in,
                               size_t in_size, void *out, size_t out_size, size_t n,
                               const weft_map_opts *opts);

/* ------------------------------------------------------------ lazy maps */

typedef struct weft_imap weft_imap;

/* Supplies the next argument: return 0 with *arg and *len set (borrowed
 * until the next call), WEFT_EEMPTY at the end of the input, or another
 * negative code to end the map with that error. Called on the thread that
 * calls weft_imap_next, never concurrently. */
typedef int weft_imap_source_fn(void *ud, const void **arg, size_t *len);

typedef struct weft_imap_opts {
  bool unordered;       /* yield in completion order (Pool.imap_unordered) */
  size_t max_in_flight; /* tasks submitted but not yet yielded; 0: 2 x workers */
} weft_imap_opts;

/* A lazy map over an input of any length, even endless (Python's
 * Pool.imap and imap_unordered, Executor.map consumed lazily): at most
 * max_in_flight tasks exist at once, so memory stays bounded. Tasks are
 * submitted as results are taken. opts may be NULL. Returns 0, WEFT_EINVAL,
 * WEFT_ENOMEM, WEFT_ESHUTDOWN. Thread-safety: any thread; one thread at a
 * time per iterator. */
WEFT_API int weft_imap_create(weft_imap **out, weft_executor *ex, const weft_task *task,
                              weft_imap_source_fn *source, void *ud,
                              const weft_imap_opts *opts);

/* The next finished future, in input order (or completion order when
 * unordered): the caller receives a reference and releases it. Returns 0
 * and *f; WEFT_EEMPTY when the input is exhausted and every result was
 * yielded; WEFT_ETIMEDOUT; the source's error (after the results before it
 * were yielded); WEFT_ESHUTDOWN. Thread-safety: the iterator's thread. */
WEFT_API int weft_imap_next(weft_imap *it, int64_t deadline_ns, weft_future **f);

/* Cancel the tasks not yet started, wait for the running ones, free it.
 * NULL is a no-op. Thread-safety: the iterator's thread. */
WEFT_API void weft_imap_destroy(weft_imap *it);

/* -------------------------------------------------------------- shutdown */

/* Stop taking tasks (Python's shutdown(wait, cancel_futures)). With
 * WEFT_SHUTDOWN_CANCEL_PENDING, tasks not yet started are cancelled; with
 * WEFT_SHUTDOWN_KILL (below) running ones are stopped too; with
 * WEFT_SHUTDOWN_WAIT, wait until the workers have finished every task that
 * is not cancelled and exited, or until deadline_ns. Returns 0,
 * WEFT_ETIMEDOUT (workers still busy; call again to keep waiting), WEFT_EDEADLK
 * (asked to wait from one of ex's own workers). Later submits return
 * WEFT_ESHUTDOWN. Thread-safety: any thread. */
#define WEFT_SHUTDOWN_WAIT 0x1u
#define WEFT_SHUTDOWN_CANCEL_PENDING 0x2u
/* Also stop tasks that are running, where the backend can: the process
 * backend SIGKILLs its workers (their futures fail with WEFT_ECANCELED),
 * so a shutdown with WAIT returns within milliseconds whatever the tasks
 * do. Implies WEFT_SHUTDOWN_CANCEL_PENDING. On the thread backend, whose
 * threads cannot be stopped, it acts as WEFT_SHUTDOWN_CANCEL_PENDING. */
#define WEFT_SHUTDOWN_KILL 0x4u
WEFT_API int weft_executor_shutdown(weft_executor *ex, unsigned flags, int64_t deadline_ns);

/* Shut down (waiting for every task, cancelling none) and free ex. Futures
 * stay valid for their holders. NULL is a no-op. Misuse (aborts): called
 * from one of ex's own workers. Thread-safety: one thread, after no other
 * thread will use ex. */
WEFT_API void weft_executor_destroy(weft_executor *ex);

/* An eventfd that becomes readable whenever a task of ex finishes (its
 * counter counts completions), so that an event loop can wait on an
 * executor. Read it to reset it. Made on the first call; owned by ex
 * (closed by destroy). Returns 0 and *fd, or -errno. Thread-safety: any
 * thread. */
WEFT_API int weft_executor_fd(weft_executor *ex, int *fd);

/* Number of workers. Thread-safety: any thread. */
WEFT_API unsigned weft_executor_workers(const weft_executor *ex);

typedef struct weft_executor_stats {
  uint64_t queued;    /* submitted, not yet started (a snapshot) */
  uint64_t running;   /* being run now (a snapshot) */
  uint64_t completed; /* finished since creation, in any way */
  uint64_t stolen;    /* jobs a worker took from another worker's deque */
} weft_executor_stats;

/* Counters for monitoring. Thread-safety: any thread; the fields are read
 * one by one, so they need not add up exactly. */
WEFT_API void weft_executor_stats_get(const weft_executor *ex, weft_executor_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_EXECUTOR_H */
