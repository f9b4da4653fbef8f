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
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.aggregation import reduce_hidden
from genattrib.engine.baselines import ResolvedBaseline, baseline_embeddings
from genattrib.engine.contract import Attributor, RowBatch
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.engine.planner import plan_batches
from genattrib.engine.row_refs import RowRef, SequenceJob, has_units
from genattrib.errors import InvalidArgumentError
from genattrib.output.rows import MemorySink, RowBlock, RowSink
from genattrib.output.scores import ScoreStore, SparseScores
from genattrib.progress import progress_bar
from genattrib.seeding import DEFAULT_SEED
from genattrib.targets import TargetFunction

#: Default budget for the granular (per hidden unit) scores a result keeps, in MiB.
GRANULAR_BUDGET_MB = 256.0


@dataclass
class EngineResult:
    """Scores of one sequence: rows are explained steps, columns source positions (a tensor, or
    a store: top-k rows, or rows streamed to disk)."""

    scores: Float[Tensor, "generated position"] | ScoreStore
    granular_scores: Float[Tensor, "generated position hidden"] | ScoreStore | None = None
    step_scores: dict[str, Float[Tensor, " generated"]] = field(default_factory=dict)


def granular_bytes(jobs: Sequence[SequenceJob], hidden: int) -> int:
    """Bytes the granular scores of ``jobs`` take (float32 rows × positions × hidden)."""
    return sum(job.num_rows * int(job.input_ids.shape[0]) for job in jobs) * hidden * 4


def resolve_keep_granular(
    method: Attributor,
    jobs: Sequence[SequenceJob],
    hidden: int,
    keep_granular: bool | None,
    budget_mb: int | float = GRANULAR_BUDGET_MB,
    top_k: int | None = None,
) -> bool:
    """Whether to keep granular scores: never for a method without them or with ``top_k``; when
    ``keep_granular`` is None, only if they fit ``budget_mb`` and the method keeps them by default
    (:attr:`~genattrib.engine.contract.MethodTraits.keeps_granular_by_default`); ``keep_granular=True`` beyond the
    budget raises (before any row is attributed)."""
    if not method.traits.granular or keep_granular is False:
        return False
    size = granular_bytes(jobs, hidden)
    if keep_granular is None:
        return top_k is None and size <= budget_mb * 2**20 and method.traits.keeps_granular_by_default
    if top_k is not None:
        raise InvalidArgumentError(
            "keep_granular",
            "top_k_scores= keeps only the k largest scores of each row, but granular scores (every hidden unit) "
            "are dense",
            "drop keep_granular=True, or pass top_k_scores=None",
        )
    if size > budget_mb * 2**20:
        need = math.ceil(size / 2**20)
        raise InvalidArgumentError(
            "keep_granular",
            f"the granular scores of this call would take {need:,} MiB "
            f"({sum(j.num_rows for j in jobs):,} rows x positions x {hidden} hidden units, float32), "
            f"over granular_budget_mb={budget_mb:g}",
            f"pass granular_budget_mb={need} (or more) to keep them, or keep_granular=None to keep only the "
            "scores reduced over the hidden units, or explain fewer steps (attr_pos_start / attr_pos_end)",
        )
    return True


def _build_batch(
    refs: list[RowRef],
    jobs: list[SequenceJob],
    forward: ModelForward,
    baselines: list[Tensor],
    seed: int,
    granular: bool = True,
) -> RowBatch:
    length = max(r.length for r in refs)
    device = forward.input_device
    ids = torch.zeros(len(refs), length, dtype=torch.long)
    special = torch.ones(len(refs), length, dtype=torch.bool)
    one = len({r.job for r in refs}) == 1
    base = torch.zeros(1 if one else len(refs), length, forward.hidden_size, dtype=forward.dtype, device=device)
    for i, ref in enumerate(refs):
        job = jobs[ref.job]
        n = min(length, int(job.input_ids.shape[0]))
        ids[i, :n] = job.input_ids[:n]
        special[i, :n] = job.held_fixed[:n]
        base[0 if one else i, :n] = baselines[ref.job][:n]
    contrast = None
    if any(jobs[r.job].contrast_ids is not None for r in refs):
        contrast = torch.tensor(
            [int(jobs[r.job].contrast_ids[r.position - jobs[r.job].prompt_length]) for r in refs], dtype=torch.long
        )
    if one:  # rows of one sequence are the same row: embed it once, views (no copies) for the rest
        embeds = forward.embed(ids[:1]).expand(len(refs), -1, -1)
        base = base[:1].expand(len(refs), -1, -1)
    else:
        embeds = forward.embed(ids)
    return RowBatch(
        input_ids=ids.to(device),
        input_embeds=embeds,
        baseline_embeds=base,
        target_positions=torch.tensor([r.position for r in refs], dtype=torch.long, device=device),
        target_ids=torch.tensor(
            [int(jobs[r.job].input_ids[r.position]) for r in refs], dtype=torch.long, device=device
        ),
        held_fixed=special.to(device),
        sequence_index=torch.tensor([r.job for r in refs], dtype=torch.long),
        contrast_ids=None if contrast is None else contrast.to(device),
        seed=seed,
        granular=granular,
        units=_units(refs, jobs, device) if has_units(refs) else None,
        source_groups=_source_groups(refs, jobs, length, device),
    )


def _source_groups(refs: list[RowRef], jobs: list[SequenceJob], length: int, device: torch.device) -> Tensor | None:
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


def _units(refs: list[RowRef], jobs: list[SequenceJob], device: torch.device) -> Explained:
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


def plan_run(
    forward: ModelForward,
    method: Attributor,
    jobs: Sequence[SequenceJob],
    prompts_per_batch: int | None = None,
    done: AbstractSet[tuple[int, int]] = frozenset(),
) -> list[list[RowRef]]:
    """The batches :func:`run_attribution` runs, in order, leaving out the (sequence, row) pairs
    in ``done`` (rows a resumed stream already holds)."""
    group = prompts_per_batch or max(1, len(jobs))
    batches = [
        [RowRef(start + ref.job, ref.row, ref.position, ref.stop) for ref in batch]
        for start in range(0, len(jobs), group)
        for batch in plan_batches(
            list(jobs[start : start + group]),
            method.rows_per_target,
            lambda length: forward.rows_per_chunk(length, method.traits.needs_gradients),
            method.traits.group_by_sequence,
            lambda length: method.max_batch_targets(length, forward),
        )
    ]
    if done:
        batches = [[r for r in batch if (r.job, r.row) not in done] for batch in batches]
    return [batch for batch in batches if batch]


def _blocks(
    refs: list[RowRef],
    jobs: list[SequenceJob],
    reduced: Float[Tensor, "row position"],
    granular: Float[Tensor, "row position hidden"] | None,
    step_scores: Mapping[str, Tensor],
    top_k: int | None,
) -> list[RowBlock]:
    """The finished rows of one batch, one block per sequence: each row's scores before its
    target position, NaN from there on (top-k rows when ``top_k``)."""
    members: dict[int, list[int]] = {}
    for i, ref in enumerate(refs):
        members.setdefault(ref.job, []).append(i)
    steps = {name: values.detach().float().cpu() for name, values in step_scores.items()}
    blocks = []
    for j, slots in members.items():
        positions = int(jobs[j].input_ids.shape[0])
        dense = torch.full((len(slots), positions), math.nan, dtype=torch.float32)
        kept = None if granular is None else torch.full((len(slots), positions, granular.shape[-1]), math.nan)
        for k, i in enumerate(slots):
            p = refs[i].position
            dense[k, :p] = reduced[i, :p]
            if kept is not None and granular is not None:
                kept[k, :p] = granular[i, :p]
        index = torch.tensor(slots, dtype=torch.long)
        blocks.append(
            RowBlock(
                sequence=j,
                rows=torch.tensor([refs[i].row for i in slots], dtype=torch.long),
                scores=dense if top_k is None else SparseScores.from_dense(dense, top_k),
                granular=kept,
                step_scores={name: values[index] for name, values in steps.items()},
            )
        )
    return blocks


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
    *,
    top_k: int | None = None,
    granular_budget_mb: int | float = GRANULAR_BUDGET_MB,
    sink: RowSink | None = None,
    done: AbstractSet[tuple[int, int]] = frozenset(),
) -> list[EngineResult]:
    """Attribute every explained step of every job with ``method``; no per-token Python loop
    of forwards: rows of many targets share each model call.

    ``prompts_per_batch`` (the user's ``batch_size``) plans the jobs in groups of that many
    sequences, one group after another, which bounds the memory a batch of rows can take;
    rows inside a group are still sized to the memory budget. Results do not depend on it.

    Each finished batch goes to ``sink`` (default: a :class:`~genattrib.output.rows.MemorySink`)
    as one :class:`~genattrib.output.rows.RowBlock` per sequence; ``top_k`` keeps the k
    largest-|score| cells of each row (:class:`~genattrib.output.scores.SparseScores`) as the
    batch finishes. Granular scores are kept as :func:`resolve_keep_granular` says (within
    ``granular_budget_mb``). Rows in ``done`` are skipped (the sink already holds them).
    """
    batches = plan_run(forward, method, jobs, prompts_per_batch, done)
    baselines = [
        baseline_embeddings(baseline, job.input_ids, forward.embedding)
        if baseline is not None
        else forward.embed(job.input_ids.unsqueeze(0))[0]
        for job in jobs
    ]
    keep = resolve_keep_granular(method, jobs, forward.hidden_size, keep_granular, granular_budget_mb, top_k)
    if sink is None:
        sink = MemorySink([(job.num_rows, int(job.input_ids.shape[0])) for job in jobs], top_k)
    with progress_bar(len(batches), f"{method.name}", show_progress) as advance:
        for refs in batches:
            batch = _build_batch(refs, jobs, forward, baselines, seed, granular=keep)
            out = method.run(batch, forward, attributed_fn)
            scores = out.scores.detach().float()
            per_unit = method.traits.granular and scores.dim() == 3  # else already reduced (batch.granular False)
            reduced = reduce_hidden(scores, method.traits.default_reduction) if per_unit else scores
            granular = scores.cpu() if per_unit and keep else None
            sink.add(_blocks(refs, jobs, reduced.cpu(), granular, out.step_scores, top_k))
            advance()
    return [EngineResult(*sink.result(j)) for j in range(len(jobs))]
