/*
 * Tests for futex wait/wake (src/common/futex.c): the value check, the
 * absolute monotonic deadline, waking threads, and process-shared words in
 * MAP_SHARED memory across fork().
 *
 * "Is the waiter asleep yet?" is never guessed with a sleep: the waker
 * calls wake until the kernel reports that it woke someone, which can only
 * happen once the waiter is queued on the word.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common/futex.h"
#include "weft_test.h"

TEST(wait_on_mismatch_returns_eagain) {
  _Atomic uint32_t w = 5;
  int64_t start = weft_now_ns();
  ASSERT_EQ(weft__futex_wait(&w, 4, WEFT_FOREVER, 0), -EAGAIN);
  ASSERT_EQ(weft__futex_wait(&w, 0, WEFT_FOREVER, WEFT__FUTEX_SHARED), -EAGAIN);
  ASSERT_EQ(weft__futex_wait(&w, 6, weft_deadline_in_ms(10000), 0), -EAGAIN);
  ASSERT_LT(weft_now_ns() - start, 5 * 1000000000LL); /* did not sleep */
}

TEST(wait_with_past_deadline_times_out) {
  _Atomic uint32_t w = 0;
  ASSERT_EQ(weft__futex_wait(&w, 0, 0, 0), -ETIMEDOUT);
  ASSERT_EQ(weft__futex_wait(&w, 0, 1, 0), -ETIMEDOUT);
  ASSERT_EQ(weft__futex_wait(&w, 0, weft_now_ns() - 1000, 0), -ETIMEDOUT);
  ASSERT_EQ(weft__futex_wait(&w, 0, weft_deadline_in_ms(0), WEFT__FUTEX_SHARED), -ETIMEDOUT);
}

TEST(wait_times_out_at_the_deadline) {
  /* The deadline is absolute CLOCK_MONOTONIC: the wait must not end before
   * it (a relative-timeout mix-up would end it at once or never). */
  _Atomic uint32_t w = 0;
  int64_t d = weft_deadline_in_ms(30);
  int r;
  do {
    r = weft__futex_wait(&w, 0, d, 0);
  } while (r == -EINTR);
  ASSERT_EQ(r, -ETIMEDOUT);
  ASSERT_GE(weft_now_ns(), d);
}

TEST(wake_without_waiters_wakes_nobody) {
  _Atomic uint32_t w = 0;
  ASSERT_EQ(weft__futex_wake(&w, 1, 0), 0);
  ASSERT_EQ(weft__futex_wake(&w, INT32_MAX, 0), 0);
  ASSERT_EQ(weft__futex_wake(&w, INT32_MAX, WEFT__FUTEX_SHARED), 0);
}

struct waiter {
  _Atomic uint32_t *word;
  int result;
};

static void *wait_once(void *arg) {
  struct waiter *wt = arg;
  int r;
  do {
    r = weft__futex_wait(wt->word, 0, weft_deadline_in_s(30), 0);
  } while (r == -EINTR || r == -EAGAIN);
  wt->result = r;
  return NULL;
}

/* Wake one waiter at a time until `want` sleepers have been woken. */
static int wake_until(_Atomic uint32_t *w, int want, unsigned flags) {
  int woken = 0;
  int64_t give_up = weft_deadline_in_s(20);
  while (woken < want && weft_now_ns() < give_up) {
    int r = weft__futex_wake(w, 1, flags);
    ASSERT_GE(r, 0);
    ASSERT_LE(r, 1); /* n = 1 wakes at most one */
    woken += r;
    sched_yield();
  }
  return woken;
}

TEST(wake_wakes_a_waiting_thread) {
  /* The word stays 0 throughout, so the waiter can only return 0 because
   * it was woken, not because it saw a new value. */
  _Atomic uint32_t w = 0;
  struct waiter wt = {&w, 1};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, wait_once, &wt), 0);
  ASSERT_EQ(wake_until(&w, 1, 0), 1);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_EQ(wt.result, 0);
}

TEST(wake_n_wakes_at_most_n) {
  enum { N = 3 };
  _Atomic uint32_t w = 0;
  struct waiter wt[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    wt[i].word = &w;
    wt[i].result = 1;
    ASSERT_EQ(pthread_create(&th[i], NULL, wait_once, &wt[i]), 0);
  }
  ASSERT_EQ(wake_until(&w, N, 0), N);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(pthread_join(th[i], NULL), 0);
    ASSERT_EQ(wt[i].result, 0);
  }
}

TEST(wake_all_wakes_every_sleeper) {
  enum { N = 4 };
  _Atomic uint32_t w = 0;
  struct waiter wt[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    wt[i].word = &w;
    wt[i].result = 1;
    ASSERT_EQ(pthread_create(&th[i], NULL, wait_once, &wt[i]), 0);
  }
  int woken = 0;
  int64_t give_up = weft_deadline_in_s(20);
  while (woken < N && weft_now_ns() < give_up) {
    int r = weft__futex_wake(&w, INT32_MAX, 0);
    ASSERT_GE(r, 0);
    woken += r;
    sched_yield();
  }
  ASSERT_EQ(woken, N);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(pthread_join(th[i], NULL), 0);
    ASSERT_EQ(wt[i].result, 0);
  }
}

struct flag_waiter {
  _Atomic uint32_t *word;
  atomic_int seen;
};

static void *wait_for_flag(void *arg) {
  struct flag_waiter *fw = arg;
  /* The usual pattern: sleep while the word still holds the old value. */
  while (atomic_load(fw->word) == 0) weft__futex_wait(fw->word, 0, weft_deadline_in_s(30), 0);
  atomic_store(&fw->seen, (int)atomic_load(fw->word));
  return NULL;
}

TEST(store_then_wake_releases_a_flag_waiter) {
  _Atomic uint32_t w = 0;
  struct flag_waiter fw = {&w, 0};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, wait_for_flag, &fw), 0);
  struct timespec gap = {0, 10 * 1000000};
  nanosleep(&gap, NULL); /* likely asleep by now; correct either way */
  atomic_store(&w, 42);
  weft__futex_wake(&w, INT32_MAX, 0);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_EQ(atomic_load(&fw.seen), 42);
}

TEST(shared_word_works_across_fork) {
  _Atomic uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                             -1, 0);
  ASSERT(w != MAP_FAILED);
  atomic_store(w, 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    /* Sleep once on the unchanged word: only a cross-process wake ends it
     * with 0. Then wait for the flag as a real user would. */
    int r;
    do {
      r = weft__futex_wait(w, 0, weft_deadline_in_s(30), WEFT__FUTEX_SHARED);
    } while (r == -EINTR);
    if (r != 0) _exit(10);
    while (atomic_load(w) == 0) {
      r = weft__futex_wait(w, 0, weft_deadline_in_s(30), WEFT__FUTEX_SHARED);
      if (r == -ETIMEDOUT) _exit(11);
    }
    _exit(atomic_load(w) == 7 ? 0 : 12);
  }
  int woken = 0;
  int64_t give_up = weft_deadline_in_s(20);
  while (!woken && weft_now_ns() < give_up) {
    /* A private wake hashes to a different key than the child's shared
     * wait on the same page, so it must never wake the child. */
    ASSERT_EQ(weft__futex_wake(w, 1, 0), 0);
    woken = weft__futex_wake(w, 1, WEFT__FUTEX_SHARED);
    ASSERT_GE(woken, 0);
    sched_yield();
  }
  ASSERT_EQ(woken, 1);
  atomic_store(w, 7);
  weft__futex_wake(w, INT32_MAX, WEFT__FUTEX_SHARED);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
  munmap((void *)w, 4096);
}
