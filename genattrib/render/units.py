"""Units for reading a long result: the outline's units, their rows of scores, and their top sources.

A unit-level result (``attribute(..., explain="sentences")``) has one unit per row. A token-level
result has one unit per generated sentence (its explained part; blank text such as a paragraph
break joins the sentence before it), whose row is the sum of its tokens' rows. Sources can be
grouped too: :func:`group_sums` adds a row's scores over groups of positions (the groups of
:func:`source_groups`: the source units a result records, ``attribute(..., sources=...)``, and
the sentences of the rest of the text), and :func:`top_sources` ranks the words (or, for a
unit-sourced result, the source units) a unit drew on most; ties go to the earlier position. Everything
works on row chunks, so an 8,000 × 8,000 matrix is never copied whole.

Example:
    >>> seq = model.attribute(prompt, target=" Paris. It is big.").sequences[0]
    >>> units = outline_units(seq)
    >>> ["".join(seq.tokens[a:b]) for a, b in units.spans]
    [' Paris.', ' It is big.']
    >>> units.rows                                   # rows of seq.scores merged into each unit
    [(0, 3), (3, 10)]
    >>> unit_scores(seq, units).shape
    torch.Size([2, 16])
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.aggregation.boundaries import sentence_starts, word_starts
from genattrib.aggregation.merge import runs_from_starts
from genattrib.output.sequence import SequenceAttribution

__all__ = ["CHUNK_ROWS", "Units", "group_sums", "outline_units", "source_groups", "top_sources", "unit_scores"]

CHUNK_ROWS = 512  # rows handled at once (bounds the temporary copies of a huge matrix)
LABEL_CHARS = 40


@dataclass(frozen=True)
class Units:
    """The outline's units of one sequence.

    ``spans[u]`` are the token positions ``[start, stop)`` of unit ``u``, ``rows[u]`` the rows of
    ``seq.scores`` it merges ``[first, last)``, ``limits[u]`` its first source position without a
    score. ``merged`` is true when units merge several token rows (a token-level result).
    """

    spans: list[tuple[int, int]]
    rows: list[tuple[int, int]]
    limits: list[int]
    merged: bool

    def __len__(self) -> int:
        return len(self.spans)


def outline_units(seq: SequenceAttribution) -> Units:
    """The units of ``seq``: its rows (unit-level result) or its generated sentences (token level)."""
    if seq.is_unit_level or seq.num_steps == 0:
        spans = seq.spans
        return Units(spans, [(j, j + 1) for j in range(len(spans))], [a for a, _ in spans], merged=False)
    first, last = seq.target_positions[0], seq.target_positions[-1]
    spans: list[tuple[int, int]] = []
    for a, b in runs_from_starts(sentence_starts(seq), len(seq.tokens)):
        lo, hi = max(a, first), min(b, last + 1)
        if lo >= hi:
            continue
        if spans and (not "".join(seq.tokens[lo:hi]).strip() or not "".join(seq.tokens[slice(*spans[-1])]).strip()):
            spans[-1] = (spans[-1][0], hi)  # blank text (a paragraph break) joins the sentence before it
        else:
            spans.append((lo, hi))
    rows = [(lo - first, hi - first) for lo, hi in spans]
    limits = [hi - 1 for _, hi in spans]  # the unit's last token: every row scores the positions before it
    return Units(spans, rows, limits, merged=True)


def _zeroed(values: Tensor) -> Tensor:
    """Float32 copy with NaN and ±inf as 0 (sums of finite scores)."""
    return values.detach().to("cpu", torch.float32).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def _nan_from(matrix: Tensor, limits: Sequence[int], starts: Tensor) -> Tensor:
    """``matrix[u, c] = NaN`` where column ``c`` starts at or after ``limits[u]``."""
    bound = torch.tensor(list(limits), dtype=torch.long).unsqueeze(1)
    return matrix.masked_fill(starts.unsqueeze(0) >= bound, float("nan"))


def unit_scores(seq: SequenceAttribution, units: Units, *, absolute: bool = False) -> Float[Tensor, "unit position"]:
    """Each unit's row over the source positions: the sum of its rows (of their ``|score|`` with
    ``absolute=True``), NaN from its limit on. A unit-level result's rows are its units already:
    they come back as they are (float32).
    """
    n = len(seq.tokens)
    if not units.merged:
        rows = seq.scores.detach().to("cpu", torch.float32)
        return rows.abs() if absolute else rows
    out = torch.zeros(len(units), n)
    for u, (r0, r1) in enumerate(units.rows):  # a unit's rows are consecutive
        rows = _zeroed(seq.scores[r0:r1])
        out[u] = (rows.abs() if absolute else rows).sum(0)
    return _nan_from(out, units.limits, torch.arange(n))


def group_sums(
    matrix: Float[Tensor, "row position"], limits: Sequence[int], starts: Sequence[int]
) -> Float[Tensor, "row group"]:
    """Sum every row over groups of positions starting at ``starts`` (sorted, from 0); a group
    gets NaN in row ``r`` when it starts at or after ``limits[r]`` (it holds no score there).

    Example:
        >>> m = torch.tensor([[1.0, 2.0, float("nan")], [1.0, 1.0, 1.0]])
        >>> group_sums(m, [2, 3], [0, 2]).tolist()
        [[3.0, nan], [2.0, 1.0]]
    """
    rows, n = matrix.shape
    group_of = torch.zeros(n, dtype=torch.long)
    for g, (a, b) in enumerate(runs_from_starts(list(starts), n)):
        group_of[a:b] = g
    out = torch.zeros(rows, len(starts))
    for r0 in range(0, rows, CHUNK_ROWS):
        out[r0 : r0 + CHUNK_ROWS].index_add_(1, group_of, _zeroed(matrix[r0 : r0 + CHUNK_ROWS]))
    return _nan_from(out, limits, torch.tensor(list(starts), dtype=torch.long))


def source_groups(seq: SequenceAttribution) -> tuple[list[int], list[bool]]:
    """Where the groups that sources are summed over start, and whether each is a source unit:
    every source unit the result records (``seq.source_spans``) is one group and the other
    positions are split into sentences; without source units, the sentences of the text.

    Example:
        >>> seq = model.attribute(prompt, target=" Paris.", method="occlusion", sources=[(1, 5)]).sequences[0]
        >>> source_groups(seq)
        ([0, 1, 5, 6], [False, True, False, False])
    """
    sentences = sentence_starts(seq)
    spans = seq.source_spans
    if spans is None:
        return sentences, [False] * len(sentences)
    firsts = [a for a, _ in spans]

    def inside(k: int) -> bool:
        i = bisect.bisect_right(firsts, k) - 1
        return i >= 0 and spans[i][0] < k < spans[i][1]

    n = len(seq.tokens)
    edges = {0} | set(firsts) | {b for _, b in spans if b < n} | {k for k in sentences if not inside(k)}
    starts = sorted(edges)
    unit_starts = set(firsts)
    return starts, [k in unit_starts for k in starts]


def _label(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= LABEL_CHARS else words[: LABEL_CHARS - 1] + "…"


def top_sources(
    seq: SequenceAttribution,
    matrix: Float[Tensor, "unit position"],
    limits: Sequence[int],
    top: int = 3,
    *,
    include_special_tokens: bool = False,
    starts: Sequence[int] | None = None,
) -> list[list[tuple[str, float, int]]]:
    """The ``top`` source words (or the groups starting at ``starts``, e.g. the source units of
    :func:`source_groups`) of every row of ``matrix`` by ``|sum of scores|``: ``(text, score,
    first position)``; equal sizes go to the earlier group. Groups of blank text are left out,
    and so are groups made only of special tokens or chat-template text (``seq.structure_mask``)
    unless ``include_special_tokens``.

    Example:
        >>> seq = out.sequences[0]
        >>> [text for text, _, _ in top_sources(seq, seq.scores, seq.target_positions, top=2)[0]]
        ['is', 'France']
    """
    n = len(seq.tokens)
    starts = word_starts(seq) if starts is None else list(starts)
    runs = runs_from_starts(starts, n)
    special = seq.structure_mask.tolist() if not include_special_tokens else [False] * n
    texts = ["".join(seq.tokens[a:b]) for a, b in runs]
    content = torch.tensor([bool(t.strip()) and not all(special[a:b]) for t, (a, b) in zip(texts, runs)])
    result: list[list[tuple[str, float, int]]] = []
    for r0 in range(0, matrix.shape[0], CHUNK_ROWS):
        chunk = group_sums(matrix[r0 : r0 + CHUNK_ROWS], limits[r0 : r0 + CHUNK_ROWS], starts)
        size = torch.where(torch.isfinite(chunk) & content, chunk.abs(), torch.zeros(()))
        best, index = size.sort(dim=1, descending=True, stable=True)  # ties: the earlier group first
        best, index = best[:, :top], index[:, :top]
        for row, (sizes, words) in enumerate(zip(best.tolist(), index.tolist())):
            result.append(
                [
                    (_label(texts[w]), float(f"{float(chunk[row, w]):.4g}"), runs[w][0])
                    for s, w in zip(sizes, words)
                    if s > 0
                ]
            )
    return result
