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

    A unit-level result (``attribute(..., explain="sentences")``) sets ``target_spans``: row
    ``j`` then explains the tokens ``target_spans[j] = (start, stop)`` together (their combined
    value, e.g. the sum of their log-probs), and positions at or after ``start`` are NaN.
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
    target_spans: list[tuple[int, int]] | None = None  # unit rows: the tokens [start, stop) each row explains
    source_spans: list[tuple[int, int]] | None = None  # source units (sources=...): [start, stop) of positions

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
        if self.target_spans is not None:
            self.target_spans = [(int(a), int(b)) for a, b in self.target_spans]
            if len(self.target_spans) != self.scores.shape[0]:
                raise ValueError(f"{len(self.target_spans)} target spans for {self.scores.shape[0]} rows")
            bounds = [self.prompt_length] + [x for span in self.target_spans for x in span] + [n]
            if any(b < a for a, b in zip(bounds, bounds[1:])) or any(a >= b for a, b in self.target_spans):
                raise ValueError(f"target spans {self.target_spans[:5]} are not ordered, disjoint and generated")
        if self.source_spans is not None:
            self.source_spans = [(int(a), int(b)) for a, b in self.source_spans]
            edges = [0] + [x for span in self.source_spans for x in span] + [n]
            if any(b < a for a, b in zip(edges, edges[1:])) or any(a >= b for a, b in self.source_spans):
                raise ValueError(f"source spans {self.source_spans[:5]} are not ordered and disjoint within {n}")

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
    def spans(self) -> list[tuple[int, int]]:
        """The positions ``[start, stop)`` each row explains (one token each, or the units)."""
        if self.target_spans is not None:
            return list(self.target_spans)
        first = self.prompt_length + self.step_start
        return [(first + j, first + j + 1) for j in range(self.num_steps)]

    @property
    def target_positions(self) -> list[int]:
        """Source position of each explained generated token (the first token of each unit)."""
        return [start for start, _ in self.spans]

    @property
    def target_tokens(self) -> list[str]:
        """The text each row explains: its token, or its unit's tokens joined."""
        return ["".join(self.tokens[a:b]) for a, b in self.spans]

    @property
    def is_unit_level(self) -> bool:
        """Whether rows explain units of several tokens (``explain=`` other than tokens)."""
        return self.target_spans is not None

    @property
    def target_ids(self) -> Int[Tensor, " generated"]:
        return self.input_ids[self.target_positions]

    def steps(self, start: int | None = None, stop: int | None = None) -> SequenceAttribution:
        """Keep only explained steps ``start:stop`` (indices into the rows of ``scores``)."""
        rows = range(self.num_steps)[slice(start, stop)]
        first = rows.start if len(rows) else 0
        sel = slice(rows.start, rows.stop)
        spans = None if self.target_spans is None else self.target_spans[sel]
        step_start = self.step_start + first
        if spans is not None:
            step_start = spans[0][0] - self.prompt_length if spans else self.step_start
        return replace(
            self,
            target_spans=spans,
            scores=self.scores[sel].clone(),
            granular_scores=None if self.granular_scores is None else self.granular_scores[sel].clone(),
            step_scores={k: v[sel].clone() for k, v in self.step_scores.items()},
            step_start=step_start,
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
            and self.target_spans == other.target_spans
            and self.source_spans == other.source_spans
            and same(self.input_ids, other.input_ids)
            and same(self.scores, other.scores)
            and same(self.special_mask, other.special_mask)
            and same(self.granular_scores, other.granular_scores)
            and self.step_scores.keys() == other.step_scores.keys()
            and all(same(v, other.step_scores[k]) for k, v in self.step_scores.items())
        )
