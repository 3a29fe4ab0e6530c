#!/usr/bin/env bash
# The main job, the whole assignment in its order: set up (packages, build),
# generate the default data when there is none, then samples figure, the
# three trainings, their loss/accuracy plots, ROC/DET/PR, saliency maps,
# Grad-CAM, the bonus model, and the report (figures/report.html).
#
#   ./run_me.sh                   everything; steps whose outputs are newer than their inputs are skipped
#   ./run_me.sh --force           redo every step
#   ./run_me.sh --from STEP       redo STEP and every step after it (--list shows the steps)
#   ./run_me.sh --quick           a smoke run of the whole chain on tiny data, in quick/ (about 3 minutes)
#   ./run_me.sh --data-root DIR   your own data (<DIR>/<dataset>/{train,val,test}/{real,fake}/*); also $FMD_DATA
#   ./run_me.sh --fakes NAME --synthetic NAME   data set folder names (default fakes_dataset, synthetic_dataset)
#   ./run_me.sh --work DIR        where data/, out/, checkpoints/, figures/ go (default: here; quick/ with --quick)
#   EPOCHS=1 XCEPTION_EPOCHS=1 LR=0.0001 ./run_me.sh   shorter trainings, another learning rate
# An interrupted run (Ctrl-C, kill) continues where it stopped when re-run.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$top"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
force=0 from="" quick=0 list=0 root=${FMD_DATA:-} fakes=fakes_dataset synth=synthetic_dataset work=""
while (($#)); do
  case $1 in
    --force) force=1 ;;
    --from) from=${2:?--from needs a step name (see --list)}; shift ;;
    --from=*) from=${1#--from=} ;;
    --quick) quick=1 ;;
    --list) list=1 ;;
    --data-root) root=${2:?--data-root needs a folder}; shift ;;
    --data-root=*) root=${1#--data-root=} ;;
    --fakes) fakes=${2:?--fakes needs a data set name}; shift ;;
    --synthetic) synth=${2:?--synthetic needs a data set name}; shift ;;
    --work) work=${2:?--work needs a folder}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_me: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

epochs=${EPOCHS:-5} xepochs=${XCEPTION_EPOCHS:-2} bepochs=${BONUS_EPOCHS:-}
gen_args=(--seed 0)
if ((quick)); then
  # tiny data and one epoch, in quick/ so that a full run's outputs are untouched
  work=${work:-quick} epochs=${EPOCHS:-1} xepochs=${XCEPTION_EPOCHS:-1} bepochs=${BONUS_EPOCHS:-1}
  gen_args=(--seed 0 --train 64 --val 32 --test 32)
fi

if ((!list)); then
  t_start=$(date +%s)
  echo "=== setup: packages and build ==="
  scripts/bootstrap.sh
fi
fmd=$top/build/fmd
# --list needs no build, but the layout comes from build/fmd
((list)) && [[ ! -x $fmd ]] && scripts/bootstrap.sh >&2
work=${work:-.}
[[ -n $root ]] && { [[ -d $root ]] || { echo "run_me: --data-root $root: no such folder" >&2; exit 2; }; root=$(cd "$root" && pwd); }
mkdir -p "$work"
cd "$work"
S=$top/scripts
[[ -n $root ]] || root=$PWD/data

# ---------------------------------------------------------------- steps
# step NAME "what it does" INPUTS... -- OUTPUTS... -- COMMAND...
# A step is skipped when its stamp (out/.run_me/NAME.done) and all its
# outputs exist and the stamp is newer than every input (files or folders;
# a folder counts by its newest file), unless --force or --from says so.
names=() n_steps=0 i_step=0 redo_from=0
stamp_dir=out/.run_me
mkdir -p "$stamp_dir"
current=""
trap 'echo; echo "run_me: interrupted in step ${current:-setup}; run ./run_me.sh again to continue from there" >&2; exit 130' INT TERM

newest() {   # newest modification time (seconds) of the given files/folders
  local m=0 t p
  for p in "$@"; do
    [[ -e $p ]] || continue
    if [[ -d $p ]]; then t=$(find "$p" -type f -printf '%T@\n' 2>/dev/null | sort -n | tail -1); t=${t%.*}
    else t=$(stat -c %Y "$p"); fi
    [[ -n $t && $t -gt $m ]] && m=$t
  done
  echo "$m"
}

step() {
  local name=$1 what=$2; shift 2
  local ins=() outs=()
  while [[ $1 != -- ]]; do ins+=("$1"); shift; done; shift
  while [[ $1 != -- ]]; do outs+=("$1"); shift; done; shift
  i_step=$((i_step + 1))
  if ((list)); then printf '  %-28s %s\n' "$name" "$what"; return; fi
  [[ $name == "$from" ]] && redo_from=1
  local stamp=$stamp_dir/$name.done fresh=1 o
  if ((force || redo_from)); then fresh=0
  elif [[ ! -f $stamp ]]; then fresh=0
  else
    for o in "${outs[@]}"; do [[ -e $o ]] || fresh=0; done
    ((fresh)) && (( $(newest "${ins[@]}") <= $(stat -c %Y "$stamp") )) || fresh=0
  fi
  if ((fresh)); then
    printf '=== [%d/%d] %s: up to date, skipped ===\n' "$i_step" "$n_steps" "$name"
    return
  fi
  current=$name
  printf '\n=== [%d/%d] %s: %s ===\n' "$i_step" "$n_steps" "$name" "$what"
  local t0 rc=0
  t0=$(date +%s)
  "$@" || rc=$?
  if ((rc)); then
    echo "run_me: step '$name' failed (exit $rc); fix it and run ./run_me.sh again (finished steps are skipped)" >&2
    exit "$rc"
  fi
  touch "$stamp"
  printf '=== %s done in %d s ===\n' "$name" $(( $(date +%s) - t0 ))
  current=""
}

gen_data() {
  if [[ -d $root/$fakes && -d $root/$synth ]]; then echo "data: using $root"; return; fi
  if [[ $root != "$PWD/data" ]]; then
    echo "run_me: $root has no $fakes/ or no $synth/ (expected <root>/<dataset>/{train,val,test}/{real,fake}/*)" >&2
    return 2
  fi
  echo "data/ has no data set: generating the default one (scripts/make_faces.lua --out data ${gen_args[*]})"
  "$fmd" "$S/make_faces.lua" --out data "${gen_args[@]}"
}

# ------------------------------------------------------- the run layout
# The course's runs and every artefact's path come from lib/fmd/runs.lua
# (runs.shell_layout): "key<TAB>value..." lines, kept in L[key]. The ImageNet
# Xception weights are found by train.lua itself (lib/fmd/weights.lua).
declare -A L
runs=()
while IFS=$'\t' read -r key rest; do
  if [[ $key == run ]]; then runs+=("$rest"); else L[$key]=$rest; fi
done < <(FMD_RUN_FAKES=$fakes FMD_RUN_SYNTH=$synth "$fmd" -e \
  'print(require("fmd.runs").shell_layout(os.getenv("FMD_RUN_FAKES"), os.getenv("FMD_RUN_SYNTH")))')
((${#runs[@]})) || { echo "run_me: $fmd did not give the run layout (lib/fmd/runs.lua)" >&2; exit 1; }
at() {   # the path(s) of a layout key: at checkpoint DS MODEL best ...
  local IFS=/
  local k="$*"
  [[ -n ${L[$k]+x} ]] || { echo "run_me: lib/fmd/runs.lua gives no '$k'" >&2; exit 1; }
  printf '%s\n' "${L[$k]}" | tr '\t' '\n'
}
has() { [[ ,$2, == *,$1,* ]]; }   # has ANALYSIS LIST: LIST (comma-separated) holds ANALYSIS

train() {   # dataset model epochs
  local ds=$1 model=$2 ep=$3
  local resume=()
  # continue an interrupted training (its resumable state outlives a kill)
  [[ -f $(at checkpoint "$ds" "$model" last) && ! -f $stamp_dir/train_${ds}_${model}.done ]] && resume=(--resume)
  "$fmd" "$S/train.lua" --data-root "$root" -d "$ds" -m "$model" --lr "${LR:-$(at training lr)}" \
    -b "$(at training batch_size)" -e "$ep" -o "$(at training optimizer)" "${resume[@]}"
}

lua_of() { echo "$top/lib/fmd/models/$1.lua"; }

steps() {
  step data "the data sets ($fakes, $synth under $root)" -- "$root/$fakes" "$root/$synth" -- gen_data
  step samples "a real and a fake train image of each data set" \
    "$root/$fakes/train" "$root/$synth/train" "$S/plot_samples.lua" -- "$(at samples)" -- \
    "$fmd" "$S/plot_samples.lua" --data-root "$root" --datasets "$fakes,$synth"
  local r ds model from analyses ep outs
  for r in "${runs[@]}"; do
    IFS=$'\t' read -r ds model from analyses <<<"$r"
    ep=$epochs; [[ $from == XCEPTION_EPOCHS ]] && ep=$xepochs
    step "train_${ds}_${model}" "train $model on $ds ($ep epochs, $(at training optimizer), lr ${LR:-$(at training lr)}, batch $(at training batch_size))" \
      "$root/$ds" "$(lua_of "$model")" "$S/train.lua" -- "$(at checkpoint "$ds" "$model" best)" "$(at log "$ds" "$model")" -- \
      train "$ds" "$model" "$ep"
  done
  for r in "${runs[@]}"; do
    IFS=$'\t' read -r ds model from analyses <<<"$r"
    has plots "$analyses" || continue
    mapfile -t outs < <(at outputs "$ds" "$model" plots)
    step "plots_${ds}_${model}" "loss and accuracy over epochs" "$(at log "$ds" "$model")" "$S/plot_accuracy_and_loss.lua" -- \
      "${outs[@]}" -- \
      "$fmd" "$S/plot_accuracy_and_loss.lua" -m "$model" -j "$(at log "$ds" "$model")" -d "$ds" --data-root "$root"
  done
  for r in "${runs[@]}"; do
    IFS=$'\t' read -r ds model from analyses <<<"$r"
    has roc "$analyses" || continue
    mapfile -t outs < <(at outputs "$ds" "$model" roc)
    step "roc_${ds}_${model}" "ROC, DET and PR curves, metrics on the test split" \
      "$(at checkpoint "$ds" "$model" best)" "$root/$ds/test" "$S/numerical_analysis.lua" -- "${outs[@]}" -- \
      "$fmd" "$S/numerical_analysis.lua" -m "$model" -cpp "$(at checkpoint "$ds" "$model" best)" -d "$ds" --data-root "$root"
  done
  for r in "${runs[@]}"; do
    IFS=$'\t' read -r ds model from analyses <<<"$r"
    has saliency "$analyses" || continue
    mapfile -t outs < <(at outputs "$ds" "$model" saliency)
    step "saliency_${ds}_${model}" "gradient saliency maps (pairs and class means)" \
      "$(at checkpoint "$ds" "$model" best)" "$root/$ds/test" "$S/saliency_map.lua" -- "${outs[@]}" -- \
      "$fmd" "$S/saliency_map.lua" -m "$model" -cpp "$(at checkpoint "$ds" "$model" best)" -d "$ds" --data-root "$root"
  done
  for r in "${runs[@]}"; do
    IFS=$'\t' read -r ds model from analyses <<<"$r"
    has gradcam "$analyses" || continue
    mapfile -t outs < <(at outputs "$ds" "$model" gradcam)
    step "gradcam_${ds}_${model}" "Grad-CAM on conv3 for a real and a fake test image" \
      "$(at checkpoint "$ds" "$model" best)" "$root/$ds/test" "$S/grad_cam_analysis.lua" -- "${outs[@]}" -- \
      "$fmd" "$S/grad_cam_analysis.lua" -m "$model" -cpp "$(at checkpoint "$ds" "$model" best)" -d "$ds" --data-root "$root"
  done
  if [[ -f $S/train_bonus.lua && -f $S/bonus_main.lua ]]; then
    local bflags=()
    [[ -n $bepochs ]] && bflags=(-e "$bepochs")
    step bonus_train "train the bonus model on $fakes" "$root/$fakes" "$top/lib/fmd/models/bonus_model.lua" "$S/train_bonus.lua" -- \
      "$(at bonus checkpoint)" -- "$fmd" "$S/train_bonus.lua" --data-root "$root" -d "$fakes" "${bflags[@]}"
    step bonus_eval "evaluate the bonus model on the $fakes test split; trade-off figure" \
      "$(at bonus checkpoint)" "$root/$fakes/test" "$S/bonus_main.lua" -- "$(at bonus metrics)" "$(at bonus tradeoff)" -- \
      "$fmd" "$S/bonus_main.lua" --data-root "$root" -d "$fakes"
  fi
  # the report reads what XceptionBased started from in its training log
  step report "$(at report html) and report.md" "$(at dir logs)" "$(at dir figures)" "$S/report.lua" -- \
    "$(at report html)" "$(at report md)" -- \
    "$fmd" "$S/report.lua" --data-root "$root" --fakes "$fakes" --synthetic "$synth" \
    $( ((quick)) && echo --quick ) $( [[ $root == "$PWD/data" ]] && echo --generated )
}

# count the steps first (for [i/n]), then run them
list_saved=$list; list=1; steps >/dev/null; n_steps=$i_step; i_step=0; list=$list_saved
if ((list)); then echo "steps of ./run_me.sh (use with --from):"; steps; exit 0; fi
if [[ -n $from ]] && ! (list=1; steps) | grep -q "^  $from "; then
  echo "run_me: --from $from: no such step (see ./run_me.sh --list)" >&2; exit 2
fi
steps
echo
echo "run_me: done in $(( $(date +%s) - t_start )) s. Figures in $work/figures/, the report: $work/figures/report.html"
