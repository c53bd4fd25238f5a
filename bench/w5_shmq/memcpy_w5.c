/*
 * bench/w5_shmq/memcpy_w5.c: memcpy bandwidth, the ceiling for 1 MiB
 * messages (peer "c.memcpy", variant 1MiB, GB/s).
 *
 * One process copies a 1 MiB buffer into another N times (the copy W5's
 * messages need at least once; both buffers stay in cache, as a queue's
 * ring of a few MiB largely does), and, as "c.memcpy.64MiB", a 64 MiB
 * buffer (out of cache) N/64 times. The destination is read back after
 * each copy so the compiler cannot drop it.
 */
#include "bench.h"

#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc != 4) bench_die("usage: memcpy_w5 IMPL 1MiB N");
  if (strcmp(argv[2], "1MiB") != 0) bench_die("variant must be 1MiB");
  size_t size;
  if (strcmp(argv[1], "c.memcpy") == 0) size = (size_t)1 << 20;
  else if (strcmp(argv[1], "c.memcpy.64MiB") == 0) size = (size_t)64 << 20;
  else bench_die("unknown impl '%s'", argv[1]);
  uint64_t n = bench_parse_u64(argv[3], "N");
  if (size > ((size_t)1 << 20)) n = n / 64 ? n / 64 : 1;
  unsigned char *a = aligned_alloc(4096, size), *b = aligned_alloc(4096, size);
  if (!a || !b) bench_die("out of memory");
  memset(a, 1, size);
  memset(b, 2, size);
  uint64_t sink = 0;
  for (uint64_t i = 0; i < n / 8 + 1; i++) { /* warm-up */
    a[0] = (unsigned char)i;
    memcpy(b, a, size);
    sink += b[size - 1];
  }
  double t0 = bench_now_s();
  for (uint64_t i = 0; i < n; i++) {
    a[0] = (unsigned char)i;
    memcpy(b, a, size);
    sink += b[0];
  }
  double secs = bench_now_s() - t0;
  if (sink == 0) bench_die("copies were lost");
  bench_emit("W5", argv[1], "1MiB", n, (double)n * (double)size / secs * 1e-9, "GB/s", secs);
  return 0;
}
