"""The processes of a run, as accelerate sees them: one, or those ``accelerate launch`` or
``torchrun`` started (``PartialState`` sets up torch.distributed, gloo on CPU, nccl on GPUs).

Example:
    >>> procs = current_processes()
    >>> procs.rank, procs.world, procs.main
    (0, 1, True)

A run launched for several processes that sees only one (``accelerate launch --cpu
--num_processes 2``: accelerate's ``--cpu`` always uses its single-process launcher; or a
``WORLD_SIZE`` that torch.distributed did not take up) warns, naming the commands that work.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import PartialState

from genattrib.errors import GenattribWarning

__all__ = ["Processes", "current_processes", "launch_mismatch", "replica_device_map"]

#: Commands that start N processes on one machine (CPU or GPUs).
WORKING_COMMANDS = (
    "`genattrib attribute-dataset ... --processes N`, `torchrun --nproc_per_node N -m genattrib attribute-dataset ...`"
    " or `accelerate launch --multi_gpu --num_processes N -m genattrib attribute-dataset ...` (on CPUs too)"
)


@dataclass(frozen=True)
class Processes:
    """This process's ``rank`` among ``world`` processes, and its ``device``."""

    rank: int
    world: int
    device: torch.device
    state: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.world > 1:
            self.state.wait_for_everyone()


def launch_mismatch(world: int, env: Mapping[str, str] = os.environ) -> str | None:
    """Why this run sees ``world`` processes although its launcher was asked for more (None when
    nothing says so).

    Example:
        >>> launch_mismatch(1, {"WORLD_SIZE": "2"})
        'launched for 2 processes (WORLD_SIZE=2), but this run sees 1'
        >>> launch_mismatch(2, {"WORLD_SIZE": "2"}) is None
        True
    """
    for name in ("WORLD_SIZE", "GENATTRIB_PROCESSES"):
        asked = env.get(name, "")
        if asked.isdigit() and int(asked) > world:
            return f"launched for {asked} processes ({name}={asked}), but this run sees {world}"
    accelerate = "ACCELERATE_MIXED_PRECISION" in env and env.get("MASTER_ADDR")  # set by `accelerate launch`
    if world == 1 and accelerate and not env.get("WORLD_SIZE") and not env.get("LOCAL_RANK"):
        return (
            "`accelerate launch` was asked for several processes (it set MASTER_ADDR) but started only this one: "
            "its --cpu flag always uses a single-process launcher (several CPU processes need mpirun)"
        )
    return None


def current_processes() -> Processes:
    """The processes of this run (a single process when none was launched); warns when the
    launcher was asked for more processes than the run sees (see :func:`launch_mismatch`)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    processes = Processes(int(state.process_index), int(state.num_processes), torch.device(state.device), state)
    why = launch_mismatch(processes.world)
    if why is not None:
        message = f"{why}: this process runs all the batches itself. To run N processes use {WORKING_COMMANDS}"
        warnings.warn(GenattribWarning(message), stacklevel=3)
    return processes


def replica_device_map(device_map: Any, processes: Processes) -> Any:
    """``device_map`` for loading this process's replica: as given, or (several processes on
    accelerators, none given) the whole model on this process's device."""
    if device_map is None and processes.world > 1 and processes.device.type != "cpu":
        return {"": str(processes.device)}
    return device_map
