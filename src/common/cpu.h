/* Internal: the usable-CPU computation, split out so tests can feed it a
 * fake /proc and /sys tree. */
#ifndef WEFT_COMMON_CPU_H
#define WEFT_COMMON_CPU_H

/* CPU limit from cgroup files under root ("" for the real system): reads
 * root/proc/self/cgroup, then the v2 cpu.max or the v1 cfs quota of that
 * cgroup and its ancestors. Returns the quota in CPUs rounded up, or 0 when
 * there is no limit or nothing could be read. */
int weft__cgroup_cpu_limit(const char *root);

#endif
