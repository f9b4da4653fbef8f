"""Faithfulness metrics split over the processes of a run, resumably (``benchmark(out_dir=...)``).

Each process evaluates the steps of its share of the examples (examples ``rank, rank + world,
...``, dealt by the dataset runner's :func:`~genattrib.dataset.schedule.rank_share`) and writes the
per-step values to ``folder/part-RRR-of-WWW.safetensors`` (atomically); then every process reads
every part and summarises them as :func:`~genattrib.evaluation.evaluate.evaluate_steps` does
(per-example means, bootstrap over examples). A rerun with the same number of processes reads
the parts already written instead of evaluating again. Metrics seed each step from the step
itself, so a step's values do not depend on which process evaluates it (up to the rounding of a
different batch).

Example:
    >>> out = model.attribute(["The capital of France is", "Hello"], max_new_tokens=3)
    >>> steps = collect_steps(out, 1)
    >>> split = evaluate_split(model, steps, ["comprehensiveness"], folder=Path("eval-parts"), n_bootstrap=50)
    >>> whole = evaluate_steps(model, steps, ["comprehensiveness"], n_bootstrap=50)
    >>> torch.allclose(split.per_step["comprehensiveness"], whole.per_step["comprehensiveness"])
    True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from genattrib.dataset.processes import Processes, current_processes
from genattrib.dataset.schedule import rank_share
from genattrib.errors import InvalidArgumentError
from genattrib.evaluation.evaluate import evaluate_steps, resolve_metrics
from genattrib.evaluation.result import EvaluationResult
from genattrib.faithfulness.bootstrap import per_example_means, summarize
from genattrib.faithfulness.metrics import METRICS
from genattrib.faithfulness.steps import EvalSteps, collect_steps
from genattrib.output import serialization
from genattrib.seeding import DEFAULT_SEED

__all__ = ["collect_steps", "evaluate_split", "subset_steps"]


def subset_steps(steps: EvalSteps, examples: Sequence[int]) -> EvalSteps:
    """The steps of ``examples`` only (their example numbers kept)."""
    keep = torch.isin(steps.example, torch.tensor(list(examples), dtype=torch.long))
    picked = keep.nonzero().flatten().tolist()
    return EvalSteps(
        [steps.prefixes[i] for i in picked],
        [steps.scores[i] for i in picked],
        [steps.special[i] for i in picked],
        steps.target_ids[keep],
        steps.example[keep],
        steps.step[keep],
    )


def _part(folder: Path, processes: Processes) -> Path:
    return folder / f"part-{processes.rank:03d}-of-{processes.world:03d}.safetensors"


def _write_part(path: Path, result: EvaluationResult | None, names: Sequence[str], fingerprint: dict) -> None:
    empty = torch.empty(0, dtype=torch.long)
    tensors: dict[str, torch.Tensor] = {"example": empty, "step": empty}
    meta: dict[str, Any] = {"fingerprint": fingerprint, "info": None, "random": []}
    if result is not None:
        tensors = {"example": result.example, "step": result.step}
        tensors.update({f"m.{n}": v for n, v in result.per_step.items()})
        tensors.update({f"r.{n}": v for n, v in result.random_per_step.items()})
        meta.update(info=result.info, random=sorted(result.random_per_step))
    path.parent.mkdir(parents=True, exist_ok=True)
    serialization.write(path, meta, tensors, durable=True)


def evaluate_split(
    model: Any,
    steps: EvalSteps,
    metrics: Sequence[str],
    *,
    folder: Path,
    k: float | int = 20.0,
    seed: int = DEFAULT_SEED,
    n_bootstrap: int = 1000,
    processes: Processes | None = None,
) -> EvaluationResult:
    """:func:`evaluate_steps` with the examples split over the processes (see the module docstring)."""
    t0 = time.perf_counter()
    names = resolve_metrics(metrics)
    processes = processes or current_processes()
    path = _part(folder, processes)
    fingerprint = {"metrics": names, "k": float(k), "seed": int(seed), "steps": steps.num_steps}
    if path.is_file() and serialization.read(path)[0].get("fingerprint") != fingerprint:
        raise InvalidArgumentError(
            "out_dir",
            f"{str(path)!r} holds metrics of another evaluation (other metrics, k, seed or steps)",
            "repeat the same call to resume it, or pass a new or empty folder",
        )
    if not path.is_file():
        share = rank_share(steps.num_examples, processes.rank, processes.world)
        sub = subset_steps(steps, share)
        result = None
        if sub.num_steps:
            result = evaluate_steps(model, sub, names, k=k, seed=seed, n_bootstrap=n_bootstrap)
        _write_part(path, result, names, fingerprint)
    processes.barrier()
    parts = [
        serialization.read(_part(folder, Processes(r, processes.world, processes.device)))
        for r in range(processes.world)
    ]
    example = torch.cat([t["example"] for _, t in parts]).long()
    step = torch.cat([t["step"] for _, t in parts]).long()
    order = torch.sort(example * (int(step.max()) + 1 if step.numel() else 1) + step, stable=True).indices
    per_step = {n: torch.cat([t[f"m.{n}"] for _, t in parts if f"m.{n}" in t])[order] for n in names}
    random_names = sorted({n for meta, _ in parts for n in meta["random"]})
    random = {n: torch.cat([t[f"r.{n}"] for _, t in parts if f"r.{n}" in t])[order] for n in random_names}
    example, step = example[order], step[order]
    summary = {
        n: summarize(
            per_example_means(per_step[n], example),
            per_example_means(random[n], example) if n in random else None,
            METRICS[n].summary,
            n_bootstrap,
            seed,
        )
        for n in names
    }
    infos = [meta["info"] for meta, _ in parts if meta["info"] is not None]
    info = {
        **(infos[0] if infos else {"model": model.name, "metrics": names, "k": float(k), "seed": int(seed)}),
        "steps": int(example.shape[0]),
        "examples": int(example.unique().numel()),
        "rows": sum(int(i["rows"]) for i in infos),
        "seconds": time.perf_counter() - t0,
        "processes": processes.world,
    }
    return EvaluationResult(per_step, random, example, step, summary, info)
