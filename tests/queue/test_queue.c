/*
 * Tests for weft_queue (src/queue/): order, bounds, the error codes of each
 * non-blocking and timed form, batches, task_done/join, Python 3.13's
 * shutdown, the free callback, the eventfd and misuse. Every order is run
 * through each engine: unbounded FIFO (seg), bounded FIFO (ring), FIFO with
 * maxsize 1, LIFO and priority (locked).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>

#include "common/alloc.h"
#include "weft_test.h"

#define P(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))

static weft_queue *make(weft_queue_order order, size_t maxsize) {
  weft_queue_opts o = {0};
  o.order = order;
  o.maxsize = maxsize;
  weft_queue *q = NULL;
  ASSERT_OK(weft_queue_create(&q, &o));
  ASSERT_NOT_NULL(q);
  return q;
}

static int cmp_uint(const void *a, const void *b, void *ud) {
  (void)ud;
  return U(a) < U(b) ? -1 : U(a) > U(b);
}

TEST(fifo_order_unbounded) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  /* Cross several blocks (63 slots each) to exercise block hand-over. */
  for (uintptr_t i = 0; i < 1000; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
  ASSERT_EQ(weft_queue_qsize(q), 1000);
  ASSERT(!weft_queue_full(q));
  for (uintptr_t i = 0; i < 1000; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0));
    ASSERT_UEQ(U(it), i);
  }
  ASSERT(weft_queue_empty(q));
  weft_queue_destroy(q);
}

TEST(fifo_order_bounded) {
  size_t sizes[] = {2, 3, 7, 64, 100};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    size_t cap = sizes[s];
    weft_queue *q = make(WEFT_QUEUE_FIFO, cap);
    uintptr_t next_in = 0, next_out = 0;
    /* Fill, drain half, refill: wraps the ring several times. */
    for (int round = 0; round < 10; round++) {
      while (weft_queue_put(q, P(next_in), 0) == 0) next_in++;
      ASSERT_EQ(weft_queue_qsize(q), cap);
      ASSERT(weft_queue_full(q));
      ASSERT_ERR(weft_queue_put(q, P(999), 0), WEFT_EFULL);
      for (size_t k = 0; k < cap / 2 + 1; k++) {
        void *it;
        ASSERT_OK(weft_queue_get(q, &it, 0));
        ASSERT_UEQ(U(it), next_out);
        next_out++;
      }
    }
    weft_queue_destroy(q);
  }
}

TEST(fifo_maxsize_one) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 1);
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  ASSERT_ERR(weft_queue_put(q, P(2), 0), WEFT_EFULL);
  ASSERT(weft_queue_full(q));
  void *it;
  ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_UEQ(U(it), 1);
  ASSERT_OK(weft_queue_put(q, P(2), 0));
  ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_UEQ(U(it), 2);
  ASSERT_EQ(weft_queue_maxsize(q), 1);
  weft_queue_destroy(q);
}

TEST(lifo_order) {
  weft_queue *q = make(WEFT_QUEUE_LIFO, 0);
  for (uintptr_t i = 0; i < 100; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
  for (uintptr_t i = 100; i-- > 0;) {
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0));
    ASSERT_UEQ(U(it), i);
  }
  weft_queue_destroy(q);
}

TEST(priority_order_and_ties) {
  weft_queue_opts o = {0};
  o.order = WEFT_QUEUE_PRIORITY;
  o.cmp = cmp_uint;
  weft_queue *q;
  ASSERT_OK(weft_queue_create(&q, &o));
  /* Pseudo-random keys; duplicates included. */
  uint32_t x = 12345;
  uintptr_t keys[500];
  for (int i = 0; i < 500; i++) {
    x = x * 1103515245u + 12345u;
    keys[i] = (x >> 16) % 200;
    ASSERT_OK(weft_queue_put(q, P(keys[i]), 0));
  }
  uintptr_t prev = 0;
  for (int i = 0; i < 500; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0));
    ASSERT_LE(prev, U(it));
    prev = U(it);
  }
  ASSERT_ERR(weft_queue_get(q, &(void *){0}, 0), WEFT_EEMPTY);
  weft_queue_destroy(q);
}

/* Equal priorities come out in put order (stable), unlike a bare heap. */
static int cmp_hi(const void *a, const void *b, void *ud) {
  (void)ud;
  uintptr_t ka = U(a) >> 8, kb = U(b) >> 8;
  return ka < kb ? -1 : ka > kb;
}

TEST(priority_stable_for_equal_keys) {
  weft_queue_opts o = {0};
  o.order = WEFT_QUEUE_PRIORITY;
  o.cmp = cmp_hi;
  weft_queue *q;
  ASSERT_OK(weft_queue_create(&q, &o));
  for (uintptr_t i = 0; i < 50; i++) ASSERT_OK(weft_queue_put(q, P((1u << 8) | i), 0));
  for (uintptr_t i = 0; i < 50; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0));
    ASSERT_UEQ(U(it) & 0xff, i);
  }
  weft_queue_destroy(q);
}

TEST(bounded_lifo_and_priority) {
  weft_queue *q = make(WEFT_QUEUE_LIFO, 3);
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
  ASSERT_ERR(weft_queue_put(q, P(9), 0), WEFT_EFULL);
  ASSERT(weft_queue_full(q));
  weft_queue_destroy(q);

  weft_queue_opts o = {0};
  o.order = WEFT_QUEUE_PRIORITY;
  o.cmp = cmp_uint;
  o.maxsize = 2;
  ASSERT_OK(weft_queue_create(&q, &o));
  ASSERT_OK(weft_queue_put(q, P(5), 0));
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  ASSERT_ERR(weft_queue_put(q, P(0), 0), WEFT_EFULL);
  weft_queue_destroy(q);
}

TEST(null_item_is_a_value) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  ASSERT_OK(weft_queue_put(q, NULL, 0));
  void *it = P(1);
  ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_NULL(it);
  weft_queue_destroy(q);
}

TEST(create_rejects_bad_options) {
  weft_queue *q = P(0x1);
  weft_queue_opts o = {0};
  o.order = WEFT_QUEUE_PRIORITY; /* no cmp */
  ASSERT_ERR(weft_queue_create(&q, &o), WEFT_EINVAL);
  o.order = (weft_queue_order)7;
  ASSERT_ERR(weft_queue_create(&q, &o), WEFT_EINVAL);
  o.order = WEFT_QUEUE_FIFO;
  o.maxsize = WEFT_QUEUE_MAXSIZE_MAX + 1;
  ASSERT_ERR(weft_queue_create(&q, &o), WEFT_EINVAL);
  ASSERT_PTR_EQ(q, P(0x1)); /* untouched on error */
  ASSERT_OK(weft_queue_create(&q, NULL));
  ASSERT_EQ(weft_queue_maxsize(q), 0);
  weft_queue_destroy(q);
  weft_queue_destroy(NULL);
}

TEST(create_out_of_memory) {
  /* Fail each allocation of create in turn: an error, never a crash or
   * a leak (ASan checks the latter). */
  for (long nth = 1; nth <= 3; nth++) {
    weft_queue_opts o = {0};
    o.maxsize = nth == 3 ? 0 : 16;
    weft_queue *q = NULL;
    weft__fault_alloc_fail_nth(nth == 3 ? 2 : nth);
    int r = weft_queue_create(&q, &o);
    weft__fault_alloc_fail_nth(0);
    if (r == 0) {
      weft_queue_destroy(q);
    } else {
      ASSERT_ERR(r, WEFT_ENOMEM);
    }
  }
  weft_queue *q;
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_queue_create(&q, NULL), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
}

TEST(put_out_of_memory_unbounded) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  /* The put into the last slot of the first block (63 slots) allocates the
   * next block: make that allocation fail. */
  for (uintptr_t i = 0; i < 62; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
  weft__fault_alloc_fail_nth(1);
  ASSERT_ERR(weft_queue_put(q, P(62), 0), WEFT_ENOMEM);
  weft__fault_alloc_fail_nth(0);
  ASSERT_EQ(weft_queue_qsize(q), 62); /* nothing half-inserted */
  for (uintptr_t i = 62; i < 200; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
  for (uintptr_t i = 0; i < 200; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0));
    ASSERT_UEQ(U(it), i);
  }
  weft_queue_destroy(q);
}

TEST(error_codes_empty_timeout_invalid) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 2);
  void *it = P(77);
  ASSERT_ERR(weft_queue_get(q, &it, 0), WEFT_EEMPTY);
  ASSERT_UEQ(U(it), 77); /* untouched */
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_queue_get(q, &it, weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * 1000000);
  ASSERT_ERR(weft_queue_get(q, &it, -2), WEFT_EINVAL);
  ASSERT_ERR(weft_queue_put(q, P(1), -7), WEFT_EINVAL);
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  ASSERT_OK(weft_queue_put(q, P(2), 0));
  ASSERT_ERR(weft_queue_put(q, P(3), 0), WEFT_EFULL);
  t0 = weft_now_ns();
  ASSERT_ERR(weft_queue_put(q, P(3), weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * 1000000);
  /* A deadline already past does not block, and says timed out. */
  ASSERT_ERR(weft_queue_put(q, P(3), 1), WEFT_ETIMEDOUT);
  weft_queue_destroy(q);
}

struct delayed {
  weft_queue *q;
  int64_t delay_ns;
  void *item;
  int op; /* 0 put, 1 get, 2 task_done, 3 shutdown, 4 shutdown immediate */
};

static void *delayed_op(void *arg) {
  struct delayed *d = arg;
  weft_sleep_until(weft_now_ns() + d->delay_ns);
  void *it;
  switch (d->op) {
  case 0: ASSERT_OK(weft_queue_put(d->q, d->item, WEFT_FOREVER)); break;
  case 1: ASSERT_OK(weft_queue_get(d->q, &it, WEFT_FOREVER)); d->item = it; break;
  case 2: ASSERT_OK(weft_queue_task_done(d->q)); break;
  case 3: weft_queue_shutdown(d->q, false); break;
  case 4: weft_queue_shutdown(d->q, true); break;
  }
  return NULL;
}

static pthread_t later(struct delayed *d) {
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, delayed_op, d), 0);
  return t;
}

TEST(blocking_get_wakes_on_put) {
  weft_queue_order orders[] = {WEFT_QUEUE_FIFO, WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO};
  size_t maxs[] = {0, 8, 0};
  for (int k = 0; k < 3; k++) {
    weft_queue *q = make(orders[k], maxs[k]);
    struct delayed d = {q, 20 * 1000000, P(42), 0};
    pthread_t t = later(&d);
    void *it = NULL;
    ASSERT_OK(weft_queue_get(q, &it, WEFT_FOREVER));
    ASSERT_UEQ(U(it), 42);
    pthread_join(t, NULL);
    weft_queue_destroy(q);
  }
}

TEST(blocking_put_wakes_on_get) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 2);
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  ASSERT_OK(weft_queue_put(q, P(2), 0));
  struct delayed d = {q, 20 * 1000000, NULL, 1};
  pthread_t t = later(&d);
  ASSERT_OK(weft_queue_put(q, P(3), weft_deadline_in_ms(5000)));
  pthread_join(t, NULL);
  ASSERT_UEQ(U(d.item), 1);
  weft_queue_destroy(q);
}

TEST(batches) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  void *in[100], *out[64];
  for (uintptr_t i = 0; i < 100; i++) in[i] = P(i);
  size_t n = 0;
  ASSERT_OK(weft_queue_put_many(q, in, 100, 0, &n));
  ASSERT_EQ(n, 100);
  ASSERT_OK(weft_queue_get_many(q, out, 64, 0, &n));
  ASSERT_EQ(n, 64);
  for (uintptr_t i = 0; i < 64; i++) ASSERT_UEQ(U(out[i]), i);
  ASSERT_OK(weft_queue_get_many(q, out, 64, 0, &n));
  ASSERT_EQ(n, 36);
  ASSERT_UEQ(U(out[35]), 99);
  ASSERT_ERR(weft_queue_get_many(q, out, 64, 0, &n), WEFT_EEMPTY);
  ASSERT_EQ(n, 0);
  ASSERT_OK(weft_queue_get_many(q, out, 0, 0, &n));
  ASSERT_EQ(n, 0);
  weft_queue_destroy(q);

  /* Bounded: put_many stops at the first item with no room. */
  q = make(WEFT_QUEUE_FIFO, 10);
  ASSERT_ERR(weft_queue_put_many(q, in, 100, 0, &n), WEFT_EFULL);
  ASSERT_EQ(n, 10);
  ASSERT_ERR(weft_queue_put_many(q, in, 5, 1, &n), WEFT_ETIMEDOUT);
  ASSERT_EQ(n, 0);
  ASSERT_ERR(weft_queue_put_many(q, in, 5, -3, &n), WEFT_EINVAL);
  ASSERT_EQ(n, 0);
  weft_queue_destroy(q);
}

struct taker {
  weft_queue *q;
  int n;
  uintptr_t sum;
};

static void *take_n(void *arg) {
  struct taker *t = arg;
  for (int i = 0; i < t->n; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(t->q, &it, WEFT_FOREVER));
    t->sum += U(it);
  }
  return NULL;
}

TEST(batch_put_blocks_for_room) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 4);
  void *in[20];
  for (uintptr_t i = 0; i < 20; i++) in[i] = P(i + 1);
  struct taker tk = {q, 20, 0};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, take_n, &tk), 0);
  size_t n = 0;
  ASSERT_OK(weft_queue_put_many(q, in, 20, WEFT_FOREVER, &n));
  ASSERT_EQ(n, 20);
  pthread_join(t, NULL);
  ASSERT_UEQ(tk.sum, 210);
  weft_queue_destroy(q);
}

TEST(get_many_blocks_for_first_item) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  struct delayed d = {q, 20 * 1000000, P(5), 0};
  pthread_t t = later(&d);
  void *out[8];
  size_t n = 0;
  ASSERT_OK(weft_queue_get_many(q, out, 8, weft_deadline_in_ms(5000), &n));
  ASSERT_EQ(n, 1);
  ASSERT_UEQ(U(out[0]), 5);
  pthread_join(t, NULL);
  ASSERT_ERR(weft_queue_get_many(q, out, 8, weft_deadline_in_ms(10), &n), WEFT_ETIMEDOUT);
  weft_queue_destroy(q);
}

TEST(task_done_and_join) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  ASSERT_OK(weft_queue_join(q, 0)); /* nothing put: done */
  ASSERT_ERR(weft_queue_task_done(q), WEFT_EINVAL);
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
  ASSERT_ERR(weft_queue_join(q, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_queue_join(q, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  void *it;
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_OK(weft_queue_task_done(q));
  ASSERT_OK(weft_queue_task_done(q));
  ASSERT_ERR(weft_queue_join(q, 0), WEFT_ETIMEDOUT);
  /* The last task_done comes from another thread while we wait. */
  struct delayed d = {q, 20 * 1000000, NULL, 2};
  pthread_t t = later(&d);
  ASSERT_OK(weft_queue_join(q, weft_deadline_in_ms(5000)));
  pthread_join(t, NULL);
  ASSERT_ERR(weft_queue_task_done(q), WEFT_EINVAL); /* one too many */
  ASSERT_OK(weft_queue_join(q, 0));
  ASSERT_ERR(weft_queue_join(q, -9), WEFT_EINVAL);
  weft_queue_destroy(q);
}

TEST(task_done_counts_for_every_engine) {
  weft_queue_opts opts[4] = {{0}};
  opts[1].maxsize = 5;
  opts[2].order = WEFT_QUEUE_LIFO;
  opts[3].order = WEFT_QUEUE_PRIORITY;
  opts[3].cmp = cmp_uint;
  for (int k = 0; k < 4; k++) {
    weft_queue *q;
    ASSERT_OK(weft_queue_create(&q, &opts[k]));
    for (int i = 0; i < 4; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
    for (int i = 0; i < 4; i++) ASSERT_OK(weft_queue_task_done(q));
    ASSERT_ERR(weft_queue_task_done(q), WEFT_EINVAL);
    ASSERT_OK(weft_queue_join(q, 0));
    weft_queue_destroy(q);
  }
}

static int freed_count;
static uintptr_t freed_sum;
static void count_free(void *item, void *ud) {
  ASSERT_PTR_EQ(ud, &freed_count);
  freed_count++;
  freed_sum += U(item);
}

static weft_queue *make_counting(weft_queue_order order, size_t maxsize) {
  weft_queue_opts o = {0};
  o.order = order;
  o.maxsize = maxsize;
  o.cmp = cmp_uint;
  o.free_fn = count_free;
  o.ud = &freed_count;
  weft_queue *q;
  ASSERT_OK(weft_queue_create(&q, &o));
  freed_count = 0;
  freed_sum = 0;
  return q;
}

TEST(destroy_hands_leftovers_to_free_fn) {
  weft_queue_order orders[] = {WEFT_QUEUE_FIFO, WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO,
                               WEFT_QUEUE_PRIORITY};
  size_t maxs[] = {0, 300, 0, 0};
  for (int k = 0; k < 4; k++) {
    weft_queue *q = make_counting(orders[k], maxs[k]);
    for (uintptr_t i = 1; i <= 200; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0));
    weft_queue_destroy(q);
    ASSERT_EQ(freed_count, 199);
    ASSERT_UEQ(freed_sum + U(it), 200 * 201 / 2);
  }
}

TEST(shutdown_graceful) {
  weft_queue *q = make_counting(WEFT_QUEUE_FIFO, 0);
  ASSERT(!weft_queue_is_shutdown(q));
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  ASSERT_OK(weft_queue_put(q, P(2), 0));
  weft_queue_shutdown(q, false);
  ASSERT(weft_queue_is_shutdown(q));
  ASSERT_ERR(weft_queue_put(q, P(3), WEFT_FOREVER), WEFT_ESHUTDOWN);
  void *it;
  /* Items inside still come out, then gets fail without blocking. */
  ASSERT_OK(weft_queue_get(q, &it, WEFT_FOREVER));
  ASSERT_UEQ(U(it), 1);
  ASSERT_OK(weft_queue_get(q, &it, WEFT_FOREVER));
  ASSERT_UEQ(U(it), 2);
  ASSERT_ERR(weft_queue_get(q, &it, WEFT_FOREVER), WEFT_ESHUTDOWN);
  ASSERT_ERR(weft_queue_get(q, &it, 0), WEFT_ESHUTDOWN);
  size_t n = 9;
  ASSERT_ERR(weft_queue_put_many(q, &it, 1, 0, &n), WEFT_ESHUTDOWN);
  ASSERT_EQ(n, 0);
  weft_queue_destroy(q);
  ASSERT_EQ(freed_count, 0);
}

TEST(shutdown_immediate_drops_and_releases_join) {
  weft_queue_order orders[] = {WEFT_QUEUE_FIFO, WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO};
  size_t maxs[] = {0, 10, 0};
  for (int k = 0; k < 3; k++) {
    weft_queue *q = make_counting(orders[k], maxs[k]);
    for (uintptr_t i = 1; i <= 5; i++) ASSERT_OK(weft_queue_put(q, P(i), 0));
    void *it;
    ASSERT_OK(weft_queue_get(q, &it, 0)); /* taken, not yet task_done */
    weft_queue_shutdown(q, true);
    ASSERT_EQ(freed_count, 4);
    ASSERT_EQ(weft_queue_qsize(q), 0);
    ASSERT_ERR(weft_queue_get(q, &it, WEFT_FOREVER), WEFT_ESHUTDOWN);
    /* The dropped four count as done; the taken one still needs its
     * task_done, as in Python. */
    ASSERT_ERR(weft_queue_join(q, 0), WEFT_ETIMEDOUT);
    ASSERT_OK(weft_queue_task_done(q));
    ASSERT_OK(weft_queue_join(q, 0));
    weft_queue_destroy(q);
    ASSERT_EQ(freed_count, 4);
  }
}

TEST(shutdown_wakes_blocked_getter_and_putter) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  struct delayed d = {q, 30 * 1000000, NULL, 3};
  pthread_t t = later(&d);
  void *it;
  ASSERT_ERR(weft_queue_get(q, &it, weft_deadline_in_ms(10000)), WEFT_ESHUTDOWN);
  pthread_join(t, NULL);
  weft_queue_destroy(q);

  q = make(WEFT_QUEUE_FIFO, 2);
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  ASSERT_OK(weft_queue_put(q, P(2), 0));
  struct delayed d2 = {q, 30 * 1000000, NULL, 4};
  t = later(&d2);
  ASSERT_ERR(weft_queue_put(q, P(3), weft_deadline_in_ms(10000)), WEFT_ESHUTDOWN);
  pthread_join(t, NULL);
  weft_queue_destroy(q);
}

TEST(shutdown_wakes_joiner_immediate) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  ASSERT_OK(weft_queue_put(q, P(1), 0));
  struct delayed d = {q, 30 * 1000000, NULL, 4};
  pthread_t t = later(&d);
  ASSERT_OK(weft_queue_join(q, weft_deadline_in_ms(10000)));
  pthread_join(t, NULL);
  weft_queue_destroy(q);
}

static bool fd_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

TEST(eventfd_readiness) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  ASSERT_OK(weft_queue_put(q, P(1), 0)); /* before the fd exists */
  int fd = -1, fd2 = -1;
  ASSERT_OK(weft_queue_fd(q, &fd));
  ASSERT_GE(fd, 0);
  ASSERT_OK(weft_queue_fd(q, &fd2));
  ASSERT_EQ(fd, fd2);
  ASSERT(fd_readable(fd));
  void *it;
  ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_ERR(weft_queue_get(q, &it, 0), WEFT_EEMPTY);
  ASSERT(!fd_readable(fd));
  ASSERT_OK(weft_queue_put(q, P(2), 0));
  ASSERT(fd_readable(fd));
  ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_ERR(weft_queue_get(q, &it, 0), WEFT_EEMPTY);
  ASSERT(!fd_readable(fd));
  weft_queue_shutdown(q, false);
  ASSERT(fd_readable(fd));
  weft_queue_destroy(q);
}

TEST(eventfd_wakes_poll_from_other_thread) {
  weft_queue *q = make(WEFT_QUEUE_FIFO, 16);
  int fd;
  ASSERT_OK(weft_queue_fd(q, &fd));
  ASSERT(!fd_readable(fd));
  struct delayed d = {q, 20 * 1000000, P(9), 0};
  pthread_t t = later(&d);
  struct pollfd p = {fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  void *it;
  ASSERT_OK(weft_queue_get(q, &it, 0));
  ASSERT_UEQ(U(it), 9);
  pthread_join(t, NULL);
  weft_queue_destroy(q);
}

TEST(misuse_aborts_naming_the_call) {
  void *it;
  ASSERT_ABORTS(weft_queue_put(NULL, NULL, 0), "weft_queue_put");
  ASSERT_ABORTS(weft_queue_get(NULL, &it, 0), "weft_queue_get");
  ASSERT_ABORTS(weft_queue_task_done(NULL), "weft_queue_task_done");
  ASSERT_ABORTS(weft_queue_shutdown(NULL, false), "weft_queue_shutdown");
  ASSERT_ABORTS(weft_queue_create(NULL, NULL), "weft_queue_create");
  weft_queue *q = make(WEFT_QUEUE_FIFO, 0);
  ASSERT_ABORTS(weft_queue_get(q, NULL, 0), "weft_queue_get");
  size_t n;
  ASSERT_ABORTS(weft_queue_put_many(q, NULL, 3, 0, &n), "weft_queue_put_many");
  weft_queue_destroy(q);
}
