"""The manifest of a dataset run: what was asked (the fingerprint), what came out (counts,
failures, the shard index) and how (provenance, processes, timings). Rank 0 writes it.

Example:
    >>> from genattrib.dataset.records import read_records
    >>> records = read_records(["a", ""])
    >>> m = build_manifest({"method": "saliency"}, records, [None, "the prompt is empty"], [], 1, 3, {})
    >>> m["counts"]
    {'records': 2, 'done': 0, 'failed': 1, 'pending': 1, 'batches': 1, 'target_tokens': 0}
    >>> m["failures"]
    [{'id': 1, 'index': 1, 'reason': 'the prompt is empty'}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genattrib.dataset.records import Record
from genattrib.errors import InvalidArgumentError
from genattrib.output import dataset_files

__all__ = ["build_manifest", "check_folder", "fingerprint_changes", "jsonable"]

_MISSING = object()


def jsonable(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists, other objects their ``str``)."""
    return json.loads(json.dumps(value, sort_keys=True, allow_nan=False, default=str))


def _shown(value: object) -> str:
    text = "(not set)" if value is _MISSING else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between two fingerprints, one ``name: old -> new`` a field (nested fields as
    ``options.max_new_tokens``; ``records`` only says that the data differ).

    Example:
        >>> fingerprint_changes({"method": "saliency", "options": {"max_new_tokens": 3}},
        ...                     {"method": "saliency", "options": {"max_new_tokens": 4, "seed": 1}})
        ['options.max_new_tokens: 3 -> 4', 'options.seed: (not set) -> 1']
    """
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changes += fingerprint_changes(a, b, f"{prefix}{key}.")
        elif prefix == "" and key == "records":
            changes.append("records (the data differ: other ids, prompts or targets)")
        else:
            changes.append(f"{prefix}{key}: {_shown(a)} -> {_shown(b)}")
    return changes


def check_folder(out_dir: object, fingerprint: dict[str, Any] | None = None) -> Path:
    """``out_dir`` checked: new, empty, or the folder of a dataset run (with ``fingerprint``: of
    the same run, which then resumes)."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise InvalidArgumentError("out_dir", f"must be a folder path, got {out_dir!r}", "pass out_dir='runs/wikitext'")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError("out_dir", f"{str(folder)!r} is a file", "pass a folder path (created if missing)")
    if dataset_files.is_dataset_folder(folder) and fingerprint is not None:
        old = dataset_files.read_manifest(folder, "out_dir").get("fingerprint")
        if old != fingerprint:
            changed = fingerprint_changes(old or {}, fingerprint)
            raise InvalidArgumentError(
                "out_dir",
                f"{str(folder)!r} holds a different dataset run (differs in: {'; '.join(changed)}; "
                "shown as earlier run -> this call)",
                "repeat the earlier call to resume it, or pass a new or empty folder",
            )
    elif not dataset_files.is_dataset_folder(folder) and folder.is_dir() and any(folder.iterdir()):
        raise InvalidArgumentError(
            "out_dir",
            f"{str(folder)!r} is a folder with other files and no {dataset_files.MANIFEST}",
            "pass a new or empty folder (or the out_dir of an earlier run to resume it)",
        )
    return folder


def build_manifest(
    fingerprint: dict[str, Any],
    records: Sequence[Record],
    reasons: Sequence[str | None],
    shards: Sequence[dict[str, Any]],
    num_batches: int,
    world: int,
    run: dict[str, Any],
) -> dict[str, Any]:
    """The manifest (``complete`` once every batch has its shard): ``reasons`` are the records
    left out before the run; ``shards`` the :func:`~genattrib.output.dataset_files.shard_info`
    of each shard written."""
    failures = [{"id": r.id, "index": r.index, "reason": why} for r, why in zip(records, reasons) if why is not None]
    failures += [failure for shard in shards for failure in shard["failed"]]
    failures.sort(key=lambda f: f["index"])
    done = sum(len(shard["records"]) for shard in shards)
    index = [
        {
            "file": dataset_files.shard_name(shard["batch"]),
            "batch": shard["batch"],
            "rank": shard["rank"],
            "records": shard["records"],
            "target_tokens": shard["target_tokens"],
        }
        for shard in sorted(shards, key=lambda s: s["batch"])
    ]
    provenance = next((dict(s["provenance"]) for s in shards if s["records"]), {})
    provenance.pop("timings", None)
    return {
        "format": dataset_files.DATASET_FORMAT,
        "complete": len(shards) == num_batches,
        "fingerprint": fingerprint,
        "record_ids": [r.id for r in records],
        "counts": {
            "records": len(records),
            "done": done,
            "failed": len(failures),
            "pending": len(records) - done - len(failures),
            "batches": num_batches,
            "target_tokens": sum(shard["target_tokens"] for shard in shards),
        },
        "failures": failures,
        "shards": index,
        "processes": world,
        "provenance": provenance,
        "run": run,
    }
