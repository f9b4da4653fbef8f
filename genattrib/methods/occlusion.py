"""Occlusion (leave-one-out): ``F(x) - F(x with position i replaced by the baseline)``.

Forward passes only. A causal model lets one occluded copy of a sequence score every target
of that sequence at once, so the cost is one row per source position, not per (target,
position) pair.

Example:
    >>> out = model.attribute("The capital of France is", method="occlusion", max_new_tokens=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.targets import TargetFunction


@dataclass
class OcclusionParams(MethodParams):
    baseline: Any = None


class Occlusion(Attributor):
    name = "occlusion"
    description = "leave-one-out: drop in the target when a token is replaced by the baseline (forward only)"
    Params = OcclusionParams
    needs_gradients = False
    uses_baseline = True
    group_by_sequence = True
    step_score_merge = {"target_value": "sum"}  # F of the unoccluded input, summed like the rows it explains

    def rows_per_target(self, length: int) -> int:
        return length

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        x, base = batch.input_embeds[0], batch.baseline_embeds[0]
        length, n = batch.length, batch.num_rows
        special = batch.special_mask[0]
        positions = [i for i in range(length) if not bool(special[i])]
        targets = batch.targets()
        original = forward.values(x.unsqueeze(0), targets.shared(1), attributed_fn)[0]
        scores = torch.zeros(n, length, dtype=torch.float32, device=original.device)
        chunk = max(1, forward.rows_per_chunk(length, grad=False, n_logits=n * targets.slots))
        for start in range(0, len(positions), chunk):
            block = positions[start : start + chunk]
            rows = x.unsqueeze(0).repeat(len(block), 1, 1)
            index = torch.arange(len(block), device=x.device)
            cols = torch.tensor(block, device=x.device)
            rows[index, cols] = base[cols]
            r = len(block)
            occluded = forward.values(rows, targets.shared(r), attributed_fn)
            scores[:, cols.to(scores.device)] = (original.unsqueeze(0) - occluded).T
        return MethodOutput(scores, {"target_value": original})
