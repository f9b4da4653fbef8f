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
        object.__setattr__(self, "spans", tuple(pair(s, "explain") for s in self.spans))


def pair(span: object, name: str) -> Span:
    if not (isinstance(span, Sequence) and len(span) == 2 and all(is_int(v) for v in span)):
        raise InvalidArgumentError(
            name, f"{span!r} is not a (start, end) pair of ints", "pass spans like [(0, 5), (5, 9)]"
        )
    start, end = int(span[0]), int(span[1])
    if not 0 <= start < end:
        raise InvalidArgumentError(name, f"span {span!r} is empty or negative", "use 0 <= start < end")
    return start, end


def check_units(value: object, name: str, names: Sequence[str], spans_of: str) -> str | list[Span] | CharSpans:
    """A validated unit argument: one of ``names``, disjoint token spans (sorted) or
    :class:`CharSpans`; errors name ``name`` and say the spans index ``spans_of``."""
    fix = f"use one of {', '.join(names)}, token spans [(start, end), ...] of {spans_of} or CharSpans([...])"
    if isinstance(value, CharSpans) or (isinstance(value, str) and value in names):
        return value
    if isinstance(value, str):
        raise InvalidArgumentError(name, f"unknown unit {value!r}", fix)
    if isinstance(value, Sequence) and value:
        spans = sorted(pair(s, name) for s in value)
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            if b0 < a1:
                raise InvalidArgumentError(name, f"spans ({a0}, {a1}) and ({b0}, {b1}) overlap", "pass disjoint spans")
        return spans
    raise InvalidArgumentError(name, f"cannot make units of {value!r}", fix)


def check_explain(explain: object) -> str | list[Span] | CharSpans:
    """The validated ``explain`` argument (before any heavy work).

    Example:
        >>> check_explain("sentences"), check_explain([[0, 3]])
        ('sentences', [(0, 3)])
    """
    return check_units(explain, "explain", UNIT_NAMES, "the generated text")


def unit_spans(
    explain: str | Sequence[Sequence[int]] | CharSpans,
    tokens: Sequence[str],
    prompt_length: int,
    held_fixed: Bool[Tensor, " position"] | None = None,
    steps: range | None = None,
    structure: Bool[Tensor, " position"] | None = None,
) -> list[Span] | None:
    """Absolute token spans ``[start, stop)`` of the units of the generated tokens (``None`` for
    ``"tokens"``), limited to the generated ``steps`` (0 = first generated token; all by default).
    Units never cross the prompt boundary; named units break at special tokens, and ``structure``
    positions (special tokens such as a closing ``<|im_end|>``, chat-template text) are left out
    of named units: they never form, start or end one, so they are never explained."""
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
        seq = text_view(tokens, prompt_length, held_fixed)
        runs = _runs(explain, seq, prompt_length)
        if not isinstance(explain, CharSpans):
            runs = without_structure(absorb_blank_runs(runs, tokens, prompt_length), structure)
    first, stop = prompt_length + steps.start, prompt_length + steps.stop
    return [(max(a, first), min(b, stop)) for a, b in runs if a >= prompt_length and max(a, first) < min(b, stop)]


def absorb_blank_runs(runs: list[Span], tokens: Sequence[str], boundary: int) -> list[Span]:
    """Whitespace-only runs (the blank line between paragraphs, a lone space) join the run before
    them (the first one joins the run after it), never across ``boundary`` (the prompt's end).

    Example:
        >>> absorb_blank_runs([(0, 2), (2, 3), (3, 4), (4, 5)], ["a", ".", "\\n\\n", "b", " "], 0)
        [(0, 3), (3, 5)]
    """
    out: list[Span] = []
    for region in ([r for r in runs if r[0] < boundary], [r for r in runs if r[0] >= boundary]):
        mine: list[Span] = []
        pending: int | None = None  # start of blank runs waiting for a following run
        for a, b in region:
            if "".join(tokens[a:b]).strip():
                mine.append((a if pending is None else pending, b))
                pending = None
            elif mine and mine[-1][1] == a:
                mine[-1] = (mine[-1][0], b)
            else:
                pending = a if pending is None else pending
        if pending is not None:
            mine.append((pending, region[-1][1]))
        out.extend(mine)
    return out


def without_structure(runs: list[Span], structure: Bool[Tensor, " position"] | None) -> list[Span]:
    """``runs`` without their leading and trailing ``structure`` positions (special tokens,
    chat-template text such as a role name), and without the runs made only of them: such text
    never forms a unit, nor starts or ends one.

    Example:
        >>> without_structure([(0, 1), (1, 4), (4, 5)], torch.tensor([True, True, False, False, True]))
        [(2, 4)]
    """
    if structure is None:
        return runs
    flags = structure.tolist()
    out: list[Span] = []
    for a, b in runs:
        while a < b and flags[a]:
            a += 1
        while b > a and flags[b - 1]:
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def structure_positions(
    special: Bool[Tensor, " position"], token_roles: Sequence[str] | None
) -> Bool[Tensor, " position"]:
    """Special tokens and chat-template text (``token_roles`` ``"template"``), as in
    :attr:`~genattrib.output.SequenceAttribution.structure_mask`.

    Example:
        >>> structure_positions(torch.tensor([True, False, False]), ["template", "template", "user"]).tolist()
        [True, True, False]
    """
    if token_roles is None:
        return special.clone()
    template = torch.tensor([role == "template" for role in token_roles], dtype=torch.bool)
    return special | template


def text_view(
    tokens: Sequence[str],
    prompt_length: int,
    held_fixed: Bool[Tensor, " position"] | None,
    token_roles: list[str] | None = None,
) -> SequenceAttribution:
    """A score-less sequence of ``tokens``, for the boundary rules of :mod:`genattrib.aggregation`."""
    n = len(tokens)
    return SequenceAttribution(
        input_ids=torch.zeros(n, dtype=torch.long),
        tokens=list(tokens),
        prompt_length=prompt_length,
        scores=torch.empty(0, n),
        held_fixed=held_fixed,
        token_roles=token_roles,
    )


def char_runs(
    spans: Sequence[Span], seq: SequenceAttribution, region: range, name: str = "explain", what: str = "generated text"
) -> list[Span]:
    """Token runs overlapping each character span of the text of the tokens in ``region`` (a
    token overlapping two spans goes to the first)."""
    offsets = seq.offsets
    offset = offsets[region.start][0] if region.start < len(offsets) else len(seq.text)
    size = (offsets[region.stop - 1][1] if len(region) else offset) - offset
    runs: list[Span] = []
    for start, end in sorted(spans):
        if end > size:
            raise InvalidArgumentError(
                name,
                f"character span ({start}, {end}) goes past the {what} ({size} characters)",
                f"use character offsets of the {what}, 0 <= start < end <= {size}",
            )
        inside = [k for k in region if offsets[k][0] < end + offset and offsets[k][1] > start + offset]
        first = max([inside[0], runs[-1][1]] if runs else [inside[0]]) if inside else None
        if first is not None and first <= inside[-1]:
            runs.append((first, inside[-1] + 1))
    return runs


def _runs(explain: str | CharSpans, seq: SequenceAttribution, prompt_length: int) -> list[Span]:
    if isinstance(explain, CharSpans):
        return char_runs(explain.spans, seq, range(prompt_length, len(seq.tokens)))
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
