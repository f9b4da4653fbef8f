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


def source_ids(tokenizer: Any, text: object, start_id: int) -> Int[Tensor, " prompt"]:
    """The source's ids (with the tokenizer's special tokens, e.g. a closing ``</s>``), then the decoder start."""
    if not isinstance(text, str):
        raise InvalidArgumentError(
            "inputs",
            "an encoder-decoder model takes plain-text sources, not chat messages",
            "pass the source text as a string (or a list of strings)",
        )
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if not ids:
        raise InvalidArgumentError("inputs", "the source tokenizes to no tokens", "pass text the tokenizer can encode")
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
    if options.contrast_target is not None:
        _refuse("contrast_target", "a contrastive target", "attribute without contrast_target=")
    for name in ("contrast_prompt", "contrast_continuation"):
        if getattr(options, name) is not None:
            _refuse(name, "a contrastive input", f"attribute without {name}=")
    if options.top_k_scores is not None:
        _refuse("top_k_scores", "top-k storage of scores", "leave top_k_scores=None")
    if options.stream_to is not None:
        _refuse("stream_to", "streaming rows to a folder", "attribute in memory and out.save(...)")
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
