"""Argument parsing shared by the ``genattrib`` sub-commands (``cli.py`` and ``cli_evaluate.py``).

Example:
    >>> split_list("saliency, occlusion,")
    ['saliency', 'occlusion']
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["parse_param", "parse_value", "split_list"]


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
