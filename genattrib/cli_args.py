"""Argument parsing shared by the ``genattrib`` sub-commands (``cli.py`` and ``cli_evaluate.py``).

Example:
    >>> split_list("saliency, occlusion,")
    ['saliency', 'occlusion']
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from typing import Any

from transformers import GenerationConfig

from genattrib.output.provenance import library_versions

__all__ = [
    "VersionAction",
    "add_sampling_options",
    "parse_max_memory",
    "parse_param",
    "parse_value",
    "sampling_config",
    "sampling_options",
    "split_list",
    "version_text",
]

#: What ``--param`` says it takes (generation settings have their own flags; see ``sampling_options``).
PARAM_HELP = (
    "method parameter, repeatable, e.g. n_steps=32 (ints, floats, true/false, none parsed); a key that is not "
    "a parameter of the method goes to generation (e.g. repetition_penalty=1.2)"
)


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


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """``--do-sample``, ``--temperature``, ``--top-p``, ``--top-k``: how generation picks tokens
    (``generate()``'s settings; ``--top-k`` is sampling's top-k, ``--top-k-scores`` the storage option)."""
    group = parser.add_argument_group("generation sampling (default: greedy)")
    group.add_argument("--do-sample", action="store_true", help="sample the continuation instead of greedy decoding")
    group.add_argument("--temperature", type=float, default=None, metavar="T", help="with --do-sample: temperature")
    group.add_argument(
        "--top-p", type=float, default=None, metavar="P", help="with --do-sample: nucleus sampling, keep mass P"
    )
    group.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="with --do-sample: sample among the K likeliest tokens (to keep the K largest scores: --top-k-scores)",
    )


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation settings of ``add_sampling_options`` that were given, for ``attribute(**kwargs)``;
    raises ``argparse.ArgumentTypeError`` for a setting that needs ``--do-sample`` without it.

    Example:
        >>> ns = argparse.Namespace(do_sample=True, temperature=0.7, top_p=None, top_k=50)
        >>> sampling_options(ns)
        {'do_sample': True, 'temperature': 0.7, 'top_k': 50}
    """
    given = {k: getattr(args, k) for k in ("temperature", "top_p", "top_k") if getattr(args, k) is not None}
    if given and not args.do_sample:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        hint = " (to keep the K largest scores of each row: --top-k-scores K)" if "top_k" in given else ""
        raise argparse.ArgumentTypeError(f"{flags} only apply when sampling: add --do-sample{hint}")
    return {"do_sample": True, **given} if args.do_sample else {}


def sampling_config(model: Any, sampling: dict[str, Any]) -> GenerationConfig:
    """The model's generation config with the ``sampling`` settings applied, for
    ``attribute(generation_config=)`` (the model's other settings kept; the storage option that
    keeps the top-k scores is ``attribute(top_k_scores=)``)."""
    base = getattr(getattr(model, "model", None), "generation_config", None)
    config = copy.deepcopy(base) if isinstance(base, GenerationConfig) else GenerationConfig()
    config.update(**sampling)
    return config
