"""Turn generation traces into the engine's jobs: which steps of which sequence are explained.

Example:
    >>> from genattrib.generation import GenerationTrace
    >>> trace = GenerationTrace(torch.tensor([5, 6]), torch.tensor([7, 8, 9]))
    >>> [job.num_steps for job in build_jobs([trace], special_ids=[5], steps=slice(1, None))]
    [2]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from genattrib.engine.plan import SequenceJob
from genattrib.errors import InvalidArgumentError
from genattrib.generation import GenerationTrace


def _contrast_for(contrast: Int[Tensor, " contrast"], n: int) -> Int[Tensor, " generated"]:
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


def build_jobs(
    traces: Sequence[GenerationTrace],
    special_ids: Sequence[int] = (),
    steps: slice = slice(None),
    contrast_ids: Sequence[Int[Tensor, " _contrast"]] | None = None,
    keep_special: bool = False,
    units: Sequence[list[tuple[int, int]] | None] | None = None,
) -> list[SequenceJob]:
    """One :class:`SequenceJob` per trace.

    ``steps`` selects generated steps with slice semantics (0 = first generated token) and must
    select at least one step of every non-empty continuation. Tokens in ``special_ids`` are
    marked special (never perturbed, never attributed) unless ``keep_special``. ``contrast_ids``
    gives each trace's contrast tokens (already tokenized), one per step or a single token.
    ``units`` gives each trace's explained units (absolute ``[start, stop)`` positions inside the
    selected steps), or ``None`` to explain tokens.
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
        contrast = None if contrast_ids is None else _contrast_for(contrast_ids[i], n)
        start, stop = (chosen.start, chosen.stop) if n else (0, 0)
        spans = None if units is None else units[i]
        if spans is not None and spans:
            start, stop = spans[0][0] - trace.prompt_length, spans[-1][1] - trace.prompt_length
        jobs.append(SequenceJob(ids, trace.prompt_length, start, stop, mask, contrast, spans))
    return jobs
