"""RPI: randomized path-integration over the attention of one layer (Barkan et al., 2024).

For the row that explains target ``p`` (prefix of ``p`` tokens), ``A`` = post-softmax attention
of layer ``layer`` (default: third from last). Each of ``num_samples`` seeded baselines
``b = sqrt(abar_t) A + (1 - abar_t) N`` (diffusion schedule, ``t = noise_t``) starts a path
``v_k = b + (k/n)(A - b)``, ``k = 0..n``; ``g_k = dF/dv_k`` is taken w.r.t. the injected
probabilities (they replace the layer's own). ``noise_rows`` says where ``N`` is noise:
``"inputs"`` (default, the reference code's decoder/prompt mode): ``N = eps`` on the query rows
before the explained one and ``N = A`` on the explained row ``p - 1``, which thus starts at
``(sqrt(abar_t) + 1 - abar_t) A`` (about 1.07 A at t = 500), as the reference computes it;
``"all"``: ``N = eps`` on every row, the explained one included (the reference's encoder mode).
Noise goes on causal entries only (the reference also fills the masked upper triangle, which
in a decoder would mix later tokens into earlier rows). ``F`` defaults to the target's
``logit`` (``attributed_fn=None``), which the reference differentiates. Candidate map, ``weighting="attention"``
(reference code): ``mean_k(v_k * g_k) * A``; ``"difference"`` (paper): ``(A - b) * mean_k(g_k)``.
Heads are averaged and the row ``p - 1`` read: one score per source position. Candidates are
combined by ``selection``: ``mean``, ``first``, or ``best:<metric>`` (per target, the candidate that
scores best on a faithfulness metric: the paper's oracle pick, see :mod:`rpi_selection`).

Every (row, sample, path point) is an independent forward+backward row; all of them share
model calls through :meth:`ModelForward.run_chunked` (OOM halving applies).

Example:
    >>> out = model.attribute("The capital of France is", method="rpi", num_samples=8, n_steps=10, max_new_tokens=1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from genattrib.engine.attention_capture import (
    AttentionProbe,
    attention_probe,
    capture_layer,
    num_layers,
)
from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward, no_gradient_error
from genattrib.errors import InvalidArgumentError
from genattrib.faithfulness.metrics import list_metrics
from genattrib.methods.kinds import AttentionKind, AttentionTraits
from genattrib.methods.registration import register_method
from genattrib.methods.rpi_selection import best_candidates
from genattrib.targets import TargetContext, TargetFunction
from genattrib.validation import check_choice, check_int, check_positive_int, is_int

WEIGHTINGS = ("attention", "difference")
NOISE_ROWS = ("inputs", "all")
SELECTIONS = ("mean", "first")
BASELINES = ("noise", "zeros", "attention")
SCHEDULE = (1e-4, 0.02, 501)  # linear beta schedule: start, end, points


def alpha_bar(t: int) -> float:
    """``prod_{i<=t} (1 - beta_i)`` of the linear schedule; ``alpha_bar(500)`` is about 0.0063.

    Example:
        >>> round(alpha_bar(500), 4)
        0.0063
    """
    betas = torch.linspace(*SCHEDULE, dtype=torch.float64)
    return float(torch.prod(1 - betas[: t + 1]))


@dataclass
class RPIParams(MethodParams):
    """``baseline_kind``: ``noise`` (the method), ``zeros`` or ``attention`` (b = A: no noise);
    ``noise_rows``: ``inputs`` (noise on the rows before the explained one; the reference's decoder
    mode) or ``all`` (every row of the prefix, the explained one included)."""

    num_samples: int = 24
    n_steps: int = 30
    layer: int | None = None
    noise_t: int = 500
    weighting: str = "attention"
    selection: str = "mean"
    baseline_kind: str = "noise"
    noise_rows: str = "inputs"
    baseline_id: int | None = (
        None  # token best:<metric> puts in place of removed tokens (filled in by the model wrapper)
    )

    def validate(self) -> None:
        check_positive_int("num_samples", self.num_samples, "num_samples=24")
        check_positive_int("n_steps", self.n_steps, "n_steps=30")
        check_int("noise_t", self.noise_t, "noise_t=500", minimum=0, maximum=SCHEDULE[2] - 1)
        if self.layer is not None and not is_int(self.layer):
            raise InvalidArgumentError(
                "layer", f"must be an int layer index or None, got {self.layer!r}", "pass e.g. layer=-3"
            )
        for name, valid in (("weighting", WEIGHTINGS), ("baseline_kind", BASELINES), ("noise_rows", NOISE_ROWS)):
            check_choice(name, getattr(self, name), valid)
        if self.weighting == "difference" and self.baseline_kind == "noise" and self.noise_rows == "inputs":
            raise InvalidArgumentError(
                "noise_rows",
                "weighting='difference' reads (A - b) on the explained row, which noise_rows='inputs' leaves "
                "un-noised (b = 1.07 A there), so the map would be a rescaled gradient, not the method",
                "pass noise_rows='all' with weighting='difference', or keep weighting='attention'",
            )
        if isinstance(self.selection, str) and self.selection.startswith("best:"):
            metric = self.selection.removeprefix("best:")
            names = metric_names()
            if metric not in names:
                raise InvalidArgumentError(
                    "selection",
                    f"unknown metric {metric!r} in {self.selection!r}",
                    f"use best:<metric> with one of: {', '.join(names)}",
                )
        elif self.selection not in SELECTIONS:
            raise InvalidArgumentError(
                "selection",
                f"unknown selection {self.selection!r}",
                f"use one of: {', '.join(SELECTIONS)} or best:<metric> (e.g. best:soft_ns)",
            )
        if self.baseline_id is not None and not is_int(self.baseline_id):
            raise InvalidArgumentError(
                "baseline_id",
                f"must be a token id or None, got {self.baseline_id!r}",
                "leave it None (the tokenizer's UNK/PAD/EOS)",
            )


def metric_names() -> list[str]:
    """Faithfulness metrics usable in ``selection="best:<metric>"``."""
    return list_metrics()


def resolve_layer(layer: int | None, total: int | None) -> int:
    """The absolute layer index (default: third from last, or 0 for models under 3 layers)."""
    if total is None:
        return 0 if layer is None else layer
    if layer is None:
        return max(total - 3, 0)
    if not -total <= layer < total:
        raise InvalidArgumentError(
            "layer",
            f"layer {layer} is out of range for a model with {total} layers",
            f"use a value in [-{total}, {total - 1}] or None (third from last)",
        )
    return layer % total


def select_candidates(
    candidates: Float[Tensor, "row sample position"], selection: str
) -> Float[Tensor, "row position"]:
    """Combine the candidate maps of each row (``mean`` or ``first``)."""
    if selection == "first":
        return candidates[:, 0]
    return candidates.mean(1)


def make_baseline(
    params: RPIParams,
    attention: Float[Tensor, "head position position"],
    allowed: Bool[Tensor, "head position position"],
    prefix: int,
    seed: int,
) -> Float[Tensor, "head position position"]:
    """Baseline of one (row, sample) over the ``prefix`` block: ``sqrt(abar) A + (1 - abar) N``
    with ``N`` = noise on allowed entries of the noised rows (:attr:`RPIParams.noise_rows`) and
    ``N = A`` on the explained row ``prefix - 1`` under ``noise_rows="inputs"``."""
    base = attention.clone()
    block = (slice(None), slice(0, prefix), slice(0, prefix))
    if params.baseline_kind == "zeros":
        base[block] = 0.0
    elif params.baseline_kind == "noise":
        gen = torch.Generator(device=attention.device)
        gen.manual_seed(seed)
        heads = attention.shape[0]
        eps = torch.randn(heads, prefix, prefix, generator=gen, device=attention.device, dtype=torch.float32)
        noise = eps * allowed[block]
        if params.noise_rows == "inputs":
            noise[:, prefix - 1] = attention[:, prefix - 1, :prefix]
        abar = alpha_bar(params.noise_t)
        base[block] = abar**0.5 * attention[block] + (1 - abar) * noise
    return base


@register_method
class RPI(AttentionKind):
    name = "rpi"
    description = "randomized path-integration over one layer's attention probabilities (diffusion-noise baselines)"
    Params = RPIParams
    traits = AttentionTraits(
        # gradients through one layer's attention probabilities, one row at a time; its
        # attention-pattern reference is read at one query position (no unit rows)
        needs_gradients=True,
        explains_attributed_fn=True,
        group_by_sequence=False,
        stochastic=True,
        default_attributed_fn="logit",  # the reference differentiates the predicted label's logit
        requires=frozenset({"baseline_id"}),  # the token best:<metric> puts in place of removed ones
        step_score_merge={"rpi_candidate_spread": "mean"},  # a mean over positions: a word's is its tokens' mean
    )

    def rows_per_target(self, length: int) -> int:
        return self.params.num_samples * (self.params.n_steps + 1) + 1

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        super().check_model(forward, attributed_fn)
        resolve_layer(self.params.layer, num_layers(forward.model))

    def candidates(
        self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction
    ) -> Float[Tensor, "row sample position"]:
        """One candidate score map per (row, baseline sample)."""
        p: RPIParams = self.params
        layer = resolve_layer(p.layer, num_layers(forward.model))
        attention, allowed = self._capture(batch, forward, layer)
        rows, samples, points = batch.num_rows, p.num_samples, p.n_steps + 1
        heads, length = attention.shape[1], batch.length
        device = attention.device
        prefixes = [int(t) for t in batch.target_positions]
        seeds = []
        for r in range(rows):
            gen = batch.row_generator(r, device)
            # one draw at a time: sample s gets the same seed whatever num_samples is
            seeds.append([int(torch.randint(0, 2**62, (1,), generator=gen, device=device)) for _ in range(samples)])
        acc_vg = torch.zeros(rows * samples, heads, length, device=device)
        acc_g = torch.zeros_like(acc_vg)
        base_rows = torch.zeros_like(acc_vg)

        def run(chunk: slice) -> None:
            flat = torch.arange(chunk.start, chunk.stop)
            r_idx, s_idx, k_idx = flat // (samples * points), (flat // points) % samples, flat % points
            bases: dict[tuple[int, int], Tensor] = {}
            for r, s in zip(r_idx.tolist(), s_idx.tolist()):
                if (r, s) not in bases:
                    bases[(r, s)] = make_baseline(p, attention[r], allowed[r], prefixes[r], seeds[r][s])
                    base_rows[r * samples + s] = bases[(r, s)][:, prefixes[r] - 1]
            base = torch.stack([bases[(r, s)] for r, s in zip(r_idx.tolist(), s_idx.tolist())])
            alpha = (k_idx.to(device, torch.float32) / p.n_steps).view(-1, 1, 1, 1)
            leaf = (base + alpha * (attention[r_idx] - base)).requires_grad_(True)
            positions = batch.target_positions[r_idx]
            with attention_probe(forward.model, AttentionProbe(inject={layer: leaf})), torch.enable_grad():
                logits = forward.logits_at(batch.input_embeds[r_idx], positions.unsqueeze(-1)).squeeze(1)
                contrast = None if batch.contrast_ids is None else batch.contrast_ids[r_idx].to(logits.device)
                value = attributed_fn(TargetContext(logits, batch.target_ids[r_idx].to(logits.device), contrast))
                if not value.requires_grad:
                    raise no_gradient_error(type(forward.model).__name__)
                (grad,) = torch.autograd.grad(value.sum(), leaf)
            query = batch.predicting_positions(device)[r_idx].view(-1, 1, 1, 1).expand(-1, heads, 1, length)
            g_row = grad.float().gather(2, query).squeeze(2)
            v_row = leaf.detach().gather(2, query).squeeze(2)
            slot = (r_idx * samples + s_idx).to(device)
            acc_vg.index_add_(0, slot, v_row * g_row)
            acc_g.index_add_(0, slot, g_row)

        forward.run_chunked(rows * samples * points, length, run, grad=True)
        query = batch.predicting_positions(device).view(-1, 1, 1, 1).expand(-1, heads, 1, length)
        a_row = attention.gather(2, query).squeeze(2).unsqueeze(1)  # row 1 head L
        shape = (rows, samples, heads, length)
        if p.weighting == "attention":
            maps = acc_vg.view(shape) / points * a_row
        else:
            maps = (a_row - base_rows.view(shape)) * acc_g.view(shape) / points
        cands = maps.mean(2)
        return cands * batch.before_target(device).unsqueeze(1)

    def _capture(
        self, batch: RowBatch, forward: ModelForward, layer: int
    ) -> tuple[Float[Tensor, "row head position position"], Bool[Tensor, "row head position position"]]:
        parts: list[tuple[Tensor, Tensor]] = []

        def run(chunk: slice) -> None:
            parts.append(capture_layer(forward, batch.input_embeds[chunk], layer))

        forward.run_chunked(batch.num_rows, batch.length, run, grad=False)
        attention = torch.cat([a for a, _ in parts]).to(batch.input_embeds.device)
        allowed = torch.cat([m for _, m in parts]).to(attention.device)
        return attention, allowed

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        cands = self.candidates(batch, forward, attributed_fn)
        valid = batch.before_target(cands.device)
        spread = cands.std(1, unbiased=False) if cands.shape[1] > 1 else torch.zeros_like(cands[:, 0])
        spread = (spread * valid).sum(-1) / valid.sum(-1).clamp(min=1)
        selection = self.params.selection
        if selection.startswith("best:"):
            chosen = best_candidates(cands, batch, forward, selection.removeprefix("best:"), self.params.baseline_id)
        else:
            chosen = select_candidates(cands, selection)
        return MethodOutput(chosen, {"rpi_candidate_spread": spread})
