/*
 * The hub's door from other threads, and what goes through it: waiting on
 * weft futures, offloading blocking functions to a thread pool (gevent's
 * ThreadPool), and name lookup on that pool.
 *
 * The remote inbox: a list of finished waits, pushed by whatever thread
 * finishes a future (from the future's done callback) and drained by the
 * hub when its eventfd, which sits in the hub's epoll set, becomes
 * readable. Each wait record (struct fwait) is shared by the parked
 * coroutine and the callback and freed by whichever lets go last; each
 * holds a reference on the inbox, so a callback that fires after its hub's
 * thread exited still finds a live inbox (marked dead: it drops the record).
 *
 * Locking: remote->mu guards remote->head and remote->dead, and is held
 * while the eventfd is written, so the inbox cannot be freed under the
 * writer. Reference counts are atomic. Hub-side fields (fwait.coro, the
 * hub's list of records) are touched by the hub's thread only. No user code
 * runs under the lock.
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"

struct weft__remote {
  pthread_mutex_t mu;
  struct fwait *head;  /* finished waits, guarded by mu */
  bool dead;           /* the hub is gone; guarded by mu */
  atomic_int refs;     /* the hub's + one per wait record */
  int efd;
  weft__list waits;    /* hub thread only: records a coroutine still holds */
};

struct fwait {
  struct fwait *next;     /* in remote->head */
  struct weft__remote *r;
  weft_coro *coro;        /* hub thread: the parked coroutine, NULL once it let go */
  weft__list link;        /* hub thread: in r->waits while the coroutine holds it */
  atomic_int refs;        /* the coroutine's and the callback's */
};

static void remote_release(struct weft__remote *r) {
  if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
  close(r->efd);
  pthread_mutex_destroy(&r->mu);
  weft__free(r);
}

static void fwait_release(struct fwait *fw) {
  if (atomic_fetch_sub_explicit(&fw->refs, 1, memory_order_acq_rel) != 1) return;
  struct weft__remote *r = fw->r;
  weft__free(fw);
  remote_release(r);
}

int weft__remote_init(weft__hub *h) {
  struct weft__remote *r = weft__calloc(1, sizeof *r);
  if (!r) return WEFT_ENOMEM;
  r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->efd < 0) {
    int e = -errno;
    weft__free(r);
    return e;
  }
  pthread_mutex_init(&r->mu, NULL);
  atomic_init(&r->refs, 1);
  weft__list_init(&r->waits);
  int e = weft__poll_add_remote(h, r->efd);
  if (e) {
    close(r->efd);
    weft__free(r);
    return e;
  }
  h->remote = r;
  return 0;
}

void weft__remote_atfork_child(weft__hub *h) {
  struct weft__remote *r = h->remote;
  if (!r) return;
  /* The lock may have been held by a thread that does not exist here; the
   * eventfd is shared with the parent. Keep the record (waits in progress
   * point to it) with a fresh lock and an eventfd of the child's own;
   * completions already in the list are the child's too. */
  pthread_mutex_init(&r->mu, NULL);
  close(r->efd);
  r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->efd < 0) return; /* waits on futures then end at their deadlines */
  weft__poll_add_remote(h, r->efd);
  if (r->head) {
    uint64_t one = 1;
    ssize_t n = write(r->efd, &one, sizeof one);
    (void)n;
  }
}

int weft__remote_fd(const weft__hub *h) { return h->remote ? h->remote->efd : -1; }

void weft__remote_drain(weft__hub *h) {
  struct weft__remote *r = h->remote;
  uint64_t v;
  ssize_t n = read(r->efd, &v, sizeof v);
  (void)n;
  pthread_mutex_lock(&r->mu);
  struct fwait *fw = r->head;
  r->head = NULL;
  pthread_mutex_unlock(&r->mu);
  while (fw) {
    struct fwait *next = fw->next;
    if (fw->coro) weft__wake(fw->coro, 0);
    fwait_release(fw); /* the callback's reference */
    fw = next;
  }
}

void weft__remote_fini(weft__hub *h) {
  struct weft__remote *r = h->remote;
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->dead = true;
  struct fwait *fw = r->head;
  r->head = NULL;
  pthread_mutex_unlock(&r->mu);
  while (fw) {
    struct fwait *next = fw->next;
    fwait_release(fw);
    fw = next;
  }
  /* Records still held by coroutines that will never run again. */
  weft__list *p;
  while ((p = weft__list_pop_front(&r->waits)) != NULL)
    fwait_release(weft__container_of(p, struct fwait, link));
  h->remote = NULL;
  remote_release(r);
}

/* Runs on the thread that finished the future (or at once, on the hub's
 * thread, if it was already finished). */
static void on_future_done(weft_future *f, void *ud) {
  (void)f;
  struct fwait *fw = ud;
  struct weft__remote *r = fw->r;
  pthread_mutex_lock(&r->mu);
  if (r->dead) {
    pthread_mutex_unlock(&r->mu);
    fwait_release(fw);
    return;
  }
  bool first = r->head == NULL;
  fw->next = r->head;
  r->head = fw;
  if (first) {
    uint64_t one = 1;
    ssize_t n = write(r->efd, &one, sizeof one);
    (void)n; /* a full counter is still readable: the hub drains all */
  }
  pthread_mutex_unlock(&r->mu);
}

static int future_wait(weft__hub *h, weft_future *f, int64_t deadline, bool cancellable) {
  if (weft_future_done(f)) return 0;
  if (cancellable && h->current->cancelled) return WEFT_ECANCELED;
  if (deadline == 0) return WEFT_ETIMEDOUT;
  struct fwait *fw = weft__calloc(1, sizeof *fw);
  if (!fw) return WEFT_ENOMEM;
  fw->r = h->remote;
  atomic_fetch_add_explicit(&h->remote->refs, 1, memory_order_relaxed);
  atomic_init(&fw->refs, 2);
  fw->coro = h->current;
  weft__list_push_back(&h->remote->waits, &fw->link);
  if (weft_future_on_done(f, on_future_done, fw) != 0) {
    weft__list_remove(&fw->link);
    atomic_store(&fw->refs, 1);
    fwait_release(fw);
    return WEFT_ENOMEM;
  }
  int e;
  do {
    h->remote_pending++;
    e = weft__park(h, deadline, "future", cancellable, NULL);
    h->remote_pending--;
    /* Woken by the inbox (0): the future is done. */
  } while (e == 0 && !weft_future_done(f));
  fw->coro = NULL;
  weft__list_remove(&fw->link);
  fwait_release(fw);
  return weft_future_done(f) ? 0 : e;
}

int weft_coro_future_wait(weft_future *f, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(f);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  return future_wait(h, f, deadline_ns, true);
}

/* ------------------------------------------------------------- offload */

/* weft's own offload pool, made on first use. A forked child has none of
 * its threads: the child makes a pool of its own (the parent's copy is left
 * alone, as it cannot be shut down without its threads). pool_mu guards
 * default_pool; the atfork handler resets both in the child. */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static weft_executor *default_pool;
static pthread_once_t pool_atfork_once = PTHREAD_ONCE_INIT;

static void pool_atfork_child(void) {
  pthread_mutex_init(&pool_mu, NULL);
  default_pool = NULL;
}

static void pool_atfork_install(void) { pthread_atfork(NULL, NULL, pool_atfork_child); }

static weft_executor *offload_pool(void) {
  pthread_once(&pool_atfork_once, pool_atfork_install);
  pthread_mutex_lock(&pool_mu);
  if (!default_pool) {
    weft_executor_opts o = {.kind = WEFT_EXECUTOR_THREADS, .workers = 8, .name = "weft-offload"};
    if (weft_executor_create(&default_pool, &o) != 0) default_pool = NULL;
  }
  weft_executor *ex = default_pool;
  pthread_mutex_unlock(&pool_mu);
  return ex;
}

struct offload_arg {
  weft_offload_fn *fn;
  void *arg;
};

static int offload_task_fn(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)len;
  struct offload_arg a;
  memcpy(&a, arg, sizeof a);
  int r = a.fn(a.arg);
  return weft_task_return(ctx, &r, sizeof r);
}

static const weft_task offload_task = {.name = NULL, .fn = offload_task_fn};

int weft_coro_offload(weft_executor *ex, weft_offload_fn *fn, void *arg, int64_t deadline_ns,
                      int *result) {
  if (!fn) weft__misuse(__func__, "argument 'fn' is NULL");
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  if (h->current->cancelled) return WEFT_ECANCELED;
  if (!ex) ex = offload_pool();
  if (!ex) return WEFT_ENOMEM;
  struct offload_arg a = {fn, arg};
  weft_future *f;
  int e = weft_executor_submit(ex, &offload_task, &a, sizeof a, &f);
  if (e) return e;
  e = future_wait(h, f, deadline_ns, true);
  if (e == WEFT_ENOMEM) {
    weft_future_wait(f, WEFT_FOREVER); /* no memory to park: block the thread */
    e = 0;
  } else if (e) {
    if (weft_future_cancel(f) == 0) {
      weft_future_release(f);
      return e; /* fn never ran */
    }
    /* fn runs (or just ran) and may use arg: wait for it. */
    if (future_wait(h, f, WEFT_FOREVER, false) != 0) weft_future_wait(f, WEFT_FOREVER);
  }
  const void *data;
  size_t len;
  int r = weft_future_result(f, 0, &data, &len);
  if (r == 0 && len == sizeof(int) && result) memcpy(result, data, sizeof(int));
  weft_future_release(f);
  return e ? e : r;
}

/* ------------------------------------------------------------ name lookup */

struct gai {
  atomic_int refs;      /* the waiter's and the task's */
  char *node, *service; /* copies */
  struct addrinfo hints;
  bool has_hints;
  struct addrinfo *res; /* owned here until the waiter takes it */
  int rc;
  int sys_errno;
};

static void gai_release(struct gai *g) {
  if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) return;
  if (g->res) freeaddrinfo(g->res);
  weft__free(g->node);
  weft__free(g->service);
  weft__free(g);
}

static int gai_task_fn(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)ctx, (void)len;
  struct gai *g;
  memcpy(&g, arg, sizeof g);
  errno = 0;
  g->rc = getaddrinfo(g->node, g->service, g->has_hints ? &g->hints : NULL, &g->res);
  g->sys_errno = errno;
  gai_release(g);
  return 0;
}

static const weft_task gai_task = {.name = NULL, .fn = gai_task_fn};

static int gai_code(int rc, int sys_errno) {
  switch (rc) {
  case 0: return 0;
  case EAI_NONAME:
#ifdef EAI_NODATA
  case EAI_NODATA:
#endif
    return WEFT_ENOENT;
  case EAI_AGAIN: return WEFT_EAGAIN;
  case EAI_BADFLAGS:
  case EAI_FAMILY:
  case EAI_SOCKTYPE:
  case EAI_SERVICE: return WEFT_EINVAL;
  case EAI_MEMORY: return WEFT_ENOMEM;
  case EAI_SYSTEM: return sys_errno ? -sys_errno : WEFT_EIO;
  default: return WEFT_EIO;
  }
}

int weft_coro_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(res);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (!node && !service) return WEFT_ENOENT;
  weft__hub *h = weft__hub_start(__func__);
  if (h->current->cancelled) return WEFT_ECANCELED;
  weft_executor *ex = offload_pool();
  if (!ex) return WEFT_ENOMEM;
  struct gai *g = weft__calloc(1, sizeof *g);
  if (!g) return WEFT_ENOMEM;
  atomic_init(&g->refs, 2);
  if ((node && !(g->node = weft__strdup(node))) ||
      (service && !(g->service = weft__strdup(service)))) {
    atomic_store(&g->refs, 1);
    gai_release(g);
    return WEFT_ENOMEM;
  }
  if (hints) {
    g->hints = *hints;
    g->hints.ai_addr = NULL;
    g->hints.ai_canonname = NULL;
    g->hints.ai_next = NULL;
    g->has_hints = true;
  }
  weft_future *f;
  int e = weft_executor_submit(ex, &gai_task, &g, sizeof g, &f);
  if (e) {
    atomic_store(&g->refs, 1);
    gai_release(g);
    return e;
  }
  e = future_wait(h, f, deadline_ns, true);
  if (e == WEFT_ENOMEM) {
    weft_future_wait(f, WEFT_FOREVER);
    e = 0;
  }
  if (e) {
    /* Abandon: a lookup that never started drops the task's reference
     * here; a running one drops it (and frees the result) when done. */
    if (weft_future_cancel(f) == 0) gai_release(g);
    weft_future_release(f);
    gai_release(g);
    return e;
  }
  weft_future_release(f);
  e = gai_code(g->rc, g->sys_errno);
  if (e == 0) {
    *res = g->res;
    g->res = NULL;
  }
  gai_release(g);
  return e;
}
