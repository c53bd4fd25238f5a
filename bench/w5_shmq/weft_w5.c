/*
 * bench/w5_shmq/weft_w5.c: W5 on weft_shmq (the side under test).
 *
 *  - "weft":       one weft_shmq_put / weft_shmq_get per message.
 *  - "weft.batch": weft_shmq_put_many / get_many of up to 64 messages, a
 *                  different API from the peers' (reported on its own line,
 *                  beside the pipe's own batching by the kernel).
 * The queue: for 64-byte messages, slots of 64 bytes (one per message) and
 * 256 KiB; for 1 MiB messages, slots of 64 KiB and 2 MiB (two messages in
 * flight: of 2, 4 and 8 MiB with slots of 4 KiB to 1 MiB, tried on a busy
 * machine, this was the fastest, 5.5-7 GB/s against 4.8-5.7 for the rest). Every call is checked; an error ends the run with status 1.
 */
#include <weft/shmq.h>

#include "w5.h"

#define BATCH 64

static weft_shmq *q;
static bool batch;
static unsigned char *pend; /* producer: messages waiting for put_many */
static size_t npend, msz;
static unsigned char *got;  /* consumer: messages from get_many */
static size_t ngot, nnext;

__attribute__((noreturn)) static void die_rc(const char *call, int rc) {
  bench_die("%s failed: %s (%s)", call, weft_err_name(rc), weft_strerror(rc));
}

static void setup(size_t size, uint64_t total) {
  (void)total;
  weft_shmq_opts o = {.capacity = size == 64 ? 256 * 1024 : 2u << 20,
                      .slot_size = size == 64 ? 64 : 64 * 1024,
                      .msg_max = size};
  int rc = weft_shmq_create(&q, &o);
  if (rc != 0) die_rc("weft_shmq_create", rc);
  msz = size;
  if (batch) {
    pend = malloc(BATCH * size);
    got = malloc(BATCH * size);
    if (!pend || !got) bench_die("out of memory");
  }
}

static void send_one(const void *m, size_t size) {
  int rc = weft_shmq_put(q, m, size, WEFT_FOREVER);
  if (rc != 0) die_rc("weft_shmq_put", rc);
}

static void recv_one(void *buf, size_t size) {
  size_t len;
  int rc = weft_shmq_get(q, buf, size, &len, WEFT_FOREVER);
  if (rc != 0) die_rc("weft_shmq_get", rc);
  if (len != size) bench_die("got %zu bytes, expected %zu", len, size);
}

static void flush_batch(void) {
  const void *msgs[BATCH];
  size_t lens[BATCH];
  for (size_t i = 0; i < npend; i++) {
    msgs[i] = pend + i * msz;
    lens[i] = msz;
  }
  size_t done = 0;
  while (done < npend) {
    size_t n;
    int rc = weft_shmq_put_many(q, msgs + done, lens + done, npend - done, WEFT_FOREVER, &n);
    if (rc != 0) die_rc("weft_shmq_put_many", rc);
    done += n;
  }
  npend = 0;
}

static void send_batch(const void *m, size_t size) {
  memcpy(pend + npend * size, m, size);
  if (++npend == BATCH) flush_batch();
}

static void recv_batch(void *buf, size_t size) {
  if (nnext == ngot) {
    size_t lens[BATCH];
    int rc = weft_shmq_get_many(q, got, BATCH * size, lens, BATCH, &ngot, WEFT_FOREVER);
    if (rc != 0) die_rc("weft_shmq_get_many", rc);
    for (size_t i = 0; i < ngot; i++)
      if (lens[i] != size) bench_die("got %zu bytes, expected %zu", lens[i], size);
    nnext = 0;
  }
  memcpy(buf, got + nnext++ * size, size);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "weft.batch") == 0) {
    batch = true;
    w5_impl impl = {setup, send_batch, flush_batch, recv_batch};
    return w5_main(argc, argv, &impl, "weft.batch");
  }
  w5_impl impl = {setup, send_one, NULL, recv_one};
  return w5_main(argc, argv, &impl, "weft");
}
