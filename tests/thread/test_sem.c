/*
 * Tests for weft_sem (src/thread/sem.c): counting and bounded semaphores,
 * init limits, acquire deadlines, release(n) waking exactly the sleepers it
 * can feed, over-release refused without change, a producer/consumer run,
 * misuse aborts. Cross-process use is in test_pshared.c.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

#define MS 1000000LL

typedef struct taker {
  weft_sem *s;      /* the semaphore */
  int64_t deadline; /* for acquire */
  atomic_int rc;    /* result; 1 while waiting */
} taker;

static void *take_body(void *arg) {
  taker *k = arg;
  atomic_store(&k->rc, weft_sem_acquire(k->s, k->deadline));
  return NULL;
}

TEST(init_limits) {
  weft_sem s;
  ASSERT_ERR(weft_sem_init(&s, 0x2, 0, 0), WEFT_EINVAL);
  ASSERT_ERR(weft_sem_init(&s, 0, (uint32_t)INT32_MAX + 1, 0), WEFT_EINVAL);
  ASSERT_ERR(weft_sem_init(&s, 0, 3, 2), WEFT_EINVAL);
  ASSERT_ERR(weft_sem_init(&s, 0, 0, (uint32_t)INT32_MAX + 1), WEFT_EINVAL);
  ASSERT_OK(weft_sem_init(&s, 0, INT32_MAX, 0));
  ASSERT_UEQ(weft_sem_value(&s), INT32_MAX);
  weft_sem_fini(&s);
  ASSERT_OK(weft_sem_init(&s, WEFT_SYNC_PSHARED, 2, 2));
  ASSERT_UEQ(weft_sem_value(&s), 2);
  weft_sem_fini(&s);
}

TEST(acquire_counts_down_and_times_out) {
  weft_sem s;
  ASSERT_OK(weft_sem_init(&s, 0, 2, 0));
  ASSERT_OK(weft_sem_acquire(&s, 0));
  ASSERT_UEQ(weft_sem_value(&s), 1);
  ASSERT_OK(weft_sem_acquire(&s, WEFT_FOREVER));
  ASSERT_UEQ(weft_sem_value(&s), 0);
  ASSERT_ERR(weft_sem_acquire(&s, 0), WEFT_ETIMEDOUT);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_sem_acquire(&s, weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  ASSERT_ERR(weft_sem_acquire(&s, -2), WEFT_EINVAL);
  ASSERT_OK(weft_sem_release(&s, 1));
  ASSERT_ERR(weft_sem_acquire(&s, -3), WEFT_EINVAL); /* and takes nothing */
  ASSERT_UEQ(weft_sem_value(&s), 1);
  ASSERT_OK(weft_sem_acquire(&s, weft_deadline_in_ms(10)));
  ASSERT_OK(weft_sem_release(&s, 0)); /* no-op */
  ASSERT_UEQ(weft_sem_value(&s), 0);
  weft_sem_fini(&s);
}

/* release(n) wakes n sleepers, and only n get a unit. */
static void release_n_wakes_n(unsigned flags) {
  enum { N = 4 };
  weft_sem s;
  ASSERT_OK(weft_sem_init(&s, flags, 0, 0));
  taker k[N];
  weft_thread *t[N];
  for (int i = 0; i < N; i++) {
    k[i].s = &s;
    k[i].deadline = weft_deadline_in_s(20);
    atomic_init(&k[i].rc, 1);
    ASSERT_OK(weft_thread_start(&t[i], take_body, &k[i], NULL));
  }
  for (int i = 0; i < N; i++) weft_test_wait_asleep_in_futex(0, weft_thread_ident(t[i]));
  ASSERT_OK(weft_sem_release(&s, 3));
  int done = 0;
  for (int spin = 0; spin < 5000 && done < 3; spin++) {
    done = 0;
    for (int i = 0; i < N; i++) done += atomic_load(&k[i].rc) == 0;
    if (done < 3) usleep(1000);
  }
  ASSERT_EQ(done, 3);
  usleep(30000);
  done = 0;
  for (int i = 0; i < N; i++) done += atomic_load(&k[i].rc) == 0;
  ASSERT_EQ(done, 3); /* the fourth still waits */
  ASSERT_UEQ(weft_sem_value(&s), 0);
  ASSERT_OK(weft_sem_release(&s, 1));
  for (int i = 0; i < N; i++) {
    ASSERT_OK(weft_thread_join(t[i], weft_deadline_in_s(10), NULL));
    ASSERT_OK(atomic_load(&k[i].rc));
  }
  ASSERT_UEQ(weft_sem_value(&s), 0);
  weft_sem_fini(&s);
}

TEST(release_n_wakes_n_sleepers) { release_n_wakes_n(0); }
TEST(pshared_release_n_wakes_n_sleepers) { release_n_wakes_n(WEFT_SYNC_PSHARED); }

TEST(bounded_over_release_is_einval_and_changes_nothing) {
  weft_sem s;
  ASSERT_OK(weft_sem_init(&s, 0, 2, 2));
  ASSERT_ERR(weft_sem_release(&s, 1), WEFT_EINVAL);
  ASSERT_UEQ(weft_sem_value(&s), 2);
  ASSERT_OK(weft_sem_acquire(&s, 0));
  ASSERT_ERR(weft_sem_release(&s, 2), WEFT_EINVAL); /* would be 3 */
  ASSERT_UEQ(weft_sem_value(&s), 1);
  ASSERT_OK(weft_sem_release(&s, 1));
  ASSERT_UEQ(weft_sem_value(&s), 2);
  ASSERT_OK(weft_sem_acquire(&s, 0));
  ASSERT_OK(weft_sem_acquire(&s, 0));
  ASSERT_OK(weft_sem_release(&s, 2));
  ASSERT_UEQ(weft_sem_value(&s), 2);
  weft_sem_fini(&s);
}

TEST(counting_release_past_int32_max_is_einval) {
  weft_sem s;
  ASSERT_OK(weft_sem_init(&s, 0, INT32_MAX, 0));
  ASSERT_ERR(weft_sem_release(&s, 1), WEFT_EINVAL);
  ASSERT_UEQ(weft_sem_value(&s), INT32_MAX);
  weft_sem_fini(&s);
  ASSERT_OK(weft_sem_init(&s, 0, 5, 0));
  ASSERT_ERR(weft_sem_release(&s, INT32_MAX), WEFT_EINVAL);
  ASSERT_ERR(weft_sem_release(&s, UINT32_MAX), WEFT_EINVAL);
  ASSERT_UEQ(weft_sem_value(&s), 5);
  ASSERT_OK(weft_sem_release(&s, INT32_MAX - 5));
  ASSERT_UEQ(weft_sem_value(&s), INT32_MAX);
  weft_sem_fini(&s);
}

typedef struct pc {
  weft_sem *s;     /* shared semaphore */
  long n;          /* units to move */
  atomic_long got; /* units taken */
} pc;

static void *produce(void *arg) {
  pc *p = arg;
  for (long i = 0; i < p->n; i++) ASSERT_OK(weft_sem_release(p->s, 1));
  return NULL;
}
static void *consume(void *arg) {
  pc *p = arg;
  for (long i = 0; i < p->n; i++) {
    ASSERT_OK(weft_sem_acquire(p->s, weft_deadline_in_s(20)));
    atomic_fetch_add(&p->got, 1);
  }
  return NULL;
}

TEST(producers_and_consumers_balance) {
  weft_sem s;
  ASSERT_OK(weft_sem_init(&s, 0, 0, 0));
  pc p = {&s, 20000, 0};
  weft_thread *t[4];
  ASSERT_OK(weft_thread_start(&t[0], consume, &p, NULL));
  ASSERT_OK(weft_thread_start(&t[1], consume, &p, NULL));
  ASSERT_OK(weft_thread_start(&t[2], produce, &p, NULL));
  ASSERT_OK(weft_thread_start(&t[3], produce, &p, NULL));
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
  ASSERT_EQ(atomic_load(&p.got), 2 * p.n);
  ASSERT_UEQ(weft_sem_value(&s), 0);
  weft_sem_fini(&s);
}

static void acquire_after_fini(void) {
  weft_sem s;
  weft_sem_init(&s, 0, 1, 0);
  weft_sem_fini(&s);
  weft_sem_acquire(&s, 0);
}

TEST(misuse_aborts_naming_the_call) {
  weft_sem z;
  memset(&z, 0, sizeof z);
  ASSERT_ABORTS(weft_sem_init(NULL, 0, 0, 0), "weft_sem_init");
  ASSERT_ABORTS(weft_sem_acquire(NULL, 0), "weft_sem_acquire");
  ASSERT_ABORTS(weft_sem_release(NULL, 1), "weft_sem_release");
  ASSERT_ABORTS(weft_sem_value(NULL), "weft_sem_value");
  ASSERT_ABORTS(weft_sem_fini(NULL), "weft_sem_fini");
  ASSERT_ABORTS(weft_sem_release(&z, 1), "weft_sem_release(): argument 's' is not an initialised semaphore");
  ASSERT_ABORTS(acquire_after_fini(), "weft_sem_acquire(): argument 's' is not an initialised semaphore");
}
