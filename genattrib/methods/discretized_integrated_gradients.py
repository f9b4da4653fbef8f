"""Discretized integrated gradients (DIG; Sanyal & Ren, EMNLP 2021).

Each token walks from its own embedding towards the baseline through ``n_anchors`` real
vocabulary words, each picked among the k nearest neighbours of the previous one (``greedy``:
the candidate closest to its monotonised self; ``maxcount``: the one with most monotone
dimensions). The anchors are monotonised, optionally upscaled, and the gradient is summed along
the resulting path (see :mod:`genattrib.methods.discrete_paths`). The baseline word ``w'`` is
every vocabulary entry whose embedding equals the baseline vector: the baseline token for token
baselines, normally nothing for ``"zero"`` or tensor baselines (the walk then falls back to the
baseline vector itself when it runs out of candidates).

Example:
    >>> out = model.attribute("The capital of France is", method="discretized_integrated_gradients",
    ...                       n_anchors=30, strategy="greedy", max_new_tokens=2)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.engine.forward import ModelForward
from genattrib.errors import InvalidArgumentError
from genattrib.methods.discrete_paths import DiscretePathAttributor, DiscretePathParams
from genattrib.methods.embedding_neighbours import KnnCache
from genattrib.methods.monotonic_paths import choose_anchor
from genattrib.methods.registration import register_method
from genattrib.validation import check_positive_int


@dataclass
class DIGParams(DiscretePathParams):
    n_neighbors: int = 500  # the authors' knn.py (Inseq: 50)
    cache_dir: Any = None  # None: cache_root()/"knn"; False: memory only; or a folder

    def validate(self) -> None:
        super().validate()
        check_positive_int("n_neighbors", self.n_neighbors, "n_neighbors=1")
        if (
            self.cache_dir is not None
            and self.cache_dir is not False
            and not isinstance(self.cache_dir, (str, os.PathLike))
        ):
            raise InvalidArgumentError(
                "cache_dir",
                f"cannot use {self.cache_dir!r}",
                "pass a folder, None (default cache) or False (no disk cache)",
            )
        if isinstance(self.cache_dir, os.PathLike):
            self.cache_dir = os.fspath(self.cache_dir)


def knn_anchor_search(
    words: Int[Tensor, " word"],
    inputs: Float[Tensor, "word hidden"],
    base: Float[Tensor, "word hidden"],
    vocab: Float[Tensor, "vocab hidden"],
    neighbours: Int[Tensor, "vocab k"],
    m: int,
    strategy: str,
) -> Float[Tensor, "word anchor hidden"]:
    """DIG's anchor search for every word at once: ``m`` anchors ordered from the word towards
    the baseline. Candidates are the neighbours of the last chosen word minus baseline words and
    words already on the path; with none left the baseline is chosen, and stays chosen."""
    n_words = int(words.shape[0])
    done = (inputs == base).all(-1)
    last_id, last_vec = words.clone(), inputs.clone()
    chosen = torch.full((n_words, m + 1), -1, dtype=torch.long, device=vocab.device)
    chosen[:, 0] = words
    anchors = torch.empty(n_words, m, inputs.shape[-1], dtype=torch.float32, device=vocab.device)
    for j in range(m):
        # first minimum: ties go to the nearest neighbour; once the baseline is chosen it stays
        found, ids, vecs = choose_anchor(neighbours[last_id], vocab, last_vec, base, chosen, m, strategy, ~done)
        last_vec = torch.where(found.unsqueeze(-1), vecs, base)
        chosen[:, j + 1] = torch.where(found, ids, -1)
        last_id = torch.where(found, ids, last_id)
        done = done | ~found
        anchors[:, j] = last_vec
    return anchors


@register_method
class DiscretizedIntegratedGradients(DiscretePathAttributor):
    name = "discretized_integrated_gradients"
    description = "DIG: gradients summed along monotone paths through nearest-neighbour words (k-NN graph cached)"
    Params = DIGParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.knn = KnnCache(self.params.cache_dir)

    def search_anchors(
        self,
        words: Int[Tensor, " word"],
        inputs: Float[Tensor, "word hidden"],
        base: Float[Tensor, "word hidden"],
        vocab: Float[Tensor, "vocab hidden"],
        forward: ModelForward,
    ) -> Float[Tensor, "word anchor hidden"]:
        p: DIGParams = self.params
        name = str(getattr(forward.config, "_name_or_path", "") or type(forward.model).__name__)
        graph = self.knn.get(vocab, p.n_neighbors, name)
        return knn_anchor_search(words, inputs, base, vocab, graph.indices, p.n_anchors, p.strategy)
