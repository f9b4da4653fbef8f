"""Dataset records: what ``attribute_dataset`` reads from a JSONL file or a list.

Each record is a JSON object (one per line in a JSONL file) or a Python ``dict`` with

* ``prompt``: text, or a chat (a list of ``{"role", "content"}`` messages);
* ``target`` (alias ``continuation``, optional): the continuation to explain instead of generating,
  text or a list of token ids (used as they are);
* ``id`` (optional, a string or an int): the record's name in the results; by default its
  position in the input (the line number from 0 for a JSONL file, blank lines included).

Other keys are ignored. A plain string stands for ``{"prompt": string}``. A record that cannot be
used (not JSON, no prompt, empty prompt, a target that is not text) is kept with the reason in
``error``: the run lists it in the manifest and goes on. Two records with the same id raise.

Example:
    >>> records = read_records(["The capital of Spain is", {"prompt": "", "id": "e"}, {"prompt": "Hi", "target": " x"}])
    >>> [(r.id, r.error is None) for r in records]
    [(0, True), ('e', False), (2, True)]
    >>> records[1].error
    'the prompt is empty'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genattrib.errors import InvalidArgumentError

__all__ = ["Record", "read_records", "records_digest"]

RecordId = str | int


@dataclass(frozen=True)
class Record:
    """One record: its ``id``, its ``index`` in the input, a prompt (text or chat messages), an
    optional forced ``target``, and why it cannot be used (``error``, None when it can)."""

    id: RecordId
    index: int
    prompt: Any = None
    target: str | list[int] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "target": self.target, "error": self.error}


def _problem(entry: Any) -> str | None:
    """Why ``entry`` (a parsed record) cannot be used, or None."""
    if not isinstance(entry, dict):
        return f"a record is a JSON object or a string, not {type(entry).__name__}"
    prompt = entry.get("prompt")
    if prompt is None:
        return "the record has no 'prompt'"
    if isinstance(prompt, str):
        if not prompt.strip():
            return "the prompt is empty"
    elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
        if any("role" not in m or "content" not in m for m in prompt):
            return "a chat message lacks 'role' or 'content'"
        if not any(str(m["content"]).strip() for m in prompt):
            return "the chat has only empty messages"
    else:
        return "the prompt is neither text nor a list of {'role', 'content'} messages"
    target = entry.get("target", entry.get("continuation"))
    if target is not None and not (isinstance(target, str) and target) and not _ids(target):
        return "the target is neither non-empty text nor a non-empty list of token ids"
    if "id" in entry and (isinstance(entry["id"], bool) or not isinstance(entry["id"], (str, int))):
        return "the id is neither a string nor an int"
    return None


def _ids(value: Any) -> bool:
    """A non-empty list of token ids."""
    return isinstance(value, list) and bool(value) and all(type(i) is int for i in value)


def _record(index: int, entry: Any, error: str | None = None) -> Record:
    if isinstance(entry, str):
        entry = {"prompt": entry}
    error = error or _problem(entry)
    if not isinstance(entry, dict):
        return Record(index, index, error=error)
    ident = entry.get("id", index)
    ident = ident if isinstance(ident, (str, int)) and not isinstance(ident, bool) else index
    if error is not None:
        return Record(ident, index, error=error)
    return Record(ident, index, entry["prompt"], entry.get("target", entry.get("continuation")))


def _read_jsonl(path: Path) -> list[Record]:
    if not path.is_file():
        raise InvalidArgumentError("data", f"no file at {str(path)!r}", "pass a JSONL file (one record per line)")
    records = []
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as error:
            records.append(_record(index, None, f"line {index} is not JSON ({error})"))
            continue
        records.append(_record(index, entry))
    return records


def read_records(data: str | os.PathLike | Sequence[Any]) -> list[Record]:
    """The records of ``data`` (a JSONL file, or a list of dicts or strings), each with an id."""
    if isinstance(data, (str, os.PathLike)):
        records = _read_jsonl(Path(data))
    elif isinstance(data, Sequence) and not isinstance(data, (bytes, bytearray)):
        records = [_record(i, entry) for i, entry in enumerate(data)]
    else:
        raise InvalidArgumentError(
            "data", f"expected a JSONL path or a list of records, got {type(data).__name__}", "pass 'data.jsonl'"
        )
    if not records:
        raise InvalidArgumentError("data", "there are no records", "pass at least one record")
    seen: dict[RecordId, int] = {}
    for record in records:
        if record.id in seen:
            raise InvalidArgumentError(
                "data",
                f"records {seen[record.id]} and {record.index} have the same id {record.id!r}",
                "give every record its own 'id' (or none: the position is the default)",
            )
        seen[record.id] = record.index
    return records


def records_digest(records: Sequence[Record]) -> str:
    """A digest of the records' ids, prompts and targets (part of a run's fingerprint)."""
    text = json.dumps([r.to_json() for r in records], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
