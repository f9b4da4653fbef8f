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

import contextlib
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
    contrast sequence's token at the aligned position). ``source_length``: on an encoder-decoder
    model, the contrast sequence's own source (encoder) positions; ``None`` on a decoder-only one.
    """

    input_ids: Int[Tensor, " position"]
    positions: Int[Tensor, " generated"]
    token_ids: Int[Tensor, " generated"] | None = None
    source_length: int | None = None


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
            with _encoding(forward, seq.source_length):
                hidden = forward.hidden_states(forward.embed(ids[None]))[0]
            positions = seq.positions.long()
            logits.append(forward.head_logits(hidden[(positions - 1).to(hidden.device)]).float().cpu())
            tokens.append(ids[positions] if seq.token_ids is None else seq.token_ids.long())
            keys.append(torch.arange(offset, offset + int(positions.shape[0])))
            offset += int(positions.shape[0])
    return ContrastTable(torch.cat(logits), torch.cat(tokens), keys)


def _encoding(forward: ModelForward, source_length: int | None) -> contextlib.AbstractContextManager[None]:
    """The encoder-decoder forward's :meth:`encoding` block for a contrast sequence's own source length."""
    if source_length is None:
        return contextlib.nullcontext()
    return forward.encoding(source_length)  # type: ignore[attr-defined]  # an EncoderDecoderForward


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


#: Pairs ``(i, j)``: the token at index ``i`` of a sequence aligned with token ``j`` of its contrast sequence.
Alignment = list[tuple[int, int]]


def check_alignments(value: object, prompts: int, has_input: bool) -> list[Alignment] | None:
    """``contrast_alignments`` as one list of ``(i, j)`` pairs per prompt (a flat list: the same for
    every prompt), checked: pairs of ints ``>= 0``, and only with a contrast input.

    Example:
        >>> check_alignments([(3, 2), (4, 3)], 2, has_input=True)
        [[(3, 2), (4, 3)], [(3, 2), (4, 3)]]
    """
    if value is None:
        return None
    name = "contrast_alignments"
    if isinstance(value, str):
        raise InvalidArgumentError(
            name,
            f"{value!r}: automatic alignment needs Inseq's word aligner (a model from the hub), which genattrib "
            "does not load",
            "pass the pairs [(i, j), ...] yourself, or leave it out to align the steps from the end",
        )
    if not has_input:
        raise InvalidArgumentError(
            name, "aligns the steps with a contrast sequence, but none was given",
            "pass contrast_prompt= or contrast_continuation= with it",
        )  # fmt: skip
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        raise InvalidArgumentError(name, f"expected a list of (i, j) pairs, got {type(value).__name__}",
                                   "pass e.g. [(5, 4), (6, 6)]")  # fmt: skip
    nested = bool(items) and all(isinstance(x, (list, tuple)) and not _is_pair(x) for x in items)
    per_prompt = [list(x) for x in items] if nested else [items] * prompts
    if len(per_prompt) != prompts:
        raise InvalidArgumentError(name, f"{len(per_prompt)} lists of pairs for {prompts} prompts",
                                   "pass one list of pairs per prompt (or one list for all)")  # fmt: skip
    for pairs in per_prompt:
        for pair in pairs:
            if not _is_pair(pair) or min(pair) < 0:
                raise InvalidArgumentError(name, f"{pair!r} is not a pair of token indices >= 0",
                                           "pass pairs (i, j) of ints, e.g. (5, 4)")  # fmt: skip
    return [[(int(i), int(j)) for i, j in pairs] for pairs in per_prompt]


def _is_pair(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def aligned_positions(
    alignment: Alignment,
    sequence_length: int,
    prompt_length: int,
    contrast_length: int,
    offsets: tuple[int, int] = (0, 0),
) -> Int[Tensor, " generated"]:
    """The contrast position of each generated step: the step at index ``i`` (counted from
    ``offsets[0]``, where the decoder's tokens start) takes ``j`` of its pair (counted from
    ``offsets[1]`` in the contrast sequence), as Inseq's ``contrast_targets_alignments`` does (for an
    ``i`` with several pairs, the first ``j`` not taken by an earlier step); steps without a pair
    align from the end (:func:`right_aligned`).

    Example:
        >>> aligned_positions([(7, 3)], 10, 6, 9).tolist()  # step 1 (index 7) reads position 3
        [5, 3, 7, 8]
    """
    steps = torch.arange(prompt_length, sequence_length)
    positions = steps - sequence_length + contrast_length
    taken: set[int] = set()
    for k, position in enumerate(steps.tolist()):
        matches = sorted({j for i, j in alignment if i == position - offsets[0]})
        if not matches:
            continue
        free = [j for j in matches if j not in taken]
        j = (free or matches)[0]
        taken.add(j)
        if not 1 <= j + offsets[1] < contrast_length or j < 1:
            raise InvalidArgumentError(
                "contrast_alignments",
                f"the pair ({position - offsets[0]}, {j}) points outside the contrast sequence's tokens that can be "
                f"predicted (1 to {contrast_length - offsets[1] - 1})",
                "pass contrast token indices after the first token (the first one has no prediction)",
            )
        positions[k] = j + offsets[1]
    if positions.numel() and int(positions.min()) < 1:
        raise InvalidArgumentError(
            "contrast_alignments",
            "a step without a pair aligns, from the end, before the contrast sequence's first token",
            "give that step a pair, or a longer contrast sequence",
        )
    return positions
