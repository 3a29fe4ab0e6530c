#!/usr/bin/env bash
# The main job: set up (packages, build), generate the default data set when
# data/ has none, train every model of the course on it, and report.
#
#   ./run_me.sh                 everything
#   FMD_DATA=/path ./run_me.sh  use your own data root (<root>/<dataset>/{train,val,test}/{real,fake})
#   EPOCHS=1 ./run_me.sh        shorter runs
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$top"
scripts/bootstrap.sh
fmd=build/fmd
root=${FMD_DATA:-data}
epochs=${EPOCHS:-5}
xepochs=${XCEPTION_EPOCHS:-2}

if [[ ! -d $root/fakes_dataset && ! -d $root/synthetic_dataset ]]; then
  if [[ $root != data ]]; then
    echo "run_me: no fakes_dataset or synthetic_dataset under $root" >&2
    exit 1
  fi
  echo "run_me: data/ has no data set; generating the default one (scripts/make_faces.lua --out data --seed 0)"
  $fmd scripts/make_faces.lua --out data --seed 0
fi

train() {   # dataset model epochs
  echo
  echo "=== $2 on $1 ($3 epochs, Adam, lr 0.001, batch 32) ==="
  $fmd scripts/train.lua --data-root "$root" -d "$1" -m "$2" --lr 0.001 -b 32 -e "$3" -o Adam
}

for ds in fakes_dataset synthetic_dataset; do
  [[ -d $root/$ds ]] && train "$ds" SimpleNet "$epochs"
done
if [[ -d $root/synthetic_dataset ]]; then
  pre=()
  for w in "${FMD_XCEPTION_WEIGHTS:-}" weights/xception-c0a72b38.pth.tar weights/xception-43020ad28.pth; do
    [[ -n $w && -f $w ]] && { pre=(--pretrained "$w"); break; }
  done
  echo
  echo "=== XceptionBased on synthetic_dataset ($xepochs epochs) ==="
  $fmd scripts/train.lua --data-root "$root" -d synthetic_dataset -m XceptionBased --lr 0.001 -b 32 \
    -e "$xepochs" -o Adam "${pre[@]}"
fi

echo
echo "run_me: done. Logs in out/, checkpoints in checkpoints/."
echo "run_me: figures (loss/accuracy plots, ROC/DET, saliency, Grad-CAM) are not implemented yet."
