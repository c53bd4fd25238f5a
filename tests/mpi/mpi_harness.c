/*
 * The little of the test harness (tests/harness/weft_test.h) that the MPI
 * test programs need: they have a main of their own, which must call
 * weft_mpi_init before anything else, so they cannot use runner.c's. Cases
 * are registered by TEST(name) and run by mpi_run_cases on the client
 * rank; a failed assertion aborts the client, which ends the MPI job with
 * a non-zero status.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_harness.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
void mpi_leak_check(void) {
  if (__lsan_do_recoverable_leak_check()) weft_test_fail(__FILE__, __LINE__, "leaks on rank 0");
}
#else
void mpi_leak_check(void) {}
#endif

#define MAX_CASES 128

static struct {
  const char *name;
  weft_test_fn *fn;
} cases[MAX_CASES];
static int ncases;

void weft_test_register(const char *name, weft_test_fn *fn) {
  if (ncases == MAX_CASES) abort();
  cases[ncases].name = name;
  cases[ncases].fn = fn;
  ncases++;
}

void weft_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(NULL);
  abort();
}

int mpi_run_cases(int argc, char **argv) {
  int failed = 0;
  for (int i = 0; i < argc; i++) {
    int k;
    for (k = 0; k < ncases && strcmp(cases[k].name, argv[i]) != 0; k++) {
    }
    if (k == ncases) {
      fprintf(stderr, "no case named '%s'\n", argv[i]);
      failed++;
      continue;
    }
    int64_t t0 = weft_now_ns();
    cases[k].fn();
    printf("ok %s (%lld ms)\n", cases[k].name, (long long)((weft_now_ns() - t0) / 1000000));
    fflush(stdout);
  }
  return failed;
}
