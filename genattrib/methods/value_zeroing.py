"""Value zeroing (Mohebbi et al., EACL 2023): how much a token's hidden state at block ``l``
changes when the value vector of an earlier token ``j`` is zeroed in that block's attention.

For every block ``l`` and every position ``j``: zero ``v_j`` (all heads) in block ``l``, run the
block on its clean input, and score query position ``i >= j`` by the dissimilarity between its
clean and zeroed outputs, ``d = 1 - cos(h_i, h~_i)`` (``similarity_metric="cosine"``, the paper's
and Inseq's default) or ``||h_i - h~_i||`` (``"euclidean"``). Scores below ``threshold`` become 0,
then each query's scores are divided by their sum over ``j <= i``; a row explaining the token at
``t`` reads query ``i = t - 1`` (the position that predicts it, as ``attention``), and the
``layers`` chosen (default all) are averaged (Inseq's default aggregation). The last block is
compared after the final norm, as the model's ``hidden_states[-1]`` (and Inseq) read it.

Batched: one model row per zeroed position ``j``, every block zeroing ``v_j`` at once with each
block's output replaced by its clean output (so block ``l`` sees its clean input, as in Inseq), and
a causal model lets those rows score every target of the sequence: ``length + 1`` rows per sequence.
Decoder-only families with a ``v_proj`` (Llama, Qwen2, Mistral ...) or GPT-2's ``c_attn``; on an
encoder-decoder model (:mod:`~genattrib.methods.value_zeroing_seq2seq`) ``layers`` index the decoder's
blocks, the source is scored through the cross-attention and the target prefix through the decoder's
self-attention, each side normalised to sum to 1 per query (as Inseq).

Example:
    >>> out = model.attribute("The capital of France is", method="value_zeroing", layers=[-1], max_new_tokens=2)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.model_hooks import Hook, ModuleRule, ReplaceOutput, hooked
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.errors import InvalidArgumentError, UnsupportedModelError
from genattrib.methods.kinds import Perturbation, PerturbationTraits
from genattrib.methods.layer_forward import AtModule, block_stack
from genattrib.methods.registration import register_method
from genattrib.methods.value_zeroing_seq2seq import decoder_distances, decoder_values, output_distance
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice

SIMILARITY_METRICS = ("cosine", "euclidean")


@dataclass
class ValueZeroingParams(MethodParams):
    """``similarity_metric``: ``"cosine"`` (distance ``1 - cos``) or ``"euclidean"``; ``layers``:
    block indices whose scores are averaged (``None``: all); ``threshold``: scores below it are 0."""

    similarity_metric: str = "cosine"
    layers: Any = None  # Sequence[int] | int | None, checked in validate (a named error, not a type error)
    threshold: float = 1e-5

    def validate(self) -> None:
        check_choice("similarity_metric", self.similarity_metric, SIMILARITY_METRICS, "metric")
        layers = [self.layers] if isinstance(self.layers, int) else self.layers
        if layers is not None and (
            not layers or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers)
        ):
            raise InvalidArgumentError("layers", f"cannot use {self.layers!r}", "pass block indices, e.g. [-1]")
        if not self.threshold >= 0:
            raise InvalidArgumentError("threshold", f"{self.threshold!r} is negative", "pass 0 or more, e.g. 1e-5")


def value_modules(model: nn.Module) -> list[tuple[str, slice | None]]:
    """Per block, the module whose output holds the value vectors, and the slice of its last
    dimension that is ``v`` (``None``: all of it): ``v_proj`` or GPT-2's fused ``c_attn``."""
    stack_name, stack = block_stack(model)
    found = []
    for index, block in enumerate(stack):
        names = dict(block.named_modules())
        v = next((n for n in names if n.split(".")[-1] == "v_proj"), None)
        if v is not None:
            found.append((f"{stack_name}.{index}.{v}", None))
            continue
        fused = next((n for n in names if n.split(".")[-1] == "c_attn"), None)
        if fused is None:
            raise UnsupportedModelError(
                f"value_zeroing finds no value projection (v_proj, or GPT-2's c_attn) in block {index} of "
                f"{type(model).__name__}; use attention or occlusion on this model"
            )
        width = int(getattr(model.config, "hidden_size", 0) or model.config.n_embd)
        found.append((f"{stack_name}.{index}.{fused}", slice(2 * width, 3 * width)))
    return found


@dataclass(frozen=True)
class _ZeroValues(ModuleRule):
    """Zeroes, in row ``r``, the value vector of position ``positions[r]`` (its ``part`` only)."""

    positions: Tensor
    part: slice | None

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def zero(_module: nn.Module, out: Tensor) -> Tensor:
            rows = torch.arange(out.shape[0], device=out.device)
            keep = torch.ones(out.shape[:2], dtype=out.dtype, device=out.device)
            keep[rows, self.positions.to(out.device)] = 0
            if self.part is None:
                return out * keep.unsqueeze(-1)
            out = out.clone()
            out[..., self.part] = out[..., self.part] * keep.unsqueeze(-1)
            return out

        ReplaceOutput(zero).attach(name, module, stack)


@register_method
class ValueZeroing(Perturbation):
    name = "value_zeroing"
    description = "value zeroing (Mohebbi et al. 2023): change of hidden states when a token's value is zeroed"
    Params = ValueZeroingParams
    traits = PerturbationTraits(
        uses_baseline=False,
        explains_attributed_fn=False,
        supports_units=False,
        ablates_source_units=False,
        copies_score_every_target=True,
    )

    def rows_per_target(self, length: int) -> int:
        return length + 1  # the clean row and one zeroed row per position (a row ends before its target)

    def _layers(self, forward: ModelForward) -> list[int]:
        seq2seq = isinstance(forward, EncoderDecoderForward)
        count = len(decoder_values(forward.model).blocks if seq2seq else block_stack(forward.model)[1])
        layers = self.params.layers
        chosen = range(count) if layers is None else [layers] if isinstance(layers, int) else layers
        bad = [v for v in chosen if not -count <= v < count]
        if bad:
            raise InvalidArgumentError(
                "layers", f"block index {bad[0]} is out of range: the model has {count} blocks", "pass indices in range"
            )
        return sorted({v % count for v in chosen})

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        super().check_model(forward, attributed_fn)
        if not isinstance(forward, EncoderDecoderForward):
            value_modules(forward.model)
        self._layers(forward)

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        if isinstance(forward, EncoderDecoderForward):
            return self._attribute_seq2seq(batch, forward)
        distances = self.distances(batch.input_embeds[0], forward)  # [layer, zeroed j, query i]
        chosen = self._layers(forward)
        scores = distances[chosen]
        scores = torch.where(scores < self.params.threshold, torch.zeros_like(scores), scores)
        query = batch.predicting_positions("cpu")
        per_row = scores[:, :, query].permute(2, 0, 1)  # [row, layer, zeroed j]
        cols = torch.arange(per_row.shape[-1])
        visible = (cols.unsqueeze(0) <= query.unsqueeze(1)).unsqueeze(1)  # j <= i
        per_row = per_row * visible
        total = per_row.sum(-1, keepdim=True)
        per_row = per_row / torch.where(total == 0, torch.ones_like(total), total)
        out = torch.zeros(batch.num_rows, batch.length)
        out[:, : per_row.shape[-1]] = per_row.mean(1)
        return MethodOutput(out * batch.before_target("cpu"))

    def _attribute_seq2seq(self, batch: RowBatch, forward: EncoderDecoderForward) -> MethodOutput:
        """Source scores from the cross-attention, target-prefix scores from the decoder's self-attention,
        each side normalised over its positions (a row explaining the token at ``t`` reads decoder query
        ``t - 1 - source``)."""
        source = forward.base.split(batch.length)
        distances = decoder_distances(batch.input_embeds[0], forward, self.params.similarity_metric)
        scores = distances[self._layers(forward)]  # [layer, row position j, decoder query]
        scores = torch.where(scores < self.params.threshold, torch.zeros_like(scores), scores)
        query = batch.predicting_positions("cpu") - source
        per_row = scores[:, :, query].permute(2, 0, 1)  # [row, layer, j]
        for side in (slice(0, source), slice(source, None)):  # each side sums to 1 per query
            total = per_row[..., side].sum(-1, keepdim=True)
            per_row[..., side] = per_row[..., side] / torch.where(total == 0, torch.ones_like(total), total)
        out = torch.zeros(batch.num_rows, batch.length)
        out[:, : per_row.shape[-1]] = per_row.mean(1)
        return MethodOutput(out * batch.before_target("cpu"))

    def distances(
        self, x: Float[Tensor, "position hidden"], forward: ModelForward
    ) -> Float[Tensor, "layer position query"]:
        """``d[l, j, i]``: dissimilarity of query ``i``'s output of block ``l`` with ``v_j`` zeroed
        there (0 where ``i < j``)."""
        model, metric = forward.model, self.params.similarity_metric
        stack_name, stack = block_stack(model)
        blocks = [f"{stack_name}.{i}" for i in range(len(stack))]
        values = value_modules(model)
        length, count = int(x.shape[0]), len(blocks)
        clean: dict[str, Tensor] = {}

        def grab(name: str) -> Hook:
            return AtModule(name, ReplaceOutput(lambda _m, out: clean.__setitem__(name, out.detach()) or out))

        final = torch.empty(0)

        def run_clean(chunk: slice) -> None:
            nonlocal final
            with hooked(model, *map(grab, blocks)):
                final = forward.hidden_states(x.unsqueeze(0)).detach()

        forward.run_chunked(1, length, run_clean, grad=False)
        zeroed = length
        dist = torch.zeros(count, zeroed, length)

        def run(chunk: slice) -> None:
            positions = torch.arange(chunk.start, chunk.stop)
            rows = chunk.stop - chunk.start
            hooks: list[Any] = [AtModule(name, _ZeroValues(positions, part)) for name, part in values]

            def patch(index: int) -> Hook:
                def swap(_m: nn.Module, out: Tensor) -> Tensor:
                    d = output_distance(clean[blocks[index]].expand(rows, -1, -1), out, metric)
                    dist[index, chunk] = d.cpu()
                    return clean[blocks[index]].to(out.device, out.dtype).expand(rows, -1, -1)

                return AtModule(blocks[index], ReplaceOutput(swap))

            hooks += [patch(i) for i in range(count - 1)]
            with hooked(model, *hooks):
                out = forward.hidden_states(x.unsqueeze(0).expand(rows, -1, -1))
            dist[count - 1, chunk] = output_distance(final.expand(rows, -1, -1), out.detach(), metric).cpu()

        forward.run_chunked(zeroed, length, run, grad=False)
        causal = torch.arange(length).unsqueeze(0) >= torch.arange(zeroed).unsqueeze(1)  # i >= j
        return dist * causal
