/*
 * weft_tour [--quick] [--skip DEMO]... [DEMO...]: run the seed's demos in
 * order (all of them when none is named, less those skipped). --quick
 * shortens the seed's sleeps tenfold.
 */
#include <stdio.h>
#include <string.h>

#include "tour.h"

static const struct {
  const char *name;
  int (*run)(const tour_opts *);
} demos[] = {
    {"threads", tour_threads},
    {"thread_pool", tour_thread_pool},
    {"gevent_threadpool", tour_gevent_threadpool},
    {"processes", tour_processes},
    {"process_pool", tour_process_pool},
    {"queue", tour_queue},
    {"process_queue", tour_process_queue},
    /* After the demos that fork: patching is process-wide. */
    {"monkey_patch", tour_monkey_patch},
    {"mpi", tour_mpi},
};
#define NDEMOS (sizeof demos / sizeof demos[0])

void tour_title(const char *name, const char *seed_snippet) {
  printf("\n=== %s: %s ===\n", name, seed_snippet);
  fflush(stdout);
}

int main(int argc, char **argv) {
  tour_opts o = {false, 1000000000};
  int want[NDEMOS] = {0}, skip[NDEMOS] = {0}, any = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      o.quick = true;
      o.second_ns = 100000000;
      continue;
    }
    bool skipping = strcmp(argv[i], "--skip") == 0 && i + 1 < argc;
    if (skipping) i++;
    size_t d;
    for (d = 0; d < NDEMOS && strcmp(argv[i], demos[d].name) != 0; d++) {
    }
    if (d == NDEMOS) {
      fprintf(stderr, "weft_tour: no demo named '%s'; demos:", argv[i]);
      for (d = 0; d < NDEMOS; d++) fprintf(stderr, " %s", demos[d].name);
      fprintf(stderr, "\n");
      return 2;
    }
    if (skipping)
      skip[d] = 1;
    else
      want[d] = any = 1;
  }
  int failed = 0;
  for (size_t d = 0; d < NDEMOS; d++) {
    if ((any && !want[d]) || skip[d]) continue;
    if (demos[d].run(&o) != 0) {
      fprintf(stderr, "weft_tour: demo '%s' failed\n", demos[d].name);
      failed++;
    }
  }
  return failed != 0;
}
