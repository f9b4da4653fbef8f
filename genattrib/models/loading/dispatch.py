"""The accelerate dispatch options of ``load_model``: checked before any weight loads, then handed to
``from_pretrained`` as they are.

``device_map`` is a strategy (``"auto"``, ``"balanced"``, ``"balanced_low_0"``, ``"sequential"``), one
device (``"cpu"``, ``"cuda:1"``, ``0``) or a dict from module names to devices, ``"cpu"`` or ``"disk"``;
``max_memory`` caps each device for a strategy (``{0: "70GiB", "cpu": "200GiB"}``); ``offload_folder``
holds the weights of modules mapped to ``"disk"``.

Example:
    >>> dispatch_kwargs({"model.layers.0": "cpu", "model.layers.1": "disk"}, None, "offload/")
    {'device_map': {'model.layers.0': 'cpu', 'model.layers.1': 'disk'}, 'offload_folder': 'offload/'}
    >>> dispatch_kwargs({"lm_head": "disk"}, None, None)
    Traceback (most recent call last):
    ...
    genattrib.errors.InvalidArgumentError: Invalid `offload_folder`: device_map puts lm_head on "disk" but ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import convert_file_size_to_int

from genattrib.errors import InvalidArgumentError
from genattrib.validation import is_int

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
PLACES = ("cpu", "disk")
_MAP_FIX = 'pass "auto", a device ("cpu", "cuda:1", 0) or a dict such as {"model.layers.0": 0, "lm_head": "cpu"}'


def _is_device(value: object, places: tuple[str, ...] = ()) -> bool:
    """Whether ``value`` names one device: a GPU index, a ``torch.device``, a device string, or one of ``places``."""
    if isinstance(value, torch.device) or (is_int(value) and value >= 0):
        return True
    if not isinstance(value, str):
        return False
    if value in places:
        return True
    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        return False
    return True


def check_device_map(device_map: object) -> None:
    """Raise unless ``device_map`` is ``None``, a strategy, one device, or module names -> devices."""
    if device_map is None or device_map in STRATEGIES or _is_device(device_map):
        return
    if not isinstance(device_map, Mapping):
        raise InvalidArgumentError("device_map", f"cannot dispatch with {device_map!r}", _MAP_FIX)
    for name, place in device_map.items():
        if not isinstance(name, str) or not _is_device(place, PLACES):
            raise InvalidArgumentError(
                "device_map", f"entry {name!r}: {place!r} is not a device, 'cpu' or 'disk'", _MAP_FIX
            )


def check_max_memory(max_memory: object, device_map: object) -> None:
    """Raise unless ``max_memory`` is ``None`` or device -> size (bytes, or ``"70GiB"``) for a strategy."""
    if max_memory is None:
        return
    fix = 'pass e.g. max_memory={0: "70GiB", 1: "70GiB", "cpu": "200GiB"} with device_map="auto"'
    if not isinstance(max_memory, Mapping) or not max_memory:
        raise InvalidArgumentError("max_memory", f"must be a non-empty dict, got {max_memory!r}", fix)
    if device_map not in STRATEGIES:
        raise InvalidArgumentError(
            "max_memory",
            f"caps the devices a device_map strategy fills, but device_map is {device_map!r}",
            f"pass device_map as one of {', '.join(STRATEGIES)}, or leave max_memory out",
        )
    for device, size in max_memory.items():
        if isinstance(device, torch.device) or not _is_device(device):
            raise InvalidArgumentError("max_memory", f"key {device!r} is not a GPU index, 'cpu' or a device", fix)
        try:
            ok = not isinstance(size, bool) and isinstance(size, (int, str)) and convert_file_size_to_int(size) > 0
        except ValueError:
            ok = False
        if not ok:
            raise InvalidArgumentError("max_memory", f"size {size!r} of device {device!r} is not a memory size", fix)


def check_offload_folder(offload_folder: object, device_map: object) -> None:
    """Raise unless ``offload_folder`` is ``None`` or a usable folder path, given with a device_map
    (and given whenever an explicit device_map puts a module on ``"disk"``)."""
    on_disk = [k for k, v in device_map.items() if v == "disk"] if isinstance(device_map, Mapping) else []
    if offload_folder is None:
        if on_disk:
            raise InvalidArgumentError(
                "offload_folder",
                f'device_map puts {", ".join(on_disk[:3])}{" ..." if len(on_disk) > 3 else ""} on "disk" but no '
                "offload_folder was given",
                'pass offload_folder="offload/" (a folder for the offloaded weights)',
            )
        return
    if not isinstance(offload_folder, (str, os.PathLike)):
        raise InvalidArgumentError(
            "offload_folder", f"must be a folder path, got {type(offload_folder).__name__}", 'pass "offload/"'
        )
    if device_map is None:
        raise InvalidArgumentError(
            "offload_folder",
            "only a dispatched model offloads weights, but no device_map was given",
            'pass device_map="auto" (with max_memory=...) or a dict with "disk" entries, or leave offload_folder out',
        )
    if Path(offload_folder).exists() and not Path(offload_folder).is_dir():
        raise InvalidArgumentError(
            "offload_folder", f"{str(offload_folder)!r} is a file, not a folder", "pass a new or existing folder"
        )


def dispatch_kwargs(device_map: object, max_memory: object, offload_folder: object) -> dict[str, Any]:
    """The ``from_pretrained`` keywords for the given options (only those set), after checking them."""
    check_device_map(device_map)
    check_max_memory(max_memory, device_map)
    check_offload_folder(offload_folder, device_map)
    given = {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in given.items() if v is not None}
