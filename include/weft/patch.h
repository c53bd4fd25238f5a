/*
 * weft/patch.h: weft_patch_all(), gevent's monkey.patch_all() for C.
 *
 * After one call at the top of main, unmodified code that calls blocking
 * libc functions runs cooperatively when it runs inside a coroutine: the
 * call parks the coroutine and the hub serves the others until the
 * descriptor is ready or the time has passed. Outside a coroutine (another
 * thread, before the thread's hub starts, the hub's own scheduler) every
 * call behaves exactly as before. This holds for code in shared libraries
 * weft did not compile (a database client, say), because the functions are
 * replaced by symbol interposition, not by recompiling anything.
 *
 * Linking. The replacements live in a separate library, libweft_patch,
 * which defines read, write, recv, poll, sleep, ... and forwards each call
 * to libc's own through dlsym(RTLD_NEXT). A program that wants patching
 * links it (CMake: weft::patch; by hand: -Wl,--no-as-needed -lweft_patch,
 * because nothing refers to it by name) or runs with
 * LD_PRELOAD=libweft_patch.so; weft_patch_all() then switches it on. A
 * program that does not has no libc function replaced and pays nothing.
 *
 * Covered: read, write, readv, writev, recv, send, recvfrom, sendto,
 * recvmsg, sendmsg, accept, accept4, connect, poll, select, epoll_wait,
 * sleep, usleep, nanosleep, clock_nanosleep, getaddrinfo; and close, dup2, dup3,
 * close_range, closefrom, fclose, which tell the hub a descriptor is gone
 * (its waiters wake with EBADF and its registration is dropped). Not
 * covered, and why: stdio and other calls glibc makes to itself (fread,
 * fgets, printf reach read/write through glibc-internal names that cannot
 * be interposed); ppoll, pselect, epoll_pwait, sigwait, waitpid, futexes,
 * pthread locks and condition variables (they block the whole thread, as
 * under gevent: use weft's coroutine sync objects or offload); file I/O on
 * regular files (always "ready" for poll: it blocks the hub for the disk,
 * as in gevent). See docs/design/patch.md for the details.
 *
 * Semantics inside a coroutine:
 *  - A call on a descriptor the program made non-blocking (O_NONBLOCK, or
 *    MSG_DONTWAIT in the call) is passed through unchanged: it never waits.
 *  - O_NONBLOCK is never set on a descriptor behind the program's back,
 *    except around the one connect(2) system call on a socket being
 *    connected (a socket that is not yet connected is not shared with
 *    another process in practice), which is switched back before waiting.
 *    Sockets are read and written with MSG_DONTWAIT; pipes, ttys and other
 *    descriptors are polled for readiness before the call.
 *  - Blocking semantics are kept: a write or send on a stream socket or a
 *    pipe returns only when everything is written (or on an error, with
 *    the count written so far); MSG_WAITALL waits for the full length;
 *    SO_RCVTIMEO and SO_SNDTIMEO are honoured (EAGAIN, EINPROGRESS for
 *    connect); poll and select keep their timeouts and select writes back
 *    the time left, as Linux does.
 *  - errno is exact: what libc would have set on failure, unchanged on
 *    success.
 *  - A cancelled coroutine's wrapped call fails with errno ECANCELED (sleep
 *    returns the seconds left), so that code which retries on EINTR does
 *    not spin.
 *  - Closing (through any of the calls above) a descriptor that another
 *    coroutine of the same hub waits on wakes that coroutine: its call
 *    fails with EBADF.
 *
 * A forked child stays patched, as under gevent: the hub gives the child an
 * epoll set of its own, so parent and child never take each other's events.
 *
 * Statically linked programs: a static executable has no dynamic symbol
 * lookup, so nothing can be interposed; libweft_patch is built only as a
 * shared library and weft_patch_all() returns WEFT_ENOTSUP there. Such
 * programs call weft_coro_read and the other cooperative calls directly.
 *
 * Thread-safety: both calls may be made from any thread. Patching is
 * process-wide and cannot be switched off; it affects only threads that run
 * a hub, and on those only code running in a coroutine.
 */
#ifndef WEFT_PATCH_H
#define WEFT_PATCH_H

#include <stdbool.h>

#include "weft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Switch libweft_patch's libc wrappers on for the whole process (gevent's
 * monkey.patch_all()). Call it once, early in main, before any coroutine
 * relies on it; calling it again is harmless. Returns 0; WEFT_ENOTSUP when
 * libweft_patch is not loaded in the process (not linked, dropped by
 * --as-needed, or a statically linked program) or when its wrappers are
 * not the functions the process resolves libc's names to (it was loaded
 * after libc).
 * Thread-safety: any thread. */
WEFT_API int weft_patch_all(void);

/* Whether weft_patch_all() has succeeded in this process (or in the
 * parent it was forked from).
 * Thread-safety: any thread. */
WEFT_API bool weft_patch_active(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PATCH_H */
