"""Reduce contiguous runs of a tensor's rows or columns, and the per-score rules for step scores.

Runs are ``(start, stop)`` index pairs along one dimension. NaN propagates: a run that holds a
NaN reduces to NaN (this is what keeps the NaN pattern of merged scores).

Each step score declares its rule where it is made (``TargetFunction.merge``, a method's
``MethodTraits.step_score_merge``) and the result records them (``provenance.step_score_rules``).
The rule used for a score is the first of: the user's ``step_rules`` overrides, the recorded
rule, :data:`STEP_SCORE_RULES` (the fallback for results saved before rules were recorded),
``"sum"``.

Example:
    >>> import torch
    >>> reduce_runs(torch.tensor([[1.0, 2.0, 3.0]]), [(0, 2), (2, 3)], dim=1, how="sum").tolist()
    [[3.0, 3.0]]
    >>> step_rule("probability"), step_rule("my_score"), step_rule("my_score", recorded={"my_score": "none"})
    ('product', 'sum', 'none')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.errors import UnknownNameError
from genattrib.targets.merge_rules import STEP_RULES

__all__ = ["MERGE_RULES", "STEP_RULES", "STEP_SCORE_RULES", "merge_step_scores", "reduce_runs", "step_rule"]


def _absmax(t: Tensor, dim: int) -> Tensor:
    """The value of largest magnitude (sign kept); NaN if the run holds a NaN."""
    return t.gather(dim, t.abs().argmax(dim, keepdim=True)).squeeze(dim)


#: How merged positions combine (source axis) and how merged rows combine (target axis).
MERGE_RULES: Mapping[str, Callable[[Tensor, int], Tensor]] = MappingProxyType(
    {
        "sum": lambda t, dim: t.sum(dim),
        "mean": lambda t, dim: t.mean(dim),
        "max": lambda t, dim: t.amax(dim),
        "absmax": _absmax,
    }
)

#: Fallback rule per step-score name, for results that record no rule for a score (files saved
#: before ``provenance.step_score_rules`` existed, hand-built results); other names use ``"sum"``.
#: New scores declare their rule at the source instead: ``TargetFunction(merge=...)``,
#: ``AttributionModel.register_target(..., merge=...)``, ``MethodTraits.step_score_merge``.
STEP_SCORE_RULES: Mapping[str, str] = MappingProxyType(
    {
        "probability": "product",  # p(word) = product of the sub-token probabilities
        "logprob": "sum",  # log p(word) = sum of the sub-token log-probabilities
        "logit": "sum",  # matches rows that add up (attribution of the sum of F)
        "entropy": "sum",  # chain rule along the generated path
        "rank": "max",  # the worst rank of any sub-token
        "completeness_error": "sum",  # errors of summed rows add up
        "baseline_value": "sum",  # F at the baseline, summed like F
        "contrast_logprob_diff": "sum",
        "contrast_prob_diff": "sum",
        "perplexity": "product",  # 2 ** (sum of the cross-entropies)
        "contrast_prob": "product",  # like probability
        "mc_dropout_prob_avg": "none",  # a z-score: does not merge
        "top_p_size": "none",  # a count per step: does not merge
    }
)


def step_rule(name: str, overrides: Mapping[str, str] | None = None, recorded: Mapping[str, str] | None = None) -> str:
    """The rule that merges step score ``name``: ``overrides`` first, then the ``recorded`` rules
    (a result's ``provenance.step_score_rules``), then :data:`STEP_SCORE_RULES`, else ``"sum"``.

    Example:
        >>> step_rule("lime_score", recorded={"lime_score": "none"}), step_rule("rank", {"rank": "min"})
        ('none', 'min')
    """
    for rules in (overrides, recorded, STEP_SCORE_RULES):
        if rules and name in rules:
            return rules[name]
    return "sum"


def reduce_runs(values: Float[Tensor, ...], runs: Sequence[tuple[int, int]], dim: int, how: str) -> Float[Tensor, ...]:
    """Reduce each run ``values[..., start:stop, ...]`` along ``dim`` with :data:`MERGE_RULES` ``how``.

    Example:
        >>> reduce_runs(torch.tensor([1.0, float("nan"), 2.0]), [(0, 2), (2, 3)], 0, "max").tolist()
        [nan, 2.0]
    """
    if all(stop - start == 1 for start, stop in runs) and len(runs) == values.shape[dim]:
        return values.clone()
    if not runs:
        return values.narrow(dim, 0, 0).clone()
    rule = MERGE_RULES[how]
    return torch.stack([rule(values.narrow(dim, start, stop - start), dim) for start, stop in runs], dim)


def merge_step_scores(
    step_scores: Mapping[str, Float[Tensor, " generated"]],
    runs: Sequence[tuple[int, int]],
    overrides: Mapping[str, str] | None = None,
    recorded: Mapping[str, str] | None = None,
) -> dict[str, Tensor]:
    """Merge every step score over ``runs`` of rows with its rule (see :func:`step_rule`).

    Example:
        >>> merge_step_scores({"probability": torch.tensor([0.5, 0.5])}, [(0, 2)])["probability"].tolist()
        [0.25]
        >>> fit = {"fit": torch.tensor([0.5, 0.75, 0.25])}
        >>> merge_step_scores(fit, [(0, 2), (2, 3)], recorded={"fit": "none"})["fit"].tolist()
        [nan, 0.25]
    """
    merged = {}
    for name, values in step_scores.items():
        how = step_rule(name, overrides, recorded)
        if how not in STEP_RULES:
            raise UnknownNameError(f"the merge rule of step score {name!r}", how, STEP_RULES)
        rule = STEP_RULES[how]
        if all(stop - start == 1 for start, stop in runs) and len(runs) == values.shape[0]:
            merged[name] = values.clone()
        elif not runs:
            merged[name] = values[:0].clone()
        else:
            merged[name] = torch.stack([rule(values[start:stop]) for start, stop in runs])
    return merged
