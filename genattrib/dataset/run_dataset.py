"""``attribute_dataset``: attribute every record of a dataset, in batches, in one or many
processes, resumably.

Example:
    >>> run = genattrib.attribute_dataset(model, ["The capital of France is", "Hello"], "ds/", max_new_tokens=3)
    >>> run.done, run.failed, len(genattrib.FeatureAttributionOutput.load("ds/"))
    (2, 0, 2)
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genattrib.dataset.batches import run_batch, write_batch
from genattrib.dataset.manifest import build_manifest, check_folder, jsonable
from genattrib.dataset.prepare import check_call, measure
from genattrib.dataset.processes import current_processes, replica_device_map
from genattrib.dataset.records import read_records, records_digest
from genattrib.dataset.schedule import batch_records, rank_share
from genattrib.errors import InvalidArgumentError, RunInterrupted
from genattrib.models import AttributionModel, load_model
from genattrib.output import FeatureAttributionOutput, dataset_files
from genattrib.progress import progress_bar
from genattrib.validation import check_positive_int

__all__ = ["DatasetRun", "attribute_dataset"]


@dataclass(frozen=True)
class DatasetRun:
    """What a dataset run did: ``out_dir``; records ``done``, ``failed`` and still ``pending`` in
    the whole run; ``ran`` (records this process attributed now, the rest of ``done`` having
    been written before or by other processes) in ``seconds``; the ``rank`` and ``world`` size."""

    out_dir: Path
    records: int
    done: int
    failed: int
    pending: int
    ran: int
    target_tokens: int
    seconds: float
    rank: int
    world: int

    @property
    def records_per_second(self) -> float:
        return self.ran / self.seconds if self.seconds > 0 else 0.0

    def load(self) -> FeatureAttributionOutput:
        """The whole result (every process's shards), one sequence per finished record."""
        return FeatureAttributionOutput.load(self.out_dir)


def _model(
    model_or_name: Any, method: str | None, dtype: Any, device_map: Any, load_kwargs: dict, processes: Any
) -> AttributionModel:
    if isinstance(model_or_name, AttributionModel):
        return model_or_name
    options = {**load_kwargs, "dtype": dtype, "device_map": replica_device_map(device_map, processes)}
    return load_model(model_or_name, method or "saliency", **options)


def _fingerprint(model: AttributionModel, method: str, chat: bool, batch_size: int, kwargs: dict, records) -> dict:
    return jsonable(
        {
            "model": model.name,
            "revision": model.revision,
            "dtype": str(model.dtype),
            "method": method,
            "chat": chat,
            "batch_size": batch_size,
            "options": {k: repr(v) if callable(v) else v for k, v in sorted(kwargs.items())},
            "records": records_digest(records),
            "num_records": len(records),
        }
    )


def _stream_root(stream_to: object, out_dir: object) -> Path | None:
    """``stream_to`` checked: None, or a folder (not a file) for the rows of the batches in flight."""
    if stream_to is None:
        return None
    if not isinstance(stream_to, (str, os.PathLike)) or not str(stream_to):
        raise InvalidArgumentError(
            "stream_to", f"must be a folder path, got {stream_to!r}", "pass stream_to='runs/rows'"
        )
    root = Path(stream_to)
    if root.exists() and not root.is_dir():
        raise InvalidArgumentError("stream_to", f"{str(root)!r} is a file", "pass a folder path (created if missing)")
    if root.resolve() == Path(out_dir).resolve():  # type: ignore[arg-type]
        raise InvalidArgumentError("stream_to", "is out_dir itself", "pass another folder, e.g. out_dir + '/rows'")
    return root


@contextmanager
def _saved_on_interrupt(folder: Path, batches: list[list[int]], records: int, rank: int) -> Iterator[None]:
    """Ctrl-C (a plain KeyboardInterrupt) becomes :class:`RunInterrupted`, saying how many records
    the folder holds; a KeyboardInterrupt subclass someone raised on purpose goes through as it is."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if type(interrupt) is not KeyboardInterrupt and not isinstance(interrupt, RunInterrupted):
            raise
        done = sum(len(batches[b]) for b in dataset_files.finished_batches(folder) if b < len(batches))
        saved = f"{done} of {records} records saved in {str(folder)!r}"
        resume = "call attribute_dataset() again with the same arguments to resume"
        raise RunInterrupted(saved, resume, rank) from None


def attribute_dataset(
    model_or_name: AttributionModel | str | os.PathLike | None,
    data: str | os.PathLike | Sequence[Any],
    out_dir: str | os.PathLike,
    method: str | None = None,
    *,
    batch_size: int = 8,
    strict: bool = False,
    chat: bool = False,
    show_progress: bool | None = None,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict[str, Any] | None = None,
    load_kwargs: dict[str, Any] | None = None,
    stream_to: str | os.PathLike | None = None,
    **kwargs: Any,
) -> DatasetRun:
    """Attribute every record of ``data`` and write the results to ``out_dir``.

    ``model_or_name``: an :class:`AttributionModel`, or what :func:`genattrib.load_model` takes
    (a hub id, a local folder, None for the embedded default; ``dtype``, ``device_map`` and
    ``load_kwargs`` go to it). ``data``: a JSONL file or a list of records (see
    :mod:`genattrib.dataset.records`). ``batch_size`` records of similar length go through one
    ``attribute()`` call; the other keyword arguments go to every call (``max_new_tokens``,
    ``attributed_fn``, ``step_scores``, ``seed``, ``top_k_scores``, method parameters ...).

    Run under ``accelerate launch`` or ``torchrun``, each process loads one replica of the model
    (on its own device), runs its share of the batches and writes their shards; rank 0 writes
    the manifest. Rerunning the same call resumes: batches whose shard exists are skipped.
    Records that cannot run are listed in the manifest with the reason; ``strict=True`` raises
    instead. Load the result with ``FeatureAttributionOutput.load(out_dir)``.

    ``stream_to="folder/"`` streams the rows of each batch in flight to ``folder/batch-000123/``
    (``attribute(..., stream_to=)``), so that an interrupted batch resumes at the row where it
    stopped instead of from its start; a batch's folder is removed once its shard is written. It
    does not change the scores, and may change between runs. Ctrl-C raises
    :class:`~genattrib.errors.RunInterrupted` (a ``KeyboardInterrupt``) saying what is saved.
    """
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    check_positive_int("batch_size", batch_size, "batch_size=8")
    for name, value in (("strict", strict), ("chat", chat)):
        if not isinstance(value, bool):
            raise InvalidArgumentError(name, f"{value!r} is not a bool", "pass True or False")
    records = read_records(data)
    check_folder(out_dir)  # a file, or a folder of other files: fail before the model loads
    streams = _stream_root(stream_to, out_dir)
    processes = current_processes()
    model = _model(model_or_name, method, dtype, device_map, dict(load_kwargs or {}), processes)
    method = method or model.method
    kwargs = {"method": method, **kwargs}
    valid = [r for r in records if r.error is None]
    max_new_tokens = check_call(model, valid[0].prompt if valid else "x", chat, kwargs)
    measured = measure(model, records, chat, max_new_tokens)
    reasons = [m.reason for m in measured]
    if strict and any(why is not None for why in reasons):
        bad = next(i for i, why in enumerate(reasons) if why is not None)
        raise InvalidArgumentError(
            "data", f"record {records[bad].id!r}: {reasons[bad]}", "fix or remove the record, or run with strict=False"
        )
    batches = batch_records([m.key for m in measured], batch_size)
    fingerprint = _fingerprint(model, method, chat, batch_size, kwargs, records)
    folder = check_folder(out_dir, fingerprint)
    processes.barrier()  # every process has checked the folder before rank 0 writes to it

    def manifest(shards: list[dict[str, Any]], finished: str | None = None) -> dict[str, Any]:
        run = {"started_at": started, "finished_at": finished, "seconds": time.perf_counter() - t0}
        return build_manifest(fingerprint, records, reasons, shards, len(batches), processes.world, run)

    if processes.main:
        folder.mkdir(parents=True, exist_ok=True)
        dataset_files.remove_leftovers(folder)
        if not dataset_files.is_dataset_folder(folder):
            dataset_files.write_manifest(folder, manifest([]))
    processes.barrier()
    finished = dataset_files.finished_batches(folder)
    share = rank_share(len(batches), processes.rank, processes.world)
    todo = [b for b in share if b not in finished]
    for b in (b for b in share if b in finished and streams is not None):  # killed before its stream was removed
        shutil.rmtree(streams / f"batch-{b:06d}", ignore_errors=True)  # type: ignore[operator]
    ran = tokens = 0
    with _saved_on_interrupt(folder, batches, len(records), processes.rank):
        with progress_bar(
            sum(len(batches[b]) for b in todo),
            "attribute-dataset",
            show_progress if processes.main else False,
            unit="records",
        ) as advance:
            for b in todo:
                stream = None if streams is None else streams / f"batch-{b:06d}"
                out, failed = run_batch(
                    model, records, batches[b], chat=chat, strict=strict, kwargs=kwargs, stream=stream
                )
                info = write_batch(folder, b, processes.rank, records, batches[b], out, failed)
                if stream is not None:
                    shutil.rmtree(stream, ignore_errors=True)  # the shard holds the batch now
                ran, tokens = ran + len(info["records"]), tokens + info["target_tokens"]
                advance(len(batches[b]))
        seconds = time.perf_counter() - t0
        processes.barrier()  # Ctrl-C while waiting for the other processes says what is saved too
    shards = [
        dataset_files.shard_info(folder / dataset_files.SHARDS / dataset_files.shard_name(b))
        for b in sorted(dataset_files.finished_batches(folder))
        if b < len(batches)
    ]
    final = manifest(shards, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if processes.main:
        dataset_files.write_manifest(folder, final)
    processes.barrier()
    counts = final["counts"]
    return DatasetRun(
        folder,
        counts["records"],
        counts["done"],
        counts["failed"],
        counts["pending"],
        ran,
        tokens,
        seconds,
        processes.rank,
        processes.world,
    )
