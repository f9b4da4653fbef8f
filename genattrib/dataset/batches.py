"""Run one batch of records through ``attribute()`` and write its shard.

A batch goes through one ``attribute()`` call (generation and attribution batched across its
records and their steps). When the call raises a genattrib error (a record the checks before
the run could not catch), each record of the batch runs alone, so that only the records that
fail are left out, each with its reason. Any other error (out of memory, a crash) stops the
run: the batch has no shard yet, so a rerun does it again.

Example:
    >>> from genattrib.dataset.records import read_records
    >>> records = read_records(["The capital of France is", {"prompt": "Hi", "target": " Paris."}])
    >>> out, failed = run_batch(model, records, [1], chat=False, strict=False, kwargs={})
    >>> out.sequences[0].generated_text, failed
    (' Paris.', [])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genattrib.dataset.records import Record
from genattrib.errors import GenattribError
from genattrib.output import FeatureAttributionOutput, dataset_files

if TYPE_CHECKING:
    from genattrib.models.attribution_model import AttributionModel

__all__ = ["run_batch", "write_batch"]


def _attribute(
    model: AttributionModel, records: Sequence[Record], chat: bool, kwargs: Mapping[str, Any], stream: Path | None
) -> FeatureAttributionOutput:
    targets = [r.target for r in records]
    forced = None if targets[0] is None else targets
    prompts = [r.prompt for r in records]
    return model.attribute(prompts, forced, chat=chat, show_progress=False, stream_to=stream, **kwargs)


def run_batch(
    model: AttributionModel,
    records: Sequence[Record],
    positions: Sequence[int],
    *,
    chat: bool,
    strict: bool,
    kwargs: Mapping[str, Any],
    stream: Path | None = None,
) -> tuple[FeatureAttributionOutput | None, list[dict[str, Any]]]:
    """(the result of records ``positions``, in that order, or None if none succeeded; the
    failures ``{"id", "index", "reason"}``). ``stream``: the folder the whole batch's rows
    stream to (``attribute(stream_to=)``); records rerun alone after an error do not stream."""
    batch = [records[i] for i in positions]
    try:
        return _attribute(model, batch, chat, kwargs, stream), []
    except GenattribError as error:
        if strict or len(batch) == 1:
            if strict:
                raise
            return None, [{"id": batch[0].id, "index": batch[0].index, "reason": str(error)}]
    parts, failed = [], []
    for record in batch:
        out, why = run_batch(model, [record], [0], chat=chat, strict=strict, kwargs=kwargs)
        parts.extend([out] if out is not None else [])
        failed.extend(why)
    return (FeatureAttributionOutput.merge(parts, stitch=False) if parts else None), failed  # one per record


def write_batch(
    folder: Path,
    batch: int,
    rank: int,
    records: Sequence[Record],
    positions: Sequence[int],
    out: FeatureAttributionOutput | None,
    failed: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write batch ``batch``'s shard (its result and failures); the shard's dataset info."""
    failed_at = {f["index"] for f in failed}
    kept = [i for i in positions if records[i].index not in failed_at]
    sequences = [] if out is None else out.sequences
    info = {
        "batch": batch,
        "rank": rank,
        "records": [records[i].id for i in kept],
        "positions": list(kept),
        "failed": failed,
        "target_tokens": sum(int(s.input_ids.shape[0]) - s.prompt_length for s in sequences),
    }
    meta, tensors = (out if out is not None else FeatureAttributionOutput([])).encode()
    dataset_files.write_shard(folder, batch, meta, tensors, info)
    return {**info, "provenance": meta["provenance"]}
