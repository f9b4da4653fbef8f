"""Streamed results: ``attribute(..., stream_to="dir/")`` writes every finished batch of rows
to a safetensors shard as it completes, so an interrupted run resumes where it stopped.

The folder holds

* ``index.json``: the format, the request *fingerprint* (prompts, continuation, model, method
  and parameters, attributed function, explain, seed, generation settings, top_k ...), each
  sequence's shape (rows, positions, hidden size kept, a digest of its token ids), the list of
  shards with the rows of each sequence each one holds, and ``complete``;
* ``shard-00000.safetensors`` ...: per sequence ``j`` it touches, ``{j}.rows`` (the row
  indices) and ``{j}.scores`` (dense rows) or ``{j}.sparse.*`` (top-k rows, see
  :mod:`genattrib.output.scores`), ``{j}.granular`` when granular scores are kept, and
  ``{j}.step.{name}`` for the method's step scores;
* ``result.safetensors``, once every row is written: tokens, token ids, step scores and the
  provenance (everything but the score rows), the format of
  :meth:`~genattrib.output.attribution.FeatureAttributionOutput.save`.

Every file is written to a temporary name and moved into place (``os.replace``), shard first,
then the index that lists it: a run killed at any point leaves a folder whose index lists only
complete shards. Re-running the same call with the same folder skips the rows already written;
a different call raises.

:func:`read_stream` opens a complete folder lazily: each sequence's scores are a
:class:`ShardedRows` store that reads its rows from the shards when they are asked for.

Example:
    >>> from pathlib import Path
    >>> from genattrib import FeatureAttributionOutput
    >>> out = model.attribute(prompt, target=" Paris.", stream_to="paris/", max_rows=2)   # batches of 2 rows
    >>> sorted(p.name for p in Path("paris").iterdir())
    ['index.json', 'result.safetensors', 'shard-00000.safetensors', 'shard-00001.safetensors']
    >>> FeatureAttributionOutput.load("paris").equals(out)
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors_bytes
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output import serialization
from genattrib.output.rows import RowBlock, RowSink, SequenceRows, assemble_sparse
from genattrib.output.scores import ScoreStore, SparseScores

__all__ = ["STREAM_FORMAT", "ShardedRows", "StreamWriter", "check_stream_folder", "ids_digest", "read_stream"]

STREAM_FORMAT = "genattrib-stream/1"
INDEX = "index.json"
RESULT = "result.safetensors"


def ids_digest(ids: Tensor) -> str:
    """A short digest of a sequence's token ids (to tell a different continuation)."""
    return hashlib.sha256(ids.detach().cpu().long().contiguous().numpy().tobytes()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists ...)."""
    return json.loads(json.dumps(value, sort_keys=True, allow_nan=False, default=str))


def _ours_tmp(path: Path) -> bool:
    """A temporary file a killed writer left (``.index.json.<pid>.tmp``, ``.shard-….safetensors.<pid>.tmp``)."""
    name = path.name
    return name.startswith((f".{INDEX}.", ".shard-", f".{RESULT}.")) and name.endswith(".tmp")


def _remove_leftovers(folder: Path) -> None:
    """Delete the temporary files of a killed run (never listed in the index, so never read)."""
    for leftover in [p for p in folder.iterdir() if _ours_tmp(p)]:
        leftover.unlink(missing_ok=True)


def check_stream_folder(path: object) -> Path:
    """The folder ``stream_to`` names, checked: not a file, and a genattrib stream or empty/new."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InvalidArgumentError(
            "stream_to", f"must be a folder path, got {path!r}", "pass a folder path, e.g. stream_to='runs/paris'"
        )
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(
            "stream_to",
            f"{str(folder)!r} is a file, not a folder",
            "pass a folder path (it is created if missing), not a result file; save files with out.save()",
        )
    if folder.is_dir() and not (folder / INDEX).is_file() and any(not _ours_tmp(p) for p in folder.iterdir()):
        raise InvalidArgumentError(
            "stream_to",
            f"{str(folder)!r} is a folder with other files and no genattrib {INDEX}",
            "pass a new or empty folder (or the folder of an earlier stream_to run to resume it)",
        )
    return folder


def _read_index(folder: Path) -> dict[str, Any]:
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(
            "stream_to", f"cannot read {str(folder / INDEX)!r} ({error})", "pass a new or empty folder"
        ) from error
    if not isinstance(index, dict) or index.get("format") != STREAM_FORMAT:
        raise InvalidArgumentError(
            "stream_to", f"{str(folder / INDEX)!r} is not a genattrib stream index", "pass a new or empty folder"
        )
    return index


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class StreamWriter(RowSink):
    """Writes finished rows to shards in ``folder`` (see the module docstring).

    Open with :meth:`open` (checks the folder and the fingerprint before any work), then
    :meth:`plan` (records or checks each sequence's shape; gives the rows already written),
    then :meth:`add` per batch, then :meth:`finish` with the rest of the result.
    """

    def __init__(self, folder: Path, index: dict[str, Any]) -> None:
        self.folder = folder
        self.index = index
        self._shards_at_open = len(index["shards"])

    @classmethod
    def open(cls, path: object, fingerprint: dict[str, Any]) -> StreamWriter:
        """Start or resume a stream in ``path``; raise if it holds a different call's rows."""
        folder = check_stream_folder(path)
        fingerprint = _jsonable(fingerprint)
        if (folder / INDEX).is_file():
            index = _read_index(folder)
            old = index.get("fingerprint", {})
            if old != fingerprint:
                raise InvalidArgumentError(
                    "stream_to",
                    f"{str(folder)!r} holds rows of a different attribute() call "
                    f"(differs in: {', '.join(_differences(old, fingerprint))})",
                    "repeat the same call to resume it, or stream to a new or empty folder",
                )
            _remove_leftovers(folder)
            return cls(folder, index)
        folder.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(folder)
        index = {
            "format": STREAM_FORMAT,
            "fingerprint": fingerprint,
            "sequences": None,
            "shards": [],
            "complete": False,
        }
        writer = cls(folder, index)
        writer._write_index()
        return writer

    # --- state -------------------------------------------------------------------------------------
    def _write_index(self) -> None:
        text = json.dumps(self.index, ensure_ascii=False, allow_nan=False, indent=1)
        serialization.atomic_write_bytes(self.folder / INDEX, text.encode("utf-8"), durable=True)

    def plan(self, sequences: list[dict[str, Any]]) -> set[tuple[int, int]]:
        """Record (first run) or check (resumed run) each sequence's ``rows``, ``positions``,
        ``hidden`` (granular size kept, or None) and ``ids`` digest; the (sequence, row) pairs
        already written."""
        sequences = _jsonable(sequences)
        if self.index["sequences"] is None:
            self.index["sequences"] = sequences
            self._write_index()
        elif self.index["sequences"] != sequences:
            raise InvalidArgumentError(
                "stream_to",
                f"the sequences to explain now differ from those streamed to {str(self.folder)!r} "
                "(a generated continuation changed: sampling without a fixed seed? "
                "or granular scores kept differently)",
                "pass seed= (or a forced continuation=) to resume, or stream to a new or empty folder",
            )
        return self.done()

    def done(self) -> set[tuple[int, int]]:
        """(sequence, row) pairs in the shards the index lists."""
        return {(int(j), int(r)) for shard in self.index["shards"] for j, rows in shard["rows"].items() for r in rows}

    @property
    def resumed_rows(self) -> int:
        """Rows that were already written when this writer opened the folder."""
        shards = self.index["shards"][: self._shards_at_open]
        return sum(len(rows) for shard in shards for rows in shard["rows"].values())

    # --- writing -----------------------------------------------------------------------------------
    def add(self, blocks: list[RowBlock]) -> None:
        """Write one batch's rows to a new shard, then list it in the index."""
        tensors: dict[str, Tensor] = {}
        rows: dict[str, list[int]] = {}
        for block in blocks:
            j = block.sequence
            rows[str(j)] = [int(r) for r in block.rows]
            tensors[f"{j}.rows"] = block.rows.long()
            if isinstance(block.scores, SparseScores):
                tensors.update(block.scores.to_tensors(f"{j}.sparse."))
            else:
                tensors[f"{j}.scores"] = block.scores
            if block.granular is not None:
                tensors[f"{j}.granular"] = block.granular
            for name, values in block.step_scores.items():
                tensors[f"{j}.step.{name}"] = values
        name = f"shard-{len(self.index['shards']):05d}.safetensors"
        contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        data = save_tensors_bytes(contiguous, metadata={"format": STREAM_FORMAT, "rows": json.dumps(rows)})
        serialization.atomic_write_bytes(self.folder / name, data, durable=True)
        self.index["shards"].append({"file": name, "rows": rows, "bytes": len(data)})
        self._write_index()

    def result(self, sequence: int) -> SequenceRows:
        """Sequence ``sequence`` read back lazily (its rows stay on disk until asked for)."""
        return sequence_rows(self.folder, self.index, sequence)

    def finish(self, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
        """Write the rest of the result (``FeatureAttributionOutput.encode(scores=False)``) and
        mark the stream complete."""
        serialization.write(self.folder / RESULT, meta, tensors)
        self.index["complete"] = True
        self.index["result"] = RESULT
        self._write_index()


# --- reading ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class ShardedRows(ScoreStore):
    """One sequence's rows (``kind``: ``"scores"``, ``"sparse"`` or ``"granular"``) spread over
    shards of a stream folder; read on demand (``parts``: each shard file and the rows of this
    sequence it holds, in its order)."""

    folder: Path
    sequence: int
    kind: str
    num_rows: int
    trailing: tuple[int, ...]
    parts: list[tuple[str, list[int]]]
    k: int | None = None
    _sparse: SparseScores | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.num_rows, *self.trailing)

    def _read(self, file: str, name: str) -> Tensor:
        with safe_open(str(self.folder / file), framework="pt") as f:
            return f.get_tensor(name)

    def _read_sparse(self, file: str) -> SparseScores:
        prefix = f"{self.sequence}.sparse."
        with safe_open(str(self.folder / file), framework="pt") as f:
            tensors = {f"{prefix}{n}": f.get_tensor(f"{prefix}{n}") for n in SparseScores.FIELDS}
        return SparseScores.from_tensors(prefix, tensors, self.trailing[0], int(self.k or 1))

    def sparse(self) -> SparseScores | None:
        if self.kind != "sparse":
            return None
        if self._sparse is None:
            parts = [(torch.tensor(rows, dtype=torch.long), self._read_sparse(file)) for file, rows in self.parts]
            self._sparse = assemble_sparse(parts, self.num_rows, self.trailing[0], int(self.k or 1))
        return self._sparse

    def dense(self) -> Tensor:
        if self.kind == "sparse":
            return self.sparse().dense()  # type: ignore[union-attr]
        out = torch.full(self.shape, math.nan, dtype=torch.float32)
        for file, rows in self.parts:
            out[torch.tensor(rows, dtype=torch.long)] = self._read(file, f"{self.sequence}.{self.kind}")
        return out

    def row(self, j: int) -> Tensor:
        for file, rows in self.parts:
            if j in rows:
                slot = rows.index(j)
                if self.kind == "sparse":
                    return self._read_sparse(file).row(slot)
                with safe_open(str(self.folder / file), framework="pt") as f:
                    return f.get_slice(f"{self.sequence}.{self.kind}")[slot : slot + 1][0]
        return torch.full(self.trailing, math.nan, dtype=torch.float32)

    def select(self, rows: slice) -> ScoreStore | Tensor:
        sparse = self.sparse()
        return sparse.select(rows) if sparse is not None else self.cached()[rows].clone()


def sequence_rows(folder: Path, index: dict[str, Any], sequence: int, steps: bool = True) -> SequenceRows:
    """(scores store, granular store or None, step scores) of one sequence of a stream folder;
    the step scores of the rows are read from the shards only if ``steps`` (else: none)."""
    info = index["sequences"][sequence]
    key = str(sequence)
    parts = [(shard["file"], list(shard["rows"][key])) for shard in index["shards"] if key in shard["rows"]]
    rows, positions, hidden, k = int(info["rows"]), int(info["positions"]), info.get("hidden"), info.get("top_k")
    kind = "sparse" if k is not None else "scores"
    scores = ShardedRows(folder, sequence, kind, rows, (positions,), parts, k)
    granular = None
    if hidden is not None:
        granular = ShardedRows(folder, sequence, "granular", rows, (positions, int(hidden)), parts)
    step_scores: dict[str, Tensor] = {}
    for file, chunk in parts if steps else []:
        with safe_open(str(folder / file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open objects have keys(), no __iter__
                prefix = f"{sequence}.step."
                if name.startswith(prefix):
                    store = step_scores.setdefault(name[len(prefix) :], torch.full((rows,), math.nan))
                    store[torch.tensor(chunk, dtype=torch.long)] = f.get_tensor(name).to(store.dtype)
    return scores, granular, step_scores


def read_stream(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor], list[SequenceRows]]:
    """(metadata, tensors, each sequence's lazy rows) of a complete stream folder; no shard is
    read until rows are asked for (step scores are in the result file)."""
    folder = Path(path)
    if not (folder / INDEX).is_file():
        raise InvalidArgumentError(
            "path",
            f"{str(folder)!r} is a folder without a genattrib {INDEX}",
            "load a folder written by attribute(..., stream_to=...), or a file saved with out.save()",
        )
    index = _read_index(folder)
    if not index.get("complete"):
        done = sum(len(r) for shard in index["shards"] for r in shard["rows"].values())
        total = sum(int(s["rows"]) for s in index["sequences"] or [])
        raise InvalidArgumentError(
            "path",
            f"the stream in {str(folder)!r} is incomplete ({done} of {total or '?'} rows written)",
            "re-run the same attribute(..., stream_to=...) call to finish it",
        )
    meta, tensors = serialization.read(folder / index.get("result", RESULT))
    return meta, tensors, [sequence_rows(folder, index, j, steps=False) for j in range(len(index["sequences"]))]
