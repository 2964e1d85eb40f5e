#!/usr/bin/env bash
# The README's main command on the embedded default model: builds smoothquant, writes the
# deterministic demo model (a synthetic Llama with activation-outlier channels, the structure
# SmoothQuant exists for), then calibrates on docs/numerics.md and prints the SmoothQuant accuracy
# table on README.md: FP, naive W8A8, SmoothQuant-O1/O2/O3 and channel-token with and without
# smoothing. With a model directory as the first argument it runs the table on that model instead
# (further arguments go to `smoothquant evaluate`, e.g. --alphas 0.5,0.85,auto).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target smoothquant
SQ=build/smoothquant
MODEL="${1:-build/demo-model}"
shift || true
if [[ "$MODEL" == build/demo-model && ! -d "$MODEL" ]]; then
  "$SQ" make-demo-model -o "$MODEL"
fi
"$SQ" inspect "$MODEL"
echo
"$SQ" evaluate "$MODEL" --calib-text docs/numerics.md --text README.md --ctx 128 "$@"
