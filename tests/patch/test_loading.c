/* How libweft_patch gets into a process: a program not linked with it gets
 * WEFT_ENOTSUP from weft_patch_all (the hooks are never silently missing),
 * and the same program run with LD_PRELOAD=libweft_patch.so is patched. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

TEST(without_the_library_patch_all_says_enotsup) {
  if (getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "weft_patch")) {
    fprintf(stderr, "SKIPPED: run with libweft_patch preloaded\n");
    exit(77);
  }
  ASSERT_ERR(weft_patch_all(), WEFT_ENOTSUP);
  ASSERT(!weft_patch_active());
}

static int reader(void *arg) {
  int fd = (int)(intptr_t)arg;
  char c;
  return read(fd, &c, 1) == 1 ? c : -1;
}

/* In the preloaded child: a coroutine's blocking read must park it. */
static int preloaded_main(void) {
  if (weft_patch_all() != 0) return 10;
  int p[2];
  if (pipe(p) != 0) return 11;
  weft_coro *c;
  if (weft_coro_spawn(&c, reader, (void *)(intptr_t)p[0], NULL) != 0) return 12;
  /* Not patched, the spawn would never come back (the read blocks). */
  if (write(p[1], "L", 1) != 1) return 13;
  int st = 0;
  if (weft_coro_join(c, weft_deadline_in_s(10), &st) != 0 || st != 'L') return 14;
  return 0;
}

TEST(ld_preload_patches_an_unlinked_program) {
  if (getenv("WEFT_TEST_PRELOADED")) exit(preloaded_main());
#ifdef WEFT_TEST_SANITIZED
  /* The sanitizer runtime must come first in the process; a preloaded
   * library would come before it. */
  fprintf(stderr, "SKIPPED: LD_PRELOAD cannot be tested in a sanitizer build\n");
  exit(77);
#else
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    alarm(20);
    setenv("LD_PRELOAD", WEFT_PATCH_SO, 1);
    setenv("WEFT_TEST_PRELOADED", "1", 1);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) _exit(20);
    self[n] = 0;
    execl(self, self, "ld_preload_patches_an_unlinked_program", (char *)NULL);
    _exit(21);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
#endif
}
