"""Occlusion (leave-one-out): ``F(x) - F(x with position i replaced by the baseline)``.

Forward passes only. A causal model lets one occluded copy of a sequence score every target
of that sequence at once, so the cost is one row per source position, not per (target,
position) pair. With ``sources=`` whole source units are occluded at once: U units cost U + 1
rows for every target of the sequence (a unit's score is shared evenly among its positions).

Example:
    >>> out = model.attribute("The capital of France is", method="occlusion", max_new_tokens=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.methods.source_units import ablate, ablation_units, spread
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
    ablates_source_units = True
    step_score_merge = {"target_value": "sum"}  # F of the unoccluded input, summed like the rows it explains

    def rows_per_target(self, length: int) -> int:
        return length

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        x, base = batch.input_embeds[0], batch.baseline_embeds[0]
        targets = batch.targets()
        members = ablation_units(batch)
        original = forward.values(x.unsqueeze(0), targets.shared(1), attributed_fn)[0]
        effects = torch.zeros(batch.num_rows, int(members.shape[0]), dtype=torch.float32)
        chunk = max(1, forward.rows_per_chunk(batch.length, grad=False, n_logits=batch.num_rows * targets.slots))
        for start in range(0, int(members.shape[0]), chunk):
            rows = ablate(x, base, members[start : start + chunk])
            occluded = forward.values(rows, targets.shared(rows.shape[0]), attributed_fn)
            effects[:, start : start + rows.shape[0]] = (original.unsqueeze(0) - occluded).T.cpu()
        return MethodOutput(spread(effects, members, batch.target_positions), {"target_value": original})
