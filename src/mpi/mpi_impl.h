/*
 * Internal: the MPI backend's wire format and what its files share
 * (init.c: start-up and the registry handshake; worker.c: the worker
 * ranks' loop; client.c: the executor backend on rank 0).
 *
 * Every message travels on g_mpi.comm (weft's duplicate of
 * MPI_COMM_WORLD) as MPI_BYTE, in the host's byte order: every rank runs
 * the same build on the same architecture. Each message starts with a
 * 32-bit magic; every record in it is a fixed header followed by payloads
 * padded to 8 bytes, so that a reader can check every length against the
 * bytes it received before touching them. A reader never trusts a length:
 * a record that does not fit is malformed (-EPROTO), which ends the
 * message, not the process.
 *
 *   client -> worker
 *     TAG_HELLO    open an executor: u32 magic, u32 count, then count task
 *                  names, each NUL-terminated, sorted. The worker answers
 *                  TAG_HELLO_ACK: u32 magic, i32 status (0 or WEFT_ENOTASK),
 *                  i32 its pid, u32 pad, then its host name and an
 *                  explanation, each NUL-terminated.
 *     TAG_WORK     work_hdr, then count records: work_rec, the task name
 *                  (name_len bytes, padded) when task == TASK_BY_NAME, then
 *                  the data (TASK: arg_len bytes; MAP: nitems * in_size),
 *                  padded. Task ids index the names of TAG_HELLO.
 *     TAG_CANCEL   u32 magic, u32 pad, u64 id: stop the MAP record id
 *                  before its next item (or skip it if it has not started).
 *     TAG_CLOSE    u32 magic: the executor is gone; forget its names.
 *     TAG_FINALIZE u32 magic: finalize MPI and exit.
 *   worker -> client
 *     TAG_RESULT   res_hdr, then one res_rec per record of one TAG_WORK
 *                  message, in order (sent in pieces when tasks are slow):
 *                  TASK: len result bytes then msg_len message bytes (no
 *                  NUL), each padded; MAP: nfail (u32 index, i32 code)
 *                  pairs, then len * out_size result bytes, padded.
 */
#ifndef WEFT_MPI_IMPL_H
#define WEFT_MPI_IMPL_H

#include <mpi.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "executor/executor_impl.h"
#include "weft/mpi.h"

#define WEFT__MPI_MAGIC 0x57465431u /* "WFT1" */

enum {
  TAG_HELLO = 0x5701,
  TAG_HELLO_ACK,
  TAG_WORK,
  TAG_RESULT,
  TAG_CANCEL,
  TAG_CLOSE,
  TAG_FINALIZE
};

enum { REC_TASK = 1, REC_MAP = 2 };

#define TASK_BY_NAME UINT32_MAX /* work_rec.task: the name follows */
#define WORK_F_NO_RESULT 1u     /* TASK: fire and forget, answer without the result */

typedef struct work_hdr {
  uint32_t magic;
  uint32_t count; /* records that follow */
} work_hdr;

typedef struct work_rec {
  uint64_t id;       /* the client's id for the answer */
  uint32_t kind;     /* REC_TASK or REC_MAP */
  uint32_t task;     /* index into the HELLO names, or TASK_BY_NAME */
  uint32_t arg_len;  /* TASK: argument bytes; MAP: number of items */
  uint32_t in_size;  /* MAP: bytes per item in */
  uint32_t out_size; /* MAP: bytes per item out; TASK: flags (WORK_F_*) */
  uint32_t name_len; /* TASK_BY_NAME: bytes of name (no NUL) */
} work_rec;

typedef struct res_hdr {
  uint32_t magic;
  uint32_t count;   /* records that follow */
  uint64_t busy_ns; /* time the worker spent running them */
} res_hdr;

typedef struct res_rec {
  uint64_t id;
  int32_t rc;       /* TASK: the outcome; MAP: 0, or -EPROTO for a bad record */
  uint32_t kind;    /* REC_TASK or REC_MAP */
  uint32_t len;     /* TASK: result bytes; MAP: items that ran */
  uint32_t aux;     /* TASK: message bytes; MAP: failed items listed */
  uint32_t stopped; /* MAP: stopped by TAG_CANCEL before its end */
  uint32_t pad;
} res_rec;

typedef struct cancel_msg {
  uint32_t magic;
  uint32_t pad;
  uint64_t id;
} cancel_msg;

_Static_assert(sizeof(work_hdr) == 8, "wire layout");
_Static_assert(sizeof(work_rec) == 32, "wire layout");
_Static_assert(sizeof(res_hdr) == 16, "wire layout");
_Static_assert(sizeof(res_rec) == 32, "wire layout");
_Static_assert(sizeof(cancel_msg) == 16, "wire layout");

static inline size_t weft__mpi_pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Process-wide MPI state, written by weft_mpi_init on the main thread
 * before anything reads it, then immutable (but for `live`). */
typedef struct weft__mpi_global {
  MPI_Comm comm;      /* weft's own communicator */
  int rank, size;     /* in comm (the same as in MPI_COMM_WORLD) */
  bool inited;        /* weft_mpi_init succeeded */
  bool own_mpi;       /* weft_mpi_init called MPI_Init_thread */
  bool finalized;
  _Atomic int live;   /* MPI executors alive (0 or 1) */
  atomic_bool broken; /* an executor broke: the job cannot finalize cleanly */
} weft__mpi_global;

extern weft__mpi_global weft__mpi;

/* The backend (client.c). */
extern const weft__executor_ops weft__mpi_ops;

/* The worker ranks' loop (worker.c); never returns. */
__attribute__((noreturn)) void weft__mpi_serve(void);

/* The sorted registered names, serialized for TAG_HELLO: *buf (weft__malloc,
 * `count` names each NUL-terminated) and its length. 0 or WEFT_ENOMEM. */
int weft__mpi_names(char **buf, size_t *len, uint32_t *count);

/* Sleep for ns nanoseconds (for the polling back-off). */
void weft__mpi_nap(int64_t ns);

#endif
