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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from jaxtyping import Float, Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.targets.merge_rules import STEP_RULES


@dataclass(frozen=True)
class TargetContext:
    """Inputs of a target function (one row per explained target).

    ``contrast_ids`` are the contrast tokens (``contrast_target=``, or the aligned tokens of
    ``contrast_continuation=``); ``contrast_logits`` the next-token logits under the contrast input
    (``contrast_prompt=``/``contrast_continuation=``) at the aligned position, ``None`` when the
    contrast shares the real input; ``noisy_logits`` the logits of MC-dropout passes
    (``mc_dropout_prob_avg``).
    """

    logits: Float[Tensor, "row vocab"]
    target_ids: Int[Tensor, " row"]
    contrast_ids: Int[Tensor, " row"] | None = None
    contrast_logits: Float[Tensor, "row vocab"] | None = None
    noisy_logits: Float[Tensor, "sample row vocab"] | None = None

    @property
    def contrast_side(self) -> tuple[Float[Tensor, "row vocab"], Int[Tensor, " row"]]:
        """(the logits the contrast is read from, the contrast token of each row): the contrast
        input's logits when there is one (else the real ones), the contrast tokens when given
        (else the targets), as Inseq's contrastive step functions read them."""
        logits = self.logits if self.contrast_logits is None else self.contrast_logits.to(self.logits.device)
        ids = self.target_ids if self.contrast_ids is None else self.contrast_ids
        return logits, ids


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
    noisy_passes: int = 0  # forward passes with dropout on it reads (``ctx.noisy_logits``): step score only

    def __post_init__(self) -> None:
        if self.merge not in STEP_RULES:
            raise UnknownNameError("merge", self.merge, STEP_RULES)

    def __call__(self, ctx: TargetContext) -> Float[Tensor, " row"]:
        if self.needs_contrast and ctx.contrast_ids is None and ctx.contrast_logits is None:
            raise InvalidArgumentError(
                "contrast_target",
                f"target {self.name!r} compares with a contrast but none was given",
                "pass contrast_target='an alternative continuation', or contrast_prompt='the prompt without its "
                "context' (contrast_continuation= for another continuation)",
            )
        if self.noisy_passes and ctx.noisy_logits is None:
            raise InvalidArgumentError(
                "attributed_fn",
                f"target {self.name!r} reads {self.noisy_passes} MC-dropout forward passes, which only step scores run",
                f"pass step_scores=[{self.name!r}] and attribute another function (e.g. 'probability')",
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
    """log p(target) − log p'(contrast) (p': under the contrast input, if any)."""
    c_logits, c_ids = ctx.contrast_side
    return logprob(ctx) - _gather(c_logits.float().log_softmax(-1), c_ids)


def contrast_prob_diff(ctx: TargetContext) -> Float[Tensor, " row"]:
    """p(target) − p'(contrast) (p': under the contrast input, if any)."""
    c_logits, c_ids = ctx.contrast_side
    return probability(ctx) - _gather(c_logits.float().softmax(-1), c_ids)


def rank(ctx: TargetContext) -> Float[Tensor, " row"]:
    """Rank of the target among all tokens (0 = most likely); not differentiable."""
    target_logit = _gather(ctx.logits.float(), ctx.target_ids)
    return (ctx.logits.float() > target_logit.unsqueeze(-1)).sum(-1).float()


def crossentropy(ctx: TargetContext) -> Float[Tensor, " row"]:
    """Cross-entropy of the target (nats): −log p(target), Inseq's ``crossentropy``."""
    return -logprob(ctx)


def perplexity(ctx: TargetContext) -> Float[Tensor, " row"]:
    """2 ** crossentropy, Inseq's ``perplexity`` (base 2 over a cross-entropy in nats, as Inseq)."""
    return 2.0 ** crossentropy(ctx)


def contrast_logits(ctx: TargetContext) -> Float[Tensor, " row"]:
    """logit'(contrast): the contrast token's logit under the contrast input."""
    c_logits, c_ids = ctx.contrast_side
    return _gather(c_logits.float(), c_ids)


def contrast_prob(ctx: TargetContext) -> Float[Tensor, " row"]:
    """p'(contrast): the contrast token's probability under the contrast input."""
    c_logits, c_ids = ctx.contrast_side
    return _gather(c_logits.float().softmax(-1), c_ids)


def contrast_logits_diff(ctx: TargetContext) -> Float[Tensor, " row"]:
    """logit(target) − logit'(contrast)."""
    return logit(ctx) - contrast_logits(ctx)


def pcxmi(ctx: TargetContext) -> Float[Tensor, " row"]:
    """P-CXMI: −log2(p(target) / p'(contrast)) (Yin et al., 2021), in bits."""
    c_logits, c_ids = ctx.contrast_side
    return -(logprob(ctx) - _gather(c_logits.float().log_softmax(-1), c_ids)) / math.log(2.0)


def kl_divergence(ctx: TargetContext) -> Float[Tensor, " row"]:
    """KL(P ‖ P') = Σ_v P(v) (log P(v) − log P'(v)), P under the real input, P' under the contrast one (nats)."""
    logp = ctx.logits.float().log_softmax(-1)
    logq = ctx.contrast_side[0].float().log_softmax(-1)
    return (logp.exp() * (logp - logq)).nan_to_num(0.0).sum(-1)


def in_context_pvi(ctx: TargetContext) -> Float[Tensor, " row"]:
    """In-context PVI (Lu et al., 2023): −log p(target) + log p'(contrast) (nats)."""
    c_logits, c_ids = ctx.contrast_side
    return -logprob(ctx) + _gather(c_logits.float().log_softmax(-1), c_ids)


def mc_dropout_prob_avg(ctx: TargetContext) -> Float[Tensor, " row"]:
    """(p(target) − mean_s p_s(target)) / std_s p_s(target) over the dropout passes s (Inseq's z-score)."""
    assert ctx.noisy_logits is not None
    noisy = ctx.noisy_logits.float().softmax(-1).to(ctx.logits.device)
    ids = ctx.target_ids.to(noisy.device).long()
    p_noisy = noisy.gather(-1, ids.view(1, -1, 1).expand(noisy.shape[0], -1, 1)).squeeze(-1)
    return (probability(ctx) - p_noisy.mean(0)) / p_noisy.std(0)


def top_p_size_of(top_p: float) -> Callable[[TargetContext], Float[Tensor, " row"]]:
    """The number of tokens in the smallest set whose probability reaches ``top_p`` (the nucleus,
    as Hugging Face's top-p filter keeps it; Inseq's ``top_p_size``).

    Example:
        >>> import torch
        >>> float(top_p_size_of(0.5)(TargetContext(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0])))[0])
        1.0
    """
    if not 0.0 <= float(top_p) <= 1.0:
        raise InvalidArgumentError("top_p", f"top_p={top_p} is outside [0, 1]", "pass e.g. top_p=0.9")

    def top_p_size(ctx: TargetContext) -> Float[Tensor, " row"]:
        probs = ctx.logits.float().softmax(-1).sort(-1).values  # ascending, as the Hugging Face filter
        removed = probs.cumsum(-1) <= 1.0 - float(top_p)
        removed[..., -1] = False  # at least one token is kept
        return (~removed).sum(-1).float()

    return top_p_size


#: Inseq's default nucleus for ``top_p_size`` (Inseq needs ``top_p=`` passed; genattrib names a default).
DEFAULT_TOP_P = 0.9

INSEQ_STEP_TARGETS = (
    TargetFunction("crossentropy", crossentropy, "cross-entropy -log p(target) (nats)", merge="sum"),
    TargetFunction("perplexity", perplexity, "2 ** crossentropy (Inseq's definition)", merge="product"),
    TargetFunction(
        "contrast_logits", contrast_logits, "logit of the contrast token under the contrast input", needs_contrast=True
    ),
    TargetFunction(
        "contrast_prob",
        contrast_prob,
        "probability of the contrast token under the contrast input",
        needs_contrast=True,
        merge="product",
    ),
    TargetFunction(
        "contrast_logits_diff", contrast_logits_diff, "logit(target) - contrast_logits", needs_contrast=True
    ),
    TargetFunction("pcxmi", pcxmi, "P-CXMI -log2(p(target) / p'(contrast)) (bits)", needs_contrast=True),
    TargetFunction(
        "kl_divergence", kl_divergence, "KL(P || P') of the real and contrast predictions (nats)", needs_contrast=True
    ),
    TargetFunction(
        "in_context_pvi", in_context_pvi, "in-context PVI -log p(target) + log p'(contrast)", needs_contrast=True
    ),
    TargetFunction(
        "mc_dropout_prob_avg",
        mc_dropout_prob_avg,
        "z-score of p(target) among 5 seeded MC-dropout passes (step score only)",
        differentiable=False,
        merge="none",
        noisy_passes=5,
    ),
    TargetFunction(
        "top_p_size",
        top_p_size_of(DEFAULT_TOP_P),
        f"tokens in the top-p nucleus (top_p={DEFAULT_TOP_P}); not differentiable",
        differentiable=False,
        merge="none",
    ),
)

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
                "log p(target) - log p(contrast token), the contrast under the contrast input if any",
                needs_contrast=True,
                merge="sum",
            ),
            TargetFunction(
                "contrast_prob_diff",
                contrast_prob_diff,
                "p(target) - p(contrast token), the contrast under the contrast input if any",
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
            *INSEQ_STEP_TARGETS,
        )
    }
)
