"""Step scores computed teacher-forced (for forced continuations or contrast targets), and the
rule each step score of a run merges with (recorded in ``provenance.step_score_rules``).

One forward row per sequence gives the logits at every generated position at once; rows run in
chunks under the engine's out-of-memory back-off.

Example:
    >>> from genattrib.targets import resolve_target
    >>> jobs = [SequenceJob(out.sequences[0].input_ids, prompt_length=6, step_start=0, step_stop=3)]
    >>> wanted = {"probability": resolve_target("probability")}
    >>> scores = teacher_forced_step_scores(ModelForward(hf_model), jobs, wanted)
    >>> scores[0]["probability"].shape
    torch.Size([3])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from jaxtyping import Float
from torch import Tensor, nn

from genattrib.engine.contract import Attributor
from genattrib.engine.forward import ModelForward
from genattrib.engine.row_refs import SequenceJob
from genattrib.targets import TargetContext, TargetFunction


def teacher_forced_step_scores(
    forward: ModelForward,
    jobs: list[SequenceJob],
    targets: dict[str, TargetFunction],
    chunk: int = 256,
    seed: int = 0,
) -> list[dict[str, Float[Tensor, " generated"]]]:
    """For each job, every target's value at every generated position (not only explained ones).

    A target with ``noisy_passes`` (``mc_dropout_prob_avg``) runs :func:`mc_dropout_step_scores`
    with ``seed``.

    Sequences run as right-padded rows (a causal model ignores the padding after them), longest
    first, in chunks through :meth:`ModelForward.run_chunked`: sized to the memory budget, and
    halved when a chunk runs out of memory. The LM head runs on ``chunk`` positions at a time.
    """
    results = [{name: torch.empty(int(job.input_ids.shape[0]) - job.prompt_length) for name in targets} for job in jobs]
    noisy = {name: t for name, t in targets.items() if t.noisy_passes}
    targets = {name: t for name, t in targets.items() if not t.noisy_passes}
    for name, target in noisy.items():
        for job, out in zip(jobs, results):
            out[name] = mc_dropout_step_scores(forward, job, target, seed)
    todo = sorted(
        (j for j, job in enumerate(jobs) if int(job.input_ids.shape[0]) > job.prompt_length and targets),
        key=lambda j: -int(jobs[j].input_ids.shape[0]),
    )
    if not todo:
        return results
    lengths = [int(jobs[j].input_ids.shape[0]) for j in todo]

    def run(rows: slice) -> None:
        members = todo[rows]
        ids = torch.zeros(len(members), lengths[rows.start], dtype=torch.long)
        for i, j in enumerate(members):
            ids[i, : lengths[rows.start + i]] = jobs[j].input_ids
        hidden = forward.hidden_states(forward.embed(ids))
        for i, j in enumerate(members):
            _score_job(forward, jobs[j], hidden[i], targets, results[j], chunk)

    width = max(int(jobs[j].input_ids.shape[0]) - jobs[j].prompt_length for j in todo)
    forward.run_chunked(len(todo), lengths[0], run, grad=False, n_logits=min(chunk, width))
    return results


def _score_job(
    forward: ModelForward,
    job: SequenceJob,
    hidden: Float[Tensor, "position hidden"],
    targets: dict[str, TargetFunction],
    out: dict[str, Tensor],
    chunk: int,
) -> None:
    """Every target at every generated position of ``job``, from its row's last hidden states."""
    n_gen = int(job.input_ids.shape[0]) - job.prompt_length
    for start in range(0, n_gen, chunk):
        stop = min(n_gen, start + chunk)
        pos = torch.arange(job.prompt_length + start, job.prompt_length + stop)
        logits = forward.head_logits(hidden[(pos - 1).to(hidden.device)])
        ctx = TargetContext(
            logits,
            job.input_ids[pos].to(logits.device),
            None if job.contrast_ids is None else job.contrast_ids[start:stop].to(logits.device),
        )
        for name, target in targets.items():
            out[name][start:stop] = target(ctx).float().cpu()


@contextlib.contextmanager
def dropout_on(model: nn.Module, on: bool = True) -> Iterator[None]:
    """Every module in training mode (dropout active; ``on=False``: in eval mode) for the block; each
    module's own mode is restored afterwards, also when the block raises."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.train(on)
        yield
    finally:
        for module, training in modes:
            module.training = training


def mc_dropout_step_scores(
    forward: ModelForward, job: SequenceJob, target: TargetFunction, seed: int
) -> Float[Tensor, " generated"]:
    """``target`` at every generated position of ``job`` with ``target.noisy_passes`` dropout
    passes (``ctx.noisy_logits``) beside the clean one (in eval mode); the passes draw their dropout masks from
    ``seed`` (torch's global generator is forked, so the caller's random state is untouched).
    """
    n_gen = int(job.input_ids.shape[0]) - job.prompt_length
    if n_gen <= 0:
        return torch.empty(0)
    ids = job.input_ids.long()[None]
    positions = torch.arange(job.prompt_length, int(ids.shape[1]))

    def logits() -> Tensor:
        hidden = forward.hidden_states(forward.embed(ids))[0]
        return forward.head_logits(hidden[(positions - 1).to(hidden.device)]).float()

    with torch.no_grad():
        with dropout_on(forward.model, False):
            clean = logits()
        devices = [forward.input_device] if forward.input_device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), dropout_on(forward.model):
            torch.manual_seed(seed)
            noisy = torch.stack([logits() for _ in range(target.noisy_passes)])
    contrast = None if job.contrast_ids is None else job.contrast_ids.to(clean.device)
    ctx = TargetContext(clean, ids[0, positions].to(clean.device), contrast, None, noisy)
    return target(ctx).float().cpu()


def step_score_rules(attributor: Attributor, step_functions: Mapping[str, TargetFunction]) -> dict[str, str]:
    """The merge rule of every step score a run can hold: each requested target's ``merge`` and
    each score the method declares (``MethodTraits.step_score_merge``); the method's win on a
    shared name, as its scores replace the target's in the result.

    Example:
        >>> from genattrib.methods import get_method
        >>> from genattrib.targets import resolve_target
        >>> step_score_rules(get_method("lime"), {"probability": resolve_target("probability")})
        {'probability': 'product', 'lime_score': 'none'}
    """
    return {**{name: target.merge for name, target in step_functions.items()}, **attributor.traits.step_score_merge}
