/*
 * bench/w6a_coro/weft_w6.c: weft's side of W6a and W6b (coroutines).
 *
 *   weft_w6 IMPL VARIANT N
 *
 *   W6a pingpong  two coroutines on one thread pass an int back and forth
 *                 over two unbuffered channels, N round trips: round trips/s
 *   W6a switch    two coroutines yield to each other N times each: ns per
 *                 switch (a yield through the hub, the public-API cost)
 *   W6b spawn     spawn N coroutines into a group, each yields once, join the
 *                 group: coroutines/s
 *   W6b mem       the same run, reporting (peak RSS after - peak RSS before
 *                 the first weft call, rounded up to the next KiB) / N in
 *                 bytes per coroutine
 *   W6b mem.allalive  the same, but every coroutine waits on an event
 *                 until all N exist (the worst case for memory: N stacks at
 *                 once)
 *
 * Every run checks its result (the values passed, the count joined).
 */
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "weft.h"

static void check(int r, const char *what) {
  if (r) bench_die("%s: %s", what, weft_strerror(r));
}

typedef struct {
  weft_chan *in, *out;
  uint64_t n;
} pp;

static int pong(void *arg) {
  pp *p = arg;
  for (uint64_t i = 0; i < p->n; i++) {
    uint64_t v;
    check(weft_chan_recv(p->in, &v, WEFT_FOREVER), "recv");
    v++;
    check(weft_chan_send(p->out, &v, WEFT_FOREVER), "send");
  }
  return 0;
}

static void pingpong(const char *impl, uint64_t n) {
  weft_chan *a, *b;
  check(weft_chan_create(&a, sizeof(uint64_t), 0), "chan");
  check(weft_chan_create(&b, sizeof(uint64_t), 0), "chan");
  pp p = {a, b, n};
  weft_coro *c;
  double t0 = bench_now_s();
  check(weft_coro_spawn(&c, pong, &p, NULL), "spawn");
  uint64_t v = 0;
  for (uint64_t i = 0; i < n; i++) {
    check(weft_chan_send(a, &v, WEFT_FOREVER), "send");
    uint64_t w;
    check(weft_chan_recv(b, &w, WEFT_FOREVER), "recv");
    if (w != v + 1) bench_die("pingpong: got %llu after %llu", (unsigned long long)w,
                              (unsigned long long)v);
    v = w;
  }
  check(weft_coro_join(c, WEFT_FOREVER, NULL), "join");
  double secs = bench_now_s() - t0;
  weft_coro_release(c);
  bench_emit("W6a", impl, "pingpong", n, (double)n / secs, "roundtrips/s", secs);
}

static int yielder(void *arg) {
  uint64_t n = *(uint64_t *)arg;
  for (uint64_t i = 0; i < n; i++) weft_coro_yield();
  return 0;
}

static void switches(const char *impl, uint64_t n) {
  weft_coro *c;
  check(weft_coro_spawn(&c, yielder, &n, NULL), "spawn");
  double t0 = bench_now_s();
  for (uint64_t i = 0; i < n; i++) weft_coro_yield();
  double secs = bench_now_s() - t0;
  check(weft_coro_join(c, WEFT_FOREVER, NULL), "join");
  weft_coro_release(c);
  bench_emit("W6a", impl, "switch", n, secs * 1e9 / (double)(2 * n), "ns", secs);
}

static long maxrss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static uint64_t finished;
static weft_coro_event *gate;

static int yield_once(void *arg) {
  (void)arg;
  int r = weft_coro_yield();
  finished++;
  return r;
}

static int wait_gate(void *arg) {
  (void)arg;
  int r = weft_coro_event_wait(gate, WEFT_FOREVER);
  finished++;
  return r;
}

static void spawn(const char *impl, const char *variant, uint64_t n) {
  bool all_alive = strcmp(variant, "mem.allalive") == 0;
  /* Before any weft call: the hub and its caches count too. */
  long rss0 = maxrss_kib();
  weft_coro_group *g;
  check(weft_coro_group_create(&g), "group");
  check(weft_coro_event_create(&gate), "event");
  weft_coro_opts o = {.group = g};
  double t0 = bench_now_s();
  for (uint64_t i = 0; i < n; i++)
    check(weft_coro_spawn(NULL, all_alive ? wait_gate : yield_once, NULL, &o), "spawn");
  weft_coro_event_set(gate);
  check(weft_coro_group_join(g, WEFT_FOREVER), "group join");
  double secs = bench_now_s() - t0;
  long rss1 = maxrss_kib();
  if (finished != n) bench_die("spawn: %llu of %llu finished", (unsigned long long)finished,
                               (unsigned long long)n);
  weft_coro_group_destroy(g);
  weft_coro_event_destroy(gate);
  if (strcmp(variant, "spawn") != 0)
    /* The kernel counts in KiB: round the growth up to the next KiB (the
     * same in every program of W6b), so a growth below 1 KiB still gives
     * an upper bound, not 0. */
    bench_emit("W6b", impl, variant, n, (double)(rss1 - rss0 + 1) * 1024.0 / (double)n,
               "B/coro", secs);
  else
    bench_emit("W6b", impl, "spawn", n, (double)n / secs, "coros/s", secs);
}

int main(int argc, char **argv) {
  if (argc != 4) bench_die("usage: weft_w6 IMPL VARIANT N");
  const char *impl = argv[1], *variant = argv[2];
  uint64_t n = bench_parse_u64(argv[3], "N");
  if (strcmp(variant, "pingpong") == 0)
    pingpong(impl, n);
  else if (strcmp(variant, "switch") == 0)
    switches(impl, n);
  else if (strcmp(variant, "spawn") == 0 || strcmp(variant, "mem") == 0 ||
           strcmp(variant, "mem.allalive") == 0)
    spawn(impl, variant, n);
  else
    bench_die("unknown variant '%s'", variant);
  return 0;
}
