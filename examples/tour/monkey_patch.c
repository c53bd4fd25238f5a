/*
 * The monkey_patch demo: the seed's "from gevent import monkey;
 * monkey.patch_all()", as early as possible, after which blocking code runs
 * concurrently without a change to it. In C: weft_patch_all(), then plain
 * blocking socket code (socket, connect, send, recv, accept, sleep) run in
 * coroutines. The Python it mirrors:
 *
 *   from gevent import monkey
 *   monkey.patch_all()                     weft_patch_all()
 *   import gevent, socket, time
 *
 *   def handle(conn):                      handle(): plain blocking code
 *       req = conn.recv(64)
 *       time.sleep(1)                      a slow backend: sleep(1)
 *       conn.sendall(b'reply to ' + req)
 *       conn.close()
 *
 *   def serve(listener, n):
 *       for _ in range(n):
 *           conn, _ = listener.accept()
 *           gevent.spawn(handle, conn)
 *
 *   def fetch(port, i):                    fetch(): plain blocking code
 *       s = socket.create_connection(('127.0.0.1', port))
 *       s.sendall(b'request %d' % i)
 *       print(s.recv(64).decode())
 *       s.close()
 *
 *   listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen()
 *   start = time.time()
 *   gevent.spawn(serve, listener, 4)
 *   gevent.joinall([gevent.spawn(fetch, port, i) for i in range(4)])
 *   print('4 blocking fetches of a 1 s reply took %.3fs: they overlapped '
 *         '(one after another: 4 s)' % (time.time() - start))
 *
 * handle() and fetch() below call libc exactly as a single-threaded blocking
 * program would; what makes them overlap is weft_patch_all() and the
 * coroutines they run in. With --quick a "second" lasts 0.1 s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tour.h"
#include "weft.h"

static int64_t second_ns;
static struct sockaddr_in server_addr;

/* ---- plain blocking code: nothing here knows about weft ---- */

static int handle(void *arg) {
  int conn = (int)(intptr_t)arg;
  char req[64], reply[96];
  ssize_t n = recv(conn, req, sizeof req - 1, 0);
  if (n <= 0) {
    close(conn);
    return 1;
  }
  req[n] = 0;
  usleep((useconds_t)(second_ns / 1000)); /* time.sleep(1) */
  int len = snprintf(reply, sizeof reply, "reply to %s", req);
  send(conn, reply, (size_t)len, 0);
  close(conn);
  return 0;
}

static int fetch(void *arg) {
  int i = (int)(intptr_t)arg;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&server_addr, sizeof server_addr) != 0) return 1;
  char req[32], reply[96];
  int len = snprintf(req, sizeof req, "request %d", i);
  send(s, req, (size_t)len, 0);
  ssize_t n = recv(s, reply, sizeof reply - 1, 0);
  close(s);
  if (n <= 0) return 1;
  reply[n] = 0;
  printf("%s\n", reply);
  return 0;
}

/* ---- the coroutines that run it ---- */

typedef struct serve_arg {
  int listener;
  int n;
} serve_arg;

static int serve(void *arg) {
  serve_arg *a = arg;
  for (int i = 0; i < a->n; i++) {
    int conn = accept(a->listener, NULL, NULL); /* blocking accept, patched */
    if (conn < 0) return 1;
    if (weft_coro_spawn(NULL, handle, (void *)(intptr_t)conn, NULL) != 0) return 1;
  }
  return 0;
}

int tour_monkey_patch(const tour_opts *o) {
  tour_title("monkey_patch", "from gevent import monkey; monkey.patch_all()");
  int r = weft_patch_all();
  if (r) {
    fprintf(stderr, "monkey_patch: weft_patch_all: %s (is libweft_patch linked?)\n",
            weft_strerror(r));
    return 1;
  }
  second_ns = o->second_ns;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  server_addr = (struct sockaddr_in){.sin_family = AF_INET,
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof server_addr;
  if (listener < 0 || bind(listener, (struct sockaddr *)&server_addr, sizeof server_addr) != 0 ||
      getsockname(listener, (struct sockaddr *)&server_addr, &al) != 0 ||
      listen(listener, 16) != 0) {
    perror("monkey_patch: listener");
    return 1;
  }
  int64_t start = weft_now_ns();
  serve_arg sa = {listener, 4};
  weft_coro *server, *clients[4];
  r = weft_coro_spawn(&server, serve, &sa, NULL);
  for (int i = 0; r == 0 && i < 4; i++)
    r = weft_coro_spawn(&clients[i], fetch, (void *)(intptr_t)i, NULL);
  int failed = r != 0;
  for (int i = 0; r == 0 && i < 4; i++) {
    int st = 1;
    if (weft_coro_join(clients[i], WEFT_FOREVER, &st) != 0 || st != 0) failed = 1;
    weft_coro_release(clients[i]);
  }
  if (r == 0) {
    int st = 1;
    if (weft_coro_join(server, WEFT_FOREVER, &st) != 0 || st != 0) failed = 1;
    weft_coro_release(server);
  }
  weft_hub_wait(WEFT_FOREVER); /* the handlers */
  double delay = (double)(weft_now_ns() - start) / 1e9;
  close(listener);
  if (failed) {
    fprintf(stderr, "monkey_patch: a fetch failed\n");
    return 1;
  }
  printf("4 blocking fetches of a 1 s reply took %.3fs: they overlapped (one after another: "
         "4 s)\n", delay);
  if (o->quick) printf("(--quick: a second of the seed lasts 0.1 s here)\n");
  fflush(stdout);
  double sec = (double)o->second_ns / 1e9;
  return delay >= sec && delay < 3 * sec ? 0 : 1;
}
