/*
 * The usable CPU count: affinity mask, lowered to the cgroup quota.
 *
 * Containers commonly give a process all host CPUs in its affinity mask but
 * a CFS quota of a few CPUs; sizing a pool by nproc then oversubscribes it.
 * We read the quota of the process's own cgroup and of every ancestor (a
 * parent's limit binds the child too) and take the smallest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cpu.h"
#include "weft/common.h"

/* Read a small file into buf (NUL-terminated). Returns length or -1. */
static int read_small(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = 0;
  return (int)n;
}

/* quota/period in CPUs rounded up; 0 for "no limit" or garbage. */
static int quota_cpus(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return 0;
  long long c = quota / period + (quota % period != 0);
  return c > INT_MAX ? INT_MAX : (int)c;
}

/* v2 cpu.max: "max 100000" or "200000 100000". */
static int v2_limit(const char *dir) {
  char path[PATH_MAX + 16], buf[128];
  long long quota, period = 100000;
  snprintf(path, sizeof path, "%s/cpu.max", dir);
  if (read_small(path, buf, sizeof buf) <= 0) return 0;
  if (strncmp(buf, "max", 3) == 0) return 0;
  if (sscanf(buf, "%lld %lld", &quota, &period) < 1) return 0;
  return quota_cpus(quota, period);
}

/* v1: cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us. */
static int v1_limit(const char *dir) {
  char path[PATH_MAX + 32], buf[64];
  long long quota, period;
  snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
  if (read_small(path, buf, sizeof buf) <= 0 || sscanf(buf, "%lld", &quota) != 1) return 0;
  snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
  if (read_small(path, buf, sizeof buf) <= 0 || sscanf(buf, "%lld", &period) != 1) return 0;
  return quota_cpus(quota, period);
}

static int min_limit(int a, int b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return a < b ? a : b;
}

/* Smallest limit on the path from cgroup rel (e.g. "/a/b") up to the mount. */
static int walk(const char *mount, const char *rel, int (*limit)(const char *)) {
  char dir[PATH_MAX];
  int best = 0;
  if ((size_t)snprintf(dir, sizeof dir, "%s%s", mount, rel) >= sizeof dir) return 0;
  size_t mount_len = strlen(mount);
  for (;;) {
    best = min_limit(best, limit(dir));
    char *slash = strrchr(dir, '/');
    if (!slash || (size_t)(slash - dir) < mount_len) break;
    *slash = 0;
  }
  return best;
}

/* Is tok one of the comma-separated names in list? */
static int has_token(const char *list, const char *tok) {
  size_t n = strlen(tok);
  for (const char *p = list; *p;) {
    size_t len = strcspn(p, ",");
    if (len == n && strncmp(p, tok, n) == 0) return 1;
    p += len;
    if (*p) p++;
  }
  return 0;
}

int weft__cgroup_cpu_limit(const char *root) {
  char path[PATH_MAX], line[PATH_MAX], mount[PATH_MAX + 64];
  int best = 0;
  snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    /* "hierarchy-ID:controller-list:cgroup-path" */
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = 0;
    const char *ctrls = c1 + 1, *rel = c2 + 1;
    if (rel[0] != '/') continue;
    if (strcmp(rel, "/") == 0) rel = "";
    if (strncmp(line, "0:", 2) == 0 && ctrls[0] == 0) {
      snprintf(mount, sizeof mount, "%s/sys/fs/cgroup", root);
      best = min_limit(best, walk(mount, rel, v2_limit));
    } else if (has_token(ctrls, "cpu")) {
      /* v1: mounted at /sys/fs/cgroup/<controller-list> or at .../cpu */
      snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/%s", root, ctrls);
      if (access(mount, F_OK) != 0) snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/cpu", root);
      best = min_limit(best, walk(mount, rel, v1_limit));
    }
  }
  fclose(f);
  return best;
}

/* CPUs in the affinity mask, or 0 if it cannot be read. A fixed cpu_set_t
 * holds 1024 CPUs and sched_getaffinity fails with EINVAL on a kernel
 * configured for more, so grow the set until it fits. The set comes from
 * CPU_ALLOC (libc malloc), not weft__malloc: this is a transient buffer, and
 * counting CPUs must not lock the user out of weft_set_allocator. */
static int affinity_count(void) {
  for (int ncpus = 1024; ncpus <= (1 << 20); ncpus *= 2) {
    cpu_set_t *set = CPU_ALLOC((size_t)ncpus);
    if (!set) return 0;
    size_t size = CPU_ALLOC_SIZE((size_t)ncpus);
    CPU_ZERO_S(size, set);
    int r = sched_getaffinity(0, size, set);
    int n = r == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (r == 0) return n;
    if (errno != EINVAL) return 0;
  }
  return 0;
}

int weft_cpu_count(void) {
  int n = affinity_count();
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  int lim = weft__cgroup_cpu_limit("");
  if (lim > 0 && lim < n) n = lim;
  return n;
}
