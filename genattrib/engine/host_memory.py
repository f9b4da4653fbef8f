"""Free host memory as this process may really use it: the smallest of free RAM, the container's
cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) less what the cgroup uses, and
the address-space limit (``RLIMIT_AS``) less what the process has mapped. Reading only the
host's free pages, a process in a container sizes its chunks for memory it may not take, and the
kernel's OOM killer (or an allocation failure) strikes first.

Example:
    >>> free_host_bytes() > 0
    True
    >>> cgroup_free_bytes(Path("/nonexistent"))  # no cgroup files: no cgroup limit
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Free RAM assumed when the system does not say (no ``sysconf``).
UNKNOWN_FREE_BYTES = 8 << 30
#: cgroup v1 reports "no limit" as a huge number near 2**63.
_V1_UNLIMITED = 1 << 60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2, no limit) and junk alike: no number


def cgroup_free_bytes(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes left under this process's cgroup memory limit, or ``None`` without a limit.

    Reads cgroup v2 (``memory.max`` and ``memory.current`` of the process's own group, from
    ``/proc/self/cgroup``, else the root files) or v1 (``memory/memory.limit_in_bytes`` and
    ``memory/memory.usage_in_bytes``)."""
    for group in _own_groups(root):
        limit, used = _read_int(group / "memory.max"), _read_int(group / "memory.current")
        if limit is not None:
            return max(0, limit - (used or 0))
    limit = _read_int(root / "memory" / "memory.limit_in_bytes")
    if limit is not None and limit < _V1_UNLIMITED:
        return max(0, limit - (_read_int(root / "memory" / "memory.usage_in_bytes") or 0))
    return None


def _own_groups(root: Path) -> list[Path]:
    """The v2 group of this process (``0::/path`` in ``/proc/self/cgroup``), then the root."""
    groups = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                groups.append(root / line[3:].lstrip("/"))
    except OSError:
        pass
    return [*groups, root]


def address_space_free_bytes() -> int | None:
    """Bytes the process may still map under ``RLIMIT_AS``, or ``None`` without that limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    mapped = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - mapped)


def free_host_bytes() -> int:
    """The smallest of free RAM, the cgroup's headroom and the address-space headroom."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = UNKNOWN_FREE_BYTES
    limits = [b for b in (cgroup_free_bytes(), address_space_free_bytes()) if b is not None]
    return int(min([free, *limits]))
