"""How ``attribute()`` stores what it computes: the granular budget, ``top_k`` and ``stream_to``.

* ``granular_budget_mb`` (default 256): granular (per hidden unit) scores are kept only if they
  fit; ``keep_granular=True`` beyond it raises before any row is attributed.
* ``top_k=k``: every row keeps its k largest-|score| cells and an exact residual
  (:class:`~genattrib.output.scores.SparseScores`), made sparse batch by batch.
* ``stream_to=folder``: every finished batch of rows goes to a safetensors shard in ``folder``
  (:mod:`genattrib.output.stream`); the same call re-run with the same folder resumes, skipping
  the rows already written; the result returned reads its rows lazily from the folder.

The choices are recorded in ``provenance.storage``.

Example:
    >>> options = check_storage(top_k=5, stream_to=None, granular_budget_mb=64, keep_granular=None)
    >>> options.top_k, options.granular_budget_mb
    (5, 64.0)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genattrib.engine import GRANULAR_BUDGET_MB, SequenceJob
from genattrib.errors import InvalidArgumentError, RunInterrupted
from genattrib.models.assemble import provenance_of
from genattrib.models.request import AttributionRequest
from genattrib.output import FeatureAttributionOutput
from genattrib.output.stream import StreamWriter, check_stream_folder, ids_digest
from genattrib.validation import check_number, check_positive_int

if TYPE_CHECKING:
    from genattrib.models.attribution_model import AttributionModel

#: Provenance fields that do not change the scores, left out of a stream's fingerprint.
VOLATILE = ("devices", "device_map", "versions", "timings", "created_at", "work", "aggregations", "storage")


@dataclass(frozen=True)
class StorageOptions:
    """The storage arguments of one ``attribute()`` call, checked."""

    top_k: int | None = None
    stream_to: Path | None = None
    granular_budget_mb: float = GRANULAR_BUDGET_MB


def check_storage(
    top_k: object = None,
    stream_to: object = None,
    granular_budget_mb: object = GRANULAR_BUDGET_MB,
    keep_granular: object = None,
) -> StorageOptions:
    """Check the storage arguments (before any work); errors name the argument and the fix."""
    check_positive_int("top_k", top_k, "top_k=20", optional=True)
    check_number("granular_budget_mb", granular_budget_mb, "granular_budget_mb=1024", low=0, high=1e9)
    if top_k is not None and keep_granular is True:
        raise InvalidArgumentError(
            "keep_granular",
            "top_k= keeps only the k largest scores of each row, but granular scores (every hidden unit) are dense",
            "drop keep_granular=True, or pass top_k=None",
        )
    folder = None if stream_to is None else check_stream_folder(stream_to)
    return StorageOptions(top_k, folder, float(granular_budget_mb))  # type: ignore[arg-type]


def fingerprint(model: AttributionModel, request: AttributionRequest, options: StorageOptions) -> dict[str, Any]:
    """What makes the scores of a call: everything but timings, devices and versions."""
    prov = provenance_of(model, request, {}).to_dict()
    return {
        **{k: v for k, v in prov.items() if k not in VOLATILE},
        "prompts": request.prompts,
        "prompt_ids": [ids_digest(ids) for ids in request.prompt_ids],
        "continuation": None if request.forced_ids is None else [ids.tolist() for ids in request.forced_ids],
        "contrast": None if request.contrast_ids is None else [ids.tolist() for ids in request.contrast_ids],
        "steps": [request.steps.start, request.steps.stop],
        "attribute_special_tokens": request.keep_special,
        "keep_granular": request.keep_granular,
        "granular_budget_mb": options.granular_budget_mb,
        "top_k": options.top_k,
        "explain": repr(request.explain),
        "sources": repr(request.sources),
        "sources_include_generated": request.sources_include_generated,
    }


def open_stream(model: AttributionModel, request: AttributionRequest, options: StorageOptions) -> StreamWriter | None:
    """The writer of ``stream_to`` (None without it); raises if the folder holds another call."""
    if options.stream_to is None:
        return None
    return StreamWriter.open(options.stream_to, fingerprint(model, request, options))


@contextmanager
def resume_hint(writer: StreamWriter | None) -> Iterator[None]:
    """Ctrl-C inside a streamed call becomes :class:`~genattrib.errors.RunInterrupted` (still a
    ``KeyboardInterrupt``), whose one-line message says how many rows the folder holds and how to
    resume, instead of a traceback that ends inside torch. Without a stream nothing changes."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if writer is None or isinstance(interrupt, RunInterrupted):
            raise
        sequences = writer.index["sequences"] or []
        total = f" of {sum(int(s['rows']) for s in sequences)}" if sequences else ""
        saved = f"{len(writer.done())}{total} rows saved in {str(writer.folder)!r}"
        resume = f"call attribute() again with the same arguments (stream_to={str(writer.folder)!r}) to resume"
        raise RunInterrupted(saved, resume) from None


def plan_stream(
    writer: StreamWriter | None, jobs: list[SequenceJob], keep_granular: bool, hidden: int, top_k: int | None
) -> set[tuple[int, int]]:
    """The (sequence, row) pairs the stream already holds (none without a stream)."""
    if writer is None:
        return set()
    shapes = [
        {
            "rows": job.num_rows,
            "positions": int(job.input_ids.shape[0]),
            "hidden": hidden if keep_granular else None,
            "top_k": top_k,
            "ids": ids_digest(job.input_ids),
        }
        for job in jobs
    ]
    return writer.plan(shapes)


def record_storage(
    out: FeatureAttributionOutput,
    options: StorageOptions,
    keep_granular: bool,
    writer: StreamWriter | None,
) -> FeatureAttributionOutput:
    """Note the storage choices in the provenance; finish the stream (``out`` reads from it)."""
    out.provenance.storage = {
        "granular_budget_mb": options.granular_budget_mb,
        "granular_kept": keep_granular,
        "top_k": options.top_k,
        "stream_to": None if options.stream_to is None else str(options.stream_to),
    }
    if writer is not None:
        out.provenance.work["resumed_rows"] = writer.resumed_rows
        writer.finish(*out.encode(scores=False))
    return out
