/*
 * Internal: the executor front end (executor.c, task.c) and the backends
 * that plug into it through one vtable (pool_thread.c now; pool_process.c
 * and src/mpi/ later).
 *
 * The front end owns everything a caller sees: argument checks, the task
 * registry, jobs and their argument copies, futures, map chunking and its
 * deadline, imap's bound, the eventfd and the stats the backend does not
 * keep. A backend owns only moving jobs to workers and running them there:
 * queues, workers, parking, shutdown and joining. It sees a job as an opaque
 * unit that it hands to weft__job_run (in process) or ships elsewhere and
 * ends with the weft__job_* calls below.
 *
 * Ownership of a job: the front end allocates it and hands a chain of jobs
 * to ops->submit; from then on the backend owns every job of the chain
 * until it gives the job back through exactly one of weft__job_run or
 * weft__job_cancel, which end it (future finished or cancelled, map chunk
 * accounted) and free it. That is how "every submitted item ends exactly
 * once" holds for every backend.
 */
#ifndef WEFT_EXECUTOR_IMPL_H
#define WEFT_EXECUTOR_IMPL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/executor.h"
#include "weft/future.h"

/* ------------------------------------------------------------------ jobs */

/* Arguments up to this size live inside the job: no allocation. */
#define WEFT__JOB_INLINE 32

enum weft__job_kind {
  WEFT__JOB_TASK = 0, /* one task: fn(arg), result to fut (or discarded) */
  WEFT__JOB_MAP,      /* a chunk of weft_executor_map: ref is the weft__map */
  WEFT__JOB_BATCH,    /* a chunk of weft_executor_submit_many: ref is the
                       * weft__batch */
  WEFT__JOB_SMALL     /* one task with a future and an argument of at most
                       * WEFT__JOB_SMALL_ARG bytes, kept inside the future
                       * (see weft__job_small below); only on backends with
                       * small_jobs */
};

/* One unit of work: a task with its copied argument, or one chunk of a map
 * or of a submit_many batch. One cache line. Written by the submitter
 * before the hand-off, then read-only; whoever holds the job (see the top
 * of the file) may use next. */
typedef struct weft__job {
  struct weft__job *next; /* link in a chain, a backend queue or the job cache */
  union {
    weft_task_fn *fn;        /* TASK on a backend without needs_names */
    const weft_task *reg;    /* TASK on a needs_names backend: the registry
                              * entry (name and fn, valid for the process) */
  } task;
  void *ref;              /* TASK: the executor's reference to the future, or
                           * NULL (fire and forget); MAP / BATCH: the shared
                           * state of the chunks */
  uint32_t kind;          /* enum weft__job_kind */
  uint32_t arg_len;       /* TASK: argument length; MAP / BATCH: chunk index */
  union {
    unsigned char inl[WEFT__JOB_INLINE]; /* arg_len <= WEFT__JOB_INLINE */
    void *heap;                          /* larger: weft__malloc'ed copy */
  } arg;
} weft__job;

/* A small job: the first 32 bytes of a weft__job (next, task, the
 * argument where ref would be, kind, arg_len), stored in the result area of
 * the task's own future (future_impl.h, WEFT__FUTURE_EMBED_OFFSET) while
 * the task waits. The submitter then writes one cache line per task instead
 * of two, and the worker fetches one: the job costs no allocation and no
 * cache traffic of its own. The front end makes them only for backends
 * that set small_jobs, which must touch nothing but next and hand the job
 * to weft__job_run, weft__job_cancel or weft__job_items. Once the task
 * starts, its result may overwrite the job: weft__job_run reads it first. */
#define WEFT__JOB_SMALL_ARG 8

/* Arguments above this size are WEFT_E2BIG on every backend (arg_len is
 * 32 bits in a job). */
#define WEFT__ARG_MAX UINT32_MAX

/* A job with room for an argument of arg_len bytes (inline or on the heap),
 * cache-line aligned, next NULL, ref NULL, kind TASK. From a thread-local
 * cache, refilled from a global one: no allocation in the steady state.
 * NULL: out of memory. Any thread. */
weft__job *weft__job_alloc(size_t arg_len);
/* Free j (and a TASK's heap argument). Any thread. */
void weft__job_free(weft__job *j);

/* Give most spare jobs back to the allocator, keeping a few thousand: for
 * a backend whose workers are about to go idle (so that a burst does not
 * pin its jobs' memory for good). Cheap when there is little to trim. Any
 * thread. */
void weft__job_cache_trim(void);
/* About how many spare jobs the global cache holds (for tests). */
long weft__job_cache_spare(void);

/* A TASK's argument bytes. */
static inline const void *weft__job_arg(const weft__job *j) {
  return j->arg_len <= WEFT__JOB_INLINE ? (const void *)j->arg.inl : j->arg.heap;
}

/* How many items j stands for (1, or the size of its chunk): the unit of
 * the stats. */
uint64_t weft__job_items(const weft__job *j);

typedef struct weft__scratch {
  void *p;    /* a buffer for results that nobody keeps; owner's */
  size_t cap; /* its size */
} weft__scratch;

/* Run j on the calling thread and end it. A TASK moves its future to
 * running (a cancelled one is skipped), runs the task with a context that
 * writes the result straight into the future (or into scratch when there is
 * no future), finishes the future and drops the executor's reference. A MAP
 * chunk claims the chunk (skipped if the map's caller cancelled it) and runs
 * its items into the output slots. A BATCH chunk runs its items as TASKs
 * one after the other. While *cancel is true (a shutdown that cancels
 * pending work; cancel may be NULL) items not yet started are cancelled
 * instead of run. Signals ex's eventfd per finished item. Frees j. User code
 * runs here (tasks, then on_done callbacks): call with no lock held. */
void weft__job_run(weft_executor *ex, weft__job *j, weft__scratch *scratch,
                   const atomic_bool *cancel);

/* End j without running it (a shutdown that cancels pending work): futures
 * are cancelled (their callbacks run on the calling thread), a map chunk
 * counts as cancelled (WEFT_ECANCELED at its first index). Frees j. */
void weft__job_cancel(weft_executor *ex, weft__job *j);

/* For a nested wait on this thread: run one item not yet started of a
 * BATCH chunk that this thread is running further down its stack (items
 * of one chunk run in order, so a task that waits for a later item of its
 * own chunk would otherwise wait for itself). Returns false when there is
 * none. Backends call it from their wait helper before looking at their
 * queues. */
bool weft__job_run_nested_item(weft__scratch *scratch);

/* Free a scratch buffer (a worker's, at exit). */
void weft__scratch_fini(weft__scratch *s);

/* ------------------------------------------------------------ task ctx */

/* Where a task's result goes. */
enum weft__sink {
  WEFT__SINK_FUTURE,  /* into the future (weft__future_result_buf) */
  WEFT__SINK_SLOT,    /* into a map output slot of exactly slot_size bytes */
  WEFT__SINK_SCRATCH  /* into the runner's scratch buffer: fire and forget
                       * now; later the bytes a process worker ships back */
};

#define WEFT__MSG_INLINE 128

/* The context of one running task. Lives on the runner's stack; used only
 * by the task's own thread while the task runs, so nothing here is shared. */
struct weft_task_ctx {
  enum weft__sink sink;     /* where results go; fixed while the task runs */
  weft_future *fut;         /* SINK_FUTURE: the running future */
  unsigned char *slot;      /* SINK_SLOT: the output slot */
  size_t slot_size;         /* SINK_SLOT: its size (map's out_size) */
  weft__scratch *scratch;   /* SCRATCH, and SLOT results of the wrong size */
  const unsigned char *buf; /* the last result buffer handed out, or NULL */
  size_t result_len;        /* length of the last result set (0: none) */
  bool result_in_slot;      /* SINK_SLOT: the last result is in the slot */
  bool result_oom;          /* the last attempt to set a result failed */
  int fail_code;            /* recorded by weft_task_fail; 0: none */
  char *msg;                /* the message weft_task_fail recorded, or NULL;
                             * points at msg_inline or at a heap copy */
  char msg_inline[WEFT__MSG_INLINE];
};

/* These four run once per task and per map item: inline, so that a map's
 * per-item cost is the task's own call and little else. */

/* Prepare ctx for one task run. f for SINK_FUTURE, slot/slot_size for
 * SINK_SLOT, scratch for SLOT and SCRATCH. */
static inline void weft__task_ctx_init(weft_task_ctx *ctx, enum weft__sink sink,
                                       weft_future *f, void *slot, size_t slot_size,
                                       weft__scratch *scratch) {
  ctx->sink = sink;
  ctx->fut = f;
  ctx->slot = slot;
  ctx->slot_size = slot_size;
  ctx->scratch = scratch;
  ctx->buf = NULL;
  ctx->result_len = 0;
  ctx->result_in_slot = false;
  ctx->result_oom = false;
  ctx->fail_code = 0;
  ctx->msg = NULL;
}
/* The task returned rc: the outcome to report. 0 (a SLOT result of exactly
 * slot_size bytes; any result otherwise), or < 0: the task's code, a
 * positive return as WEFT_ETASKFAILED, WEFT_ENOMEM when the task returned 0
 * after its result could not be stored, WEFT_EMSGSIZE for a SLOT result of
 * the wrong size. */
static inline int weft__task_ctx_outcome(const weft_task_ctx *ctx, int rc) {
  if (rc > 0) return WEFT_ETASKFAILED;
  if (rc < 0) return rc;
  if (ctx->result_oom) return WEFT_ENOMEM;
  if (ctx->sink == WEFT__SINK_SLOT) {
    bool ok = ctx->buf ? ctx->result_in_slot : ctx->slot_size == 0;
    if (!ok) return WEFT_EMSGSIZE;
  }
  return 0;
}
/* The message for a failed outcome, or NULL. Valid until ctx_fini. */
static inline const char *weft__task_ctx_message(const weft_task_ctx *ctx) { return ctx->msg; }
/* Free a message weft_task_fail put on the heap (the rare path of fini). */
void weft__task_ctx_free_msg(weft_task_ctx *ctx);
static inline void weft__task_ctx_fini(weft_task_ctx *ctx) {
  if (__builtin_expect(ctx->msg && ctx->msg != ctx->msg_inline, 0)) weft__task_ctx_free_msg(ctx);
  ctx->msg = NULL;
}

/* ------------------------------------------------------------ registry */

/* Check a task name: [A-Za-z0-9_.:-]{1,63}, reading at most 64 bytes of
 * name. Returns its length, or 0 when it is not a valid name. */
size_t weft__task_name_check(const char *name);

/* -------------------------------------------------------------- backends */

/* A backend. Each function receives the backend's own state (from
 * create). The front end has already checked arguments, resolved names
 * (when needs_names) and built the jobs. */
typedef struct weft__executor_ops {
  const char *kind_name; /* "threads", "processes", "mpi" */
  bool needs_names;      /* workers find tasks by registered name (they run
                          * another process image); submit of an unregistered
                          * task is then WEFT_ENOTASK */
  size_t arg_max;        /* largest argument; WEFT_E2BIG above */
  bool small_jobs;       /* may be given WEFT__JOB_SMALL jobs (in-process
                          * backends that only chain and run jobs) */
  /* Start workers for ex (opts: workers already resolved, name non-NULL).
   * 0 and *be, or an error with nothing left running. */
  int (*create)(weft_executor *ex, const weft_executor_opts *opts, void **be);
  /* Take a chain of jobs, newest first (newest->next ... ->next == oldest,
   * oldest->next is ignored), standing for `items` items, in one hand-off:
   * one atomic publication for the whole batch. 0 (the backend now owns
   * every job), or WEFT_ESHUTDOWN or WEFT_EBROKEN (it owns none; the chain
   * is untouched but for next links). */
  int (*submit)(void *be, weft__job *newest, weft__job *oldest, uint64_t items);
  /* Stop taking jobs; see weft_executor_shutdown. WEFT_SHUTDOWN_WAIT from
   * one of the backend's own workers was already refused by the front end.
   * 0 or WEFT_ETIMEDOUT (only with WEFT_SHUTDOWN_WAIT). */
  int (*shutdown)(void *be, unsigned flags, int64_t deadline_ns);
  /* Free the backend after a shutdown with WEFT_SHUTDOWN_WAIT returned 0. */
  void (*destroy)(void *be);
  /* queued, running, completed, stolen (see weft_executor_stats). */
  void (*stats)(const void *be, weft_executor_stats *out);
  /* Is the calling thread one of this backend's workers? */
  bool (*on_worker)(const void *be);
  /* The worker count when opts->workers is 0; NULL: weft_cpu_count(). */
  unsigned (*default_workers)(void);
  /* Optional (NULL: not supported; set by backends whose workers can be
   * stopped from outside, as processes can):
   * submit_deadline: take one TASK job (as submit) that must end by
   * deadline_ns; past it the task is stopped and its future fails with
   * WEFT_ETIMEDOUT. 0, WEFT_ESHUTDOWN or WEFT_EBROKEN (nothing owned).
   * cancel: cancel f (one of this executor's futures) even if its task
   * runs, stopping the task. 0, WEFT_EALREADY (f had finished), or
   * WEFT_ENOENT (f is not this executor's, or was already handed back).
   * With these, shutdown also honours WEFT_SHUTDOWN_KILL. */
  int (*submit_deadline)(void *be, weft__job *j, int64_t deadline_ns);
  int (*cancel)(void *be, weft_future *f);
  /* Optional: a map's caller passed its deadline, so running chunks should
   * stop before their next item (weft__job_map_stopping now says so). For
   * backends that run chunks where they cannot watch the map's flag. */
  void (*map_stop)(void *be);
} weft__executor_ops;

extern const weft__executor_ops weft__pool_thread_ops;
extern const weft__executor_ops weft__pool_process_ops;

/* Plug in the backend for kind (WEFT_EXECUTOR_PROCESSES or _MPI) that lives
 * in a library of its own (libweft_mpi registers itself from
 * weft_mpi_init); NULL unplugs it. Until then weft_executor_create says
 * WEFT_ENOTSUP for that kind. Any thread; executors already made keep the
 * ops they were made with. */
void weft__executor_backend_set(weft_executor_kind kind, const weft__executor_ops *ops);

/* ---------------------------------------------- jobs run in another image */

/* A backend whose workers run in another process image (needs_names) ships
 * a job's bytes and ends the job when the worker's answer comes back; these
 * calls replace weft__job_run for it. A BATCH chunk is split into TASK jobs
 * first, so that each item is sent, and can be cancelled, on its own. */

/* A TASK job is about to be sent: move its future to running. false: it
 * was cancelled while queued, and the job has been ended (freed, counted);
 * do not send it. */
bool weft__job_task_start(weft_executor *ex, weft__job *j);

/* End a started TASK job with the worker's outcome: rc 0 and the result
 * bytes res[0..len), or rc < 0 and a message (may be NULL). Frees j,
 * finishes its future (callbacks run on the calling thread: call with no
 * lock held) and counts the completion. A result that cannot be stored
 * fails the future with WEFT_ENOMEM. */
void weft__job_task_end(weft_executor *ex, weft__job *j, int rc, const void *res, size_t len,
                        const char *msg);

/* Replace the BATCH chunk j by one TASK job per item, newest first
 * (returned; *oldest the first item), each with its copied argument, the
 * item's future as ref and j's task; *n receives how many. j is ended. An
 * item whose job cannot be allocated fails at once with WEFT_ENOMEM (so the
 * chain may be shorter than the chunk, even NULL). */
weft__job *weft__job_batch_split(weft_executor *ex, weft__job *j, weft__job **oldest,
                                 uint64_t *n);

/* What a MAP chunk asks for: items [lo, hi) of a map whose inputs are
 * in_size bytes each (item i at in + (i - lo) * in_size) and whose results
 * are out_size bytes each. */
typedef struct weft__map_view {
  const void *in;
  size_t in_size;
  size_t out_size;
  size_t lo, hi;
  void *out; /* the map's output slot of item lo (NULL when out_size is 0):
              * for a backend that can write results there itself */
} weft__map_view;

/* A MAP chunk is about to be sent: claim it and describe it in *v. false:
 * the map's caller cancelled it (its deadline passed), the job has been
 * ended; do not send it. */
bool weft__job_map_start(weft__job *j, weft__map_view *v);

/* Has the map of a started MAP chunk been given up by its caller (its
 * deadline passed)? The worker should then stop before its next item. */
bool weft__job_map_stopping(const weft__job *j);

/* End a started MAP chunk: the first `ran` items ran, their results are
 * out[0 .. ran * out_size) (written to the map's output array; out NULL:
 * they are in the map's output array already); nfail of
 * them failed, item lo + fail_at[k] with code fail_code[k]. When ran is
 * short of the chunk and stop_code is not 0, the item at lo + ran counts as
 * failed with stop_code (WEFT_ECANCELED for a shutdown that cancels); with
 * stop_code 0 the rest were left because the caller gave up. Frees j and
 * counts the chunk's items as completed. */
void weft__job_map_end(weft_executor *ex, weft__job *j, const void *out, size_t ran,
                       const uint32_t *fail_at, const int32_t *fail_code, size_t nfail,
                       int stop_code);

/* Run one task as a worker in another image does: fn(arg) with its result
 * going to scratch (SINK_SCRATCH) or, for a map item, to slot. The outcome
 * as weft__task_ctx_outcome; *res / *res_len the result (valid until the
 * next run with the same scratch) and *msg a copy of the failure message
 * (weft__free it; NULL if none or no memory). */
int weft__task_run_detached(weft_task_fn *fn, const void *arg, size_t len, void *slot,
                            size_t slot_size, bool to_slot, weft__scratch *scratch,
                            const void **res, size_t *res_len, char **msg);

/* The registered tasks, sorted by name: a weft__malloc'ed array of n
 * pointers to registry entries (each valid for the life of the process) in
 * *out. 0, or WEFT_ENOMEM. Any thread. */
int weft__task_registry_list(const weft_task ***out, size_t *n);

/* The backend's workers have all gone idle: free what the front end keeps
 * for reuse (finished batches, spare jobs beyond a few thousand). Called
 * on a worker with no lock held. */
void weft__executor_idle(weft_executor *ex);

/* Signal ex's eventfd (if one was made) for items that finished in any
 * way. weft__job_run and weft__job_cancel call it; a backend that ends
 * jobs in another process image calls it when it learns of the end. Any
 * thread. */
void weft__executor_note_completed(weft_executor *ex, uint64_t items);

#endif
