/*
 * W7, the libuv peer: the same HTTP/1.1 keep-alive "Hello, World!" server
 * on one uv loop (one thread), TCP_NODELAY on every connection, k
 * responses written with one uv_write after a read that completed k
 * requests. Runs until killed.   uv_w7 PORT
 */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "bench.h"
#include "w7.h"

typedef struct conn {
  uv_tcp_t tcp;
  int state;
  char buf[16384];
  w7_out out;
} conn;

typedef struct wreq {
  uv_write_t req;
  char *data; /* k responses, owned */
} wreq;

static uv_loop_t *loop;

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  free(c->out.buf);
  free(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  conn *c = h->data;
  *b = uv_buf_init(c->buf, sizeof c->buf);
}

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
    uv_close((uv_handle_t *)req->handle, on_close);
  free(w->data);
  free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  (void)b;
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
    return;
  }
  size_t k = w7_scan(c->buf, (size_t)n, &c->state);
  if (!k) return;
  size_t len = k * W7_RESPONSE_LEN;
  /* Try to write at once (uv_try_write), as a tuned libuv server does;
   * queue whatever is left. */
  const char *r = w7_responses(&c->out, k);
  uv_buf_t ub = uv_buf_init((char *)r, (unsigned)len);
  int done = uv_try_write(s, &ub, 1);
  if (done == (int)len) return;
  if (done < 0) done = 0;
  wreq *w = malloc(sizeof *w);
  w->data = malloc(len - (size_t)done);
  memcpy(w->data, r + done, len - (size_t)done);
  ub = uv_buf_init(w->data, (unsigned)(len - (size_t)done));
  if (uv_write(&w->req, s, &ub, 1, on_write) != 0) {
    free(w->data);
    free(w);
    uv_close((uv_handle_t *)s, on_close);
  }
}

static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0) bench_die("listen: %s", uv_strerror(status));
  conn *c = calloc(1, sizeof *c);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: uv_w7 PORT\n");
    return 2;
  }
  int port = (int)bench_parse_u64(argv[1], "PORT");
  loop = uv_default_loop();
  uv_tcp_t srv;
  uv_tcp_init(loop, &srv);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  int e = uv_tcp_bind(&srv, (const struct sockaddr *)&a, 0);
  if (!e) e = uv_listen((uv_stream_t *)&srv, 1024, on_conn);
  if (e) bench_die("listen on %d: %s", port, uv_strerror(e));
  return uv_run(loop, UV_RUN_DEFAULT);
}
