/*
 * The test runner: registration, assertion failures, and running cases in
 * forked children with a timeout when a test binary is run by hand.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include "weft_test.h"

#define MAX_TESTS 512

static struct {
  const char *name;
  weft_test_fn *fn;
} tests[MAX_TESTS];
static int ntests;
static const char *current = "?";

void weft_test_register(const char *name, weft_test_fn *fn) {
  if (ntests == MAX_TESTS) {
    fprintf(stderr, "too many tests\n");
    abort();
  }
  tests[ntests].name = name;
  tests[ntests].fn = fn;
  ntests++;
}

void weft_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "FAIL %s at %s:%d: ", current, file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}

void weft_test_wait_asleep_in_futex(int pid, uint64_t tid) {
  char path[96], buf[256];
  if (pid)
    snprintf(path, sizeof path, "/proc/%d/task/%llu/syscall", pid, (unsigned long long)tid);
  else
    snprintf(path, sizeof path, "/proc/self/task/%llu/syscall", (unsigned long long)tid);
  for (int i = 0; i < 10000; i++) {
    FILE *f = fopen(path, "re");
    if (!f) weft_test_fail(__FILE__, __LINE__, "cannot open %s", path);
    long nr = -1;
    if (fgets(buf, sizeof buf, f)) sscanf(buf, "%ld", &nr);
    fclose(f);
    if (nr == SYS_futex) return;
    usleep(1000);
  }
  weft_test_fail(__FILE__, __LINE__, "task %llu never went to sleep in futex()",
                 (unsigned long long)tid);
}

static atomic_long g_allocs, g_frees;

static void *count_malloc(size_t n, void *ud) {
  (void)ud;
  void *p = malloc(n);
  if (p) atomic_fetch_add(&g_allocs, 1);
  return p;
}
static void *count_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  void *q = realloc(p, n);
  if (!p && q) atomic_fetch_add(&g_allocs, 1);
  return q;
}
static void count_free(void *p, void *ud) {
  (void)ud;
  if (p) atomic_fetch_add(&g_frees, 1);
  free(p);
}

void weft_test_use_counting_allocator(void) {
  weft_allocator a = {count_malloc, count_realloc, count_free, NULL};
  int r = weft_set_allocator(&a);
  if (r) weft_test_fail(__FILE__, __LINE__, "weft_set_allocator: %s", weft_err_name(r));
}
long weft_test_allocs(void) { return atomic_load(&g_allocs); }
long weft_test_frees(void) { return atomic_load(&g_frees); }
long weft_test_live_allocs(void) { return atomic_load(&g_allocs) - atomic_load(&g_frees); }

long weft_test_knob(const char *name, long def) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  char *end;
  long x = strtol(v, &end, 10);
  return *end ? def : x;
}

weft_test_child weft_test_fork_capture(void) {
  int p[2];
  weft_test_child c = {0, -1};
  if (pipe(p) != 0) weft_test_fail(__FILE__, __LINE__, "pipe failed");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) weft_test_fail(__FILE__, __LINE__, "fork failed");
  if (pid == 0) {
    close(p[0]);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    signal(SIGABRT, SIG_DFL);
    return c;
  }
  close(p[1]);
  c.pid = pid;
  c.fd = p[0];
  return c;
}

void weft_test_expect_abort(weft_test_child c, const char *needle, const char *file,
                            int line, const char *what) {
  char out[4096];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof out - 1 && (r = read(c.fd, out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
  out[n] = 0;
  close(c.fd);
  int st;
  while (waitpid(c.pid, &st, 0) < 0) {
  }
  if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
    weft_test_fail(file, line, "%s did not abort (status 0x%x); stderr: %s", what, st, out);
  if (!strstr(out, needle))
    weft_test_fail(file, line, "%s aborted, but stderr lacks \"%s\": %s", what, needle, out);
}

static int run_in_child(int i, int timeout_s) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm((unsigned)timeout_s);
    current = tests[i].name;
    tests[i].fn();
    fflush(NULL);
    _exit(0);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
    fprintf(stderr, "TIMEOUT %s after %d s\n", tests[i].name, timeout_s);
  return 1;
}

int main(int argc, char **argv) {
  /* The case order is the order of definition in the file. */
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < ntests; i++) puts(tests[i].name);
    return 0;
  }
  if (argc > 1) {
    for (int i = 0; i < ntests; i++) {
      if (strcmp(tests[i].name, argv[1]) == 0) {
        current = tests[i].name;
        tests[i].fn();
        return 0;
      }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  int failed = 0;
  int timeout_s = (int)weft_test_knob("WEFT_TEST_TIMEOUT", 60);
  for (int i = 0; i < ntests; i++) {
    int r = run_in_child(i, timeout_s);
    printf("%s %s\n", r ? "not ok" : "ok", tests[i].name);
    failed += r;
  }
  printf("%d passed, %d failed\n", ntests - failed, failed);
  return failed != 0;
}
