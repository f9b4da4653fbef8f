"""Forward-only scoring of perturbed token rows for ReAGent: target probability, whether the
target is in the model's top-k, and optionally a distance to a reference distribution.

Example:
    >>> ids = out.sequences[0].input_ids[None]          # 1 row: "The capital of France is Paris."
    >>> p, top, dist = score_rows(ModelForward(hf_model), ids, torch.tensor([6]), ids[:, 6], top_k=3)
    >>> p.shape, top.dtype, dist.tolist()                # p(' Par' | prefix); no reference: distance 0
    (torch.Size([1]), torch.bool, [0.0])
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.forward import ModelForward


def total_variation(p: Float[Tensor, "row vocab"], q: Float[Tensor, "row vocab"]) -> Float[Tensor, " row"]:
    """Half the L1 distance between distributions (in [0, 1])."""
    return 0.5 * (p - q).abs().sum(-1)


def score_rows(
    forward: ModelForward,
    ids: Int[Tensor, "row position"],
    positions: Int[Tensor, " row"],
    target_ids: Int[Tensor, " row"],
    top_k: int,
    reference: Float[Tensor, "ref vocab"] | None = None,
    reference_index: Int[Tensor, " row"] | None = None,
) -> tuple[Float[Tensor, " row"], Bool[Tensor, " row"], Float[Tensor, " row"]]:
    """For each row: p(target | prefix), target in top-``top_k``, and the total variation to
    ``reference[reference_index]`` (zeros when no reference). Results are on the CPU."""
    n, length = int(ids.shape[0]), int(ids.shape[1])
    prob = torch.zeros(n, dtype=torch.float32)
    in_top = torch.zeros(n, dtype=torch.bool)
    dist = torch.zeros(n, dtype=torch.float32)

    def run(chunk: slice) -> None:
        probs = _next_token_distributions(forward, ids[chunk], positions[chunk])
        tgt = target_ids[chunk].to(probs.device).unsqueeze(-1)
        prob[chunk] = probs.gather(-1, tgt).squeeze(-1).cpu()
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1).indices
        in_top[chunk] = (top == tgt).any(-1).cpu()
        if reference is not None and reference_index is not None:
            ref = reference[reference_index[chunk].to(reference.device)].to(probs.device)
            dist[chunk] = total_variation(probs, ref).cpu()

    forward.run_chunked(n, length, run, grad=False)
    return prob, in_top, dist


def _next_token_distributions(
    forward: ModelForward, ids: Int[Tensor, "row position"], positions: Int[Tensor, " row"]
) -> Float[Tensor, "row vocab"]:
    embeds = forward.embed(ids)
    logits = forward.logits_at(embeds, positions.unsqueeze(-1).to(embeds.device)).squeeze(1)
    return logits.float().softmax(-1)


def distributions(
    forward: ModelForward, ids: Int[Tensor, "row position"], positions: Int[Tensor, " row"]
) -> Float[Tensor, "row vocab"]:
    """Next-token distributions at ``positions`` (used as references), on the head's device."""
    parts: list[Tensor] = []

    def run(chunk: slice) -> None:
        parts.append(_next_token_distributions(forward, ids[chunk], positions[chunk]))

    forward.run_chunked(int(ids.shape[0]), int(ids.shape[1]), run, grad=False)
    return torch.cat(parts)
