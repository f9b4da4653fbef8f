"""Where a model's modules run, for models dispatched by accelerate (``device_map=``) and plain ones.

A dispatched model's weights may live on another device than its compute, or nowhere: a layer
offloaded to CPU RAM or to disk has its parameters on the ``meta`` device, and accelerate's hook
(``module._hf_hook``) loads them onto the hook's *execution device* for each forward. So the
device of ``module.weight`` says nothing about where inputs must go; :func:`execution_device`
does. :func:`layer_shares` says which fraction of the decoder layers runs on each device (the
activations of a row live there), :func:`offloaded_bytes` how many bytes of offloaded weights each
device loads, and :func:`rows_within_budget` sizes a chunk of rows so that the most loaded
device fits.

Example:
    >>> execution_device(hf_model.get_input_embeddings())
    device(type='cpu')
    >>> layer_shares(hf_model), offloaded_bytes(hf_model)
    ({device(type='cpu'): 1.0}, {})
    >>> shares = {torch.device("cuda", 0): 0.25, torch.device("cuda", 1): 0.75}
    >>> free = {torch.device("cuda", 0): 40 << 30, torch.device("cuda", 1): 12 << 30}
    >>> rows_within_budget(1 << 30, shares, free.__getitem__)  # cuda:1 holds 3/4 of each row's 1 GiB
    16
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn


def _hook_device(hook: object) -> torch.device | None:
    """The execution device of an accelerate hook (or of the first hook of a ``SequentialHook``)."""
    for part in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    return None


def execution_device(module: nn.Module) -> torch.device:
    """The device ``module``'s forward runs on: the execution device of the first accelerate hook
    found on it or its submodules (in module order), else the device of its first parameter or buffer
    not on ``meta``, else the CPU. Inputs of ``module`` go there; its outputs come from there."""
    for part in module.modules():
        device = _hook_device(getattr(part, "_hf_hook", None))
        if device is not None:
            return device
        for tensor in (*part.parameters(recurse=False), *part.buffers(recurse=False)):
            if tensor.device.type != "meta":
                return tensor.device
    return torch.device("cpu")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of ``model``: the first ``nn.ModuleList`` as long as the config's number of
    layers (not a layer's list of experts), else the longest; ``[]`` when it has none."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    config = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    exact = [m for m in lists if len(m) == count]
    return list(exact[0] if exact else max(lists, key=len)) if lists else []


def layer_shares(model: nn.Module) -> dict[torch.device, float]:
    """The fraction of ``model``'s decoder layers that runs on each device (by execution device:
    a layer offloaded to CPU RAM or disk counts where it computes). A model without repeated
    blocks counts whole, on the device of its input embeddings."""
    layers = decoder_layers(model)
    if not layers:
        return {execution_device(model.get_input_embeddings()): 1.0}
    counts = Counter(execution_device(layer) for layer in layers)
    return {device: n / len(layers) for device, n in counts.items()}


def offloaded_bytes(model: nn.Module) -> dict[torch.device, int]:
    """Bytes of the weights accelerate loads onto each execution device for a forward (modules it
    offloaded to CPU RAM or disk). A forward+backward row keeps all of them there until its
    backward pass (autograd holds each layer's weights for the input gradient), so its row budget
    leaves them out; ``{}`` for a model that is not offloaded."""
    out: Counter[torch.device] = Counter()
    for module in model.modules():
        hook = getattr(module, "_hf_hook", None)
        for part in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            if getattr(part, "offload", False) and getattr(part, "execution_device", None) is not None:
                recurse = bool(getattr(part, "place_submodules", False))
                size = sum(p.numel() * p.element_size() for p in module.parameters(recurse=recurse))
                out[_hook_device(part)] += size
    return dict(out)


def rows_within_budget(
    row_bytes: int, shares: Mapping[torch.device, float], available: Callable[[torch.device], int]
) -> int:
    """How many rows fit on every device at once: a row costs ``row_bytes`` in all, of which a
    device holds its share of the layers (``shares``), and may use ``available(device)`` bytes. The
    most loaded device (least memory per share of the row) sets the number; at least 1."""
    fits = [available(device) // max(1, math.ceil(row_bytes * share)) for device, share in shares.items() if share > 0]
    return max(1, min(fits, default=1))


#: How allocation failures read: CUDA/MPS ("out of memory") and the CPU allocator
#: ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ...").
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(error: BaseException) -> bool:
    """Whether ``error`` says the device (or the host) ran out of memory.

    Example:
        >>> is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory"))
        True
        >>> is_oom(RuntimeError("shape mismatch"))
        False
    """
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)


def release_cached_memory(devices: Iterable[torch.device]) -> None:
    """Give the blocks cached by PyTorch's allocator back on every GPU among ``devices`` (after an
    out-of-memory error, before a retry with less)."""
    for device in devices:
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.empty_cache()
