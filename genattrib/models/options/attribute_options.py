"""The options of one ``attribute()``/``estimate()`` call, written once: :class:`AttributeOptions`.

``AttributionModel.attribute`` spells every option out in its signature (for IDEs and the docs);
tests/models/test_attribute_options.py keeps that signature equal to the fields here. Everything after
the signature reads the options from this one object: the validated request, the storage
options and the resume fingerprint of ``stream_to``.

Example:
    >>> options = AttributeOptions.from_arguments({"method": "occlusion", "max_new_tokens": 4})
    >>> options.method, options.kwargs
    ('occlusion', {'max_new_tokens': 4})
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import GenerationConfig

from genattrib.engine import GRANULAR_BUDGET_MB, Attributor
from genattrib.models.options.explain_units import CharSpans


@dataclass(frozen=True)
class AttributeOptions:
    """Every option of ``attribute()`` but the inputs and the continuation (see its docstring).

    ``kwargs`` holds the other keywords: method parameters (``n_steps`` ...) and generation
    settings (``max_new_tokens``, ``do_sample``, ``top_k`` ...).
    """

    method: str | Attributor | None = None
    attributed_fn: str | Callable | None = None
    step_scores: Iterable[str | Callable] | Mapping[str, Any] | None = None
    contrast_target: str | list[str] | torch.Tensor | None = None
    contrast_prompt: str | Sequence[Any] | None = None
    contrast_continuation: str | Sequence[Any] | torch.Tensor | None = None
    contrast_force_inputs: bool = False
    contrast_alignments: Sequence[Any] | None = None
    chat: bool = False
    batch_size: int | None = None
    attr_pos_start: int | None = None
    attr_pos_end: int | None = None
    seed: int | None = None
    generation_config: GenerationConfig | None = None
    attribute_special_tokens: bool = False
    keep_granular: bool | None = None
    granular_budget_mb: int | float = GRANULAR_BUDGET_MB
    top_k_scores: int | None = None
    stream_to: str | os.PathLike | None = None
    max_rows: int | None = None
    show_progress: bool | None = None
    method_kwargs: Mapping[str, Any] | None = None
    explain: str | Sequence[Sequence[int]] | CharSpans = "tokens"
    sources: str | Sequence[Sequence[int]] | CharSpans | None = None
    sources_include_generated: bool = False
    attribute_prefix: bool | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names (``kwargs`` aside), in signature order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "kwargs")

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> AttributeOptions:
        """The options of a call's keyword arguments: known names become fields, the rest ``kwargs``.

        Example:
            >>> AttributeOptions.from_arguments({"seed": 1, "n_steps": 8}).kwargs
            {'n_steps': 8}
        """
        names = set(cls.names())
        given = {k: v for k, v in arguments.items() if k in names}
        rest = {k: v for k, v in arguments.items() if k not in names}
        return cls(**given, kwargs=rest)

    def replace(self, **changes: Any) -> AttributeOptions:
        return dataclasses.replace(self, **changes)


def generation_samples(options: AttributeOptions, model_config: GenerationConfig | None) -> bool:
    """Whether the call's generation samples: ``do_sample`` as given, else in ``generation_config``,
    else in the model's own generation config (a forced continuation generates nothing)."""
    if "do_sample" in options.kwargs:
        return bool(options.kwargs["do_sample"])
    config = options.generation_config if options.generation_config is not None else model_config
    return bool(getattr(config, "do_sample", False))


def resolve_legacy_top_k(
    options: AttributeOptions, model_config: GenerationConfig | None, forced: bool
) -> AttributeOptions:
    """``top_k=`` is generation's top-k, as in Hugging Face. Until the next release, a ``top_k``
    given where nothing samples (greedy or beam search, or a forced continuation: generation
    would ignore it) keeps its old meaning, the storage option ``top_k_scores``, with a
    :class:`FutureWarning` that names the new spelling.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     warnings.simplefilter("always")
        ...     resolve_legacy_top_k(AttributeOptions(kwargs={"top_k": 5}), None, forced=True).top_k_scores
        5
    """
    if "top_k" not in options.kwargs or options.top_k_scores is not None:
        return options
    if not forced and generation_samples(options, model_config):
        return options  # sampling's top-k: it reaches generate()
    rest = {k: v for k, v in options.kwargs.items() if k != "top_k"}
    value = options.kwargs["top_k"]
    warnings.warn(
        FutureWarning(
            f"attribute(top_k={value!r}) keeps the {value!r} largest scores of each row only because this call does "
            f"not sample; top_k= is generation's top-k (as in Hugging Face) from the next release: pass "
            f"top_k_scores={value!r} to keep the largest scores"
        ),
        stacklevel=4,
    )
    return options.replace(top_k_scores=value, kwargs=rest)
