"""The default seed, and generators seeded from content, so a row gets the same random draws
whatever batch it is in.

Example:
    >>> a = content_generator(42, b"tokens").initial_seed(); b = content_generator(42, b"tokens").initial_seed()
    >>> a == b, a != content_generator(43, b"tokens").initial_seed()
    (True, True)
"""

from __future__ import annotations

import secrets
import zlib

import torch

from genattrib.validation import check_int

DEFAULT_SEED = 42
"""The seed of every seeded step (methods, metrics, bootstrap) when the caller gives none."""
#: Seeds are ints in ``[0, MAX_SEED]`` (what ``torch.manual_seed`` and the content hash take).
MAX_SEED = 2**63 - 1


def check_seed(seed: object, *, optional: bool = True) -> None:
    """Raise a clear error unless ``seed`` is an int in ``[0, 2**63 - 1]`` (or None when optional).

    Example:
        >>> check_seed(7)
        >>> check_seed(1.7)
        Traceback (most recent call last):
        ...
        genattrib.errors.InvalidArgumentError: Invalid `seed`: must be an int in [0, 9223372036854775807] or None, ...
    """
    check_int("seed", seed, "seed=42", minimum=0, maximum=MAX_SEED, optional=optional)


def run_seed(seed: int | None, samples: bool) -> int:
    """The seed a call really uses: the caller's; else, when generation samples, a fresh one
    (so each call samples new text, and its provenance still reproduces it); else
    :data:`DEFAULT_SEED`.

    Example:
        >>> run_seed(7, samples=True), run_seed(None, samples=False)
        (7, 42)
        >>> 0 <= run_seed(None, samples=True) <= MAX_SEED
        True
    """
    if seed is not None:
        return int(seed)
    return secrets.randbits(63) if samples else DEFAULT_SEED


def content_generator(seed: int, data: bytes, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded from the user's ``seed`` and a CRC-32 of ``data``."""
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 4_294_967_311 + zlib.crc32(data)) % (2**63 - 1))
    return gen
