#!/usr/bin/env bash
# Every run behind wiki/JudgingRobustness.md, one `annt` attack run per (model, eps), into runs/robustness/.
# Resumable and parallel: start it once per free core (each claims a job with a lock folder while it runs);
# a finished job (results.json marked complete) is skipped, an interrupted one is resumed. After a crash,
# remove runs/robustness/locks before starting the workers again.
#   nohup bash configs/robustness/run_all.sh > runs/robustness/worker1.log 2>&1 &
set -u
cd "$(dirname "$0")/../.."
out=runs/robustness
mkdir -p "$out/locks"
jobs=()
for eps in 0.1 0.2; do
  for family in mnist_a mnist_a-bn; do
    for bits in fp 1bit 2bit 4bit 8bit 12bit 16bit; do jobs+=("$family-$bits:$eps"); done
  done
  [ "$eps" = 0.1 ] && for family in lenet5; do
    for bits in fp 1bit 2bit 4bit 8bit 12bit 16bit; do jobs+=("$family-$bits:$eps"); done
  done
done
# ANNT's Table 6 FGSM setting, eps 0.25, for the ANNT graph of Mnist A: its FGSM row beside the worst case.
for bits in fp 1bit 2bit 4bit 8bit 12bit 16bit; do jobs+=("mnist_a-$bits:0.25"); done
for job in "${jobs[@]}"; do
  model=${job%%:*}; eps=${job##*:}; name="judge-$model-eps$eps"
  mkdir "$out/locks/$name" 2>/dev/null || continue   # another worker has it
  done_run=$(grep -l '"complete": true' "$out"/*-attack-"$name"/results.json 2>/dev/null | head -1)
  if [ -n "$done_run" ]; then echo "done: $name"; rmdir "$out/locks/$name"; continue; fi
  partial=$(ls -d "$out"/*-attack-"$name" 2>/dev/null | tail -1)
  echo "$(date +%T) start $name"
  if [ -n "$partial" ]; then
    annt "configs/robustness/judge_eps$eps.yaml" --threads 1 --resume "$partial"
  else
    annt "configs/robustness/judge_eps$eps.yaml" --threads 1 --set output_dir="$out" \
      --set model.checkpoint="models/$model" --set name="$name"
  fi
  echo "$(date +%T) end $name rc=$?"
  rmdir "$out/locks/$name"
done
