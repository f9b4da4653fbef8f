"""RPI's ``selection="best:<metric>"``: per target, keep the candidate map that scores best on a
faithfulness metric (the paper's per-example oracle pick; it peeks at the metric, so numbers
measured with the same metric afterwards are optimistic).

Example:
    >>> settings = dict(num_samples=4, n_steps=5, max_new_tokens=1)
    >>> out = model.attribute(prompt, method="rpi", selection="best:soft_ns", **settings)
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.engine.contract import RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.faithfulness.context import EvalContext
from genattrib.faithfulness.metrics import METRICS, MetricOptions
from genattrib.faithfulness.steps import EvalSteps


def best_candidates(
    candidates: Float[Tensor, "row sample position"],
    batch: RowBatch,
    forward: ModelForward,
    metric: str,
    baseline_id: int | None,
) -> Float[Tensor, "row position"]:
    """For each row, the candidate with the best value of ``metric`` (ties and NaN: the earliest)."""
    rows, samples, _ = candidates.shape
    prefixes, scores, special, targets, example = [], [], [], [], []
    for r in range(rows):
        p = int(batch.target_positions[r])
        for s in range(samples):
            prefixes.append(batch.input_ids[r, :p].cpu())
            scores.append(candidates[r, s, :p].detach().float().cpu())
            special.append(batch.held_fixed[r, :p].cpu())
            targets.append(int(batch.target_ids[r]))
            example.append(r)
    steps = EvalSteps(
        prefixes, scores, special, torch.tensor(targets), torch.tensor(example), torch.arange(samples).repeat(rows)
    )
    spec = METRICS[metric]
    ctx = EvalContext(
        forward, steps, 0 if baseline_id is None else baseline_id, batch.seed, keep_distributions=spec.uses_distribution
    )
    values, _ = spec.compute(ctx, MetricOptions(random_baseline=False))  # no summary: no random baseline
    values = values.reshape(rows, samples).float()
    worst = float("inf") if spec.lower_is_better else float("-inf")
    values = torch.where(values.isnan(), torch.full_like(values, worst), values)
    pick = values.argmin(1) if spec.lower_is_better else values.argmax(1)
    return candidates[torch.arange(rows, device=candidates.device), pick.to(candidates.device)]
