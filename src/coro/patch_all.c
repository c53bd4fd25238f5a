/*
 * weft_patch_all(): the libweft side of libc interposition.
 *
 * The wrappers themselves live in a separate library, libweft_patch
 * (src/patch/patch.c), so that a program that does not ask for patching has
 * no libc name redefined. This file finds that library in the process
 * (dlsym of weft__patch_enable), hands it the table of hub operations it
 * needs (coro/patch_ops.h), and implements the one operation the hub does
 * not already offer: a wait on several descriptors at once that also
 * re-checks its epoll registrations, because under patching descriptors are
 * closed behind weft's back (fclose, another thread, a raw system call).
 *
 * Registration check. The hub keeps "registered" per descriptor number and
 * trusts it. A number closed without weft knowing (so epoll dropped the
 * file) and reused would then never be woken. Before parking on a
 * descriptor the hub believes registered, the wait here issues
 * EPOLL_CTL_MOD: it succeeds for the same file (and re-arms the edge, so a
 * readiness that is already there is reported), and fails with ENOENT for a
 * different file, which is then added. One epoll_ctl per park, on the slow
 * path only.
 *
 * Locking: the enable flag is an atomic; everything else runs on the hub's
 * own thread and is not locked (see coro_impl.h).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/epoll.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"
#include "coro/patch_ops.h"
#include "weft/patch.h"

static atomic_bool patch_on;

static void *op_coop_hub(void) {
  weft__hub *h = weft__hub_get();
  return h && weft__hub_in_coro(h) ? h : NULL;
}

static void *op_hub(void) { return weft__hub_get(); }

/* Make sure fd is in the epoll set for the file it names now. Returns 0,
 * 1 (epoll cannot watch it: treat as ready) or -errno. */
static int ensure_registered(weft__hub *h, weft__fdent *e, int fd) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.u64 = (uint64_t)(unsigned)fd};
  if (e->registered) {
    if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
    if (errno != ENOENT) return -errno;
    /* The file behind the number changed: the old one left the set. */
    e->registered = false;
    h->registered--;
  }
  if (e->unpollable) return 1;
  if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (errno == EPERM) {
      e->unpollable = true;
      return 1;
    }
    if (errno != EEXIST) return -errno;
    /* Still in the set through a duplicate of the same file. */
    if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) return -errno;
  }
  e->registered = true;
  h->registered++;
  return 0;
}

static unsigned poll_to_events(short ev) {
  unsigned r = 0;
  if (ev & (POLLIN | POLLPRI | POLLRDHUP)) r |= WEFT_CORO_READABLE;
  if (ev & POLLOUT) r |= WEFT_CORO_WRITABLE;
  /* Only errors asked for: those come with either direction. */
  return r ? r : WEFT_CORO_READABLE | WEFT_CORO_WRITABLE;
}

static bool linked(const weft__list *l) { return l->next != l; }

static int op_wait(void *hv, const struct pollfd *fds, size_t n, int64_t deadline,
                   bool check_first) {
  weft__hub *h = hv;
  weft_coro *self = h->current;
  if (self->cancelled) return -ECANCELED;
  if (check_first) {
    /* poll(2) with a zero timeout is forwarded by the wrapper unchanged. */
    int k = poll((struct pollfd *)fds, (nfds_t)n, 0);
    if (k != 0) return 0; /* ready, or an error the caller's retry reports */
  }
  weft__waiter one, *ws = &one;
  if (n > 1) {
    ws = weft__calloc(n, sizeof *ws);
    if (!ws) return -ENOMEM;
  }
  size_t linked_n = 0;
  int res = 0;
  for (size_t i = 0; i < n; i++) {
    weft__waiter *w = &ws[i];
    weft__list_init(&w->link);
    if (fds[i].fd < 0) continue;
    weft__fdent *e = weft__fd_get(h, fds[i].fd, true);
    if (!e) {
      res = -ENOMEM;
      break;
    }
    int r = ensure_registered(h, e, fds[i].fd);
    if (r == -EBADF) {
      /* Not open: the caller's own check reports it (poll's POLLNVAL), or
       * libc ignores it (select above the table's size). Nothing to watch. */
      continue;
    }
    if (r != 0) {
      /* 1: a descriptor epoll cannot watch is always ready. */
      res = r == 1 ? 0 : r;
      goto out;
    }
    w->coro = self;
    w->events = poll_to_events(fds[i].events);
    weft__list_push_back(&e->waiters, &w->link);
    h->fd_waiters++;
    linked_n++;
  }
  if (res == 0 && linked_n == 0) {
    /* Nothing to watch (every fd negative): poll(2) just sleeps. */
    res = weft__coro_sleep(h, deadline);
    res = res == 0 ? -ETIMEDOUT : res;
    goto out;
  }
  if (res == 0) {
    self->what_fd = fds[0].fd;
    /* No waiter is passed to park: the arms are unlinked below, whatever
     * woke the coroutine (an fd wake unlinks only its own arm). */
    res = weft__park(h, deadline, n == 1 ? "patched fd wait" : "patched poll", true, NULL);
    self->what_fd = -1;
  }
out:
  for (size_t i = 0; i < n; i++) {
    if (linked(&ws[i].link)) {
      weft__list_remove(&ws[i].link);
      h->fd_waiters--;
    }
  }
  if (ws != &one) weft__free(ws);
  return res;
}

static int op_sleep(void *hv, int64_t deadline) { return weft__coro_sleep(hv, deadline); }

static void op_fds_closed(void *hv, int lo, int hi) {
  weft__hub *h = hv;
  if (lo < 0) lo = 0;
  if (hi < lo) return;
  /* Only numbers the hub knows matter; the table bounds the loop. */
  size_t end = (size_t)hi + 1;
  if (end > h->nfds) end = h->nfds;
  for (size_t fd = (size_t)lo; fd < end; fd++)
    if (h->fds[fd]) weft__hub_fd_closed(h, (int)fd);
}

static int op_offload(void *hv, int (*fn)(void *), void *arg) {
  (void)hv;
  int result = 0;
  return weft_coro_offload(NULL, fn, arg, WEFT_FOREVER, &result);
}

static const weft__patch_ops ops = {
    .version = WEFT__PATCH_OPS_VERSION,
    .size = sizeof(weft__patch_ops),
    .coop_hub = op_coop_hub,
    .hub = op_hub,
    .wait = op_wait,
    .sleep = op_sleep,
    .fds_closed = op_fds_closed,
    .offload = op_offload,
};

int weft_patch_all(void) {
  if (atomic_load_explicit(&patch_on, memory_order_acquire)) return 0;
  void *sym = dlsym(RTLD_DEFAULT, "weft__patch_enable");
  if (!sym) return WEFT_ENOTSUP;
  weft__patch_enable_fn *enable;
  *(void **)&enable = sym;
  int e = enable(&ops);
  if (e == 0) atomic_store_explicit(&patch_on, true, memory_order_release);
  return e;
}

bool weft_patch_active(void) { return atomic_load_explicit(&patch_on, memory_order_acquire); }
