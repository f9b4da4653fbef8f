"""Tiny encoder-decoder models (T5, BART, Marian, mT5, NLLB/M2M100) and a seq2seq tokenizer, built
offline from configs, for fast tests.

The tokenizer is the byte-level BPE of :mod:`tiny` whose encodings end with ``<eos>``, as T5's and
Marian's do (``text_target=`` tokenizes a target the same way).
"""

from __future__ import annotations

import torch
from tiny import make_tokenizer
from tokenizers import processors
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    M2M100Config,
    M2M100ForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MT5Config,
    MT5ForConditionalGeneration,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

FAMILIES = ("t5", "bart", "marian", "mt5", "m2m100")


def make_seq2seq_tokenizer() -> PreTrainedTokenizerFast:
    """:func:`tiny.make_tokenizer` with ``<eos>`` appended to every encoding."""
    tok = make_tokenizer()
    backend = tok.backend_tokenizer
    eos = tok.eos_token_id
    backend.post_processor = processors.TemplateProcessing(
        single="$A <eos>", pair="$A <eos> $B <eos>", special_tokens=[("<eos>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )


def make_seq2seq_model(kind: str, tokenizer: PreTrainedTokenizerFast, seed: int = 0):
    """A randomly initialised tiny encoder-decoder model of family ``kind`` (fp32, eval mode)."""
    torch.manual_seed(seed)
    vocab, pad, eos, bos = len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id
    if kind in ("t5", "mt5"):
        cls, config_cls = (
            (T5ForConditionalGeneration, T5Config) if kind == "t5" else (MT5ForConditionalGeneration, MT5Config)
        )
        config = config_cls(
            vocab_size=vocab,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=pad,
            eos_token_id=eos,
            decoder_start_token_id=pad,
            tie_word_embeddings=kind == "t5",
        )
        model = cls(config)
    else:
        common = dict(
            vocab_size=vocab,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=128,
            pad_token_id=pad,
            eos_token_id=eos,
            bos_token_id=bos,
        )
        if kind == "bart":
            model = BartForConditionalGeneration(BartConfig(decoder_start_token_id=eos, **common))
        elif kind == "marian":
            model = MarianMTModel(MarianConfig(decoder_start_token_id=pad, scale_embedding=True, **common))
        elif kind == "m2m100":
            model = M2M100ForConditionalGeneration(
                M2M100Config(decoder_start_token_id=eos, scale_embedding=True, **common)
            )
        else:
            raise ValueError(f"unknown family {kind!r}")
    if kind == "bart":  # a random final_logits_bias, so that a forward that forgets it is caught
        model.final_logits_bias.normal_(0, 1)
    if kind == "marian":
        model.final_logits_bias.normal_(0, 1)
    model.generation_config.decoder_start_token_id = model.config.decoder_start_token_id
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = eos
    return model.eval()
