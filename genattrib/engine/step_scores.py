"""Step scores computed teacher-forced (for forced continuations or contrast targets).

One forward per sequence gives the logits at every generated position at once.

Example:
    >>> from genattrib.targets import resolve_target
    >>> jobs = [SequenceJob(out.sequences[0].input_ids, prompt_length=6, step_start=0, step_stop=3)]
    >>> scores = teacher_forced_step_scores(ModelForward(hf_model), jobs, {"probability": resolve_target("probability")})
    >>> scores[0]["probability"].shape
    torch.Size([3])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.engine.plan import SequenceJob
from genattrib.engine.forward import ModelForward
from genattrib.targets import TargetFunction, TargetContext


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
