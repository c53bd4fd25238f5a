/*
 * The process backend: a self-healing pool of forked worker processes
 * (Python's multiprocessing.Pool and ProcessPoolExecutor).
 *
 * Shared memory. At create the pool maps one anonymous MAP_SHARED region
 * (nothing named: nothing can be left in /dev/shm) holding a header and, per
 * worker slot, a control block and a data area of AREA_SIZE bytes
 * (MAP_NORESERVE: only pages touched cost memory). Every worker, the first
 * ones and each replacement, is forked after the region exists, so all of
 * them map it at the same address. A slot outlives its processes: a
 * replacement takes over the slot of the worker it replaces.
 *
 * Protocol, per slot (one task in flight per worker, so that the parent
 * always knows exactly which task a worker runs, and a cancel of a task
 * that has not reached a worker never races with its start):
 *  - the parent writes the command (op, function, sizes) and its data
 *    (argument bytes, or a window of map inputs) into the slot, then
 *    publishes it by storing the next sequence number in cmd (release) and
 *    FUTEX_WAKEs cmd if the worker said it sleeps (wsleep);
 *  - the worker spins briefly, then sets wsleep and sleeps on cmd
 *    (process-shared futex); it stores started = seq just before user code
 *    runs (so a death is pinned on the right task, and a task that never
 *    started is sent to another worker instead of failing), writes the
 *    result bytes and outcome into the slot, stores done = seq (release),
 *    bumps the pool's comp_seq and FUTEX_WAKEs it if the collector sleeps.
 *  Both sleeps use the Dekker pattern of common/evc.h: the sleeper stores
 *  its flag then re-reads the word, the waker changes the word then reads
 *  the flag, all seq_cst, so a wake-up is never lost.
 *
 * Threads in the parent.
 *  - The collector owns the workers: it forks them (all of them, so that
 *    PR_SET_PDEATHSIG is tied to a thread that lives as long as the pool),
 *    dispatches queued jobs to idle workers, copies results back into
 *    futures and map outputs, ends futures (their callbacks run on it, with
 *    no lock held), and replaces dead workers. It sleeps on comp_seq.
 *    A submitter that finds a worker idle hands its job over itself, under
 *    mu (one hop less for a lone task).
 *  - The monitor sleeps in poll() on a pidfd per worker and an eventfd
 *    (its own doorbell), with the nearest task deadline as timeout. A pidfd
 *    that becomes readable (the worker ended) is reported to the collector;
 *    a task past its deadline gets its worker SIGKILLed. It never reaps:
 *    the collector reaps each worker with waitid(P_PID) on its own pid, so
 *    the program's other children are never touched.
 *
 * Self-healing. A dead worker's task (if it had started) fails with
 * WEFT_EWORKERDIED and a message naming the worker, its pid and the signal
 * or exit status; in a map chunk only the item that was running fails (it
 * is never run again) and the rest of the chunk runs on another worker. A
 * task that had been handed over but not started goes back to the head of
 * the queue. The collector forks
 * a replacement at once. A worker that dies before it is ready (its
 * initializer crashed) three times in a row breaks the pool: queued and
 * later work fails with WEFT_EBROKEN instead of forking forever.
 *
 * Maps. A chunk stays on one worker. Where the system allows a worker to
 * read and write its parent's memory (process_vm_readv/writev; each worker
 * checks at start), the worker pulls 64 KiB of the caller's inputs at a
 * time, runs them into a private buffer and pushes the outputs back: the
 * copies run in parallel on the workers and the parent only waits.
 * Otherwise the parent copies windows of inputs into the slot's data area
 * and the outputs out of it.
 *
 * Locking: mu guards the queue, each slot's parent-side state (st, cur,
 * dead, pid, pidfd, fut, deadline, kill_reason), the pool state and the
 * list of pidfds waiting to be closed. The collector releases it while it
 * copies results out and ends futures, and while it forks; a slot in
 * W_COLLECT or W_SPAWN belongs to the collector alone meanwhile. No user
 * code (task, callback, initializer) runs under mu: tasks and initializers
 * run in the workers, callbacks on the collector with mu released.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/futex.h"
#include "common/spin.h"
#include "executor/executor_impl.h"
#include "future/future_impl.h"
#include "process/proc_impl.h"
#include "weft/process.h"

/* Each slot's data area (virtual; pages cost memory only once touched). */
#define AREA_SIZE ((size_t)256 << 20)
/* Touched pages above this are given back after a task that used them. */
#define AREA_KEEP ((size_t)16 << 20)
/* The control block before the data area. */
#define CTRL_SIZE ((size_t)16384)
#define MSG_MAX 8192
/* The largest argument: the data area, less nothing. */
#define ARG_MAX AREA_SIZE
/* An idle worker spins this many relax rounds (well under a microsecond)
 * for its next command before it sleeps; the collector does not spin at
 * all. Measured on the W3b round trip (2 cores, loaded by other work),
 * median [p90] in us, worker/collector spin rounds: 64/0 7.3 [10-11];
 * 200/0 8.9 [41]; 64/200 10.1 [16-40]; 200/200 11.8 [17-23]; and with
 * time-based spins of 5 us 19 us, of 20-50 us 50-110 us: a spinner keeps the
 * very thread it waits for (the submitter, the other side) off the CPUs. */
#define WORKER_SPIN 64
/* Consecutive deaths before readiness that break the pool. */
#define EARLY_DEATHS_MAX 3

enum { OP_NONE = 0, OP_TASK, OP_MAP, OP_EXIT };

/* ------------------------------------------------------ shared layout */

typedef struct pool_hdr {
  _Alignas(64) _Atomic uint32_t comp_seq; /* bumped on every event for the
                                           * collector; its futex word */
  _Atomic uint32_t csleep;                /* the collector sleeps or is about to */
} pool_hdr;

/* A slot's control block. The parent writes the command part while the
 * slot is idle, the worker the result part while it runs; cmd, done and
 * started hand them over (see the top of the file). */
typedef struct wctl {
  /* command: the parent's */
  _Alignas(64) _Atomic uint32_t cmd; /* sequence of the posted command; futex word */
  _Atomic uint32_t wsleep;           /* the worker sleeps on cmd, or is about to */
  _Atomic uint32_t stop;             /* map window: start no more items */
  uint32_t op;                       /* OP_* */
  weft_task_fn *fn;                  /* the task (same program image: valid there) */
  uint64_t arg_len;                  /* OP_TASK: argument bytes at data[0] */
  uint64_t in_size, out_size, n;     /* OP_MAP: a window of n items, inputs
                                      * at data[0], outputs at data[out_off] */
  uint64_t out_off;
  uint32_t direct;                   /* OP_MAP: in_addr/out_addr are the map's
                                      * own arrays in the parent, read and
                                      * written with process_vm_readv/writev */
  const unsigned char *in_addr;      /* OP_MAP direct: in the parent */
  unsigned char *out_addr;
  /* result: the worker's */
  _Alignas(64) _Atomic uint32_t done; /* = cmd once finished (release) */
  _Atomic uint32_t started;           /* = cmd just before user code runs */
  _Atomic uint32_t ready;             /* the worker ran its initializer */
  _Atomic uint32_t can_direct;        /* the worker may read and write the
                                       * parent's memory (process_vm_*v) */
  int32_t rc;                         /* the outcome, 0 or < 0 */
  uint64_t res_len;                   /* OP_TASK: result bytes at data[0] */
  _Atomic uint64_t ran;               /* OP_MAP: items finished so far, their
                                       * outputs delivered */
  _Atomic uint64_t cur;               /* OP_MAP: the item running now */
  uint64_t fail_index;                /* OP_MAP: first failed item of the window */
  int32_t fail_code;                  /* its code, 0: none */
  uint32_t msg_len;                   /* bytes of msg (no NUL), 0: none */
  char msg[MSG_MAX];                  /* the failure message, cut to MSG_MAX */
} wctl;

_Static_assert(sizeof(wctl) <= CTRL_SIZE, "control block fits before the data area");
_Static_assert(sizeof(pool_hdr) <= CTRL_SIZE, "header fits its page");

/* ------------------------------------------------------- parent side */

/* A queued or running unit of work: one TASK job of the front end (a
 * submit_many chunk is split into its tasks when it arrives, so that each
 * is handed over, and can be cancelled, on its own), or a MAP chunk. */
typedef struct pitem {
  struct pitem *next;   /* in the queue; mu */
  weft__job *j;         /* the front end's job (owned until ended) */
  int64_t deadline;     /* WEFT_FOREVER or the task's deadline */
  bool started;         /* TASK: made running (it was handed over once) */
  bool claimed;         /* MAP: chunk started; mv valid */
  weft__map_view mv;    /* MAP: the chunk (weft__job_map_start) */
  size_t n;             /* MAP: items in the chunk */
  size_t next_item;     /* MAP: next item to hand over (relative) */
  size_t fail_index;    /* MAP: lowest failure so far (relative) */
  int fail_code;        /* MAP: its code, 0: none */
  size_t skips[8];      /* MAP: items (relative) that crashed a worker:
                         * never run again, never inside a window */
  unsigned nskips;
} pitem;

enum wstate {
  W_NONE = 0, /* no process (between a death and its replacement, or gone) */
  W_SPAWN,    /* being forked by the collector */
  W_STARTING, /* forked, initializer running */
  W_IDLE,     /* waiting for work */
  W_BUSY,     /* running cur */
  W_COLLECT,  /* done or dead: the collector is ending its work */
  W_EXITING   /* told to exit (shutdown or max_tasks_per_child) */
};

typedef struct pworker {
  unsigned idx;            /* immutable */
  wctl *c;                 /* the shared control block; immutable */
  unsigned char *data;     /* the shared data area; immutable */
  pid_t pid;               /* the process, 0 when none; mu */
  int pidfd;               /* its pidfd, -1 when none; mu */
  enum wstate st;          /* mu (and see W_COLLECT) */
  pitem *cur;              /* BUSY: what it runs; mu */
  uint32_t seq;            /* the last command posted; collector */
  size_t win_lo, win_n;    /* MAP: the window in flight (relative to the
                            * chunk); collector */
  bool win_direct;         /* MAP: the window moves by the worker's copies */
  size_t win_out_off;      /* MAP, shared area: where its outputs are.
                            * The parent keeps its own copies of what it
                            * posted: a task may scribble over its control
                            * block, and nothing read back from it may make
                            * the parent touch memory outside the slot */
  weft_future *fut;        /* the future of the task in flight, or NULL; mu */
  int64_t deadline;        /* of the task in flight; mu */
  int kill_reason;         /* 0, WEFT_ETIMEDOUT or WEFT_ECANCELED: why weft
                            * killed it; mu */
  bool dead;               /* its pidfd said it ended; mu */
  unsigned ntasks;         /* jobs finished by this process; collector */
  unsigned early_deaths;   /* deaths before readiness in a row; collector */
  size_t touched;          /* high-water mark of the data area; collector */
} pworker;

enum { P_OPEN = 0, P_SHUT, P_CANCEL, P_KILL };

typedef struct ppool {
  weft_executor *ex;       /* immutable from here to max_tasks */
  unsigned n;
  pworker *w;
  void *shm;               /* the shared region */
  size_t shm_size;
  pool_hdr *hdr;
  void (*init)(void *);
  void (*fini)(void *);
  void *ud;
  unsigned max_tasks;
  bool direct_ok;          /* maps may use the workers' direct copies */
  char name[48];

  pthread_mutex_t mu;      /* see the top of the file */
  pitem *head, *tail;      /* the queue; mu */
  int state;               /* P_*; mu (read racily by submit's fast check) */
  bool broken;             /* mu */
  bool map_stop;           /* a map caller passed its deadline; mu */
  int *close_fds;          /* pidfds the monitor must close; mu */
  size_t nclose, cap_close;
  bool mon_exit;           /* the monitor should exit; mu */

  struct gathered *g;       /* the collector's buffer: n entries */
  struct pollfd *pf;        /* the monitor's buffer: n + 1 entries */
  pthread_t collector, monitor;
  bool have_monitor;
  int mon_efd;             /* the monitor's doorbell */
  _Atomic uint32_t finished; /* 1 once every worker is gone; futex word */
  _Atomic uint32_t created;  /* 1: first workers started, 2: failed; futex word */
  int create_err;
  _Atomic uint64_t queued, running, completed;
} ppool;

/* ------------------------------------------------------------ helpers */

static void poke_collector(ppool *p) {
  atomic_fetch_add_explicit(&p->hdr->comp_seq, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&p->hdr->csleep, memory_order_seq_cst))
    weft__futex_wake(&p->hdr->comp_seq, 1, WEFT__FUTEX_SHARED);
}

static void poke_monitor(ppool *p) {
  uint64_t one = 1;
  ssize_t r = write(p->mon_efd, &one, sizeof one);
  (void)r;
}

static bool self_is(pthread_t t, bool have) { return have && pthread_equal(pthread_self(), t); }

/* ------------------------------------------------------------- worker */

static void worker_notify(pool_hdr *h) {
  atomic_fetch_add_explicit(&h->comp_seq, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&h->csleep, memory_order_seq_cst))
    weft__futex_wake(&h->comp_seq, 1, WEFT__FUTEX_SHARED);
}

static void set_msg(wctl *c, const char *m) {
  size_t len = m ? strlen(m) : 0;
  if (len > MSG_MAX) len = MSG_MAX;
  if (len) memcpy(c->msg, m, len);
  c->msg_len = (uint32_t)len;
}

static void worker_task(wctl *c, unsigned char *data, weft__scratch *scratch) {
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, WEFT__SINK_SCRATCH, NULL, NULL, 0, scratch);
  int rc = c->fn(&ctx, data, (size_t)c->arg_len);
  rc = weft__task_ctx_outcome(&ctx, rc);
  c->res_len = 0;
  if (rc == 0 && ctx.result_len) {
    if (ctx.result_len > AREA_SIZE) {
      rc = WEFT_E2BIG;
      set_msg(c, "result larger than the process pool's data area");
    } else {
      memcpy(data, ctx.buf, ctx.result_len);
      c->res_len = ctx.result_len;
    }
  }
  if (rc) {
    if (!c->msg_len) set_msg(c, weft__task_ctx_message(&ctx));
  }
  c->rc = rc;
  weft__task_ctx_fini(&ctx);
}

/* Copy len bytes between the parent's memory at remote and ours at local:
 * process_vm_readv (to_parent false) or process_vm_writev. 0 or -errno. */
static int parent_copy(pid_t parent, void *local, const void *remote, size_t len,
                       bool to_parent) {
  size_t off = 0;
  while (off < len) {
    struct iovec l = {(char *)local + off, len - off};
    struct iovec r = {(char *)(uintptr_t)remote + off, len - off};
    ssize_t n = to_parent ? process_vm_writev(parent, &l, 1, &r, 1, 0)
                          : process_vm_readv(parent, &l, 1, &r, 1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EFAULT;
    off += (size_t)n;
  }
  return 0;
}

/* Bytes of input (and of output) a direct map window moves per copy: small
 * enough to stay in the worker's cache between the copy and the items. */
#define DIRECT_PIECE ((size_t)64 << 10)

/* A map window over the parent's own arrays: the worker pulls a piece of
 * inputs, runs its items into a piece of outputs and pushes them back, so
 * the copies run in parallel on the workers and the parent only waits. */
static void worker_map_direct(wctl *c, pid_t parent, weft__scratch *scratch) {
  static unsigned char *inbuf, *outbuf; /* reused; static: see scratch */
  static size_t incap, outcap;
  weft_task_fn *fn = c->fn;
  size_t in_size = (size_t)c->in_size, out_size = (size_t)c->out_size, n = (size_t)c->n;
  size_t per = in_size > out_size ? in_size : out_size;
  size_t piece = per ? DIRECT_PIECE / per : n;
  if (piece == 0) piece = 1;
  if (piece > n) piece = n;
  if (piece * in_size > incap) {
    unsigned char *b = weft__realloc(inbuf, piece * in_size);
    if (b) inbuf = b, incap = piece * in_size;
  }
  if (piece * out_size > outcap) {
    unsigned char *b = weft__realloc(outbuf, piece * out_size);
    if (b) outbuf = b, outcap = piece * out_size;
  }
  c->fail_code = 0;
  if (incap < piece * in_size || outcap < piece * out_size) {
    c->fail_code = WEFT_ENOMEM;
    c->fail_index = 0;
    set_msg(c, "no memory in the worker for a map window");
    c->rc = 0;
    return;
  }
  for (size_t lo = 0; lo < n; lo += piece) {
    size_t k = n - lo < piece ? n - lo : piece;
    if (WEFT_UNLIKELY(atomic_load_explicit(&c->stop, memory_order_relaxed))) break;
    int e = in_size ? parent_copy(parent, inbuf, c->in_addr + lo * in_size, k * in_size, false) : 0;
    size_t done = 0;
    for (size_t i = 0; e == 0 && i < k; i++) {
      if (WEFT_UNLIKELY(atomic_load_explicit(&c->stop, memory_order_relaxed))) break;
      atomic_store_explicit(&c->cur, lo + i, memory_order_relaxed);
      weft_task_ctx ctx;
      weft__task_ctx_init(&ctx, WEFT__SINK_SLOT, NULL, out_size ? outbuf + i * out_size : NULL,
                          out_size, scratch);
      int rc = fn(&ctx, inbuf + i * in_size, in_size);
      rc = weft__task_ctx_outcome(&ctx, rc);
      if (WEFT_UNLIKELY(rc) && !c->fail_code) {
        c->fail_code = rc;
        c->fail_index = lo + i;
        set_msg(c, weft__task_ctx_message(&ctx));
      }
      weft__task_ctx_fini(&ctx);
      done = i + 1;
    }
    if (e == 0 && out_size && done)
      e = parent_copy(parent, outbuf, c->out_addr + lo * out_size, done * out_size, true);
    if (e) {
      if (!c->fail_code) {
        c->fail_code = e;
        c->fail_index = lo;
        set_msg(c, "copying a map window from or to the parent failed");
      }
      break;
    }
    atomic_store_explicit(&c->ran, lo + done, memory_order_release);
    if (done < k) break;
  }
  c->rc = 0;
}

static void worker_map(wctl *c, unsigned char *data, weft__scratch *scratch) {
  weft_task_fn *fn = c->fn;
  size_t in_size = (size_t)c->in_size, out_size = (size_t)c->out_size, n = (size_t)c->n;
  const unsigned char *in = data;
  unsigned char *out = data + c->out_off;
  c->fail_code = 0;
  for (size_t i = 0; i < n; i++) {
    if (WEFT_UNLIKELY(atomic_load_explicit(&c->stop, memory_order_relaxed))) break;
    atomic_store_explicit(&c->cur, i, memory_order_relaxed);
    weft_task_ctx ctx;
    weft__task_ctx_init(&ctx, WEFT__SINK_SLOT, NULL, out_size ? out + i * out_size : NULL,
                        out_size, scratch);
    int rc = fn(&ctx, in + i * in_size, in_size);
    rc = weft__task_ctx_outcome(&ctx, rc);
    if (WEFT_UNLIKELY(rc) && !c->fail_code) {
      c->fail_code = rc;
      c->fail_index = i;
      set_msg(c, weft__task_ctx_message(&ctx));
    }
    weft__task_ctx_fini(&ctx);
    atomic_store_explicit(&c->ran, i + 1, memory_order_release);
  }
  c->rc = 0;
}

static void worker_on_exit(int status, void *unused) {
  (void)unused;
  fflush(NULL);
  _exit(status);
}

static __attribute__((noreturn)) void worker_main(ppool *p, pworker *w) {
  /* A task that calls exit() ends the worker with its status, but the
   * parent's atexit handlers (inherited by fork) are the parent's: they
   * must not run here. Handlers run newest first, so this one runs before
   * them and leaves with _exit. */
  on_exit(worker_on_exit, NULL);
  char nm[64];
  snprintf(nm, sizeof nm, "%s-%u", p->name, w->idx);
  weft__proc_set_current_name(nm);
  prctl(PR_SET_NAME, nm);
  /* The collector blocks every signal; a worker takes them. Ctrl-C goes to
   * the parent, which decides (its death kills the workers). */
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  signal(SIGINT, SIG_IGN);
  wctl *c = w->c;
  unsigned char *data = w->data;
  uint32_t seq = atomic_load_explicit(&c->cmd, memory_order_acquire);
  /* Can this worker reach the parent's memory? (Not where a security
   * module forbids it, as Yama's ptrace_scope 1 does: maps then go through
   * the shared data area.) The pool's name is at the same address in the
   * parent: a fork copies the address space. */
  pid_t parent = getppid();
  char probe[sizeof p->name];
  atomic_store(&c->can_direct,
               parent_copy(parent, probe, p->name, sizeof probe, false) == 0 &&
                   memcmp(probe, p->name, sizeof probe) == 0);
  if (p->init) p->init(p->ud);
  atomic_store_explicit(&c->ready, 1, memory_order_release);
  worker_notify(p->hdr);
  /* A static: a task that calls exit() leaves it reachable, not leaked.
   * Made up front: task.c's scratch_get hands out s->p for an empty result,
   * which is NULL (read as out of memory) until something was allocated. */
  static weft__scratch scratch;
  scratch.p = weft__malloc(64);
  scratch.cap = scratch.p ? 64 : 0;
  for (;;) {
    uint32_t next = seq + 1;
    /* Spin a little: the next command often comes at once. */
    unsigned k = 0;
    while (atomic_load_explicit(&c->cmd, memory_order_acquire) != next) {
      if (++k < WORKER_SPIN) {
        weft__cpu_relax();
        continue;
      }
      atomic_store_explicit(&c->wsleep, 1, memory_order_seq_cst);
      if (atomic_load_explicit(&c->cmd, memory_order_seq_cst) == next) {
        atomic_store_explicit(&c->wsleep, 0, memory_order_relaxed);
        break;
      }
      weft__futex_wait(&c->cmd, seq, WEFT_FOREVER, WEFT__FUTEX_SHARED);
      atomic_store_explicit(&c->wsleep, 0, memory_order_relaxed);
    }
    seq = next;
    uint32_t op = c->op;
    if (op == OP_EXIT) {
      if (p->fini) p->fini(p->ud);
      fflush(NULL);
      _exit(0);
    }
    c->msg_len = 0;
    atomic_store_explicit(&c->ran, 0, memory_order_relaxed);
    atomic_store_explicit(&c->cur, 0, memory_order_relaxed);
    atomic_store_explicit(&c->started, seq, memory_order_seq_cst);
    if (op == OP_TASK)
      worker_task(c, data, &scratch);
    else if (c->direct)
      worker_map_direct(c, parent, &scratch);
    else
      worker_map(c, data, &scratch);
    atomic_store_explicit(&c->done, seq, memory_order_release);
    worker_notify(p->hdr);
  }
}

/* SIGKILL a worker and its process group (what its tasks started).
 * While the worker is not reaped its pid, and so its group id, cannot have
 * been reused. */
static void kill_worker(pid_t pid, int pidfd) {
  weft__proc_signal(pid, pidfd, SIGKILL);
  kill(-pid, SIGKILL);
}

/* ------------------------------------------------------------ spawning */

/* Fork the worker of slot w. On the collector, with mu released and w in
 * W_SPAWN. */
static int spawn(ppool *p, pworker *w) {
  atomic_store(&w->c->ready, 0);
  atomic_store(&w->c->wsleep, 0);
  pid_t pid;
  int pidfd;
  int r = weft__proc_fork(&pid, &pidfd);
  if (r) return r;
  if (pid == 0) worker_main(p, w);
  pthread_mutex_lock(&p->mu);
  w->pid = pid;
  w->pidfd = pidfd;
  w->dead = false;
  w->kill_reason = 0;
  w->st = W_STARTING;
  w->seq = atomic_load(&w->c->cmd);
  w->ntasks = 0;
  pthread_mutex_unlock(&p->mu);
  poke_monitor(p);
  return 0;
}

/* ---------------------------------------------------------- finishing */

/* The slot's message as a C string (copied into buf). */
static const char *slot_msg(const wctl *c, char *buf, size_t cap) {
  if (!c->msg_len) return NULL;
  size_t len = c->msg_len < cap - 1 ? c->msg_len : cap - 1;
  memcpy(buf, c->msg, len);
  buf[len] = 0;
  return buf;
}

/* Why a worker died, for the future's message. */
static void death_msg(char *buf, size_t cap, const ppool *p, const pworker *w, pid_t pid,
                      int code, int reason) {
  if (reason == WEFT_ETIMEDOUT) {
    snprintf(buf, cap, "task passed its deadline: worker %s-%u (pid %d) was killed", p->name,
             w->idx, (int)pid);
  } else if (reason == WEFT_ECANCELED) {
    snprintf(buf, cap, "task cancelled: worker %s-%u (pid %d) was killed", p->name, w->idx,
             (int)pid);
  } else if (code < 0) {
    snprintf(buf, cap, "worker %s-%u (pid %d) was killed by signal %d (%s)", p->name, w->idx,
             (int)pid, -code, strsignal(-code));
  } else {
    snprintf(buf, cap, "worker %s-%u (pid %d) exited with status %d", p->name, w->idx, (int)pid,
             code);
  }
}

/* End a MAP item: its first ran items were attempted (their outputs are in
 * the caller's array); with ran short of the chunk and stop_code set, the
 * item at ran fails with stop_code (0: the caller gave up on the map). */
static void map_chunk_end(ppool *p, pitem *it, size_t ran, int stop_code) {
  size_t n = it->n;
  uint32_t at = (uint32_t)it->fail_index;
  int32_t code = it->fail_code;
  weft__job_map_end(p->ex, it->j, NULL, ran, &at, &code, it->fail_code ? 1 : 0, stop_code);
  atomic_fetch_sub(&p->running, n);
  atomic_fetch_add(&p->completed, n);
  weft__free(it);
}

/* End a started TASK item with its outcome. Without mu (callbacks run). */
static void task_end(ppool *p, pitem *it, int rc, const void *res, size_t len, const char *msg) {
  weft__job_task_end(p->ex, it->j, rc, res, len, msg);
  atomic_fetch_sub(&p->running, 1);
  atomic_fetch_add(&p->completed, 1);
  weft__free(it);
}

/* The collector takes over a slot whose command finished, or whose
 * process died. Returns with the slot's item handled: ended (and freed),
 * or put back with more to run (returned through *again for the same
 * worker, or requeued at the head for any worker). Called without mu. */
static pitem *collect(ppool *p, pworker *w, bool died, pid_t pid, int code, int reason) {
  wctl *c = w->c;
  pitem *it = w->cur;
  if (!it) return NULL;
  bool finished = atomic_load_explicit(&c->done, memory_order_acquire) == w->seq;
  bool began = atomic_load_explicit(&c->started, memory_order_acquire) == w->seq;
  char mbuf[MSG_MAX + 1], dbuf[256];
  weft__job *j = it->j;
  if (j->kind == WEFT__JOB_MAP) {
    size_t ran = (finished || began) ? (size_t)atomic_load(&c->ran) : 0;
    if (ran > w->win_n) ran = w->win_n; /* a corrupt count must not overflow */
    if (it->mv.out_size && ran && !w->win_direct)
      memcpy((unsigned char *)it->mv.out + w->win_lo * it->mv.out_size,
             w->data + w->win_out_off, ran * it->mv.out_size);
    if ((finished || began) && c->fail_code < 0 && (size_t)c->fail_index < ran) {
      size_t idx = w->win_lo + (size_t)c->fail_index;
      if (!it->fail_code || idx < it->fail_index) {
        it->fail_code = c->fail_code;
        it->fail_index = idx;
      }
    }
    it->next_item = w->win_lo + (finished ? w->win_n : ran);
    if (died && !finished && began) {
      /* The item that was running fails. Items after it, and those before
       * it whose outputs died with the worker (a direct window delivers
       * them a piece at a time), run again on another worker. */
      size_t crashed = w->win_lo + (size_t)atomic_load(&c->cur);
      if (crashed < it->next_item || crashed >= it->n) crashed = it->next_item;
      if (!it->fail_code || crashed < it->fail_index) {
        it->fail_code = reason ? reason : WEFT_EWORKERDIED;
        it->fail_index = crashed;
      }
      if (reason) {
        it->next_item = it->n; /* killed by weft (a cancel): stop the chunk */
      } else if (it->nskips < sizeof it->skips / sizeof it->skips[0]) {
        it->skips[it->nskips++] = crashed;
      } else {
        it->next_item = it->n; /* a chunk that keeps killing workers: stop */
      }
    }
    bool stopped = weft__job_map_stopping(j) || atomic_load_explicit(&c->stop, memory_order_relaxed);
    if (it->next_item >= it->n || stopped) {
      map_chunk_end(p, it, it->next_item < it->n ? it->next_item : it->n, 0);
      return NULL;
    }
    return it; /* more windows */
  }
  /* A TASK. */
  if (!finished && !began) return it; /* never started: run it elsewhere */
  if (finished) {
    /* What the worker wrote is data: check it before using it. */
    int rc = c->rc;
    uint64_t len = c->res_len;
    if (rc > 0 || (rc == 0 && len > AREA_SIZE)) {
      task_end(p, it, WEFT_ECORRUPT, NULL, 0,
               "the worker's result record was overwritten (by the task?)");
    } else {
      task_end(p, it, rc, w->data, rc ? 0 : (size_t)len, slot_msg(c, mbuf, sizeof mbuf));
    }
  } else {
    death_msg(dbuf, sizeof dbuf, p, w, pid, code, reason);
    task_end(p, it, reason ? reason : WEFT_EWORKERDIED, NULL, 0, dbuf);
  }
  pthread_mutex_lock(&p->mu);
  w->fut = NULL;
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* -------------------------------------------------------- dispatching */

/* Post a command: the fields are written; publish it. */
static void post(pworker *w, uint32_t op) {
  wctl *c = w->c;
  c->op = op;
  atomic_store_explicit(&c->stop, 0, memory_order_relaxed);
  w->seq++;
  atomic_store_explicit(&c->cmd, w->seq, memory_order_seq_cst);
  if (atomic_load_explicit(&c->wsleep, memory_order_seq_cst))
    weft__futex_wake(&c->cmd, 1, WEFT__FUTEX_SHARED);
}

/* A deferred ending, run without mu: TASK items cancelled or failed while
 * being handed over (their callbacks must not run under mu). Counted in
 * the stats when pushed. */
typedef struct fin {
  pitem *it;
  int code;        /* WEFT_ECANCELED with cancel: the job was never made
                    * running (weft__job_cancel); else it was: a failure */
  const char *msg;
  bool cancel;
} fin;

typedef struct finq {
  fin *v;
  size_t n, cap;
} finq;

static void fin_one(ppool *p, const fin *e) {
  if (e->cancel) {
    weft__job_cancel(p->ex, e->it->j);
  } else {
    weft__job_task_end(p->ex, e->it->j, e->code, NULL, 0, e->msg);
  }
  weft__free(e->it);
}

static void finq_push(ppool *p, finq *q, pitem *it, int code, const char *msg, bool cancel) {
  fin e = {it, code, msg, cancel};
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 16;
    fin *v = weft__realloc(q->v, cap * sizeof *v);
    if (!v) {
      /* No memory to defer it: end it here, under mu (its callbacks run
       * under it: the one place, and only when memory has run out). */
      fin_one(p, &e);
      return;
    }
    q->v = v;
    q->cap = cap;
  }
  q->v[q->n++] = e;
}

static void finq_run(ppool *p, finq *q) {
  for (size_t i = 0; i < q->n; i++) fin_one(p, &q->v[i]);
  q->n = 0;
}

/* Try to hand it (or its next window) to the idle worker w. mu held.
 * Returns true when w got a command; false when it ended without one
 * (cancelled, failed, or a map with nothing left: deferred into q or
 * ended). */
static bool hand_over(ppool *p, pworker *w, pitem *it, finq *q) {
  weft__job *j = it->j;
  wctl *c = w->c;
  bool cancel = p->state >= P_CANCEL;
  if (j->kind == WEFT__JOB_TASK) {
    if (!it->started) {
      atomic_fetch_sub(&p->queued, 1);
      if (cancel) {
        atomic_fetch_add(&p->completed, 1);
        finq_push(p, q, it, WEFT_ECANCELED, NULL, true);
        return false;
      }
      /* Made running now: from here a cancel must stop the worker. */
      if (!weft__job_task_start(p->ex, j)) {
        atomic_fetch_add(&p->completed, 1);
        weft__free(it);
        return false;
      }
      atomic_fetch_add(&p->running, 1);
      it->started = true;
      if (it->deadline != WEFT_FOREVER && weft_now_ns() >= it->deadline) {
        atomic_fetch_sub(&p->running, 1);
        atomic_fetch_add(&p->completed, 1);
        finq_push(p, q, it, WEFT_ETIMEDOUT, "task passed its deadline before it started", false);
        return false;
      }
    }
    c->fn = j->task.fn;
    c->arg_len = j->arg_len;
    if (j->arg_len) memcpy(w->data, weft__job_arg(j), j->arg_len);
    if (j->arg_len > w->touched) w->touched = j->arg_len;
    w->fut = j->ref;
    w->deadline = it->deadline;
    w->cur = it;
    w->st = W_BUSY;
    post(w, OP_TASK);
    if (it->deadline != WEFT_FOREVER) poke_monitor(p); /* time it from now */
    return true;
  }
  /* A MAP chunk. */
  if (!it->claimed) {
    size_t items = weft__job_items(j);
    atomic_fetch_sub(&p->queued, items);
    if (!weft__job_map_start(j, &it->mv)) {
      atomic_fetch_add(&p->completed, items);
      weft__free(it);
      return false;
    }
    atomic_fetch_add(&p->running, items);
    it->claimed = true;
    it->n = it->mv.hi - it->mv.lo;
    it->next_item = 0;
    it->nskips = 0;
  }
  if (weft__job_map_stopping(j)) {
    map_chunk_end(p, it, it->next_item, 0);
    return false;
  }
  if (cancel) {
    map_chunk_end(p, it, it->next_item, WEFT_ECANCELED);
    return false;
  }
  /* Items that crashed a worker are stepped over; a window ends before
   * the next of them. */
  for (bool moved = true; moved;) {
    moved = false;
    for (unsigned k = 0; k < it->nskips; k++)
      if (it->skips[k] == it->next_item) it->next_item++, moved = true;
  }
  if (it->next_item >= it->n) {
    map_chunk_end(p, it, it->n, 0);
    return false;
  }
  size_t end = it->n;
  for (unsigned k = 0; k < it->nskips; k++)
    if (it->skips[k] > it->next_item && it->skips[k] < end) end = it->skips[k];
  size_t left = end - it->next_item;
  const unsigned char *in = (const unsigned char *)it->mv.in + it->next_item * it->mv.in_size;
  c->fn = j->task.fn;
  c->in_size = it->mv.in_size;
  c->out_size = it->mv.out_size;
  if (p->direct_ok && atomic_load_explicit(&c->can_direct, memory_order_relaxed)) {
    /* The worker copies from and to the map's own arrays itself. */
    c->direct = 1;
    w->win_direct = true;
    c->n = left;
    c->in_addr = it->mv.in_size ? in : NULL;
    c->out_addr = it->mv.out_size
                      ? (unsigned char *)it->mv.out + it->next_item * it->mv.out_size
                      : NULL;
    w->win_n = left;
  } else {
    c->direct = 0;
    w->win_direct = false;
    size_t per = it->mv.in_size + it->mv.out_size;
    size_t win = per ? AREA_SIZE / per : left;
    if (win == 0) win = 1; /* cannot happen: in_size <= ARG_MAX */
    if (win > left) win = left;
    size_t in_bytes = win * it->mv.in_size;
    size_t out_off = (in_bytes + 63) & ~(size_t)63;
    if (out_off + win * it->mv.out_size > AREA_SIZE) out_off = in_bytes;
    if (in_bytes) memcpy(w->data, in, in_bytes);
    size_t used = out_off + win * it->mv.out_size;
    if (used > w->touched) w->touched = used;
    c->n = win;
    c->out_off = out_off;
    w->win_out_off = out_off;
    w->win_n = win;
  }
  w->win_lo = it->next_item;
  w->fut = NULL;
  w->deadline = WEFT_FOREVER;
  w->cur = it;
  w->st = W_BUSY;
  post(w, OP_MAP);
  return true;
}

/* End it without running (more of) it, with code (WEFT_ECANCELED for a
 * shutdown that cancels, WEFT_EBROKEN) and msg for a task already made
 * running. Without mu; callbacks may run. */
static void end_item(ppool *p, pitem *it, int code, const char *msg) {
  weft__job *j = it->j;
  if (j->kind == WEFT__JOB_TASK) {
    if (it->started) {
      task_end(p, it, code, NULL, 0, msg);
      return;
    }
    atomic_fetch_sub(&p->queued, 1);
    atomic_fetch_add(&p->completed, 1);
    if (code == WEFT_ECANCELED) {
      weft__job_cancel(p->ex, j);
    } else if (weft__job_task_start(p->ex, j)) {
      weft__job_task_end(p->ex, j, code, NULL, 0, msg);
    }
    weft__free(it);
    return;
  }
  if (!it->claimed) {
    size_t items = weft__job_items(j);
    atomic_fetch_sub(&p->queued, items);
    atomic_fetch_add(&p->completed, items);
    if (code == WEFT_ECANCELED) {
      weft__job_cancel(p->ex, j);
      weft__free(it);
      return;
    }
    if (!weft__job_map_start(j, &it->mv)) {
      weft__free(it);
      return;
    }
    atomic_fetch_sub(&p->completed, items); /* counted by map_chunk_end */
    atomic_fetch_add(&p->running, items);
    it->claimed = true;
    it->n = it->mv.hi - it->mv.lo;
    it->next_item = 0;
  }
  map_chunk_end(p, it, it->next_item, code);
}

/* ---------------------------------------------------------- collector */

typedef struct gathered {
  pworker *w;
  pitem *again; /* what collect handed back */
  bool died;
  pid_t pid;
  int reason;
  enum wstate was;
} gathered;

static bool respawn_wanted(const ppool *p) {
  if (p->broken) return false;
  return p->state == P_OPEN || (p->head && p->state < P_KILL);
}

static void queue_push_head(ppool *p, pitem *it) {
  it->next = p->head;
  p->head = it;
  if (!p->tail) p->tail = it;
}

static pitem *queue_pop(ppool *p) {
  pitem *it = p->head;
  if (it) {
    p->head = it->next;
    if (!p->head) p->tail = NULL;
  }
  return it;
}

/* One round of the collector's work. Returns whether anything happened. */
static bool step(ppool *p, gathered *g, finq *q) {
  bool progress = false;
  size_t ng = 0;
  pthread_mutex_lock(&p->mu);
  for (unsigned i = 0; i < p->n; i++) {
    pworker *w = &p->w[i];
    wctl *c = w->c;
    if (w->st == W_NONE || w->st == W_SPAWN || w->st == W_COLLECT) continue;
    if (w->dead) {
      g[ng++] = (gathered){w, NULL, true, w->pid, w->kill_reason, w->st};
      /* The monitor closes the pidfd: it may be polling it right now. */
      if (w->pidfd >= 0) {
        if (p->nclose == p->cap_close) {
          size_t cap = p->cap_close ? p->cap_close * 2 : 8;
          int *v = weft__realloc(p->close_fds, cap * sizeof *v);
          if (v) p->close_fds = v, p->cap_close = cap;
        }
        if (p->nclose < p->cap_close) p->close_fds[p->nclose++] = w->pidfd;
        else close(w->pidfd); /* out of memory: the monitor's poll sees POLLNVAL */
      }
      w->pidfd = -1;
      w->st = W_COLLECT;
      continue;
    }
    if (w->st == W_BUSY && atomic_load_explicit(&c->done, memory_order_acquire) == w->seq) {
      g[ng++] = (gathered){w, NULL, false, w->pid, 0, W_BUSY};
      w->st = W_COLLECT;
      continue;
    }
    if (w->st == W_STARTING && atomic_load_explicit(&c->ready, memory_order_acquire)) {
      w->st = W_IDLE;
      w->early_deaths = 0;
      progress = true;
    }
  }
  if (p->map_stop) {
    p->map_stop = false;
    for (unsigned i = 0; i < p->n; i++) {
      pworker *w = &p->w[i];
      if (w->st == W_BUSY && w->cur && w->cur->j->kind == WEFT__JOB_MAP &&
          weft__job_map_stopping(w->cur->j))
        atomic_store_explicit(&w->c->stop, 1, memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&p->mu);

  /* Collect without mu: results are copied out, futures ended. */
  for (size_t k = 0; k < ng; k++) {
    gathered *e = &g[k];
    int code = 0;
    if (e->died) {
      siginfo_t si;
      memset(&si, 0, sizeof si);
      /* Whatever its tasks started goes with it (its group), before the
       * reap frees the group id. */
      kill(-e->pid, SIGKILL);
      while (waitid(P_PID, (id_t)e->pid, &si, WEXITED) != 0 && errno == EINTR) {
      }
      code = si.si_pid == e->pid ? weft__proc_exitcode(&si) : -SIGKILL;
    }
    e->again = collect(p, e->w, e->died, e->pid, code, e->reason);
    progress = true;
  }

  pthread_mutex_lock(&p->mu);
  for (size_t k = 0; k < ng; k++) {
    pworker *w = g[k].w;
    pitem *it = g[k].again;
    w->fut = NULL;
    if (g[k].died) {
      w->pid = 0;
      w->dead = false;
      w->cur = NULL;
      if (g[k].was == W_STARTING)
        w->early_deaths++;
      else
        w->early_deaths = 0;
      if (w->early_deaths >= EARLY_DEATHS_MAX) p->broken = true;
      if (it) queue_push_head(p, it);
      w->st = respawn_wanted(p) ? W_SPAWN : W_NONE;
      continue;
    }
    w->cur = NULL;
    w->st = W_IDLE;
    if (w->touched > AREA_KEEP) {
      madvise(w->data + AREA_KEEP, AREA_SIZE - AREA_KEEP, MADV_REMOVE);
      w->touched = AREA_KEEP;
    }
    if (it) {
      if (hand_over(p, w, it, q)) continue;
    }
    w->ntasks++;
    if (p->max_tasks && w->ntasks >= p->max_tasks) {
      /* Retire it; the monitor sees it exit and a fresh one is forked. */
      w->st = W_EXITING;
      post(w, OP_EXIT);
    }
  }
  /* Broken: nothing queued can ever run. Shut down with cancel: what a
   * dead worker handed back after the shutdown took the queue is
   * cancelled too. */
  pitem *failed = NULL;
  int fail_code = p->broken ? WEFT_EBROKEN : WEFT_ECANCELED;
  if (p->broken || p->state >= P_CANCEL) {
    failed = p->head;
    p->head = p->tail = NULL;
  }
  /* Dispatch. */
  for (unsigned i = 0; i < p->n && p->head; i++) {
    pworker *w = &p->w[i];
    while (w->st == W_IDLE && p->head) {
      pitem *it = queue_pop(p);
      if (hand_over(p, w, it, q)) progress = true;
    }
  }
  bool any_live = false;
  for (unsigned i = 0; i < p->n; i++) {
    pworker *w = &p->w[i];
    if (p->state != P_OPEN && !p->head && w->st == W_IDLE) {
      w->st = W_EXITING;
      post(w, OP_EXIT);
      progress = true;
    }
    if (w->st != W_NONE) any_live = true;
  }
  bool done = p->state != P_OPEN && !p->head && !any_live;
  if (done) p->mon_exit = true;
  pthread_mutex_unlock(&p->mu);

  while (failed) {
    pitem *nx = failed->next;
    end_item(p, failed, fail_code,
             fail_code == WEFT_EBROKEN
                 ? "the process pool is broken: its workers die before they are ready"
                 : "cancelled by shutdown");
    failed = nx;
    progress = true;
  }
  if (q->n) {
    finq_run(p, q);
    progress = true;
  }
  /* Fork the replacements (without mu: a fork takes a while). */
  for (unsigned i = 0; i < p->n; i++) {
    pworker *w = &p->w[i];
    pthread_mutex_lock(&p->mu);
    bool want = w->st == W_SPAWN;
    pthread_mutex_unlock(&p->mu);
    if (!want) continue;
    progress = true;
    if (spawn(p, w) != 0) {
      /* No process to be had now: try again a millisecond later (the
       * slot stays W_SPAWN), without spinning. */
      weft_sleep_until(weft_deadline_in_ms(1));
      pthread_mutex_lock(&p->mu);
      if (!respawn_wanted(p)) w->st = W_NONE;
      pthread_mutex_unlock(&p->mu);
    }
  }
  if (done) {
    atomic_store(&p->finished, 1);
    weft__futex_wake(&p->finished, INT_MAX, 0);
    poke_monitor(p);
  }
  return progress;
}

static void *collector_main(void *arg) {
  ppool *p = arg;
  /* The first workers. */
  int r = 0;
  for (unsigned i = 0; i < p->n && r == 0; i++) r = spawn(p, &p->w[i]);
  if (r) {
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < p->n; i++) {
      pworker *w = &p->w[i];
      if (w->pid > 0) {
        kill_worker(w->pid, w->pidfd);
        siginfo_t si;
        while (waitid(P_PID, (id_t)w->pid, &si, WEXITED) != 0 && errno == EINTR) {
        }
        if (w->pidfd >= 0) close(w->pidfd);
        w->pid = 0;
        w->pidfd = -1;
      }
      w->st = W_NONE;
    }
    pthread_mutex_unlock(&p->mu);
    p->create_err = r;
    atomic_store(&p->created, 2);
    weft__futex_wake(&p->created, INT_MAX, 0);
    return NULL;
  }
  atomic_store(&p->created, 1);
  weft__futex_wake(&p->created, INT_MAX, 0);

  gathered *g = p->g;
  finq q = {NULL, 0, 0};
  for (;;) {
    uint32_t seq = atomic_load_explicit(&p->hdr->comp_seq, memory_order_seq_cst);
    bool progress = step(p, g, &q);
    if (atomic_load(&p->finished)) break;
    if (progress) continue;
    /* Nothing to do: sleep until something happens (no spinning: see
     * WORKER_SPIN). */
    atomic_store_explicit(&p->hdr->csleep, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&p->hdr->comp_seq, memory_order_seq_cst) == seq)
      weft__futex_wait(&p->hdr->comp_seq, seq, WEFT_FOREVER, WEFT__FUTEX_SHARED);
    atomic_store_explicit(&p->hdr->csleep, 0, memory_order_relaxed);
  }
  weft__free(q.v);
  return NULL;
}

/* ------------------------------------------------------------ monitor */

static void *monitor_main(void *arg) {
  ppool *p = arg;
  struct pollfd *pf = p->pf;
  for (;;) {
    size_t k = 0;
    int64_t next_deadline = WEFT_FOREVER;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nclose; i++) close(p->close_fds[i]);
    p->nclose = 0;
    if (p->mon_exit) {
      pthread_mutex_unlock(&p->mu);
      break;
    }
    pf[k++] = (struct pollfd){p->mon_efd, POLLIN, 0};
    int64_t now = weft_now_ns();
    for (unsigned i = 0; i < p->n; i++) {
      pworker *w = &p->w[i];
      if (w->pid > 0 && w->pidfd >= 0 && !w->dead) pf[k++] = (struct pollfd){w->pidfd, POLLIN, 0};
      if (w->st == W_BUSY && w->deadline != WEFT_FOREVER && !w->kill_reason && w->pid > 0) {
        if (w->deadline <= now) {
          w->kill_reason = WEFT_ETIMEDOUT;
          kill_worker(w->pid, w->pidfd);
        } else if (next_deadline == WEFT_FOREVER || w->deadline < next_deadline) {
          next_deadline = w->deadline;
        }
      }
    }
    pthread_mutex_unlock(&p->mu);
    struct timespec ts, *tsp = NULL;
    if (next_deadline != WEFT_FOREVER) {
      int64_t left = weft_deadline_remaining_ns(next_deadline);
      ts.tv_sec = left / 1000000000;
      ts.tv_nsec = left % 1000000000;
      tsp = &ts;
    }
    int n = ppoll(pf, k, tsp, NULL);
    if (n <= 0) continue;
    if (pf[0].revents) {
      uint64_t v;
      ssize_t rr = read(p->mon_efd, &v, sizeof v);
      (void)rr;
    }
    bool any = false;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 1; i < k; i++) {
      if (!pf[i].revents) continue;
      for (unsigned j = 0; j < p->n; j++) {
        pworker *w = &p->w[j];
        if (w->pidfd == pf[i].fd && w->pid > 0 && !w->dead) {
          w->dead = true;
          any = true;
        }
      }
    }
    pthread_mutex_unlock(&p->mu);
    if (any) poke_collector(p);
  }
  return NULL;
}

/* ---------------------------------------------------------------- ops */

static int pool_create(weft_executor *ex, const weft_executor_opts *o, void **out) {
  ppool *p = weft__calloc(1, sizeof *p);
  if (!p) return WEFT_ENOMEM;
  p->ex = ex;
  p->n = o->workers;
  p->init = o->initializer;
  p->fini = o->finalizer;
  p->ud = o->ud;
  p->max_tasks = o->max_tasks_per_child;
  snprintf(p->name, sizeof p->name, "%s", o->name);
  /* WEFT_PROCESS_POOL_NO_DIRECT=1 forces maps through the shared data area
   * (for tests and comparisons). */
  const char *nd = getenv("WEFT_PROCESS_POOL_NO_DIRECT");
  p->direct_ok = !(nd && nd[0] == '1');
  p->mon_efd = -1;
  int r = WEFT_ENOMEM;
  p->w = weft__calloc(p->n, sizeof *p->w);
  /* The collector's and the monitor's buffers are made here, so that the
   * threads themselves need no memory to start. */
  p->g = weft__malloc(p->n * sizeof *p->g);
  p->pf = weft__malloc((p->n + 1) * sizeof *p->pf);
  if (!p->w || !p->g || !p->pf) goto out_free;
  size_t slot = CTRL_SIZE + AREA_SIZE;
  if (p->n > (SIZE_MAX - CTRL_SIZE) / slot) goto out_free;
  p->shm_size = CTRL_SIZE + p->n * slot;
  p->shm = mmap(NULL, p->shm_size, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p->shm == MAP_FAILED) {
    r = -errno;
    p->shm = NULL;
    goto out_free;
  }
  p->hdr = p->shm;
  for (unsigned i = 0; i < p->n; i++) {
    pworker *w = &p->w[i];
    unsigned char *base = (unsigned char *)p->shm + CTRL_SIZE + i * slot;
    w->idx = i;
    w->c = (wctl *)base;
    w->data = base + CTRL_SIZE;
    w->pidfd = -1;
  }
  p->mon_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->mon_efd < 0) {
    r = -errno;
    goto out_unmap;
  }
  r = -pthread_mutex_init(&p->mu, NULL);
  if (r) goto out_efd;
  /* The pool's threads take no signals: they are the program's to handle
   * (and a worker forked from the collector starts with an empty mask). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = -pthread_create(&p->collector, NULL, collector_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r) goto out_mu;
  uint32_t c;
  while ((c = atomic_load(&p->created)) == 0) weft__futex_wait(&p->created, 0, WEFT_FOREVER, 0);
  if (c == 2) {
    pthread_join(p->collector, NULL);
    r = p->create_err;
    goto out_mu;
  }
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = -pthread_create(&p->monitor, NULL, monitor_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r) {
    /* No monitor: stop what runs and give up. */
    pthread_mutex_lock(&p->mu);
    p->state = P_KILL;
    for (unsigned i = 0; i < p->n; i++) {
      pworker *w = &p->w[i];
      if (w->pid > 0) {
        kill_worker(w->pid, w->pidfd);
        w->dead = true;
      }
    }
    pthread_mutex_unlock(&p->mu);
    poke_collector(p);
    pthread_join(p->collector, NULL);
    goto out_mu;
  }
  p->have_monitor = true;
  *out = p;
  return 0;

out_mu:
  pthread_mutex_destroy(&p->mu);
out_efd:
  close(p->mon_efd);
out_unmap:
  munmap(p->shm, p->shm_size);
out_free:
  weft__free(p->g);
  weft__free(p->pf);
  weft__free(p->w);
  weft__free(p);
  return r;
}

/* Wrap the chain newest..oldest into items, oldest first, splitting
 * submit_many chunks into their tasks; *items the items queued (a task
 * whose split job could not be allocated has been failed already).
 * NULL: no memory, and nothing changed. */
static pitem *wrap_chain(ppool *p, weft__job *newest, weft__job *oldest, int64_t deadline,
                         pitem **last, uint64_t *items) {
  size_t need = 0;
  for (weft__job *j = newest;; j = j->next) {
    need += j->kind == WEFT__JOB_BATCH ? (size_t)weft__job_items(j) : 1;
    if (j == oldest) break;
  }
  pitem *spare = NULL;
  for (size_t k = 0; k < need; k++) {
    pitem *it = weft__calloc(1, sizeof *it);
    if (!it) {
      while (spare) {
        pitem *nx = spare->next;
        weft__free(spare);
        spare = nx;
      }
      return NULL;
    }
    it->next = spare;
    spare = it;
  }
  pitem *list = NULL;
  *last = NULL;
  *items = 0;
  for (weft__job *j = newest, *nx;; j = nx) {
    nx = j->next;
    bool at_end = j == oldest;
    weft__job *t = j;
    uint64_t k = 1;
    if (j->kind == WEFT__JOB_BATCH) {
      uint64_t want = weft__job_items(j);
      weft__job *o;
      t = weft__job_batch_split(p->ex, j, &o, &k);
      atomic_fetch_add(&p->completed, want - k); /* failed for want of memory */
    }
    for (uint64_t m = 0; m < k; m++) {
      weft__job *tn = t->next;
      pitem *it = spare;
      spare = it->next;
      it->j = t;
      it->deadline = deadline;
      it->next = list;
      if (!list) *last = it;
      list = it;
      *items += t->kind == WEFT__JOB_MAP ? weft__job_items(t) : 1;
      t = tn;
    }
    if (at_end) break;
  }
  while (spare) {
    pitem *sn = spare->next;
    weft__free(spare);
    spare = sn;
  }
  return list;
}

static int enqueue(ppool *p, weft__job *newest, weft__job *oldest, int64_t deadline) {
  /* Refuse early, while the chain is still the caller's to free. */
  pthread_mutex_lock(&p->mu);
  int r = p->state != P_OPEN ? WEFT_ESHUTDOWN : p->broken ? WEFT_EBROKEN : 0;
  pthread_mutex_unlock(&p->mu);
  if (r) return r;
  uint64_t items;
  pitem *last, *first = wrap_chain(p, newest, oldest, deadline, &last, &items);
  if (!first) return WEFT_ENOMEM;
  finq q = {NULL, 0, 0};
  bool left = false, refused = false;
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->queued, items);
  if (p->state >= P_CANCEL || p->broken) {
    /* A shutdown that cancels (or a breakdown) came in meanwhile: the
     * tasks are ours now, and end as the queued ones did. */
    refused = true;
  } else {
    /* Accepted before the shutdown, if one came: they run. */
    if (p->tail)
      p->tail->next = first;
    else
      p->head = first;
    p->tail = last;
    /* Hand what we can to idle workers right here: one hop less than
     * going through the collector (the queue is FIFO either way). */
    for (unsigned i = 0; i < p->n && p->head; i++) {
      pworker *w = &p->w[i];
      while (w->st == W_IDLE && p->head) hand_over(p, w, queue_pop(p), &q);
    }
    left = p->head != NULL;
  }
  bool broken = p->broken;
  pthread_mutex_unlock(&p->mu);
  if (q.n) finq_run(p, &q);
  weft__free(q.v);
  if (refused) {
    while (first) {
      pitem *nx = first->next;
      end_item(p, first, broken ? WEFT_EBROKEN : WEFT_ECANCELED,
               broken ? "the process pool is broken" : "cancelled by shutdown");
      first = nx;
    }
    return 0;
  }
  if (left) poke_collector(p);
  return 0;
}

static int pool_submit(void *be, weft__job *newest, weft__job *oldest, uint64_t items) {
  (void)items; /* counted again as the chain is wrapped (chunks are split) */
  return enqueue(be, newest, oldest, WEFT_FOREVER);
}

static int pool_submit_deadline(void *be, weft__job *j, int64_t deadline_ns) {
  ppool *p = be;
  int r = enqueue(p, j, j, deadline_ns);
  /* The monitor times the task once it is handed to a worker (the
   * collector tells it then); one still queued at its deadline fails when
   * its turn comes. */
  return r;
}

static int pool_shutdown(void *be, unsigned flags, int64_t deadline_ns) {
  ppool *p = be;
  int want = (flags & WEFT_SHUTDOWN_KILL)             ? P_KILL
             : (flags & WEFT_SHUTDOWN_CANCEL_PENDING) ? P_CANCEL
                                                      : P_SHUT;
  pitem *taken = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->state < want) p->state = want;
  if (want >= P_CANCEL) {
    taken = p->head;
    p->head = p->tail = NULL;
  }
  if (want == P_KILL) {
    for (unsigned i = 0; i < p->n; i++) {
      pworker *w = &p->w[i];
      if (w->pid > 0 && !w->dead) {
        if (w->st == W_BUSY && !w->kill_reason) w->kill_reason = WEFT_ECANCELED;
        kill_worker(w->pid, w->pidfd);
      }
    }
  }
  pthread_mutex_unlock(&p->mu);
  /* Cancel what was queued here, on the caller's thread, so that it is
   * cancelled when this returns. */
  while (taken) {
    pitem *nx = taken->next;
    end_item(p, taken, WEFT_ECANCELED, "cancelled by shutdown");
    taken = nx;
  }
  poke_collector(p);
  if (!(flags & WEFT_SHUTDOWN_WAIT)) return 0;
  for (;;) {
    if (atomic_load(&p->finished)) return 0;
    int e = weft__futex_wait(&p->finished, 0, deadline_ns, 0);
    if (e == -ETIMEDOUT) return atomic_load(&p->finished) ? 0 : WEFT_ETIMEDOUT;
  }
}

static void pool_destroy(void *be) {
  ppool *p = be;
  pthread_join(p->collector, NULL);
  pthread_join(p->monitor, NULL);
  for (size_t i = 0; i < p->nclose; i++) close(p->close_fds[i]);
  for (unsigned i = 0; i < p->n; i++)
    if (p->w[i].pidfd >= 0) close(p->w[i].pidfd);
  weft__free(p->close_fds);
  close(p->mon_efd);
  pthread_mutex_destroy(&p->mu);
  munmap(p->shm, p->shm_size);
  weft__free(p->g);
  weft__free(p->pf);
  weft__free(p->w);
  weft__free(p);
}

static void pool_stats(const void *be, weft_executor_stats *out) {
  const ppool *p = be;
  out->queued = atomic_load(&p->queued);
  out->running = atomic_load(&p->running);
  out->completed = atomic_load(&p->completed);
  out->stolen = 0;
}

static bool pool_on_worker(const void *be) {
  const ppool *p = be;
  /* Future callbacks run on the collector: waiting there for the pool to
   * stop would wait for itself. */
  return self_is(p->collector, true) || self_is(p->monitor, p->have_monitor);
}

static int pool_cancel(void *be, weft_future *f) {
  ppool *p = be;
  pitem *found = NULL;
  int r = WEFT_ENOENT;
  pthread_mutex_lock(&p->mu);
  for (unsigned i = 0; i < p->n; i++) {
    pworker *w = &p->w[i];
    if (w->fut == f && w->st == W_BUSY && w->pid > 0) {
      if (!w->kill_reason) w->kill_reason = WEFT_ECANCELED;
      kill_worker(w->pid, w->pidfd);
      r = 0;
      break;
    }
  }
  if (r) {
    /* Handed over once and put back (its worker died before it began). */
    for (pitem **pp = &p->head; *pp; pp = &(*pp)->next) {
      pitem *it = *pp;
      if (it->j->kind == WEFT__JOB_TASK && it->started && it->j->ref == f) {
        *pp = it->next;
        if (p->tail == it) {
          p->tail = NULL;
          for (pitem *t = p->head; t; t = t->next) p->tail = t;
        }
        found = it;
        r = 0;
        break;
      }
    }
  }
  pthread_mutex_unlock(&p->mu);
  if (found) end_item(p, found, WEFT_ECANCELED, "task cancelled");
  if (r == WEFT_ENOENT && weft_future_done(f)) r = WEFT_EALREADY;
  return r;
}

static void pool_map_stop(void *be) {
  ppool *p = be;
  pthread_mutex_lock(&p->mu);
  p->map_stop = true;
  pthread_mutex_unlock(&p->mu);
  poke_collector(p);
}

const weft__executor_ops weft__pool_process_ops = {
    .kind_name = "processes",
    .needs_names = false,
    .arg_max = ARG_MAX,
    .create = pool_create,
    .submit = pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
    .stats = pool_stats,
    .on_worker = pool_on_worker,
    .submit_deadline = pool_submit_deadline,
    .cancel = pool_cancel,
    .map_stop = pool_map_stop,
};
