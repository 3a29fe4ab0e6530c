#!/usr/bin/env bash
# Build the libFuzzer targets (clang, FMD_FUZZ=ON, ASan + UBSan) and run
# each for a bounded time:  fuzz/run.sh [seconds per target, default 60] [target...]
# The committed seeds (fuzz/corpus/<target>/, and fuzz/regressions/<target>/:
# inputs that crashed a target once) start a working corpus
# in the build directory (so what the fuzzer adds is not committed by
# mistake). A crash is left as <build>/artifacts/<target>-crash-*, its
# reproduction printed, and the script exits 1. FUZZ_BUILD_DIR overrides
# the build directory (default build-fuzz).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
secs=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(png jpeg safetensors pth json cli video)
build=${FUZZ_BUILD_DIR:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz/run.sh: clang is needed (apt-get install clang)" >&2; exit 1; }
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFMD_FUZZ=ON >/dev/null
fi
cmake --build "$build" -j"${FUZZ_JOBS:-1}" --target "${targets[@]/#/fuzz_}" >/dev/null
mkdir -p "$build/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# the limits are what is fuzzed, not the machine's memory: a header may
# claim 8192 x 8192 pixels in a few bytes, decoded whole below these
export FMD_MAX_IMAGE_PIXELS=${FMD_MAX_IMAGE_PIXELS:-1048576} FMD_MAX_TENSOR_BYTES=${FMD_MAX_TENSOR_BYTES:-256M}
status=0
for t in "${targets[@]}"; do
  work=$build/corpus/$t
  mkdir -p "$work"
  log=$build/fuzz_$t.log
  # the Lua state keeps garbage between inputs, which libFuzzer's per-input
  # leak check takes for a leak and scans for (100x slower); leaks of the
  # bindings are LeakSanitizer's job in the sanitizer suite
  extra=()
  [[ $t == json || $t == cli ]] && extra=(-detect_leaks=0)
  # -rss_limit_mb: the readers bound their memory; 2 GB is a finding
  seeds=("fuzz/corpus/$t")
  [[ -d fuzz/regressions/$t ]] && seeds+=("fuzz/regressions/$t")   # what crashed once
  if "$build/fuzz_$t" "$work" "${seeds[@]}" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "${extra[@]}" >"$log" 2>&1; then
    stats=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $t: ${secs}s, ${runs:-?} executions, ${stats#*	}"
  else
    status=1
    echo "fuzz $t: FAILED (log $log):" >&2
    grep -E 'ERROR|finding|SUMMARY|Test unit written' "$log" | head -5 >&2
  fi
done
exit "$status"
