/*
 * Internal: how weft makes and watches child processes, shared by
 * weft_process (process.c) and the process-pool executor
 * (executor/pool_process.c).
 */
#ifndef WEFT_PROCESS_PROC_IMPL_H
#define WEFT_PROCESS_PROC_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

/* fork() from the calling thread, with weft's child set-up done before it
 * returns in the child: PR_SET_PDEATHSIG(SIGKILL) tied to the calling
 * thread (so call it only from a thread that lives as long as the child
 * should), a check that the parent did not die before that took effect
 * (the child then _exits), and a process group of its own (set from both
 * sides, so that it holds as soon as either returns). Returns 0 in both:
 * in the child *pid == 0; in the parent *pid is the child and *pidfd a
 * pidfd for it (-1 when the kernel has none). -errno on failure (no child). */
int weft__proc_fork(pid_t *pid, int *pidfd);

/* Python's exitcode from a waitid result: the exit status, or minus the
 * signal that killed the child. */
int weft__proc_exitcode(const siginfo_t *si);

/* Wait until the child behind pidfd (or pid, when pidfd < 0) has ended,
 * without reaping it. 0, or -ETIMEDOUT at deadline_ns. */
int weft__proc_wait_ended(pid_t pid, int pidfd, int64_t deadline_ns);

/* Send sig through pidfd (never to a reused pid); pid when pidfd < 0. */
int weft__proc_signal(pid_t pid, int pidfd, int sig);

/* Set the calling process's name as weft_process_current_name reports it
 * (in a child). */
void weft__proc_set_current_name(const char *name);

/* How many threads the calling process runs (from /proc/self/stat); 0 if
 * it cannot tell. */
int weft__proc_thread_count(void);

#endif
