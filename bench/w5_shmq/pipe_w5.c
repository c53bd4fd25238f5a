/*
 * bench/w5_shmq/pipe_w5.c: W5 on a C pipe (peer).
 *
 *  - "c.pipe":      pipe(2) with its default size (64 KiB here); the
 *                   producer makes one write(2) per message; the consumer
 *                   reads whatever is there (up to 64 KiB a read) and takes
 *                   the messages out of its buffer: how a C program reads a
 *                   stream of fixed-size messages.
 *  - "c.pipe.1MiB": the same with the pipe grown to 1 MiB (F_SETPIPE_SZ),
 *                   which suits 1 MiB messages.
 */
#include "w5.h"

#include <errno.h>
#include <fcntl.h>


static int fds[2];
static unsigned char rbuf[65536];
static size_t rhave, rpos;

static void setup_size(size_t pipe_size) {
  if (pipe(fds) != 0) bench_die("pipe: %s", strerror(errno));
  if (pipe_size && fcntl(fds[1], F_SETPIPE_SZ, (int)pipe_size) < 0)
    bench_die("F_SETPIPE_SZ: %s", strerror(errno));
}
static void setup_default(size_t size, uint64_t total) {
  (void)size;
  (void)total;
  setup_size(0);
}
static void setup_1m(size_t size, uint64_t total) {
  (void)size;
  (void)total;
  setup_size(1 << 20);
}

static void send_msg(const void *m, size_t size) {
  const char *p = m;
  while (size) {
    ssize_t w = write(fds[1], p, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      bench_die("write: %s", strerror(errno));
    }
    p += w;
    size -= (size_t)w;
  }
}

static void recv_msg(void *buf, size_t size) {
  unsigned char *out = buf;
  size_t need = size;
  while (need) {
    if (rpos == rhave) {
      ssize_t r = read(fds[0], rbuf, sizeof rbuf);
      if (r <= 0) {
        if (r < 0 && errno == EINTR) continue;
        bench_die("read: %s", r ? strerror(errno) : "end of file");
      }
      rhave = (size_t)r;
      rpos = 0;
    }
    size_t take = rhave - rpos < need ? rhave - rpos : need;
    memcpy(out, rbuf + rpos, take);
    rpos += take;
    out += take;
    need -= take;
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "c.pipe.1MiB") == 0) {
    w5_impl impl = {setup_1m, send_msg, NULL, recv_msg};
    return w5_main(argc, argv, &impl, "c.pipe.1MiB");
  }
  w5_impl impl = {setup_default, send_msg, NULL, recv_msg};
  return w5_main(argc, argv, &impl, "c.pipe");
}
