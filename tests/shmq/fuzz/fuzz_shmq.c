/*
 * A libFuzzer target for weft_shmq (built with clang when it is there; see
 * CMakeLists.txt here). Each input is a program for a fresh queue of 16
 * slots: every byte picks an operation (put, get, batch, qsize, join, a
 * scan for deaths) or a corruption of the live segment (head, tail, a
 * sequence number, a length, a participant record), with its operands
 * taken from the bytes that follow. Built with ASan and UBSan: any byte
 * read or written outside the segment or the caller's buffers, and any
 * return code outside the documented ones, is a crash the fuzzer keeps.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "process/shmq_impl.h"
#include "weft.h"

typedef struct reader {
  const uint8_t *p;
  size_t n;
} reader;

static uint64_t take(reader *r, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes && r->n; i++, r->n--, r->p++) v |= (uint64_t)*r->p << (8 * i);
  return v;
}

static void must(int ok) {
  if (!ok) abort();
}

static int allowed(int rc, const int *ok, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (rc == ok[i]) return 1;
  return 0;
}

static const int put_ok[] = {0, WEFT_EFULL, WEFT_ETIMEDOUT, WEFT_ESHUTDOWN, WEFT_ECORRUPT,
                             WEFT_EPEERDIED, WEFT_EMSGSIZE};
static const int get_ok[] = {0, WEFT_EEMPTY, WEFT_ETIMEDOUT, WEFT_EMSGSIZE, WEFT_ESHUTDOWN,
                             WEFT_ECORRUPT, WEFT_EPEERDIED};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  weft_shmq_opts o = {.capacity = 1024, .slot_size = 64, .msg_max = 512};
  weft_shmq *q = NULL;
  if (weft_shmq_create(&q, &o) != 0) abort();
  int fd = weft_shmq_fd(q);
  size_t seg = (size_t)lseek(fd, 0, SEEK_END);
  unsigned char *base = mmap(NULL, seg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  must(base != MAP_FAILED);
  shmq_hdr *h = (shmq_hdr *)base;
  shmq_rec *recs = (shmq_rec *)(base + h->rec_off);
  shmq_meta *meta = (shmq_meta *)(base + h->meta_off);
  static unsigned char src[600];
  for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)i;
  reader r = {data, size};
  for (int steps = 0; r.n && steps < 256; steps++) {
    unsigned op = (unsigned)take(&r, 1) % 12;
    switch (op) {
    case 0:
    case 1: {
      size_t len = take(&r, 2) % 600;
      must(allowed(weft_shmq_put(q, src, len, 0), put_ok, 7));
      break;
    }
    case 2:
    case 3: {
      size_t cap = take(&r, 2) % 600, len = 0;
      unsigned char *buf = malloc(cap ? cap : 1);
      must(buf != NULL);
      int rc = weft_shmq_get(q, buf, cap, &len, 0);
      must(allowed(rc, get_ok, 7));
      if (rc == 0) must(len <= cap && len <= 512);
      free(buf);
      break;
    }
    case 4: {
      size_t cap = take(&r, 2) % 2000, lens[8], got = 0;
      unsigned char *buf = malloc(cap ? cap : 1);
      must(buf != NULL);
      int rc = weft_shmq_get_many(q, buf, cap, lens, 1 + take(&r, 1) % 8, &got, 0);
      must(allowed(rc, get_ok, 7));
      size_t sum = 0;
      for (size_t i = 0; rc == 0 && i < got; i++) sum += lens[i];
      must(rc != 0 || (got >= 1 && sum <= cap));
      free(buf);
      break;
    }
    case 5: {
      const void *msgs[3] = {src, src, src};
      size_t lens[3] = {take(&r, 2) % 600, take(&r, 2) % 600, take(&r, 2) % 600}, n = 0;
      must(allowed(weft_shmq_put_many(q, msgs, lens, 3, 0, &n), put_ok, 7));
      must(n <= 3);
      break;
    }
    case 6:
      must(weft_shmq_qsize(q) <= 16);
      (void)weft_shmq_full(q);
      (void)weft_shmq_join(q, 0);
      (void)weft_shmq_task_done(q);
      (void)weft_shmq_peer_deaths(q);
      break;
    case 7: {
      shmq_meta *m = &meta[take(&r, 1) % 16];
      atomic_store(&m->seq, take(&r, 8));
      break;
    }
    case 8: {
      shmq_meta *m = &meta[take(&r, 1) % 16];
      atomic_store(&m->info, take(&r, 8));
      break;
    }
    case 9:
      if (take(&r, 1) & 1)
        atomic_store(&h->head, take(&r, 8));
      else
        atomic_store(&h->tail, take(&r, 8));
      break;
    case 10: {
      shmq_rec *rec = &recs[take(&r, 1) % 8];
      switch (take(&r, 1) % 5) {
      case 0: atomic_store(&rec->state, (uint32_t)take(&r, 1) % 5); break;
      case 1: atomic_store(&rec->pid, (int32_t)take(&r, 4)); break;
      case 2: atomic_store(&rec->claim_pos, take(&r, 8)); break;
      case 3: atomic_store(&rec->claim_k, take(&r, 8)); break;
      default: atomic_store(&rec->taken, take(&r, 8)); break;
      }
      break;
    }
    default:
      if (take(&r, 1) & 1)
        atomic_store(&h->rec_hi, (uint32_t)take(&r, 2));
      else
        atomic_store(&h->state, (uint32_t)take(&r, 1) % 4);
      break;
    }
  }
  munmap(base, seg);
  weft_shmq_destroy(q);
  return 0;
}
