/*
 * Stress tests for weft_queue: many producers and consumers on every
 * engine, checking that each item is delivered exactly once; shutdown
 * racing with puts and gets, checking that each item ends exactly once
 * (taken by a get or handed to the free callback).
 *
 * Knobs: WEFT_STRESS_ITEMS (items per producer), WEFT_STRESS_ROUNDS.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(120)

#define MAXT 8

struct run {
  weft_queue *q;
  int producers, consumers;
  long per_producer;
  bool batch;
  _Atomic unsigned char *seen; /* one flag per item */
  _Atomic long got;
  int64_t deadline;
};

struct worker {
  struct run *r;
  int id;
};

/* Items are 1 + producer * per_producer + i, so 0 (NULL) is the stop
 * sentinel, as in the seed's queue demo. */
static void *producer(void *arg) {
  struct worker *w = arg;
  struct run *r = w->r;
  long base = 1 + (long)w->id * r->per_producer;
  if (r->batch) {
    void *buf[37];
    for (long i = 0; i < r->per_producer;) {
      size_t n = 0;
      while (n < 37 && i < r->per_producer) buf[n++] = (void *)(uintptr_t)(base + i++);
      size_t put = 0;
      ASSERT_OK(weft_queue_put_many(r->q, buf, n, r->deadline, &put));
      ASSERT_EQ(put, n);
    }
  } else {
    for (long i = 0; i < r->per_producer; i++)
      ASSERT_OK(weft_queue_put(r->q, (void *)(uintptr_t)(base + i), r->deadline));
  }
  return NULL;
}

static void mark(struct run *r, void *it) {
  uintptr_t v = (uintptr_t)it;
  ASSERT(v >= 1 && v <= (uintptr_t)(r->producers * r->per_producer));
  unsigned char was = atomic_exchange(&r->seen[v - 1], 1);
  if (was) weft_test_fail(__FILE__, __LINE__, "item %ju delivered twice", (uintmax_t)v);
  atomic_fetch_add(&r->got, 1);
}

static void *consumer(void *arg) {
  struct worker *w = arg;
  struct run *r = w->r;
  for (;;) {
    if (r->batch) {
      void *buf[19];
      size_t n;
      ASSERT_OK(weft_queue_get_many(r->q, buf, 19, r->deadline, &n));
      bool stop = false;
      for (size_t i = 0; i < n; i++) {
        if (buf[i] == NULL)
          stop = true; /* a sentinel; others in the batch are still items */
        else
          mark(r, buf[i]);
      }
      /* A batch may hold several sentinels; put back the extras. */
      size_t sentinels = 0;
      for (size_t i = 0; i < n; i++) sentinels += buf[i] == NULL;
      for (size_t s = 1; s < sentinels; s++) ASSERT_OK(weft_queue_put(r->q, NULL, r->deadline));
      if (stop) return NULL;
    } else {
      void *it;
      ASSERT_OK(weft_queue_get(r->q, &it, r->deadline));
      if (it == NULL) return NULL;
      mark(r, it);
    }
  }
}

static void run_case(const weft_queue_opts *o, int producers, int consumers, bool batch) {
  struct run r;
  memset(&r, 0, sizeof r);
  ASSERT_OK(weft_queue_create(&r.q, o));
  r.producers = producers;
  r.consumers = consumers;
  r.per_producer = weft_test_knob("WEFT_STRESS_ITEMS", 20000);
  r.batch = batch;
  r.deadline = weft_deadline_in_ms(60000); /* a hang becomes a failure */
  long total = producers * r.per_producer;
  r.seen = calloc((size_t)total, 1);
  ASSERT_NOT_NULL(r.seen);
  pthread_t pt[MAXT], ct[MAXT];
  struct worker pw[MAXT], cw[MAXT];
  for (int i = 0; i < consumers; i++) {
    cw[i] = (struct worker){&r, i};
    ASSERT_EQ(pthread_create(&ct[i], NULL, consumer, &cw[i]), 0);
  }
  for (int i = 0; i < producers; i++) {
    pw[i] = (struct worker){&r, i};
    ASSERT_EQ(pthread_create(&pt[i], NULL, producer, &pw[i]), 0);
  }
  for (int i = 0; i < producers; i++) pthread_join(pt[i], NULL);
  /* Sentinels only once everything is out: in a LIFO they would otherwise
   * sit on top of the items still inside. */
  while (atomic_load(&r.got) < total) {
    ASSERT_LT(weft_now_ns(), r.deadline);
    weft_sleep_until(weft_now_ns() + 100000);
  }
  for (int i = 0; i < consumers; i++) ASSERT_OK(weft_queue_put(r.q, NULL, r.deadline));
  for (int i = 0; i < consumers; i++) pthread_join(ct[i], NULL);
  long got = atomic_load(&r.got);
  ASSERT_EQ(got, total);
  for (long i = 0; i < total; i++) ASSERT_EQ(r.seen[i], 1);
  ASSERT_EQ(weft_queue_qsize(r.q), 0);
  weft_queue_destroy(r.q);
  free(r.seen);
}

static int cmp_uint(const void *a, const void *b, void *ud) {
  (void)ud;
  return (uintptr_t)a < (uintptr_t)b ? -1 : (uintptr_t)a > (uintptr_t)b;
}

/* The NULL sentinel is the smallest key and would come out first; with the
 * order reversed it comes last. */
static int cmp_rev(const void *a, const void *b, void *ud) { return cmp_uint(b, a, ud); }

static const int shapes[][2] = {{1, 1}, {2, 2}, {4, 4}, {1, 4}, {4, 1}};

static void all_shapes(const weft_queue_opts *o, bool batch) {
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    run_case(o, shapes[s][0], shapes[s][1], batch);
}

TEST(unbounded_fifo_exactly_once) {
  weft_queue_opts o = {0};
  all_shapes(&o, false);
  all_shapes(&o, true);
}

TEST(bounded_fifo_exactly_once) {
  size_t caps[] = {2, 5, 64, 1024};
  for (size_t i = 0; i < 4; i++) {
    weft_queue_opts o = {0};
    o.maxsize = caps[i];
    all_shapes(&o, false);
    if (caps[i] >= 64) all_shapes(&o, true);
  }
}

TEST(locked_engines_exactly_once) {
  weft_queue_opts o = {0};
  o.maxsize = 1;
  all_shapes(&o, false);
  o.order = WEFT_QUEUE_LIFO;
  o.maxsize = 0;
  all_shapes(&o, false);
  o.maxsize = 16;
  all_shapes(&o, false);
  o.order = WEFT_QUEUE_PRIORITY;
  o.cmp = cmp_rev;
  o.maxsize = 0;
  all_shapes(&o, false);
}

/* Shutdown(immediate) racing with producers and consumers: every item put
 * successfully ends exactly once, through a get or through free_fn; puts
 * that fail leave the item with the caller. */
struct race {
  weft_queue *q;
  _Atomic long put_ok, got, freed;
};

static void race_free(void *item, void *ud) {
  (void)item;
  atomic_fetch_add(&((struct race *)ud)->freed, 1);
}

static void *race_producer(void *arg) {
  struct race *r = arg;
  for (long i = 1;; i++) {
    int e = weft_queue_put(r->q, (void *)(uintptr_t)i, weft_deadline_in_ms(10000));
    if (e == WEFT_ESHUTDOWN) return NULL;
    ASSERT_OK(e);
    atomic_fetch_add(&r->put_ok, 1);
  }
}

static void *race_consumer(void *arg) {
  struct race *r = arg;
  for (;;) {
    void *it;
    int e = weft_queue_get(r->q, &it, weft_deadline_in_ms(10000));
    if (e == WEFT_ESHUTDOWN) return NULL;
    ASSERT_OK(e);
    atomic_fetch_add(&r->got, 1);
  }
}

static void shutdown_race(size_t maxsize, bool immediate) {
  long rounds = weft_test_knob("WEFT_STRESS_ROUNDS", 30);
  for (long round = 0; round < rounds; round++) {
    struct race r;
    memset(&r, 0, sizeof r);
    weft_queue_opts o = {0};
    o.maxsize = maxsize;
    o.free_fn = race_free;
    o.ud = &r;
    ASSERT_OK(weft_queue_create(&r.q, &o));
    pthread_t t[4];
    ASSERT_EQ(pthread_create(&t[0], NULL, race_producer, &r), 0);
    ASSERT_EQ(pthread_create(&t[1], NULL, race_producer, &r), 0);
    ASSERT_EQ(pthread_create(&t[2], NULL, race_consumer, &r), 0);
    ASSERT_EQ(pthread_create(&t[3], NULL, race_consumer, &r), 0);
    weft_sleep_until(weft_now_ns() + 1000000 + round * 50000);
    weft_queue_shutdown(r.q, immediate);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    if (!immediate) ASSERT_EQ(weft_queue_qsize(r.q), 0); /* consumers drained it */
    weft_queue_destroy(r.q);
    long got = atomic_load(&r.got), freed = atomic_load(&r.freed), put_ok = atomic_load(&r.put_ok);
    ASSERT_EQ(got + freed, put_ok);
  }
}

TEST(shutdown_races_unbounded) {
  shutdown_race(0, true);
  shutdown_race(0, false);
}

TEST(shutdown_races_bounded) {
  shutdown_race(8, true);
  shutdown_race(8, false);
}

/* task_done/join across threads: join returns only after every item's
 * task_done, and never hangs. */
struct tdj {
  weft_queue *q;
  _Atomic long processed;
};

static void *td_worker(void *arg) {
  struct tdj *s = arg;
  for (;;) {
    void *it;
    ASSERT_OK(weft_queue_get(s->q, &it, weft_deadline_in_ms(30000)));
    if (it == NULL) {
      ASSERT_OK(weft_queue_task_done(s->q));
      return NULL;
    }
    atomic_fetch_add(&s->processed, 1);
    ASSERT_OK(weft_queue_task_done(s->q));
  }
}

TEST(join_waits_for_all_task_done) {
  long rounds = weft_test_knob("WEFT_STRESS_ROUNDS", 30);
  for (long round = 0; round < rounds; round++) {
    struct tdj s;
    memset(&s, 0, sizeof s);
    ASSERT_OK(weft_queue_create(&s.q, NULL));
    pthread_t t[3];
    for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_create(&t[i], NULL, td_worker, &s), 0);
    for (uintptr_t i = 1; i <= 2000; i++) ASSERT_OK(weft_queue_put(s.q, (void *)i, 0));
    ASSERT_OK(weft_queue_join(s.q, weft_deadline_in_ms(30000)));
    long processed = atomic_load(&s.processed);
    ASSERT_EQ(processed, 2000);
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_queue_put(s.q, NULL, 0));
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    ASSERT_OK(weft_queue_join(s.q, 0));
    weft_queue_destroy(s.q);
  }
}

/* Lost wake-ups: two threads bounce one token through two queues, with
 * random short pauses so that each side often goes to sleep just as the
 * other puts. Waits are WEFT_FOREVER on purpose: a lost wake-up then hangs
 * and the harness's timeout fails the test (with a deadline, the get's last
 * look after the deadline would find the item and hide the stall). */
struct pingpong {
  weft_queue *there, *back;
  long rounds;
  unsigned seed;
};

static void pause_sometimes(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  unsigned r = (*seed >> 16) & 63;
  if (r < 8) weft_sleep_until(weft_now_ns() + (int64_t)r * 5000); /* 0-35 us */
}

static void *pong(void *arg) {
  struct pingpong *p = arg;
  unsigned seed = p->seed ^ 0x9e3779b9u;
  for (long i = 0; i < p->rounds; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(p->there, &it, WEFT_FOREVER));
    ASSERT_UEQ((uintptr_t)it, (uintptr_t)i + 1);
    pause_sometimes(&seed);
    ASSERT_OK(weft_queue_put(p->back, it, WEFT_FOREVER));
  }
  return NULL;
}

static void pingpong_case(const weft_queue_opts *o) {
  struct pingpong p = {NULL, NULL, weft_test_knob("WEFT_STRESS_ITEMS", 20000) / 2, 7};
  ASSERT_OK(weft_queue_create(&p.there, o));
  ASSERT_OK(weft_queue_create(&p.back, o));
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, pong, &p), 0);
  unsigned seed = 99;
  for (long i = 0; i < p.rounds; i++) {
    ASSERT_OK(weft_queue_put(p.there, (void *)(uintptr_t)(i + 1), WEFT_FOREVER));
    pause_sometimes(&seed);
    void *it;
    ASSERT_OK(weft_queue_get(p.back, &it, WEFT_FOREVER));
    ASSERT_UEQ((uintptr_t)it, (uintptr_t)i + 1);
  }
  pthread_join(t, NULL);
  weft_queue_destroy(p.there);
  weft_queue_destroy(p.back);
}

TEST(no_lost_wakeups_pingpong) {
  weft_queue_opts o = {0};
  pingpong_case(&o); /* seg */
  o.maxsize = 4;
  pingpong_case(&o); /* ring */
  o.maxsize = 1;
  pingpong_case(&o); /* locked FIFO */
  o.maxsize = 0;
  o.order = WEFT_QUEUE_LIFO;
  pingpong_case(&o); /* locked LIFO */
}

/* A full ring: the producer keeps running into "full" and sleeps while the
 * consumer, pausing at random, frees one cell at a time. */
struct slowc {
  weft_queue *q;
  long n;
};

static void *slow_consumer(void *arg) {
  struct slowc *c = arg;
  unsigned seed = 5;
  for (long i = 0; i < c->n; i++) {
    void *it;
    ASSERT_OK(weft_queue_get(c->q, &it, WEFT_FOREVER));
    ASSERT_UEQ((uintptr_t)it, (uintptr_t)i + 1);
    pause_sometimes(&seed);
  }
  return NULL;
}

TEST(no_lost_wakeups_full_queue) {
  size_t caps[] = {2, 3, 1};
  for (int k = 0; k < 3; k++) {
    weft_queue_opts o = {0};
    o.maxsize = caps[k];
    struct slowc c = {NULL, weft_test_knob("WEFT_STRESS_ITEMS", 20000)};
    ASSERT_OK(weft_queue_create(&c.q, &o));
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, slow_consumer, &c), 0);
    for (long i = 0; i < c.n; i++)
      ASSERT_OK(weft_queue_put(c.q, (void *)(uintptr_t)(i + 1), WEFT_FOREVER));
    pthread_join(t, NULL);
    weft_queue_destroy(c.q);
  }
}
