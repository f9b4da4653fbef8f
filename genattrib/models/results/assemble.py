"""The last step of :meth:`AttributionModel.attribute`: engine results → a typed output.

Tokens are decoded once here, for people (the ids stay the ground truth); chat prompts get a
role per token; the provenance records what produced the scores.

Example:
    >>> from genattrib.engine import EngineResult, build_jobs
    >>> from genattrib.generation import GenerationTrace
    >>> trace = GenerationTrace(torch.tensor(tokenizer("The capital of")["input_ids"]), torch.tensor([7]))
    >>> [job] = build_jobs([trace])
    >>> result = EngineResult(torch.zeros(1, trace.input_ids.shape[0]))
    >>> seq = assemble_sequence(tokenizer, "The capital of", trace, job, result)
    >>> seq.tokens[-1] == tokenizer.decode([7]), seq.prompt_length == trace.prompt_length
    (True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.engine import EngineResult, ModelForward, SequenceJob, step_score_rules
from genattrib.generation import GenerationTrace
from genattrib.models.model_parts import ModelParts, special_ids
from genattrib.models.options import inputs as inp
from genattrib.models.options.explain_units import describe_explain
from genattrib.models.options.request import AttributionRequest
from genattrib.models.results.token_text import decode_tokens
from genattrib.output import FeatureAttributionOutput, Provenance, SequenceAttribution
from genattrib.output.provenance import library_versions
from genattrib.targets.merge_rules import STEP_RULES


def _per_row(values: Float[Tensor, " generated"], job: SequenceJob, rule: str) -> Float[Tensor, " row"]:
    """A generated-token step score for each explained row: the token's own value, or the values
    of a unit's tokens merged by the score's ``rule`` (``logprob`` sums, ``probability`` multiplies)."""
    if job.units is None:
        return values[job.step_start : job.step_stop].clone()
    p = job.prompt_length
    merged = [STEP_RULES[rule](values[a - p : b - p]) for a, b in job.units]
    return torch.stack(merged) if merged else values[:0].clone()


def group_spans(groups: Int[Tensor, " position"]) -> list[tuple[int, int]]:
    """The ``[start, stop)`` runs of positions sharing a source unit (``-1``: none).

    Example:
        >>> group_spans(torch.tensor([0, 0, 1, -1, 2, 2]))
        [(0, 2), (2, 3), (4, 6)]
    """
    spans: list[tuple[int, int]] = []
    values = groups.tolist()
    for k, g in enumerate(values):
        if g < 0:
            continue
        if spans and values[k - 1] == g and spans[-1][1] == k:
            spans[-1] = (spans[-1][0], k + 1)
        else:
            spans.append((k, k + 1))
    return spans


def assemble_sequence(
    tokenizer: object,
    prompt: inp.Prompt,
    trace: GenerationTrace,
    job: SequenceJob,
    result: EngineResult,
    rules: Mapping[str, str] | None = None,
) -> SequenceAttribution:
    """One sequence's scores with its tokens, roles and step scores (``rules``: how each step
    score merges over a unit's tokens, for unit rows)."""
    rules = rules or {}
    ids = trace.input_ids
    tokens = decode_tokens(tokenizer, ids.tolist())
    roles = None if isinstance(prompt, str) else inp.chat_token_roles(prompt, tokens, trace.prompt_length)
    steps = {k: _per_row(v, job, rules.get(k, "sum")) for k, v in trace.step_scores.items()}
    steps.update(result.step_scores)
    return SequenceAttribution(
        input_ids=ids,
        tokens=tokens,
        prompt_length=trace.prompt_length,
        token_roles=roles,
        scores=result.scores,
        step_scores=steps,
        held_fixed=job.held_fixed.clone(),
        special_tokens_mask=torch.isin(ids, torch.tensor(special_ids(tokenizer), dtype=ids.dtype)),  # if attributed too
        granular_scores=result.granular_scores,
        step_start=job.step_start,
        target_spans=None if job.units is None else list(job.units),
        source_spans=None if job.source_groups is None else group_spans(job.source_groups),
        generated_text=tokenizer.decode(trace.generated_ids.tolist(), skip_special_tokens=True),
    )


def work_of(forward: ModelForward) -> dict[str, int]:
    """The work counters of the call's :class:`~genattrib.engine.ModelForward` (``provenance.work``)."""
    return {
        "rows": forward.rows_run,
        "grad_rows": forward.grad_rows_run,
        "backward_rows": forward.backward_rows_run,
        "model_calls": forward.model_calls,
        "max_chunk_rows": forward.max_chunk_rows,
        "oom_retries": forward.oom_retries,
    }


def provenance_of(
    model: ModelParts, request: AttributionRequest, timings: dict[str, float], forward: ModelForward | None = None
) -> Provenance:
    """Model, method and parameters, target function, generation settings, seed, versions, and the
    work ``forward`` counted (none without it)."""
    params = request.attributor.params.to_dict()
    if request.baseline is not None:
        params["baseline"] = request.baseline.describe()
    device_map = getattr(model.model, "hf_device_map", None) or model.device_map
    if device_map is not None and not isinstance(device_map, dict):
        device_map = {"": device_map}
    forced = request.forced_ids is not None
    return Provenance(
        model_name=model.name,
        model_revision=model.revision,
        model_class=type(model.model).__name__,
        dtype=str(model.dtype).replace("torch.", ""),
        devices=model.devices,
        device_map={str(k): str(v) for k, v in device_map.items()} if device_map else None,
        method=request.attributor.name,
        method_params=params,
        attributed_fn=request.attributed_fn.name,
        attributed_fn_used=request.attributor.traits.explains_attributed_fn,
        explain=describe_explain(request.explain),
        step_scores=sorted(request.step_functions),
        step_score_rules=step_score_rules(request.attributor, request.step_functions),
        generation_config={} if forced else request.generation_config.to_diff_dict(),
        forced_target=forced,
        seed=request.run_seed,
        versions=library_versions(),
        timings=timings,
        work={} if forward is None else work_of(forward),
    )


def assemble_output(
    model: ModelParts,
    request: AttributionRequest,
    traces: Sequence[GenerationTrace],
    jobs: Sequence[SequenceJob],
    results: Sequence[EngineResult],
    timings: dict[str, float],
    forward: ModelForward,
) -> FeatureAttributionOutput:
    """The :class:`FeatureAttributionOutput` of one ``attribute()`` call."""
    rules = step_score_rules(request.attributor, request.step_functions)
    sequences = [
        assemble_sequence(model.tokenizer, prompt, trace, job, result, rules)
        for prompt, trace, job, result in zip(request.prompts, traces, jobs, results)
    ]
    return FeatureAttributionOutput(sequences, provenance_of(model, request, timings, forward))
