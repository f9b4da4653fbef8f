"""Attention weights and attention rollout as attributions (forward only).

``attention``: attention probabilities of the row that predicts the target, per layer and head,
then reduced (mean by default) over the selected heads and layers. ``rollout``:
``R = prod_l (0.5 A_l + 0.5 I)`` with heads averaged, read at the predicting row. Probabilities
are read through the attention-function registry (:mod:`attention_capture`), so models loaded
with SDPA work without switching to eager. Each batch (at most 64 targets of one sequence) runs
one forward of its longest row, and each layer's probabilities are reduced as that layer computes
them (``stream_attentions``): no layer's ``[head, L, L]`` probabilities are kept after it.

On an encoder-decoder model, ``attention`` reads the decoder's cross-attention over the source and its
self-attention over the target prefix (both at the predicting position; ``layers`` index decoder layers);
``rollout`` rolls the encoder's self-attention out over the source, then each decoder layer's
self- and cross-attention (:func:`encoder_decoder_rollout`).

Example:
    >>> out = model.attribute(prompt, method="attention", layers=[-1], heads=[0, 1], max_new_tokens=2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from genattrib.engine.attention_capture import stream_attentions
from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.errors import InvalidArgumentError
from genattrib.methods.kinds import AttentionKind
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice, check_index_list, check_number

REDUCTIONS = ("mean", "max", "sum")


def _select(values: torch.Tensor, index: int | list[int] | None, dim: int, name: str) -> torch.Tensor:
    if index is None:
        return values
    items = [index] if isinstance(index, int) else list(index)
    size = values.shape[dim]
    bad = [i for i in items if not -size <= i < size]
    if bad:
        raise InvalidArgumentError(
            name, f"index {bad[0]} is out of range for {size}", f"use values in [-{size}, {size - 1}]"
        )
    return values.index_select(dim, torch.tensor([i % size for i in items], device=values.device))


def _reduce(values: torch.Tensor, how: str, dim: int) -> torch.Tensor:
    if how == "mean":
        return values.mean(dim)
    if how == "max":
        return values.amax(dim)
    return values.sum(dim)


@dataclass
class AttentionParams(MethodParams):
    layers: int | list[int] | None = None
    heads: int | list[int] | None = None
    head_reduction: str = "mean"
    layer_reduction: str = "mean"

    def validate(self) -> None:
        check_index_list("layers", self.layers, "layers=[-1]")
        check_index_list("heads", self.heads, "heads=[-1]")
        for name in ("head_reduction", "layer_reduction"):
            check_choice(name, getattr(self, name), REDUCTIONS, "reduction")


class _AttentionBase(AttentionKind):
    """Attention weights read at one query position (no unit rows, no attributed function)."""

    def _stream(self, batch: RowBatch, forward: ModelForward, consume: Callable[[int, torch.Tensor], None]) -> None:
        """One forward of the batch's first row (every row of a batch is a prefix of it: the
        batch holds targets of one sequence), handing ``consume(layer, probs)`` each layer's
        probabilities ``[head, L, L]`` as they are computed; none is kept."""
        stream_attentions(forward, batch.input_embeds[:1], lambda rows, layer, probs: consume(layer, probs[0]))


@register_method
class Attention(_AttentionBase):
    name = "attention"
    description = "attention probabilities of the predicting row (mean over heads and layers by default)"
    Params = AttentionParams

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p: AttentionParams = self.params
        if isinstance(forward, EncoderDecoderForward):
            return MethodOutput(self._encoder_decoder(batch, forward))
        kept: dict[int, torch.Tensor] = {}  # layer -> [row, L]: its predicting rows, heads reduced

        def consume(layer: int, probs: torch.Tensor) -> None:
            rows = _select(probs[:, batch.predicting_positions(probs.device)], p.heads, 0, "heads")  # head row L
            kept[layer] = _reduce(rows, p.head_reduction, 0).to(batch.input_embeds.device)

        self._stream(batch, forward, consume)
        per_layer = _select(torch.stack([kept[k] for k in sorted(kept)]), p.layers, 0, "layers")  # layer row L
        return MethodOutput(_reduce(per_layer, p.layer_reduction, 0))

    def _encoder_decoder(self, batch: RowBatch, forward: EncoderDecoderForward) -> torch.Tensor:
        """Encoder-decoder rows (one sequence): the decoder's cross-attention over the source and its
        self-attention over the target prefix, read at the predicting position (as Inseq does), heads
        and decoder layers selected and reduced as above."""
        p: AttentionParams = self.params
        cross, own = forward.attention_maps(batch.input_embeds[:1])  # layer 1 head query key
        queries = batch.predicting_positions(cross.device) - int(forward.source_length or 0)

        def side(maps: torch.Tensor) -> torch.Tensor:
            rows = _select(maps[:, 0][:, :, queries], p.heads, 1, "heads")  # layer head row key
            per_layer = _select(_reduce(rows, p.head_reduction, 1), p.layers, 0, "layers")
            return _reduce(per_layer, p.layer_reduction, 0)

        return torch.cat([side(cross), side(own)], -1).to(batch.input_embeds.device)


@dataclass
class RolloutParams(MethodParams):
    residual_weight: float = 0.5

    def validate(self) -> None:
        check_number("residual_weight", self.residual_weight, "residual_weight=0.5", low=0, high=1)


@register_method
class Rollout(_AttentionBase):
    name = "rollout"
    description = "attention rollout: product over layers of (0.5 A + 0.5 I), heads averaged"
    Params = RolloutParams

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        w = float(self.params.residual_weight)
        device = batch.input_embeds.device
        if isinstance(forward, EncoderDecoderForward):
            return MethodOutput(encoder_decoder_rollout(batch, forward, w).to(device))
        eye = torch.eye(batch.length, device=device)
        rollout = eye

        def consume(layer: int, probs: torch.Tensor) -> None:  # layers arrive in forward order
            nonlocal rollout
            mixed = (1 - w) * probs.mean(0).to(device) + w * eye
            rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout

        self._stream(batch, forward, consume)
        return MethodOutput(rollout[batch.predicting_positions(device)])


def _mixed(probs: torch.Tensor, w: float) -> torch.Tensor:
    """``(1 - w) A + w I`` of head-averaged probabilities ``[head, L, L]``, rows normalised."""
    mixed = (1 - w) * probs.mean(0) + w * torch.eye(probs.shape[-1], device=probs.device)
    return mixed / mixed.sum(-1, keepdim=True)


def encoder_decoder_rollout(batch: RowBatch, forward: EncoderDecoderForward, w: float) -> torch.Tensor:
    """Rollout over both stacks (the propagation of Chefer et al. 2021, with rollout's residual
    mixing): ``R_ss`` rolls the encoder's self-attention out over the source; in each decoder
    layer, self-attention mixes the target rows (``R_tt <- M R_tt``, ``R_ts <- M R_ts``) and
    cross-attention brings in the encoded source (``R_ts <- w R_ts + (1 - w) A R_ss``,
    ``R_tt <- w R_tt``). Each row of ``[R_ts, R_tt]`` sums to 1; read at the predicting positions."""
    embeds = batch.input_embeds[:1]
    encoder = forward.encoder_attention_maps(embeds)[:, 0]  # layer head source source
    cross, own = forward.attention_maps(embeds)  # layer 1 head query key
    r_ss = torch.eye(encoder.shape[-1])
    for probs in encoder.cpu():
        r_ss = _mixed(probs, w) @ r_ss
    queries = int(own.shape[-1])
    r_tt, r_ts = torch.eye(queries), torch.zeros(queries, r_ss.shape[0])
    for self_probs, cross_probs in zip(own[:, 0].cpu(), cross[:, 0].cpu()):
        mix = _mixed(self_probs, w)
        r_tt, r_ts = mix @ r_tt, mix @ r_ts
        r_ts = w * r_ts + (1 - w) * cross_probs.mean(0) @ r_ss
        r_tt = w * r_tt
    rows = batch.predicting_positions("cpu") - int(forward.source_length or 0)
    return torch.cat([r_ts, r_tt], -1)[rows]
