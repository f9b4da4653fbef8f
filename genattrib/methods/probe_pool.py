"""A pool of ReAGent probes: at most ``capacity`` probes run at once, targets admitted whole.

Targets wait in order; a target is admitted with all its probes once they fit next to the
active ones (or when nothing is active), so the model runs full batches while probes of
earlier targets stop and leave. A target's probes always run together, one iteration per
round, so a target draws the same random numbers whichever pool it runs in.

Example:
    >>> pool = ProbePool(torch.tensor([[True, True], [True, True], [False, False]]), capacity=3)
    >>> pool.refill(); pool.pairs().tolist()                # target 1 waits: 2 + 2 > 3
    [[0, 0], [0, 1]]
    >>> pool.retire(torch.tensor([[0, 0]])); pool.refill(); pool.pairs().tolist()   # 1 + 2 fit: it joins
    [[0, 1], [1, 0], [1, 1]]
    >>> pool.drop_rows([0]); pool.pairs().tolist(), pool.waiting
    ([[1, 0], [1, 1]], 0)
"""

from __future__ import annotations

from collections import deque

import torch
from jaxtyping import Bool, Int
from torch import Tensor


class ProbePool:
    """Which (target row, probe) pairs run this round."""

    def __init__(self, probes: Bool[Tensor, "row probe"], capacity: int) -> None:
        self.probes = probes.clone()  # the probes each target has (none: no movable position)
        self.capacity = max(1, int(capacity))
        self.active = torch.zeros_like(self.probes)
        self.queue = deque(r for r in range(probes.shape[0]) if bool(probes[r].any()))

    @property
    def waiting(self) -> int:
        """Targets not admitted yet."""
        return len(self.queue)

    def refill(self) -> None:
        """Admit waiting targets, in order, while their probes fit."""
        count = int(self.active.sum())
        while self.queue:
            need = int(self.probes[self.queue[0]].sum())
            if count and count + need > self.capacity:
                break
            row = self.queue.popleft()
            self.active[row] = self.probes[row]
            count += need

    def pairs(self) -> Int[Tensor, "pair 2"]:
        """Active (row, probe) pairs, row-major."""
        return self.active.nonzero()

    def retire(self, pairs: Int[Tensor, "pair 2"]) -> None:
        """Take stopped probes out."""
        self.active[pairs[:, 0], pairs[:, 1]] = False

    def drop_rows(self, rows: list[int]) -> None:
        """Take every probe of ``rows`` out (their step limit is reached)."""
        self.active[rows] = False
