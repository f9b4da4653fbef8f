"""The score matrices of an HTML page: exact float16, or the top ``k`` per row in 8 bits.

Exact (:func:`encode_scores`): the matrix is divided by a power of two (so the largest finite
``|score|`` lies in ``[0.5, 1)`` and float16 keeps full relative precision whatever the
magnitude), cast to float16 little-endian and base64-encoded. Large matrices are stored as two
byte planes (all low bytes, then all high bytes) compressed with zlib before base64: the NaN half
of the matrix and the repetitive exponent bytes then cost almost nothing. NaN and infinities
survive.

Top-k (:func:`encode_topk`), for matrices above :data:`DENSE_MAX_CELLS` cells
(:func:`encode_matrix` chooses): per row, the ``k`` sources with the largest ``|score|`` (NaN
never counts) as an 8-bit integer times the row's scale (its largest ``|score|`` / 127), plus
the ``|score|`` mass of the sources left out (the residual). Layout before zlib and base64
(little-endian): ``uint32`` count per row, ``float32`` scale per row, ``float32`` residual per
row, then every row's sorted positions as gaps from the previous one (``uint16``, or ``uint32``
when a row has more than 65,536 columns), then the ``int8`` values.

Example:
    >>> spec = encode_scores(torch.tensor([[1.5, float("nan")]]), compress=False)
    >>> spec["codec"], spec["shape"], decode_scores(spec).tolist()
    ('f16le', [1, 2], [[1.5, nan]])
    >>> m = torch.tensor([[3.0, -1.0, 0.5, float("nan")]])
    >>> spec = encode_topk(m, k=2)
    >>> spec["codec"], spec["k"]
    ('topk-q8-zlib', 2)
    >>> values, residual = decode_topk(spec)
    >>> values.round(3).tolist(), residual.tolist()     # -1.0 is -126/127 of the row's 3.0
    ([[3.0, -0.992, nan, nan]], [0.5])
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.errors import InvalidArgumentError

__all__ = [
    "COMPRESS_ABOVE_BYTES",
    "DEFAULT_TOP_K",
    "DENSE_MAX_CELLS",
    "SUMS_DENSE_MAX_CELLS",
    "decode_matrix",
    "decode_scores",
    "decode_topk",
    "encode_matrix",
    "encode_scores",
    "encode_topk",
]

COMPRESS_ABOVE_BYTES = 64 * 1024  # smaller matrices stay plain float16 (readable by any browser)
DENSE_MAX_CELLS = 5_000_000  # a 2,200-token generation stays exact (about 6 MB of page)
SUMS_DENSE_MAX_CELLS = 1_000_000  # sums over source sentences: exact up to about 1.2 MB
DEFAULT_TOP_K = 64
_CHUNK = 512
_LEVELS = 127


def _scale_exponent(values: np.ndarray) -> int:
    """``e`` such that every finite ``|value| / 2**e`` is below 1 (0 when there is none)."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    return math.frexp(top)[1] if top > 0 else 0


def encode_scores(scores: Tensor, *, compress: bool | None = None) -> dict[str, Any]:
    """``{"codec", "shape", "exp", "data"}`` for a 2-D score matrix (see the module docstring).

    ``compress=None`` compresses when the float16 bytes exceed :data:`COMPRESS_ABOVE_BYTES`.

    Example:
        >>> encode_scores(torch.zeros(2, 3))["exp"]
        0
    """
    values = scores.detach().to("cpu", torch.float64).numpy()
    exp = _scale_exponent(values)
    half = np.ldexp(values, -exp).astype("<f2")
    raw = half.tobytes()
    if compress is None:
        compress = len(raw) > COMPRESS_ABOVE_BYTES
    if compress:
        planes = np.ascontiguousarray(half.reshape(-1).view(np.uint8).reshape(-1, 2).T)
        codec, payload = "f16le-planes-zlib", zlib.compress(planes.tobytes(), 6)
    else:
        codec, payload = "f16le", raw
    return {
        "codec": codec,
        "shape": [int(d) for d in values.shape],
        "exp": exp,
        "data": base64.b64encode(payload).decode("ascii"),
    }


def decode_scores(spec: dict[str, Any]) -> np.ndarray:
    """The matrix stored by :func:`encode_scores` (float64; what the page's script reads).

    Example:
        >>> decode_scores(encode_scores(torch.tensor([[0.25, -3.0]]), compress=True)).tolist()
        [[0.25, -3.0]]
    """
    payload = base64.b64decode(spec["data"])
    count = int(np.prod(spec["shape"]))
    if spec["codec"] == "f16le-planes-zlib":
        planes = np.frombuffer(zlib.decompress(payload), dtype=np.uint8).reshape(2, count)
        half = np.ascontiguousarray(planes.T).view("<f2").reshape(-1)
    elif spec["codec"] == "f16le":
        half = np.frombuffer(payload, dtype="<f2")
    else:
        raise ValueError(f"unknown score codec {spec['codec']!r}")
    return np.ldexp(half.astype(np.float64), int(spec["exp"])).reshape(spec["shape"])


def encode_topk(values: Float[Tensor, "row column"], k: int) -> dict[str, Any]:
    """The ``k`` largest ``|value|`` of every row, 8-bit per-row quantised (see the module docstring)."""
    rows, cols = (int(d) for d in values.shape)
    kk = max(0, min(k, cols))
    counts, scales, residuals, gaps, levels = [], [], [], [], []
    for r0 in range(0, rows, _CHUNK):
        v = values[r0 : r0 + _CHUNK].detach().to("cpu", torch.float32)
        size = v.abs()
        top, index = size.nan_to_num(nan=-1.0).topk(kk, dim=1)
        count = (top >= 0).sum(1)  # NaN is never kept; kept entries lead each row of ``top``
        valid = torch.arange(kk).unsqueeze(0) < count.unsqueeze(1)  # after sorting by position
        index = torch.where(top >= 0, index, torch.full((), cols, dtype=index.dtype)).sort(1).values
        kept = v.gather(1, index.clamp(max=max(cols - 1, 0)))
        kept_size = torch.where(valid, kept.abs().nan_to_num(nan=0.0, posinf=0.0), torch.zeros(()))
        scale = kept_size.amax(1) if kk else torch.zeros(len(v))
        q = kept.double() / scale.double().clamp(min=1e-300).unsqueeze(1) * _LEVELS
        q = q.nan_to_num(0.0, posinf=_LEVELS, neginf=-_LEVELS).round().clamp(-_LEVELS, _LEVELS)
        whole = size.nan_to_num(nan=0.0, posinf=0.0).sum(1, dtype=torch.float64)
        shown = kept_size.sum(1, dtype=torch.float64)
        gap = torch.diff(index, dim=1, prepend=torch.zeros(len(v), 1, dtype=index.dtype))
        gaps.append(gap[valid].numpy())
        levels.append(q[valid].numpy())
        counts.append(count.numpy())
        scales.append(scale.numpy())
        residuals.append((whole - shown).clamp(min=0).numpy())
    index_bytes = 2 if cols <= 65536 else 4
    empty = np.zeros(0)
    parts = [
        np.concatenate(counts or [empty]).astype("<u4"),
        np.concatenate(scales or [empty]).astype("<f4"),
        np.concatenate(residuals or [empty]).astype("<f4"),
        np.concatenate(gaps or [empty]).astype("<u2" if index_bytes == 2 else "<u4"),
        np.concatenate(levels or [empty]).astype(np.int8),
    ]
    payload = zlib.compress(b"".join(p.tobytes() for p in parts), 6)
    return {
        "codec": "topk-q8-zlib",
        "shape": [rows, cols],
        "k": kk,
        "index_bytes": index_bytes,
        "data": base64.b64encode(payload).decode("ascii"),
    }


def decode_topk(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(values, residual)`` of :func:`encode_topk`: the kept values (NaN elsewhere) and each row's
    ``|score|`` mass left out.

    Example:
        >>> values, _ = decode_topk(encode_topk(torch.tensor([[1.0, 2.0]]), k=1))
        >>> values.tolist()
        [[nan, 2.0]]
    """
    rows, cols = spec["shape"]
    raw = np.frombuffer(zlib.decompress(base64.b64decode(spec["data"])), dtype=np.uint8)
    at = 0

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal at
        size = np.dtype(dtype).itemsize * count
        out = raw[at : at + size].view(dtype)
        at += size
        return out

    counts = take("<u4", rows).astype(np.int64)
    scales = take("<f4", rows).astype(np.float64)
    residual = take("<f4", rows).astype(np.float64)
    total = int(counts.sum())
    gaps = take("<u2" if spec["index_bytes"] == 2 else "<u4", total).astype(np.int64)
    levels = take("<i1", total).astype(np.float64)
    values = np.full((rows, cols), np.nan)
    start = 0
    for r, c in enumerate(counts):
        positions = np.cumsum(gaps[start : start + c])
        values[r, positions] = levels[start : start + c] / _LEVELS * scales[r]
        start += c
    return values, residual


def encode_matrix(
    values: Float[Tensor, "row column"],
    *,
    top_k: int | str | None = "auto",
    compress: bool | None = None,
    dense_max: int | None = None,
) -> dict[str, Any]:
    """Exact float16 (``top_k=None``, or ``"auto"`` up to ``dense_max`` cells, by default
    :data:`DENSE_MAX_CELLS`) or the top ``k`` per row (an int, or ``"auto"`` above the limit:
    :data:`DEFAULT_TOP_K`).

    Example:
        >>> encode_matrix(torch.zeros(2, 3))["codec"]
        'f16le'
        >>> encode_matrix(torch.zeros(2, 3), top_k=1)["codec"]
        'topk-q8-zlib'
    """
    if top_k == "auto":
        rows, cols = values.shape
        limit = DENSE_MAX_CELLS if dense_max is None else dense_max
        top_k = DEFAULT_TOP_K if rows * cols > limit and cols > DEFAULT_TOP_K else None
    if top_k is None:
        return encode_scores(values, compress=compress)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidArgumentError("top_k", f"top_k={top_k!r} keeps no source", "pass 'auto', None or an int >= 1")
    return encode_topk(values, top_k)


def decode_matrix(spec: dict[str, Any]) -> np.ndarray:
    """The values of either codec (NaN where a top-k row keeps nothing).

    Example:
        >>> decode_matrix(encode_matrix(torch.ones(1, 2))).tolist()
        [[1.0, 1.0]]
    """
    if spec["codec"] == "topk-q8-zlib":
        return decode_topk(spec)[0]
    return decode_scores(spec)
