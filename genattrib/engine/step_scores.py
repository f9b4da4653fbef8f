"""Step scores computed teacher-forced (for forced continuations or contrast targets), and the
rule each step score of a run merges with (recorded in ``provenance.step_score_rules``).

One forward per sequence gives the logits at every generated position at once.

Example:
    >>> from genattrib.targets import resolve_target
    >>> jobs = [SequenceJob(out.sequences[0].input_ids, prompt_length=6, step_start=0, step_stop=3)]
    >>> wanted = {"probability": resolve_target("probability")}
    >>> scores = teacher_forced_step_scores(ModelForward(hf_model), jobs, wanted)
    >>> scores[0]["probability"].shape
    torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.engine.contract import Attributor
from genattrib.engine.forward import ModelForward
from genattrib.engine.plan import SequenceJob
from genattrib.targets import TargetContext, TargetFunction


def teacher_forced_step_scores(
    forward: ModelForward, jobs: list[SequenceJob], targets: dict[str, TargetFunction], chunk: int = 256
) -> list[dict[str, Float[Tensor, " generated"]]]:
    """For each job, every target's value at every generated position (not only explained ones)."""
    results = []
    for job in jobs:
        ids = job.input_ids.unsqueeze(0)
        n_gen = int(ids.shape[1]) - job.prompt_length
        out = {name: torch.empty(n_gen) for name in targets}
        if n_gen == 0 or not targets:
            results.append(out)
            continue
        with torch.no_grad():
            hidden = forward.hidden_states(forward.embed(ids))[0]
            for start in range(0, n_gen, chunk):
                stop = min(n_gen, start + chunk)
                pos = torch.arange(job.prompt_length + start, job.prompt_length + stop)
                logits = forward.head_logits(hidden[pos - 1])
                ctx = TargetContext(
                    logits,
                    job.input_ids[pos].to(logits.device),
                    None if job.contrast_ids is None else job.contrast_ids[start:stop].to(logits.device),
                )
                for name, target in targets.items():
                    out[name][start:stop] = target(ctx).float().cpu()
        results.append(out)
    return results


def step_score_rules(attributor: Attributor, step_targets: Mapping[str, TargetFunction]) -> dict[str, str]:
    """The merge rule of every step score a run can hold: each requested target's ``merge`` and
    each score the method declares (``Attributor.step_score_merge``); the method's win on a
    shared name, as its scores replace the target's in the result.

    Example:
        >>> from genattrib.methods import get_method
        >>> from genattrib.targets import resolve_target
        >>> step_score_rules(get_method("lime"), {"probability": resolve_target("probability")})
        {'probability': 'product', 'lime_score': 'none'}
    """
    return {**{name: target.merge for name, target in step_targets.items()}, **attributor.step_score_merge}
