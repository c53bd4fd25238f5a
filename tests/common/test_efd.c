/* Tests for the lazily made eventfd (src/common/efd.c). */
#include <fcntl.h>
#include <sys/resource.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/efd.h"
#include "weft_test.h"

TEST(first_call_creates_later_calls_share) {
  _Atomic int slot = -1;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  bool created = false;
  int f = weft__efd_get(&slot, &mu, &created);
  ASSERT_GE(f, 0);
  ASSERT(created);
  ASSERT_EQ(atomic_load(&slot), f);
  int fl = fcntl(f, F_GETFL);
  ASSERT(fl & O_NONBLOCK);
  ASSERT(fcntl(f, F_GETFD) & FD_CLOEXEC);
  ASSERT_EQ(weft__efd_get(&slot, &mu, &created), f);
  ASSERT(!created);
  ASSERT_EQ(weft__efd_get(&slot, &mu, NULL), f);
  close(f);
}

struct race {
  _Atomic int slot;
  pthread_mutex_t mu;
  _Atomic int made;
  int fd[8];
};

static void *getter(void *arg) {
  struct race *r = arg;
  bool created;
  int f = weft__efd_get(&r->slot, &r->mu, &created);
  ASSERT_GE(f, 0);
  if (created) atomic_fetch_add(&r->made, 1);
  return (void *)(intptr_t)f;
}

TEST(concurrent_callers_get_one_fd) {
  for (int round = 0; round < 50; round++) {
    struct race r = {.slot = -1, .mu = PTHREAD_MUTEX_INITIALIZER, .made = 0};
    pthread_t t[8];
    for (int i = 0; i < 8; i++) ASSERT_EQ(pthread_create(&t[i], NULL, getter, &r), 0);
    void *v;
    int first = -1;
    for (int i = 0; i < 8; i++) {
      pthread_join(t[i], &v);
      if (first < 0) first = (int)(intptr_t)v;
      ASSERT_EQ((int)(intptr_t)v, first);
    }
    ASSERT_EQ(atomic_load(&r.made), 1);
    close(first);
  }
}

TEST(out_of_fds_is_an_error_code) {
  /* With RLIMIT_NOFILE exhausted, eventfd fails: an errno, not a crash. */
  _Atomic int slot = -1;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  int fds[4096], n = 0;
  struct rlimit rl = {16, 16};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  while (n < 4096 && (fds[n] = dup(0)) >= 0) n++;
  int f = weft__efd_get(&slot, &mu, NULL);
  ASSERT_EQ(f, -EMFILE);
  ASSERT_EQ(atomic_load(&slot), -1); /* nothing cached */
  for (int i = 0; i < n; i++) close(fds[i]);
  f = weft__efd_get(&slot, &mu, NULL);
  ASSERT_GE(f, 0);
  close(f);
}
