"""What model calls cost: FLOPs from the model's config, seconds from the device's measured speed.

A row of ``n`` tokens costs ``n`` times a token's FLOPs through the layers' projections and MLP,
plus attention's ``n²/2`` (token, earlier position) pairs, plus the LM head at the positions read.
:func:`cost_model` measures once per model and device how long a call takes: one token (almost all
of it the call's fixed cost) and a short row (almost all of it FLOPs). The fixed cost of a call is
then expressed in the same unit as the rest: token-passes (one token through one forward pass of the
body), rounded to a power of two.

Plans follow the measurement, and scores may differ (within the tolerance policy) between plans,
so the measurement is taken once per machine, model shape, dtype, device and thread count and
kept in the cache folder (:func:`~genattrib.cache.cache_root`, ``cost_model/``): every process of a
run, and every later run on that machine, plans the same way and gives the same scores, whatever
the load at the time. Delete the folder to measure again (after a hardware change).

Passes relate by how many matrix products they run per token: an input-gradient backward pass
(no weight gradients) runs one product per projection like the forward pass; a forward-mode pass
runs two (value and tangent). Many targets' backward passes batched into one call share most of
the fixed work; :data:`BATCHED_BACKWARD` is what each further target adds.

Example:
    >>> costs = cost_model(ModelForward(hf_model))
    >>> costs.row(100) > 100 * costs.row(1)          # attention grows with the square of the length
    True
    >>> costs.call_overhead >= 1                      # token-passes per model call
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from genattrib.cache import cache_root

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None  # type: ignore[assignment]
from genattrib.engine.forward import ModelForward

#: Tokens of the probe row whose time gives the device's FLOP rate.
PROBE_TOKENS = 16
#: A backward pass w.r.t. the inputs, relative to a forward pass: the call's fixed part, and what
#: each target adds when many targets run as one batched vector-Jacobian product (the batched
#: products fill the device better than one row's).
BACKWARD_CALL = 0.6
BATCHED_BACKWARD = 0.4
#: A forward-mode (dual) pass relative to a forward pass: twice the products, plus the tangents'
#: elementwise work.
DUAL_PASS = 2.5


@dataclass(frozen=True)
class CostModel:
    """Costs of model rows in token-passes (one token through one forward pass of the body).

    ``attention`` is the cost of one (token, earlier position) pair and ``head`` of the LM head at
    one position, both relative to a token's projections and MLP; ``call_overhead`` is a model
    call's fixed cost; ``seconds_per_token`` converts to time.
    """

    token_flops: float
    attention: float
    head: float
    call_overhead: float
    seconds_per_token: float

    def row(self, length: int, heads: int = 0) -> float:
        """Forward cost of one row of ``length`` tokens with the LM head at ``heads`` positions."""
        return length * (1.0 + self.attention * length / 2.0) + self.head * heads

    def span(self, start: int, end: int) -> float:
        """Forward cost of positions ``[start, end)`` of a row whose earlier positions come from a cache."""
        return self.row(end) - self.row(start)

    def seconds(self, token_passes: float) -> float:
        return token_passes * self.seconds_per_token


def config_flops(forward: ModelForward) -> tuple[float, float, float]:
    """(FLOPs of one token through the layers' projections and MLP, of one attention pair, of the
    LM head at one position), from the model's config."""
    cfg = forward.config.get_text_config() if hasattr(forward.config, "get_text_config") else forward.config
    hidden = forward.hidden_size
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or 1
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None) or 1
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    kv = 2 * hidden * hidden * kv_heads // heads  # K and V projections (fewer heads: grouped queries)
    mlp = 3 if getattr(cfg, "intermediate_size", None) else 2  # gated MLPs (Llama) have three matrices
    body = 2.0 * layers * (2 * hidden * hidden + kv + mlp * hidden * inter)
    # the first (token, earlier position) products: scores q.k and the weighted sum of v
    attention = 2.0 * layers * 2 * hidden
    return body, attention, 2.0 * hidden * forward.vocab_size


def _timed_call(forward: ModelForward, length: int) -> float:
    ids = (torch.arange(length) % max(2, forward.vocab_size))[None]
    best = math.inf
    for _ in range(2):  # the first call warms up the kernels; the faster one counts
        start = time.perf_counter()
        with torch.no_grad():
            forward.base(inputs_embeds=forward.embed(ids).to(forward.input_device), use_cache=False)
        if forward.input_device.type == "cuda":
            torch.cuda.synchronize(forward.input_device)
        best = min(best, time.perf_counter() - start)
    return best


def measurement_key(forward: ModelForward) -> str:
    """What a stored measurement is valid for: this machine, the model's shape and dtype, the device
    and the threads torch uses (a hash, the file name in the cache folder)."""
    device = forward.input_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    what = {
        "host": platform.node(),
        "device": f"{device.type}:{name}",
        "threads": torch.get_num_threads(),
        "model": type(forward.model).__name__,
        "flops": config_flops(forward),
        "dtype": str(forward.dtype),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` where the platform has one (processes starting together wait
    for the first one's measurement instead of taking their own)."""
    if fcntl is None:  # pragma: no cover - Windows: no lock, the last writer wins
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _measure(forward: ModelForward) -> tuple[float, float]:
    """(seconds of a one-token call, seconds of a :data:`PROBE_TOKENS` row): the machine's stored
    measurement, taken and stored when there is none."""
    folder = cache_root() / "cost_model"
    path = folder / f"{measurement_key(forward)}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / ".lock"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                one, probe = json.loads(path.read_text())["seconds"]
                return float(one), float(probe)
            measured = (_timed_call(forward, 1), _timed_call(forward, PROBE_TOKENS))
            handle, tmp = tempfile.mkstemp(prefix=".cost-", suffix=".json", dir=folder)
            with os.fdopen(handle, "w") as out:
                json.dump({"seconds": list(measured)}, out)
            os.replace(tmp, path)
            return measured
    except OSError:  # a read-only cache folder: measure for this process only
        return _timed_call(forward, 1), _timed_call(forward, PROBE_TOKENS)


#: The largest call overhead a measurement may give (a model so small that its calls are all overhead).
MAX_OVERHEAD = 4096.0


def power_of_two(x: float) -> float:
    """``x`` rounded to the nearest power of two, within ``[1, MAX_OVERHEAD]``."""
    return min(MAX_OVERHEAD, float(2 ** max(0, round(math.log2(max(1.0, x))))))


def cost_model(forward: ModelForward) -> CostModel:
    """The cost model of ``forward``'s model on its device, at torch's thread count: read from the
    machine's stored measurement (measured when there is none), and kept in
    ``forward.capabilities``, which an :class:`~genattrib.AttributionModel` keeps across calls."""
    key = f"cost_model/{torch.get_num_threads()}"
    if key not in forward.capabilities:
        body, attention, head = config_flops(forward)
        one, probe = _measure(forward)
        probe_passes = PROBE_TOKENS * (1.0 + attention / body * PROBE_TOKENS / 2.0)
        per_token = max(probe - one, 1e-9) / max(probe_passes - 1.0, 1.0)
        overhead = power_of_two(max(0.0, one - per_token) / per_token)
        forward.capabilities[key] = CostModel(body, attention / body, head / body, overhead, per_token)
    model = forward.capabilities[key]
    assert isinstance(model, CostModel)
    return model
