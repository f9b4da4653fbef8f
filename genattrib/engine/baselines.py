"""Baselines for embedding-space methods.

A baseline spec is ``"unk" | "pad" | "eos" | "zero" | <token string> | tensor``; the model wrapper
turns token names into ids (methods never tokenize) and the engine turns the result into one
baseline embedding per source position with :func:`baseline_embeddings`.

Example:
    >>> spec = ResolvedBaseline(token_id=0)
    >>> spec.describe()
    'token 0'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from genattrib.devices import execution_device

BASELINE_NAMES = ("unk", "pad", "eos", "zero")


@dataclass(frozen=True)
class ResolvedBaseline:
    """Either a token id, the zero vector, or an explicit embedding tensor."""

    token_id: int | None = None
    zero: bool = False
    tensor: Tensor | None = None

    def describe(self) -> str:
        if self.zero:
            return "zero"
        if self.tensor is not None:
            return f"tensor{tuple(self.tensor.shape)}"
        return f"token {self.token_id}"


def baseline_embeddings(
    baseline: ResolvedBaseline, ids: Int[Tensor, " position"], embedding: nn.Module
) -> Float[Tensor, "position hidden"]:
    """One baseline embedding per position of ``ids``, on the device the embedding computes on (an
    offloaded embedding keeps its weight on ``meta``)."""
    weight, device = embedding.weight, execution_device(embedding)
    length, hidden = int(ids.shape[0]), int(weight.shape[1])
    if baseline.zero:
        return torch.zeros(length, hidden, dtype=weight.dtype, device=device)
    if baseline.tensor is not None:
        t = baseline.tensor.to(device=device, dtype=weight.dtype)
        if t.ndim == 1:
            return t.expand(length, hidden).clone()
        return t[:length].clone()
    with torch.no_grad():
        token = torch.full((length,), int(baseline.token_id), dtype=torch.long, device=device)
        return embedding(token).detach()
