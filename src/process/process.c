/*
 * weft_process: child processes, and the fork server.
 *
 * Making a child (see weft/process.h for the user's view and
 * docs/design/process.md for the reasons):
 *  - fork from the calling thread while the process runs one thread;
 *  - through the fork server when it runs and the parent is threaded (or
 *    when asked);
 *  - else fork from the spawner: one weft thread, started on first need,
 *    that never exits, so that PR_SET_PDEATHSIG (which fires when the
 *    thread that forked exits, not the process) stays tied to the process.
 * Every child sets PR_SET_PDEATHSIG(SIGKILL), checks that its parent did not
 * die before that took effect, and leads its own process group.
 *
 * Watching a child. A pidfd per child (pidfd_open): waiting polls it, so
 * several threads may wait at once and nothing reaps a child that weft did
 * not make (no waitpid(-1)); the one that then finds it ended reaps it with
 * waitid(P_PID, WNOHANG) under the handle's mutex. Signals go through the
 * pidfd, so a signal never reaches another process that reused the pid.
 *
 * The fork server is a child forked by weft_forkserver_start. It shares
 * with the parent an anonymous MAP_SHARED region (one request at a time,
 * the argument bytes, and a table of child slots) and an eventfd doorbell.
 * It waits in poll() on the doorbell, a signalfd for SIGCHLD and a pidfd of
 * the parent (readable when the whole parent process has ended, whichever
 * thread started the server). For a request it forks the child, replies
 * with its pid, and reaps it when it ends, writing Python's exit code into
 * the child's slot and waking the parent (process-shared futex on the slot
 * state). It reaps a child only after the parent has opened a pidfd on it
 * (reap_ok), so that the pid cannot be reused in between. When the parent
 * dies it SIGKILLs every child's group and exits.
 *
 * Locking: g_fs.mu serialises requests to the server and slot allocation.
 * g_spawn.mu/cv hand a fork to the spawner thread. A handle's mu serialises
 * reaping and guards ended/exitcode (ended is also read without it, with
 * acquire). No user code runs under any of them; the child runs fn after
 * fork, where none of them is held by a running thread... (the parent's
 * copy of g_fs.mu is held across the fork only in the server, which never
 * runs user code before forking a child from its own single thread).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/futex.h"
#include "process/proc_impl.h"
#include "weft/process.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* ------------------------------------------------------------- helpers */

static char g_current_name[64] = "MainProcess";

void weft__proc_set_current_name(const char *name) {
  snprintf(g_current_name, sizeof g_current_name, "%s", name);
}

const char *weft_process_current_name(void) { return g_current_name; }

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int weft__proc_thread_count(void) {
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  /* The command name may hold spaces and parentheses: count fields after
   * the last ')'. num_threads is field 20; the one after ')' is field 3. */
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  int field = 2;
  for (p++; *p; p++) {
    if (*p == ' ') {
      field++;
      if (field == 20) return atoi(p + 1);
    }
  }
  return 0;
}

int weft__proc_exitcode(const siginfo_t *si) {
  if (si->si_code == CLD_EXITED) return si->si_status;
  return -si->si_status; /* CLD_KILLED, CLD_DUMPED */
}

int weft__proc_signal(pid_t pid, int pidfd, int sig) {
  long r = pidfd >= 0 ? syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) : kill(pid, sig);
  if (r == 0) return 0;
  return errno == ESRCH ? 0 : -errno;
}

int weft__proc_wait_ended(pid_t pid, int pidfd, int64_t deadline_ns) {
  for (;;) {
    if (pidfd >= 0) {
      struct pollfd pf = {pidfd, POLLIN, 0};
      struct timespec ts, *tsp = NULL;
      if (deadline_ns != WEFT_FOREVER) {
        int64_t left = weft_deadline_remaining_ns(deadline_ns);
        ts.tv_sec = left / 1000000000;
        ts.tv_nsec = left % 1000000000;
        tsp = &ts;
      }
      int r = ppoll(&pf, 1, tsp, NULL);
      if (r > 0) return 0;
      if (r == 0) return -ETIMEDOUT;
      if (errno != EINTR) return -errno;
      continue;
    }
    /* No pidfd (an old kernel): look without reaping, every millisecond. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
      return 0;
    if (errno == ECHILD) return 0;
    if (weft_deadline_remaining_ns(deadline_ns) == 0) return -ETIMEDOUT;
    weft_sleep_until(weft_deadline_in_ms(1));
  }
}

int weft__proc_fork(pid_t *pid, int *pidfd) {
  pid_t parent = getpid();
  fflush(NULL); /* buffered output must not be written twice */
  pid_t c = fork();
  if (c < 0) return -errno;
  if (c == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* The parent may have died before the line above: then nobody will
     * send the signal. */
    if (getppid() != parent) _exit(128 + SIGKILL);
    setpgid(0, 0);
    *pid = 0;
    *pidfd = -1;
    return 0;
  }
  setpgid(c, c); /* also from here: holds once either side has run it */
  *pid = c;
  *pidfd = pidfd_open(c);
  if (*pidfd >= 0) (void)fcntl(*pidfd, F_SETFD, FD_CLOEXEC);
  return 0;
}

/* ---------------------------------------------------------- the handle */

struct weft_process {
  pid_t pid;              /* immutable */
  int pidfd;              /* immutable; -1 when the kernel has none */
  int slot;               /* fork server slot, or -1 for a direct child; immutable */
  struct fs_shm *fsh;     /* the server's region (slot >= 0); immutable */
  pthread_mutex_t mu;     /* serialises reaping; guards exitcode */
  atomic_bool ended;      /* reaped (direct) or reported (server); set under mu */
  int exitcode;           /* valid once ended; mu */
  char name[64];          /* immutable */
};

static atomic_uint g_counter; /* Process-N */

/* ------------------------------------------------------- spawner thread */

/* A fork request handed to the spawner thread. */
typedef struct spawn_req {
  weft_process_fn *fn;
  const void *arg;
  size_t arg_len;
  const char *name;
  sigset_t mask;        /* the requester's signal mask, for the child */
  int err;              /* result: 0 or -errno */
  pid_t pid;
  int pidfd;
  bool done;
} spawn_req;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool started;
  spawn_req *req; /* the pending request, or NULL; mu */
} g_spawn = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, NULL};

static __attribute__((noreturn)) void child_run(weft_process_fn *fn, const void *arg,
                                                size_t arg_len, const char *name) {
  weft__proc_set_current_name(name);
  int rc = fn(arg, arg_len);
  fflush(NULL);
  _exit(rc & 0xff);
}

/* fork for req from the calling thread; runs the child in the child. */
static void fork_for(spawn_req *req) {
  pid_t pid;
  int pidfd;
  req->err = weft__proc_fork(&pid, &pidfd);
  if (req->err) return;
  if (pid == 0) {
    pthread_sigmask(SIG_SETMASK, &req->mask, NULL);
    child_run(req->fn, req->arg, req->arg_len, req->name);
  }
  req->pid = pid;
  req->pidfd = pidfd;
}

static void *spawner_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&g_spawn.mu);
  for (;;) {
    while (!g_spawn.req) pthread_cond_wait(&g_spawn.cv, &g_spawn.mu);
    spawn_req *req = g_spawn.req;
    g_spawn.req = NULL;
    /* Fork with g_spawn.mu released: the child must not inherit it held
     * by a thread it does not have (it is unlocked in the child anyway,
     * but the requester would otherwise wait on it meanwhile). */
    pthread_mutex_unlock(&g_spawn.mu);
    fork_for(req);
    pthread_mutex_lock(&g_spawn.mu);
    req->done = true;
    pthread_cond_broadcast(&g_spawn.cv);
  }
  return NULL;
}

static int spawn_on_spawner(spawn_req *req) {
  pthread_mutex_lock(&g_spawn.mu);
  if (!g_spawn.started) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the spawner takes no signals */
    pthread_t t;
    int e = pthread_create(&t, &at, spawner_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (e) {
      pthread_mutex_unlock(&g_spawn.mu);
      return -e;
    }
    g_spawn.started = true;
  }
  /* One request at a time. */
  while (g_spawn.req) pthread_cond_wait(&g_spawn.cv, &g_spawn.mu);
  g_spawn.req = req;
  pthread_cond_broadcast(&g_spawn.cv);
  while (!req->done) pthread_cond_wait(&g_spawn.cv, &g_spawn.mu);
  pthread_mutex_unlock(&g_spawn.mu);
  return req->err;
}

/* A forked child of this process: in the child after fork, the spawner
 * thread does not exist; a later start from there makes its own. */
static void spawn_atfork_child(void) {
  pthread_mutex_init(&g_spawn.mu, NULL);
  pthread_cond_init(&g_spawn.cv, NULL);
  g_spawn.started = false;
  g_spawn.req = NULL;
}

/* ----------------------------------------------------------- fork server */

#define FS_SLOTS 1024
#define FS_ARG_MAX ((size_t)64 << 20)

enum { SLOT_FREE = 0, SLOT_RUNNING, SLOT_EXITED };

typedef struct fs_slot {
  _Atomic uint32_t state;   /* SLOT_*: FREE -> RUNNING by the parent under
                             * g_fs.mu, -> EXITED by the server, -> FREE by
                             * the parent's destroy; futex word */
  _Atomic uint32_t reap_ok; /* the parent holds a pidfd: the server may reap */
  _Atomic int32_t pid;      /* the child; written by the server */
  int32_t exitcode;         /* Python's exit code; written before EXITED */
} fs_slot;

typedef struct fs_shm {
  _Atomic uint32_t req_seq; /* bumped by the parent per request */
  _Atomic uint32_t rep_seq; /* set to req_seq by the server with the reply;
                             * the parent's futex word */
  _Atomic uint32_t stop;    /* weft_forkserver_stop */
  /* The request (written by the parent before bumping req_seq). */
  weft_process_fn *fn;
  uint64_t arg_len;
  uint32_t slot;
  char name[64];
  sigset_t mask;
  /* The reply. */
  int32_t rep_pid;
  int32_t rep_err;
  fs_slot slots[FS_SLOTS];
  _Alignas(4096) unsigned char arg[]; /* FS_ARG_MAX bytes */
} fs_shm;

static struct {
  pthread_mutex_t mu;  /* requests and slot allocation */
  fs_shm *shm;         /* NULL: no server */
  size_t shm_size;
  int efd;             /* doorbell, shared with the server */
  pid_t pid;           /* the server, a direct child */
  int pidfd;
} g_fs = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, -1, 0, -1};

static void fs_kill_all(fs_shm *sh) {
  for (int i = 0; i < FS_SLOTS; i++) {
    if (atomic_load(&sh->slots[i].state) == SLOT_RUNNING) {
      pid_t p = atomic_load(&sh->slots[i].pid);
      if (p > 0) kill(-p, SIGKILL), kill(p, SIGKILL);
    }
  }
}

/* Reap what has ended among the slots the parent allows; with all, wait
 * for every running child (the server is stopping). */
static void fs_reap(fs_shm *sh, bool all) {
  for (int i = 0; i < FS_SLOTS; i++) {
    fs_slot *s = &sh->slots[i];
    if (atomic_load(&s->state) != SLOT_RUNNING) continue;
    pid_t p = atomic_load(&s->pid);
    if (p <= 0 || (!all && !atomic_load(&s->reap_ok))) continue;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, (id_t)p, &si, WEXITED | (all ? 0 : WNOHANG));
    if (r == 0 && si.si_pid == p) {
      s->exitcode = weft__proc_exitcode(&si);
    } else if (r == 0) {
      continue; /* still running */
    } else if (errno == ECHILD) {
      s->exitcode = -SIGKILL; /* cannot know: SIGCHLD ignored? */
    } else {
      continue;
    }
    atomic_store(&s->state, SLOT_EXITED);
    weft__futex_wake(&s->state, INT_MAX, WEFT__FUTEX_SHARED);
  }
}

static __attribute__((noreturn)) void fs_main(fs_shm *sh, int efd, pid_t parent) {
  int ppfd = pidfd_open(parent);
  if (getppid() != parent) _exit(0);
  if (ppfd < 0) prctl(PR_SET_PDEATHSIG, SIGKILL); /* old kernel: the best we have */
  setpgid(0, 0);
  signal(SIGINT, SIG_IGN); /* the parent decides; it kills us by dying */
  sigset_t chld, none;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigemptyset(&none);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  weft__proc_set_current_name("weft-forkserver");
  prctl(PR_SET_NAME, "weft-forkserver");
  for (;;) {
    struct pollfd pf[3] = {{efd, POLLIN, 0}, {sfd, POLLIN, 0}, {ppfd, POLLIN, 0}};
    int n = poll(pf, ppfd >= 0 ? 3 : 2, -1);
    if (n < 0) continue;
    if (ppfd >= 0 && pf[2].revents) {
      fs_kill_all(sh);
      _exit(0);
    }
    if (pf[1].revents) {
      struct signalfd_siginfo ss;
      while (read(sfd, &ss, sizeof ss) > 0) {
      }
    }
    if (pf[0].revents) {
      uint64_t v;
      ssize_t rr = read(efd, &v, sizeof v);
      (void)rr;
    }
    if (atomic_load(&sh->stop)) {
      fs_kill_all(sh);
      fs_reap(sh, true);
      _exit(0);
    }
    uint32_t seq = atomic_load_explicit(&sh->req_seq, memory_order_acquire);
    if (seq != atomic_load(&sh->rep_seq)) {
      pid_t me = getpid();
      pid_t c = fork();
      if (c == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != me) _exit(128 + SIGKILL);
        setpgid(0, 0);
        close(efd);
        if (sfd >= 0) close(sfd);
        if (ppfd >= 0) close(ppfd);
        signal(SIGINT, SIG_DFL);
        sigprocmask(SIG_SETMASK, &sh->mask, NULL);
        size_t len = (size_t)sh->arg_len;
        void *arg = malloc(len ? len : 1);
        if (!arg) _exit(127);
        memcpy(arg, sh->arg, len);
        char name[64];
        memcpy(name, sh->name, sizeof name);
        name[63] = 0;
        child_run(sh->fn, arg, len, name);
      }
      if (c > 0) {
        setpgid(c, c);
        atomic_store(&sh->slots[sh->slot].pid, c);
      }
      sh->rep_pid = c > 0 ? c : 0;
      sh->rep_err = c > 0 ? 0 : -errno;
      atomic_store_explicit(&sh->rep_seq, seq, memory_order_release);
      weft__futex_wake(&sh->rep_seq, INT_MAX, WEFT__FUTEX_SHARED);
    }
    fs_reap(sh, false);
  }
}

static pthread_once_t g_once;
static void once_init(void);

bool weft_forkserver_running(void) {
  pthread_mutex_lock(&g_fs.mu);
  bool r = g_fs.shm != NULL;
  pthread_mutex_unlock(&g_fs.mu);
  return r;
}

int weft_forkserver_start(void) {
  pthread_once(&g_once, once_init);
  pthread_mutex_lock(&g_fs.mu);
  int r = 0;
  if (g_fs.shm) goto out;
  if (weft__proc_thread_count() > 1) {
    r = WEFT_EBUSY;
    goto out;
  }
  size_t size = sizeof(fs_shm) + FS_ARG_MAX;
  fs_shm *sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
  if (sh == MAP_FAILED) {
    r = -errno;
    goto out;
  }
  int efd = eventfd(0, EFD_CLOEXEC);
  if (efd < 0) {
    r = -errno;
    munmap(sh, size);
    goto out;
  }
  pid_t parent = getpid();
  fflush(NULL);
  pid_t c = fork();
  if (c < 0) {
    r = -errno;
    close(efd);
    munmap(sh, size);
    goto out;
  }
  if (c == 0) fs_main(sh, efd, parent);
  g_fs.shm = sh;
  g_fs.shm_size = size;
  g_fs.efd = efd;
  g_fs.pid = c;
  g_fs.pidfd = pidfd_open(c);
  if (g_fs.pidfd >= 0) (void)fcntl(g_fs.pidfd, F_SETFD, FD_CLOEXEC);
out:
  pthread_mutex_unlock(&g_fs.mu);
  return r;
}

static void ring(int efd) {
  uint64_t one = 1;
  ssize_t r = write(efd, &one, sizeof one);
  (void)r;
}

void weft_forkserver_stop(void) {
  pthread_mutex_lock(&g_fs.mu);
  if (g_fs.shm) {
    atomic_store(&g_fs.shm->stop, 1);
    ring(g_fs.efd);
    siginfo_t si;
    while (waitid(P_PID, (id_t)g_fs.pid, &si, WEXITED) != 0 && errno == EINTR) {
    }
    /* Children's handles still read their slots: the region stays mapped
     * (it is small in memory: only touched pages count). Mark the slots
     * the server could not report as killed. */
    for (int i = 0; i < FS_SLOTS; i++) {
      fs_slot *s = &g_fs.shm->slots[i];
      if (atomic_load(&s->state) == SLOT_RUNNING) {
        s->exitcode = -SIGKILL;
        atomic_store(&s->state, SLOT_EXITED);
        weft__futex_wake(&s->state, INT_MAX, WEFT__FUTEX_SHARED);
      }
    }
    close(g_fs.efd);
    if (g_fs.pidfd >= 0) close(g_fs.pidfd);
    /* Keep g_fs.shm's memory for the handles, but forget the server. */
    g_fs.efd = -1;
    g_fs.pidfd = -1;
    g_fs.pid = 0;
    g_fs.shm = NULL;
  }
  pthread_mutex_unlock(&g_fs.mu);
}

/* Start a child through the server. g_fs.mu held, server running. */
static int fs_spawn(weft_process *p, weft_process_fn *fn, const void *arg, size_t arg_len,
                    const sigset_t *mask) {
  fs_shm *sh = g_fs.shm;
  if (arg_len > FS_ARG_MAX) return WEFT_E2BIG;
  int slot = -1;
  for (int i = 0; i < FS_SLOTS; i++) {
    if (atomic_load(&sh->slots[i].state) == SLOT_FREE) {
      slot = i;
      break;
    }
  }
  if (slot < 0) return WEFT_EAGAIN;
  fs_slot *s = &sh->slots[slot];
  atomic_store(&s->pid, 0);
  atomic_store(&s->reap_ok, 0);
  s->exitcode = 0;
  atomic_store(&s->state, SLOT_RUNNING);
  sh->fn = fn;
  sh->arg_len = arg_len;
  if (arg_len) memcpy(sh->arg, arg, arg_len);
  sh->slot = (uint32_t)slot;
  memcpy(sh->name, p->name, sizeof sh->name);
  sh->mask = *mask;
  uint32_t seq = atomic_load(&sh->req_seq) + 1;
  atomic_store_explicit(&sh->req_seq, seq, memory_order_release);
  ring(g_fs.efd);
  while (atomic_load_explicit(&sh->rep_seq, memory_order_acquire) != seq) {
    /* The server may die (killed by someone): do not wait forever. */
    weft__futex_wait(&sh->rep_seq, seq - 1, weft_deadline_in_ms(100), WEFT__FUTEX_SHARED);
    if (atomic_load_explicit(&sh->rep_seq, memory_order_acquire) == seq) break;
    if (weft__proc_wait_ended(g_fs.pid, g_fs.pidfd, 0) == 0) {
      atomic_store(&s->state, SLOT_FREE);
      return WEFT_ECHILD;
    }
  }
  if (sh->rep_err) {
    atomic_store(&s->state, SLOT_FREE);
    return sh->rep_err;
  }
  p->pid = sh->rep_pid;
  p->pidfd = pidfd_open(p->pid); /* the server does not reap before reap_ok */
  if (p->pidfd >= 0) (void)fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
  p->slot = slot;
  p->fsh = sh;
  atomic_store(&s->reap_ok, 1);
  ring(g_fs.efd); /* it may have ended already */
  return 0;
}

/* ------------------------------------------------------------ handles */

/* A forked child of this process (a pool's worker, a child the program
 * forked itself) does not have the spawner thread, and the fork server
 * belongs to the parent: another thread of the parent may even have held
 * g_fs.mu at the fork. Forget both; the child makes its own if it needs
 * them. */
static void atfork_child(void) {
  spawn_atfork_child();
  pthread_mutex_init(&g_fs.mu, NULL);
  if (g_fs.efd >= 0) close(g_fs.efd);
  if (g_fs.pidfd >= 0) close(g_fs.pidfd);
  g_fs.shm = NULL; /* its mapping stays, unused, for handles copied along */
  g_fs.efd = -1;
  g_fs.pidfd = -1;
  g_fs.pid = 0;
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void once_init(void) { pthread_atfork(NULL, NULL, atfork_child); }

int weft_process_start(weft_process **out, weft_process_fn *fn, const void *arg, size_t arg_len,
                       const weft_process_opts *opts) {
  WEFT_CHECK_HANDLE(out);
  WEFT_CHECK_HANDLE(fn);
  if (arg_len && !arg) weft__misuse(__func__, "argument 'arg' is NULL with arg_len > 0");
  weft_start_method m = opts ? opts->method : WEFT_START_AUTO;
  if (m != WEFT_START_AUTO && m != WEFT_START_FORK && m != WEFT_START_FORKSERVER)
    return WEFT_EINVAL;
  pthread_once(&g_once, once_init);
  weft_process *p = weft__calloc(1, sizeof *p);
  if (!p) return WEFT_ENOMEM;
  if (opts && opts->name)
    snprintf(p->name, sizeof p->name, "%s", opts->name);
  else
    snprintf(p->name, sizeof p->name, "Process-%u", atomic_fetch_add(&g_counter, 1) + 1);
  pthread_mutex_init(&p->mu, NULL);
  atomic_init(&p->ended, false);
  p->slot = -1;
  p->pidfd = -1;
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, NULL, &mask);

  int threads = weft__proc_thread_count();
  int r;
  if (m == WEFT_START_FORKSERVER || (m == WEFT_START_AUTO && threads != 1)) {
    pthread_mutex_lock(&g_fs.mu);
    if (g_fs.shm) {
      r = fs_spawn(p, fn, arg, arg_len, &mask);
      pthread_mutex_unlock(&g_fs.mu);
      goto done;
    }
    pthread_mutex_unlock(&g_fs.mu);
    if (m == WEFT_START_FORKSERVER) {
      r = WEFT_ENOENT;
      goto done;
    }
  }
  spawn_req req = {fn, arg, arg_len, p->name, mask, 0, 0, -1, false};
  /* One thread, and it is the main one (whose end is the process's end):
   * fork right here. Otherwise from the spawner, which never exits. */
  if (threads == 1 && getpid() == (pid_t)syscall(SYS_gettid))
    fork_for(&req);
  else
    spawn_on_spawner(&req);
  r = req.err;
  p->pid = req.pid;
  p->pidfd = req.pidfd;
done:
  if (r) {
    pthread_mutex_destroy(&p->mu);
    weft__free(p);
    return r;
  }
  *out = p;
  return 0;
}

static fs_slot *slot_of(const weft_process *p) { return &p->fsh->slots[p->slot]; }

static bool try_reap(weft_process *p) {
  if (atomic_load_explicit(&p->ended, memory_order_acquire)) return true;
  pthread_mutex_lock(&p->mu);
  if (!atomic_load(&p->ended)) {
    if (p->slot >= 0) {
      fs_slot *s = slot_of(p);
      if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_EXITED) {
        p->exitcode = s->exitcode;
        atomic_store_explicit(&p->ended, true, memory_order_release);
      }
    } else {
      siginfo_t si;
      memset(&si, 0, sizeof si);
      int r = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG);
      if (r == 0 && si.si_pid == p->pid) {
        p->exitcode = weft__proc_exitcode(&si);
        atomic_store_explicit(&p->ended, true, memory_order_release);
      } else if (r != 0 && errno == ECHILD) {
        /* SIGCHLD is ignored (the kernel reaped it) or someone else reaped
         * it: it has ended, with a code nobody can know. */
        p->exitcode = 0;
        atomic_store_explicit(&p->ended, true, memory_order_release);
      }
    }
  }
  pthread_mutex_unlock(&p->mu);
  return atomic_load_explicit(&p->ended, memory_order_acquire);
}

int weft_process_join(weft_process *p, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(p);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  for (;;) {
    if (try_reap(p)) return 0;
    if (p->slot >= 0) {
      /* The server writes the code once it has reaped the child. */
      fs_slot *s = slot_of(p);
      int e = weft__futex_wait(&s->state, SLOT_RUNNING, deadline_ns, WEFT__FUTEX_SHARED);
      if (e == -ETIMEDOUT && !try_reap(p)) return WEFT_ETIMEDOUT;
      continue;
    }
    int e = weft__proc_wait_ended(p->pid, p->pidfd, deadline_ns);
    if (e == -ETIMEDOUT) return try_reap(p) ? 0 : WEFT_ETIMEDOUT;
    if (e) {
      /* poll itself failed (out of memory?): do not spin. */
      if (weft_deadline_remaining_ns(deadline_ns) == 0) return WEFT_ETIMEDOUT;
      weft_sleep_until(weft_deadline_in_ms(1));
    }
  }
}

bool weft_process_is_alive(weft_process *p) {
  WEFT_CHECK_HANDLE(p);
  return !try_reap(p);
}

int weft_process_exitcode(weft_process *p, int *code) {
  WEFT_CHECK_HANDLE(p);
  WEFT_CHECK_HANDLE(code);
  if (!try_reap(p)) return WEFT_EBUSY;
  *code = p->exitcode;
  return 0;
}

int weft_process_signal(weft_process *p, int sig) {
  WEFT_CHECK_HANDLE(p);
  if (sig < 0 || sig >= NSIG) return WEFT_EINVAL;
  /* Hold mu: a reaped direct child's pid may be reused at once, and without
   * a pidfd only mu keeps the reap from slipping in between. */
  pthread_mutex_lock(&p->mu);
  int r = 0;
  if (!atomic_load(&p->ended)) r = weft__proc_signal(p->pid, p->pidfd, sig);
  pthread_mutex_unlock(&p->mu);
  return r;
}

int weft_process_terminate(weft_process *p) { return weft_process_signal(p, SIGTERM); }
int weft_process_kill(weft_process *p) { return weft_process_signal(p, SIGKILL); }

pid_t weft_process_pid(const weft_process *p) {
  WEFT_CHECK_HANDLE(p);
  return p->pid;
}

const char *weft_process_name(const weft_process *p) {
  WEFT_CHECK_HANDLE(p);
  return p->name;
}

void weft_process_destroy(weft_process *p) {
  if (!p) return;
  if (!try_reap(p)) {
    pthread_mutex_lock(&p->mu);
    if (!atomic_load(&p->ended)) {
      /* The whole group: whatever the child started goes too. Through the
       * pidfd first (the child itself, never a stranger), then the group,
       * which cannot have been reused while the child is unreaped. */
      weft__proc_signal(p->pid, p->pidfd, SIGKILL);
      kill(-p->pid, SIGKILL);
    }
    pthread_mutex_unlock(&p->mu);
    weft_process_join(p, WEFT_FOREVER);
  }
  if (p->slot >= 0) atomic_store(&slot_of(p)->state, SLOT_FREE);
  if (p->pidfd >= 0) close(p->pidfd);
  pthread_mutex_destroy(&p->mu);
  weft__free(p);
}
