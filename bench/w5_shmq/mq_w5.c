/*
 * bench/w5_shmq/mq_w5.c: W5 on POSIX message queues (peer).
 *
 * "posix.mq": mq_open with the largest queue this machine allows an
 * unprivileged setting of (/proc/sys/fs/mqueue: 10 messages of up to
 * 8 KiB), one mq_send / mq_receive per message. 1 MiB messages exceed the
 * size limit: that variant exits 3 (not measured), as the harness expects.
 */
#include "w5.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>


static mqd_t mq;

static void setup(size_t size, uint64_t total) {
  (void)total;
  char name[64];
  snprintf(name, sizeof name, "/weft-w5-%d", (int)getpid());
  struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = (long)size};
  mq = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
  if (mq == (mqd_t)-1) bench_die("mq_open: %s", strerror(errno));
  mq_unlink(name); /* both ends hold it open; nothing is left behind */
}

static void send_msg(const void *m, size_t size) {
  while (mq_send(mq, m, size, 0) != 0)
    if (errno != EINTR) bench_die("mq_send: %s", strerror(errno));
}

static void recv_msg(void *buf, size_t size) {
  ssize_t r;
  while ((r = mq_receive(mq, buf, size, NULL)) < 0)
    if (errno != EINTR) bench_die("mq_receive: %s", strerror(errno));
  if ((size_t)r != size) bench_die("mq_receive: %zd bytes", r);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[2], "1MiB") == 0) {
    fprintf(stderr, "posix.mq: messages are limited to 8 KiB here (fs.mqueue.msgsize_max)\n");
    return 3;
  }
  w5_impl impl = {setup, send_msg, NULL, recv_msg};
  return w5_main(argc, argv, &impl, "posix.mq");
}
