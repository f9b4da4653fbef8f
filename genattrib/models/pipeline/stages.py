"""The steps ``attribute()`` and ``estimate()`` share: prepare → generate → plan → run → assemble.

* :func:`prepare_call` checks the options and makes the :class:`Call` (the validated request, the
  storage options and the per-call :class:`~genattrib.engine.ModelForward`);
* :func:`generate` writes (or forces) the continuations;
* :func:`plan` turns them into the engine's jobs (explained units, source units, held-fixed tokens);
* :func:`run` attributes the jobs, and :func:`attribute_call` assembles the result.

``estimate()`` runs :func:`prepare_call` and :func:`plan` on assumed continuations
(:mod:`genattrib.models.pipeline.estimate`) and costs the plan instead of running it.

Example:
    >>> call = prepare_call(model.parts, "The capital of France is", " Paris", None, AttributeOptions())  # " Par", "is"
    >>> [job.num_rows for job in plan(call, generate(call))]
    [2]
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genattrib.engine import (
    EngineResult,
    ModelForward,
    SequenceJob,
    build_jobs,
    eval_mode,
    resolve_keep_granular,
    run_attribution,
    teacher_forced_step_scores,
)
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.generation import GenerationTrace, generate_traces
from genattrib.models.model_parts import ModelParts
from genattrib.models.options import inputs as inp
from genattrib.models.options.attribute_options import AttributeOptions
from genattrib.models.options.explain_units import structure_positions, unit_spans
from genattrib.models.options.request import AttributionRequest, continuation_argument, prepare_request
from genattrib.models.options.sources import source_spans
from genattrib.models.pipeline import seq2seq_steps as seq2seq
from genattrib.models.pipeline.contrast_stage import with_contrast_inputs
from genattrib.models.results.assemble import assemble_output
from genattrib.models.results.convergence import warn_if_unconverged
from genattrib.models.results.storage import (
    StorageOptions,
    open_stream,
    plan_stream,
    record_storage,
    resume_hint,
    storage_options,
)
from genattrib.models.results.token_text import decode_tokens
from genattrib.output import FeatureAttributionOutput
from genattrib.validation import check_positive_int


@dataclass(frozen=True)
class Call:
    """One checked ``attribute()``/``estimate()`` call: what it reads of the model, the validated
    request, the storage options, and the :class:`~genattrib.engine.ModelForward` that runs it
    (and counts its work: it is the one mutable piece, made per call)."""

    parts: ModelParts
    request: AttributionRequest
    storage: StorageOptions
    forward: ModelForward


def prepare_call(
    parts: ModelParts, inputs: str | Sequence[Any], continuation: object, target: object, options: AttributeOptions
) -> Call:
    """Check every option (before any heavy work) and make the :class:`Call`."""
    storage = storage_options(options)
    forced, forced_name = continuation_argument(continuation, target)
    check_positive_int("max_rows", options.max_rows, "max_rows=64, or None to size chunks from memory", optional=True)
    runner = EncoderDecoderForward if parts.is_encoder_decoder else ModelForward
    forward = runner(parts.model, max_rows=options.max_rows or parts.max_rows, probed=parts.probed)
    request = prepare_request(parts, forward, inputs, forced, options, continuation_name=forced_name)
    return Call(parts, request, storage, forward)


def teacher_forced(request: AttributionRequest) -> bool:
    """Whether step scores are computed after generation rather than recorded during it: for a
    contrast (it needs the contrast tokens or the contrast input's predictions), for MC-dropout
    passes, and for beam search (a step's beams are reordered later, so what was recorded for row
    ``i`` need not belong to the returned sequence ``i``)."""
    return (
        request.needs_contrast
        or request.has_contrast_input
        or any(t.noisy_passes for t in request.step_functions.values())
        or int(request.generation_config.num_beams or 1) > 1
    )


def generate(call: Call) -> list[GenerationTrace]:
    """Generate (recording step scores on the way), or wrap the forced continuations."""
    request = call.request
    if call.parts.is_encoder_decoder:
        return seq2seq.generate(call.parts, request)
    if request.forced_ids is not None:
        return [GenerationTrace(p, f, forced=True) for p, f in zip(request.prompt_ids, request.forced_ids)]
    return generate_traces(
        call.parts.model,
        request.prompt_ids,
        generation_config=request.generation_config,
        step_functions={} if teacher_forced(request) else request.step_functions,
        batch_size=request.batch_size,
        seed=request.seed,
        tokenizer=call.parts.tokenizer,
        show_progress=request.show_progress,
    )


def explained_spans(
    parts: ModelParts, request: AttributionRequest, traces: Sequence[GenerationTrace]
) -> tuple[list | None, list | None]:
    """(the explained units of every trace, or ``None`` for tokens; the source units of every
    trace, or ``None`` when ``sources`` was not given)."""
    if request.explain == "tokens" and request.sources is None:
        return None, None
    special = torch.tensor(parts.special_ids, dtype=torch.long)
    units, sources = [], []
    for prompt, trace in zip(request.prompts, traces):
        ids = trace.input_ids
        specials = torch.isin(ids, special)
        mask = torch.zeros_like(specials) if request.keep_special else specials
        steps = range(int(trace.generated_ids.shape[0]))[request.steps]
        tokens = decode_tokens(parts.tokenizer, ids.tolist())
        roles = None if isinstance(prompt, str) else inp.chat_token_roles(prompt, tokens, trace.prompt_length)
        structure = structure_positions(specials, roles)  # never a unit of its own
        units.append(unit_spans(request.explain, tokens, trace.prompt_length, mask, steps, structure))
        if request.sources is not None:
            include, length = request.sources_include_generated, trace.prompt_length
            sources.append(source_spans(request.sources, tokens, length, mask, include, roles, specials))
    return (None if request.explain == "tokens" else units), (sources if request.sources is not None else None)


def plan(call: Call, traces: Sequence[GenerationTrace], contrast: Sequence[Tensor] | None = None) -> list[SequenceJob]:
    """The engine's jobs for the continuations: rows, explained and source units, held-fixed tokens
    (``contrast``: each trace's contrast ids, the request's ``contrast_ids`` by default)."""
    request = call.request
    units, sources = explained_spans(call.parts, request, traces)
    jobs = build_jobs(
        list(traces),
        call.parts.special_ids,
        request.steps,
        request.contrast_ids if contrast is None else contrast,
        request.keep_special,
        units,
        sources,
    )
    if call.parts.is_encoder_decoder:
        seq2seq.hold_target_prefix(jobs, request.options.attribute_prefix)
    return jobs


def keep_granular(call: Call, jobs: Sequence[SequenceJob]) -> bool:
    """Whether this call keeps granular scores (see :func:`~genattrib.engine.resolve_keep_granular`)."""
    request, storage = call.request, call.storage
    return resolve_keep_granular(
        request.attributor,
        list(jobs),
        call.forward.hidden_size,
        request.keep_granular,
        storage.granular_budget_mb,
        storage.top_k_scores,
    )


def add_step_scores(call: Call, traces: Sequence[GenerationTrace], jobs: Sequence[SequenceJob]) -> None:
    """Step scores that generation did not record (forced, contrastive or beam-search runs), teacher-forced."""
    request = call.request
    if isinstance(call.forward, EncoderDecoderForward):
        seq2seq.step_scores(call.forward, request, traces, jobs)
        return
    if request.step_functions and (request.forced_ids is not None or teacher_forced(request)):
        scores_of = teacher_forced_step_scores(call.forward, list(jobs), request.step_functions, seed=request.run_seed)
        for trace, scores in zip(traces, scores_of):
            trace.step_scores = scores


def run(call: Call, jobs: Sequence[SequenceJob], keep: bool, sink: Any, done: set[tuple[int, int]]) -> list:
    """Attribute every row of ``jobs`` not in ``done`` (rows a stream already holds)."""
    request, storage = call.request, call.storage
    if isinstance(call.forward, EncoderDecoderForward):
        return seq2seq.run(call.forward, request, jobs, keep, storage.top_k_scores, sink, done)
    return run_attribution(
        call.forward,
        request.attributor,
        request.attributed_fn,
        list(jobs),
        request.baseline,
        request.run_seed,
        keep,
        request.show_progress,
        request.batch_size,
        top_k=storage.top_k_scores,
        granular_budget_mb=storage.granular_budget_mb,
        sink=sink,
        done=done,
    )


def attribute_call(call: Call, t0: float) -> FeatureAttributionOutput:
    """Run a prepared call through every step (``t0``: when the call started, for the timings)."""
    writer = open_stream(call.parts, call.request, call.storage)
    timings = {"validate": time.perf_counter() - t0}
    with resume_hint(writer), eval_mode(call.parts.model):
        with _timed(timings, "generate"):
            traces = generate(call)
        with _timed(timings, "contrast"):
            request, contrast = with_contrast_inputs(call.forward, call.request, traces)
            call = dataclasses.replace(call, request=request)
        jobs = plan(call, traces, contrast)
        keep = keep_granular(call, jobs)
        done = plan_stream(writer, jobs, keep, call.forward.hidden_size, call.storage.top_k_scores)
        with _timed(timings, "step_scores"):
            add_step_scores(call, traces, jobs)
        with _timed(timings, "attribute"):
            results: list[EngineResult] = run(call, jobs, keep, writer, done)
    out = assemble_output(call.parts, call.request, traces, jobs, results, timings, call.forward)
    if call.parts.is_encoder_decoder:
        seq2seq.mark_sides(out.sequences, traces)
    warn_if_unconverged(out, call.request.attributor)
    out.provenance.timings["total"] = time.perf_counter() - t0
    return record_storage(out, call.storage, keep, writer)


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - start
