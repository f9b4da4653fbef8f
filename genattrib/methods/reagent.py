"""ReAGent (Zhao & Shan, 2024): model-agnostic attribution from forward passes only.

Each target gets ``num_probes`` probes with random logit-space scores over its movable source
positions (before the target, special tokens never replaced). Every iteration a probe replaces
each position with probability ``replace_ratio`` (tokens from the token sampler); the drop in
the target's probability Δp raises the scores of replaced positions and lowers the others
(``s += logit((±Δp + 1) / 2)``). A probe stops once keeping only its top-``keep_top_n``
positions (all others replaced) leaves the target in the model's top-``stop_top_k``. The result
is the mean over stopped probes of ``softmax(s)``: one distribution over source positions per
target (sums to 1). Probes of all targets share forward batches; stopped probes leave them.
No gradients and no weights are needed, only next-token logits.

``distance="distribution"`` (the paper's wording) uses the total variation between the full
next-token distributions instead of the target probability drop (the released code's choice,
the default). ReAGent always explains the target token's probability, whatever
``attributed_fn`` says. Draws come from per-row generators (:meth:`StepBatch.row_generator`),
so batching never changes the result.

Example:
    >>> out = model.attribute("The capital of France is", method="reagent", seed=0, max_new_tokens=1, max_steps=20)
    >>> torch.allclose(out.sequences[0].scores.nansum(1), torch.ones(1))   # a distribution per target
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from rich.errors import LiveError
from torch import Tensor

from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.errors import UnknownNameError
from genattrib.methods.probe_forward import distributions, score_rows
from genattrib.methods.token_samplers import SAMPLER_NAMES, TokenSampler, resolve_sampler
from genattrib.methods.vocabulary import Vocabulary
from genattrib.progress import progress_bar
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice, check_number, check_positive_int

DISTANCES = ("prob_drop", "distribution")
EPS = 1e-6


@dataclass
class ReAGentParams(MethodParams):
    num_probes: int = 16
    max_steps: int = 3000
    replace_ratio: float = 0.3
    keep_top_n: int = 5
    stop_top_k: int = 3
    distance: str = "prob_drop"
    token_sampler: Any = (
        None  # "uniform" | "model" | "mlm" | "pos" | object with sample(); None: mlm if given else uniform
    )
    mlm: Any = None  # path / hub name or (model, tokenizer) of a masked LM
    vocabulary: Vocabulary | None = None  # filled in by AttributionModel from its tokenizer

    def validate(self) -> None:
        for name in ("num_probes", "max_steps", "keep_top_n", "stop_top_k"):
            check_positive_int(name, getattr(self, name), f"{name}=3")
        check_number("replace_ratio", self.replace_ratio, "replace_ratio=0.3", low=0, high=1, strict=True)
        check_choice("distance", self.distance, DISTANCES, "distance")
        if isinstance(self.token_sampler, str) and self.token_sampler not in SAMPLER_NAMES:
            raise UnknownNameError("token_sampler", self.token_sampler, SAMPLER_NAMES)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("token_sampler", "mlm", "vocabulary"):
            value = out[key]
            if value is not None and not isinstance(value, str):
                out[key] = value.describe() if isinstance(value, Vocabulary) else type(value).__name__
        return out


@contextlib.contextmanager
def _probe_progress(total: int):
    """A transient bar of probes stopped / total (TTY only; silent if another bar is live)."""
    with contextlib.ExitStack() as stack:
        try:
            advance: Callable[[], None] = stack.enter_context(progress_bar(total, "reagent probes stopped"))
        except LiveError:
            advance = lambda: None  # noqa: E731
        yield advance


class ReAGent(Attributor):
    supports_units = False  # its stopping rule reads the rank of one predicted token
    name = "reagent"
    description = "ReAGent: recursive random replacement with probes, forward passes only (seeded, no gradients)"
    Params = ReAGentParams
    needs_gradients = False
    stochastic = True
    requires = frozenset({"vocabulary"})  # token samplers draw from the attributed tokenizer's vocabulary
    step_score_merge = {
        "reagent_iterations": "max"
    }  # rows iterate in one loop: a word took as long as its slowest token

    def rows_per_target(self, length: int) -> int:
        return self.params.num_probes

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        with torch.no_grad():
            return self._attribute(batch, forward)

    def _sampler(self, batch: StepBatch, forward: ModelForward) -> TokenSampler:
        vocab = self.params.vocabulary or Vocabulary(forward.vocab_size)
        sampler = resolve_sampler(self.params.token_sampler, vocab, forward, self.params.mlm)
        if hasattr(sampler, "prepare"):
            sampler.prepare([batch.input_ids[r, : int(batch.target_positions[r])].cpu() for r in range(batch.num_rows)])
        return sampler

    def _attribute(self, batch: StepBatch, forward: ModelForward) -> MethodOutput:
        p = self.params
        rows, length, probes = batch.num_rows, batch.length, p.num_probes
        ids = batch.input_ids.cpu()
        ends = batch.target_positions.cpu()
        movable = batch.source_mask("cpu")
        gens = [batch.row_generator(r, torch.device("cpu")) for r in range(rows)]
        sampler = self._sampler(batch, forward)
        scores = torch.zeros(rows, probes, length)
        for r in range(rows):
            scores[r, :, : int(ends[r])] = torch.rand(probes, int(ends[r]), generator=gens[r])
        active = movable.any(-1, keepdim=True).expand(rows, probes).clone()
        stopped = torch.zeros(rows, probes, dtype=torch.bool)
        iterations = torch.zeros(rows)
        target_ids = batch.target_ids.cpu()
        reference = distributions(forward, ids, ends)
        p_orig = reference.gather(-1, target_ids.to(reference.device).unsqueeze(-1)).squeeze(-1).cpu()
        if p.distance == "prob_drop":
            reference = None
        with _probe_progress(int(active.sum())) as advance:
            for step in range(p.max_steps):
                pairs = active.nonzero()
                if pairs.shape[0] == 0:
                    break
                row_of = pairs[:, 0]
                iterations[row_of.unique()] = step + 1
                mask = self._draw_masks(pairs, ends, movable, gens)
                perturbed = self._replace(pairs, ids, mask, ends, sampler, gens)
                prob, _, dist = score_rows(
                    forward, perturbed, ends[row_of], target_ids[row_of], p.stop_top_k, reference, row_of
                )
                delta = p_orig[row_of] - prob if reference is None else dist
                signed = torch.where(mask, delta.unsqueeze(-1), -delta.unsqueeze(-1))
                update = torch.logit(((signed + 1) / 2).clamp(EPS, 1 - EPS))
                current = scores[pairs[:, 0], pairs[:, 1]] + update * movable[row_of]
                scores[pairs[:, 0], pairs[:, 1]] = current
                keep = self._top_positions(current, movable[row_of])
                test = self._replace(pairs, ids, movable[row_of] & ~keep, ends, sampler, gens)
                _, in_top, _ = score_rows(forward, test, ends[row_of], target_ids[row_of], p.stop_top_k)
                done = pairs[in_top]
                stopped[done[:, 0], done[:, 1]] = True
                active[done[:, 0], done[:, 1]] = False
                for _ in range(int(in_top.sum())):
                    advance()
        return MethodOutput(self._final(scores, stopped, movable), {"reagent_iterations": iterations})

    def _draw_masks(
        self,
        pairs: Int[Tensor, "pair 2"],
        ends: Int[Tensor, " row"],
        movable: Bool[Tensor, "row position"],
        gens: list[torch.Generator],
    ) -> Bool[Tensor, "pair position"]:
        mask = torch.zeros(pairs.shape[0], movable.shape[1], dtype=torch.bool)
        for r in pairs[:, 0].unique().tolist():
            sel = (pairs[:, 0] == r).nonzero().squeeze(-1)
            end = int(ends[r])
            draw = torch.rand(len(sel), end, generator=gens[r]) < self.params.replace_ratio
            mask[sel, :end] = draw & movable[r, :end]
        return mask

    @staticmethod
    def _replace(
        pairs: Int[Tensor, "pair 2"],
        ids: Int[Tensor, "row position"],
        mask: Bool[Tensor, "pair position"],
        ends: Int[Tensor, " row"],
        sampler: TokenSampler,
        gens: list[torch.Generator],
    ) -> Int[Tensor, "pair position"]:
        out = ids[pairs[:, 0]].clone()
        for r in pairs[:, 0].unique().tolist():
            sel = (pairs[:, 0] == r).nonzero().squeeze(-1)
            end = int(ends[r])
            out[sel, :end] = sampler.sample(ids[r, :end].expand(len(sel), -1), mask[sel, :end], gens[r]).to(torch.long)
        return out

    def _top_positions(
        self, scores: Float[Tensor, "pair position"], movable: Bool[Tensor, "pair position"]
    ) -> Bool[Tensor, "pair position"]:
        k = min(self.params.keep_top_n, scores.shape[1])
        top = scores.masked_fill(~movable, -torch.inf).topk(k, dim=-1).indices
        return torch.zeros_like(movable).scatter(1, top, True) & movable

    @staticmethod
    def _final(
        scores: Float[Tensor, "row probe position"],
        stopped: Bool[Tensor, "row probe"],
        movable: Bool[Tensor, "row position"],
    ) -> Float[Tensor, "row position"]:
        logits = scores.masked_fill(~movable.unsqueeze(1), -torch.inf)
        dist = torch.softmax(logits, -1).nan_to_num(0.0)
        use = torch.where(stopped.any(-1, keepdim=True), stopped, torch.ones_like(stopped)).float()
        return (dist * use.unsqueeze(-1)).sum(1) / use.sum(1, keepdim=True)
