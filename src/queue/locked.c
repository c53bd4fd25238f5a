/*
 * The locked engine: LIFO (a stack), PRIORITY (a binary min-heap ordered by
 * the user's cmp, ties by put order) and small-capacity FIFO (a ring
 * buffer), all in one array under one mutex.
 *
 * Locking: mu guards ents, len, cap, first, closed and the put counter's
 * writes.
 * cmp is the only user code that runs under mu (ordering a heap needs it);
 * the public header says so. size and puts are atomics mirrored under mu so
 * that qsize/join read them without the lock.
 */
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "queue/queue_impl.h"

int weft__locked_init(weft__locked *l, weft_queue_order order, size_t maxsize,
                      weft_queue_cmp_fn *cmp, void *ud) {
  memset(l, 0, sizeof *l);
  int r = pthread_mutex_init(&l->mu, NULL);
  if (r) return -r;
  l->order = order;
  l->maxsize = maxsize;
  l->cmp = cmp;
  l->ud = ud;
  atomic_init(&l->puts, 0);
  atomic_init(&l->size, 0);
  return 0;
}

void weft__locked_fini(weft__locked *l) {
  pthread_mutex_destroy(&l->mu);
  weft__free(l->ents);
}

/* Entry i of a FIFO ring buffer, counted from the oldest. */
static weft__locked_ent *fifo_at(weft__locked *l, size_t i) {
  return &l->ents[(l->first + i) % l->cap];
}

static bool ent_less(const weft__locked *l, const weft__locked_ent *a,
                     const weft__locked_ent *b) {
  int c = l->cmp(a->item, b->item, l->ud);
  return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_up(weft__locked *l, size_t i) {
  weft__locked_ent e = l->ents[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!ent_less(l, &e, &l->ents[p])) break;
    l->ents[i] = l->ents[p];
    i = p;
  }
  l->ents[i] = e;
}

static void heap_down(weft__locked *l, size_t i) {
  weft__locked_ent e = l->ents[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= l->len) break;
    if (c + 1 < l->len && ent_less(l, &l->ents[c + 1], &l->ents[c])) c++;
    if (!ent_less(l, &l->ents[c], &e)) break;
    l->ents[i] = l->ents[c];
    i = c;
  }
  l->ents[i] = e;
}

/* Make room for one more entry. Called with mu held. */
static int grow(weft__locked *l) {
  if (l->len < l->cap) return 0;
  size_t ncap = l->cap ? l->cap * 2 : 16;
  if (l->maxsize && ncap > l->maxsize) ncap = l->maxsize;
  if (ncap > SIZE_MAX / sizeof *l->ents) return WEFT_ENOMEM;
  weft__locked_ent *n = weft__realloc(l->ents, ncap * sizeof *n);
  if (!n) return WEFT_ENOMEM;
  if (l->order == WEFT_QUEUE_FIFO && l->first + l->len > l->cap) {
    /* The ring wrapped: slide its older part, [first, cap), to the end of
     * the larger array so that the entries stay in ring order. */
    size_t older = l->cap - l->first;
    memmove(n + ncap - older, n + l->first, older * sizeof *n);
    l->first = ncap - older;
  }
  l->ents = n;
  l->cap = ncap;
  return 0;
}

void weft__locked_close(weft__locked *l) {
  pthread_mutex_lock(&l->mu);
  l->closed = true;
  pthread_mutex_unlock(&l->mu);
}

int weft__locked_try_put(weft__locked *l, void *item) {
  pthread_mutex_lock(&l->mu);
  if (l->closed) {
    pthread_mutex_unlock(&l->mu);
    return WEFT_ESHUTDOWN;
  }
  if (l->maxsize && l->len >= l->maxsize) {
    pthread_mutex_unlock(&l->mu);
    return WEFT_EFULL;
  }
  int r = grow(l);
  if (r) {
    pthread_mutex_unlock(&l->mu);
    return r;
  }
  uint64_t seq = atomic_load_explicit(&l->puts, memory_order_relaxed);
  weft__locked_ent e = {item, seq};
  if (l->order == WEFT_QUEUE_FIFO) {
    l->len++;
    *fifo_at(l, l->len - 1) = e;
  } else {
    l->ents[l->len++] = e;
    if (l->order == WEFT_QUEUE_PRIORITY) heap_up(l, l->len - 1);
  }
  atomic_store_explicit(&l->puts, seq + 1, memory_order_release);
  atomic_store_explicit(&l->size, l->len, memory_order_release);
  pthread_mutex_unlock(&l->mu);
  return 0;
}

int weft__locked_try_get(weft__locked *l, void **item) {
  pthread_mutex_lock(&l->mu);
  if (l->len == 0) {
    pthread_mutex_unlock(&l->mu);
    return WEFT_EEMPTY;
  }
  switch (l->order) {
  case WEFT_QUEUE_FIFO:
    *item = fifo_at(l, 0)->item;
    l->first = (l->first + 1) % l->cap;
    l->len--;
    break;
  case WEFT_QUEUE_LIFO:
    *item = l->ents[--l->len].item;
    break;
  case WEFT_QUEUE_PRIORITY:
    *item = l->ents[0].item;
    l->ents[0] = l->ents[--l->len];
    if (l->len) heap_down(l, 0);
    break;
  }
  atomic_store_explicit(&l->size, l->len, memory_order_release);
  pthread_mutex_unlock(&l->mu);
  return 0;
}
