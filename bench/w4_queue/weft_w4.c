/*
 * bench/w4_queue/weft_w4.c: W4 on weft_queue (the side under test).
 *
 * Three impls, each reported on its own:
 *  - "weft":             unbounded FIFO, put/get one item at a time; each
 *                        consumer stops on a NULL sentinel (Python's worker
 *                        pattern), like the GAsyncQueue and queue.Queue peers.
 *  - "weft.bounded1024": the same with maxsize 1024, the fair match for Go's
 *                        channel of capacity 1024 (producers block when full).
 *  - "weft.batch":       unbounded FIFO with put_many/get_many of up to 64
 *                        items; consumers stop when the last producer shuts
 *                        the queue down and it has drained. This is a
 *                        different API from the peers', so it is never
 *                        counted as "weft" against them.
 * Every weft call is checked: any error ends the program with status 1.
 */
#include <weft/queue.h>

#include "w4.h"

#define W4_BATCH 64

__attribute__((noreturn)) static void die_rc(const char *call, int rc) {
  bench_die("%s failed: %s (%s)", call, weft_err_name(rc), weft_strerror(rc));
}

static void create_with(w4_run *r, size_t maxsize) {
  weft_queue_opts opts = {.order = WEFT_QUEUE_FIFO, .maxsize = maxsize};
  weft_queue *q = NULL;
  int rc = weft_queue_create(&q, &opts);
  if (rc != 0)
    die_rc("weft_queue_create", rc);
  r->q = q;
}

static void create_unbounded(w4_run *r) { create_with(r, 0); }
static void create_bounded(w4_run *r) { create_with(r, 1024); }

static void destroy_queue(w4_run *r) {
  size_t left = weft_queue_qsize(r->q);
  if (left != 0)
    bench_die("%zu items left in the queue after the run", left);
  weft_queue_destroy(r->q);
}

static void produce_one(w4_run *r, unsigned p) {
  weft_queue *q = r->q;
  uint64_t per = r->per_producer;
  for (uint64_t s = 1; s <= per; s++) {
    int rc = weft_queue_put(q, (void *)w4_item(p, s), WEFT_FOREVER);
    if (rc != 0)
      die_rc("weft_queue_put", rc);
  }
}

static void finish_sentinels(w4_run *r) {
  for (unsigned i = 0; i < r->consumers; i++) {
    int rc = weft_queue_put(r->q, NULL, WEFT_FOREVER);
    if (rc != 0)
      die_rc("weft_queue_put(sentinel)", rc);
  }
}

static void consume_one(w4_run *r, w4_tally *t) {
  weft_queue *q = r->q;
  for (;;) {
    void *item;
    int rc = weft_queue_get(q, &item, WEFT_FOREVER);
    if (rc != 0)
      die_rc("weft_queue_get", rc);
    if (item == NULL)
      return;
    w4_tally_take(t, (uintptr_t)item);
  }
}

static void produce_batch(w4_run *r, unsigned p) {
  weft_queue *q = r->q;
  uint64_t per = r->per_producer;
  void *items[W4_BATCH];
  uint64_t s = 1;
  while (s <= per) {
    size_t k = 0;
    for (; k < W4_BATCH && s <= per; k++, s++)
      items[k] = (void *)w4_item(p, s);
    size_t n_put = 0;
    int rc = weft_queue_put_many(q, items, k, WEFT_FOREVER, &n_put);
    if (rc != 0)
      die_rc("weft_queue_put_many", rc);
    if (n_put != k)
      bench_die("weft_queue_put_many returned 0 but put %zu of %zu", n_put, k);
  }
}

static void finish_shutdown(w4_run *r) { weft_queue_shutdown(r->q, false); }

static void consume_batch(w4_run *r, w4_tally *t) {
  weft_queue *q = r->q;
  void *items[W4_BATCH];
  for (;;) {
    size_t got = 0;
    int rc = weft_queue_get_many(q, items, W4_BATCH, WEFT_FOREVER, &got);
    if (rc == WEFT_ESHUTDOWN && got == 0)
      return;
    if (rc != 0)
      die_rc("weft_queue_get_many", rc);
    if (got == 0 || got > W4_BATCH)
      bench_die("weft_queue_get_many returned 0 with %zu items (max %d)", got, W4_BATCH);
    for (size_t i = 0; i < got; i++)
      w4_tally_take(t, (uintptr_t)items[i]);
  }
}

static const w4_impl impls[] = {
    {"weft", create_unbounded, destroy_queue, produce_one, consume_one, finish_sentinels},
    {"weft.bounded1024", create_bounded, destroy_queue, produce_one, consume_one,
     finish_sentinels},
    {"weft.batch", create_unbounded, destroy_queue, produce_batch, consume_batch,
     finish_shutdown},
};

int main(int argc, char **argv) {
  return w4_main(argc, argv, impls, sizeof impls / sizeof impls[0]);
}
