"""The attributed tokenizer's vocabulary, as perturbation methods need it (they never tokenize).

Example:
    >>> Vocabulary(size=4, special_ids=(0,)).allowed_ids().tolist()
    [1, 2, 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor


@dataclass(frozen=True)
class Vocabulary:
    """What samplers need to know of the attributed tokenizer: its size, special ids, tokens."""

    size: int
    special_ids: tuple[int, ...] = ()
    tokens: tuple[str, ...] = ()

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> Vocabulary:
        size = len(tokenizer)
        special = tuple(sorted({int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}))
        tokens = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(list(range(size))))
        return cls(size, special, tokens)

    def describe(self) -> str:
        return f"vocabulary({self.size} tokens, {len(self.special_ids)} special)"

    def allowed_ids(self) -> Int[Tensor, " allowed"]:
        """Every non-special id."""
        keep = torch.ones(self.size, dtype=torch.bool)
        special = [i for i in self.special_ids if 0 <= i < self.size]
        keep[special] = False
        return keep.nonzero().squeeze(-1)
