#!/usr/bin/env bash
# The test suite: bootstrap (packages, configure, build), then ctest.
# FMD_SANITIZE=1 tests/run.sh builds in build-asan/ with ASan+UBSan.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
if [[ ${FMD_SANITIZE:-0} == 1 ]]; then
  export FMD_BUILD_DIR=build-asan FMD_CMAKE_ARGS="-DFMD_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo"
  export ASAN_OPTIONS=detect_leaks=1
fi
scripts/bootstrap.sh
build=${FMD_BUILD_DIR:-build}
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
