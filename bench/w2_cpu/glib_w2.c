/*
 * bench/w2_cpu/glib_w2.c: W2 on GLib's GThreadPool (peer).
 *
 * "glib.GThreadPool", variant "threads": a pool of 1 or 2 exclusive threads;
 * each task is one g_thread_pool_push of its slot; the last task to finish
 * posts a semaphore (w2.h).
 */
#include <glib.h>

#include "w2.h"

typedef struct slot {
  unsigned n;
  uint64_t *result;
} slot;

static void fib_fn(gpointer data, gpointer ud) {
  (void)ud;
  slot *s = data;
  *s->result = w2_fib(s->n);
  w2_task_done();
}

static void *create(unsigned workers) {
  GError *err = NULL;
  GThreadPool *pool = g_thread_pool_new(fib_fn, NULL, (gint)workers, TRUE, &err);
  if (pool == NULL)
    bench_die("g_thread_pool_new failed: %s", err ? err->message : "?");
  return pool;
}

static void run(void *pool, unsigned n, uint64_t *results, unsigned tasks) {
  slot *slots = malloc(tasks * sizeof *slots);
  if (slots == NULL)
    bench_die("out of memory");
  w2_expect(tasks);
  for (unsigned i = 0; i < tasks; i++) {
    slots[i] = (slot){n, &results[i]};
    GError *err = NULL;
    if (!g_thread_pool_push(pool, &slots[i], &err))
      bench_die("g_thread_pool_push failed: %s", err ? err->message : "?");
  }
  w2_wait_all();
  free(slots);
}

static void destroy(void *pool) { g_thread_pool_free(pool, FALSE, TRUE); }

static const w2_impl impls[] = {{"glib.GThreadPool", "threads", create, run, destroy}};

int main(int argc, char **argv) {
  return w2_main(argc, argv, impls, sizeof impls / sizeof impls[0]);
}
