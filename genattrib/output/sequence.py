"""One attributed sequence: its tokens, score matrix and step scores.

Example:
    >>> seq = out.sequences[0]
    >>> seq.tokens
    ['The', ' capital', ' of', ' Fr', 'ance', ' is', ' Par', 'is', '.']
    >>> seq.scores.shape                            # (generated steps, source positions)
    torch.Size([3, 9])
    >>> seq.scores[0, seq.prompt_length:]           # NaN: positions at/after the first target
    tensor([nan, nan, nan])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass
class SequenceAttribution:
    """Scores for every explained generated token of one sequence.

    ``scores[j, i]`` is how much source position ``i`` contributed to the generated token at
    position ``prompt_length + step_start + j``. Positions at or after that token are NaN.
    """

    input_ids: Int[Tensor, " position"]
    tokens: list[str]
    prompt_length: int
    scores: Float[Tensor, "generated position"]
    step_scores: dict[str, Float[Tensor, " generated"]] = field(default_factory=dict)
    special_mask: Bool[Tensor, " position"] | None = None
    granular_scores: Float[Tensor, "generated position hidden"] | None = None
    step_start: int = 0
    generated_text: str = ""
    token_roles: list[str] | None = None  # chat prompts: message role of each token

    def __post_init__(self) -> None:
        n = int(self.input_ids.shape[0])
        if len(self.tokens) != n:
            raise ValueError(f"{len(self.tokens)} tokens for {n} ids")
        if self.scores.ndim != 2 or self.scores.shape[1] != n:
            raise ValueError(f"scores must be (generated, {n}), got {tuple(self.scores.shape)}")
        if self.special_mask is None:
            self.special_mask = torch.zeros(n, dtype=torch.bool)
        if self.token_roles is not None and len(self.token_roles) != n:
            raise ValueError(f"{len(self.token_roles)} token roles for {n} tokens")

    # --- views -------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """Number of explained generated steps (rows of ``scores``)."""
        return int(self.scores.shape[0])

    @property
    def source_tokens(self) -> list[str]:
        return list(self.tokens)

    @property
    def prompt_tokens(self) -> list[str]:
        return self.tokens[: self.prompt_length]

    @property
    def text(self) -> str:
        """The whole sequence as text (the tokens joined)."""
        return "".join(self.tokens)

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Character span of every token in :attr:`text`."""
        spans, start = [], 0
        for token in self.tokens:
            spans.append((start, start + len(token)))
            start += len(token)
        return spans

    @property
    def generated_tokens(self) -> list[str]:
        return self.tokens[self.prompt_length :]

    @property
    def target_positions(self) -> list[int]:
        """Source position of each explained generated token."""
        first = self.prompt_length + self.step_start
        return list(range(first, first + self.num_steps))

    @property
    def target_tokens(self) -> list[str]:
        return [self.tokens[p] for p in self.target_positions]

    @property
    def target_ids(self) -> Int[Tensor, " generated"]:
        return self.input_ids[self.target_positions]

    def steps(self, start: int | None = None, stop: int | None = None) -> SequenceAttribution:
        """Keep only explained steps ``start:stop`` (indices into the rows of ``scores``)."""
        rows = range(self.num_steps)[slice(start, stop)]
        first = rows.start if len(rows) else 0
        sel = slice(rows.start, rows.stop)
        return replace(
            self,
            scores=self.scores[sel].clone(),
            granular_scores=None if self.granular_scores is None else self.granular_scores[sel].clone(),
            step_scores={k: v[sel].clone() for k, v in self.step_scores.items()},
            step_start=self.step_start + first,
        )

    def equals(self, other: SequenceAttribution) -> bool:
        """Exact equality (NaN equals NaN) of every field."""

        def same(a: Tensor | None, b: Tensor | None) -> bool:
            if a is None or b is None:
                return a is b
            if a.shape != b.shape or a.dtype != b.dtype:
                return False
            if not a.is_floating_point():
                return torch.equal(a, b)
            nan_a, nan_b = a.isnan(), b.isnan()
            return torch.equal(nan_a, nan_b) and torch.equal(a.masked_fill(nan_a, 0), b.masked_fill(nan_b, 0))

        return (
            self.tokens == other.tokens
            and self.token_roles == other.token_roles
            and self.prompt_length == other.prompt_length
            and self.step_start == other.step_start
            and self.generated_text == other.generated_text
            and same(self.input_ids, other.input_ids)
            and same(self.scores, other.scores)
            and same(self.special_mask, other.special_mask)
            and same(self.granular_scores, other.granular_scores)
            and self.step_scores.keys() == other.step_scores.keys()
            and all(same(v, other.step_scores[k]) for k, v in self.step_scores.items())
        )
