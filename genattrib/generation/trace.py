"""What generation hands to attribution: prompt ids, generated ids, per-step scores.

Example:
    >>> t = GenerationTrace(torch.tensor([1, 2]), torch.tensor([3]))
    >>> t.input_ids.tolist()
    [1, 2, 3]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class GenerationTrace:
    """One sequence: the prompt, the generated (or forced) continuation and step scores."""

    prompt_ids: Int[Tensor, " prompt"]
    generated_ids: Int[Tensor, " generated"]
    step_scores: dict[str, Float[Tensor, " generated"]] = field(default_factory=dict)
    forced: bool = False

    @property
    def input_ids(self) -> Int[Tensor, " position"]:
        return torch.cat([self.prompt_ids, self.generated_ids])

    @property
    def prompt_length(self) -> int:
        return int(self.prompt_ids.shape[0])
