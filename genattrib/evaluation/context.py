"""Batched model calls for the faithfulness metrics.

Metrics describe perturbed inputs (token-id rows or embedding rows, one per step and variant);
:class:`EvalContext` runs them through the model in length-sorted, right-padded chunks (the
engine's OOM back-off applies) and returns the target token's log-probability, or the
distance of the predicted distribution to the unperturbed one.

Example:
    >>> ctx = EvalContext(forward, steps, baseline_id=0)                 # doctest: +SKIP
    >>> ctx.logprobs([steps.prefixes[0][1:]], torch.tensor([0]))         # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cached_property

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.evaluation.steps import EvalSteps
from genattrib.methods.forward import ModelForward
from genattrib.seeding import content_generator

RowFn = Callable[[Float[Tensor, "row vocab"], Int[Tensor, " row"]], Float[Tensor, " row"]]


def hellinger_distance(p: Float[Tensor, "row vocab"], q: Float[Tensor, "row vocab"]) -> Float[Tensor, " row"]:
    """``D(p, q) = Σ_v (√p_v − √q_v)² / √2`` as coded by Zhao & Aletras (√2 × squared Hellinger).

    Example:
        >>> p = torch.tensor([[1.0, 0.0]]); hellinger_distance(p, p).item()
        0.0
    """
    return ((p.sqrt() - q.sqrt()) ** 2).sum(-1) / math.sqrt(2.0)


class EvalContext:
    """Model access for metrics over the steps ``steps`` (reference values are cached)."""

    def __init__(self, forward: ModelForward, steps: EvalSteps, baseline_id: int, seed: int = 42) -> None:
        self.forward = forward
        self.steps = steps
        self.baseline_id = int(baseline_id)
        self.seed = int(seed)
        self.cache: dict[str, object] = {}  # values shared by several metrics (e.g. Soft-NS and Soft-NC)

    # --- randomness ------------------------------------------------------------------------
    def generator(self, i: int, stream: str) -> torch.Generator:
        """A generator for step ``i`` seeded from (seed, the step's tokens, ``stream``): results do
        not depend on which other steps are evaluated alongside."""
        data = self.steps.prefixes[i].numpy().astype("int64").tobytes() + int(self.steps.target_ids[i]).to_bytes(8, "little")
        return content_generator(self.seed, data + stream.encode())

    # --- references ------------------------------------------------------------------------
    @cached_property
    def reference_logprobs(self) -> Float[Tensor, " step"]:
        """log P(target | full prefix) for every step."""
        index = torch.arange(self.steps.num_steps)
        return self._run_ids(self.steps.prefixes, index, _target_logprob)

    @cached_property
    def reference_distributions(self) -> Float[Tensor, "step vocab"]:
        """q: the predicted next-token distribution for every step (float32, on the CPU)."""
        embeds = [self.forward.embed(p.unsqueeze(0))[0] for p in self.steps.prefixes]
        out = torch.empty(self.steps.num_steps, self.forward.vocab_size)

        def keep(logits: Tensor, index: Tensor) -> Tensor:
            out[index] = torch.softmax(logits.float(), -1).cpu()
            return torch.zeros(index.shape[0])

        self._run_embeds(embeds, torch.arange(self.steps.num_steps), keep)
        return out

    # --- perturbed inputs ------------------------------------------------------------------
    def logprobs(self, rows: Sequence[Int[Tensor, " _position"]], step_index: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
        """log P(target of step ``step_index[r]`` | ``rows[r]``). A row equal to its step's prefix
        reuses the reference value; an empty row is read after a single baseline token."""
        out = torch.empty(len(rows))
        todo = []
        for r, (ids, i) in enumerate(zip(rows, step_index.tolist())):
            prefix = self.steps.prefixes[i]
            if ids.shape == prefix.shape and torch.equal(ids, prefix):
                out[r] = self.reference_logprobs[i]
            else:
                todo.append(r)
        if todo:
            picked = [rows[r] if rows[r].numel() else torch.tensor([self.baseline_id]) for r in todo]
            out[torch.tensor(todo)] = self._run_ids(picked, step_index[torch.tensor(todo)], _target_logprob)
        return out

    def distances(self, embeds: Sequence[Float[Tensor, "_position hidden"]], step_index: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
        """D(p(row), q(step)) for embedding rows (see :func:`hellinger_distance`)."""
        q = self.reference_distributions

        def distance(logits: Tensor, index: Tensor) -> Tensor:
            p = torch.softmax(logits.float(), -1)
            return hellinger_distance(p, q[step_index[index]].to(p.device)).cpu()

        return self._run_embeds(embeds, torch.arange(len(embeds)), distance)

    # --- runners ---------------------------------------------------------------------------
    def _run_ids(self, rows: Sequence[Tensor], step_index: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        embeds = [self.forward.embed(r.unsqueeze(0))[0] for r in rows]
        targets = self.steps.target_ids[step_index]

        def with_target(logits: Tensor, index: Tensor) -> Tensor:
            return fn(logits, targets[index].to(logits.device)).cpu()

        return self._run_embeds(embeds, torch.arange(len(rows)), with_target)

    def _run_embeds(self, embeds: Sequence[Tensor], index: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """Apply ``fn(logits at each row's last position, row indices)`` over length-sorted chunks."""
        out = torch.empty(len(embeds))
        if not embeds:
            return out
        lengths = torch.tensor([int(e.shape[0]) for e in embeds])
        order = torch.sort(lengths, descending=True, stable=True).indices
        hidden = int(embeds[0].shape[-1])

        def run(chunk: slice) -> None:
            picked = order[chunk]
            width = int(lengths[picked].max())
            batch = torch.zeros(len(picked), width, hidden, dtype=self.forward.dtype, device=self.forward.input_device)
            for r, j in enumerate(picked.tolist()):
                batch[r, : lengths[j]] = embeds[j].to(batch.device, batch.dtype)
            with torch.no_grad():
                logits = self.forward.logits_at(batch, lengths[picked].unsqueeze(-1)).squeeze(1)
            out[picked] = fn(logits, index[picked]).float()
            self.forward.rows_run += len(picked)

        self.forward._chunked(len(embeds), int(lengths.max()), False, run)
        return out


def _target_logprob(logits: Float[Tensor, "row vocab"], targets: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
    return torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
