/*
 * Lazily made eventfds (see efd.h). Locking: mu serialises creation only;
 * readers of the slot take the acquire load of a value that never changes
 * once set.
 */
#include <errno.h>
#include <sys/eventfd.h>

#include "common/efd.h"

int weft__efd_get(_Atomic int *slot, pthread_mutex_t *mu, bool *created) {
  bool made = false;
  int f = atomic_load_explicit(slot, memory_order_acquire);
  if (f < 0) {
    pthread_mutex_lock(mu);
    f = atomic_load_explicit(slot, memory_order_relaxed);
    if (f < 0) {
      f = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (f < 0) {
        f = -errno;
      } else {
        atomic_store(slot, f); /* seq_cst: see the queue's catch-up */
        made = true;
      }
    }
    pthread_mutex_unlock(mu);
  }
  if (created) *created = made;
  return f;
}
