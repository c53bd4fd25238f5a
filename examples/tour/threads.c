/*
 * The threads demo: the seed's threading.Thread subclass with an exitFlag
 * (its "MultiThread" snippet), in C on weft_thread.
 *
 * Python                                 weft
 *   class mThread(threading.Thread)        a struct + a body function
 *   thread1.start()                        weft_thread_start (name "Thread-1")
 *   time.sleep(delay)                      weft_thread_sleep_until (a stop
 *                                          request cuts it short)
 *   if exitFlag: thread.exit()             if (weft_stop_requested()) return
 *   time.ctime(time.time())                ctime_r(time(NULL))
 *   interpreter waits for the threads      weft_thread_join
 *
 * The seed prints "Esxiting"; we print "Exiting". Its exitFlag is a global
 * nobody sets; weft's stop token is per thread, and the extra part at the end
 * shows one thread stopped early through it.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tour.h"
#include "weft.h"

typedef struct mthread {
  int thread_id;     /* the seed's threadID */
  const char *name;  /* the seed's name */
  int counter;       /* the seed's counter: seconds between prints */
  int64_t second_ns; /* how long a second lasts (shorter with --quick) */
  int rounds;        /* prints made, for the stop-token part */
} mthread;

/* The seed's print_time(threadName, delay, counter). Returns false when the
 * thread was asked to stop. */
static bool print_time(mthread *m, int64_t delay_ns, int counter) {
  while (counter) {
    if (weft_stop_requested()) return false; /* the seed's exitFlag */
    if (weft_thread_sleep_until(weft_deadline_in_ns(delay_ns)) == WEFT_ECANCELED) return false;
    char when[32];
    time_t now = time(NULL);
    ctime_r(&now, when); /* "Fri Nov 27 08:12:01 2026\n", as time.ctime() */
    when[strcspn(when, "\n")] = 0;
    printf("%s %s\n", m->name, when);
    fflush(stdout);
    m->rounds++;
    counter--;
  }
  return true;
}

/* mThread.run */
static void *run(void *arg) {
  mthread *m = arg;
  printf("Starting %s\n", m->name);
  fflush(stdout);
  bool finished = print_time(m, m->counter * m->second_ns, 5);
  printf("Exiting %s%s\n", m->name, finished ? "" : " (stop requested)");
  fflush(stdout);
  return NULL;
}

static int start(weft_thread **t, mthread *m) {
  weft_thread_opts opts = {m->name, 0};
  int r = weft_thread_start(t, run, m, &opts);
  if (r != 0) fprintf(stderr, "threads: cannot start %s: %s\n", m->name, weft_strerror(r));
  return r;
}

int tour_threads(const tour_opts *o) {
  tour_title("threads", "threading.Thread subclass with exitFlag (seed: MultiThread)");

  mthread m1 = {1, "Thread-1", 1, o->second_ns, 0};
  mthread m2 = {2, "Thread-2", 2, o->second_ns, 0};
  weft_thread *thread1, *thread2;
  if (start(&thread1, &m1) != 0) return 1;
  if (start(&thread2, &m2) != 0) {
    weft_thread_join(thread1, WEFT_FOREVER, NULL);
    return 1;
  }
  printf("Exiting Main Thread\n");
  fflush(stdout);
  /* Python's interpreter waits for non-daemon threads before it exits. */
  int failed = weft_thread_join(thread1, WEFT_FOREVER, NULL) != 0;
  failed |= weft_thread_join(thread2, WEFT_FOREVER, NULL) != 0;
  failed |= m1.rounds != 5 || m2.rounds != 5;

  /* Beyond the seed: the stop token. Thread-3 would print five times, one
   * second apart; main asks it to stop after two and a half seconds, and the
   * request wakes it from its sleep at once. */
  printf("--- extra: weft_thread_request_stop() ends Thread-3 early ---\n");
  fflush(stdout);
  mthread m3 = {3, "Thread-3", 1, o->second_ns, 0};
  weft_thread *thread3;
  if (start(&thread3, &m3) != 0) return 1;
  weft_sleep_until(weft_deadline_in_ns(o->second_ns * 5 / 2));
  int64_t asked = weft_now_ns();
  weft_thread_request_stop(thread3);
  failed |= weft_thread_join(thread3, WEFT_FOREVER, NULL) != 0;
  int64_t took_ns = weft_now_ns() - asked;
  printf("Thread-3 stopped after %d of 5 rounds, %.0f ms after the request\n", m3.rounds,
         took_ns / 1e6);
  fflush(stdout);
  /* It must have stopped early, without sleeping out its second (loose
   * bounds: a loaded machine may start or schedule it late). */
  failed |= m3.rounds >= 5 || took_ns >= o->second_ns;
  return failed;
}
