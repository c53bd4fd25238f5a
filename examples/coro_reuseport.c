/*
 * Several hubs, one per thread: a multi-core echo server with SO_REUSEPORT.
 *
 * Each server thread has its own hub and its own listening socket bound to
 * the same port with SO_REUSEPORT, so the kernel spreads new connections
 * over the threads; each connection is served by a coroutine on the thread
 * that accepted it. Nothing is shared between the hubs.
 *
 *   example_coro_reuseport [THREADS [CLIENTS]]
 *
 * Runs THREADS (default 2) server threads on a free loopback port, then a
 * client thread whose hub runs CLIENTS (default 200) client coroutines at
 * once, each connecting, sending 20 lines and checking the echoes. Prints
 * how many connections each server thread took and exits 0 when every echo
 * came back right.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"

typedef struct server {
  int index;
  int listen_fd;
  int stop_pipe[2];    /* the main thread writes a byte to stop the server */
  int served;          /* connections accepted (read after join) */
} server;

/* One connection: echo lines back, prefixed with the server's index. */
typedef struct conn {
  int fd;
  int index;
} conn;

static int serve_conn(void *arg) {
  conn c = *(conn *)arg;
  free(arg);
  char buf[512], out[600];
  for (;;) {
    ssize_t n = weft_coro_recv(c.fd, buf, sizeof buf - 1, 0, weft_deadline_in_s(30));
    if (n <= 0) break;
    int len = snprintf(out, sizeof out, "%d:%.*s", c.index, (int)n, buf);
    if (weft_coro_write_all(c.fd, out, (size_t)len, weft_deadline_in_s(30)) < 0) break;
  }
  weft_coro_close(c.fd);
  return 0;
}

/* Waits (cooperatively) for the stop byte, then closes the listening
 * socket: the accept loop wakes with WEFT_EBADF. */
static int stopper(void *arg) {
  server *s = arg;
  char b;
  weft_coro_read(s->stop_pipe[0], &b, 1, WEFT_FOREVER);
  weft_coro_close(s->listen_fd);
  return 0;
}

static void *server_main(void *arg) {
  server *s = arg;
  weft_coro_spawn(NULL, stopper, s, NULL);
  for (;;) {
    int fd = weft_coro_accept(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC,
                              WEFT_FOREVER);
    if (fd < 0) break; /* WEFT_EBADF: stopped */
    conn *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    *c = (conn){fd, s->index};
    s->served++;
    weft_coro_opts o = {.name = "conn"};
    if (weft_coro_spawn(NULL, serve_conn, c, &o) != 0) {
      free(c);
      close(fd);
    }
  }
  weft_hub_wait(weft_deadline_in_s(30)); /* let open connections finish */
  weft_coro_close(s->stop_pipe[0]);
  close(s->stop_pipe[1]);
  return NULL;
}

static int listen_on(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 512) != 0) {
    perror("bind/listen");
    exit(1);
  }
  socklen_t l = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &l);
  *port = ntohs(a.sin_port);
  return fd;
}

/* ------------------------------------------------------------ clients */

static uint16_t the_port;
static int nthreads;
static int per_server[64];

static int client(void *arg) {
  int id = (int)(intptr_t)arg;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(the_port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int e = weft_coro_connect(fd, (struct sockaddr *)&a, sizeof a, weft_deadline_in_s(10));
  if (e) {
    fprintf(stderr, "client %d: connect: %s\n", id, weft_strerror(e));
    return 1;
  }
  int server_index = -1;
  for (int i = 0; i < 20; i++) {
    char line[64], back[128];
    int len = snprintf(line, sizeof line, "client %d line %d\n", id, i);
    if (weft_coro_write_all(fd, line, (size_t)len, weft_deadline_in_s(10)) < 0) return 1;
    /* The echo is "<server>:<line>"; read until the newline. */
    size_t got = 0;
    while (got == 0 || back[got - 1] != '\n') {
      ssize_t n = weft_coro_recv(fd, back + got, sizeof back - 1 - got, 0, weft_deadline_in_s(10));
      if (n <= 0) return 1;
      got += (size_t)n;
    }
    back[got] = 0;
    char *colon = strchr(back, ':');
    if (!colon || strcmp(colon + 1, line) != 0) {
      fprintf(stderr, "client %d: bad echo '%s'\n", id, back);
      return 1;
    }
    server_index = atoi(back);
  }
  if (server_index >= 0 && server_index < nthreads) per_server[server_index]++;
  weft_coro_close(fd);
  return 0;
}

int main(int argc, char **argv) {
  nthreads = argc > 1 ? atoi(argv[1]) : 2;
  int nclients = argc > 2 ? atoi(argv[2]) : 200;
  if (nthreads < 1 || nthreads > 64 || nclients < 1) {
    fprintf(stderr, "usage: %s [THREADS (1-64) [CLIENTS]]\n", argv[0]);
    return 2;
  }
  server servers[64];
  pthread_t threads[64];
  for (int i = 0; i < nthreads; i++) {
    servers[i] = (server){.index = i};
    servers[i].listen_fd = listen_on(&the_port); /* port 0 first, then the same one */
    if (pipe(servers[i].stop_pipe) != 0) return 1;
  }
  for (int i = 0; i < nthreads; i++) pthread_create(&threads[i], NULL, server_main, &servers[i]);

  /* The clients: many coroutines on this thread's own hub. */
  weft_coro_group *g;
  weft_coro_group_create(&g);
  weft_coro_opts o = {.group = g, .name = "client"};
  for (int i = 0; i < nclients; i++) weft_coro_spawn(NULL, client, (void *)(intptr_t)i, &o);
  int failed = weft_coro_group_join(g, weft_deadline_in_s(60)) != 0;
  weft_coro_group_destroy(g);

  for (int i = 0; i < nthreads; i++) {
    if (write(servers[i].stop_pipe[1], "x", 1) != 1) failed = 1;
    pthread_join(threads[i], NULL);
  }
  int total = 0;
  printf("%d clients, %d server threads (one hub each, SO_REUSEPORT):", nclients, nthreads);
  for (int i = 0; i < nthreads; i++) {
    printf(" thread %d took %d", i, servers[i].served);
    total += per_server[i];
  }
  printf("; %d clients got every echo right\n", total);
  return failed || total != nclients;
}
