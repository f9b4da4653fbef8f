"""The processes of a run, as accelerate sees them: one, or those ``accelerate launch`` or
``torchrun`` started (``PartialState`` sets up torch.distributed, gloo on CPU, nccl on GPUs).

Example:
    >>> procs = current_processes()
    >>> procs.rank, procs.world, procs.main
    (0, 1, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from accelerate import PartialState

__all__ = ["Processes", "current_processes", "replica_device_map"]


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


def current_processes() -> Processes:
    """The processes of this run (a single process when none was launched)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(int(state.process_index), int(state.num_processes), torch.device(state.device), state)


def replica_device_map(device_map: Any, processes: Processes) -> Any:
    """``device_map`` for loading this process's replica: as given, or (several processes on
    accelerators, none given) the whole model on this process's device."""
    if device_map is None and processes.world > 1 and processes.device.type != "cpu":
        return {"": str(processes.device)}
    return device_map
