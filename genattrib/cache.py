"""Where genattrib caches converted models and precomputed tables on disk.

Example:
    >>> isinstance(cache_root(), Path)
    True
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$GENATTRIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/genattrib``, else ``~/.cache/genattrib``."""
    if os.environ.get("GENATTRIB_CACHE_DIR"):
        return Path(os.environ["GENATTRIB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genattrib"
