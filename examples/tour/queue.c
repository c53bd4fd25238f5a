/*
 * Tour: the seed's queue.Queue worker pattern (from Python's queue docs).
 *
 *   def worker():
 *       while True:
 *           item = q.get()
 *           if item is None: break
 *           do_work(item)
 *           q.task_done()
 *   ...
 *   q.join()                      # block until all tasks are done
 *   for i in range(num_worker_threads): q.put(None)
 *   for t in threads: t.join()
 *
 * In weft the items are pointers, so NULL plays None. A priority queue
 * and a LIFO queue (queue.PriorityQueue, queue.LifoQueue) follow, and the
 * Python 3.13 shutdown that replaces the sentinel.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tour.h"
#include "weft.h"

#define NUM_WORKER_THREADS 3
#define NUM_ITEMS 10

static weft_queue *q;
static weft_mutex print_mu; /* keeps lines whole */
static int64_t work_ns;     /* how long one item's work takes */

static void do_work(const char *who, int item) {
  weft_sleep_until(weft_now_ns() + work_ns); /* the work itself */
  weft_mutex_lock(&print_mu, WEFT_FOREVER);
  printf("%s worked on item %d\n", who, item);
  weft_mutex_unlock(&print_mu);
}

static void *worker(void *arg) {
  (void)arg;
  const char *me = weft_thread_name(weft_thread_current());
  for (;;) {
    void *item;
    if (weft_queue_get(q, &item, WEFT_FOREVER) != 0) return NULL;
    if (item == NULL) break; /* the sentinel */
    do_work(me, *(int *)item);
    free(item);
    weft_queue_task_done(q);
  }
  return NULL;
}

static int cmp_int(const void *a, const void *b, void *ud) {
  (void)ud;
  return *(const int *)a - *(const int *)b;
}

/* queue.PriorityQueue and queue.LifoQueue: put 5 3 4 1 2, get them all. */
static int show_order(weft_queue_order order, const char *label) {
  static int vals[] = {5, 3, 4, 1, 2};
  weft_queue_opts o = {0};
  o.order = order;
  o.cmp = cmp_int;
  weft_queue *pq;
  if (weft_queue_create(&pq, &o) != 0) return -1;
  for (int i = 0; i < 5; i++) weft_queue_put(pq, &vals[i], 0);
  printf("%s gets:", label);
  void *it;
  while (weft_queue_get(pq, &it, 0) == 0) printf(" %d", *(int *)it);
  printf("\n");
  weft_queue_destroy(pq);
  return 0;
}

static void free_int(void *item, void *ud) {
  (void)ud;
  free(item);
}

int tour_queue(const tour_opts *o) {
  work_ns = o->second_ns / 100; /* 10 ms of "work" per item (1 ms quick) */
  tour_title("queue", "queue.Queue workers with task_done/join and a None sentinel");
  weft_queue_opts qo = {0};
  qo.free_fn = free_int; /* whatever is left at destroy */
  if (weft_queue_create(&q, &qo) != 0) return -1;
  weft_mutex_init(&print_mu, 0);

  weft_thread *threads[NUM_WORKER_THREADS];
  for (int i = 0; i < NUM_WORKER_THREADS; i++) {
    char name[16];
    snprintf(name, sizeof name, "worker-%d", i + 1);
    weft_thread_opts to = {name, 0};
    if (weft_thread_start(&threads[i], worker, NULL, &to) != 0) return -1;
  }
  for (int i = 0; i < NUM_ITEMS; i++) { /* for item in source(): q.put(item) */
    int *item = malloc(sizeof *item);
    if (!item) return -1;
    *item = i;
    weft_queue_put(q, item, WEFT_FOREVER);
  }
  weft_queue_join(q, WEFT_FOREVER); /* block until all tasks are done */
  printf("all %d items done (q.join() returned)\n", NUM_ITEMS);
  for (int i = 0; i < NUM_WORKER_THREADS; i++) weft_queue_put(q, NULL, WEFT_FOREVER); /* stop workers */
  for (int i = 0; i < NUM_WORKER_THREADS; i++) weft_thread_join(threads[i], WEFT_FOREVER, NULL);
  weft_queue_destroy(q);
  weft_mutex_fini(&print_mu);

  if (show_order(WEFT_QUEUE_PRIORITY, "queue.PriorityQueue") != 0) return -1;
  if (show_order(WEFT_QUEUE_LIFO, "queue.LifoQueue") != 0) return -1;

  /* Python 3.13: shutdown() instead of sentinels. */
  weft_queue *sq;
  if (weft_queue_create(&sq, NULL) != 0) return -1;
  weft_queue_put(sq, "last item", 0);
  weft_queue_shutdown(sq, false);
  void *it;
  int r1 = weft_queue_get(sq, &it, WEFT_FOREVER);
  printf("after shutdown: get -> %s (\"%s\"), ", weft_err_name(r1), r1 == 0 ? (char *)it : "");
  int r2 = weft_queue_get(sq, &it, WEFT_FOREVER);
  int r3 = weft_queue_put(sq, "late", 0);
  printf("get -> %s, put -> %s\n", weft_err_name(r2), weft_err_name(r3));
  weft_queue_destroy(sq);
  return (r1 == 0 && r2 == WEFT_ESHUTDOWN && r3 == WEFT_ESHUTDOWN) ? 0 : -1;
}
