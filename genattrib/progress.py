"""A progress bar (rich) with the time remaining, for long runs on a terminal or in a notebook.

Where it goes (:func:`bar_output`): a terminal when stderr is a TTY; the cell's output in a
Jupyter notebook (or Colab), updated in place; else a log (a pipe, CI, a file). By default
(``show=None``) the bar is for runs over :data:`DELAY_S` seconds on a terminal or in a notebook,
never in a log: it stays hidden until the run has taken that long, or is estimated to take that
long in all (elapsed / done × total, from the first finished step on), then appears with the steps
done, the elapsed time and an estimate of the time remaining. ``show=True`` shows it at once
wherever the output goes (in a log: one line at the start, then at most one every
:data:`LOG_EVERY_S` seconds, and one at the end); ``show=False`` never.

Example:
    >>> with progress_bar(3, "demo", show=False) as advance:
    ...     for _ in range(3):
    ...         advance()
    >>> should_appear(elapsed=1.0, done=1, total=10)     # 1 s per step, 10 steps: about 10 s
    True
    >>> should_appear(elapsed=1.0, done=5, total=10)     # about 2 s in all
    False
    >>> bar_wanted(None, 10, "notebook"), bar_wanted(None, 10, "log"), bar_wanted(True, 10, "log")
    (True, False, True)
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

#: Seconds a run must take (or be estimated to take) before its bar appears (``show=None``).
DELAY_S = 5.0
#: Seconds between two redraws of a bar on a terminal or in a notebook.
REFRESH_S = 0.1
#: Seconds between two lines of a bar written to a log (``show=True`` off a terminal and notebook).
LOG_EVERY_S = 10.0

Output = Literal["terminal", "notebook", "log"]


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (notebook, JupyterLab, VS Code, Colab): IPython is
    loaded and its shell is a kernel's, not IPython in a terminal. IPython is never imported here."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None:
        return False
    kind = type(shell)
    return (
        kind.__name__ == "ZMQInteractiveShell"
        or "google.colab" in kind.__module__
        or bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))
    )


def quiet_tqdm_in_notebook() -> None:
    """In a notebook kernel without ipywidgets, import ``tqdm.auto`` (the bars of transformers and
    huggingface_hub, e.g. "Loading weights") with its "IProgress not found. Please update jupyter
    and ipywidgets" warning silenced: tqdm then draws plain text bars in the cell, as genattrib's
    own bars do, instead of putting that warning in the user's first cell. Does nothing outside a
    notebook, when tqdm is missing, or when ``tqdm.auto`` was already imported (its warning, if
    any, already shown). Called once by ``import genattrib``, before transformers is imported."""
    if not in_notebook() or "tqdm.auto" in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        try:
            import tqdm.auto  # noqa: F401
        except ImportError:
            pass


def bar_output() -> Output:
    """Where a bar goes now: ``"terminal"`` (stderr is a TTY), ``"notebook"`` or ``"log"``."""
    isatty = getattr(sys.stderr, "isatty", None)
    if callable(isatty) and isatty():
        return "terminal"
    return "notebook" if in_notebook() else "log"


def bar_wanted(show: bool | None, total: int, output: Output) -> bool:
    """Whether a run of ``total`` steps gets a bar: as ``show`` says when given, else (``None``)
    on a terminal or in a notebook for runs of more than one step, never in a log."""
    if show is not None:
        return bool(show)
    return total > 1 and output != "log"


def should_appear(elapsed: float, done: int, total: int, delay: float = DELAY_S) -> bool:
    """Whether a hidden bar appears: the run has taken ``delay`` seconds, or ``done`` of ``total``
    steps in ``elapsed`` seconds predict a total over ``delay``."""
    if elapsed >= delay:
        return True
    return done > 0 and elapsed / done * total > delay


class _TextDisplay:
    """The bar drawn as text: updated in place as a notebook cell's output (an IPython display
    handle: no ipywidgets needed), or written as lines to a log (stderr)."""

    def __init__(self, progress: Any, output: Output, clock: Callable[[], float]) -> None:
        self.progress, self.output, self.clock = progress, output, clock
        self.handle: Any = None
        self.last = -float("inf")

    def text(self) -> str:
        from rich.console import Console

        buffer = io.StringIO()
        Console(file=buffer, width=100, color_system=None, force_terminal=False, force_jupyter=False).print(
            self.progress.get_renderable()
        )
        return buffer.getvalue().rstrip()

    def start(self) -> None:
        self.last = self.clock()
        if self.output == "notebook":
            from IPython.display import display

            self.handle = display({"text/plain": self.text()}, raw=True, display_id=True)
        else:
            print(self.text(), file=sys.stderr, flush=True)

    def refresh(self) -> None:
        if self.output == "notebook":
            self.handle.update({"text/plain": self.text()}, raw=True)
        elif self.clock() - self.last >= LOG_EVERY_S:
            self.last = self.clock()
            print(self.text(), file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.output == "notebook":
            self.handle.update({"text/plain": ""}, raw=True)  # transient, as on a terminal
        else:
            print(self.text(), file=sys.stderr, flush=True)


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
    output: Output | None = None,
) -> Iterator[Callable[..., None]]:
    """Yield an ``advance(n=1)`` callable to call as steps finish (``total`` in all).

    ``show``: None (default) for a bar on a terminal (stderr is a TTY) or in a notebook once the
    run takes, or is estimated to take, over ``delay`` seconds; True to show it at once on any
    output; False for none. ``unit`` (e.g. ``"records"``) adds the rate, "12.5 records/s".
    ``output`` (default: :func:`bar_output`), ``clock`` and ``console`` (a rich Console to draw
    on, as on a terminal) are for tests.
    """
    where: Output = output or bar_output()
    if not bar_wanted(show, total, where):
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

    live = where == "terminal" or console is not None  # rich's live display; else drawn as text
    if live and console is None:
        from rich.console import Console

        console = Console(stderr=True)
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
        auto_refresh=live,
    )
    display: Any = progress if live else _TextDisplay(progress, where, clock)
    task = progress.add_task(description, total=total)
    start, done, drawn = clock(), 0, -float("inf")
    shown = False
    if show:
        display.start()
        shown = True

    def advance(n: int = 1) -> None:
        nonlocal done, shown, drawn
        done += n
        progress.advance(task, n)
        now = clock()
        if not shown and should_appear(now - start, done, total, delay):
            display.start()
            shown = True
        elif shown and (now - drawn >= REFRESH_S or done >= total):
            display.refresh()
            drawn = now

    try:
        yield advance
    finally:
        if shown:
            display.stop()
