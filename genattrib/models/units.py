"""What ``attribute(..., explain=...)`` explains: generated tokens, or units of the generated text
(words, sentences, paragraphs, lines, explicit token or character spans), each attributed as one
target whose value combines its tokens' values (the sum of their log-probs for ``logprob``).

Example:
    >>> tokens = ["Q:", " Hi", ".", " A", " cat", " sat", ".", " It", " ran", "."]
    >>> unit_spans("sentences", tokens, prompt_length=3)
    [(3, 7), (7, 10)]
    >>> unit_spans([(0, 2), (2, 7)], tokens, prompt_length=3)
    [(3, 5), (5, 10)]
    >>> unit_spans(CharSpans([(0, 8)]), tokens, prompt_length=3)     # " A cat s" -> tokens 3..5
    [(3, 6)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool
from torch import Tensor

from genattrib.aggregation import boundaries
from genattrib.aggregation.merge import runs_from_starts
from genattrib.errors import InvalidArgumentError
from genattrib.output import SequenceAttribution
from genattrib.validation import is_int

#: Named units of the generated text.
UNIT_NAMES = ("tokens", "words", "sentences", "paragraphs", "lines")

Span = tuple[int, int]


@dataclass(frozen=True)
class CharSpans:
    """Explicit units as character spans ``(start, end)`` of the generated text
    (``generated_text[start:end]``); a unit is every token overlapping its span.

    Example:
        >>> CharSpans([(0, 12), (12, 40)]).spans
        ((0, 12), (12, 40))
    """

    spans: Sequence[Sequence[int]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "spans", tuple(_pair(s, "explain") for s in self.spans))


def _pair(span: object, name: str) -> Span:
    if not (isinstance(span, Sequence) and len(span) == 2 and all(is_int(v) for v in span)):
        raise InvalidArgumentError(
            name, f"{span!r} is not a (start, end) pair of ints", "pass spans like [(0, 5), (5, 9)]"
        )
    start, end = int(span[0]), int(span[1])
    if not 0 <= start < end:
        raise InvalidArgumentError(name, f"span {span!r} is empty or negative", "use 0 <= start < end")
    return start, end


def check_explain(explain: object) -> str | list[Span] | CharSpans:
    """The validated ``explain`` argument (before any heavy work).

    Example:
        >>> check_explain("sentences"), check_explain([[0, 3]])
        ('sentences', [(0, 3)])
    """
    if isinstance(explain, str):
        if explain not in UNIT_NAMES:
            raise InvalidArgumentError(
                "explain",
                f"unknown unit {explain!r}",
                f"use one of {', '.join(UNIT_NAMES)}, token spans [(start, end), ...] or CharSpans([...])",
            )
        return explain
    if isinstance(explain, CharSpans):
        return explain
    if isinstance(explain, Sequence) and explain:
        spans = sorted(_pair(s, "explain") for s in explain)
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            if b0 < a1:
                raise InvalidArgumentError(
                    "explain", f"spans ({a0}, {a1}) and ({b0}, {b1}) overlap", "pass disjoint spans"
                )
        return spans
    raise InvalidArgumentError(
        "explain",
        f"cannot explain {explain!r}",
        f"use one of {', '.join(UNIT_NAMES)}, token spans [(start, end), ...] of the generated text "
        "or CharSpans([...])",
    )


def unit_spans(
    explain: str | Sequence[Sequence[int]] | CharSpans,
    tokens: Sequence[str],
    prompt_length: int,
    special_mask: Bool[Tensor, " position"] | None = None,
    steps: range | None = None,
) -> list[Span] | None:
    """Absolute token spans ``[start, stop)`` of the units of the generated tokens (``None`` for
    ``"tokens"``), limited to the generated ``steps`` (0 = first generated token; all by default).
    Units never cross the prompt boundary; named units break at special tokens."""
    explain = check_explain(explain)
    n = len(tokens)
    generated = n - prompt_length
    steps = range(generated) if steps is None else steps
    if explain == "tokens":
        return None
    if isinstance(explain, list):
        for start, end in explain:
            if end > generated:
                raise InvalidArgumentError(
                    "explain",
                    f"token span ({start}, {end}) goes past the {generated} generated tokens",
                    f"use token indices of the generated text, 0 <= start < end <= {generated}",
                )
        runs = [(prompt_length + a, prompt_length + b) for a, b in explain]
    else:
        seq = SequenceAttribution(
            input_ids=torch.zeros(n, dtype=torch.long),
            tokens=list(tokens),
            prompt_length=prompt_length,
            scores=torch.empty(0, n),
            special_mask=special_mask,
        )
        runs = _runs(explain, seq, prompt_length)
    first, stop = prompt_length + steps.start, prompt_length + steps.stop
    return [(max(a, first), min(b, stop)) for a, b in runs if a >= prompt_length and max(a, first) < min(b, stop)]


def _char_runs(explain: CharSpans, seq: SequenceAttribution, prompt_length: int) -> list[Span]:
    """Token runs overlapping each character span of the generated text (a token overlapping two
    spans goes to the first)."""
    offsets = seq.offsets
    offset = offsets[prompt_length][0] if prompt_length < len(offsets) else len(seq.text)
    generated_chars = len(seq.text) - offset
    runs: list[Span] = []
    for start, end in sorted(explain.spans):
        if end > generated_chars:
            raise InvalidArgumentError(
                "explain",
                f"character span ({start}, {end}) goes past the generated text ({generated_chars} characters)",
                f"use character offsets of the generated text, 0 <= start < end <= {generated_chars}",
            )
        inside = [k for k, (a, b) in enumerate(offsets) if a < end + offset and b > start + offset]
        first = max([inside[0], runs[-1][1]] if runs else [inside[0]]) if inside else None
        if first is not None and first <= inside[-1]:
            runs.append((first, inside[-1] + 1))
    return runs


def _runs(explain: str | CharSpans, seq: SequenceAttribution, prompt_length: int) -> list[Span]:
    if isinstance(explain, CharSpans):
        return _char_runs(explain, seq, prompt_length)
    if explain == "words":
        starts = boundaries.word_starts(seq)
    elif explain == "sentences":
        starts = boundaries.sentence_starts(seq)
    else:
        starts = boundaries.line_starts(seq, paragraphs=explain == "paragraphs")
    return runs_from_starts(starts, len(seq.tokens))


def describe_explain(explain: str | Sequence[Sequence[int]] | CharSpans) -> str:
    """How the provenance names what rows explain.

    Example:
        >>> describe_explain("sentences"), describe_explain([(0, 2)]), describe_explain(CharSpans([(0, 4)]))
        ('sentences', 'token spans', 'character spans')
    """
    if isinstance(explain, str):
        return explain
    return "character spans" if isinstance(explain, CharSpans) else "token spans"
