/* A program outside weft's tree, built against the installed package. */
#include <stdio.h>
#include <weft.h>

int main(void) {
  weft_queue *q;
  if (weft_queue_create(&q, NULL) != 0) return 1;
  int x = 42;
  void *out = NULL;
  int ok = weft_queue_put(q, &x, 0) == 0 && weft_queue_get(q, &out, 0) == 0 && out == &x;
  weft_queue_destroy(q);
  printf("weft %s consumer: %s\n", weft_version_string(), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
