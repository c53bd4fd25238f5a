/*
 * The queue's three storage engines, behind the front end in queue.c.
 *
 *  ring    bounded FIFO (maxsize >= 2): a lock-free array ring with one
 *          sequence number per cell (the design Dmitry Vyukov published for
 *          bounded MPMC queues). No allocation after create.
 *  seg     unbounded FIFO: a lock-free linked list of fixed-size blocks with
 *          per-slot state bits (after crossbeam's SegQueue). Blocks are
 *          recycled, never freed before the queue is destroyed.
 *  locked  LIFO, priority, and FIFO with maxsize 1: an array (stack or
 *          binary heap) under a mutex.
 *
 * In the lock-free engines the CAS that claims a position (tail for puts,
 * head for gets) is seq_cst, and drained / has_room report claimed
 * positions; the front end's wake-up check pairs with those instead of
 * issuing a fence of its own (queue.c, "Blocking").
 *
 * Each engine offers try_put / try_get (never block, return 0, WEFT_EFULL,
 * WEFT_EEMPTY, WEFT_ENOMEM, or WEFT_ESHUTDOWN once closed), close (all later
 * puts fail; puts already under way still land), an approximate size and
 * the total number of successful puts since creation, which task_done/join
 * compare against.
 * Blocking, shutdown, task accounting and the eventfd live in queue.c.
 */
#ifndef WEFT_QUEUE_IMPL_H
#define WEFT_QUEUE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft/queue.h"
#include "weft_arch.h"

#define WEFT__CL_ALIGN _Alignas(WEFT__CACHELINE)

/* ------------------------------------------------------------------ ring */

typedef struct weft__ring_cell {
  _Atomic size_t seq; /* pos when free for the producer at pos; pos+1 when
                       * holding the item of pos (see ring.c) */
  void *item;         /* written by the producer before seq is released */
} weft__ring_cell;

typedef struct weft__ring {
  weft__ring_cell *cells; /* cap cells, read-only pointer after init */
  size_t cap;             /* maxsize; >= 2 */
  size_t mask;            /* cap - 1 when cap is a power of two, else 0 */
  WEFT__CL_ALIGN _Atomic size_t tail; /* next position to put; producers' line */
  WEFT__CL_ALIGN _Atomic size_t head; /* next position to get; consumers' line */
  WEFT__CL_ALIGN char pad_;
} weft__ring;

int weft__ring_init(weft__ring *r, size_t cap);
void weft__ring_fini(weft__ring *r);
int weft__ring_try_put(weft__ring *r, void *item);
int weft__ring_try_get(weft__ring *r, void **item);
void weft__ring_close(weft__ring *r);
/* No claimed position is left to get (after close: nothing more will come). */
bool weft__ring_drained(const weft__ring *r);
/* Fewer than cap positions are claimed by producers and not yet claimed by
 * consumers: a put will find room once the gets in flight finish. */
bool weft__ring_has_room(const weft__ring *r);
size_t weft__ring_size(const weft__ring *r);
uint64_t weft__ring_puts(const weft__ring *r);

/* ------------------------------------------------------------------- seg */

#define WEFT__SEG_LAP 64                  /* positions per block, incl. one end marker */
#define WEFT__SEG_CAP (WEFT__SEG_LAP - 1) /* item slots per block */

typedef struct weft__seg_slot {
  void *item;              /* written once by its producer */
  _Atomic uint32_t state;  /* WRITE, READ, DESTROY bits (seg.c) */
} weft__seg_slot;

typedef struct weft__seg_block {
  _Atomic(struct weft__seg_block *) next; /* set by the producer of the last slot */
  weft__seg_slot slots[WEFT__SEG_CAP];
} weft__seg_block;

typedef struct weft__seg {
  WEFT__CL_ALIGN _Atomic size_t head;             /* position << 1 */
  _Atomic(weft__seg_block *) head_block;          /* block holding head */
  WEFT__CL_ALIGN _Atomic size_t tail;             /* position << 1 | SEG_CLOSED */
  _Atomic(weft__seg_block *) tail_block;          /* block holding tail */
  WEFT__CL_ALIGN _Atomic(weft__seg_block *) spare; /* one retired block, lock-free reuse */
  pthread_mutex_t free_mu;                        /* guards free_list */
  weft__seg_block *free_list;                     /* more retired blocks, linked by next */
  WEFT__CL_ALIGN char pad_;
} weft__seg;

int weft__seg_init(weft__seg *s);
void weft__seg_fini(weft__seg *s); /* only when empty */
int weft__seg_try_put(weft__seg *s, void *item);
int weft__seg_try_get(weft__seg *s, void **item);
void weft__seg_close(weft__seg *s);
bool weft__seg_drained(const weft__seg *s);
size_t weft__seg_size(const weft__seg *s);
uint64_t weft__seg_puts(const weft__seg *s);

/* ---------------------------------------------------------------- locked */

typedef struct weft__locked_ent {
  void *item;
  uint64_t seq; /* put order: ties in PRIORITY go to the earlier put */
} weft__locked_ent;

typedef struct weft__locked {
  pthread_mutex_t mu;        /* guards everything below */
  weft__locked_ent *ents;    /* FIFO: ring buffer; LIFO: stack; PRIORITY: heap */
  size_t len, cap;           /* used and allocated entries */
  size_t first;              /* FIFO only: index of the oldest entry */
  size_t maxsize;            /* 0: unbounded */
  weft_queue_order order;
  weft_queue_cmp_fn *cmp;
  void *ud;
  _Atomic uint64_t puts;     /* successful puts; written under mu, read anywhere */
  _Atomic size_t size;       /* == len, readable without mu */
  bool closed;               /* puts fail with WEFT_ESHUTDOWN */
} weft__locked;

int weft__locked_init(weft__locked *l, weft_queue_order order, size_t maxsize,
                      weft_queue_cmp_fn *cmp, void *ud);
void weft__locked_fini(weft__locked *l);
int weft__locked_try_put(weft__locked *l, void *item);
int weft__locked_try_get(weft__locked *l, void **item);
void weft__locked_close(weft__locked *l);

#endif
