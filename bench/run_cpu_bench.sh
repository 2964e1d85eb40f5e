#!/usr/bin/env bash
# End-to-end CPU benchmark of the fp32 engine: perplexity throughput (tokens/s) and peak RSS for
# tinystories-656k and a 1B-class make-demo-model shape. Writes bench/results/cpu_fp32_engine.json
# with the command lines, the commit, the machine and the raw numbers.
# Usage: bench/run_cpu_bench.sh [BUILD_DIR]   (SQ_SHARED_DIR as for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
SQ="$BUILD/smoothquant"
SHARED="${SQ_SHARED_DIR:-../shared}"
OUT=bench/results/cpu_fp32_engine.json
WORK="$BUILD/bench-work"
mkdir -p "$WORK" bench/results
THREADS="${SQ_THREADS:-$(nproc)}"

# run_ppl NAME MODEL TEXT CTX WINDOWS -> one JSON object (perplexity --json + peak RSS in KiB)
run_ppl() {
  local name=$1 model=$2 text=$3 ctx=$4 windows=$5
  local cmd="$SQ -t $THREADS perplexity $model --text $text --ctx $ctx --max-windows $windows --json"
  /usr/bin/time -v -o "$WORK/time.txt" $cmd >"$WORK/ppl.json"
  local rss
  rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt")
  python3 - "$name" "$cmd" "$rss" "$WORK/ppl.json" <<'PY'
import json, sys
name, cmd, rss, path = sys.argv[1:]
r = json.load(open(path))
print(json.dumps({"name": name, "command": cmd, "tokens_per_second": r["tokens_per_second"],
                  "seconds": r["seconds"], "tokens": r["n_windows"] * r["ctx"], "ppl": r["ppl"],
                  "peak_rss_mib": int(rss) / 1024}))
PY
}

results=()
results+=("$(run_ppl tinystories-656k "$SHARED/models/tinystories-656k" \
  "$SHARED/data/tinystories-valid-slice.txt" 256 40)")
if [[ ! -d "$WORK/demo-1b" ]]; then
  "$SQ" make-demo-model -o "$WORK/demo-1b" --preset 1b
fi
results+=("$(run_ppl demo-1b-f32 "$WORK/demo-1b" "$SHARED/data/wikitext-2-raw/wiki.test.raw" 256 4)")

python3 - "$OUT" "$THREADS" "${results[@]}" <<'PY'
import json, platform, subprocess, sys
out, threads, *rows = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
doc = {"benchmark": "fp32 engine perplexity throughput and peak RSS (CPU)",
       "script": "bench/run_cpu_bench.sh", "commit": commit, "machine": {"cpu": cpu,
       "cores": __import__("os").cpu_count(), "threads": int(threads), "os": platform.platform()},
       "results": [json.loads(r) for r in rows]}
json.dump(doc, open(out, "w"), indent=2)
for r in doc["results"]:
    print(f"{r['name']:>20}: {r['tokens_per_second']:10.1f} tokens/s  peak RSS {r['peak_rss_mib']:8.1f} MiB  ppl {r['ppl']:.4f}")
PY
