"""Where the engine puts finished rows: a :class:`RowSink` receives each batch's rows as
:class:`RowBlock` objects (one per sequence the batch touched) as soon as the batch is done.

:class:`MemorySink` assembles them into per-sequence matrices in memory (dense, or top-k
:class:`~genattrib.output.scores.SparseScores` when ``top_k`` is set: a batch's rows are made
sparse as they arrive, so the dense matrix of a sequence is never built);
:class:`~genattrib.output.stream.StreamWriter` writes them to safetensors shards on disk.

Example:
    >>> sink = MemorySink([(2, 4)])
    >>> sink.add([RowBlock(0, torch.tensor([1]), torch.ones(1, 4))])
    >>> sink.result(0)[0]
    tensor([[nan, nan, nan, nan],
            [1., 1., 1., 1.]])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.output.scores import ScoreStore, SparseScores

__all__ = ["MemorySink", "RowBlock", "RowSink", "SequenceRows"]

#: (scores, granular scores or None, step scores) of one sequence, as a sink holds them.
SequenceRows = tuple[Tensor | ScoreStore, Tensor | ScoreStore | None, dict[str, Tensor]]


@dataclass
class RowBlock:
    """Finished rows ``rows`` of sequence ``sequence``: their scores (dense, NaN where a row has
    no score, or top-k), granular scores if kept, and the method's step scores of each row."""

    sequence: int
    rows: Int[Tensor, " n"]
    scores: Float[Tensor, "n position"] | SparseScores
    granular: Float[Tensor, "n position hidden"] | None = None
    step_scores: dict[str, Float[Tensor, " n"]] = field(default_factory=dict)


class RowSink(ABC):
    """Receives finished rows batch by batch; gives each sequence's rows back at the end."""

    @abstractmethod
    def add(self, blocks: list[RowBlock]) -> None:
        """Take the rows of one finished batch."""

    @abstractmethod
    def result(self, sequence: int) -> SequenceRows:
        """(scores, granular scores or None, step scores) of ``sequence``, all rows in order."""


class MemorySink(RowSink):
    """Rows assembled in memory. ``shapes[j]`` is sequence ``j``'s (rows, positions); with
    ``top_k``, scores are kept as :class:`SparseScores` (rows that never arrive have no score)."""

    def __init__(self, shapes: Sequence[tuple[int, int]], top_k: int | None = None) -> None:
        self.shapes = [(int(r), int(p)) for r, p in shapes]
        self.top_k = top_k
        self.scores: list[Tensor | None] = [None] * len(self.shapes)
        self.sparse: list[list[tuple[Tensor, SparseScores]]] = [[] for _ in self.shapes]
        self.granular: list[Tensor | None] = [None] * len(self.shapes)
        self.step_scores: list[dict[str, Tensor]] = [{} for _ in self.shapes]

    def _dense(self, j: int) -> Tensor:
        if self.scores[j] is None:
            self.scores[j] = torch.full(self.shapes[j], math.nan, dtype=torch.float32)
        return self.scores[j]  # type: ignore[return-value]

    def add(self, blocks: list[RowBlock]) -> None:
        for block in blocks:
            j, rows = block.sequence, block.rows
            if isinstance(block.scores, SparseScores):
                self.sparse[j].append((rows, block.scores))
            else:
                self._dense(j)[rows] = block.scores
            if block.granular is not None:
                if self.granular[j] is None:
                    self.granular[j] = torch.full((*self.shapes[j], block.granular.shape[-1]), math.nan)
                self.granular[j][rows] = block.granular  # type: ignore[index]
            for name, values in block.step_scores.items():
                store = self.step_scores[j].setdefault(name, torch.full((self.shapes[j][0],), math.nan))
                store[rows] = values.to(store.dtype)

    def result(self, sequence: int) -> SequenceRows:
        rows, positions = self.shapes[sequence]
        scores: Tensor | ScoreStore
        if self.top_k is None:
            scores = self._dense(sequence)
        else:
            scores = assemble_sparse(self.sparse[sequence], rows, positions, self.top_k)
        return scores, self.granular[sequence], self.step_scores[sequence]


def assemble_sparse(parts: Sequence[tuple[Tensor, SparseScores]], rows: int, positions: int, k: int) -> SparseScores:
    """One :class:`SparseScores` of ``rows`` rows from blocks of (row indices, sparse rows);
    rows that no block holds have no score (all NaN)."""
    blocks = [SparseScores.empty_rows(rows, positions, k)] + [sparse for _, sparse in parts]
    where = torch.arange(rows)  # row j -> its row in the concatenation (the empty row by default)
    offset = rows
    for index, sparse in parts:
        where[index] = torch.arange(offset, offset + sparse.num_rows)
        offset += sparse.num_rows
    return SparseScores.concat(blocks).take(where)
