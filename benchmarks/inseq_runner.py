"""The Inseq 0.7.1 side of ``bench_vs_inseq.py``: one attribute call per method, and its scores
as genattrib's (step × source position) matrix.

For a decoder-only model Inseq puts everything in ``target_attributions``, shaped (position,
step, hidden) for gradient methods, (position, step) for occlusion and (position, step, layer,
head) for attention; the steps are the forced tokens after the prompt.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from bench_common import ATTRIBUTED_FN, PROMPT, SPECS


def _set_attention(hf_model: Any, implementation: str) -> None:
    if hasattr(hf_model, "set_attn_implementation"):
        hf_model.set_attn_implementation(implementation)
    else:  # older transformers
        hf_model.config._attn_implementation = implementation


def inseq_call(model: Any, method: str, args: Any) -> Callable[[str], Any]:
    """``call(continuation) -> Inseq output`` for ``method`` on genattrib's loaded model and tokenizer."""
    import inseq

    # Inseq sets padding side and pad token on the tokenizer it gets: give it its own copy.
    inseq_model = inseq.load_model(model.model, method, tokenizer=copy.deepcopy(model.tokenizer), device=args.device)
    params = SPECS[method].inseq(args)
    hf = model.model
    eager = method == "attention"  # Inseq reads attention weights from the model: SDPA cannot return them
    previous = getattr(hf.config, "_attn_implementation", "sdpa")

    def call(continuation: str) -> Any:
        if eager:
            _set_attention(hf, "eager")
        try:
            return inseq_model.attribute(
                PROMPT,
                generated_texts=PROMPT + continuation,
                attributed_fn=ATTRIBUTED_FN,
                show_progress=False,
                **params,
            )
        finally:
            if eager:
                _set_attention(hf, previous)

    return call


def inseq_steps(out: Any) -> int:
    seq = out.sequence_attributions[0]
    return seq.attr_pos_end - seq.attr_pos_start


def inseq_matrix(out: Any, reduction: str) -> torch.Tensor:
    """Inseq's raw scores reduced like genattrib's default, as (step, position)."""
    raw = out.sequence_attributions[0].target_attributions.float().transpose(0, 1)  # step, position, ...
    if reduction == "l2":
        return raw.norm(dim=-1)
    if reduction == "sum":
        return raw.sum(-1)
    if reduction == "layer_mean":  # (step, position, layer): value zeroing, mean over layers
        return raw.mean(-1)
    if reduction == "mean":  # (step, position, layer, head): heads, then layers
        return raw.mean(-1).mean(-1)
    return raw  # occlusion: already |Δ|, one value per position


def genattrib_matrix(out: Any, reduction: str) -> torch.Tensor:
    scores = out.sequences[0].scores.float()
    return scores.abs() if reduction == "abs" else scores
