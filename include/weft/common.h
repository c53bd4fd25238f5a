/*
 * weft/common.h: what every part of weft shares.
 *
 * Error codes, monotonic time and absolute deadlines, the usable CPU count,
 * the allocator hook and the library version. Every other weft header
 * includes this one.
 *
 * Conventions kept by the whole API:
 *  - A call that can fail returns int: 0, or a negative error code. System
 *    failures are -errno (WEFT_ETIMEDOUT == -ETIMEDOUT); weft's own codes sit
 *    in a range far below every errno value. A call that returns an error
 *    never runs its callback and changes nothing the caller can see.
 *  - Constructors return the object through an out-parameter; destroy(NULL)
 *    is a no-op.
 *  - Every blocking call takes an absolute deadline in nanoseconds on
 *    CLOCK_MONOTONIC: WEFT_FOREVER waits forever, 0 (or any time already
 *    past) never blocks. Any other negative deadline is WEFT_EINVAL.
 *  - Values that come from data (sizes, names, deadlines) get an error code;
 *    programmer misuse (a NULL handle, a call from the wrong thread) aborts
 *    at once with a message that names the call.
 */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEFT_BUILDING)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/* --------------------------------------------------------------- version */

/* The version of these headers, the one compiled against. */
#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_HEX \
  ((WEFT_VERSION_MAJOR << 16) | (WEFT_VERSION_MINOR << 8) | WEFT_VERSION_PATCH)

/* The version of the library actually linked, as WEFT_VERSION_HEX and as
 * "MAJOR.MINOR.PATCH" (a static string). Compare with the WEFT_VERSION_*
 * macros, which give the version of the headers compiled against.
 * Thread-safety: any thread. */
WEFT_API unsigned weft_version(void);
WEFT_API const char *weft_version_string(void);

/* ---------------------------------------------------------------- errors */

/* System errors that weft's calls return, as negative errno values. Any
 * other -errno a call documents may also appear; weft_strerror() and
 * weft_err_name() name every one. */
#define WEFT_EPERM           (-EPERM)
#define WEFT_ENOENT          (-ENOENT)
#define WEFT_EINTR           (-EINTR)
#define WEFT_EIO             (-EIO)
#define WEFT_E2BIG           (-E2BIG)
#define WEFT_EBADF           (-EBADF)
#define WEFT_ECHILD          (-ECHILD)
#define WEFT_EAGAIN          (-EAGAIN)
#define WEFT_ENOMEM          (-ENOMEM)
#define WEFT_EACCES          (-EACCES)
#define WEFT_EFAULT          (-EFAULT)
#define WEFT_EBUSY           (-EBUSY)
#define WEFT_EEXIST          (-EEXIST)
#define WEFT_EINVAL          (-EINVAL)
#define WEFT_EMFILE          (-EMFILE)
#define WEFT_ENOSPC          (-ENOSPC)
#define WEFT_EPIPE           (-EPIPE)
#define WEFT_ERANGE          (-ERANGE)
#define WEFT_EDEADLK         (-EDEADLK)
#define WEFT_ENAMETOOLONG    (-ENAMETOOLONG)
#define WEFT_ENOSYS          (-ENOSYS)
#define WEFT_EOVERFLOW       (-EOVERFLOW)
#define WEFT_EMSGSIZE        (-EMSGSIZE)
#define WEFT_ENOTSUP         (-ENOTSUP)
#define WEFT_ECONNRESET      (-ECONNRESET)
#define WEFT_ETIMEDOUT       (-ETIMEDOUT)
#define WEFT_ECONNREFUSED    (-ECONNREFUSED)
#define WEFT_EALREADY        (-EALREADY)
#define WEFT_ECANCELED       (-ECANCELED)
#define WEFT_EOWNERDEAD      (-EOWNERDEAD)
#define WEFT_ENOTRECOVERABLE (-ENOTRECOVERABLE)

/* weft's own codes, far below every errno value. */
#define WEFT_ERRNO_BASE (-30000)
#define WEFT_ESHUTDOWN   (WEFT_ERRNO_BASE - 1) /* object was shut down (queue.ShutDown) */
#define WEFT_EBROKEN     (WEFT_ERRNO_BASE - 2) /* executor or barrier is broken */
#define WEFT_EWORKERDIED (WEFT_ERRNO_BASE - 3) /* worker died while running the task */
#define WEFT_ETASKFAILED (WEFT_ERRNO_BASE - 4) /* the task returned an error */
#define WEFT_EPEERDIED   (WEFT_ERRNO_BASE - 5) /* a peer process or rank died */
#define WEFT_ENOTASK     (WEFT_ERRNO_BASE - 6) /* no task registered under that name */
#define WEFT_EFULL       (WEFT_ERRNO_BASE - 7) /* queue is full (queue.Full) */
#define WEFT_EEMPTY      (WEFT_ERRNO_BASE - 8) /* queue is empty (queue.Empty) */
#define WEFT_ECORRUPT    (WEFT_ERRNO_BASE - 9) /* shared data failed a consistency check */
#define WEFT_ERRNO_LAST  WEFT_ECORRUPT

/* A one-line English description of an error code ("queue is full"); 0
 * gives "success". Never NULL: an unknown code (including a positive errno
 * value: weft's codes are negative) gives "unknown error". The string is
 * static. Thread-safety: any thread. */
WEFT_API const char *weft_strerror(int err);

/* The symbolic name of an error code: "WEFT_EFULL", "ETIMEDOUT" for system
 * errors, "OK" for 0. Never NULL: an unknown code gives "UNKNOWN". Aliased
 * errno values have one name (WEFT_EAGAIN == -EWOULDBLOCK is "EAGAIN"). The
 * string is static. Thread-safety: any thread. */
WEFT_API const char *weft_err_name(int err);

/* ------------------------------------------------------------------ time */

/* Deadline meaning "wait forever". 0 means "do not block". */
#define WEFT_FOREVER ((int64_t)-1)

/* Nanoseconds on CLOCK_MONOTONIC (since boot; never jumps back).
 * Thread-safety: any thread. */
WEFT_API int64_t weft_now_ns(void);

/* Absolute deadline that falls timeout_ns / timeout_ms / timeout_s from now.
 * A negative timeout gives WEFT_FOREVER (as poll(2)'s -1 and Python's None);
 * 0 gives a deadline that is already due, so the call tries once and does not
 * block. Overflow (a huge timeout, +infinity) saturates to INT64_MAX, the far
 * future, never wrapping into the past. A NaN timeout_s is treated as
 * forever. timeout_s is rounded up to whole nanoseconds, so a positive
 * timeout never gives a deadline before the time asked for.
 * Thread-safety: any thread. */
WEFT_API int64_t weft_deadline_in_ns(int64_t timeout_ns);
WEFT_API int64_t weft_deadline_in_ms(int64_t timeout_ms);
WEFT_API int64_t weft_deadline_in_s(double timeout_s);

/* Nanoseconds left until deadline: 0 when due, INT64_MAX for WEFT_FOREVER.
 * An invalid deadline (below WEFT_FOREVER) reads as due: 0.
 * Thread-safety: any thread. */
WEFT_API int64_t weft_deadline_remaining_ns(int64_t deadline_ns);

/* Sleep until deadline_ns. Returns 0 when the deadline is reached (at once
 * for 0 or any time already past), WEFT_EINVAL for a deadline below
 * WEFT_FOREVER. WEFT_FOREVER sleeps for good. A signal does not end the
 * sleep early: its handler runs, then the sleep goes on. For a sleep that a
 * stop request can end, see weft_thread_sleep_until. Thread-safety: any
 * thread. */
WEFT_API int weft_sleep_until(int64_t deadline_ns);

/* ------------------------------------------------------------- CPU count */

/* How many CPUs this process may really use: the CPUs in its affinity mask,
 * lowered to the cgroup CPU quota (cgroup v2 cpu.max or v1
 * cpu.cfs_quota_us / cpu.cfs_period_us, rounded up) when one is set on the
 * process's cgroup or any ancestor. Always at least 1. Read afresh on every
 * call (it reads a few small files: do not call it in a hot loop). Does not
 * allocate through the allocator hook. Thread-safety: any thread. */
WEFT_API int weft_cpu_count(void);

/* ------------------------------------------------------------- allocator */

/* The allocator weft uses for all of its own memory. Each function receives
 * ud. malloc_fn and realloc_fn are never asked for 0 bytes. realloc_fn and
 * free_fn are called only on pointers that the same allocator returned
 * (never NULL: weft calls malloc_fn to allocate afresh). malloc_fn and
 * realloc_fn may return NULL; weft then fails the call with WEFT_ENOMEM,
 * and a failed realloc_fn must leave the old block intact, as realloc(3)
 * does. The functions are called from any thread, concurrently: they must
 * be thread-safe, and must not call weft calls that allocate (that would
 * recurse). */
typedef struct weft_allocator {
  void *(*malloc_fn)(size_t size, void *ud);
  void *(*realloc_fn)(void *ptr, size_t size, void *ud);
  void (*free_fn)(void *ptr, void *ud);
  void *ud;
} weft_allocator;

/* Install an allocator (NULL restores malloc/realloc/free). Must be called
 * before weft allocates anything: once weft has allocated, returns
 * WEFT_EBUSY and changes nothing, since memory would otherwise be freed by
 * an allocator that did not return it. Until then it may be called again to
 * replace the hook. WEFT_EINVAL (checked first) if a function pointer is
 * NULL. The struct is copied; ud is borrowed for the rest of the process.
 * Calls that need no memory (errors, time, weft_cpu_count) do not count as
 * allocating. Thread-safety: call it from one thread, before any other weft
 * call. */
WEFT_API int weft_set_allocator(const weft_allocator *alloc);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_COMMON_H */
