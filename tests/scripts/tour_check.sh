#!/bin/sh
# Run the tour in quick mode and check that each demo printed what the seed's
# snippet prints.
set -eu
# $2: the sanitizers of this build (empty for none). Under a sanitizer the
# mpi demo runs on its own, with the settings weft's MPI tests use for the
# MPI libraries' own memory and threads (tests/mpi/mpi_run.sh); the others
# keep the sanitizers' defaults.
if [ -n "${2:-}" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  out=$("$1" --quick --skip mpi)
  out_mpi=$(LSAN_OPTIONS="suppressions=$here/../mpi/lsan.supp:print_suppressions=0:leak_check_at_exit=0" \
            ASAN_OPTIONS="fast_unwind_on_malloc=0:${ASAN_OPTIONS:-}" \
            TSAN_OPTIONS="suppressions=$here/../mpi/tsan.supp:${TSAN_OPTIONS:-}" \
            UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no \
            "$1" --quick mpi)
  out=$(printf '%s\n%s\n' "$out" "$out_mpi")
else
  out=$("$1" --quick)
fi
printf '%s\n' "$out"
check() {
  printf '%s\n' "$out" | grep -q -- "$1" || { echo "tour output lacks: $1" >&2; exit 1; }
}
check '=== threads:'
check 'Starting Thread-1'
check 'Exiting Main Thread'
check 'Exiting Thread-2'
check '=== thread_pool: ThreadPool(4).map(f, range(10))'
check '\[0, 1, 4, 9, 16, 25, 36, 49, 64, 81\]'
check '=== processes:'
for i in 0 1 2 3 4; do check "^Worker: $i\$"; done
check '=== process_pool: Pool(4).map(f, range(10))'
n=$(printf '%s\n' "$out" | sed -n '/=== process_pool:/,/=== queue:/p' | grep -c '^\[0, 1, 4, 9, 16, 25, 36, 49, 64, 81\]$')
[ "$n" -eq 4 ] || { echo "tour output has $n process_pool lists, expected 4" >&2; exit 1; }
check '=== queue:'
check 'all 10 items done'
check 'queue.PriorityQueue gets: 1 2 3 4 5'
check 'queue.LifoQueue gets: 2 1 4 3 5'
check '=== process_queue:'
# Python names the child after the processes started so far: Process-1 when
# the demo runs alone, Process-6 after the processes demo's five workers.
check '^Process-[0-9]* Just Do it; Fun [A-Z]$'
check '=== gevent_threadpool:'
check 'Running "time.sleep(1)" 4 times with 3 threads. Should take about 2 seconds: 0\.[2-3][0-9][0-9]s'
check '=== mpi: many machines, many processes'
# Part 4 runs when weft was built with MPI; without it the demo says so.
if ! printf '%s\n' "$out" | grep -q 'skipped: this weft was built without MPI'; then
  check 'rank 0 of 3: map(f, range(10)) on 2 worker ranks'
  printf '%s\n' "$out" | grep -A1 'rank 0 of 3' | grep -q '\[0, 1, 4, 9, 16, 25, 36, 49, 64, 81\]' ||
    { echo "tour output lacks the MPI squares" >&2; exit 1; }
fi
check '=== monkey_patch: from gevent import monkey; monkey.patch_all()'
for i in 0 1 2 3; do check "^reply to request $i\$"; done
check '4 blocking fetches of a 1 s reply took 0\.[1-2][0-9][0-9]s: they overlapped'
