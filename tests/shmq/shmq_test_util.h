/*
 * Helpers shared by the weft_shmq tests: forking children that die with
 * the test, reaping them, and a shared anonymous mapping for tallies.
 */
#ifndef SHMQ_TEST_UTIL_H
#define SHMQ_TEST_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process/shmq_impl.h"
#include "weft_test.h"

#define MS 1000000LL

static inline void *shared_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(p != MAP_FAILED);
  return p;
}

/* fork(); the child runs fn(arg) and _exits with its result. A child dies
 * with its parent (PR_SET_PDEATHSIG), so a failed test leaves none behind. */
static inline pid_t spawn(int (*fn)(void *), void *arg) {
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(99);
    _exit(fn(arg));
  }
  return pid;
}

/* Reap pid: its exit status, or 128 + the signal that ended it. */
static inline int reap(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A second mapping of a queue's segment (fd: weft_shmq_fd), to look at and
 * forge what other processes see. */
typedef struct seg_view {
  void *base;
  size_t size;
  shmq_hdr *h;
  shmq_rec *recs;
  shmq_meta *meta;
  uint64_t nslots;
} seg_view;

static inline seg_view view_fd(int fd) {
  seg_view v;
  off_t size = lseek(fd, 0, SEEK_END);
  ASSERT_GT(size, 0);
  v.size = (size_t)size;
  v.base = mmap(NULL, v.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT(v.base != MAP_FAILED);
  v.h = v.base;
  v.recs = (shmq_rec *)((char *)v.base + v.h->rec_off);
  v.meta = (shmq_meta *)((char *)v.base + v.h->meta_off);
  v.nslots = v.h->nslots;
  return v;
}

/* Wait until pid has stopped (SIGSTOP). */
static inline void wait_stopped(pid_t pid) {
  int st;
  ASSERT_EQ(waitpid(pid, &st, WUNTRACED), pid);
  ASSERT(WIFSTOPPED(st));
}

#endif
