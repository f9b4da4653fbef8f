"""Predicted seconds of an :meth:`~genattrib.AttributionModel.estimate`: short timings on this device,
taken fresh at every estimate (the planner's stored measurement plans; these only convert the plan
into seconds under the machine's present load).

* rows with one target each, forward (and backward, for a gradient method): one row, then a few
  (at most :data:`CALIBRATION_ROWS` rows, :data:`CALIBRATION_TOKENS` token-rows) at the run's typical
  length, give the seconds per model call and per token-row;
* a gradient method whose targets share forward rows: one row differentiated for one target, then
  for several in one batched vector-Jacobian product, gives what each further target adds;
* forward rows that read many targets (occlusion, LIME) pay for the LM head at each one, scaled by
  the planner's cost model (:func:`~genattrib.engine.cost_model.cost_model`);
* generating 1 and then a few tokens of the first prompt gives the generation speed.

Example:
    >>> seconds, calibration = predict_seconds(call, jobs, planned, reads)   # doctest: +SKIP
    >>> sorted(seconds)  # doctest: +SKIP
    ['attribution', 'calibration', 'generation']
"""

from __future__ import annotations

import copy
import functools
import math
import time
from typing import Any

import torch

from genattrib.devices import execution_device
from genattrib.engine import Explained, ModelForward, SequenceJob
from genattrib.engine.cost_model import cost_model
from genattrib.engine.shared_forward import shared_input_gradients
from genattrib.generation import generate_traces
from genattrib.generation.seq2seq_generate import generate_seq2seq_traces
from genattrib.models.model_parts import ModelParts
from genattrib.models.options.request import AttributionRequest
from genattrib.models.pipeline.stages import Call

#: Token-rows of one calibration pass, at most (and at most :data:`CALIBRATION_ROWS` rows).
CALIBRATION_TOKENS = 512
CALIBRATION_ROWS = 4
#: Targets of the batched-backward calibration row, at most.
CALIBRATION_TARGETS = 8


def _time(fn: Any, *devices: torch.device) -> float:
    """Seconds ``fn`` takes, waiting for the GPUs among ``devices`` (all a sharded model uses)."""
    gpus = {d for d in devices if d.type == "cuda"}
    for gpu in gpus:
        torch.cuda.synchronize(gpu)
    start = time.perf_counter()
    fn()
    for gpu in gpus:
        torch.cuda.synchronize(gpu)
    return time.perf_counter() - start


def calibrate_rows(
    forward: ModelForward, request: AttributionRequest, jobs: list[SequenceJob], length: int, rows: int, grad: bool
) -> tuple[float, float]:
    """(seconds per model call, seconds per token-row) of rows of ``length`` tokens (forward, or
    forward+backward): a warm-up pass of ``rows`` rows, then one row (best of two) and ``rows``
    rows timed; a line through the two points."""
    source = next((j.input_ids for j in jobs if j.input_ids.numel()), torch.zeros(1, dtype=torch.long))
    ids = source.repeat(math.ceil(length / source.shape[0]))[:length].expand(rows, length).contiguous()
    embeds = forward.embed(ids)
    positions = torch.full((rows,), length - 1, dtype=torch.long, device=forward.input_device)
    targets = Explained.tokens(positions, ids[:, -1].to(forward.input_device))
    fn = request.attributed_fn
    grad = grad and fn.differentiable

    def run(n: int) -> None:
        chunk = targets.map(lambda t: t[:n])
        if grad:
            forward.values_and_grads(embeds[:n], chunk, fn)
        else:
            forward.values(embeds[:n], chunk.map(lambda t: t.unsqueeze(1)), fn)

    run(rows)  # warm-up at full size: the allocator reaches its peak here
    devices = (forward.input_device, forward.head_device, *forward.layer_shares)
    one = min(_time(lambda: run(1), *devices) for _ in range(2))
    if rows == 1:
        return 0.0, one / length
    many = _time(lambda: run(rows), *devices)
    per_token_row = (many - one) / ((rows - 1) * length)
    if per_token_row <= 0:  # timing noise: no overhead term
        return 0.0, many / (rows * length)
    return max(one - per_token_row * length, 0.0), per_token_row


def calibrate_shared_targets(
    forward: ModelForward, request: AttributionRequest, jobs: list[SequenceJob], length: int, targets: int
) -> float:
    """Seconds each further target adds to a shared row of ``length`` tokens (its part of one batched
    vector-Jacobian product), per token of the row: one row differentiated for 1 target, then for
    ``targets`` (after :func:`calibrate_rows` warmed up the kernels at this length)."""
    source = next((j.input_ids for j in jobs if j.input_ids.numel()), torch.zeros(1, dtype=torch.long))
    ids = source.repeat(math.ceil(length / source.shape[0]))[:length][None]
    embeds = forward.embed(ids)
    positions = torch.linspace(1, length - 1, targets).round().long().unique()
    explained = Explained.tokens(positions.to(forward.input_device), ids[0, positions].to(forward.input_device))
    weights = torch.ones(1)
    fn = request.attributed_fn
    devices = (forward.input_device, forward.head_device, *forward.layer_shares)

    def run(n: int) -> None:
        shared_input_gradients(forward, embeds, weights, explained.map(lambda t: t[:n]), fn)

    k = int(positions.shape[0])
    one = _time(lambda: run(1), *devices)  # the kernels are warm from calibrate_rows (same length)
    many = _time(lambda: run(k), *devices)
    return max(0.0, many - one) / (max(1, k - 1) * length)


def _generate_once(model: ModelParts, request: AttributionRequest, config: Any) -> None:
    """Generate for the first prompt with ``config`` (a timing run)."""
    if model.is_encoder_decoder:
        generate_seq2seq_traces(model.model, request.prompt_ids[:1], config, seed=request.seed)
        return
    generate_traces(
        model.model,
        request.prompt_ids[:1],
        generation_config=config,
        step_functions={},
        seed=request.seed,
        tokenizer=model.tokenizer,
        show_progress=False,
    )


def calibrate_generation(model: ModelParts, request: AttributionRequest) -> tuple[float, float]:
    """(seconds of a prompt's first generated token, seconds per further token), from generating
    1 then a few tokens of the first prompt."""
    config = copy.deepcopy(request.generation_config)
    total = int(config.max_new_tokens or 0)
    n = max(2, min(5, total))
    times = []
    for tokens in (1, 1, n):  # the first run warms up
        config.max_new_tokens = config.min_new_tokens = tokens
        device = execution_device(model.model.get_input_embeddings())
        run = functools.partial(_generate_once, model, request, config)
        times.append(_time(run, device))
    first = times[1]
    return first, max(0.0, times[2] - first) / (n - 1)


def predict_seconds(
    call: Call, jobs: list[SequenceJob], planned: list[tuple[int, int, int]], reads: list[int]
) -> tuple[dict[str, float], dict[str, Any]]:
    """(predicted seconds by part, the measured speeds) of the planned parts ``(rows, tokens per row,
    backward passes)``, whose rows read the LM head at ``reads[i]`` targets each."""
    start = time.perf_counter()
    model, request = call.parts, call.request
    grad = request.attributor.traits.needs_gradients and request.attributed_fn.differentiable
    costs = [(rows, length) for rows, length, _ in planned]
    # a forward of its own keeps the request's counts clean
    forward = type(call.forward)(model.model, max_rows=call.forward.user_max_rows, probed=model.probed)
    total = sum(r * length for r, length in costs)
    length = max(2, round(sum(r * length * length for r, length in costs) / max(1, total)))
    rows = min(max(r for r, _ in costs), forward.rows_per_chunk(length, grad), CALIBRATION_TOKENS // length)
    rows = max(1, min(rows, CALIBRATION_ROWS))
    per_call, per_row = calibrate_rows(forward, request, jobs, length, rows, grad)
    name = "grad" if grad else "forward"
    calibration: dict[str, Any] = {"rows": rows, "length": length, f"{name}_s_per_call": per_call}
    calibration[f"{name}_s_per_token_row"] = per_row
    # one call per chunk of rows, and one more per batch (a method's forward-only reference pass)
    calls = sum(math.ceil(r / forward.rows_per_chunk(length, grad)) + 1 for r, length in costs)
    seconds = {}
    if request.forced_ids is None:
        first, per_token = calibrate_generation(model, request)
        n = int(request.generation_config.max_new_tokens or 0)
        groups = math.ceil(len(jobs) / (request.batch_size or max(1, len(jobs))))
        seconds["generation"] = groups * (first + per_token * max(0, n - 1))
        calibration.update(generation_first_token_s=first, generation_s_per_token=per_token)
    if grad:
        # calibrated on rows with one backward pass each; forward-only reference rows cost about half;
        # a shared row's further targets add their part of its batched backward pass
        shared = [(r, n, b) for r, n, b in planned if b > r]
        extra = 0.0
        if shared:
            width = round(sum(b for r, _, b in shared) / sum(r for r, _, _ in shared))
            targets = max(2, min(width, CALIBRATION_TARGETS, length - 1))
            extra = calibrate_shared_targets(forward, request, jobs, length, targets)
            calibration["grad_s_per_further_target_token"] = extra
        attribution = sum(
            (r + b) / 2 * n * per_row if b <= r else r * n * per_row + (b - r) * n * extra for r, n, b in planned
        )
    else:  # rows timed reading one target; a row reading more pays the LM head at each (the cost model)
        model_costs = cost_model(forward)
        attribution = sum(
            r * n * per_row * model_costs.row(n, heads) / model_costs.row(n, 1) for (r, n), heads in zip(costs, reads)
        )
    seconds["attribution"] = attribution + calls * per_call
    seconds["calibration"] = time.perf_counter() - start
    return seconds, calibration
