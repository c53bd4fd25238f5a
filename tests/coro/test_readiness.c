/* Read readiness tracking on stream sockets (src/coro/poll.c): after a read
 * drains a registered stream socket, the next read waits for the poller's
 * edge instead of trying a recv that would say EAGAIN. These cases check
 * that the saved recv really is saved, and every way the shortcut could lose
 * data that is already there: an edge seen while nobody waited, MSG_PEEK,
 * datagrams, a zero deadline, and a descriptor closed and reused.
 *
 * This file defines recv() to count the calls made on one descriptor and
 * forwards them to the next definition (libc's, or a sanitizer's). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

static int counted_fd = -1;
static long recv_calls;

ssize_t recv(int fd, void *buf, size_t len, int flags) {
  static ssize_t (*real)(int, void *, size_t, int);
  if (!real) real = (ssize_t(*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
  if (fd == counted_fd) recv_calls++;
  return real(fd, buf, len, flags);
}

static void close_pair(int sv[2]) {
  ASSERT_OK(weft_coro_close(sv[0]));
  ASSERT_OK(weft_coro_close(sv[1]));
}

/* A connected loopback TCP pair: *a is the accepted side, *b the client. */
static void tcp_pair(int *a, int *b) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(ls, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  ASSERT_EQ(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
  ASSERT_EQ(listen(ls, 1), 0);
  ASSERT_EQ(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
  *b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(*b, 0);
  ASSERT_EQ(connect(*b, (struct sockaddr *)&sa, sizeof sa), 0);
  *a = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  ASSERT_GE(*a, 0);
  int one = 1;
  setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  close(ls);
}

/* A request/response exchange: the peer sends a short request only once the
 * reader is parked, the reader answers. */
enum { ROUNDS = 200 };

typedef struct {
  int fd;
  int peer;
  int bad; /* first wrong byte count or content, or error */
} exchange;

static int ping_peer(void *arg) {
  exchange *x = arg;
  for (int i = 0; i < ROUNDS; i++) {
    /* Let the server finish its previous read and park first. */
    if (weft_coro_yield() != 0) return -1;
    char req = (char)('a' + i % 26), rsp;
    if (weft_coro_write_all(x->peer, &req, 1, weft_deadline_in_s(5)) != 1) return -2;
    if (weft_coro_read(x->peer, &rsp, 1, weft_deadline_in_s(5)) != 1) return -3;
    if (rsp != req) return -4;
  }
  return 0;
}

static int ping_server(void *arg) {
  exchange *x = arg;
  for (int i = 0; i < ROUNDS; i++) {
    char buf[64];
    ssize_t n = weft_coro_read(x->fd, buf, sizeof buf, weft_deadline_in_s(5));
    if (n != 1 || buf[0] != (char)('a' + i % 26)) {
      x->bad = n == 1 ? -100 : (int)n;
      return -1;
    }
    if (weft_coro_write_all(x->fd, buf, 1, weft_deadline_in_s(5)) != 1) return -2;
  }
  return 0;
}

static void run_exchange(int a, int b) {
  exchange x = {.fd = a, .peer = b};
  counted_fd = a;
  recv_calls = 0;
  weft_coro *s, *p;
  ASSERT_OK(weft_coro_spawn(&s, ping_server, &x, NULL));
  ASSERT_OK(weft_coro_spawn(&p, ping_peer, &x, NULL));
  int st = -1;
  ASSERT_OK(weft_coro_join(s, weft_deadline_in_s(20), &st));
  ASSERT_EQ(x.bad, 0);
  ASSERT_EQ(st, 0);
  ASSERT_OK(weft_coro_join(p, weft_deadline_in_s(20), &st));
  ASSERT_EQ(st, 0);
  weft_coro_release(s);
  weft_coro_release(p);
  counted_fd = -1;
  /* One recv per request once the socket is known: the very first read
   * finds it empty (EAGAIN) and registers it; every later read waits for
   * the edge, so it never asks the kernel in vain. Without the tracking
   * it would be about two per request. */
  ASSERT_LE(recv_calls, ROUNDS + 2);
  ASSERT_GE(recv_calls, ROUNDS);
}

TEST(tcp_request_response_one_recv_per_request) {
  int a, b;
  tcp_pair(&a, &b);
  run_exchange(a, b);
  ASSERT_OK(weft_coro_close(a));
  ASSERT_OK(weft_coro_close(b));
  ASSERT_OK(weft_hub_wait(weft_deadline_in_s(5)));
}

TEST(unix_stream_one_recv_per_request) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  run_exchange(sv[0], sv[1]);
  close_pair(sv);
}

/* Drain the socket in a way that registers it: a read that finds nothing
 * (and times out) leaves it registered and known to be empty. */
static void drain_and_register(int fd) {
  char c;
  ASSERT_EQ(weft_coro_read(fd, &c, 1, weft_deadline_in_ms(5)), WEFT_ETIMEDOUT);
}

/* A Unix socket pair of type; sv[0] registered and known to be empty. */
static void registered_pair(int type, int sv[2]) {
  ASSERT_EQ(socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  drain_and_register(sv[0]);
}

/* Read want (a short read) from fd at once: data already there must come
 * without waiting for an edge (a wrongly kept "drained" mark would make the
 * read wait until its 2 s deadline). */
static void read_at_once(int fd, const char *want) {
  char buf[64];
  size_t n = strlen(want);
  int64_t t0 = weft_now_ns();
  ASSERT_EQ(weft_coro_read(fd, buf, sizeof buf, weft_deadline_in_s(2)), (ssize_t)n);
  ASSERT_LT(weft_now_ns() - t0, 1000000000);
  ASSERT_EQ(memcmp(buf, want, n), 0);
}

static void yield_until_polled(void) {
  /* Sleeping makes the hub block in its poller, which harvests every
   * pending edge. */
  ASSERT_OK(weft_coro_sleep_until(weft_deadline_in_ms(2)));
}

TEST(edge_seen_with_no_waiter_is_remembered) {
  int sv[2];
  registered_pair(SOCK_STREAM, sv);
  /* Data arrives while no coroutine waits on the socket, and the poller
   * reports its edge to nobody. */
  ASSERT_EQ(write(sv[1], "hi", 2), 2);
  yield_until_polled();
  /* The read must not wait for an edge that was already reported. */
  read_at_once(sv[0], "hi");
  close_pair(sv);
}

TEST(zero_deadline_read_asks_the_socket) {
  int sv[2];
  registered_pair(SOCK_STREAM, sv);
  /* No poll in between: the edge is still in the kernel. A read with a
   * zero deadline is a try, and must find the data. */
  ASSERT_EQ(write(sv[1], "x", 1), 1);
  char buf[8];
  ASSERT_EQ(weft_coro_read(sv[0], buf, sizeof buf, 0), 1);
  ASSERT_EQ(buf[0], 'x');
  /* Drained again by that short read; more data raises a new edge, which a
   * waiting read gets. */
  ASSERT_EQ(write(sv[1], "yz", 2), 2);
  read_at_once(sv[0], "yz");
  close_pair(sv);
}

TEST(short_peek_leaves_the_data_readable) {
  int sv[2];
  registered_pair(SOCK_STREAM, sv);
  ASSERT_EQ(write(sv[1], "abcd", 4), 4);
  yield_until_polled();
  char buf[64];
  /* A short peek drains nothing. */
  ASSERT_EQ(weft_coro_recv(sv[0], buf, sizeof buf, MSG_PEEK, weft_deadline_in_s(2)), 4);
  read_at_once(sv[0], "abcd");
  close_pair(sv);
}

TEST(short_datagram_read_leaves_the_next_readable) {
  int sv[2];
  registered_pair(SOCK_DGRAM, sv);
  ASSERT_EQ(write(sv[1], "one", 3), 3);
  ASSERT_EQ(write(sv[1], "two", 3), 3);
  yield_until_polled();
  read_at_once(sv[0], "one");
  /* Shorter than the buffer, yet the second datagram is still queued and
   * its edge was reported together with the first. */
  read_at_once(sv[0], "two");
  close_pair(sv);
}

TEST(closed_and_reused_number_starts_fresh) {
  int sv[2];
  registered_pair(SOCK_STREAM, sv);
  int num = sv[0];
  close_pair(sv);
  /* The same number for a new socket that already holds data. */
  int tv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, tv), 0);
  if (tv[0] != num) {
    ASSERT_EQ(dup2(tv[0], num), num);
    close(tv[0]);
    tv[0] = num;
  }
  ASSERT_EQ(write(tv[1], "new", 3), 3);
  read_at_once(tv[0], "new");
  close_pair(tv);
}
