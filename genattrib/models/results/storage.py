"""How ``attribute()`` stores what it computes: the granular budget, ``top_k_scores`` and ``stream_to``.

* ``granular_budget_mb`` (default 256): granular (per hidden unit) scores are kept only if they
  fit; ``keep_granular=True`` beyond it raises before any row is attributed.
* ``top_k_scores=k``: every row keeps its k largest-|score| cells and an exact residual
  (:class:`~genattrib.output.scores.SparseScores`), made sparse batch by batch.
* ``stream_to=folder``: every finished batch of rows goes to a safetensors shard in ``folder``
  (:mod:`genattrib.output.stream`); the same call re-run with the same folder resumes, skipping
  the rows already written; the result returned reads its rows lazily from the folder.

The choices are recorded in ``provenance.storage``.

Example:
    >>> options = check_storage(top_k_scores=5, stream_to=None, granular_budget_mb=64, keep_granular=None)
    >>> options.top_k_scores, options.granular_budget_mb
    (5, 64.0)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genattrib.engine import GRANULAR_BUDGET_MB, SequenceJob
from genattrib.errors import InvalidArgumentError, RunInterrupted
from genattrib.models.model_parts import ModelParts
from genattrib.models.options.attribute_options import AttributeOptions
from genattrib.models.options.request import AttributionRequest
from genattrib.models.results.assemble import provenance_of
from genattrib.output import FeatureAttributionOutput
from genattrib.output.stream import StreamWriter, check_stream_folder, ids_digest
from genattrib.validation import check_number, check_positive_int

#: Provenance fields that do not change the scores, left out of a stream's fingerprint.
VOLATILE = ("devices", "device_map", "versions", "timings", "created_at", "work", "aggregations", "storage")

#: Every option of :class:`AttributeOptions` is in exactly one of these three tables
#: (tests/models/test_attribute_options.py fails on a new option that is in none).
#:
#: Options the fingerprint holds by their checked value.
BY_VALUE: tuple[str, ...] = (
    "attr_pos_start",
    "attr_pos_end",
    "attribute_special_tokens",
    "keep_granular",
    "granular_budget_mb",
    "top_k_scores",
    "explain",
    "sources",
    "sources_include_generated",
    "attribute_prefix",
    "contrast_prompt",
    "contrast_continuation",
    "contrast_force_inputs",
    "contrast_alignments",
)

#: Options of :data:`BY_VALUE` left out of the fingerprint while ``None`` (their default), so that a
#: folder streamed before they existed still resumes.
ADDED_LATER: tuple[str, ...] = ("attribute_prefix", "contrast_alignments")

#: Options that do not change the rows a call stores: a resumed call may change them.
NOT_IN_RESULTS: dict[str, str] = {
    "batch_size": "how many prompts go through generation and attribution together; each row's scores are the same",
    "max_rows": "caps the model rows per call (chunking); each row's scores are the same",
    "show_progress": "draws a progress bar",
    "stream_to": "the folder itself, which holds the fingerprint",
}

#: Options the fingerprint reads through what they resolve to, recorded in the provenance or the
#: token ids (a callable, a method object or a GenerationConfig has no stable value of its own).
RESOLVED: dict[str, str] = {
    "method": "provenance.method and provenance.method_params",
    "method_kwargs": "the parameters bound, in provenance.method_params",
    "attributed_fn": "the function's name, in provenance.attributed_fn",
    "step_scores": "their names, in provenance.step_scores",
    "generation_config": "the settings used, in provenance.generation_config",
    "seed": "provenance.seed (the seed the run used)",
    "chat": "the prompts and their token ids",
    "contrast_target": "the contrast token ids",
    "kwargs": "method parameters (provenance.method_params) and generation settings (provenance.generation_config)",
}


@dataclass(frozen=True)
class StorageOptions:
    """The storage arguments of one ``attribute()`` call, checked."""

    top_k_scores: int | None = None
    stream_to: Path | None = None
    granular_budget_mb: float = GRANULAR_BUDGET_MB


def check_storage(
    top_k_scores: object = None,
    stream_to: object = None,
    granular_budget_mb: object = GRANULAR_BUDGET_MB,
    keep_granular: object = None,
) -> StorageOptions:
    """Check the storage arguments (before any work); errors name the argument and the fix."""
    check_positive_int("top_k_scores", top_k_scores, "top_k_scores=20", optional=True)
    check_number("granular_budget_mb", granular_budget_mb, "granular_budget_mb=1024", low=0, high=1e9)
    if top_k_scores is not None and keep_granular is True:
        raise InvalidArgumentError(
            "keep_granular",
            "top_k_scores= keeps only the k largest scores of each row, but granular scores (every hidden unit) "
            "are dense",
            "drop keep_granular=True, or pass top_k_scores=None",
        )
    folder = None if stream_to is None else check_stream_folder(stream_to)
    return StorageOptions(top_k_scores, folder, float(granular_budget_mb))  # type: ignore[arg-type]


def storage_options(options: AttributeOptions) -> StorageOptions:
    """:func:`check_storage` on a call's options."""
    return check_storage(options.top_k_scores, options.stream_to, options.granular_budget_mb, options.keep_granular)


def _plain(value: object) -> object:
    """A JSON value that stands for an option's checked value."""
    if hasattr(value, "tolist"):  # token ids (a tensor's repr elides long ones)
        return value.tolist()  # type: ignore[union-attr]
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def fingerprint(model: ModelParts, request: AttributionRequest, options: StorageOptions) -> dict[str, Any]:
    """What makes the scores of a call: the provenance but timings, devices and versions (it
    holds the :data:`RESOLVED` options); the token ids; and the :data:`BY_VALUE` options."""
    prov = provenance_of(model, request, {}).to_dict()
    checked = request.options.replace(granular_budget_mb=options.granular_budget_mb)
    by_value = {
        name: _plain(getattr(checked, name))
        for name in BY_VALUE
        if not (name in ADDED_LATER and getattr(checked, name) is None)
    }
    return {
        **{k: v for k, v in prov.items() if k not in VOLATILE},
        "prompts": request.prompts,
        "prompt_ids": [ids_digest(ids) for ids in request.prompt_ids],
        "continuation": None if request.forced_ids is None else [ids.tolist() for ids in request.forced_ids],
        "contrast": None if request.contrast_ids is None else [ids.tolist() for ids in request.contrast_ids],
        **by_value,
    }


def open_stream(model: ModelParts, request: AttributionRequest, options: StorageOptions) -> StreamWriter | None:
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
        "top_k_scores": options.top_k_scores,
        "stream_to": None if options.stream_to is None else str(options.stream_to),
    }
    if writer is not None:
        out.provenance.work["resumed_rows"] = writer.resumed_rows
        writer.finish(*out.encode(scores=False))
    return out
