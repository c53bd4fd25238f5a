#!/bin/sh
# Run one MPI test program as a real job.
#   mpi_run.sh KIND MPIEXEC NRANKS PROGRAM [CASE... | --expect-fail]
# KIND: openmpi, openmpi-recovery (the job survives a dead rank), openmpi-two-hosts (a hostfile with localhost and
# 127.0.0.2, ranks talking TCP over loopback) or mpich. With cases, the
# program is a conformance runner: it gets --shm FILE and the cases, and
# every case must print "ok". With --expect-fail the program checks a
# failure itself (registries that differ, a killed rank): the job must end
# non-zero well within the timeout (never hang) and print the program's
# own "EXPECTED:" line.
set -u
kind=$1 mpiexec=$2 n=$3 prog=$4
shift 4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# What Open MPI needs in a container, as root, on a 2-core machine.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Open MPI's shared-memory segments go into this run's own directory, which
# the trap removes: a test that kills a rank leaves nothing in /dev/shm.
export OMPI_MCA_btl_vader_backing_directory="$tmp"
export OMPI_MCA_rmaps_base_oversubscribe=1
# Sanitized builds: MPI libraries keep memory until exit, by design.
if [ -n "${WEFT_MPI_SANITIZE:-}" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  # Leaks are checked by the programs before MPI_Finalize (mpi_leak_check
  # and the worker ranks): at exit the MPI plugins are unloaded and their
  # memory cannot be told from weft's.
  export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0:leak_check_at_exit=0"
  # Full stacks (through the MPI libraries, built without frame pointers),
  # so that their allocations match the suppressions by library name.
  export ASAN_OPTIONS="fast_unwind_on_malloc=0:${ASAN_OPTIONS:-}"
  export TSAN_OPTIONS="suppressions=$here/tsan.supp:${TSAN_OPTIONS:-}"
  # MPICH's UCX transport hooks madvise/mmap, which crashes under TSan when
  # its own threads exit: no hooks (they only speed up memory registration).
  export UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no
fi

case $kind in
  openmpi) launch="$mpiexec --oversubscribe -n $n" ;;
  # The job lives on when a rank dies: weft must notice by itself.
  openmpi-recovery) launch="$mpiexec --oversubscribe --enable-recovery -n $n" ;;
  openmpi-two-hosts)
    # Two "hosts": Open MPI starts the second through its rsh agent, here a
    # script that runs the command on this machine; ranks talk TCP over
    # the loopback interface.
    printf 'localhost slots=2\n127.0.0.2 slots=2\n' >"$tmp/hosts"
    printf '#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -*) shift ;; *) shift; break ;; esac; done\nexec sh -c "$*"\n' >"$tmp/rsh"
    chmod +x "$tmp/rsh"
    launch="$mpiexec --oversubscribe --hostfile $tmp/hosts -n $n --map-by node
      --mca plm_rsh_agent $tmp/rsh --mca btl tcp,self --mca btl_tcp_if_include lo
      --mca oob_tcp_if_include lo"
    ;;
  mpich) launch="$mpiexec -n $n" ;;
  *) echo "unknown launcher kind $kind" >&2; exit 2 ;;
esac

start=$(date +%s)
if [ "${1:-}" = "--expect-fail" ]; then
  # shellcheck disable=SC2086
  timeout -k 5 90 $launch "$prog" >"$tmp/out" 2>&1
  rc=$?
  cat "$tmp/out"
  took=$(( $(date +%s) - start ))
  echo "== launcher exit status $rc after ${took}s"
  # 124: timeout(1) ended it; 137 after the time limit: it had to KILL it.
  # (A launcher passes on a killed rank's 137 by itself, at once.)
  if [ $rc -eq 124 ] || { [ $rc -eq 137 ] && [ "$took" -ge 90 ]; }; then
    echo "FAIL: the job hung (killed by timeout)"; exit 1
  fi
  # mpirun --enable-recovery exits 0 even after MPI_Abort: there the
  # program's own EXPECTED lines (the dead rank reported, destroy returned)
  # are what counts.
  if [ $rc -eq 0 ] && [ "$kind" != openmpi-recovery ]; then
    echo "FAIL: the launcher exited 0"; exit 1
  fi
  grep -q '^EXPECTED:' "$tmp/out" || { echo "FAIL: the program did not see the failure it expects"; exit 1; }
  grep -q '^UNEXPECTED:' "$tmp/out" && { echo "FAIL"; exit 1; }
  if [ "$kind" = openmpi-recovery ]; then
    grep -q '^EXPECTED: destroyed' "$tmp/out" ||
      { echo "FAIL: the client did not report the dead rank and get past destroy"; exit 1; }
  fi
  exit 0
fi

: >"$tmp/shm"
# shellcheck disable=SC2086
timeout -k 5 110 $launch "$prog" --shm "$tmp/shm" "$@" >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
echo "== launcher exit status $rc after $(( $(date +%s) - start ))s"
[ $rc -eq 0 ] || { echo "FAIL: the job failed"; exit 1; }
for c in "$@"; do
  case $c in --user-traffic) c=user_traffic ;; esac
  grep -q "^ok $c\b" "$tmp/out" || { echo "FAIL: case $c did not pass"; exit 1; }
done
echo "all $# cases passed with $n ranks ($kind)"
