/*
 * The hub: one per thread, started by the first coroutine call on it. It
 * owns the ready queue, the timer heap, the poller (poll.c), the stack cache
 * (stack.c) and every coroutine record, and it switches between coroutines.
 *
 * There is no separate scheduler coroutine (gevent has one): a coroutine
 * that blocks picks the next ready one itself and switches straight to it,
 * so a hand-off costs one context switch, not two. When nothing is ready,
 * the blocking coroutine polls I/O and timers on its own stack until
 * something is. Every 64 dispatches a non-blocking poll runs first, so a set
 * of coroutines that keep yielding cannot starve I/O or timers.
 *
 * Locking: none. Everything here is touched only by the hub's own thread;
 * the remote inbox (offload.c) is the only cross-thread path.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "coro/coro_impl.h"
#include "coro/sanitize.h"

/* initial-exec: the hub pointer is read on every call, and the library is
 * built position-independent, where the default TLS model costs a call to
 * __tls_get_addr per access. One pointer of static TLS is well within what
 * the C library sets aside for libraries, even for one loaded by dlopen. */
/* Blocking calls link a waiter that lives on their own stack into an
 * object's list and always unlink it before returning (see coro_impl.h);
 * GCC's -Wdangling-pointer cannot see the unlink and warns at -O2. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif

__thread weft__hub *weft__tls_hub __attribute__((tls_model("initial-exec")));
#define tls_hub weft__tls_hub
static pthread_key_t hub_key;
static pthread_once_t hub_key_once = PTHREAD_ONCE_INIT;

struct weft_coro_group {
  weft__hub *hub;
  weft__list members;  /* weft_coro.group_link, unfinished members */
  size_t count;
  weft__list joiners;  /* weft__waiter */
};

/* ------------------------------------------------------------- timers */

static bool timer_before(const weft_coro *a, const weft_coro *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->timer_seq < b->timer_seq);
}

static void heap_set(weft__hub *h, size_t i, weft_coro *c) {
  h->heap[i - 1] = c;
  c->heap_idx = i;
}

static void heap_up(weft__hub *h, size_t i) {
  weft_coro *c = h->heap[i - 1];
  while (i > 1) {
    weft_coro *p = h->heap[i / 2 - 1];
    if (!timer_before(c, p)) break;
    heap_set(h, i, p);
    i /= 2;
  }
  heap_set(h, i, c);
}

static void heap_down(weft__hub *h, size_t i) {
  weft_coro *c = h->heap[i - 1];
  for (;;) {
    size_t l = 2 * i, m = i;
    weft_coro *best = c;
    if (l <= h->heap_len && timer_before(h->heap[l - 1], best)) m = l, best = h->heap[l - 1];
    if (l + 1 <= h->heap_len && timer_before(h->heap[l], best)) m = l + 1, best = h->heap[l];
    if (m == i) break;
    heap_set(h, i, best);
    i = m;
  }
  heap_set(h, i, c);
}

static int timer_add(weft__hub *h, weft_coro *c, int64_t deadline) {
  if (h->heap_len == h->heap_cap) {
    size_t cap = h->heap_cap ? h->heap_cap * 2 : 64;
    weft_coro **n = weft__realloc(h->heap, cap * sizeof *n);
    if (!n) return WEFT_ENOMEM;
    h->heap = n;
    h->heap_cap = cap;
  }
  c->deadline = deadline;
  c->timer_seq = h->timer_seq++;
  h->heap[h->heap_len++] = c;
  heap_up(h, h->heap_len);
  return 0;
}

void weft__timer_remove(weft__hub *h, weft_coro *c) {
  size_t i = c->heap_idx;
  if (!i) return;
  c->heap_idx = 0;
  weft_coro *last = h->heap[--h->heap_len];
  if (i - 1 == h->heap_len) return;
  heap_set(h, i, last);
  if (i > 1 && timer_before(last, h->heap[i / 2 - 1]))
    heap_up(h, i);
  else
    heap_down(h, i);
}

/* Wake every coroutine whose deadline has passed. */
static void timers_expire(weft__hub *h) {
  if (!h->heap_len) return;
  int64_t now = weft_now_ns();
  while (h->heap_len && h->heap[0]->deadline <= now) weft__wake_abort(h->heap[0], WEFT_ETIMEDOUT);
}

/* ------------------------------------------------------- park and wake */

/* Wake c for a reason of its own (timeout, cancel): unlink its waiter so
 * that no object completes a hand-off to it after this. */
void weft__wake_abort(weft_coro *c, int result) {
  if (c->state != WEFT__CORO_BLOCKED) return;
  weft__waiter *w = c->waiter;
  if (w) {
    if (w->sel) {
      for (size_t i = 0; i < w->sel->n; i++) weft__list_remove(&w->sel->ws[i].link);
    } else {
      weft__list_remove(&w->link);
    }
  }
  weft__wake(c, result);
}

static void recycle(weft__hub *h, weft_coro *c);

static const void *stack_lo_of(const weft__hub *h, const weft_coro *c) {
  return c->is_root ? h->root_stack_lo : c->stack.lo;
}
static size_t stack_size_of(const weft__hub *h, const weft_coro *c) {
  return c->is_root ? h->root_stack_size : c->stack.size;
}

static void backtrace_for_dump(weft__hub *h, weft_coro *self);

/* Switch from the running coroutine to next (READY, already off the queue). */
static void switch_to(weft__hub *h, weft_coro *self, weft_coro *next) {
  h->current = next;
  next->state = WEFT__CORO_RUNNING;
  if (WEFT_UNLIKELY(h->wd != NULL)) weft__wd_note(h->wd, next);
  weft__san_start_switch(self->state == WEFT__CORO_DONE ? NULL : &self->asan_fake,
                         stack_lo_of(h, next), stack_size_of(h, next));
  weft__tsan_switch(next->tsan_fiber);
  weft__ctx_switch(&self->ctx, &next->ctx);
  /* Back on self's stack, switched to by some other coroutine. */
  weft__san_finish_switch(self->asan_fake);
  while (WEFT_UNLIKELY(h->bt_target == self)) backtrace_for_dump(h, self);
  if (h->zombie) {
    weft_coro *z = h->zombie;
    h->zombie = NULL;
    recycle(h, z);
  }
}

/* A switch that changes no state: for the dump's visit to a suspended
 * coroutine and back. */
static void visit_switch(weft__hub *h, weft_coro *from, weft_coro *to) {
  weft__san_start_switch(&from->asan_fake, stack_lo_of(h, to), stack_size_of(h, to));
  weft__tsan_switch(to->tsan_fiber);
  weft__ctx_switch(&from->ctx, &to->ctx);
  weft__san_finish_switch(from->asan_fake);
}

/* Runs on a suspended coroutine's own stack, in switch_to, when a dump
 * switched to it only to ask where it is: record the call chain and go
 * back, still suspended. */
static void backtrace_for_dump(weft__hub *h, weft_coro *self) {
  h->bt_n = backtrace(h->bt_buf, (int)(sizeof h->bt_buf / sizeof h->bt_buf[0]));
  h->bt_target = NULL;
  visit_switch(h, self, h->bt_from);
}

/* Run the next ready coroutine; return when self runs again. self has
 * already been queued (yield), parked or finished. */
static void reschedule(weft__hub *h) {
  weft_coro *self = h->current;
  weft__list *n;
  for (;;) {
    if (WEFT_UNLIKELY(++h->dispatches >= 64)) {
      h->dispatches = 0;
      weft__poll_io(h, 0);
      timers_expire(h);
    }
    n = weft__list_pop_front(&h->ready);
    if (n) break;
    /* Nothing ready: block in the poller until a timer, a descriptor or
     * the remote inbox has something. */
    h->dispatches = 0;
    int64_t timeout = -1;
    if (h->heap_len) {
      timeout = h->heap[0]->deadline - weft_now_ns();
      if (timeout < 0) timeout = 0;
    } else if (!h->fd_waiters && !h->remote_pending) {
      fprintf(stderr,
              "weft: deadlock: every coroutine of this thread's hub is blocked for good "
              "(no timer, descriptor or offloaded call can wake one):\n");
      weft_hub_dump(stderr);
      abort();
    }
    weft__poll_io(h, timeout);
    timers_expire(h);
  }
  weft_coro *next = weft__container_of(n, weft_coro, rq);
  if (next == self) {
    self->state = WEFT__CORO_RUNNING;
    return;
  }
  switch_to(h, self, next);
}

int weft__park(weft__hub *h, int64_t deadline, const char *what, bool cancellable,
               weft__waiter *w) {
  weft_coro *self = h->current;
  if (cancellable && self->cancelled) return WEFT_ECANCELED;
  if (deadline != WEFT_FOREVER) {
    /* A deadline already past never blocks (nor switches). */
    if (deadline == 0 || deadline <= weft_now_ns()) return WEFT_ETIMEDOUT;
    if (timer_add(h, self, deadline) != 0) return WEFT_ENOMEM;
  }
  self->state = WEFT__CORO_BLOCKED;
  self->park_cancellable = cancellable;
  self->what = what;
  self->waiter = w;
  self->wake_result = 0;
  reschedule(h);
  self->what = NULL;
  self->waiter = NULL;
  return self->wake_result;
}

int weft__coro_sleep(weft__hub *h, int64_t deadline) {
  int e = weft__park(h, deadline, "sleep", true, NULL);
  return e == WEFT_ETIMEDOUT ? 0 : e;
}

/* --------------------------------------------------------------- the hub */

static void hub_free(weft__hub *h);

static void hub_key_destroy(void *p) {
  weft__hub *h = p;
  if (h) hub_free(h);
}

/* Fork: the child has only the forking thread, and shares with its parent
 * every kernel object the hub holds: the epoll set (registrations and
 * readiness) and the inbox's eventfd. A child that kept using them would
 * take the parent's events. So the forking thread's hub gets its own epoll
 * set (the descriptors with waiters registered again) and its own eventfd;
 * everything else (coroutines, timers, stacks) is the child's private copy
 * already. Other threads' hubs have no thread left in the child. */
static void hub_atfork_child(void) {
  weft__hub *h = tls_hub;
  if (!h) return;
  h->tid = (pid_t)syscall(SYS_gettid);
  weft__poll_atfork_child(h);
  weft__remote_atfork_child(h);
}

static void hub_key_make(void) {
  WEFT_ASSERT(pthread_key_create(&hub_key, hub_key_destroy) == 0);
  pthread_atfork(NULL, NULL, hub_atfork_child);
}

weft__hub *weft__hub_get(void) { return tls_hub; }

bool weft__hub_in_coro(const weft__hub *h) {
  return h && h == tls_hub && !h->in_scheduler;
}

weft__hub *weft__hub_start(const char *call) {
  weft__hub *h = tls_hub;
  if (WEFT_LIKELY(h != NULL)) return h;
  pthread_once(&hub_key_once, hub_key_make);
  h = weft__calloc(1, sizeof *h);
  if (!h) weft__misuse(call, "out of memory starting this thread's hub");
  h->current = &h->root;
  h->root.hub = h;
  h->root.state = WEFT__CORO_RUNNING;
  h->root.is_root = true;
  h->root.started = true;
  h->root.refs = 1;
  h->root.what_fd = -1;
  h->root.file = "(thread)";
  snprintf(h->root.name, sizeof h->root.name, "main");
  h->root.tsan_fiber = weft__tsan_current();
  weft__list_init(&h->root.rq);
  weft__list_init(&h->root.joiners);
  weft__list_init(&h->root.group_link);
  weft__list_init(&h->ready);
  weft__list_init(&h->all);
  weft__list_init(&h->hub_waiters);
  weft__list_push_back(&h->all, &h->root.all_link);
  h->next_id = 1;
  h->epfd = -1;
  h->tid = (pid_t)syscall(SYS_gettid);
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void *lo;
    size_t size;
    if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
      h->root_stack_lo = lo;
      h->root_stack_size = size;
    }
    pthread_attr_destroy(&attr);
  }
  if (weft__poll_init(h) != 0 || weft__remote_init(h) != 0)
    weft__misuse(call, "cannot start this thread's hub (epoll/eventfd: out of descriptors?)");
  weft__overflow_init(h); /* best effort: without it an overflow is a plain SIGSEGV */
  tls_hub = h;
  pthread_setspecific(hub_key, h);
  return h;
}

void weft__hub_wrong_thread(const char *call) {
  weft__misuse(call, "object belongs to another thread's hub");
}

static void coro_free_record(weft__hub *h, weft_coro *c) {
  weft__list_remove(&c->all_link);
  if (h->ncoro_cache < 1024) {
    c->arg = h->coro_cache;
    h->coro_cache = c;
    h->ncoro_cache++;
  } else {
    weft__free(c);
  }
}

/* Thread exit: coroutines still parked are dropped without running again
 * (their stacks are unmapped), as when a process exits. */
static void hub_free(weft__hub *h) {
  weft__list *p, *t;
  weft__list_for_each_safe(p, t, &h->all) {
    weft_coro *c = weft__container_of(p, weft_coro, all_link);
    if (c->is_root) continue;
    if (c->stack.base) weft__stack_put(h, &c->stack);
    weft__tsan_destroy(c->tsan_fiber);
    weft__list_remove(&c->all_link);
    weft__free(c);
  }
  while (h->coro_cache) {
    weft_coro *c = h->coro_cache;
    h->coro_cache = c->arg;
    weft__free(c);
  }
  weft__wd_fini(h);
  weft__stack_cache_fini(h);
  weft__remote_fini(h);
  weft__poll_fini(h);
  weft__overflow_fini(h);
  weft__free(h->heap);
  if (tls_hub == h) tls_hub = NULL;
  weft__free(h);
}

bool weft_hub_active(void) { return tls_hub != NULL; }

size_t weft_hub_count(void) { return tls_hub ? tls_hub->live : 0; }

/* ------------------------------------------------------------ coroutines */

static void release_ref(weft__hub *h, weft_coro *c) {
  WEFT_ASSERT(c->refs > 0);
  if (--c->refs == 0) coro_free_record(h, c);
}

/* Called on another stack once c has switched away for the last time. */
static void recycle(weft__hub *h, weft_coro *c) {
  weft__stack_put(h, &c->stack);
  c->stack.base = NULL;
  weft__tsan_destroy(c->tsan_fiber);
  c->tsan_fiber = NULL;
  release_ref(h, c);
}

static void wake_all(weft__list *waiters, int result) {
  weft__list *p;
  while ((p = weft__list_pop_front(waiters)) != NULL)
    weft__wake(weft__container_of(p, weft__waiter, link)->coro, result);
}

static void coro_finish(weft__hub *h, weft_coro *c) {
  c->state = WEFT__CORO_DONE;
  h->live--;
  wake_all(&c->joiners, 0);
  if (c->group) {
    weft_coro_group *g = c->group;
    weft__list_remove(&c->group_link);
    g->count--;
    if (g->count == 0) wake_all(&g->joiners, 0);
  }
  wake_all(&h->hub_waiters, 0);
}

static void coro_entry(void *p) {
  weft_coro *c = p;
  weft__hub *h = c->hub;
  weft__san_finish_switch(NULL);
  if (h->zombie) {
    weft_coro *z = h->zombie;
    h->zombie = NULL;
    recycle(h, z);
  }
  c->started = true;
  c->status = c->cancelled ? WEFT_ECANCELED : c->fn(c->arg);
  coro_finish(h, c);
  h->zombie = c;
  reschedule(h);
  WEFT_ASSERT(!"a finished coroutine was resumed");
}

int weft_coro_spawn_at(weft_coro **out, weft_coro_fn *fn, void *arg,
                       const weft_coro_opts *opts, const char *file, int line) {
  if (!fn) weft__misuse(__func__, "argument 'fn' is NULL");
  weft__hub *h = weft__hub_start(__func__);
  weft_coro_group *g = opts ? opts->group : NULL;
  if (g) weft__hub_check(g->hub, __func__);
  size_t want = opts && opts->stack_size ? opts->stack_size : WEFT_CORO_STACK_DEFAULT;
  if (want > ((size_t)1 << 30)) return WEFT_EINVAL;
  weft_coro *self = h->current;
  if (self->cancelled) return WEFT_ECANCELED;

  weft_coro *c = h->coro_cache;
  if (c) {
    h->coro_cache = c->arg;
    h->ncoro_cache--;
  } else {
    c = weft__malloc(sizeof *c);
    if (!c) return WEFT_ENOMEM;
  }
  memset(c, 0, offsetof(weft_coro, name));
  int e = weft__stack_get(h, want, !(opts && opts->no_guard_page), &c->stack);
  if (e) {
    weft__free(c);
    return e;
  }
  c->hub = h;
  c->fn = fn;
  c->arg = arg;
  c->refs = out ? 2 : 1;
  c->id = h->next_id++;
  c->file = file ? file : "?";
  c->line = line;
  c->what_fd = -1;
  if (opts && opts->name)
    snprintf(c->name, sizeof c->name, "%s", opts->name);
  else
    snprintf(c->name, sizeof c->name, "coro-%llu", (unsigned long long)c->id);
  c->tsan_fiber = weft__tsan_create(c->name);
  weft__list_init(&c->rq);
  weft__list_init(&c->joiners);
  weft__list_init(&c->group_link);
  weft__list_push_back(&h->all, &c->all_link);
  if (g) {
    c->group = g;
    weft__list_push_back(&g->members, &c->group_link);
    g->count++;
  }
  h->live++;
  weft__ctx_make(&c->ctx, c->stack.lo, c->stack.size, coro_entry, c);
  if (out) *out = c;
  if (opts && opts->deferred) {
    c->state = WEFT__CORO_READY;
    weft__list_push_back(&h->ready, &c->rq);
    return 0;
  }
  /* Run the child now; the spawner waits at the back of the queue. */
  self->state = WEFT__CORO_READY;
  weft__list_push_back(&h->ready, &self->rq);
  switch_to(h, self, c);
  return 0;
}

static weft__hub *coro_hub(const weft_coro *c, const char *call) {
  if (WEFT_UNLIKELY(c == NULL)) weft__misuse(call, "argument 'c' is NULL");
  return weft__hub_check(c->hub, call);
}

int weft_coro_join(weft_coro *c, int64_t deadline_ns, int *status) {
  weft__hub *h = coro_hub(c, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  if (c == h->current) return WEFT_EDEADLK;
  if (c->state != WEFT__CORO_DONE) {
    weft__waiter w = {.coro = h->current};
    weft__list_push_back(&c->joiners, &w.link);
    int e = weft__park(h, deadline_ns, "join", true, &w);
    if (e) {
      weft__list_remove(&w.link);
      return e;
    }
  }
  if (status) *status = c->status;
  return 0;
}

int weft_coro_cancel(weft_coro *c) {
  coro_hub(c, __func__);
  if (c->state == WEFT__CORO_DONE) return WEFT_EALREADY;
  c->cancelled = true;
  if (c->state == WEFT__CORO_BLOCKED && c->park_cancellable) weft__wake_abort(c, WEFT_ECANCELED);
  return 0;
}

void weft_coro_release(weft_coro *c) {
  if (!c) return;
  weft__hub *h = coro_hub(c, __func__);
  if (c->is_root) return;
  release_ref(h, c);
}

int weft_coro_yield(void) {
  weft__hub *h = weft__hub_start(__func__);
  weft_coro *self = h->current;
  self->state = WEFT__CORO_READY;
  weft__list_push_back(&h->ready, &self->rq);
  reschedule(h);
  return self->cancelled ? WEFT_ECANCELED : 0;
}

int weft_coro_sleep_until(int64_t deadline_ns) {
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  if (deadline_ns == 0) return h->current->cancelled ? WEFT_ECANCELED : 0;
  return weft__coro_sleep(h, deadline_ns);
}

weft_coro *weft_coro_self(void) { return weft__hub_start(__func__)->current; }

const char *weft_coro_name(const weft_coro *c) {
  WEFT_CHECK_HANDLE(c);
  return c->name;
}

bool weft_coro_cancelled(void) { return tls_hub && tls_hub->current->cancelled; }

int weft_hub_wait(int64_t deadline_ns) {
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  weft__hub *h = weft__hub_start(__func__);
  for (;;) {
    size_t others = h->live - (h->current->is_root ? 0 : 1);
    if (others == 0) return 0;
    weft__waiter w = {.coro = h->current};
    weft__list_push_back(&h->hub_waiters, &w.link);
    int e = weft__park(h, deadline_ns, "hub wait", true, &w);
    if (e) {
      weft__list_remove(&w.link);
      return e;
    }
  }
}

static const char *state_name(const weft_coro *c) {
  switch (c->state) {
  case WEFT__CORO_READY: return c->started ? "ready" : "new";
  case WEFT__CORO_RUNNING: return "running";
  case WEFT__CORO_BLOCKED: return "blocked";
  default: return "finished";
  }
}

/* The call chain of c, into h->bt_buf: c's own stack when it runs, else a
 * visit to c (a coroutine that never ran has none). */
static int dump_backtrace(weft__hub *h, weft_coro *c) {
  if (c == h->current) {
    h->bt_n = backtrace(h->bt_buf, (int)(sizeof h->bt_buf / sizeof h->bt_buf[0]));
    return h->bt_n;
  }
  if (!c->started || c->state == WEFT__CORO_DONE || h->in_scheduler) return 0;
  h->bt_n = 0;
  h->bt_target = c;
  h->bt_from = h->current;
  visit_switch(h, h->current, c);
  return h->bt_n;
}

static void print_frames(FILE *out, void *const *frames, int n) {
  for (int i = 0; i < n; i++) {
    Dl_info di;
    uintptr_t a = (uintptr_t)frames[i];
    /* A return address points after the call: look up a byte before it. */
    if (dladdr((void *)(a - 1), &di) && di.dli_fname) {
      const char *mod = strrchr(di.dli_fname, '/');
      mod = mod ? mod + 1 : di.dli_fname;
      fprintf(out, "      #%d 0x%" PRIxPTR " %s+0x%" PRIxPTR, i, a, mod,
              a - (uintptr_t)di.dli_fbase);
      if (di.dli_sname) fprintf(out, " %s+0x%" PRIxPTR, di.dli_sname, a - (uintptr_t)di.dli_saddr);
      fputc('\n', out);
    } else {
      fprintf(out, "      #%d 0x%" PRIxPTR "\n", i, a);
    }
  }
}

size_t weft_hub_dump(FILE *out) {
  weft__hub *h = tls_hub;
  if (!h) {
    fprintf(out, "weft hub: none on this thread\n");
    return 0;
  }
  size_t n = 0, nready = 0;
  weft__list *p;
  weft__list_for_each(p, &h->ready) nready++;
  fprintf(out, "weft hub of thread %d: %zu coroutine(s) besides main, %zu ready\n", (int)h->tid,
          h->live, nready);
  int64_t now = weft_now_ns();
  weft__list_for_each(p, &h->all) {
    weft_coro *c = weft__container_of(p, weft_coro, all_link);
    n++;
    fprintf(out, "  #%llu \"%s\" %s", (unsigned long long)c->id, c->name, state_name(c));
    if (c->state == WEFT__CORO_BLOCKED) {
      fprintf(out, " on %s", c->what ? c->what : "?");
      if (c->what_fd >= 0) fprintf(out, " (fd %d)", c->what_fd);
      if (c->heap_idx)
        fprintf(out, ", %.3f s left", (double)(c->deadline - now) / 1e9);
      else
        fprintf(out, ", no deadline");
    }
    if (c->state == WEFT__CORO_DONE) fprintf(out, " (status %d)", c->status);
    if (c->cancelled) fprintf(out, ", cancelled");
    if (c->is_root)
      fprintf(out, ", the thread's own stack\n");
    else
      fprintf(out, ", spawned at %s:%d, stack %zu KiB\n", c->file, c->line,
              c->stack.size / 1024);
    /* Frame 0 is inside the dump or the switch: start at 1. */
    int k = dump_backtrace(h, c);
    if (k > 1) print_frames(out, h->bt_buf + 1, k - 1);
  }
  return n;
}

/* ---------------------------------------------------------------- groups */

int weft_coro_group_create(weft_coro_group **out) {
  WEFT_CHECK_HANDLE(out);
  weft__hub *h = weft__hub_start(__func__);
  weft_coro_group *g = weft__calloc(1, sizeof *g);
  if (!g) return WEFT_ENOMEM;
  g->hub = h;
  weft__list_init(&g->members);
  weft__list_init(&g->joiners);
  *out = g;
  return 0;
}

static int group_join(weft__hub *h, weft_coro_group *g, int64_t deadline_ns, bool cancellable) {
  while (g->count) {
    weft__waiter w = {.coro = h->current};
    weft__list_push_back(&g->joiners, &w.link);
    int e = weft__park(h, deadline_ns, "group join", cancellable, &w);
    if (e) {
      weft__list_remove(&w.link);
      return e;
    }
  }
  return 0;
}

int weft_coro_group_join(weft_coro_group *g, int64_t deadline_ns) {
  WEFT_CHECK_HANDLE(g);
  weft__hub *h = weft__hub_check(g->hub, __func__);
  if (!WEFT_DEADLINE_VALID(deadline_ns)) return WEFT_EINVAL;
  return group_join(h, g, deadline_ns, true);
}

void weft_coro_group_cancel(weft_coro_group *g) {
  WEFT_CHECK_HANDLE(g);
  weft__hub_check(g->hub, __func__);
  weft__list *p;
  weft__list_for_each(p, &g->members) {
    weft_coro *c = weft__container_of(p, weft_coro, group_link);
    c->cancelled = true;
    if (c->state == WEFT__CORO_BLOCKED && c->park_cancellable) weft__wake_abort(c, WEFT_ECANCELED);
  }
}

size_t weft_coro_group_count(const weft_coro_group *g) {
  WEFT_CHECK_HANDLE(g);
  return g->count;
}

void weft_coro_group_destroy(weft_coro_group *g) {
  if (!g) return;
  weft__hub *h = weft__hub_check(g->hub, __func__);
  if (h->current->group == g && h->current->state != WEFT__CORO_DONE)
    weft__misuse(__func__, "called by a member of the group");
  weft_coro_group_cancel(g);
  group_join(h, g, WEFT_FOREVER, false);
  weft__free(g);
}

/* xorshift32 per thread: only for fair choice among ready select arms. */
uint32_t weft__hub_rand(void) {
  static __thread uint32_t s __attribute__((tls_model("initial-exec")));
  if (!s) s = (uint32_t)(uintptr_t)&s ^ (uint32_t)weft_now_ns() ^ 0x9e3779b9u;
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}
