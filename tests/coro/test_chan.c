/* Channels and select; the coroutine event, semaphore and queue. */
#include "weft_test.h"

WEFT_TEST_TIMEOUT(30)

typedef struct {
  weft_chan *in, *out;
  int n;
} pp_arg;

static int pong(void *arg) {
  pp_arg *a = arg;
  for (int i = 0; i < a->n; i++) {
    int v;
    int e = weft_chan_recv(a->in, &v, WEFT_FOREVER);
    if (e) return e;
    v++;
    if ((e = weft_chan_send(a->out, &v, WEFT_FOREVER)) != 0) return e;
  }
  return 0;
}

TEST(unbuffered_ping_pong) {
  weft_chan *a, *b;
  ASSERT_OK(weft_chan_create(&a, sizeof(int), 0));
  ASSERT_OK(weft_chan_create(&b, sizeof(int), 0));
  pp_arg arg = {a, b, 10000};
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, pong, &arg, NULL));
  int v = 0;
  for (int i = 0; i < 10000; i++) {
    ASSERT_OK(weft_chan_send(a, &v, WEFT_FOREVER));
    int w;
    ASSERT_OK(weft_chan_recv(b, &w, WEFT_FOREVER));
    ASSERT_EQ(w, v + 1);
    v = w;
  }
  int st;
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, &st));
  ASSERT_EQ(st, 0);
  weft_coro_release(c);
  weft_chan_destroy(a);
  weft_chan_destroy(b);
}

TEST(unbuffered_needs_a_receiver) {
  weft_chan *a;
  ASSERT_OK(weft_chan_create(&a, sizeof(int), 0));
  int v = 1;
  ASSERT_ERR(weft_chan_send(a, &v, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_chan_send(a, &v, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_chan_recv(a, &v, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_chan_recv(a, &v, -7), WEFT_EINVAL);
  ASSERT_EQ(weft_chan_len(a), 0);
  weft_chan_destroy(a);
}

static int producer(void *arg) {
  weft_chan *ch = arg;
  for (int i = 0; i < 100; i++) {
    int e = weft_chan_send(ch, &i, WEFT_FOREVER);
    if (e) return e;
  }
  weft_chan_close(ch);
  return 0;
}

TEST(buffered_fifo_and_close) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, sizeof(int), 8));
  weft_coro *p;
  ASSERT_OK(weft_coro_spawn(&p, producer, ch, NULL));
  /* The producer ran until the buffer was full. */
  ASSERT_EQ(weft_chan_len(ch), 8);
  int v, expect = 0;
  int e;
  while ((e = weft_chan_recv(ch, &v, weft_deadline_in_s(5))) == 0) ASSERT_EQ(v, expect++);
  ASSERT_EQ(e, WEFT_EPIPE);
  ASSERT_EQ(expect, 100);
  ASSERT_ERR(weft_chan_send(ch, &v, WEFT_FOREVER), WEFT_EPIPE);
  weft_chan_close(ch);
  ASSERT_OK(weft_coro_join(p, WEFT_FOREVER, &e));
  ASSERT_EQ(e, 0);
  weft_coro_release(p);
  weft_chan_destroy(ch);
}

static int blocked_sender(void *arg) {
  int v = 5;
  return weft_chan_send(arg, &v, WEFT_FOREVER);
}

TEST(close_wakes_waiters) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, sizeof(int), 0));
  weft_coro *s;
  ASSERT_OK(weft_coro_spawn(&s, blocked_sender, ch, NULL));
  weft_chan_close(ch);
  int st = 0;
  ASSERT_OK(weft_coro_join(s, WEFT_FOREVER, &st));
  ASSERT_EQ(st, WEFT_EPIPE);
  weft_coro_release(s);
  weft_chan_destroy(ch);
}

/* A cancel that arrives while a receiver waits must not lose an element
 * sent afterwards: the element stays for the next receiver. */
static int cancelled_receiver(void *arg) {
  int v;
  return weft_chan_recv(arg, &v, WEFT_FOREVER);
}

TEST(cancel_loses_nothing) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, sizeof(int), 1));
  weft_coro *r;
  ASSERT_OK(weft_coro_spawn(&r, cancelled_receiver, ch, NULL));
  ASSERT_OK(weft_coro_cancel(r));
  int v = 9; /* r is cancelled but has not run yet */
  ASSERT_OK(weft_chan_send(ch, &v, 0));
  int st;
  ASSERT_OK(weft_coro_join(r, WEFT_FOREVER, &st));
  ASSERT_EQ(st, WEFT_ECANCELED);
  ASSERT_EQ(weft_chan_len(ch), 1);
  v = 0;
  ASSERT_OK(weft_chan_recv(ch, &v, 0));
  ASSERT_EQ(v, 9);
  weft_coro_release(r);
  weft_chan_destroy(ch);
}

static int delayed_send(void *arg) {
  weft_coro_sleep_until(weft_deadline_in_ms(30));
  int v = 77;
  return weft_chan_send(arg, &v, WEFT_FOREVER);
}

TEST(select_waits_for_one) {
  weft_chan *a, *b, *c;
  ASSERT_OK(weft_chan_create(&a, sizeof(int), 0));
  ASSERT_OK(weft_chan_create(&b, sizeof(int), 0));
  ASSERT_OK(weft_chan_create(&c, sizeof(int), 0));
  int va = -1, vb = -1, vc = 3;
  weft_chan_op ops[3] = {{a, WEFT_CHAN_RECV, &va}, {b, WEFT_CHAN_RECV, &vb},
                         {c, WEFT_CHAN_SEND, &vc}};
  size_t idx = 99;
  ASSERT_ERR(weft_chan_select(ops, 3, 0, &idx), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_chan_select(ops, 3, weft_deadline_in_ms(20), &idx), WEFT_ETIMEDOUT);
  weft_coro *s;
  ASSERT_OK(weft_coro_spawn(&s, delayed_send, b, NULL));
  ASSERT_OK(weft_chan_select(ops, 3, weft_deadline_in_s(5), &idx));
  ASSERT_EQ(idx, 1);
  ASSERT_EQ(vb, 77);
  ASSERT_EQ(va, -1);
  ASSERT_OK(weft_coro_join(s, WEFT_FOREVER, NULL));
  weft_coro_release(s);
  /* The other arms were withdrawn: nobody waits on a or c now. */
  int x = 1;
  ASSERT_ERR(weft_chan_send(a, &x, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_chan_recv(c, &x, 0), WEFT_ETIMEDOUT);
  /* A closed channel is a ready arm. */
  weft_chan_close(a);
  ASSERT_ERR(weft_chan_select(ops, 3, WEFT_FOREVER, &idx), WEFT_EPIPE);
  ASSERT_EQ(idx, 0);
  ASSERT_ERR(weft_chan_select(ops, 3, -3, &idx), WEFT_EINVAL);
  weft_chan_destroy(a);
  weft_chan_destroy(b);
  weft_chan_destroy(c);
}

TEST(select_is_fair) {
  weft_chan *a, *b;
  ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
  ASSERT_OK(weft_chan_create(&b, sizeof(int), 1));
  int hits[2] = {0, 0};
  for (int i = 0; i < 2000; i++) {
    int v = i;
    ASSERT_OK(weft_chan_send(a, &v, 0));
    ASSERT_OK(weft_chan_send(b, &v, 0));
    int x, y;
    weft_chan_op ops[2] = {{a, WEFT_CHAN_RECV, &x}, {b, WEFT_CHAN_RECV, &y}};
    size_t idx;
    ASSERT_OK(weft_chan_select(ops, 2, 0, &idx));
    hits[idx]++;
    /* drain the other */
    ASSERT_OK(weft_chan_recv(idx ? a : b, idx ? &x : &y, 0));
  }
  ASSERT_GT(hits[0], 700);
  ASSERT_GT(hits[1], 700);
  weft_chan_destroy(a);
  weft_chan_destroy(b);
}

/* select from a coroutine woken by a sender that is itself selecting. */
static int select_sender(void *arg) {
  weft_chan **chs = arg;
  int v = 11;
  weft_chan_op ops[2] = {{chs[0], WEFT_CHAN_SEND, &v}, {chs[1], WEFT_CHAN_SEND, &v}};
  size_t idx;
  int e = weft_chan_select(ops, 2, weft_deadline_in_s(5), &idx);
  return e ? e : (int)idx;
}

TEST(select_against_select) {
  weft_chan *chs[2];
  ASSERT_OK(weft_chan_create(&chs[0], sizeof(int), 0));
  ASSERT_OK(weft_chan_create(&chs[1], sizeof(int), 0));
  weft_coro *s;
  ASSERT_OK(weft_coro_spawn(&s, select_sender, chs, NULL)); /* parks on both */
  int x = 0;
  ASSERT_OK(weft_chan_recv(chs[1], &x, 0));
  ASSERT_EQ(x, 11);
  int st;
  ASSERT_OK(weft_coro_join(s, WEFT_FOREVER, &st));
  ASSERT_EQ(st, 1);
  ASSERT_ERR(weft_chan_recv(chs[0], &x, 0), WEFT_ETIMEDOUT);
  weft_coro_release(s);
  weft_chan_destroy(chs[0]);
  weft_chan_destroy(chs[1]);
}

/* --------------------------------------------------------------- sync */

static int ev_waiter(void *arg) { return weft_coro_event_wait(arg, weft_deadline_in_s(5)); }

TEST(event_wakes_all) {
  weft_coro_event *e;
  ASSERT_OK(weft_coro_event_create(&e));
  ASSERT(!weft_coro_event_is_set(e));
  ASSERT_ERR(weft_coro_event_wait(e, weft_deadline_in_ms(10)), WEFT_ETIMEDOUT);
  weft_coro *c[5];
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_coro_spawn(&c[i], ev_waiter, e, NULL));
  ASSERT_EQ(weft_hub_count(), 5);
  weft_coro_event_set(e);
  for (int i = 0; i < 5; i++) {
    int st = -1;
    ASSERT_OK(weft_coro_join(c[i], WEFT_FOREVER, &st));
    ASSERT_EQ(st, 0);
    weft_coro_release(c[i]);
  }
  ASSERT_OK(weft_coro_event_wait(e, 0));
  weft_coro_event_clear(e);
  ASSERT_ERR(weft_coro_event_wait(e, 0), WEFT_ETIMEDOUT);
  weft_coro_event_destroy(e);
}

static int in_section, most_in_section;
static int sem_user(void *arg) {
  weft_coro_sem *s = arg;
  int e = weft_coro_sem_acquire(s, weft_deadline_in_s(5));
  if (e) return e;
  if (++in_section > most_in_section) most_in_section = in_section;
  weft_coro_sleep_until(weft_deadline_in_ms(2));
  in_section--;
  return weft_coro_sem_release(s);
}

TEST(semaphore_bounds) {
  weft_coro_sem *s;
  ASSERT_OK(weft_coro_sem_create(&s, 3));
  weft_coro_group *g;
  ASSERT_OK(weft_coro_group_create(&g));
  weft_coro_opts o = {.group = g};
  for (int i = 0; i < 30; i++) ASSERT_OK(weft_coro_spawn(NULL, sem_user, s, &o));
  ASSERT_OK(weft_coro_group_join(g, weft_deadline_in_s(10)));
  ASSERT_EQ(most_in_section, 3);
  ASSERT_EQ(weft_coro_sem_value(s), 3);
  weft_coro_group_destroy(g);
  weft_coro_sem_destroy(s);
}

TEST(semaphore_timeout_cancel) {
  weft_coro_sem *s;
  ASSERT_OK(weft_coro_sem_create(&s, 0));
  ASSERT_ERR(weft_coro_sem_acquire(s, 0), WEFT_ETIMEDOUT);
  ASSERT_ERR(weft_coro_sem_acquire(s, weft_deadline_in_ms(10)), WEFT_ETIMEDOUT);
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, sem_user, s, NULL));
  weft_coro_cancel(c);
  /* The permit released now must not go to the cancelled waiter. */
  ASSERT_OK(weft_coro_sem_release(s));
  int st;
  ASSERT_OK(weft_coro_join(c, WEFT_FOREVER, &st));
  ASSERT_EQ(st, WEFT_ECANCELED);
  ASSERT_EQ(weft_coro_sem_value(s), 1);
  weft_coro_release(c);
  weft_coro_sem_destroy(s);
}

static int worker_sum;
static int q_worker(void *arg) {
  weft_coro_queue *q = arg;
  for (;;) {
    void *item;
    int e = weft_coro_queue_get(q, &item, weft_deadline_in_s(5));
    if (e) return e;
    if (!item) return 0;
    worker_sum += (int)(intptr_t)item;
    weft_coro_sleep_until(weft_deadline_in_ms(1));
    weft_coro_queue_task_done(q);
  }
}

TEST(queue_join_and_bound) {
  weft_coro_queue *q;
  ASSERT_OK(weft_coro_queue_create(&q, 2));
  weft_coro *w[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_coro_spawn(&w[i], q_worker, q, NULL));
  for (int i = 1; i <= 20; i++) ASSERT_OK(weft_coro_queue_put(q, (void *)(intptr_t)i, weft_deadline_in_s(5)));
  ASSERT_OK(weft_coro_queue_join(q, weft_deadline_in_s(5)));
  ASSERT_EQ(worker_sum, 210);
  ASSERT_EQ(weft_coro_queue_len(q), 0);
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_coro_queue_put(q, NULL, weft_deadline_in_s(5)));
  for (int i = 0; i < 3; i++) {
    int st = -1;
    ASSERT_OK(weft_coro_join(w[i], WEFT_FOREVER, &st));
    ASSERT_EQ(st, 0);
    weft_coro_release(w[i]);
  }
  /* Full and empty with deadline 0 are queue.Full / queue.Empty. */
  ASSERT_OK(weft_coro_queue_put(q, (void *)1, 0));
  ASSERT_OK(weft_coro_queue_put(q, (void *)2, 0));
  ASSERT_ERR(weft_coro_queue_put(q, (void *)3, 0), WEFT_ETIMEDOUT);
  void *it;
  ASSERT_OK(weft_coro_queue_get(q, &it, 0));
  ASSERT_PTR_EQ(it, (void *)1);
  ASSERT_OK(weft_coro_queue_get(q, &it, 0));
  ASSERT_ERR(weft_coro_queue_get(q, &it, 0), WEFT_ETIMEDOUT);
  weft_coro_queue_destroy(q);
}

TEST(queue_unbounded_grows) {
  weft_coro_queue *q;
  ASSERT_OK(weft_coro_queue_create(&q, 0));
  for (intptr_t i = 0; i < 10000; i++) ASSERT_OK(weft_coro_queue_put(q, (void *)i, 0));
  ASSERT_EQ(weft_coro_queue_len(q), 10000);
  for (intptr_t i = 0; i < 10000; i++) {
    void *it;
    ASSERT_OK(weft_coro_queue_get(q, &it, 0));
    ASSERT_PTR_EQ(it, (void *)i);
    ASSERT_OK(weft_coro_queue_task_done(q));
  }
  ASSERT_ERR(weft_coro_queue_task_done(q), WEFT_EINVAL);
  ASSERT_OK(weft_coro_queue_join(q, 0));
  weft_coro_queue_destroy(q);
}

TEST(destroy_with_waiter_is_misuse) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 4, 0));
  weft_coro *c;
  ASSERT_OK(weft_coro_spawn(&c, cancelled_receiver, ch, NULL));
  ASSERT_ABORTS(weft_chan_destroy(ch), "weft_chan_destroy(): a coroutine still waits");
  weft_coro_cancel(c);
  weft_coro_join(c, WEFT_FOREVER, NULL);
  weft_coro_release(c);
  weft_chan_destroy(ch);
  ASSERT_ERR(weft_chan_create(&ch, 0, 1), WEFT_EINVAL);
}
