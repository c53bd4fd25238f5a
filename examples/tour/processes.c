/*
 * The processes demo: the seed's multiprocessing.Process snippet, in C on
 * weft_process.
 *
 *   def worker(num):                               a weft_process_fn: bytes in,
 *       print("Worker: {}".format(num))            exit status out
 *   jobs = []
 *   for i in range(5):
 *       p = multiprocessing.Process(target=worker, args=(i,))
 *       jobs.append(p)                             weft_process_start
 *       p.start()
 *                                                  Python joins its children at
 *                                                  exit; here weft_process_join
 *
 * Each child is a real process with its own pid; the argument travels as
 * bytes, and the children print in whatever order the scheduler runs them.
 */
#include <stdio.h>
#include <string.h>

#include "tour.h"
#include "weft.h"

/* def worker(num): print("Worker: {}".format(num)) */
static int worker(const void *arg, size_t len) {
  int num;
  if (len != sizeof num) return 2;
  memcpy(&num, arg, sizeof num);
  printf("Worker: %d\n", num);
  return 0;
}

int tour_processes(const tour_opts *o) {
  (void)o;
  tour_title("processes", "for i in range(5): p = multiprocessing.Process(target=worker, "
                          "args=(i,)); jobs.append(p); p.start()");
  weft_process *jobs[5];
  int started = 0, r = 0;
  for (int i = 0; i < 5; i++) {
    r = weft_process_start(&jobs[i], worker, &i, sizeof i, NULL);
    if (r) break;
    started++;
  }
  int bad = 0;
  for (int i = 0; i < started; i++) {
    int code = -1;
    if (weft_process_join(jobs[i], WEFT_FOREVER) != 0 ||
        weft_process_exitcode(jobs[i], &code) != 0 || code != 0)
      bad++;
    weft_process_destroy(jobs[i]);
  }
  fflush(stdout);
  if (r) {
    fprintf(stderr, "processes: Process.start: %s\n", weft_strerror(r));
    return 1;
  }
  if (bad) {
    fprintf(stderr, "processes: %d worker(s) did not exit with 0\n", bad);
    return 1;
  }
  return 0;
}
