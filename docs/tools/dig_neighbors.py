"""DIG's k-NN graph build and per-call time at n_neighbors 50 and 500 on the default model,
interleaved (docs/methods.md#discretized_integrated_gradients).

Usage: python docs/tools/dig_neighbors.py OUT.json (recorded: docs/results/dig-neighbors-2026-12-01.json).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import genattrib
from genattrib.methods.embedding_neighbours import build_knn_graph

DIG = "discretized_integrated_gradients"


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    model = genattrib.load_model()
    vocab = model.model.get_input_embeddings().weight.detach()
    build: dict[int, list[float]] = {50: [], 500: []}
    for _ in range(2):
        for k in build:
            start = time.perf_counter()
            build_knn_graph(vocab, k, show_progress=False)
            build[k].append(time.perf_counter() - start)
    methods = {k: genattrib.methods.get_method(DIG, n_neighbors=k, cache_dir=False) for k in build}
    calls: dict[int, list[float]] = {50: [], 500: []}
    errors: dict[int, float] = {}
    for _ in range(4):  # the first call of each builds its graph
        for k in calls:
            start = time.perf_counter()
            out = model.attribute("The capital of France is", target=" Paris", method=methods[k])
            calls[k].append(time.perf_counter() - start)
            errors[k] = float(out.sequences[0].step_scores["completeness_error"][0])
    result = {
        "build_s": build,
        "call_s_first_includes_build": calls,
        "median_call_s_after_first": {k: statistics.median(v[1:]) for k, v in calls.items()},
        "completeness_error": errors,
    }
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
