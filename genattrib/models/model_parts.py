"""What the attribution pipeline reads of an :class:`~genattrib.AttributionModel`: one small,
frozen object with public names, made per call (``model.parts``), so that no step of the pipeline
reaches into the wrapper's privates.

Example:
    >>> parts = model.parts
    >>> parts.tokenizer.eos_token_id in parts.special_ids
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genattrib.devices import execution_device
from genattrib.targets import TargetFunction


@dataclass(frozen=True)
class ModelParts:
    """The model and tokenizer (left unchanged), with the wrapper's settings: its name, default
    method, row cap, dispatch map and the target functions registered on it."""

    model: nn.Module
    tokenizer: Any
    name: str
    method: str
    revision: str | None = None
    max_rows: int | None = None
    device_map: Any = None
    targets: Mapping[str, TargetFunction] = field(default_factory=dict)
    #: What probes of the model found (the KV-cache keyword, the cost model), kept by the wrapper
    #: across calls: :class:`~genattrib.engine.forward.ModelForward` ``probed=``.
    probed: dict[object, object] = field(default_factory=dict)

    @property
    def special_ids(self) -> list[int]:
        """The tokenizer's special token ids (held fixed unless ``attribute_special_tokens``)."""
        return special_ids(self.tokenizer)

    @property
    def is_encoder_decoder(self) -> bool:
        """Whether the model is an encoder-decoder (seq2seq) model: the prompt is its source."""
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def devices(self) -> list[str]:
        """Where the model computes: every module's execution device (an accelerate-offloaded
        module's weights sit on ``meta``; it runs where its hook loads them)."""
        return sorted(
            {
                str(execution_device(m))
                for m in self.model.modules()
                if next(m.parameters(recurse=False), None) is not None
            }
        )


def special_ids(tokenizer: Any) -> list[int]:
    """``tokenizer.all_special_ids`` (none when the tokenizer has no such attribute)."""
    return list(getattr(tokenizer, "all_special_ids", None) or [])
