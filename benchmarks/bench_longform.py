"""Long-form analysis on the default model: cost of explaining 256 to 2,048 generated tokens.

The default model (SmolLM2-135M-Instruct, CPU, fp32) writes one long story for a chat prompt
(EOS suppressed up to the longest length, so every length is a prefix of the same text). Each
length L then explains the first L generated tokens, forced, with:

- ``token saliency``: saliency of every generated token (today's default; O(L²) work);
- ``sentence saliency``: saliency with ``explain="sentences"`` (one backward per sentence);
- ``sentence-source occlusion``: occlusion with ``sources="sentences"`` (the prompt's sentences)
  and ``explain="sentences"``: U + 1 full-length forwards for every sentence target;
- ``context ablation``: the ContextCite-style surrogate, 64 samples over the prompt's sentences.

Every (method, length) cell runs in a fresh subprocess (its peak RSS is its own) under a time
budget (``--budget``, seconds). A cell that would exceed it runs windows of its rows spread over
the text instead, one after another until the budget is spent, and its total is extrapolated
from a least-squares fit ``seconds = a * rows + b * row_tokens`` over those windows (rows cost
in proportion to their length); the table marks those cells. File sizes (JSON, safetensors,
HTML) are those of results that ran in full.

    nox -s bench-longform                              # full table, results in docs/results/longform.json
    nox -s bench-longform -- --lengths 256 512 --budget 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from genattrib.machine import machine_record

CHAT = [{"role": "user", "content": "Write a long story about a lighthouse keeper who finds a message in a bottle."}]
METHODS: dict[str, dict[str, Any]] = {
    "token saliency": {"method": "saliency"},
    "sentence saliency": {"method": "saliency", "explain": "sentences"},
    "sentence-source occlusion": {"method": "occlusion", "explain": "sentences", "sources": "sentences"},
    "context ablation": {"method": "context_ablation", "explain": "sentences", "sources": "sentences", "n_samples": 64},
}
#: How a cell over budget is cut down: windows of its rows, or fewer samples (ablation rows are
#: shared by every target, so fewer targets would not cost less); occlusion always runs in full.
REDUCED_BY = {"token saliency": "rows", "sentence saliency": "rows", "context ablation": "samples"}
SAMPLE_STEPS = (8, 16, 24)
WINDOW_ROWS = 8  # rows per window: small enough that several windows fit the budget at 2,048 tokens
HERE = Path(__file__).resolve().parent


def _story(max_tokens: int, cache: Path) -> list[int]:
    """The generated story's token ids (cached: generation is not what is measured)."""
    if cache.is_file():
        ids = json.loads(cache.read_text())
        if len(ids) >= max_tokens:
            return ids[:max_tokens]
    import genattrib

    model = genattrib.load_model()
    [ids] = model.generate(CHAT, chat=True, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False)
    cache.write_text(json.dumps(ids.tolist()))
    return ids.tolist()


def _prompt_ids(model: Any) -> list[int]:
    """The chat prompt's ids, tokenized as ``attribute(CHAT, chat=True)`` does."""
    from genattrib.models.options import inputs

    [prompt] = inputs.normalize_prompts(CHAT, True)
    return inputs.tokenize_prompt(model.tokenizer, prompt).tolist()


def _row_spans(model: Any, ids: list[int], explain: str | None) -> list[tuple[int, int]]:
    """The generated-token ranges each row explains (0 = first generated token)."""
    if explain is None:
        return [(i, i + 1) for i in range(len(ids))]
    from genattrib.models.options.explain_units import unit_spans
    from genattrib.models.results.token_text import decode_tokens

    prompt = _prompt_ids(model)
    spans = unit_spans(explain, decode_tokens(model.tokenizer, prompt + ids), len(prompt))
    return [(a - len(prompt), b - len(prompt)) for a, b in spans]


def _windows(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Windows of ``size`` rows at positions spread over the text (last, first, middle ...)."""
    starts = list(range(0, len(spans), size))
    order = []
    lo, hi = 0, len(starts) - 1
    while lo <= hi:  # alternate ends and middles: every part of the text is sampled early
        order.append(starts[hi])
        if lo != hi:
            order.append(starts[lo])
        lo, hi = lo + 1, hi - 1
    return [(spans[s][0], spans[min(s + size, len(spans)) - 1][1]) for s in order]


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell, in its own process: load, attribute (in full or cut down), report."""
    import genattrib

    torch.set_num_threads(spec["threads"])
    model = genattrib.load_model()
    ids, params = spec["ids"], dict(METHODS[spec["name"]])
    spans = _row_spans(model, ids, params.get("explain"))
    prompt_len = len(_prompt_ids(model))

    def tokens_of(rows: list[tuple[int, int]]) -> int:
        return sum(prompt_len + b - 1 for _, b in rows)

    record: dict[str, Any] = {"rows": len(spans), "row_tokens": tokens_of(spans), "generated": len(ids)}
    predicted = spec.get("predicted_seconds")
    reduced = REDUCED_BY.get(spec["name"]) if predicted is not None and predicted > spec["budget"] else None
    if reduced == "rows":
        windows = _windows(spans, max(1, min(len(spans) // 16, WINDOW_ROWS)))
        calls: list[tuple[dict[str, Any], Any]] = [
            ({"attr_pos_start": a, "attr_pos_end": b}, (a, b)) for a, b in windows
        ]
    elif reduced == "samples":
        calls = [({"n_samples": k}, k) for k in SAMPLE_STEPS]
    else:
        calls = [({}, None)]
    runs, spent, out = [], 0.0, None
    for extra, what in calls:
        t0 = time.perf_counter()
        out = model.attribute(CHAT, torch.tensor(ids), chat=True, show_progress=False, **{**params, **extra})
        run: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        if reduced == "rows":
            rows = [s for s in spans if what[0] <= s[0] and s[1] <= what[1]]
            run.update(rows=len(rows), row_tokens=tokens_of(rows))
        elif reduced == "samples":
            run["samples"] = what
        runs.append(run)
        spent += run["seconds"]
        if spent > spec["budget"] and len(runs) >= 2:
            break
    record.update(runs=runs, reduced=reduced, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if reduced is None and out is not None:
        with tempfile.TemporaryDirectory() as tmp:
            record["sizes_kb"] = {
                "json": out.save(Path(tmp, "r.json")).stat().st_size / 1024,
                "safetensors": out.save(Path(tmp, "r.safetensors")).stat().st_size / 1024,
                "html": out.save_html(Path(tmp, "r.html")).stat().st_size / 1024,
            }
    return record


def _fit(x: list[list[float]], y: list[float]) -> torch.Tensor:
    """Least-squares fit ``y ≈ x @ coef`` (negative coefficients clamped to 0)."""
    coef = torch.linalg.lstsq(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64).unsqueeze(1))
    return coef.solution.flatten().clamp(min=0)


def estimate_total(record: dict[str, Any], samples: int = 64) -> float:
    """Seconds for the whole cell: measured; or fitted ``a * rows + b * row_tokens`` over row
    windows; or ``a + b * samples`` over runs with fewer samples."""
    runs = record["runs"]
    if record["reduced"] is None:
        return runs[0]["seconds"]
    if record["reduced"] == "samples":
        coef = _fit([[1.0, r["samples"]] for r in runs], [r["seconds"] for r in runs])
        return float(coef[0] + coef[1] * samples)
    coef = _fit([[r["rows"], r["row_tokens"]] for r in runs], [r["seconds"] for r in runs])
    if float(coef.sum()) == 0:  # degenerate fit: scale by row tokens alone
        coef = torch.tensor([0.0, sum(r["seconds"] for r in runs) / sum(r["row_tokens"] for r in runs)])
    return float(coef[0] * record["rows"] + coef[1] * record["row_tokens"])


def markdown_table(results: dict[str, Any]) -> str:
    """The results as the markdown tables of docs/long-form.md (times, then file sizes)."""
    lengths = sorted(results["lengths"])
    cells = results["cells"]
    names = list(dict.fromkeys(key.split("@")[0] for key in cells))
    lines = [
        "| method | " + " | ".join(f"{n:,} tokens" for n in lengths) + f" | time {lengths[-1]:,} / {lengths[0]:,} |"
    ]
    lines.append("|---|" + "---|" * (len(lengths) + 1))
    for name in names:
        row = []
        for n in lengths:
            c = cells.get(f"{name}@{n}")
            if c is None:
                row.append("—")
                continue
            mark = "" if c["reduced"] is None else "*"
            row.append(f"{c['seconds']:,.0f} s{mark}, {c['peak_rss_mb'] / 1024:.2f} GB")
        first, last = cells.get(f"{name}@{lengths[0]}"), cells.get(f"{name}@{lengths[-1]}")
        ratio = f"{last['seconds'] / first['seconds']:.1f}" if first and last else "—"
        lines.append(f"| {name} | " + " | ".join(row) + f" | {ratio} |")
    lines += ["", "| result files (JSON / safetensors / HTML) | " + " | ".join(f"{n:,}" for n in lengths) + " |"]
    lines.append("|---|" + "---|" * len(lengths))
    for name in names:
        row = []
        for n in lengths:
            sizes = cells.get(f"{name}@{n}", {}).get("sizes_kb")
            row.append("—" if sizes is None else " / ".join(_size(sizes[k]) for k in ("json", "safetensors", "html")))
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _size(kb: float) -> str:
    return f"{kb / 1024:.1f} MB" if kb >= 1024 else f"{kb:.0f} KB"


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", f.name], capture_output=True, text=True, env=env, check=False
    )
    os.unlink(f.name)
    if done.returncode != 0:
        raise RuntimeError(f"cell {spec['name']} @ {len(spec['ids'])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--budget", type=float, default=150.0, help="seconds per cell before windows+extrapolation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" / "longform.json")
    parser.add_argument("--story-cache", type=Path, default=HERE.parent / "artifacts" / "longform_story.json")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, default=None, help="print the markdown tables of a results file")
    parser.add_argument("--resume", action="store_true", help="keep the cells already in --out, run the others")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child.read_text()))))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.story_cache.parent.mkdir(parents=True, exist_ok=True)
    story = _story(max(args.lengths), args.story_cache)
    results: dict[str, Any] = {"lengths": args.lengths, "budget_s": args.budget, "threads": args.threads, "cells": {}}
    results["machine"] = machine_record()  # CPU model, torch's kernels, MKL/oneDNN (the parent's threads)
    if args.resume and args.out.is_file():  # keep the cells an interrupted run measured
        results["cells"] = json.loads(args.out.read_text())["cells"]
    for name in args.methods:
        previous: tuple[int, float] | None = None
        for length in sorted(args.lengths):
            if f"{name}@{length}" in results["cells"]:
                previous = (length, results["cells"][f"{name}@{length}"]["seconds"])
                continue
            # predict from the previous length (quadratic growth, the worst case) to skip a hopeless full run
            predicted = None if previous is None else previous[1] * (length / previous[0]) ** 2
            spec = {"name": name, "ids": story[:length], "budget": args.budget, "threads": args.threads}
            record = _run_child({**spec, "predicted_seconds": predicted})
            record["seconds"] = estimate_total(record)
            previous = (length, record["seconds"])
            results["cells"][f"{name}@{length}"] = record
            mark = "" if record["reduced"] is None else f" (extrapolated from fewer {record['reduced']})"
            rss = record["peak_rss_mb"]
            print(f"{name:28s} {length:5d}  {record['seconds']:9.1f} s{mark}  peak RSS {rss:.0f} MB", flush=True)
            args.out.write_text(json.dumps(results, indent=1))
    print(markdown_table(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
