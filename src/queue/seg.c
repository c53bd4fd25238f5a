/*
 * Unbounded lock-free FIFO: a linked list of blocks of WEFT__SEG_CAP slots
 * (after the design of crossbeam's SegQueue).
 *
 * Positions. head and tail count positions << 1; position p lives in block
 * p / LAP at offset p % LAP. Offset CAP (the last of each lap) holds no item:
 * a tail or head that reads offset CAP means "a thread is moving to the next
 * block right now", and others wait a moment.
 *
 * Put claims a position by CAS on tail. The producer that claims the last
 * slot of a block links in the next block (allocated before the CAS so that
 * nobody waits on malloc), moves tail past the end marker, then writes its
 * item and sets WRITE on the slot. Get claims a position by CAS on head only
 * once its slot has WRITE set; a slot not yet written reads as empty, as an
 * unpublished cell does in the ring (the front end's wake-up protocol covers
 * the producer finishing). So consumers never wait on a particular producer
 * (one preempted mid-put does not stall them), and they never read tail,
 * the producers' line, which would otherwise bounce between cores on every
 * item. The price is the ring's: while an earlier put is mid-write, a later
 * finished one is not visible yet.
 *
 * Reclamation. A block is retired once every slot has been read. The
 * reader of the last slot walks the other slots: any slot not yet READ gets
 * DESTROY, and the walk stops there; that slot's reader, on seeing DESTROY
 * when it sets READ, continues the walk from the next slot. Whoever finishes
 * the walk retires the block. Retired blocks are type-stable: they are
 * recycled (spare, then free_list) and only freed by weft__seg_fini, so the
 * peek at a slot's WRITE bit through a possibly stale block pointer reads
 * valid memory; what it reads only counts after the CAS on head proved the
 * block and position current (positions only grow: no ABA). The cost is
 * that an unbounded queue keeps the blocks of its largest size until it is
 * destroyed (about 16 bytes per item).
 *
 * Closing. Shutdown sets SEG_CLOSED, bit 0 of tail (always clear in
 * positions). Producers that see it fail with WEFT_ESHUTDOWN and
 * their CAS cannot succeed past it, so the claimed positions are final; the
 * producer that crosses a block end moves tail with fetch_add so that the
 * bit survives.
 *
 * Locking: the queue operations take no lock. free_mu guards free_list and
 * is taken only when a block is retired while spare is taken, or allocated
 * while spare is empty: once per 63 items at most.
 */
#include <sched.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/spin.h"
#include "queue/queue_impl.h"

#define LAP WEFT__SEG_LAP
#define CAP WEFT__SEG_CAP
#define SHIFT 1
#define SEG_CLOSED 1u

#define WRITE 1u
#define READ 2u
#define DESTROY 4u

/* Short waits on another thread that is between two steps of an operation.
 * They are a few instructions long unless that thread was preempted, in
 * which case we give it the CPU. */
typedef struct backoff { unsigned n; } backoff;
static void snooze(backoff *b) {
  if (b->n < 6) {
    for (unsigned i = 0; i < (1u << b->n); i++) weft__cpu_relax();
    b->n++;
  } else {
    sched_yield();
  }
}

static weft__seg_block *block_new(weft__seg *s) {
  weft__seg_block *b = atomic_exchange_explicit(&s->spare, NULL, memory_order_acquire);
  if (!b) {
    pthread_mutex_lock(&s->free_mu);
    b = s->free_list;
    if (b) s->free_list = atomic_load_explicit(&b->next, memory_order_relaxed);
    pthread_mutex_unlock(&s->free_mu);
  }
  if (b) {
    /* Fully retired: nobody dereferences it any more (see reclamation). */
    atomic_store_explicit(&b->next, NULL, memory_order_relaxed);
    for (unsigned i = 0; i < CAP; i++) atomic_store_explicit(&b->slots[i].state, 0, memory_order_relaxed);
    return b;
  }
  b = weft__malloc(sizeof *b);
  if (!b) return NULL;
  atomic_init(&b->next, NULL);
  for (unsigned i = 0; i < CAP; i++) {
    b->slots[i].item = NULL;
    atomic_init(&b->slots[i].state, 0);
  }
  return b;
}

static void block_retire(weft__seg *s, weft__seg_block *b) {
  weft__seg_block *expected = NULL;
  if (atomic_compare_exchange_strong_explicit(&s->spare, &expected, b, memory_order_release,
                                              memory_order_relaxed))
    return;
  pthread_mutex_lock(&s->free_mu);
  atomic_store_explicit(&b->next, s->free_list, memory_order_relaxed);
  s->free_list = b;
  pthread_mutex_unlock(&s->free_mu);
}

int weft__seg_init(weft__seg *s) {
  memset(s, 0, sizeof *s);
  int r = pthread_mutex_init(&s->free_mu, NULL);
  if (r) return -r;
  s->free_list = NULL;
  weft__seg_block *b = block_new(s);
  if (!b) {
    pthread_mutex_destroy(&s->free_mu);
    return WEFT_ENOMEM;
  }
  atomic_init(&s->head, 0);
  atomic_init(&s->tail, 0);
  atomic_init(&s->head_block, b);
  atomic_init(&s->tail_block, b);
  atomic_init(&s->spare, NULL);
  return 0;
}

void weft__seg_fini(weft__seg *s) {
  weft__free(atomic_load(&s->head_block));
  weft__free(atomic_load(&s->spare));
  for (weft__seg_block *b = s->free_list, *n; b; b = n) {
    n = atomic_load_explicit(&b->next, memory_order_relaxed);
    weft__free(b);
  }
  pthread_mutex_destroy(&s->free_mu);
}

int weft__seg_try_put(weft__seg *s, void *item) {
  backoff bo = {0};
  weft__backoff cb = {0};
  size_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
  weft__seg_block *blk = atomic_load_explicit(&s->tail_block, memory_order_acquire);
  weft__seg_block *next = NULL;
  for (;;) {
    if (WEFT_UNLIKELY(tail & SEG_CLOSED)) {
      if (next) block_retire(s, next);
      return WEFT_ESHUTDOWN;
    }
    size_t offset = (tail >> SHIFT) % LAP;
    if (offset == CAP) {
      /* Another producer is installing the next block. */
      snooze(&bo);
      tail = atomic_load_explicit(&s->tail, memory_order_acquire);
      blk = atomic_load_explicit(&s->tail_block, memory_order_acquire);
      continue;
    }
    if (offset + 1 == CAP && !next) {
      next = block_new(s);
      if (!next) return WEFT_ENOMEM;
    }
    size_t new_tail = tail + (1u << SHIFT);
    if (atomic_compare_exchange_weak_explicit(&s->tail, &tail, new_tail, memory_order_seq_cst,
                                              memory_order_acquire)) {
      if (offset + 1 == CAP) {
        /* We took the last slot: install the next block, then skip the
         * end marker. blk->next last, for the consumer of our slot. */
        atomic_store_explicit(&s->tail_block, next, memory_order_release);
        atomic_fetch_add_explicit(&s->tail, 1u << SHIFT, memory_order_release);
        atomic_store_explicit(&blk->next, next, memory_order_release);
        next = NULL;
      }
      weft__seg_slot *slot = &blk->slots[offset];
      slot->item = item;
      /* A plain release store is enough: nothing else writes state until
       * a consumer has seen WRITE (consumers claim only written slots, and
       * the destroy walk only runs once every slot of the block was
       * claimed). The wake-up check pairs with the CAS on tail above. */
      atomic_store_explicit(&slot->state, WRITE, memory_order_release);
      if (next) block_retire(s, next);
      return 0;
    }
    weft__backoff_wait(&cb); /* lost the CAS to another thread */
    blk = atomic_load_explicit(&s->tail_block, memory_order_acquire);
  }
}

/* Free b once slots start..CAP-2 have all been read (the reader of slot
 * CAP-1 calls this with start 0). Stops at the first slot still in use and
 * leaves the rest of the walk to its reader. */
static void block_destroy(weft__seg *s, weft__seg_block *b, unsigned start) {
  for (unsigned i = start; i + 1 < CAP; i++) {
    weft__seg_slot *slot = &b->slots[i];
    if ((atomic_load_explicit(&slot->state, memory_order_acquire) & READ) == 0 &&
        (atomic_fetch_add_explicit(&slot->state, DESTROY, memory_order_acq_rel) & READ) == 0)
      return;
  }
  block_retire(s, b);
}

int weft__seg_try_get(weft__seg *s, void **item) {
  backoff bo = {0};
  weft__backoff cb = {0};
  size_t head = atomic_load_explicit(&s->head, memory_order_acquire);
  weft__seg_block *blk = atomic_load_explicit(&s->head_block, memory_order_acquire);
  for (;;) {
    size_t offset = (head >> SHIFT) % LAP;
    if (offset == CAP) {
      snooze(&bo);
      head = atomic_load_explicit(&s->head, memory_order_acquire);
      blk = atomic_load_explicit(&s->head_block, memory_order_acquire);
      continue;
    }
    /* blk may be stale (type-stable memory, see above); a WRITE seen here
     * counts only if the CAS below proves blk and head current. */
    weft__seg_slot *slot = &blk->slots[offset];
    if (!(atomic_load_explicit(&slot->state, memory_order_acquire) & WRITE)) {
      size_t now = atomic_load_explicit(&s->head, memory_order_acquire);
      if (now == head) return WEFT_EEMPTY;
      head = now; /* another consumer moved on: look again */
      blk = atomic_load_explicit(&s->head_block, memory_order_acquire);
      continue;
    }
    size_t new_head = head + (1u << SHIFT);
    if (atomic_compare_exchange_weak_explicit(&s->head, &head, new_head, memory_order_acq_rel,
                                              memory_order_acquire)) {
      if (offset + 1 == CAP) {
        /* We took the last slot, so its producer, which links the next
         * block before it writes, has linked it: move head there. */
        weft__seg_block *next = atomic_load_explicit(&blk->next, memory_order_acquire);
        WEFT_ASSERT(next != NULL);
        atomic_store_explicit(&s->head_block, next, memory_order_release);
        atomic_store_explicit(&s->head, new_head + (1u << SHIFT), memory_order_release);
      }
      *item = slot->item;
      if (offset + 1 == CAP)
        block_destroy(s, blk, 0);
      /* fetch_add, not fetch_or: READ is set once per slot, so they agree,
       * and an add is one `lock xadd` where an or that returns the old
       * value is a CAS loop, which retries under contention. */
      else if (atomic_fetch_add_explicit(&slot->state, READ, memory_order_acq_rel) & DESTROY)
        block_destroy(s, blk, (unsigned)offset + 1);
      return 0;
    }
    weft__backoff_wait(&cb); /* lost the CAS to another thread */
    blk = atomic_load_explicit(&s->head_block, memory_order_acquire);
  }
}

void weft__seg_close(weft__seg *s) { atomic_fetch_or(&s->tail, SEG_CLOSED); }

bool weft__seg_drained(const weft__seg *s) {
  size_t head = atomic_load_explicit(&s->head, memory_order_acquire) >> SHIFT;
  return head >= (atomic_load_explicit(&s->tail, memory_order_acquire) >> SHIFT);
}

/* Items in positions [0, p): p minus the end markers below p. */
static size_t count_below(size_t p) { return p - p / LAP; }

size_t weft__seg_size(const weft__seg *s) {
  size_t head = atomic_load_explicit(&s->head, memory_order_acquire) >> SHIFT;
  size_t tail = atomic_load_explicit(&s->tail, memory_order_acquire) >> SHIFT;
  size_t h = count_below(head), t = count_below(tail);
  return t > h ? t - h : 0;
}

uint64_t weft__seg_puts(const weft__seg *s) {
  return count_below(atomic_load_explicit(&s->tail, memory_order_acquire) >> SHIFT);
}
