"""A progress bar (rich) that appears only for long runs on a terminal.

Example:
    >>> with progress_bar(3, "demo", show=False) as advance:
    ...     for _ in range(3):
    ...         advance()
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, description: str, show: bool | None = None) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` callable; show a bar if ``show`` (default: stderr is a TTY and total > 1)."""
    if show is None:
        show = total > 1 and sys.stderr.isatty()
    if not show:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
