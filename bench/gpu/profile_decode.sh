#!/usr/bin/env bash
# Where one decode step of the GPU engine spends its time, per kernel (ncu, gpu__time_duration),
# on Llama-2-7B shapes with random weights: the same prompt is profiled with 1 and with 1 + N
# generated tokens and the difference is divided by 2N (bench runs a warm-up and one timed
# repetition), so the prefill drops out. ncu serializes kernels: the overlap that programmatic
# dependent launch gives a real step is not in these figures.
#   bench/gpu/profile_decode.sh OUT_DIR [SCHEME...]     (default: channel-token)
# Segment 0 is the bf16 engine, segment 1 the INT8 engine of SCHEME (bench runs both).
# Caches stay warm between kernels, as in a real decode step (SQ_NCU_CACHE=all flushes them
# before each kernel, ncu's default). Needs the build-gpu/ folder of bench/run_gpu_engine.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"
shift
SCHEMES=("$@")
[[ $# -gt 0 ]] || SCHEMES=(channel-token)
export LD_LIBRARY_PATH="$PWD/build-gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
N=4
mkdir -p "$OUT"
for s in "${SCHEMES[@]}"; do
  for n in 1 $((N + 1)); do
    ncu --clock-control none --cache-control "${SQ_NCU_CACHE:-none}" \
      --metrics gpu__time_duration.sum --csv \
      build-gpu/smoothquant bench bench/gpu/llama2-7b --device cuda --random-weights \
      -p 512 -n "$n" -r 1 --scheme "$s" >"$OUT/ncu_${s}_n$n.csv" 2>/dev/null
  done
  echo "== $s: per decode step (prompt 512)"
  python3 bench/gpu/ncu_summary.py "$OUT/ncu_${s}_n$((N + 1)).csv" 40 \
    --minus "$OUT/ncu_${s}_n1.csv" --divide "$((2 * N))" --split-on fill_k
done
