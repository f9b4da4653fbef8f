"""Stitch windows of one sequence (``attr_pos_start``/``attr_pos_end`` calls) back into one sequence.

:meth:`FeatureAttributionOutput.merge` hands every sequence here with the provenance of its
result. Sequences are *windows of the same sequence* when their ids, tokens, prompt length, chat
roles, source units and special-token mask are equal and their rows are of the same kind (tokens or
units). Within each such group:

* windows whose rows do not overlap are stitched into one sequence, rows in order: the scores,
  step scores and granular scores of the rows one after another, as one call over their union
  would give them. Token rows must meet end to end (a gap of unexplained steps is an error naming
  the missing steps); the windows must share the method parameters, the attributed function's
  arguments, the step scores, and the storage (dense, top-k with the same ``k``, granular or not);
* windows that all explain the same rows are repeats (the same prompt twice in a dataset, or the
  same call run twice): they stay separate sequences, as they were;
* any other overlap is an error: which copy of a row would the result keep?

Sequences of different groups are never touched; the merged list keeps the order of the first
member of each group.

Example:
    >>> full = model.attribute(prompt, target=" Paris.")                  # 3 generated tokens
    >>> cut = [(0, 1), (1, 3)]
    >>> windows = [model.attribute(prompt, target=" Paris.", attr_pos_start=a, attr_pos_end=b) for a, b in cut]
    >>> stitched = genattrib.FeatureAttributionOutput.merge(windows)
    >>> len(stitched), stitched.sequences[0].num_steps
    (1, 3)
    >>> torch.allclose(stitched.sequences[0].scores, full.sequences[0].scores, equal_nan=True)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from genattrib.errors import InvalidArgumentError
from genattrib.output.provenance import Provenance
from genattrib.output.scores import SparseScores
from genattrib.output.sequence import SequenceAttribution


def _identity(seq: SequenceAttribution) -> tuple[Any, ...]:
    """What windows of the same sequence share."""
    return (
        tuple(seq.input_ids.tolist()),
        tuple(seq.tokens),
        seq.prompt_length,
        None if seq.token_roles is None else tuple(seq.token_roles),
        None if seq.source_spans is None else tuple(seq.source_spans),
        tuple(seq.held_fixed.tolist()),
        seq.is_unit_level,
    )


def _window(seq: SequenceAttribution) -> tuple[int, int]:
    """The positions ``[start, stop)`` the rows explain (empty when there are no rows)."""
    spans = seq.spans
    return (spans[0][0], spans[-1][1]) if spans else (0, 0)


def _steps(window: tuple[int, int], prompt_length: int) -> str:
    return f"{window[0] - prompt_length}:{window[1] - prompt_length}"


def stitch(members: Sequence[tuple[SequenceAttribution, Provenance]]) -> list[SequenceAttribution]:
    """The sequences of ``members`` (each with its result's provenance), windows of the same
    sequence stitched together (see the module docstring), in their order: a stitched sequence
    where its first window was."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, (seq, _) in enumerate(members):
        groups.setdefault(_identity(seq), []).append(index)
    placed: list[tuple[int, SequenceAttribution]] = []
    for indices in groups.values():
        joined = _stitch_group([members[i] for i in indices], indices[0])
        if joined is None:
            placed.extend((i, members[i][0]) for i in indices)
        else:
            placed.append((indices[0], joined))
    return [seq for _, seq in sorted(placed, key=lambda item: item[0])]


def _stitch_group(group: list[tuple[SequenceAttribution, Provenance]], where: int) -> SequenceAttribution | None:
    """The windows of ``group`` as one sequence, or None to keep them as they are (one sequence,
    or repeats of the same rows)."""
    sequences = [seq for seq, _ in group]
    windows = [_window(seq) for seq in sequences]
    if len(set(windows)) == 1:
        return None
    p = sequences[0].prompt_length
    order = sorted(range(len(group)), key=lambda i: windows[i])
    order = [i for i in order if windows[i][0] < windows[i][1]]  # windows without rows add nothing
    for a, b in zip(order, order[1:]):
        if windows[b][0] < windows[a][1]:
            raise InvalidArgumentError(
                "outputs",
                f"sequence {where} (counting the sequences of all results in order) comes in overlapping windows, "
                f"steps {_steps(windows[a], p)} and {_steps(windows[b], p)}, so it is unclear which rows to keep",
                "merge windows that meet end to end (attr_pos_start/attr_pos_end ranges without overlap), "
                "or cut them apart first with out.steps(start, stop)",
            )
        if not sequences[a].is_unit_level and windows[b][0] > windows[a][1]:
            gap = (windows[a][1], windows[b][0])
            raise InvalidArgumentError(
                "outputs",
                f"the windows of sequence {where} (counting the sequences of all results in order) leave steps "
                f"{_steps(gap, p)} unexplained",
                f"attribute them too (attr_pos_start={gap[0] - p}, attr_pos_end={gap[1] - p}) and merge "
                "all the windows",
            )
    _check_compatible([group[i] for i in order], where)
    return _join([sequences[i] for i in order])


def _check_compatible(group: list[tuple[SequenceAttribution, Provenance]], where: int) -> None:
    """Windows stitched into one sequence were made the same way and stored the same way."""
    first, prov = group[0]
    for seq, other in group[1:]:
        for name in ("method_params", "attributed_fn_args", "explain"):
            if getattr(other, name) != getattr(prov, name):
                raise InvalidArgumentError(
                    "outputs",
                    f"windows of sequence {where} differ in {name} "
                    f"({getattr(prov, name)!r} vs {getattr(other, name)!r})",
                    "stitch only windows attributed with the same settings",
                )
        if seq.step_scores.keys() != first.step_scores.keys():
            raise InvalidArgumentError(
                "outputs",
                f"windows of sequence {where} have different step scores "
                f"({sorted(first.step_scores)} vs {sorted(seq.step_scores)})",
                "ask every window for the same step_scores",
            )
        same_store = (seq.granular_scores_shape is None) == (first.granular_scores_shape is None) and (
            getattr(seq.sparse_scores, "k", None) == getattr(first.sparse_scores, "k", None)
        )
        if not same_store:
            raise InvalidArgumentError(
                "outputs",
                f"windows of sequence {where} are stored differently (granular scores kept or not, or top_k)",
                "attribute every window with the same keep_granular and top_k",
            )


def _join(parts: list[SequenceAttribution]) -> SequenceAttribution:
    """The rows of ``parts`` (in order, meeting end to end) as one sequence."""
    first = parts[0]
    sparse = [part.sparse_scores for part in parts]
    if all(s is not None for s in sparse):
        scores: Any = SparseScores.concat(sparse)  # type: ignore[arg-type]
    else:
        scores = torch.cat([part.scores for part in parts])
    granular = None
    if first.granular_scores_shape is not None:
        granular = torch.cat([part.granular_scores for part in parts])
    spans = None
    if first.is_unit_level:
        spans = [span for part in parts for span in part.target_spans or []]
    return replace(
        first,
        scores=scores,
        granular_scores=granular,
        step_scores={name: torch.cat([part.step_scores[name] for part in parts]) for name in first.step_scores},
        target_spans=spans,
        step_start=first.step_start,
    )
