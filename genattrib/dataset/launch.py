"""``genattrib attribute-dataset ... --processes N``: start the N processes of a run on this
machine without a launcher, the way ``torchrun --standalone --nproc_per_node N`` does (each
process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` and, unless
``OMP_NUM_THREADS`` is set, one intra-op thread), so accelerate's ``PartialState`` sets up
torch.distributed (gloo on CPU, NCCL on GPUs) in each.

Every process prints to this terminal. When one fails the others are stopped; Ctrl-C reaches
them all (they save what is done and rank 0 says how to resume), and the exit code is the first
failing process's, 130 after Ctrl-C.

Example:
    >>> argv = ["attribute-dataset", "prompts.jsonl", "--out", "runs/p", "--processes", "2"]
    >>> launch_processes(argv, 2)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["inside_launcher", "launch_processes"]

#: Set in every process ``launch_processes`` starts: the number of processes it started.
PROCESSES_ENV = "GENATTRIB_PROCESSES"


def inside_launcher() -> bool:
    """Whether this process was started by a launcher (torchrun, accelerate, ``--processes``)."""
    return bool(os.environ.get("WORLD_SIZE") or os.environ.get("LOCAL_RANK") or os.environ.get(PROCESSES_ENV))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(procs: list[subprocess.Popen]) -> int:
    """The first non-zero exit code (the others then stopped), or 0 once all are done."""
    while True:
        codes = [p.poll() for p in procs]
        failed = next((c for c in codes if c not in (None, 0)), None)
        if failed is not None:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
            return failed
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _interrupt(procs: list[subprocess.Popen]) -> int:
    """After Ctrl-C: give the processes time to save and exit (a terminal's Ctrl-C reaches them
    too); pass the interrupt on to those still running; 130."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:  # a second Ctrl-C: stop them now
        for p in procs:
            p.kill()
    return 130


def launch_processes(argv: Sequence[str], processes: int) -> int:
    """Run ``python -m genattrib *argv`` in ``processes`` processes on this machine; the exit code."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(processes))
    env.update(LOCAL_WORLD_SIZE=str(processes), **{PROCESSES_ENV: str(processes)})
    env.setdefault("OMP_NUM_THREADS", "1")
    procs: list[subprocess.Popen] = []
    try:
        for rank in range(processes):
            rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank), GROUP_RANK="0")
            procs.append(subprocess.Popen([sys.executable, "-m", "genattrib", *argv], env=rank_env))
        return _wait(procs)
    except KeyboardInterrupt:
        return _interrupt(procs)
