"""Before any record is attributed: check the call once, and measure every record.

:func:`check_call` runs ``attribute()``'s own validation (method, attributed function,
parameters, generation settings) on one prompt, so a bad option fails before any work.
:func:`measure` tokenizes each record the way ``attribute()`` will and gives its length (prompt
plus target tokens, or plus ``max_new_tokens``), or why it cannot run (too long for the model's
context window, a target that does not tokenize as given ...).

Example:
    >>> from genattrib.dataset.records import read_records
    >>> records = read_records(["The capital of France is", "x " * 500])
    >>> [m.reason is None for m in measure(model, records, chat=False, max_new_tokens=4)]
    [True, False]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from genattrib.errors import GenattribError, InvalidArgumentError
from genattrib.models.options import inputs as inp
from genattrib.models.options.attribute_options import AttributeOptions, resolve_legacy_top_k
from genattrib.models.pipeline.stages import prepare_call

if TYPE_CHECKING:
    from genattrib.dataset.records import Record
    from genattrib.models.attribution_model import AttributionModel

__all__ = ["Measured", "check_call", "measure"]

#: attribute() arguments that a dataset run sets itself, per record or per batch.
RESERVED = ("inputs", "continuation", "target", "show_progress", "batch_size")


@dataclass(frozen=True)
class Measured:
    """A record's ``length`` in tokens and whether it has a forced target, or the ``reason`` it cannot run."""

    forced: bool = False
    length: int = 0
    reason: str | None = None

    @property
    def key(self) -> tuple[bool, int] | None:
        return None if self.reason is not None else (self.forced, self.length)


def check_call(model: AttributionModel, prompt: Any, chat: bool, kwargs: Mapping[str, Any]) -> int | None:
    """Validate the options of the run on ``prompt`` (raises like ``attribute()``); the
    ``max_new_tokens`` generation will use."""
    reserved = sorted(set(kwargs) & set(RESERVED))
    if reserved:
        raise InvalidArgumentError(
            reserved[0],
            "attribute_dataset sets this itself (targets come from the records, batches from batch_size)",
            "put forced targets in the records ('target'), and pass batch_size= for records per batch",
        )
    options = AttributeOptions.from_arguments({"chat": chat, **kwargs})
    forced = False  # checks the options as for a record without a target
    options = resolve_legacy_top_k(options, getattr(model.model, "generation_config", None), forced)
    request = prepare_call(model.parts, [prompt], None, None, options).request
    return request.generation_config.max_new_tokens


def _measure_one(model: AttributionModel, record: Record, chat: bool, max_new_tokens: int | None) -> Measured:
    if record.error is not None:
        return Measured(reason=record.error)
    try:
        prompt = inp.normalize_prompts([record.prompt], chat)[0]
        ids = inp.tokenize_prompt(model.tokenizer, prompt)
        extra = max_new_tokens or 0
        if record.target is not None:
            target = record.target if isinstance(record.target, str) else torch.tensor(record.target)
            extra = int(inp.tokenize_continuation(model.tokenizer, ids, target, "target").shape[0])
    except GenattribError as error:
        return Measured(reason=str(error))
    length = int(ids.shape[0])
    window = inp.context_window(model.model.config)
    if window is not None and (length >= window or length + extra > window):
        return Measured(
            reason=f"too long for the model: {length} prompt tokens and {extra} more, "
            f"but the context window is {window} tokens"
        )
    return Measured(record.target is not None, length + extra)


def measure(
    model: AttributionModel, records: Sequence[Record], chat: bool, max_new_tokens: int | None
) -> list[Measured]:
    """Each record's length, or why it cannot run."""
    return [_measure_one(model, record, chat, max_new_tokens) for record in records]
