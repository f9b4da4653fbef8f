"""The machine a result was computed on: CPU model, the kernels torch picked, threads, accelerators.

Float results depend on these in their last digits (docs/architecture.md, "Tolerance policy"), so
benchmark and evaluation results record them, and the test session prints them once.

Example:
    >>> record = machine_record()
    >>> {"cpu_model", "cpu_capability", "torch_threads", "mkl", "onednn", "kernel_env"} <= set(record)
    True
    >>> machine_summary({**record, "cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_capability": "AVX2"}).split("; ")[:2]
    ['AMD EPYC, 2 CPUs', 'torch kernels AVX2']
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import torch

KERNEL_ENV = (
    "ATEN_CPU_CAPABILITY",  # torch's own vectorised kernels: default, avx2, avx512, ...
    "MKL_ENABLE_INSTRUCTIONS",  # MKL's instruction set (AVX2, AVX512, ...)
    "ONEDNN_MAX_CPU_ISA",  # oneDNN's (also read as DNNL_MAX_CPU_ISA)
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",  # MKL's conditional numerical reproducibility
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)
"""Environment variables that choose kernels or threads, recorded when set."""


@cache
def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 9654 96-Core Processor"), or the architecture if unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        for key in ("model name", "Hardware", "Processor", "cpu model"):  # x86; ARM boards; others
            found = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
            if found and found.group(1).strip():
                return found.group(1).strip()
        part = re.search(r"^CPU part\s*:\s*(\S+)$", text, re.MULTILINE)  # ARM servers name only the part
        if part:
            return f"{platform.machine()} (CPU part {part.group(1)})"
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"


def _build_versions() -> dict[str, str | None]:
    """MKL and oneDNN versions and the BLAS torch was built with, read from ``torch.__config__.show()``."""
    shown = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", shown)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) (v[\d.]+)", shown)
    blas = re.search(r"BLAS_INFO=(\w+)", shown)
    return {
        "mkl": mkl.group(1) if mkl and torch.backends.mkl.is_available() else None,
        "onednn": onednn.group(1) if onednn and torch.backends.mkldnn.is_available() else None,
        "blas": blas.group(1) if blas else None,
    }


def _parallel_backend() -> str | None:
    found = re.search(r"ATen parallel backend: (.+)", torch.__config__.parallel_info())
    return found.group(1).strip() if found else None


def machine_record() -> dict[str, Any]:
    """What decides a result's last digits: CPU, kernels, threads, accelerators (JSON-serialisable)."""
    cuda = torch.cuda.is_available()
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        **_build_versions(),
        "parallel_backend": _parallel_backend(),
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "kernel_env": {name: os.environ[name] for name in KERNEL_ENV if name in os.environ},
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cuda": torch.version.cuda,
    }


def machine_summary(record: dict[str, Any] | None = None) -> str:
    """One line for logs: CPU, torch's kernels, MKL/oneDNN, threads, forced kernels, GPUs."""
    r = machine_record() if record is None else record
    parts = [f"{r['cpu_model']}, {r['cpu_count']} CPUs", f"torch kernels {r['cpu_capability']}"]
    parts += [f"{name} {r[key]}" for name, key in (("MKL", "mkl"), ("oneDNN", "onednn")) if r.get(key)]
    parts.append(f"{r['torch_threads']} threads")
    if r.get("kernel_env"):
        parts.append(" ".join(f"{k}={v}" for k, v in r["kernel_env"].items()))
    if r.get("cuda_devices"):
        parts.append("GPU " + ", ".join(r["cuda_devices"]))
    return "; ".join(parts)
