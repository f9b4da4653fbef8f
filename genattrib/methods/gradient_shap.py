"""Gradient SHAP: expected gradients at random points between baseline and (noisy) input.

For each of ``n_samples`` draws: ``x~ = x + N(0, stdevs^2)``, ``a ~ U(0, 1)``, gradient at
``x' + a (x~ - x')`` times ``(x~ - x')``; the scores are the mean over draws (sum over hidden).
The ``n_samples`` coefficients ``a`` come from the seed alone and the noise at each position
from (seed, the tokens up to it), so every token target of a sequence sees the same points on
its own prefix: the targets share forward rows (engine/shared_forward.py), and batching never
changes the result.

Example:
    >>> out = model.attribute(prompt, method="gradient_shap", n_samples=20, seed=0, max_new_tokens=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.lazy_rows import LazyRows
from genattrib.engine.shared_forward import PointSet, grouped_input_gradients
from genattrib.methods.kinds import Gradient, GradientTraits
from genattrib.methods.registration import register_method
from genattrib.seeding import content_generator
from genattrib.targets import TargetFunction
from genattrib.validation import check_number, check_positive_int


@dataclass
class GradientShapParams(MethodParams):
    n_samples: int = 20
    stdevs: float = 0.0
    baseline: Any = None

    def validate(self) -> None:
        check_positive_int("n_samples", self.n_samples, "n_samples=20")
        check_number("stdevs", self.stdevs, "stdevs=0.09", low=0, what="a float")


@register_method
class GradientShap(Gradient):
    name = "gradient_shap"
    description = "expected gradients at random points between baseline and noisy input (seeded)"
    Params = GradientShapParams
    # token targets of a sequence share their draws, so their forward rows; unit rows: own draws, own rows
    traits = GradientTraits(uses_baseline=True, stochastic=True, shares_unit_rows=False)

    def path_points(self) -> int:
        return self.params.n_samples

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        if batch.units is not None:
            return MethodOutput(self._per_row(batch, forward, attributed_fn))
        p: GradientShapParams = self.params
        x = batch.input_embeds.float()
        base = torch.where(batch.movable(), batch.baseline_embeds, batch.input_embeds).float()
        alphas = shared_alphas(batch.seed, p.n_samples).to(x.device)
        movable = batch.movable()

        drawn: dict[
            int, Tensor
        ] = {}  # per sequence: noise of its longest row (a position's noise depends on its prefix)
        ends = batch.unit_ends("cpu")

        def make_points(top: int, length: int) -> PointSet:
            seq = int(batch.sequence_index[top])
            if seq not in drawn and p.stdevs:
                members = (batch.sequence_index.cpu() == seq).nonzero(as_tuple=True)[0]
                longest = int(members[ends[members].argmax()])
                ids = batch.input_ids[longest, : int(ends[longest])].cpu()
                drawn[seq] = position_noise(batch.seed, ids, p.n_samples, x.shape[-1], p.stdevs)
            noise, start = drawn[seq][:, :length] if p.stdevs else None, base[top, :length]
            step = x[top, :length] - start  # a point is start + a (step + noise), built per chunk

            def delta(chunk: slice) -> Tensor:
                if noise is None:  # no noise: every point moves along x - x'
                    return step.expand(chunk.stop - chunk.start, *step.shape)
                return step + noise[chunk].to(x.device) * movable[top, :length]

            def rows(chunk: slice) -> Tensor:
                return (start + alphas[chunk].view(-1, 1, 1) * delta(chunk)).to(batch.input_embeds.dtype)

            def reduce(chunk: slice, grads: Tensor) -> Tensor:
                return (grads * delta(chunk).to(grads.device)).sum(1)

            weights = torch.full((p.n_samples,), 1.0 / p.n_samples)
            return PointSet(p.n_samples, length, weights, rows, reduce)

        return MethodOutput(grouped_input_gradients(batch, forward, attributed_fn, p.n_samples, make_points))

    def _per_row(
        self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction
    ) -> Float[Tensor, "row position hidden"]:
        """Unit rows hold their own unit fixed, so each draws and runs its own points."""
        p: GradientShapParams = self.params
        x = batch.input_embeds.float()
        movable = batch.movable()
        base = torch.where(movable, batch.baseline_embeds, batch.input_embeds).float()
        alphas = shared_alphas(batch.seed, p.n_samples).to(x.device).view(1, -1, 1, 1)
        noise = torch.zeros((batch.num_rows, p.n_samples, *x.shape[1:]) if p.stdevs else (batch.num_rows, 1, 1, 1))
        for row in range(batch.num_rows if p.stdevs else 0):  # no noise: nothing to draw
            own = int(batch.target_positions[row])  # draws only for the row's own prefix
            noise[row, :, :own] = position_noise(
                batch.seed, batch.input_ids[row, :own].cpu(), p.n_samples, x.shape[2], p.stdevs
            )
        n = p.n_samples

        def delta(chunk: slice) -> Tensor:  # rows of the chunk: (row, sample) pairs, row-major
            index = torch.arange(chunk.start, chunk.stop)
            row, sample = index // n, index % n
            moved = x[row.to(x.device)] + noise[row, sample if p.stdevs else 0].to(x.device) * movable[row.to(x.device)]
            return moved - base[row.to(x.device)]

        def make(chunk: slice) -> Tensor:
            index = torch.arange(chunk.start, chunk.stop, device=x.device)
            start = base[index // n]
            return (start + alphas.view(-1)[index % n].view(-1, 1, 1) * delta(chunk)).to(batch.input_embeds.dtype)

        total = torch.zeros(x.shape, dtype=torch.float32, device=x.device)

        def add(chunk: slice, values: Tensor, grads: Tensor) -> None:
            index = torch.arange(chunk.start, chunk.stop, device=x.device)
            total.index_add_(0, index // n, grads.to(x.device) * delta(chunk))

        rows = LazyRows(batch.num_rows * n, batch.length, make)
        forward.gradients_by_chunk(rows, batch.explained().repeat_interleave(n), attributed_fn, add)
        return total / n


def shared_alphas(seed: int, n: int) -> Float[Tensor, " sample"]:
    """The ``n`` interpolation coefficients every target shares, drawn from ``seed`` alone."""
    return torch.rand(n, generator=content_generator(seed, b"gradient_shap:alphas"))


def position_noise(seed: int, ids: Int[Tensor, " position"], n: int, hidden: int, stdevs: float) -> Tensor:
    """Noise ``N(0, stdevs^2)`` for every sample at each position, drawn from (seed, the tokens up
    to that position): a position's noise is the same for every target that sees it, whatever
    comes after it or how the rows are batched."""
    noise = torch.zeros(n, int(ids.shape[0]), hidden)
    if stdevs == 0:
        return noise
    data = ids.numpy().astype("int64").tobytes()
    for pos in range(int(ids.shape[0])):
        gen = content_generator(seed, data[: 8 * (pos + 1)] + pos.to_bytes(8, "little"))
        noise[:, pos] = torch.randn((n, hidden), generator=gen) * stdevs
    return noise
