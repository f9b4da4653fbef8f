"""Tiny models and a tokenizer built offline from configs, for fast tests.

``make_planted_model`` builds a 2-layer GPT-2 whose next token depends only on the tokens at
``PLANTED_POSITIONS``: attention keys read a one-hot position code, the query selects the planted
positions, values copy token embeddings into a subspace that only the LM head reads. Huge layer
norm epsilons make the norms almost linear so nothing else leaks in.
"""

from __future__ import annotations

import math

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "A quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Once upon a time there was a little model that explained its words.",
    'Numbers like 1, 2, 3 and 42 appear in text; so do symbols <b> & "quotes".',
    "Attribution tells which tokens mattered for each generated token.",
]
SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]
PLANTED_POSITIONS = (1, 3)


def make_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences (GPT-2 style, Ġ for spaces)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )


def make_model(kind: str, tokenizer: PreTrainedTokenizerFast, seed: int = 0):
    """A randomly initialised tiny causal LM (fp32, eval mode)."""
    torch.manual_seed(seed)
    vocab = len(tokenizer)
    common = dict(
        vocab_size=vocab,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if kind == "llama":
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            **common,
        )
        model = LlamaForCausalLM(config)
    elif kind == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
        model = GPT2LMHeadModel(config)
    elif kind == "qwen2":
        config = Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            **common,
        )
        model = Qwen2ForCausalLM(config)
    else:
        raise ValueError(kind)
    return model.eval()


def make_planted_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT-2 whose next token depends only on the tokens at :data:`PLANTED_POSITIONS`."""
    torch.manual_seed(seed)
    vocab, tok_dims, pos_dims, out_dims = len(tokenizer), 32, 32, 32
    d = tok_dims + pos_dims + out_dims
    eps, strength, head_gain = 1e6, 30.0, 0.2
    scale = math.sqrt(eps)
    config = GPT2Config(
        vocab_size=vocab,
        n_embd=d,
        n_layer=2,
        n_head=1,
        n_positions=pos_dims,
        layer_norm_epsilon=eps,
        tie_word_embeddings=False,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    token_codes = torch.randn(vocab, tok_dims)
    token_codes = token_codes - token_codes.mean(-1, keepdim=True)  # equal means: no key bias
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.wte.weight[:, :tok_dims] = token_codes
        model.transformer.wpe.weight[:, tok_dims : tok_dims + pos_dims] = torch.eye(pos_dims)
        for block in model.transformer.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
            w, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # Conv1D: y = x @ w + b, w (d, 3d)
            for pos in PLANTED_POSITIONS:  # query picks planted positions
                b[tok_dims + pos] = strength * scale * math.sqrt(d)
            w[:, d : 2 * d] = torch.eye(d)  # key = normalised input
            w[:tok_dims, 2 * d : 2 * d + tok_dims] = torch.eye(tok_dims)  # value = token code
            proj = block.attn.c_proj.weight  # (d, d)
            proj[:tok_dims, tok_dims + pos_dims :] = torch.eye(tok_dims) * scale
        model.transformer.ln_f.weight.fill_(1.0)
        # rows of the head sum to 0, so the layer norm's mean shift cancels; 0.2 keeps it unsaturated
        model.lm_head.weight[:, tok_dims + pos_dims :] = token_codes * scale * head_gain
    return model
