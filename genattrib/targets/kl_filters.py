"""``kl_divergence`` with Inseq's ``top_k`` / ``top_p`` filters: the KL between the real and the
contrast predictions over the tokens a nucleus and a top-k filter keep.

As Inseq 0.7.1 (its "merged" strategy), the filters rank the tokens by the *sum* of the real and
the contrast logits: first the top-p nucleus of that sum (the smallest set of tokens whose softmax
mass reaches ``top_p``, at least ``min_tokens_to_keep``), then, among those, the ``top_k`` largest
sums (at least ``min_tokens_to_keep``). Both distributions are renormalised over the kept tokens,
and KL(P ‖ P') is summed over them (a removed token adds 0).

Example:
    >>> import torch
    >>> from genattrib.targets import TargetContext
    >>> kl = kl_divergence_of(top_k=1)
    >>> ctx = TargetContext(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0]), torch.tensor([0]),
    ...                     torch.tensor([[1.0, 0.5, 0.0]]))
    >>> float(kl.fn(ctx)[0])  # one token kept: both distributions are 1 on it
    0.0
    >>> kl_divergence_of() is BUILTIN_TARGETS["kl_divergence"]  # no filter: the step function itself
    True
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.targets.functions import BUILTIN_TARGETS, TargetContext, TargetFunction


def kept_tokens(
    scores: Float[Tensor, "row vocab"], top_k: int, top_p: float, min_tokens_to_keep: int
) -> Bool[Tensor, "row vocab"]:
    """The tokens the top-p filter, then the top-k filter keep, ranked by ``scores`` (see the module)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if top_p < 1.0:
        ordered, order = scores.sort(-1)  # ascending, as Hugging Face's top-p filter
        removed = ordered.softmax(-1).cumsum(-1) <= 1.0 - top_p
        removed[..., -min_tokens_to_keep:] = False
        keep = ~removed.scatter(-1, order, removed)
    if top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), scores.shape[-1])
        filtered = scores.masked_fill(~keep, float("-inf"))
        keep = keep & (filtered >= filtered.topk(k, -1).values[..., -1:])
    return keep


def kl_divergence_of(top_k: int = 0, top_p: float = 1.0, min_tokens_to_keep: int = 1) -> TargetFunction:
    """Inseq's ``kl_divergence`` with its ``top_k``/``top_p``/``min_tokens_to_keep`` arguments, as a
    step score or attributed function: ``step_scores={"kl_divergence": kl_divergence_of(top_k=20)}``.
    Without a filter it is the built-in ``kl_divergence``."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise InvalidArgumentError("top_k", f"top_k={top_k!r} is not an int >= 0", "pass e.g. top_k=20 (0: no filter)")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < float(top_p) <= 1.0:
        raise InvalidArgumentError("top_p", f"top_p={top_p!r} is outside (0, 1]", "pass e.g. top_p=0.9 (1: no filter)")
    if isinstance(min_tokens_to_keep, bool) or not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise InvalidArgumentError(
            "min_tokens_to_keep", f"min_tokens_to_keep={min_tokens_to_keep!r} is not an int >= 1", "pass e.g. 1"
        )
    builtin = BUILTIN_TARGETS["kl_divergence"]
    if top_k == 0 and float(top_p) == 1.0:
        return builtin

    def kl_divergence(ctx: TargetContext) -> Float[Tensor, " row"]:
        p, q = ctx.logits.float(), ctx.contrast_side[0].float()
        keep = kept_tokens((p + q).detach(), top_k, float(top_p), min_tokens_to_keep)
        logp = p.masked_fill(~keep, float("-inf")).log_softmax(-1)
        logq = q.masked_fill(~keep, float("-inf")).log_softmax(-1)
        return (logp.exp() * (logp - logq)).masked_fill(~keep, 0.0).sum(-1)

    about = f"{builtin.description}, over the tokens kept by top_k={top_k}, top_p={top_p}"
    return dataclasses.replace(builtin, fn=kl_divergence, description=about)
