"""Run a method over planned batches and assemble per-sequence score matrices.

Example:
    >>> from genattrib.methods import get_method
    >>> from genattrib.targets import resolve_target
    >>> jobs = [SequenceJob(out.sequences[0].input_ids, prompt_length=6, step_start=0, step_stop=3)]
    >>> results = run_attribution(ModelForward(hf_model), get_method("saliency"), resolve_target("logprob"), jobs)
    >>> results[0].scores.shape      # (explained steps, positions)
    torch.Size([3, 9])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.aggregation import reduce_hidden
from genattrib.engine.baselines import ResolvedBaseline, baseline_embeddings
from genattrib.engine.contract import Attributor, StepBatch
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.engine.plan import SequenceJob, TargetRef, plan_batches
from genattrib.progress import progress_bar
from genattrib.seeding import DEFAULT_SEED
from genattrib.targets import TargetFunction


@dataclass
class EngineResult:
    """Scores of one sequence: rows are explained steps, columns source positions."""

    scores: Float[Tensor, "generated position"]
    granular_scores: Float[Tensor, "generated position hidden"] | None = None
    step_scores: dict[str, Float[Tensor, " generated"]] = field(default_factory=dict)


def _build_batch(
    refs: list[TargetRef],
    jobs: list[SequenceJob],
    forward: ModelForward,
    baselines: list[Tensor],
    seed: int,
) -> StepBatch:
    length = max(r.length for r in refs)
    device = forward.input_device
    ids = torch.zeros(len(refs), length, dtype=torch.long)
    special = torch.ones(len(refs), length, dtype=torch.bool)
    base = torch.zeros(len(refs), length, forward.hidden_size, dtype=forward.dtype, device=device)
    for i, ref in enumerate(refs):
        job = jobs[ref.job]
        n = min(length, int(job.input_ids.shape[0]))
        ids[i, :n] = job.input_ids[:n]
        special[i, :n] = job.special_mask[:n]
        base[i, :n] = baselines[ref.job][:n]
    contrast = None
    if any(jobs[r.job].contrast_ids is not None for r in refs):
        contrast = torch.tensor(
            [int(jobs[r.job].contrast_ids[r.position - jobs[r.job].prompt_length]) for r in refs], dtype=torch.long
        )
    return StepBatch(
        input_ids=ids.to(device),
        input_embeds=forward.embed(ids),
        baseline_embeds=base,
        target_positions=torch.tensor([r.position for r in refs], dtype=torch.long, device=device),
        target_ids=torch.tensor(
            [int(jobs[r.job].input_ids[r.position]) for r in refs], dtype=torch.long, device=device
        ),
        special_mask=special.to(device),
        sequence_index=torch.tensor([r.job for r in refs], dtype=torch.long),
        contrast_ids=None if contrast is None else contrast.to(device),
        seed=seed,
        units=_units(refs, jobs, device) if any(r.stop > r.position + 1 for r in refs) else None,
        source_groups=_source_groups(refs, jobs, length, device),
    )


def _source_groups(refs: list[TargetRef], jobs: list[SequenceJob], length: int, device: torch.device) -> Tensor | None:
    """Each row's source unit per position (``-1``: in no unit, and padding), or ``None``."""
    if all(jobs[r.job].source_groups is None for r in refs):
        return None
    groups = torch.full((len(refs), length), -1, dtype=torch.long)
    for i, ref in enumerate(refs):
        own = jobs[ref.job].source_groups
        if own is not None:
            n = min(length, int(own.shape[0]))
            groups[i, :n] = own[:n]
    return groups.to(device)


def _units(refs: list[TargetRef], jobs: list[SequenceJob], device: torch.device) -> Explained:
    """The slots of unit rows: each unit's positions, padded (masked) to the longest unit."""
    slots = max(r.stop - r.position for r in refs)
    positions = torch.tensor([[min(r.position + k, r.stop - 1) for k in range(slots)] for r in refs])
    mask = torch.tensor([[r.position + k < r.stop for k in range(slots)] for r in refs])
    ids = torch.stack([jobs[r.job].input_ids[positions[i]] for i, r in enumerate(refs)])
    contrast = None
    if any(jobs[r.job].contrast_ids is not None for r in refs):
        first = [jobs[r.job].prompt_length for r in refs]
        contrast = torch.stack(
            [jobs[r.job].contrast_ids[positions[i] - first[i]] for i, r in enumerate(refs)]  # type: ignore[index]
        )
    units = Explained(positions, ids, mask, contrast)
    return units.to(device)


def run_attribution(
    forward: ModelForward,
    method: Attributor,
    attributed_fn: TargetFunction,
    jobs: list[SequenceJob],
    baseline: ResolvedBaseline | None = None,
    seed: int = DEFAULT_SEED,
    keep_granular: bool | None = None,
    show_progress: bool | None = None,
    prompts_per_batch: int | None = None,
) -> list[EngineResult]:
    """Attribute every explained step of every job with ``method``; no per-token Python loop
    of forwards: rows of many targets share each model call.

    ``prompts_per_batch`` (the user's ``batch_size``) plans the jobs in groups of that many
    sequences, one group after another, which bounds the memory a batch of rows can take;
    rows inside a group are still sized to the memory budget. Results do not depend on it.
    """
    group = prompts_per_batch or max(1, len(jobs))
    batches = [
        [TargetRef(start + ref.job, ref.row, ref.position, ref.stop) for ref in batch]
        for start in range(0, len(jobs), group)
        for batch in plan_batches(
            jobs[start : start + group],
            method.rows_per_target,
            lambda length: forward.rows_per_chunk(length, method.needs_gradients),
            method.group_by_sequence,
        )
    ]
    baselines = [
        baseline_embeddings(baseline, job.input_ids, forward.embedding)
        if baseline is not None
        else forward.embed(job.input_ids.unsqueeze(0))[0]
        for job in jobs
    ]
    if keep_granular is None:
        hidden = forward.hidden_size if method.granular else 1
        cells = sum(job.num_rows * int(job.input_ids.shape[0]) for job in jobs) * hidden
        keep_granular = method.granular and cells * 4 <= 256 << 20
    results = [
        EngineResult(torch.full((job.num_rows, int(job.input_ids.shape[0])), math.nan, dtype=torch.float32))
        for job in jobs
    ]
    with progress_bar(len(batches), f"{method.name}", show_progress) as advance:
        for refs in batches:
            batch = _build_batch(refs, jobs, forward, baselines, seed)
            out = method.attribute(batch, forward, attributed_fn)
            scores = out.scores.detach().float()
            reduced = reduce_hidden(scores, method.default_reduction) if method.granular else scores
            reduced, scores = reduced.cpu(), scores.cpu()
            for i, ref in enumerate(refs):
                res, p = results[ref.job], ref.position
                res.scores[ref.row, :p] = reduced[i, :p]
                if method.granular and keep_granular:
                    if res.granular_scores is None:
                        res.granular_scores = torch.full((*res.scores.shape, scores.shape[-1]), math.nan)
                    res.granular_scores[ref.row, :p] = scores[i, :p]
                for name, values in out.step_scores.items():
                    store = res.step_scores.setdefault(name, torch.full((res.scores.shape[0],), math.nan))
                    store[ref.row] = float(values[i])
            advance()
    return results
