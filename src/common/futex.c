/*
 * Futex wait/wake. FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC
 * timeout, which is exactly weft's deadline, so no relative conversion (and
 * no drift on retries) is needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/futex.h"
#include "weft/common.h"

static int op_flags(unsigned flags) {
  return (flags & WEFT__FUTEX_SHARED) ? 0 : FUTEX_PRIVATE_FLAG;
}

int weft__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns,
                     unsigned flags) {
  struct timespec ts, *tsp = NULL;
  if (deadline_ns != WEFT_FOREVER) {
    if (deadline_ns <= 0) deadline_ns = 0;
    ts.tv_sec = deadline_ns / 1000000000;
    ts.tv_nsec = deadline_ns % 1000000000;
    tsp = &ts;
  }
  long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | op_flags(flags), expected, tsp,
                   NULL, FUTEX_BITSET_MATCH_ANY);
  if (r == 0) return 0;
  return -errno;
}

int weft__futex_wake(_Atomic uint32_t *addr, int n, unsigned flags) {
  long r = syscall(SYS_futex, addr, FUTEX_WAKE | op_flags(flags), n, NULL, NULL, 0);
  return r < 0 ? -errno : (int)r;
}
