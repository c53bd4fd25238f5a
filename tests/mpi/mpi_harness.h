/* The MPI test programs' harness: see mpi_harness.c. */
#ifndef WEFT_MPI_HARNESS_H
#define WEFT_MPI_HARNESS_H

#include "weft_test.h"
#include "weft/mpi.h"

/* Run the cases named in argv[0..argc) in order, printing "ok NAME" for
 * each; returns how many names were unknown (a failed case aborts). */
int mpi_run_cases(int argc, char **argv);

#endif
