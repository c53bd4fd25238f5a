/*
 * The worker ranks: every rank but 0 runs weft__mpi_serve from
 * weft_mpi_init and never returns. It answers the client's messages in
 * order (see mpi_impl.h for the wire format): TAG_HELLO checks that both
 * sides registered the same tasks and keeps the client's names as the
 * table that task ids index; TAG_WORK runs its records one after the other
 * and answers with TAG_RESULT; TAG_CANCEL stops a map chunk between items;
 * TAG_FINALIZE ends the process.
 *
 * Waiting: MPI has no descriptor to sleep on, so a worker polls
 * (MPI_Iprobe), spinning for a short while after its last message (a busy
 * client sends the next one within microseconds) and then napping with an
 * exponential back-off capped at 1 ms, so that an idle worker costs a few
 * hundred cheap wake-ups a second instead of a core.
 *
 * Bad input: every length in a message is checked against the bytes
 * received before use; a record that does not fit ends the message with
 * an -EPROTO answer for it (when its id could be read), an unknown task id
 * or name is a WEFT_ENOTASK answer. Nothing from the wire is ever called
 * or indexed unchecked.
 *
 * Locking: none; one thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "mpi/mpi_impl.h"

#if defined(__SANITIZE_ADDRESS__)
/* Sanitized builds check a worker rank for leaks before MPI_Finalize, while
 * the MPI libraries' plugins are still loaded (after it, their memory shows
 * as "unknown module" and cannot be told from weft's). */
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_recoverable_leak_check()
#else
#define LEAK_CHECK() 0
#endif

#define SPIN_NS 100000          /* poll without sleeping this long after a message */
#define NAP_MAX_NS 1000000      /* the back-off's cap */
#define FLUSH_NS 200000         /* send finished answers after this long */
#define FLUSH_BYTES (256 * 1024) /* ... or once this many bytes wait */
#define CANCEL_CHECK_NS 50000   /* a map chunk looks for TAG_CANCEL this often */
#define CANCELLED_MAX 64        /* cancels remembered for chunks not yet seen */
#define DRAIN_PROBES 4          /* empty probes before drain() concludes */

typedef struct buf {
  unsigned char *p;
  size_t len, cap;
} buf;

/* A message taken from MPI early (while a map chunk looked for cancels),
 * waiting for the main loop. */
typedef struct qmsg {
  struct qmsg *next;
  int tag;
  size_t len;
  _Alignas(8) unsigned char data[];
} qmsg;

static struct {
  const weft_task **table; /* the client's names, resolved; NULL entry: unknown here */
  uint32_t ntable;
  weft__scratch scratch;   /* task results */
  buf out;                 /* the TAG_RESULT being built */
  uint32_t out_count;      /* records in it */
  int64_t out_first_ns;    /* when its first record was added */
  int64_t busy_ns;         /* time spent running its records */
  buf in;                  /* the message being served */
  buf slots;               /* a map chunk's results */
  uint64_t cancelled[CANCELLED_MAX]; /* ids of TAG_CANCEL for chunks not yet run */
  unsigned ncancelled;
  qmsg *q_head, *q_tail;   /* messages taken early, oldest first */
  int64_t last_msg_ns;
} W;

static __attribute__((noreturn)) void die(const char *what, int code) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "code %d", code);
  fprintf(stderr, "weft mpi: rank %d: %s failed: %s; exiting\n", weft__mpi.rank, what, s);
  exit(1);
}

static __attribute__((noreturn)) void oom(void) {
  fprintf(stderr, "weft mpi: rank %d: out of memory; exiting\n", weft__mpi.rank);
  exit(1);
}

static void *buf_room(buf *b, size_t more) {
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    void *p = weft__realloc(b->p, cap);
    if (!p) oom();
    b->p = p;
    b->cap = cap;
  }
  return b->p + b->len;
}

/* Append n bytes (n may be 0), padded to 8. */
static void buf_put(buf *b, const void *d, size_t n) {
  size_t padded = weft__mpi_pad8(n);
  unsigned char *p = buf_room(b, padded);
  if (n) memcpy(p, d, n);
  memset(p + n, 0, padded - n);
  b->len += padded;
}

/* ------------------------------------------------------------- answers */

static void flush(void) {
  if (!W.out_count) return;
  res_hdr *h = (res_hdr *)W.out.p;
  h->magic = WEFT__MPI_MAGIC;
  h->count = W.out_count;
  h->busy_ns = (uint64_t)W.busy_ns;
  int e = MPI_Send(W.out.p, (int)W.out.len, MPI_BYTE, 0, TAG_RESULT, weft__mpi.comm);
  if (e != MPI_SUCCESS) die("MPI_Send", e);
  W.out.len = sizeof(res_hdr);
  W.out_count = 0;
  W.busy_ns = 0;
}

static void answer_begin(void) {
  if (W.out_count == 0) {
    W.out.len = 0;
    buf_room(&W.out, sizeof(res_hdr));
    W.out.len = sizeof(res_hdr);
    W.out_first_ns = weft_now_ns();
  }
  W.out_count++;
}

static void answer_task(uint64_t id, int rc, const void *res, size_t len, const char *msg) {
  answer_begin();
  size_t mlen = msg ? strlen(msg) : 0;
  if (len > UINT32_MAX) {
    rc = WEFT_E2BIG;
    len = 0;
  }
  if (rc) len = 0;
  res_rec r = {id, rc, REC_TASK, (uint32_t)len, (uint32_t)mlen, 0, 0};
  buf_put(&W.out, &r, sizeof r);
  buf_put(&W.out, res, len);
  buf_put(&W.out, msg, mlen);
}

/* Send what is ready when it has waited long enough or grown large. */
static void maybe_flush(void) {
  if (W.out_count &&
      (W.out.len >= FLUSH_BYTES || weft_now_ns() - W.out_first_ns >= FLUSH_NS))
    flush();
}

/* -------------------------------------------------------------- waiting */

/* Wait for the next message from the client; returns its status. */
static MPI_Status wait_message(void) {
  MPI_Status st;
  int flag = 0;
  int64_t nap = 2000;
  for (;;) {
    int e = MPI_Iprobe(0, MPI_ANY_TAG, weft__mpi.comm, &flag, &st);
    if (e != MPI_SUCCESS) die("MPI_Iprobe", e);
    if (flag) break;
    if (weft_now_ns() - W.last_msg_ns < SPIN_NS) continue;
    weft__mpi_nap(nap);
    if (nap < NAP_MAX_NS) nap *= 2;
  }
  W.last_msg_ns = weft_now_ns();
  return st;
}

static void receive(const MPI_Status *st, buf *into) {
  int n = 0;
  MPI_Get_count(st, MPI_BYTE, &n);
  into->len = 0;
  buf_room(into, (size_t)n + 8);
  int e = MPI_Recv(into->p, n, MPI_BYTE, 0, st->MPI_TAG, weft__mpi.comm, MPI_STATUS_IGNORE);
  if (e != MPI_SUCCESS) die("MPI_Recv", e);
  into->len = (size_t)n;
}

/* Record a TAG_CANCEL's bytes (malformed ones are dropped). */
static void note_cancel(const unsigned char *p, size_t len) {
  cancel_msg c;
  if (len != sizeof c) return;
  memcpy(&c, p, sizeof c);
  if (c.magic == WEFT__MPI_MAGIC) W.cancelled[W.ncancelled++ % CANCELLED_MAX] = c.id;
}

/* Take every message that has arrived from the client: cancels are noted
 * at once, the others queued in order for the main loop. Seen with MPICH
 * (over UCX): a probe for TAG_CANCEL alone missed a cancel that waited
 * behind an unreceived TAG_WORK, and after a long task the first probe
 * shows nothing at all (it only starts progress); so the worker takes
 * everything, and probes a few times before it concludes. Without this a
 * chunk sent ahead ran although its cancel had arrived (map_ahead_skipped). */
static void drain(void) {
  for (int empty = 0;;) {
    int flag = 0, n = 0;
    MPI_Status st;
    int e = MPI_Iprobe(0, MPI_ANY_TAG, weft__mpi.comm, &flag, &st);
    if (e != MPI_SUCCESS) die("MPI_Iprobe", e);
    /* After a long task, one probe only starts MPI's progress (MPICH over
     * UCX shows nothing to the first): ask a few times before concluding
     * that nothing came. */
    if (!flag) {
      if (++empty < DRAIN_PROBES) continue;
      return;
    }
    empty = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    if (n < 0) n = 0;
    qmsg *q = weft__malloc(sizeof *q + (size_t)n + 8);
    if (!q) oom();
    e = MPI_Recv(q->data, n, MPI_BYTE, 0, st.MPI_TAG, weft__mpi.comm, MPI_STATUS_IGNORE);
    if (e != MPI_SUCCESS) die("MPI_Recv", e);
    if (st.MPI_TAG == TAG_CANCEL) {
      note_cancel(q->data, (size_t)n);
      weft__free(q);
      continue;
    }
    q->tag = st.MPI_TAG;
    q->len = (size_t)n;
    q->next = NULL;
    if (W.q_tail)
      W.q_tail->next = q;
    else
      W.q_head = q;
    W.q_tail = q;
  }
}

/* Was a TAG_CANCEL for id received (now or before)? */
static bool cancelled(uint64_t id) {
  drain();
  unsigned k = W.ncancelled < CANCELLED_MAX ? W.ncancelled : CANCELLED_MAX;
  for (unsigned i = 0; i < k; i++)
    if (W.cancelled[i] == id) return true;
  return false;
}

/* --------------------------------------------------------------- hello */

static void hello(const buf *m) {
  char *mine = NULL;
  size_t mine_len = 0;
  uint32_t mine_count = 0;
  int status = 0;
  char why[512] = "";
  weft__free(W.table);
  W.table = NULL;
  W.ntable = 0;
  const unsigned char *p = m->p;
  uint32_t hdr[2];
  if (m->len < sizeof hdr || (memcpy(hdr, p, sizeof hdr), hdr[0] != WEFT__MPI_MAGIC) ||
      hdr[1] > (m->len - sizeof hdr) / 2 + 1) {
    status = -EPROTO;
    snprintf(why, sizeof why, "rank %d: malformed hello", weft__mpi.rank);
    goto reply;
  }
  if (weft__mpi_names(&mine, &mine_len, &mine_count) != 0) oom();
  W.table = weft__calloc(hdr[1] ? hdr[1] : 1, sizeof *W.table);
  if (!W.table) oom();
  /* Walk both sorted lists: the first name on one side only is the
   * difference reported. */
  const char *theirs = (const char *)p + sizeof hdr, *end = (const char *)p + m->len;
  const char *ours = mine, *ours_end = mine + mine_len;
  uint32_t i = 0;
  for (; i < hdr[1]; i++) {
    const char *nul = memchr(theirs, 0, (size_t)(end - theirs));
    if (!nul) {
      status = -EPROTO;
      snprintf(why, sizeof why, "rank %d: malformed hello", weft__mpi.rank);
      goto reply;
    }
    const weft_task *t = NULL;
    if (weft_task_find(theirs, &t) != 0) t = NULL;
    W.table[i] = t;
    while (status == 0 && ours < ours_end && strcmp(ours, theirs) < 0) {
      status = WEFT_ENOTASK;
      snprintf(why, sizeof why, "task '%s' is registered on rank %d but not on rank 0", ours,
               weft__mpi.rank);
    }
    if (ours < ours_end && strcmp(ours, theirs) == 0) ours += strlen(ours) + 1;
    if (status == 0 && !t) {
      status = WEFT_ENOTASK;
      snprintf(why, sizeof why, "task '%.64s' is registered on rank 0 but not on rank %d",
               theirs, weft__mpi.rank);
    }
    theirs = nul + 1;
  }
  W.ntable = i;
  if (status == 0 && ours < ours_end) {
    status = WEFT_ENOTASK;
    snprintf(why, sizeof why, "task '%s' is registered on rank %d but not on rank 0", ours,
             weft__mpi.rank);
  }
reply:
  weft__free(mine);
  {
    buf a = {0};
    /* With this rank's pid and host, so that a client on the same host can
     * tell when this process is gone (client.c, worker_gone). */
    uint32_t h[4] = {WEFT__MPI_MAGIC, (uint32_t)status, (uint32_t)getpid(), 0};
    buf_put(&a, h, sizeof h);
    char host[HOST_NAME_MAX + 1] = "";
    gethostname(host, sizeof host - 1);
    size_t hl = strlen(host) + 1;
    memcpy(buf_room(&a, hl), host, hl);
    a.len += hl;
    size_t wl = strlen(why) + 1;
    memcpy(buf_room(&a, wl), why, wl);
    a.len += wl;
    int e = MPI_Send(a.p, (int)a.len, MPI_BYTE, 0, TAG_HELLO_ACK, weft__mpi.comm);
    weft__free(a.p);
    if (e != MPI_SUCCESS) die("MPI_Send", e);
  }
}

/* ---------------------------------------------------------------- work */

static const weft_task *resolve(const work_rec *r, const unsigned char **p,
                                const unsigned char *end, int *rc) {
  *rc = 0;
  if (r->task != TASK_BY_NAME) {
    if (r->task < W.ntable && W.table[r->task]) return W.table[r->task];
    *rc = WEFT_ENOTASK;
    return NULL;
  }
  size_t padded = weft__mpi_pad8(r->name_len);
  if (r->name_len == 0 || r->name_len > 63 || padded > (size_t)(end - *p)) {
    *rc = -EPROTO;
    return NULL;
  }
  char name[64];
  memcpy(name, *p, r->name_len);
  name[r->name_len] = 0;
  *p += padded;
  const weft_task *t;
  if (weft_task_find(name, &t) != 0) {
    *rc = WEFT_ENOTASK;
    return NULL;
  }
  return t;
}

static void run_map(const work_rec *r, const weft_task *t, const unsigned char *in) {
  size_t n = r->arg_len;
  /* Result slots first, then the failure list is built after them. */
  W.slots.len = 0;
  unsigned char *slots = buf_room(&W.slots, n * r->out_size + 8);
  uint32_t *fail_at = NULL;
  int32_t *fail_code = NULL;
  size_t nfail = 0, cap = 0;
  size_t ran = 0;
  bool stopped = cancelled(r->id);
  int64_t last_check = weft_now_ns();
  for (; !stopped && ran < n; ran++) {
    const void *res;
    size_t len;
    char *msg;
    int rc = weft__task_run_detached(t->fn, in + ran * r->in_size, r->in_size,
                                     r->out_size ? slots + ran * r->out_size : NULL, r->out_size,
                                     true, &W.scratch, &res, &len, &msg);
    weft__free(msg);
    if (rc) {
      if (nfail == cap) {
        cap = cap ? cap * 2 : 16;
        fail_at = weft__realloc(fail_at, cap * sizeof *fail_at);
        fail_code = weft__realloc(fail_code, cap * sizeof *fail_code);
        if (!fail_at || !fail_code) oom();
      }
      fail_at[nfail] = (uint32_t)ran;
      fail_code[nfail++] = rc;
    }
    int64_t now = weft_now_ns();
    if (now - last_check >= CANCEL_CHECK_NS) {
      last_check = now;
      if (cancelled(r->id)) {
        ran++;
        stopped = true;
        break;
      }
    }
  }
  answer_begin();
  res_rec a = {r->id, 0, REC_MAP, (uint32_t)ran, (uint32_t)nfail, stopped, 0};
  buf_put(&W.out, &a, sizeof a);
  unsigned char *p = buf_room(&W.out, weft__mpi_pad8(nfail * 8));
  for (size_t k = 0; k < nfail; k++) {
    memcpy(p + 8 * k, &fail_at[k], 4);
    memcpy(p + 8 * k + 4, &fail_code[k], 4);
  }
  W.out.len += weft__mpi_pad8(nfail * 8);
  buf_put(&W.out, slots, ran * r->out_size);
  weft__free(fail_at);
  weft__free(fail_code);
}

static void work(const buf *m) {
  const unsigned char *p = m->p, *end = m->p + m->len;
  work_hdr h;
  if (m->len < sizeof h) return; /* nothing to answer to */
  memcpy(&h, p, sizeof h);
  if (h.magic != WEFT__MPI_MAGIC) return;
  p += sizeof h;
  for (uint32_t k = 0; k < h.count; k++) {
    work_rec r;
    if ((size_t)(end - p) < sizeof r) {
      /* The rest cannot be read: the client fails the records that got
       * no answer when it sees the answer to a later one. */
      break;
    }
    memcpy(&r, p, sizeof r);
    p += sizeof r;
    int rc;
    const weft_task *t = resolve(&r, &p, end, &rc);
    size_t data;
    bool bad = rc == -EPROTO;
    if (r.kind == REC_TASK) {
      data = r.arg_len;
    } else if (r.kind == REC_MAP) {
      bad = bad || (r.in_size && r.arg_len > SIZE_MAX / r.in_size) ||
            (r.out_size && r.arg_len > (SIZE_MAX / 2) / r.out_size);
      data = bad ? 0 : (size_t)r.arg_len * r.in_size;
    } else {
      bad = true;
      data = 0;
    }
    if (bad || weft__mpi_pad8(data) > (size_t)(end - p)) {
      if (r.kind == REC_MAP) {
        answer_begin();
        res_rec a = {r.id, -EPROTO, REC_MAP, 0, 0, 0, 0};
        buf_put(&W.out, &a, sizeof a);
      } else {
        answer_task(r.id, -EPROTO, NULL, 0, "malformed work record");
      }
      break; /* the rest of the message cannot be found */
    }
    const unsigned char *d = p;
    p += weft__mpi_pad8(data);
    int64_t t0 = weft_now_ns();
    if (r.kind == REC_TASK) {
      if (!t) {
        answer_task(r.id, rc, NULL, 0, "no task registered under that name on this rank");
      } else {
        const void *res;
        size_t len;
        char *msg;
        rc = weft__task_run_detached(t->fn, d, data, NULL, 0, false, &W.scratch, &res, &len,
                                     &msg);
        if (r.out_size & WORK_F_NO_RESULT) len = 0; /* nobody keeps it */
        answer_task(r.id, rc, res, len, msg);
        weft__free(msg);
      }
    } else if (!t) {
      answer_begin();
      res_rec a = {r.id, rc, REC_MAP, 0, 0, 0, 0};
      buf_put(&W.out, &a, sizeof a);
    } else {
      run_map(&r, t, d);
    }
    int64_t took = weft_now_ns() - t0;
    W.busy_ns += took;
    /* A slow record's answer goes at once: the next one may be slow too,
     * and the client waits for this one (a map chunk, a task's future). */
    if (took >= FLUSH_NS)
      flush();
    else
      maybe_flush();
  }
  flush();
}

/* Serve one message. */
static void serve(int tag, const buf *m) {
  switch (tag) {
  case TAG_HELLO: hello(m); break;
  case TAG_WORK: work(m); break;
  case TAG_CANCEL: note_cancel(m->p, m->len); break;
  case TAG_CLOSE:
    weft__free(W.table);
    W.table = NULL;
    W.ntable = 0;
    W.ncancelled = 0;
    break;
  case TAG_FINALIZE:
    weft__free(W.table);
    weft__free(W.in.p);
    weft__free(W.out.p);
    weft__free(W.slots.p);
    weft__scratch_fini(&W.scratch);
    while (W.q_head) {
      qmsg *nx = W.q_head->next;
      weft__free(W.q_head);
      W.q_head = nx;
    }
    MPI_Comm_free(&weft__mpi.comm);
    if (LEAK_CHECK()) {
      fprintf(stderr, "weft mpi: rank %d: leaks found\n", weft__mpi.rank);
      exit(1);
    }
    /* Always: the program's own MPI_Finalize, after weft_mpi_init, never
     * runs on a worker rank. */
    MPI_Finalize();
    exit(0);
  default: break; /* not weft's: ignore */
  }
}

void weft__mpi_serve(void) {
  W.last_msg_ns = weft_now_ns();
  for (;;) {
    qmsg *q = W.q_head;
    if (q) { /* taken early: serve in order before anything newer */
      W.q_head = q->next;
      if (!W.q_head) W.q_tail = NULL;
      buf m = {q->data, q->len, q->len};
      serve(q->tag, &m);
      weft__free(q);
      W.last_msg_ns = weft_now_ns();
      continue;
    }
    MPI_Status st = wait_message();
    receive(&st, &W.in);
    serve(st.MPI_TAG, &W.in);
  }
}
