"""LIME: a seeded local linear surrogate of the target over random token masks.

Each sample keeps every movable position with probability ``keep_prob`` (the first sample is
the unmasked input, as in LIME); masked tokens are replaced by the baseline token. Samples are
weighted as in LIME's text explainer, ``sqrt(exp(-d² / kernel_width²))`` with ``d`` the cosine
distance (×100) between the sample's mask and the all-ones mask, and a weighted ridge regression
(``alpha``, with intercept, closed form) gives one coefficient per source position. Forward
passes only. One masked copy of a sequence serves every target of that sequence (a causal
model reads only the prefix), so masks are shared per sequence; the bit of a position comes
from a generator seeded by (seed, position, tokens up to it), so batching never changes them.
The weighted R² of the fit is the step score ``lime_score``. With ``sources=`` a sample keeps or
drops whole source units (a unit's bit is that of its first position) and a unit's coefficient
is shared evenly among its positions. A unit row (``explain="sentences"``) is regressed on every
unit that can change it, the dropped tokens of its own unit included, and reports those before it.

Example:
    >>> out = model.attribute("The capital of France is", method="lime", n_samples=200, seed=0, max_new_tokens=2)
    >>> sorted(out.sequences[0].step_scores)
    ['lime_score']
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.methods.kinds import Perturbation, PerturbationTraits
from genattrib.methods.registration import register_method
from genattrib.methods.source_units import ablated_values, ablation_units, reaching_units, spread
from genattrib.targets import TargetFunction
from genattrib.validation import check_int, check_number


@dataclass
class LimeParams(MethodParams):
    n_samples: int = 200
    keep_prob: float = 0.5
    kernel_width: float = 25.0
    alpha: float = 1.0
    baseline: Any = None

    def validate(self) -> None:
        check_int("n_samples", self.n_samples, "n_samples=200", minimum=2)
        check_number("keep_prob", self.keep_prob, "keep_prob=0.5", low=0, high=1, strict=True)
        for name in ("kernel_width", "alpha"):
            check_number(name, getattr(self, name), f"{name}=1.0", low=0, strict=True)


def sample_masks(
    ids: Int[Tensor, " position"], n_samples: int, keep_prob: float, seed: int
) -> Bool[Tensor, "sample position"]:
    """Keep-masks; row 0 keeps everything. Column ``i`` depends only on (seed, i, ids[: i + 1])."""
    cols = []
    for i in range(int(ids.shape[0])):
        digest = zlib.crc32(ids[: i + 1].cpu().numpy().astype("int64").tobytes())
        gen = torch.Generator().manual_seed((seed * 4_294_967_311 + digest * 131 + i) % (2**63 - 1))
        cols.append(torch.rand(n_samples - 1, generator=gen) < keep_prob)
    masks = torch.stack(cols, dim=1) if cols else torch.zeros(n_samples - 1, 0, dtype=torch.bool)
    return torch.cat([torch.ones(1, masks.shape[1], dtype=torch.bool), masks])


def kernel_weights(z: Float[Tensor, "sample feature"], width: float) -> Float[Tensor, " sample"]:
    """LIME text kernel on the cosine distance (×100) to the all-ones sample."""
    norm = z.norm(dim=1) * z.shape[1] ** 0.5
    cosine = torch.where(norm > 0, z.sum(1) / norm.clamp(min=1e-12), torch.zeros_like(norm))
    d = (1 - cosine) * 100
    return torch.exp(-(d**2) / width**2).sqrt()


def weighted_ridge(
    z: Float[Tensor, "sample feature"], y: Float[Tensor, " sample"], w: Float[Tensor, " sample"], alpha: float
) -> tuple[Float[Tensor, " feature"], Float[Tensor, ""]]:
    """Coefficients of a weighted ridge fit with intercept, and its weighted R²."""
    share = w / w.sum()
    zm, ym = (share.unsqueeze(1) * z).sum(0), (share * y).sum()
    zc, yc = z - zm, y - ym
    gram = (zc.T * w) @ zc + alpha * torch.eye(z.shape[1], dtype=z.dtype)  # as sklearn's Ridge
    coef = torch.linalg.solve(gram, (zc.T * w) @ yc)
    residual = (w * (yc - zc @ coef) ** 2).sum()
    total = (w * yc**2).sum()
    r2 = 1 - residual / total if float(total) > 0 else torch.ones((), dtype=z.dtype)
    return coef, r2


@register_method
class Lime(Perturbation):
    name = "lime"
    description = "LIME: weighted ridge surrogate over random token masks, baseline-replaced (forward only, seeded)"
    Params = LimeParams
    traits = PerturbationTraits(
        stochastic=True,
        step_score_merge={"lime_score": "none"},  # R² of one token's own surrogate fit: several fits do not combine
    )

    def rows_per_target(self, length: int) -> int:
        return self.params.n_samples

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p = self.params
        n = batch.num_rows
        members = ablation_units(batch)
        first = members.float().argmax(-1).long()
        keep = sample_masks(batch.input_ids[0], p.n_samples, p.keep_prob, batch.seed)[:, first]  # sample, unit
        values = ablated_values(batch, forward, attributed_fn, (~keep).float() @ members.float() > 0)
        reach = reaching_units(members, batch)
        coefs = torch.zeros(n, int(members.shape[0]), dtype=torch.float32)
        fit = torch.full((n,), float("nan"))
        for row in range(n):
            cols = reach[row].nonzero().squeeze(-1)
            if cols.numel() == 0:
                continue
            z = keep[:, cols].double()
            coef, r2 = weighted_ridge(z, values[:, row].double(), kernel_weights(z, p.kernel_width), p.alpha)
            coefs[row, cols] = coef.float()
            fit[row] = float(r2)
        return MethodOutput(spread(coefs, members, batch.target_positions), {"lime_score": fit})
