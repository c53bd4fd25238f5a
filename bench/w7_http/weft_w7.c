/*
 * W7, weft's side: an HTTP/1.1 keep-alive "Hello, World!" server on one
 * thread, one coroutine per connection on weft's hub.
 *
 *   weft_w7 hub PORT        weft_coro_accept / weft_coro_read /
 *                           weft_coro_write_all (the hub's own API)
 *   weft_w7 patched PORT    plain blocking accept/read/write, made
 *                           cooperative by weft_patch_all() (the program is
 *                           linked with libweft_patch)
 *
 * Runs until killed; the driver (w7_drive.py) measures it with wrk.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "w7.h"
#include "weft.h"

static bool patched;

static int conn_main(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[16384];
  int state = 0;
  w7_out out = {0};
  for (;;) {
    ssize_t n = patched ? read(fd, buf, sizeof buf)
                        : weft_coro_read(fd, buf, sizeof buf, WEFT_FOREVER);
    if (n <= 0) break;
    size_t k = w7_scan(buf, (size_t)n, &state);
    if (!k) continue;
    const char *r = w7_responses(&out, k);
    size_t len = k * W7_RESPONSE_LEN;
    ssize_t w = patched ? write(fd, r, len) : weft_coro_write_all(fd, r, len, WEFT_FOREVER);
    if (w != (ssize_t)len) break;
  }
  free(out.buf);
  if (patched)
    close(fd);
  else
    weft_coro_close(fd);
  return 0;
}

static int acceptor(void *arg) {
  int lfd = (int)(intptr_t)arg;
  int one = 1;
  for (;;) {
    int c = patched ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC)
                    : weft_coro_accept(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK,
                                       WEFT_FOREVER);
    if (c < 0) bench_die("accept: %s", patched ? strerror(errno) : weft_strerror(c));
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    weft_coro_opts o = {.stack_size = 64 * 1024};
    if (weft_coro_spawn(NULL, conn_main, (void *)(intptr_t)c, &o) != 0) bench_die("spawn");
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "hub") != 0 && strcmp(argv[1], "patched") != 0)) {
    fprintf(stderr, "usage: weft_w7 hub|patched PORT\n");
    return 2;
  }
  patched = strcmp(argv[1], "patched") == 0;
  if (patched) {
    int e = weft_patch_all();
    if (e) {
      fprintf(stderr, "weft_w7: weft_patch_all: %s\n", weft_strerror(e));
      return 3;
    }
  }
  int port = (int)bench_parse_u64(argv[2], "PORT");
  /* The patched server's listener is a plain blocking socket, as in any
   * unmodified program; the hub's is non-blocking. */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (patched ? 0 : SOCK_NONBLOCK), 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0)
    bench_die("listen on %d: %s", port, strerror(errno));
  weft_coro *acc;
  if (weft_coro_spawn(&acc, acceptor, (void *)(intptr_t)lfd, NULL) != 0) bench_die("spawn");
  weft_coro_join(acc, WEFT_FOREVER, NULL);
  return 0;
}
