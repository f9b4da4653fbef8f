"""Batched model calls for the faithfulness metrics.

Metrics describe perturbed inputs (token-id rows or embedding rows, one per step and variant);
:class:`EvalContext` runs them through the model in length-sorted, right-padded chunks (the
engine's OOM back-off applies) and returns the target token's log-probability, or the
distance of the predicted distribution to the unperturbed one. The unperturbed references
(log P and, for the soft metrics, the distribution q) come from one pass over the distinct
prefixes.

Example:
    >>> from genattrib.faithfulness.steps import collect_steps
    >>> steps = collect_steps(out)
    >>> ctx = EvalContext(ModelForward(hf_model), steps, baseline_id=0)
    >>> ctx.logprobs([steps.prefixes[0][1:]], torch.tensor([0])).shape   # first token dropped
    torch.Size([1])
    >>> torch.equal(ctx.logprobs([steps.prefixes[0]], torch.tensor([0])), ctx.reference_logprobs[:1])
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cached_property

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.engine.forward import ModelForward
from genattrib.faithfulness.steps import EvalSteps
from genattrib.seeding import DEFAULT_SEED, content_generator
from genattrib.targets.functions import TargetContext, logprob

#: ``fn(logits at each row's last position, row indices) -> one value per row``
RowFn = Callable[[Float[Tensor, "row vocab"], Int[Tensor, " row"]], Float[Tensor, " row"]]


def hellinger_distance(p: Float[Tensor, "row vocab"], q: Float[Tensor, "row vocab"]) -> Float[Tensor, " row"]:
    """``D(p, q) = Σ_v (√p_v − √q_v)² / √2`` as coded by Zhao & Aletras (√2 × squared Hellinger).

    Example:
        >>> p = torch.tensor([[1.0, 0.0]]); hellinger_distance(p, p).item()
        0.0
    """
    return ((p.sqrt() - q.sqrt()) ** 2).sum(-1) / math.sqrt(2.0)


class EvalContext:
    """Model access for metrics over the steps ``steps``. ``keep_distributions`` keeps q (the
    next-token distribution of every distinct prefix) from the reference pass, for Soft-NS/NC."""

    def __init__(
        self,
        forward: ModelForward,
        steps: EvalSteps,
        baseline_id: int,
        seed: int = DEFAULT_SEED,
        keep_distributions: bool = True,
    ) -> None:
        self.forward = forward
        self.steps = steps
        self.baseline_id = int(baseline_id)
        self.seed = int(seed)
        self.keep_distributions = keep_distributions
        self.cache: dict[str, object] = {}  # values shared by several metrics (e.g. Soft-NS and Soft-NC)

    # --- randomness ------------------------------------------------------------------------
    def generator(self, i: int, stream: str) -> torch.Generator:
        """A generator for step ``i`` seeded from (seed, the step's tokens, ``stream``): results do
        not depend on which other steps are evaluated alongside."""
        data = self.steps.prefixes[i].numpy().astype("int64").tobytes() + int(self.steps.target_ids[i]).to_bytes(
            8, "little"
        )
        return content_generator(self.seed, data + stream.encode())

    # --- references ------------------------------------------------------------------------
    @cached_property
    def distinct(self) -> tuple[list[int], Int[Tensor, " step"]]:
        """Steps with distinct (prefix, target) — e.g. RPI's candidates share theirs — and, for
        every step, the index of its distinct representative."""
        first: dict[bytes, int] = {}
        reps, index = [], []
        for i, prefix in enumerate(self.steps.prefixes):
            key = prefix.numpy().astype("int64").tobytes() + int(self.steps.target_ids[i]).to_bytes(8, "little")
            if key not in first:
                first[key] = len(reps)
                reps.append(i)
            index.append(first[key])
        return reps, torch.tensor(index, dtype=torch.long)

    @cached_property
    def _reference(self) -> tuple[Float[Tensor, " distinct"], Float[Tensor, "distinct vocab"] | None]:
        """One pass over the distinct prefixes: log P(target) and, when kept, q."""
        reps, _ = self.distinct
        targets = self.steps.target_ids[reps]
        q = torch.empty(len(reps), self.forward.vocab_size) if self.keep_distributions else None

        def read(logits: Tensor, index: Tensor) -> Tensor:
            if q is not None:
                q[index] = torch.softmax(logits.float(), -1).cpu()
            return _target_logprob(logits, targets[index].to(logits.device))

        values = self._run([self.steps.prefixes[i] for i in reps], read, ids=True)
        return values, q

    @property
    def reference_logprobs(self) -> Float[Tensor, " step"]:
        """log P(target | full prefix) for every step."""
        return self._reference[0][self.distinct[1]]

    def _distributions(self) -> Float[Tensor, "distinct vocab"]:
        q = self._reference[1]
        if q is None:  # not kept by the reference pass: one more pass, only for q
            reps, _ = self.distinct
            q = torch.empty(len(reps), self.forward.vocab_size)

            def keep(logits: Tensor, index: Tensor) -> Tensor:
                q[index] = torch.softmax(logits.float(), -1).cpu()
                return torch.zeros(index.shape[0])

            self._run([self.steps.prefixes[i] for i in reps], keep, ids=True)
            self._reference = (self._reference[0], q)
        return q

    # --- perturbed inputs ------------------------------------------------------------------
    def logprobs(
        self, rows: Sequence[Int[Tensor, " _position"]], step_index: Int[Tensor, " row"]
    ) -> Float[Tensor, " row"]:
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
            targets = self.steps.target_ids[step_index[torch.tensor(todo)]]
            out[torch.tensor(todo)] = self._run(
                picked, lambda logits, index: _target_logprob(logits, targets[index].to(logits.device)), ids=True
            )
        return out

    def distances(
        self, embeds: Sequence[Float[Tensor, "_position hidden"]], step_index: Int[Tensor, " row"]
    ) -> Float[Tensor, " row"]:
        """D(p(row), q(step)) for embedding rows (see :func:`hellinger_distance`)."""
        q = self._distributions()
        q_index = self.distinct[1][step_index]

        def distance(logits: Tensor, index: Tensor) -> Tensor:
            p = torch.softmax(logits.float(), -1)
            return hellinger_distance(p, q[q_index[index]].to(p.device))

        return self._run(embeds, distance, ids=False)

    # --- runner ----------------------------------------------------------------------------
    def _run(self, rows: Sequence[Tensor], fn: RowFn, ids: bool) -> Float[Tensor, " row"]:
        """``fn`` of the logits at each row's last position, over length-sorted chunks; ``rows``
        are token ids (embedded once per chunk) or embeddings."""
        out = torch.empty(len(rows))
        if not rows:
            return out
        lengths = torch.tensor([int(r.shape[0]) for r in rows])
        order = torch.sort(lengths, descending=True, stable=True).indices
        forward = self.forward

        def run(chunk: slice) -> None:
            picked = order[chunk]
            width = int(lengths[picked].max())
            if ids:
                batch_ids = torch.zeros(len(picked), width, dtype=torch.long)
                for r, j in enumerate(picked.tolist()):
                    batch_ids[r, : lengths[j]] = rows[j]
                batch = forward.embed(batch_ids)
            else:
                hidden = int(rows[0].shape[-1])
                batch = torch.zeros(len(picked), width, hidden, dtype=forward.dtype, device=forward.input_device)
                for r, j in enumerate(picked.tolist()):
                    batch[r, : lengths[j]] = rows[j].to(batch.device, batch.dtype)
            logits = forward.logits_at(batch, lengths[picked].unsqueeze(-1)).squeeze(1)
            out[picked] = fn(logits, picked).float().cpu()

        forward.run_chunked(len(rows), int(lengths.max()), run, grad=False)
        return out


def _target_logprob(logits: Float[Tensor, "row vocab"], targets: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
    return logprob(TargetContext(logits.float(), targets))
