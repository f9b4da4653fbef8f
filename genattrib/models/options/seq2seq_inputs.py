"""Inputs of an encoder-decoder (seq2seq) model: the source, the target, and what such a call
supports.

A sequence is laid out as ``source ids + [decoder start] + target ids``: the prompt the engine
sees is the source followed by the decoder start token (so the source length is
``prompt_length - 1``), and every generated or forced token is a target token.

Example:
    >>> source_ids(t5_tokenizer, "The capital of", 0).tolist()[-2:]  # </s>, the decoder start  # doctest: +SKIP
    [1, 0]
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn

from genattrib.engine import Attributor
from genattrib.errors import InvalidArgumentError
from genattrib.methods.layer_forward import TARGET, scored_side
from genattrib.models.options.attribute_options import AttributeOptions

#: Methods that run on encoder-decoder models (tests/encoder_decoder/ checks each one).
SUPPORTED_METHODS: tuple[str, ...] = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "gradient_shap",
    "occlusion",
    "attention",
    "deeplift",
    "layer_gradient_x_activation",
    "layer_integrated_gradients",
    "layer_deeplift",
    "value_zeroing",
    "lime",
    "context_ablation",
    "discretized_integrated_gradients",
    "uniform_discretized_integrated_gradients",
    "sequential_integrated_gradients",
    "reagent",
    "rollout",
)

#: Methods refused on encoder-decoder models, with the reason (docs/encoder-decoder.md).
REFUSED_METHODS: dict[str, str] = {
    "rpi": "RPI integrates over one layer's self-attention probabilities (its baselines are noised copies of "
    "that square matrix); the source reaches the target only through the decoder's cross-attention, for which "
    "the method defines neither a path nor a baseline",
}


def decoder_start_id(model: Any) -> int:
    """The token the decoder starts from (``config.decoder_start_token_id``; T5 and Marian: pad, BART: </s>)."""
    for config in (getattr(model, "generation_config", None), model.config):
        value = getattr(config, "decoder_start_token_id", None)
        if isinstance(value, int):
            return value
    raise InvalidArgumentError(
        "source",
        f"{type(model).__name__} has no decoder_start_token_id in its config",
        "set model.config.decoder_start_token_id (T5/Marian: the pad token id, BART: the </s> id)",
    )


def source_ids(tokenizer: Any, text: object, start_id: int, argument: str = "inputs") -> Int[Tensor, " prompt"]:
    """The source's ids (with the tokenizer's special tokens, e.g. a closing ``</s>``), then the decoder start."""
    if not isinstance(text, str):
        raise InvalidArgumentError(
            argument,
            "an encoder-decoder model takes plain-text sources, not chat messages",
            "pass the source text as a string (or a list of strings)",
        )
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if not ids:
        raise InvalidArgumentError(argument, "the source tokenizes to no tokens", "pass text the tokenizer can encode")
    return torch.tensor([*ids, start_id], dtype=torch.long)


def target_ids(tokenizer: Any, text: str | Tensor, argument: str = "continuation") -> Int[Tensor, " generated"]:
    """Ids of a forced target: text tokenized as a target (``text_target=``, with its closing ``</s>``,
    as the model generates it), checked to decode back to ``text``; token ids are used as given."""
    if isinstance(text, Tensor):
        vocab = len(tokenizer)
        if int(text.min()) < 0 or int(text.max()) >= vocab:
            raise InvalidArgumentError(argument, f"token ids must be in [0, {vocab})", "pass ids of this tokenizer")
        return text
    ids = tokenizer(text_target=text, add_special_tokens=True)["input_ids"]
    if not ids:
        raise InvalidArgumentError(argument, f"{text!r} tokenizes to no tokens", "pass a longer target")
    decoded = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if decoded.strip() != text.strip():
        raise InvalidArgumentError(
            argument,
            f"{text!r} does not tokenize as given (it decodes back as {decoded!r})",
            "pass text that round-trips through the tokenizer",
        )
    return torch.tensor(ids, dtype=torch.long)


def contrast_ids_of(
    tokenizer: Any,
    start_id: int,
    contrasts: list | None,
    contrast_sources: list | None,
    contrast_targets: list | None,
) -> tuple[list[Tensor] | None, list[Tensor] | None, list[Tensor] | None]:
    """(``contrast_target=`` ids, ``contrast_prompt=`` ids, ``contrast_continuation=`` ids) of an
    encoder-decoder call: the contrast prompt is a contrast *source* (Inseq's ``contrast_sources``,
    tokenized like the source, then the decoder start), the contrast continuation and the contrast
    target are targets (tokenized like a forced continuation, with the closing ``</s>``)."""
    contrast_ids = None if contrasts is None else [target_ids(tokenizer, c, "contrast_target") for c in contrasts]
    sources = (
        None
        if contrast_sources is None
        else [source_ids(tokenizer, p, start_id, "contrast_prompt") for p in contrast_sources]
    )
    targets = (
        None
        if contrast_targets is None
        else [target_ids(tokenizer, c, "contrast_continuation") for c in contrast_targets]
    )
    return contrast_ids, sources, targets


def check_contrast_target_covers(contrast_length: int, needed: int, generated: int) -> None:
    """An encoder-decoder contrast target aligns with the continuation from the end, step for step,
    and never reaches into the source: it must cover the last ``needed`` of the ``generated`` steps
    (every step with step scores, else those from the first attributed one)."""
    if contrast_length < needed:
        raise InvalidArgumentError(
            "contrast_continuation",
            f"the contrast target has {contrast_length} tokens, fewer than the {needed} steps of the {generated}-token "
            "continuation it must align with (from the end) on an encoder-decoder model",
            "pass a contrast target at least as long as the continuation (or attribute later steps only, "
            "attr_pos_start=, without step scores)",
        )


def _refuse(argument: str, what: str, fix: str) -> None:
    raise InvalidArgumentError(argument, f"{what} is not supported on encoder-decoder models yet", fix)


def check_seq2seq_call(options: AttributeOptions, attributor: Attributor, model: nn.Module | None = None) -> None:
    """Refuse, before any work, what an encoder-decoder call does not support (yet) or what
    contradicts itself (a decoder layer, whose positions are the target prefix, without it)."""
    if attributor.name not in SUPPORTED_METHODS:
        reason = REFUSED_METHODS.get(attributor.name, "it does not run on encoder-decoder models yet")
        raise InvalidArgumentError(
            "method",
            f"method {attributor.name!r} is not supported on encoder-decoder models: {reason}",
            "use attention (cross- and decoder self-attention), integrated_gradients or another of: "
            + ", ".join(SUPPORTED_METHODS),
        )
    check_method_params(attributor)
    if options.chat:
        _refuse("chat", "chat=True (a chat template)", "pass the source text without chat=True")
    if options.attribute_prefix is not None and not isinstance(options.attribute_prefix, bool):
        raise InvalidArgumentError(
            "attribute_prefix", f"{options.attribute_prefix!r} is not a bool", "pass True, False or None"
        )
    side = None if model is None else scored_side(attributor.name, attributor.params, model)
    if side == TARGET and not options.attribute_prefix:
        raise InvalidArgumentError(
            "attribute_prefix",
            f"layer={attributor.params.layer!r} is a decoder layer: it scores the target prefix, which is held "
            "fixed unless attribute_prefix=True",
            "pass attribute_prefix=True, or an encoder layer ('encoder.<i>') to score the source",
        )


def check_method_params(attributor: Attributor) -> None:
    """Method settings that mean nothing on two stacks: ReAGent's ``token_sampler="model"`` proposes
    each token from the model's next-token prediction at the position before it, which an
    encoder-decoder model does not make for its source."""
    if attributor.name == "reagent" and getattr(attributor.params, "token_sampler", None) == "model":
        raise InvalidArgumentError(
            "token_sampler",
            "token_sampler='model' proposes each token from the model's prediction at the position before it; "
            "an encoder-decoder model predicts no source token",
            "use token_sampler='uniform' (the default), 'pos' or 'mlm' with mlm=<a masked LM>",
        )


def check_decoder_only_call(options: AttributeOptions) -> None:
    """``attribute_prefix=False`` means nothing on a decoder-only model (its prompt is its prefix)."""
    if options.attribute_prefix is False:
        raise InvalidArgumentError(
            "attribute_prefix",
            "a decoder-only model attributes every token before the target (there is no separate source)",
            "leave attribute_prefix=None (it applies to encoder-decoder models)",
        )
    if options.attribute_prefix not in (None, True):
        raise InvalidArgumentError(
            "attribute_prefix", f"{options.attribute_prefix!r} is not a bool", "pass True, False or None"
        )
