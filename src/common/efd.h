/*
 * An eventfd made on first use, for objects that offer an fd to event
 * loops (the queue, the executor). The slot holds -1 until then; the fd is
 * created once, under mu, and never changes after.
 */
#ifndef WEFT_COMMON_EFD_H
#define WEFT_COMMON_EFD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* The fd in *slot, made now (non-blocking, close-on-exec) if there is none
 * yet; *created (may be NULL) says whether this call made it, so that the
 * caller can catch up on events from before. Returns the fd or -errno. */
int weft__efd_get(_Atomic int *slot, pthread_mutex_t *mu, bool *created);

#endif
