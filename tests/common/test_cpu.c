/*
 * Tests for the usable CPU count (src/common/cpu.c): the affinity mask on
 * the real system, and the cgroup quota walk on fake /proc and /sys trees
 * built under a mkdtemp directory and handed to weft__cgroup_cpu_limit as
 * its root.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/alloc.h"
#include "common/cpu.h"
#include "weft_test.h"

/* ------------------------------------------------------------ fake trees */

static char g_root[64];

static void make_root(void) {
  strcpy(g_root, "/tmp/weft-cpu-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(g_root));
}

/* Create root/rel (with parent directories) holding text. */
static void put_file(const char *rel, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_root, rel);
  for (char *p = path + strlen(g_root) + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      weft_test_fail(__FILE__, __LINE__, "mkdir %s: %s", path, strerror(errno));
    *p = '/';
  }
  FILE *f = fopen(path, "w");
  if (!f) weft_test_fail(__FILE__, __LINE__, "fopen %s: %s", path, strerror(errno));
  fputs(text, f);
  fclose(f);
}

static void put_dir(const char *rel) {
  char marker[512];
  snprintf(marker, sizeof marker, "%s/.keep", rel);
  put_file(marker, "");
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void remove_root(void) { nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static int limit(void) { return weft__cgroup_cpu_limit(g_root); }

/* ------------------------------------------------------------- cgroup v2 */

TEST(v2_quota_rounds_up) {
  make_root();
  put_file("proc/self/cgroup", "0::/a/b\n");
  put_file("sys/fs/cgroup/a/b/cpu.max", "150000 100000\n");
  ASSERT_EQ(limit(), 2);
  put_file("sys/fs/cgroup/a/b/cpu.max", "100000 100000\n");
  ASSERT_EQ(limit(), 1);
  put_file("sys/fs/cgroup/a/b/cpu.max", "100001 100000\n");
  ASSERT_EQ(limit(), 2);
  put_file("sys/fs/cgroup/a/b/cpu.max", "50000 100000\n"); /* half a CPU is still one */
  ASSERT_EQ(limit(), 1);
  put_file("sys/fs/cgroup/a/b/cpu.max", "800000 100000\n");
  ASSERT_EQ(limit(), 8);
  remove_root();
}

TEST(v2_quota_without_period_uses_default_period) {
  make_root();
  put_file("proc/self/cgroup", "0::/a\n");
  put_file("sys/fs/cgroup/a/cpu.max", "250000\n");
  ASSERT_EQ(limit(), 3);
  remove_root();
}

TEST(v2_max_is_no_limit) {
  make_root();
  put_file("proc/self/cgroup", "0::/a/b\n");
  put_file("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
  ASSERT_EQ(limit(), 0);
  remove_root();
}

TEST(v2_parent_limit_lower_than_leaf_wins) {
  make_root();
  put_file("proc/self/cgroup", "0::/a/b\n");
  put_file("sys/fs/cgroup/a/b/cpu.max", "400000 100000\n");
  put_file("sys/fs/cgroup/a/cpu.max", "100000 100000\n");
  ASSERT_EQ(limit(), 1);
  remove_root();
}

TEST(v2_leaf_limit_lower_than_parent_wins) {
  make_root();
  put_file("proc/self/cgroup", "0::/a/b\n");
  put_file("sys/fs/cgroup/a/b/cpu.max", "200000 100000\n");
  put_file("sys/fs/cgroup/a/cpu.max", "600000 100000\n");
  ASSERT_EQ(limit(), 2);
  remove_root();
}

TEST(v2_unlimited_leaf_under_limited_parent) {
  make_root();
  put_file("proc/self/cgroup", "0::/a/b/c\n");
  put_file("sys/fs/cgroup/a/b/c/cpu.max", "max 100000\n");
  put_file("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
  put_file("sys/fs/cgroup/a/cpu.max", "300000 100000\n");
  ASSERT_EQ(limit(), 3);
  remove_root();
}

TEST(v2_limit_at_the_mount_root_counts) {
  /* In a cgroup namespace a container sees itself as "0::/" and its quota
   * sits on the mount's root directory. */
  make_root();
  put_file("proc/self/cgroup", "0::/\n");
  put_file("sys/fs/cgroup/cpu.max", "200000 100000\n");
  ASSERT_EQ(limit(), 2);
  remove_root();
}

TEST(v2_limit_found_above_a_path_that_does_not_exist) {
  /* Without a cgroup namespace the container's path names a directory that
   * is not visible inside it; its own quota is then on the mount root. */
  make_root();
  put_file("proc/self/cgroup", "0::/docker/0123abcd\n");
  put_file("sys/fs/cgroup/cpu.max", "300000 100000\n");
  ASSERT_EQ(limit(), 3);
  remove_root();
}

TEST(v2_does_not_read_above_the_mount) {
  /* A cpu.max outside the cgroup mount (here root/sys/fs) is not cgroup
   * data and must be ignored. */
  make_root();
  put_file("proc/self/cgroup", "0::/a\n");
  put_dir("sys/fs/cgroup/a");
  put_file("sys/fs/cpu.max", "100000 100000\n");
  put_file("sys/cpu.max", "100000 100000\n");
  ASSERT_EQ(limit(), 0);
  remove_root();
}

TEST(v2_garbage_is_no_limit) {
  static const char *const bad[] = {
      "garbage\n", "", "\n", "-5 100000\n", "100000 0\n", "100000 -1\n", "0 100000\n",
      "maximum\n", " \n",
  };
  make_root();
  put_file("proc/self/cgroup", "0::/a\n");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put_file("sys/fs/cgroup/a/cpu.max", bad[i]);
    int got = limit();
    if (got != 0)
      weft_test_fail(__FILE__, __LINE__, "cpu.max \"%s\" gave %d, expected 0", bad[i], got);
  }
  remove_root();
}

TEST(v2_huge_quota_is_clamped) {
  make_root();
  put_file("proc/self/cgroup", "0::/a\n");
  put_file("sys/fs/cgroup/a/cpu.max", "9223372036854775807 1\n");
  ASSERT_EQ(limit(), INT32_MAX);
  remove_root();
}

/* ------------------------------------------------------------- cgroup v1 */

TEST(v1_quota) {
  make_root();
  put_file("proc/self/cgroup", "4:cpu,cpuacct:/x\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us", "50000\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_period_us", "100000\n");
  ASSERT_EQ(limit(), 1);
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us", "350000\n");
  ASSERT_EQ(limit(), 4);
  remove_root();
}

TEST(v1_no_quota) {
  make_root();
  put_file("proc/self/cgroup", "4:cpu,cpuacct:/x\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us", "-1\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_period_us", "100000\n");
  ASSERT_EQ(limit(), 0);
  remove_root();
}

TEST(v1_missing_period_is_no_limit) {
  make_root();
  put_file("proc/self/cgroup", "4:cpu,cpuacct:/x\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us", "50000\n");
  ASSERT_EQ(limit(), 0);
  remove_root();
}

TEST(v1_parent_limit_wins) {
  make_root();
  put_file("proc/self/cgroup", "4:cpu,cpuacct:/x/y\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/y/cpu.cfs_quota_us", "-1\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/y/cpu.cfs_period_us", "100000\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us", "200000\n");
  put_file("sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_period_us", "100000\n");
  ASSERT_EQ(limit(), 2);
  remove_root();
}

TEST(v1_cpu_mounted_alone_or_under_cpu) {
  /* Controllers listed as "cpuacct,cpu" but mounted at .../cpu (a common
   * symlink layout): the walk falls back to the "cpu" directory. */
  make_root();
  put_file("proc/self/cgroup", "3:cpuacct,cpu:/x\n");
  put_file("sys/fs/cgroup/cpu/x/cpu.cfs_quota_us", "300000\n");
  put_file("sys/fs/cgroup/cpu/x/cpu.cfs_period_us", "100000\n");
  ASSERT_EQ(limit(), 3);
  remove_root();
}

TEST(v1_other_controllers_are_ignored) {
  /* "cpuacct" and "cpuset" contain "cpu" as a prefix but are not it. */
  make_root();
  put_file("proc/self/cgroup", "2:cpuacct:/x\n3:cpuset:/x\n");
  put_file("sys/fs/cgroup/cpuacct/x/cpu.cfs_quota_us", "100000\n");
  put_file("sys/fs/cgroup/cpuacct/x/cpu.cfs_period_us", "100000\n");
  put_file("sys/fs/cgroup/cpuset/x/cpu.cfs_quota_us", "100000\n");
  put_file("sys/fs/cgroup/cpuset/x/cpu.cfs_period_us", "100000\n");
  ASSERT_EQ(limit(), 0);
  remove_root();
}

TEST(v1_and_v2_both_limited_take_the_smaller) {
  make_root();
  put_file("proc/self/cgroup", "4:cpu:/x\n0::/y\n");
  put_file("sys/fs/cgroup/cpu/x/cpu.cfs_quota_us", "300000\n");
  put_file("sys/fs/cgroup/cpu/x/cpu.cfs_period_us", "100000\n");
  put_file("sys/fs/cgroup/y/cpu.max", "200000 100000\n");
  ASSERT_EQ(limit(), 2);
  remove_root();
}

/* ------------------------------------------------------ missing and junk */

TEST(missing_root_is_no_limit) {
  ASSERT_EQ(weft__cgroup_cpu_limit("/nonexistent/weft/root"), 0);
}

TEST(missing_files_are_no_limit) {
  make_root();
  ASSERT_EQ(limit(), 0); /* no proc/self/cgroup at all */
  put_file("proc/self/cgroup", "0::/a/b\n");
  ASSERT_EQ(limit(), 0); /* no sys tree */
  put_dir("sys/fs/cgroup/a/b");
  ASSERT_EQ(limit(), 0); /* directories but no cpu.max */
  remove_root();
}

TEST(garbage_cgroup_file_is_no_limit) {
  make_root();
  put_file("sys/fs/cgroup/a/cpu.max", "100000 100000\n");
  put_file("proc/self/cgroup", "this is not a cgroup file\n::\n0:\n0::a\n\n:::::\n");
  ASSERT_EQ(limit(), 0);
  /* A good line after junk is still read. */
  put_file("proc/self/cgroup", "junk\n0::/a\n");
  ASSERT_EQ(limit(), 1);
  remove_root();
}

TEST(overlong_cgroup_path_is_no_limit) {
  char line[8192];
  make_root();
  memset(line, 'a', sizeof line);
  memcpy(line, "0::/", 4);
  line[sizeof line - 2] = '\n';
  line[sizeof line - 1] = 0;
  put_file("proc/self/cgroup", line);
  ASSERT_EQ(limit(), 0);
  remove_root();
}

/* ---------------------------------------------------------- real system */

TEST(count_is_within_affinity) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  int n = weft_cpu_count();
  ASSERT_GE(n, 1);
  ASSERT_LE(n, CPU_COUNT(&set));
  int lim = weft__cgroup_cpu_limit("");
  ASSERT_GE(lim, 0);
  if (lim > 0 && lim < CPU_COUNT(&set))
    ASSERT_EQ(n, lim);
  else
    ASSERT_EQ(n, CPU_COUNT(&set));
}

TEST(count_follows_affinity_changes) {
  /* In a child, so the narrowed mask does not leak into other checks. */
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    cpu_set_t set, one;
    if (sched_getaffinity(0, sizeof set, &set) != 0) _exit(10);
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
      if (CPU_ISSET(i, &set)) first = i;
    if (first < 0) _exit(11);
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(12);
    /* "Read afresh on every call": no cached value from before. */
    _exit(weft_cpu_count() == 1 ? 0 : 13);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}

TEST(count_does_not_allocate_through_weft) {
  /* Counting CPUs must not use the allocator hook, or calling it first
   * would make weft_set_allocator refuse with WEFT_EBUSY. */
  long before = weft__fault_alloc_count();
  ASSERT_GE(weft_cpu_count(), 1);
  ASSERT_EQ(weft__fault_alloc_count(), before);
}
