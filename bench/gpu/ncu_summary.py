#!/usr/bin/env python3
"""Sums an `ncu --csv --metrics gpu__time_duration.sum` log by kernel name: where a forward pass
spends its GPU time.

Usage: ncu_summary.py LOG.csv [TOP] [--minus BASE.csv] [--divide N] [--split-on NAME]
  --minus BASE.csv  subtract BASE's per-kernel totals (e.g. the same run with fewer decode steps)
  --divide N        divide what remains by N (e.g. the number of extra decode steps)
  --split-on NAME   a run of kernels whose name contains NAME starts a new segment (fill_k: the
                    random weights of the next engine), and each segment is reported on its own
"""
import argparse
import collections
import csv


def load(path, split_on):
    """Per segment: Counter name -> total µs, Counter name -> calls."""
    with open(path, newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]
    segments = []
    in_split = True  # the first kernel starts segment 0
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0][:90]
        is_split = bool(split_on) and split_on in name
        if not segments or (is_split and not in_split):
            segments.append((collections.Counter(), collections.Counter()))
        in_split = is_split
        if is_split:
            continue
        unit = row.get("Metric Unit", "nsecond")
        value = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
        segments[-1][0][name] += value * scale
        segments[-1][1][name] += 1
    return segments


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("top", nargs="?", type=int, default=25)
    ap.add_argument("--minus")
    ap.add_argument("--divide", type=float, default=1.0)
    ap.add_argument("--split-on", default="")
    a = ap.parse_args()
    segs = load(a.log, a.split_on)
    base = load(a.minus, a.split_on) if a.minus else []
    for i, (total, count) in enumerate(segs):
        if i < len(base):
            total.subtract(base[i][0])
            count.subtract(base[i][1])
        total = {k: v / a.divide for k, v in total.items() if abs(v) > 1e-9}
        grand = sum(total.values())
        if len(segs) > 1:
            print(f"-- segment {i}")
        print(f"{'kernel':<90} {'calls':>7} {'total us':>10} {'share':>6}")
        for name, us in sorted(total.items(), key=lambda kv: -kv[1])[: a.top]:
            print(f"{name:<90} {count[name] / a.divide:>7.1f} {us:>10.1f} "
                  f"{100 * us / grand if grand else 0:>5.1f}%")
        print(f"{'all':<90} {sum(count.values()) / a.divide:>7.1f} {grand:>10.1f}")


if __name__ == "__main__":
    main()
