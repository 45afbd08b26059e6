#!/usr/bin/env bash
# Trains the K = 64 models of the Galloway pack into models/ (cards and run folders as any annt train run):
# A, B, C, S (plain) and A+, B+, C+ (FGSM/Kurakin in the last 5 epochs), seeds 0 and 1: 14 models.
# Estimated on this 2-core CPU (README.md, "Costs"): about 7-10 CPU-hours in all (S, 45 epochs, 1-1.6 h per seed).
# A model folder that exists is skipped (annt never overwrites one). Run from anywhere:
#   bash configs/papers/galloway2018/ship_models.sh            # every model
#   bash configs/papers/galloway2018/ship_models.sh A B        # only these types (A B C S A+ B+ C+)
set -eu
threads=(); [ -n "${ANNT_THREADS:-}" ] && threads=(--threads "$ANNT_THREADS")  # e.g. ANNT_THREADS=1 beside another job
cd "$(dirname "$0")/../../.."
here=configs/papers/galloway2018
types=("$@"); [ ${#types[@]} -eq 0 ] && types=(A B C S A+ B+ C+)
read -r -a seeds <<< "${SEEDS:-0 1}"  # e.g. SEEDS=0 for one seed
for seed in "${seeds[@]}"; do
  for t in "${types[@]}"; do
    base=${t%+}; suffix=""; [ "$t" != "$base" ] && suffix=-plus
    dest="models/galloway-${base}64$suffix-seed$seed"
    [ -e "$dest" ] && { echo "exists: $dest"; continue; }
    if [ "$t" != "$base" ]; then cfg=$here/train_galloway_plus.yaml; else cfg=$here/train_galloway.yaml; fi
    extra=(); [ "$base" = S ] && extra=(--set train.epochs=45)
    annt "$cfg" "${threads[@]}" --set model.options.type="$base" --set model.options.filters=64 --set seed="$seed" \
      --set name="$(basename "$dest")" --set train.export_to="$dest" "${extra[@]}"
  done
done
