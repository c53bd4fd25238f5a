/*
 * bench/w4_queue/w4.h: the W4 scaffold shared by the C queue programs.
 *
 * W4 moves N pointer-sized items from P producer threads to C consumer
 * threads through one in-process queue and reports items/s = N / wall time,
 * timed from the moment every thread is ready until the last consumer has
 * returned. Each C program (weft_w4.c, glib_w4.c) only supplies the queue
 * calls (w4_impl); the threads, the timing, the checks and the output are
 * here, so every implementation is measured the same way.
 *
 * Items: producer p puts w4_item(p, 1..N/P): never 0 and never
 * W4_SENTINEL. Every consumer tallies what it takes (count, sum, and for
 * each producer whether its items came in order, which a FIFO queue must
 * keep for every single consumer), and the run dies with exit status 1
 * unless the tallies add up to exactly the items that were put.
 *
 * Command line of each program: IMPL PRODUCERS CONSUMERS N. It runs once
 * on N/8 items as a warm-up (not reported), then once on N items, and
 * prints one JSON line (bench/common/bench.h).
 */
#ifndef WEFT_BENCH_W4_H
#define WEFT_BENCH_W4_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "bench.h"

#define W4_PRODUCERS_MAX 16u /* producer index lives in the low 4 bits */
#define W4_SEQ_SHIFT 4

/* Item seq (from 1) of producer p. */
static inline uintptr_t w4_item(unsigned p, uint64_t seq) {
  return ((uintptr_t)seq << W4_SEQ_SHIFT) | (uintptr_t)p;
}
/* seq 0 is never put, so this value is free to mark the end for queues
 * that cannot carry NULL (GAsyncQueue). */
#define W4_SENTINEL ((uintptr_t)(W4_PRODUCERS_MAX - 1))

/* What one consumer took. Written only by that consumer; read by main after
 * the join. Cache-line aligned so consumers do not share a line. */
typedef struct w4_tally {
  uint64_t count;                    /* items taken */
  uint64_t sum;                      /* sum of the item values */
  uint64_t disorder;                 /* items older than one already taken from that producer */
  uint64_t last[W4_PRODUCERS_MAX];   /* last seq taken from each producer */
} __attribute__((aligned(64))) w4_tally;

static inline void w4_tally_take(w4_tally *t, uintptr_t v) {
  unsigned p = (unsigned)(v & (W4_PRODUCERS_MAX - 1));
  uint64_t seq = (uint64_t)(v >> W4_SEQ_SHIFT);
  t->disorder += seq <= t->last[p];
  t->last[p] = seq;
  t->count++;
  t->sum += v;
}

typedef struct w4_run w4_run;

/* One implementation under test. */
typedef struct w4_impl {
  const char *name;                         /* "impl" in the JSON output */
  void (*create)(w4_run *r);                /* make r->q */
  void (*destroy)(w4_run *r);               /* check r->q is empty, free it */
  void (*produce)(w4_run *r, unsigned p);   /* put w4_item(p, 1..per_producer) */
  void (*consume)(w4_run *r, w4_tally *t);  /* take and tally until the end mark */
  void (*finish)(w4_run *r);                /* by the last producer: end marks for consumers */
} w4_impl;

struct w4_run {
  const w4_impl *impl;
  unsigned producers, consumers;
  uint64_t per_producer;
  void *q;                      /* the implementation's queue */
  atomic_uint producers_left;   /* the one that brings it to 0 calls finish */
  pthread_barrier_t start;      /* all threads and main: the clock starts after it */
  w4_tally *tallies;            /* one per consumer */
};

typedef struct w4_thread_arg {
  w4_run *r;
  unsigned idx;
} w4_thread_arg;

static void *w4_producer_main(void *arg) {
  w4_thread_arg *a = arg;
  w4_run *r = a->r;
  pthread_barrier_wait(&r->start);
  r->impl->produce(r, a->idx);
  if (atomic_fetch_sub(&r->producers_left, 1) == 1)
    r->impl->finish(r);
  return NULL;
}

static void *w4_consumer_main(void *arg) {
  w4_thread_arg *a = arg;
  w4_run *r = a->r;
  pthread_barrier_wait(&r->start);
  r->impl->consume(r, &r->tallies[a->idx]);
  return NULL;
}

/* Run the impl once on producers * per_producer items; die on a wrong
 * result, return the wall time in seconds. */
static double w4_run_once(const w4_impl *impl, unsigned producers, unsigned consumers,
                          uint64_t per_producer) {
  w4_run r = {.impl = impl, .producers = producers, .consumers = consumers,
              .per_producer = per_producer};
  atomic_init(&r.producers_left, producers);
  r.tallies = aligned_alloc(64, sizeof(w4_tally) * consumers);
  pthread_t *tids = calloc(producers + consumers, sizeof(pthread_t));
  w4_thread_arg *args = calloc(producers + consumers, sizeof(w4_thread_arg));
  if (r.tallies == NULL || tids == NULL || args == NULL)
    bench_die("out of memory");
  memset(r.tallies, 0, sizeof(w4_tally) * consumers);
  if (pthread_barrier_init(&r.start, NULL, producers + consumers + 1) != 0)
    bench_die("pthread_barrier_init failed");
  impl->create(&r);

  for (unsigned i = 0; i < consumers; i++) {
    args[i] = (w4_thread_arg){&r, i};
    if (pthread_create(&tids[i], NULL, w4_consumer_main, &args[i]) != 0)
      bench_die("pthread_create failed");
  }
  for (unsigned i = 0; i < producers; i++) {
    args[consumers + i] = (w4_thread_arg){&r, i};
    if (pthread_create(&tids[consumers + i], NULL, w4_producer_main, &args[consumers + i]) != 0)
      bench_die("pthread_create failed");
  }
  pthread_barrier_wait(&r.start);
  double t0 = bench_now_s();
  for (unsigned i = 0; i < consumers; i++)
    pthread_join(tids[i], NULL);
  double secs = bench_now_s() - t0;
  for (unsigned i = 0; i < producers; i++)
    pthread_join(tids[consumers + i], NULL);

  /* Exactly the items put, each once, each producer's in order. */
  uint64_t count = 0, sum = 0, disorder = 0;
  for (unsigned i = 0; i < consumers; i++) {
    count += r.tallies[i].count;
    sum += r.tallies[i].sum;
    disorder += r.tallies[i].disorder;
  }
  uint64_t want_count = (uint64_t)producers * per_producer;
  uint64_t want_sum = 0;
  for (unsigned p = 0; p < producers; p++)
    want_sum += ((uint64_t)1 << W4_SEQ_SHIFT) * (per_producer * (per_producer + 1) / 2) +
                (uint64_t)p * per_producer;
  if (count != want_count || sum != want_sum || disorder != 0)
    bench_die("%s %up%uc: WRONG RESULT: took %" PRIu64 " items (want %" PRIu64 "), sum %" PRIu64
              " (want %" PRIu64 "), %" PRIu64 " out of producer order",
              impl->name, producers, consumers, count, want_count, sum, want_sum, disorder);

  impl->destroy(&r);
  pthread_barrier_destroy(&r.start);
  free(args);
  free(tids);
  free(r.tallies);
  return secs;
}

static int w4_main(int argc, char **argv, const w4_impl *impls, size_t n_impls) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s IMPL PRODUCERS CONSUMERS N\n  IMPL:", argv[0]);
    for (size_t i = 0; i < n_impls; i++)
      fprintf(stderr, " %s", impls[i].name);
    fputc('\n', stderr);
    return 2;
  }
  const w4_impl *impl = NULL;
  for (size_t i = 0; i < n_impls; i++)
    if (strcmp(argv[1], impls[i].name) == 0)
      impl = &impls[i];
  if (impl == NULL)
    bench_die("unknown IMPL '%s'", argv[1]);
  uint64_t producers = bench_parse_u64(argv[2], "PRODUCERS");
  uint64_t consumers = bench_parse_u64(argv[3], "CONSUMERS");
  uint64_t n = bench_parse_u64(argv[4], "N");
  if (producers > W4_PRODUCERS_MAX || consumers > 1024)
    bench_die("at most %u producers and 1024 consumers", W4_PRODUCERS_MAX);
  uint64_t per = n / producers;
  if (per == 0 || per > ((uint64_t)1 << 40))
    bench_die("N must be between PRODUCERS and 2^40 per producer");

  char variant[32];
  snprintf(variant, sizeof variant, "%" PRIu64 "p%" PRIu64 "c", producers, consumers);
  (void)w4_run_once(impl, (unsigned)producers, (unsigned)consumers, per / 8 ? per / 8 : 1);
  double secs = w4_run_once(impl, (unsigned)producers, (unsigned)consumers, per);
  uint64_t total = per * producers;
  bench_emit("W4", impl->name, variant, total, (double)total / secs, "items/s", secs);
  return 0;
}

#endif /* WEFT_BENCH_W4_H */
