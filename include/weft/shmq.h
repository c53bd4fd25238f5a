/*
 * weft/shmq.h: the cross-process queue of byte messages (Python's
 * multiprocessing.Queue and JoinableQueue).
 *
 * A weft_shmq lives in one shared-memory segment. Any number of processes
 * (and threads in them) put and get messages of 0 to msg_max bytes, chosen
 * at creation. Messages are copied in by put and out by get; no lock is held
 * while a message is copied, and small messages go through lock-free slot
 * sequence numbers, so a process that dies at any instruction leaves the
 * queue usable.
 *
 * Three ways to share a queue:
 *  - Anonymous (no name): a memfd mapping that fork()ed children inherit;
 *    its fd (weft_shmq_fd) can also be passed to any process over a Unix
 *    socket (SCM_RIGHTS) and opened there with weft_shmq_open_fd.
 *  - Named: unrelated processes of the same user open it by name with
 *    weft_shmq_open while its creator lives. The name is held by the
 *    creating process (an abstract Unix socket name), not by a file: nothing
 *    is ever left in /dev/shm, whoever is killed.
 *  - Named and persistent (WEFT_SHMQ_PERSISTENT): a file in /dev/shm,
 *    created mode 0600 with O_EXCL, that outlives every process until
 *    weft_shmq_unlink removes it.
 *
 * Crash tolerance. Every thread that uses a queue has a record in the
 * segment (its pid and the process's start time). A put or get that a
 * process starts and never finishes (SIGKILL, a crash) is found by the
 * survivors, who decide that the process is dead from /proc (gone, or a
 * zombie; a process stopped by SIGSTOP is alive), never from a timeout: a
 * half-written message is skipped, a half-read one is released, and at most
 * that one message is lost. Every survivor that uses the queue then gets
 * WEFT_EPEERDIED once from its next put, get or join (which did nothing;
 * call again), blocked callers within about 50 ms of the death; see
 * weft_shmq_peer_deaths.
 *
 * A segment is shared with other processes, which may be buggy or hostile:
 * every index, length and sequence number read from it is checked, and a
 * call that meets an inconsistent segment returns WEFT_ECORRUPT (or waits
 * until its deadline for a state that never comes); it never reads or
 * writes outside the segment and the caller's buffers.
 *
 * Error codes: a full queue is WEFT_EFULL and an empty one WEFT_EEMPTY when
 * the call was not allowed to block (deadline 0); a call that did block and
 * reached its deadline is WEFT_ETIMEDOUT; a shut-down queue is
 * WEFT_ESHUTDOWN; a handle closed with weft_shmq_close is WEFT_EBADF.
 *
 * Thread-safety: every call may be made from any thread of any process that
 * has the queue open, concurrently, unless its contract says otherwise.
 */
#ifndef WEFT_SHMQ_H
#define WEFT_SHMQ_H

#include "weft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_shmq weft_shmq;

/* ------------------------------------------------------------ creating */

/* Flags of weft_shmq_opts. */
#define WEFT_SHMQ_JOINABLE   0x1u /* JoinableQueue: a process that dies with
                                     messages taken but not task_done makes
                                     join return WEFT_EPEERDIED once */
#define WEFT_SHMQ_PERSISTENT 0x2u /* named only: a /dev/shm file that stays
                                     until weft_shmq_unlink */

typedef struct weft_shmq_opts {
  size_t capacity;  /* bytes of message storage; rounded up to slot_size
                       times a power of two. 0: 1 MiB */
  size_t slot_size; /* bytes per slot, a power of two, 64 .. 1 MiB; a
                       message takes ceil(len / slot_size) slots (at least
                       one). 0: 128. Large slots suit large messages */
  size_t msg_max;   /* largest message in bytes, at most capacity.
                       0: 64 KiB, or capacity if that is smaller */
  const char *name; /* NULL: anonymous. Otherwise 1 to 64 characters from
                       [A-Za-z0-9._-], not starting with '.' */
  unsigned flags;   /* WEFT_SHMQ_JOINABLE, WEFT_SHMQ_PERSISTENT */
} weft_shmq_opts;

/* Largest capacity a queue may have (1 TiB), and slot bounds. */
#define WEFT_SHMQ_CAPACITY_MAX  ((size_t)1 << 40)
#define WEFT_SHMQ_SLOT_SIZE_MIN ((size_t)64)
#define WEFT_SHMQ_SLOT_SIZE_MAX ((size_t)1 << 20)

/* Create a queue in a new segment and open it in this process. opts NULL:
 * anonymous, 1 MiB, slots of 128 bytes, messages up to 64 KiB. Returns 0
 * and the handle in *out; WEFT_EINVAL (a size out of range, a slot size
 * that is not a power of two, msg_max above capacity, unknown flags,
 * PERSISTENT without a name), WEFT_ENAMETOOLONG or WEFT_EINVAL (a bad
 * name), WEFT_EEXIST (a queue of that name exists), WEFT_ENOMEM, or -errno
 * from memfd_create, shm_open, ftruncate, mmap, socket or bind.
 * Ownership: the caller owns the handle and destroys it; the segment lives
 * until the last process that has it open (or inherited it) destroys its
 * handle or exits, and, if persistent, until unlinked. Thread-safety: any
 * thread. */
WEFT_API int weft_shmq_create(weft_shmq **out, const weft_shmq_opts *opts);

/* Open the named queue name (persistent, or one whose creator lives).
 * Returns 0 and the handle in *out; WEFT_ENOENT (no such queue),
 * WEFT_EINVAL or WEFT_ENAMETOOLONG (a bad name), WEFT_ECORRUPT (not a
 * weft queue, or its header is inconsistent), WEFT_EACCES, WEFT_ENOMEM, or
 * -errno from the system. Ownership: as create. Thread-safety: any
 * thread. */
WEFT_API int weft_shmq_open(weft_shmq **out, const char *name);

/* Open the queue whose segment fd refers to (an fd from weft_shmq_fd in
 * another process, received over a Unix socket). fd stays the caller's:
 * the handle keeps its own duplicate. Returns as weft_shmq_open (WEFT_EBADF
 * for a bad fd). Thread-safety: any thread. */
WEFT_API int weft_shmq_open_fd(weft_shmq **out, int fd);

/* Remove the persistent queue name from /dev/shm. Processes that have it
 * open keep using it. Returns 0, WEFT_ENOENT, WEFT_EINVAL or
 * WEFT_ENAMETOOLONG (a bad name), or -errno from shm_unlink.
 * Thread-safety: any thread. */
WEFT_API int weft_shmq_unlink(const char *name);

/* Close this process's handle: unmap the segment, free the handle and give
 * back this process's records in the segment. The queue and its messages
 * stay for the other processes. The creator of a named, non-persistent
 * queue gives up the name (no new process can open it). NULL is a no-op.
 * A child that inherited q over fork() destroys its own copy. No other
 * thread of this process may be using q. Thread-safety: one thread, after
 * the others are done with q. */
WEFT_API void weft_shmq_destroy(weft_shmq *q);

/* The fd of q's segment (a memfd, or the /dev/shm file of a persistent
 * queue), to pass to another process (SCM_RIGHTS) which opens it with
 * weft_shmq_open_fd. It stays q's: never close it. It is close-on-exec.
 * Thread-safety: any thread. */
WEFT_API int weft_shmq_fd(const weft_shmq *q);

/* ----------------------------------------------------------- messages */

/* Put the len bytes at msg, waiting for room until deadline_ns. Returns 0
 * (the message is in the queue); WEFT_EFULL (deadline 0 and no room);
 * WEFT_ETIMEDOUT; WEFT_ESHUTDOWN (the queue was shut down); WEFT_EBADF (q
 * was closed in this process); WEFT_EMSGSIZE (len > msg_max);
 * WEFT_EPEERDIED (a process died: nothing was put, call again);
 * WEFT_ECORRUPT; WEFT_EINVAL (bad deadline). msg may be NULL when len is 0.
 * Ownership: msg is copied before put returns. */
WEFT_API int weft_shmq_put(weft_shmq *q, const void *msg, size_t len, int64_t deadline_ns);

/* Take the next message into buf (cap bytes), waiting until deadline_ns
 * while the queue is empty; its length goes to *len. Returns 0; WEFT_EEMPTY
 * (deadline 0 and empty); WEFT_ETIMEDOUT; WEFT_ESHUTDOWN (shut down and
 * empty, or shut down with immediate); WEFT_EBADF (closed);
 * WEFT_EMSGSIZE (the next message is longer than cap: it stays in the
 * queue, and *len tells its length); WEFT_EPEERDIED (a process died:
 * nothing was taken, call again); WEFT_ECORRUPT; WEFT_EINVAL (bad
 * deadline). buf is written only on 0. */
WEFT_API int weft_shmq_get(weft_shmq *q, void *buf, size_t cap, size_t *len,
                           int64_t deadline_ns);

/* Put n messages (msgs[i] of lens[i] bytes) in order, claiming room for as
 * many as fit at once, waiting for room as put does. Returns 0 when all n
 * were put, or the error of the first one that was not (as put); *n_put
 * (may be NULL) always tells how many were put. */
WEFT_API int weft_shmq_put_many(weft_shmq *q, const void *const *msgs, const size_t *lens,
                                size_t n, int64_t deadline_ns, size_t *n_put);

/* Wait until deadline_ns for at least one message, then take up to max
 * consecutive messages that are ready, as long as they fit in buf (cap
 * bytes): message i is copied to buf + the sum of lens[0..i-1], and its
 * length goes to lens[i]. Returns 0 with *n_got >= 1, or the error get
 * would return with *n_got == 0. */
WEFT_API int weft_shmq_get_many(weft_shmq *q, void *buf, size_t cap, size_t *lens,
                                size_t max, size_t *n_got, int64_t deadline_ns);

/* ------------------------------------------------ task_done, join, end */

/* Tell q that one message taken by a get (in any process) has been fully
 * processed. Returns 0, or WEFT_EINVAL when more task_done than messages
 * taken were counted (Python's ValueError); nothing changes then. */
WEFT_API int weft_shmq_task_done(weft_shmq *q);

/* Wait until every message put has been taken and task_done (Python's
 * JoinableQueue.join). Returns 0; WEFT_ETIMEDOUT; WEFT_EPEERDIED (a process
 * died; with WEFT_SHMQ_JOINABLE its un-done messages are written off, so a
 * later join can return 0); WEFT_EINVAL (bad deadline). A queue shut down
 * with immediate counts as joined. */
WEFT_API int weft_shmq_join(weft_shmq *q, int64_t deadline_ns);

/* Shut q down for every process (Python 3.13): puts fail with
 * WEFT_ESHUTDOWN from now on; gets drain what is inside, then fail with
 * WEFT_ESHUTDOWN; every blocked put, get and join wakes. With immediate,
 * gets fail at once and the messages inside are dropped. Calling it again
 * is harmless (immediate can still be applied). */
WEFT_API void weft_shmq_shutdown(weft_shmq *q, bool immediate);
WEFT_API bool weft_shmq_is_shutdown(const weft_shmq *q);

/* Python's Queue.close(): this handle will put and get no more (both fail
 * with WEFT_EBADF); the other processes are not affected. Unlike Python no
 * feeder thread has to be joined: put has copied each message into the
 * segment before it returned. Returns 0, or WEFT_EBADF when q was already
 * closed. */
WEFT_API int weft_shmq_close(weft_shmq *q);

/* ----------------------------------------------------------- inspecting */

/* Number of messages in the queue: put and not yet taken. Exact when no
 * put or get is under way; otherwise a snapshot. */
WEFT_API size_t weft_shmq_qsize(const weft_shmq *q);
WEFT_API bool weft_shmq_empty(const weft_shmq *q);
/* Whether a message of one slot would not fit now. */
WEFT_API bool weft_shmq_full(const weft_shmq *q);
/* The largest message q takes, and its capacity in bytes. */
WEFT_API size_t weft_shmq_msg_max(const weft_shmq *q);
WEFT_API size_t weft_shmq_capacity(const weft_shmq *q);

/* How many participant processes were found dead while they had a put or
 * get under way (or, with WEFT_SHMQ_JOINABLE, un-done messages), over the
 * queue's life, as counted in the segment. Also looks for such deaths
 * first (reading /proc for each other process using q), so it can be
 * polled. */
WEFT_API uint32_t weft_shmq_peer_deaths(weft_shmq *q);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_SHMQ_H */
