/*
 * The tour: every demo of the seed document, in C on weft. Each demo is a
 * function in its own file, listed in tour.c, that prints a title naming the
 * seed snippet it reproduces and then runs it.
 */
#ifndef WEFT_TOUR_H
#define WEFT_TOUR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft.h"

typedef struct tour_opts {
  bool quick;          /* --quick: shorten the seed's sleeps */
  int64_t second_ns;   /* what "one second" of the seed lasts: 1e9, or 1e8 quick */
} tour_opts;

/* Print the demo's title: the seed snippet it reproduces. */
void tour_title(const char *name, const char *seed_snippet);

/* Each returns 0 on success, non-zero if something went wrong. */
int tour_threads(const tour_opts *o);
int tour_queue(const tour_opts *o);
int tour_thread_pool(const tour_opts *o);
int tour_processes(const tour_opts *o);
int tour_process_queue(const tour_opts *o);
int tour_process_pool(const tour_opts *o);
int tour_gevent_threadpool(const tour_opts *o);
int tour_mpi(const tour_opts *o); /* part 4: launches weft_tour_mpi under mpiexec */
int tour_monkey_patch(const tour_opts *o);

/* What the pool demos share (squares.c). */
extern const weft_task tour_square; /* def f(x): return x*x, on int64 bytes */
/* print(list) of n int64s, as Python prints it. */
void tour_print_list(const int64_t *v, size_t n);
/* range(next, stop) as an imap source (weft_imap_source_fn). */
typedef struct tour_range {
  int64_t next, stop, cur;
} tour_range;
int tour_range_next(void *ud, const void **arg, size_t *len);
/* The result of fut (waited for) as an int64: 0, or the error. */
int tour_result_i64(weft_future *fut, int64_t *out);
/* print(list(ex.map(f, range(10)))) the lazy way (weft_imap): 0, or the error. */
int tour_print_imap_squares(weft_executor *ex);

#endif
