/*
 * Shared-memory segments and process liveness, for weft_shmq (and anything
 * else that keeps state in memory shared between processes).
 *
 * A segment is a memfd (anonymous: inherited over fork, its fd passed over a
 * Unix socket), a memfd whose name is published as an abstract Unix socket
 * name held by the creating process (named: nothing in /dev/shm, the name
 * dies with the processes holding it), or a /dev/shm file made with
 * O_CREAT | O_EXCL and mode 0600 (named and persistent). Every mapping sits
 * between two PROT_NONE guard pages, so an access that strays past either
 * end of a segment faults at once instead of touching a neighbour.
 *
 * Liveness: a process is identified by its pid and its start time (field 22
 * of /proc/<pid>/stat, in clock ticks since boot), so a recycled pid is not
 * taken for the process that used to have it. Dead means gone, a zombie or
 * being reaped; stopped (SIGSTOP) and traced processes are alive.
 *
 * Locking: none; a weft__shm is used by one thread at a time (its owner's
 * create, open and close).
 */
#ifndef WEFT_PROCESS_SHM_H
#define WEFT_PROCESS_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT__SHM_NAME_MAX 64

typedef struct weft__shm {
  void *base;       /* the segment's first byte (after the low guard page) */
  size_t size;      /* bytes of segment, a multiple of the page size */
  void *resv;       /* the whole reservation, guards included */
  size_t resv_size; /* bytes of the reservation */
  int fd;           /* the memfd (or -1 for a persistent named segment) */
  int sock;         /* listening abstract socket holding the name, or -1 */
} weft__shm;

/* 0 if name is a valid segment name (1..64 of [A-Za-z0-9._-], not starting
 * with '.'), WEFT_EINVAL or WEFT_ENAMETOOLONG otherwise. */
int weft__shm_name_check(const char *name);

/* Make a zero-filled segment of size bytes (rounded up to pages). name NULL:
 * anonymous memfd. name set and !persistent: a memfd whose name is held by
 * this process (WEFT_EEXIST if taken). persistent: /dev/shm/weft.<name>,
 * O_EXCL, mode 0600. The caller writes the contents before anyone can find
 * them only in the anonymous case; named segments can be opened as soon as
 * this returns, so their users must check a ready mark. */
int weft__shm_create(weft__shm *s, size_t size, const char *name, bool persistent);
/* Open a named segment (persistent first, then one held by a live
 * process). WEFT_ENOENT if there is none. */
int weft__shm_open_name(weft__shm *s, const char *name);
/* Map the segment fd refers to (dup'ed; fd stays the caller's). */
int weft__shm_open_fd(weft__shm *s, int fd);
/* Unmap, close the fd and give up a held name. */
void weft__shm_close(weft__shm *s);
/* Remove a persistent name. */
int weft__shm_unlink(const char *name);
/* Accept and drop the connections that openers left on a held name (they
 * only needed the holder's pid). Cheap; call now and then. */
void weft__shm_service(weft__shm *s);

/* This process's start time (cached per process, refreshed after fork). */
uint64_t weft__proc_self_start(void);
/* 1 if process pid with start time start is alive, 0 if it is dead (or pid
 * now belongs to another process). Reads /proc/<pid>/stat. */
int weft__proc_alive(int32_t pid, uint64_t start);
/* The same by pid alone, for a record that holds no start time: 0 when no
 * such process lives (or it is a zombie), 1 otherwise (a reused pid counts as
 * alive: a wrong "alive" only delays, a wrong "dead" would corrupt). */
int weft__proc_alive_pid(int32_t pid);

#endif
