/*
 * The mpi demo, tour part 4: "many machines, many processes" from the
 * seed's performance notes. The seed's squares map runs on MPI ranks: the
 * tour launches weft_tour_mpi (examples/tour/mpi/squares.c) as
 *
 *   mpiexec -n 3 weft_tour_mpi
 *
 * and shows its output. Built only when CMake found MPI; otherwise the demo
 * says how to get it and counts as skipped, not failed.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tour.h"

extern char **environ;

int tour_mpi(const tour_opts *o) {
  (void)o;
  tour_title("mpi", "many machines, many processes: print(list(ex.map(f, range(10)))) "
                    "on 3 MPI ranks");
#if defined(WEFT_TOUR_MPI_PROG) && defined(WEFT_TOUR_MPIEXEC)
  /* What Open MPI needs as root, in a container, with more ranks than
   * cores; MPICH ignores these. */
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
  char *argv[] = {(char *)WEFT_TOUR_MPIEXEC, (char *)"-n", (char *)"3",
                  (char *)WEFT_TOUR_MPI_PROG, NULL};
  printf("$ mpiexec -n 3 weft_tour_mpi\n");
  fflush(stdout);
  pid_t pid;
  int r = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
  if (r) {
    fprintf(stderr, "mpi: cannot start %s: %s\n", argv[0], strerror(r));
    return 1;
  }
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "mpi: the MPI job failed (status 0x%x)\n", st);
    return 1;
  }
  return 0;
#else
  printf("skipped: this weft was built without MPI. Install it (Debian: apt-get install "
         "openmpi-bin libopenmpi-dev) and rebuild to run this part.\n");
  return 0;
#endif
}
