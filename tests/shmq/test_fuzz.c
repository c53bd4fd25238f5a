/*
 * weft_shmq against a hostile segment: a deterministic fuzz run that
 * corrupts head, tail, sequence numbers, lengths and participant records of
 * a live queue between calls, and checks that every call returns one of
 * its documented codes, that a message handed out fits the caller's buffer
 * (each buffer is its own heap block, so ASan sees any byte written past
 * it), and that nothing outside the segment is touched (its mapping sits
 * between guard pages: a stray access faults). Also: headers that lie
 * about the geometry are refused by open.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>

#include "process/shmq_impl.h"
#include "shmq_test_util.h"

WEFT_TEST_TIMEOUT(120)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* xorshift64*: deterministic for a given seed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

/* A value that is likely to hit an edge: near what is there, a lap away,
 * flag bits, small numbers, or anything at all. */
static uint64_t evil(uint64_t cur, uint64_t nslots) {
  switch (rnd() % 10) {
  case 0: return rnd();
  case 1: return cur + 1;
  case 2: return cur - 1;
  case 3: return cur + nslots;
  case 4: return cur - nslots;
  case 5: return rnd() % (4 * nslots);
  case 6: return SHMQ_SKIP | (rnd() % (2 * nslots));
  case 7: return SHMQ_INTERIOR | (rnd() % (2 * nslots));
  case 8: return SHMQ_RES_TOKEN | (rnd() % 300);
  default: return cur ^ (1ull << (rnd() % 64));
  }
}

static void corrupt(seg_view *v) {
  uint64_t n = v->nslots;
  switch (rnd() % 12) {
  case 0: atomic_store(&v->h->head, evil(atomic_load(&v->h->head), n)); break;
  case 1: atomic_store(&v->h->tail, evil(atomic_load(&v->h->tail), n)); break;
  case 2:
  case 3:
  case 4: {
    shmq_meta *m = &v->meta[rnd() % n];
    atomic_store(&m->seq, evil(atomic_load(&m->seq), n));
    break;
  }
  case 5:
  case 6: {
    shmq_meta *m = &v->meta[rnd() % n];
    atomic_store(&m->info, evil(atomic_load(&m->info), n));
    break;
  }
  case 7: {
    shmq_rec *r = &v->recs[rnd() % 8];
    switch (rnd() % 6) {
    case 0: atomic_store(&r->state, (uint32_t)(rnd() % 6)); break;
    case 1: atomic_store(&r->pid, (int32_t)(rnd() % 5 ? rnd() % 40000 : rnd())); break;
    case 2: atomic_store(&r->claim_pos, evil(atomic_load(&v->h->head), n)); break;
    case 3: atomic_store(&r->claim_k, evil(rnd() % 4 << 62 | rnd() % (2 * n), n)); break;
    case 4: atomic_store(&r->taken, evil(atomic_load(&r->taken), n)); break;
    default: atomic_store(&r->start, rnd()); break;
    }
    break;
  }
  case 8: atomic_store(&v->h->rec_hi, (uint32_t)evil(atomic_load(&v->h->rec_hi), 300)); break;
  case 9: atomic_store(&v->h->deaths, (uint32_t)rnd()); break;
  case 10: {
    /* A record half given back by a "dead" process (pid 0 or garbage). */
    shmq_rec *r = &v->recs[rnd() % 8];
    atomic_store(&r->state, SHMQ_REC_CHANGING(rnd() % 2 ? SHMQ_REC_BUSY : SHMQ_REC_RETIRING,
                                              rnd() % 3 ? 0 : rnd() % 40000));
    break;
  }
  default: atomic_store(&v->h->state, (uint32_t)(rnd() % 8 == 0 ? rnd() % 4 : 0)); break;
  }
}

static bool one_of(int rc, const int *ok, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (rc == ok[i]) return true;
  return false;
}

#define CHECK_RC(rc, ...)                                                          \
  do {                                                                             \
    static const int ok_[] = {__VA_ARGS__};                                        \
    if (!one_of((rc), ok_, sizeof ok_ / sizeof ok_[0]))                            \
      weft_test_fail(__FILE__, __LINE__, "unexpected %s", weft_err_name(rc));      \
  } while (0)

TEST(corrupted_live_segment) {
  long iters = weft_test_knob("WEFT_SHMQ_FUZZ_ITERS", 150000);
  weft_shmq_opts o = {.capacity = 1024, .slot_size = 64, .msg_max = 512}; /* 16 slots */
  weft_shmq *q = NULL;
  ASSERT_OK(weft_shmq_create(&q, &o));
  seg_view v = view_fd(weft_shmq_fd(q));
  unsigned char src[512];
  for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)i;
  long oks = 0, errors = 0, remakes = 0;
  for (long it = 0; it < iters; it++) {
    uint64_t op = rnd() % 100;
    int64_t dl = rnd() % 50 == 0 ? weft_deadline_in_ns(200000) : 0;
    int rc;
    if (op < 35) {
      size_t len = rnd() % 513;
      rc = weft_shmq_put(q, src, len, dl);
      CHECK_RC(rc, 0, WEFT_EFULL, WEFT_ETIMEDOUT, WEFT_ESHUTDOWN, WEFT_ECORRUPT,
               WEFT_EPEERDIED);
    } else if (op < 70) {
      size_t cap = rnd() % 600, len = SIZE_MAX;
      unsigned char *buf = malloc(cap ? cap : 1);
      ASSERT_NOT_NULL(buf);
      rc = weft_shmq_get(q, buf, cap, &len, dl);
      CHECK_RC(rc, 0, WEFT_EEMPTY, WEFT_ETIMEDOUT, WEFT_EMSGSIZE, WEFT_ESHUTDOWN,
               WEFT_ECORRUPT, WEFT_EPEERDIED);
      if (rc == 0) ASSERT_LE(len, cap);
      if (rc == WEFT_EMSGSIZE) ASSERT_GT(len, cap);
      if (rc == 0) ASSERT_LE(len, 512);
      free(buf);
    } else if (op < 78) {
      size_t cap = rnd() % 2000, lens[8], got = 99;
      unsigned char *buf = malloc(cap ? cap : 1);
      ASSERT_NOT_NULL(buf);
      rc = weft_shmq_get_many(q, buf, cap, lens, 1 + rnd() % 8, &got, dl);
      CHECK_RC(rc, 0, WEFT_EEMPTY, WEFT_ETIMEDOUT, WEFT_EMSGSIZE, WEFT_ESHUTDOWN,
               WEFT_ECORRUPT, WEFT_EPEERDIED);
      if (rc == 0) {
        size_t sum = 0;
        for (size_t i = 0; i < got; i++) sum += lens[i];
        ASSERT_LE(sum, cap);
      } else {
        ASSERT_UEQ(got, 0);
      }
      free(buf);
    } else if (op < 84) {
      const void *msgs[4] = {src, src, src, src};
      size_t lens[4] = {rnd() % 513, rnd() % 513, rnd() % 100, rnd() % 600}, n_put = 99;
      rc = weft_shmq_put_many(q, msgs, lens, 4, dl, &n_put);
      CHECK_RC(rc, 0, WEFT_EFULL, WEFT_ETIMEDOUT, WEFT_ESHUTDOWN, WEFT_ECORRUPT,
               WEFT_EPEERDIED, WEFT_EMSGSIZE);
      ASSERT_LE(n_put, 4);
    } else if (op < 88) {
      ASSERT_LE(weft_shmq_qsize(q), 16);
      (void)weft_shmq_full(q);
      (void)weft_shmq_empty(q);
      rc = weft_shmq_join(q, 0);
      CHECK_RC(rc, 0, WEFT_ETIMEDOUT, WEFT_EPEERDIED);
      rc = weft_shmq_task_done(q);
      CHECK_RC(rc, 0, WEFT_EINVAL);
      (void)weft_shmq_peer_deaths(q);
      continue;
    } else if (op < 99) {
      corrupt(&v);
      continue;
    } else {
      /* Start afresh now and then: a queue that stays corrupted only
       * exercises the refusals. */
      munmap(v.base, v.size);
      weft_shmq_destroy(q);
      ASSERT_OK(weft_shmq_create(&q, &o));
      v = view_fd(weft_shmq_fd(q));
      remakes++;
      continue;
    }
    if (rc == 0) oks++; else errors++;
  }
  fprintf(stderr, "fuzz: %ld iterations, %ld calls succeeded, %ld returned an error, %ld "
          "fresh queues\n", iters, oks, errors, remakes);
  ASSERT_GT(oks, iters / 20);
  munmap(v.base, v.size);
  weft_shmq_destroy(q);
}

TEST(lying_headers_are_refused) {
  weft_shmq *q = NULL;
  ASSERT_OK(weft_shmq_create(&q, NULL));
  int fd = weft_shmq_fd(q);
  seg_view v = view_fd(fd);
  shmq_hdr *h = v.h, saved = {0};
  memcpy(&saved, h, offsetof(shmq_hdr, tail));
  for (int c = 0; c < 11; c++) {
    switch (c) {
    case 0: atomic_store(&h->magic, 0x1234); break;
    case 1: h->version = 99; break;
    case 2: h->nrec = 7; break;
    case 3: h->nslots = 3; break;
    case 4: h->nslots = 1ull << 40; break;
    case 5: h->slot_size = 32; break;
    case 6: h->slot_size = 96; break;
    case 7: h->msg_max = h->nslots * h->slot_size + 1; break;
    case 8: h->meta_off += 64; break;
    case 9: h->size += 4096; break;
    default: h->data_off = 0; break;
    }
    weft_shmq *o = NULL;
    int64_t t0 = weft_now_ns();
    ASSERT_ERR(weft_shmq_open_fd(&o, fd), WEFT_ECORRUPT);
    ASSERT_NULL(o);
    if (c == 0) ASSERT_GE(weft_now_ns() - t0, 500 * MS); /* it waited for the creator */
    memcpy(h, &saved, offsetof(shmq_hdr, tail));
  }
  weft_shmq *o = NULL;
  ASSERT_OK(weft_shmq_open_fd(&o, fd));
  ASSERT_OK(weft_shmq_put(o, "ok", 2, 0));
  char b[4];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  weft_shmq_destroy(o);
  /* Not a segment at all: too small, or not a regular file. */
  int small = memfd_create("small", MFD_CLOEXEC);
  ASSERT_GE(small, 0);
  ASSERT_EQ(ftruncate(small, 100), 0);
  ASSERT_ERR(weft_shmq_open_fd(&o, small), WEFT_ECORRUPT);
  close(small);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_ERR(weft_shmq_open_fd(&o, p[0]), WEFT_ECORRUPT);
  close(p[0]);
  close(p[1]);
  ASSERT_ERR(weft_shmq_open_fd(&o, -1), WEFT_EBADF);
  munmap(v.base, v.size);
  weft_shmq_destroy(q);
}

/* A slot that holds a resolver's token (a survivor turning a dead
 * producer's claim into a skip) is busy, not corrupt, for a producer that
 * laps onto it: as a number the token looks like a later lap. */
TEST(resolver_token_at_the_tail_is_waited_for) {
  weft_shmq *q = NULL;
  weft_shmq_opts o = {.capacity = 256, .slot_size = 64, .msg_max = 64}; /* 4 slots */
  ASSERT_OK(weft_shmq_create(&q, &o));
  seg_view v = view_fd(weft_shmq_fd(q));
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_shmq_put(q, "m", 1, 0));
  uint64_t s0 = atomic_load(&v.meta[0].seq);
  atomic_store(&v.meta[0].seq, SHMQ_RES_TOKEN | 1); /* record 1: a token below the position */
  ASSERT_ERR(weft_shmq_put(q, "n", 1, 0), WEFT_EFULL);
  ASSERT_ERR(weft_shmq_put(q, "n", 1, weft_deadline_in_ms(20)), WEFT_ETIMEDOUT);
  atomic_store(&v.meta[0].seq, s0);
  char b[4];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  ASSERT_OK(weft_shmq_put(q, "n", 1, 0));
  munmap(v.base, v.size);
  weft_shmq_destroy(q);
}
