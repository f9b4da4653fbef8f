"""What ``attribute(..., sources=...)`` groups into source units: sentences, paragraphs,
documents or lines of the prompt (and, with ``sources_include_generated=True``, of the text
generated so far), or explicit spans. Perturbation methods (occlusion, LIME, context ablation)
ablate whole units; every result records the units (``seq.source_spans``), so
``out.aggregate("sources")`` sums the positions of each unit.

Positions outside every unit are held as they are. Special tokens and chat-template text (the
markers, role names and a default system prompt the template inserts) never form, start or end a
named unit: they are held out, like every position outside the units. To attribute to a system
prompt, pass it as a ``{"role": "system", ...}`` message (its text is then a unit like any
other), or pass explicit token spans or :class:`~genattrib.models.options.explain_units.CharSpans`, which are
never filtered.

Example:
    >>> tokens = ["Doc A.", " Fact.", "\\n\\n", "Doc B.", " Q?", " Answer", "."]
    >>> source_spans("paragraphs", tokens, prompt_length=5)
    [(0, 3), (3, 5)]
    >>> source_spans("sentences", tokens, prompt_length=5, include_generated=True)
    [(0, 1), (1, 3), (3, 4), (4, 5), (5, 7)]
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxtyping import Bool
from torch import Tensor

from genattrib.aggregation import boundaries
from genattrib.aggregation.merge import runs_from_starts
from genattrib.errors import InvalidArgumentError
from genattrib.models.options.explain_units import (
    CharSpans,
    Span,
    absorb_blank_runs,
    char_runs,
    check_units,
    structure_positions,
    text_view,
    without_structure,
)

#: Named source units.
SOURCE_NAMES = ("sentences", "paragraphs", "documents", "lines")


def check_sources(sources: object) -> str | list[Span] | CharSpans | None:
    """The validated ``sources`` argument.

    Example:
        >>> check_sources("documents"), check_sources(None), check_sources([[0, 4], (4, 9)])
        ('documents', None, [(0, 4), (4, 9)])
    """
    return None if sources is None else check_units(sources, "sources", SOURCE_NAMES, "the sequence")


def source_spans(
    sources: str | Sequence[Sequence[int]] | CharSpans,
    tokens: Sequence[str],
    prompt_length: int,
    held_fixed: Bool[Tensor, " position"] | None = None,
    include_generated: bool = False,
    token_roles: list[str] | None = None,
    special_tokens: Bool[Tensor, " position"] | None = None,
) -> list[Span]:
    """Token spans ``[start, stop)`` of the source units. Named units cover the prompt (and the
    generated text with ``include_generated``), never cross the prompt boundary, are never blank
    and never start or end with special tokens (``special_tokens``, else ``held_fixed``) or
    chat-template text (``token_roles``); token spans index the whole sequence (0 = first prompt
    token); :class:`CharSpans` are character offsets of the prompt's text (of the whole text
    with ``include_generated``)."""
    sources = check_sources(sources)
    n = len(tokens)
    scope = n if include_generated else prompt_length
    if isinstance(sources, list):
        for start, end in sources:
            if end > scope:
                raise InvalidArgumentError(
                    "sources",
                    f"token span ({start}, {end}) goes past the {scope} tokens it may group",
                    f"use 0 <= start < end <= {scope}"
                    + ("" if include_generated else ", or sources_include_generated=True to group generated text"),
                )
        return list(sources)
    seq = text_view(tokens, prompt_length, held_fixed, token_roles)
    if isinstance(sources, CharSpans):
        what = "text" if include_generated else "prompt's text"
        return char_runs(sources.spans, seq, range(scope), "sources", what)
    runs = absorb_blank_runs(runs_from_starts(_starts(sources, seq), n), tokens, prompt_length)
    special = special_tokens if special_tokens is not None else seq.held_fixed
    runs = without_structure(runs, structure_positions(special, token_roles))
    return [(a, b) for a, b in runs if b <= scope]


def _starts(name: str, seq: object) -> list[int]:
    if name == "sentences":
        return boundaries.sentence_starts(seq)
    if name == "lines":
        return boundaries.line_starts(seq)
    paragraphs = boundaries.line_starts(seq, paragraphs=True)
    if name == "documents":  # paragraphs, and each chat message on its own
        return sorted(set(paragraphs) | set(boundaries.role_starts(seq) if seq.token_roles else []))
    return paragraphs
