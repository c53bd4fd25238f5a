/*
 * The executor front end: the public weft_executor_* and weft_imap_* calls
 * on top of one backend vtable (executor_impl.h). It checks arguments,
 * builds jobs (copying arguments), makes futures, cuts maps into chunks and
 * enforces their deadline, bounds imap, and keeps the eventfd. Backends
 * only move jobs to workers and run them (weft__job_run) or cancel them.
 *
 * Jobs. One cache line each, with small arguments inline. They come from
 * a per-thread cache of free jobs, refilled from and spilled to a global
 * lock-free stack (pushes by CAS, the refill takes the whole stack with one
 * exchange, so there is no ABA), so that in the steady state a submit
 * allocates no job and a worker frees into its own cache. The global stack
 * is capped (spills beyond it go back to the allocator) and trimmed when a
 * pool has stayed idle. A thread's cache is flushed to the global stack
 * when the thread exits (pthread key destructor).
 *
 * Maps. One job per chunk. The chunks share a weft__map: a per-chunk state
 * byte (pending -> running -> done, or pending -> cancelled, each claimed
 * by CAS so that a chunk is run or cancelled exactly once), a count of
 * chunks not yet ended that the caller waits on (its futex word), and the
 * lowest failed index. The map is reference-counted (the caller plus one per
 * chunk job still held by the backend), so a chunk job that a worker pops
 * after the caller has returned (a chunk cancelled at the deadline) touches
 * only the map's memory, never the caller's arrays.
 *
 * Batches. A submit_many is one allocation (futures and copied arguments)
 * cut into chunks like a map; its items run one after the other as tasks.
 * A chunk that runs publishes a cursor on its thread, so that a nested wait
 * there runs the chunk's later items (weft__job_run_nested_item).
 *
 * Locking: g_spare (the global job stack) and ex->dead are lock-free
 * stacks taken whole. Each map's fail_mu guards its failure record (rare
 * path). ex->fd_mu only serialises creating the eventfd. The job cache,
 * tls_cursor and an imap's iterator state belong to one thread each. No
 * user code runs under any lock: tasks, callbacks and imap sources run with
 * none held.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/efd.h"
#include "common/futex.h"
#include "executor/executor_impl.h"
#include "future/future_impl.h"

struct weft_executor {
  const weft__executor_ops *ops; /* the backend; immutable */
  void *be;                      /* the backend's state; immutable */
  unsigned workers;              /* immutable */
  _Atomic int efd;               /* -1 until weft_executor_fd; then fixed */
  pthread_mutex_t fd_mu;         /* serialises making efd */
  atomic_bool shut;              /* weft_executor_shutdown was called */
  unsigned fork_gen;             /* g_fork.gen at create; immutable */
  /* Finished small submit_many batches, freed by the next submit_many or
   * by destroy: a worker freeing a batch block while the submitter mallocs
   * the next batch's futures fights it for glibc's arena lock (measured:
   * thousands of futex calls per W1 run). Lock-free stack, taken whole. */
  _Atomic(struct weft__batch *) dead;
};

/* Bumped in the child of every fork(). An executor made before the fork
 * has no workers in the child, and its locks may have been held by threads
 * that do not exist there: every call on it from the child is refused
 * (WEFT_EBROKEN) and destroy only frees what the child can free. */
static struct {
  _Alignas(64) atomic_uint gen; /* read by every call: a line of its own */
} g_fork;
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;
static void fork_child(void) { atomic_fetch_add_explicit(&g_fork.gen, 1, memory_order_relaxed); }
static void fork_setup(void) { pthread_atfork(NULL, NULL, fork_child); }

static inline bool forked(const weft_executor *ex) {
  return WEFT_UNLIKELY(atomic_load_explicit(&g_fork.gen, memory_order_relaxed) != ex->fork_gen);
}

/* ------------------------------------------------------------ job cache */

_Static_assert(sizeof(weft__job) <= 64, "a job is one cache line");
/* A small job is the first 32 bytes of a job, with the argument where ref
 * would be: it must fit a future's result area. */
_Static_assert(offsetof(weft__job, arg) <= WEFT__FUTURE_EMBED_BYTES &&
                   offsetof(weft__job, ref) + WEFT__JOB_SMALL_ARG <= offsetof(weft__job, kind) &&
                   sizeof(((weft__job *)0)->ref) == WEFT__JOB_SMALL_ARG,
               "small job layout");

/* The future that holds small job j, and j's argument bytes. */
static inline weft_future *small_future(weft__job *j) {
  return (weft_future *)((char *)j - WEFT__FUTURE_EMBED_OFFSET);
}
static inline void *small_arg(weft__job *j) { return &j->ref; }

#define TLS_JOBS_MAX 256 /* a thread keeps at most this many free jobs */
/* The global stack keeps at most about this many: a burst of queued tasks
 * frees its jobs while the submitter still allocates, and freeing them to
 * malloc then would fight the submitter for the allocator's lock (measured:
 * tens of thousands of futex calls per W1 run with a 16 K cap). An idle
 * pool trims it back to GLOBAL_JOBS_KEEP (weft__job_cache_trim). */
#define GLOBAL_JOBS_MAX (1 << 20)
#define GLOBAL_JOBS_KEEP 4096

typedef struct job_cache {
  weft__job *head; /* free jobs of this thread; the thread's own */
  unsigned n;      /* how many, at least (a refill from the global stack is
                    * not counted exactly) */
  bool keyed;      /* the exit destructor is registered for this thread */
} job_cache;

static _Thread_local job_cache tls_jobs;
/* The global spare stack sits on a cache line of its own: every spill and
 * refill writes it, and read-mostly globals beside it would pay for that. */
static struct {
  _Alignas(64) _Atomic(weft__job *) head; /* spare jobs of all threads; lock-free stack */
  _Atomic long n;                         /* about how many are on it */
} g_spare;
static pthread_key_t g_jobs_key;
static bool g_jobs_key_ok;         /* written once under g_jobs_once */
static pthread_once_t g_jobs_once = PTHREAD_ONCE_INIT;

/* Give the NULL-terminated chain first..last (k jobs) to the global stack,
 * or to the allocator when the stack holds enough. */
static void jobs_release_chain(weft__job *first, weft__job *last, unsigned k) {
  if (atomic_load_explicit(&g_spare.n, memory_order_relaxed) >= GLOBAL_JOBS_MAX) {
    while (first) {
      weft__job *nx = first->next;
      weft__free_aligned(first);
      first = nx;
    }
    return;
  }
  weft__job *old = atomic_load_explicit(&g_spare.head, memory_order_relaxed);
  do {
    last->next = old;
  } while (!atomic_compare_exchange_weak_explicit(&g_spare.head, &old, first, memory_order_release,
                                                  memory_order_relaxed));
  atomic_fetch_add_explicit(&g_spare.n, (long)k, memory_order_relaxed);
}

void weft__job_cache_trim(void) {
  if (atomic_load_explicit(&g_spare.n, memory_order_relaxed) <= 2 * GLOBAL_JOBS_KEEP) return;
  weft__job *j = atomic_exchange_explicit(&g_spare.head, NULL, memory_order_acquire);
  atomic_store_explicit(&g_spare.n, 0, memory_order_relaxed);
  if (!j) return;
  /* Keep the first GLOBAL_JOBS_KEEP, free the rest. */
  weft__job *last = j;
  unsigned k = 1;
  while (k < GLOBAL_JOBS_KEEP && last->next) {
    last = last->next;
    k++;
  }
  weft__job *rest = last->next;
  last->next = NULL;
  jobs_release_chain(j, last, k);
  while (rest) {
    weft__job *nx = rest->next;
    weft__free_aligned(rest);
    rest = nx;
  }
}

long weft__job_cache_spare(void) { return atomic_load(&g_spare.n); }

static void jobs_thread_exit(void *p) {
  job_cache *c = p;
  if (!c->head) return;
  weft__job *last = c->head;
  unsigned k = 1;
  while (last->next) {
    last = last->next;
    k++;
  }
  jobs_release_chain(c->head, last, k);
  c->head = NULL;
  c->n = 0;
}

static void jobs_key_init(void) {
  g_jobs_key_ok = pthread_key_create(&g_jobs_key, jobs_thread_exit) == 0;
}

/* The thread's cache is about to hold jobs: make sure they are handed back
 * when the thread exits. */
static inline void jobs_keep(job_cache *c) {
  if (WEFT_UNLIKELY(!c->keyed)) {
    pthread_once(&g_jobs_once, jobs_key_init);
    if (g_jobs_key_ok) pthread_setspecific(g_jobs_key, c);
    c->keyed = true;
  }
}

weft__job *weft__job_alloc(size_t arg_len) {
  job_cache *c = &tls_jobs;
  weft__job *j = c->head;
  if (WEFT_LIKELY(j)) {
    c->head = j->next;
    if (c->n) c->n--;
    /* The next job's line was last written by the worker that freed it:
     * start fetching it now, for writing, so that the next submit does not
     * stall on it. */
    if (c->head) __builtin_prefetch(c->head, 1);
  } else {
    /* Take the whole global stack at once: an exchange cannot suffer ABA.
     * Do not walk it: its jobs were last written by other threads, and a
     * walk would be a chain of cache misses. Its count is approximate, and
     * only decides when this thread spills. */
    if (atomic_load_explicit(&g_spare.head, memory_order_relaxed))
      j = atomic_exchange_explicit(&g_spare.head, NULL, memory_order_acquire);
    if (j) {
      long n = atomic_exchange_explicit(&g_spare.n, 0, memory_order_relaxed);
      jobs_keep(c);
      c->head = j->next;
      c->n = n > TLS_JOBS_MAX / 2 ? TLS_JOBS_MAX / 2 : n > 1 ? (unsigned)n - 1 : 0;
    } else {
      j = weft__malloc_aligned(sizeof *j, 64);
      if (!j) return NULL;
    }
  }
  if (arg_len > WEFT__JOB_INLINE) {
    j->arg.heap = weft__malloc(arg_len);
    if (!j->arg.heap) {
      j->arg_len = 0;
      weft__job_free(j);
      return NULL;
    }
  }
  j->next = NULL;
  j->ref = NULL;
  j->kind = WEFT__JOB_TASK;
  j->arg_len = (uint32_t)arg_len;
  return j;
}

void weft__job_free(weft__job *j) {
  if (j->kind == WEFT__JOB_TASK && j->arg_len > WEFT__JOB_INLINE) weft__free(j->arg.heap);
  job_cache *c = &tls_jobs;
  jobs_keep(c);
  j->next = c->head;
  c->head = j;
  if (WEFT_UNLIKELY(++c->n >= TLS_JOBS_MAX)) {
    /* Spill the newest half: those are the nodes this thread just wrote,
     * so walking them costs no cache misses. */
    weft__job *first = c->head, *last = first;
    unsigned k = 1;
    while (k < TLS_JOBS_MAX / 2 && last->next) {
      last = last->next;
      k++;
    }
    c->head = last->next;
    last->next = NULL;
    c->n = c->n > k ? c->n - k : 0;
    jobs_release_chain(first, last, k);
  }
}

/* ------------------------------------------------------------------ maps */

enum { CHUNK_PENDING = 0, CHUNK_RUNNING, CHUNK_DONE, CHUNK_CANCELLED };

/* At most this many chunks (a chunk index and the counts fit 32 bits). */
#define MAX_CHUNKS (1u << 30)

typedef struct weft__map {
  _Atomic uint32_t remaining; /* chunks not yet ended; the caller's futex word */
  _Atomic uint32_t refs;      /* the caller + each chunk job the backend holds */
  atomic_bool cancel;         /* the deadline passed: start no more items */
  weft_task_fn *fn;           /* immutable from here down to st */
  const unsigned char *in;
  size_t in_size;
  unsigned char *out;
  size_t out_size;
  size_t n;
  size_t chunksize;
  size_t nchunks;
  pthread_mutex_t fail_mu; /* guards failed, fail_index, fail_code */
  bool failed;             /* an item failed; fail_mu */
  size_t fail_index;       /* the lowest failed index so far; fail_mu */
  int fail_code;           /* its error; fail_mu */
  _Atomic uint8_t st[];    /* per chunk: CHUNK_*; CAS from PENDING claims it */
} weft__map;

/* The chunks of one submit_many: the copied arguments and the futures,
 * in one allocation, freed when the last chunk ends. */
typedef struct weft__batch {
  _Atomic uint32_t refs;  /* chunk jobs not yet ended (+ the submitter's) */
  struct weft__batch *next_dead; /* link in ex->dead once finished */
  weft_executor *ex;      /* immutable from here on */
  size_t bytes;           /* the size of this allocation */
  weft_task_fn *fn;
  size_t arg_size;
  size_t n;
  size_t chunksize;
  weft_future **futs;     /* n executor references, or NULL: fire and forget */
  unsigned char *args;    /* n * arg_size bytes */
} weft__batch;

/* A BATCH chunk being run on this thread, innermost first: a nested wait
 * may run its items not yet started (weft__job_run_nested_item). Lives on
 * the running thread's stack; only that thread touches it. */
typedef struct batch_cursor {
  weft__batch *b;
  size_t next;                /* the next item to start */
  size_t end;                 /* one past the chunk's last item */
  weft_executor *ex;
  const atomic_bool *cancel;
  struct batch_cursor *outer; /* the chunk this one runs inside of, or NULL */
} batch_cursor;

static _Thread_local batch_cursor *tls_cursor;

static void map_unref(weft__map *m) {
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
    pthread_mutex_destroy(&m->fail_mu);
    weft__free(m);
  }
}

static void map_fail(weft__map *m, size_t i, int code) {
  pthread_mutex_lock(&m->fail_mu);
  if (!m->failed || i < m->fail_index) {
    m->failed = true;
    m->fail_index = i;
    m->fail_code = code;
  }
  pthread_mutex_unlock(&m->fail_mu);
}

/* k chunks ended; wake the caller when none is left. */
static void map_chunks_ended(weft__map *m, uint32_t k) {
  if (k && atomic_fetch_sub_explicit(&m->remaining, k, memory_order_acq_rel) == k)
    weft__futex_wake(&m->remaining, INT_MAX, 0);
}

static void bounds(size_t c, size_t chunksize, size_t n, size_t *lo, size_t *hi) {
  *lo = c * chunksize;
  *hi = *lo + chunksize;
  if (*hi > n) *hi = n;
}

uint64_t weft__job_items(const weft__job *j) {
  size_t lo, hi;
  switch (j->kind) {
  case WEFT__JOB_MAP: {
    const weft__map *m = j->ref;
    bounds(j->arg_len, m->chunksize, m->n, &lo, &hi);
    return hi - lo;
  }
  case WEFT__JOB_BATCH: {
    const weft__batch *b = j->ref;
    bounds(j->arg_len, b->chunksize, b->n, &lo, &hi);
    return hi - lo;
  }
  default: return 1;
  }
}

static void run_map_chunk(weft_executor *ex, weft__map *m, size_t c, weft__scratch *scratch,
                          const atomic_bool *cancel) {
  uint8_t expect = CHUNK_PENDING;
  if (!atomic_compare_exchange_strong_explicit(&m->st[c], &expect, CHUNK_RUNNING,
                                               memory_order_acq_rel, memory_order_relaxed)) {
    map_unref(m); /* cancelled by the map's caller at its deadline */
    return;
  }
  size_t lo, hi;
  bounds(c, m->chunksize, m->n, &lo, &hi);
  for (size_t i = lo; i < hi; i++) {
    /* An item not started when the deadline passed is left alone; the
     * caller reports WEFT_ETIMEDOUT. */
    if (WEFT_UNLIKELY(atomic_load_explicit(&m->cancel, memory_order_relaxed))) break;
    if (WEFT_UNLIKELY(cancel && atomic_load_explicit(cancel, memory_order_relaxed))) {
      map_fail(m, i, WEFT_ECANCELED);
      break;
    }
    weft_task_ctx ctx;
    weft__task_ctx_init(&ctx, WEFT__SINK_SLOT, NULL, m->out ? m->out + i * m->out_size : NULL,
                        m->out_size, scratch);
    int rc = m->fn(&ctx, m->in + i * m->in_size, m->in_size);
    rc = weft__task_ctx_outcome(&ctx, rc);
    weft__task_ctx_fini(&ctx);
    if (WEFT_UNLIKELY(rc)) map_fail(m, i, rc);
  }
  atomic_store_explicit(&m->st[c], CHUNK_DONE, memory_order_release);
  weft__executor_note_completed(ex, hi - lo);
  map_chunks_ended(m, 1);
  map_unref(m);
}

/* Run fn on arg with its result going to f (or to scratch), and finish f.
 * f has been moved to running by the caller (or is NULL). */
static void run_task(weft_task_fn *fn, const void *arg, size_t len, weft_future *f,
                     weft__scratch *scratch, weft__job *spent) {
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, f ? WEFT__SINK_FUTURE : WEFT__SINK_SCRATCH, f, NULL, 0, scratch);
  int rc = fn(&ctx, arg, len);
  /* The job is spent: free it before the callbacks run, so that a callback
   * that submits again reuses it from this thread's cache. */
  if (spent) weft__job_free(spent);
  rc = weft__task_ctx_outcome(&ctx, rc);
  if (f) {
    if (WEFT_LIKELY(rc == 0))
      weft__future_finish_done(f);
    else
      weft__future_finish_failed(f, rc, weft__task_ctx_message(&ctx));
    weft_future_release(f);
  }
  weft__task_ctx_fini(&ctx);
}

static void batch_item(batch_cursor *cur, size_t i, weft__scratch *scratch) {
  weft__batch *b = cur->b;
  weft_future *f = b->futs ? b->futs[i] : NULL;
  if (WEFT_UNLIKELY(cur->cancel && atomic_load_explicit(cur->cancel, memory_order_relaxed))) {
    if (f) {
      weft_future_cancel(f);
      weft_future_release(f);
    }
  } else if (f && WEFT_UNLIKELY(weft_future_set_running(f) != 0)) {
    weft_future_release(f); /* cancelled while queued */
  } else {
    run_task(b->fn, b->args + i * b->arg_size, b->arg_size, f, scratch, NULL);
  }
  weft__executor_note_completed(cur->ex, 1);
}

/* Batches of at least this many bytes are freed by whoever ends them last:
 * their work dwarfs one contended free, and they are not worth keeping. */
#define BATCH_DEFER_MAX (64u * 1024u)

/* Drop a chunk's reference; the last one frees b or puts it on ex->dead. */
static void batch_unref(weft__batch *b) {
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
  if (b->bytes >= BATCH_DEFER_MAX) {
    weft__free(b);
    return;
  }
  weft_executor *ex = b->ex;
  weft__batch *old = atomic_load_explicit(&ex->dead, memory_order_relaxed);
  do {
    b->next_dead = old;
  } while (!atomic_compare_exchange_weak_explicit(&ex->dead, &old, b, memory_order_release,
                                                  memory_order_relaxed));
}

/* Free the finished batches of ex. */
static void batches_reap(weft_executor *ex) {
  if (!atomic_load_explicit(&ex->dead, memory_order_relaxed)) return;
  weft__batch *b = atomic_exchange_explicit(&ex->dead, NULL, memory_order_acquire);
  while (b) {
    weft__batch *nx = b->next_dead;
    weft__free(b);
    b = nx;
  }
}

void weft__executor_idle(weft_executor *ex) {
  (void)ex; /* its dead batches are small and go with the next submit_many */
  weft__job_cache_trim();
}

static void run_batch_chunk(weft_executor *ex, weft__batch *b, size_t c, weft__scratch *scratch,
                            const atomic_bool *cancel) {
  batch_cursor cur = {b, 0, 0, ex, cancel, tls_cursor};
  bounds(c, b->chunksize, b->n, &cur.next, &cur.end);
  tls_cursor = &cur;
  while (cur.next < cur.end) batch_item(&cur, cur.next++, scratch);
  tls_cursor = cur.outer;
  batch_unref(b);
}

bool weft__job_run_nested_item(weft__scratch *scratch) {
  for (batch_cursor *cur = tls_cursor; cur; cur = cur->outer) {
    if (cur->next < cur->end) {
      batch_item(cur, cur->next++, scratch);
      return true;
    }
  }
  return false;
}

/* ------------------------------------------------------------ job ends */

/* Run small job j: copy it out of its future first, since the task's
 * result may overwrite it. */
static void run_small(weft_executor *ex, weft__job *j, weft__scratch *scratch,
                      const atomic_bool *cancel) {
  weft_future *f = small_future(j);
  weft_task_fn *fn = j->task.fn;
  uint32_t len = j->arg_len;
  unsigned char arg[WEFT__JOB_SMALL_ARG];
  memcpy(arg, small_arg(j), sizeof arg);
  if (WEFT_UNLIKELY(cancel && atomic_load_explicit(cancel, memory_order_relaxed))) {
    weft__job_cancel(ex, j);
    return;
  }
  if (WEFT_UNLIKELY(weft_future_set_running(f) != 0))
    weft_future_release(f); /* cancelled while queued: skip */
  else
    run_task(fn, arg, len, f, scratch, NULL);
  weft__executor_note_completed(ex, 1);
}

void weft__job_run(weft_executor *ex, weft__job *j, weft__scratch *scratch,
                   const atomic_bool *cancel) {
  if (WEFT_LIKELY(j->kind == WEFT__JOB_SMALL)) {
    run_small(ex, j, scratch, cancel);
    return;
  }
  if (WEFT_UNLIKELY(j->kind != WEFT__JOB_TASK)) {
    void *ref = j->ref;
    size_t c = j->arg_len;
    bool map = j->kind == WEFT__JOB_MAP;
    weft__job_free(j);
    if (map)
      run_map_chunk(ex, ref, c, scratch, cancel);
    else
      run_batch_chunk(ex, ref, c, scratch, cancel);
    return;
  }
  weft_future *f = j->ref;
  if (WEFT_UNLIKELY(cancel && atomic_load_explicit(cancel, memory_order_relaxed))) {
    weft__job_cancel(ex, j);
    return;
  }
  if (f && WEFT_UNLIKELY(weft_future_set_running(f) != 0)) {
    /* Cancelled while queued (or finished by someone else): skip. */
    weft__job_free(j);
    weft_future_release(f);
  } else {
    run_task(j->task.fn, weft__job_arg(j), j->arg_len, f, scratch, j);
  }
  weft__executor_note_completed(ex, 1);
}

void weft__job_cancel(weft_executor *ex, weft__job *j) {
  if (j->kind == WEFT__JOB_SMALL) {
    weft_future *f = small_future(j);
    weft_future_cancel(f);
    weft_future_release(f);
    weft__executor_note_completed(ex, 1);
    return;
  }
  void *ref = j->ref;
  size_t c = j->arg_len;
  uint32_t kind = j->kind;
  weft__job_free(j);
  switch (kind) {
  case WEFT__JOB_MAP: {
    weft__map *m = ref;
    uint8_t expect = CHUNK_PENDING;
    if (atomic_compare_exchange_strong_explicit(&m->st[c], &expect, CHUNK_CANCELLED,
                                                memory_order_acq_rel, memory_order_relaxed)) {
      size_t lo, hi;
      bounds(c, m->chunksize, m->n, &lo, &hi);
      map_fail(m, lo, WEFT_ECANCELED);
      weft__executor_note_completed(ex, hi - lo);
      map_chunks_ended(m, 1);
    }
    map_unref(m);
    return;
  }
  case WEFT__JOB_BATCH: {
    weft__batch *b = ref;
    size_t lo, hi;
    bounds(c, b->chunksize, b->n, &lo, &hi);
    for (size_t i = lo; b->futs && i < hi; i++) {
      weft_future_cancel(b->futs[i]);
      weft_future_release(b->futs[i]);
    }
    weft__executor_note_completed(ex, hi - lo);
    batch_unref(b);
    return;
  }
  default:
    if (ref) {
      weft_future_cancel(ref);
      weft_future_release(ref);
    }
    weft__executor_note_completed(ex, 1);
    return;
  }
}

/* ------------------------------------------- jobs run in another image */

bool weft__job_task_start(weft_executor *ex, weft__job *j) {
  weft_future *f = j->ref;
  if (!f || WEFT_LIKELY(weft_future_set_running(f) == 0)) return true;
  weft__job_free(j); /* cancelled while queued */
  weft_future_release(f);
  weft__executor_note_completed(ex, 1);
  return false;
}

void weft__job_task_end(weft_executor *ex, weft__job *j, int rc, const void *res, size_t len,
                        const char *msg) {
  weft_future *f = j->ref;
  weft__job_free(j);
  if (f) {
    if (rc == 0) {
      void *buf = weft__future_result_buf(f, len);
      if (buf) {
        if (len) memcpy(buf, res, len);
        weft__future_finish_done(f);
      } else {
        weft__future_finish_failed(f, WEFT_ENOMEM, "no memory for the task's result");
      }
    } else {
      weft__future_finish_failed(f, rc, msg);
    }
    weft_future_release(f);
  }
  weft__executor_note_completed(ex, 1);
}

weft__job *weft__job_batch_split(weft_executor *ex, weft__job *j, weft__job **oldest,
                                 uint64_t *n) {
  weft__batch *b = j->ref;
  const weft_task *reg = j->task.reg;
  size_t lo, hi;
  bounds(j->arg_len, b->chunksize, b->n, &lo, &hi);
  weft__job_free(j);
  weft__job *newest = NULL;
  *oldest = NULL;
  *n = 0;
  for (size_t i = lo; i < hi; i++) {
    weft_future *f = b->futs ? b->futs[i] : NULL;
    weft__job *t = weft__job_alloc(b->arg_size);
    if (!t) {
      if (f) {
        weft__future_finish_failed(f, WEFT_ENOMEM, "no memory to queue the task");
        weft_future_release(f);
      }
      weft__executor_note_completed(ex, 1);
      continue;
    }
    t->task.reg = reg;
    t->ref = f;
    if (b->arg_size)
      memcpy(b->arg_size <= WEFT__JOB_INLINE ? (void *)t->arg.inl : t->arg.heap,
             b->args + i * b->arg_size, b->arg_size);
    t->next = newest;
    newest = t;
    if (!*oldest) *oldest = t;
    ++*n;
  }
  batch_unref(b);
  return newest;
}

bool weft__job_map_start(weft__job *j, weft__map_view *v) {
  weft__map *m = j->ref;
  size_t c = j->arg_len;
  uint8_t expect = CHUNK_PENDING;
  if (!atomic_compare_exchange_strong_explicit(&m->st[c], &expect, CHUNK_RUNNING,
                                               memory_order_acq_rel, memory_order_relaxed)) {
    weft__job_free(j);
    map_unref(m); /* cancelled by the map's caller at its deadline */
    return false;
  }
  bounds(c, m->chunksize, m->n, &v->lo, &v->hi);
  v->in = m->in + v->lo * m->in_size;
  v->in_size = m->in_size;
  v->out_size = m->out_size;
  v->out = m->out && m->out_size ? m->out + v->lo * m->out_size : NULL;
  return true;
}

bool weft__job_map_stopping(const weft__job *j) {
  const weft__map *m = j->ref;
  return atomic_load_explicit(&m->cancel, memory_order_relaxed);
}

void weft__job_map_end(weft_executor *ex, weft__job *j, const void *out, size_t ran,
                       const uint32_t *fail_at, const int32_t *fail_code, size_t nfail,
                       int stop_code) {
  weft__map *m = j->ref;
  size_t c = j->arg_len;
  weft__job_free(j);
  size_t lo, hi;
  bounds(c, m->chunksize, m->n, &lo, &hi);
  if (ran > hi - lo) ran = hi - lo;
  if (out && m->out && ran && m->out_size)
    memcpy(m->out + lo * m->out_size, out, ran * m->out_size);
  for (size_t k = 0; k < nfail; k++)
    if (fail_at[k] < ran) map_fail(m, lo + fail_at[k], fail_code[k]);
  if (ran < hi - lo && stop_code) map_fail(m, lo + ran, stop_code);
  atomic_store_explicit(&m->st[c], CHUNK_DONE, memory_order_release);
  weft__executor_note_completed(ex, hi - lo);
  map_chunks_ended(m, 1);
  map_unref(m);
}

/* -------------------------------------------------------------- front end */

/* Backends that live in libraries of their own, by kind (see
 * weft__executor_backend_set). */
static const weft__executor_ops *_Atomic g_backends[WEFT_EXECUTOR_MPI + 1];

void weft__executor_backend_set(weft_executor_kind kind, const weft__executor_ops *ops) {
  WEFT_ASSERT(kind == WEFT_EXECUTOR_PROCESSES || kind == WEFT_EXECUTOR_MPI);
  atomic_store_explicit(&g_backends[kind], ops, memory_order_release);
}

void weft__executor_note_completed(weft_executor *ex, uint64_t items) {
  int fd = atomic_load_explicit(&ex->efd, memory_order_acquire);
  if (WEFT_UNLIKELY(fd >= 0) && items) {
    ssize_t r = write(fd, &items, sizeof items);
    (void)r; /* EAGAIN: the counter is saturated, and readable anyway */
  }
}

int weft_executor_create(weft_executor **out, const weft_executor_opts *opts) {
  WEFT_CHECK_HANDLE(out);
  weft_executor_opts o;
  if (opts)
    o = *opts;
  else
    memset(&o, 0, sizeof o);
  const weft__executor_ops *ops;
  switch (o.kind) {
  case WEFT_EXECUTOR_THREADS: ops = &weft__pool_thread_ops; break;
  case WEFT_EXECUTOR_PROCESSES:
    /* Built in; a program may still plug in another. */
    ops = atomic_load_explicit(&g_backends[o.kind], memory_order_acquire);
    if (!ops) ops = &weft__pool_process_ops;
    break;
  case WEFT_EXECUTOR_MPI:
    if (o.workers > 4096) return WEFT_EINVAL;
    ops = atomic_load_explicit(&g_backends[o.kind], memory_order_acquire);
    if (!ops) return WEFT_ENOTSUP; /* not built into (or not set up in) this program */
    break;
  default: return WEFT_EINVAL;
  }
  if (o.workers > 4096) return WEFT_EINVAL;
  if (o.workers == 0)
    o.workers = ops->default_workers ? ops->default_workers() : (unsigned)weft_cpu_count();
  if (!o.name) o.name = "weft-pool";
  pthread_once(&g_fork_once, fork_setup);

  weft_executor *ex = weft__malloc(sizeof *ex);
  if (!ex) return WEFT_ENOMEM;
  ex->ops = ops;
  ex->workers = o.workers;
  atomic_init(&ex->efd, -1);
  atomic_init(&ex->shut, false);
  atomic_init(&ex->dead, NULL);
  ex->fork_gen = atomic_load(&g_fork.gen);
  int r = -pthread_mutex_init(&ex->fd_mu, NULL);
  if (r) goto out_free;
  r = ops->create(ex, &o, &ex->be);
  if (r) goto out_mutex;
  *out = ex;
  return 0;

out_mutex:
  pthread_mutex_destroy(&ex->fd_mu);
out_free:
  weft__free(ex);
  return r;
}

/* Fill in how a job names its task: the registry entry on a backend that
 * finds tasks by name (WEFT_ENOTASK when task is not registered under its
 * name with the same function), else the function. */
static int job_task(const weft_executor *ex, const weft_task *task, weft__job *j) {
  if (!ex->ops->needs_names) {
    j->task.fn = task->fn;
    return 0;
  }
  const weft_task *reg;
  if (weft_task_find(task->name, &reg) != 0 || reg->fn != task->fn) return WEFT_ENOTASK;
  j->task.reg = reg;
  return 0;
}

/* submit with a future and a small argument, on a small_jobs backend: the
 * job lives in the future (executor_impl.h, WEFT__JOB_SMALL). */
static int submit_small(weft_executor *ex, const weft_task *task, const void *arg,
                        size_t arg_len, weft_future **out) {
  weft_future *f;
  /* One reference for the executor, one for the caller. */
  int r = weft__future_alloc_shared(&f);
  if (WEFT_UNLIKELY(r)) return r;
  weft__job *j = (weft__job *)((char *)f + WEFT__FUTURE_EMBED_OFFSET);
  j->next = NULL;
  j->task.fn = task->fn;
  j->kind = WEFT__JOB_SMALL;
  j->arg_len = (uint32_t)arg_len;
  if (arg_len) memcpy(small_arg(j), arg, arg_len);
  r = ex->ops->submit(ex->be, j, j, 1);
  if (WEFT_UNLIKELY(r)) {
    weft_future_release(f);
    weft_future_release(f);
    return r;
  }
  *out = f;
  return 0;
}

/* What submit and submit_opts check of their arguments (call names the
 * public function in a misuse report): 0, or the error to return. */
static int submit_check(weft_executor *ex, const weft_task *task, const void *arg,
                        size_t arg_len, const char *call) {
  if (arg_len && !arg) weft__misuse(call, "argument 'arg' is NULL with arg_len > 0");
  if (WEFT_UNLIKELY(!task->fn)) return WEFT_EINVAL;
  if (WEFT_UNLIKELY(arg_len > ex->ops->arg_max)) return WEFT_E2BIG;
  if (forked(ex)) return WEFT_EBROKEN;
  return 0;
}

/* Make the job of one task (and its future, with both references, when out
 * is not NULL) and hand it to the backend: ops->submit, or
 * ops->submit_deadline when deadline is not WEFT_FOREVER. */
static int submit_job(weft_executor *ex, const weft_task *task, const void *arg, size_t arg_len,
                      int64_t deadline, weft_future **out) {
  weft__job *j = weft__job_alloc(arg_len);
  if (WEFT_UNLIKELY(!j)) return WEFT_ENOMEM;
  int r = job_task(ex, task, j);
  if (WEFT_UNLIKELY(r)) goto out_job;
  if (arg_len) memcpy(arg_len <= WEFT__JOB_INLINE ? (void *)j->arg.inl : j->arg.heap, arg, arg_len);
  weft_future *f = NULL;
  if (out) {
    /* One reference for the executor, one for the caller. */
    r = weft__future_alloc_shared(&f);
    if (WEFT_UNLIKELY(r)) goto out_job;
    j->ref = f;
  }
  r = deadline == WEFT_FOREVER ? ex->ops->submit(ex->be, j, j, 1)
                               : ex->ops->submit_deadline(ex->be, j, deadline);
  if (WEFT_UNLIKELY(r)) {
    if (f) {
      weft_future_release(f);
      weft_future_release(f);
    }
    goto out_job;
  }
  if (out) *out = f;
  return 0;
out_job:
  weft__job_free(j);
  return r;
}

int weft_executor_submit(weft_executor *ex, const weft_task *task, const void *arg,
                         size_t arg_len, weft_future **out) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(task);
  int r = submit_check(ex, task, arg, arg_len, __func__);
  if (WEFT_UNLIKELY(r)) return r;
  if (out && arg_len <= WEFT__JOB_SMALL_ARG && ex->ops->small_jobs)
    return submit_small(ex, task, arg, arg_len, out);
  return submit_job(ex, task, arg, arg_len, WEFT_FOREVER, out);
}

int weft_executor_submit_opts(weft_executor *ex, const weft_task *task, const void *arg,
                              size_t arg_len, const weft_submit_opts *opts, weft_future **out) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(task);
  int64_t deadline = opts && opts->deadline_ns ? opts->deadline_ns : WEFT_FOREVER;
  if (!WEFT_DEADLINE_VALID(deadline)) return WEFT_EINVAL;
  if (deadline == WEFT_FOREVER) return weft_executor_submit(ex, task, arg, arg_len, out);
  if (!ex->ops->submit_deadline) return WEFT_ENOTSUP;
  int r = submit_check(ex, task, arg, arg_len, __func__);
  if (r) return r;
  return submit_job(ex, task, arg, arg_len, deadline, out);
}

int weft_executor_cancel(weft_executor *ex, weft_future *f) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(f);
  int r = weft_future_cancel(f);
  if (r != WEFT_EBUSY || !ex->ops->cancel || forked(ex)) return r;
  return ex->ops->cancel(ex->be, f);
}

/* About four chunks per worker: few enough that the per-job cost vanishes,
 * enough that one slow chunk does not leave the other workers idle. */
static size_t auto_chunksize(const weft_executor *ex, size_t n) {
  size_t want = (size_t)ex->workers * 4;
  size_t cs = n / want + (n % want != 0);
  return cs ? cs : 1;
}

/* How many chunks of cs items n items make; raises cs if needed so that
 * the count stays within MAX_CHUNKS. */
static size_t chunk_count(size_t n, size_t *cs) {
  size_t k = n / *cs + (n % *cs != 0);
  if (k > MAX_CHUNKS) {
    *cs = n / MAX_CHUNKS + (n % MAX_CHUNKS != 0);
    k = n / *cs + (n % *cs != 0);
  }
  return k;
}

/* nchunks jobs of kind over ref, linked newest first (chunk 0 is the
 * oldest, so that a FIFO backend starts there). NULL: out of memory. */
static weft__job *chunk_jobs(const weft_executor *ex, const weft_task *task, uint32_t kind,
                             void *ref, size_t nchunks, weft__job **oldest) {
  weft__job *newest = NULL;
  *oldest = NULL;
  for (size_t c = 0; c < nchunks; c++) {
    weft__job *j = weft__job_alloc(0);
    if (!j) {
      while (newest) {
        weft__job *nx = newest->next;
        weft__job_free(newest);
        newest = nx;
      }
      return NULL;
    }
    (void)job_task(ex, task, j); /* checked by the caller */
    j->kind = kind;
    j->ref = ref;
    j->arg_len = (uint32_t)c;
    j->next = newest;
    newest = j;
    if (!*oldest) *oldest = j;
  }
  return newest;
}

static void free_jobs(weft__job *j) {
  while (j) {
    weft__job *nx = j->next;
    weft__job_free(j);
    j = nx;
  }
}

int weft_executor_submit_many(weft_executor *ex, const weft_task *task, const void *args,
                              size_t arg_size, size_t n, weft_future **outs) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(task);
  if (n && arg_size && !args) weft__misuse(__func__, "argument 'args' is NULL with n > 0");
  if (!task->fn) return WEFT_EINVAL;
  if (arg_size > ex->ops->arg_max) return WEFT_E2BIG;
  if (forked(ex)) return WEFT_EBROKEN;
  if (n == 0) return 0;
  batches_reap(ex);
  weft__job probe;
  int r = job_task(ex, task, &probe);
  if (r) return r;
  size_t bytes, fbytes = 0;
  if (__builtin_mul_overflow(n, arg_size, &bytes) ||
      (outs && __builtin_mul_overflow(n, sizeof(weft_future *), &fbytes)) ||
      __builtin_add_overflow(bytes, fbytes + sizeof(weft__batch), &bytes))
    return WEFT_ENOMEM;

  /* One allocation: the batch, the futures, then the arguments. */
  weft__batch *b = weft__malloc(bytes);
  if (!b) return WEFT_ENOMEM;
  size_t cs = auto_chunksize(ex, n);
  size_t nchunks = chunk_count(n, &cs);
  /* One reference per chunk, and ours until outs is filled in. */
  atomic_init(&b->refs, (uint32_t)nchunks + 1);
  b->next_dead = NULL;
  b->ex = ex;
  b->bytes = bytes;
  b->fn = task->fn;
  b->arg_size = arg_size;
  b->n = n;
  b->chunksize = cs;
  b->futs = outs ? (weft_future **)(b + 1) : NULL;
  b->args = (unsigned char *)(b + 1) + fbytes;
  if (arg_size) memcpy(b->args, args, n * arg_size);
  size_t made = 0;
  for (; outs && made < n; made++) {
    r = weft__future_alloc_shared(&b->futs[made]); /* executor's + caller's */
    if (r) goto out_futs;
  }
  weft__job *oldest, *newest = chunk_jobs(ex, task, WEFT__JOB_BATCH, b, nchunks, &oldest);
  if (!newest) {
    r = WEFT_ENOMEM;
    goto out_futs;
  }
  r = ex->ops->submit(ex->be, newest, oldest, n);
  if (r) {
    free_jobs(newest);
    goto out_futs;
  }
  /* Only now, so that outs stays untouched on error. Our reference keeps
   * b->futs readable even if every chunk has already run. */
  if (outs) memcpy(outs, b->futs, n * sizeof *outs);
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) weft__free(b);
  return 0;

out_futs:
  for (size_t i = 0; i < made; i++) {
    weft_future_release(b->futs[i]);
    weft_future_release(b->futs[i]);
  }
  weft__free(b);
  return r;
}

/* Cancel every chunk of m not yet claimed; returns how many. */
static uint32_t map_cancel_pending(weft__map *m) {
  uint32_t k = 0;
  for (size_t c = 0; c < m->nchunks; c++) {
    uint8_t expect = CHUNK_PENDING;
    if (atomic_compare_exchange_strong_explicit(&m->st[c], &expect, CHUNK_CANCELLED,
                                                memory_order_acq_rel, memory_order_relaxed))
      k++;
  }
  return k;
}

/* Wait until no chunk of m is pending or running. On the deadline, cancel
 * the chunks not started (and stop the running ones between items), then
 * wait for the running ones. Returns 0 or WEFT_ETIMEDOUT. weft__block lets
 * a pool worker run other tasks meanwhile. */
static int map_wait(weft_executor *ex, weft__map *m, int64_t deadline_ns) {
  int r = 0;
  for (;;) {
    uint32_t left = atomic_load_explicit(&m->remaining, memory_order_acquire);
    if (left == 0) return r;
    int e = weft__block(&m->remaining, left, r ? WEFT_FOREVER : deadline_ns);
    if (e == -ETIMEDOUT && r == 0) {
      if (atomic_load_explicit(&m->remaining, memory_order_acquire) == 0) return 0;
      r = WEFT_ETIMEDOUT;
      atomic_store_explicit(&m->cancel, true, memory_order_relaxed);
      map_chunks_ended(m, map_cancel_pending(m));
      if (ex->ops->map_stop) ex->ops->map_stop(ex->be);
    }
  }
}

int weft_executor_map(weft_executor *ex, const weft_task *task, const void *in, size_t in_size,
                      void *out, size_t out_size, size_t n, const weft_map_opts *opts) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(task);
  if (!task->fn) return WEFT_EINVAL;
  int64_t deadline = opts && opts->deadline_ns ? opts->deadline_ns : WEFT_FOREVER;
  if (!WEFT_DEADLINE_VALID(deadline)) return WEFT_EINVAL;
  if (n == 0) return 0;
  if (in_size && !in) weft__misuse(__func__, "argument 'in' is NULL with n > 0");
  if (out_size && !out) weft__misuse(__func__, "argument 'out' is NULL with n > 0");
  if (in_size > ex->ops->arg_max) return WEFT_E2BIG;
  if (forked(ex)) return WEFT_EBROKEN;
  size_t total;
  if (__builtin_mul_overflow(n, in_size, &total) || __builtin_mul_overflow(n, out_size, &total))
    return WEFT_EINVAL; /* the arrays cannot exist */
  weft__job probe;
  int r = job_task(ex, task, &probe);
  if (r) return r;

  size_t cs = opts && opts->chunksize ? opts->chunksize : auto_chunksize(ex, n);
  size_t nchunks = chunk_count(n, &cs);
  weft__map *m = weft__malloc(sizeof *m + nchunks);
  if (!m) return WEFT_ENOMEM;
  if (pthread_mutex_init(&m->fail_mu, NULL) != 0) {
    weft__free(m);
    return WEFT_ENOMEM;
  }
  atomic_init(&m->remaining, (uint32_t)nchunks);
  atomic_init(&m->refs, (uint32_t)nchunks + 1);
  atomic_init(&m->cancel, false);
  m->fn = task->fn;
  m->in = in;
  m->in_size = in_size;
  m->out = out;
  m->out_size = out_size;
  m->n = n;
  m->chunksize = cs;
  m->nchunks = nchunks;
  m->failed = false;
  m->fail_index = 0;
  m->fail_code = 0;
  for (size_t c = 0; c < nchunks; c++) atomic_init(&m->st[c], CHUNK_PENDING);

  weft__job *oldest, *newest = chunk_jobs(ex, task, WEFT__JOB_MAP, m, nchunks, &oldest);
  if (!newest) {
    r = WEFT_ENOMEM;
    goto out_map;
  }
  r = ex->ops->submit(ex->be, newest, oldest, n);
  if (r) {
    free_jobs(newest);
    goto out_map;
  }

  r = map_wait(ex, m, deadline);
  if (r == 0) {
    pthread_mutex_lock(&m->fail_mu);
    if (m->failed) {
      r = m->fail_code;
      if (opts && opts->failed_index) *opts->failed_index = m->fail_index;
    }
    pthread_mutex_unlock(&m->fail_mu);
  }
  map_unref(m);
  return r;

out_map:
  pthread_mutex_destroy(&m->fail_mu);
  weft__free(m);
  return r;
}

/* -------------------------------------------------------------- shutdown */

int weft_executor_shutdown(weft_executor *ex, unsigned flags, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(ex);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  /* A worker waiting for every worker to exit would wait for itself. */
  if ((flags & WEFT_SHUTDOWN_WAIT) && ex->ops->on_worker(ex->be)) return WEFT_EDEADLK;
  if (forked(ex)) return WEFT_EBROKEN;
  atomic_store(&ex->shut, true);
  if (flags & WEFT_SHUTDOWN_KILL) {
    flags |= WEFT_SHUTDOWN_CANCEL_PENDING;
    if (!ex->ops->cancel) flags &= ~WEFT_SHUTDOWN_KILL; /* threads cannot be stopped */
  }
  return ex->ops->shutdown(ex->be, flags, deadline_ns);
}

void weft_executor_destroy(weft_executor *ex) {
  if (!ex) return;
  if (ex->ops->on_worker(ex->be))
    weft__misuse(__func__, "called from one of the executor's own workers");
  if (!forked(ex)) {
    int r = ex->ops->shutdown(ex->be, WEFT_SHUTDOWN_WAIT, WEFT_FOREVER);
    WEFT_ASSERT(r == 0);
    ex->ops->destroy(ex->be);
    batches_reap(ex);
  }
  /* else: the backend's threads and locks belong to the parent; its memory
   * is left to the child's exit. */
  int fd = atomic_load(&ex->efd);
  if (fd >= 0) close(fd);
  pthread_mutex_destroy(&ex->fd_mu);
  weft__free(ex);
}

int weft_executor_fd(weft_executor *ex, int *fd) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(fd);
  int f = weft__efd_get(&ex->efd, &ex->fd_mu, NULL);
  if (f < 0) return f;
  *fd = f;
  return 0;
}

unsigned weft_executor_workers(const weft_executor *ex) {
  WEFT_CHECK_HANDLE(ex);
  return ex->workers;
}

void weft_executor_stats_get(const weft_executor *ex, weft_executor_stats *out) {
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(out);
  ex->ops->stats(ex->be, out);
}

/* ------------------------------------------------------------ lazy maps */

typedef struct imap_slot {
  weft_future *f;              /* the task's future (the submitter's
                                * reference), or NULL when the slot is free;
                                * iterator's thread */
  weft__watch watch;           /* unordered: posts the slot to it->done */
  struct weft_imap *it;        /* immutable */
  struct imap_slot *next;      /* link in it->done (written by the watch
                                * that pushes the slot), it->ready or it->free
                                * (iterator's thread) */
} imap_slot;

struct weft_imap {
  weft_executor *ex;            /* borrowed; immutable */
  weft_task task;               /* immutable */
  weft_imap_source_fn *source;  /* immutable */
  void *ud;                     /* immutable */
  bool unordered;               /* immutable */
  size_t cap;                   /* max in flight; immutable */
  imap_slot *slots;             /* cap slots; immutable pointer */
  /* The rest belongs to the iterator's thread, except done and done_seq. */
  size_t head;                  /* ordered: ring index of the oldest in flight */
  size_t in_flight;             /* submitted, not yet yielded */
  bool source_done;             /* the source ended (or failed) */
  int end_code;                 /* 0, or the error to report once drained */
  imap_slot *free;              /* unordered: free slots */
  imap_slot *ready;             /* unordered: finished, taken from done */
  imap_slot *polled;            /* unordered: in flight without a watch (no
                                 * memory for one): looked at, not awaited */
  _Atomic(imap_slot *) done;    /* unordered: pushed by watches (any thread) */
  _Atomic uint32_t done_seq;    /* unordered: bumped per push; futex word */
  atomic_bool sleeping;         /* unordered: the iterator may sleep on done_seq */
};

/* A watch: the slot's future finished. Runs on the finishing thread. */
static void imap_watch_fn(weft__watch *w, weft_future *f) {
  (void)f;
  imap_slot *s = w->ud;
  weft_imap *it = s->it;
  imap_slot *old = atomic_load_explicit(&it->done, memory_order_relaxed);
  do {
    s->next = old;
  } while (!atomic_compare_exchange_weak_explicit(&it->done, &old, s, memory_order_seq_cst,
                                                  memory_order_relaxed));
  atomic_fetch_add_explicit(&it->done_seq, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&it->sleeping, memory_order_seq_cst))
    weft__futex_wake(&it->done_seq, INT_MAX, 0);
}

int weft_imap_create(weft_imap **out, weft_executor *ex, const weft_task *task,
                     weft_imap_source_fn *source, void *ud, const weft_imap_opts *opts) {
  WEFT_CHECK_HANDLE(out);
  WEFT_CHECK_HANDLE(ex);
  WEFT_CHECK_HANDLE(task);
  WEFT_CHECK_HANDLE(source);
  if (!task->fn) return WEFT_EINVAL;
  size_t cap = opts ? opts->max_in_flight : 0;
  if (cap == 0) cap = (size_t)ex->workers * 2;
  if (cap > (1u << 24)) return WEFT_EINVAL;
  weft__job probe;
  if (job_task(ex, task, &probe) != 0) return WEFT_ENOTASK;
  /* A shutdown after this point shows as WEFT_ESHUTDOWN from
   * weft_imap_next, once the results before it were yielded. */
  if (atomic_load(&ex->shut)) return WEFT_ESHUTDOWN;
  if (forked(ex)) return WEFT_EBROKEN;
  weft_imap *it = weft__calloc(1, sizeof *it);
  if (!it) return WEFT_ENOMEM;
  it->slots = weft__calloc(cap, sizeof *it->slots);
  if (!it->slots) {
    weft__free(it);
    return WEFT_ENOMEM;
  }
  it->ex = ex;
  it->task = *task;
  it->source = source;
  it->ud = ud;
  it->unordered = opts && opts->unordered;
  it->cap = cap;
  atomic_init(&it->done, NULL);
  atomic_init(&it->done_seq, 0);
  atomic_init(&it->sleeping, false);
  for (size_t i = 0; i < cap; i++) {
    imap_slot *s = &it->slots[i];
    s->it = it;
    s->watch.fn = imap_watch_fn;
    s->watch.ud = s;
    weft__list_init(&s->watch.link);
    s->next = it->free;
    it->free = s;
  }
  *out = it;
  return 0;
}

/* Submit tasks until cap are in flight or the source ends. */
static void imap_refill(weft_imap *it) {
  while (!it->source_done && it->in_flight < it->cap) {
    const void *arg = NULL;
    size_t len = 0;
    int r = it->source(it->ud, &arg, &len);
    if (r == 0) {
      weft_future *f;
      r = weft_executor_submit(it->ex, &it->task, arg, len, &f);
      if (r == 0) {
        imap_slot *s;
        if (it->unordered) {
          s = it->free;
          it->free = s->next;
          s->f = f;
          int k = weft__future_watch(f, &s->watch);
          if (k == 0) {
            /* Already finished: straight to ready, the watch would not run. */
            s->next = it->ready;
            it->ready = s;
          } else if (k < 0) {
            /* No memory for a watch: imap_next looks at it instead. */
            s->next = it->polled;
            it->polled = s;
          }
        } else {
          s = &it->slots[(it->head + it->in_flight) % it->cap];
          s->f = f;
        }
        it->in_flight++;
        continue;
      }
    }
    it->source_done = true;
    if (r != WEFT_EEMPTY) it->end_code = r;
  }
}

/* unordered: move what the watches posted, and polled slots that have
 * finished, to ready. */
static void imap_collect(weft_imap *it) {
  imap_slot *s = atomic_exchange_explicit(&it->done, NULL, memory_order_acquire);
  while (s) {
    imap_slot *nx = s->next;
    s->next = it->ready;
    it->ready = s;
    s = nx;
  }
  for (imap_slot **pp = &it->polled; (s = *pp);) {
    if (weft_future_done(s->f)) {
      *pp = s->next;
      s->next = it->ready;
      it->ready = s;
    } else {
      pp = &s->next;
    }
  }
}

int weft_imap_next(weft_imap *it, int64_t deadline_ns, weft_future **f) {
  WEFT_CHECK_HANDLE(it);
  WEFT_CHECK_HANDLE(f);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  imap_refill(it);
  if (it->in_flight == 0) return it->end_code ? it->end_code : WEFT_EEMPTY;
  if (!it->unordered) {
    imap_slot *s = &it->slots[it->head];
    int r = weft_future_wait(s->f, deadline_ns);
    if (r) return r;
    *f = s->f;
    s->f = NULL;
    it->head = (it->head + 1) % it->cap;
    it->in_flight--;
    return 0;
  }
  for (;;) {
    if (!it->ready) imap_collect(it);
    if (it->ready) break;
    uint32_t seq = atomic_load_explicit(&it->done_seq, memory_order_acquire);
    atomic_store_explicit(&it->sleeping, true, memory_order_seq_cst);
    if (atomic_load_explicit(&it->done, memory_order_seq_cst)) {
      atomic_store_explicit(&it->sleeping, false, memory_order_relaxed);
      continue;
    }
    /* Polled slots post nothing: look again within a millisecond. */
    int64_t until = deadline_ns;
    if (it->polled) {
      int64_t soon = weft_deadline_in_ns(1000000);
      if (until == WEFT_FOREVER || until > soon) until = soon;
    }
    int e = weft__block(&it->done_seq, seq, until);
    if (e == -ETIMEDOUT && until != deadline_ns) e = 0;
    atomic_store_explicit(&it->sleeping, false, memory_order_relaxed);
    if (e == -ETIMEDOUT) {
      imap_collect(it);
      if (it->ready) break;
      return WEFT_ETIMEDOUT;
    }
  }
  imap_slot *s = it->ready;
  it->ready = s->next;
  /* The watch posted s but may still be touching it (bumping done_seq):
   * unwatch waits for it to return, so that s can be reused and it freed. */
  weft__future_unwatch(s->f, &s->watch);
  *f = s->f;
  s->f = NULL;
  s->next = it->free;
  it->free = s;
  it->in_flight--;
  return 0;
}

void weft_imap_destroy(weft_imap *it) {
  if (!it) return;
  /* Cancel what has not started first, so that the waits below are only
   * for tasks already running. */
  for (size_t i = 0; i < it->cap; i++)
    if (it->slots[i].f) weft_future_cancel(it->slots[i].f);
  for (size_t i = 0; i < it->cap; i++) {
    imap_slot *s = &it->slots[i];
    if (!s->f) continue;
    weft_future_wait(s->f, WEFT_FOREVER);
    if (it->unordered) weft__future_unwatch(s->f, &s->watch);
    weft_future_release(s->f);
    s->f = NULL;
  }
  weft__free(it->slots);
  weft__free(it);
}
