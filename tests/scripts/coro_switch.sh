#!/bin/sh
# The coroutine tests on the other context switches than the one the main
# build uses:
#   aarch64  cross-compiled with gcc-aarch64-linux-gnu (src/arch/aarch64/
#            switch.S) and run under qemu-user;
#   generic  the portable ucontext switch (src/arch/generic/switch.c),
#            built natively with WEFT_CORO_SWITCH=generic;
#   fortify  the native switch in a Release build hardened as distributions
#            build (-D_FORTIFY_SOURCE=3, stack protector, stack-clash
#            protection), where custom switches are known to break, and
#            where -O2-only warnings show.
#
#   coro_switch.sh build KIND SRC_DIR BUILD_DIR   configure and build
#   coro_switch.sh run KIND BUILD_DIR NAME        run tests/coro/test_NAME.c's
#                                                 binary (all of its cases,
#                                                 each in its own process)
set -eu
cc=${WEFT_AARCH64_CC:-aarch64-linux-gnu-gcc}
sysroot=${WEFT_AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
kind=$2
case "$1" in
build)
  src=$3
  out=$4
  case "$kind" in
  aarch64)
    set -- -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
      -DCMAKE_C_COMPILER="$cc" -DCMAKE_ASM_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug
    want=src/arch/aarch64/switch.S ;;
  generic)
    set -- -DWEFT_CORO_SWITCH=generic -DCMAKE_BUILD_TYPE=Debug
    want=src/arch/generic/switch.c ;;
  fortify)
    set -- -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_C_FLAGS=-D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection"
    want=src/arch/ ;;
  *) echo "unknown kind $kind" >&2; exit 2 ;;
  esac
  cmake -S "$src" -B "$out" "$@" -DWEFT_WERROR=ON \
    -DWEFT_BUILD_EXAMPLES=OFF >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
  grep -q "$want" "$out/CMakeFiles/weft_objects.dir/build.make" ||
    { echo "the $kind build does not compile $want" >&2; exit 1; }
  cmake --build "$out" -j2 --target coro_test_hub coro_test_chan coro_test_io coro_test_watchdog \
    coro_test_stress >>"$out.log" 2>&1 ||
    { tail -50 "$out.log"; exit 1; }
  if [ "$kind" = aarch64 ]; then
    # ELF e_machine (offset 18) of an aarch64 binary is 183.
    machine=$(od -An -tu2 -j18 -N2 "$out/tests/coro_test_hub" | tr -d ' ')
    [ "$machine" = 183 ] || { echo "coro_test_hub is not aarch64 code ($machine)" >&2; exit 1; }
  fi
  ;;
run)
  out=$3
  if [ "$kind" = aarch64 ]; then
    # qemu-user cannot start threads in a forked child of a threaded process.
    WEFT_TEST_NO_THREADS_AFTER_FORK=1 exec qemu-aarch64 -L "$sysroot" "$out/tests/coro_test_$4"
  fi
  exec "$out/tests/coro_test_$4"
  ;;
*)
  echo "usage: $0 build KIND SRC BUILD | run KIND BUILD NAME" >&2
  exit 2
  ;;
esac
