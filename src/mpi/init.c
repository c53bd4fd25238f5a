/*
 * Start-up and shut-down of the MPI backend: weft_mpi_init turns rank 0
 * into the client (plugging weft__mpi_ops into the executor front end) and
 * every other rank into a worker (weft__mpi_serve, which never returns);
 * weft_mpi_finalize, or the exit handler, tells the workers to finish.
 *
 * Locking: none. weft__mpi is written by weft_mpi_init before any executor
 * exists and read-only afterwards; `live` is atomic.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "mpi/mpi_impl.h"

weft__mpi_global weft__mpi = {.comm = MPI_COMM_NULL, .rank = -1, .size = -1};

void weft__mpi_nap(int64_t ns) {
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  nanosleep(&ts, NULL);
}

int weft__mpi_names(char **buf, size_t *len, uint32_t *count) {
  const weft_task **v;
  size_t n;
  int r = weft__task_registry_list(&v, &n);
  if (r) return r;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += strlen(v[i]->name) + 1;
  char *b = weft__malloc(total ? total : 1);
  if (!b) {
    weft__free(v);
    return WEFT_ENOMEM;
  }
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(v[i]->name) + 1;
    memcpy(b + at, v[i]->name, l);
    at += l;
  }
  weft__free(v);
  *buf = b;
  *len = total;
  *count = (uint32_t)n;
  return 0;
}

static void at_exit(void) {
  if (!weft__mpi.inited || weft__mpi.finalized || weft__mpi.rank != 0) return;
  int r = weft_mpi_finalize();
  if (r == WEFT_EBUSY) {
    /* An executor is still alive, so its thread may be in an MPI call:
     * finalizing now is not allowed. End the job instead of hanging it. */
    fprintf(stderr, "weft mpi: the program exited with an MPI executor alive "
                    "(weft_executor_destroy it first); aborting the job\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

static int mpi_fail(const char *what, int code) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "code %d", code);
  fprintf(stderr, "weft mpi: %s failed: %s\n", what, s);
  return WEFT_EIO;
}

int weft_mpi_init(int *argc, char ***argv, const weft_mpi_opts *opts) {
  if (weft__mpi.inited) return WEFT_EALREADY;
  int want = opts && opts->thread_level ? opts->thread_level : MPI_THREAD_SERIALIZED;
  int flag = 0, provided = 0, e;
  MPI_Initialized(&flag);
  if (!flag) {
    e = MPI_Init_thread(argc, argv, want, &provided);
    if (e != MPI_SUCCESS) return mpi_fail("MPI_Init_thread", e);
    weft__mpi.own_mpi = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    fprintf(stderr, "weft mpi: the MPI library gives thread level %d; weft needs "
                    "MPI_THREAD_SERIALIZED (%d)\n", provided, MPI_THREAD_SERIALIZED);
    return WEFT_ENOTSUP;
  }
  e = MPI_Comm_dup(MPI_COMM_WORLD, &weft__mpi.comm);
  if (e != MPI_SUCCESS) return mpi_fail("MPI_Comm_dup", e);
  /* Errors on weft's communicator come back as codes (the executor then
   * reports broken) instead of ending the job from inside a call. */
  MPI_Comm_set_errhandler(weft__mpi.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(weft__mpi.comm, &weft__mpi.rank);
  MPI_Comm_size(weft__mpi.comm, &weft__mpi.size);
  weft__mpi.inited = true;
  if (weft__mpi.rank != 0) weft__mpi_serve();
  weft__executor_backend_set(WEFT_EXECUTOR_MPI, &weft__mpi_ops);
  atexit(at_exit);
  return 0;
}

int weft_mpi_finalize(void) {
  if (!weft__mpi.inited || weft__mpi.finalized) return WEFT_EALREADY;
  if (atomic_load(&weft__mpi.live)) return WEFT_EBUSY;
  if (atomic_load(&weft__mpi.broken)) {
    /* A rank died or MPI failed under an executor: a clean MPI_Finalize
     * would wait for it. End the job, non-zero, instead. */
    fprintf(stderr, "weft mpi: the MPI executor broke (a rank died?); aborting the job\n");
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  weft__executor_backend_set(WEFT_EXECUTOR_MPI, NULL);
  weft__mpi.finalized = true;
  uint32_t magic = WEFT__MPI_MAGIC;
  for (int r = 1; r < weft__mpi.size; r++)
    MPI_Send(&magic, sizeof magic, MPI_BYTE, r, TAG_FINALIZE, weft__mpi.comm);
  MPI_Comm_free(&weft__mpi.comm);
  if (weft__mpi.own_mpi) MPI_Finalize();
  return 0;
}

int weft_mpi_rank(void) { return weft__mpi.rank; }
int weft_mpi_size(void) { return weft__mpi.size; }
