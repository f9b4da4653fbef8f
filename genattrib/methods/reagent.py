"""ReAGent (Zhao & Shan, 2024): model-agnostic attribution from forward passes only.

Each target gets ``num_probes`` probes with random logit-space scores over its movable source
positions (before the target, special tokens never replaced). Every iteration a probe replaces
each position with probability ``replace_ratio`` (tokens from the token sampler); the drop in
the target's probability Δp raises the scores of replaced positions and lowers the others
(``s += logit((±Δp + 1) / 2)``). A probe stops once keeping only its top-``keep_top_n``
positions (``keep_ratio``: ``ceil(keep_ratio × movable positions)``; all others replaced by
sampled tokens) leaves the target in the model's top-``stop_top_k`` next-token predictions.
The result is the mean over stopped probes of ``softmax(s)`` (all probes if none stopped): one
distribution over source positions per target (sums to 1). No gradients and no weights are
needed, only next-token logits.

Against the released code (casszhao/ReAGent; Inseq's port): the keep rule, the stopping test
(target id among the top-k logits at the target position on the kept-only input, replacements
re-drawn each test) and the update are the same; the released code keeps an absolute count
(``top_n``) unless it is 0, then ``ceil(top_n_ratio × input length)``; here ``keep_ratio``
replaces ``keep_top_n`` when given and counts movable positions only (special tokens are never
replaced, so they would take keep slots for nothing). Deviations, on purpose: ``max_steps``
defaults to 50, not 3000 (on a CPU a target whose probes never stop cost hours at 3000; the
planted-model tests need at most 63), a target with no stopped probe averages all its probes
(the released code divides by zero), the default sampler is ``uniform`` (the released
experiments used a POS-tag sampler, which needs NLTK: ``token_sampler="pos"``) and
``num_probes`` defaults to 16 (the reference: 8); docs/methods.md gives the measurements.

Cost is bounded and visible: probes run in a pool of at most ``rows_per_chunk`` rows, targets
admitted whole as other probes stop (so the model runs full batches; a target's draws do not
depend on the pool); ``max_steps`` caps each target and ``time_budget`` (seconds, per batch of
targets) the whole batch; probes cut off are counted in the step score ``reagent_unstopped``
and reported by a :class:`GenattribWarning`; a progress bar counts stopped probes.

``distance="distribution"`` (the paper's wording) uses the total variation between the full
next-token distributions instead of the target probability drop (the released code's choice,
the default). ReAGent always explains the target token's probability, whatever
``attributed_fn`` says. Draws come from per-row generators (:meth:`RowBatch.row_generator`),
so batching never changes the result (a ``time_budget`` cut-off does: it depends on the clock).

Example:
    >>> out = model.attribute("The capital of France is", method="reagent", seed=0, max_new_tokens=1, max_steps=20)
    >>> torch.allclose(out.sequences[0].scores.nansum(1), torch.ones(1))   # a distribution per target
    True
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from rich.errors import LiveError
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.errors import GenattribWarning, UnknownNameError
from genattrib.methods.kinds import Perturbation, PerturbationTraits
from genattrib.methods.probe_forward import distributions, score_rows
from genattrib.methods.probe_pool import ProbePool
from genattrib.methods.registration import register_method
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
    max_steps: int = 50  # the released code: 3000 (hours per target on a CPU when probes do not stop)
    replace_ratio: float = 0.3
    keep_top_n: int = 5
    keep_ratio: float | None = None  # keep ceil(keep_ratio x movable positions) instead of keep_top_n
    stop_top_k: int = 3
    distance: str = "prob_drop"
    time_budget: float | None = None  # seconds of probing per batch of targets; None: no limit
    token_sampler: Any = (
        None  # "uniform" | "model" | "mlm" | "pos" | object with sample(); None: mlm if given else uniform
    )
    mlm: Any = None  # path / hub name or (model, tokenizer) of a masked LM
    vocabulary: Vocabulary | None = None  # filled in by AttributionModel from its tokenizer

    def validate(self) -> None:
        for name in ("num_probes", "max_steps", "keep_top_n", "stop_top_k"):
            check_positive_int(name, getattr(self, name), f"{name}=3")
        check_number("replace_ratio", self.replace_ratio, "replace_ratio=0.3", low=0, high=1, strict=True)
        if self.keep_ratio is not None:
            check_number("keep_ratio", self.keep_ratio, "keep_ratio=0.3", low=0, high=1, strict=True)
        if self.time_budget is not None:
            check_number("time_budget", self.time_budget, "time_budget=60", low=0, strict=True, what="seconds")
        check_choice("distance", self.distance, DISTANCES, "distance")
        if isinstance(self.token_sampler, str) and self.token_sampler not in SAMPLER_NAMES:
            raise UnknownNameError("token_sampler", self.token_sampler, SAMPLER_NAMES)

    def keep_counts(self, movable: Int[Tensor, " row"]) -> Int[Tensor, " row"]:
        """Positions the stopping test keeps per row, out of ``movable`` replaceable ones.

        Example:
            >>> ReAGentParams(keep_ratio=0.3).keep_counts(torch.tensor([5, 20])).tolist()
            [2, 6]
        """
        if self.keep_ratio is None:
            return torch.full_like(movable, self.keep_top_n)
        return torch.ceil(movable.float() * self.keep_ratio - 1e-9).long().clamp(min=1)

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


@register_method
class ReAGent(Perturbation):
    name = "reagent"
    description = "ReAGent: recursive random replacement with probes, forward passes only (seeded, no gradients)"
    Params = ReAGentParams
    traits = PerturbationTraits(
        uses_baseline=False,
        group_by_sequence=False,
        ablates_source_units=False,
        supports_units=False,  # its stopping rule reads the rank of one predicted token
        stochastic=True,
        requires=frozenset({"vocabulary"}),  # token samplers draw from the attributed tokenizer's vocabulary
        step_score_merge={
            "reagent_iterations": "max",  # rows iterate in one loop: a word took as long as its slowest token
            "reagent_unstopped": "sum",  # probes cut off by max_steps / time_budget
        },
    )

    def rows_per_target(self, length: int) -> int:
        # A waiting target holds no model rows: the probe pool (at most rows_per_chunk rows) runs
        # the targets' probes, so the planner may group many targets (up to its max_targets).
        return 1

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        with torch.no_grad():
            return self._attribute(batch, forward)

    def _sampler(self, batch: RowBatch, forward: ModelForward) -> TokenSampler:
        vocab = self.params.vocabulary or Vocabulary(forward.vocab_size)
        sampler = resolve_sampler(self.params.token_sampler, vocab, forward, self.params.mlm)
        if hasattr(sampler, "prepare"):
            sampler.prepare([batch.input_ids[r, : int(batch.target_positions[r])].cpu() for r in range(batch.num_rows)])
        return sampler

    def _attribute(self, batch: RowBatch, forward: ModelForward) -> MethodOutput:
        p = self.params
        deadline = None if p.time_budget is None else time.monotonic() + p.time_budget
        rows, length, probes = batch.num_rows, batch.length, p.num_probes
        ids = batch.input_ids.cpu()
        ends = batch.target_positions.cpu()
        movable = batch.source_mask("cpu")
        keep_n = p.keep_counts(movable.sum(-1))
        gens = [batch.row_generator(r, torch.device("cpu")) for r in range(rows)]
        sampler = self._sampler(batch, forward)
        scores = torch.zeros(rows, probes, length)
        for r in range(rows):
            scores[r, :, : int(ends[r])] = torch.rand(probes, int(ends[r]), generator=gens[r])
        has_probes = movable.any(-1, keepdim=True).expand(rows, probes).clone()
        pool = ProbePool(has_probes, forward.rows_per_chunk(length, grad=False))
        stopped = torch.zeros(rows, probes, dtype=torch.bool)
        iterations = torch.zeros(rows)
        target_ids = batch.target_ids.cpu()
        reference = distributions(forward, ids, ends)
        p_orig = reference.gather(-1, target_ids.to(reference.device).unsqueeze(-1)).squeeze(-1).cpu()
        if p.distance == "prob_drop":
            reference = None
        timed_out = False
        with _probe_progress(int(has_probes.sum())) as advance:
            while True:
                pool.refill()
                pairs = pool.pairs()
                timed_out = deadline is not None and pairs.shape[0] > 0 and time.monotonic() > deadline
                if pairs.shape[0] == 0 or timed_out:
                    break
                row_of = pairs[:, 0]
                running = row_of.unique()
                iterations[running] += 1
                width = int(ends[row_of].max()) + 1  # no row reads past its target: drop the padding
                mask = self._draw_masks(pairs, ends, movable, gens)
                perturbed = self._replace(pairs, ids, mask, ends, sampler, gens)[:, :width]
                prob, _, dist = score_rows(
                    forward, perturbed, ends[row_of], target_ids[row_of], p.stop_top_k, reference, row_of
                )
                delta = p_orig[row_of] - prob if reference is None else dist
                signed = torch.where(mask, delta.unsqueeze(-1), -delta.unsqueeze(-1))
                update = torch.logit(((signed + 1) / 2).clamp(EPS, 1 - EPS))
                current = scores[pairs[:, 0], pairs[:, 1]] + update * movable[row_of]
                scores[pairs[:, 0], pairs[:, 1]] = current
                keep = self._top_positions(current, movable[row_of], keep_n[row_of])
                test = self._replace(pairs, ids, movable[row_of] & ~keep, ends, sampler, gens)[:, :width]
                _, in_top, _ = score_rows(forward, test, ends[row_of], target_ids[row_of], p.stop_top_k)
                done = pairs[in_top]
                stopped[done[:, 0], done[:, 1]] = True
                pool.retire(done)
                pool.drop_rows([r for r in running.tolist() if iterations[r] >= p.max_steps])
                for _ in range(int(in_top.sum())):
                    advance()
        unstopped = (has_probes & ~stopped).sum(-1).float()
        never = int((has_probes.any(-1) & (iterations == 0)).sum())
        self._warn_unstopped(unstopped, never, timed_out)
        return MethodOutput(
            self._final(scores, stopped, movable, iterations > 0),
            {"reagent_iterations": iterations, "reagent_unstopped": unstopped},
        )

    def _warn_unstopped(self, unstopped: Float[Tensor, " row"], never: int, timed_out: bool) -> None:
        total = int((unstopped > 0).sum())
        if total == 0:
            return
        p = self.params
        keep = f"keep_ratio={p.keep_ratio}" if p.keep_ratio is not None else f"keep_top_n={p.keep_top_n}"
        cause = f"time_budget={p.time_budget:g}s ran out" if timed_out else f"max_steps={p.max_steps}"
        started = f" ({never} of them never started)" if never else ""
        warnings.warn(
            GenattribWarning(
                f"reagent: {int(unstopped.sum())} of {p.num_probes * unstopped.numel()} probes, in {total} of "
                f"{unstopped.numel()} targets{started}, did not stop ({cause}); those targets' scores average "
                f"unstopped probes (step score 'reagent_unstopped' counts them). Raise max_steps or time_budget, "
                f"or make the stopping test easier: keep more positions ({keep}; e.g. keep_ratio=0.5) or raise "
                f"stop_top_k={p.stop_top_k}"
            ),
            stacklevel=2,
        )

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

    @staticmethod
    def _top_positions(
        scores: Float[Tensor, "pair position"], movable: Bool[Tensor, "pair position"], keep_n: Int[Tensor, " pair"]
    ) -> Bool[Tensor, "pair position"]:
        """The ``keep_n`` movable positions with the highest scores, per pair."""
        order = scores.masked_fill(~movable, -torch.inf).argsort(dim=-1, descending=True, stable=True)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
        return (ranks < keep_n.unsqueeze(-1)) & movable

    @staticmethod
    def _final(
        scores: Float[Tensor, "row probe position"],
        stopped: Bool[Tensor, "row probe"],
        movable: Bool[Tensor, "row position"],
        probed: Bool[Tensor, " row"],
    ) -> Float[Tensor, "row position"]:
        """Mean over stopped probes (all probes if none stopped) of softmax(scores); a target
        never probed (time_budget ran out first) gets the uniform distribution."""
        logits = scores.masked_fill(~movable.unsqueeze(1), -torch.inf)
        dist = torch.softmax(logits, -1).nan_to_num(0.0)
        use = torch.where(stopped.any(-1, keepdim=True), stopped, torch.ones_like(stopped)).float()
        out = (dist * use.unsqueeze(-1)).sum(1) / use.sum(1, keepdim=True)
        uniform = movable.float() / movable.sum(-1, keepdim=True).clamp(min=1)
        return torch.where(probed.unsqueeze(-1), out, uniform)
