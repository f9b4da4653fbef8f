"""The Inseq 0.7.1 side of ``bench_vs_inseq.py``: one attribute call per method, and its scores
as genattrib's (step × source position) matrix.

For a decoder-only model Inseq puts everything in ``target_attributions``, shaped (position,
step, hidden) for gradient methods, (position, step) for occlusion and (position, step, layer,
head) for attention; the steps are the forced tokens after the prompt.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from bench_common import ATTRIBUTED_FN, PROMPT, SPECS


def _set_attention(hf_model: Any, implementation: str) -> None:
    if hasattr(hf_model, "set_attn_implementation"):
        hf_model.set_attn_implementation(implementation)
    else:  # older transformers
        hf_model.config._attn_implementation = implementation


@contextlib.contextmanager
def tensor_block_outputs(seen: list[str]) -> Iterator[None]:
    """Inseq 0.7.1's value zeroing with its block hook taught that a decoder block may return a tensor
    (a fix of Inseq, undone on exit; it appends the block's class to ``seen`` when it was needed).

    ``ValueZeroing.get_states_extract_and_patch_hook`` (inseq/attr/feat/ops/value_zeroing.py) stores
    ``output[0]`` as the zeroed states and returns ``output[:0] + (clean,) + output[1:]``: right for the
    tuple a block used to return, a TypeError for the tensor Llama-style blocks return now. Here a tensor
    output is stored whole and replaced by the clean states; a tuple goes through Inseq's own hook.
    """
    from inseq.attr.feat.ops.value_zeroing import ValueZeroing

    original = ValueZeroing.get_states_extract_and_patch_hook

    def factory(self: Any, block_idx: int, hidden_state_idx: int = 0) -> Any:
        inseq_hook = original(self, block_idx, hidden_state_idx)

        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            if not isinstance(output, torch.Tensor):
                return inseq_hook(module, args, output)
            if type(module).__name__ not in seen:
                seen.append(type(module).__name__)
            self.corrupted_block_output_states[block_idx] = output.clone().float().detach().cpu()
            return self.clean_block_output_states[block_idx].to(output.device, output.dtype)

        return hook

    ValueZeroing.get_states_extract_and_patch_hook = factory
    try:
        yield
    finally:
        ValueZeroing.get_states_extract_and_patch_hook = original


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
        fixed = tensor_block_outputs([]) if method == "value_zeroing" else contextlib.nullcontext()
        try:
            with fixed:
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
