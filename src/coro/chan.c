/*
 * Channels and select between the coroutines of one hub.
 *
 * A channel is a ring buffer of fixed-size elements plus two wait lists,
 * senders and receivers (weft__waiter, data = the waiter's element). An
 * element always moves directly between the two parties when one of them
 * waits: a sender that finds a waiting receiver copies straight into the
 * receiver's variable, and a receiver that empties a slot of a full buffer
 * pulls the first waiting sender's element in. So a hand-off between two
 * coroutines costs one copy and one switch.
 *
 * Select enqueues one waiter per arm, all pointing at one shared record;
 * the peer that completes any arm unlinks the others before waking the
 * selecting coroutine, so exactly one arm completes.
 *
 * Locking: none; the hub's thread only (checked on every call).
 */
#define _GNU_SOURCE
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"

struct weft_chan {
  weft__hub *hub;
  size_t elem_size;
  size_t cap;          /* buffer slots; 0: unbuffered */
  char *buf;
  size_t head, len;    /* ring: oldest at head */
  bool closed;
  weft__list senders;  /* weft__waiter, data = const element */
  weft__list receivers;/* weft__waiter, data = destination */
};

int weft_chan_create(weft_chan **out, size_t elem_size, size_t capacity) {
  WEFT_CHECK_HANDLE(out);
  if (elem_size == 0 || elem_size > 65536 || capacity > ((size_t)1 << 30)) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  weft_chan *ch = weft__calloc(1, sizeof *ch);
  if (!ch) return WEFT_ENOMEM;
  if (capacity) {
    ch->buf = weft__malloc(elem_size * capacity);
    if (!ch->buf) {
      weft__free(ch);
      return WEFT_ENOMEM;
    }
  }
  ch->hub = h;
  ch->elem_size = elem_size;
  ch->cap = capacity;
  weft__list_init(&ch->senders);
  weft__list_init(&ch->receivers);
  *out = ch;
  return 0;
}

static weft__hub *chan_hub(const weft_chan *ch, const char *call) {
  if (WEFT_UNLIKELY(!ch)) weft__misuse(call, "argument 'ch' is NULL");
  return weft__hub_check(ch->hub, call);
}

/* w has been popped off its list: finish it with result. */
static void complete(weft__waiter *w, int result) {
  weft__sel *s = w->sel;
  if (s) {
    s->index = w->index;
    for (size_t i = 0; i < s->n; i++)
      if (&s->ws[i] != w) weft__list_remove(&s->ws[i].link);
  }
  weft__wake(w->coro, result);
}

static weft__waiter *pop_waiter(weft__list *l) {
  weft__list *p = weft__list_pop_front(l);
  return p ? weft__container_of(p, weft__waiter, link) : NULL;
}

static bool send_ready(const weft_chan *ch) {
  return ch->closed || !weft__list_empty(&ch->receivers) || ch->len < ch->cap;
}
static bool recv_ready(const weft_chan *ch) {
  return ch->len > 0 || !weft__list_empty(&ch->senders) || ch->closed;
}

/* The non-blocking step of a send; only called when send_ready. */
static int send_now(weft_chan *ch, const void *elem) {
  if (ch->closed) return WEFT_EPIPE;
  weft__waiter *r = pop_waiter(&ch->receivers);
  if (r) {
    weft__copy_elem(r->data, elem, ch->elem_size);
    complete(r, 0);
    return 0;
  }
  size_t tail = (ch->head + ch->len) % ch->cap;
  weft__copy_elem(ch->buf + tail * ch->elem_size, elem, ch->elem_size);
  ch->len++;
  return 0;
}

/* The non-blocking step of a receive; only called when recv_ready. */
static int recv_now(weft_chan *ch, void *elem) {
  if (ch->len) {
    weft__copy_elem(elem, ch->buf + ch->head * ch->elem_size, ch->elem_size);
    ch->head = (ch->head + 1) % ch->cap;
    ch->len--;
    weft__waiter *s = pop_waiter(&ch->senders);
    if (s) {
      size_t tail = (ch->head + ch->len) % ch->cap;
      weft__copy_elem(ch->buf + tail * ch->elem_size, s->data, ch->elem_size);
      ch->len++;
      complete(s, 0);
    }
    return 0;
  }
  weft__waiter *s = pop_waiter(&ch->senders);
  if (s) {
    weft__copy_elem(elem, s->data, ch->elem_size);
    complete(s, 0);
    return 0;
  }
  return WEFT_EPIPE; /* closed and drained */
}

int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline_ns) {
  weft__hub *h = chan_hub(ch, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (send_ready(ch)) return send_now(ch, elem);
  weft__waiter w = {.coro = h->current, .data = (void *)elem};
  weft__list_push_back(&ch->senders, &w.link);
  int e = weft__park(h, deadline_ns, "chan send", true, &w);
  if (e == WEFT_ETIMEDOUT || e == WEFT_ECANCELED || e == WEFT_ENOMEM) weft__list_remove(&w.link);
  return e;
}

int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline_ns) {
  weft__hub *h = chan_hub(ch, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (recv_ready(ch)) return recv_now(ch, elem);
  weft__waiter w = {.coro = h->current, .data = elem};
  weft__list_push_back(&ch->receivers, &w.link);
  int e = weft__park(h, deadline_ns, "chan recv", true, &w);
  if (e == WEFT_ETIMEDOUT || e == WEFT_ECANCELED || e == WEFT_ENOMEM) weft__list_remove(&w.link);
  return e;
}

void weft_chan_close(weft_chan *ch) {
  chan_hub(ch, __func__);
  if (ch->closed) return;
  ch->closed = true;
  weft__waiter *w;
  while ((w = pop_waiter(&ch->senders)) != NULL) complete(w, WEFT_EPIPE);
  while ((w = pop_waiter(&ch->receivers)) != NULL) complete(w, WEFT_EPIPE);
}

size_t weft_chan_len(const weft_chan *ch) {
  chan_hub(ch, __func__);
  return ch->len;
}

void weft_chan_destroy(weft_chan *ch) {
  if (!ch) return;
  chan_hub(ch, __func__);
  if (!weft__list_empty(&ch->senders) || !weft__list_empty(&ch->receivers))
    weft__misuse(__func__, "a coroutine still waits on the channel");
  weft__free(ch->buf);
  weft__free(ch);
}

int weft_chan_select(weft_chan_op *ops, size_t n, int64_t deadline_ns, size_t *index) {
  if (n && !ops) weft__misuse(__func__, "argument 'ops' is NULL");
  if (!WEFT_DEADLINE_VALID(deadline_ns) || n > 1024) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  size_t nready = 0, pick = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ops[i].chan) continue;
    weft__hub_check(ops[i].chan->hub, __func__);
    bool ready;
    if (ops[i].op == WEFT_CHAN_SEND)
      ready = send_ready(ops[i].chan);
    else if (ops[i].op == WEFT_CHAN_RECV)
      ready = recv_ready(ops[i].chan);
    else
      return WEFT_EINVAL;
    /* Reservoir sampling: each ready arm is picked with equal chance. */
    if (ready && weft__hub_rand() % ++nready == 0) pick = i;
  }
  if (nready) {
    if (index) *index = pick;
    return ops[pick].op == WEFT_CHAN_SEND ? send_now(ops[pick].chan, ops[pick].elem)
                                          : recv_now(ops[pick].chan, ops[pick].elem);
  }
  if (h->current->cancelled) return WEFT_ECANCELED;
  if (deadline_ns == 0) return WEFT_ETIMEDOUT;
  weft__waiter local[16];
  weft__waiter *ws = n <= 16 ? local : weft__calloc(n, sizeof *ws);
  if (!ws) return WEFT_ENOMEM;
  weft__sel sel = {.ws = ws, .n = n, .index = -1};
  for (size_t i = 0; i < n; i++) {
    ws[i] = (weft__waiter){.coro = h->current, .data = ops[i].elem, .index = (int)i,
                           .sel = &sel};
    weft__list_init(&ws[i].link);
    if (!ops[i].chan) continue;
    weft__list_push_back(ops[i].op == WEFT_CHAN_SEND ? &ops[i].chan->senders
                                                     : &ops[i].chan->receivers,
                         &ws[i].link);
  }
  int e = weft__park(h, deadline_ns, "chan select", true, &ws[0]);
  if (sel.index < 0) {
    /* Timed out or cancelled: no arm completed, all are still linked. */
    for (size_t i = 0; i < n; i++) weft__list_remove(&ws[i].link);
  } else if (index) {
    *index = (size_t)sel.index;
  }
  if (ws != local) weft__free(ws);
  return e;
}
