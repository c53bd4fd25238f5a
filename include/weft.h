/*
 * weft.h: the whole of weft's public API.
 *
 * weft gives C the parallel toolkit that Python programmers know from
 * threading, queue, concurrent.futures, multiprocessing, gevent and
 * mpi4py.futures. Include this header, link with -lweft (pkg-config weft).
 */
#ifndef WEFT_H
#define WEFT_H

#include "weft/common.h"
#include "weft/thread.h"
#include "weft/queue.h"
#include "weft/future.h"
#include "weft/executor.h"
#include "weft/process.h"
#include "weft/shmq.h"
#include "weft/coro.h"
#include "weft/mpi.h" /* the MPI backend: its calls live in the library weft_mpi */
#include "weft/patch.h"

#endif
