"""Score matrices held other than as one dense tensor: :class:`ScoreStore`, and the top-k
:class:`SparseScores` of ``attribute(..., top_k_scores=k)``.

A :class:`~genattrib.output.sequence.SequenceAttribution` keeps its ``scores`` (and
``granular_scores``) either as a dense tensor or as a store; reading ``seq.scores`` densifies a
store once (then the dense tensor is cached), so aggregation and rendering work unchanged.

Top-k rows (:class:`SparseScores`)
----------------------------------
``top_k_scores=k`` keeps, in every row, the ``k`` finite scores of largest ``|score|`` (ties: the lower
source position first) and drops the other finite scores, recording per row

* ``residual``: the sum of the dropped scores, in float64 (summed in float64: exact whenever
  the dropped float32 scores lie within 2**29 of each other in magnitude, i.e. always in
  practice; otherwise off by float64 rounding only);
* ``dropped``: how many scores were dropped.

Nothing that is not a finite score is dropped: a row's cells from ``limit`` on (the positions
at or after its target) are NaN, and NaN or infinite cells before ``limit`` are always kept.

Densified, **a dropped cell reads 0** (not NaN: NaN keeps its meaning "no score here", so
merging sub-words into words sums what was kept instead of turning the word NaN). Hence for
every row ``j``::

    sparse.dense()[j].double().nansum() + sparse.residual[j] == dense[j].double().nansum()

Storage is CSR (compressed rows): row ``j`` keeps ``indices[indptr[j]:indptr[j + 1]]`` (source
positions, ascending) with ``values`` at the same slots. It saves and loads with
:meth:`~genattrib.output.attribution.FeatureAttributionOutput.save` (JSON and safetensors).

Example:
    >>> dense = torch.tensor([[0.5, -2.0, 0.25, 1.0, float("nan")]])
    >>> sparse = SparseScores.from_dense(dense, k=2)
    >>> sparse.dense()
    tensor([[ 0., -2.,  0.,  1., nan]])
    >>> sparse.residual.tolist(), sparse.dropped.tolist()
    ([0.75], [2])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["ScoreStore", "SparseScores"]


def tensors_equal(a: Tensor | None, b: Tensor | None) -> bool:
    """Exact equality of shape, dtype and values, NaN equal to NaN (``None`` only equals ``None``).

    Example:
        >>> tensors_equal(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, float("nan")]))
        True
    """
    if a is None or b is None:
        return a is b
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    nan_a, nan_b = a.isnan(), b.isnan()
    return torch.equal(nan_a, nan_b) and torch.equal(a.masked_fill(nan_a, 0), b.masked_fill(nan_b, 0))


class ScoreStore(ABC):
    """A score matrix (rows × positions[, hidden]) not held as one dense tensor."""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of :meth:`dense`."""

    @abstractmethod
    def dense(self) -> Tensor:
        """The whole matrix as a new dense tensor."""

    def cached(self) -> Tensor:
        """:meth:`dense`, computed on the first call and kept (do not modify it in place)."""
        cache = self.__dict__.get("_cached")
        if cache is None:
            cache = self.__dict__["_cached"] = self.dense()
        return cache

    @property
    def is_cached(self) -> bool:
        return self.__dict__.get("_cached") is not None

    def row(self, j: int) -> Tensor:
        """Row ``j`` alone (a store may read only that row)."""
        return self.cached()[j] if self.is_cached else self.dense()[j]

    def select(self, rows: slice) -> ScoreStore | Tensor:
        """Rows ``rows`` (a slice), as a store or a dense tensor."""
        return self.cached()[rows].clone()

    def sparse(self) -> SparseScores | None:
        """The top-k form of the matrix, if it was kept sparse."""
        return None


def _row_index(counts: Int[Tensor, " row"]) -> Int[Tensor, " nnz"]:
    return torch.repeat_interleave(torch.arange(counts.shape[0]), counts)


@dataclass(eq=False)
class SparseScores(ScoreStore):
    """Top-k rows of a ``(rows, positions)`` score matrix, with the exact residual of each row
    (see the module docstring for the rules)."""

    num_positions: int
    k: int
    indptr: Int[Tensor, " rows_plus_one"]
    indices: Int[Tensor, " nnz"]
    values: Float[Tensor, " nnz"]
    limit: Int[Tensor, " row"]  # cells at and after limit[j] are NaN
    residual: Float[Tensor, " row"]  # float64: sum of the dropped finite scores
    dropped: Int[Tensor, " row"]  # how many finite scores were dropped

    def __post_init__(self) -> None:
        rows = int(self.limit.shape[0])
        if int(self.indptr.shape[0]) != rows + 1 or self.residual.shape[0] != rows or self.dropped.shape[0] != rows:
            raise ValueError(f"sparse scores of {rows} rows need indptr of {rows + 1} and a residual per row")
        if int(self.indptr[-1]) != int(self.indices.shape[0]) or self.values.shape[0] != self.indices.shape[0]:
            raise ValueError("sparse scores: indptr, indices and values disagree")
        if self.residual.dtype != torch.float64:
            raise ValueError(f"the residual is float64, got {self.residual.dtype}")

    # --- building ------------------------------------------------------------------------------
    @classmethod
    def from_dense(cls, dense: Float[Tensor, "row position"], k: int) -> SparseScores:
        """Keep the ``k`` largest-``|score|`` finite cells of every row of ``dense``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        dense = dense.detach().cpu()
        rows, positions = dense.shape
        finite, nan = dense.isfinite(), dense.isnan()
        index = torch.arange(positions)
        limit = torch.where(~nan, index + 1, 0).amax(1) if positions else torch.zeros(rows, dtype=torch.long)
        key = torch.where(finite, dense.abs().double(), -1.0)
        order = torch.sort(key, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, index.expand(rows, positions).contiguous())
        keep = (finite & (rank < k)) | (~finite & (index < limit[:, None]))
        lost = finite & ~keep
        counts = keep.sum(1)
        r, c = keep.nonzero(as_tuple=True)
        return cls(
            num_positions=int(positions),
            k=int(k),
            indptr=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
            indices=c.clone(),
            values=dense[r, c].clone(),
            limit=limit.long(),
            residual=torch.where(lost, dense.double(), 0.0).sum(1),
            dropped=lost.sum(1),
        )

    @classmethod
    def concat(cls, parts: Sequence[SparseScores]) -> SparseScores:
        """The rows of ``parts``, one after another (same positions and ``k``)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        if any(p.num_positions != first.num_positions or p.k != first.k for p in parts):
            raise ValueError("sparse blocks differ in positions or k")
        counts = torch.cat([p.counts for p in parts])
        return cls(
            num_positions=first.num_positions,
            k=first.k,
            indptr=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
            indices=torch.cat([p.indices for p in parts]),
            values=torch.cat([p.values for p in parts]),
            limit=torch.cat([p.limit for p in parts]),
            residual=torch.cat([p.residual for p in parts]),
            dropped=torch.cat([p.dropped for p in parts]),
        )

    @classmethod
    def empty_rows(cls, rows: int, num_positions: int, k: int) -> SparseScores:
        """``rows`` all-NaN rows (no score at all)."""
        zeros = torch.zeros(rows, dtype=torch.long)
        return cls(
            num_positions,
            k,
            torch.zeros(rows + 1, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, dtype=torch.float32),
            zeros,
            torch.zeros(rows, dtype=torch.float64),
            zeros.clone(),
        )

    # --- views ---------------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return int(self.limit.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.num_positions)

    @property
    def counts(self) -> Int[Tensor, " row"]:
        """Cells kept per row."""
        return self.indptr[1:] - self.indptr[:-1]

    def take(self, rows: Sequence[int] | Tensor) -> SparseScores:
        """Rows ``rows`` (any order, repeats allowed), as a new :class:`SparseScores`."""
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        starts, counts = self.indptr[rows], self.counts[rows]
        indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        nnz = int(indptr[-1])
        gather = torch.repeat_interleave(starts - indptr[:-1], counts) + torch.arange(nnz)
        return SparseScores(
            self.num_positions,
            self.k,
            indptr,
            self.indices[gather].clone(),
            self.values[gather].clone(),
            self.limit[rows].clone(),
            self.residual[rows].clone(),
            self.dropped[rows].clone(),
        )

    def select(self, rows: slice) -> SparseScores:
        return self.take(range(self.num_rows)[rows])

    def sparse(self) -> SparseScores:
        return self

    def dense(self) -> Float[Tensor, "row position"]:
        """Kept cells as they were, dropped cells 0, cells from each row's ``limit`` on NaN."""
        out = torch.zeros(self.shape, dtype=self.values.dtype)
        out[torch.arange(self.num_positions) >= self.limit[:, None]] = math.nan
        out[_row_index(self.counts), self.indices] = self.values
        return out

    def row(self, j: int) -> Float[Tensor, " position"]:
        return self.take([j]).dense()[0]

    # --- persistence and comparison ----------------------------------------------------------------
    FIELDS: ClassVar[tuple[str, ...]] = ("indptr", "indices", "values", "limit", "residual", "dropped")

    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}{name}": getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_tensors(cls, prefix: str, tensors: dict[str, Tensor], num_positions: int, k: int) -> SparseScores:
        return cls(num_positions, k, *(tensors[f"{prefix}{name}"] for name in cls.FIELDS))

    def equals(self, other: SparseScores) -> bool:
        """Exact equality of every kept cell, limit and residual (NaN equals NaN)."""
        return (
            self.shape == other.shape
            and self.k == other.k
            and all(tensors_equal(getattr(self, n), getattr(other, n)) for n in self.FIELDS)
        )
