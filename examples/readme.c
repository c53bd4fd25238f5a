#include <stdio.h>
#include <weft.h>

static void *worker(void *arg) {
  weft_queue *q = arg;
  void *item;
  while (weft_queue_get(q, &item, WEFT_FOREVER) == 0) { /* until shut down */
    printf("%s got %d\n", weft_thread_name(weft_thread_current()), *(int *)item);
    weft_queue_task_done(q);
  }
  return NULL;
}

int main(void) {
  weft_queue *q;
  if (weft_queue_create(&q, NULL) != 0) return 1; /* queue.Queue() */
  weft_thread *t[2];
  for (int i = 0; i < 2; i++) weft_thread_start(&t[i], worker, q, NULL);
  int items[5] = {0, 1, 2, 3, 4};
  for (int i = 0; i < 5; i++) weft_queue_put(q, &items[i], WEFT_FOREVER);
  weft_queue_join(q, WEFT_FOREVER);  /* q.join(): every item task_done */
  weft_queue_shutdown(q, false);     /* q.shutdown(): the workers' get fails */
  for (int i = 0; i < 2; i++) weft_thread_join(t[i], WEFT_FOREVER, NULL);
  weft_queue_destroy(q);
  return 0;
}
