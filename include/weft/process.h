/*
 * weft/process.h: child processes (Python's multiprocessing.Process).
 *
 * weft_process_start runs a function with a copy of an argument bytes block
 * in a new child process. The child has a name ("Process-1", "Process-2",
 * ... as Python numbers them, or one of the caller's), a pid, an exit code
 * (the function's return value, or minus the number of the signal that
 * killed it, as Python's exitcode), and can be joined with a deadline,
 * asked whether it is alive, terminated (SIGTERM) or killed (SIGKILL).
 *
 * Children never outlive the parent: each one has PR_SET_PDEATHSIG set to
 * SIGKILL, tied to a thread of the parent that lives as long as the parent
 * process (never to a thread that may exit before it), and leads a process
 * group of its own, so that destroying its handle while it runs kills the
 * child and everything it started. Children never stay zombies once their
 * handle is joined or destroyed.
 *
 * How a child is made (weft_start_method, see docs/design/process.md):
 *  - fork: the default while the parent runs a single thread. Fast (tens of
 *    microseconds); the child is a copy of the parent, so fn, arg and
 *    everything fn reads are simply there.
 *  - fork server: a small process forked from the parent early (call
 *    weft_forkserver_start() first thing in main, while the program has one
 *    thread) that forks children on request. Children forked from it are
 *    copies of the parent as it was when the server started, single-threaded
 *    and with no lock held by some other thread, so starting processes from
 *    a parent that already runs threads is safe. This is the default for a
 *    threaded parent whenever the server runs. fn must be a function of the
 *    program and everything it reads must exist at the server's start
 *    (globals, not heap objects made later): the argument bytes are what
 *    travels.
 *  - A threaded parent with no fork server forks from one of weft's own
 *    threads that lives as long as the process (so that PR_SET_PDEATHSIG
 *    stays right). The child then inherits the memory of a threaded process:
 *    glibc's own locks (malloc, stdio) are made safe by glibc, weft's by
 *    weft's atfork handlers, but a lock that another thread of the program
 *    held at that moment stays held in the child. Start the fork server to
 *    avoid that.
 *
 * In the child, the function's return value (0..255) is the exit status;
 * stdio is flushed and the child ends with _exit, so the parent's atexit
 * handlers do not run twice. SIGINT from the terminal is not delivered to
 * children (they are in their own process groups): the parent decides.
 */
#ifndef WEFT_PROCESS_H
#define WEFT_PROCESS_H

#include <sys/types.h>

#include "weft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_process weft_process;

/* The body of a child process. arg[0..arg_len) is the child's own copy of
 * the argument. The return value, cut to 0..255, is the exit status. */
typedef int weft_process_fn(const void *arg, size_t arg_len);

typedef enum weft_start_method {
  WEFT_START_AUTO = 0,   /* fork server when it runs and the parent is
                          * threaded, else fork */
  WEFT_START_FORK,       /* fork from the parent (see above) */
  WEFT_START_FORKSERVER  /* through weft_forkserver_start's server */
} weft_start_method;

typedef struct weft_process_opts {
  const char *name;         /* NULL: "Process-N", N counting from 1 in the
                             * parent. Copied; at most 63 bytes are kept. */
  weft_start_method method; /* how to make the child */
} weft_process_opts;

/* Start fn(arg[0..arg_len)) in a new child process (Python's
 * Process(target=fn, args=...).start()). opts may be NULL. The argument is
 * copied before this returns. Returns 0 and *out; WEFT_EINVAL (bad method);
 * WEFT_ENOENT (WEFT_START_FORKSERVER and no server runs); WEFT_E2BIG
 * (through the fork server, an argument above 64 MiB); WEFT_EAGAIN
 * (process limit); WEFT_ENOMEM; another -errno from fork. On error no child
 * runs. Ownership: the caller owns the handle and destroys it.
 * Thread-safety: any thread. */
WEFT_API int weft_process_start(weft_process **out, weft_process_fn *fn, const void *arg,
                                size_t arg_len, const weft_process_opts *opts);

/* Wait until the child has ended (Python's join(timeout)). Returns 0 (the
 * child ended and is reaped: weft_process_exitcode now answers),
 * WEFT_ETIMEDOUT, WEFT_EINVAL (bad deadline). A signal handler that runs
 * meanwhile does not end the wait. Thread-safety: any thread, also several
 * at once. */
WEFT_API int weft_process_join(weft_process *p, int64_t deadline_ns);

/* Whether the child is still running (Python's is_alive()). A child found
 * ended is reaped. Thread-safety: any thread. */
WEFT_API bool weft_process_is_alive(weft_process *p);

/* The exit code (Python's exitcode): 0 and *code, the child's exit status
 * or minus the signal that killed it; WEFT_EBUSY while the child runs
 * (Python's None). A child found ended is reaped. Thread-safety: any
 * thread. */
WEFT_API int weft_process_exitcode(weft_process *p, int *code);

/* Send SIGTERM (terminate, as Python's terminate()) or SIGKILL (kill) to
 * the child, or any signal with weft_process_signal. Returns 0, or 0 doing
 * nothing when the child has already ended (never a signal to another
 * process that reused its pid), WEFT_EINVAL (bad signal number).
 * Thread-safety: any thread. */
WEFT_API int weft_process_terminate(weft_process *p);
WEFT_API int weft_process_kill(weft_process *p);
WEFT_API int weft_process_signal(weft_process *p, int sig);

/* The child's pid (Python's pid). Thread-safety: any thread. */
WEFT_API pid_t weft_process_pid(const weft_process *p);

/* The child's name (Python's name), valid as long as the handle.
 * Thread-safety: any thread. */
WEFT_API const char *weft_process_name(const weft_process *p);

/* Free the handle. A child still running is killed (SIGKILL to its whole
 * process group) and reaped first: join before destroying to let it
 * finish. NULL is a no-op. Thread-safety: one thread, once no other thread
 * uses p. */
WEFT_API void weft_process_destroy(weft_process *p);

/* The name of the calling process (Python's
 * multiprocessing.current_process().name): "MainProcess" in a process that
 * weft did not start, the child's name in a weft_process child. Static
 * storage. Thread-safety: any thread. */
WEFT_API const char *weft_process_current_name(void);

/* Start the fork server (Python's forkserver start method). Call it early,
 * while the program still runs one thread: the server is a copy of the
 * program at this moment, and every child it makes is a copy of that copy.
 * Returns 0 (also when it already runs), WEFT_EBUSY (the calling process
 * already runs more than one thread: a server forked now would carry their
 * locks), or -errno. The server ends when the parent ends (however it
 * ends), killing the children it made, or at weft_forkserver_stop. It
 * serves only the process that started it: a forked child (a process-pool
 * worker, a weft_process child) starts its own if it wants one.
 * Thread-safety: any thread; normally the main thread at start-up. */
WEFT_API int weft_forkserver_start(void);

/* Whether the fork server runs. Thread-safety: any thread. */
WEFT_API bool weft_forkserver_running(void);

/* Stop the fork server: it kills the children it made that still run, and
 * exits; handles of those children see them killed by SIGKILL. A no-op when
 * it does not run. Thread-safety: any thread, once no weft_process_start
 * through the server is under way. */
WEFT_API void weft_forkserver_stop(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROCESS_H */
