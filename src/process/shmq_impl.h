/*
 * The layout of a weft_shmq segment, shared by shmq.c and the tests that
 * corrupt live segments on purpose (tests/shmq/test_fuzz.c). Everything in
 * the segment is data from other processes: shmq.c reads the geometry once
 * (create or open, validated), keeps it in the handle, and checks every
 * value it reads from the segment afterwards.
 *
 * Segment:  [hdr][records: NREC x 64 B][meta: nslots x 16 B][data: nslots x slot_size]
 *
 * Positions count up forever (64-bit; tail's top bit is the closed mark).
 * Position p lives in slot p & (nslots - 1). A message of len bytes takes
 * k = max(1, ceil(len / slot_size)) consecutive positions; its bytes are
 * contiguous in the data array from its first slot, wrapping at the end.
 *
 * seq of the slot of position p, for the lap of p:
 *   p          free for p (or: claimed for p by a producer, not yet
 *              published; or an interior slot of p's message)
 *   p + 1      p is the first slot of a published message (or of a skip)
 *   p + nslots freed by the consumer of p: free for position p + nslots
 *   SHMQ_RES_TOKEN | r  record r is turning p, claimed by a producer that
 *              died, into a skip (it alone writes info, then seq = p + 1)
 * info of a first slot: the message length, or SHMQ_SKIP | k for k slots
 * lost by a producer that died while writing them. info of an interior
 * slot: SHMQ_INTERIOR | (distance to the first slot).
 */
#ifndef WEFT_PROCESS_SHMQ_IMPL_H
#define WEFT_PROCESS_SHMQ_IMPL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#define SHMQ_MAGIC   0x716d687374666577ull /* "weftshmq" */
#define SHMQ_VERSION 2u
#define SHMQ_NREC    256u           /* participant records (threads using the queue) */
#define SHMQ_CLOSED  (1ull << 63)   /* in tail: shut down, no more claims */
#define SHMQ_SKIP    (1ull << 63)   /* in info */
#define SHMQ_INTERIOR (1ull << 62)  /* in info */
#define SHMQ_ROLE_PROD (1ull << 62) /* in a record's claim_k */
#define SHMQ_ROLE_CONS (2ull << 62)
#define SHMQ_ROLE_RES  (3ull << 62) /* resolving a dead producer's claim */
#define SHMQ_ROLE_MASK (3ull << 62)
#define SHMQ_RES_TOKEN (1ull << 63)  /* in seq: SHMQ_RES_TOKEN | record index */

/* state of the queue (hdr.state) */
#define SHMQ_SHUT      1u
#define SHMQ_IMMEDIATE 2u

/* Record states: the kind in the low 3 bits, a tag above.
 * FREE, ALIVE, DEAD: the tag is the record's incarnation (inc below, mod
 *   2^29), new at every allocation, so that a survivor's CAS from what it
 *   saw (ALIVE of owner n to DEAD) fails once the record has moved on to
 *   another owner.
 * BUSY (a record being taken or given back: its counts stay) and RETIRING
 *   (a dead owner's record being freed: its un-done messages are written
 *   off): the tag is the pid of the process making the change, so that a
 *   change cut short by that process's death can be finished by a survivor. */
enum { SHMQ_REC_FREE = 0, SHMQ_REC_BUSY, SHMQ_REC_ALIVE, SHMQ_REC_DEAD, SHMQ_REC_RETIRING };
#define SHMQ_REC_KIND(st) ((st) & 7u)
#define SHMQ_REC_TAG_SHIFT 3
#define SHMQ_REC_TAG_MASK ((1u << 29) - 1)
#define SHMQ_REC_TAG(st) ((st) >> SHMQ_REC_TAG_SHIFT)
#define SHMQ_REC_STATE(kind, tag) \
  ((uint32_t)(kind) | ((uint32_t)(tag) & SHMQ_REC_TAG_MASK) << SHMQ_REC_TAG_SHIFT)
#define SHMQ_REC_CHANGING(kind, pid) SHMQ_REC_STATE(kind, pid)

typedef struct shmq_hdr {
  _Atomic uint64_t magic;  /* SHMQ_MAGIC, written last by the creator */
  uint32_t version;        /* SHMQ_VERSION */
  uint32_t nrec;           /* SHMQ_NREC */
  uint64_t size;           /* bytes of segment */
  uint64_t nslots;         /* a power of two >= 2 */
  uint64_t slot_size;      /* a power of two */
  uint64_t msg_max;        /* <= nslots * slot_size */
  uint64_t rec_off, meta_off, data_off; /* as shmq.c computes them */
  uint32_t flags;          /* WEFT_SHMQ_* given at creation */
  alignas(64) _Atomic uint64_t tail; /* next position producers claim; top bit: closed */
  alignas(64) _Atomic uint64_t head; /* next position consumers claim */
  alignas(64) _Atomic uint32_t evc_get; /* event count consumers sleep on */
  alignas(64) _Atomic uint32_t evc_put; /* event count producers sleep on */
  alignas(64) _Atomic uint32_t state;   /* SHMQ_SHUT, SHMQ_IMMEDIATE */
  _Atomic uint32_t deaths;              /* dead participants counted so far */
  _Atomic uint32_t evc_join;            /* event count join sleeps on */
  _Atomic uint32_t rec_hi;              /* records ever used are below this */
} shmq_hdr;

/* One per thread that uses the queue. Written by its owner only, except
 * state (owner, and survivors who mark it dead and free it). */
typedef struct shmq_rec {
  _Atomic uint32_t state;     /* SHMQ_REC_* */
  _Atomic int32_t pid;        /* owner process */
  _Atomic uint64_t start;     /* owner's start time (tells pid reuse apart) */
  _Atomic uint64_t claim_pos; /* first position of the claim under way */
  _Atomic uint64_t claim_k;   /* its positions | role; 0: no claim */
  _Atomic uint64_t taken;     /* messages taken by the threads that owned it */
  _Atomic uint64_t done;      /* task_done they called (both only grow; a
                                 record keeps them across owners) */
  _Atomic uint64_t inc;       /* the incarnation in state's tag (see above) */
  uint64_t pad;
} shmq_rec;

typedef struct shmq_meta {
  _Atomic uint64_t seq;  /* see the top */
  _Atomic uint64_t info; /* see the top */
} shmq_meta;

_Static_assert(sizeof(shmq_rec) == 64, "records are one cache line");
_Static_assert(sizeof(shmq_meta) == 16, "meta is 16 bytes");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "shared atomics are plain words");

#endif
