"""Argument parsing shared by the ``genattrib`` sub-commands (``cli.py`` and ``cli_evaluate.py``).

Example:
    >>> split_list("saliency, occlusion,")
    ['saliency', 'occlusion']
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from genattrib.output.provenance import library_versions

__all__ = ["VersionAction", "parse_max_memory", "parse_param", "parse_value", "split_list", "version_text"]


def parse_value(text: str) -> Any:
    """``"20"`` → 20, ``"0.5"`` → 0.5, ``"true"`` → True, ``"none"`` → None, JSON lists/objects, else the text.

    Example:
        >>> [parse_value(v) for v in ("20", "1e-3", "False", "null", "[1, 2]", "zero")]
        [20, 0.001, False, None, [1, 2], 'zero']
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.strip()[:1] in ("[", "{", '"'):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def parse_param(text: str) -> tuple[str, Any]:
    """``"n_steps=20"`` → ``("n_steps", 20)`` (argparse ``type=`` for ``--param``).

    Example:
        >>> parse_param("baseline=zeros")
        ('baseline', 'zeros')
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a Python identifier as KEY, got {text!r}")
    return key, parse_value(value)


def split_list(text: str) -> list[str]:
    """``"a, b,"`` → ``["a", "b"]`` (argparse ``type=`` for comma-separated lists)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_max_memory(text: str) -> dict[int | str, int | str]:
    """``"0=70GiB,1=70GiB,cpu=200GiB"`` (or the same as a JSON object) → ``{0: "70GiB", 1: "70GiB",
    "cpu": "200GiB"}``: GPU indices become ints, sizes stay as written (``load_model`` checks them).

    Example:
        >>> parse_max_memory("0=70GiB, 1=70GiB, cpu=200GiB")
        {0: '70GiB', 1: '70GiB', 'cpu': '200GiB'}
        >>> parse_max_memory('{"0": "20GiB", "cpu": 1000000000}')
        {0: '20GiB', 'cpu': 1000000000}
    """
    parsed = parse_value(text)
    if isinstance(parsed, dict):
        pairs = [(str(k), v) for k, v in parsed.items()]
    else:
        pairs = []
        for part in split_list(text):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise argparse.ArgumentTypeError(f"expected DEVICE=SIZE[,DEVICE=SIZE...], got {text!r}")
            pairs.append((key.strip(), parse_value(value.strip())))
    if not pairs:
        raise argparse.ArgumentTypeError(f"expected DEVICE=SIZE[,DEVICE=SIZE...], got {text!r}")
    return {(int(k) if k.isdigit() else k): v for k, v in pairs}


def version_text() -> str:
    """``genattrib --version``: the package version, then the versions that shape the numbers.

    Example:
        >>> import genattrib
        >>> version_text().splitlines()[0] == f"genattrib {genattrib.__version__}"
        True
        >>> version_text().splitlines()[1]
        'torch ..., transformers ..., Python ...'
    """
    versions = library_versions()
    return (
        f"genattrib {versions['genattrib']}\n"
        f"torch {versions['torch']}, transformers {versions['transformers']}, Python {versions['python']}"
    )


class VersionAction(argparse.Action):
    """``--version``: print :func:`version_text` on stdout and exit 0 (argparse's own version action
    would re-wrap the two lines into one)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the genattrib, torch, transformers and Python versions and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        sys.stdout.write(version_text() + "\n")
        sys.stdout.flush()
        parser.exit(0)
