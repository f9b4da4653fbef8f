"""Compare two saved benchmark results (``genattrib evaluate --json``) metric by metric: how far a
re-run is from a published table (docs/results/*.json).

    genattrib evaluate --methods saliency,occlusion,attention,lime --dataset wikitext \
        --max-examples 8 --max-new-tokens 10 --json /tmp/rerun.json
    python benchmarks/compare_results.py docs/results/wikitext.json /tmp/rerun.json

Rows present in only one file are listed as missing; the last line is the largest difference.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def rows_by_key(path: Path) -> dict[tuple[str, str], float]:
    data = json.loads(path.read_text())
    return {(row["method"], row["metric"]): float(row["value"]) for row in data["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="e.g. docs/results/wikitext.json")
    parser.add_argument("rerun", type=Path, help="the new run's --json")
    args = parser.parse_args()
    reference, rerun = rows_by_key(args.reference), rows_by_key(args.rerun)
    worst = 0.0
    for key in sorted(rerun):
        if key not in reference:
            print(f"{key[0]:24s} {key[1]:18s} missing in {args.reference}")
            continue
        a, b = reference[key], rerun[key]
        diff = 0.0 if (math.isnan(a) and math.isnan(b)) else abs(a - b)
        worst = max(worst, diff)
        print(f"{key[0]:24s} {key[1]:18s} reference {a: .9f} rerun {b: .9f} diff {diff:.2e}")
    print(f"largest difference: {worst:.3e}")


if __name__ == "__main__":
    main()
