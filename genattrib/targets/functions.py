"""What is explained: functions of the next-token logits at a target position.

Each function maps a :class:`TargetContext` (logits at the position that predicts the target,
the target ids and optional contrast ids) to one value per row. The same functions serve as
attributed functions (differentiated by gradient methods) and as step scores.

Example:
    >>> import torch
    >>> ctx = TargetContext(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    >>> round(float(BUILTIN_TARGETS["probability"](ctx)), 4)
    0.7311
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from jaxtyping import Float, Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError


@dataclass(frozen=True)
class TargetContext:
    """Inputs of a target function (one row per explained target)."""

    logits: Float[Tensor, "row vocab"]
    target_ids: Int[Tensor, " row"]
    contrast_ids: Int[Tensor, " row"] | None = None


@dataclass(frozen=True)
class TargetFunction:
    """A named target function and what it needs."""

    name: str
    fn: Callable[[TargetContext], Float[Tensor, " row"]]
    description: str = ""
    differentiable: bool = True
    needs_contrast: bool = False

    def __call__(self, ctx: TargetContext) -> Float[Tensor, " row"]:
        if self.needs_contrast and ctx.contrast_ids is None:
            raise InvalidArgumentError(
                "contrast_target", f"target {self.name!r} compares with a contrast token but none was given",
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
            TargetFunction("logprob", logprob, "log-probability of the target token (default)"),
            TargetFunction("probability", probability, "probability of the target token"),
            TargetFunction("logit", logit, "raw logit of the target token"),
            TargetFunction("entropy", entropy, "entropy of the next-token distribution"),
            TargetFunction("contrast_logprob_diff", contrast_logprob_diff,
                   "log p(target) - log p(contrast token)", needs_contrast=True),
            TargetFunction("contrast_prob_diff", contrast_prob_diff,
                   "p(target) - p(contrast token)", needs_contrast=True),
            TargetFunction("rank", rank, "rank of the target token (0 = top); not differentiable",
                   differentiable=False),
        )
    }
)
