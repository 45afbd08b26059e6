#!/usr/bin/env bash
# Trains the FCN2 models of the Panda pack into models/: Table V (BNN and full precision x 2/4/8-bit inputs, plain
# training) and Tables II and VI (R-FGSM eps 0.3: full precision 2b and 8b, BNN 2b), seeds 0 and 1: 18 models.
# Estimated on this 2-core CPU (README.md "Costs"): about 2.5 CPU-hours in all. Existing model folders are skipped.
#   bash configs/papers/panda2019/ship_models.sh            # all
#   bash configs/papers/panda2019/ship_models.sh plain      # Table V only (or: rfgsm)
set -eu
threads=(); [ -n "${ANNT_THREADS:-}" ] && threads=(--threads "$ANNT_THREADS")  # e.g. ANNT_THREADS=1 beside another job
cd "$(dirname "$0")/../../.."
here=configs/papers/panda2019
what=${1:-all}
train() {  # config binary input_bits seed dest
  [ -e "$5" ] && { echo "exists: $5"; return; }
  annt "$1" "${threads[@]}" --set model.arch=fcn2 --set model.options.binary="$2" --set model.input_bits="$3" --set seed="$4" \
    --set name="$(basename "$5")" --set train.export_to="$5"
}
read -r -a seeds <<< "${SEEDS:-0 1}"  # e.g. SEEDS=0 for one seed
for seed in "${seeds[@]}"; do
  if [ "$what" = all ] || [ "$what" = plain ]; then
    for b in 2 4 8; do
      train $here/train_fcn.yaml true $b $seed "models/fcn2-bnn-in${b}b-seed$seed"
      train $here/train_fcn.yaml false $b $seed "models/fcn2-fp-in${b}b-seed$seed"
    done
  fi
  if [ "$what" = all ] || [ "$what" = rfgsm ]; then
    train $here/train_fcn_rfgsm.yaml false 2 $seed "models/fcn2-fp-in2b-rfgsm-seed$seed"
    train $here/train_fcn_rfgsm.yaml false 8 $seed "models/fcn2-fp-in8b-rfgsm-seed$seed"
    train $here/train_fcn_rfgsm.yaml true 2 $seed "models/fcn2-bnn-in2b-rfgsm-seed$seed"
  fi
done
