"""Markdown table of run records (one row per run) for the experiment READMEs.

    python experiments/tools/score_table.py RUNS_DIR METRIC [METRIC ...] [--sort METRIC]

Reads every ``run.json`` under RUNS_DIR (completed runs only; others are listed below the
table) and prints score, the given test metrics, parameters and wall time. Metric names
are given without the ``test/`` prefix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("metrics", nargs="+")
    parser.add_argument("--sort", default=None, help="metric to sort by (descending); default: the first")
    args = parser.parse_args()
    records, skipped = [], []
    for path in sorted(args.runs.rglob("run.json")):
        record = json.loads(path.read_text())
        (records if record.get("status") == "completed" else skipped).append((path, record))
    key = f"test/{args.sort or args.metrics[0]}"
    records.sort(key=lambda item: -item[1]["metrics"].get(key, float("-inf")))
    print("| score | " + " | ".join(args.metrics) + " | params | score params | wall s |")
    print("|---" * (len(args.metrics) + 4) + "|")
    for _, r in records:
        cells = [f"{r['metrics'][f'test/{m}']:.1f}" if f"test/{m}" in r["metrics"] else "—" for m in args.metrics]
        print(f"| {r['score']} | " + " | ".join(cells) + f" | {r['params']:,} | {r['score_params']:,} | "
              f"{r['wall_seconds']:.0f} |")
    for path, r in skipped:
        print(f"\nnot completed: {path} ({r.get('status')}: {r.get('error')})")


if __name__ == "__main__":
    main()
