"""Contrastive inputs: the model's predictions under a *different input* (``contrast_prompt=``,
``contrast_continuation=``; Inseq's ``contrast_sources``/``contrast_targets``), read by the
contrastive target functions (``contrast_prob``, ``pcxmi``, ``kl_divergence`` ...).

The contrast sequences run once, teacher-forced and without gradients, before attribution. Their
next-token logits at the aligned positions go into one :class:`ContrastTable`, a row per explained
step. The engine then carries each step's *row key* where it carries contrast token ids, and
:func:`bind_contrast` turns a target function into one that reads the table: nothing else in the
engine changes, and gradient, perturbation and attention methods all see the same constants (the
contrast input does not depend on the attributed input, so it adds no gradient).

Example:
    >>> seq = ContrastSequence(torch.tensor([5, 7, 8]), positions=torch.tensor([1, 2]))
    >>> table = contrast_table(ModelForward(hf_model), [seq])
    >>> table.logits.shape[0], table.keys[0].tolist()
    (2, [0, 1])
    >>> from genattrib.targets import resolve_target
    >>> bound = bind_contrast(resolve_target("contrast_prob"), table)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.engine.forward import ModelForward
from genattrib.errors import InvalidArgumentError
from genattrib.targets import TargetContext, TargetFunction


@dataclass(frozen=True)
class ContrastSequence:
    """One contrast sequence (contrast prompt and continuation, ids) and, for each generated step of
    the real continuation, the position of the contrast sequence it aligns with (``positions``,
    at least 1: the logits are read at the position before).

    ``token_ids`` are the contrast tokens of those steps (a ``contrast_target=`` token, else the
    contrast sequence's token at the aligned position).
    """

    input_ids: Int[Tensor, " position"]
    positions: Int[Tensor, " generated"]
    token_ids: Int[Tensor, " generated"] | None = None


@dataclass(frozen=True)
class ContrastTable:
    """The contrast predictions of a call: row ``keys[s][i]`` holds sequence ``s``'s step ``i``."""

    logits: Float[Tensor, "row vocab"]
    token_ids: Int[Tensor, " row"]
    keys: list[Int[Tensor, " generated"]]

    def context(self, ctx: TargetContext, logits: bool = True) -> TargetContext:
        """``ctx`` (whose ``contrast_ids`` are row keys) with the contrast tokens and (``logits``) the
        contrast input's logits filled in. Keys beyond the table (the engine's one-token probes pass
        token ids) read its last row."""
        assert ctx.contrast_ids is not None
        keys = ctx.contrast_ids.long().clamp(0, self.logits.shape[0] - 1).cpu()
        device = ctx.logits.device
        return TargetContext(
            ctx.logits,
            ctx.target_ids,
            self.token_ids[keys].to(device),
            self.logits[keys].to(device) if logits else None,
            ctx.noisy_logits,
        )


def contrast_table(forward: ModelForward, sequences: Sequence[ContrastSequence]) -> ContrastTable:
    """Run every contrast sequence once (no gradients) and keep the logits at its aligned steps."""
    logits, tokens, keys, offset = [], [], [], 0
    with torch.no_grad():
        for seq in sequences:
            ids = seq.input_ids.long()
            hidden = forward.hidden_states(forward.embed(ids[None]))[0]
            positions = seq.positions.long()
            logits.append(forward.head_logits(hidden[(positions - 1).to(hidden.device)]).float().cpu())
            tokens.append(ids[positions] if seq.token_ids is None else seq.token_ids.long())
            keys.append(torch.arange(offset, offset + int(positions.shape[0])))
            offset += int(positions.shape[0])
    return ContrastTable(torch.cat(logits), torch.cat(tokens), keys)


def bind_contrast(target: TargetFunction, table: ContrastTable, logits: bool = True) -> TargetFunction:
    """``target`` reading its contrast from ``table`` (same name, rule and traits): the contrast
    tokens, and with ``logits`` the contrast input's predictions (else the contrast tokens are
    read under the real input, as Inseq's attributed functions do without ``contrast_force_inputs``)."""
    inner = target.fn

    def with_contrast(ctx: TargetContext) -> Float[Tensor, " row"]:
        return inner(table.context(ctx, logits))

    return dataclasses.replace(target, fn=with_contrast)


def right_aligned(sequence_length: int, prompt_length: int, contrast_length: int) -> Int[Tensor, " generated"]:
    """Inseq's default alignment: the generated positions of a sequence matched 1:1 from the end with
    the positions of the contrast sequence (step ``i`` with contrast step ``i`` when the two
    continuations have the same length, whatever the prompts' lengths).

    Example:
        >>> right_aligned(10, 6, 7).tolist()  # 4 generated steps; the contrast prompt is 3 tokens
        [3, 4, 5, 6]
    """
    positions = torch.arange(prompt_length, sequence_length) - sequence_length + contrast_length
    if positions.numel() and int(positions.min()) < 1:
        raise InvalidArgumentError(
            "contrast_continuation",
            f"the contrast sequence has {contrast_length} tokens, too few to align the "
            f"{sequence_length - prompt_length} generated tokens with its positions from the end",
            "pass a contrast prompt and continuation at least as long as the continuation",
        )
    return positions
