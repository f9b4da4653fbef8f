"""Prompt sets for the benchmark, shipped as package data (origins in ``genattrib/data/README.md``).

``wikitext`` and ``tellmewhy`` are sequence-level (the model writes a continuation); ``longra``
is token-level (a known target token and a known distractor span).

Names joined by commas concatenate sets of the same level: ``"wikitext,tellmewhy"`` is 42 prompts.

Example:
    >>> len(load_dataset("wikitext")), load_dataset("longra")[0].target is not None
    (22, True)
    >>> len(load_dataset("wikitext,tellmewhy", max_examples=32))
    32
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.validation import check_positive_int

DATASETS = {"wikitext": "wikitext_prompts.txt", "tellmewhy": "tellmewhy_prompts.txt", "longra": "longra.json"}


@dataclass(frozen=True)
class Example:
    """One prompt; ``target`` is a forced continuation and ``distractor`` a character span of the
    prompt known not to matter (token-level sets only)."""

    prompt: str
    target: str | None = None
    distractor: tuple[int, int] | None = None
    category: str = ""


def _read(name: str) -> str:
    return resources.files("genattrib.data").joinpath(name).read_text(encoding="utf-8")


def _named_one(dataset: str) -> list[Example]:
    if dataset not in DATASETS:
        raise UnknownNameError("dataset", dataset, DATASETS)
    file = DATASETS[dataset]
    if file.endswith(".json"):
        return [
            Example(e["prompt"], e["target"], (e["distractor_start"], e["distractor_end"]), e["category"])
            for e in json.loads(_read(file))
        ]
    # Prompts keep their trailing spaces: the released files end prompts with " ".
    return [Example(line.rstrip("\n")) for line in _read(file).splitlines() if line.strip()]


def _named(names: str) -> list[Example]:
    parts = [n.strip() for n in names.split(",")]
    sets = [_named_one(n) for n in parts]
    levels = {all(e.target is not None for e in examples) for examples in sets}
    if len(levels) > 1:
        raise InvalidArgumentError(
            "dataset",
            f"{names!r} mixes token-level (longra) and sequence-level sets",
            "join only sequence-level sets, e.g. 'wikitext,tellmewhy'",
        )
    return [e for examples in sets for e in examples]


def load_dataset(dataset: str | Sequence[str], max_examples: int | None = None) -> list[Example]:
    """Examples of a named set (or of several, ``"wikitext,tellmewhy"``), or prompts given as a
    list of strings."""
    if isinstance(dataset, str):
        examples = _named(dataset)
    else:
        if not dataset or not all(isinstance(p, str) and p.strip() for p in dataset):
            raise InvalidArgumentError(
                "dataset",
                "must be a dataset name or a non-empty list of non-empty prompts",
                f"use one of {sorted(DATASETS)} or ['a prompt', ...]",
            )
        examples = [Example(p) for p in dataset]
    if max_examples is not None:
        check_positive_int("max_examples", max_examples, "max_examples=10")
        examples = examples[:max_examples]
    return examples
