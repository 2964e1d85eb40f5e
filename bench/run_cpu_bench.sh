#!/usr/bin/env bash
# End-to-end CPU benchmarks, each figure a ratio or a measurement of one run:
#  1. fp32 engine perplexity throughput and peak RSS (tinystories-656k, 1B-class demo model);
#  2. `smoothquant bench` on the 1B-class demo model: prefill/decode tokens/s and Linear weight
#     bytes, INT8 against fp32 in the same process;
#  3. `smoothquant quantize` streaming export of the 1B-class model: time and peak RSS, against the
#     size of one fp32 decoder layer.
# Writes bench/results/cpu_engine.json (commands, commit, machine, raw numbers).
# Usage: bench/run_cpu_bench.sh [BUILD_DIR]   (SQ_SHARED_DIR as for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
SQ="$BUILD/smoothquant"
SHARED="${SQ_SHARED_DIR:-../shared}"
OUT=bench/results/cpu_engine.json
WORK="$BUILD/bench-work"
mkdir -p "$WORK" bench/results
THREADS="${SQ_THREADS:-$(nproc)}"
[[ -d "$WORK/demo-1b" ]] || "$SQ" make-demo-model -o "$WORK/demo-1b" --preset 1b

# timed NAME CMD... : runs CMD with /usr/bin/time, stdout to $WORK/NAME.out; prints peak RSS (KiB)
timed() {
  local name=$1
  shift
  /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out"
  awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/$name.time"
}

declare -A RSS CMD
run() {
  local name=$1
  shift
  CMD[$name]="$*"
  RSS[$name]=$(timed "$name" "$@")
}

run ppl_tiny "$SQ" -t "$THREADS" perplexity "$SHARED/models/tinystories-656k" \
  --text "$SHARED/data/tinystories-valid-slice.txt" --ctx 256 --max-windows 40 --json
run ppl_1b "$SQ" -t "$THREADS" perplexity "$WORK/demo-1b" \
  --text "$SHARED/data/wikitext-2-raw/wiki.test.raw" --ctx 256 --max-windows 4 --json
run bench_1b "$SQ" -t "$THREADS" bench "$WORK/demo-1b" -p 512 -n 32 -r 2 --json
rm -rf "$WORK/demo-1b-int8"
run quantize_1b "$SQ" -t "$THREADS" quantize "$WORK/demo-1b" --no-smooth -o "$WORK/demo-1b-int8" --json

python3 - "$OUT" "$THREADS" "$WORK" \
  "${CMD[ppl_tiny]}" "${RSS[ppl_tiny]}" "${CMD[ppl_1b]}" "${RSS[ppl_1b]}" \
  "${CMD[bench_1b]}" "${RSS[bench_1b]}" "${CMD[quantize_1b]}" "${RSS[quantize_1b]}" <<'PY'
import json, os, platform, subprocess, sys
out, threads, work, *rest = sys.argv[1:]
names = ["ppl_tiny", "ppl_1b", "bench_1b", "quantize_1b"]
runs = {}
for i, n in enumerate(names):
    runs[n] = {"command": rest[2 * i], "peak_rss_mib": int(rest[2 * i + 1]) / 1024,
               "result": json.load(open(os.path.join(work, n + ".out")))}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cfg = json.load(open(os.path.join(work, "demo-1b", "config.json")))
h, f, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_key_value_heads"] * cfg["head_dim"]
layer_bytes = 4 * (2 * h * h + 2 * h * kv + 3 * h * f + 2 * h)
doc = {"benchmark": "CPU end to end: fp32 engine, INT8 vs fp32, streaming quantize",
       "script": "bench/run_cpu_bench.sh", "commit": commit,
       "machine": {"cpu": cpu, "cores": os.cpu_count(), "threads": int(threads), "os": platform.platform()},
       "one_fp32_decoder_layer_mib": layer_bytes / 2**20, "runs": runs}
json.dump(doc, open(out, "w"), indent=2)
t, b, q = runs["ppl_tiny"], runs["ppl_1b"], runs["bench_1b"]["result"]
print(f"perplexity tinystories-656k: {t['result']['tokens_per_second']:.0f} tok/s, peak RSS {t['peak_rss_mib']:.0f} MiB")
print(f"perplexity demo-1b fp32:     {b['result']['tokens_per_second']:.1f} tok/s, peak RSS {b['peak_rss_mib']:.0f} MiB")
print(f"bench demo-1b: prefill {q['fp32']['prefill_tokens_per_second']:.1f} -> {q['int8']['prefill_tokens_per_second']:.1f} tok/s "
      f"({q['speedup_prefill']:.2f}x), decode {q['fp32']['decode_tokens_per_second']:.2f} -> {q['int8']['decode_tokens_per_second']:.2f} tok/s "
      f"({q['speedup_decode']:.2f}x), weights {q['weight_bytes_ratio']:.3f}x")
qq = runs["quantize_1b"]
print(f"quantize demo-1b (streaming): {qq['result']['seconds']:.1f}s, peak RSS {qq['peak_rss_mib']:.0f} MiB "
      f"(one fp32 layer = {layer_bytes / 2**20:.0f} MiB)")
PY
