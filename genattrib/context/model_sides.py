"""What ``attribute_context`` reads from the model, for both kinds of model: the input's ids, the
output's ids, generating the output, and the greedy next token without the context.

On a decoder-only model the input is the prompt and the output its continuation. On an
encoder-decoder model (T5, BART, Marian ...) the input is the *source* (its ids, then the decoder
start token, as :mod:`genattrib.models.options.seq2seq_inputs` lays a sequence out) and the output
the *target*, tokenized as a target (with its closing ``</s>``): the input context is in the
source, the output context in the target prefix.

Example:
    >>> prompt_ids(model, "Where does Anna live?").shape[0] > 0                  # doctest: +SKIP
    True
    >>> next_token(t5, "Where does Anna live?", [])  # the first target token, greedy  # doctest: +SKIP
    363
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from genattrib.models import AttributeOptions, AttributionModel
from genattrib.models.options import seq2seq_inputs as seq2seq
from genattrib.models.options.inputs import tokenize_continuation, tokenize_prompt
from genattrib.models.pipeline.stages import generate, prepare_call


def is_seq2seq(model: AttributionModel) -> bool:
    """Whether ``model`` is an encoder-decoder model (its input is a source, its output a target)."""
    return bool(model.parts.is_encoder_decoder)


def prompt_ids(model: AttributionModel, prompt: Any) -> Int[Tensor, " prompt"]:
    """The ids the input runs as: the prompt's, or the source's then the decoder start token."""
    if is_seq2seq(model):
        return seq2seq.source_ids(model.tokenizer, prompt, seq2seq.decoder_start_id(model.model), "input_current_text")
    return tokenize_prompt(model.tokenizer, prompt)


def continuation_ids(model: AttributionModel, prompt: Any, text: str) -> Int[Tensor, " generated"]:
    """The output's ids: the continuation of ``prompt``, or (encoder-decoder) ``text`` as a target."""
    if is_seq2seq(model):
        return seq2seq.target_ids(model.tokenizer, text, "output_current_text")
    return tokenize_continuation(model.tokenizer, prompt_ids(model, prompt), text, "output_current_text")


def generate_ids(model: AttributionModel, prompt: Any, seed: int | None, kwargs: Mapping[str, Any]) -> Tensor:
    """The output the model writes for ``prompt`` (``kwargs``: generation settings, ``max_new_tokens`` ...)."""
    if not is_seq2seq(model):
        return model.generate(prompt, seed=seed, **kwargs)[0]
    options = AttributeOptions(method="occlusion", seed=seed, kwargs=dict(kwargs))
    return generate(prepare_call(model.parts, prompt, None, None, options))[0].generated_ids


def next_token(model: AttributionModel, prompt: Any, prefix: list[int]) -> int:
    """The greedy next token after ``prefix`` (token ids of the output) given ``prompt``."""
    ids = prompt_ids(model, prompt)
    prefix_ids = torch.tensor(prefix, dtype=torch.long)
    device = model.model.get_input_embeddings().weight.device
    with torch.no_grad():
        if is_seq2seq(model):  # the source to the encoder; the decoder start, then the prefix, to the decoder
            source, target = ids[:-1], torch.cat([ids[-1:], prefix_ids])
            logits = model.model(input_ids=source[None].to(device), decoder_input_ids=target[None].to(device)).logits
        else:
            logits = model.model(torch.cat([ids, prefix_ids])[None].to(device)).logits
    return int(logits[0, -1].argmax())


def trailing_specials(model: AttributionModel, ids: list[int]) -> int:
    """How many of ``ids`` at the end are special tokens (a target's closing ``</s>``): they are no
    candidates for context sensitivity. Always 0 on a decoder-only model (its continuation has none added)."""
    if not is_seq2seq(model):
        return 0
    special = set(model.parts.special_ids)
    n = 0
    while n < len(ids) and ids[len(ids) - 1 - n] in special:
        n += 1
    return n
