/*
 * The hub's poller and cooperative I/O.
 *
 * One epoll set per hub. A descriptor is added the first time a coroutine
 * waits on it, edge-triggered for both directions (EPOLLIN | EPOLLOUT |
 * EPOLLRDHUP | EPOLLET), and stays there until weft_coro_close /
 * weft_coro_fd_forget: waiting again costs no epoll_ctl. Edge-triggered
 * registration is safe because every wait either follows an EAGAIN from
 * the very call it retries (so a later edge must come) or first checks
 * readiness with a zero-timeout poll(2).
 *
 * The fd table is an array of pointers indexed by descriptor, grown on
 * demand: there is no fixed limit on descriptor numbers.
 *
 * Timeouts are in nanoseconds (epoll_pwait2), falling back to epoll_wait's
 * milliseconds, rounded up, on kernels without it.
 *
 * Locking: none; the hub's thread only.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"

#define REMOTE_TAG ((uint64_t)1 << 63)

int weft__poll_init(weft__hub *h) {
  h->epfd = epoll_create1(EPOLL_CLOEXEC);
  return h->epfd < 0 ? -errno : 0;
}

void weft__poll_fini(weft__hub *h) {
  for (size_t i = 0; i < h->nfds; i++) weft__free(h->fds[i]);
  weft__free(h->fds);
  h->fds = NULL;
  h->nfds = 0;
  if (h->epfd >= 0) close(h->epfd);
  h->epfd = -1;
}

static int fd_register(weft__hub *h, weft__fdent *e, int fd);

void weft__poll_atfork_child(weft__hub *h) {
  /* Closing our copy of the parent's epoll descriptor leaves the parent's
   * set as it is. */
  if (h->epfd >= 0) close(h->epfd);
  h->epfd = epoll_create1(EPOLL_CLOEXEC);
  h->registered = 0;
  for (size_t fd = 0; fd < h->nfds; fd++) {
    weft__fdent *e = h->fds[fd];
    if (!e) continue;
    e->registered = false;
    e->drained = false;
    /* Waiters parked across the fork wait in the new set. A failure leaves
     * them to their deadlines, as any lost descriptor would. */
    if (!weft__list_empty(&e->waiters) && h->epfd >= 0) fd_register(h, e, (int)fd);
  }
}

weft__fdent *weft__fd_get(weft__hub *h, int fd, bool create) {
  if (fd < 0) return NULL;
  size_t i = (size_t)fd;
  if (i >= h->nfds) {
    if (!create) return NULL;
    size_t n = h->nfds ? h->nfds : 64;
    while (n <= i) n *= 2;
    weft__fdent **t = weft__realloc(h->fds, n * sizeof *t);
    if (!t) return NULL;
    for (size_t k = h->nfds; k < n; k++) t[k] = NULL;
    h->fds = t;
    h->nfds = n;
  }
  weft__fdent *e = h->fds[i];
  if (!e && create) {
    e = weft__calloc(1, sizeof *e);
    if (!e) return NULL;
    weft__list_init(&e->waiters);
    h->fds[i] = e;
  }
  return e;
}

static void fd_ready(weft__hub *h, int fd, uint32_t ev) {
  weft__fdent *e = weft__fd_get(h, fd, false);
  if (!e) return;
  unsigned ready = 0;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) ready |= WEFT_CORO_READABLE;
  if (ev & EPOLLOUT) ready |= WEFT_CORO_WRITABLE;
  if (ev & (EPOLLERR | EPOLLHUP)) ready |= WEFT_CORO_READABLE | WEFT_CORO_WRITABLE;
  /* Recorded even with no waiter: the next read must try the descriptor. */
  if (ready & WEFT_CORO_READABLE) e->drained = false;
  weft__list *p, *t;
  weft__list_for_each_safe(p, t, &e->waiters) {
    weft__waiter *w = weft__container_of(p, weft__waiter, link);
    if (w->events & ready) {
      weft__list_remove(&w->link);
      h->fd_waiters--;
      weft__wake(w->coro, 0);
    }
  }
}

void weft__poll_io(weft__hub *h, int64_t timeout_ns) {
  /* Nothing can be pending in the set: skip the system call. */
  if (timeout_ns == 0 && h->registered == 0 && !h->remote_pending) return;
  struct epoll_event evs[64];
  int n;
  h->in_scheduler = true;
  bool idle = timeout_ns != 0 && h->wd;
  if (idle) weft__wd_idle(h->wd, true);
  for (;;) {
    if (!h->pwait2_missing) {
      struct timespec ts, *tsp = NULL;
      if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
      }
      n = epoll_pwait2(h->epfd, evs, 64, tsp, NULL);
      if (n < 0 && errno == ENOSYS) {
        h->pwait2_missing = true;
        continue;
      }
    } else {
      int ms = -1;
      if (timeout_ns >= 0) {
        int64_t m = (timeout_ns + 999999) / 1000000;
        ms = m > INT_MAX ? INT_MAX : (int)m;
      }
      n = epoll_wait(h->epfd, evs, 64, ms);
    }
    if (n >= 0 || errno != EINTR) break;
    /* A signal: return and let the caller recompute the timeout. */
    n = 0;
    break;
  }
  if (idle) weft__wd_idle(h->wd, false);
  h->in_scheduler = false;
  for (int i = 0; i < n; i++) {
    if (evs[i].data.u64 == REMOTE_TAG)
      weft__remote_drain(h);
    else
      fd_ready(h, (int)evs[i].data.u64, evs[i].events);
  }
}

int weft__poll_add_remote(weft__hub *h, int fd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = REMOTE_TAG};
  return epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

/* Register fd once. Returns 0, 1 (epoll cannot watch it: always ready), or
 * a negative code. */
static int fd_register(weft__hub *h, weft__fdent *e, int fd) {
  if (e->registered) return 0;
  if (e->unpollable) return 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.u64 = (uint64_t)(unsigned)fd};
  if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (errno == EEXIST) {
      /* A registration the hub had forgotten (the number was closed and
       * reused while a dup kept the old file in the set): refresh it. */
      if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) return -errno;
    } else if (errno == EPERM) {
      e->unpollable = true;
      return 1;
    } else {
      return -errno;
    }
  }
  e->registered = true;
  h->registered++;
  return 0;
}

int weft__coro_wait_fd(weft__hub *h, int fd, unsigned events, int64_t deadline,
                       bool after_eagain) {
  if (fd < 0) return WEFT_EBADF;
  if (h->current->cancelled) return WEFT_ECANCELED;
  weft__fdent *e = weft__fd_get(h, fd, true);
  if (!e) return WEFT_ENOMEM;
  int r = fd_register(h, e, fd);
  if (r == 1) return 0;
  if (r < 0) return r;
  if (!after_eagain) {
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & WEFT_CORO_READABLE) p.events |= POLLIN;
    if (events & WEFT_CORO_WRITABLE) p.events |= POLLOUT;
    int k = poll(&p, 1, 0);
    if (k > 0) return (p.revents & POLLNVAL) ? WEFT_EBADF : 0;
    if (k < 0 && errno != EINTR) return -errno;
  }
  if (deadline == 0) return WEFT_ETIMEDOUT;
  weft__waiter w = {.coro = h->current, .events = events};
  weft__list_push_back(&e->waiters, &w.link);
  h->fd_waiters++;
  h->current->what_fd = fd;
  int res = weft__park(h, deadline,
                       events == WEFT_CORO_WRITABLE ? "fd write" : "fd read", true, &w);
  h->current->what_fd = -1;
  if (res) {
    /* Not woken by readiness: still linked (unless the fd was forgotten,
     * which unlinks and wakes with WEFT_EBADF). */
    if (res != WEFT_EBADF) {
      weft__list_remove(&w.link);
      h->fd_waiters--;
    }
  }
  return res;
}

void weft__hub_fd_closed(weft__hub *h, int fd) {
  weft__fdent *e = weft__fd_get(h, fd, false);
  if (!e) return;
  weft__list *p;
  while ((p = weft__list_pop_front(&e->waiters)) != NULL) {
    h->fd_waiters--;
    weft__wake(weft__container_of(p, weft__waiter, link)->coro, WEFT_EBADF);
  }
  if (e->registered) {
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
    h->registered--;
  }
  e->registered = false;
  e->unpollable = false;
  e->kind_known = false;
  e->drained = false;
}

/* ----------------------------------------------------------- public I/O */

static weft__hub *io_hub(int64_t deadline, const char *call, int *err) {
  if (!WEFT_DEADLINE_VALID(deadline)) {
    *err = WEFT_EINVAL;
    return NULL;
  }
  weft__hub *h = weft__hub_start(call);
  *err = 0;
  return h;
}

/* Learn whether fd is a socket and whether it is non-blocking (cached
 * until the fd is closed through weft). */
static weft__fdent *fd_kind(weft__hub *h, int fd) {
  WEFT_ASSERT(fd >= 0);
  weft__fdent *e = weft__fd_get(h, fd, true);
  if (!e || e->kind_known) return e;
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fstat(fd, &st) != 0) return e; /* the call itself reports EBADF */
  e->is_sock = S_ISSOCK(st.st_mode);
  e->is_stream = false;
  if (e->is_sock) {
    int type = 0;
    socklen_t tl = sizeof type;
    e->is_stream = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
  }
  e->nonblock = (fl & O_NONBLOCK) != 0;
  e->kind_known = true;
  return e;
}

int weft_coro_wait_fd(int fd, unsigned events, int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  if (!(events & (WEFT_CORO_READABLE | WEFT_CORO_WRITABLE))) return WEFT_EINVAL;
  return weft__coro_wait_fd(h, fd, events, deadline_ns, false);
}

/* The shared loop: try op without blocking; on EAGAIN wait and retry. */
typedef ssize_t io_fn(int fd, void *buf, size_t len, int flags);

static ssize_t do_read(int fd, void *buf, size_t len, int flags) {
  (void)flags;
  return read(fd, buf, len);
}
static ssize_t do_write(int fd, void *buf, size_t len, int flags) {
  (void)flags;
  return write(fd, buf, len);
}
static ssize_t do_recv(int fd, void *buf, size_t len, int flags) {
  return recv(fd, buf, len, flags);
}
static ssize_t do_send(int fd, void *buf, size_t len, int flags) {
  return send(fd, buf, len, flags | MSG_NOSIGNAL);
}

static ssize_t io_loop(weft__hub *h, int fd, void *buf, size_t len, int flags, bool write_side,
                       bool sock_call, int64_t deadline) {
  unsigned ev = write_side ? WEFT_CORO_WRITABLE : WEFT_CORO_READABLE;
  if (fd < 0) return WEFT_EBADF;
  if (h->current->cancelled) return WEFT_ECANCELED;
  weft__fdent *e = fd_kind(h, fd);
  if (!e) return WEFT_ENOMEM;
  io_fn *fn;
  bool must_wait_first = false;
  if (sock_call || e->is_sock) {
    fn = write_side ? do_send : do_recv;
    flags |= MSG_DONTWAIT;
  } else {
    fn = write_side ? do_write : do_read;
    if (e->kind_known && !e->nonblock) {
      /* A blocking pipe or tty: wait for readiness, then move at most
       * PIPE_BUF bytes, which a ready pipe takes or gives at once. */
      must_wait_first = true;
    }
  }
  /* A plain read of a registered stream socket keeps track of whether it
   * drained the socket (a short read or EAGAIN): every byte that arrives
   * later raises an edge, so until the poller reports one the socket is
   * known to be empty and the read waits first, saving the recv that would
   * say EAGAIN (a request/response server's every other read). Not for
   * MSG_PEEK and other flags, which leave data behind, nor datagrams,
   * where a short read says nothing about the next one. A zero deadline
   * is a try, and the edge may still be in the kernel: it asks. */
  bool track = !write_side && e->is_stream && (flags & ~MSG_DONTWAIT) == 0;
  bool after_eagain = false;
  if (track && e->drained && e->registered && len > 0 && deadline != 0) {
    int w = weft__coro_wait_fd(h, fd, ev, deadline, true);
    if (w) return w;
  }
  for (;;) {
    if (must_wait_first) {
      int w = weft__coro_wait_fd(h, fd, ev, deadline, after_eagain);
      if (w) return w;
      if (!e->unpollable && len > PIPE_BUF) len = PIPE_BUF;
    }
    ssize_t r = fn(fd, buf, len, flags);
    if (r >= 0) {
      if (track) e->drained = r > 0 && (size_t)r < len;
      return r;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    if (track) e->drained = true;
    after_eagain = true;
    if (!must_wait_first) {
      int w = weft__coro_wait_fd(h, fd, ev, deadline, true);
      if (w) return w;
    }
  }
}

ssize_t weft_coro_read(int fd, void *buf, size_t len, int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  return io_loop(h, fd, buf, len, 0, false, false, deadline_ns);
}

ssize_t weft_coro_write(int fd, const void *buf, size_t len, int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  return io_loop(h, fd, (void *)buf, len, 0, true, false, deadline_ns);
}

ssize_t weft_coro_recv(int fd, void *buf, size_t len, int flags, int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  return io_loop(h, fd, buf, len, flags, false, true, deadline_ns);
}

ssize_t weft_coro_send(int fd, const void *buf, size_t len, int flags, int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  return io_loop(h, fd, (void *)buf, len, flags, true, true, deadline_ns);
}

ssize_t weft_coro_write_all(int fd, const void *buf, size_t len, int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  if (len > SSIZE_MAX) return WEFT_EINVAL;
  size_t done = 0;
  while (done < len) {
    ssize_t r = io_loop(h, fd, (char *)buf + done, len - done, 0, true, false, deadline_ns);
    if (r < 0) return r;
    done += (size_t)r;
  }
  return (ssize_t)len;
}

int weft_coro_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
                     int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  if (fd < 0) return WEFT_EBADF;
  if (h->current->cancelled) return WEFT_ECANCELED;
  weft__fdent *e = fd_kind(h, fd);
  if (!e) return WEFT_ENOMEM;
  bool blocking = e->kind_known && !e->nonblock;
  bool after_eagain = false;
  for (;;) {
    if (blocking) {
      int w = weft__coro_wait_fd(h, fd, WEFT_CORO_READABLE, deadline_ns, after_eagain);
      if (w) return w;
    }
    int c = accept4(fd, addr, addrlen, flags);
    if (c >= 0) return c;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    after_eagain = true;
    if (!blocking) {
      int w = weft__coro_wait_fd(h, fd, WEFT_CORO_READABLE, deadline_ns, true);
      if (w) return w;
    }
  }
}

int weft_coro_connect(int fd, const struct sockaddr *addr, socklen_t addrlen,
                      int64_t deadline_ns) {
  int err;
  weft__hub *h = io_hub(deadline_ns, __func__, &err);
  if (!h) return err;
  if (h->current->cancelled) return WEFT_ECANCELED;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  bool toggled = false;
  if (!(fl & O_NONBLOCK)) {
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return -errno;
    toggled = true;
  }
  int res = 0;
  if (connect(fd, addr, addrlen) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      res = -errno;
    } else {
      res = weft__coro_wait_fd(h, fd, WEFT_CORO_WRITABLE, deadline_ns, true);
      if (res == 0) {
        int so = 0;
        socklen_t sl = sizeof so;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0)
          res = -errno;
        else
          res = -so;
      }
    }
  }
  if (toggled) fcntl(fd, F_SETFL, fl);
  return res;
}

void weft_coro_fd_forget(int fd) {
  weft__hub *h = weft__hub_get();
  if (h) weft__hub_fd_closed(h, fd);
}

int weft_coro_close(int fd) {
  weft_coro_fd_forget(fd);
  return close(fd) == 0 ? 0 : -errno;
}
