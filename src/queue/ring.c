/*
 * Bounded lock-free FIFO: an array of cells, each with a sequence number
 * (after Dmitry Vyukov's bounded MPMC queue).
 *
 * Cell i starts with seq == i. A producer that reads tail == pos finds its
 * cell free when seq == pos, claims pos by CAS on tail, writes the item and
 * releases seq = pos + 1. A consumer at head == pos finds the item ready
 * when seq == pos + 1, claims pos by CAS on head, reads the item and
 * releases seq = pos + cap, which is what the producer one lap later waits
 * for. Producers touch only tail and consumers only head, so a producer and
 * a consumer share nothing but the cells they hand over.
 *
 * With cap == 1 a published cell (seq = pos + 1) would look free to the next
 * producer, so the front end routes maxsize 1 to the locked engine.
 *
 * Closing. Shutdown sets RING_CLOSED, the top bit of tail. A producer that
 * sees it fails with WEFT_ESHUTDOWN, and its CAS cannot succeed once the bit
 * is set, so the positions claimed before the close are final and a
 * consumer can tell "drained" (head reached them) from "a claimed item is
 * still being written".
 *
 * Locking: none; every shared word is atomic. The item field is ordered by
 * the release/acquire pair on seq.
 */
#include <stdint.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/spin.h"
#include "queue/queue_impl.h"

#define RING_CLOSED ((size_t)1 << (sizeof(size_t) * 8 - 1))

static inline weft__ring_cell *cell_at(weft__ring *r, size_t pos) {
  return &r->cells[r->mask ? (pos & r->mask) : (pos % r->cap)];
}

int weft__ring_init(weft__ring *r, size_t cap) {
  WEFT_ASSERT(cap >= 2);
  r->cells = weft__malloc_aligned(cap * sizeof *r->cells, WEFT__CACHELINE);
  if (!r->cells) return WEFT_ENOMEM;
  r->cap = cap;
  r->mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
  for (size_t i = 0; i < cap; i++) {
    atomic_init(&r->cells[i].seq, i);
    r->cells[i].item = NULL;
  }
  atomic_init(&r->tail, 0);
  atomic_init(&r->head, 0);
  return 0;
}

void weft__ring_fini(weft__ring *r) { weft__free_aligned(r->cells); }

int weft__ring_try_put(weft__ring *r, void *item) {
  weft__backoff cb = {0};
  size_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
  for (;;) {
    if (WEFT_UNLIKELY(pos & RING_CLOSED)) return WEFT_ESHUTDOWN;
    weft__ring_cell *c = cell_at(r, pos);
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    intptr_t dif = (intptr_t)seq - (intptr_t)pos;
    if (dif == 0) {
      /* seq_cst: this claim is the write that the front end's wake-up
       * check pairs with (queue.c, "Blocking"). */
      if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1,
                                                memory_order_seq_cst, memory_order_relaxed)) {
        c->item = item;
        atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
        return 0;
      }
      /* Lost to another producer; pos was reloaded by the failed CAS. */
      weft__backoff_wait(&cb);
    } else if (dif < 0) {
      /* The cell still holds the item of the previous lap. It can be a
       * consumer that claimed it and has not released it yet; either way
       * the ring is full as of now. */
      return WEFT_EFULL;
    } else {
      pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    }
  }
}

int weft__ring_try_get(weft__ring *r, void **item) {
  weft__backoff cb = {0};
  size_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
  for (;;) {
    weft__ring_cell *c = cell_at(r, pos);
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + 1,
                                                memory_order_seq_cst, memory_order_relaxed)) {
        *item = c->item;
        atomic_store_explicit(&c->seq, pos + r->cap, memory_order_release);
        return 0;
      }
      weft__backoff_wait(&cb); /* lost to another consumer */
    } else if (dif < 0) {
      /* Not yet published: empty, or a producer claimed pos and is still
       * writing. The front end's wait/wake protocol covers the latter. */
      return WEFT_EEMPTY;
    } else {
      pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    }
  }
}

void weft__ring_close(weft__ring *r) { atomic_fetch_or(&r->tail, RING_CLOSED); }

bool weft__ring_drained(const weft__ring *r) {
  size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
  return head >= (atomic_load_explicit(&r->tail, memory_order_acquire) & ~RING_CLOSED);
}

bool weft__ring_has_room(const weft__ring *r) {
  size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire) & ~RING_CLOSED;
  return atomic_load_explicit(&r->head, memory_order_acquire) + r->cap > tail;
}

size_t weft__ring_size(const weft__ring *r) {
  size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
  size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire) & ~RING_CLOSED;
  /* Read in this order, tail can only be ahead; clamp the transient where a
   * claim is in flight beyond cap. */
  size_t n = tail >= head ? tail - head : 0;
  return n > r->cap ? r->cap : n;
}

uint64_t weft__ring_puts(const weft__ring *r) {
  return atomic_load_explicit(&r->tail, memory_order_acquire) & ~RING_CLOSED;
}
