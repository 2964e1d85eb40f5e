#!/usr/bin/env bash
# INT8 GEMM kernels against OpenBLAS sgemm/sgemv on Llama-7B layer shapes, M in {1,16,128,512,2048},
# in one Google Benchmark run. Writes bench/results/cpu_gemm_s8.json (raw, with the command and
# commit) and prints the ratio table used in the README.
# OpenBLAS 0.3.21 falls back to generic kernels on CPUs it does not know; the baseline would be
# 4-5x too slow, so its core is chosen from the CPU flags unless OPENBLAS_CORETYPE is set.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  if grep -q avx512bw /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX;
  elif grep -q avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi
OUT=bench/results/cpu_gemm_s8.json
CMD="OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} $BUILD/bench/bench_gemm_s8 --benchmark_out=$OUT"
"$BUILD/bench/bench_gemm_s8" --benchmark_out="$OUT" --benchmark_out_format=json >/dev/null
python3 - "$OUT" "$CMD" <<'PY'
import json, re, subprocess, sys
path, cmd = sys.argv[1:]
j = json.load(open(path))
j["context"]["command"] = cmd
j["context"]["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
j["context"]["cpu"] = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump(j, open(path, "w"), indent=1)
rows = {}
for b in j["benchmarks"]:
    if b.get("run_type") != "iteration":
        continue
    m = re.match(r"(\w[\w-]*)/M(\d+)_N(\d+)_K(\d+)", b["name"])
    if not m:
        continue
    kind, M, N, K = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    rows.setdefault((N, K, M), {})[kind] = b["GOPS"]
print("| N×K | M | fp32 GOPS | int8 (best ISA) GOPS | ratio |")
print("|---|---|---|---|---|")
for (N, K, M), r in sorted(rows.items()):
    fp = r.get("sgemv", r.get("sgemm"))
    i8 = r.get("s8_best")
    if fp and i8:
        print(f"| {N}×{K} | {M} | {fp:.1f} | {i8:.1f} | {i8 / fp:.2f}× |")
PY
