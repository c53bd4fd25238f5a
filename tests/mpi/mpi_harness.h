/* The MPI test programs' harness: see mpi_harness.c. */
#ifndef WEFT_MPI_HARNESS_H
#define WEFT_MPI_HARNESS_H

#include "weft_test.h"
#include "weft/mpi.h"

/* Run the cases named in argv[0..argc) in order, printing "ok NAME" for
 * each; returns how many names were unknown (a failed case aborts). */
int mpi_run_cases(int argc, char **argv);

/* Sanitized builds: check for leaks now, while the MPI libraries' plugins
 * are loaded (the launcher script turns the check at exit off); fails the
 * test if any is found. A no-op otherwise. Call before weft_mpi_finalize. */
void mpi_leak_check(void);

#endif
