"""Turn generation traces into the engine's jobs: which steps of which sequence are explained.

Example:
    >>> from genattrib.generation import GenerationTrace
    >>> trace = GenerationTrace(torch.tensor([5, 6]), torch.tensor([7, 8, 9]))
    >>> [job.num_steps for job in build_jobs([trace], special_ids=[5], steps=slice(1, None))]
    [2]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from genattrib.engine.row_refs import SequenceJob
from genattrib.errors import InvalidArgumentError
from genattrib.generation import GenerationTrace


def contrast_per_step(contrast: Int[Tensor, " contrast"], n: int) -> Int[Tensor, " generated"]:
    """One contrast token per generated step (a single token is repeated)."""
    if contrast.shape[0] == 1 and n > 1:
        contrast = contrast.expand(n).clone()
    if contrast.shape[0] != n:
        raise InvalidArgumentError(
            "contrast_target",
            f"{contrast.shape[0]} contrast tokens for {n} generated tokens",
            "pass a single-token contrast or one with as many tokens as the continuation",
        )
    return contrast


def source_groups(
    spans: Sequence[tuple[int, int]], length: int, split_at: Iterable[int] = ()
) -> Int[Tensor, " position"]:
    """The source unit of every position (``-1``: none). A span is split at each position of
    ``split_at`` inside it (the first token of each explained unit, whose own tokens a unit row
    holds fixed: no ablated unit may hold both sources of a row and tokens of its unit).

    Example:
        >>> source_groups([(0, 3), (3, 5)], 7, split_at=[4]).tolist()
        [0, 0, 0, 1, 2, -1, -1]
    """
    cuts = sorted(set(split_at))
    groups = torch.full((length,), -1, dtype=torch.long)
    next_id = 0
    for start, stop in spans:
        edges = [start, *[c for c in cuts if start < c < stop], stop]
        for a, b in zip(edges, edges[1:]):
            groups[a:b] = next_id
            next_id += 1
    return groups


def build_jobs(
    traces: Sequence[GenerationTrace],
    special_ids: Sequence[int] = (),
    steps: slice = slice(None),
    contrast_ids: Sequence[Int[Tensor, " _contrast"]] | None = None,
    keep_special: bool = False,
    units: Sequence[list[tuple[int, int]] | None] | None = None,
    sources: Sequence[list[tuple[int, int]]] | None = None,
) -> list[SequenceJob]:
    """One :class:`SequenceJob` per trace.

    ``steps`` selects generated steps with slice semantics (0 = first generated token) and must
    select at least one step of every non-empty continuation. Tokens in ``special_ids`` are
    marked special (never perturbed, never attributed) unless ``keep_special``. ``contrast_ids``
    gives each trace's contrast tokens (already tokenized), one per step or a single token.
    ``units`` gives each trace's explained units (absolute ``[start, stop)`` positions inside the
    selected steps), or ``None`` to explain tokens. ``sources`` gives each trace's source units
    (``[start, stop)`` spans ablated together by perturbation methods); a source unit is split
    at the first token of every explained unit, whose own tokens a unit row holds fixed.
    """
    special = torch.tensor(sorted({int(i) for i in special_ids}), dtype=torch.long)
    jobs = []
    for i, trace in enumerate(traces):
        n = int(trace.generated_ids.shape[0])
        chosen = range(n)[steps]
        if n and len(chosen) == 0:
            raise InvalidArgumentError(
                "attr_pos_start",
                f"attr_pos_start={steps.start}, attr_pos_end={steps.stop} select no step of {n} generated tokens",
                f"use indices in [0, {n}) or None",
            )
        ids = trace.input_ids
        mask = torch.zeros_like(ids, dtype=torch.bool) if keep_special else torch.isin(ids, special)
        contrast = None if contrast_ids is None else contrast_per_step(contrast_ids[i], n)
        start, stop = (chosen.start, chosen.stop) if n else (0, 0)
        spans = None if units is None else units[i]
        if spans is not None and spans:
            start, stop = spans[0][0] - trace.prompt_length, spans[-1][1] - trace.prompt_length
        groups = None
        if sources is not None:
            groups = source_groups(sources[i], int(ids.shape[0]), [a for a, _ in spans or []])
        jobs.append(SequenceJob(ids, trace.prompt_length, start, stop, mask, contrast, spans, groups))
    return jobs
