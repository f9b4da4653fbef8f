"""A summary for long outputs: per generated sentence, the source sentences that mattered most.

A source sentence's share for a generated sentence is its part of the total ``|score|`` that the
sentence's explained tokens give to all sources before them (NaN ignored). A result attributed
with source units (``attribute(..., sources="documents")``) is summarised over those units
instead (each unit whole, with its text; the rest of the text by sentence), so the shares add up
the units' scores. Equal shares are listed in text order. The generated
sentence's own earlier tokens count as a source ("same sentence"). A unit-level result
(``explain="sentences"``, ...) is summarised per row: each unit with its top source sentences. Sentences made only of
special tokens, chat-template text or blank text are left out, as sources and as generated
sentences (``include_special_tokens=True`` keeps special and template sentences). Sentences are split as in
:func:`~genattrib.aggregation.boundaries.sentence_starts`.

Example:
    >>> out.show(summary=True)
    Sequence 0 ...
    ...
    >>> [source.text for source in summarize(out.sequences[0], top=3)[0].sources]
    ['The capital of France is', ' Paris.']
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from rich.console import RenderableType
from rich.text import Text

from genattrib.aggregation.merge import group_role, runs_from_starts
from genattrib.errors import InvalidArgumentError
from genattrib.output.sequence import SequenceAttribution
from genattrib.render.captions import left_out
from genattrib.render.tokens import display_token
from genattrib.render.units import group_sums, outline_units, source_groups, unit_scores

__all__ = ["SentenceSummary", "SourceShare", "summarize", "summary_view"]

TOP = 3
_BAR_CELLS = 10


@dataclass(frozen=True)
class SourceShare:
    """One source sentence (or source unit, ``unit=True``) of a generated sentence and its share
    of the attribution."""

    text: str
    share: float
    role: str | None = None
    same_sentence: bool = False
    unit: bool = False


@dataclass(frozen=True)
class SentenceSummary:
    """A generated sentence (its explained part) and its top source sentences."""

    text: str
    sources: tuple[SourceShare, ...]


def summarize(
    seq: SequenceAttribution, top: int = TOP, *, include_special_tokens: bool = False
) -> list[SentenceSummary]:
    """The top-``top`` source sentences of every unit: a generated sentence with explained tokens
    (token-level result), or a row (unit-level result, e.g. ``explain="sentences"``). Sentences
    made only of special tokens or chat-template text (``seq.structure_mask``) are left out, as
    sources and from the shares' total, unless ``include_special_tokens``.

    Example:
        >>> seq = model.attribute(prompt, target=" Paris. It is big.").sequences[0]
        >>> [s.text for s in summarize(seq)]
        [' Paris.', ' It is big.']
    """
    if top < 1:
        raise InvalidArgumentError("top", f"top={top} shows no sources", "pass top >= 1")
    n = len(seq.tokens)
    units = outline_units(seq)
    if seq.num_steps == 0 or not len(units):
        return []
    starts, is_unit = source_groups(seq)
    runs = runs_from_starts(starts, n)
    mass = group_sums(unit_scores(seq, units, absolute=True), units.limits, starts).nan_to_num(0.0)
    special = left_out(seq, include_special_tokens).tolist()
    texts = ["".join(seq.tokens[a:b]) for a, b in runs]
    content = [bool(t.strip()) and not all(special[a:b]) for t, (a, b) in zip(texts, runs)]
    summaries = []
    for u, (a, b) in enumerate(units.spans):
        if not "".join(seq.tokens[a:b]).strip() or all(special[a:b]):
            continue
        own = bisect.bisect_right(starts, a) - 1  # the sentence holding the unit's first token
        totals = mass[u].tolist()
        candidates = [h for h in range(len(runs)) if content[h] and totals[h] > 0]
        whole = sum(totals[h] for h in candidates)
        ranked = sorted(candidates, key=lambda h: -totals[h])[:top]
        sources = tuple(
            SourceShare(
                text=texts[h],
                share=totals[h] / whole,
                role=None if seq.token_roles is None else group_role(seq.token_roles[runs[h][0] : runs[h][1]]),
                same_sentence=h == own,
                unit=is_unit[h],
            )
            for h in ranked
        )
        summaries.append(SentenceSummary(text="".join(seq.tokens[a:b]), sources=sources))
    return summaries


def _clean(text: str, width: int) -> str:
    return display_token(" ".join(text.split()), max(4, width))


def summary_view(
    seq: SequenceAttribution, *, top: int = TOP, width: int = 80, include_special_tokens: bool = False
) -> list[RenderableType]:
    """Rich lines for :func:`summarize` (tokens go through :class:`rich.text.Text`, never markup).

    Example:
        >>> from rich.console import Console
        >>> console = Console(width=100)
        >>> for line in summary_view(out.sequences[0], width=100):
        ...     console.print(line)
        Share of |attribution| per source sentence (top 3; special and chat-template tokens left out)
        ▸ Paris.
           ...  The capital of France is
           ...  Paris. (same sentence, earlier tokens)
    """
    summaries = summarize(seq, top, include_special_tokens=include_special_tokens)
    if not summaries:
        return [Text("no explained steps", style="dim")]
    kept = "special tokens kept" if include_special_tokens else "special and chat-template tokens left out"
    per = "source unit" if seq.source_spans is not None else "source sentence"
    lines: list[RenderableType] = [Text(f"Share of |attribution| per {per} (top {top}; {kept})", style="dim")]
    for summary in summaries:
        lines.append(Text.assemble(("▸ ", "bold"), (_clean(summary.text, width - 2), "bold")))
        if not summary.sources:
            lines.append(Text("    no attributed source", style="dim"))
        for source in summary.sources:
            filled = round(source.share * _BAR_CELLS)
            line = Text("  ")
            line.append(f"{source.share:>4.0%} ", style="bold")
            line.append("█" * filled, style="cyan")
            line.append("░" * (_BAR_CELLS - filled) + "  ", style="dim")
            note = " (same sentence, earlier tokens)" if source.same_sentence else ""
            role = f" [{source.role}]" if source.role and source.role != "generated" else ""
            line.append(_clean(source.text, width - line.cell_len - len(note) - len(role)))
            line.append(role + note, style="dim")
            lines.append(line)
    return lines
