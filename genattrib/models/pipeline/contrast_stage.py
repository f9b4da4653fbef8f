"""Contrast inputs of a call (``contrast_prompt=``/``contrast_continuation=``): after the
continuations are known, run the contrast sequences once and bind every target function of the
request to their predictions (:mod:`genattrib.engine.contrast_inputs`).

The generated positions align 1:1 from the end with the contrast sequence (Inseq's default): step
``i`` of the continuation with step ``i`` of the contrast continuation (the continuation itself
unless ``contrast_continuation=`` is given) when the two have the same length.

On an encoder-decoder model the contrast prompt is a contrast *source* (Inseq's
``contrast_sources``): each contrast sequence runs through the encoder with its own source length,
and the contrast continuation (Inseq's ``contrast_targets``) is a target, which must have at least
as many tokens as the continuation (the alignment never reaches into the source).

Example:
    >>> from genattrib.models.options.attribute_options import AttributeOptions
    >>> from genattrib.models.pipeline.stages import generate, prepare_call
    >>> call = prepare_call(model.parts, "Paris is in France. Paris is", " in", None,
    ...                     AttributeOptions(contrast_prompt="Paris is", step_scores=["pcxmi"]))
    >>> request, keys = with_contrast_inputs(call.forward, call.request, generate(call))
    >>> keys[0].tolist() == list(range(len(keys[0]))), request.attributed_fn.name
    (True, 'logprob')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from genattrib.engine.contrast_inputs import (
    ContrastSequence,
    aligned_positions,
    bind_contrast,
    contrast_table,
    right_aligned,
)
from genattrib.engine.forward import ModelForward
from genattrib.engine.jobs import contrast_per_step
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.generation import GenerationTrace
from genattrib.models.options.request import AttributionRequest
from genattrib.models.options.seq2seq_inputs import check_contrast_target_covers


def with_contrast_inputs(
    forward: ModelForward, request: AttributionRequest, traces: Sequence[GenerationTrace]
) -> tuple[AttributionRequest, list[Int[Tensor, " _generated"]] | None]:
    """(the request with its target functions bound to the contrast predictions, the row key of
    every step of every trace to pass to the jobs as contrast ids); without a contrast input the
    request as it is and its ``contrast_ids``."""
    if not request.has_contrast_input:
        return request, request.contrast_ids
    sequences = []
    alignments = request.options.contrast_alignments
    for i, trace in enumerate(traces):
        n = int(trace.generated_ids.shape[0])
        prompt = request.prompt_ids[i] if request.contrast_prompt_ids is None else request.contrast_prompt_ids[i]
        continuation = (
            trace.generated_ids if request.contrast_continuation_ids is None else request.contrast_continuation_ids[i]
        )
        ids = torch.cat([prompt.long(), continuation.long()])
        seq2seq = isinstance(forward, EncoderDecoderForward)
        source = int(prompt.shape[0]) - 1 if seq2seq else None  # the contrast source: its ids, then the decoder start
        lengths = (trace.prompt_length + n, trace.prompt_length, int(ids.shape[0]))
        alignment = None if alignments is None else alignments[i]
        if alignment:  # indices count the decoder's tokens: from the decoder start on an encoder-decoder model
            offsets = (trace.prompt_length - 1, int(prompt.shape[0]) - 1) if seq2seq else (0, 0)
            positions = aligned_positions(alignment, *lengths, offsets=offsets)
        else:
            positions = right_aligned(*lengths)
        if seq2seq:  # a contrast position inside the source predicts nothing
            needed = positions[n - _needed(request, n) :]
            if needed.numel() and int(needed.min()) < int(prompt.shape[0]):  # only a step aligned from the end
                check_contrast_target_covers(int(continuation.shape[0]), _needed(request, n), n)
            positions = positions.clamp(min=int(prompt.shape[0]))  # steps neither attributed nor scored
        tokens = None if request.contrast_ids is None else contrast_per_step(request.contrast_ids[i], n)
        sequences.append(ContrastSequence(ids, positions, tokens, source))
    table = contrast_table(forward, sequences)
    bound = dataclasses.replace(
        request,
        attributed_fn=bind_contrast(request.attributed_fn, table, logits=request.options.contrast_force_inputs),
        step_functions={name: bind_contrast(t, table) for name, t in request.step_functions.items()},
    )
    return bound, table.keys


def _needed(request: AttributionRequest, generated: int) -> int:
    """The last steps an encoder-decoder contrast target must cover: all of them with step scores,
    else those from the first attributed step (the others read no contrast)."""
    attributed = range(generated)[request.steps]
    if request.step_functions or not attributed:
        return generated if request.step_functions else 0
    return generated - min(attributed)
