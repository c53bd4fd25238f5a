/*
 * The gevent_threadpool demo: the seed's gevent ThreadPool snippet, in C on
 * weft's hub and thread executor.
 *
 *   pool = ThreadPool(3)                 weft_executor_create, 3 workers
 *   start = time.time()                  weft_now_ns
 *   for _ in range(4):
 *       pool.spawn(time.sleep, 1)        4 coroutines, each offloading a
 *                                        blocking 1 s sleep to the pool
 *                                        (weft_coro_offload): the hub keeps
 *                                        running while the threads sleep
 *   gevent.wait()                        weft_hub_wait: until all are done
 *   delay = time.time() - start
 *   print('Running "time.sleep(1)" 4 times with 3 threads. Should take
 *          about 2 seconds: %.3fs' % delay)
 *
 * Three sleeps run at once on the three threads, the fourth waits for a
 * free thread: about 2 s in all. With --quick a "second" lasts 0.1 s.
 */
#include <stdio.h>
#include <time.h>

#include "tour.h"
#include "weft.h"

/* time.sleep(1): a blocking call, run on a pool thread. */
static int blocking_sleep(void *arg) {
  int64_t ns = *(const int64_t *)arg;
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
  return 0;
}

typedef struct spawn_arg {
  weft_executor *pool;
  int64_t second_ns;
} spawn_arg;

/* pool.spawn(time.sleep, 1): the coroutine that waits for one offloaded call. */
static int sleeper(void *arg) {
  spawn_arg *a = arg;
  return weft_coro_offload(a->pool, blocking_sleep, &a->second_ns, WEFT_FOREVER, NULL);
}

int tour_gevent_threadpool(const tour_opts *o) {
  tour_title("gevent_threadpool", "gevent ThreadPool(3): 4 x time.sleep(1), gevent.wait()");
  weft_executor *pool;
  weft_executor_opts eo = {.kind = WEFT_EXECUTOR_THREADS, .workers = 3, .name = "gevent-pool"};
  int r = weft_executor_create(&pool, &eo);
  if (r) {
    fprintf(stderr, "gevent_threadpool: %s\n", weft_strerror(r));
    return 1;
  }
  spawn_arg a = {pool, o->second_ns};
  int64_t start = weft_now_ns();
  weft_coro_group *g;
  r = weft_coro_group_create(&g);
  weft_coro_opts co = {.name = "pool.spawn", .group = g};
  for (int i = 0; r == 0 && i < 4; i++) r = weft_coro_spawn(NULL, sleeper, &a, &co);
  if (r == 0) r = weft_hub_wait(WEFT_FOREVER);
  double delay = (double)(weft_now_ns() - start) / 1e9;
  weft_coro_group_destroy(g);
  weft_executor_destroy(pool);
  if (r) {
    fprintf(stderr, "gevent_threadpool: %s\n", weft_strerror(r));
    return 1;
  }
  printf("Running \"time.sleep(1)\" 4 times with 3 threads. Should take about 2 seconds: "
         "%.3fs\n", delay);
  if (o->quick) printf("(--quick: a second of the seed lasts 0.1 s here)\n");
  fflush(stdout);
  /* 2 "seconds" at least; a loaded machine may add some. */
  double sec = (double)o->second_ns / 1e9;
  return delay >= 2 * sec && delay < 4 * sec ? 0 : 1;
}
