"""Merge contiguous groups of positions into one position each, on both axes.

The core of ``words``, ``spans``, ``sentences``, ``lines`` and ``roles``: given where groups
start, it builds a valid :class:`SequenceAttribution` whose tokens are the groups' joined text.

* source axis (columns): the positions of a group combine with ``how``;
* target axis (rows): the explained tokens of a generated group combine with ``target_how``;
  a row's columns at or after its own group are NaN (the NaN invariant), so a group that
  contains a NaN-ed position is NaN, and scores of a word's earlier sub-tokens for its later
  ones are dropped;
* granular scores merge like the scores, per hidden unit; step scores with their rule
  (:func:`~genattrib.aggregation.segments.step_rule`: ``step_rules`` overrides, then the
  result's recorded ``provenance.step_score_rules``, then the fallback table);
* ``input_ids`` keeps the first token id of each group, ``held_fixed`` (and
  ``special_tokens_mask``) is True for groups of special tokens only, ``token_roles`` is the group's main content role.

Example:
    >>> seq = out.sequences[0]
    >>> seq.tokens
    ['The', ' capital', ' of', ' Fr', 'ance', ' is', ' Par', 'is', '.']
    >>> merged = merge_positions(seq, [0, 3, 5, 6, 8], how="sum")
    >>> merged.tokens
    ['The capital of', ' France', ' is', ' Paris', '.']
    >>> merged.scores.shape                                    # ' Par' and 'is' make one row
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import torch

from genattrib.aggregation.base import copy_sequence, nan_after_targets
from genattrib.aggregation.segments import merge_step_scores, reduce_runs
from genattrib.output.sequence import SequenceAttribution

__all__ = ["group_role", "merge_positions", "runs_from_starts"]


def runs_from_starts(starts: Sequence[int], n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of every group from the sorted group starts.

    Example:
        >>> runs_from_starts([0, 2, 3], 5)
        [(0, 2), (2, 3), (3, 5)]
    """
    return list(zip(starts, [*starts[1:], n]))


def group_role(roles: Sequence[str]) -> str:
    """The role of a group: its most common role other than ``template``, else ``template``.

    Example:
        >>> group_role(["template", "user", "user"])
        'user'
    """
    content = [r for r in roles if r != "template"]
    return Counter(content).most_common(1)[0][0] if content else roles[0]


def _check_starts(seq: SequenceAttribution, starts: Sequence[int]) -> None:
    n = len(seq.tokens)
    ok = list(starts) == sorted(set(starts)) and (not n or (starts and starts[0] == 0 and starts[-1] < n))
    if not ok or (0 < seq.prompt_length < n and seq.prompt_length not in starts):
        raise ValueError(
            f"group starts {list(starts)[:10]} are not sorted starts within 0..{n} with the prompt boundary"
        )


def merge_positions(
    seq: SequenceAttribution,
    starts: Sequence[int],
    *,
    how: str = "sum",
    target_how: str | None = None,
    step_rules: Mapping[str, str] | None = None,
    recorded_rules: Mapping[str, str] | None = None,
) -> SequenceAttribution:
    """A new sequence where the positions ``starts[g]:starts[g+1]`` become one position each
    (``recorded_rules``: the result's ``provenance.step_score_rules``)."""
    _check_starts(seq, starts)
    n = len(seq.tokens)
    runs = runs_from_starts(starts, n)
    if len(runs) == n:
        return copy_sequence(seq)
    group_of = [g for g, (a, b) in enumerate(runs) for _ in range(a, b)]
    prompt_groups = sum(1 for a, _ in runs if a < seq.prompt_length)

    # rows: each row's span of groups; rows whose spans share a group merge into one
    row_runs, spans = _row_runs([(group_of[a], group_of[b - 1] + 1) for a, b in seq.spans])
    first = seq.prompt_length + seq.step_start
    first_group = spans[0][0] if spans else (group_of[first] if first < n else len(runs))
    starts = [a for a, _ in spans]
    rows_how = target_how or how

    scores = reduce_runs(reduce_runs(seq.scores, runs, 1, how), row_runs, 0, rows_how)
    granular = None
    if seq.granular_scores is not None:
        granular = reduce_runs(reduce_runs(seq.granular_scores, runs, 1, how), row_runs, 0, rows_how)
        granular = nan_after_targets(granular, starts)
    special = seq.held_fixed if seq.held_fixed is not None else torch.zeros(n, dtype=torch.bool)
    return SequenceAttribution(
        input_ids=seq.input_ids[[a for a, _ in runs]].clone(),
        tokens=["".join(seq.tokens[a:b]) for a, b in runs],
        prompt_length=prompt_groups,
        scores=nan_after_targets(scores, starts),
        step_scores=merge_step_scores(seq.step_scores, row_runs, step_rules, recorded_rules),
        held_fixed=torch.stack([special[a:b].all() for a, b in runs]),
        special_tokens_mask=torch.stack([seq.special_tokens_mask[a:b].all() for a, b in runs]),
        granular_scores=granular,
        step_start=first_group - prompt_groups,
        generated_text=seq.generated_text,
        token_roles=None if seq.token_roles is None else [group_role(seq.token_roles[a:b]) for a, b in runs],
        target_spans=None if seq.target_spans is None else spans,
        source_spans=None
        if seq.source_spans is None
        else _row_runs([(group_of[a], group_of[b - 1] + 1) for a, b in seq.source_spans])[1],
    )


def _row_runs(spans: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(runs of consecutive rows whose group spans overlap, the merged span of each run).

    Example:
        >>> _row_runs([(3, 4), (3, 4), (4, 6), (5, 7), (8, 9)])
        ([(0, 2), (2, 4), (4, 5)], [(3, 4), (4, 7), (8, 9)])
    """
    row_runs: list[tuple[int, int]] = []
    merged: list[tuple[int, int]] = []
    for j, (a, b) in enumerate(spans):
        if merged and a < merged[-1][1]:
            row_runs[-1] = (row_runs[-1][0], j + 1)
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            row_runs.append((j, j + 1))
            merged.append((a, b))
    return row_runs, merged
