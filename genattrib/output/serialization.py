"""Save and load results without pickle: JSON metadata + safetensors tensors, one file.

A ``.json`` path gets a JSON document with the tensors embedded as base64 safetensors bytes;
a ``.safetensors`` path gets a safetensors file with the JSON in its metadata. Both reload
bit-exactly. Files are written atomically: to a temporary name in the same folder, then moved
into place, so an interrupted save never leaves a half-written file under ``path``.

Example:
    >>> from genattrib import FeatureAttributionOutput
    >>> out.save("paris.json")
    PosixPath('paris.json')
    >>> FeatureAttributionOutput.load("paris.json").equals(out)
    True
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as load_tensors_bytes
from safetensors.torch import save as save_tensors_bytes
from torch import Tensor

from genattrib.errors import InvalidArgumentError

FORMAT = "genattrib/1"
_JSON_SUFFIXES = {".json"}
_ST_SUFFIXES = {".safetensors", ".st"}
#: The largest safetensors header :func:`read` parses (the safetensors library's own cap).
MAX_HEADER_BYTES = 100_000_000


def check_save_path(path: str | Path) -> Path:
    """Check a path :func:`write` will write before any work: a known suffix, and not a folder
    nor under a file (missing folders are fine: they are created).

    Example:
        >>> check_save_path("runs/paris.json")
        PosixPath('runs/paris.json')
    """
    path = Path(path)
    _check_suffix(path)
    _check_writable_place(path)
    return path


def _check_writable_place(path: Path) -> None:
    if path.is_dir():
        raise InvalidArgumentError("path", f"{str(path)!r} is a folder", "give a file name such as result.json")
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise InvalidArgumentError(
            "path", f"{str(blocked)!r} is a file, so {str(path)!r} cannot be created under it", "choose another folder"
        )


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        return "json"
    if suffix in _ST_SUFFIXES:
        return "safetensors"
    raise InvalidArgumentError(
        "path", f"cannot tell the format of {str(path)!r}", "end the file name in .json or .safetensors"
    )


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to a temporary file next to ``path``, then move it to ``path`` (``durable``:
    flush it to disk first, so that it survives a power cut too, not only a killed process). A
    write that fails halfway (disk full, a file-size limit) leaves an earlier ``path`` as it was.
    Missing parent folders are created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write(path: str | Path, meta: dict[str, Any], tensors: dict[str, Tensor], durable: bool = False) -> Path:
    """Write ``meta`` (JSON-able) and ``tensors`` to one file at ``path`` (``durable``: see
    :func:`atomic_write_bytes`)."""
    path = Path(path)
    kind = _check_suffix(path)
    contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # no shared storage
    if kind == "json":
        blob = save_tensors_bytes(contiguous) if contiguous else b""
        doc = {"format": FORMAT, "meta": meta, "tensors": base64.b64encode(blob).decode("ascii")}
        data = json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")
    else:
        metadata = {"format": FORMAT, "meta": json.dumps(meta, ensure_ascii=False, allow_nan=False)}
        data = save_tensors_bytes(contiguous, metadata=metadata)
    atomic_write_bytes(path, data, durable)
    return path


def _not_ours(path: Path) -> InvalidArgumentError:
    return InvalidArgumentError(
        "path", f"{str(path)!r} is not a genattrib result", "load a file saved with FeatureAttributionOutput.save"
    )


def _read_json(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _not_ours(path)
    blob = base64.b64decode(doc["tensors"])
    return doc["meta"], (load_tensors_bytes(blob) if blob else {})


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _not_ours(path)
        header_len = int.from_bytes(prefix, "little")
        # Checked before a byte of the header is read or parsed: a damaged or hostile length
        # must not make us read (or json-parse) gigabytes.
        if header_len > MAX_HEADER_BYTES or header_len > size - 8:
            raise InvalidArgumentError(
                "path",
                f"{str(path)!r} declares a {header_len:,}-byte safetensors header, but the file has "
                f"{size - 8:,} bytes after the length and the limit is {MAX_HEADER_BYTES:,}; it is damaged or not a "
                "genattrib result",
                "load a file saved with FeatureAttributionOutput.save (save it again if it was cut short)",
            )
        header_bytes = handle.read(header_len)
        raw = prefix + header_bytes + handle.read()
    header = json.loads(header_bytes)
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _not_ours(path)
    return json.loads(metadata["meta"]), load_tensors_bytes(raw)


def read(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read a file written by :func:`write`."""
    path = Path(path)
    kind = _check_suffix(path)
    if not path.is_file():
        raise InvalidArgumentError("path", f"no file at {str(path)!r}", "pass the path given to save()")
    try:
        meta, tensors = _read_json(path) if kind == "json" else _read_safetensors(path)
    except InvalidArgumentError:
        raise
    except PermissionError as error:
        raise InvalidArgumentError(
            "path", f"permission denied reading {str(path)!r}", "check the file's permissions (or run as its owner)"
        ) from error
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, OSError, RecursionError, SafetensorError) as error:
        raise _not_ours(path) from error
    if not isinstance(meta, dict):
        raise _not_ours(path)
    return meta, tensors
