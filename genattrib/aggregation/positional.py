"""Merge tokens into words, spans, sentences, lines/paragraphs or chat-role blocks.

Each aggregator finds where groups start (:mod:`genattrib.aggregation.boundaries`) and merges
them on both axes (:func:`~genattrib.aggregation.merge.merge_positions`). Shared options:

* ``how`` (``"sum"``, ``"mean"``, ``"max"``, ``"absmax"``): how the source positions of a group
  combine; ``"sum"`` (default) suits additive methods (IG, input×gradient, occlusion).
* ``target_how``: how the rows of a generated group combine (default: same as ``how``, so a
  merged cell is ``how`` over its block of token cells; with ``"sum"`` a word's row explains the
  sum of its tokens' attributed function, e.g. the word's log-probability).
* ``step_rules``: per step-score name, overrides of the rule the result records for it
  (``provenance.step_score_rules``, declared where the score is made); scores without a
  recorded rule (results saved before rules were recorded) use
  :data:`~genattrib.aggregation.segments.STEP_SCORE_RULES`. See
  :func:`~genattrib.aggregation.segments.step_rule`.

Example:
    >>> out.aggregate(Words(how="sum"), Sentences()).sequences[0].tokens
    ['The capital of France is', ' Paris.']
    >>> out.aggregate(Spans([(0, 24)])).sequences[0].tokens
    ['The capital of France is', ' Par', 'is', '.']
    >>> out.aggregate(Spans(pattern=r"[A-Z]\\w+")).sequences[0].tokens
    ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from genattrib.aggregation import boundaries
from genattrib.aggregation.base import Aggregator, check_output, recorded
from genattrib.aggregation.merge import merge_positions
from genattrib.aggregation.segments import MERGE_RULES, STEP_RULES
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.sequence import SequenceAttribution
from genattrib.validation import is_int

__all__ = ["Lines", "Roles", "Sentences", "Sources", "Spans", "Words"]


@dataclass(frozen=True, kw_only=True)
class _Merging(Aggregator):
    """Shared options and the merge; subclasses say where groups start."""

    how: str = "sum"
    target_how: str | None = None
    step_rules: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.how not in MERGE_RULES:
            raise UnknownNameError("how", self.how, MERGE_RULES)
        if self.target_how is not None and self.target_how not in MERGE_RULES:
            raise UnknownNameError("target_how", self.target_how, MERGE_RULES)
        for name, rule in (self.step_rules or {}).items():
            if rule not in STEP_RULES:
                raise UnknownNameError(f"step_rules[{name!r}]", rule, STEP_RULES)

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        raise NotImplementedError

    def __call__(self, out: FeatureAttributionOutput) -> FeatureAttributionOutput:
        """Like :meth:`Aggregator.__call__`, with the step-score rules ``out`` records."""
        check_output(out, self.name)
        rules = out.provenance.step_score_rules
        sequences = [self.merge(seq, index, rules) for index, seq in enumerate(out.sequences)]
        return FeatureAttributionOutput(sequences, recorded(out.provenance, self.describe()))

    def apply(self, seq: SequenceAttribution, index: int) -> SequenceAttribution:
        """One sequence on its own: no recorded rules, so ``step_rules`` then the fallback table."""
        return self.merge(seq, index, None)

    def merge(
        self, seq: SequenceAttribution, index: int, recorded_rules: Mapping[str, str] | None
    ) -> SequenceAttribution:
        """Merge the groups of ``seq`` (step scores: ``step_rules``, then ``recorded_rules``)."""
        starts = self.starts(seq, index)
        return merge_positions(
            seq,
            starts,
            how=self.how,
            target_how=self.target_how,
            step_rules=self.step_rules,
            recorded_rules=recorded_rules,
        )


@dataclass(frozen=True, kw_only=True)
class Words(_Merging):
    """Merge sub-word tokens into words (see :func:`~genattrib.aggregation.boundaries.word_starts`).

    Example:
        >>> Words()(out).sequences[0].tokens
        ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
    """

    name: ClassVar[str] = "words"

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        return boundaries.word_starts(seq)


@dataclass(frozen=True, kw_only=True)
class Sentences(_Merging):
    """Merge tokens into sentences (split after ``.``/``!``/``?`` + whitespace, blank lines,
    special tokens and role changes).

    Example:
        >>> Sentences()(out).sequences[0].tokens
        ['The capital of France is', ' Paris.']
    """

    name: ClassVar[str] = "sentences"

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        return boundaries.sentence_starts(seq)


@dataclass(frozen=True, kw_only=True)
class Sources(_Merging):
    """Merge the positions of each source unit the result records (``attribute(...,
    sources=...)``, ``seq.source_spans``) into one; other positions stay as they are.

    Example:
        >>> seq = model.attribute(prompt, target=" Paris.", method="occlusion", sources=[(0, 3), (3, 6)]).sequences[0]
        >>> Sources().apply(seq, 0).tokens
        ['The capital of', ' France is', ' Par', 'is', '.']
    """

    name: ClassVar[str] = "sources"

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        if seq.source_spans is None:
            raise InvalidArgumentError(
                "sources",
                f"sequence {index} records no source units",
                "attribute with sources='sentences' (or spans) first, or aggregate by 'sentences' / 'spans'",
            )
        return boundaries.run_starts(seq, seq.source_spans)


@dataclass(frozen=True, kw_only=True)
class Lines(_Merging):
    """Merge tokens into lines (split after each newline) or, with ``paragraphs=True``, into
    paragraphs (split after blank lines); special tokens are boundaries.

    Example:
        >>> Lines(paragraphs=True)(out).sequences[0].tokens
        ['The capital of France is', ' Paris.']
    """

    paragraphs: bool = False
    name: ClassVar[str] = "lines"

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        return boundaries.line_starts(seq, paragraphs=self.paragraphs)


@dataclass(frozen=True, kw_only=True)
class Roles(_Merging):
    """Merge consecutive tokens of the same chat role (``system``, ``user``, ``template``,
    ``generated`` ...) into blocks. Needs ``token_roles`` (a chat prompt).

    Example:
        >>> chat_out = model.attribute([{"role": "user", "content": "Hi"}], chat=True, target=" Paris.")
        >>> Roles()(chat_out).sequences[0].token_roles
        ['template', 'user', 'template', 'generated']
    """

    name: ClassVar[str] = "roles"

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        if seq.token_roles is None:
            raise InvalidArgumentError(
                "roles",
                f"sequence {index} has no token roles (token_roles is None): it was not attributed from a chat prompt",
                "attribute a chat prompt (a list of {'role': ..., 'content': ...} messages), or use "
                "'sentences'/'spans' instead",
            )
        return boundaries.role_starts(seq)


Span = tuple[int, int]


def _is_pair(value: object) -> bool:
    return isinstance(value, Sequence) and len(value) == 2 and all(is_int(v) for v in value)


def _per_sequence(spans: Sequence[object]) -> bool:
    """Whether ``spans`` holds one list of spans per sequence (rather than spans for all)."""
    return bool(spans) and not any(_is_pair(s) for s in spans) and all(isinstance(s, Sequence) for s in spans)


@dataclass(frozen=True)
class Spans(_Merging):
    """Merge the tokens overlapping each character span ``(start, end)`` of ``seq.text`` (as in
    ``text[start:end]``), or each match of ``pattern``; other tokens stay as they are.

    ``spans`` is one list for every sequence, or one list per sequence. Spans must not overlap.
    A span that crosses the prompt/generated boundary is split there; a token overlapping two
    spans goes to the first.

    Example:
        >>> Spans([(0, 14)])(out).sequences[0].tokens[0]
        'The capital of'
        >>> Spans(pattern=r"[A-Z]\\w+")(out).sequences[0].tokens
        ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
    """

    spans: Sequence[Sequence[int]] | Sequence[Sequence[Sequence[int]]] | None = None
    pattern: str | re.Pattern[str] | None = None
    name: ClassVar[str] = "spans"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.spans is None) == (self.pattern is None):
            raise InvalidArgumentError(
                "spans", "pass exactly one of `spans` and `pattern`", "e.g. Spans([(0, 10)]) or Spans(pattern=r'\\w+')"
            )
        if isinstance(self.pattern, str):
            try:
                re.compile(self.pattern)
            except re.error as err:
                raise InvalidArgumentError(
                    "pattern", f"{self.pattern!r} is not a valid regex ({err})", "fix the regular expression"
                ) from err
        spans = list(self.spans or [])
        for span in (s for group in spans for s in group) if _per_sequence(spans) else spans:
            if not _is_pair(span):
                raise InvalidArgumentError(
                    "spans", f"{span!r} is not a (start, end) pair of ints", "pass spans like [(0, 10), (12, 20)]"
                )

    def describe(self) -> str:
        what = (
            f"pattern={getattr(self.pattern, 'pattern', self.pattern)!r}"
            if self.pattern is not None
            else f"spans={self.spans!r}"
        )
        return f"spans({what}, how={self.how!r}, target_how={self.target_how!r}, step_rules={self.step_rules!r})"

    def __call__(self, out: FeatureAttributionOutput) -> FeatureAttributionOutput:
        check_output(out, self.name)
        spans = list(self.spans or [])
        if _per_sequence(spans) and len(spans) != len(out.sequences):
            raise InvalidArgumentError(
                "spans",
                f"{len(spans)} lists of spans for {len(out.sequences)} sequences",
                "pass one list per sequence, or one list for all",
            )
        return super().__call__(out)

    def ranges(self, seq: SequenceAttribution, index: int) -> list[Span]:
        """The character ranges used for sequence ``index``, checked and sorted."""
        if self.pattern is not None:
            return [m.span() for m in re.finditer(self.pattern, seq.text) if m.end() > m.start()]
        spans = list(self.spans or [])
        chosen = spans[index] if _per_sequence(spans) else spans
        size = len(seq.text)
        ordered = sorted((int(a), int(b)) for a, b in chosen)
        for start, end in ordered:
            if not 0 <= start < end <= size:
                raise InvalidArgumentError(
                    "spans",
                    f"span ({start}, {end}) is empty or outside the text of sequence {index} ({size} characters)",
                    f"use 0 <= start < end <= {size} (character offsets into seq.text)",
                )
        for (a0, a1), (b0, b1) in zip(ordered, ordered[1:]):
            if b0 < a1:
                raise InvalidArgumentError(
                    "spans", f"spans ({a0}, {a1}) and ({b0}, {b1}) overlap", "pass non-overlapping spans"
                )
        return ordered

    def starts(self, seq: SequenceAttribution, index: int) -> list[int]:
        return boundaries.span_starts(seq, self.ranges(seq, index))
