/*
 * The watchdog: names any coroutine that keeps its hub from switching for
 * longer than a threshold (gevent's monitor thread, with the coroutine's name
 * and spawn site instead of a greenlet repr).
 *
 * A hub being watched publishes, on every switch, a sequence number and the
 * identity of the coroutine it switched to (id, spawn site, name) into its
 * watch record with relaxed atomic stores, and flags the time it sleeps in
 * the poller as idle. One watchdog thread per process samples every record
 * a few times per threshold: a record whose sequence number has not moved
 * for a threshold while not idle is a stall, reported once per stall. The
 * identity is read back with atomic loads and checked against the sequence
 * number (a seqlock), so a report never mixes two coroutines. A hub that is
 * not watched pays one predictable branch per switch.
 *
 * Locking: reg_mu guards the registry (the list of records, their
 * threshold/callback fields, and the thread's start). The sampled fields are
 * atomics written by the hub's thread only. Reports are copied out and the
 * callback runs with no lock held.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"

struct weft__wd {
  struct weft__wd *next;      /* registry; reg_mu */
  bool listed;                /* in the registry; reg_mu */
  int64_t threshold_ns;       /* reg_mu */
  weft_hub_stall_fn *fn;      /* reg_mu */
  void *ud;                   /* reg_mu */
  int tid;                    /* the hub's thread */
  /* written by the hub's thread, read by the watchdog */
  atomic_uint_fast64_t seq;
  atomic_int idle;
  atomic_uint_fast64_t id;
  _Atomic(const char *) file;
  atomic_int line;
  atomic_uint_fast64_t name[4]; /* 32 bytes of the name */
  /* the watchdog thread's own */
  uint64_t last_seq;
  int64_t since_ns;
  bool reported;
};

_Static_assert(sizeof(((weft_coro *)0)->name) == 32, "name is published as 4 words");

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER;
static struct weft__wd *registry;
static bool thread_started;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* seq is a sequence lock: odd while the record is being rewritten, so
 * that the watchdog never reports a mix of two coroutines (it saw the new
 * name with the old spawn line under qemu). */
void weft__wd_note(struct weft__wd *w, const weft_coro *c) {
  uint64_t words[4];
  memcpy(words, c->name, sizeof words);
  /* Only the hub's thread writes seq: plain stores, no read-modify-write. */
  uint64_t q = atomic_load_explicit(&w->seq, memory_order_relaxed);
  atomic_store_explicit(&w->seq, q + 1, memory_order_relaxed); /* odd: writing */
  atomic_thread_fence(memory_order_release);
  for (int i = 0; i < 4; i++) atomic_store_explicit(&w->name[i], words[i], memory_order_relaxed);
  atomic_store_explicit(&w->id, c->id, memory_order_relaxed);
  atomic_store_explicit(&w->file, c->file, memory_order_relaxed);
  atomic_store_explicit(&w->line, c->line, memory_order_relaxed);
  atomic_store_explicit(&w->seq, q + 2, memory_order_release); /* even: done */
}

void weft__wd_idle(struct weft__wd *w, bool idle) {
  atomic_store_explicit(&w->idle, idle, memory_order_relaxed);
  atomic_fetch_add_explicit(&w->seq, 2, memory_order_release); /* stays even */
}

static void print_stall(const weft_hub_stall *s, void *ud) {
  (void)ud;
  fprintf(stderr,
          "weft watchdog: coroutine \"%s\" (#%llu, spawned at %s:%d) has kept the hub of "
          "thread %d from switching for %.1f ms\n",
          s->coro_name, (unsigned long long)s->coro_id, s->spawn_file, s->spawn_line, s->tid,
          (double)s->blocked_ns / 1e6);
}

static void *watchdog_main(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "weft-watchdog");
  pthread_mutex_lock(&reg_mu);
  for (;;) {
    int64_t period = 100 * 1000000LL;
    for (struct weft__wd *w = registry; w; w = w->next)
      if (w->threshold_ns / 4 < period) period = w->threshold_ns / 4;
    if (period < 1000000) period = 1000000;
    if (!registry) {
      pthread_cond_wait(&reg_cv, &reg_mu);
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t until = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + period;
    ts.tv_sec = until / 1000000000;
    ts.tv_nsec = until % 1000000000;
    pthread_cond_timedwait(&reg_cv, &reg_mu, &ts);

    /* Sample; collect at most 16 reports, deliver them unlocked. */
    struct {
      weft_hub_stall s;
      weft_hub_stall_fn *fn;
      void *ud;
    } out[16];
    int nout = 0;
    int64_t now = weft_now_ns();
    for (struct weft__wd *w = registry; w && nout < 16; w = w->next) {
      uint64_t s = atomic_load_explicit(&w->seq, memory_order_acquire);
      if (atomic_load_explicit(&w->idle, memory_order_relaxed) || s != w->last_seq || (s & 1)) {
        w->last_seq = s;
        w->since_ns = now;
        w->reported = false;
        continue;
      }
      if (w->reported || now - w->since_ns < w->threshold_ns) continue;
      weft_hub_stall *r = &out[nout].s;
      uint64_t words[4];
      for (int i = 0; i < 4; i++)
        words[i] = atomic_load_explicit(&w->name[i], memory_order_relaxed);
      memcpy(r->coro_name, words, sizeof r->coro_name);
      r->coro_name[sizeof r->coro_name - 1] = 0;
      r->coro_id = atomic_load_explicit(&w->id, memory_order_relaxed);
      r->spawn_file = atomic_load_explicit(&w->file, memory_order_relaxed);
      r->spawn_line = atomic_load_explicit(&w->line, memory_order_relaxed);
      r->tid = w->tid;
      r->blocked_ns = now - w->since_ns;
      atomic_thread_fence(memory_order_acquire);
      if (atomic_load_explicit(&w->seq, memory_order_relaxed) != s) continue; /* it moved */
      w->reported = true;
      out[nout].fn = w->fn ? w->fn : print_stall;
      out[nout].ud = w->ud;
      nout++;
    }
    if (nout) {
      pthread_mutex_unlock(&reg_mu);
      for (int i = 0; i < nout; i++) out[i].fn(&out[i].s, out[i].ud);
      pthread_mutex_lock(&reg_mu);
    }
  }
  return NULL;
}

/* A forked child has no watchdog thread and only its own thread: start
 * afresh (its hub, if it had one, is watched again after a new call). */
static void atfork_child(void) {
  pthread_mutex_init(&reg_mu, NULL);
  pthread_cond_init(&reg_cv, NULL);
  for (struct weft__wd *w = registry; w; w = w->next) w->listed = false;
  registry = NULL;
  thread_started = false;
}

static void atfork_install(void) { pthread_atfork(NULL, NULL, atfork_child); }

int weft_hub_watchdog(int64_t threshold_ns, weft_hub_stall_fn *fn, void *ud) {
  if (threshold_ns < 0) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  pthread_once(&atfork_once, atfork_install);
  if (threshold_ns == 0) {
    weft__wd_fini(h);
    return 0;
  }
  struct weft__wd *w = h->wd;
  if (!w) {
    w = weft__calloc(1, sizeof *w);
    if (!w) return WEFT_ENOMEM;
    w->tid = h->tid;
  }
  pthread_mutex_lock(&reg_mu);
  if (!thread_started) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&t, &a, watchdog_main, NULL);
    pthread_attr_destroy(&a);
    if (e) {
      pthread_mutex_unlock(&reg_mu);
      if (!h->wd) weft__free(w);
      return -e;
    }
    thread_started = true;
  }
  w->threshold_ns = threshold_ns;
  w->fn = fn;
  w->ud = ud;
  w->since_ns = weft_now_ns();
  w->reported = false;
  if (!w->listed) {
    w->next = registry;
    registry = w;
    w->listed = true;
  }
  pthread_cond_signal(&reg_cv);
  pthread_mutex_unlock(&reg_mu);
  if (!h->wd) {
    h->wd = w;
    weft__wd_note(w, h->current);
  }
  return 0;
}

void weft__wd_fini(weft__hub *h) {
  struct weft__wd *w = h->wd;
  if (!w) return;
  pthread_mutex_lock(&reg_mu);
  if (w->listed) {
    struct weft__wd **p = &registry;
    while (*p != w) p = &(*p)->next;
    *p = w->next;
    w->listed = false;
  }
  pthread_mutex_unlock(&reg_mu);
  weft__free(w);
  h->wd = NULL;
}
