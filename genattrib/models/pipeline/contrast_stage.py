"""Contrast inputs of a call (``contrast_prompt=``/``contrast_continuation=``): after the
continuations are known, run the contrast sequences once and bind every target function of the
request to their predictions (:mod:`genattrib.engine.contrast_inputs`).

The generated positions align 1:1 from the end with the contrast sequence (Inseq's default): step
``i`` of the continuation with step ``i`` of the contrast continuation (the continuation itself
unless ``contrast_continuation=`` is given) when the two have the same length.

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

from genattrib.engine.contrast_inputs import ContrastSequence, bind_contrast, contrast_table, right_aligned
from genattrib.engine.forward import ModelForward
from genattrib.engine.jobs import contrast_per_step
from genattrib.generation import GenerationTrace
from genattrib.models.options.request import AttributionRequest


def with_contrast_inputs(
    forward: ModelForward, request: AttributionRequest, traces: Sequence[GenerationTrace]
) -> tuple[AttributionRequest, list[Int[Tensor, " _generated"]] | None]:
    """(the request with its target functions bound to the contrast predictions, the row key of
    every step of every trace to pass to the jobs as contrast ids); without a contrast input the
    request as it is and its ``contrast_ids``."""
    if not request.has_contrast_input:
        return request, request.contrast_ids
    sequences = []
    for i, trace in enumerate(traces):
        n = int(trace.generated_ids.shape[0])
        prompt = request.prompt_ids[i] if request.contrast_prompt_ids is None else request.contrast_prompt_ids[i]
        continuation = (
            trace.generated_ids if request.contrast_continuation_ids is None else request.contrast_continuation_ids[i]
        )
        ids = torch.cat([prompt.long(), continuation.long()])
        positions = right_aligned(trace.prompt_length + n, trace.prompt_length, int(ids.shape[0]))
        tokens = None if request.contrast_ids is None else contrast_per_step(request.contrast_ids[i], n)
        sequences.append(ContrastSequence(ids, positions, tokens))
    table = contrast_table(forward, sequences)
    bound = dataclasses.replace(
        request,
        attributed_fn=bind_contrast(request.attributed_fn, table, logits=request.options.contrast_force_inputs),
        step_functions={name: bind_contrast(t, table) for name, t in request.step_functions.items()},
    )
    return bound, table.keys
