/* Cooperative I/O on pipes and sockets, the poller, offload to threads and
 * name lookup. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

static int reader(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[16];
  ssize_t n = weft_coro_read(fd, buf, sizeof buf, weft_deadline_in_s(5));
  return n < 0 ? (int)n : (int)buf[0];
}

TEST(pipe_read_waits) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, reader, (void *)(intptr_t)p[0], NULL));
  /* The reader is parked; the hub still runs us. */
  ASSERT_ERR(weft_coro_join(c, weft_deadline_in_ms(20), NULL), WEFT_ETIMEDOUT);
  ASSERT_EQ(weft_coro_write(p[1], "Z", 1, WEFT_FOREVER), 1);
  int st;
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 'Z');
  weft_coro_release(c);
  /* A second wait on the same fd reuses the registration. */
  ASSERT_OK(weft_coro_spawn(&c, reader, (void *)(intptr_t)p[0], NULL));
  ASSERT_EQ(weft_coro_write(p[1], "Y", 1, WEFT_FOREVER), 1);
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 'Y');
  weft_coro_release(c);
  ASSERT_OK(weft_coro_close(p[0]));
  ASSERT_OK(weft_coro_close(p[1]));
}

TEST(read_deadline) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  char b;
  int64_t t0 = weft_now_ns();
  ASSERT_EQ(weft_coro_read(p[0], &b, 1, weft_deadline_in_ms(50)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 50 * 1000000LL);
  ASSERT_EQ(weft_coro_read(p[0], &b, 1, 0), WEFT_ETIMEDOUT);
  ASSERT_EQ(weft_coro_read(p[0], &b, 1, -2), WEFT_EINVAL);
  ASSERT_EQ(weft_coro_read(-1, &b, 1, 0), WEFT_EBADF);
  weft_coro_close(p[0]);
  weft_coro_close(p[1]);
}

/* A blocking pipe: weft must not set O_NONBLOCK (another process may share
 * the file), yet must not block the hub. */
static int slow_writer(void *arg) {
  int fd = (int)(intptr_t)arg;
  weft_coro_sleep_until(weft_deadline_in_ms(30));
  return (int)weft_coro_write(fd, "hello", 5, WEFT_FOREVER);
}

static int big_writer(void *arg) {
  static char big[1 << 20];
  memset(big, 'x', sizeof big);
  ssize_t n = weft_coro_write_all((int)(intptr_t)arg, big, sizeof big, weft_deadline_in_s(10));
  return n == (ssize_t)sizeof big ? 0 : (int)n;
}

TEST(blocking_pipe_flags_untouched) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  weft_coro *w;
  ASSERT_OK(weft_coro_spawn(&w, slow_writer, (void *)(intptr_t)p[1], NULL));
  char buf[8] = {0};
  ASSERT_EQ(weft_coro_read(p[0], buf, sizeof buf, weft_deadline_in_s(5)), 5);
  ASSERT_STR_EQ(buf, "hello");
  ASSERT_EQ(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
  ASSERT_EQ(fcntl(p[1], F_GETFL) & O_NONBLOCK, 0);
  int st;
  ASSERT_OK(weft_coro_join(w, WEFT_FOREVER, &st));
  ASSERT_EQ(st, 5);
  weft_coro_release(w);
  /* A big write on a blocking pipe goes in PIPE_BUF pieces, without
   * blocking the thread: the reader (us) drains it meanwhile. */
  ASSERT_OK(weft_coro_spawn(&w, big_writer, (void *)(intptr_t)p[1], NULL));
  static char back[1 << 20];
  size_t got = 0;
  while (got < sizeof back) {
    ssize_t n = weft_coro_read(p[0], back + got, sizeof back - got, weft_deadline_in_s(10));
    ASSERT_GT(n, 0);
    got += (size_t)n;
  }
  ASSERT_OK(weft_coro_join(w, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 0);
  ASSERT_EQ(back[12345], 'x');
  weft_coro_release(w);
  weft_coro_close(p[0]);
  weft_coro_close(p[1]);
}

/* Closing a descriptor through weft wakes the coroutine waiting on it, and
 * a new descriptor reusing the number works. */
TEST(close_wakes_waiter) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, reader, (void *)(intptr_t)p[0], NULL));
  int num = p[0];
  ASSERT_OK(weft_coro_close(p[0]));
  int st;
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, WEFT_EBADF);
  weft_coro_release(c);
  int q[2];
  ASSERT_EQ(pipe2(q, O_NONBLOCK), 0);
  ASSERT_EQ(q[0], num); /* the lowest free number: reused */
  ASSERT_OK(weft_coro_spawn(&c, reader, (void *)(intptr_t)q[0], NULL));
  ASSERT_EQ(write(q[1], "Q", 1), 1);
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 'Q');
  weft_coro_release(c);
  weft_coro_close(q[0]);
  weft_coro_close(q[1]);
  weft_coro_close(p[1]);
}

TEST(regular_file_direct) {
  char path[] = "/tmp/weft_coro_io_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  static char data[10000];
  memset(data, 'r', sizeof data);
  ASSERT_EQ(weft_coro_write_all(fd, data, sizeof data, weft_deadline_in_s(5)), (ssize_t)sizeof data);
  ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
  static char back[10000];
  ASSERT_EQ(weft_coro_read(fd, back, sizeof back, weft_deadline_in_s(5)), (ssize_t)sizeof back);
  ASSERT_EQ(memcmp(data, back, sizeof data), 0);
  weft_coro_close(fd);
}

/* ------------------------------------------------------------- sockets */

static int listen_loopback(int *port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 128) != 0) return -1;
  socklen_t l = sizeof a;
  getsockname(s, (struct sockaddr *)&a, &l);
  *port = ntohs(a.sin_port);
  return s;
}

/* Echo server: one coroutine per connection. */
static int echo_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[4096];
  for (;;) {
    ssize_t n = weft_coro_recv(fd, buf, sizeof buf, 0, weft_deadline_in_s(10));
    if (n <= 0) break;
    if (weft_coro_send(fd, buf, (size_t)n, 0, weft_deadline_in_s(10)) != n) break;
  }
  weft_coro_close(fd);
  return 0;
}

static int echo_server(void *arg) {
  int ls = (int)(intptr_t)arg;
  for (;;) {
    int c = weft_coro_accept(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC, WEFT_FOREVER);
    if (c < 0) return c;
    weft_coro_spawn(NULL, echo_conn, (void *)(intptr_t)c, NULL);
  }
}

static int echo_port;
static int echo_client(void *arg) {
  int id = (int)(intptr_t)arg;
  /* A blocking socket: connect must still be cooperative. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)echo_port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int e = weft_coro_connect(s, (struct sockaddr *)&a, sizeof a, weft_deadline_in_s(5));
  if (e) return e;
  if (fcntl(s, F_GETFL) & O_NONBLOCK) return -1000; /* restored */
  for (int i = 0; i < 50; i++) {
    char msg[32], back[32];
    int len = snprintf(msg, sizeof msg, "c%d-m%d", id, i);
    if (weft_coro_send(s, msg, (size_t)len, 0, weft_deadline_in_s(5)) != len) return -1001;
    ssize_t got = 0;
    while (got < len) {
      ssize_t n = weft_coro_recv(s, back + got, sizeof back - (size_t)got, 0, weft_deadline_in_s(5));
      if (n <= 0) return -1002;
      got += n;
    }
    if (memcmp(msg, back, (size_t)len) != 0) return -1003;
  }
  weft_coro_close(s);
  return 0;
}

TEST(tcp_echo_many_clients) {
  int ls = listen_loopback(&echo_port);
  ASSERT_GE(ls, 0);
  weft_coro *srv;
  ASSERT_OK(weft_coro_spawn(&srv, echo_server, (void *)(intptr_t)ls, NULL));
  weft_coro *cl[40];
  for (int i = 0; i < 40; i++) ASSERT_OK(weft_coro_spawn(&cl[i], echo_client, (void *)(intptr_t)i, NULL));
  for (int i = 0; i < 40; i++) {
    int st = -1;
    ASSERT_OK(weft_coro_join(cl[i], weft_deadline_in_s(20), &st));
    ASSERT_EQ(st, 0);
    weft_coro_release(cl[i]);
  }
  /* Closing the listening socket wakes the server's accept. */
  ASSERT_OK(weft_coro_close(ls));
  int st;
  ASSERT_OK(weft_coro_join(srv, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, WEFT_EBADF);
  weft_coro_release(srv);
  ASSERT_OK(weft_hub_wait(weft_deadline_in_s(5)));
}

TEST(connect_refused_and_accept_deadline) {
  int port;
  int ls = listen_loopback(&port);
  ASSERT_GE(ls, 0);
  ASSERT_EQ(weft_coro_accept(ls, NULL, NULL, 0, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  weft_coro_close(ls); /* nothing listens on port now */
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_ERR(weft_coro_connect(s, (struct sockaddr *)&a, sizeof a, weft_deadline_in_s(5)),
             WEFT_ECONNREFUSED);
  weft_coro_close(s);
}

/* Busy coroutines that only yield must not starve I/O: the poller runs at
 * least every 64 dispatches. */
static volatile int stop_spinning;
static int spinner(void *arg) {
  (void)arg;
  long n = 0;
  while (!stop_spinning) {
    weft_coro_yield();
    n++;
  }
  return n > 0;
}

TEST(io_not_starved_by_yielders) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  weft_coro *sp[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_coro_spawn(&sp[i], spinner, NULL, NULL));
  weft_coro *r;
  ASSERT_OK(weft_coro_spawn(&r, reader, (void *)(intptr_t)sv[0], NULL));
  ASSERT_EQ(write(sv[1], "S", 1), 1);
  int st;
  ASSERT_OK(weft_coro_join(r, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 'S');
  /* Timers too. */
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(5)));
  stop_spinning = 1;
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(weft_coro_join(sp[i], weft_deadline_in_s(5), &st));
    weft_coro_release(sp[i]);
  }
  weft_coro_release(r);
  weft_coro_close(sv[0]);
  weft_coro_close(sv[1]);
}

/* ------------------------------------------------------------- offload */

static int block_ms(void *arg) {
  int ms = (int)(intptr_t)arg;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  return ms;
}

static int offloader(void *arg) {
  int r = -1;
  int e = weft_coro_offload(arg, block_ms, (void *)(intptr_t)200, weft_deadline_in_s(10), &r);
  return e ? e : r;
}

typedef struct {
  weft_executor *ex;
  int ms;
  int *r;
} offload_on_arg;

static atomic_int busy_started;
static int busy_fn(void *arg) {
  atomic_store(&busy_started, 1);
  return block_ms(arg);
}

static int offloader_on(void *arg) {
  offload_on_arg *a = arg;
  return weft_coro_offload(a->ex, busy_fn, (void *)(intptr_t)a->ms, weft_deadline_in_s(10), a->r);
}

static int ticks;
static int ticker(void *arg) {
  (void)arg;
  for (int i = 0; i < 10; i++) {
    weft_coro_sleep_until(weft_deadline_in_ms(10));
    ticks++;
  }
  return 0;
}

TEST(offload_keeps_hub_serving) {
  weft_executor *ex;
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 3};
  ASSERT_OK(weft_executor_create(&ex, &o));
  /* 4 calls of 200 ms on 3 threads: about 400 ms, and the ticker keeps
   * ticking meanwhile (the hub is never blocked). */
  weft_coro *c[4], *t;
  int64_t t0 = weft_now_ns();
  ASSERT_OK(weft_coro_spawn(&t, ticker, NULL, NULL));
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_coro_spawn(&c[i], offloader, ex, NULL));
  for (int i = 0; i < 4; i++) {
    int st = 0;
    ASSERT_OK(weft_coro_join(c[i], weft_deadline_in_s(10), &st));
    ASSERT_EQ(st, 200);
    weft_coro_release(c[i]);
  }
  int64_t el = weft_now_ns() - t0;
  ASSERT_GE(el, 400 * 1000000LL);
  ASSERT_LT(el, 4 * 1000000000LL);
  ASSERT_OK(weft_coro_join(t, weft_deadline_in_s(5), NULL));
  ASSERT_EQ(ticks, 10);
  weft_coro_release(t);
  weft_executor_destroy(ex);
}

static atomic_int slow_started, slow_ran;
static int slow_fn(void *arg) {
  atomic_store(&slow_started, 1);
  block_ms(arg);
  atomic_fetch_add(&slow_ran, 1);
  return (int)(intptr_t)arg;
}

static int offload_slow(void *arg) {
  int *r = arg;
  return weft_coro_offload(NULL, slow_fn, (void *)(intptr_t)200, WEFT_FOREVER, r);
}

/* Cancels its target once slow_fn has started on a pool thread. */
static int cancel_when_started(void *arg) {
  while (!atomic_load(&slow_started)) weft_coro_sleep_until(weft_deadline_in_ms(1));
  return weft_coro_cancel(arg);
}

TEST(offload_default_pool_and_deadline) {
  int r = 0;
  ASSERT_OK(weft_coro_offload(NULL, block_ms, (void *)(intptr_t)1, WEFT_FOREVER, &r));
  ASSERT_EQ(r, 1);
  /* Cancelled while fn runs: the call waits for fn (it may use arg), then
   * reports the cancel with fn's result. */
  r = 0;
  weft_coro *c, *k;
  ASSERT_OK(weft_coro_spawn(&c, offload_slow, &r, NULL));
  ASSERT_OK(weft_coro_spawn(&k, cancel_when_started, c, NULL));
  int st = 0;
  ASSERT_OK(weft_coro_join(c, weft_deadline_in_s(10), &st));
  ASSERT_EQ(st, WEFT_ECANCELED);
  ASSERT_EQ(r, 200);
  ASSERT_EQ(atomic_load(&slow_ran), 1);
  ASSERT_OK(weft_coro_join(k, WEFT_FOREVER, NULL));
  weft_coro_release(c);
  weft_coro_release(k);
}

/* Not started when the deadline passes: fn never runs. The only worker of
 * the pool is kept busy, so the call cannot start in time. */
TEST(offload_deadline_before_start) {
  weft_executor *ex;
  weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 1};
  ASSERT_OK(weft_executor_create(&ex, &o));
  weft_coro *busy;
  int busy_r = 0;
  offload_on_arg busy_arg = {ex, 300, &busy_r};
  ASSERT_OK(weft_coro_spawn(&busy, offloader_on, &busy_arg, NULL));
  while (!atomic_load(&busy_started)) weft_coro_sleep_until(weft_deadline_in_ms(1));
  int r = -1;
  ASSERT_ERR(weft_coro_offload(ex, slow_fn, (void *)(intptr_t)5, weft_deadline_in_ms(20), &r),
             WEFT_ETIMEDOUT);
  ASSERT_EQ(r, -1); /* never ran: no result */
  ASSERT_OK(weft_coro_join(busy, weft_deadline_in_s(10), NULL));
  ASSERT_EQ(busy_r, 300);
  weft_coro_release(busy);
  weft_executor_destroy(ex); /* waits for everything: slow_fn must not have run */
  ASSERT_EQ(atomic_load(&slow_ran), 0);
}

/* Wait on a future finished by another thread. */
static void *finish_later(void *arg) {
  struct timespec ts = {0, 50 * 1000000L};
  nanosleep(&ts, NULL);
  weft_future_set_result(arg, "ok", 3);
  return NULL;
}

TEST(future_wait_cross_thread) {
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_ERR(weft_coro_future_wait(f, weft_deadline_in_ms(10)), WEFT_ETIMEDOUT);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, finish_later, f), 0);
  ASSERT_OK(weft_coro_future_wait(f, weft_deadline_in_s(5)));
  const void *d;
  size_t len;
  ASSERT_OK(weft_future_result(f, 0, &d, &len));
  ASSERT_STR_EQ((const char *)d, "ok");
  pthread_join(t, NULL);
  weft_future_release(f);
}

TEST(getaddrinfo_offloaded) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  ASSERT_OK(weft_coro_getaddrinfo("127.0.0.1", "80", &hints, &res, weft_deadline_in_s(10)));
  ASSERT_NOT_NULL(res);
  struct sockaddr_in *sa = (struct sockaddr_in *)res->ai_addr;
  ASSERT_EQ(ntohs(sa->sin_port), 80);
  ASSERT_EQ(ntohl(sa->sin_addr.s_addr), INADDR_LOOPBACK);
  freeaddrinfo(res);
  ASSERT_OK(weft_coro_getaddrinfo("localhost", NULL, &hints, &res, weft_deadline_in_s(10)));
  freeaddrinfo(res);
  struct addrinfo nh = {.ai_flags = AI_NUMERICHOST};
  ASSERT_ERR(weft_coro_getaddrinfo("not an address", NULL, &nh, &res, weft_deadline_in_s(10)),
             WEFT_ENOENT);
  ASSERT_ERR(weft_coro_getaddrinfo(NULL, NULL, NULL, &res, WEFT_FOREVER), WEFT_ENOENT);
}

/* fork: the child's hub gets its own epoll set and inbox, so the two
 * processes never take each other's readiness events; the child's
 * coroutines, offload pool and futures work. */
static int child_offload(void *arg) { return (int)(intptr_t)arg + 1; }

TEST(fork_child_gets_own_hub) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  weft_coro *r;
  ASSERT_OK(weft_coro_spawn(&r, reader, (void *)(intptr_t)p[0], NULL)); /* registered */
  int r0 = 0;
  ASSERT_OK(weft_coro_offload(NULL, child_offload, (void *)(intptr_t)1, weft_deadline_in_s(5), &r0));
  ASSERT_EQ(r0, 2); /* the parent's offload pool exists now */
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    /* The child has a copy of r: stop it, so that only the parent reads p. */
    weft_coro_cancel(r);
    int st = 0;
    if (weft_coro_join(r, weft_deadline_in_s(5), &st) != 0 || st != WEFT_ECANCELED) _exit(10);
    /* Sleep in the child's hub while the parent's pipe becomes ready. */
    if (weft_coro_sleep_until(weft_deadline_in_ms(300)) != 0) _exit(11);
    /* A new offload pool (threads) in the child. TSan and qemu-user cannot
     * start threads in a child of a threaded process (the qemu run sets
     * WEFT_TEST_NO_THREADS_AFTER_FORK), nor can ASan's runtime here (below). */
    bool threads_ok = weft_test_knob("WEFT_TEST_NO_THREADS_AFTER_FORK", 0) == 0;
#ifdef WEFT_TSAN
    threads_ok = false;
#endif
#ifdef __SANITIZE_ADDRESS__
    /* Nor can AddressSanitizer's runtime in GCC 12: it does not hold its
     * allocator's locks across fork, so a lock a parent thread held at the
     * fork stays held in the child, and the child's new threads hang in
     * malloc (seen: every worker of the child's offload pool waiting on
     * the allocator's size-class mutex). glibc's malloc is fork-safe. */
    threads_ok = false;
#endif
    int res = 0;
    if (threads_ok &&
        (weft_coro_offload(NULL, child_offload, (void *)(intptr_t)41, weft_deadline_in_s(10),
                           &res) != 0 ||
         res != 42))
      _exit(12);
    int q[2];
    if (pipe2(q, O_NONBLOCK) != 0) _exit(13);
    weft_coro *cr;
    if (weft_coro_spawn(&cr, reader, (void *)(intptr_t)q[0], NULL) != 0) _exit(14);
    if (write(q[1], "C", 1) != 1) _exit(15);
    if (weft_coro_join(cr, weft_deadline_in_s(5), &st) != 0 || st != 'C') _exit(16);
    _exit(0);
  }
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(50)));
  ASSERT_EQ(write(p[1], "P", 1), 1);
  int st = 0;
  ASSERT_OK(weft_coro_join(r, weft_deadline_in_s(5), &st));
  ASSERT_EQ(st, 'P');
  weft_coro_release(r);
  int ws;
  ASSERT_EQ(waitpid(pid, &ws, 0), pid);
  ASSERT(WIFEXITED(ws));
  ASSERT_EQ(WEXITSTATUS(ws), 0);
  weft_coro_close(p[0]);
  weft_coro_close(p[1]);
}
