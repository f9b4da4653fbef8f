"""Dry run: what an ``attribute()`` call would cost, without running it (:meth:`AttributionModel.estimate`).

The call is checked and planned exactly as ``attribute()`` plans it (same batches, same rows per
chunk), then costed:

* rows: explained rows (tokens or units), model rows (``method.rows_per_target`` of each
  batch's length; a method that shares a forward pass among a sequence's targets pays once per
  batch) and token-rows (model rows × tokens per row, padding included);
* FLOPs: ``2 · parameters · token-rows`` for a forward pass, ``× 3`` with the backward pass
  (parameters: all but the input embedding table, a lookup);
* peak memory: the parameters, plus the largest chunk of rows
  (:meth:`~genattrib.engine.ModelForward.row_bytes` × rows per chunk) with its batch inputs,
  plus the scores the result keeps (dense, top-k or granular; only a batch's worth with
  ``stream_to``);
* predicted seconds: short timings on this device (``calibrate=True``, see
  :mod:`~genattrib.models.pipeline.estimate_timing`) convert the planned rows into seconds.

An encoder-decoder model's sequences are planned one at a time inside their source length, as
``attribute()`` runs them (calibration splits its rows in half between the two sides).

Without a continuation nothing is generated: the estimate assumes ``max_new_tokens`` tokens,
and for named units :data:`ASSUMED_UNIT_TOKENS` tokens per unit (e.g. 20 per sentence); pass
the continuation to plan exactly.

Example:
    >>> est = model.estimate(prompt, target=" Paris.", calibrate=False)
    >>> est.rows, est.model_rows, est.predicted_seconds is None   # 3 targets read one shared forward row
    (3, 1, True)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from genattrib.engine import (
    SequenceJob,
    build_jobs,
    plan_run,
)
from genattrib.engine.row_refs import RowRef
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.generation import GenerationTrace
from genattrib.models.options.explain_units import describe_explain
from genattrib.models.options.request import AttributionRequest
from genattrib.models.pipeline.estimate_timing import predict_seconds
from genattrib.models.pipeline.seq2seq_steps import source_length
from genattrib.models.pipeline.stages import Call, explained_spans, generate, keep_granular, plan

#: Tokens per unit assumed when the continuation is not given (English text, BPE tokenizers).
ASSUMED_UNIT_TOKENS = {"words": 1.3, "sentences": 20.0, "paragraphs": 80.0, "lines": 12.0}


def _size(n: int | float, unit: str = "B") -> str:
    for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(n) < 1024 or prefix == "Ti":
            return f"{n:,.0f} {prefix}{unit}" if prefix == "" else f"{n:,.1f} {prefix}{unit}"
        n /= 1024
    return f"{n:,.1f} {unit}"  # pragma: no cover


def _flops(n: int | float) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if n >= scale:
            return f"{n / scale:,.2f} {prefix}FLOP"
    return f"{n:,.0f} FLOP"


def _seconds(s: int | float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s" if s < 10 else f"{s:.0f} s"


@dataclass
class Estimate:
    """The predicted cost of one ``attribute()`` call (see :mod:`genattrib.models.pipeline.estimate`).

    ``memory`` and ``seconds`` break ``peak_memory_bytes`` and ``predicted_seconds`` down;
    ``calibration`` holds the measured speeds; ``assumptions`` what was assumed in place of
    what only the run would know. :meth:`to_dict` / :meth:`to_json` for machines, ``str()``
    for people.
    """

    model_name: str
    method: str
    explain: str
    device: str
    sequences: int
    rows: int
    batches: int
    model_rows: int
    grad_rows: int
    token_rows: int
    flops: float
    peak_memory_bytes: int
    predicted_seconds: float | None
    backward_token_rows: int = 0  # tokens of input-gradient backward passes (one per target of a shared row)
    memory: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def __str__(self) -> str:
        mem = ", ".join(f"{k} {_size(v)}" for k, v in self.memory.items())
        lines = [
            f"Estimate: {self.method} on {self.model_name} ({self.device}), explain {self.explain}",
            ("sequences", f"{self.sequences:,}"),
            ("explained rows", f"{self.rows:,} in {self.batches:,} batches"),
            ("model rows", f"{self.model_rows:,} ({self.grad_rows:,} kept for backward passes)"),
            ("token-rows", f"{self.token_rows:,} forward, {self.backward_token_rows:,} backward"),
            ("FLOPs", _flops(self.flops)),
            ("peak memory", f"{_size(self.peak_memory_bytes)} ({mem})"),
        ]
        if self.predicted_seconds is None:
            lines.append(("predicted time", "not calibrated (calibrate=False)"))
        else:
            parts = ", ".join(f"{k} {_seconds(v)}" for k, v in self.seconds.items() if k != "calibration")
            lines.append(("predicted time", f"{_seconds(self.predicted_seconds)} ({parts})"))
            cal = self.calibration
            kind = "grad" if "grad_s_per_call" in cal else "forward"
            what = "forward+backward" if kind == "grad" else "forward"
            lines.append(
                (
                    "calibration",
                    f"{what}: {cal[f'{kind}_s_per_token_row'] * 1e6:,.1f} µs per token-row + "
                    f"{cal[f'{kind}_s_per_call'] * 1e3:,.1f} ms per call ({cal['rows']} rows x {cal['length']} "
                    f"tokens, took {_seconds(self.seconds.get('calibration', 0.0))})",
                )
            )
        lines += [("assumed", text) for text in self.assumptions]
        return "\n".join(line if isinstance(line, str) else f"  {line[0]:<15} {line[1]}" for line in lines)


def _placeholder_id(request: AttributionRequest, special: set[int]) -> int:
    """A token id that stands for the generated tokens not generated (any non-special id)."""
    last = int(request.prompt_ids[0][-1]) if request.prompt_ids and request.prompt_ids[0].numel() else 0
    if last not in special:
        return last
    return next(i for i in range(max(special) + 2) if i not in special)


def _even_spans(first: int, stop: int, per_unit: float) -> list[tuple[int, int]]:
    n = stop - first
    units = max(1, round(n / per_unit)) if n else 0
    bounds = [first + round(i * n / units) for i in range(units + 1)] if units else []
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def planned_jobs(call: Call, assumptions: list[str]) -> tuple[list[SequenceJob], list[GenerationTrace]]:
    """The jobs ``attribute()`` would run: exact with a continuation, else assumed (see the module)."""
    request = call.request
    special = set(call.parts.special_ids)
    if request.forced_ids is not None:
        traces = generate(call)  # the forced continuations, as they are
        return plan(call, traces), traces
    n = int(request.generation_config.max_new_tokens or 0)
    token = _placeholder_id(request, special)
    traces = [GenerationTrace(p, torch.full((n,), token, dtype=torch.long)) for p in request.prompt_ids]
    assumptions.append(f"continuation not given: {n} generated tokens each (max_new_tokens; generation may stop early)")
    units, sources = explained_spans(call.parts, request, traces)  # prompt sources are exact; generated is not
    if isinstance(request.explain, str) and request.explain != "tokens":
        per = ASSUMED_UNIT_TOKENS[request.explain]
        assumptions.append(f"{request.explain}: {per:g} tokens per unit")
        units = []
        for trace in traces:
            steps = range(int(trace.generated_ids.shape[0]))[request.steps]
            p = trace.prompt_length
            units.append(_even_spans(p + steps.start, p + steps.stop, per))
    jobs = build_jobs(traces, sorted(special), request.steps, None, request.keep_special, units, sources)
    return jobs, traces


def _parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(bytes of parameters and buffers, parameters that cost FLOPs: all but the input embedding)."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    size += sum(b.numel() * b.element_size() for b in model.buffers())
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and (head.weight is embedding or 0 != head.weight.data_ptr() == embedding.data_ptr())
    count = sum(p.numel() for p in model.parameters()) - (0 if tied else embedding.numel())
    return size, count


def planned_batches(
    call: Call, jobs: list[SequenceJob], keep: bool
) -> tuple[list[list[RowRef]], list[tuple[int, int, int]], list[int]]:
    """(the batches ``attribute()`` runs, what each of their model calls costs, how many targets each
    call's rows score at the LM head): an encoder-decoder model's jobs are planned one at a time inside
    their source length, as they run."""
    method, forward = call.request.attributor, call.forward
    every = method.traits.group_by_sequence and not method.traits.needs_gradients  # a row scores the batch
    batches, planned, reads = [], [], []

    def add(own: list[list[RowRef]]) -> None:
        for batch in own:
            parts = method.planned_rows(batch, forward, granular=keep)
            planned.extend(parts)
            reads.extend([len(batch) if every else 1] * len(parts))
        batches.extend(own)

    if not isinstance(forward, EncoderDecoderForward):
        add(plan_run(forward, method, jobs, call.request.batch_size))
        return batches, planned, reads
    for job in jobs:
        with forward.encoding(source_length(job)):
            add(plan_run(forward, method, [job]))
    return batches, planned, reads


def estimate_call(call: Call, calibrate: bool = True) -> Estimate:
    """Plan ``call`` as ``attribute()`` would, cost it, and (``calibrate``) time it."""
    request, options, model = call.request, call.storage, call.parts
    method, forward = request.attributor, call.forward
    assumptions: list[str] = []
    jobs, _ = planned_jobs(call, assumptions)
    hidden = forward.hidden_size
    keep = keep_granular(call, jobs)
    batches, planned, reads = planned_batches(call, jobs, keep)
    grad = method.traits.needs_gradients
    costs = [(rows, length) for rows, length, _ in planned]
    model_rows = sum(r for r, _ in costs)
    token_rows = sum(r * length for r, length in costs)
    backward_token_rows = sum(b * length for _, length, b in planned)
    param_bytes, param_count = _parameter_counts(model.model)
    activations = max(
        (
            min(r, forward.rows_per_chunk(length, grad)) * forward.row_bytes(length, grad)
            + r * length * hidden * 4 * (2 if grad else 1)  # the batch's inputs (and their gradients), float32
            for r, length in costs
        ),
        default=0,
    )
    cells = sum(job.num_rows * int(job.input_ids.shape[0]) for job in jobs)
    if options.top_k_scores is not None:
        result = sum(job.num_rows * (min(options.top_k_scores, int(job.input_ids.shape[0])) * 12 + 32) for job in jobs)
    else:
        result = cells * 4 + (cells * hidden * 4 if keep else 0)
    if options.stream_to is not None:
        biggest = max((len(b) for b in batches), default=0)
        longest = max((int(j.input_ids.shape[0]) for j in jobs), default=0)
        result = biggest * longest * 4 * (hidden if keep else 1)
        assumptions.append("stream_to: rows go to disk batch by batch; the result reads them back on access")
    memory = {"parameters": param_bytes, "activations": int(activations), "result": int(result)}
    estimate = Estimate(
        model_name=model.name,
        method=method.name,
        explain=describe_explain(request.explain),
        device=str(forward.input_device),
        sequences=len(jobs),
        rows=sum(job.num_rows for job in jobs),
        batches=len(batches),
        model_rows=model_rows,
        grad_rows=sum(r for r, _, b in planned if b) if grad else 0,
        token_rows=token_rows,
        backward_token_rows=backward_token_rows,
        # a forward pass costs 2 FLOPs per parameter and token; an input-gradient backward pass about as much
        flops=float(2 * param_count * (token_rows + backward_token_rows)),
        peak_memory_bytes=sum(memory.values()),
        predicted_seconds=None,
        memory=memory,
        assumptions=assumptions,
    )
    if calibrate and batches:
        estimate.seconds, estimate.calibration = predict_seconds(call, jobs, planned, reads)
        estimate.predicted_seconds = sum(v for k, v in estimate.seconds.items() if k != "calibration")
    return estimate
