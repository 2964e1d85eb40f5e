#!/usr/bin/env python3
"""Turns the output folders of bench/run_gpu_engine.sh and bench/run_gpu_bench.sh into the
results files under bench/results, each with its provenance (command, commit, machine, date).

Usage: collect_results.py --commit SHA [--engine DIR] [--gemm DIR] [--out bench/results]
                          [--machine TEXT] [--date YYYY-MM-DD]
"""
import argparse
import datetime
import json
import os

MACHINE = "device tool nvidia-h200 (NVIDIA H200, driver 580, CUDA 13)"  # the lent H200 (default)


def load(path):
    with open(path) as f:
        return json.load(f)


def write(out, name, obj):
    with open(os.path.join(out, name), "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    print("wrote", os.path.join(out, name))


def provenance(a, benchmark, command):
    return {"benchmark": benchmark, "command": command, "commit": a.commit, "machine": a.machine,
            "date": a.date}


def engine(a):
    d = a.engine
    for name in sorted(os.listdir(d)):
        if name.startswith("gpu_engine_7b_") and name.endswith(".json"):
            r = load(os.path.join(d, name))
            cmd = (f"smoothquant bench bench/gpu/llama2-7b --device cuda --random-weights "
                   f"-p {r['prompt_tokens']} -n {r['decode_tokens']} -r {r['repetitions']} "
                   f"--scheme {r['scheme']} --json (via bench/run_gpu_engine.sh)")
            write(a.out, name, {**provenance(
                a, "end-to-end GPU engine, bf16 vs INT8 (smoothquant bench --device cuda)", cmd),
                "result": r})
    par = provenance(a, "GPU vs CPU accuracy parity (--device cuda vs --device cpu)",
                     "bench/run_gpu_engine.sh (CLI parity and perplexity table steps)")
    rows = []
    for m in ("tinystories-656k", "qwen2-synth", "opt-synth"):
        if not os.path.exists(os.path.join(d, f"ppl_fp_{m}_cpu.json")):
            continue  # runs before opt-synth joined the table
        g = {f"{k}_{dev}": load(os.path.join(d, f"ppl_{k}_{m}_{dev}.json"))["ppl"]
             for k in ("fp", "int8") for dev in ("cpu", "cuda")}
        rows.append({"model": m, **g})
    par["perplexity_table"] = {
        "protocol": "perplexity MODEL --text tinystories-valid-slice.txt --ctx 256 "
                    "--max-windows 20 [--quant channel-token --mode int8 --calib-text same "
                    "--samples 32 --seq-len 256]",
        "rows": rows}
    ec, eg = (load(os.path.join(d, f"evaluate_{dev}.json")) for dev in ("cpu", "cuda"))
    par["evaluate_tinystories"] = {
        "command": "evaluate tinystories-656k --text T --calib-text T --samples 16 --seq-len 128 "
                   "--ctx 128 --max-windows 0 --mode int8 --device cpu|cuda",
        "rows": [{"name": c["name"], "ppl_cpu": c["ppl"], "ppl_cuda": g["ppl"],
                  "kl_cpu": c["kl_mean"], "kl_cuda": g["kl_mean"], "top1_cpu": c["top1_agree"],
                  "top1_cuda": g["top1_agree"]} for c, g in zip(ec["rows"], eg["rows"])]}
    keys = ("ppl", "fp_ppl", "kl_mean", "top1_agree")
    par["perplexity_o3_quant_bmm_qwen2"] = {
        "command": "perplexity qwen2-synth --text T --ctx 128 --max-windows 0 --quant o3 --mode "
                   "int8 --calib-text T --samples 16 --seq-len 128 --alpha 0.85 --quant-bmm "
                   "--device cpu|cuda",
        **{dev: {k: load(os.path.join(d, f"ppl_o3_{dev}.json"))[k] for k in keys}
           for dev in ("cpu", "cuda")}}
    par["generate_greedy_ids_equal"] = (load(os.path.join(d, "generate_cpu.json"))["ids"] ==
                                        load(os.path.join(d, "generate_cuda.json"))["ids"])
    write(a.out, "gpu_cpu_parity.json", par)


def gemm(a):
    r = load(os.path.join(a.gemm, "gpu_gemm_s8.json"))
    write(a.out, "gpu_gemm_s8.json", {**provenance(
        a, "INT8 GEMM kernels vs cuBLASLt bf16 and INT8 (bench/gpu/bench_gemm_cuda.cu)",
        "bench/run_gpu_bench.sh"), **r})
    for name in ("gpu_gemm_sass.txt", "gemm_log.txt", "gpu_torch_baseline.json"):
        src = os.path.join(a.gemm, name)
        if os.path.exists(src):
            dst = "gpu_gemm_log.txt" if name == "gemm_log.txt" else name
            with open(src) as f, open(os.path.join(a.out, dst), "w") as g:
                g.write(f.read())
            print("wrote", os.path.join(a.out, dst))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", required=True)
    ap.add_argument("--engine")
    ap.add_argument("--gemm")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--machine", default=MACHINE)
    a = ap.parse_args()
    if a.engine:
        engine(a)
    if a.gemm:
        gemm(a)


if __name__ == "__main__":
    main()
