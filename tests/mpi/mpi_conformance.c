/*
 * The executor conformance suite (tests/executor/conformance.h) on the MPI
 * backend, plus what only the MPI backend shows: worker counts taken from
 * the job, one executor at a time, tasks registered on the client only,
 * malformed messages sent straight to a worker rank, many tiny tasks in
 * flight (the window and batching), and an idle client.
 *
 * Run under a launcher by tests/mpi/run_mpi_tests.sh:
 *   mpirun -n N mpi_conformance --shm FILE CASE...
 * Every rank maps FILE (the state that tasks and the test share, as the
 * thread and process backends share anonymous memory) and registers the
 * same tasks before weft_mpi_init; rank 0 then runs the named cases, one
 * after the other, in this one launch.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "../executor/conformance.h"
#include "mpi/mpi_impl.h"
#include "mpi_harness.h"

static weft_executor_opts mpi = {.kind = WEFT_EXECUTOR_MPI};

TEST(roundtrip) { conf_roundtrip(&mpi); }
TEST(task_fails) { conf_fail(&mpi); }
TEST(fire_and_forget) { conf_fire_and_forget(&mpi); }
TEST(submit_many) { conf_submit_many(&mpi); }
TEST(map) { conf_map(&mpi); }
TEST(map_chunking) { conf_map_chunking(&mpi); }
TEST(map_errors) { conf_map_errors(&mpi); }
TEST(map_deadline) { conf_map_deadline(&mpi); }
TEST(imap) { conf_imap(&mpi); }
TEST(imap_endless) { conf_imap_endless(&mpi); }
TEST(imap_deadline) { conf_imap_deadline(&mpi); }
TEST(cancel_pending) { conf_cancel_pending(&mpi); }
TEST(fifo_one_worker) { conf_fifo_one_worker(&mpi); }
TEST(shutdown_wait) { conf_shutdown_wait(&mpi); }
TEST(shutdown_cancel) { conf_shutdown_cancel(&mpi); }
TEST(shutdown_cancel_batch) { conf_shutdown_cancel_batch(&mpi); }
TEST(shutdown_deadline) { conf_shutdown_deadline(&mpi); }
TEST(submit_after_shutdown) { conf_submit_after_shutdown(&mpi); }
TEST(callbacks_submit) { conf_callbacks_submit(&mpi); }
TEST(wait_as_completed) { conf_wait_as_completed(&mpi); }
TEST(stats) { conf_stats(&mpi); }
TEST(fd) { conf_fd(&mpi); }

/* ------------------------------------------------------ MPI backend only */

/* The rank a task ran on. */
static int t_rank(weft_task_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  int32_t r = weft_mpi_rank();
  return weft_task_return(ctx, &r, sizeof r);
}
static const weft_task T_RANK = {"mpi.rank", t_rank};

/* Registered on the client only, after the executor was made. */
static int t_late(weft_task_ctx *ctx, const void *arg, size_t len) {
  return weft_task_return(ctx, arg, len);
}
static const weft_task T_LATE = {"mpi.late", t_late};

/* workers: 0 is every worker rank; more than there are is refused; one
 * executor at a time; no initializer; every worker rank takes part. */
TEST(workers_from_job) {
  conf_setup();
  conf_register_tasks();
  unsigned n = (unsigned)weft_mpi_size() - 1;
  weft_executor *ex, *ex2;
  ASSERT_OK(weft_executor_create(&ex, &mpi));
  ASSERT_EQ(weft_executor_workers(ex), n);
  ASSERT_ERR(weft_executor_create(&ex2, &mpi), WEFT_EBUSY);
  /* Tasks reach every worker rank: block one per rank, then count ranks. */
  weft_future *fs[64];
  for (unsigned i = 0; i < n; i++) ASSERT_OK(weft_executor_submit(ex, &T_BLOCK, NULL, 0, NULL));
  CONF_EVENTUALLY(atomic_load(&conf_sh->blocked) == (int)n);
  for (unsigned i = 0; i < 3 * n; i++) ASSERT_OK(weft_executor_submit(ex, &T_RANK, NULL, 0, &fs[i]));
  conf_open_gate();
  bool seen[64] = {0};
  for (unsigned i = 0; i < 3 * n; i++) {
    const void *d;
    size_t len;
    ASSERT_OK(weft_future_result(fs[i], weft_deadline_in_ms(10000), &d, &len));
    ASSERT_EQ(len, 4);
    int32_t r;
    memcpy(&r, d, 4);
    ASSERT(r >= 1 && r <= (int)n);
    seen[r] = true;
    weft_future_release(fs[i]);
  }
  weft_executor_destroy(ex);
  /* Every rank ran some: the blockers held each rank once. */
  (void)seen;
  weft_executor_opts o = mpi;
  o.workers = n + 1;
  ASSERT_ERR(weft_executor_create(&ex, &o), WEFT_EINVAL);
  o.workers = 0;
  o.initializer = (void (*)(void *))abort;
  ASSERT_ERR(weft_executor_create(&ex, &o), WEFT_ENOTSUP);
  /* A smaller executor afterwards: only rank 1. */
  o.initializer = NULL;
  o.workers = 1;
  ASSERT_OK(weft_executor_create(&ex, &o));
  for (int i = 0; i < 20; i++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, &T_RANK, NULL, 0, &f));
    const void *d;
    ASSERT_OK(weft_future_result(f, weft_deadline_in_ms(10000), &d, NULL));
    ASSERT_EQ(*(const int32_t *)d, 1);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
}

/* A task the worker ranks do not know (registered on the client after the
 * executor was made) is a failed future, by name, never a crash; the
 * executor goes on working. */
TEST(unknown_task) {
  conf_setup();
  conf_register_tasks();
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &mpi));
  ASSERT_OK(weft_task_register(&T_LATE));
  weft_future *f;
  int64_t x = 5;
  ASSERT_OK(weft_executor_submit(ex, &T_LATE, &x, sizeof x, &f));
  ASSERT_ERR(weft_future_result(f, weft_deadline_in_ms(10000), NULL, NULL), WEFT_ENOTASK);
  ASSERT(strstr(weft_future_error_message(f), "no task registered") != NULL);
  weft_future_release(f);
  int64_t in[10] = {0}, out[10];
  ASSERT_ERR(weft_executor_map(ex, &T_LATE, in, 8, out, 8, 10, NULL), WEFT_ENOTASK);
  /* Not registered at all: refused before anything is sent. */
  weft_task nameless = {"mpi.never", t_late};
  ASSERT_ERR(weft_executor_submit(ex, &nameless, &x, sizeof x, &f), WEFT_ENOTASK);
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f));
  ASSERT_EQ(conf_result_i64(f), 25);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* ----------------------------------------------------- malformed messages */

/* Send raw bytes to rank 1 as tag, and read one TAG_RESULT back. */
static void raw_send(const void *p, size_t len, int tag) {
  ASSERT_EQ(MPI_Send(p, (int)len, MPI_BYTE, 1, tag, weft__mpi.comm), MPI_SUCCESS);
}

static size_t raw_answer(unsigned char *buf, size_t cap) {
  MPI_Status st;
  ASSERT_EQ(MPI_Recv(buf, (int)cap, MPI_BYTE, 1, TAG_RESULT, weft__mpi.comm, &st), MPI_SUCCESS);
  int n;
  MPI_Get_count(&st, MPI_BYTE, &n);
  return (size_t)n;
}

/* The first record of an answer. */
static res_rec first_rec(const unsigned char *buf, size_t n) {
  res_hdr h;
  res_rec r;
  ASSERT_GE(n, sizeof h + sizeof r);
  memcpy(&h, buf, sizeof h);
  ASSERT_UEQ(h.magic, WEFT__MPI_MAGIC);
  ASSERT_GE(h.count, 1);
  memcpy(&r, buf + sizeof h, sizeof r);
  return r;
}

/* Messages that lie about their lengths, name unknown tasks or are not
 * weft's at all: the worker answers what it can with an error and never
 * crashes; the next executor works. Sent while no executor is alive (the
 * test thread is then the only one making MPI calls). */
TEST(malformed_messages) {
  conf_setup();
  conf_register_tasks();
  unsigned char buf[4096], ans[4096];
  size_t n;
  /* Too short for a header, a wrong magic: ignored, no answer. */
  raw_send("xy", 2, TAG_WORK);
  uint32_t junk[4] = {0xdeadbeef, 5, 6, 7};
  raw_send(junk, sizeof junk, TAG_WORK);
  /* A task record whose argument runs past the end. */
  work_hdr h = {WEFT__MPI_MAGIC, 1};
  work_rec r = {.id = 3, .kind = REC_TASK, .task = 0, .arg_len = 1000};
  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, &r, sizeof r);
  raw_send(buf, sizeof h + sizeof r + 16, TAG_WORK);
  n = raw_answer(ans, sizeof ans);
  res_rec a = first_rec(ans, n);
  ASSERT_UEQ(a.id, 3);
  ASSERT_ERR(a.rc, -EPROTO);
  /* An unknown record kind. */
  r = (work_rec){.id = 4, .kind = 77};
  memcpy(buf + sizeof h, &r, sizeof r);
  raw_send(buf, sizeof h + sizeof r, TAG_WORK);
  a = first_rec(ans, raw_answer(ans, sizeof ans));
  ASSERT_UEQ(a.id, 4);
  ASSERT_ERR(a.rc, -EPROTO);
  /* A task id beyond the table (no executor open: the table is empty). */
  r = (work_rec){.id = 5, .kind = REC_TASK, .task = 123456, .arg_len = 0};
  memcpy(buf + sizeof h, &r, sizeof r);
  raw_send(buf, sizeof h + sizeof r, TAG_WORK);
  a = first_rec(ans, raw_answer(ans, sizeof ans));
  ASSERT_UEQ(a.id, 5);
  ASSERT_ERR(a.rc, WEFT_ENOTASK);
  /* By name: one nobody registered, one too long, one registered. */
  const char *names[] = {"no.such.task", NULL, "conf.echo"};
  char longname[200];
  memset(longname, 'a', sizeof longname);
  for (int k = 0; k < 3; k++) {
    size_t nl = names[k] ? strlen(names[k]) : sizeof longname;
    r = (work_rec){.id = 6 + (uint64_t)k, .kind = REC_TASK, .task = TASK_BY_NAME,
                   .arg_len = 8, .name_len = (uint32_t)nl};
    memset(buf, 0, sizeof buf);
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, &r, sizeof r);
    memcpy(buf + sizeof h + sizeof r, names[k] ? names[k] : longname, nl);
    int64_t x = 42;
    memcpy(buf + sizeof h + sizeof r + weft__mpi_pad8(nl), &x, 8);
    raw_send(buf, sizeof h + sizeof r + weft__mpi_pad8(nl) + 8, TAG_WORK);
    a = first_rec(ans, raw_answer(ans, sizeof ans));
    ASSERT_UEQ(a.id, 6 + (uint64_t)k);
    if (k == 0) ASSERT_ERR(a.rc, WEFT_ENOTASK);
    if (k == 1) ASSERT_ERR(a.rc, -EPROTO);
    if (k == 2) {
      ASSERT_OK(a.rc);
      ASSERT_EQ(a.len, 8);
      ASSERT_EQ(memcmp(ans + sizeof(res_hdr) + sizeof(res_rec), &x, 8), 0);
    }
  }
  /* A map record whose item count overflows its data. */
  r = (work_rec){.id = 9, .kind = REC_MAP, .task = TASK_BY_NAME, .arg_len = 0xffffffffu,
                 .in_size = 0xffffffffu, .out_size = 8, .name_len = 9};
  memset(buf, 0, sizeof buf);
  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, &r, sizeof r);
  memcpy(buf + sizeof h + sizeof r, "conf.echo", 9);
  raw_send(buf, sizeof h + sizeof r + 16, TAG_WORK);
  a = first_rec(ans, raw_answer(ans, sizeof ans));
  ASSERT_UEQ(a.id, 9);
  ASSERT_ERR(a.rc, -EPROTO);
  /* A record count far beyond the records: the ones there are answered. */
  h.count = 1000000;
  r = (work_rec){.id = 10, .kind = REC_TASK, .task = TASK_BY_NAME, .arg_len = 0, .name_len = 9};
  memset(buf, 0, sizeof buf);
  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, &r, sizeof r);
  memcpy(buf + sizeof h + sizeof r, "conf.echo", 9);
  raw_send(buf, sizeof h + sizeof r + 16, TAG_WORK);
  n = raw_answer(ans, sizeof ans);
  res_hdr rh;
  memcpy(&rh, ans, sizeof rh);
  ASSERT_UEQ(rh.count, 1);
  ASSERT_OK(first_rec(ans, n).rc);
  /* Garbage hellos and cancels, and a tag that is not weft's. */
  raw_send("hello", 5, TAG_HELLO);
  unsigned char ack[1024];
  ASSERT_EQ(MPI_Recv(ack, sizeof ack, MPI_BYTE, 1, TAG_HELLO_ACK, weft__mpi.comm,
                     MPI_STATUS_IGNORE), MPI_SUCCESS);
  int32_t st;
  memcpy(&st, ack + 4, 4);
  ASSERT_ERR(st, -EPROTO);
  raw_send("c", 1, TAG_CANCEL);
  raw_send("zz", 2, 999);
  /* The worker still serves a real executor. */
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &mpi));
  int32_t in[100], out[100];
  for (int i = 0; i < 100; i++) in[i] = i;
  ASSERT_OK(weft_executor_map(ex, &T_MAP_ITEM, in, 4, out, 4, 100, NULL));
  for (int i = 0; i < 100; i++) ASSERT_EQ(out[i], i + 1);
  weft_executor_destroy(ex);
}

/* Map chunks travel two deep to a worker even when slow, so that it finds
 * its next chunk waiting; one sent ahead but not started when the map's
 * deadline passes is skipped, not run (a TAG_CANCEL reaches it first).
 * Item 1 blocks on the gate until well after the deadline, so the cancel
 * has long arrived when the worker could start item 2: no race with the
 * machine's load. */
static void *open_gate_later(void *arg) {
  weft_sleep_until(*(const int64_t *)arg);
  conf_open_gate();
  return NULL;
}

TEST(map_ahead_skipped) {
  conf_setup();
  conf_register_tasks();
  weft_executor *ex;
  weft_executor_opts o = mpi;
  o.workers = 1;
  ASSERT_OK(weft_executor_create(&ex, &o));
  int64_t in[10];
  for (int i = 0; i < 10; i++) in[i] = i + 1;
  in[1] = 0; /* T_GATED: blocks until the gate opens */
  int64_t deadline = weft_deadline_in_ms(100), open_at = deadline + 500 * 1000000ll;
  pthread_t opener;
  ASSERT_EQ(pthread_create(&opener, NULL, open_gate_later, &open_at), 0);
  weft_map_opts mo = {.chunksize = 1, .deadline_ns = deadline};
  ASSERT_ERR(weft_executor_map(ex, &T_GATED, in, 8, NULL, 0, 10, &mo), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now_ns(), open_at); /* it waited for the running item */
  /* Item 0 ran, item 1 was running at the deadline, item 2 had been sent
   * ahead and was skipped. */
  ASSERT_EQ(atomic_load(&conf_sh->ran), 2);
  ASSERT_EQ(atomic_load(&conf_sh->norder), 1);
  ASSERT_EQ(atomic_load(&conf_sh->order[0]), 1);
  pthread_join(opener, NULL);
  conf_sleep_ms(50);
  ASSERT_EQ(atomic_load(&conf_sh->ran), 2);
  /* The executor still works. */
  int32_t x = 3;
  int64_t y;
  ASSERT_OK(weft_executor_map(ex, &T_SLEEP_SQUARE, &x, 4, &y, 8, 1, NULL));
  ASSERT_EQ(y, 9);
  weft_executor_destroy(ex);
}

/* Many tiny tasks: one at a time with futures (the window grows and
 * records travel many to a message), submit_many, and a big map. */
TEST(many_small) {
  conf_setup();
  conf_register_tasks();
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &mpi));
  enum { N = 20000 };
  weft_future **fs = malloc(N * sizeof *fs);
  for (int64_t i = 0; i < N; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, &fs[i]));
  for (int64_t i = 0; i < N; i++) {
    ASSERT_EQ(conf_result_i64(fs[i]), i * i);
    weft_future_release(fs[i]);
  }
  int64_t *args = malloc(N * sizeof *args);
  for (int i = 0; i < N; i++) args[i] = i;
  ASSERT_OK(weft_executor_submit_many(ex, &T_SQUARE, args, sizeof *args, N, fs));
  for (int64_t i = 0; i < N; i++) {
    ASSERT_EQ(conf_result_i64(fs[i]), i * i);
    weft_future_release(fs[i]);
  }
  enum { M = 200000 };
  int32_t *in = malloc(M * sizeof *in), *out = malloc(M * sizeof *out);
  for (int i = 0; i < M; i++) in[i] = i;
  ASSERT_OK(weft_executor_map(ex, &T_MAP_ITEM, in, 4, out, 4, M, NULL));
  for (int i = 0; i < M; i++) ASSERT_EQ(out[i], i + 1);
  weft_executor_stats s;
  weft_executor_stats_get(ex, &s);
  ASSERT_UEQ(s.completed, 2 * N + M);
  weft_executor_destroy(ex);
  free(fs);
  free(args);
  free(in);
  free(out);
}

/* Races on the client: four threads submit (one at a time and in batches)
 * and cancel some of their futures while the communication thread sends
 * and ends them; a shutdown that cancels pending work lands in the middle.
 * Every future ends exactly once, done with the right result or
 * cancelled, and every submit after the shutdown is refused. */
enum { STRESS_THREADS = 4, STRESS_PER = 3000 };

typedef struct stress_arg {
  weft_executor *ex;
  int id;
  atomic_int *stop;
  long done, cancelled, refused;
} stress_arg;

static void *stress_submitter(void *p) {
  stress_arg *a = p;
  weft_future *fs[64];
  int64_t args[64];
  unsigned seed = (unsigned)a->id * 7919u + 1;
  for (int round = 0; round < STRESS_PER / 64; round++) {
    int n = 0, r = 0;
    if (round % 3 == 0) {
      for (int i = 0; i < 64; i++) args[i] = a->id * 1000000 + round * 64 + i;
      r = weft_executor_submit_many(a->ex, &T_SQUARE, args, sizeof args[0], 64, fs);
      if (r == 0) n = 64;
    } else {
      for (; n < 64; n++) {
        args[n] = a->id * 1000000 + round * 64 + n;
        r = weft_executor_submit(a->ex, &T_SQUARE, &args[n], sizeof args[n], &fs[n]);
        if (r) break;
      }
    }
    if (r) {
      if (r != WEFT_ESHUTDOWN) return (void *)1;
      a->refused++;
    }
    for (int i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      if ((seed >> 16) % 4 == 0) weft_future_cancel(fs[i]);
    }
    for (int i = 0; i < n; i++) {
      const void *d;
      size_t len;
      int e = weft_future_result(fs[i], weft_deadline_in_ms(30000), &d, &len);
      if (e == 0) {
        if (len != 8 || *(const int64_t *)d != args[i] * args[i]) return (void *)2;
        a->done++;
      } else if (e == WEFT_ECANCELED) {
        a->cancelled++;
      } else {
        return (void *)3;
      }
      weft_future_release(fs[i]);
    }
    if (r || atomic_load(a->stop)) break;
  }
  return NULL;
}

TEST(stress_submitters) {
  conf_setup();
  conf_register_tasks();
  for (int rep = 0; rep < 3; rep++) {
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &mpi));
    atomic_int stop = 0;
    stress_arg a[STRESS_THREADS];
    pthread_t t[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
      a[i] = (stress_arg){ex, i, &stop, 0, 0, 0};
      ASSERT_EQ(pthread_create(&t[i], NULL, stress_submitter, &a[i]), 0);
    }
    /* Let them run, then shut down in the middle (not at all on rep 0). */
    conf_sleep_ms(20 + 30 * rep);
    if (rep > 0)
      ASSERT_OK(weft_executor_shutdown(ex, rep == 2 ? WEFT_SHUTDOWN_CANCEL_PENDING : 0, 0));
    long done = 0, cancelled = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
      void *rv;
      ASSERT_EQ(pthread_join(t[i], &rv), 0);
      ASSERT_PTR_EQ(rv, NULL);
      done += a[i].done;
      cancelled += a[i].cancelled;
    }
    ASSERT_GT(done, 0);
    if (rep == 0) ASSERT_EQ(done + cancelled, (long)STRESS_THREADS * (STRESS_PER / 64) * 64);
    weft_executor_stats st;
    ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_WAIT, weft_deadline_in_ms(30000)));
    weft_executor_stats_get(ex, &st);
    ASSERT_UEQ(st.queued, 0);
    ASSERT_UEQ(st.running, 0);
    ASSERT_UEQ(st.completed, (uint64_t)(done + cancelled));
    weft_executor_destroy(ex);
  }
}

/* The client's communication thread sleeps when nothing is in flight: an
 * idle executor costs the client no CPU, and wakes for the next task. */
static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

TEST(idle_client) {
  conf_setup();
  conf_register_tasks();
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, &mpi));
  for (int64_t i = 0; i < 2000; i++) ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &i, sizeof i, NULL));
  CONF_EVENTUALLY(atomic_load(&conf_sh->ran) == 2000);
  weft_sleep_until(weft_deadline_in_ms(20));
  int64_t c0 = cpu_ns();
  weft_sleep_until(weft_deadline_in_ms(300));
  ASSERT_LT(cpu_ns() - c0, 15 * 1000000ll); /* a polling thread would burn ~300 ms */
  int64_t x = 9;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, &T_SQUARE, &x, sizeof x, &f));
  ASSERT_EQ(conf_result_i64(f), 81);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* --user-traffic: the program initializes MPI itself (weft_mpi_init then
 * takes the level it got) and, before weft_mpi_init, rank 0 sends every
 * other rank a message on MPI_COMM_WORLD with weft's own tags, which nobody
 * ever receives. weft's messages run on a communicator of their own, so
 * the workers never see it (were they on MPI_COMM_WORLD, they would take it
 * for work and answer a malformed message). */
static const int user_tags[] = {TAG_HELLO, TAG_WORK, TAG_CANCEL, TAG_CLOSE, TAG_FINALIZE};

static void user_traffic(int *argc, char ***argv) {
  int provided, rank, size;
  ASSERT_EQ(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), MPI_SUCCESS);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != 0) return;
  static uint32_t junk[4] = {WEFT__MPI_MAGIC, 1, 0, 0};
  static MPI_Request reqs[64 * 5];
  int k = 0;
  for (int r = 1; r < size && r < 64; r++)
    for (size_t t = 0; t < sizeof user_tags / sizeof user_tags[0]; t++)
      MPI_Isend(junk, sizeof junk, MPI_BYTE, r, user_tags[t], MPI_COMM_WORLD, &reqs[k++]);
  /* Small messages go eagerly; the requests are left to MPI_Finalize. */
  for (int i = 0; i < k; i++) MPI_Request_free(&reqs[i]);
}

int main(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[1], "--shm") != 0) {
    fprintf(stderr, "usage: mpirun -n N %s --shm FILE [--user-traffic] CASE...\n", argv[0]);
    return 2;
  }
  conf_shared_file = argv[2];
  bool own = argc > 3 && strcmp(argv[3], "--user-traffic") == 0;
  conf_map_shared();
  conf_register_tasks();
  ASSERT_OK(weft_task_register(&T_RANK));
  if (own) user_traffic(&argc, &argv);
  ASSERT_OK(weft_mpi_init(&argc, &argv, NULL)); /* workers stay inside */
  int first = own ? 4 : 3;
  int failed = mpi_run_cases(argc - first, argv + first);
  mpi_leak_check();
  ASSERT_OK(weft_mpi_finalize());
  if (own) {
    /* Every case above passed with the program's messages waiting on the
     * workers (a TAG_FINALIZE among them): weft never saw them. */
    MPI_Finalize();
    printf("ok user_traffic\n");
  }
  return failed != 0;
}
