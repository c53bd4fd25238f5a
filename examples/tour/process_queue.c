/*
 * The process_queue demo: the seed's multiprocessing.Queue snippet, in C on
 * weft_shmq and weft_process.
 *
 *   class Fun:                                     an object as bytes: struct fun
 *       def __init__(self, name): self.name = name
 *       def do_it(self):                           fun_do_it
 *           name = multiprocessing.current_process().name
 *           print("{} Just Do it; Fun {}".format(name, self.name))
 *   def worker(q):                                 the child's function
 *       obj = q.get()                              weft_shmq_get
 *       obj.do_it()
 *   queue = multiprocessing.Queue()                weft_shmq_create (a named queue)
 *   p = multiprocessing.Process(target=worker, args=(queue,))
 *   p.start()                                      weft_process_start
 *   queue.put(Fun(random.choice(string.ascii_uppercase)))
 *   queue.close()                                  weft_shmq_close
 *   queue.join_thread()                            nothing to wait for: put has
 *                                                  copied the message into shared
 *                                                  memory before it returned
 *   p.join()                                       weft_process_join
 *
 * Python pickles the object; here the object is a plain struct whose bytes
 * are the message. The child gets the queue's name as its argument and
 * opens the queue by name, which works however weft made the child (fork,
 * or the fork server that predates the queue). As in Python, the child's
 * name counts the processes this program started: run alone, the demo
 * prints "Process-1".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tour.h"
#include "weft.h"

/* class Fun: the object's state, sent as the message's bytes. */
typedef struct fun {
  char name[8];
} fun;

static void fun_do_it(const fun *self) {
  printf("%s Just Do it; Fun %s\n", weft_process_current_name(), self->name);
  fflush(stdout);
}

/* def worker(q): obj = q.get(); obj.do_it() */
static int worker(const void *arg, size_t len) {
  char qname[80];
  if (len == 0 || len >= sizeof qname) return 2;
  memcpy(qname, arg, len);
  qname[len] = '\0';
  weft_shmq *q;
  int rc = weft_shmq_open(&q, qname);
  if (rc != 0) {
    fprintf(stderr, "process_queue: child: open: %s\n", weft_strerror(rc));
    return 3;
  }
  fun obj;
  size_t got;
  rc = weft_shmq_get(q, &obj, sizeof obj, &got, weft_deadline_in_s(30));
  weft_shmq_destroy(q);
  if (rc != 0 || got != sizeof obj) {
    fprintf(stderr, "process_queue: child: get: %s\n", weft_strerror(rc));
    return 4;
  }
  obj.name[sizeof obj.name - 1] = '\0';
  fun_do_it(&obj);
  return 0;
}

int tour_process_queue(const tour_opts *o) {
  (void)o;
  tour_title("process_queue", "p = multiprocessing.Process(target=worker, args=(queue,)); "
                              "queue.put(Fun(random.choice(string.ascii_uppercase)))");
  char qname[64];
  snprintf(qname, sizeof qname, "tour-%d", (int)getpid());
  weft_shmq *queue;
  weft_shmq_opts qo = {.name = qname}; /* queue = multiprocessing.Queue() */
  int rc = weft_shmq_create(&queue, &qo);
  if (rc != 0) {
    fprintf(stderr, "process_queue: Queue(): %s\n", weft_strerror(rc));
    return 1;
  }
  weft_process *p;
  rc = weft_process_start(&p, worker, qname, strlen(qname), NULL);
  if (rc != 0) {
    fprintf(stderr, "process_queue: Process.start: %s\n", weft_strerror(rc));
    weft_shmq_destroy(queue);
    return 1;
  }
  srand((unsigned)weft_now_ns() ^ (unsigned)getpid());
  fun obj = {{0}};
  obj.name[0] = (char)('A' + rand() % 26); /* random.choice(string.ascii_uppercase) */
  rc = weft_shmq_put(queue, &obj, sizeof obj, WEFT_FOREVER);
  weft_shmq_close(queue); /* queue.close(); join_thread() has nothing to wait for */
  int jr = weft_process_join(p, weft_deadline_in_s(60)), code = -1;
  if (jr == 0) weft_process_exitcode(p, &code);
  weft_process_destroy(p);
  weft_shmq_destroy(queue);
  if (rc != 0 || jr != 0 || code != 0) {
    fprintf(stderr, "process_queue: put %s, join %s, child exit code %d\n", weft_strerror(rc),
            weft_strerror(jr), code);
    return 1;
  }
  return 0;
}
