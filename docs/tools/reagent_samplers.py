"""ReAGent's uniform against its model sampler at equal budget (docs/methods.md#reagent).

Usage: python docs/tools/reagent_samplers.py PROMPTS TOKENS PROBES MAX_STEPS SEEDS OUT.json
(the recorded run: 8 2 8 20 0, one thread, docs/results/reagent-samplers-2026-12-01.json).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import torch

import genattrib
from genattrib.data import __file__ as data_init


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    n_prompts, n_tokens, probes, steps = (int(a) for a in sys.argv[1:5])
    seeds = [int(s) for s in sys.argv[5].split(",")]
    lines = (Path(data_init).parent / "wikitext_prompts.txt").read_text().splitlines()
    prompts = [line.strip() for line in lines if line.strip()][:n_prompts]
    model = genattrib.load_model()
    ids = model.generate(prompts, max_new_tokens=n_tokens)
    results = {}
    for seed in seeds:
        for sampler in ("uniform", "model"):
            start = time.perf_counter()
            out = model.attribute(
                prompts, ids, method="reagent", token_sampler=sampler, num_probes=probes, max_steps=steps, seed=seed
            )
            seconds = time.perf_counter() - start
            unstopped = sum(float(s.step_scores["reagent_unstopped"].sum()) for s in out.sequences)
            scores = genattrib.evaluate(out, ["soft_ns", "soft_nc"], model=model, seed=0)
            row = {k: [round(v.value, 4), round(v.low, 4), round(v.high, 4)] for k, v in scores.summary.items()}
            row.update(seconds=round(seconds, 1), unstopped=unstopped, targets=n_prompts * n_tokens, probes=probes)
            results[f"{sampler}/seed{seed}"] = row
            print(sampler, seed, json.dumps(row), flush=True)
    Path(sys.argv[6]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
