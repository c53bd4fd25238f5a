/* weft_patch_all: every wrapped libc call inside and outside coroutines,
 * errno, poll/select deadlines, close while waiting, descriptors closed
 * behind weft's back, cancellation, and threads without a hub. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

#define MS 1000000LL

static void patch_on(void) {
  ASSERT(!weft_patch_active());
  ASSERT_OK(weft_patch_all());
  ASSERT_OK(weft_patch_all()); /* again: harmless */
  ASSERT(weft_patch_active());
  signal(SIGPIPE, SIG_IGN);
}

static int fl(int fd) { return fcntl(fd, F_GETFL); }

/* A coroutine that counts while others are blocked in patched calls: if it
 * advanced, the hub kept running during the call. */
static volatile long ticks;
static volatile bool ticker_stop;
static int ticker(void *arg) {
  (void)arg;
  while (!ticker_stop) {
    ticks++;
    weft_coro_sleep_until(weft_deadline_in_ms(2));
  }
  return 0;
}

static weft_coro *spawn(weft_coro_fn *fn, void *arg) {
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, fn, arg, NULL));
  return c;
}

static int join(weft_coro *c) {
  int st = -999;
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(20), &st));
  weft_coro_release(c);
  return st;
}

/* ------------------------------------------------------------------ sleeps */

static int sleeper(void *arg) {
  int kind = (int)(intptr_t)arg;
  errno = EDOM;
  int r = 0;
  switch (kind) {
  case 0: r = (int)sleep(1); break;
  case 1: r = usleep(300000); break;
  case 2: {
    struct timespec ts = {0, 300 * MS}, rem = {9, 9};
    r = nanosleep(&ts, &rem);
    break;
  }
  case 3: {
    struct timespec ts = {0, 300 * MS};
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    break;
  }
  case 4: {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 300 * MS;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    break;
  }
  case 5: {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 300 * MS;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
    break;
  }
  }
  if (errno != EDOM) return 1000 + errno; /* errno kept on success */
  return r;
}

TEST(sleeps_overlap_in_coroutines) {
  patch_on();
  /* Three of each kind: one after another that is 3 * (1 + 5 * 0.3) =
   * 7.5 s; cooperatively about 1 s. */
  weft_coro *cs[18];
  int64_t t0 = weft_now_ns();
  for (int i = 0; i < 18; i++) cs[i] = spawn(sleeper, (void *)(intptr_t)(i % 6));
  for (int i = 0; i < 18; i++) ASSERT_EQ(join(cs[i]), 0);
  int64_t dt = weft_now_ns() - t0;
  ASSERT_GE(dt, 1000 * MS);
  ASSERT_LT(dt, 4000 * MS);
}

TEST(sleep_outside_coroutines_blocks_the_thread) {
  patch_on();
  ASSERT(!weft_hub_active());
  int64_t t0 = weft_now_ns();
  ASSERT_EQ(usleep(50000), 0);
  struct timespec ts = {0, 50 * MS};
  ASSERT_EQ(nanosleep(&ts, NULL), 0);
  ASSERT_GE(weft_now_ns() - t0, 100 * MS);
  /* Plain calls do not start a hub. */
  ASSERT(!weft_hub_active());
  /* Bad arguments reach libc unchanged. */
  struct timespec bad = {0, 2000000000};
  errno = 0;
  ASSERT_EQ(nanosleep(&bad, NULL), -1);
  ASSERT_EQ(errno, EINVAL);
}

static int bad_sleeps(void *arg) {
  (void)arg;
  struct timespec bad = {0, -1};
  errno = 0;
  if (nanosleep(&bad, NULL) != -1 || errno != EINVAL) return 1;
  if (clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL) != EINVAL) return 2;
  return 0;
}

TEST(sleep_bad_arguments_in_coroutine) {
  patch_on();
  ASSERT_EQ(join(spawn(bad_sleeps, NULL)), 0);
}

static int cancelled_sleeper(void *arg) {
  int kind = (int)(intptr_t)arg;
  if (kind == 0) {
    unsigned left = sleep(10);
    return errno == ECANCELED && left >= 9 && left <= 10 ? 0 : 1;
  }
  struct timespec ts = {10, 0}, rem = {0, 0};
  int r = nanosleep(&ts, &rem);
  return r == -1 && errno == ECANCELED && rem.tv_sec >= 9 ? 0 : 2;
}

TEST(cancel_ends_patched_sleep) {
  patch_on();
  for (int k = 0; k < 2; k++) {
    weft_coro *c = spawn(cancelled_sleeper, (void *)(intptr_t)k);
    ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
    ASSERT_OK(weft_coro_cancel(c));
    ASSERT_EQ(join(c), 0);
  }
}

/* -------------------------------------------------------------- pipes */

struct pipe_io {
  int fd;
  size_t len;
  int64_t done_at;
  ssize_t result;
  int err;
};

static int pipe_reader(void *arg) {
  struct pipe_io *p = arg;
  char buf[64];
  errno = EDOM;
  p->result = read(p->fd, buf, sizeof buf);
  p->err = errno;
  p->done_at = weft_now_ns();
  return p->result > 0 ? buf[0] : -1;
}

TEST(pipe_read_is_cooperative) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  int f0 = fl(p[0]), f1 = fl(p[1]);
  ASSERT_EQ(f0 & O_NONBLOCK, 0);
  ticks = 0;
  ticker_stop = false;
  weft_coro *t = spawn(ticker, NULL);
  struct pipe_io io = {.fd = p[0]};
  weft_coro *r = spawn(pipe_reader, &io);
  ticks = 0;
  /* The reader is parked in read(); the hub runs us and the ticker. */
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(100)));
  ASSERT_EQ(io.done_at, 0);
  ASSERT_GE(ticks, 2);
  errno = EDOM;
  ASSERT_EQ(write(p[1], "Q", 1), 1);
  ASSERT_EQ(errno, EDOM);
  ASSERT_EQ(join(r), 'Q');
  ASSERT_EQ(io.result, 1);
  ASSERT_EQ(io.err, EDOM);
  ticker_stop = true;
  join(t);
  /* Nobody switched the pipe to non-blocking. */
  ASSERT_EQ(fl(p[0]), f0);
  ASSERT_EQ(fl(p[1]), f1);
  close(p[0]);
  close(p[1]);
}

struct bulk {
  int fd;
  size_t len;
  ssize_t result;
  unsigned long sum;
  bool vec;
};

static int bulk_writer(void *arg) {
  struct bulk *b = arg;
  unsigned char *buf = malloc(b->len);
  for (size_t i = 0; i < b->len; i++) buf[i] = (unsigned char)(i * 7);
  if (b->vec) {
    struct iovec v[3] = {{buf, 1}, {buf + 1, b->len / 2}, {buf + 1 + b->len / 2, b->len / 2 - 1}};
    b->result = writev(b->fd, v, 3);
  } else {
    b->result = write(b->fd, buf, b->len);
  }
  free(buf);
  return 0;
}

static int bulk_reader(void *arg) {
  struct bulk *b = arg;
  unsigned char buf[3000];
  size_t got = 0;
  while (got < b->len) {
    ssize_t n;
    if (b->vec) {
      struct iovec v[2] = {{buf, 1000}, {buf + 1000, 2000}};
      n = readv(b->fd, v, 2);
    } else {
      n = read(b->fd, buf, sizeof buf);
    }
    if (n <= 0) return -1;
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != (unsigned char)((got + (size_t)i) * 7)) return -2;
    }
    got += (size_t)n;
  }
  b->result = (ssize_t)got;
  return 0;
}

static void bulk_pair(int wfd, int rfd, bool vec) {
  /* 1 MiB through a 64 KiB buffer: the blocking write must return only
   * when everything is written, while the reader runs beside it. */
  struct bulk w = {.fd = wfd, .len = 1 << 20, .vec = vec};
  struct bulk r = {.fd = rfd, .len = 1 << 20, .vec = vec};
  weft_coro *cw = spawn(bulk_writer, &w);
  weft_coro *cr = spawn(bulk_reader, &r);
  ASSERT_EQ(join(cw), 0);
  ASSERT_EQ(join(cr), 0);
  ASSERT_EQ(w.result, 1 << 20);
  ASSERT_EQ(r.result, 1 << 20);
}

TEST(pipe_bulk_write_completes) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  bulk_pair(p[1], p[0], false);
  bulk_pair(p[1], p[0], true);
  ASSERT_EQ(fl(p[1]) & O_NONBLOCK, 0);
  close(p[0]);
  close(p[1]);
}

TEST(nonblocking_descriptors_pass_through) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s), 0);
  int b[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
  /* The root coroutine of a running hub: calls are patched. */
  weft_coro_yield();
  ASSERT(weft_hub_active());
  char c;
  int64_t t0 = weft_now_ns();
  errno = 0;
  ASSERT_EQ(read(p[0], &c, 1), -1);
  ASSERT_EQ(errno, EAGAIN);
  errno = 0;
  ASSERT_EQ(recv(s[0], &c, 1, 0), -1);
  ASSERT_EQ(errno, EAGAIN);
  errno = 0;
  ASSERT_EQ(recv(b[0], &c, 1, MSG_DONTWAIT), -1);
  ASSERT_EQ(errno, EAGAIN);
  struct pollfd pf = {.fd = b[0], .events = POLLIN};
  ASSERT_EQ(poll(&pf, 1, 0), 0);
  ASSERT_LT(weft_now_ns() - t0, 1000 * MS);
  close(p[0]), close(p[1]), close(s[0]), close(s[1]), close(b[0]), close(b[1]);
}

/* -------------------------------------------------------------- sockets */

struct sock_case {
  int fd;
  int kind;
  int result;
};

/* The receiving side of each socket call, blocking until the peer sends. */
static int sock_receiver(void *arg) {
  struct sock_case *sc = arg;
  char buf[32] = {0};
  ssize_t n = -1;
  errno = EDOM;
  switch (sc->kind) {
  case 0: n = read(sc->fd, buf, sizeof buf); break;
  case 1: n = recv(sc->fd, buf, sizeof buf, 0); break;
  case 2: {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    n = recvfrom(sc->fd, buf, sizeof buf, 0, (struct sockaddr *)&ss, &sl);
    break;
  }
  case 3: {
    struct iovec v[2] = {{buf, 2}, {buf + 2, sizeof buf - 2}};
    n = readv(sc->fd, v, 2);
    break;
  }
  case 4: {
    struct iovec v = {buf, sizeof buf};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    n = recvmsg(sc->fd, &m, 0);
    break;
  }
  case 5: n = recv(sc->fd, buf, 5, MSG_WAITALL); break;
  }
  if (errno != EDOM) return 100 + errno;
  sc->result = (int)n;
  return n >= 5 && memcmp(buf, "hello", 5) == 0 ? 0 : 1;
}

static void sock_send(int fd, int kind) {
  errno = EDOM;
  switch (kind) {
  case 0: ASSERT_EQ(write(fd, "hello", 5), 5); break;
  case 1: ASSERT_EQ(send(fd, "hello", 5, 0), 5); break;
  case 2: ASSERT_EQ(sendto(fd, "hello", 5, 0, NULL, 0), 5); break;
  case 3: {
    struct iovec v[2] = {{"he", 2}, {"llo", 3}};
    ASSERT_EQ(writev(fd, v, 2), 5);
    break;
  }
  case 4: {
    struct iovec v = {"hello", 5};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    ASSERT_EQ(sendmsg(fd, &m, 0), 5);
    break;
  }
  case 5:
    /* MSG_WAITALL: the receiver must wait for all five bytes. */
    ASSERT_EQ(send(fd, "he", 2, 0), 2);
    ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(30)));
    /* Other coroutines ran meanwhile: errno is this thread's, not ours. */
    errno = EDOM;
    ASSERT_EQ(send(fd, "llo", 3, 0), 3);
    break;
  }
  ASSERT_EQ(errno, EDOM);
}

TEST(socket_calls_are_cooperative) {
  patch_on();
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  int f0 = fl(s[0]);
  for (int kind = 0; kind < 6; kind++) {
    struct sock_case sc = {.fd = s[0], .kind = kind};
    weft_coro *c = spawn(sock_receiver, &sc);
    /* The receiver is parked; we run. */
    ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
    ASSERT_EQ(sc.result, 0);
    sock_send(s[1], kind);
    ASSERT_EQ(join(c), 0);
    ASSERT_EQ(sc.result, 5);
  }
  ASSERT_EQ(fl(s[0]), f0);
  close(s[0]);
  close(s[1]);
}

TEST(socket_bulk_write_completes) {
  patch_on();
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  bulk_pair(s[1], s[0], false);
  bulk_pair(s[1], s[0], true);
  ASSERT_EQ(fl(s[1]) & O_NONBLOCK, 0);
  close(s[0]);
  close(s[1]);
}

static int rcvtimeo_reader(void *arg) {
  int fd = (int)(intptr_t)arg;
  char c;
  errno = 0;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == -1 && errno == EAGAIN ? 0 : 1;
}

TEST(socket_timeouts_are_honoured) {
  patch_on();
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  struct timeval tv = {0, 100000};
  ASSERT_EQ(setsockopt(s[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  int64_t t0 = weft_now_ns();
  ASSERT_EQ(join(spawn(rcvtimeo_reader, (void *)(intptr_t)s[0])), 0);
  int64_t dt = weft_now_ns() - t0;
  ASSERT_GE(dt, 100 * MS);
  ASSERT_LT(dt, 5000 * MS);
  close(s[0]);
  close(s[1]);
}

static int errno_cases(void *arg) {
  (void)arg;
  char c = 0;
  errno = 0;
  if (read(-1, &c, 1) != -1 || errno != EBADF) return 1;
  errno = 0;
  if (write(-1, &c, 1) != -1 || errno != EBADF) return 2;
  int p[2];
  if (pipe(p) != 0) return 3;
  errno = 0;
  if (recv(p[0], &c, 1, 0) != -1 || errno != ENOTSOCK) return 4;
  errno = 0;
  if (send(p[1], &c, 1, 0) != -1 || errno != ENOTSOCK) return 5;
  close(p[0]);
  /* The reader is gone: EPIPE (SIGPIPE is ignored). */
  errno = 0;
  if (write(p[1], &c, 1) != -1 || errno != EPIPE) return 6;
  close(p[1]);
  int s[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0) return 7;
  close(s[1]);
  errno = 0;
  if (send(s[0], &c, 1, 0) != -1 || errno != EPIPE) return 8;
  errno = EDOM;
  if (read(s[0], &c, 1) != 0 || errno != EDOM) return 9; /* EOF; errno kept */
  close(s[0]);
  /* accept on a socket that does not listen */
  int t = socket(AF_INET, SOCK_STREAM, 0);
  errno = 0;
  if (accept(t, NULL, NULL) != -1 || errno != EINVAL) return 10;
  /* connect to a port nobody listens on */
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int l = socket(AF_INET, SOCK_STREAM, 0);
  socklen_t al = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0) return 11;
  getsockname(l, (struct sockaddr *)&a, &al);
  close(l); /* bound, never listening: the port refuses */
  errno = 0;
  if (connect(t, (struct sockaddr *)&a, sizeof a) != -1 || errno != ECONNREFUSED) return 12;
  close(t);
  return 0;
}

TEST(errno_is_exact) {
  patch_on();
  ASSERT_EQ(join(spawn(errno_cases, NULL)), 0);
  /* And the same outside a coroutine, on a thread with no hub. */
  ASSERT_EQ(errno_cases(NULL), 0);
}

/* --------------------------------------------------------- accept, connect */

static int tcp_listener(struct sockaddr_in *a) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(l >= 0);
  *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ(bind(l, (struct sockaddr *)a, sizeof *a), 0);
  socklen_t al = sizeof *a;
  ASSERT_EQ(getsockname(l, (struct sockaddr *)a, &al), 0);
  ASSERT_EQ(listen(l, 128), 0);
  return l;
}

struct echo_srv {
  int lfd;
  int n;
  bool four;
};

static int echo_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    if (write(fd, buf, (size_t)n) != n) break;
  }
  close(fd);
  return 0;
}

static int echo_server(void *arg) {
  struct echo_srv *s = arg;
  for (int i = 0; i < s->n; i++) {
    int c = s->four ? accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC) : accept(s->lfd, NULL, NULL);
    if (c < 0) return 100 + errno;
    if (s->four && !(fcntl(c, F_GETFD) & FD_CLOEXEC)) return 99;
    ASSERT_OK(weft_coro_spawn(NULL, echo_conn, (void *)(intptr_t)c, NULL));
  }
  return 0;
}

static struct sockaddr_in srv_addr;

static int echo_client(void *arg) {
  int id = (int)(intptr_t)arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&srv_addr, sizeof srv_addr) != 0) return 100 + errno;
  if (fcntl(fd, F_GETFL) & O_NONBLOCK) return 98;
  char msg[16], back[16];
  int len = snprintf(msg, sizeof msg, "client %d", id);
  for (int round = 0; round < 3; round++) {
    if (write(fd, msg, (size_t)len) != len) return 2;
    int got = 0;
    while (got < len) {
      ssize_t n = read(fd, back + got, sizeof back - (size_t)got);
      if (n <= 0) return 3;
      got += (int)n;
    }
    if (memcmp(msg, back, (size_t)len) != 0) return 4;
    usleep(1000);
  }
  close(fd);
  return 0;
}

static void echo_round(bool four) {
  int l = tcp_listener(&srv_addr);
  int lf = fl(l);
  struct echo_srv s = {.lfd = l, .n = 20, .four = four};
  weft_coro *sv = spawn(echo_server, &s);
  weft_coro *cl[20];
  for (int i = 0; i < 20; i++) cl[i] = spawn(echo_client, (void *)(intptr_t)i);
  for (int i = 0; i < 20; i++) ASSERT_EQ(join(cl[i]), 0);
  ASSERT_EQ(join(sv), 0);
  ASSERT_EQ(fl(l), lf);
  close(l);
}

TEST(tcp_accept_connect_echo) {
  patch_on();
  echo_round(false);
  echo_round(true);
}

/* ---------------------------------------------------------------- poll */

struct later_write {
  int fd;
  int ms;
};

static int write_later(void *arg) {
  struct later_write *lw = arg;
  usleep((useconds_t)lw->ms * 1000);
  return write(lw->fd, "x", 1) == 1 ? 0 : 1;
}

static int poll_cases(void *arg) {
  (void)arg;
  int a[2], b[2];
  if (pipe(a) != 0 || pipe(b) != 0) return 1;
  /* A timeout with nothing ready: 0 after the timeout. */
  struct pollfd pf[2] = {{.fd = a[0], .events = POLLIN}, {.fd = b[0], .events = POLLIN}};
  int64_t t0 = weft_now_ns();
  errno = EDOM;
  if (poll(pf, 2, 100) != 0 || errno != EDOM) return 2;
  int64_t dt = weft_now_ns() - t0;
  if (dt < 100 * MS || dt > 5000 * MS) return 3;
  /* Woken by the second descriptor. */
  struct later_write lw = {.fd = b[1], .ms = 50};
  weft_coro *w;
  if (weft_coro_spawn(&w, write_later, &lw, NULL) != 0) return 4;
  t0 = weft_now_ns();
  if (poll(pf, 2, -1) != 1) return 5;
  if (pf[0].revents != 0 || pf[1].revents != POLLIN) return 6;
  if (weft_now_ns() - t0 < 40 * MS) return 7;
  if (weft_coro_join(w, WEFT_FOREVER, NULL) != 0) return 8;
  weft_coro_release(w);
  /* A bad descriptor: POLLNVAL at once, as libc. */
  struct pollfd bad = {.fd = 1000, .events = POLLIN};
  if (poll(&bad, 1, 1000) != 1 || bad.revents != POLLNVAL) return 9;
  /* Only negative descriptors: a plain sleep. */
  struct pollfd none = {.fd = -1, .events = POLLIN};
  t0 = weft_now_ns();
  if (poll(&none, 1, 50) != 0 || weft_now_ns() - t0 < 50 * MS) return 10;
  /* Writable at once. */
  struct pollfd wr = {.fd = a[1], .events = POLLOUT};
  if (poll(&wr, 1, -1) != 1 || wr.revents != POLLOUT) return 11;
  /* Hang-up is reported with no events asked. */
  close(b[1]);
  struct pollfd hup = {.fd = b[0], .events = 0};
  char c;
  if (read(b[0], &c, 1) != 1) return 12;
  if (poll(&hup, 1, 1000) != 1 || !(hup.revents & POLLHUP)) return 13;
  close(a[0]), close(a[1]), close(b[0]);
  return 0;
}

TEST(poll_semantics) {
  patch_on();
  ticks = 0;
  ticker_stop = false;
  weft_coro *t = spawn(ticker, NULL);
  ASSERT_EQ(join(spawn(poll_cases, NULL)), 0);
  ASSERT_GE(ticks, 3); /* the hub ran during the waits */
  ticker_stop = true;
  join(t);
}

static int select_cases(void *arg) {
  (void)arg;
  int a[2], b[2];
  if (pipe(a) != 0 || pipe(b) != 0) return 1;
  int nfds = (a[0] > b[0] ? a[0] : b[0]) + 1;
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(a[0], &rs);
  FD_SET(b[0], &rs);
  struct timeval tv = {0, 100000};
  int64_t t0 = weft_now_ns();
  errno = EDOM;
  if (select(nfds, &rs, NULL, NULL, &tv) != 0 || errno != EDOM) return 2;
  if (weft_now_ns() - t0 < 100 * MS) return 3;
  if (FD_ISSET(a[0], &rs) || FD_ISSET(b[0], &rs)) return 4;
  if (tv.tv_sec != 0 || tv.tv_usec != 0) return 5; /* time left, as Linux */
  /* Woken by b, with time left written back. */
  struct later_write lw = {.fd = b[1], .ms = 50};
  weft_coro *w;
  if (weft_coro_spawn(&w, write_later, &lw, NULL) != 0) return 6;
  FD_ZERO(&rs);
  FD_SET(a[0], &rs);
  FD_SET(b[0], &rs);
  tv = (struct timeval){5, 0};
  if (select(nfds, &rs, NULL, NULL, &tv) != 1) return 7;
  if (FD_ISSET(a[0], &rs) || !FD_ISSET(b[0], &rs)) return 8;
  if (tv.tv_sec < 3 || tv.tv_sec > 4) return 9;
  weft_coro_join(w, WEFT_FOREVER, NULL);
  weft_coro_release(w);
  /* Write sets, NULL timeout. */
  fd_set ws;
  FD_ZERO(&ws);
  FD_SET(a[1], &ws);
  if (select(a[1] + 1, NULL, &ws, NULL, NULL) != 1 || !FD_ISSET(a[1], &ws)) return 10;
  /* A closed descriptor: EBADF, as libc. */
  close(b[1]);
  FD_ZERO(&rs);
  FD_SET(b[1], &rs);
  errno = 0;
  tv = (struct timeval){1, 0};
  if (select(b[1] + 1, &rs, NULL, NULL, &tv) != -1 || errno != EBADF) return 11;
  close(a[0]), close(a[1]), close(b[0]);
  return 0;
}

TEST(select_semantics) {
  patch_on();
  ticks = 0;
  ticker_stop = false;
  weft_coro *t = spawn(ticker, NULL);
  ASSERT_EQ(join(spawn(select_cases, NULL)), 0);
  ASSERT_GE(ticks, 3);
  ticker_stop = true;
  join(t);
}

/* -------------------------------------------------------------- closing */

TEST(close_wakes_a_waiting_reader) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  int fd = p[0];
  struct pipe_io io = {.fd = fd};
  weft_coro *r = spawn(pipe_reader, &io);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(io.done_at, 0);
  ASSERT_EQ(close(fd), 0);
  ASSERT_EQ(join(r), -1);
  ASSERT_EQ(io.result, -1);
  ASSERT_EQ(io.err, EBADF);
  /* The number is reused by a new pipe: waiting on it works. */
  int q[2];
  ASSERT_EQ(pipe(q), 0);
  ASSERT_EQ(q[0], fd);
  io = (struct pipe_io){.fd = q[0]};
  r = spawn(pipe_reader, &io);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(write(q[1], "R", 1), 1);
  ASSERT_EQ(join(r), 'R');
  close(q[0]), close(q[1]), close(p[1]);
}

TEST(dup2_over_a_waited_descriptor_wakes_it) {
  patch_on();
  int s[2], p[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  ASSERT_EQ(pipe(p), 0);
  struct pipe_io io = {.fd = s[0]};
  weft_coro *r = spawn(pipe_reader, &io);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(dup2(p[0], s[0]), s[0]);
  ASSERT_EQ(join(r), -1);
  ASSERT_EQ(io.err, EBADF);
  close(s[0]), close(s[1]), close(p[0]), close(p[1]);
}

TEST(descriptor_closed_behind_weft_and_reused) {
  patch_on();
  /* Wait on a socket once, so the hub registers its number. */
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  int fd = s[0];
  struct pipe_io io = {.fd = fd};
  weft_coro *r = spawn(pipe_reader, &io);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(10)));
  ASSERT_EQ(write(s[1], "A", 1), 1);
  ASSERT_EQ(join(r), 'A');
  /* Close it with a raw system call: no wrapper sees it, epoll drops the
   * file, and the hub still believes the number registered. */
  ASSERT_EQ(syscall(SYS_close, fd), 0);
  int q[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, q), 0);
  ASSERT_EQ(q[0], fd);
  io = (struct pipe_io){.fd = q[0]};
  r = spawn(pipe_reader, &io);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(write(q[1], "B", 1), 1);
  /* Would hang (until the test's timeout) on a stale registration. */
  ASSERT_EQ(join(r), 'B');
  close(q[0]), close(q[1]), close(s[1]);
}

static int fclose_waiter(void *arg) {
  int fd = (int)(intptr_t)arg;
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  errno = 0;
  int r = poll(&pf, 1, 5000);
  /* Woken by the fclose: poll reports the closed descriptor. */
  return r == 1 && pf.revents == POLLNVAL ? 0 : 1;
}

TEST(fclose_wakes_a_poller) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  FILE *f = fdopen(p[0], "r");
  ASSERT_NOT_NULL(f);
  weft_coro *c = spawn(fclose_waiter, (void *)(intptr_t)p[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  int64_t t0 = weft_now_ns();
  ASSERT_EQ(fclose(f), 0);
  ASSERT_EQ(join(c), 0);
  ASSERT_LT(weft_now_ns() - t0, 2000 * MS);
  close(p[1]);
}

static int cancelled_reader(void *arg) {
  int fd = (int)(intptr_t)arg;
  char c;
  errno = 0;
  ssize_t n = read(fd, &c, 1);
  return n == -1 && errno == ECANCELED ? 0 : 1;
}

TEST(cancel_ends_patched_read) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  weft_coro *c = spawn(cancelled_reader, (void *)(intptr_t)p[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_OK(weft_coro_cancel(c));
  ASSERT_EQ(join(c), 0);
  close(p[0]), close(p[1]);
}

/* ------------------------------------------------------------- threads */

struct thread_read {
  int fd;
  char got;
  bool hub_after;
  _Atomic bool finished;
};

static void *plain_thread(void *arg) {
  struct thread_read *t = arg;
  /* No hub on this thread: read blocks it, as without patching. */
  if (read(t->fd, &t->got, 1) != 1) t->got = '?';
  usleep(1000);
  t->hub_after = weft_hub_active();
  atomic_store(&t->finished, true);
  return NULL;
}

TEST(thread_without_hub_is_untouched) {
  patch_on();
  ASSERT_EQ(join(spawn(sleeper, (void *)(intptr_t)1)), 0); /* this thread has a hub */
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  struct thread_read t = {.fd = p[0]};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, plain_thread, &t), 0);
  /* The other thread is blocked in read(2) itself. */
  usleep(50000);
  ASSERT(!atomic_load(&t.finished));
  ASSERT_EQ(write(p[1], "T", 1), 1);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_EQ(t.got, 'T');
  ASSERT(!t.hub_after);
  ASSERT_EQ(fl(p[0]) & O_NONBLOCK, 0);
  close(p[0]), close(p[1]);
}

/* --------------------------------------------------------- getaddrinfo */

static int gai_cases(void *arg) {
  (void)arg;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  errno = EDOM;
  int r = getaddrinfo("127.0.0.1", "80", &hints, &res);
  if (r != 0 || !res || errno != EDOM) return 1;
  struct sockaddr_in *sin = (struct sockaddr_in *)res->ai_addr;
  if (ntohs(sin->sin_port) != 80) return 2;
  freeaddrinfo(res);
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo("not-a-number", NULL, &hints, &res) != EAI_NONAME) return 3;
  hints.ai_flags = 0;
  if (getaddrinfo("127.0.0.1", "no-such-service-here", &hints, &res) != EAI_SERVICE) return 4;
  return 0;
}

TEST(getaddrinfo_runs_off_the_hub) {
  patch_on();
  ASSERT_EQ(join(spawn(gai_cases, NULL)), 0);
  ASSERT_EQ(gai_cases(NULL), 0);
}

/* ------------------------------------------------------------- fortify */

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);

static int fortified(void *arg) {
  int fd = (int)(intptr_t)arg;
  char c = 0;
  /* What a _FORTIFY_SOURCE build calls for read and poll. */
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  if (__poll_chk(&pf, 1, -1, sizeof pf) != 1) return 1;
  if (__read_chk(fd, &c, 1, 1) != 1) return 2;
  return c;
}

TEST(fortified_entry_points_are_patched) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  weft_coro *c = spawn(fortified, (void *)(intptr_t)p[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(write(p[1], "F", 1), 1);
  ASSERT_EQ(join(c), 'F');
  close(p[0]), close(p[1]);
}

/* ---------------------------------------------------------------- fork */

struct child_pipe {
  int fd;
  char got;
};

static int child_reader(void *arg) {
  struct child_pipe *cp = arg;
  return read(cp->fd, &cp->got, 1) == 1 ? 0 : 1;
}

static int forker(void *arg) {
  (void)arg;
  int p[2];
  if (pipe(p) != 0) return 1;
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    /* The child is patched too: a coroutine's blocking read parks it, and
     * the child's main coroutine writes what it waits for. Not patched,
     * the read would block the child for good (the alarm ends it). */
    alarm(20);
    if (!weft_patch_active()) _exit(10);
    struct child_pipe cp = {.fd = p[0]};
    weft_coro *c;
    if (weft_coro_spawn(&c, child_reader, &cp, NULL) != 0) _exit(11);
    if (usleep(10000) != 0) _exit(12);
    if (write(p[1], "C", 1) != 1) _exit(13);
    int st = -1;
    if (weft_coro_join(c, weft_deadline_in_s(10), &st) != 0 || st != 0 || cp.got != 'C') _exit(14);
    _exit(0);
  }
  /* The parent still waits cooperatively meanwhile. */
  struct pollfd pf = {.fd = p[0], .events = POLLIN};
  if (poll(&pf, 1, 50) < 0) return 3;
  int st;
  while (waitpid(pid, &st, 0) < 0) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 100 + (WIFEXITED(st) ? WEXITSTATUS(st) : 99);
  close(p[0]), close(p[1]);
  return 0;
}

TEST(forked_child_stays_patched) {
  patch_on();
  ticks = 0;
  ticker_stop = false;
  weft_coro *t = spawn(ticker, NULL);
  ASSERT_EQ(join(spawn(forker, NULL)), 0);
  ASSERT(weft_patch_active());
  ASSERT_EQ(join(spawn(sleeper, (void *)(intptr_t)1)), 0);
  ticker_stop = true;
  join(t);
}

TEST(kind_hint_survives_reuse_behind_weft) {
  patch_on();
  /* Read a pipe once (the wrappers note "pipe" for its number), close it
   * where no wrapper sees it, and reuse the number for a socket: reads and
   * a bulk write through it must still be right and cooperative. */
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  struct pipe_io io = {.fd = p[0]};
  weft_coro *r = spawn(pipe_reader, &io);
  ASSERT_EQ(write(p[1], "P", 1), 1);
  ASSERT_EQ(join(r), 'P');
  int fd = p[0], wfd = p[1];
  ASSERT_EQ(syscall(SYS_close, fd), 0);
  ASSERT_EQ(syscall(SYS_close, wfd), 0);
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  ASSERT_EQ(s[0], fd);
  io = (struct pipe_io){.fd = s[0]};
  r = spawn(pipe_reader, &io);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(io.done_at, 0);
  ASSERT_EQ(write(s[1], "S", 1), 1);
  ASSERT_EQ(join(r), 'S');
  bulk_pair(s[1], s[0], false);
  close(s[0]), close(s[1]);
}

/* ------------------------------------------------- more exact semantics */

static int unix_client(void *arg) {
  const struct sockaddr_un *a = arg;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  errno = EDOM;
  /* A blocking connect waits for room in a full backlog; it must not come
   * back with EAGAIN. */
  if (connect(fd, (const struct sockaddr *)a, sizeof *a) != 0) return 100 + errno;
  if (errno != EDOM) return 99;
  char c;
  int r = read(fd, &c, 1) == 1 && c == 'k' ? 0 : 1;
  close(fd);
  return r;
}

TEST(unix_connect_waits_for_backlog_room) {
  patch_on();
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "/tmp/weft-patch-%d.sock", (int)getpid());
  unlink(a.sun_path);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_EQ(listen(l, 0), 0);
  weft_coro *cs[4];
  for (int i = 0; i < 4; i++) cs[i] = spawn(unix_client, &a);
  /* Some of them wait for room; accept them one by one. */
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(30)));
  for (int i = 0; i < 4; i++) {
    int c = accept(l, NULL, NULL);
    ASSERT(c >= 0);
    ASSERT_EQ(write(c, "k", 1), 1);
    close(c);
  }
  for (int i = 0; i < 4; i++) ASSERT_EQ(join(cs[i]), 0);
  close(l);
  unlink(a.sun_path);
}

static int fd_receiver(void *arg) {
  int s = (int)(intptr_t)arg;
  char byte;
  struct iovec v = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  /* Blocks (patched) until the peer sends; the passed descriptor and the
   * control length must come back to the caller's msghdr. */
  if (recvmsg(s, &m, 0) != 1) return 1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS || m.msg_controllen < CMSG_LEN(sizeof(int))) return 2;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  char x;
  int r = read(fd, &x, 1) == 1 && x == 'z' ? 0 : 3;
  close(fd);
  return r;
}

TEST(recvmsg_passes_descriptors_back) {
  patch_on();
  int s[2], p[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  ASSERT_EQ(pipe(p), 0);
  weft_coro *c = spawn(fd_receiver, (void *)(intptr_t)s[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(write(p[1], "z", 1), 1);
  char byte = 'b';
  struct iovec v = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  struct cmsghdr *ch = CMSG_FIRSTHDR(&m);
  ch->cmsg_level = SOL_SOCKET;
  ch->cmsg_type = SCM_RIGHTS;
  ch->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(ch), &p[0], sizeof(int));
  ASSERT_EQ(sendmsg(s[1], &m, 0), 1);
  ASSERT_EQ(join(c), 0);
  close(s[0]), close(s[1]), close(p[0]), close(p[1]);
}

static int hub_api_on_blocking_pipe(void *arg) {
  int fd = (int)(intptr_t)arg;
  char c;
  /* weft's own cooperative read calls read(2) itself, which is patched
   * now: the two must not get in each other's way. */
  return weft_coro_read(fd, &c, 1, weft_deadline_in_s(10)) == 1 ? c : -1;
}

TEST(hub_calls_still_work_under_patching) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  weft_coro *c = spawn(hub_api_on_blocking_pipe, (void *)(intptr_t)p[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(weft_coro_write(p[1], "H", 1, WEFT_FOREVER), 1);
  ASSERT_EQ(join(c), 'H');
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  c = spawn(hub_api_on_blocking_pipe, (void *)(intptr_t)s[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(weft_coro_send(s[1], "S", 1, 0, WEFT_FOREVER), 1);
  ASSERT_EQ(join(c), 'S');
  ASSERT_OK(weft_coro_close(s[0]));
  ASSERT_OK(weft_coro_close(s[1]));
  close(p[0]), close(p[1]);
}

static int dgram_waitall(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[64];
  /* MSG_WAITALL means nothing for datagrams: one datagram, as libc. */
  ssize_t n = recv(fd, buf, sizeof buf, MSG_WAITALL);
  return n == 3 && memcmp(buf, "one", 3) == 0 ? 0 : 1;
}

TEST(waitall_on_datagrams_returns_one_datagram) {
  patch_on();
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, s), 0);
  weft_coro *c = spawn(dgram_waitall, (void *)(intptr_t)s[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_EQ(send(s[1], "one", 3, 0), 3);
  ASSERT_EQ(join(c), 0);
  close(s[0]), close(s[1]);
}

static int file_io(void *arg) {
  (void)arg;
  char path[] = "/tmp/weft-patch-file-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 1;
  unlink(path);
  size_t len = 1 << 20;
  char *buf = malloc(len);
  for (size_t i = 0; i < len; i++) buf[i] = (char)(i * 13);
  errno = EDOM;
  /* A regular file is passed to libc: one write, all of it. */
  if (write(fd, buf, len) != (ssize_t)len || errno != EDOM) return 2;
  if (lseek(fd, 0, SEEK_SET) != 0) return 3;
  char *back = malloc(len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = got % 2 ? read(fd, back + got, len - got)
                        : readv(fd, &(struct iovec){back + got, len - got}, 1);
    if (n <= 0) return 4;
    got += (size_t)n;
  }
  int r = memcmp(buf, back, len) == 0 && read(fd, back, 1) == 0 ? 0 : 5;
  free(buf);
  free(back);
  close(fd);
  return r;
}

TEST(regular_files_pass_through) {
  patch_on();
  ASSERT_EQ(join(spawn(file_io, NULL)), 0);
  ASSERT_EQ(join(spawn(file_io, NULL)), 0); /* again, with the kind noted */
}

static int sndtimeo_writer(void *arg) {
  int fd = (int)(intptr_t)arg;
  size_t len = 8 << 20; /* far more than the socket buffer */
  char *buf = calloc(1, len);
  errno = EDOM;
  ssize_t n = send(fd, buf, len, 0);
  free(buf);
  /* Nobody reads: after SO_SNDTIMEO the count sent so far, as Linux. */
  return n > 0 && (size_t)n < len && errno == EDOM ? 0 : 1;
}

TEST(send_timeout_returns_the_part_sent) {
  patch_on();
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  struct timeval tv = {0, 100000};
  ASSERT_EQ(setsockopt(s[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
  int64_t t0 = weft_now_ns();
  ASSERT_EQ(join(spawn(sndtimeo_writer, (void *)(intptr_t)s[1])), 0);
  ASSERT_GE(weft_now_ns() - t0, 100 * MS);
  close(s[0]), close(s[1]);
}

static int cancelled_poller(void *arg) {
  int fd = (int)(intptr_t)arg;
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  errno = 0;
  int r = poll(&pf, 1, -1);
  if (r != -1 || errno != ECANCELED) return 1;
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(fd, &rs);
  errno = 0;
  r = select(fd + 1, &rs, NULL, NULL, NULL);
  return r == -1 && errno == ECANCELED ? 0 : 2;
}

TEST(cancel_ends_patched_poll_and_select) {
  patch_on();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  weft_coro *c = spawn(cancelled_poller, (void *)(intptr_t)p[0]);
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(20)));
  ASSERT_OK(weft_coro_cancel(c));
  ASSERT_EQ(join(c), 0);
  close(p[0]), close(p[1]);
}

static int epoll_cases(void *arg) {
  (void)arg;
  int p[2];
  if (pipe(p) != 0) return 1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.fd = p[0]}, out[4];
  if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e) != 0) return 2;
  int64_t t0 = weft_now_ns();
  errno = EDOM;
  if (epoll_wait(ep, out, 4, 60) != 0 || errno != EDOM) return 3;
  if (weft_now_ns() - t0 < 60 * MS) return 4;
  struct later_write lw = {.fd = p[1], .ms = 30};
  weft_coro *w;
  if (weft_coro_spawn(&w, write_later, &lw, NULL) != 0) return 5;
  if (epoll_wait(ep, out, 4, -1) != 1 || out[0].data.fd != p[0]) return 6;
  weft_coro_join(w, WEFT_FOREVER, NULL);
  weft_coro_release(w);
  errno = 0;
  if (epoll_wait(-1, out, 4, 100) != -1 || errno != EBADF) return 7;
  close(ep), close(p[0]), close(p[1]);
  return 0;
}

TEST(epoll_wait_is_cooperative) {
  patch_on();
  ticks = 0;
  ticker_stop = false;
  weft_coro *t = spawn(ticker, NULL);
  ASSERT_EQ(join(spawn(epoll_cases, NULL)), 0);
  ASSERT_GE(ticks, 3);
  ticker_stop = true;
  join(t);
}
