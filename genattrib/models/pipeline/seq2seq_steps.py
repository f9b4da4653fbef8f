"""The pipeline's steps for an encoder-decoder model (T5, BART, Marian, mT5, NLLB).

A sequence is ``source + [decoder start] + target`` (see :mod:`genattrib.engine.seq2seq_forward`);
the steps below differ from the decoder-only ones only where the source length matters: the
engine runs one sequence at a time inside :meth:`~genattrib.engine.seq2seq_forward.EncoderDecoderForward.encoding`
(its rows, many target steps each, still share every model call), generation runs the encoder
once per batch, step scores are computed teacher-forced, and without ``attribute_prefix=True``
the target prefix is held fixed (attributed to the source only, as Inseq does by default).

Example:
    >>> call = prepare_call(t5.parts, "The capital of France is", "Paris", None, AttributeOptions())  # doctest: +SKIP
    >>> [job.held_fixed[job.prompt_length - 1 :].all().item() for job in plan(call, generate(call))]  # doctest: +SKIP
    [True]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from torch import Tensor

from genattrib.engine import EngineResult, SequenceJob, run_attribution, teacher_forced_step_scores
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.generation import GenerationTrace
from genattrib.generation.seq2seq_generate import generate_seq2seq_traces
from genattrib.methods.layer_forward import SOURCE as SOURCE_LAYER
from genattrib.methods.layer_forward import scored_side
from genattrib.models.model_parts import ModelParts
from genattrib.models.options.request import AttributionRequest
from genattrib.output import SequenceAttribution
from genattrib.output.rows import MemorySink, RowBlock, RowSink, SequenceRows
from genattrib.output.scores import SparseScores
from genattrib.output.sequence import SOURCE_SIDE, TARGET_SIDE

SOURCE, TARGET = SOURCE_SIDE, TARGET_SIDE  # the side of each position, in ``seq.token_roles``


def source_length(job: SequenceJob | GenerationTrace) -> int:
    """Source (encoder) positions of a sequence: its prompt less the decoder start token."""
    return int(job.prompt_length) - 1


def generate(parts: ModelParts, request: AttributionRequest) -> list[GenerationTrace]:
    """The traces of a call: the forced targets, or generated ones (the encoder runs once per batch)."""
    if request.forced_ids is not None:
        return [GenerationTrace(p, f, forced=True) for p, f in zip(request.prompt_ids, request.forced_ids)]
    return generate_seq2seq_traces(
        parts.model, request.prompt_ids, request.generation_config, request.batch_size, request.seed
    )


def hold_target_prefix(jobs: Sequence[SequenceJob], attribute_prefix: bool | None) -> None:
    """Hold each job's target side fixed unless ``attribute_prefix`` (Inseq's ``attribute_target``)."""
    if attribute_prefix:
        return
    for job in jobs:
        job.held_fixed[source_length(job) :] = True


def step_scores(
    forward: EncoderDecoderForward,
    request: AttributionRequest,
    traces: Sequence[GenerationTrace],
    jobs: Sequence[SequenceJob],
) -> None:
    """Teacher-forced step scores of every trace (generation records none on these models)."""
    if not request.step_functions:
        return
    for trace, job in zip(traces, jobs):
        with forward.encoding(source_length(job)):
            [trace.step_scores] = teacher_forced_step_scores(forward, [job], request.step_functions)


class SideSink(RowSink):
    """The rows of one sequence, run alone (the engine calls it sequence 0), passed on to ``inner``
    as sequence ``sequence``: NaN on the side not attributed (positions ``start:stop``), then the
    top-k cells (``top_k``) kept, so the held-fixed prefix never enters a top-k row or a stream."""

    def __init__(self, inner: RowSink, sequence: int, span: tuple[int, int | None] | None, top_k: int | None) -> None:
        self.inner, self.sequence, self.span, self.top_k = inner, sequence, span, top_k

    def add(self, blocks: list[RowBlock]) -> None:
        for block in blocks:
            scores = block.scores
            if self.span is not None:
                for values in (scores, block.granular):
                    if isinstance(values, Tensor):
                        values[:, self.span[0] : self.span[1]] = float("nan")
            if self.top_k is not None and isinstance(scores, Tensor):
                scores = SparseScores.from_dense(scores, self.top_k)
            self.inner.add([dataclasses.replace(block, sequence=self.sequence, scores=scores)])

    def result(self, sequence: int = 0) -> SequenceRows:
        return self.inner.result(self.sequence)


def run(
    forward: EncoderDecoderForward,
    request: AttributionRequest,
    jobs: Sequence[SequenceJob],
    keep: bool,
    top_k: int | None,
    sink: RowSink | None = None,
    done: AbstractSet[tuple[int, int]] = frozenset(),
) -> list[EngineResult]:
    """Attribute every job, one sequence at a time (its source length set on ``forward``), into
    ``sink`` (a stream's writer; in memory by default), skipping the rows in ``done``."""
    results = []
    attributor = request.attributor
    side = scored_side(attributor.name, attributor.params, forward.model)  # a layer of one side scores that side only
    for j, job in enumerate(jobs):
        source = source_length(job)
        span: tuple[int, int | None] | None = None
        if not request.options.attribute_prefix or side == SOURCE_LAYER:
            span = (source, None)  # the target prefix was held fixed
        elif side is not None:
            span = (0, source)  # a decoder layer scores the prefix only
        shape = [(job.num_rows, int(job.input_ids.shape[0]))]
        rows = SideSink(MemorySink(shape, top_k) if sink is None else sink, 0 if sink is None else j, span, top_k)
        with forward.encoding(source):
            run_attribution(
                forward,
                request.attributor,
                request.attributed_fn,
                [job],
                request.baseline,
                request.run_seed,
                keep,
                request.show_progress,
                None,
                granular_budget_mb=request.options.granular_budget_mb,
                sink=rows,
                done={(0, row) for seq, row in done if seq == j},
            )
        results.append(EngineResult(*rows.result()))
    return results


def side_roles(length: int, source: int) -> list[str]:
    """``"source"`` for the encoder's positions, ``"target"`` for the decoder's (start token included).

    Example:
        >>> side_roles(5, 2)
        ['source', 'source', 'target', 'target', 'target']
    """
    return [SOURCE] * source + [TARGET] * (length - source)


def mark_sides(sequences: Sequence[SequenceAttribution], traces: Sequence[GenerationTrace]) -> None:
    """Record each sequence's sides in ``token_roles``."""
    for seq, trace in zip(sequences, traces):
        seq.token_roles = side_roles(int(trace.input_ids.shape[0]), source_length(trace))


__all__ = [
    "SOURCE",
    "TARGET",
    "SideSink",
    "generate",
    "hold_target_prefix",
    "mark_sides",
    "run",
    "side_roles",
    "step_scores",
]
