"""The CPU row budget reads the limits a container or ``ulimit -v`` sets, and a CPU allocation
failure backs off like a GPU one (checked under a real ``RLIMIT_AS`` in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from genattrib.engine import host_memory
from genattrib.engine.forward import is_oom

CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:119] data. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)"
)


def test_cpu_allocation_failures_are_out_of_memory():
    assert is_oom(RuntimeError(CPU_OOM))
    assert is_oom(MemoryError())
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom(ValueError("can't allocate memory"))  # only allocator errors (RuntimeError) count


def test_cgroup_v2_limit_less_usage(tmp_path: Path):
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.current").write_text("268435456\n")
    assert host_memory.cgroup_free_bytes(tmp_path) == 805306368
    (tmp_path / "memory.max").write_text("max\n")  # v2 without a limit
    assert host_memory.cgroup_free_bytes(tmp_path) is None


def test_cgroup_v1_limit_less_usage(tmp_path: Path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("2147483648\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("3221225472\n")  # over the limit: 0 left
    assert host_memory.cgroup_free_bytes(tmp_path) == 0
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    assert host_memory.cgroup_free_bytes(tmp_path) is None


def test_free_host_bytes_is_the_smallest_limit(monkeypatch):
    monkeypatch.setattr(host_memory, "cgroup_free_bytes", lambda root=None: 123 << 20)
    monkeypatch.setattr(host_memory, "address_space_free_bytes", lambda: None)
    assert host_memory.free_host_bytes() == 123 << 20
    monkeypatch.setattr(host_memory, "address_space_free_bytes", lambda: 45 << 20)
    assert host_memory.free_host_bytes() == 45 << 20


UNDER_A_LIMIT = textwrap.dedent(
    """
    import resource, sys, torch
    torch.set_num_threads(1)
    import genattrib
    from genattrib.engine.forward import ModelForward
    from genattrib.engine.host_memory import address_space_free_bytes

    model = genattrib.load_model()  # the embedded default model
    free_before = ModelForward(model.model).rows_per_chunk(64, grad=True)
    mapped = int([l for l in open("/proc/self/status") if l.startswith("VmSize:")][0].split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (LIMIT_MB << 20), resource.RLIM_INFINITY))
    assert address_space_free_bytes() <= LIMIT_MB << 20
    limited = ModelForward(model.model).rows_per_chunk(64, grad=True)
    text = "The bicycle was invented in the early nineteenth century, and within a few decades it had"
    out = model.attribute(text, " changed how people", method="integrated_gradients", n_steps=64)
    seq = out.sequences[0]
    print("ROWS", free_before, limited, seq.num_steps, float(seq.scores.nan_to_num().abs().sum()))
    """
)


@pytest.mark.default_model
def _run_offline(script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh one-thread, offline Python from the repository root; it must succeed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_integrated_gradients_finishes_under_an_address_space_limit():
    """Under ``ulimit -v`` (free RAM says gigabytes, the limit 300 MB more than the process maps
    once the default model is loaded) automatic sizing picks smaller chunks, and IG finishes
    instead of crashing."""
    script = UNDER_A_LIMIT.replace("LIMIT_MB", "300")
    done = _run_offline(script)
    line = next(line for line in done.stdout.splitlines() if line.startswith("ROWS"))
    _, before, limited, steps, total = line.split()
    assert int(limited) < int(before)  # the limit, not free RAM, sized the chunks
    assert int(steps) > 0 and float(total) > 0


BACK_OFF_UNDER_A_LIMIT = textwrap.dedent(
    """
    import resource, torch
    torch.set_num_threads(1)
    import genattrib
    from genattrib.engine import forward as fw

    model = genattrib.load_model()  # the embedded default model
    text = "The bicycle was invented in the early nineteenth century, and within a few decades it had"
    call = dict(method="integrated_gradients", n_steps=32, attributed_fn="probability", step_scores=["probability"])
    reference = model.attribute(text, " changed how people", max_rows=4, **call)
    fw._available_bytes = lambda device, grad=True: 1 << 40  # sizing believes memory is plentiful
    mapped = int([l for l in open("/proc/self/status") if l.startswith("VmSize:")][0].split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (300 << 20), resource.RLIM_INFINITY))
    out = model.attribute(text, " changed how people", **call)
    a, b = reference.sequences[0], out.sequences[0]
    x, y = a.scores.nan_to_num(0), b.scores.nan_to_num(0)
    rel = float(((x - y).abs() / x.abs().amax(-1, keepdim=True)).max())
    steps = float((a.step_scores["probability"] - b.step_scores["probability"]).abs().max())
    work = out.provenance.work
    print("BACKOFF", work["oom_retries"], work["max_chunk_rows"], rel, steps)
    """
)


@pytest.mark.default_model
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_the_back_off_itself_recovers_under_a_real_address_space_limit():
    """Sizing told that memory is plentiful tries chunks of all 32 path points under a real
    ``ulimit -v`` (300 MB over what the process maps): the CPU allocator fails, the chunk is halved
    until it fits, and the scores equal a run with small chunks to the documented floor."""
    done = _run_offline(BACK_OFF_UNDER_A_LIMIT)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BACKOFF"))
    _, retries, largest, rel, steps = line.split()
    assert int(retries) >= 1 and int(largest) < 32  # real allocation failures halved the chunks
    assert float(rel) <= 1e-3 and float(steps) <= 1e-6  # docs/architecture.md: 2.3e-4 measured
