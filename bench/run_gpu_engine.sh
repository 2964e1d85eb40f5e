#!/usr/bin/env bash
# The GPU engine on an NVIDIA machine (the device tool's nvidia-h200), in one command, from a
# build-gpu/ folder prepared on the build machine (scripts in README: smoothquant and cuda_test
# built with CUDA, their shared libraries in build-gpu/lib, the shared tiny models in
# build-gpu/models, a text in build-gpu/data):
#  1. the gpu-labelled tests, then the engine tests under compute-sanitizer memcheck;
#  2. CLI parity: calibrate / perplexity --quant o3 --mode int8 / evaluate / generate with
#     --device cuda against --device cpu on the shared Qwen2 and TinyStories models;
#  3. end-to-end speed on Llama-2-7B shapes (random weights): bf16 vs INT8 channel-token and o2,
#     prompts of 512 and 2048 tokens.
#   bench/run_gpu_engine.sh [OUT_DIR]     (default bench/results)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/build-gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SQ_SHARED_DIR="$PWD/build-gpu"
SQ=build-gpu/smoothquant
M=build-gpu/models
TXT=build-gpu/data/tinystories-valid-slice.txt
status=0
step() { echo "== $*"; }

step "tests"
build-gpu/cuda_test --gtest_brief=1 2>&1 | tail -20 || status=1
step "memcheck (engine tests)"
timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/cuda_test \
  --gtest_brief=1 --gtest_filter='*CudaEngine*' 2>&1 | tail -4 || status=1

step "CLI parity, --device cuda vs cpu"
for dev in cpu cuda; do
  $SQ calibrate $M/qwen2-synth --text $TXT --samples 16 --seq-len 128 --device $dev \
    -o "$OUT/calib_$dev.safetensors" --json
  $SQ perplexity $M/qwen2-synth --text $TXT --ctx 128 --max-windows 0 --quant o3 --mode int8 \
    --calib-text $TXT --samples 16 --seq-len 128 --alpha 0.85 --quant-bmm --device $dev --json \
    >"$OUT/ppl_o3_$dev.json"
  $SQ evaluate $M/tinystories-656k --text $TXT --calib-text $TXT --samples 16 --seq-len 128 \
    --ctx 128 --max-windows 0 --mode int8 --device $dev --json >"$OUT/evaluate_$dev.json"
  $SQ generate $M/tinystories-656k -p "Once upon a time" -n 24 --device $dev --json \
    >"$OUT/generate_$dev.json"
done
python3 - "$OUT" <<'PY' || status=1
import json, sys
out = sys.argv[1]
a, b = (json.load(open(f"{out}/ppl_o3_{d}.json")) for d in ("cpu", "cuda"))
print(f"perplexity o3 --quant-bmm int8: cpu {a['ppl']:.5f} cuda {b['ppl']:.5f} "
      f"(rel {b['ppl'] / a['ppl'] - 1:+.2e}); fp cpu {a['fp_ppl']:.5f} cuda {b['fp_ppl']:.5f}; "
      f"kl cpu {a['kl_mean']:.3e} cuda {b['kl_mean']:.3e}")
ea, eb = (json.load(open(f"{out}/evaluate_{d}.json")) for d in ("cpu", "cuda"))
worst = 0.0
for ra, rb in zip(ea["rows"], eb["rows"]):
    rel = rb["ppl"] / ra["ppl"] - 1
    worst = max(worst, abs(rel))
    print(f"  {ra['name']:<40} cpu {ra['ppl']:9.4f} cuda {rb['ppl']:9.4f} rel {rel:+.2e}")
print(f"evaluate: worst relative ppl difference {worst:.2e}")
ga, gb = (json.load(open(f"{out}/generate_{d}.json")) for d in ("cpu", "cuda"))
print(f"generate greedy ids equal: {ga['ids'] == gb['ids']}")
ok = abs(b["ppl"] / a["ppl"] - 1) < 1e-3 and worst < 1e-3
sys.exit(0 if ok else 1)
PY

step "perplexity table (README): FP and smoothed INT8 channel-token, cpu vs cuda"
for model in tinystories-656k qwen2-synth opt-synth; do
  for dev in cpu cuda; do
    $SQ perplexity $M/$model --text $TXT --ctx 256 --max-windows 20 --device $dev --json \
      >"$OUT/ppl_fp_${model}_$dev.json"
    $SQ perplexity $M/$model --text $TXT --ctx 256 --max-windows 20 --quant channel-token \
      --mode int8 --calib-text $TXT --samples 32 --seq-len 256 --device $dev --json \
      >"$OUT/ppl_int8_${model}_$dev.json"
  done
  python3 - "$OUT" "$model" <<'PY'
import json, sys
out, m = sys.argv[1], sys.argv[2]
r = {k: json.load(open(f"{out}/ppl_{k}_{m}_{d}.json"))["ppl"] for k in ("fp", "int8") for d in ("cpu",)}
g = {k: json.load(open(f"{out}/ppl_{k}_{m}_cuda.json"))["ppl"] for k in ("fp", "int8")}
print(f"| {m} | {r['fp']:.4f} | {g['fp']:.4f} ({100 * (g['fp'] / r['fp'] - 1):+.3f}%) | "
      f"{r['int8']:.4f} | {g['int8']:.4f} ({100 * (g['int8'] / r['int8'] - 1):+.3f}%) |")
PY
done

step "end to end, Llama-2-7B shapes (random weights)"
for p in 512 2048; do
  for scheme in channel-token o2; do
    $SQ bench bench/gpu/llama2-7b --device cuda --random-weights -p $p -n 64 -r 3 \
      --scheme $scheme --json >"$OUT/gpu_engine_7b_${scheme}_p$p.json" || status=1
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(f\"p={j['prompt_tokens']} {j['scheme']}: prefill {j['bf16']['prefill_tokens_per_second']:.0f} -> {j['int8']['prefill_tokens_per_second']:.0f} ({j['speedup_prefill']:.2f}x), decode {j['bf16']['decode_tokens_per_second']:.1f} -> {j['int8']['decode_tokens_per_second']:.1f} ({j['speedup_decode']:.2f}x), weights {j['weight_bytes_ratio']:.3f}x\")" "$OUT/gpu_engine_7b_${scheme}_p$p.json"
  done
done
exit $status
