#!/usr/bin/env bash
# fmd against PyTorch on this machine, side by side (docs/performance.md).
#
#   bench/compare.sh [--rounds 3] [--steps 10] [--warmup 2] [--batch 32]
#                    [--models "SimpleNet XceptionBased MobileNetBased"] [--modes "train eval"]
#                    [--threads 2] [--data DIR] [--fmd build/fmd] [--out FILE.jsonl]
#
# Every row (model x mode) is measured by both sides in turn, each run in its
# own process (bench/fmd_bench.lua, bench/torch_bench.py), for --rounds
# rounds; the side that goes first alternates between rounds. Each model
# runs at its input size (256; MobileNetBased, i.e. MobileNetV2 with its
# 1280-256-2 head, at 224). The table shows medians over rounds of each
# side's median step, the median of the per-round
# ratios fmd/PyTorch (the machine drifts between rounds, so the ratio of a
# round is the figure that counts) with their range, images/s, effective
# GFLOP/s and peak RSS. Then the machine's cblas_sgemm ceiling and OpenBLAS's
# kernel (bench/sgemm_probe.c), fmd's own AVX-512 sgemm on the same product,
# which of the two fmd's GEMMs ran on, and with --data the data-bound check.
#
# PyTorch runs at its best: torch.set_num_threads(--threads), OpenBLAS's
# pthread build, and glibc told to keep freed memory (GLIBC_TUNABLES below).
# fmd runs as the machine comes. OPENBLAS_CORETYPE is left as it is found.
# An XceptionBased training run needs about 0.3 GB per image; it is skipped
# (and said so) when MemAvailable is below 14 GB * batch / 32.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

rounds=3 steps=10 warmup=2 batch=32 threads=2 models="SimpleNet XceptionBased MobileNetBased" modes="train eval"
data="" fmd="$top/build/fmd" out=""
usage() { echo "usage:"; sed -n '4,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "compare.sh: $*" >&2; exit 2; }
need_int() { [[ $2 =~ ^[0-9]+$ ]] && (( $2 >= $3 )) || die "$1 must be an integer >= $3, got '$2'"; }
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --rounds|--steps|--warmup|--batch|--threads|--models|--modes|--data|--fmd|--out)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --rounds) need_int "$1" "$2" 1; rounds=$2 ;;
        --steps) need_int "$1" "$2" 1; steps=$2 ;;
        --warmup) need_int "$1" "$2" 0; warmup=$2 ;;
        --batch) need_int "$1" "$2" 1; batch=$2 ;;
        --threads) need_int "$1" "$2" 1; threads=$2 ;;
        --models) models=$2 ;;
        --modes) modes=$2 ;;
        --data) data=$2 ;;
        --fmd) fmd=$2 ;;
        --out) out=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
for m in $models; do [[ $m == SimpleNet || $m == XceptionBased || $m == MobileNetBased ]] ||
  die "--models: unknown model '$m' (SimpleNet, XceptionBased, MobileNetBased)"; done
for m in $modes; do [[ $m == train || $m == eval ]] || die "--modes: unknown mode '$m' (train, eval)"; done
[[ $fmd == /* ]] || fmd=$PWD/$fmd   # the runs cd to the source tree
[[ -z $data || $data == /* ]] || data=$PWD/$data
[[ -x $fmd ]] || die "no fmd executable at $fmd (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build, or pass --fmd PATH)"
[[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 is needed for the PyTorch side (apt-get install python3-torch)"
/usr/bin/python3 -c 'import torch' 2>/dev/null || die "PyTorch is not importable by /usr/bin/python3 (apt-get install python3-torch)"
[[ -z $data || -d $data ]] || die "--data $data is not a folder"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results.jsonl
: >"$results"

torch_env=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread
  GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736)
common=(--batch "$batch" --steps "$steps" --warmup "$warmup" --threads "$threads")

mem_avail_gb() { awk '/^MemAvailable:/ {printf "%d", $2 / 1e6}' /proc/meminfo; }

# one run of one side; a failed or skipped run leaves a JSON line saying so
run_side() {   # side model mode round
  local side=$1 model=$2 mode=$3 round=$4 line
  if [[ $model == XceptionBased && $mode == train ]]; then
    local need=$(( (14 * batch + 31) / 32 )) avail
    avail=$(mem_avail_gb)
    if (( avail < need )); then
      echo "  skip $side $model $mode: MemAvailable ${avail} GB < ${need} GB" >&2
      printf '{"side": "%s", "model": "%s", "mode": "%s", "round": %d, "skipped": "MemAvailable %s GB < %s GB"}\n' \
        "$side" "$model" "$mode" "$round" "$avail" "$need" >>"$results"
      return
    fi
  fi
  echo "  round $round: $side $model $mode" >&2
  if [[ $side == torch ]]; then
    line=$("${torch_env[@]}" /usr/bin/python3 "$top/bench/torch_bench.py" --model "$model" --mode "$mode" "${common[@]}" 2>"$tmp/err") || line=""
  else
    line=$(cd "$top" && "$fmd" bench/fmd_bench.lua --model "$model" --mode "$mode" "${common[@]}" 2>"$tmp/err") || line=""
  fi
  line=$(printf '%s\n' "$line" | grep '^{' | tail -1 || true)
  if [[ -z $line ]]; then
    echo "  $side $model $mode failed: $(tail -1 "$tmp/err")" >&2
    printf '{"side": "%s", "model": "%s", "mode": "%s", "round": %d, "failed": %s}\n' "$side" "$model" "$mode" \
      "$round" "$(/usr/bin/python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$(tail -1 "$tmp/err")")" >>"$results"
    return
  fi
  printf '%s\n' "${line%\}}, \"round\": $round}" >>"$results"
}

echo "fmd $fmd against PyTorch: batch $batch, $steps steps after $warmup warm-up, $threads threads, $rounds rounds" >&2
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order="torch fmd"; else order="fmd torch"; fi
  for model in $models; do
    for mode in $modes; do
      for side in $order; do run_side "$side" "$model" "$mode" "$r"; done
    done
  done
  if [[ -n $data ]]; then   # the data-bound check: fmd SimpleNet with real loading
    (cd "$top" && "$fmd" bench/fmd_bench.lua --model SimpleNet --mode data --data "$data" "${common[@]}" \
      2>"$tmp/err" | grep '^{' | tail -1 | sed "s/}\$/, \"round\": $r}/" >>"$results") ||
      echo "  fmd data run failed: $(tail -1 "$tmp/err")" >&2
    if ! [[ " $models " == *" SimpleNet "* && " $modes " == *" train "* ]]; then
      run_side fmd SimpleNet train "$r"
    fi
  fi
done

# the ceiling: cblas_sgemm of the libopenblas fmd links
probe_line=""
if cc -O2 -I"$top/engine" "$top/bench/sgemm_probe.c" "$top/engine/gemm.c" -o "$tmp/sgemm_probe" -lpthread \
    $(pkg-config --cflags --libs openblas) 2>"$tmp/err"; then
  probe_line=$("$tmp/sgemm_probe" 2048 5 "$threads" || true)
else
  echo "  sgemm probe did not build: $(tail -1 "$tmp/err")" >&2
fi
[[ -n $out ]] && cp "$results" "$out"

/usr/bin/python3 - "$results" "$probe_line" "$batch" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
probe = json.loads(sys.argv[2]) if sys.argv[2] else None
batch = int(sys.argv[3])
med = statistics.median
def ok(r): return "median_s" in r
order = []
for r in rows:
    k = (r["model"], r["mode"])
    if k not in order and r["mode"] != "data": order.append(k)
def runs(side, k):
    return [r for r in rows if r["side"] == side and (r["model"], r["mode"]) == k and ok(r)]
def fmt(x, f="%.3f"): return f % x if x is not None else "-"
print("| row | PyTorch (s) | fmd (s) | fmd / PyTorch (range) | target | met | img/s PyTorch / fmd | GFLOP/s PyTorch / fmd | peak RSS GB PyTorch / fmd |")
print("|---|---|---|---|---|---|---|---|---|")
rss_rows = []
for k in order:
    t, f = runs("torch", k), runs("fmd", k)
    name = "%s %s b%d" % (k[0], "train step" if k[1] == "train" else "eval forward", batch)
    size = [r["size"] for r in rows if (r["model"], r["mode"]) == k and "size" in r]
    if size and size[0] != 256: name += " %dx%d" % (size[0], size[0])
    if not t or not f:
        why = [r.get("skipped") or r.get("failed") for r in rows if (r["model"], r["mode"]) == k and not ok(r)]
        if why: name += " (%s)" % why[0]
        print("| %s | %s | %s | - | <= 0.8 | - | - | - | - |" % (name, fmt(med([r["median_s"] for r in t])) if t else "-",
              fmt(med([r["median_s"] for r in f])) if f else "-"))
        continue
    ratios = []
    for rd in sorted({r["round"] for r in t} & {r["round"] for r in f}):
        a = [r for r in t if r["round"] == rd][0]; b = [r for r in f if r["round"] == rd][0]
        ratios.append(b["median_s"] / a["median_s"])
    ratio = med(ratios)
    tm, fm = med([r["median_s"] for r in t]), med([r["median_s"] for r in f])
    print("| %s | %.3f | %.3f | %.2f (%.2f-%.2f) | <= 0.8 | %s | %.1f / %.1f | %.1f / %.1f | %.2f / %.2f |" % (
        name, tm, fm, ratio, min(ratios), max(ratios), "yes" if ratio <= 0.8 else "no",
        batch / tm, batch / fm, med([r["gflops"] for r in t]), med([r["gflops"] for r in f]),
        max(r["peak_rss_gb"] for r in t), max(r["peak_rss_gb"] for r in f)))
    if k[1] == "train":
        rss_rows.append((k[0], max(r["peak_rss_gb"] for r in t), max(r["peak_rss_gb"] for r in f)))
for model, a, b in rss_rows:
    print("| %s train b%d, peak RSS (GB) | %.2f | %.2f | %.2f | <= 0.8 | %s | | | |" % (model, batch, a, b, b / a, "yes" if b / a <= 0.8 else "no"))
print()
if probe:
    print("cblas_sgemm %dx%d (bench/sgemm_probe.c, the libopenblas fmd links): %.1f GFLOP/s on 1 thread, %.1f on %d threads; "
          "OpenBLAS kernel: %s (OPENBLAS_CORETYPE=%s; %s)" % (probe["n"], probe["n"], probe["gflops_1thread"],
          probe["gflops_threads"], probe["threads"], probe["corename"], probe["OPENBLAS_CORETYPE"] or "unset", probe["config"]))
    if probe.get("fmd_gflops_1thread") is not None:
        print("fmd's own AVX-512 sgemm (engine/gemm.c), same product: %.1f GFLOP/s on 1 thread, %.1f on %d threads" % (
              probe["fmd_gflops_1thread"], probe["fmd_gflops_threads"], probe["threads"]))
gemm = sorted({r.get("gemm") for r in rows if r["side"] == "fmd" and r.get("gemm")})
if gemm:
    print("fmd's GEMMs ran on: %s (FMD_GEMM, docs/performance.md)" % ", ".join(gemm))
d = [r for r in rows if r["mode"] == "data" and ok(r)]
p = runs("fmd", ("SimpleNet", "train"))
if d and p:
    ds, ps = med([r["median_s"] for r in d]), med([r["median_s"] for r in p])
    ws = med([r["wait_s"] for r in d]) if all("wait_s" in r for r in d) else None
    print("data-bound check (fmd SimpleNet b%d train step): real loading %.3f s, preloaded batch %.3f s, ratio %.2f (%s)" % (
        batch, ds, ps, ds / ps, "not data-bound" if ds / ps <= 1.1 else "data-bound: loading adds %.0f%%" % (100 * (ds / ps - 1))))
    if ws is not None:
        print("  a step waited %.4f s for its batch (median): %s" % (ws,
              "the loader keeps up; the rest of the difference is its decoding sharing the cores" if ws <= 0.05 * ps
              else "the loader does not keep up"))
EOF
