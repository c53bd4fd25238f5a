/*
 * Tasks: the name registry and the context a running task writes its
 * outcome through.
 *
 * Registry. An open-addressing hash table (linear probing, FNV-1a) of
 * pointers to entries; an entry holds the name and the weft_task that
 * weft_task_find hands out, so it never moves and is never freed: a found
 * task stays valid for the life of the process, as the header promises.
 * The table doubles at half full. Names are checked before anything else
 * and the check reads at most 64 bytes, so a hostile, unterminated buffer
 * cannot make it read further.
 *
 * Context. A task writes its result straight into its destination: the
 * future's own result storage (weft__future_result_buf, inline when small,
 * so a result costs no copy and usually no allocation), a map's output slot,
 * or the runner's scratch buffer when nobody keeps the result (fire and
 * forget). See struct weft_task_ctx in executor_impl.h.
 *
 * Locking: g_mu guards the registry table (g_table, g_cap, g_count). It is
 * held only around table lookups and inserts, never while user code runs.
 * Fork: atfork handlers hold g_mu across fork(), so a child never inherits
 * it locked. The task context is used by one thread and has no lock.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "executor/executor_impl.h"
#include "future/future_impl.h"

/* -------------------------------------------------------------- registry */

#define NAME_MAX_LEN 63

typedef struct reg_entry {
  weft_task task;              /* what weft_task_find returns; task.name
                                * points at name below. Immutable. */
  char name[NAME_MAX_LEN + 1]; /* the registered name. Immutable. */
} reg_entry;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry **g_table; /* g_cap slots, NULL when free; g_mu */
static size_t g_cap;        /* power of two, or 0 before the first insert; g_mu */
static size_t g_count;      /* entries in g_table; g_mu */
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void) { pthread_mutex_lock(&g_mu); }
static void atfork_release(void) { pthread_mutex_unlock(&g_mu); }
static void atfork_setup(void) {
  pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

static bool name_char_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == ':' || c == '-';
}

size_t weft__task_name_check(const char *name) {
  if (!name) return 0;
  /* Index 63 is the last one read: a name of 63 characters has its NUL
   * there; anything else at 63 means too long (or not a string at all). */
  for (size_t i = 0; i <= NAME_MAX_LEN; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == 0) return i;
    if (i == NAME_MAX_LEN || !name_char_ok(c)) return 0;
  }
  return 0;
}

static uint64_t name_hash(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* The slot holding name, or the free slot where it would go. g_mu held,
 * g_cap > 0. */
static reg_entry **table_slot(const char *name, size_t len) {
  size_t mask = g_cap - 1;
  for (size_t i = (size_t)name_hash(name, len) & mask;; i = (i + 1) & mask) {
    reg_entry *e = g_table[i];
    if (!e || (strncmp(e->name, name, len) == 0 && e->name[len] == 0)) return &g_table[i];
  }
}

/* Double the table (or make the first one). g_mu held. */
static int table_grow(void) {
  size_t cap = g_cap ? g_cap * 2 : 16;
  reg_entry **t = weft__calloc(cap, sizeof *t);
  if (!t) return WEFT_ENOMEM;
  reg_entry **old = g_table;
  size_t old_cap = g_cap;
  g_table = t;
  g_cap = cap;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i]) *table_slot(old[i]->name, strlen(old[i]->name)) = old[i];
  }
  weft__free(old);
  return 0;
}

int weft_task_register(const weft_task *task) {
  WEFT_CHECK_HANDLE(task);
  size_t len = weft__task_name_check(task->name);
  if (len == 0 || !task->fn) return WEFT_EINVAL;
  pthread_once(&g_atfork_once, atfork_setup);
  int r = 0;
  pthread_mutex_lock(&g_mu);
  if (g_cap == 0 || (g_count + 1) * 2 > g_cap) {
    r = table_grow();
    if (r) goto out;
  }
  reg_entry **slot = table_slot(task->name, len);
  if (*slot) {
    r = (*slot)->task.fn == task->fn ? 0 : WEFT_EEXIST;
    goto out;
  }
  reg_entry *e = weft__malloc(sizeof *e);
  if (!e) {
    r = WEFT_ENOMEM;
    goto out;
  }
  memcpy(e->name, task->name, len);
  e->name[len] = 0;
  e->task.name = e->name;
  e->task.fn = task->fn;
  *slot = e;
  g_count++;
out:
  pthread_mutex_unlock(&g_mu);
  return r;
}

int weft_task_find(const char *name, const weft_task **out) {
  WEFT_CHECK_HANDLE(out);
  size_t len = weft__task_name_check(name);
  if (len == 0) return WEFT_EINVAL;
  int r = WEFT_ENOTASK;
  pthread_mutex_lock(&g_mu);
  if (g_cap) {
    reg_entry *e = *table_slot(name, len);
    if (e) {
      *out = &e->task;
      r = 0;
    }
  }
  pthread_mutex_unlock(&g_mu);
  return r;
}

/* ------------------------------------------------------------ the context */

void weft__task_ctx_free_msg(weft_task_ctx *ctx) {
  weft__free(ctx->msg);
  ctx->msg = NULL;
}

void weft__scratch_fini(weft__scratch *s) {
  weft__free(s->p);
  s->p = NULL;
  s->cap = 0;
}

/* Scratch buffers above this size are given back after use, so that one
 * huge discarded result does not pin memory in a worker for good. */
#define SCRATCH_KEEP_MAX (64u * 1024u)

static void *scratch_get(weft__scratch *s, size_t len) {
  /* !s->p: even an empty result needs a non-NULL buffer (NULL is "out of
   * memory"). */
  if (len > s->cap || !s->p || (s->cap > SCRATCH_KEEP_MAX && len <= SCRATCH_KEEP_MAX)) {
    size_t cap = len < 64 ? 64 : len;
    void *p = weft__realloc(s->p, cap);
    if (!p) return NULL;
    s->p = p;
    s->cap = cap;
  }
  return s->p;
}

/* Storage for a result of len bytes, per the sink. */
static void *result_buf(weft_task_ctx *ctx, size_t len) {
  void *p;
  switch (ctx->sink) {
  case WEFT__SINK_FUTURE:
    p = weft__future_result_buf(ctx->fut, len);
    break;
  case WEFT__SINK_SLOT:
    if (len == ctx->slot_size) {
      /* out may be NULL when out_size is 0: still a valid, empty result. */
      static unsigned char empty_slot;
      p = ctx->slot ? ctx->slot : &empty_slot;
      ctx->result_in_slot = true;
      break;
    }
    ctx->result_in_slot = false;
    p = scratch_get(ctx->scratch, len);
    break;
  default:
    p = scratch_get(ctx->scratch, len);
    break;
  }
  ctx->result_oom = p == NULL;
  ctx->buf = p;
  ctx->result_len = p ? len : 0;
  return p;
}

void *weft_task_return_buf(weft_task_ctx *ctx, size_t len) {
  WEFT_CHECK_HANDLE(ctx);
  return result_buf(ctx, len);
}

int weft_task_return(weft_task_ctx *ctx, const void *data, size_t len) {
  WEFT_CHECK_HANDLE(ctx);
  if (len && !data) weft__misuse(__func__, "argument 'data' is NULL with len > 0");
  /* A map item's first result, of exactly its slot's size: the common case,
   * once per item, so no calls. Scalars are copied inline. */
  if (ctx->sink == WEFT__SINK_SLOT && len == ctx->slot_size && ctx->slot && !ctx->buf) {
    unsigned char *s = ctx->slot;
    const unsigned char *d = data;
    uintptr_t su = (uintptr_t)s, du = (uintptr_t)d;
    if (du + len <= su || su + len <= du) { /* no overlap */
      if (len == 8)
        memcpy(s, d, 8);
      else if (len == 4)
        memcpy(s, d, 4);
      else
        memcpy(s, d, len);
      ctx->result_in_slot = true;
      ctx->result_oom = false;
      ctx->buf = s;
      ctx->result_len = len;
      return 0;
    }
  }
  /* data may point into the previous result (a prefix of a buffer from
   * weft_task_return_buf): that storage may be replaced or moved by the
   * call below, so copy it out first. A slot stays put: memmove is enough. */
  const unsigned char *d = data, *b = ctx->buf;
  bool alias = len && b && d < b + ctx->result_len && b < d + len;
  void *tmp = NULL;
  if (alias && !(ctx->sink == WEFT__SINK_SLOT && ctx->result_in_slot && len == ctx->slot_size)) {
    tmp = weft__malloc(len);
    if (!tmp) {
      ctx->result_oom = true;
      return WEFT_ENOMEM;
    }
    memcpy(tmp, data, len);
    data = tmp;
  }
  void *p = result_buf(ctx, len);
  if (p && len) memmove(p, data, len);
  if (tmp) weft__free(tmp); /* rare: a result that aliases the last one */
  return p ? 0 : WEFT_ENOMEM;
}

int weft_task_fail(weft_task_ctx *ctx, int code, const char *fmt, ...) {
  WEFT_CHECK_HANDLE(ctx);
  /* The header asks for a negative code. A task that passes errno (positive)
   * or 0 still means "failed": record the generic code rather than abort a
   * worker, or report success, over it. */
  if (code >= 0) code = WEFT_ETASKFAILED;
  ctx->fail_code = code;
  if (ctx->msg && ctx->msg != ctx->msg_inline) weft__free(ctx->msg);
  ctx->msg = NULL;
  if (!fmt) return code;
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(ctx->msg_inline, sizeof ctx->msg_inline, fmt, ap);
  va_end(ap);
  ctx->msg = ctx->msg_inline;
  if (n >= (int)sizeof ctx->msg_inline) {
    /* Too long for the inline buffer: keep it whole if memory allows, else
     * the truncated inline text stands. */
    char *m = weft__malloc((size_t)n + 1);
    if (m) {
      vsnprintf(m, (size_t)n + 1, fmt, ap2);
      ctx->msg = m;
    }
  } else if (n < 0) {
    ctx->msg_inline[0] = 0;
  }
  va_end(ap2);
  return code;
}



/* --------------------------------------------- for other process images */

int weft__task_run_detached(weft_task_fn *fn, const void *arg, size_t len, void *slot,
                            size_t slot_size, bool to_slot, weft__scratch *scratch,
                            const void **res, size_t *res_len, char **msg) {
  weft_task_ctx ctx;
  weft__task_ctx_init(&ctx, to_slot ? WEFT__SINK_SLOT : WEFT__SINK_SCRATCH, NULL, slot,
                      slot_size, scratch);
  int rc = weft__task_ctx_outcome(&ctx, fn(&ctx, arg, len));
  *res = ctx.buf;
  *res_len = ctx.result_len;
  *msg = NULL;
  if (rc && ctx.msg) *msg = weft__strdup(ctx.msg);
  weft__task_ctx_fini(&ctx);
  return rc;
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp((*(const weft_task *const *)a)->name, (*(const weft_task *const *)b)->name);
}

int weft__task_registry_list(const weft_task ***out, size_t *n) {
  pthread_mutex_lock(&g_mu);
  size_t k = 0;
  const weft_task **v = weft__malloc((g_count ? g_count : 1) * sizeof *v);
  if (!v) {
    pthread_mutex_unlock(&g_mu);
    return WEFT_ENOMEM;
  }
  for (size_t i = 0; i < g_cap; i++)
    if (g_table[i]) v[k++] = &g_table[i]->task;
  pthread_mutex_unlock(&g_mu);
  qsort(v, k, sizeof *v, entry_cmp);
  *out = v;
  *n = k;
  return 0;
}
