#!/usr/bin/env bash
# The equal-budget ablation of docs/training.md: the small preset for one source, varied one
# setting at a time, every run the same number of batches and the same seeds; each run's
# validation score (msgpp.training.selection) is read from its validation_measures.csv.
#
#   bash scripts/ablation.sh [SOURCE] [BATCHES] [VARIANT ...]     # defaults: drums 250, all variants
#
# Variants: baseline (the small preset for SOURCE as it is: configs/base.yaml, configs/small.yaml,
# configs/small/SOURCE.yaml), residual (identity-start generator), plain (the paper's generator,
# no identity start), frequency (STFT discriminators strided along frequency, Hann window), two
# (demucs_v2 and openunmix only). Runs go to runs/ablation/SOURCE-VARIANT (resumed when they exist).
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=${1:-drums}; BATCHES=${2:-250}; shift $(( $# > 2 ? 2 : $# ))
VARIANTS=${*:-baseline plain frequency two}
MSGPP=${MSGPP:-.venv/bin/msgpp}
for variant in $VARIANTS; do
  case $variant in
    baseline)  extra=() ;;
    residual)  extra=(--model.generator '{preset: small, residual: true}') ;;
    plain)     extra=(--model.generator small) ;;
    frequency) extra=(--model.discriminators '{preset: small, stft_layout: frequency}') ;;
    two)       extra=(--data.separators '[demucs_v2, openunmix]') ;;
    *) echo "unknown variant $variant (baseline, residual, plain, frequency, two)" >&2; exit 2 ;;
  esac
  run=runs/ablation/$SOURCE-$variant
  mkdir -p "$run"
  sed "s#runs/small/{source}#$run#g" configs/small.yaml > "$run/preset.yaml"  # the run folders moved
  resume=(); [ -f "$run/checkpoints/last.ckpt" ] && resume=(--ckpt_path last)
  echo "== $variant: $run" >&2
  "$MSGPP" train --config configs/base.yaml --config "$run/preset.yaml" --config "configs/small/$SOURCE.yaml" \
    --trainer.max_steps $((2 * BATCHES)) \
    --trainer.val_check_interval "$BATCHES" --logger_backend csv "${extra[@]}" "${resume[@]}"
done
for variant in $VARIANTS; do
  file=$(find "runs/ablation/$SOURCE-$variant" -name validation_measures.csv | head -1)
  [ -n "$file" ] && echo "$variant: $(tail -1 "$file" | awk -F, '{print "batch " $1 ", score " $NF}')"
done
