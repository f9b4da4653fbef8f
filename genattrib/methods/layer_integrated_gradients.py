"""Layer integrated gradients: integrated gradients at a layer's output, from the layer's output
on the baseline to its output on the input.

``LIG_i = (a_i - a'_i) * sum_k w_k dF/da_i(a' + a_k (a - a'))`` with ``a`` the output of
``layer`` on the input and ``a'`` on the baseline (token ids: UNK, PAD or a given id; the
model's own layers map them to ``a'``). At the embedding layer (the default) this is
integrated gradients with the baseline token's embedding, read from shared forward rows; at a
hidden layer (a block index or a module name) each row runs its own path, the blocks before the
layer on the input (as Captum and Inseq), and the hidden dimension is summed to one score per
position. ``completeness_error`` (``sum of scores - (F(x) - F(x'))``) is reported as for
integrated gradients.

Example:
    >>> out = model.attribute("The capital of France is", method="layer_integrated_gradients", layer=3,
    ...                       n_steps=32, max_new_tokens=2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genattrib.engine.contract import MethodOutput, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.model_hooks import ReplaceOutput, hooked
from genattrib.engine.row_refs import RowRef
from genattrib.errors import InvalidArgumentError
from genattrib.methods.auto_steps import is_auto
from genattrib.methods.integrated_gradients import IGParams, IntegratedGradients
from genattrib.methods.layer_forward import (
    EMBEDDINGS,
    AtModule,
    _Leaf,
    check_layer_param,
    layer_grads_by_chunk,
    resolve_layer,
)
from genattrib.methods.quadrature import quadrature_rule
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction


@dataclass
class LayerIGParams(IGParams):
    """``layer``: ``None``/``"embeddings"`` (default), a block index or a module name; the other
    parameters as for integrated gradients (``n_steps="auto"`` at the embedding layer only)."""

    layer: Any = None  # int | str | None, checked in validate (a named error, not a type error)

    def validate(self) -> None:
        super().validate()
        check_layer_param(self.layer)
        if is_auto(self.n_steps) and not _at_embeddings(self.layer):
            raise InvalidArgumentError(
                "n_steps", "'auto' steps are supported at the embedding layer only", "pass a number of steps"
            )


def _at_embeddings(layer: int | str | None) -> bool:
    return layer is None or layer == EMBEDDINGS


@register_method
class LayerIntegratedGradients(IntegratedGradients):
    name = "layer_integrated_gradients"
    description = "integrated gradients at a layer's output (embeddings by default, token-id baselines)"
    Params = LayerIGParams

    def shares_rows(self, refs: Sequence[RowRef]) -> bool:
        return _at_embeddings(self.params.layer) and super().shares_rows(refs)

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        resolve_layer(forward.model, self.params.layer)
        super().check_model(forward, attributed_fn)

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        if _at_embeddings(self.params.layer):
            return super().attribute(batch, forward, attributed_fn)
        layer = resolve_layer(forward.model, self.params.layer)
        alphas, weights = quadrature_rule(self.params.quadrature, self.params.n_steps)
        steps, n, length = int(alphas.shape[0]), batch.num_rows, batch.length
        x = batch.input_embeds
        base = torch.where(batch.movable(), batch.baseline_embeds, x)
        targets = batch.explained()
        # the layer's output and F on the baseline and the input: 2 forward-only rows per row
        ends_out: list[Tensor] = []
        ends_values = torch.empty(2 * n, dtype=torch.float32, device=forward.head_device)
        ends, end_targets = torch.cat([base, x]), targets.map(lambda t: torch.cat([t, t]).unsqueeze(1))

        def run_end(chunk: slice) -> None:
            grab = _Leaf()
            with hooked(forward.model, AtModule(layer.name, ReplaceOutput(grab))):
                ends_values[chunk] = forward.unit_values(ends[chunk], end_targets.select(chunk), attributed_fn)[:, 0]
            ends_out.append(grab.leaf)

        forward.run_chunked(2 * n, length, run_end, grad=False, n_logits=targets.slots)
        outs = torch.cat(ends_out).float()
        a_base, a_input = outs[:n], outs[n:]
        f_base, f_input = ends_values[:n], ends_values[n:]
        a = alphas.to(device=outs.device, dtype=torch.float32)
        w = weights.to(device=outs.device, dtype=torch.float32)
        avg_grad = torch.zeros_like(a_input)

        def index(chunk: slice) -> tuple[Tensor, Tensor]:
            i = torch.arange(chunk.start, chunk.stop, device=outs.device)
            return i // steps, i % steps

        def point(chunk: slice) -> Tensor:
            row, step = index(chunk)
            return a_base[row] + a[step].view(-1, 1, 1) * (a_input[row] - a_base[row])

        def add(chunk: slice, _value: Tensor, grad: Tensor, _out: Tensor) -> None:
            row, step = index(chunk)
            avg_grad.index_add_(0, row, grad.to(outs.device) * w[step].view(-1, 1, 1))

        layer_grads_by_chunk(
            forward,
            layer,
            n * steps,
            length,
            lambda chunk: x[index(chunk)[0].to(x.device)],
            point,
            targets.repeat_interleave(steps),
            attributed_fn,
            add,
        )
        attributions = (a_input - a_base) * avg_grad
        valid = batch.before_target(attributions.device)
        total = (attributions.sum(-1) * valid).sum(-1)
        error = total.to(f_input.device) - (f_input - f_base)
        return MethodOutput(attributions, {"completeness_error": error, "baseline_value": f_base})
