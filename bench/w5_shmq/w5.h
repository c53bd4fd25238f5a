/*
 * bench/w5_shmq/w5.h: the W5 scaffold shared by the C programs.
 *
 * W5 moves N messages from a producer process to a consumer process (a
 * fork()ed child) and reports msgs/s (64-byte messages) or GB/s (1 MiB
 * messages) = N / wall time, from the producer's first send to the
 * consumer's last receive. Each program supplies the transport (w5_impl:
 * set up before the fork, send, receive); the fork, the warm-up, the
 * timing, the checks and the output are here, so every transport is
 * measured the same way.
 *
 * Messages: the first 8 bytes of message i carry i (from 0); a 1 MiB
 * message also carries a fixed tail word. The consumer checks both on every
 * message and the run exits 1 on the first one out of place: a transport
 * that loses, duplicates or reorders measures nothing.
 *
 * Command line of each program: IMPL VARIANT N, VARIANT "64B" or "1MiB".
 * It runs N/8 messages as a warm-up (not timed), then N, and prints one
 * JSON line.
 */
#ifndef WEFT_BENCH_W5_H
#define WEFT_BENCH_W5_H

#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define W5_TAIL 0x5757575757575757ull

typedef struct w5_shared {
  _Atomic int warm;        /* consumer took the warm-up messages */
  _Atomic int go;          /* producer may start the timed run */
  _Atomic int64_t end_ns;  /* consumer took the last timed message */
  _Atomic int bad;         /* consumer saw a message out of place */
  _Atomic uint64_t bad_at; /* which */
} w5_shared;

typedef struct w5_impl {
  /* Before the fork: make the transport (both ends inherit it). */
  void (*setup)(size_t msg_size, uint64_t total);
  /* Producer: send message seq 0..total-1, each msg_size bytes at msg
   * (the program writes seq into it first). May batch internally. */
  void (*send)(const void *msg, size_t msg_size);
  /* Producer: all sent (flush a batch). May be NULL. */
  void (*flush)(void);
  /* Consumer: receive the next message into buf (msg_size bytes). */
  void (*recv)(void *buf, size_t msg_size);
} w5_impl;

static inline int64_t w5_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void w5_stamp(unsigned char *m, size_t size, uint64_t seq) {
  memcpy(m, &seq, 8);
  if (size >= 64) {
    uint64_t t = W5_TAIL;
    memcpy(m + size - 8, &t, 8);
  }
}

static inline bool w5_check(const unsigned char *m, size_t size, uint64_t seq) {
  uint64_t s, t = W5_TAIL;
  memcpy(&s, m, 8);
  if (s != seq) return false;
  if (size >= 64) memcpy(&t, m + size - 8, 8);
  return t == W5_TAIL;
}

/* Parse the variant: message size. */
static inline size_t w5_size(const char *variant) {
  if (strcmp(variant, "64B") == 0) return 64;
  if (strcmp(variant, "1MiB") == 0) return (size_t)1 << 20;
  bench_die("unknown variant '%s' (64B or 1MiB)", variant);
}

static inline int w5_main(int argc, char **argv, const w5_impl *impl, const char *impl_name) {
  if (argc != 4) bench_die("usage: %s IMPL VARIANT N", argv[0]);
  if (strcmp(argv[1], impl_name) != 0) bench_die("unknown impl '%s'", argv[1]);
  size_t size = w5_size(argv[2]);
  uint64_t n = bench_parse_u64(argv[3], "N"), warm = n / 8 ? n / 8 : 1, total = warm + n;
  w5_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
  if (sh == MAP_FAILED) bench_die("mmap failed");
  impl->setup(size, total);
  unsigned char *msg = aligned_alloc(4096, size < 4096 ? 4096 : size);
  if (!msg) bench_die("out of memory");
  memset(msg, 0xab, size);
  fflush(NULL);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) bench_die("fork failed");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    for (uint64_t i = 0; i < total; i++) {
      impl->recv(msg, size);
      if (!w5_check(msg, size, i)) {
        atomic_store(&sh->bad_at, i);
        atomic_store(&sh->bad, 1);
        _exit(1);
      }
      if (i + 1 == warm) atomic_store(&sh->warm, 1);
    }
    atomic_store(&sh->end_ns, w5_now_ns());
    _exit(0);
  }
  uint64_t i = 0;
  for (; i < warm; i++) {
    w5_stamp(msg, size, i);
    impl->send(msg, size);
  }
  if (impl->flush) impl->flush();
  while (!atomic_load(&sh->warm) && !atomic_load(&sh->bad)) usleep(100);
  int64_t t0 = w5_now_ns();
  for (; i < total; i++) {
    w5_stamp(msg, size, i);
    impl->send(msg, size);
  }
  if (impl->flush) impl->flush();
  int st;
  if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
      atomic_load(&sh->bad))
    bench_die("consumer failed (message %" PRIu64 " out of place: %d)",
              (uint64_t)atomic_load(&sh->bad_at), atomic_load(&sh->bad));
  double secs = (double)(atomic_load(&sh->end_ns) - t0) * 1e-9;
  if (size == 64)
    bench_emit("W5", impl_name, argv[2], n, (double)n / secs, "msgs/s", secs);
  else
    bench_emit("W5", impl_name, argv[2], n, (double)n * (double)size / secs * 1e-9, "GB/s", secs);
  return 0;
}

#endif
