#!/usr/bin/env bash
# The data-parallel scaling table of docs/distributed.md: SimpleNet and
# XceptionBased trained with 1 and 2 ranks on this machine (one compute
# thread and one decoding thread per rank), images/s, the allreduce time
# per step and its share, and the projection for 8 and 64 nodes.
#
#   bench/dist_scaling.sh [--np "1 2"] [--models "SimpleNet XceptionBased"]
#                         [--batch 8] [--steps 6] [--data DIR] [--fmd build/fmd]
#
# --data is a folder with real/ and fake/ images (at least steps x batch x
# the largest np); by default a generated set is made once in
# bench/dist_data (scripts/make_faces.lua). Run it on a quiet machine: the
# figures are as good as the machine is idle.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nps="1 2" models="SimpleNet XceptionBased" batch=8 steps=6 data="" fmd="$top/build/fmd"
die() { echo "dist_scaling.sh: $*" >&2; exit 2; }
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --np|--models|--batch|--steps|--data|--fmd)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --np) nps=$2 ;; --models) models=$2 ;; --batch) batch=$2 ;; --steps) steps=$2 ;;
        --data) data=$2 ;; --fmd) fmd=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
command -v mpirun >/dev/null || die "mpirun not found (apt-get install openmpi-bin)"
[[ -x $fmd ]] || die "$fmd not found (scripts/bootstrap.sh builds it)"
if [[ -z $data ]]; then
  max=0; for n in $nps; do ((n > max)) && max=$n; done
  want=$((steps * batch * max))
  data=$top/bench/dist_data/synthetic_dataset/train
  have=$( (ls "$data/real" "$data/fake" 2>/dev/null || true) | grep -c '\.png$' || true)
  if ((have < want)); then
    echo "generating $want images in bench/dist_data ..." >&2
    "$fmd" "$top/scripts/make_faces.lua" --out "$top/bench/dist_data" --only synthetic_dataset --train "$want" \
      --val 2 --test 2 --force >/dev/null
  fi
fi
# Open MPI on one machine: as root too, more ranks than cores allowed
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $(mpirun --version | head -1)"
first=--header
for m in $models; do
  for n in $nps; do
    mpirun --oversubscribe --bind-to none -np "$n" "$fmd" "$top/bench/dist_scaling.lua" -m "$m" -b "$batch" \
      --steps "$steps" --data "$data" $first > "/tmp/dist_scaling.$$.$m.$n"
    first=""
    sed '/projection/,$d' "/tmp/dist_scaling.$$.$m.$n" | grep '^|'   # the header once, then the row
  done
done
echo
for m in $models; do
  f="/tmp/dist_scaling.$$.$m.1"
  [[ -f $f ]] && sed -n '/projection/,$p' "$f" && echo
done
rm -f /tmp/dist_scaling.$$.*
