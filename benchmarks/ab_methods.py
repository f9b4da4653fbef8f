"""Interleaved A/B of every method's CPU time between two source trees (e.g. a refactor and the
commit before it), on the embedded default model, one thread.

Each round runs one worker process per tree, in alternating order (A B, B A, A B ...). A worker
imports genattrib from its tree (``PYTHONPATH``), loads the model, warms up, then times one
``attribute()`` call per method on a fixed prompt and forced continuation, and reports the time,
a hash of the scores (so bit-identical results show as equal hashes) and its peak RSS.
The report gives each method's median time per tree and the ratio B/A.

Example:
    $ git worktree add /tmp/base 7297d10
    $ python benchmarks/ab_methods.py --a /tmp/base --b . --rounds 5 --out ab.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "The bicycle was invented in the early nineteenth century, and"
CONTINUATION = " within a few decades it had changed how people travelled."
#: Parameters small enough that a round of every method takes about a minute on one CPU thread.
PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "gradient_shap": {"n_samples": 8},
    "sequential_integrated_gradients": {"n_steps": 8},
    "discretized_integrated_gradients": {"n_anchors": 8},
    "uniform_discretized_integrated_gradients": {"n_anchors": 8},
    "lime": {"n_samples": 32},
    "reagent": {"max_steps": 3, "num_probes": 4},
    "rpi": {"num_samples": 4, "n_steps": 8},
}


def worker(methods: list[str]) -> dict[str, Any]:
    import torch

    import genattrib

    torch.set_num_threads(1)
    model = genattrib.load_model()
    model.attribute(PROMPT, continuation=CONTINUATION, method="saliency")  # warm-up
    out: dict[str, Any] = {"genattrib": str(Path(genattrib.__file__).parent), "methods": {}}
    for method in methods:
        params = {k: v for k, v in PARAMS.get(method, {}).items()}
        start = time.perf_counter()
        try:
            result = model.attribute(PROMPT, continuation=CONTINUATION, method=method, **params)
        except Exception as error:  # noqa: BLE001 - a method that fails in one tree is reported, not fatal
            out["methods"][method] = {"error": f"{type(error).__name__}: {error}"[:300]}
            continue
        seconds = time.perf_counter() - start
        matrix = result.sequences[0].scores.float().contiguous()
        digest = hashlib.sha256(matrix.numpy().tobytes()).hexdigest()[:16]
        cells = [[None if v != v else v for v in row] for row in matrix.tolist()]  # NaN -> null
        out["methods"][method] = {"seconds": seconds, "hash": digest, "scores": cells}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_worker(tree: Path, methods: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--methods", ",".join(methods)]
    done = subprocess.run(cmd, env=env, cwd="/", capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _diff_to_scale(runs: dict[str, list[dict[str, Any]]], method: str) -> float | None:
    """The largest |A - B| over the scores' scale (max |A|), first run of each side."""
    first = [
        next((r["methods"][method]["scores"] for r in results if "scores" in r["methods"].get(method, {})), None)
        for results in runs.values()
    ]
    if any(f is None for f in first):
        return None
    a, b = ([v for row in f for v in row] for f in first)
    if len(a) != len(b) or [v is None for v in a] != [v is None for v in b]:
        return float("inf")  # other shapes or NaN patterns
    pairs = [(x, y) for x, y in zip(a, b) if x is not None]
    scale = max((abs(x) for x, _ in pairs), default=0.0) or 1.0
    return max((abs(x - y) for x, y in pairs), default=0.0) / scale


def summarise(runs: dict[str, list[dict[str, Any]]], methods: list[str]) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        for side, results in runs.items():
            times = [r["methods"][method]["seconds"] for r in results if "seconds" in r["methods"].get(method, {})]
            hashes = {r["methods"][method].get("hash") for r in results if method in r["methods"]}
            row[f"{side}_median_s"] = statistics.median(times) if times else None
            row[f"{side}_rounds_s"] = [round(t, 4) for t in times]  # in round order, to judge the spread
            row[f"{side}_hashes"] = sorted(h for h in hashes if h)
        a, b = row["a_median_s"], row["b_median_s"]
        row["ratio_b_over_a"] = None if not (a and b) else round(b / a, 3)
        row["same_scores"] = bool(row["a_hashes"]) and row["a_hashes"] == row["b_hashes"]
        row["max_diff_to_scale"] = _diff_to_scale(runs, method)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, help="source tree A (the baseline)")
    parser.add_argument("--b", type=Path, help="source tree B")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", default="all", help="comma-separated, or all")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.methods == "all":
        from genattrib.methods import list_methods

        methods = list_methods()
    else:
        methods = args.methods.split(",")
    if args.worker:
        print(json.dumps(worker(methods)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for round_ in range(args.rounds):
        order = ("a", "b") if round_ % 2 == 0 else ("b", "a")
        for side in order:
            result = run_worker(getattr(args, side).resolve(), methods)
            runs[side].append(result)
            print(f"round {round_} {side}: peak RSS {result['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    rows = summarise(runs, methods)
    rss = {side: statistics.median(r["peak_rss_mb"] for r in results) for side, results in runs.items()}
    report = {"a": str(args.a), "b": str(args.b), "rounds": args.rounds, "peak_rss_mb": rss, "methods": rows}
    for row in rows:
        a, b = (row[f"{side}_median_s"] or float("nan") for side in ("a", "b"))
        same, diff = row["same_scores"], row["max_diff_to_scale"]
        pairs = [f"{y / x:.2f}" for x, y in zip(row["a_rounds_s"], row["b_rounds_s"])]
        print(
            f"{row['method']:<42} A {a:7.2f}s  B {b:7.2f}s  B/A {row['ratio_b_over_a']} (per round {', '.join(pairs)})"
            f"  same: {same}  diff: {diff}"
        )
    print(f"peak RSS (median) A {rss['a']:.0f} MB, B {rss['b']:.0f} MB")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
