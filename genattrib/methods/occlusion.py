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

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.methods.kinds import Perturbation, PerturbationTraits
from genattrib.methods.registration import register_method
from genattrib.methods.source_units import ablated_values, ablation_units, spread
from genattrib.targets import TargetFunction


@dataclass
class OcclusionParams(MethodParams):
    baseline: Any = None


@register_method
class Occlusion(Perturbation):
    name = "occlusion"
    description = "leave-one-out: drop in the target when a token is replaced by the baseline (forward only)"
    Params = OcclusionParams
    traits = PerturbationTraits(
        copies_score_every_target=True,
        step_score_merge={"target_value": "sum"},  # F of the unoccluded input, summed like the rows it explains
    )

    def rows_per_target(self, length: int) -> int:
        return length

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        members = ablation_units(batch)
        clean = torch.zeros(1, batch.length, dtype=torch.bool)  # sample 0 drops nothing: F(x)
        values = ablated_values(batch, forward, attributed_fn, torch.cat([clean, members]))
        original, effects = values[0], (values[:1] - values[1:]).T
        return MethodOutput(
            spread(effects, members, batch.target_positions), {"target_value": original.to(forward.head_device)}
        )
