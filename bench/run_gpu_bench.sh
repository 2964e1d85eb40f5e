#!/usr/bin/env bash
# GPU INT8 GEMM on an NVIDIA Hopper machine (the device tool's nvidia-h200), in one command:
# builds the standalone driver with nvcc (sm_90a), records which tensor-core and TMA instructions
# its SASS holds, checks the kernel bit-exact against the CPU reference, then times it against
# cuBLAS(Lt) bf16 and cuBLASLt INT8 in the same process, and PyTorch's baselines when
# build-gpu/torch_gemm_baseline.py is there (copy it from ../shared/tools and carry build-gpu).
#   bench/run_gpu_bench.sh [OUT_DIR]     (default bench/results)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results}"
mkdir -p build-gpu "$OUT"
nvcc -std=c++17 -O3 -Isrc -gencode=arch=compute_90a,code=sm_90a -Xptxas -v \
  bench/gpu/bench_gemm_cuda.cu src/backend/cuda/gemm_s8_sm90.cu src/backend/cuda/gemv_s8.cu \
  -lcublasLt \
  -o build-gpu/bench_gemm_cuda 2>&1 | grep -E "registers|spill|C7515" | sort -u
cuobjdump --dump-sass build-gpu/bench_gemm_cuda |
  grep -oE "(IGMMA|IMMA|UTMALDG|UTMASTG|STSM|SYNCS)[.A-Z0-9_]*" | sort | uniq -c >"$OUT/gpu_gemm_sass.txt" || true
echo "SASS instruction counts:"; cat "$OUT/gpu_gemm_sass.txt"
timeout 300 build-gpu/bench_gemm_cuda --out "$OUT/gpu_gemm_s8.json"
if [[ -f build-gpu/torch_gemm_baseline.py ]]; then
  timeout 240 python3 build-gpu/torch_gemm_baseline.py --out "$OUT/gpu_torch_baseline.json" | tail -20
fi
