/*
 * bench/w1_pool/glib_w1.c: W1 on GLib's GThreadPool (peer).
 *
 * A pool of 2 exclusive threads (g_thread_pool_new(func, NULL, 2, TRUE)),
 * started before the clock. GThreadPool has no futures: each task is one
 * g_thread_pool_push of a non-NULL pointer, and the submitter waits for the
 * semaphore that the last task posts (w1.h), so the figure covers every task
 * having run, as weft's do.
 *
 *  IMPL              VARIANT
 *  glib.GThreadPool  fire-and-forget  N pushes, wait for the last task
 *  glib.GThreadPool  wake-up latency  see w1.h (N samples)
 *  glib.GThreadPool  idle CPU         see w1.h (N ms)
 */
#include <glib.h>

#include "w1.h"

static void count_fn(gpointer data, gpointer ud) {
  (void)data;
  (void)ud;
  w1_task();
}

static void wake_fn(gpointer data, gpointer ud) {
  (void)data;
  (void)ud;
  w1_wake_task();
}

static void push_or_die(GThreadPool *pool, gpointer data) {
  GError *err = NULL;
  if (!g_thread_pool_push(pool, data, &err))
    bench_die("g_thread_pool_push failed: %s", err ? err->message : "?");
}

static void run_forget(void *p, uint64_t n) {
  GThreadPool *pool = p;
  for (uint64_t i = 0; i < n; i++)
    push_or_die(pool, (gpointer)(uintptr_t)(i + 1));
  w1_wait_all();
}

static void submit_wake(void *p) { push_or_die(p, (gpointer)(uintptr_t)1); }

static GThreadPool *make_pool(GFunc fn) {
  GError *err = NULL;
  GThreadPool *pool = g_thread_pool_new(fn, NULL, (gint)W1_WORKERS, TRUE, &err);
  if (pool == NULL)
    bench_die("g_thread_pool_new failed: %s", err ? err->message : "?");
  return pool;
}

static const char usage[] =
    "  IMPL VARIANT: glib.GThreadPool fire-and-forget |\n"
    "                glib.GThreadPool 'wake-up latency' (N samples) |\n"
    "                glib.GThreadPool 'idle CPU' (N ms)\n";

int main(int argc, char **argv) {
  w1_args a = w1_parse(argc, argv, usage);
  if (strcmp(a.impl, "glib.GThreadPool") != 0)
    bench_die("unknown IMPL '%s'\n%s", a.impl, usage);
  GThreadPool *pool;
  if (strcmp(a.variant, "fire-and-forget") == 0) {
    pool = make_pool(count_fn);
    const w1_round r = {run_forget, NULL, NULL};
    w1_throughput(a.impl, a.variant, a.n, &r, pool);
  } else if (strcmp(a.variant, "wake-up latency") == 0) {
    pool = make_pool(wake_fn);
    w1_wakeup(a.impl, a.n, submit_wake, pool);
  } else if (strcmp(a.variant, "idle CPU") == 0) {
    pool = make_pool(count_fn);
    const w1_round burst = {run_forget, NULL, NULL};
    (void)w1_round_once(a.impl, &burst, pool, 10000);
    w1_idle_cpu(a.impl, a.n);
  } else {
    bench_die("unknown VARIANT '%s'\n%s", a.variant, usage);
  }
  g_thread_pool_free(pool, FALSE, TRUE);
  return 0;
}
