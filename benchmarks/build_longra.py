"""Build ``genattrib/data/longra.json`` with the embedded default model.

python benchmarks/build_longra.py            # prints how many candidates were kept
"""

from __future__ import annotations

import json
from pathlib import Path

import genattrib
from genattrib.evaluation.longra import build_longra, candidates

OUT = Path(__file__).resolve().parents[1] / "genattrib" / "data" / "longra.json"


def main() -> None:
    model = genattrib.load_model()
    kept = build_longra(model)
    OUT.write_text(json.dumps(kept, indent=1, ensure_ascii=False) + "\n")
    by = {}
    for e in kept:
        by[e["category"]] = by.get(e["category"], 0) + 1
    print(f"kept {len(kept)} of {len(candidates())} candidates {by} -> {OUT}")


if __name__ == "__main__":
    main()
