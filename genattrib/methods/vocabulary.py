"""The attributed tokenizer's vocabulary, as perturbation methods need it (they never tokenize).

Example:
    >>> Vocabulary(size=4, special_ids=(0,)).allowed_ids().tolist()
    [1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor


@dataclass(frozen=True)
class Vocabulary:
    """What samplers need to know of the attributed tokenizer: its size, special ids, tokens
    (as stored, e.g. ``Ġcat``) and, through ``decoder``, each token's text alone (``" cat"``)."""

    size: int
    special_ids: tuple[int, ...] = ()
    tokens: tuple[str, ...] = ()
    decoder: Callable[[Sequence[int]], list[str]] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> Vocabulary:
        size = len(tokenizer)
        special = tuple(sorted({int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}))
        tokens = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(list(range(size))))
        return cls(size, special, tokens, lambda ids: tokenizer.batch_decode([[int(i)] for i in ids]))

    def words(self) -> list[str]:
        """Each id decoded alone (the tokenizer's ``decode([id])``; without a decoder, the stored
        token minus the ``Ġ``/``▁`` space markers). Decoding a large vocabulary takes seconds, so it
        happens only when asked.

        Example:
            >>> Vocabulary(size=2, tokens=("Ġcat", "▁dog")).words()
            ['cat', 'dog']
        """
        if self.decoder is not None:
            return [str(w) for w in self.decoder(range(self.size))]
        return [t.lstrip("Ġ▁") or t for t in self.tokens]

    def describe(self) -> str:
        return f"vocabulary({self.size} tokens, {len(self.special_ids)} special)"

    def allowed_ids(self) -> Int[Tensor, " allowed"]:
        """Every non-special id."""
        keep = torch.ones(self.size, dtype=torch.bool)
        special = [i for i in self.special_ids if 0 <= i < self.size]
        keep[special] = False
        return keep.nonzero().squeeze(-1)
