"""The files of a dataset run (``genattrib.attribute_dataset``): shards and the manifest.

A dataset folder holds

* ``shards/batch-000000.safetensors`` ...: one per batch of records, written by the process that
  ran the batch, in the format of :meth:`FeatureAttributionOutput.save` (JSON metadata + score
  tensors) plus ``meta["dataset"]``: the batch number, the process rank, the ids and input
  positions of the records it holds (in the order of its sequences) and the records of the
  batch that failed, with the reason;
* ``manifest.json``: the run's fingerprint, the record ids in input order, counts, failures,
  the shard index (file → record ids), provenance and timings; written by rank 0, first when
  the run starts (``complete: false``) and again when every process has finished.

Every file is written to a temporary name and moved into place (``os.replace``): a killed run
leaves only complete shards, and a rerun skips the batches whose shard exists.

Example:
    >>> shard_name(7)
    'batch-000007.safetensors'
    >>> batch_of(Path("shards") / shard_name(7))
    7
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output import serialization

__all__ = [
    "DATASET_FORMAT",
    "MANIFEST",
    "SHARDS",
    "batch_of",
    "finished_batches",
    "is_dataset_folder",
    "read_dataset",
    "read_manifest",
    "remove_leftovers",
    "shard_info",
    "shard_name",
    "write_manifest",
    "write_shard",
]

DATASET_FORMAT = "genattrib-dataset/1"
MANIFEST = "manifest.json"
SHARDS = "shards"
_PREFIX, _SUFFIX = "batch-", ".safetensors"


def shard_name(batch: int) -> str:
    """The file name of batch ``batch``'s shard."""
    return f"{_PREFIX}{batch:06d}{_SUFFIX}"


def batch_of(path: Path) -> int | None:
    """The batch number of a shard file name (None for any other file)."""
    name = path.name
    digits = name[len(_PREFIX) : -len(_SUFFIX)]
    if name.startswith(_PREFIX) and name.endswith(_SUFFIX) and digits.isdigit():
        return int(digits)
    return None


def is_dataset_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a dataset manifest."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def remove_leftovers(folder: Path) -> None:
    """Delete temporary files a killed writer left (``.batch-….safetensors.<pid>.tmp``)."""
    shards = folder / SHARDS
    for path in list(shards.iterdir()) if shards.is_dir() else []:
        if path.name.startswith(f".{_PREFIX}") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


def write_shard(folder: Path, batch: int, meta: dict[str, Any], tensors: dict[str, Tensor], info: dict) -> Path:
    """Write one batch's result (``FeatureAttributionOutput.encode()``) with ``info`` as
    ``meta["dataset"]``, atomically and durably."""
    (folder / SHARDS).mkdir(parents=True, exist_ok=True)
    return serialization.write(folder / SHARDS / shard_name(batch), {**meta, "dataset": info}, tensors, durable=True)


def finished_batches(folder: Path) -> set[int]:
    """Batch numbers whose shard is in ``folder`` (complete: shards are moved into place whole)."""
    shards = folder / SHARDS
    found = (batch_of(p) for p in shards.iterdir()) if shards.is_dir() else iter(())
    return {b for b in found if b is not None}


def shard_info(path: Path) -> dict[str, Any]:
    """``meta["dataset"]`` of a shard and its provenance, read from the header only."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    return {**meta["dataset"], "provenance": meta["provenance"]}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, ensure_ascii=False, allow_nan=False, indent=1)
    serialization.atomic_write_bytes(folder / MANIFEST, text.encode("utf-8"), durable=True)


def read_manifest(folder: str | Path, argument: str = "path") -> dict[str, Any]:
    """The manifest of a dataset folder, checked to be one."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(
            argument, f"cannot read {str(path)!r} ({error})", "pass the out_dir of attribute_dataset"
        ) from error
    if not isinstance(manifest, dict) or manifest.get("format") != DATASET_FORMAT:
        raise InvalidArgumentError(argument, f"{str(path)!r} is not a genattrib dataset manifest", "pass a new folder")
    return manifest


def read_dataset(folder: str | Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, Tensor]]]]:
    """(manifest, (metadata, tensors) of every shard that holds a record, in batch order) of a
    complete dataset folder; ``meta["dataset"]["positions"]`` gives each sequence's record position."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if not manifest.get("complete"):
        counts = manifest.get("counts", {})
        raise InvalidArgumentError(
            "path",
            f"the dataset run in {str(folder)!r} is incomplete "
            f"({len(finished_batches(folder))} of {counts.get('batches', '?')} batches written)",
            "re-run the same attribute_dataset call (or command) to finish it",
        )
    shards = [serialization.read(folder / SHARDS / entry["file"]) for entry in manifest["shards"] if entry["records"]]
    return manifest, shards
