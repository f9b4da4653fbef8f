"""What is explained: functions of the next-token logits at a target position.

Each function maps a :class:`TargetContext` (logits at the position that predicts the target,
the target ids and optional contrast ids) to one value per row. The same functions serve as
attributed functions (differentiated by gradient methods) and as step scores; ``merge`` says how
the step score of several generated tokens combines when aggregation merges them into a word,
span or sentence (a rule of :data:`~genattrib.targets.merge_rules.STEP_RULES`).

Example:
    >>> import torch
    >>> ctx = TargetContext(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    >>> round(float(BUILTIN_TARGETS["probability"](ctx)), 4)
    0.7311
    >>> BUILTIN_TARGETS["probability"].merge, BUILTIN_TARGETS["logprob"].merge
    ('product', 'sum')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from jaxtyping import Float, Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.targets.merge_rules import STEP_RULES


@dataclass(frozen=True)
class TargetContext:
    """Inputs of a target function (one row per explained target)."""

    logits: Float[Tensor, "row vocab"]
    target_ids: Int[Tensor, " row"]
    contrast_ids: Int[Tensor, " row"] | None = None


@dataclass(frozen=True)
class TargetFunction:
    """A named target function, what it needs, and how its step score merges (``merge``).

    Example:
        >>> TargetFunction("top", lambda ctx: ctx.logits.amax(-1), merge="mean").merge
        'mean'
    """

    name: str
    fn: Callable[[TargetContext], Float[Tensor, " row"]]
    description: str = ""
    differentiable: bool = True
    needs_contrast: bool = False
    merge: str = "sum"  # how its step score merges over several generated tokens (STEP_RULES)

    def __post_init__(self) -> None:
        if self.merge not in STEP_RULES:
            raise UnknownNameError("merge", self.merge, STEP_RULES)

    def __call__(self, ctx: TargetContext) -> Float[Tensor, " row"]:
        if self.needs_contrast and ctx.contrast_ids is None:
            raise InvalidArgumentError(
                "contrast_target",
                f"target {self.name!r} compares with a contrast token but none was given",
                "pass contrast_target='an alternative continuation'",
            )
        return self.fn(ctx)


def _gather(values: Float[Tensor, "row vocab"], ids: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
    return values.gather(-1, ids.to(values.device).long().unsqueeze(-1)).squeeze(-1)


def logprob(ctx: TargetContext) -> Float[Tensor, " row"]:
    """log p(target | prefix)."""
    return _gather(ctx.logits.float().log_softmax(-1), ctx.target_ids)


def probability(ctx: TargetContext) -> Float[Tensor, " row"]:
    """p(target | prefix)."""
    return _gather(ctx.logits.float().softmax(-1), ctx.target_ids)


def logit(ctx: TargetContext) -> Float[Tensor, " row"]:
    """Raw logit of the target token."""
    return _gather(ctx.logits.float(), ctx.target_ids)


def entropy(ctx: TargetContext) -> Float[Tensor, " row"]:
    """Entropy (nats) of the next-token distribution (independent of the target)."""
    logp = ctx.logits.float().log_softmax(-1)
    return -(logp.exp() * logp).nan_to_num(0.0).sum(-1)


def contrast_logprob_diff(ctx: TargetContext) -> Float[Tensor, " row"]:
    """log p(target) − log p(contrast)."""
    logp = ctx.logits.float().log_softmax(-1)
    assert ctx.contrast_ids is not None
    return _gather(logp, ctx.target_ids) - _gather(logp, ctx.contrast_ids)


def contrast_prob_diff(ctx: TargetContext) -> Float[Tensor, " row"]:
    """p(target) − p(contrast)."""
    p = ctx.logits.float().softmax(-1)
    assert ctx.contrast_ids is not None
    return _gather(p, ctx.target_ids) - _gather(p, ctx.contrast_ids)


def rank(ctx: TargetContext) -> Float[Tensor, " row"]:
    """Rank of the target among all tokens (0 = most likely); not differentiable."""
    target_logit = _gather(ctx.logits.float(), ctx.target_ids)
    return (ctx.logits.float() > target_logit.unsqueeze(-1)).sum(-1).float()


BUILTIN_TARGETS: Mapping[str, TargetFunction] = MappingProxyType(
    {
        t.name: t
        for t in (
            # log p(word) = sum of the sub-token log-probabilities
            TargetFunction("logprob", logprob, "log-probability of the target token (default)", merge="sum"),
            # p(word) = product of the sub-token probabilities
            TargetFunction("probability", probability, "probability of the target token", merge="product"),
            # matches rows that add up (attribution of the sum of F)
            TargetFunction("logit", logit, "raw logit of the target token", merge="sum"),
            # chain rule along the generated path
            TargetFunction("entropy", entropy, "entropy of the next-token distribution", merge="sum"),
            # differences of summed log-probabilities / of rows that add up
            TargetFunction(
                "contrast_logprob_diff",
                contrast_logprob_diff,
                "log p(target) - log p(contrast token)",
                needs_contrast=True,
                merge="sum",
            ),
            TargetFunction(
                "contrast_prob_diff",
                contrast_prob_diff,
                "p(target) - p(contrast token)",
                needs_contrast=True,
                merge="sum",
            ),
            # the worst rank of any sub-token
            TargetFunction(
                "rank",
                rank,
                "rank of the target token (0 = top); not differentiable",
                differentiable=False,
                merge="max",
            ),
        )
    }
)
