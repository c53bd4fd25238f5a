/*
 * W7p: what a patched blocking call costs against the native one.
 *
 * Built twice from this file: "patchcost_native" (no libweft_patch: libc's
 * own calls) and "patchcost_patched" (linked with libweft_patch, and
 * weft_patch_all() called first). Both run the same loops; unit ns per
 * iteration, the median of 5 batches of N.
 *
 *   patchcost_* IMPL VARIANT N
 *
 * variants:
 *   "socket, no hub"      write 1 byte + read 1 byte on a socketpair, on a
 *                         thread with no hub (patched: the check that
 *                         forwards to libc)
 *   "socket, coroutine"   the same inside a coroutine; the data is always
 *                         there, so nothing waits (patched: the MSG_DONTWAIT
 *                         fast path)
 *   "pipe, coroutine"     the same on a pipe (patched: the non-socket path:
 *                         a failed send/recv, fcntl, fstat, poll)
 *   "pingpong"            two coroutines bounce one byte over a socketpair,
 *                         each waiting for the other (native binary: the
 *                         hub's weft_coro_read/weft_coro_write; patched:
 *                         plain blocking read/write) — ns per round trip
 *   "usleep(1), coroutine" (patched: a hub timer; native: the thread sleeps)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "weft.h"

#ifndef PATCHED
#define PATCHED 0
#endif

static uint64_t n_iter;
static int fds[2];
static double result_ns;

static double loop_rw(void) {
  char c = 'x';
  double t0 = bench_now_s();
  for (uint64_t i = 0; i < n_iter; i++) {
    if (write(fds[1], &c, 1) != 1) bench_die("write: %s", strerror(errno));
    if (read(fds[0], &c, 1) != 1) bench_die("read: %s", strerror(errno));
  }
  return (bench_now_s() - t0) * 1e9 / (double)n_iter;
}

static double loop_usleep(void) {
  uint64_t n = n_iter / 100 ? n_iter / 100 : 1;
  double t0 = bench_now_s();
  for (uint64_t i = 0; i < n; i++) usleep(1);
  return (bench_now_s() - t0) * 1e9 / (double)n;
}

static int in_coro_rw(void *arg) {
  (void)arg;
  result_ns = loop_rw();
  return 0;
}

static int in_coro_usleep(void *arg) {
  (void)arg;
  result_ns = loop_usleep();
  return 0;
}

/* pingpong: "ping" writes to fds[0] and waits for the answer; "pong"
 * echoes from fds[1]. */
static ssize_t rd(int fd, char *c) {
  return PATCHED ? read(fd, c, 1) : weft_coro_read(fd, c, 1, WEFT_FOREVER);
}
static ssize_t wr(int fd, const char *c) {
  return PATCHED ? write(fd, c, 1) : weft_coro_write(fd, c, 1, WEFT_FOREVER);
}

static int pong(void *arg) {
  (void)arg;
  char c;
  for (uint64_t i = 0; i < n_iter; i++) {
    if (rd(fds[1], &c) != 1 || wr(fds[1], &c) != 1) bench_die("pong");
  }
  return 0;
}

static int ping(void *arg) {
  (void)arg;
  char c = 'p';
  double t0 = bench_now_s();
  for (uint64_t i = 0; i < n_iter; i++) {
    if (wr(fds[0], &c) != 1 || rd(fds[0], &c) != 1) bench_die("ping");
  }
  result_ns = (bench_now_s() - t0) * 1e9 / (double)n_iter;
  return 0;
}

static double run_once(const char *variant) {
  if (strcmp(variant, "socket, no hub") == 0) return loop_rw();
  weft_coro *c, *d;
  if (strcmp(variant, "socket, coroutine") == 0 || strcmp(variant, "pipe, coroutine") == 0) {
    if (weft_coro_spawn(&c, in_coro_rw, NULL, NULL) != 0) bench_die("spawn");
  } else if (strcmp(variant, "usleep(1), coroutine") == 0) {
    if (weft_coro_spawn(&c, in_coro_usleep, NULL, NULL) != 0) bench_die("spawn");
  } else {
    if (weft_coro_spawn(&d, pong, NULL, NULL) != 0) bench_die("spawn");
    if (weft_coro_spawn(&c, ping, NULL, NULL) != 0) bench_die("spawn");
    weft_coro_join(d, WEFT_FOREVER, NULL);
    weft_coro_release(d);
  }
  weft_coro_join(c, WEFT_FOREVER, NULL);
  weft_coro_release(c);
  return result_ns;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: patchcost IMPL VARIANT N\n");
    return 2;
  }
  const char *impl = argv[1], *variant = argv[2];
  n_iter = bench_parse_u64(argv[3], "N");
  if (PATCHED) {
    int e = weft_patch_all();
    if (e) {
      fprintf(stderr, "patchcost: weft_patch_all: %s\n", weft_strerror(e));
      return 3;
    }
  }
  bool pipe_kind = strcmp(variant, "pipe, coroutine") == 0;
  if (pipe_kind ? pipe(fds) != 0 : socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
    bench_die("pipe/socketpair: %s", strerror(errno));
  /* pipe() gives [read end, write end]: loop_rw writes fds[1], reads fds[0]. */
  double samples[5];
  run_once(variant); /* warm-up */
  double t0 = bench_now_s();
  for (int i = 0; i < 5; i++) samples[i] = run_once(variant);
  double secs = bench_now_s() - t0;
  qsort(samples, 5, sizeof samples[0], cmp);
  bench_emit("W7p", impl, variant, n_iter, samples[2], "ns", secs);
  return 0;
}
