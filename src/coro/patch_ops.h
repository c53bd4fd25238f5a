/*
 * The table through which libweft_patch (src/patch/) reaches the hub.
 *
 * libweft_patch is a separate shared library that defines libc's blocking
 * calls (read, recv, poll, sleep, ...) and forwards them with
 * dlsym(RTLD_NEXT). It does not link against libweft: weft_patch_all(), in
 * libweft, finds weft__patch_enable() in the process with dlsym and hands it
 * this table. So the wrappers always talk to the very copy of the hub that
 * the program's coroutines run on, whether the program linked libweft as a
 * shared library or statically, and a program that never calls
 * weft_patch_all pays nothing: libweft itself defines no libc symbol.
 *
 * Every function here runs on the calling thread's hub only; h is the value
 * coop_hub() returned on this thread. Codes are 0 or -errno.
 */
#ifndef WEFT_CORO_PATCH_OPS_H
#define WEFT_CORO_PATCH_OPS_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT__PATCH_OPS_VERSION 1

typedef struct weft__patch_ops {
  int version;   /* WEFT__PATCH_OPS_VERSION */
  size_t size;   /* sizeof(weft__patch_ops) */
  /* The calling thread's hub if a wrapped call should wait cooperatively
   * now (a hub runs on this thread and the caller is one of its coroutines,
   * not its scheduler), else NULL. */
  void *(*coop_hub)(void);
  /* The calling thread's hub, running or not in a coroutine, or NULL. */
  void *(*hub)(void);
  /* Park until one of fds[0..n) is ready for what its .events ask
   * (POLLIN/POLLPRI/POLLRDHUP: readable; POLLOUT: writable; 0: either), the
   * deadline passes (-ETIMEDOUT), the coroutine is cancelled (-ECANCELED),
   * or a waited descriptor is closed through weft (-EBADF). Entries with
   * fd < 0 are skipped. check_first: poll without blocking first and
   * return 0 at once if something is ready. Spurious returns of 0 are
   * allowed: the caller retries its call. A descriptor epoll cannot watch
   * (a regular file) counts as ready. */
  int (*wait)(void *h, const struct pollfd *fds, size_t n, int64_t deadline,
              bool check_first);
  /* Park until the deadline: 0, or -ECANCELED. */
  int (*sleep)(void *h, int64_t deadline);
  /* Descriptors [lo, hi] are about to be closed or replaced: wake their
   * waiters with -EBADF and forget their registrations. */
  void (*fds_closed)(void *h, int lo, int hi);
  /* Run fn(arg) on weft's offload thread pool while the coroutine waits.
   * 0 once fn has run; -ECANCELED / -ENOMEM / ... if it never ran. */
  int (*offload)(void *h, int (*fn)(void *), void *arg);
} weft__patch_ops;

/* Defined by libweft_patch: switch the wrappers on. 0, or -ENOTSUP when
 * the wrappers are not the ones the process resolves libc's names to. */
typedef int weft__patch_enable_fn(const weft__patch_ops *ops);

#endif
