"""Sort ``attribute(**kwargs)`` into method parameters and generation settings; resolve baselines.

Example:
    >>> split_kwargs({"n_steps": 8, "max_new_tokens": 4}, ["n_steps", "baseline"])
    ({'n_steps': 8}, {'max_new_tokens': 4})
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from transformers import GenerationConfig

from genattrib.engine.baselines import BASELINE_NAMES, ResolvedBaseline
from genattrib.errors import InvalidArgumentError
from genattrib.targets import TargetFunction, resolve_target
from genattrib.validation import check_positive_int, is_int

DEFAULT_MAX_NEW_TOKENS = 32


def split_kwargs(kwargs: Mapping[str, Any], method_params: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method parameters, generation kwargs)."""
    names = set(method_params)
    method = {k: v for k, v in kwargs.items() if k in names}
    generation = {k: v for k, v in kwargs.items() if k not in names}
    return method, generation


def build_generation_config(
    model: Any,
    tokenizer: Any,
    base: GenerationConfig | None,
    overrides: Mapping[str, Any],
    method_params: Iterable[str],
) -> GenerationConfig:
    """The model's generation config, updated by ``base`` and ``overrides`` (validated)."""
    if base is not None and not isinstance(base, GenerationConfig):
        raise InvalidArgumentError(
            "generation_config",
            f"expected a transformers.GenerationConfig, got {type(base).__name__}",
            "pass GenerationConfig(max_new_tokens=16, ...), or the settings as keywords (max_new_tokens=16)",
        )
    config = copy.deepcopy(
        base if base is not None else getattr(model, "generation_config", None) or GenerationConfig()
    )
    valid = set(GenerationConfig().to_dict())
    unknown = sorted(k for k in overrides if k not in valid)
    if unknown:
        raise InvalidArgumentError(
            unknown[0],
            f"{unknown[0]!r} is neither a parameter of the method nor a generation setting",
            f"method parameters: {', '.join(sorted(method_params)) or '(none)'}; generation settings as in "
            "transformers.GenerationConfig (max_new_tokens, do_sample, temperature ...)",
        )
    new_tokens = overrides.get("max_new_tokens")
    if "max_new_tokens" in overrides:
        check_positive_int("max_new_tokens", new_tokens, "max_new_tokens=16")
    try:
        config.update(**dict(overrides))
        config.validate()
    except (ValueError, TypeError) as error:
        raise InvalidArgumentError(
            ", ".join(sorted(overrides)) or "generation_config",
            f"invalid generation settings ({error})",
            "fix the values as the message says (see transformers.GenerationConfig)",
        ) from error
    if (
        "max_new_tokens" not in overrides
        and "max_length" not in overrides
        and (base is None or base.max_new_tokens is None)
    ):
        config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    check_positive_int("max_new_tokens", config.max_new_tokens, "max_new_tokens=16", optional=True)
    if int(config.num_return_sequences or 1) > 1:
        raise InvalidArgumentError(
            "num_return_sequences",
            f"{config.num_return_sequences} sequences per prompt: genattrib explains one sequence per prompt, "
            "so the extra ones could not be told apart from the next prompts' results",
            "repeat the prompt instead, e.g. attribute([prompt] * 4, do_sample=True): each copy samples its own "
            "continuation",
        )
    if config.pad_token_id is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.eos_token_id
        if isinstance(pad, (list, tuple)):
            pad = pad[0]
        config.pad_token_id = 0 if pad is None else int(pad)
    if config.eos_token_id is None and tokenizer.eos_token_id is not None:
        config.eos_token_id = tokenizer.eos_token_id
    config.return_dict_in_generate = False
    config.use_cache = True
    return config


def resolve_step_scores(
    step_scores: str | Iterable[str | Callable] | Mapping[str, Any] | None, extra: Mapping[str, TargetFunction]
) -> dict[str, TargetFunction]:
    """``{name: TargetFunction}`` for the requested step scores."""
    if step_scores is None:
        return {}
    if isinstance(step_scores, str):
        step_scores = [step_scores]
    if not isinstance(step_scores, Iterable) or isinstance(step_scores, torch.Tensor):
        raise InvalidArgumentError(
            "step_scores",
            f"expected a name, a list of names/functions or a mapping, got {type(step_scores).__name__}",
            "pass e.g. step_scores=['probability', 'entropy']",
        )
    if isinstance(step_scores, Mapping):
        return {name: resolve_target(spec, extra, "step_scores") for name, spec in step_scores.items()}
    out = {}
    for spec in step_scores:
        target = resolve_target(spec, extra, "step_scores")
        out[target.name] = target
    return out


def resolve_baseline(spec: Any, tokenizer: Any, hidden_size: int) -> ResolvedBaseline:
    """Turn a baseline spec into a token id, the zero vector or a tensor (default: UNK, PAD, EOS)."""
    if spec is None:
        for name in ("unk", "pad", "eos"):
            token_id = getattr(tokenizer, f"{name}_token_id", None)
            if token_id is not None:
                return ResolvedBaseline(token_id=int(token_id))
        raise InvalidArgumentError(
            "baseline", "the tokenizer has no UNK, PAD or EOS token", "pass baseline='zero' or a token string"
        )
    if isinstance(spec, torch.Tensor):
        if spec.shape[-1] != hidden_size or spec.ndim not in (1, 2):
            raise InvalidArgumentError(
                "baseline",
                f"tensor of shape {tuple(spec.shape)}",
                f"pass shape ({hidden_size},) or (positions, {hidden_size})",
            )
        if not bool(torch.isfinite(spec).all()):
            raise InvalidArgumentError(
                "baseline", "the tensor holds NaN or infinite values", "pass a finite tensor (e.g. zeros)"
            )
        return ResolvedBaseline(tensor=spec.detach().clone())
    if is_int(spec):
        vocab = len(tokenizer)
        if not 0 <= int(spec) < vocab:
            raise InvalidArgumentError(
                "baseline",
                f"token id {spec} is outside the vocabulary [0, {vocab})",
                "pass a token id in range, a token string or one of " + ", ".join(BASELINE_NAMES),
            )
        return ResolvedBaseline(token_id=int(spec))
    if not isinstance(spec, str):
        raise InvalidArgumentError(
            "baseline", f"cannot use {type(spec).__name__}", f"use one of {BASELINE_NAMES}, a token string or a tensor"
        )
    if spec == "zero":
        return ResolvedBaseline(zero=True)
    if spec in ("unk", "pad", "eos"):
        token_id = getattr(tokenizer, f"{spec}_token_id", None)
        if token_id is None:
            raise InvalidArgumentError(
                "baseline",
                f"the tokenizer has no {spec.upper()} token",
                "use another baseline, e.g. 'zero' or a token string",
            )
        return ResolvedBaseline(token_id=int(token_id))
    ids = tokenizer(spec, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InvalidArgumentError(
            "baseline",
            f"{spec!r} is {len(ids)} tokens, not one",
            f"use one of {BASELINE_NAMES} or a single-token string",
        )
    return ResolvedBaseline(token_id=int(ids[0]))
