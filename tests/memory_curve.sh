#!/usr/bin/env bash
# Resident memory of a training over many epochs (issue 12, docs/robustness.md):
#   tests/memory_curve.sh [build dir, default build] [epochs, default 20]
# Generates a small set (make_faces --train 64 --val 32 --test 32) in a
# temporary folder, trains SimpleNet (batch 16, 1 thread, 1 worker) and
# samples VmRSS/VmHWM of the process from /proc every 0.2 s; prints one line
# per epoch: the RSS when the epoch starts, the highest RSS during it, and
# the peak so far. Long: run it with nice -n 10 on a shared machine.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
epochs=${2:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$build/fmd" "$top/scripts/make_faces.lua" --out data --seed 3 --train 64 --val 32 --test 32 --threads 1 \
  --only synthetic_dataset >/dev/null
"$build/fmd" "$top/scripts/train.lua" --data-root data -d synthetic_dataset -m SimpleNet -b 16 -e "$epochs" \
  -o Adam --lr 1e-4 --threads 1 --workers 1 > train.log 2>&1 &
pid=$!
# sample: "<epoch> <rss kB> <hwm kB>" (epoch = the last "Epoch N/" line so far)
while kill -0 "$pid" 2>/dev/null; do
  e=$(grep -c '^Epoch ' train.log || true)
  read -r rss hwm < <(awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{print r, h}' "/proc/$pid/status" 2>/dev/null || echo "- -")
  [[ $rss == - || -z $rss ]] || echo "$e $rss $hwm" >> samples
  sleep 0.2
done
wait "$pid" || { echo "memory_curve: the training failed:" >&2; tail -5 train.log >&2; exit 1; }
echo "epoch  rss_at_start_MB  max_rss_in_epoch_MB  peak_so_far_MB"
awk '$1 > 0 { if (!($1 in first)) first[$1] = $2; if ($2 > mx[$1]) mx[$1] = $2; hwm[$1] = $3; if ($1 > last) last = $1 }
     END { for (e = 1; e <= last; e++) printf "%5d  %15.1f  %19.1f  %14.1f\n", e, first[e]/1024, mx[e]/1024, hwm[e]/1024 }' samples
grep -E '^train loss' train.log | tail -1
