/*
 * Internals of weft's coroutines: the hub (one per thread), the coroutine
 * record, the park/wake protocol every blocking call is built on, and the
 * interface a libc interposition layer (weft_patch_all) builds on.
 *
 * Single-threaded by design: a hub and everything on it (coroutines, the
 * ready queue, timers, the fd table, channels, sync objects) is touched only
 * by its own thread, so none of it is locked. The one door in from other
 * threads is the hub's remote inbox (remote.c-style code in offload.c):
 * a mutex-guarded list plus an eventfd in the hub's epoll set.
 *
 * Park and wake. A blocking call links a waiter (often on its own stack)
 * into the object it waits on and calls weft__park(deadline). It returns
 *   0                wake(c, 0) by the object (which also unlinked the waiter),
 *   WEFT_ETIMEDOUT   the deadline passed (the waiter is still linked),
 *   WEFT_ECANCELED   the coroutine was cancelled (still linked),
 *   or another code the waker passed (WEFT_EBADF, WEFT_EPIPE).
 * The waiter passed to weft__park (w; for a select, any of its arms) is
 * unlinked by the hub itself the moment a timeout or a cancel wakes the
 * coroutine, so no object can hand an element, a permit or an item to a
 * coroutine that is already leaving (the hand-off would be lost). The
 * caller may unlink it again: removal is idempotent. A coroutine is woken
 * at most once per park: weft__wake ignores one that is not parked.
 *
 * ------------------------------------------------------------------------
 * Interface for an interposition layer (weft_patch_all and the like)
 * ------------------------------------------------------------------------
 *   weft__hub_get()           the calling thread's hub, or NULL: never
 *                             starts one. A wrapped libc call should act
 *                             cooperatively only when this is non-NULL and
 *                             weft__hub_in_coro(h) is true, and call the
 *                             real function otherwise (other threads, or
 *                             before the hub starts).
 *   weft__hub_in_coro(h)      whether cooperative waiting makes sense now:
 *                             the caller runs on h and is not inside the
 *                             hub's own scheduler (e.g. a signal handler
 *                             while the hub polls).
 *   weft__coro_wait_fd(h, fd, events, deadline)
 *                             park until fd is ready (WEFT_CORO_READABLE /
 *                             WRITABLE), registering fd once. Returns 0 or
 *                             a code; for a descriptor epoll cannot watch
 *                             (a regular file) returns 0 at once.
 *   weft__coro_sleep(h, deadline)
 *                             park until the deadline (0) or cancel.
 *   weft__hub_fd_closed(h, fd) the wrapper of close()/dup2()/dup3() calls
 *                             this before the real call: waiters wake with
 *                             WEFT_EBADF and the registration is dropped,
 *                             so a reused number is registered afresh.
 * All of them run on the hub's thread only.
 */
#ifndef WEFT_CORO_IMPL_H
#define WEFT_CORO_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/list.h"
#include "coro/ctx.h"
#include "weft/coro.h"

typedef struct weft__hub weft__hub;

enum {
  WEFT__CORO_READY = 0,
  WEFT__CORO_RUNNING,
  WEFT__CORO_BLOCKED,
  WEFT__CORO_DONE
};

/* A mapped stack: [base, base + guard) is PROT_NONE, [lo, lo + size) usable. */
typedef struct weft__stack {
  void *base;      /* start of the mapping (the guard page) */
  void *lo;        /* lowest usable byte */
  size_t size;     /* usable bytes */
  size_t guard;    /* guard bytes below lo */
  unsigned vg_id;  /* Valgrind stack id */
} weft__stack;

struct weft_coro {
  weft__ctx ctx;          /* saved context while not running */
  weft__hub *hub;         /* owner */
  weft__list rq;          /* link in hub->ready while READY */
  int state;              /* WEFT__CORO_* */
  int wake_result;        /* what the waker passed to weft__wake */
  bool cancelled;         /* cancel was asked */
  bool park_cancellable;  /* the current park ends on cancel */
  bool is_root;           /* the thread's own stack */
  bool started;           /* fn has been entered */
  int refs;               /* 1 while not finished + 1 per handle */
  int status;             /* fn's return value */
  int64_t deadline;       /* while in the timer heap */
  uint64_t timer_seq;     /* FIFO order among equal deadlines */
  size_t heap_idx;        /* 1-based position in the timer heap; 0: not in it */
  const char *what;       /* what it is blocked on, for the dump (static) */
  struct weft__waiter *waiter; /* the waiter of the current park, or NULL */
  int what_fd;            /* fd it waits on, or -1 */
  weft_coro_fn *fn;
  void *arg;
  weft__list joiners;     /* weft__waiter of coroutines joining this one */
  weft_coro_group *group; /* or NULL */
  weft__list group_link;  /* in group->members while not finished */
  weft__list all_link;    /* in hub->all while the record exists */
  weft__stack stack;      /* unused for the root */
  void *asan_fake;        /* ASan fake-stack slot while switched out */
  void *tsan_fiber;       /* TSan fiber */
  uint64_t id;            /* 0 for the root */
  const char *file;       /* spawn site (static string) */
  int line;
  char name[32];
};

/* Someone parked on an object. */
typedef struct weft__waiter {
  weft__list link;  /* in the object's wait list */
  weft_coro *coro;
  void *data;       /* per object: element pointer for channels, ... */
  unsigned events;  /* fd waits: WEFT_CORO_READABLE / WRITABLE */
  int index;        /* select: which arm */
  struct weft__sel *sel; /* select: the shared record, or NULL */
} weft__waiter;

/* A select in progress: one waiter per arm. */
typedef struct weft__sel {
  weft__waiter *ws;
  size_t n;
  int index; /* the arm that completed, -1 until one did */
} weft__sel;

/* One descriptor the hub knows. */
typedef struct weft__fdent {
  bool registered;  /* in the epoll set (edge-triggered, in + out) */
  bool unpollable;  /* epoll refused it (regular file): always ready */
  bool kind_known;  /* is_sock and nonblock below are filled in */
  bool is_sock;
  bool is_stream;   /* a SOCK_STREAM socket (kind_known) */
  bool nonblock;
  /* A read drained this registered stream socket and the poller has
   * reported no readable edge since: the next read waits for one first
   * instead of trying a recv that would say EAGAIN (poll.c). */
  bool drained;
  weft__list waiters; /* weft__waiter */
} weft__fdent;

struct weft__remote; /* offload.c */

struct weft__hub {
  weft_coro *current;     /* the running coroutine */
  weft_coro root;         /* the thread's own stack */
  weft__list ready;       /* READY coroutines, FIFO */
  unsigned dispatches;    /* since the last non-blocking poll */
  bool in_scheduler;      /* inside the poll (for weft__hub_in_coro) */
  weft_coro *zombie;      /* finished; its stack is recycled after the switch */
  /* timers: a binary min-heap on (deadline, timer_seq) */
  weft_coro **heap;
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  /* I/O */
  int epfd;
  weft__fdent **fds;      /* indexed by fd, grown on demand (no fixed limit) */
  size_t nfds;
  size_t fd_waiters;      /* coroutines parked on descriptors */
  size_t registered;      /* descriptors in the epoll set */
  bool pwait2_missing;    /* epoll_pwait2 gave ENOSYS: use epoll_wait */
  /* every coroutine record, for the dump; live = not finished, non-root */
  weft__list all;
  size_t live;
  weft__list hub_waiters; /* weft_hub_wait callers */
  uint64_t next_id;
  /* caches */
  weft__stack stack_cache[64];
  size_t nstack_cache;
  weft_coro *coro_cache;  /* freed records, linked through ->arg */
  size_t ncoro_cache;
  /* the door from other threads */
  struct weft__remote *remote;
  size_t remote_pending;  /* remote completions that a parked coroutine awaits */
  /* signal stack for the overflow handler (NULL if one was already set) */
  void *altstack;
  size_t altstack_size;
  const void *root_stack_lo; /* bounds of the thread's stack (ASan) */
  size_t root_stack_size;
  /* a dump asking a suspended coroutine for its backtrace (hub.c) */
  weft_coro *bt_target;      /* the coroutine asked, or NULL */
  weft_coro *bt_from;        /* the coroutine to switch back to */
  void *bt_buf[24];
  int bt_n;
  pid_t tid;
  struct weft__wd *wd;       /* watchdog record while watched (watchdog.c) */
};

/* The calling thread's hub (hub.c); read through the inline helpers. */
extern __thread weft__hub *weft__tls_hub __attribute__((tls_model("initial-exec")));

/* The calling thread's hub, or NULL (never starts one). */
weft__hub *weft__hub_get(void);
/* The calling thread's hub, started if needed (aborts if out of memory:
 * a hub cannot be reported as an error from every call). */
weft__hub *weft__hub_start(const char *call);
bool weft__hub_in_coro(const weft__hub *h);

/* Check that obj_hub is the caller's hub; abort naming call otherwise. */
__attribute__((noreturn, cold)) void weft__hub_wrong_thread(const char *call);
static inline weft__hub *weft__hub_check(weft__hub *obj_hub, const char *call) {
  if (__builtin_expect(obj_hub != weft__tls_hub, 0)) weft__hub_wrong_thread(call);
  return obj_hub;
}

/* Park the running coroutine (see the top of this file). what: a static
 * description for the dump. */
int weft__park(weft__hub *h, int64_t deadline, const char *what, bool cancellable,
               weft__waiter *w);
/* Make a parked coroutine ready with result; no-op if it is not parked.
 * weft__wake is for the object that completed the wait (it has unlinked
 * the waiter); weft__wake_abort for timeouts and cancels. */
void weft__timer_remove(weft__hub *h, weft_coro *c);
static inline void weft__wake(weft_coro *c, int result) {
  if (c->state != WEFT__CORO_BLOCKED) return;
  weft__hub *h = c->hub;
  if (c->heap_idx) weft__timer_remove(h, c);
  c->wake_result = result;
  c->state = WEFT__CORO_READY;
  weft__list_push_back(&h->ready, &c->rq);
}
void weft__wake_abort(weft_coro *c, int result);

/* memcpy for element copies: the common small sizes without a call. */
static inline void weft__copy_elem(void *dst, const void *src, size_t n) {
  switch (n) {
  case 4: __builtin_memcpy(dst, src, 4); return;
  case 8: __builtin_memcpy(dst, src, 8); return;
  case 16: __builtin_memcpy(dst, src, 16); return;
  default: __builtin_memcpy(dst, src, n); return;
  }
}

/* Park until fd is ready; after_eagain: the caller just got EAGAIN, so no
 * readiness check is needed before parking. */
int weft__coro_wait_fd(weft__hub *h, int fd, unsigned events, int64_t deadline,
                       bool after_eagain);
int weft__coro_sleep(weft__hub *h, int64_t deadline);
void weft__hub_fd_closed(weft__hub *h, int fd);
weft__fdent *weft__fd_get(weft__hub *h, int fd, bool create);

/* Poller (poll.c): wait up to timeout_ns (-1 forever, 0 not at all) for
 * descriptors and the remote inbox, waking whoever they concern. */
void weft__poll_io(weft__hub *h, int64_t timeout_ns);
int weft__poll_init(weft__hub *h);
void weft__poll_fini(weft__hub *h);
/* In a forked child: a new epoll set of the child's own (poll.c), a new
 * inbox eventfd (offload.c). */
void weft__poll_atfork_child(weft__hub *h);
void weft__remote_atfork_child(weft__hub *h);
int weft__poll_add_remote(weft__hub *h, int fd);

/* Remote inbox (offload.c). */
int weft__remote_init(weft__hub *h);
void weft__remote_drain(weft__hub *h);
void weft__remote_fini(weft__hub *h);
int weft__remote_fd(const weft__hub *h);

/* Stacks (stack.c). */
int weft__stack_get(weft__hub *h, size_t size, bool guarded, weft__stack *out);
void weft__stack_put(weft__hub *h, weft__stack *s);
void weft__stack_cache_fini(weft__hub *h);
size_t weft__stack_round(size_t size);
/* Install the process's overflow handler (once) and this thread's signal
 * stack. Returns 0 or -errno. */
int weft__overflow_init(weft__hub *h);
void weft__overflow_fini(weft__hub *h);

/* Watchdog (watchdog.c): publish a switch to c / entering or leaving an
 * idle poll; drop the hub's record. */
void weft__wd_note(struct weft__wd *w, const weft_coro *c);
void weft__wd_idle(struct weft__wd *w, bool idle);
void weft__wd_fini(weft__hub *h);

/* Random number for select (xorshift, per hub thread). */
uint32_t weft__hub_rand(void);

#endif
