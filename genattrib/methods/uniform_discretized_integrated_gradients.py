"""Uniform discretized integrated gradients (UDIG; Sinha Roy & Kundu, arXiv 2412.03886).

DIG with another anchor search: ``n_anchors`` uniform points on the straight line from the
baseline to the token, and for each (from the token side towards the baseline) the ``nbrs``
nearest vocabulary embeddings, minus baseline words and words already chosen (the token
itself included); one is picked by ``greedy`` or ``maxcount`` as in DIG, and when no candidate
is left the uniform point itself becomes the anchor. Then DIG's monotonisation, upscaling and
attribution. Defaults are the reference settings: 30 anchors, 50 neighbours, ``maxcount``,
factor 1 (63 points).

Example:
    >>> method = "uniform_discretized_integrated_gradients"
    >>> out = model.attribute("The capital of France is", method=method, max_new_tokens=2)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.engine.forward import ModelForward
from genattrib.methods.discrete_paths import DiscretePathAttributor, DiscretePathParams
from genattrib.methods.embedding_neighbours import nearest_vocabulary
from genattrib.methods.monotonic_paths import choose_anchor
from genattrib.methods.registration import register_method
from genattrib.validation import check_positive_int


@dataclass
class UDIGParams(DiscretePathParams):
    nbrs: int = 50
    strategy: str = "maxcount"
    factor: int = 1

    def validate(self) -> None:
        super().validate()
        check_positive_int("nbrs", self.nbrs, "nbrs=1")


def uniform_anchor_search(
    words: Int[Tensor, " word"],
    inputs: Float[Tensor, "word hidden"],
    base: Float[Tensor, "word hidden"],
    vocab: Float[Tensor, "vocab hidden"],
    m: int,
    nbrs: int,
    strategy: str,
) -> Float[Tensor, "word anchor hidden"]:
    """UDIG's anchor search for every word at once: ``m`` anchors ordered from the word towards
    the baseline (the nearest-vocabulary search of all points is one batched call)."""
    n_words, hidden = int(words.shape[0]), int(inputs.shape[-1])
    alphas = torch.arange(1, m + 1, device=vocab.device, dtype=torch.float32) / (m + 1)
    uniform = base.unsqueeze(1) + alphas.view(1, m, 1) * (inputs - base).unsqueeze(1)
    near, _ = nearest_vocabulary(uniform.reshape(-1, hidden), vocab, nbrs)
    near = near.view(n_words, m, -1)
    chosen = torch.full((n_words, m + 1), -1, dtype=torch.long, device=vocab.device)
    chosen[:, 0] = words
    anchors = torch.empty(n_words, m, hidden, dtype=torch.float32, device=vocab.device)
    last_vec = inputs
    for step, j in enumerate(range(m - 1, -1, -1)):
        found, ids, vecs = choose_anchor(near[:, j], vocab, last_vec, base, chosen, m, strategy)
        last_vec = torch.where(found.unsqueeze(-1), vecs, uniform[:, j])  # empty: the point itself
        chosen[:, step + 1] = torch.where(found, ids, -1)
        anchors[:, step] = last_vec
    return anchors


@register_method
class UniformDiscretizedIntegratedGradients(DiscretePathAttributor):
    name = "uniform_discretized_integrated_gradients"
    description = "UDIG: DIG with anchors near uniform points of the straight line (maxcount, factor 1)"
    Params = UDIGParams

    def search_anchors(
        self,
        words: Int[Tensor, " word"],
        inputs: Float[Tensor, "word hidden"],
        base: Float[Tensor, "word hidden"],
        vocab: Float[Tensor, "vocab hidden"],
        forward: ModelForward,
    ) -> Float[Tensor, "word anchor hidden"]:
        p: UDIGParams = self.params
        return uniform_anchor_search(words, inputs, base, vocab, p.n_anchors, p.nbrs, p.strategy)
