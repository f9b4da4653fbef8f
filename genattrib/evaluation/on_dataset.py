"""The benchmark on the dataset runner (``benchmark(out_dir=...)``): the continuations the model
writes once, and each method's attributions, written to ``out_dir`` and shared by every process
of ``accelerate launch`` / ``torchrun``; a rerun reads what is there and does only the rest.

Example:
    >>> from genattrib.evaluation.datasets import load_dataset
    >>> examples = load_dataset("wikitext", 2)
    >>> targets = shared_targets(model, [e.prompt for e in examples], 2, Path("bench-run"))
    >>> out, kept = attribute_on_dataset(model, examples, targets, "saliency", Path("bench-run"), 0, 8, False, {})
    >>> len(out) == len(kept) == 2, (Path("bench-run") / "attributions" / "saliency" / "manifest.json").is_file()
    (True, True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genattrib.dataset import attribute_dataset
from genattrib.dataset.processes import current_processes
from genattrib.errors import InvalidArgumentError
from genattrib.evaluation.datasets import Example
from genattrib.models import AttributionModel
from genattrib.output import FeatureAttributionOutput, serialization

__all__ = ["attribute_on_dataset", "is_main_process", "shared_targets"]

TARGETS = "targets.json"


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process): the one that writes reports and prints."""
    return current_processes().main


def shared_targets(
    model: AttributionModel, prompts: Sequence[Any], max_new_tokens: int, folder: Path
) -> list[torch.Tensor]:
    """The token ids the model writes after each prompt (greedy), generated once by rank 0 and
    kept in ``folder/targets.json`` for the other processes and for reruns."""
    key = {
        "model": model.name,
        "max_new_tokens": max_new_tokens,
        "prompts": hashlib.sha256(json.dumps(prompts, sort_keys=True).encode("utf-8")).hexdigest()[:16],
    }
    path = folder / TARGETS
    processes = current_processes()
    if processes.main and not path.is_file():
        targets = model.generate(list(prompts), max_new_tokens=max_new_tokens, do_sample=False)
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**key, "targets": [t.tolist() for t in targets]})
        serialization.atomic_write_bytes(path, text.encode("utf-8"), durable=True)
    processes.barrier()
    stored = json.loads(path.read_text(encoding="utf-8"))
    if {k: stored.get(k) for k in key} != key:
        raise InvalidArgumentError(
            "out_dir",
            f"{str(path)!r} holds the continuations of another run (other model, prompts or max_new_tokens)",
            "repeat the same call to resume it, or pass a new or empty folder",
        )
    return [torch.tensor(ids, dtype=torch.long) for ids in stored["targets"]]


def attribute_on_dataset(
    model: AttributionModel,
    examples: Sequence[Example],
    targets: Sequence[Any],
    method: str,
    folder: Path,
    seed: int,
    batch_size: int,
    show_progress: bool | None,
    params: Mapping[str, Any],
) -> tuple[FeatureAttributionOutput, list[Example]]:
    """(``method``'s attributions of every example with its target, through ``attribute_dataset``
    into ``folder/attributions/<method>``; the examples that have a result, in order)."""
    records = [
        {"prompt": e.prompt, "target": t if isinstance(t, str) else [int(i) for i in t], "id": i}
        for i, (e, t) in enumerate(zip(examples, targets))
    ]
    out_dir = folder / "attributions" / method
    attribute_dataset(
        model, records, out_dir, method, batch_size=batch_size, seed=seed, show_progress=show_progress, **params
    )
    out = FeatureAttributionOutput.load(out_dir)
    return out, [examples[int(i)] for i in out.provenance.storage["dataset"]["record_ids"]]
