#!/usr/bin/env python3
"""Sums an `ncu --csv --metrics gpu__time_duration.sum` log by kernel name: where a forward pass
spends its GPU time. Usage: ncu_summary.py LOG.csv [TOP]"""
import csv
import collections
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    with open(path, newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]
    total = collections.Counter()
    count = collections.Counter()
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0][:90]
        unit = row.get("Metric Unit", "nsecond")
        value = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
        total[name] += value * scale
        count[name] += 1
    grand = sum(total.values())
    print(f"{'kernel':<90} {'calls':>6} {'total us':>10} {'share':>6}")
    for name, us in total.most_common(top):
        print(f"{name:<90} {count[name]:>6} {us:>10.0f} {100 * us / grand:>5.1f}%")
    print(f"{'all':<90} {sum(count.values()):>6} {grand:>10.0f}")


if __name__ == "__main__":
    main()
