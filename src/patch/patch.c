/*
 * libweft_patch: libc's blocking calls, made cooperative inside coroutines.
 *
 * This library defines read, write, recv, poll, sleep, getaddrinfo and the
 * rest of the list in weft/patch.h under their libc names. Loaded before
 * libc (linked by the program, or LD_PRELOADed), it is what every object in
 * the process calls, including shared libraries weft never saw. Each wrapper
 * forwards to the next definition (libc's, found with dlsym(RTLD_NEXT))
 * unless patching is on (weft_patch_all() handed us the hub's operations)
 * and the caller is a coroutine of the calling thread's hub; then it does the
 * same work without blocking the thread:
 *
 *  - Sockets: the call is made with MSG_DONTWAIT added; on EAGAIN the
 *    coroutine parks until the socket is ready and tries again. read/write/
 *    readv/writev on a socket become recv/send/recvmsg/sendmsg, which the
 *    kernel treats the same. No file status flag changes, so another
 *    process sharing the socket sees nothing.
 *  - Other descriptors (pipes, ttys, eventfds): the coroutine parks until
 *    poll says ready, then the call is made; a write to a pipe goes in
 *    pieces of at most PIPE_BUF, which a writable pipe takes at once.
 *    Regular files and block devices are passed through (they never wait
 *    for readiness).
 *  - A descriptor the program made non-blocking, a call with MSG_DONTWAIT,
 *    poll/select with a zero timeout: passed through unchanged.
 *
 * The first attempt on a socket needs no extra system call: only when it
 * returns EAGAIN does the wrapper look at O_NONBLOCK (the program asked for
 * EAGAIN: return it) and at SO_RCVTIMEO/SO_SNDTIMEO (the deadline). A
 * non-socket costs one failed recv/send (ENOTSOCK), fcntl, fstat and a poll.
 *
 * errno: saved on entry and restored on success, so a successful call
 * leaves it as libc would; failures set exactly the code libc would set,
 * plus ECANCELED (the coroutine was cancelled) and EBADF (the descriptor was
 * closed while waiting).
 *
 * Locking: the ops pointer and the resolved libc functions are atomics
 * written once; nothing else is shared.
 */
#undef _FORTIFY_SOURCE
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "coro/patch_ops.h"

#define EXPORT __attribute__((visibility("default")))
#define FOREVER ((int64_t)-1)

/* ------------------------------------------------ libc's own functions */

typedef ssize_t read_fn(int, void *, size_t);
typedef ssize_t write_fn(int, const void *, size_t);
typedef ssize_t readv_fn(int, const struct iovec *, int);
typedef ssize_t writev_fn(int, const struct iovec *, int);
typedef ssize_t recv_fn(int, void *, size_t, int);
typedef ssize_t send_fn(int, const void *, size_t, int);
typedef ssize_t recvfrom_fn(int, void *__restrict, size_t, int, __SOCKADDR_ARG,
                            socklen_t *__restrict);
typedef ssize_t sendto_fn(int, const void *, size_t, int, __CONST_SOCKADDR_ARG, socklen_t);
typedef ssize_t recvmsg_fn(int, struct msghdr *, int);
typedef ssize_t sendmsg_fn(int, const struct msghdr *, int);
typedef int accept_fn(int, __SOCKADDR_ARG, socklen_t *__restrict);
typedef int accept4_fn(int, __SOCKADDR_ARG, socklen_t *__restrict, int);
typedef int connect_fn(int, __CONST_SOCKADDR_ARG, socklen_t);
typedef int poll_fn(struct pollfd *, nfds_t, int);
typedef int epoll_wait_fn(int, struct epoll_event *, int, int);
typedef int select_fn(int, fd_set *__restrict, fd_set *__restrict, fd_set *__restrict,
                      struct timeval *__restrict);
typedef unsigned sleep_fn(unsigned);
typedef int usleep_fn(useconds_t);
typedef int nanosleep_fn(const struct timespec *, struct timespec *);
typedef int clock_nanosleep_fn(clockid_t, int, const struct timespec *, struct timespec *);
typedef int getaddrinfo_fn(const char *__restrict, const char *__restrict,
                           const struct addrinfo *__restrict, struct addrinfo **__restrict);
typedef int close_fn(int);
typedef int dup2_fn(int, int);
typedef int dup3_fn(int, int, int);
typedef int close_range_fn(unsigned, unsigned, int);
typedef void closefrom_fn(int);
typedef int fclose_fn(FILE *);
typedef ssize_t read_chk_fn(int, void *, size_t, size_t);
typedef ssize_t recv_chk_fn(int, void *, size_t, size_t, int);
typedef ssize_t recvfrom_chk_fn(int, void *__restrict, size_t, size_t, int, __SOCKADDR_ARG,
                                socklen_t *__restrict);
typedef int poll_chk_fn(struct pollfd *, nfds_t, int, size_t);

#define REALS(X)                                                                     \
  X(read) X(write) X(readv) X(writev) X(recv) X(send) X(recvfrom) X(sendto) X(recvmsg) \
  X(sendmsg) X(accept) X(accept4) X(connect) X(poll) X(epoll_wait) X(select) X(sleep) X(usleep)      \
  X(nanosleep) X(clock_nanosleep) X(getaddrinfo) X(close) X(dup2) X(dup3)              \
  X(fclose)

#define CHK_REALS(X) X(read_chk) X(recv_chk) X(recvfrom_chk) X(poll_chk)

#define DECLARE_REAL(name) static name##_fn *_Atomic real_##name;
REALS(DECLARE_REAL)
CHK_REALS(DECLARE_REAL)
DECLARE_REAL(close_range)
DECLARE_REAL(closefrom)

/* Stand-ins for the two functions an older C library may lack. */
static int missing_close_range(unsigned lo, unsigned hi, int flags) {
  (void)lo, (void)hi, (void)flags;
  errno = ENOSYS;
  return -1;
}
static void missing_closefrom(int lo) {
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 1 << 20) max = 1 << 20;
  for (long fd = lo < 0 ? 0 : lo; fd < max; fd++) close((int)fd);
}

/* dlsym(RTLD_NEXT): the definition after this library in lookup order,
 * normally libc's. Every name but the two above is in every C library this
 * builds on: not finding one means the process cannot go on, so say which
 * and stop. */
static void *resolve(const char *name, void *fallback) {
  void *p = dlsym(RTLD_NEXT, name);
  if (p) return p;
  if (fallback) return fallback;
  char m[128];
  int n = snprintf(m, sizeof m, "weft_patch: the C library has no %s\n", name);
  if (n > 0) syscall(SYS_write, 2, m, (size_t)n < sizeof m ? (size_t)n : sizeof m - 1);
  abort();
}

#define REAL_AS(name, sym, fallback)                                                 \
  (__extension__({                                                                   \
    name##_fn *f_ = atomic_load_explicit(&real_##name, memory_order_relaxed);        \
    if (__builtin_expect(f_ == NULL, 0)) {                                           \
      *(void **)&f_ = resolve(sym, fallback);                                        \
      atomic_store_explicit(&real_##name, f_, memory_order_relaxed);                 \
    }                                                                                \
    f_;                                                                              \
  }))
#define REAL(name) REAL_AS(name, #name, NULL)
#define REAL_CHK(name) REAL_AS(name, "__" #name, NULL)
#define REAL_OPT(name) REAL_AS(name, #name, (void *)missing_##name)

/* ------------------------------------------------------------ switching on */

static const weft__patch_ops *_Atomic g_ops;

EXPORT int weft__patch_enable(const weft__patch_ops *ops);
EXPORT int weft__patch_enable(const weft__patch_ops *ops) {
  if (!ops || ops->version != WEFT__PATCH_OPS_VERSION || ops->size < sizeof *ops)
    return -ENOTSUP;
  /* Resolve everything now, outside any coroutine. */
#define TOUCH(name) (void)REAL(name);
  REALS(TOUCH)
#undef TOUCH
  /* Loaded after libc (or without a dynamic linker to interpose): the
   * process's read is libc's own and nothing would ever reach us. */
  void *first = dlsym(RTLD_DEFAULT, "read");
  if (!first || first == (void *)REAL(read)) return -ENOTSUP;
  atomic_store_explicit(&g_ops, ops, memory_order_release);
  return 0;
}

/* The hub to wait on, or NULL: pass the call through. */
static inline void *coop(const weft__patch_ops **out) {
  const weft__patch_ops *o = atomic_load_explicit(&g_ops, memory_order_acquire);
  if (__builtin_expect(o == NULL, 1)) return NULL;
  *out = o;
  return o->coop_hub();
}

/* ------------------------------------------------------------- helpers */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t deadline_after_ns(int64_t ns) {
  if (ns <= 0) return now_ns();
  int64_t n = now_ns();
  return ns > INT64_MAX - n ? FOREVER : n + ns;
}

/* The socket's SO_RCVTIMEO / SO_SNDTIMEO as an absolute deadline. */
static int64_t sock_deadline(int fd, int opt) {
  struct timeval tv = {0, 0};
  socklen_t len = sizeof tv;
  if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) return FOREVER;
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return FOREVER;
  return deadline_after_ns((int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000);
}

static int wait1(const weft__patch_ops *o, void *h, int fd, short events, int64_t deadline,
                 bool check_first) {
  struct pollfd p = {.fd = fd, .events = events, .revents = 0};
  return o->wait(h, &p, 1, deadline, check_first);
}

/* --------------------------------------------------------- read and write */

enum op {
  OP_READ, OP_READV, OP_RECV, OP_RECVFROM, OP_RECVMSG,
  OP_WRITE, OP_WRITEV, OP_SEND, OP_SENDTO, OP_SENDMSG
};

/* One call's arguments, in every shape. */
struct io {
  enum op op;
  int fd;
  int flags;                    /* socket flags the caller passed */
  void *buf;                    /* plain buffer calls */
  size_t len;
  const struct iovec *iov;      /* readv/writev, or the msghdr's */
  int iovcnt;
  struct msghdr *msg;           /* recvmsg/sendmsg: the caller's */
  __SOCKADDR_ARG addr;          /* recvfrom */
  socklen_t *addrlen;
  __CONST_SOCKADDR_ARG caddr;   /* sendto */
  socklen_t caddrlen;
};

static bool is_write(enum op op) { return op >= OP_WRITE; }

static size_t iov_total(const struct iovec *v, int n) {
  size_t t = 0;
  for (int i = 0; i < n; i++) t += v[i].iov_len;
  return t;
}

/* The caller's iovec with the first skip bytes dropped and at most max
 * bytes kept, in win (small) or a heap array; returns the count, -1 if out
 * of memory. */
struct iowin {
  struct iovec small[8];
  struct iovec *v;
  int n;
};

static int window(struct iowin *w, const struct iovec *iov, int cnt, size_t skip, size_t max) {
  int first = 0;
  while (first < cnt && skip >= iov[first].iov_len) skip -= iov[first++].iov_len;
  int n = cnt - first;
  if (n <= (int)(sizeof w->small / sizeof w->small[0])) {
    w->v = w->small;
  } else {
    w->v = malloc((size_t)n * sizeof *w->v);
    if (!w->v) return -1;
  }
  size_t room = max;
  int k = 0;
  for (int i = 0; i < n && room; i++) {
    const struct iovec *s = &iov[first + i];
    size_t off = i == 0 ? skip : 0;
    size_t l = s->iov_len - off;
    if (l > room) l = room;
    w->v[k].iov_base = (char *)s->iov_base + off;
    w->v[k].iov_len = l;
    room -= l;
    k++;
  }
  w->n = k;
  return k;
}

static void window_free(struct iowin *w) {
  if (w->v && w->v != w->small) free(w->v);
}

/* The plain call, unchanged. */
static ssize_t forward(const struct io *io) {
  switch (io->op) {
  case OP_READ: return REAL(read)(io->fd, io->buf, io->len);
  case OP_READV: return REAL(readv)(io->fd, io->iov, io->iovcnt);
  case OP_RECV: return REAL(recv)(io->fd, io->buf, io->len, io->flags);
  case OP_RECVFROM:
    return REAL(recvfrom)(io->fd, io->buf, io->len, io->flags, io->addr, io->addrlen);
  case OP_RECVMSG: return REAL(recvmsg)(io->fd, io->msg, io->flags);
  case OP_WRITE: return REAL(write)(io->fd, io->buf, io->len);
  case OP_WRITEV: return REAL(writev)(io->fd, io->iov, io->iovcnt);
  case OP_SEND: return REAL(send)(io->fd, io->buf, io->len, io->flags);
  case OP_SENDTO:
    return REAL(sendto)(io->fd, io->buf, io->len, io->flags, io->caddr, io->caddrlen);
  case OP_SENDMSG: return REAL(sendmsg)(io->fd, io->msg, io->flags);
  }
  errno = EINVAL;
  return -1;
}

static bool has_iov(enum op op) {
  return op == OP_READV || op == OP_RECVMSG || op == OP_WRITEV || op == OP_SENDMSG;
}

/* One non-blocking socket attempt on the part of the call after done
 * bytes. */
static ssize_t sock_try(const struct io *io, size_t done) {
  int fl = io->flags | MSG_DONTWAIT;
  char *b = (char *)io->buf + done;
  size_t l = io->len - done;
  if (!has_iov(io->op)) {
    switch (io->op) {
    case OP_READ:
    case OP_RECV: return REAL(recv)(io->fd, b, l, fl);
    case OP_RECVFROM: return REAL(recvfrom)(io->fd, b, l, fl, io->addr, io->addrlen);
    case OP_WRITE:
    case OP_SEND: return REAL(send)(io->fd, b, l, fl);
    case OP_SENDTO: return REAL(sendto)(io->fd, b, l, fl, io->caddr, io->caddrlen);
    default: break;
    }
  }
  struct msghdr m;
  if (io->msg) {
    m = *io->msg;
  } else {
    memset(&m, 0, sizeof m);
  }
  struct iowin w = {.v = NULL};
  if (done) {
    if (window(&w, io->iov, io->iovcnt, done, SIZE_MAX) < 0) {
      errno = ENOMEM;
      return -1;
    }
    m.msg_iov = w.v;
    m.msg_iovlen = (size_t)w.n;
  } else {
    m.msg_iov = (struct iovec *)io->iov;
    m.msg_iovlen = (size_t)io->iovcnt;
  }
  ssize_t r;
  if (is_write(io->op)) {
    r = REAL(sendmsg)(io->fd, &m, fl);
  } else {
    r = REAL(recvmsg)(io->fd, &m, fl);
    if (r >= 0 && io->msg) {
      io->msg->msg_namelen = m.msg_namelen;
      io->msg->msg_controllen = m.msg_controllen;
      io->msg->msg_flags = m.msg_flags;
    }
  }
  int e = errno;
  window_free(&w);
  errno = e;
  return r;
}

/* The socket path. Returns the call's result with errno set as libc
 * would. *not_sock: the descriptor is no socket (only for read/write/
 * readv/writev, whose first attempt tells). */
static ssize_t sock_io(const weft__patch_ops *o, void *h, const struct io *io, int saved,
                       bool *not_sock) {
  bool wr = is_write(io->op);
  size_t total = has_iov(io->op) ? iov_total(io->iov, io->iovcnt) : io->len;
  /* Reads return what is there, unless MSG_WAITALL asks for everything on
   * a stream socket (on datagram and seqpacket sockets it means nothing);
   * writes on a blocking stream socket return when everything is sent (a
   * datagram goes whole or not at all, so only streams see partial sends). */
  bool all = wr;
  if (!wr && (io->flags & MSG_WAITALL)) {
    int type = 0;
    socklen_t tl = sizeof type;
    all = getsockopt(io->fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
  }
  size_t done = 0;
  bool first = true;
  int64_t deadline = 0; /* 0: not looked up yet */
  for (;;) {
    ssize_t r = sock_try(io, done);
    if (r >= 0) {
      done += (size_t)r;
      if (!all || done >= total || (r == 0 && !wr)) {
        errno = saved;
        return (ssize_t)done;
      }
      first = false;
      continue; /* partial: the rest may be ready already */
    }
    int e = errno;
    if (first && e == ENOTSOCK &&
        (io->op == OP_READ || io->op == OP_WRITE || io->op == OP_READV || io->op == OP_WRITEV)) {
      *not_sock = true;
      errno = saved;
      return -1;
    }
    if (e != EAGAIN && e != EWOULDBLOCK) {
      if (done) {
        errno = saved;
        return (ssize_t)done;
      }
      errno = e;
      return -1;
    }
    if (deadline == 0) {
      /* The program made the socket non-blocking: it wants EAGAIN. */
      int fl = fcntl(io->fd, F_GETFL);
      if (fl >= 0 && (fl & O_NONBLOCK)) {
        if (done) {
          errno = saved;
          return (ssize_t)done;
        }
        errno = e;
        return -1;
      }
      deadline = sock_deadline(io->fd, wr ? SO_SNDTIMEO : SO_RCVTIMEO);
    }
    int w = wait1(o, h, io->fd, wr ? POLLOUT : POLLIN, deadline, false);
    if (w) {
      if (done) {
        errno = saved;
        return (ssize_t)done;
      }
      errno = w == -ETIMEDOUT ? EAGAIN : -w;
      return -1;
    }
    first = false;
  }
}

/* What read/write on a descriptor found to be no socket met: a hint that
 * spares the failed send/recv and the fstat next time. The wrapped closes
 * clear it; descriptors above the table are not cached. A stale entry (the
 * number closed where no wrapper saw it, and reused) stays correct: a
 * socket taken for a pipe is polled first, then read or written with the
 * plain call; one taken for a file is passed to libc, so its calls still
 * behave as blocking calls, but block the hub, until the number is closed
 * through a wrapper. */
enum { KIND_UNKNOWN = 0, KIND_FIFO, KIND_OTHER, KIND_FILE };
#define KIND_MAX 65536
static _Atomic unsigned char fd_kind[KIND_MAX];

static int kind_get(int fd) {
  return fd >= 0 && fd < KIND_MAX ? atomic_load_explicit(&fd_kind[fd], memory_order_relaxed)
                                  : KIND_UNKNOWN;
}

static void kind_set(int fd, int k) {
  if (fd >= 0 && fd < KIND_MAX) atomic_store_explicit(&fd_kind[fd], (unsigned char)k, memory_order_relaxed);
}

static void kind_clear(int lo, int hi) {
  if (lo < 0) lo = 0;
  if (hi >= KIND_MAX) hi = KIND_MAX - 1;
  for (int fd = lo; fd <= hi; fd++) atomic_store_explicit(&fd_kind[fd], 0, memory_order_relaxed);
}

/* Pipes, ttys and the like: wait for readiness, then make the call. */
static ssize_t other_io(const weft__patch_ops *o, void *h, const struct io *io, int saved) {
  int kind = kind_get(io->fd);
  if (kind == KIND_UNKNOWN) {
    struct stat st;
    if (fstat(io->fd, &st) != 0 || S_ISDIR(st.st_mode) || S_ISSOCK(st.st_mode)) {
      errno = saved;
      return forward(io);
    }
    kind = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ? KIND_FILE
           : S_ISFIFO(st.st_mode)                     ? KIND_FIFO
                                                      : KIND_OTHER;
    kind_set(io->fd, kind);
  }
  /* Files never wait for readiness; a descriptor the program made
   * non-blocking wants EAGAIN. */
  int fl;
  if (kind == KIND_FILE || (fl = fcntl(io->fd, F_GETFL)) < 0 || (fl & O_NONBLOCK)) {
    errno = saved;
    return forward(io);
  }
  bool wr = is_write(io->op);
  bool iov = io->op == OP_READV || io->op == OP_WRITEV;
  size_t total = iov ? iov_total(io->iov, io->iovcnt) : io->len;
  /* A writable pipe takes PIPE_BUF bytes at once; a blocking write of
   * more is not atomic anyway, so it may go in pieces. */
  bool pieces = wr && kind == KIND_FIFO;
  size_t done = 0;
  for (;;) {
    int w = wait1(o, h, io->fd, wr ? POLLOUT : POLLIN, FOREVER, true);
    if (w) {
      if (done) {
        errno = saved;
        return (ssize_t)done;
      }
      errno = -w;
      return -1;
    }
    size_t max = pieces ? PIPE_BUF : SIZE_MAX;
    ssize_t r;
    if (iov) {
      struct iowin win = {.v = NULL};
      if (window(&win, io->iov, io->iovcnt, done, max) < 0) {
        errno = ENOMEM;
        return done ? (ssize_t)done : -1;
      }
      r = wr ? REAL(writev)(io->fd, win.v, win.n) : REAL(readv)(io->fd, win.v, win.n);
      int e = errno;
      window_free(&win);
      errno = e;
    } else {
      size_t l = total - done;
      if (l > max) l = max;
      r = wr ? REAL(write)(io->fd, (char *)io->buf + done, l)
             : REAL(read)(io->fd, (char *)io->buf + done, l);
    }
    if (r < 0) {
      if (errno == EAGAIN && !done) continue; /* raced with another reader */
      if (done) {
        errno = saved;
        return (ssize_t)done;
      }
      return -1;
    }
    done += (size_t)r;
    if (!wr || done >= total || r == 0) {
      errno = saved;
      return (ssize_t)done;
    }
  }
}

static ssize_t do_io(struct io *io) {
  const weft__patch_ops *o;
  void *h = coop(&o);
  if (!h || (io->flags & MSG_DONTWAIT)) return forward(io);
  if (has_iov(io->op) && (io->iovcnt < 0 || io->iovcnt > IOV_MAX)) return forward(io);
  int saved = errno;
  if (kind_get(io->fd) != KIND_UNKNOWN &&
      (io->op == OP_READ || io->op == OP_WRITE || io->op == OP_READV || io->op == OP_WRITEV))
    return other_io(o, h, io, saved);
  bool not_sock = false;
  ssize_t r = sock_io(o, h, io, saved, &not_sock);
  if (!not_sock) return r;
  return other_io(o, h, io, saved);
}

EXPORT ssize_t read(int fd, void *buf, size_t n) {
  struct io io = {.op = OP_READ, .fd = fd, .buf = buf, .len = n};
  return do_io(&io);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n) {
  struct io io = {.op = OP_WRITE, .fd = fd, .buf = (void *)buf, .len = n};
  return do_io(&io);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt) {
  struct io io = {.op = OP_READV, .fd = fd, .iov = iov, .iovcnt = cnt};
  return do_io(&io);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  struct io io = {.op = OP_WRITEV, .fd = fd, .iov = iov, .iovcnt = cnt};
  return do_io(&io);
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags) {
  struct io io = {.op = OP_RECV, .fd = fd, .buf = buf, .len = n, .flags = flags};
  return do_io(&io);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags) {
  struct io io = {.op = OP_SEND, .fd = fd, .buf = (void *)buf, .len = n, .flags = flags};
  return do_io(&io);
}

EXPORT ssize_t recvfrom(int fd, void *__restrict buf, size_t n, int flags, __SOCKADDR_ARG addr,
                        socklen_t *__restrict addrlen) {
  struct io io = {.op = OP_RECVFROM, .fd = fd, .buf = buf, .len = n, .flags = flags,
                  .addr = addr, .addrlen = addrlen};
  return do_io(&io);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG addr,
                      socklen_t addrlen) {
  struct io io = {.op = OP_SENDTO, .fd = fd, .buf = (void *)buf, .len = n, .flags = flags,
                  .caddr = addr, .caddrlen = addrlen};
  return do_io(&io);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  if (!msg) return REAL(recvmsg)(fd, msg, flags);
  struct io io = {.op = OP_RECVMSG, .fd = fd, .msg = msg, .flags = flags,
                  .iov = msg->msg_iov, .iovcnt = (int)msg->msg_iovlen};
  if (msg->msg_iovlen > IOV_MAX) return REAL(recvmsg)(fd, msg, flags);
  return do_io(&io);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (!msg || msg->msg_iovlen > IOV_MAX) return REAL(sendmsg)(fd, msg, flags);
  struct io io = {.op = OP_SENDMSG, .fd = fd, .msg = (struct msghdr *)msg, .flags = flags,
                  .iov = msg->msg_iov, .iovcnt = (int)msg->msg_iovlen};
  return do_io(&io);
}

/* _FORTIFY_SOURCE builds call these instead; the bound check stays libc's. */
EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen) {
  if (n > buflen) return REAL_CHK(read_chk)(fd, buf, n, buflen);
  return read(fd, buf, n);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) return REAL_CHK(recv_chk)(fd, buf, n, buflen, flags);
  return recv(fd, buf, n, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *__restrict buf, size_t n, size_t buflen, int flags,
                              __SOCKADDR_ARG addr, socklen_t *__restrict addrlen);
EXPORT ssize_t __recvfrom_chk(int fd, void *__restrict buf, size_t n, size_t buflen, int flags,
                              __SOCKADDR_ARG addr, socklen_t *__restrict addrlen) {
  if (n > buflen) return REAL_CHK(recvfrom_chk)(fd, buf, n, buflen, flags, addr, addrlen);
  return recvfrom(fd, buf, n, flags, addr, addrlen);
}

/* ------------------------------------------------------ accept, connect */

static int accept_common(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len, int flags,
                         bool four) {
  const weft__patch_ops *o;
  void *h = coop(&o);
  int fl;
  if (!h || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_NONBLOCK))
    return four ? REAL(accept4)(fd, addr, len, flags) : REAL(accept)(fd, addr, len);
  int saved = errno;
  int64_t deadline = sock_deadline(fd, SO_RCVTIMEO);
  /* Wait until a connection is queued, then take it. Another process or
   * thread accepting on the same listener may take it first; the accept
   * below then blocks this thread until the next one (see patch.md). */
  int w = wait1(o, h, fd, POLLIN, deadline, true);
  if (w) {
    errno = w == -ETIMEDOUT ? EAGAIN : -w;
    return -1;
  }
  errno = saved;
  return four ? REAL(accept4)(fd, addr, len, flags) : REAL(accept)(fd, addr, len);
}

EXPORT int accept(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len) {
  return accept_common(fd, addr, len, 0, false);
}

EXPORT int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len, int flags) {
  return accept_common(fd, addr, len, flags, true);
}

EXPORT int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) {
  const weft__patch_ops *o;
  void *h = coop(&o);
  int fl;
  if (!h || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_NONBLOCK)) return REAL(connect)(fd, addr, len);
  int saved = errno;
  int64_t deadline = 0;
  for (;;) {
    /* O_NONBLOCK for the one system call only, switched back before
     * waiting: the handshake goes on in the kernel either way. */
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return REAL(connect)(fd, addr, len);
    int r = REAL(connect)(fd, addr, len);
    int e = errno;
    fcntl(fd, F_SETFL, fl);
    if (r == 0) {
      errno = saved;
      return 0;
    }
    if (deadline == 0) deadline = sock_deadline(fd, SO_SNDTIMEO);
    if (e == EAGAIN) {
      /* A Unix socket whose listener's backlog is full: a blocking
       * connect waits for room, which poll cannot announce. */
      int64_t t = deadline_after_ns(1000000);
      if (deadline != FOREVER && t > deadline) {
        errno = EAGAIN;
        return -1;
      }
      int s = o->sleep(h, t);
      if (s) {
        errno = -s;
        return -1;
      }
      continue;
    }
    if (e != EINPROGRESS) {
      errno = e;
      return -1;
    }
    int w = wait1(o, h, fd, POLLOUT, deadline, false);
    if (w) {
      /* A timed-out blocking connect reports EINPROGRESS on Linux. */
      errno = w == -ETIMEDOUT ? EINPROGRESS : -w;
      return -1;
    }
    int so = 0;
    socklen_t sl = sizeof so;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0) return -1;
    if (so) {
      errno = so;
      return -1;
    }
    errno = saved;
    return 0;
  }
}

/* ------------------------------------------------------------ poll, select */

static int poll_impl(struct pollfd *fds, nfds_t n, int timeout) {
  const weft__patch_ops *o;
  void *h;
  if (timeout == 0 || !(h = coop(&o))) return REAL(poll)(fds, n, timeout);
  int saved = errno;
  int r = REAL(poll)(fds, n, 0);
  if (r != 0) return r;
  int64_t deadline = timeout < 0 ? FOREVER : deadline_after_ns((int64_t)timeout * 1000000);
  for (;;) {
    int w = o->wait(h, fds, n, deadline, false);
    if (w && w != -ETIMEDOUT && w != -EBADF) {
      errno = -w;
      return -1;
    }
    /* Whatever woke us, the answer is what poll says now (a closed fd
     * shows as POLLNVAL). */
    r = REAL(poll)(fds, n, 0);
    if (r != 0 || w == -ETIMEDOUT) {
      if (r >= 0) errno = saved;
      return r;
    }
  }
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout) { return poll_impl(fds, n, timeout); }

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof *fds < n) return REAL_CHK(poll_chk)(fds, n, timeout, fdslen);
  return poll_impl(fds, n, timeout);
}

/* epoll_wait: wait for the epoll descriptor itself to become readable
 * (it is, while events are pending), then collect without blocking. The
 * hub's own epoll_wait runs in its scheduler, where nothing is patched. */
EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout) {
  const weft__patch_ops *o;
  void *h;
  if (timeout == 0 || !(h = coop(&o))) return REAL(epoll_wait)(epfd, ev, max, timeout);
  int saved = errno;
  int r = REAL(epoll_wait)(epfd, ev, max, 0);
  if (r != 0) return r;
  int64_t deadline = timeout < 0 ? FOREVER : deadline_after_ns((int64_t)timeout * 1000000);
  for (;;) {
    int w = wait1(o, h, epfd, POLLIN, deadline, false);
    if (w && w != -ETIMEDOUT && w != -EBADF) {
      errno = -w;
      return -1;
    }
    r = REAL(epoll_wait)(epfd, ev, max, 0);
    if (r != 0 || w == -ETIMEDOUT) {
      if (r >= 0) errno = saved;
      return r;
    }
  }
}

EXPORT int select(int nfds, fd_set *__restrict rs, fd_set *__restrict ws, fd_set *__restrict es,
                  struct timeval *__restrict tv) {
  const weft__patch_ops *o;
  void *h;
  if ((tv && tv->tv_sec == 0 && tv->tv_usec == 0) || nfds < 0 || nfds > FD_SETSIZE ||
      (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)) || !(h = coop(&o)))
    return REAL(select)(nfds, rs, ws, es, tv);
  int saved = errno;
  int64_t deadline =
      tv ? deadline_after_ns((int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000)
         : FOREVER;
  fd_set in_r, in_w, in_e;
  if (rs) in_r = *rs;
  if (ws) in_w = *ws;
  if (es) in_e = *es;
  /* The descriptors asked about, as a poll set for the wait. */
  struct pollfd small[16], *p = small;
  size_t np = 0;
  for (int fd = 0; fd < nfds; fd++) {
    short ev = 0;
    if (rs && FD_ISSET(fd, &in_r)) ev |= POLLIN;
    if (ws && FD_ISSET(fd, &in_w)) ev |= POLLOUT;
    if (es && FD_ISSET(fd, &in_e)) ev |= POLLPRI;
    if (!ev) continue;
    if (np == sizeof small / sizeof small[0]) {
      struct pollfd *big = malloc((size_t)nfds * sizeof *big);
      if (!big) return REAL(select)(nfds, rs, ws, es, tv);
      memcpy(big, small, sizeof small);
      p = big;
    }
    p[np++] = (struct pollfd){.fd = fd, .events = ev};
  }
  int r;
  int w = 0;
  for (;;) {
    struct timeval zero = {0, 0};
    if (rs) *rs = in_r;
    if (ws) *ws = in_w;
    if (es) *es = in_e;
    r = REAL(select)(nfds, rs, ws, es, &zero);
    if (r != 0 || w == -ETIMEDOUT) break;
    w = o->wait(h, p, np, deadline, false);
    if (w && w != -ETIMEDOUT && w != -EBADF) {
      if (rs) *rs = in_r;
      if (ws) *ws = in_w;
      if (es) *es = in_e;
      r = -1;
      errno = -w;
      break;
    }
  }
  int e = errno;
  if (p != small) free(p);
  if (tv) {
    /* Linux writes back the time that was left. */
    int64_t left = deadline - now_ns();
    if (left < 0) left = 0;
    tv->tv_sec = (time_t)(left / 1000000000);
    tv->tv_usec = (suseconds_t)(left % 1000000000 / 1000);
  }
  errno = r >= 0 ? saved : e;
  return r;
}

/* ------------------------------------------------------------------ sleeps */

/* Sleep until deadline; 0, or -ECANCELED. */
static int nap(const weft__patch_ops *o, void *h, int64_t deadline) { return o->sleep(h, deadline); }

static bool ts_valid(const struct timespec *ts) {
  return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000;
}

static void ts_left(struct timespec *rem, int64_t deadline) {
  int64_t left = deadline - now_ns();
  if (left < 0) left = 0;
  rem->tv_sec = (time_t)(left / 1000000000);
  rem->tv_nsec = (long)(left % 1000000000);
}

static int64_t ts_ns(const struct timespec *ts) {
  if (ts->tv_sec > INT64_MAX / 1000000000 - 1) return INT64_MAX;
  return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

EXPORT unsigned sleep(unsigned s) {
  const weft__patch_ops *o;
  void *h;
  if (s == 0 || !(h = coop(&o))) return REAL(sleep)(s);
  int saved = errno;
  int64_t deadline = deadline_after_ns((int64_t)s * 1000000000);
  if (nap(o, h, deadline) == 0) {
    errno = saved;
    return 0;
  }
  /* Cancelled: like an interrupted sleep, the whole seconds left, rounded
   * up. */
  int64_t left = deadline - now_ns();
  errno = ECANCELED;
  return left <= 0 ? 0 : (unsigned)((left + 999999999) / 1000000000);
}

EXPORT int usleep(useconds_t us) {
  const weft__patch_ops *o;
  void *h;
  if (us == 0 || !(h = coop(&o))) return REAL(usleep)(us);
  int saved = errno;
  if (nap(o, h, deadline_after_ns((int64_t)us * 1000)) != 0) {
    errno = ECANCELED;
    return -1;
  }
  errno = saved;
  return 0;
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem) {
  const weft__patch_ops *o;
  void *h;
  if (!req || !ts_valid(req) || !(h = coop(&o))) return REAL(nanosleep)(req, rem);
  int saved = errno;
  int64_t deadline = deadline_after_ns(ts_ns(req));
  if (nap(o, h, deadline) != 0) {
    if (rem) ts_left(rem, deadline);
    errno = ECANCELED;
    return -1;
  }
  errno = saved;
  return 0;
}

EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                           struct timespec *rem) {
  const weft__patch_ops *o;
  void *h;
  if (!req || !ts_valid(req) ||
      (clk != CLOCK_MONOTONIC && clk != CLOCK_REALTIME) || !(h = coop(&o)))
    return REAL(clock_nanosleep)(clk, flags, req, rem);
  int64_t deadline;
  if (flags & TIMER_ABSTIME) {
    if (clk == CLOCK_MONOTONIC) {
      deadline = ts_ns(req);
    } else {
      /* An absolute wall-clock time, turned into a monotonic one now (a
       * clock step during the sleep is not followed). */
      struct timespec rt;
      clock_gettime(CLOCK_REALTIME, &rt);
      int64_t delta = ts_ns(req) - ts_ns(&rt);
      deadline = delta <= 0 ? now_ns() : deadline_after_ns(delta);
    }
    if (deadline <= 0) deadline = 1; /* 0 would mean "do not wait" */
  } else {
    deadline = deadline_after_ns(ts_ns(req));
  }
  int saved = errno;
  int r = nap(o, h, deadline);
  errno = saved;
  if (r != 0) {
    if (rem && !(flags & TIMER_ABSTIME)) ts_left(rem, deadline);
    return ECANCELED; /* clock_nanosleep returns its error, errno untouched */
  }
  return 0;
}

/* ------------------------------------------------------------- getaddrinfo */

struct gai_call {
  const char *node, *service;
  const struct addrinfo *hints;
  struct addrinfo *res;
  int rc;
  int sys_errno;
  bool ran;
};

static int gai_run(void *p) {
  struct gai_call *g = p;
  /* On an offload thread: no hub there, so this is libc's getaddrinfo. */
  g->rc = REAL(getaddrinfo)(g->node, g->service, g->hints, &g->res);
  g->sys_errno = errno;
  g->ran = true;
  return 0;
}

EXPORT int getaddrinfo(const char *__restrict node, const char *__restrict service,
                       const struct addrinfo *__restrict hints, struct addrinfo **__restrict res) {
  const weft__patch_ops *o;
  void *h = coop(&o);
  if (!h || !res) return REAL(getaddrinfo)(node, service, hints, res);
  int saved = errno;
  struct gai_call g = {.node = node, .service = service, .hints = hints};
  int e = o->offload(h, gai_run, &g);
  if (!g.ran) {
    /* Cancelled (or no memory) before the lookup started. */
    errno = e ? -e : EIO;
    return EAI_SYSTEM;
  }
  *res = g.res;
  errno = g.rc == EAI_SYSTEM ? g.sys_errno : saved;
  return g.rc;
}

/* ----------------------------------------------------- descriptors closing */

/* The hub of this thread (in a coroutine or not) forgets [lo, hi]. */
static void forget(int lo, int hi) {
  const weft__patch_ops *o = atomic_load_explicit(&g_ops, memory_order_acquire);
  if (__builtin_expect(o == NULL, 1)) return;
  kind_clear(lo, hi);
  void *h = o->hub();
  if (h) o->fds_closed(h, lo, hi);
}

EXPORT int close(int fd) {
  forget(fd, fd);
  return REAL(close)(fd);
}

EXPORT int dup2(int old, int nfd) {
  if (old != nfd) forget(nfd, nfd);
  return REAL(dup2)(old, nfd);
}

EXPORT int dup3(int old, int nfd, int flags) {
  if (old != nfd) forget(nfd, nfd);
  return REAL(dup3)(old, nfd, flags);
}

EXPORT int close_range(unsigned lo, unsigned hi, int flags) {
  /* CLOSE_RANGE_CLOEXEC (4) only marks them close-on-exec. */
  if (!(flags & 4))
    forget(lo > INT_MAX ? INT_MAX : (int)lo, hi > INT_MAX ? INT_MAX : (int)hi);
  return REAL_OPT(close_range)(lo, hi, flags);
}

EXPORT void closefrom(int lo) {
  forget(lo, INT_MAX);
  REAL_OPT(closefrom)(lo);
}

EXPORT int fclose(FILE *f) {
  if (f && atomic_load_explicit(&g_ops, memory_order_relaxed)) {
    int fd = fileno(f);
    if (fd >= 0) forget(fd, fd);
  }
  return REAL(fclose)(f);
}
