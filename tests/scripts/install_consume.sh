#!/bin/sh
# Install the build in $1 into a fresh prefix, then build and run a consumer
# ($2/main.c) twice: with pkg-config and with CMake's find_package(weft).
set -eu
build=$1 consumer=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/pkgconfig | head -n1)
libdir=${libdir%/pkgconfig}

PKG_CONFIG_PATH="$libdir/pkgconfig" cc -o "$tmp/pc" "$consumer/main.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs weft)
LD_LIBRARY_PATH="$libdir" "$tmp/pc"

cmake -S "$consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cm/consumer"
