/*
 * The MPI executor backend on the client (rank 0): the weft__mpi_ops that
 * weft_mpi_init plugs into the executor front end.
 *
 * Submitters push chains of jobs onto a lock-free stack (`incoming`) and
 * wake the one communication thread, which makes every MPI call of the
 * executor (so MPI_THREAD_SERIALIZED is enough). That thread moves jobs to
 * a FIFO, splits submit_many chunks into single tasks (so that each is
 * sent, and cancellable, on its own), packs as many records as a worker's
 * window allows into one TAG_WORK message, reads the TAG_RESULT answers and
 * ends the jobs with them (futures finish and callbacks run on this
 * thread). A worker answers its records in the order it received them, so
 * each worker's records in flight are a FIFO ring.
 *
 * The window. A task sent to a worker counts as running (it can no longer
 * be cancelled), so a worker is sent only about WINDOW_BUDGET_NS of work
 * ahead, measured from the busy time its answers report: one record at a
 * time while tasks are slow or not yet measured, up to WINDOW_MAX when they
 * take a microsecond. That keeps a fast stream of tiny tasks moving in big
 * messages and keeps slow tasks in the client, where cancel() and
 * shutdown(cancel_futures) still reach them.
 *
 * Waiting without burning a core. Answers can only be polled for (MPI has
 * no descriptor to sleep on), and submits come through memory. With records
 * in flight the thread polls continuously for SPIN_NS after its last
 * progress, then naps on the event-count word `wake` with a timeout that
 * doubles from 2 us to 1 ms, so a long task costs about a thousand cheap
 * polls a second and is noticed within a millisecond (or sooner, a tenth
 * of the time it has run). With nothing in flight it sleeps on `wake`
 * without a timeout: 0 % CPU. A submitter wakes it through the event count
 * (one atomic load when the thread is awake, a FUTEX_WAKE when it sleeps).
 *
 * Errors. An MPI call that fails on weft's communicator (MPI_ERRORS_RETURN)
 * breaks the executor: the records in flight on the worker concerned fail
 * with WEFT_EWORKERDIED, everything else unfinished with WEFT_EBROKEN, and
 * submits return WEFT_EBROKEN. An answer that is malformed fails the
 * records it should have answered with -EPROTO.
 *
 * Shutdown with cancel_futures: the communication thread itself cancels
 * what was not sent (it alone may hold jobs between the stack and the
 * FIFO), and the caller waits until it has, so that every such future is
 * cancelled when weft_executor_shutdown returns. Map chunks already sent
 * are stopped between items by TAG_CANCEL, as a map's deadline does.
 *
 * Locking: q_mu guards the FIFO (fifo_head, fifo_tail; fifo_len is written
 * under it and read anywhere), taken by the communication thread to append,
 * pop and cancel; no user code runs under it (jobs are taken out from under
 * the lock before they are ended). `incoming` is a lock-free stack taken
 * whole. Flags and counters are atomics. Everything else belongs to the
 * communication thread, or to create/destroy before it starts and after it
 * is joined.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/evc.h"
#include "common/futex.h"
#include "mpi/mpi_impl.h"

#define WINDOW_BUDGET_NS 1000000  /* work sent ahead to one worker, at most */
#define WINDOW_MAX 512            /* records in flight to one worker, at most */
#define MAP_AHEAD 2               /* map chunks in flight to one worker, at least */
#define MSG_BYTES_MAX (1u << 20)  /* a TAG_WORK message stops growing here */
#define SPIN_NS 50000             /* poll without napping this long after progress */
#define NAP_MIN_NS 2000
#define NAP_MAX_NS 1000000
#define ALIVE_CHECK_NS 100000000 /* look at local workers' processes this often */
#define HELLO_TIMEOUT_NS (60ll * 1000000000) /* a worker that never answers */

typedef struct flight {
  weft__job *job;    /* the job, ended when the answer comes */
  uint64_t id;       /* the record's id */
  uint32_t kind;     /* REC_TASK or REC_MAP */
  uint32_t out_size; /* MAP: bytes per result */
  uint64_t items;    /* 1, or the chunk's items */
  bool cancel_sent;  /* MAP: TAG_CANCEL sent */
  int stop_code;     /* MAP: what items left by a cancel count as */
} flight;

typedef struct wk {
  int rank;
  pid_t pid;         /* the rank's process, from its hello answer */
  bool local;        /* on this host: its death can be seen in /proc */
  unsigned long long start; /* its start time (/proc/pid/stat), against pid reuse */
  flight *ring;      /* records in flight, oldest at head */
  unsigned head, n, cap;
  unsigned window;   /* records that may be in flight */
} wk;

typedef struct tbuf {
  unsigned char *p;
  size_t len, cap;
} tbuf;

typedef struct reg_idx {
  const weft_task *reg;
  uint32_t idx;
} reg_idx;

typedef struct mpi_be {
  weft_executor *ex;
  unsigned nw;
  wk *w;
  reg_idx *ids;      /* registry entries sorted by address, with their HELLO index */
  size_t nids;
  pthread_t thread;
  bool thread_started;

  _Alignas(64) _Atomic(weft__job *) incoming; /* lock-free stack, newest first */
  _Atomic uint32_t wake;                      /* event count the thread sleeps on */
  _Atomic int submitting;                     /* submits between their check and push */

  _Alignas(64) atomic_bool shut;
  atomic_bool cancel_pending; /* shutdown with CANCEL_PENDING was called */
  atomic_bool cancel_done;    /* ... and the thread cancelled what was queued */
  _Atomic uint32_t acks;      /* bumped at cancel_done and at finished (futex word) */
  atomic_bool broken;
  _Atomic uint32_t finished;  /* the thread is done (futex word) */

  pthread_mutex_t q_mu;       /* guards the FIFO */
  weft__job *fifo_head, *fifo_tail;
  _Atomic size_t fifo_len;  /* written under q_mu, read anywhere */

  _Alignas(64) _Atomic uint64_t queued;    /* items not yet sent */
  _Atomic uint64_t inflight;               /* items sent, not answered */
  _Atomic uint64_t busy;                   /* workers with records in flight */
  _Atomic uint64_t completed;

  /* The communication thread's own. */
  uint64_t next_id;
  MPI_Request *reqs;   /* sends under way */
  void **req_bufs;     /* their buffers */
  size_t nreqs, cap_reqs;
  tbuf rx, tx;
  size_t maps_in_flight;
  int broken_code;     /* why the executor broke (first MPI error) */
} mpi_be;

static _Thread_local mpi_be *tls_comm; /* set on the communication thread */
static uint64_t g_next_id = 1;          /* next record id; create and destroy only */

/* ------------------------------------------------------------- helpers */

static void *tbuf_room(tbuf *b, size_t more) {
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    void *p = weft__realloc(b->p, cap);
    if (!p) return NULL;
    b->p = p;
    b->cap = cap;
  }
  return b->p + b->len;
}

static int ptr_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const reg_idx *)a)->reg, y = (uintptr_t)((const reg_idx *)b)->reg;
  return x < y ? -1 : x > y;
}

static uint32_t task_id(const mpi_be *be, const weft_task *reg) {
  size_t lo = 0, hi = be->nids;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (be->ids[mid].reg == reg) return be->ids[mid].idx;
    if ((uintptr_t)be->ids[mid].reg < (uintptr_t)reg)
      lo = mid + 1;
    else
      hi = mid;
  }
  return TASK_BY_NAME; /* registered after the executor was made */
}

static void note_completed(mpi_be *be, uint64_t items) {
  atomic_fetch_add_explicit(&be->completed, items, memory_order_relaxed);
}

/* End a job that was never sent with code (broken executor). */
static void fail_unsent(mpi_be *be, weft__job *j, int code) {
  uint64_t items = weft__job_items(j);
  if (j->kind == WEFT__JOB_TASK) {
    if (weft__job_task_start(be->ex, j)) weft__job_task_end(be->ex, j, code, NULL, 0, NULL);
  } else if (j->kind == WEFT__JOB_MAP) {
    weft__map_view v;
    if (weft__job_map_start(j, &v)) weft__job_map_end(be->ex, j, NULL, 0, NULL, NULL, 0, code);
  } else {
    uint64_t k;
    weft__job *old, *t = weft__job_batch_split(be->ex, j, &old, &k);
    while (t) {
      weft__job *nx = t->next;
      if (weft__job_task_start(be->ex, t)) weft__job_task_end(be->ex, t, code, NULL, 0, NULL);
      t = nx;
    }
  }
  note_completed(be, items);
}

/* ---------------------------------------------------------------- intake */

static void cancel_list(mpi_be *be, weft__job *j);

/* Move what submitters pushed to the FIFO, oldest first, splitting batch
 * chunks. Returns whether anything came. */
static bool intake(mpi_be *be) {
  if (!atomic_load_explicit(&be->incoming, memory_order_relaxed)) return false;
  weft__job *j = atomic_exchange_explicit(&be->incoming, NULL, memory_order_acquire);
  if (!j) return false;
  /* Reverse: the stack is newest first. */
  weft__job *fifo = NULL;
  while (j) {
    weft__job *nx = j->next;
    j->next = fifo;
    fifo = j;
    j = nx;
  }
  weft__job *head = NULL, *tail = NULL;
  size_t n = 0;
  for (j = fifo; j;) {
    weft__job *nx = j->next;
    j->next = NULL;
    if (j->kind == WEFT__JOB_BATCH) {
      uint64_t before = weft__job_items(j), k;
      weft__job *old, *t = weft__job_batch_split(be->ex, j, &old, &k);
      if (before > k) { /* items that failed to allocate were ended */
        atomic_fetch_sub_explicit(&be->queued, before - k, memory_order_relaxed);
        note_completed(be, before - k);
      }
      /* t is newest first: reverse onto the tail. */
      weft__job *rev = NULL;
      while (t) {
        weft__job *tn = t->next;
        t->next = rev;
        rev = t;
        t = tn;
      }
      while (rev) {
        weft__job *rn = rev->next;
        rev->next = NULL;
        if (tail) tail->next = rev; else head = rev;
        tail = rev;
        n++;
        rev = rn;
      }
    } else {
      if (tail) tail->next = j; else head = j;
      tail = j;
      n++;
    }
    j = nx;
  }
  if (!head) return true;
  if (atomic_load_explicit(&be->cancel_done, memory_order_relaxed)) {
    cancel_list(be, head); /* a submit that raced a cancelling shutdown */
    return true;
  }
  pthread_mutex_lock(&be->q_mu);
  if (be->fifo_tail) be->fifo_tail->next = head; else be->fifo_head = head;
  be->fifo_tail = tail;
  atomic_store_explicit(&be->fifo_len, atomic_load_explicit(&be->fifo_len, memory_order_relaxed) + n, memory_order_relaxed);
  pthread_mutex_unlock(&be->q_mu);
  return true;
}

/* ------------------------------------------------------------- sending */

static int post_send(mpi_be *be, int rank, int tag, void *p, size_t len) {
  if (be->nreqs == be->cap_reqs) {
    size_t cap = be->cap_reqs ? be->cap_reqs * 2 : 16;
    MPI_Request *r = weft__realloc(be->reqs, cap * sizeof *r);
    if (!r) return WEFT_ENOMEM;
    be->reqs = r;
    void **b = weft__realloc(be->req_bufs, cap * sizeof *b);
    if (!b) return WEFT_ENOMEM;
    be->req_bufs = b;
    be->cap_reqs = cap;
  }
  int e = MPI_Isend(p, (int)len, MPI_BYTE, rank, tag, weft__mpi.comm, &be->reqs[be->nreqs]);
  if (e != MPI_SUCCESS) return e > 0 ? -EIO : e;
  be->req_bufs[be->nreqs++] = p;
  return 0;
}

/* Free the buffers of finished sends. Returns an MPI error or 0. */
static int reap_sends(mpi_be *be, bool *progress) {
  if (!be->nreqs) return 0;
  int idx[64], out = 0;
  /* Real statuses, not MPI_STATUSES_IGNORE: GCC takes MPICH's (a pointer
   * of value 1) for a zero-sized array and warns. */
  MPI_Status sts[64];
  int e = MPI_Testsome((int)(be->nreqs < 64 ? be->nreqs : 64), be->reqs, &out, idx, sts);
  if (e != MPI_SUCCESS) return -EIO;
  if (out <= 0 || out == MPI_UNDEFINED) return 0;
  for (int k = 0; k < out; k++) {
    weft__free(be->req_bufs[idx[k]]);
    be->req_bufs[idx[k]] = NULL;
  }
  size_t w = 0;
  for (size_t i = 0; i < be->nreqs; i++) {
    if (be->req_bufs[i]) {
      be->reqs[w] = be->reqs[i];
      be->req_bufs[w++] = be->req_bufs[i];
    }
  }
  be->nreqs = w;
  *progress = true;
  return 0;
}

/* Map chunks are sent MAP_AHEAD deep even when they are slow, so that a
 * worker finds its next chunk waiting: unlike a task, a chunk sent ahead
 * can still be stopped (TAG_CANCEL makes the worker skip it). */
static unsigned window_max(const wk *w) { return w->window < MAP_AHEAD ? MAP_AHEAD : w->window; }

static flight *ring_push(wk *w) {
  if (w->n == w->cap) {
    unsigned cap = w->cap ? w->cap * 2 : 64;
    flight *r = weft__malloc(cap * sizeof *r);
    if (!r) return NULL;
    for (unsigned i = 0; i < w->n; i++) r[i] = w->ring[(w->head + i) % w->cap];
    weft__free(w->ring);
    w->ring = r;
    w->head = 0;
    w->cap = cap;
  }
  return &w->ring[(w->head + w->n++) % w->cap];
}

/* Append one record for j to be->tx. 0, WEFT_ENOMEM, or WEFT_E2BIG (a map
 * chunk of more than about 2 GiB: MPI counts bytes in an int; a message
 * stops growing at MSG_BYTES_MAX, so only a record that big is refused). j
 * is untouched. */
static int encode(mpi_be *be, weft__job *j, const weft__map_view *v, uint64_t id) {
  work_rec r = {0};
  r.id = id;
  r.task = task_id(be, j->task.reg);
  const char *name = j->task.reg->name;
  if (r.task == TASK_BY_NAME) r.name_len = (uint32_t)strlen(name);
  const void *data;
  size_t dlen;
  if (j->kind == WEFT__JOB_TASK) {
    r.kind = REC_TASK;
    r.arg_len = j->arg_len;
    r.out_size = j->ref ? 0 : WORK_F_NO_RESULT; /* fire and forget */
    data = weft__job_arg(j);
    dlen = j->arg_len;
  } else {
    r.kind = REC_MAP;
    r.arg_len = (uint32_t)(v->hi - v->lo);
    r.in_size = (uint32_t)v->in_size;
    r.out_size = (uint32_t)v->out_size;
    data = v->in;
    dlen = (v->hi - v->lo) * v->in_size;
  }
  size_t need = sizeof r + weft__mpi_pad8(r.name_len) + weft__mpi_pad8(dlen);
  if (need > (size_t)INT_MAX - be->tx.len) return WEFT_E2BIG;
  unsigned char *p = tbuf_room(&be->tx, need);
  if (!p) return WEFT_ENOMEM;
  memcpy(p, &r, sizeof r);
  p += sizeof r;
  if (r.name_len) {
    memset(p, 0, weft__mpi_pad8(r.name_len));
    memcpy(p, name, r.name_len);
    p += weft__mpi_pad8(r.name_len);
  }
  if (dlen) memcpy(p, data, dlen);
  memset(p + dlen, 0, weft__mpi_pad8(dlen) - dlen);
  be->tx.len += need;
  return 0;
}

/* Pop up to max jobs from the FIFO; with a worker w, also no more than
 * its window allows (map chunks may go MAP_AHEAD deep whatever the window).
 * w NULL: no window. */
static weft__job *fifo_pop(mpi_be *be, size_t max, size_t *got, const struct wk *w) {
  pthread_mutex_lock(&be->q_mu);
  weft__job *head = be->fifo_head, *last = NULL, *j = head;
  size_t k = 0;
  while (j && k < max) {
    if (w) {
      unsigned lim = w->window;
      if (j->kind == WEFT__JOB_MAP && lim < MAP_AHEAD) lim = MAP_AHEAD;
      if (w->n + k >= lim) break;
    }
    last = j;
    j = j->next;
    k++;
  }
  if (last) {
    be->fifo_head = j;
    if (!j) be->fifo_tail = NULL;
    last->next = NULL;
    atomic_store_explicit(&be->fifo_len, atomic_load_explicit(&be->fifo_len, memory_order_relaxed) - k, memory_order_relaxed);
  }
  pthread_mutex_unlock(&be->q_mu);
  *got = k;
  return k ? head : NULL;
}

/* Give jobs back to the FIFO's front (a send that could not be made). */
static void fifo_unpop(mpi_be *be, weft__job *head) {
  if (!head) return;
  weft__job *last = head;
  size_t k = 1;
  while (last->next) {
    last = last->next;
    k++;
  }
  pthread_mutex_lock(&be->q_mu);
  last->next = be->fifo_head;
  be->fifo_head = head;
  if (!be->fifo_tail) be->fifo_tail = last;
  atomic_store_explicit(&be->fifo_len, atomic_load_explicit(&be->fifo_len, memory_order_relaxed) + k, memory_order_relaxed);
  pthread_mutex_unlock(&be->q_mu);
}

static void break_executor(mpi_be *be, int worker, int code);

/* Send work to every worker with room in its window. */
static void dispatch(mpi_be *be, bool *progress) {
  for (unsigned wi = 0; wi < be->nw; wi++) {
    wk *w = &be->w[wi];
    if (w->n >= window_max(w)) continue;
    size_t queued = atomic_load_explicit(&be->fifo_len, memory_order_relaxed);
    if (!queued) return;
    /* Share what is queued among the workers with room. */
    unsigned with_room = 0;
    for (unsigned k = wi; k < be->nw; k++) with_room += be->w[k].n < window_max(&be->w[k]);
    size_t share = (queued + with_room - 1) / with_room;
    /* A worker answers a message's records together unless one is slow,
     * so a fast record's answer may wait behind its neighbours: while
     * records are slow (a small window, or not measured yet) at most half
     * a window goes per message, one at a time below 4. Fast records go
     * as many to a message as the window allows: the wait is then bounded
     * by the window's millisecond, and halving messages cost W8's
     * one-at-a-time submits 20-30 % (measured). */
    if (w->window < 16 && share > w->window / 2) share = w->window / 2 ? w->window / 2 : 1;
    size_t got;
    weft__job *j = fifo_pop(be, share, &got, w);
    if (!j) continue; /* its window is full for what comes next */
    be->tx.len = sizeof(work_hdr);
    if (!tbuf_room(&be->tx, 0)) {
      fifo_unpop(be, j);
      return;
    }
    uint32_t count = 0;
    uint64_t items = 0;
    while (j) {
      weft__job *nx = j->next;
      j->next = NULL;
      if (be->tx.len >= MSG_BYTES_MAX && count) {
        j->next = nx;
        fifo_unpop(be, j);
        break;
      }
      weft__map_view v = {0};
      uint64_t n = weft__job_items(j);
      bool ok = j->kind == WEFT__JOB_TASK ? weft__job_task_start(be->ex, j)
                                          : weft__job_map_start(j, &v);
      atomic_fetch_sub_explicit(&be->queued, n, memory_order_relaxed);
      if (!ok) { /* cancelled while queued: ended already */
        note_completed(be, n);
        j = nx;
        continue;
      }
      uint64_t id = be->next_id++;
      flight *f = ring_push(w);
      int e = f ? encode(be, j, &v, id) : WEFT_ENOMEM;
      if (e) {
        if (f) w->n--;
        /* Fail this one, keep going with the rest. */
        if (j->kind == WEFT__JOB_TASK)
          weft__job_task_end(be->ex, j, e, NULL, 0, NULL);
        else
          weft__job_map_end(be->ex, j, NULL, 0, NULL, NULL, 0, e);
        note_completed(be, n);
        j = nx;
        continue;
      }
      *f = (flight){j, id, j->kind == WEFT__JOB_TASK ? REC_TASK : REC_MAP,
                    (uint32_t)v.out_size, n, false, 0};
      if (f->kind == REC_MAP) be->maps_in_flight++;
      count++;
      items += n;
      j = nx;
    }
    if (!count) continue;
    work_hdr h = {WEFT__MPI_MAGIC, count};
    memcpy(be->tx.p, &h, sizeof h);
    /* The buffer goes with the send; the next message gets a fresh one. */
    void *msg = be->tx.p;
    size_t len = be->tx.len;
    be->tx.p = NULL;
    be->tx.len = be->tx.cap = 0;
    if (w->n == count) atomic_fetch_add_explicit(&be->busy, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&be->inflight, items, memory_order_relaxed);
    int e = post_send(be, w->rank, TAG_WORK, msg, len);
    if (e) {
      weft__free(msg);
      break_executor(be, (int)wi, e);
      return;
    }
    *progress = true;
  }
}

/* Ask workers to stop map chunks whose map gave up, or all of them on a
 * shutdown that cancels. */
static void send_cancels(mpi_be *be) {
  if (!be->maps_in_flight) return;
  bool all = atomic_load_explicit(&be->cancel_pending, memory_order_relaxed);
  for (unsigned wi = 0; wi < be->nw; wi++) {
    wk *w = &be->w[wi];
    for (unsigned i = 0; i < w->n; i++) {
      flight *f = &w->ring[(w->head + i) % w->cap];
      if (f->kind != REC_MAP || f->cancel_sent) continue;
      bool gave_up = weft__job_map_stopping(f->job);
      if (!gave_up && !all) continue;
      cancel_msg *c = weft__malloc(sizeof *c);
      if (!c) return;
      *c = (cancel_msg){WEFT__MPI_MAGIC, 0, f->id};
      int e = post_send(be, w->rank, TAG_CANCEL, c, sizeof *c);
      if (e) {
        weft__free(c);
        break_executor(be, (int)wi, e);
        return;
      }
      f->cancel_sent = true;
      f->stop_code = gave_up ? 0 : WEFT_ECANCELED;
    }
  }
}

/* ------------------------------------------------------------ receiving */

/* End the oldest record in flight on w with its answer. */
static void end_flight(mpi_be *be, wk *w, int rc, const void *res, size_t len, const char *msg,
                       const uint32_t *fail_at, const int32_t *fail_code, size_t nfail,
                       size_t ran, bool stopped) {
  flight f = w->ring[w->head];
  w->head = (w->head + 1) % w->cap;
  w->n--;
  if (w->n == 0) atomic_fetch_sub_explicit(&be->busy, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&be->inflight, f.items, memory_order_relaxed);
  /* Counted before the end wakes whoever waits on the job. */
  note_completed(be, f.items);
  if (f.kind == REC_TASK) {
    weft__job_task_end(be->ex, f.job, rc, res, len, msg);
  } else {
    be->maps_in_flight--;
    if (rc)
      weft__job_map_end(be->ex, f.job, NULL, 0, NULL, NULL, 0, rc);
    else
      weft__job_map_end(be->ex, f.job, res, ran, fail_at, fail_code, nfail,
                        stopped ? f.stop_code : 0);
  }
}

static void handle_result(mpi_be *be, wk *w, const unsigned char *p, size_t len) {
  const unsigned char *end = p + len;
  res_hdr h;
  if (len < sizeof h) return;
  memcpy(&h, p, sizeof h);
  if (h.magic != WEFT__MPI_MAGIC) return;
  p += sizeof h;
  if (h.count) {
    uint64_t avg = h.busy_ns / h.count;
    if (avg < 50) avg = 50;
    uint64_t win = WINDOW_BUDGET_NS / avg;
    w->window = win < 1 ? 1 : win > WINDOW_MAX ? WINDOW_MAX : (unsigned)win;
  }
  for (uint32_t k = 0; k < h.count; k++) {
    res_rec r;
    if ((size_t)(end - p) < sizeof r) return;
    memcpy(&r, p, sizeof r);
    p += sizeof r;
    /* Answers come in order: records older than this one that got none
     * were lost in a malformed message. */
    while (w->n && w->ring[w->head].id < r.id)
      end_flight(be, w, -EPROTO, NULL, 0, "no answer from the worker (malformed message)",
                 NULL, NULL, 0, 0, false);
    bool match = w->n && w->ring[w->head].id == r.id;
    if (r.kind == REC_TASK) {
      size_t need = weft__mpi_pad8(r.len) + weft__mpi_pad8(r.aux);
      if (need > (size_t)(end - p)) {
        if (match) end_flight(be, w, -EPROTO, NULL, 0, "malformed answer", NULL, NULL, 0, 0, false);
        return;
      }
      const unsigned char *res = p, *m = p + weft__mpi_pad8(r.len);
      p += need;
      if (!match || w->ring[w->head].kind != REC_TASK) continue;
      char small[256], *msg = NULL;
      if (r.rc && r.aux) {
        msg = r.aux < sizeof small ? small : weft__malloc((size_t)r.aux + 1);
        if (msg) {
          memcpy(msg, m, r.aux);
          msg[r.aux] = 0;
        }
      }
      end_flight(be, w, r.rc ? r.rc : 0, res, r.rc ? 0 : r.len, msg, NULL, NULL, 0, 0, false);
      if (msg && msg != small) weft__free(msg);
    } else if (r.kind == REC_MAP) {
      size_t out_size = match ? w->ring[w->head].out_size : 0;
      uint64_t items = match ? w->ring[w->head].items : 0;
      size_t fl = weft__mpi_pad8((size_t)r.aux * 8);
      size_t ol = weft__mpi_pad8((size_t)r.len * out_size);
      if (fl + ol > (size_t)(end - p) || r.len > items) {
        if (match) end_flight(be, w, -EPROTO, NULL, 0, NULL, NULL, NULL, 0, 0, false);
        return;
      }
      const unsigned char *fails = p, *out = p + fl;
      p += fl + ol;
      if (!match || w->ring[w->head].kind != REC_MAP) continue;
      uint32_t *fa = NULL;
      int32_t *fc = NULL;
      if (r.aux) {
        fa = weft__malloc((size_t)r.aux * sizeof *fa);
        fc = weft__malloc((size_t)r.aux * sizeof *fc);
        if (!fa || !fc) {
          weft__free(fa);
          weft__free(fc);
          end_flight(be, w, WEFT_ENOMEM, NULL, 0, NULL, NULL, NULL, 0, 0, false);
          continue;
        }
        for (uint32_t i = 0; i < r.aux; i++) {
          memcpy(&fa[i], fails + 8 * i, 4);
          memcpy(&fc[i], fails + 8 * i + 4, 4);
          if (fc[i] >= 0) fc[i] = -EPROTO; /* a failure must carry a code */
        }
      }
      end_flight(be, w, r.rc, out, 0, NULL, fa, fc, r.aux, r.len, r.stopped != 0);
      weft__free(fa);
      weft__free(fc);
    } else {
      return; /* cannot find the next record */
    }
  }
}

/* Read every answer that has arrived. Returns an MPI error or 0. */
static int receive(mpi_be *be, bool *progress, int *from) {
  for (int rounds = 0; rounds < 64; rounds++) {
    int flag = 0;
    MPI_Status st;
    int e = MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, weft__mpi.comm, &flag, &st);
    if (e != MPI_SUCCESS) return -EIO;
    if (!flag) return 0;
    *from = st.MPI_SOURCE;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    be->rx.len = 0;
    if (n < 0 || !tbuf_room(&be->rx, (size_t)n + 8)) return WEFT_ENOMEM;
    e = MPI_Recv(be->rx.p, n, MPI_BYTE, st.MPI_SOURCE, TAG_RESULT, weft__mpi.comm,
                 MPI_STATUS_IGNORE);
    if (e != MPI_SUCCESS) return -EIO;
    *progress = true;
    int wi = st.MPI_SOURCE - 1;
    if (wi < 0 || wi >= (int)be->nw) continue; /* not one of ours */
    handle_result(be, &be->w[wi], be->rx.p, (size_t)n);
  }
  return 0;
}

/* ------------------------------------------------------- dead workers */

/* A launcher that keeps the job alive when a rank dies (Open MPI's
 * --enable-recovery) leaves MPI silent about it: the client would wait for
 * answers that never come. A worker on this host is watched through /proc
 * while it has records in flight: gone, a zombie, or another process under
 * its pid (start time changed) means dead. Ranks on other hosts have no
 * such window; there the launchers' default, ending the job, applies. */
static unsigned long long proc_start_time(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  /* After the command's closing parenthesis: state, then fields 4..; the
   * start time is field 22. */
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ') return 0;
  char state = p[2];
  if (state == 'Z' || state == 'X' || state == 'x') return 0;
  p += 2;
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  return p ? strtoull(p, NULL, 10) : 0;
}

static bool worker_gone(const wk *w) {
  if (!w->local) return false;
  unsigned long long t = proc_start_time(w->pid);
  return t == 0 || t != w->start;
}

/* ------------------------------------------------------------- breaking */

static void break_executor(mpi_be *be, int worker, int code) {
  if (atomic_load(&be->broken)) return;
  be->broken_code = code;
  atomic_store(&be->broken, true);
  atomic_store(&weft__mpi.broken, true);
  if (code == WEFT_EWORKERDIED)
    fprintf(stderr, "weft mpi: worker rank %d (pid %d) died; the executor is broken\n",
            be->w[worker].rank, (int)be->w[worker].pid);
  else
    fprintf(stderr, "weft mpi: MPI failed talking to rank %d (%s); the executor is broken\n",
            worker >= 0 ? be->w[worker].rank : -1, weft_strerror(code));
  for (unsigned wi = 0; wi < be->nw; wi++) {
    wk *w = &be->w[wi];
    int c = (int)wi == worker ? WEFT_EWORKERDIED : WEFT_EBROKEN;
    while (w->n) end_flight(be, w, c, NULL, 0, "the MPI executor broke", NULL, NULL, 0, 0, false);
  }
  size_t got;
  weft__job *j = fifo_pop(be, SIZE_MAX, &got, NULL);
  while (j) {
    weft__job *nx = j->next;
    atomic_fetch_sub_explicit(&be->queued, weft__job_items(j), memory_order_relaxed);
    fail_unsent(be, j, WEFT_EBROKEN);
    j = nx;
  }
  /* The sends under way will not complete: drop them (their buffers stay
   * allocated, as MPI may still read them). */
  be->nreqs = 0;
}

/* Shutdown with CANCEL_PENDING: cancel every job not sent (the FIFO, then
 * the stack, oldest first). On the communication thread, between steps;
 * afterwards intake cancels what still comes (submits that raced the
 * shutdown). */
static void cancel_list(mpi_be *be, weft__job *j) {
  while (j) {
    weft__job *nx = j->next;
    uint64_t n = weft__job_items(j);
    atomic_fetch_sub_explicit(&be->queued, n, memory_order_relaxed);
    note_completed(be, n);
    weft__job_cancel(be->ex, j);
    j = nx;
  }
}

static void cancel_queued(mpi_be *be) {
  atomic_store(&be->cancel_pending, true);
  while (atomic_load(&be->submitting)) sched_yield(); /* between check and push */
  size_t got;
  cancel_list(be, fifo_pop(be, SIZE_MAX, &got, NULL));
  weft__job *stack = atomic_exchange(&be->incoming, NULL), *rev = NULL;
  while (stack) {
    weft__job *nx = stack->next;
    stack->next = rev;
    rev = stack;
    stack = nx;
  }
  cancel_list(be, rev);
  atomic_store(&be->cancel_done, true);
  atomic_fetch_add(&be->acks, 1);
  weft__futex_wake(&be->acks, INT_MAX, 0);
}

/* ---------------------------------------------------------- the thread */

static bool drained(mpi_be *be) {
  if (be->nreqs || atomic_load_explicit(&be->fifo_len, memory_order_relaxed)) return false;
  for (unsigned wi = 0; wi < be->nw; wi++)
    if (be->w[wi].n) return false;
  return true;
}

static void *comm_main(void *arg) {
  mpi_be *be = arg;
  tls_comm = be;
  int64_t last_progress = weft_now_ns(), nap = NAP_MIN_NS, last_alive_check = 0;
  for (;;) {
    if (atomic_load_explicit(&be->cancel_pending, memory_order_acquire) &&
        !atomic_load_explicit(&be->cancel_done, memory_order_relaxed))
      cancel_queued(be);
    bool progress = intake(be);
    bool broken = atomic_load_explicit(&be->broken, memory_order_relaxed);
    if (broken) {
      size_t got;
      weft__job *j = fifo_pop(be, SIZE_MAX, &got, NULL);
      while (j) {
        weft__job *nx = j->next;
        atomic_fetch_sub_explicit(&be->queued, weft__job_items(j), memory_order_relaxed);
        fail_unsent(be, j, WEFT_EBROKEN);
        j = nx;
      }
    } else {
      int from = -1;
      int e = receive(be, &progress, &from);
      if (e) break_executor(be, from - 1, e);
      send_cancels(be);
      dispatch(be, &progress);
      e = reap_sends(be, &progress);
      if (e) break_executor(be, -1, e);
    }
    if (atomic_load(&be->shut) && atomic_load(&be->submitting) == 0 &&
        !atomic_load(&be->incoming) && (broken || drained(be)))
      break;
    int64_t now = weft_now_ns();
    if (progress) {
      last_progress = now;
      nap = NAP_MIN_NS;
      continue;
    }
    bool waiting = !broken && !drained(be);
    if (waiting && now - last_progress < SPIN_NS) continue;
    if (waiting && now - last_alive_check >= ALIVE_CHECK_NS) {
      last_alive_check = now;
      for (unsigned wi = 0; wi < be->nw; wi++) {
        if (be->w[wi].n && worker_gone(&be->w[wi])) {
          break_executor(be, (int)wi, WEFT_EWORKERDIED);
          break;
        }
      }
      continue;
    }
    uint32_t seq = weft__evc_prepare(&be->wake);
    if (atomic_load(&be->incoming)) continue;
    if (!waiting && atomic_load(&be->shut)) {
      sched_yield(); /* a submit is between its check and its push */
      continue;
    }
    if (waiting) {
      /* Nap at most a tenth of the time since the last progress, so that
       * the delay added to a task is a small part of its own time. */
      int64_t cap = (now - last_progress) / 10;
      int64_t n = nap < cap ? nap : cap;
      if (n < NAP_MIN_NS) n = NAP_MIN_NS;
      weft__futex_wait(&be->wake, seq, now + n, 0);
      if (nap < NAP_MAX_NS) nap *= 2;
    } else {
      weft__futex_wait(&be->wake, seq, WEFT_FOREVER, 0);
      last_progress = weft_now_ns();
      nap = NAP_MIN_NS;
    }
  }
  /* Done: the workers forget the executor. */
  if (!atomic_load(&be->broken)) {
    uint32_t magic = WEFT__MPI_MAGIC;
    for (unsigned wi = 0; wi < be->nw; wi++)
      MPI_Send(&magic, sizeof magic, MPI_BYTE, be->w[wi].rank, TAG_CLOSE, weft__mpi.comm);
  }
  atomic_store(&be->finished, 1);
  weft__futex_wake(&be->finished, INT_MAX, 0);
  atomic_fetch_add(&be->acks, 1);
  weft__futex_wake(&be->acks, INT_MAX, 0);
  return NULL;
}

/* ------------------------------------------------------------ the ops */

static unsigned mpi_default_workers(void) {
  return weft__mpi.size > 1 ? (unsigned)weft__mpi.size - 1 : 0;
}

/* Open the executor on ranks 1..n: send the names, check every answer. */
static int hello(mpi_be *be) {
  char *names;
  size_t len;
  uint32_t count;
  int r = weft__mpi_names(&names, &len, &count);
  if (r) return r;
  const weft_task **list;
  size_t n;
  r = weft__task_registry_list(&list, &n);
  if (r) goto out_names;
  /* The HELLO order is the sorted order of both lists (made from the same
   * registry; a task registered in between makes them differ, so match by
   * name). */
  be->ids = weft__malloc((n ? n : 1) * sizeof *be->ids);
  if (!be->ids) {
    weft__free(list);
    r = WEFT_ENOMEM;
    goto out_names;
  }
  {
    const char *q = names;
    uint32_t idx = 0;
    size_t k = 0;
    for (size_t i = 0; i < n && idx < count; i++) {
      while (idx < count && strcmp(q, list[i]->name) < 0) {
        q += strlen(q) + 1;
        idx++;
      }
      if (idx < count && strcmp(q, list[i]->name) == 0) be->ids[k++] = (reg_idx){list[i], idx};
    }
    be->nids = k;
  }
  weft__free(list);
  qsort(be->ids, be->nids, sizeof *be->ids, ptr_cmp);

  size_t mlen = 8 + len;
  unsigned char *msg = weft__malloc(mlen);
  if (!msg) {
    r = WEFT_ENOMEM;
    goto out_names;
  }
  uint32_t h[2] = {WEFT__MPI_MAGIC, count};
  memcpy(msg, h, sizeof h);
  memcpy(msg + 8, names, len);
  MPI_Request *reqs = weft__calloc(2 * (size_t)be->nw, sizeof *reqs);
  MPI_Status *sts = weft__calloc(2 * (size_t)be->nw, sizeof *sts);
  char **acks = weft__calloc(be->nw, sizeof *acks);
  if (!reqs || !acks || !sts) {
    r = WEFT_ENOMEM;
    goto out_msg;
  }
  for (unsigned wi = 0; wi < be->nw; wi++) {
    acks[wi] = weft__malloc(1024);
    if (!acks[wi]) {
      r = WEFT_ENOMEM;
      goto out_acks;
    }
  }
  for (unsigned wi = 0; wi < be->nw; wi++) {
    int e = MPI_Irecv(acks[wi], 1024, MPI_BYTE, be->w[wi].rank, TAG_HELLO_ACK, weft__mpi.comm,
                      &reqs[2 * wi]);
    if (e == MPI_SUCCESS)
      e = MPI_Isend(msg, (int)mlen, MPI_BYTE, be->w[wi].rank, TAG_HELLO, weft__mpi.comm,
                    &reqs[2 * wi + 1]);
    if (e != MPI_SUCCESS) {
      fprintf(stderr, "weft mpi: cannot reach rank %d\n", be->w[wi].rank);
      r = WEFT_EPEERDIED;
      goto out_acks; /* the job is in trouble; requests are abandoned */
    }
  }
  int64_t deadline = weft_deadline_in_ns(HELLO_TIMEOUT_NS), nap = NAP_MIN_NS;
  for (;;) {
    int done = 0;
    if (MPI_Testall(2 * (int)be->nw, reqs, &done, sts) != MPI_SUCCESS) {
      r = WEFT_EPEERDIED;
      fprintf(stderr, "weft mpi: a worker rank did not answer the executor's hello\n");
      goto out_acks;
    }
    if (done) break;
    if (weft_now_ns() > deadline) {
      fprintf(stderr, "weft mpi: a worker rank did not answer within %lld s\n",
              HELLO_TIMEOUT_NS / 1000000000);
      r = WEFT_EPEERDIED;
      goto out_acks;
    }
    weft__mpi_nap(nap);
    if (nap < 200000) nap *= 2;
  }
  char myhost[HOST_NAME_MAX + 1] = "";
  gethostname(myhost, sizeof myhost - 1);
  for (unsigned wi = 0; wi < be->nw; wi++) {
    int got = 0;
    MPI_Get_count(&sts[2 * wi], MPI_BYTE, &got);
    if (got < 18 || got > 1024) {
      fprintf(stderr, "weft mpi: rank %d answered the hello with %d bytes\n", be->w[wi].rank,
              got);
      if (r == 0) r = -EPROTO;
      continue;
    }
    char *a = acks[wi];
    a[got < 1024 ? got : 1023] = 0;
    int32_t st, pid;
    memcpy(&st, a + 4, sizeof st);
    memcpy(&pid, a + 8, sizeof pid);
    const char *host = a + 16;
    const char *why = host + strlen(host) + 1;
    if (why >= a + got) why = "";
    if (st != 0 && r == 0) {
      fprintf(stderr, "weft mpi: the ranks registered different tasks: %s\n", why);
      r = st == WEFT_ENOTASK ? WEFT_ENOTASK : -EPROTO;
    }
    wk *w = &be->w[wi];
    w->pid = pid;
    w->local = pid > 0 && strcmp(host, myhost) == 0;
    if (w->local) w->start = proc_start_time(pid);
  }
  if (r) {
    uint32_t magic = WEFT__MPI_MAGIC;
    for (unsigned wi = 0; wi < be->nw; wi++)
      MPI_Send(&magic, sizeof magic, MPI_BYTE, be->w[wi].rank, TAG_CLOSE, weft__mpi.comm);
  }
out_acks:
  for (unsigned wi = 0; acks && wi < be->nw; wi++) weft__free(acks[wi]);
out_msg:
  weft__free(acks);
  weft__free(reqs);
  weft__free(sts);
  weft__free(msg);
out_names:
  weft__free(names);
  return r;
}

static void be_free(mpi_be *be) {
  for (unsigned wi = 0; be->w && wi < be->nw; wi++) weft__free(be->w[wi].ring);
  weft__free(be->w);
  weft__free(be->ids);
  weft__free(be->reqs);
  weft__free(be->req_bufs);
  weft__free(be->rx.p);
  weft__free(be->tx.p);
  pthread_mutex_destroy(&be->q_mu);
  weft__free(be);
}

static int mpi_create(weft_executor *ex, const weft_executor_opts *opts, void **out) {
  if (!weft__mpi.inited || weft__mpi.finalized || weft__mpi.rank != 0) return WEFT_ENOTSUP;
  if (opts->initializer || opts->finalizer) return WEFT_ENOTSUP;
  if (weft__mpi.size < 2 || opts->workers == 0) {
    fprintf(stderr, "weft mpi: no worker ranks: launch the program with mpiexec -n N, N >= 2\n");
    return WEFT_EAGAIN;
  }
  if (opts->workers > (unsigned)weft__mpi.size - 1) return WEFT_EINVAL;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&weft__mpi.live, &zero, 1)) return WEFT_EBUSY;
  int r = WEFT_ENOMEM;
  mpi_be *be = weft__calloc(1, sizeof *be);
  if (!be) goto out_live;
  if (pthread_mutex_init(&be->q_mu, NULL) != 0) {
    weft__free(be);
    goto out_live;
  }
  be->ex = ex;
  be->nw = opts->workers;
  be->w = weft__calloc(be->nw, sizeof *be->w);
  if (!be->w) goto out_be;
  for (unsigned wi = 0; wi < be->nw; wi++) {
    be->w[wi].rank = (int)wi + 1;
    be->w[wi].window = 1; /* until the first answers tell how long tasks take */
  }
  be->next_id = g_next_id; /* ids never repeat across executors: a late
                            * answer to an old one matches nothing */
  atomic_init(&be->incoming, NULL);
  r = hello(be);
  if (r) goto out_be;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* signals go to the program's threads */
  r = -pthread_create(&be->thread, NULL, comm_main, be);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r) goto out_be;
  pthread_setname_np(be->thread, "weft-mpi");
  be->thread_started = true;
  *out = be;
  return 0;

out_be:
  be_free(be);
out_live:
  atomic_store(&weft__mpi.live, 0);
  return r;
}

static int mpi_submit(void *p, weft__job *newest, weft__job *oldest, uint64_t items) {
  mpi_be *be = p;
  if (atomic_load_explicit(&be->broken, memory_order_relaxed)) return WEFT_EBROKEN;
  atomic_fetch_add(&be->submitting, 1);
  if (atomic_load(&be->shut)) {
    atomic_fetch_sub(&be->submitting, 1);
    return WEFT_ESHUTDOWN;
  }
  atomic_fetch_add_explicit(&be->queued, items, memory_order_relaxed);
  weft__job *old = atomic_load_explicit(&be->incoming, memory_order_relaxed);
  do {
    oldest->next = old;
  } while (!atomic_compare_exchange_weak_explicit(&be->incoming, &old, newest,
                                                  memory_order_seq_cst, memory_order_relaxed));
  atomic_fetch_sub(&be->submitting, 1);
  weft__evc_notify(&be->wake);
  return 0;
}

static int mpi_shutdown(void *p, unsigned flags, int64_t deadline_ns) {
  mpi_be *be = p;
  atomic_store(&be->shut, true);
  if (flags & WEFT_SHUTDOWN_CANCEL_PENDING) {
    if (tls_comm == be) {
      /* From a callback on the thread itself: it is between steps, with
       * no job taken out of the queues. */
      cancel_queued(be);
    } else {
      /* The thread may hold jobs between the stack and the FIFO: it
       * cancels, and this call returns once it has. */
      atomic_store(&be->cancel_pending, true);
      weft__evc_notify(&be->wake);
      for (;;) {
        uint32_t seen = atomic_load(&be->acks);
        if (atomic_load(&be->cancel_done) || atomic_load(&be->finished)) break;
        weft__futex_wait(&be->acks, seen, WEFT_FOREVER, 0);
      }
    }
  }
  weft__evc_notify(&be->wake);
  if (!(flags & WEFT_SHUTDOWN_WAIT)) return 0;
  for (;;) {
    if (atomic_load(&be->finished)) return 0;
    int e = weft__futex_wait(&be->finished, 0, deadline_ns, 0);
    if (e == -ETIMEDOUT) return atomic_load(&be->finished) ? 0 : WEFT_ETIMEDOUT;
  }
}

static void mpi_destroy(void *p) {
  mpi_be *be = p;
  if (be->thread_started) pthread_join(be->thread, NULL);
  g_next_id = be->next_id;
  be_free(be);
  atomic_store(&weft__mpi.live, 0);
}

static void mpi_stats(const void *p, weft_executor_stats *out) {
  mpi_be *be = (mpi_be *)p;
  uint64_t running = atomic_load(&be->busy), inflight = atomic_load(&be->inflight);
  out->queued = atomic_load(&be->queued) + (inflight > running ? inflight - running : 0);
  out->running = running;
  out->completed = atomic_load(&be->completed);
  out->stolen = 0;
}

static bool mpi_on_worker(const void *p) { return tls_comm == p; }

/* A map's caller gave up: wake the thread, so that it sends TAG_CANCEL for
 * the running chunks now rather than after its nap. */
static void mpi_map_stop(void *p) {
  mpi_be *be = p;
  weft__evc_notify(&be->wake);
}

const weft__executor_ops weft__mpi_ops = {
    .kind_name = "mpi",
    .needs_names = true,
    .arg_max = (size_t)INT_MAX - 4096, /* one MPI message, count in an int */
    .create = mpi_create,
    .submit = mpi_submit,
    .shutdown = mpi_shutdown,
    .destroy = mpi_destroy,
    .stats = mpi_stats,
    .on_worker = mpi_on_worker,
    .default_workers = mpi_default_workers,
    .map_stop = mpi_map_stop,
};
