/*
 * Coroutine-aware event, semaphore and joinable queue (gevent.event.Event,
 * gevent.lock.Semaphore, gevent.queue.JoinableQueue). Waiting parks only the
 * calling coroutine. Hand-offs are direct: a released permit or a put item
 * goes to the first waiter, so a late arrival cannot overtake it (FIFO).
 *
 * Locking: none; the hub's thread only (checked on every call).
 */
#define _GNU_SOURCE
#include <limits.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"

static weft__waiter *pop_waiter(weft__list *l) {
  weft__list *p = weft__list_pop_front(l);
  return p ? weft__container_of(p, weft__waiter, link) : NULL;
}

/* Park on list l; on an error (timeout, cancel) unlink again. */
static int wait_on(weft__hub *h, weft__list *l, void *data, int64_t deadline, const char *what) {
  weft__waiter w = {.coro = h->current, .data = data};
  weft__list_push_back(l, &w.link);
  int e = weft__park(h, deadline, what, true, &w);
  if (e) weft__list_remove(&w.link);
  return e;
}

/* ----------------------------------------------------------------- event */

struct weft_coro_event {
  weft__hub *hub;
  bool set;
  weft__list waiters;
};

int weft_coro_event_create(weft_coro_event **out) {
  WEFT_CHECK_HANDLE(out);
  weft__hub *h = weft__hub_start(__func__);
  weft_coro_event *e = weft__calloc(1, sizeof *e);
  if (!e) return WEFT_ENOMEM;
  e->hub = h;
  weft__list_init(&e->waiters);
  *out = e;
  return 0;
}

void weft_coro_event_set(weft_coro_event *e) {
  WEFT_CHECK_HANDLE(e);
  weft__hub_check(e->hub, __func__);
  e->set = true;
  weft__waiter *w;
  while ((w = pop_waiter(&e->waiters)) != NULL) weft__wake(w->coro, 0);
}

void weft_coro_event_clear(weft_coro_event *e) {
  WEFT_CHECK_HANDLE(e);
  weft__hub_check(e->hub, __func__);
  e->set = false;
}

bool weft_coro_event_is_set(const weft_coro_event *e) {
  WEFT_CHECK_HANDLE(e);
  return e->set;
}

int weft_coro_event_wait(weft_coro_event *e, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(e);
  weft__hub *h = weft__hub_check(e->hub, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (e->set) return 0;
  return wait_on(h, &e->waiters, NULL, deadline_ns, "event");
}

void weft_coro_event_destroy(weft_coro_event *e) {
  if (!e) return;
  weft__hub_check(e->hub, __func__);
  if (!weft__list_empty(&e->waiters)) weft__misuse(__func__, "a coroutine still waits on it");
  weft__free(e);
}

/* ------------------------------------------------------------- semaphore */

struct weft_coro_sem {
  weft__hub *hub;
  unsigned value;
  weft__list waiters;
};

int weft_coro_sem_create(weft_coro_sem **out, unsigned value) {
  WEFT_CHECK_HANDLE(out);
  weft__hub *h = weft__hub_start(__func__);
  weft_coro_sem *s = weft__calloc(1, sizeof *s);
  if (!s) return WEFT_ENOMEM;
  s->hub = h;
  s->value = value;
  weft__list_init(&s->waiters);
  *out = s;
  return 0;
}

int weft_coro_sem_acquire(weft_coro_sem *s, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(s);
  weft__hub *h = weft__hub_check(s->hub, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (s->value && weft__list_empty(&s->waiters)) {
    s->value--;
    return 0;
  }
  /* A release hands its permit straight to us (value untouched). */
  return wait_on(h, &s->waiters, NULL, deadline_ns, "semaphore");
}

int weft_coro_sem_release(weft_coro_sem *s) {
  WEFT_CHECK_HANDLE(s);
  weft__hub_check(s->hub, __func__);
  weft__waiter *w = pop_waiter(&s->waiters);
  if (w) {
    weft__wake(w->coro, 0);
    return 0;
  }
  if (s->value == UINT_MAX) return WEFT_EOVERFLOW;
  s->value++;
  return 0;
}

unsigned weft_coro_sem_value(const weft_coro_sem *s) {
  WEFT_CHECK_HANDLE(s);
  return s->value;
}

void weft_coro_sem_destroy(weft_coro_sem *s) {
  if (!s) return;
  weft__hub_check(s->hub, __func__);
  if (!weft__list_empty(&s->waiters)) weft__misuse(__func__, "a coroutine still waits on it");
  weft__free(s);
}

/* ----------------------------------------------------------------- queue */

struct weft_coro_queue {
  weft__hub *hub;
  size_t maxsize;      /* 0: unbounded */
  void **buf;          /* ring of cap slots */
  size_t cap, head, len;
  size_t unfinished;   /* put and not yet task_done */
  weft__list getters;  /* data = void ** destination */
  weft__list putters;  /* data = the item */
  weft__list joiners;
};

int weft_coro_queue_create(weft_coro_queue **out, size_t maxsize) {
  WEFT_CHECK_HANDLE(out);
  weft__hub *h = weft__hub_start(__func__);
  weft_coro_queue *q = weft__calloc(1, sizeof *q);
  if (!q) return WEFT_ENOMEM;
  q->hub = h;
  q->maxsize = maxsize;
  weft__list_init(&q->getters);
  weft__list_init(&q->putters);
  weft__list_init(&q->joiners);
  *out = q;
  return 0;
}

static int ring_push(weft_coro_queue *q, void *item) {
  if (q->len == q->cap) {
    size_t ncap = q->cap ? q->cap * 2 : 16;
    void **nb = weft__malloc(ncap * sizeof *nb);
    if (!nb) return WEFT_ENOMEM;
    for (size_t i = 0; i < q->len; i++) nb[i] = q->buf[(q->head + i) % q->cap];
    weft__free(q->buf);
    q->buf = nb;
    q->cap = ncap;
    q->head = 0;
  }
  q->buf[(q->head + q->len) % q->cap] = item;
  q->len++;
  return 0;
}

int weft_coro_queue_put(weft_coro_queue *q, void *item, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(q);
  weft__hub *h = weft__hub_check(q->hub, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  weft__waiter *g = pop_waiter(&q->getters);
  if (g) {
    *(void **)g->data = item;
    q->unfinished++;
    weft__wake(g->coro, 0);
    return 0;
  }
  if (q->maxsize == 0 || q->len < q->maxsize) {
    int e = ring_push(q, item);
    if (e == 0) q->unfinished++;
    return e;
  }
  /* Full: a get will move our item into the ring and count it. */
  return wait_on(h, &q->putters, item, deadline_ns, "queue put");
}

int weft_coro_queue_get(weft_coro_queue *q, void **item, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(q);
  weft__hub *h = weft__hub_check(q->hub, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (q->len) {
    *item = q->buf[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    weft__waiter *p = pop_waiter(&q->putters);
    if (p) {
      /* There is room now (one slot was just freed): cannot fail. */
      WEFT_ASSERT(ring_push(q, p->data) == 0);
      q->unfinished++;
      weft__wake(p->coro, 0);
    }
    return 0;
  }
  weft__waiter *p = pop_waiter(&q->putters); /* maxsize 0 never has putters */
  if (p) {
    *item = p->data;
    q->unfinished++;
    weft__wake(p->coro, 0);
    return 0;
  }
  return wait_on(h, &q->getters, item, deadline_ns, "queue get");
}

int weft_coro_queue_task_done(weft_coro_queue *q) {
  WEFT_CHECK_HANDLE(q);
  weft__hub_check(q->hub, __func__);
  if (q->unfinished == 0) return WEFT_EINVAL;
  if (--q->unfinished == 0) {
    weft__waiter *w;
    while ((w = pop_waiter(&q->joiners)) != NULL) weft__wake(w->coro, 0);
  }
  return 0;
}

int weft_coro_queue_join(weft_coro_queue *q, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(q);
  weft__hub *h = weft__hub_check(q->hub, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (q->unfinished == 0) return 0;
  return wait_on(h, &q->joiners, NULL, deadline_ns, "queue join");
}

size_t weft_coro_queue_len(const weft_coro_queue *q) {
  WEFT_CHECK_HANDLE(q);
  return q->len;
}

void weft_coro_queue_destroy(weft_coro_queue *q) {
  if (!q) return;
  weft__hub_check(q->hub, __func__);
  if (!weft__list_empty(&q->getters) || !weft__list_empty(&q->putters) ||
      !weft__list_empty(&q->joiners))
    weft__misuse(__func__, "a coroutine still waits on it");
  weft__free(q->buf);
  weft__free(q);
}
