#!/usr/bin/env bash
# The SmoothQuant accuracy table (smoothquant evaluate) on the three shared models, as in the
# README: calibration = the first 64 documents of the TinyStories slice (seq-len 256, the golden
# protocol), evaluation = 40 windows x 256 tokens of the same slice, α swept plus auto.
# Writes bench/results/evaluate_<model>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
SHARED="${SQ_SHARED_DIR:-../shared}"
TEXT="$SHARED/data/tinystories-valid-slice.txt"
for m in opt-synth qwen2-synth tinystories-656k; do
  "$BUILD/smoothquant" evaluate "$SHARED/models/$m" --calib-text "$TEXT" --samples 64 --seq-len 256 \
    --text "$TEXT" --ctx 256 --max-windows 40 --alphas 0.3,0.5,0.7,0.85,auto --json \
    >"bench/results/evaluate_$m.json"
  echo "wrote bench/results/evaluate_$m.json"
done
