"""Layer integrated gradients: integrated gradients at a layer's output, from the layer's output
on the baseline to its output on the input.

``LIG_i = (a_i - a'_i) * sum_k w_k dF/da_i(a' + a_k (a - a'))`` with ``a`` the output of
``layer`` on the input and ``a'`` on the baseline (token ids: UNK, PAD or a given id; the
model's own layers map them to ``a'``). At the embedding layer (the default) this is
integrated gradients with the baseline token's embedding, read from shared forward rows; at a
hidden layer (a block index or a module name) each row runs its own path, the blocks before the
layer on the input (as Captum and Inseq), and the hidden dimension is summed to one score per
position. ``completeness_error`` (``sum of scores - (F(x) - F(x; a'))``, ``F(x; a')`` the
target with the layer's output set to ``a'``: ``F(x')`` for a block's output, while the residual
stream past a sublayer still carries ``x``) is reported as for integrated gradients, and
``baseline_value`` is ``F(x; a')``.

Example:
    >>> out = model.attribute("The capital of France is", method="layer_integrated_gradients", layer=1,
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
    LeafOutput,
    check_layer_param,
    layer_grads_by_chunk,
    on_row_positions,
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

    def reference_rows(self, length: int) -> int:
        return 2 if _at_embeddings(self.params.layer) else 3  # F(x'), F(x); at a layer a', a and F(x; a')

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
        # the path's ends: a' (the layer's output on the baseline), a (on the input, with F(x)) and
        # F(x with the layer's output set to a'), 3 forward-only rows per row; for a block's output
        # that is F(x'), for a sublayer (an MLP ...) the residual stream still carries x
        store: dict[str, Tensor] = {}  # written by slice, so a chunk retried after running out of memory is idempotent
        ends_values = torch.empty(3 * n, dtype=torch.float32, device=forward.head_device)
        ends = torch.cat([base, x])
        end_targets = targets.map(lambda t: torch.cat([t, t, t]).unsqueeze(1))

        def run_end(chunk: slice) -> None:
            first, rest = slice(chunk.start, min(chunk.stop, 2 * n)), slice(max(chunk.start, 2 * n), chunk.stop)
            if first.stop > first.start:
                grab = LeafOutput()
                with hooked(forward.model, AtModule(layer.name, ReplaceOutput(grab))):
                    values = forward.unit_values(ends[first], end_targets.select(first), attributed_fn)[:, 0]
                ends_values[first] = values.float()
                if "a" not in store:
                    store["a"] = grab.leaf.new_empty(2 * n, *grab.leaf.shape[1:])
                store["a"][first] = grab.leaf
            if rest.stop > rest.start:
                rows = slice(rest.start - 2 * n, rest.stop - 2 * n)
                a_base = store["a"][rows]
                patch = AtModule(layer.name, ReplaceOutput(LeafOutput(a_base)))
                with hooked(forward.model, patch):
                    values = forward.unit_values(x[rows], end_targets.select(rest), attributed_fn)[:, 0]
                ends_values[rest] = values.float()

        forward.run_chunked(3 * n, length, run_end, grad=False, n_logits=targets.slots)
        outs = store["a"].float()
        a_base, a_input = outs[:n], outs[n:]
        f_input, f_base = ends_values[n : 2 * n], ends_values[2 * n :]
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
        attributions = on_row_positions(forward, layer, (a_input - a_base) * avg_grad, length)
        valid = batch.before_target(attributions.device)
        total = (attributions.sum(-1) * valid).sum(-1)
        error = total.to(f_input.device) - (f_input - f_base)
        return MethodOutput(attributions, {"completeness_error": error, "baseline_value": f_base})
