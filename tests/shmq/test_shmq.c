/*
 * weft_shmq: messages in and out, sizes, order across laps of the ring,
 * deadlines, batches, qsize, shutdown, close, task_done/join, and queues
 * shared with fork()ed children (1P/1C and 2P/2C, each message exactly
 * once).
 */
#include "shmq_test_util.h"

WEFT_TEST_TIMEOUT(60)

static weft_shmq *make(size_t capacity, size_t slot, size_t msg_max, unsigned flags) {
  weft_shmq *q = NULL;
  weft_shmq_opts o = {.capacity = capacity, .slot_size = slot, .msg_max = msg_max,
                      .flags = flags};
  ASSERT_OK(weft_shmq_create(&q, &o));
  ASSERT_NOT_NULL(q);
  return q;
}

/* Deterministic message contents: byte i of message (id) is f(id, i). */
static void fill(unsigned char *b, size_t len, uint64_t id) {
  for (size_t i = 0; i < len; i++) b[i] = (unsigned char)(id * 131 + i * 7 + (i >> 8));
}
static bool check(const unsigned char *b, size_t len, uint64_t id) {
  for (size_t i = 0; i < len; i++)
    if (b[i] != (unsigned char)(id * 131 + i * 7 + (i >> 8))) return false;
  return true;
}

TEST(defaults_round_trip) {
  weft_shmq *q;
  ASSERT_OK(weft_shmq_create(&q, NULL));
  ASSERT_UEQ(weft_shmq_msg_max(q), 65536);
  ASSERT_UEQ(weft_shmq_capacity(q), 1u << 20);
  ASSERT(weft_shmq_empty(q));
  ASSERT_OK(weft_shmq_put(q, "hello", 5, WEFT_FOREVER));
  ASSERT_UEQ(weft_shmq_qsize(q), 1);
  char buf[16];
  size_t len = 0;
  ASSERT_OK(weft_shmq_get(q, buf, sizeof buf, &len, WEFT_FOREVER));
  ASSERT_UEQ(len, 5);
  ASSERT(memcmp(buf, "hello", 5) == 0);
  ASSERT(weft_shmq_empty(q));
  ASSERT_GE(weft_shmq_fd(q), 0);
  weft_shmq_destroy(q);
  weft_shmq_destroy(NULL);
}

TEST(bad_options) {
  weft_shmq *q = NULL;
  weft_shmq_opts o = {.slot_size = 100};
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
  o = (weft_shmq_opts){.slot_size = 32};
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
  o = (weft_shmq_opts){.capacity = 4096, .msg_max = 8192};
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
  o = (weft_shmq_opts){.flags = 0x80};
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
  o = (weft_shmq_opts){.flags = WEFT_SHMQ_PERSISTENT};
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
  o = (weft_shmq_opts){.capacity = WEFT_SHMQ_CAPACITY_MAX + 1};
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
  ASSERT_NULL(q);
}

TEST(sizes_and_emsgsize) {
  weft_shmq *q = make(4096, 64, 1000, 0);
  unsigned char in[1001], out[1001];
  size_t sizes[] = {0, 1, 63, 64, 65, 127, 128, 129, 999, 1000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    fill(in, sizes[i], i);
    ASSERT_OK(weft_shmq_put(q, in, sizes[i], 0));
    size_t len = 12345;
    ASSERT_OK(weft_shmq_get(q, out, sizeof out, &len, 0));
    ASSERT_UEQ(len, sizes[i]);
    ASSERT(check(out, len, i));
  }
  ASSERT_ERR(weft_shmq_put(q, in, 1001, 0), WEFT_EMSGSIZE);
  /* A buffer too small: the message stays, its length is told. */
  fill(in, 300, 9);
  ASSERT_OK(weft_shmq_put(q, in, 300, 0));
  size_t len = 0;
  ASSERT_ERR(weft_shmq_get(q, out, 299, &len, 0), WEFT_EMSGSIZE);
  ASSERT_UEQ(len, 300);
  ASSERT_UEQ(weft_shmq_qsize(q), 1);
  ASSERT_OK(weft_shmq_get(q, out, 300, &len, 0));
  ASSERT(check(out, 300, 9));
  /* The empty message needs no buffer. */
  ASSERT_OK(weft_shmq_put(q, NULL, 0, 0));
  ASSERT_OK(weft_shmq_get(q, NULL, 0, &len, 0));
  ASSERT_UEQ(len, 0);
  weft_shmq_destroy(q);
}

/* Many laps of a small ring with messages of 1 to 16 slots: the bytes
 * that wrap around the end of the data array come back whole and in order. */
TEST(fifo_across_laps_with_wrapping_messages) {
  weft_shmq *q = make(1024, 64, 1024, 0); /* 16 slots */
  unsigned char in[1024], out[1024];
  uint64_t put = 0, got = 0;
  uint32_t rnd = 12345;
  while (got < 20000) {
    rnd = rnd * 1103515245 + 12345;
    size_t len = (rnd >> 8) % 1025;
    fill(in, len, put);
    int rc = weft_shmq_put(q, in, len, 0);
    if (rc == 0) {
      put++;
      continue;
    }
    ASSERT_ERR(rc, WEFT_EFULL);
    size_t olen;
    while ((rc = weft_shmq_get(q, out, sizeof out, &olen, 0)) == 0) {
      ASSERT(check(out, olen, got));
      got++;
    }
    ASSERT_ERR(rc, WEFT_EEMPTY);
    ASSERT_UEQ(got, put);
  }
  weft_shmq_destroy(q);
}

TEST(nonblocking_and_deadlines) {
  weft_shmq *q = make(256, 64, 64, 0); /* 4 slots */
  char b[64] = {0};
  size_t len;
  ASSERT_ERR(weft_shmq_get(q, b, sizeof b, &len, 0), WEFT_EEMPTY);
  int64_t t0 = weft_now_ns();
  ASSERT_ERR(weft_shmq_get(q, b, sizeof b, &len, weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_shmq_put(q, b, 64, 0));
  ASSERT(weft_shmq_full(q));
  ASSERT_UEQ(weft_shmq_qsize(q), 4);
  ASSERT_ERR(weft_shmq_put(q, b, 1, 0), WEFT_EFULL);
  t0 = weft_now_ns();
  ASSERT_ERR(weft_shmq_put(q, b, 1, weft_deadline_in_ms(30)), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns() - t0, 30 * MS);
  ASSERT_ERR(weft_shmq_put(q, b, 1, -5), WEFT_EINVAL);
  ASSERT_ERR(weft_shmq_get(q, b, 64, &len, -5), WEFT_EINVAL);
  weft_shmq_destroy(q);
}

TEST(batches) {
  weft_shmq *q = make(8192, 64, 256, 0);
  unsigned char data[10][256];
  const void *msgs[10];
  size_t lens[10];
  for (int i = 0; i < 10; i++) {
    lens[i] = (size_t)(i * 25);
    fill(data[i], lens[i], (uint64_t)i);
    msgs[i] = data[i];
  }
  size_t n = 0;
  ASSERT_OK(weft_shmq_put_many(q, msgs, lens, 10, 0, &n));
  ASSERT_UEQ(n, 10);
  ASSERT_UEQ(weft_shmq_qsize(q), 10);
  unsigned char buf[600];
  size_t got_lens[10], got = 0;
  /* Up to what fits: 0 + 25 + ... + 100 = 250, + 125 = 375, + 150 = 525 */
  ASSERT_OK(weft_shmq_get_many(q, buf, sizeof buf, got_lens, 10, &got, 0));
  ASSERT_UEQ(got, 7);
  size_t off = 0;
  for (size_t i = 0; i < got; i++) {
    ASSERT_UEQ(got_lens[i], i * 25);
    ASSERT(check(buf + off, got_lens[i], i));
    off += got_lens[i];
  }
  ASSERT_OK(weft_shmq_get_many(q, buf, sizeof buf, got_lens, 2, &got, 0));
  ASSERT_UEQ(got, 2);
  ASSERT_UEQ(got_lens[0], 175);
  ASSERT_OK(weft_shmq_get_many(q, buf, sizeof buf, got_lens, 10, &got, 0));
  ASSERT_UEQ(got, 1);
  ASSERT_ERR(weft_shmq_get_many(q, buf, sizeof buf, got_lens, 10, &got, 0), WEFT_EEMPTY);
  ASSERT_UEQ(got, 0);
  /* A batch with a message too large puts those before it. */
  lens[3] = 257;
  ASSERT_ERR(weft_shmq_put_many(q, msgs, lens, 10, 0, &n), WEFT_EMSGSIZE);
  ASSERT_UEQ(n, 3);
  weft_shmq_destroy(q);
}

TEST(shutdown_drains_then_fails) {
  weft_shmq *q = make(0, 0, 0, 0);
  ASSERT_OK(weft_shmq_put(q, "a", 1, 0));
  ASSERT_OK(weft_shmq_put(q, "b", 1, 0));
  weft_shmq_shutdown(q, false);
  ASSERT(weft_shmq_is_shutdown(q));
  ASSERT_ERR(weft_shmq_put(q, "c", 1, 0), WEFT_ESHUTDOWN);
  char c;
  size_t len;
  ASSERT_OK(weft_shmq_get(q, &c, 1, &len, WEFT_FOREVER));
  ASSERT_EQ(c, 'a');
  ASSERT_OK(weft_shmq_get(q, &c, 1, &len, WEFT_FOREVER));
  ASSERT_EQ(c, 'b');
  ASSERT_ERR(weft_shmq_get(q, &c, 1, &len, WEFT_FOREVER), WEFT_ESHUTDOWN);
  weft_shmq_shutdown(q, true);
  weft_shmq_destroy(q);
}

TEST(shutdown_immediate_drops_and_joins) {
  weft_shmq *q = make(0, 0, 0, WEFT_SHMQ_JOINABLE);
  ASSERT_OK(weft_shmq_put(q, "a", 1, 0));
  weft_shmq_shutdown(q, true);
  char c;
  size_t len;
  ASSERT_ERR(weft_shmq_get(q, &c, 1, &len, WEFT_FOREVER), WEFT_ESHUTDOWN);
  ASSERT_UEQ(weft_shmq_qsize(q), 0);
  ASSERT_OK(weft_shmq_join(q, WEFT_FOREVER));
  weft_shmq_destroy(q);
}

static int blocked_getter(void *arg) {
  weft_shmq *q = arg;
  char c;
  size_t len;
  int rc = weft_shmq_get(q, &c, 1, &len, WEFT_FOREVER);
  return rc == WEFT_ESHUTDOWN ? 0 : 1;
}

TEST(shutdown_wakes_a_blocked_process) {
  weft_shmq *q = make(0, 0, 0, 0);
  pid_t c = spawn(blocked_getter, q);
  weft_test_wait_asleep_in_futex(c, (uint64_t)c);
  weft_shmq_shutdown(q, false);
  ASSERT_EQ(reap(c), 0);
  weft_shmq_destroy(q);
}

TEST(close_makes_this_handle_fail) {
  weft_shmq *q = make(0, 0, 0, 0);
  ASSERT_OK(weft_shmq_close(q));
  ASSERT_ERR(weft_shmq_close(q), WEFT_EBADF);
  ASSERT_ERR(weft_shmq_put(q, "a", 1, 0), WEFT_EBADF);
  char c;
  size_t len;
  ASSERT_ERR(weft_shmq_get(q, &c, 1, &len, 0), WEFT_EBADF);
  weft_shmq_destroy(q);
}

static int done_worker(void *arg) {
  weft_shmq *q = arg;
  char b[8];
  size_t len;
  for (int i = 0; i < 50; i++) {
    if (weft_shmq_get(q, b, sizeof b, &len, WEFT_FOREVER) != 0) return 1;
    if (weft_shmq_task_done(q) != 0) return 2;
  }
  weft_shmq_destroy(q);
  return 0;
}

TEST(task_done_and_join_across_processes) {
  weft_shmq *q = make(0, 0, 0, WEFT_SHMQ_JOINABLE);
  ASSERT_ERR(weft_shmq_task_done(q), WEFT_EINVAL);
  ASSERT_OK(weft_shmq_join(q, 0)); /* nothing put: joined */
  ASSERT_OK(weft_shmq_put(q, "x", 1, 0));
  ASSERT_ERR(weft_shmq_join(q, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  char b[8];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  ASSERT_ERR(weft_shmq_join(q, 0), WEFT_ETIMEDOUT); /* taken, not done */
  ASSERT_OK(weft_shmq_task_done(q));
  ASSERT_OK(weft_shmq_join(q, 0));
  pid_t c[2] = {spawn(done_worker, q), spawn(done_worker, q)};
  for (int i = 0; i < 100; i++) ASSERT_OK(weft_shmq_put(q, "y", 1, WEFT_FOREVER));
  ASSERT_OK(weft_shmq_join(q, WEFT_FOREVER));
  ASSERT_UEQ(weft_shmq_qsize(q), 0);
  for (int i = 0; i < 2; i++) ASSERT_EQ(reap(c[i]), 0);
  ASSERT_ERR(weft_shmq_task_done(q), WEFT_EINVAL);
  ASSERT_UEQ(weft_shmq_peer_deaths(q), 0);
  weft_shmq_destroy(q);
}

/* ---------------------------------------------------- across processes */

typedef struct xp {
  weft_shmq *q;
  uint64_t n;        /* messages per producer */
  unsigned id;       /* producer id */
  _Atomic uint32_t *seen; /* consumers count each (producer, seq) here */
} xp;

#define XP_N 40000

static int xp_producer(void *arg) {
  xp *a = arg;
  unsigned char b[300];
  for (uint64_t s = 0; s < a->n; s++) {
    size_t len = 16 + (size_t)(s * 37 % 280);
    memcpy(b, &a->id, sizeof a->id);
    memcpy(b + 4, &s, sizeof s);
    fill(b + 12, len - 12, s + a->id);
    if (weft_shmq_put(a->q, b, len, WEFT_FOREVER) != 0) return 1;
  }
  return 0;
}

static int xp_consumer(void *arg) {
  xp *a = arg;
  unsigned char b[300];
  uint64_t last[2] = {UINT64_MAX, UINT64_MAX};
  for (;;) {
    size_t len;
    int rc = weft_shmq_get(a->q, b, sizeof b, &len, WEFT_FOREVER);
    if (rc == WEFT_ESHUTDOWN) return 0;
    if (rc != 0 || len < 12) return 1;
    unsigned id;
    uint64_t s;
    memcpy(&id, b, 4);
    memcpy(&s, b + 4, 8);
    if (id > 1 || s >= XP_N || !check(b + 12, len - 12, s + id)) return 2;
    /* FIFO: each producer's messages reach any one consumer in order */
    if (last[id] != UINT64_MAX && s <= last[id]) return 3;
    last[id] = s;
    atomic_fetch_add(&a->seen[id * XP_N + s], 1);
  }
}

static void cross(unsigned producers, unsigned consumers) {
  weft_shmq *q = make(16384, 64, 512, 0);
  _Atomic uint32_t *seen = shared_map(2 * XP_N * sizeof *seen);
  xp args[2];
  pid_t pp[2], cc[2];
  for (unsigned i = 0; i < consumers; i++) {
    args[0] = (xp){q, XP_N, 0, seen};
    cc[i] = spawn(xp_consumer, &args[0]);
  }
  for (unsigned i = 0; i < producers; i++) {
    args[i] = (xp){q, XP_N, i, seen};
    pp[i] = spawn(xp_producer, &args[i]);
  }
  for (unsigned i = 0; i < producers; i++) ASSERT_EQ(reap(pp[i]), 0);
  weft_shmq_shutdown(q, false);
  for (unsigned i = 0; i < consumers; i++) ASSERT_EQ(reap(cc[i]), 0);
  for (unsigned p = 0; p < producers; p++)
    for (uint64_t s = 0; s < XP_N; s++) ASSERT_EQ(seen[p * XP_N + s], 1);
  ASSERT_UEQ(weft_shmq_qsize(q), 0);
  weft_shmq_destroy(q);
}

TEST(one_producer_one_consumer_processes) { cross(1, 1); }

/* Messages of up to 300 KiB (75 slots) arrive whole and in order across
 * processes, through a ring of 1 MiB. */
#define BIG_N 300
static int big_consumer(void *arg) {
  weft_shmq *q = arg;
  size_t cap = 300 << 10;
  unsigned char *b = malloc(cap);
  if (!b) return 1;
  for (uint64_t i = 0; i < BIG_N; i++) {
    size_t len;
    if (weft_shmq_get(q, b, cap, &len, WEFT_FOREVER) != 0) return 2;
    if (len != 1000 + i * 997 % (cap - 1000) || !check(b, len, i)) return 3;
  }
  free(b);
  return 0;
}

TEST(large_messages_across_processes) {
  weft_shmq *q = make(1 << 20, 4096, 300 << 10, 0);
  pid_t c = spawn(big_consumer, q);
  size_t cap = 300 << 10;
  unsigned char *b = malloc(cap);
  ASSERT_NOT_NULL(b);
  for (uint64_t i = 0; i < BIG_N; i++) {
    size_t len = 1000 + i * 997 % (cap - 1000);
    fill(b, len, i);
    ASSERT_OK(weft_shmq_put(q, b, len, WEFT_FOREVER));
  }
  ASSERT_EQ(reap(c), 0);
  free(b);
  weft_shmq_destroy(q);
}
TEST(two_producers_two_consumers_processes) { cross(2, 2); }

TEST(misuse_aborts) {
  ASSERT_ABORTS(weft_shmq_put(NULL, "a", 1, 0), "weft_shmq_put");
  ASSERT_ABORTS(weft_shmq_qsize(NULL), "weft_shmq_qsize");
}

/* ---------------------------------------------- threads of one process */

typedef struct thr_arg {
  weft_shmq *q;
  unsigned id;
  _Atomic uint32_t *seen;
} thr_arg;

#define THR_N 20000

static void *thr_producer(void *arg) {
  thr_arg *a = arg;
  unsigned char b[100];
  for (uint32_t s = 0; s < THR_N; s++) {
    memcpy(b, &a->id, 4);
    memcpy(b + 4, &s, 4);
    if (weft_shmq_put(a->q, b, 8 + s % 90, WEFT_FOREVER) != 0) return (void *)1;
  }
  return NULL;
}

static void *thr_consumer(void *arg) {
  thr_arg *a = arg;
  unsigned char b[100];
  for (;;) {
    size_t len;
    int rc = weft_shmq_get(a->q, b, sizeof b, &len, WEFT_FOREVER);
    if (rc == WEFT_ESHUTDOWN) return NULL;
    if (rc != 0) return (void *)2;
    uint32_t id, s;
    memcpy(&id, b, 4);
    memcpy(&s, b + 4, 4);
    if (id >= 3 || s >= THR_N || len != 8 + s % 90) return (void *)3;
    atomic_fetch_add(&a->seen[id * THR_N + s], 1);
    if (weft_shmq_task_done(a->q) != 0) return (void *)4;
  }
}

#ifndef WEFT_TSAN
static int child_producer(void *arg) { return thr_producer(arg) != NULL; }
#endif

/* Threads of one process each get their own record; a forked child that
 * inherited the handle from a threaded parent gets its own too. */
TEST(threads_of_one_process_and_a_child) {
  weft_shmq *q = make(4096, 64, 128, WEFT_SHMQ_JOINABLE);
  _Atomic uint32_t *seen = shared_map(3 * THR_N * sizeof *seen);
  weft_thread *t[5];
  thr_arg args[5];
  for (unsigned i = 0; i < 2; i++) {
    args[i] = (thr_arg){q, i, seen};
    ASSERT_OK(weft_thread_start(&t[i], thr_producer, &args[i], NULL));
  }
  for (unsigned i = 2; i < 5; i++) {
    args[i] = (thr_arg){q, 0, seen};
    ASSERT_OK(weft_thread_start(&t[i], thr_consumer, &args[i], NULL));
  }
  /* A child forked while those threads run puts as producer 2. Not under
   * ThreadSanitizer: it cannot see the other process's release stores, so
   * every hand-off that passes through the child reads to it as a race, and
   * its runtime does not support fork() from a threaded process. */
#ifndef WEFT_TSAN
  static thr_arg child_arg;
  child_arg = (thr_arg){q, 2, seen};
  pid_t c = spawn(child_producer, &child_arg);
  ASSERT_EQ(reap(c), 0);
  const uint32_t producers = 3;
#else
  const uint32_t producers = 2;
#endif
  for (unsigned i = 0; i < 2; i++) {
    void *ret = (void *)9;
    ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, &ret));
    ASSERT_NULL(ret);
  }
  ASSERT_OK(weft_shmq_join(q, WEFT_FOREVER));
  weft_shmq_shutdown(q, false);
  for (unsigned i = 2; i < 5; i++) {
    void *ret = (void *)9;
    ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, &ret));
    ASSERT_NULL(ret);
  }
  for (uint32_t i = 0; i < producers * THR_N; i++) ASSERT_EQ(seen[i], 1);
  ASSERT_UEQ(weft_shmq_peer_deaths(q), 0);
  weft_shmq_destroy(q);
}
