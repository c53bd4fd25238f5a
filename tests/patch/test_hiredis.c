/* weft_patch_all with code weft did not compile: Debian's unmodified
 * libhiredis blocking client against a real redis-server that this test
 * starts on a free loopback port. 100 coroutines on one thread, each with
 * its own blocking connection, must be in the server at the same time.
 *
 * Skipped (exit 77, reported by ctest as skipped) when hiredis was not
 * found at build time or redis-server is not installed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST_TIMEOUT(60)

static void skip(const char *why) {
  fprintf(stderr, "SKIPPED: %s\n", why);
  fflush(stderr);
  exit(77);
}

#ifdef WEFT_HAVE_HIREDIS
#include <hiredis/hiredis.h>

#define N 100

static pid_t server_pid = -1;
static int server_port;

static void stop_server(void) {
  if (server_pid > 0) {
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
  }
}

static char *find_redis(void) {
  static const char *dirs[] = {"/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"};
  static char path[256];
  /* WEFT_TEST_REDIS_SERVER names another binary (or a missing one, to see
   * the skip). */
  const char *env = getenv("WEFT_TEST_REDIS_SERVER");
  if (env) return access(env, X_OK) == 0 ? (char *)env : NULL;
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(path, sizeof path, "%s/redis-server", dirs[i]);
    if (access(path, X_OK) == 0) return path;
  }
  return NULL;
}

/* A port nobody uses right now (bind to 0, read it, let it go). */
static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  ASSERT_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_EQ(getsockname(s, (struct sockaddr *)&a, &al), 0);
  close(s);
  return ntohs(a.sin_port);
}

/* Start redis-server on loopback; it dies with this process (SIGKILL by
 * PR_SET_PDEATHSIG), so a failing assertion cannot leave it behind. */
static void start_server(void) {
  char *redis = find_redis();
  if (!redis) skip("redis-server is not installed");
  for (int attempt = 0; attempt < 5; attempt++) {
    server_port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", server_port);
    pid_t parent = getpid();
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      execl(redis, redis, "--port", port, "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
            "--maxclients", "1000", (char *)NULL);
      _exit(127);
    }
    server_pid = pid;
    atexit(stop_server);
    /* Wait for it to answer (plain calls: no hub runs yet). */
    for (int i = 0; i < 500; i++) {
      redisContext *c = redisConnect("127.0.0.1", server_port);
      if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        redisFree(c);
        if (ok) return;
      }
      if (c) redisFree(c);
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) break; /* port taken: retry */
      usleep(10000);
    }
    stop_server();
  }
  weft_test_fail(__FILE__, __LINE__, "redis-server did not start");
}

struct client {
  int id;
  redisContext *c;
  int64_t start, end;
  int err;
};

static int client_blpop_timeout(void *arg) {
  struct client *cl = arg;
  cl->c = redisConnect("127.0.0.1", server_port);
  if (!cl->c || cl->c->err) return 1;
  cl->start = weft_now_ns();
  /* The server holds the reply for 1 s: a blocking call in every client. */
  redisReply *r = redisCommand(cl->c, "BLPOP weft:empty:%d 1", cl->id);
  cl->end = weft_now_ns();
  if (!r) return 2;
  int ok = r->type == REDIS_REPLY_NIL || (r->type == REDIS_REPLY_ARRAY && r->elements == 0);
  freeReplyObject(r);
  return ok ? 0 : 3;
}

static int client_blpop_value(void *arg) {
  struct client *cl = arg;
  redisReply *r = redisCommand(cl->c, "BLPOP weft:list:%d 30", cl->id);
  if (!r) return 1;
  int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           atoi(r->element[1]->str) == cl->id * 7;
  freeReplyObject(r);
  return ok ? 0 : 2;
}

static long long info_field(redisContext *c, const char *field) {
  redisReply *r = redisCommand(c, "INFO clients");
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  const char *p = strstr(r->str, field);
  ASSERT_NOT_NULL(p);
  long long v = atoll(p + strlen(field) + 1);
  freeReplyObject(r);
  return v;
}

static void hiredis_case(void) {
  start_server();
  ASSERT_OK(weft_patch_all());
  static struct client cls[N];
  weft_coro *cs[N];

  /* Phase 1: every client connects (getaddrinfo, connect, poll inside
   * hiredis) and sends a BLPOP that the server answers only after 1 s.
   * One after another that is 100 s; overlapped, about 1 s. */
  int64_t t0 = weft_now_ns();
  for (int i = 0; i < N; i++) {
    cls[i].id = i;
    ASSERT_OK(weft_coro_spawn(&cs[i], client_blpop_timeout, &cls[i], NULL));
  }
  for (int i = 0; i < N; i++) {
    int st = -1;
    ASSERT_OK(weft_coro_join(cs[i], weft_deadline_in_s(50), &st));
    ASSERT_EQ(st, 0);
    weft_coro_release(cs[i]);
  }
  int64_t dt = weft_now_ns() - t0;
  int64_t sum = 0, last_start = 0, first_end = INT64_MAX;
  for (int i = 0; i < N; i++) {
    sum += cls[i].end - cls[i].start;
    if (cls[i].start > last_start) last_start = cls[i].start;
    if (cls[i].end < first_end) first_end = cls[i].end;
  }
  fprintf(stderr, "100 BLPOPs of 1 s: %.2f s in all, %.1f s summed\n", dt / 1e9, sum / 1e9);
  /* Every request started before the first one ended: all in flight at once. */
  ASSERT_LT(last_start, first_end);
  ASSERT_GE(sum, (int64_t)N * 900000000);
  ASSERT_LT(dt, sum / 10);

  /* Phase 2: the server itself sees 100 clients blocked at the same time,
   * each on its own connection; then a control connection (from the main
   * coroutine, through the same patched calls) feeds them. */
  for (int i = 0; i < N; i++) ASSERT_OK(weft_coro_spawn(&cs[i], client_blpop_value, &cls[i], NULL));
  redisContext *ctl = redisConnect("127.0.0.1", server_port);
  ASSERT(ctl && !ctl->err);
  long long blocked = 0;
  for (int tries = 0; tries < 500 && blocked < N; tries++) {
    blocked = info_field(ctl, "blocked_clients");
    if (blocked < N) usleep(10000); /* patched: the clients run meanwhile */
  }
  ASSERT_EQ(blocked, N);
  ASSERT_GE(info_field(ctl, "connected_clients"), N + 1);
  for (int i = 0; i < N; i++) {
    redisReply *r = redisCommand(ctl, "RPUSH weft:list:%d %d", i, i * 7);
    ASSERT_NOT_NULL(r);
    freeReplyObject(r);
  }
  for (int i = 0; i < N; i++) {
    int st = -1;
    ASSERT_OK(weft_coro_join(cs[i], weft_deadline_in_s(30), &st));
    ASSERT_EQ(st, 0);
    weft_coro_release(cs[i]);
    redisFree(cls[i].c);
  }
  redisFree(ctl);
  stop_server();
}

#endif

TEST(hiredis_100_blocking_clients_overlap) {
#ifdef WEFT_HAVE_HIREDIS
  hiredis_case();
#else
  skip("hiredis was not found when weft was built");
#endif
}
