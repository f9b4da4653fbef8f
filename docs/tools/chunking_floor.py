"""Measure how much the chunking of model calls changes results (docs/architecture.md,
"Chunking and results"), and which term causes it.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python docs/tools/chunking_floor.py`` (default model, CPU,
a few minutes). Prints, per method, the largest difference relative to each row's largest |score|
between ``max_rows=1`` / ``max_rows=4`` / an identical call and automatic sizing; then the terms:
row count of a call, a longer (padded) row, SDPA against eager, and one ``nn.Linear`` alone.
"""

from __future__ import annotations

import warnings

import torch

import genattrib
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.targets import resolve_target

PROMPTS = ["The capital of France is", "Once upon a time there was"]
TARGETS = [" Paris, the city of", " a little girl"]
CASES = [
    ("saliency", {}),
    ("integrated_gradients", {"n_steps": 16}),
    ("integrated_gradients", {"n_steps": 16, "attributed_fn": "probability"}),
    ("gradient_shap", {"n_samples": 8}),
    ("occlusion", {}),
    ("attention", {}),
    ("rollout", {}),
]


def relative(a: genattrib.FeatureAttributionOutput, b: genattrib.FeatureAttributionOutput) -> float:
    worst = 0.0
    for x, y in zip(a.sequences, b.sequences):
        x, y = x.scores.nan_to_num(0), y.scores.nan_to_num(0)
        worst = max(worst, float(((x - y).abs() / x.abs().amax(-1, keepdim=True).clamp_min(1e-12)).max()))
    return worst


def methods(model: genattrib.AttributionModel) -> None:
    for name, params in CASES:
        runs = {
            rows: model.attribute(PROMPTS, target=TARGETS, method=name, show_progress=False, max_rows=rows, **params)
            for rows in (None, 1, 4)
        }
        again = model.attribute(PROMPTS, target=TARGETS, method=name, show_progress=False, **params)
        auto = runs[None]
        print(
            f"{name} {params}: max_rows=1 {relative(auto, runs[1]):.1e}, "
            f"max_rows=4 {relative(auto, runs[4]):.1e}, again {relative(auto, again):.1e}",
            flush=True,
        )


def terms(model: genattrib.AttributionModel) -> None:
    hf, fn = model.model, resolve_target("logprob")
    ids = model.tokenizer("The capital of France is Paris, the city of", return_tensors="pt").input_ids
    length, t = int(ids.shape[1]), int(ids.shape[1]) - 4
    forward = ModelForward(hf)
    x = forward.embed(ids)[0]
    alphas = torch.linspace(0.02, 1, 16)
    saved = hf.config._attn_implementation

    def grads(row_length: int, per_call: int, kernel: str) -> torch.Tensor:
        hf.config._attn_implementation = kernel
        points = alphas.view(-1, 1, 1) * x[:row_length]
        targets = Explained.tokens(torch.full((16,), t), ids[0, t].repeat(16))
        parts = [
            forward.values_and_grads(points[s : s + per_call], targets.select(slice(s, s + per_call)), fn)[1]
            for s in range(0, 16, per_call)
        ]
        return torch.cat(parts)[:, :t]

    def rel(a: torch.Tensor, b: torch.Tensor) -> str:
        return f"{float((a - b).abs().max() / a.abs().max()):.1e}"

    try:
        for kernel in ("sdpa", "eager"):
            ref = grads(t + 1, 16, kernel)
            print(f"{kernel}: 16 rows per call vs 1: {rel(ref, grads(t + 1, 1, kernel))}")
            print(f"{kernel}: own prefix vs a longer row: {rel(ref, grads(length, 16, kernel))}")
        print(f"sdpa vs eager: {rel(grads(t + 1, 16, 'sdpa'), grads(t + 1, 16, 'eager'))}")
    finally:
        hf.config._attn_implementation = saved
    linear, rows = torch.nn.Linear(576, 1536), torch.randn(144, 576)
    with torch.no_grad():
        whole, parts = linear(rows), torch.cat([linear(rows[s : s + 9]) for s in range(0, 144, 9)])
    print(f"nn.Linear, 144 rows vs 16 x 9: {rel(whole, parts)}, bitwise equal: {torch.equal(whole, parts)}")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    default = genattrib.load_model()
    methods(default)
    terms(default)
