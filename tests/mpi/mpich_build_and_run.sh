#!/bin/sh
# The MPI tests under MPICH. Open MPI and MPICH have different ABIs, so the
# MPI part of weft and the MPI test programs are built a second time with
# MPICH's compiler wrapper (mpicc.mpich), in a build directory of their
# own, and run under mpiexec.mpich: the conformance suite with 3 ranks,
# ranks that registered different tasks, and a worker rank killed mid-run.
#   mpich_build_and_run.sh SOURCE_DIR BUILD_DIR BUILD_TYPE [SANITIZE]
set -eu
src=$1 build=$2 type=${3:-Debug} san=${4:-}
mpicc=$(command -v mpicc.mpich) || { echo "mpicc.mpich not found (apt-get install mpich libmpich-dev)"; exit 1; }
mpiexec=$(command -v mpiexec.mpich) || { echo "mpiexec.mpich not found"; exit 1; }
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE="$type" -DWEFT_WERROR=ON \
  -DWEFT_SANITIZE="$san" -DWEFT_BUILD_EXAMPLES=OFF \
  -DMPI_C_COMPILER="$mpicc" -DMPIEXEC_EXECUTABLE="$mpiexec" \
  -DWEFT_MPI_LAUNCHER_KIND=mpich >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
grep -q 'MPICH' "$build/CMakeCache.txt" || grep -q 'mpich' "$build/CMakeCache.txt" ||
  { echo "the MPICH build did not find MPICH"; exit 1; }
cmake --build "$build" -j2 --target mpi_conformance mpi_mismatch mpi_kill >"$build.build.log" 2>&1 ||
  { tail -50 "$build.build.log"; exit 1; }
# The programs really link MPICH, not Open MPI.
ldd "$build/tests/mpi/mpi_conformance" | grep -q mpich ||
  { echo "mpi_conformance does not link MPICH:"; ldd "$build/tests/mpi/mpi_conformance"; exit 1; }
cd "$build"
ctest -R '^mpi\.mpich\.(n3_conformance|registries_differ|worker_killed)$' --output-on-failure
