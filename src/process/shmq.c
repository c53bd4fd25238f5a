/*
 * weft_shmq: the cross-process queue of byte messages. Layout and the
 * meaning of every shared word: shmq_impl.h. Design and invariants:
 * docs/design/shmq.md.
 *
 * The ring is Vyukov's bounded MPMC queue over a shared segment, with
 * messages of several consecutive slots: a producer checks that the k slots
 * from tail are free, claims them with one CAS on tail, copies and
 * publishes the first slot's seq; a consumer at head sees a published first
 * slot, claims its k slots with one CAS on head, copies out and frees them
 * (highest first). No lock anywhere: a copy of any size runs with nothing
 * held, and a process can die at any instruction.
 *
 * Crash tolerance. Before its CAS a thread writes its intent (first
 * position, slot count, role) in its own record, and clears it once its
 * slots are published (producer) or freed (consumer). A survivor that finds
 * a position stuck (claimed by tail but unpublished; or claimed by head but
 * never freed) looks for the records whose intent covers it. If one of
 * them is alive (its pid and start time in /proc, stopped counts as alive),
 * it waits. If all are dead, the claimer was one of them: a stuck producer
 * claim becomes a skip message (its slots, up to the nearest end of the dead
 * intents that cover it, which is never past the true claim's end), and a
 * stuck consumer claim is freed. Waiters wake every 50 ms to look for dead
 * participants, so a death is seen within 100 ms; the survivors count it in
 * hdr.deaths and each handle returns WEFT_EPEERDIED once per new death.
 *
 * Locking: nothing in the segment is ever locked. In the process: tlock, a
 * spin flag per handle, guards the handle's thread -> record table (taken
 * on a thread's first call only); handles_lock, a mutex, guards the list of
 * this process's handles, which the fork handlers walk. Order: handles_lock,
 * then tlock. Around fork() the prepare handler takes handles_lock and every
 * handle's tlock, so that a child never inherits one held by a thread that
 * does not exist in it; both sides then release them.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/evc.h"
#include "common/futex.h"
#include "common/spin.h"
#include "process/shm.h"
#include "process/shmq_impl.h"
#include "weft/shmq.h"

#define MS_NS 1000000LL
#define SCAN_PERIOD_NS (50 * MS_NS) /* how often blocked callers look for deaths */
#define SPIN_TRIES 48               /* quick retries before sleeping */
#define RETRY 1                     /* internal: not ready, or state changed */
#define KMASK ((1ull << 48) - 1)

typedef struct thr_ent {
  int32_t tid;  /* a thread of this process that used the handle */
  uint32_t rec; /* its record */
} thr_ent;

struct weft_shmq {
  weft__shm shm;        /* the mapping */
  shmq_hdr *h;          /* segment header */
  shmq_rec *recs;       /* SHMQ_NREC records */
  shmq_meta *meta;      /* nslots */
  unsigned char *data;  /* nslots * slot_size */
  /* The geometry, validated once; never re-read from the segment. */
  uint64_t nslots, mask, slot_size, msg_max, cap_bytes;
  unsigned slot_shift;
  unsigned flags;
  uint64_t serial;                /* tells handles apart in the thread cache */
  _Atomic uint32_t deaths_seen;   /* hdr.deaths already reported by this handle */
  _Atomic bool closed;            /* weft_shmq_close was called */
  _Atomic int64_t last_scan_ns;   /* last look for dead participants */
  atomic_flag tlock;              /* guards thr, nthr, gen */
  uint64_t gen;                   /* fork generation thr[] belongs to */
  uint32_t nthr;                  /* entries in thr */
  thr_ent thr[SHMQ_NREC];         /* guarded by tlock */
  weft_shmq *prev, *next;         /* this process's handles; handles_lock */
};

/* ----------------------------------------------------- fork generation */

static _Atomic uint64_t fork_gen = 1;
static _Atomic uint64_t next_serial = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_shmq *handles; /* guarded by handles_lock */

static void on_fork_prepare(void) {
  pthread_mutex_lock(&handles_lock);
  for (weft_shmq *q = handles; q; q = q->next)
    while (atomic_flag_test_and_set_explicit(&q->tlock, memory_order_acquire))
      weft__cpu_relax();
}
static void release_all(void) {
  for (weft_shmq *q = handles; q; q = q->next)
    atomic_flag_clear_explicit(&q->tlock, memory_order_release);
  pthread_mutex_unlock(&handles_lock);
}
static void on_fork_parent(void) { release_all(); }
static void on_fork_child(void) {
  atomic_fetch_add(&fork_gen, 1); /* the handles' tables are the parent's */
  release_all();
}
static void install_atfork(void) {
  pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

/* The calling thread's record for one handle (a one-entry cache). */
static __thread struct {
  uint64_t serial, gen;
  uint32_t rec, ops;
} tl;

/* ------------------------------------------------------------- helpers */

static inline shmq_meta *meta_at(const weft_shmq *q, uint64_t pos) {
  return &q->meta[pos & q->mask];
}
static inline uint64_t seq_load(const weft_shmq *q, uint64_t pos) {
  return atomic_load_explicit(&meta_at(q, pos)->seq, memory_order_acquire);
}
static inline uint64_t slots_for(const weft_shmq *q, uint64_t len) {
  return len == 0 ? 1 : (len + q->slot_size - 1) >> q->slot_shift;
}
static inline int64_t diff(uint64_t a, uint64_t b) { return (int64_t)(a - b); }
static inline uint64_t tail_pos(const weft_shmq *q) {
  return atomic_load_explicit(&q->h->tail, memory_order_acquire) & ~SHMQ_CLOSED;
}
static inline uint64_t head_pos(const weft_shmq *q) {
  return atomic_load_explicit(&q->h->head, memory_order_acquire);
}

static void copy_in(weft_shmq *q, uint64_t pos, const void *src, size_t len) {
  uint64_t off = (pos & q->mask) << q->slot_shift;
  size_t first = len < q->cap_bytes - off ? len : (size_t)(q->cap_bytes - off);
  if (first) memcpy(q->data + off, src, first);
  if (len > first) memcpy(q->data, (const char *)src + first, len - first);
}

static void copy_out(const weft_shmq *q, uint64_t pos, void *dst, size_t len) {
  uint64_t off = (pos & q->mask) << q->slot_shift;
  size_t first = len < q->cap_bytes - off ? len : (size_t)(q->cap_bytes - off);
  if (first) memcpy(dst, q->data + off, first);
  if (len > first) memcpy((char *)dst + first, q->data, len - first);
}

/* Wake every sleeper on word, whatever the sleepers bit says. */
static void wake_all(_Atomic uint32_t *word) {
  atomic_fetch_add_explicit(word, 2u, memory_order_seq_cst);
  weft__futex_wake(word, INT_MAX, WEFT__FUTEX_SHARED);
}

static void wake_everyone(weft_shmq *q) {
  wake_all(&q->h->evc_get);
  wake_all(&q->h->evc_put);
  wake_all(&q->h->evc_join);
}

static inline void notify(_Atomic uint32_t *word) {
  atomic_thread_fence(memory_order_seq_cst);
  weft__evc_notify_flags(word, WEFT__FUTEX_SHARED);
}

/* ------------------------------------------------------------- records */

static inline void claim_set(shmq_rec *r, uint64_t pos, uint64_t k, uint64_t role) {
  atomic_store_explicit(&r->claim_pos, pos, memory_order_relaxed);
  atomic_store_explicit(&r->claim_k, k | role, memory_order_release);
}
static inline void claim_clear(shmq_rec *r) {
  atomic_store_explicit(&r->claim_k, 0, memory_order_release);
}

/* A record's claim as one consistent pair (the owner may be rewriting it). */
static bool claim_read(const shmq_rec *r, uint64_t *pos, uint64_t *ck) {
  for (int i = 0; i < 4; i++) {
    uint64_t a = atomic_load_explicit(&r->claim_k, memory_order_acquire);
    uint64_t p = atomic_load_explicit(&r->claim_pos, memory_order_acquire);
    uint64_t b = atomic_load_explicit(&r->claim_k, memory_order_acquire);
    if (a == b) {
      *pos = p;
      *ck = a;
      return a != 0;
    }
  }
  return false;
}

static uint32_t rec_limit(const weft_shmq *q) {
  uint32_t hi = atomic_load_explicit(&q->h->rec_hi, memory_order_acquire);
  return hi > SHMQ_NREC ? SHMQ_NREC : hi;
}

/* Whether the owner of a record in state ALIVE still lives. */
static bool owner_alive(const shmq_rec *r, int32_t self) {
  int32_t pid = atomic_load_explicit(&r->pid, memory_order_relaxed);
  if (pid == self) return true;
  return weft__proc_alive(pid, atomic_load_explicit(&r->start, memory_order_relaxed)) != 0;
}

/* Mark a record whose owner died; st is the ALIVE state the caller saw,
 * tag included, so a record that has changed owner since is left alone.
 * The survivor that does it counts the death when the process had a put or
 * get under way (or, for a joinable queue, messages taken and not done),
 * and wakes every sleeper. Returns whether the record is now DEAD with that
 * tag (marked here or by another survivor). */
static bool mark_dead(weft_shmq *q, shmq_rec *r, uint32_t st) {
  uint32_t dead = SHMQ_REC_STATE(SHMQ_REC_DEAD, SHMQ_REC_TAG(st));
  uint32_t cur = st;
  if (!atomic_compare_exchange_strong(&r->state, &cur, dead)) return cur == dead;
  bool counted = atomic_load(&r->claim_k) != 0 ||
                 ((q->flags & WEFT_SHMQ_JOINABLE) &&
                  atomic_load(&r->taken) != atomic_load(&r->done));
  if (counted) atomic_fetch_add(&q->h->deaths, 1);
  wake_everyone(q);
  return true;
}

/* Does a claim of role cover position x? k is checked against nslots, so
 * a corrupted record can never make a survivor walk outside the ring. */
static bool covers(const weft_shmq *q, uint64_t pos, uint64_t ck, uint64_t role, uint64_t x,
                   uint64_t *end) {
  if ((ck & SHMQ_ROLE_MASK) != role) return false;
  uint64_t k = ck & KMASK;
  if (k == 0 || k > q->nslots) return false;
  if (x - pos >= k) return false; /* also false when x < pos (wraps large) */
  *end = pos + k;
  return true;
}

/* Look at the records whose claim of role covers x: returns true if one of
 * them is alive (the claim is being served); else *min_end is the nearest
 * end among the dead ones (UINT64_MAX if none). Dead owners found here are
 * marked. */
static bool live_coverer(weft_shmq *q, uint64_t role, uint64_t x, uint64_t *min_end) {
  int32_t self = (int32_t)getpid();
  uint32_t hi = rec_limit(q);
  *min_end = UINT64_MAX;
  for (uint32_t i = 0; i < hi; i++) {
    shmq_rec *r = &q->recs[i];
    uint32_t st = atomic_load_explicit(&r->state, memory_order_acquire);
    uint32_t kind = SHMQ_REC_KIND(st);
    if (kind != SHMQ_REC_ALIVE && kind != SHMQ_REC_DEAD) continue;
    uint64_t pos, ck, end;
    if (!claim_read(r, &pos, &ck) || !covers(q, pos, ck, role, x, &end)) continue;
    if (kind == SHMQ_REC_ALIVE) {
      if (owner_alive(r, self)) return true;
      /* Dead, unless the record changed owner while we looked: then the
       * claim read may be the new owner's, so count it as alive (the
       * caller looks again later). */
      if (!mark_dead(q, r, st)) return true;
    } else if (atomic_load_explicit(&r->state, memory_order_acquire) != st) {
      return true; /* retired meanwhile: the claim read may not be the dead one's */
    }
    if (end < *min_end) *min_end = end;
  }
  return false;
}

/* The consumer at head h finds h claimed by a producer (h < tail) and not
 * published. If every producer whose intent covers h is dead, turn the
 * claim into a skip over the dead claim's slots (up to the nearest end of
 * the dead intents that cover h, never past the true claim's end). Only the
 * holder of the slot's token (seq = SHMQ_RES_TOKEN | its record) writes
 * info, so no late resolver can overwrite the info of a later lap; a
 * resolver that dies holding the token is replaced by the next one. me is
 * the caller's record (its claim is free while it waits). */
static void resolve_prod(weft_shmq *q, shmq_rec *me, uint64_t h) {
  if (diff(tail_pos(q), h) <= 0) return;
  shmq_meta *m = meta_at(q, h);
  uint64_t s = atomic_load_explicit(&m->seq, memory_order_acquire);
  if (s & SHMQ_RES_TOKEN) {
    uint64_t i = s & ~SHMQ_RES_TOKEN;
    if (i < SHMQ_NREC) {
      shmq_rec *holder = &q->recs[i];
      uint64_t pos, ck;
      if (SHMQ_REC_KIND(atomic_load(&holder->state)) == SHMQ_REC_ALIVE &&
          claim_read(holder, &pos, &ck) &&
          pos == h && (ck & SHMQ_ROLE_MASK) == SHMQ_ROLE_RES &&
          owner_alive(holder, (int32_t)getpid()))
        return; /* a live resolver is at work */
    }
  } else if (s != h) {
    return;
  }
  uint64_t end;
  if (live_coverer(q, SHMQ_ROLE_PROD, h, &end) || end == UINT64_MAX) return;
  uint64_t k = end - h;
  if (k == 0 || k > q->nslots) return;
  uint64_t tok = SHMQ_RES_TOKEN | (uint64_t)(me - q->recs);
  claim_set(me, h, 1, SHMQ_ROLE_RES);
  if (atomic_compare_exchange_strong_explicit(&m->seq, &s, tok, memory_order_acq_rel,
                                              memory_order_relaxed)) {
    atomic_store_explicit(&m->info, SHMQ_SKIP | k, memory_order_relaxed);
    atomic_store_explicit(&m->seq, h + 1, memory_order_release);
    notify(&q->h->evc_get);
  }
  claim_clear(me);
}

/* The message that starts at s0 is published and claimed by a consumer
 * (s0 < head) but not freed. If every consumer whose intent covers s0 is
 * dead, free its slots (highest first, each by CAS, so a second resolver or
 * the owner's own partial frees do no harm). Returns true if it freed. */
static bool resolve_cons(weft_shmq *q, uint64_t s0) {
  if (diff(head_pos(q), s0) <= 0 || seq_load(q, s0) != s0 + 1) return false;
  uint64_t end;
  if (live_coverer(q, SHMQ_ROLE_CONS, s0, &end) || end == UINT64_MAX) return false;
  uint64_t info = atomic_load_explicit(&meta_at(q, s0)->info, memory_order_acquire);
  if (seq_load(q, s0) != s0 + 1) return false; /* the info read is this lap's */
  uint64_t k = (info & SHMQ_SKIP) ? info & ~SHMQ_SKIP
               : (info & SHMQ_INTERIOR) ? 0
               : info <= q->msg_max ? slots_for(q, info) : 0;
  if (k == 0 || k > q->nslots) return false; /* corrupted: leave it */
  for (uint64_t j = s0 + k - 1; j > s0; j--) {
    uint64_t want = j;
    atomic_compare_exchange_strong_explicit(&meta_at(q, j)->seq, &want, j + q->nslots,
                                            memory_order_release, memory_order_relaxed);
  }
  uint64_t want = s0 + 1;
  bool freed = atomic_compare_exchange_strong_explicit(
      &meta_at(q, s0)->seq, &want, s0 + q->nslots, memory_order_release, memory_order_relaxed);
  if (freed) notify(&q->h->evc_put);
  return freed;
}

/* Position p (a producer needs it, or the consumer at head waits for it)
 * still holds the previous lap, p - nslots. If that lap's message was
 * claimed by a consumer that died, free it. */
static void resolve_prev_lap(weft_shmq *q, uint64_t p) {
  uint64_t x = p - q->nslots, s = seq_load(q, p);
  if (s & SHMQ_RES_TOKEN) return; /* the consumer at head deals with it */
  if (s == x + 1) {
    resolve_cons(q, x);
  } else if (s == x) {
    /* x is an interior slot of a message, or an unpublished claim (which
     * the consumer at head deals with). */
    uint64_t info = atomic_load_explicit(&meta_at(q, x)->info, memory_order_relaxed);
    if (!(info & SHMQ_INTERIOR) || (info & SHMQ_SKIP)) return;
    uint64_t d = info & ~SHMQ_INTERIOR;
    if (d == 0 || d >= q->nslots) return;
    resolve_cons(q, x - d);
  }
}

static void rec_release(weft_shmq *q, shmq_rec *r, bool write_off);

/* Free a dead record once nobody can need its claim any more (see the
 * design note for the rules), writing off its un-done messages. st is the
 * DEAD state the caller saw: if the record changed since, nothing is done. */
static void try_retire(weft_shmq *q, shmq_rec *r, uint32_t st) {
  uint64_t pos, ck;
  if (claim_read(r, &pos, &ck)) {
    uint64_t k = ck & KMASK, role = ck & SHMQ_ROLE_MASK;
    if (k == 0 || k > q->nslots) {
      /* garbage claim: covers nothing (covers() refuses it) */
    } else if (role == SHMQ_ROLE_PROD) {
      if (diff(tail_pos(q), pos) > 0 && diff(head_pos(q), pos + k) < 0) return;
    } else if (role == SHMQ_ROLE_CONS) {
      if (diff(head_pos(q), pos) > 0) {
        /* Free what the dead consumer left, message by message. */
        for (uint64_t p = pos; diff(pos + k, p) > 0;) {
          uint64_t s = seq_load(q, p);
          if (s == p + 1) {
            uint64_t info = atomic_load_explicit(&meta_at(q, p)->info, memory_order_relaxed);
            uint64_t mk = (info & SHMQ_SKIP) ? info & ~SHMQ_SKIP
                          : (info & SHMQ_INTERIOR) ? 0
                          : info <= q->msg_max ? slots_for(q, info) : 0;
            if (mk == 0 || mk > q->nslots) break;
            resolve_cons(q, p);
            p += mk;
          } else {
            p++;
          }
        }
        for (uint64_t p = pos; diff(pos + k, p) > 0; p++) {
          uint64_t s = seq_load(q, p);
          if ((s & SHMQ_RES_TOKEN) || diff(s, p) < (int64_t)q->nslots) return; /* not freed yet */
        }
      }
    }
  }
  if (!atomic_compare_exchange_strong(
          &r->state, &st, SHMQ_REC_CHANGING(SHMQ_REC_RETIRING, getpid())))
    return;
  rec_release(q, r, true);
}

/* Give a record back (its state is BUSY or RETIRING with the caller's pid,
 * which only one process can have set). RETIRING writes off what the dead
 * owner took and never marked done: those messages will never be done, and
 * join must not wait for them. Each store is idempotent, so whoever finishes
 * a release cut short by a death may redo all of them. */
static void rec_release(weft_shmq *q, shmq_rec *r, bool write_off) {
  if (write_off) atomic_store(&r->done, atomic_load(&r->taken));
  claim_clear(r);
  atomic_store(&r->pid, 0);
  atomic_store_explicit(&r->state,
                        SHMQ_REC_STATE(SHMQ_REC_FREE, atomic_load(&r->inc)),
                        memory_order_release);
  if (write_off) notify(&q->h->evc_join);
}

/* A record left BUSY or RETIRING by a process that died in the middle of
 * the change: take it over (one CAS, so one survivor does it) and finish. */
static void rec_reclaim(weft_shmq *q, shmq_rec *r, uint32_t st, int32_t self) {
  uint32_t kind = SHMQ_REC_KIND(st);
  int32_t pid = (int32_t)SHMQ_REC_TAG(st);
  if (kind != SHMQ_REC_BUSY && kind != SHMQ_REC_RETIRING) return;
  if (pid == self || weft__proc_alive_pid(pid)) return;
  if (!atomic_compare_exchange_strong(&r->state, &st, SHMQ_REC_CHANGING(kind, self))) return;
  rec_release(q, r, kind == SHMQ_REC_RETIRING);
}

/* Look for participants that died, resolve what they left, free their
 * records. */
static void scan(weft_shmq *q) {
  int32_t self = (int32_t)getpid();
  uint32_t hi = rec_limit(q);
  weft__shm_service(&q->shm);
  atomic_store_explicit(&q->last_scan_ns, weft_now_ns(), memory_order_relaxed);
  for (uint32_t i = 0; i < hi; i++) {
    shmq_rec *r = &q->recs[i];
    uint32_t st = atomic_load_explicit(&r->state, memory_order_acquire);
    uint32_t kind = SHMQ_REC_KIND(st);
    if (kind == SHMQ_REC_ALIVE && !owner_alive(r, self)) {
      if (!mark_dead(q, r, st)) continue; /* changed owner meanwhile */
      st = SHMQ_REC_STATE(SHMQ_REC_DEAD, SHMQ_REC_TAG(st));
      kind = SHMQ_REC_DEAD;
    }
    if (kind == SHMQ_REC_DEAD)
      try_retire(q, r, st);
    else if (kind == SHMQ_REC_BUSY || kind == SHMQ_REC_RETIRING)
      rec_reclaim(q, r, st, self);
  }
}

static void maybe_scan(weft_shmq *q) {
  int64_t now = weft_now_ns();
  int64_t last = atomic_load_explicit(&q->last_scan_ns, memory_order_relaxed);
  if (now - last < SCAN_PERIOD_NS) return;
  if (!atomic_compare_exchange_strong(&q->last_scan_ns, &last, now)) return;
  scan(q);
}

/* Report each new death once per handle. */
static int death_check(weft_shmq *q) {
  uint32_t d = atomic_load_explicit(&q->h->deaths, memory_order_relaxed);
  uint32_t seen = atomic_load_explicit(&q->deaths_seen, memory_order_relaxed);
  if (WEFT_LIKELY(d == seen)) return 0;
  if (atomic_compare_exchange_strong(&q->deaths_seen, &seen, d)) return WEFT_EPEERDIED;
  return 0;
}

static int rec_acquire(weft_shmq *q, uint32_t *out) {
  int32_t pid = (int32_t)getpid();
  uint64_t start = weft__proc_self_start();
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < SHMQ_NREC; i++) {
      shmq_rec *r = &q->recs[i];
      uint32_t st = atomic_load_explicit(&r->state, memory_order_relaxed);
      if (SHMQ_REC_KIND(st) != SHMQ_REC_FREE ||
          !atomic_compare_exchange_strong(&r->state, &st, SHMQ_REC_CHANGING(SHMQ_REC_BUSY, pid)))
        continue;
      uint32_t inc = (SHMQ_REC_TAG(st) + 1) & SHMQ_REC_TAG_MASK;
      /* Scans look below rec_hi only: raise it first, so that even a death
       * right here leaves the record where a scan reclaims it. */
      uint32_t hi = atomic_load(&q->h->rec_hi);
      while (hi < i + 1 && !atomic_compare_exchange_weak(&q->h->rec_hi, &hi, i + 1)) {
      }
      /* taken and done stay: they carry over, balanced or not, from the
       * record's earlier owners (task_sums adds every record's). */
      atomic_store(&r->inc, inc);
      atomic_store(&r->pid, pid);
      atomic_store(&r->start, start);
      atomic_store(&r->claim_pos, 0);
      atomic_store(&r->claim_k, 0);
      atomic_store_explicit(&r->state, SHMQ_REC_STATE(SHMQ_REC_ALIVE, inc), memory_order_release);
      *out = i;
      return 0;
    }
    scan(q); /* free the records of the dead, then look again */
  }
  return WEFT_EAGAIN;
}

/* The calling thread's record (made on its first call). */
static int my_rec(weft_shmq *q, shmq_rec **out) {
  uint64_t gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
  if (WEFT_LIKELY(tl.serial == q->serial && tl.gen == gen)) {
    *out = &q->recs[tl.rec];
    return 0;
  }
  int32_t tid = (int32_t)syscall(SYS_gettid);
  while (atomic_flag_test_and_set_explicit(&q->tlock, memory_order_acquire)) weft__cpu_relax();
  if (q->gen != gen) { /* a forked child: the parent's records are not ours */
    q->nthr = 0;
    q->gen = gen;
  }
  int rc = 0;
  uint32_t rec = 0, i;
  for (i = 0; i < q->nthr && q->thr[i].tid != tid; i++) {
  }
  if (i < q->nthr) {
    rec = q->thr[i].rec;
  } else if (q->nthr == SHMQ_NREC) {
    rc = WEFT_EAGAIN;
  } else if ((rc = rec_acquire(q, &rec)) == 0) {
    q->thr[q->nthr].tid = tid;
    q->thr[q->nthr].rec = rec;
    q->nthr++;
  }
  atomic_flag_clear_explicit(&q->tlock, memory_order_release);
  if (rc != 0) return rc;
  tl.serial = q->serial;
  tl.gen = gen;
  tl.rec = rec;
  *out = &q->recs[rec];
  return 0;
}

/* ------------------------------------------------------------- waiting */

typedef struct waiter {
  unsigned tries;
  bool prepared;
  uint32_t w;
} waiter;

/* One step of waiting for the state to change: spin a little, then help
 * (resolve what the dead left at pos), look for deaths, register as a
 * sleeper and have the caller re-check, then sleep at most 50 ms. Returns
 * 0 to re-check, or the error that ends the call. */
static int wait_step(weft_shmq *q, shmq_rec *me, waiter *wt, _Atomic uint32_t *word,
                     int empty_code, int64_t deadline, bool consumer, uint64_t pos) {
  if (deadline == 0) return empty_code;
  if (wt->tries < SPIN_TRIES) {
    wt->tries++;
    for (int i = 0; i < 16; i++) weft__cpu_relax();
    return 0;
  }
  if (!wt->prepared) {
    if (consumer) {
      uint64_t s = seq_load(q, pos);
      if (s == pos || (s & SHMQ_RES_TOKEN))
        resolve_prod(q, me, pos);
      else
        resolve_prev_lap(q, pos);
    } else {
      resolve_prev_lap(q, pos);
    }
    int rc = death_check(q);
    if (rc != 0) return rc;
    wt->w = weft__evc_prepare(word);
    wt->prepared = true;
    return 0;
  }
  int64_t now = weft_now_ns();
  if (deadline != WEFT_FOREVER && now >= deadline) return WEFT_ETIMEDOUT;
  int64_t until = now + SCAN_PERIOD_NS;
  if (deadline != WEFT_FOREVER && deadline < until) until = deadline;
  weft__futex_wait(word, wt->w, until, WEFT__FUTEX_SHARED);
  wt->prepared = false;
  maybe_scan(q);
  return death_check(q);
}

/* --------------------------------------------------------------- put */

/* Claim room for as many of msgs[0..n) as fit now and copy them in.
 * Returns 0 with *n_put >= 1, RETRY with *block (the position that is not
 * free yet), WEFT_ESHUTDOWN or WEFT_ECORRUPT. */
static int put_try(weft_shmq *q, shmq_rec *r, const void *const *msgs, const size_t *lens,
                   size_t n, size_t *n_put, uint64_t *block) {
  shmq_hdr *h = q->h;
  uint64_t t = atomic_load_explicit(&h->tail, memory_order_relaxed);
  for (;;) {
    if (t & SHMQ_CLOSED) return WEFT_ESHUTDOWN;
    uint64_t off = 0, bad = t;
    size_t m = 0;
    for (; m < n; m++) {
      uint64_t k = slots_for(q, lens[m]), j;
      if (off + k > q->nslots) break;
      for (j = 0; j < k && seq_load(q, t + off + j) == t + off + j; j++) {
      }
      if (j < k) {
        bad = t + off + j;
        break;
      }
      off += k;
    }
    if (m == 0) {
      uint64_t s = seq_load(q, bad);
      /* A token first: as a number it would look like a later lap. */
      if (s & SHMQ_RES_TOKEN) { /* the previous lap is being resolved */
        *block = bad;
        return RETRY;
      }
      if (diff(s, bad) > 0) { /* our tail is stale */
        uint64_t t2 = atomic_load_explicit(&h->tail, memory_order_relaxed);
        if (t2 == t) return WEFT_ECORRUPT;
        t = t2;
        continue;
      }
      if (s == bad) continue; /* freed meanwhile */
      if (s != bad - q->nslots && s != bad - q->nslots + 1) return WEFT_ECORRUPT;
      *block = bad;
      return RETRY;
    }
    claim_set(r, t, off, SHMQ_ROLE_PROD);
    if (!atomic_compare_exchange_weak_explicit(&h->tail, &t, t + off, memory_order_acq_rel,
                                               memory_order_relaxed)) {
      claim_clear(r);
      continue;
    }
    uint64_t p = t;
    for (size_t i = 0; i < m; i++) {
      uint64_t k = slots_for(q, lens[i]);
      atomic_store_explicit(&meta_at(q, p)->info, lens[i], memory_order_relaxed);
      for (uint64_t j = 1; j < k; j++)
        atomic_store_explicit(&meta_at(q, p + j)->info, SHMQ_INTERIOR | j, memory_order_relaxed);
      copy_in(q, p, msgs[i], lens[i]);
      atomic_store_explicit(&meta_at(q, p)->seq, p + 1, memory_order_release);
      p += k;
    }
    claim_clear(r);
    *n_put = m;
    return 0;
  }
}

static int check_common(weft_shmq *q, int64_t deadline) {
  if (!WEFT_DEADLINE_VALID(deadline)) return WEFT_EINVAL;
  if (atomic_load_explicit(&q->closed, memory_order_relaxed)) return WEFT_EBADF;
  return death_check(q);
}

static inline void tick(weft_shmq *q) {
  if (WEFT_UNLIKELY((++tl.ops & 4095u) == 0)) maybe_scan(q);
}

int weft_shmq_put_many(weft_shmq *q, const void *const *msgs, const size_t *lens, size_t n,
                       int64_t deadline, size_t *n_put) {
  WEFT_CHECK_HANDLE(q);
  if (n_put) *n_put = 0;
  if (n > 0 && (!msgs || !lens)) weft__misuse(__func__, "msgs or lens is NULL");
  int rc = check_common(q, deadline);
  if (rc != 0) return rc;
  shmq_rec *r;
  if ((rc = my_rec(q, &r)) != 0) return rc;
  size_t done = 0;
  waiter wt = {0};
  while (done < n) {
    size_t lim = done;
    while (lim < n && lens[lim] <= q->msg_max) {
      if (lens[lim] > 0 && !msgs[lim]) weft__misuse(__func__, "message %zu is NULL", lim);
      lim++;
    }
    if (lim == done) {
      rc = WEFT_EMSGSIZE;
      break;
    }
    size_t m = 0;
    uint64_t block = 0;
    rc = put_try(q, r, msgs + done, lens + done, lim - done, &m, &block);
    if (rc == 0) {
      done += m;
      notify(&q->h->evc_get);
      wt.tries = 0;
      wt.prepared = false;
      continue;
    }
    if (rc != RETRY) break;
    if ((rc = wait_step(q, r, &wt, &q->h->evc_put, WEFT_EFULL, deadline, false, block)) != 0)
      break;
  }
  tick(q);
  if (n_put) *n_put = done;
  return done == n ? 0 : rc;
}

int weft_shmq_put(weft_shmq *q, const void *msg, size_t len, int64_t deadline) {
  WEFT_CHECK_HANDLE(q);
  if (len > 0 && !msg) weft__misuse(__func__, "msg is NULL with len %zu", len);
  if (len > q->msg_max) return WEFT_EMSGSIZE;
  return weft_shmq_put_many(q, &msg, &len, 1, deadline, NULL);
}

/* --------------------------------------------------------------- get */

/* Take up to max ready messages that fit in cap bytes. Returns 0 with
 * *n_got >= 1, RETRY (nothing ready at *block), WEFT_EMSGSIZE (lens[0] is
 * the length of the first message), WEFT_ESHUTDOWN, WEFT_ECORRUPT. */
static int get_try(weft_shmq *q, shmq_rec *r, void *buf, size_t cap, size_t *lens, size_t max,
                   size_t *n_got, uint64_t *block) {
  shmq_hdr *h = q->h;
  uint64_t hd = atomic_load_explicit(&h->head, memory_order_relaxed);
  for (uint64_t loops = 0;; loops++) {
    if (atomic_load_explicit(&h->state, memory_order_acquire) & SHMQ_IMMEDIATE)
      return WEFT_ESHUTDOWN;
    /* Every pass but the last follows progress: another consumer's claim,
     * a skip taken, a message published meanwhile. A bound far above what
     * contention gives still ends a call that a hostile segment keeps
     * going round. */
    if (loops > 1024 * q->nslots + 65536) return WEFT_ECORRUPT;
    uint64_t off = 0, skip_k = 0;
    size_t m = 0, bytes = 0;
    while (m < max) {
      uint64_t p = hd + off;
      if (seq_load(q, p) != p + 1) break;
      uint64_t info = atomic_load_explicit(&meta_at(q, p)->info, memory_order_acquire);
      /* Still p + 1 after reading info: the info is this lap's, not that
       * of a producer that reused the slot after another consumer freed
       * it (seq never comes back to p + 1). */
      if (seq_load(q, p) != p + 1) break;
      if (info & SHMQ_SKIP) {
        if (m == 0) {
          skip_k = info & ~SHMQ_SKIP;
          if (skip_k == 0 || skip_k > q->nslots) return WEFT_ECORRUPT;
        }
        break;
      }
      if (info > q->msg_max) return WEFT_ECORRUPT; /* also catches SHMQ_INTERIOR */
      uint64_t k = slots_for(q, info);
      if (off + k > q->nslots) break;
      if (bytes + info > cap) {
        if (m == 0) {
          lens[0] = (size_t)info;
          return WEFT_EMSGSIZE;
        }
        break;
      }
      lens[m++] = (size_t)info;
      bytes += info;
      off += k;
    }
    if (m == 0 && skip_k == 0) {
      uint64_t s = seq_load(q, hd);
      if (s == hd + 1) continue; /* published meanwhile */
      if (s == hd || s == hd - q->nslots || s == hd - q->nslots + 1 || (s & SHMQ_RES_TOKEN)) {
        if ((atomic_load_explicit(&h->state, memory_order_acquire) & SHMQ_SHUT) &&
            tail_pos(q) == hd)
          return WEFT_ESHUTDOWN;
        *block = hd;
        return RETRY;
      }
      uint64_t h2 = atomic_load_explicit(&h->head, memory_order_relaxed);
      if (diff(s, hd + 1) > 0 && h2 != hd) { /* our head is stale */
        hd = h2;
        continue;
      }
      if (s == seq_load(q, hd)) return WEFT_ECORRUPT;
      continue;
    }
    uint64_t claim = skip_k ? skip_k : off;
    if (!skip_k) atomic_store_explicit(&r->taken, atomic_load(&r->taken) + m,
                                       memory_order_relaxed);
    claim_set(r, hd, claim, SHMQ_ROLE_CONS);
    if (!atomic_compare_exchange_weak_explicit(&h->head, &hd, hd + claim, memory_order_acq_rel,
                                               memory_order_relaxed)) {
      claim_clear(r);
      if (!skip_k) atomic_store_explicit(&r->taken, atomic_load(&r->taken) - m,
                                         memory_order_relaxed);
      continue;
    }
    if (!skip_k) {
      uint64_t p = hd;
      char *dst = buf;
      for (size_t i = 0; i < m; i++) {
        copy_out(q, p, dst, lens[i]);
        dst += lens[i];
        p += slots_for(q, lens[i]);
      }
    }
    /* Free highest first: the first slot, freed last, keeps the message
     * findable (and its info intact) until every slot is free. */
    for (uint64_t j = hd + claim; j-- > hd;)
      atomic_store_explicit(&meta_at(q, j)->seq, j + q->nslots, memory_order_release);
    claim_clear(r);
    notify(&h->evc_put);
    if (skip_k) {
      hd += skip_k;
      continue;
    }
    *n_got = m;
    return 0;
  }
}

int weft_shmq_get_many(weft_shmq *q, void *buf, size_t cap, size_t *lens, size_t max,
                       size_t *n_got, int64_t deadline) {
  WEFT_CHECK_HANDLE(q);
  if (!lens || !n_got || max == 0) weft__misuse(__func__, "lens or n_got NULL, or max 0");
  if (!buf && cap > 0) weft__misuse(__func__, "buf is NULL with cap %zu", cap);
  *n_got = 0;
  int rc = check_common(q, deadline);
  if (rc != 0) return rc;
  shmq_rec *r;
  if ((rc = my_rec(q, &r)) != 0) return rc;
  waiter wt = {0};
  for (;;) {
    uint64_t block = 0;
    size_t m = 0;
    rc = get_try(q, r, buf, cap, lens, max, &m, &block);
    if (rc == 0) {
      *n_got = m;
      break;
    }
    if (rc != RETRY) break;
    if ((rc = wait_step(q, r, &wt, &q->h->evc_get, WEFT_EEMPTY, deadline, true, block)) != 0)
      break;
  }
  tick(q);
  return rc;
}

int weft_shmq_get(weft_shmq *q, void *buf, size_t cap, size_t *len, int64_t deadline) {
  WEFT_CHECK_HANDLE(q);
  size_t n, l = 0;
  int rc = weft_shmq_get_many(q, buf, cap, &l, 1, &n, deadline);
  if (len && (rc == 0 || rc == WEFT_EMSGSIZE)) *len = l;
  return rc;
}

/* --------------------------------------------------------- join etc. */

/* Taken and done over every record (and those already freed). Every done
 * is read before every taken: a task_done follows the take it answers, so
 * read in this order the sums can overstate taken and understate done
 * while other threads work, never the reverse. join can then wait a little
 * longer than needed, but never return early, and task_done never refuses
 * a legitimate call. (Read in the other order, a message taken and done
 * between the two reads of one record counted as done and not as taken.) */
static void task_sums(const weft_shmq *q, uint64_t *taken, uint64_t *done) {
  uint64_t t = 0, d = 0;
  uint32_t hi = rec_limit(q);
  for (uint32_t i = 0; i < hi; i++) d += atomic_load_explicit(&q->recs[i].done, memory_order_acquire);
  for (uint32_t i = 0; i < hi; i++) t += atomic_load_explicit(&q->recs[i].taken, memory_order_acquire);
  *taken = t;
  *done = d;
}

static bool joined(const weft_shmq *q) {
  if (head_pos(q) != tail_pos(q)) return false;
  uint64_t t, d;
  task_sums(q, &t, &d);
  return t == d;
}

int weft_shmq_task_done(weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  shmq_rec *r;
  int rc = my_rec(q, &r);
  if (rc != 0) return rc;
  uint64_t t, d;
  task_sums(q, &t, &d);
  if (d >= t) return WEFT_EINVAL;
  atomic_store_explicit(&r->done, atomic_load(&r->done) + 1, memory_order_release);
  notify(&q->h->evc_join);
  return 0;
}

int weft_shmq_join(weft_shmq *q, int64_t deadline) {
  WEFT_CHECK_HANDLE(q);
  if (!WEFT_DEADLINE_VALID(deadline)) return WEFT_EINVAL;
  for (;;) {
    if (atomic_load(&q->h->state) & SHMQ_IMMEDIATE) return 0;
    int rc = death_check(q);
    if (rc != 0) return rc;
    if (joined(q)) return 0;
    int64_t now = weft_now_ns();
    if (deadline != WEFT_FOREVER && now >= deadline) return WEFT_ETIMEDOUT;
    uint32_t w = weft__evc_prepare(&q->h->evc_join);
    if (joined(q)) return 0;
    int64_t until = now + SCAN_PERIOD_NS;
    if (deadline != WEFT_FOREVER && deadline < until) until = deadline;
    weft__futex_wait(&q->h->evc_join, w, until, WEFT__FUTEX_SHARED);
    maybe_scan(q);
  }
}

void weft_shmq_shutdown(weft_shmq *q, bool immediate) {
  WEFT_CHECK_HANDLE(q);
  atomic_fetch_or(&q->h->state, SHMQ_SHUT | (immediate ? SHMQ_IMMEDIATE : 0u));
  atomic_fetch_or(&q->h->tail, SHMQ_CLOSED);
  wake_everyone(q);
}

bool weft_shmq_is_shutdown(const weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  return (atomic_load(&q->h->state) & SHMQ_SHUT) != 0;
}

int weft_shmq_close(weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  return atomic_exchange(&q->closed, true) ? WEFT_EBADF : 0;
}

size_t weft_shmq_qsize(const weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  if (atomic_load(&q->h->state) & SHMQ_IMMEDIATE) return 0;
  uint64_t p = head_pos(q), t = tail_pos(q);
  size_t n = 0;
  /* At most nslots steps, whatever the segment says. */
  for (uint64_t steps = 0; diff(t, p) > 0 && steps < q->nslots; steps++) {
    uint64_t k = 1;
    if (seq_load(q, p) == p + 1) {
      uint64_t info = atomic_load_explicit(&meta_at(q, p)->info, memory_order_relaxed);
      if (info & SHMQ_SKIP) {
        k = info & ~SHMQ_SKIP;
      } else if (info <= q->msg_max) {
        k = slots_for(q, info);
        n++;
      }
      if (k == 0 || k > q->nslots) k = 1;
    }
    p += k;
  }
  return n;
}

bool weft_shmq_empty(const weft_shmq *q) { return weft_shmq_qsize(q) == 0; }

bool weft_shmq_full(const weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  uint64_t t = tail_pos(q);
  return seq_load(q, t) != t;
}

size_t weft_shmq_msg_max(const weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  return (size_t)q->msg_max;
}

size_t weft_shmq_capacity(const weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  return (size_t)q->cap_bytes;
}

uint32_t weft_shmq_peer_deaths(weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  scan(q);
  return atomic_load(&q->h->deaths);
}

int weft_shmq_fd(const weft_shmq *q) {
  WEFT_CHECK_HANDLE(q);
  return q->shm.fd;
}

/* ------------------------------------------------------ create, open */

typedef struct geometry {
  uint64_t nslots, slot_size, msg_max, rec_off, meta_off, data_off, size;
} geometry;

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Offsets and size from nslots and slot_size (both already checked). */
static void layout(geometry *g) {
  g->rec_off = align_up(sizeof(shmq_hdr), 64);
  g->meta_off = align_up(g->rec_off + SHMQ_NREC * sizeof(shmq_rec), 64);
  g->data_off = align_up(g->meta_off + g->nslots * sizeof(shmq_meta), 4096);
  g->size = g->data_off + g->nslots * g->slot_size;
}

static bool pow2(uint64_t v) { return v && !(v & (v - 1)); }

static int handle_from(weft_shmq **out, weft__shm *shm, const geometry *g, unsigned flags) {
  weft_shmq *q = weft__calloc(1, sizeof *q);
  if (!q) return WEFT_ENOMEM;
  pthread_once(&atfork_once, install_atfork);
  q->shm = *shm;
  unsigned char *base = shm->base;
  q->h = (shmq_hdr *)base;
  q->recs = (shmq_rec *)(base + g->rec_off);
  q->meta = (shmq_meta *)(base + g->meta_off);
  q->data = base + g->data_off;
  q->nslots = g->nslots;
  q->mask = g->nslots - 1;
  q->slot_size = g->slot_size;
  q->slot_shift = (unsigned)__builtin_ctzll(g->slot_size);
  q->msg_max = g->msg_max;
  q->cap_bytes = g->nslots * g->slot_size;
  q->flags = flags;
  q->serial = atomic_fetch_add(&next_serial, 1);
  atomic_init(&q->deaths_seen, atomic_load(&q->h->deaths));
  atomic_init(&q->closed, false);
  atomic_init(&q->last_scan_ns, weft_now_ns());
  atomic_flag_clear(&q->tlock);
  q->gen = atomic_load(&fork_gen);
  pthread_mutex_lock(&handles_lock);
  q->next = handles;
  if (handles) handles->prev = q;
  handles = q;
  pthread_mutex_unlock(&handles_lock);
  *out = q;
  return 0;
}

int weft_shmq_create(weft_shmq **out, const weft_shmq_opts *opts) {
  WEFT_CHECK_HANDLE(out);
  weft_shmq_opts o = opts ? *opts : (weft_shmq_opts){0};
  if (o.flags & ~(WEFT_SHMQ_JOINABLE | WEFT_SHMQ_PERSISTENT)) return WEFT_EINVAL;
  if ((o.flags & WEFT_SHMQ_PERSISTENT) && !o.name) return WEFT_EINVAL;
  if (o.name) {
    int rc = weft__shm_name_check(o.name);
    if (rc != 0) return rc;
  }
  if (o.slot_size == 0) o.slot_size = 128;
  if (o.capacity == 0) o.capacity = (size_t)1 << 20;
  if (!pow2(o.slot_size) || o.slot_size < WEFT_SHMQ_SLOT_SIZE_MIN ||
      o.slot_size > WEFT_SHMQ_SLOT_SIZE_MAX || o.capacity > WEFT_SHMQ_CAPACITY_MAX)
    return WEFT_EINVAL;
  geometry g = {0};
  g.slot_size = o.slot_size;
  g.nslots = 2;
  while (g.nslots * g.slot_size < o.capacity) g.nslots <<= 1;
  uint64_t cap = g.nslots * g.slot_size;
  g.msg_max = o.msg_max ? o.msg_max : (cap < 65536 ? cap : 65536);
  if (g.msg_max > cap) return WEFT_EINVAL;
  layout(&g);
  weft__shm shm;
  int rc = weft__shm_create(&shm, g.size, o.name, (o.flags & WEFT_SHMQ_PERSISTENT) != 0);
  if (rc != 0) return rc;
  shmq_hdr *h = shm.base;
  h->version = SHMQ_VERSION;
  h->nrec = SHMQ_NREC;
  h->size = shm.size;
  h->nslots = g.nslots;
  h->slot_size = g.slot_size;
  h->msg_max = g.msg_max;
  h->rec_off = g.rec_off;
  h->meta_off = g.meta_off;
  h->data_off = g.data_off;
  h->flags = o.flags;
  shmq_meta *meta = (shmq_meta *)((unsigned char *)shm.base + g.meta_off);
  for (uint64_t i = 0; i < g.nslots; i++) atomic_store_explicit(&meta[i].seq, i, memory_order_relaxed);
  atomic_store_explicit(&h->magic, SHMQ_MAGIC, memory_order_release);
  rc = handle_from(out, &shm, &g, o.flags);
  if (rc != 0) {
    if (o.flags & WEFT_SHMQ_PERSISTENT) weft__shm_unlink(o.name);
    weft__shm_close(&shm);
  }
  return rc;
}

/* Check an opened segment's header against its size: everything the
 * handle will trust from now on. */
static int validate(const weft__shm *shm, geometry *g, unsigned *flags) {
  const shmq_hdr *h = shm->base;
  if (shm->size < sizeof *h) return WEFT_ECORRUPT;
  /* A named segment can be opened while its creator still fills it in. */
  for (int i = 0; atomic_load_explicit(&((shmq_hdr *)h)->magic, memory_order_acquire) !=
                  SHMQ_MAGIC; i++) {
    if (i >= 1000) return WEFT_ECORRUPT;
    weft_sleep_until(weft_deadline_in_ms(1));
  }
  if (h->version != SHMQ_VERSION || h->nrec != SHMQ_NREC) return WEFT_ECORRUPT;
  g->nslots = h->nslots;
  g->slot_size = h->slot_size;
  g->msg_max = h->msg_max;
  if (!pow2(g->nslots) || g->nslots < 2 || !pow2(g->slot_size) ||
      g->slot_size < WEFT_SHMQ_SLOT_SIZE_MIN || g->slot_size > WEFT_SHMQ_SLOT_SIZE_MAX ||
      g->nslots > WEFT_SHMQ_CAPACITY_MAX / g->slot_size ||
      g->msg_max > g->nslots * g->slot_size)
    return WEFT_ECORRUPT;
  layout(g);
  if (g->rec_off != h->rec_off || g->meta_off != h->meta_off || g->data_off != h->data_off ||
      g->size > shm->size || h->size != shm->size)
    return WEFT_ECORRUPT;
  *flags = h->flags & (WEFT_SHMQ_JOINABLE | WEFT_SHMQ_PERSISTENT);
  return 0;
}

static int open_mapped(weft_shmq **out, weft__shm *shm) {
  geometry g;
  unsigned flags = 0;
  int rc = validate(shm, &g, &flags);
  if (rc == 0) rc = handle_from(out, shm, &g, flags);
  if (rc != 0) weft__shm_close(shm);
  return rc;
}

int weft_shmq_open(weft_shmq **out, const char *name) {
  WEFT_CHECK_HANDLE(out);
  weft__shm shm;
  int rc = weft__shm_open_name(&shm, name);
  return rc != 0 ? rc : open_mapped(out, &shm);
}

int weft_shmq_open_fd(weft_shmq **out, int fd) {
  WEFT_CHECK_HANDLE(out);
  weft__shm shm;
  int rc = weft__shm_open_fd(&shm, fd);
  return rc != 0 ? rc : open_mapped(out, &shm);
}

int weft_shmq_unlink(const char *name) { return weft__shm_unlink(name); }

void weft_shmq_destroy(weft_shmq *q) {
  if (!q) return;
  /* Give back this process's records (those of its own fork generation). */
  if (q->gen == atomic_load(&fork_gen)) {
    for (uint32_t i = 0; i < q->nthr; i++) {
      shmq_rec *r = &q->recs[q->thr[i].rec];
      uint32_t st = atomic_load(&r->state);
      if (SHMQ_REC_KIND(st) != SHMQ_REC_ALIVE ||
          !atomic_compare_exchange_strong(&r->state, &st,
                                          SHMQ_REC_CHANGING(SHMQ_REC_BUSY, getpid())))
        continue;
      rec_release(q, r, false); /* what it took and did not mark done stays owed */
    }
    notify(&q->h->evc_join);
  }
  if (tl.serial == q->serial) tl.serial = 0;
  pthread_mutex_lock(&handles_lock);
  if (q->prev) q->prev->next = q->next; else handles = q->next;
  if (q->next) q->next->prev = q->prev;
  pthread_mutex_unlock(&handles_lock);
  weft__shm_close(&q->shm);
  weft__free(q);
}
