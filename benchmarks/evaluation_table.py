"""Render a ``genattrib evaluate --json`` file as a Markdown table (methods × metrics), with each
method's completeness (median |completeness_error| / |F(x) - F(x')|; ⚠ over 10%: unconverged; "–": the
method records none; "?": a file written before completeness was recorded).

python benchmarks/evaluation_table.py docs/results/wikitext.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from genattrib.evaluation.completeness import Completeness
from genattrib.evaluation.report import completeness_label, method_label


def _fmt(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"


def markdown(data: dict) -> str:
    rows = data["rows"]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    best = {}
    for m in metrics:
        if m == "distractor_share":  # describes the data, not a method
            continue
        candidates = [r for r in rows if r["metric"] == m and r["method"] != "random" and r["value"] is not None]
        if candidates:
            pick = (min if candidates[0]["lower_is_better"] else max)(candidates, key=lambda r: r["value"])
            best[m] = pick["method"]
    arrow = {m: ("↓" if next(r for r in rows if r["metric"] == m)["lower_is_better"] else "↑") for m in metrics}
    timing = {r["method"]: r for r in data["methods"]}
    lines = [
        "| method | " + " | ".join(f"{m} {arrow[m]}" for m in metrics) + " | completeness ↓ | s/token |",
        "|---|" + "---|" * (len(metrics) + 2),
    ]
    for method in methods:
        cells = []
        for m in metrics:
            r = cell.get((method, m))
            if r is None:
                cells.append("")
                continue
            text = f"{_fmt(r['value'])} [{_fmt(r['low'])}, {_fmt(r['high'])}]"
            cells.append(f"**{text}**" if best.get(m) == method else text)
        t = timing.get(method, {})
        per_token = t["attribute_seconds"] / t["tokens"] if t.get("tokens") else None
        value = Completeness.from_dict(t.get("completeness"))
        complete = "" if method == "random" else ("?" if "completeness" not in t else completeness_label(value))
        lines.append(
            f"| {method_label(method, value)} | "
            + " | ".join(cells)
            + f" | {complete} | {_fmt(per_token) if per_token else '–'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(markdown(json.loads(Path(path).read_text())))
        print()
