/*
 * bench/w4_queue/glib_w4.c: W4 on GLib's GAsyncQueue (peer).
 *
 * "glib.GAsyncQueue": g_async_queue_push / g_async_queue_pop, one item at a
 * time, unbounded (GAsyncQueue has no bound). GAsyncQueue refuses NULL, so
 * each consumer stops on W4_SENTINEL, a value no producer puts.
 */
#include <glib.h>

#include "w4.h"

static void create_queue(w4_run *r) { r->q = g_async_queue_new(); }

static void destroy_queue(w4_run *r) {
  gint left = g_async_queue_length(r->q);
  if (left != 0)
    bench_die("%d items left in the queue after the run", left);
  g_async_queue_unref(r->q);
}

static void produce(w4_run *r, unsigned p) {
  GAsyncQueue *q = r->q;
  uint64_t per = r->per_producer;
  for (uint64_t s = 1; s <= per; s++)
    g_async_queue_push(q, (gpointer)w4_item(p, s));
}

static void finish(w4_run *r) {
  for (unsigned i = 0; i < r->consumers; i++)
    g_async_queue_push(r->q, (gpointer)W4_SENTINEL);
}

static void consume(w4_run *r, w4_tally *t) {
  GAsyncQueue *q = r->q;
  for (;;) {
    uintptr_t v = (uintptr_t)g_async_queue_pop(q);
    if (v == W4_SENTINEL)
      return;
    w4_tally_take(t, v);
  }
}

static const w4_impl impls[] = {
    {"glib.GAsyncQueue", create_queue, destroy_queue, produce, consume, finish},
};

int main(int argc, char **argv) {
  return w4_main(argc, argv, impls, sizeof impls / sizeof impls[0]);
}
