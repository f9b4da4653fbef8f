"""DeepLIFT (rescale rule): ``(x - x') * m``, ``m`` the gradient of the target with each
elementwise nonlinearity's derivative replaced by its secant slope between input and baseline.

``nonlinearity="rescale"`` (default) applies the rule to every activation module of the model
(SiLU, GELU, ReLU, tanh ...; :mod:`~genattrib.methods.deeplift_rules`), through the model hook;
``"gradient"`` keeps plain gradients, which is what Captum's DeepLift (so Inseq's ``deeplift``)
computes on Hugging Face models, whose activation classes are not in Captum's list. The scores
add up to ``F(x) - F(x')`` exactly only when every nonlinear step has a rule; attention,
products and normalisation keep their gradients, so the gap is reported per row as the step
score ``completeness_error`` (``sum of scores - (F(x) - F(x'))``), like integrated gradients'.
One forward-only row on the baseline (the references) and one forward+backward row per target.

Example:
    >>> out = model.attribute("The capital of France is", method="deeplift", max_new_tokens=2)
    >>> out.sequences[0].step_scores["completeness_error"].shape
    torch.Size([2])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.model_hooks import Hook, ReplaceOutput, hooked
from genattrib.methods.deeplift_rules import CaptureInputs, Rescale, nonlinearity_map
from genattrib.methods.kinds import Gradient, GradientTraits
from genattrib.methods.layer_forward import (
    AtModule,
    Layer,
    LeafOutput,
    layer_grads_by_chunk,
    on_row_positions,
    resolve_layer,
)
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice

NONLINEARITY_RULES = ("rescale", "gradient")


@dataclass
class DeepLiftParams(MethodParams):
    """``baseline``: as for integrated gradients (UNK, PAD, a token id or string, ``"zero"``, a
    tensor); ``nonlinearity``: ``"rescale"`` or ``"gradient"`` (Captum's behaviour on these models)."""

    baseline: Any = None
    nonlinearity: str = "rescale"

    def validate(self) -> None:
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITY_RULES, "rule")


@register_method
class DeepLift(Gradient):
    name = "deeplift"
    description = "DeepLIFT rescale rule: (x - x') times secant-slope gradients; sum over hidden"
    Params = DeepLiftParams
    traits = GradientTraits(
        uses_baseline=True,
        group_by_sequence=False,  # each row runs its own baseline and input
        step_score_merge={"completeness_error": "sum", "baseline_value": "sum"},
    )

    def layer(self, forward: ModelForward) -> Layer:
        """The layer scored (the input embeddings here; ``layer_deeplift`` names one)."""
        return resolve_layer(forward.model, None)

    def reference_rows(self, length: int) -> int:
        return 1  # the baseline's forward row (references and F(x'))

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        self.layer(forward)
        super().check_model(forward, attributed_fn)

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        layer = self.layer(forward)
        rescale = self.params.nonlinearity == "rescale"
        x = batch.input_embeds
        base = torch.where(batch.movable(), batch.baseline_embeds, x)
        targets = batch.explained()
        n, length = batch.num_rows, batch.length
        f_base = torch.empty(n, dtype=torch.float32, device=forward.head_device)
        f_input = torch.empty_like(f_base)
        parts: list[Tensor] = []
        layer_base: dict[str, Tensor] = {}  # the layer's output on the baseline, per chunk

        def references(chunk: slice, embeds: Tensor) -> tuple[Hook, ...]:
            """The baseline's forward rows for ``chunk``: F(x'), the layer's output and the
            nonlinearities' inputs, read in sub-chunks (forward-only rows)."""
            pieces: list[dict[str, Tensor]] = []
            layer_refs: list[Tensor] = []
            rows = base[chunk]
            sub_targets = targets.select(chunk).map(lambda t: t.unsqueeze(1))

            def run(sub: slice) -> None:
                capture = CaptureInputs()
                grab = LeafOutput()
                hooks: list[Hook] = [nonlinearity_map(capture)] if rescale else []
                if not layer.is_embedding:
                    hooks.append(AtModule(layer.name, ReplaceOutput(grab)))
                with hooked(forward.model, *hooks):
                    values = forward.unit_values(rows[sub], sub_targets.select(sub), attributed_fn)[:, 0]
                f_base[chunk.start + sub.start : chunk.start + sub.stop] = values.float()
                pieces.append(capture.inputs)
                layer_refs.append(rows[sub] if layer.is_embedding else grab.leaf)

            forward.run_chunked(chunk.stop - chunk.start, length, run, grad=False, n_logits=targets.slots)
            merged = {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}
            layer_base["out"] = torch.cat(layer_refs)
            return (nonlinearity_map(Rescale(merged)),) if rescale else ()

        def consume(chunk: slice, value: Tensor, grad: Tensor, out: Tensor) -> None:
            f_input[chunk] = value.to(f_input.device)
            parts.append(grad * (out.float() - layer_base["out"].float().to(out.device)))

        layer_grads_by_chunk(
            forward,
            layer,
            n,
            length,
            lambda chunk: x[chunk],
            lambda chunk: None,
            targets,
            attributed_fn,
            consume,
            references,
        )
        attributions = on_row_positions(forward, layer, torch.cat(parts), length)
        valid = batch.before_target(attributions.device)
        total = (attributions.sum(-1) * valid).sum(-1)
        error = total.to(f_input.device) - (f_input - f_base)
        return MethodOutput(attributions, {"completeness_error": error, "baseline_value": f_base})
