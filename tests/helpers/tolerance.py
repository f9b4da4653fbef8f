"""The suite's one float tolerance policy (docs/architecture.md, "Tolerance policy").

- **Bit-exact** (``torch.equal``) only where the very same operations run on the very same shapes:
  a repeat call, a save/load round trip, a slice of a stored tensor.
- **Everything else** (other batches, chunks, slices, shards, caches, kernels, a formula written
  another way) goes through :func:`assert_close_to_scale`: the largest difference must stay within
  ``floor × SAFETY`` of the scale (the largest finite magnitude of either side), where ``floor`` is
  the relative difference measured for that kind of comparison (the named floors below).

Example:
    >>> import torch
    >>> nan = float("nan")
    >>> worst = assert_close_to_scale(torch.tensor([2.0, nan]), torch.tensor([2.0 + 1e-6, nan]), floor=OPS)
    >>> round(worst, 7)  # the largest difference, relative to the scale (2): within OPS × SAFETY = 1e-5
    5e-07

Set ``GENATTRIB_TOLERANCE_LOG=path`` to append every comparison's worst relative difference (one
JSON line each): that is how the floors below were measured, and how to re-measure them on a new CPU.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

SAFETY = 10.0
"""Factor between a measured floor and the bound a test enforces (other CPUs, kernels and thread counts)."""

# Measured floors: the largest difference seen relative to the scale, rounded up (1 or 2 × a power of ten).
# docs/architecture.md ("Tolerance policy") lists where each was measured.
OPS = 1e-6
"""A few float32 operations in another order or shape: one op's kernel on other shapes (a GEMM blocked
differently: 6e-7), a formula written another way (exp(logprob) vs softmax), a sum over merged positions."""
TINY_MODEL = 2e-5
"""The tests' 2-layer, 32-wide random models run through other shapes: batches, chunks, logit slices,
shards, KV caches, shared rows, forward mode. The worst measured: 1.6e-5, one occlusion cell on an AVX-512
AMD EPYC (one float32 ulp of a unit's F ≈ −58, against scores up to 0.24); see the docs for the rest."""
PERTURBATION = 2e-4
"""The same models, for methods whose scores are differences of two values of F (occlusion, LIME, ReAGent,
context ablation): they round at |F|, which for a sentence unit (a sum of ~15 log-probs, |F| ≈ 50–100) is
hundreds of times the scores. Measured: 1.9e-4 (occlusion of sentence units with a contrast target, KV
reuse against full rows, tiny GPT-2, ATEN_CPU_CAPABILITY=default; 1.6e-4 on the tiny Llama)."""
PERTURBATION_METHODS = frozenset({"occlusion", "lime", "reagent", "context_ablation"})
DEFAULT_MODEL = 1e-4
"""SmolLM2-135M-Instruct (30 layers, fp32) through other chunks or batches: 9.6e-5 for saliency at
``max_rows=1``, 7.1e-6 for occlusion, 2.3e-4 for integrated gradients on probabilities
(docs/architecture.md, "Chunking and results"); per row."""
DEFAULT_MODEL_IG_LOGPROB = 1e-2
"""The same for integrated gradients of the log-probability, whose path gradients cancel: 7e-3 measured."""

_KINDS = {
    OPS: "OPS",
    TINY_MODEL: "TINY_MODEL",
    PERTURBATION: "PERTURBATION",
    DEFAULT_MODEL: "DEFAULT_MODEL",
    DEFAULT_MODEL_IG_LOGPROB: "DEFAULT_MODEL_IG_LOGPROB",
}


def tiny_floor(method: str) -> float:
    """The tiny models' floor for ``method``'s scores: ``PERTURBATION`` or ``TINY_MODEL``."""
    return PERTURBATION if method in PERTURBATION_METHODS else TINY_MODEL


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _log(what: str, floor: float, relative: float) -> None:
    path = os.environ.get("GENATTRIB_TOLERANCE_LOG")
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    record = {"test": test, "what": what, "floor": _KINDS.get(floor, floor), "relative": relative}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def assert_close_to_scale(
    actual: Any,
    expected: Any,
    *,
    floor: float,
    what: str = "scores",
    scale: float | torch.Tensor | None = None,
    rows: bool = False,
) -> float:
    """Assert ``actual`` matches ``expected`` to ``floor × SAFETY`` of their scale; return the worst
    relative difference.

    NaN must sit at the same positions on both sides, and ±inf must match exactly; the scale is
    the largest finite |value| of either side (``scale=`` overrides it where the error is set by
    another quantity; a tensor gives each element its own). ``rows=True`` scales each row (first
    dimension) by its own largest |value|, as docs/architecture.md measures the default model's
    floors. Accepts tensors, numpy arrays, lists and floats of the same shape.
    """
    a, e = _as_tensor(actual), _as_tensor(expected)
    assert a.shape == e.shape, f"{what}: shapes differ: {tuple(a.shape)} vs {tuple(e.shape)}"
    nan_a, nan_e = a.isnan(), e.isnan()
    if not torch.equal(nan_a, nan_e):
        where = (nan_a ^ nan_e).nonzero()[:5].tolist()
        raise AssertionError(
            f"{what}: NaN at different positions, e.g. {where} (actual NaN: {int(nan_a.sum())}, "
            f"expected NaN: {int(nan_e.sum())})"
        )
    inf = a.isinf() | e.isinf()
    if not torch.equal(a[inf], e[inf]):
        raise AssertionError(f"{what}: ±inf differ at {(inf & (a != e)).nonzero()[:5].tolist()}")
    finite = ~(nan_a | inf)
    if not finite.any():
        _log(what, floor, 0.0)
        return 0.0
    magnitude = torch.maximum(a.abs(), e.abs()).masked_fill(~finite, 0)
    if isinstance(scale, torch.Tensor):
        scales = scale.detach().cpu().double().expand_as(a)
    elif scale is not None:
        scales = torch.full_like(a, float(scale))
    elif rows and a.dim() > 1:
        scales = magnitude.flatten(1).amax(1).reshape(-1, *[1] * (a.dim() - 1)).expand_as(a)
    else:
        scales = magnitude.max().expand_as(a)
    diff = (a - e).abs().masked_fill(~finite, 0)
    ratio = torch.where(diff > 0, diff / scales, torch.zeros_like(diff))  # 0/0 (all-zero row) is no difference
    worst = int(ratio.argmax())
    largest, scale, relative = (
        float(diff.flatten()[worst]),
        float(scales.flatten()[worst]),
        float(ratio.flatten()[worst]),
    )
    _log(what, floor, relative)
    bound = floor * SAFETY
    if relative > bound:
        index = tuple(int(i) for i in np.unravel_index(worst, tuple(a.shape))) if a.dim() else ()
        raise AssertionError(
            f"{what}: worst difference {largest:.3g} at {index} (actual {float(a.flatten()[worst]):.8g}, "
            f"expected {float(e.flatten()[worst]):.8g}) is {relative:.3g} of the scale {scale:.3g}; "
            f"the bound is {bound:.3g} (floor {floor:g} × safety {SAFETY:g}, tests/helpers/tolerance.py)"
        )
    return relative


def assert_identical(actual: torch.Tensor, expected: torch.Tensor, what: str = "scores") -> None:
    """Assert bit-for-bit equality, NaN included: only for the very same operations on the very same
    shapes (a repeat call, the same call spelled another way, a save/load round trip).

    Example:
        >>> assert_identical(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]))
    """
    assert actual.shape == expected.shape, f"{what}: shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    nan_a, nan_e = actual.isnan(), expected.isnan()
    same = torch.equal(nan_a, nan_e) and torch.equal(actual.masked_fill(nan_a, 0), expected.masked_fill(nan_e, 0))
    if not same:
        diff = (actual - expected).abs().nan_to_num(0)
        raise AssertionError(f"{what}: not bit-identical (largest difference {float(diff.max()):.3g})")


def assert_same_sequence(
    actual: Any, expected: Any, *, floor: float, what: str = "", step_scores: list[str] | None = None
) -> None:
    """Compare two ``SequenceAttribution``\\ s computed through other shapes: the scores to their scale,
    every step score to its own scale or, if larger, the largest row sum of |scores| (a step score
    such as ``completeness_error`` is Σ scores − Δf: it rounds at the scale of that sum).
    ``step_scores`` names the step scores to compare (default: all, and both must have the same)."""
    prefix = f"{what}: " if what else ""
    assert_close_to_scale(actual.scores, expected.scores, floor=floor, what=f"{prefix}scores")
    if step_scores is None:
        assert actual.step_scores.keys() == expected.step_scores.keys(), f"{prefix}other step scores"
    sums = expected.scores.detach().double().nan_to_num(0).abs().sum(-1)
    row_sum = float(sums.max()) if sums.numel() else 0.0
    for name in expected.step_scores if step_scores is None else step_scores:
        values = expected.step_scores[name]
        own = float(values.detach().double().nan_to_num(0, 0, 0).abs().max()) if values.numel() else 0.0
        scale = max(own, row_sum) or None
        assert_close_to_scale(actual.step_scores[name], values, floor=floor, what=f"{prefix}{name}", scale=scale)


def assert_same_resumed(actual: Any, expected: Any, *, floor: float = TINY_MODEL) -> None:
    """A resumed run against one run start to finish: the same records and tokens exactly, the numbers
    through :func:`assert_same_sequence` (the rows left after an interruption are planned into chunks
    of their own, so they may run through other shapes than in the uninterrupted run)."""
    actual, expected = list(actual), list(expected)
    assert len(actual) == len(expected), f"{len(actual)} sequences against {len(expected)}"
    for i, (a, b) in enumerate(zip(actual, expected)):
        assert a.tokens == b.tokens, f"sequence {i}: other tokens"
        assert_same_sequence(a, b, floor=floor, what=f"sequence {i}")
