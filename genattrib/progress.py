"""A progress bar (rich) with the time remaining, for long runs on a terminal.

By default (``show=None``) the bar is for runs over :data:`DELAY_S` seconds on a terminal
(stderr is a TTY): it stays hidden until the run has taken that long, or is estimated to take
that long in all (elapsed / done × total, from the first finished step on), then appears with the
steps done, the elapsed time and an estimate of the time remaining. ``show=True`` shows it at
once whatever the output; ``show=False`` never.

Example:
    >>> with progress_bar(3, "demo", show=False) as advance:
    ...     for _ in range(3):
    ...         advance()
    >>> should_appear(elapsed=1.0, done=1, total=10)     # 1 s per step, 10 steps: about 10 s
    True
    >>> should_appear(elapsed=1.0, done=5, total=10)     # about 2 s in all
    False
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Seconds a run must take (or be estimated to take) before its bar appears (``show=None``).
DELAY_S = 5.0


def should_appear(elapsed: float, done: int, total: int, delay: float = DELAY_S) -> bool:
    """Whether a hidden bar appears: the run has taken ``delay`` seconds, or ``done`` of ``total``
    steps in ``elapsed`` seconds predict a total over ``delay``."""
    if elapsed >= delay:
        return True
    return done > 0 and elapsed / done * total > delay


@contextlib.contextmanager
def progress_bar(
    total: int,
    description: str,
    show: bool | None = None,
    *,
    delay: float = DELAY_S,
    clock: Callable[[], float] = time.monotonic,
    console: Any = None,
    unit: str | None = None,
) -> Iterator[Callable[..., None]]:
    """Yield an ``advance(n=1)`` callable to call as steps finish (``total`` in all).

    ``show``: None (default) for a bar on a terminal (stderr is a TTY) once the run takes, or
    is estimated to take, over ``delay`` seconds; True to show it at once on any output; False
    for none. ``unit`` (e.g. ``"records"``) adds the rate, "12.5 records/s". ``clock`` and
    ``console`` (a rich Console) are for tests.
    """
    if show is False or (show is None and not (total > 1 and sys.stderr.isatty())):
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Any:
            speed = task.finished_speed or task.speed
            return TextColumn(f"{speed:.2f} {unit}/s" if speed else f"? {unit}/s").render(task)

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *([RateColumn()] if unit else []),
        TimeElapsedColumn(),
        TextColumn("remaining"),
        TimeRemainingColumn(),
        transient=True,
        get_time=clock,
        console=console,
    )
    task = progress.add_task(description, total=total)
    start, done = clock(), 0
    shown = False
    if show:
        progress.start()
        shown = True

    def advance(n: int = 1) -> None:
        nonlocal done, shown
        done += n
        progress.advance(task, n)
        if not shown and should_appear(clock() - start, done, total, delay):
            progress.start()
            shown = True
        elif shown:
            progress.refresh()

    try:
        yield advance
    finally:
        if shown:
            progress.stop()
