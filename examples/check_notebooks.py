"""Execute example notebooks with a real Jupyter kernel and check what a reader would see.

Run by ``nox -s notebooks`` (which installs nbclient, nbformat and ipykernel and registers the
session's kernel); by hand, where those are installed::

    python examples/check_notebooks.py --kernel python3 --out artifacts/notebooks examples/*.ipynb

Each notebook runs top to bottom in a fresh kernel (its own IPython profile folder, so no startup
file of yours changes it). The executed copy is written to ``--out`` (never back into examples/).
Checked, from the saved outputs and from every message the kernel sent while the cells ran:

- no cell failed and no output holds a traceback or an ipywidgets complaint ("IProgress not found");
- a genattrib result was displayed as HTML (``_repr_html_``), holding the words the notebook's
  metadata ``genattrib.expect_html`` lists (e.g. "Paris");
- a genattrib progress bar was drawn in a cell's output (a display with a display id, updated in
  place), not written to stderr as a log would get it.

Prints one summary line per notebook; exits with 1 when any check fails.

Example:
    >>> problems_in_text("Traceback (most recent call last):")
    ['a traceback']
    >>> is_progress_text("generating ━━━━━━━━━━━━━━ 3/8 0:00:04 remaining 0:00:06")
    True
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Text that must never appear in a cell's output, with what it means.
FORBIDDEN = {
    "Traceback (most recent call last)": "a traceback",
    "IProgress not found": "an ipywidgets error (IProgress not found)",
    "ipywidgets": "an ipywidgets message",
}
#: A genattrib result's notebook view (genattrib.render.html, embedded=True) has this root element.
RESULT_HTML_MARK = 'class="genattrib"'
#: What a genattrib progress bar's text looks like: "<description> <bar> <done>/<total> ... remaining".
PROGRESS_RE = re.compile(r"\d+/\d+.*remaining")


def problems_in_text(text: str) -> list[str]:
    """The :data:`FORBIDDEN` findings in one output's text."""
    return [what for needle, what in FORBIDDEN.items() if needle in text]


def is_progress_text(text: str) -> bool:
    """Whether ``text`` is a drawn genattrib progress bar."""
    return bool(PROGRESS_RE.search(text))


def output_texts(output: dict[str, Any]) -> list[str]:
    """Every text an output carries: a stream's text, an error's traceback, each text-like MIME value."""
    texts = []
    if output.get("output_type") == "stream":
        texts.append(output.get("text", ""))
    if output.get("output_type") == "error":
        texts.append("\n".join(output.get("traceback", [])))
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            texts.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else str(value))
    return texts


@dataclass
class Report:
    """What one executed notebook showed, and what was wrong with it."""

    name: str
    cells: int = 0
    seconds: float = 0.0
    html_views: int = 0
    progress_bars: int = 0
    progress_updates: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "ok" if not self.problems else "FAILED"
        return (
            f"{status:6} {self.name}: {self.cells} code cells in {self.seconds:.0f} s, "
            f"{self.html_views} result HTML view(s), {self.progress_bars} progress bar(s) drawn in cells "
            f"({self.progress_updates} in-place updates)" + "".join(f"\n         - {p}" for p in self.problems)
        )


def check_messages(messages: list[tuple[int, str, dict[str, Any]]], report: Report) -> None:
    """Progress bars and forbidden text in every message the kernel sent while the cells ran
    (a bar is cleared when its run ends, so the saved notebook alone cannot show it)."""
    bars: dict[str, int] = {}
    for cell, kind, content in messages:
        if kind in ("display_data", "update_display_data", "execute_result", "stream", "error"):
            for text in output_texts({"output_type": kind, **content}):
                report.problems += [f"cell {cell}: {p}" for p in problems_in_text(text)]
                if kind == "stream" and content.get("name") == "stderr" and is_progress_text(text):
                    report.problems.append(f"cell {cell}: a progress bar went to stderr as log lines, not the cell")
        display_id = (content.get("transient") or {}).get("display_id")
        plain = (content.get("data") or {}).get("text/plain", "")
        if kind == "display_data" and display_id and is_progress_text(plain):
            bars[display_id] = 0
        elif kind == "update_display_data" and display_id in bars:
            bars[display_id] += 1
    report.progress_bars = len(bars)
    report.progress_updates = sum(bars.values())
    if not bars:
        report.problems.append("no progress bar was drawn in any cell's output")
    elif not report.progress_updates:
        report.problems.append("progress bars were drawn but never updated in place")


def check_saved(nb: Any, expect_html: list[str], report: Report) -> None:
    """Errors and the result's HTML view in the saved (executed) notebook."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    report.cells = len(code)
    views = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                report.problems.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            html = (output.get("data") or {}).get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            if output.get("output_type") in ("execute_result", "display_data") and RESULT_HTML_MARK in html:
                views.append(html)
    report.html_views = len(views)
    if not views:
        report.problems.append("no genattrib result was displayed as HTML (text/html with its view)")
    for word in expect_html:
        if not any(word in html for html in views):
            report.problems.append(f"no result's HTML view shows {word!r}")
    unrun = [i for i, c in enumerate(code) if c.source.strip() and c.execution_count is None]
    if unrun:
        report.problems.append(f"code cells {unrun} (counted from 0) did not run")


def run_notebook(path: Path, kernel: str, out_dir: Path, timeout: int) -> Report:
    """Execute ``path`` in a fresh ``kernel``, save it to ``out_dir`` and check it."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    class RecordingClient(NotebookClient):
        """nbclient's client, keeping every output message (bars are updated, then cleared)."""

        messages: list[tuple[int, str, dict[str, Any]]]

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            self.messages.append((cell_index, msg["msg_type"], msg["content"]))
            return super().process_message(msg, cell, cell_index)

    report = Report(path.name)
    nb = nbformat.read(path, as_version=4)
    expect_html = list(nb.metadata.get("genattrib", {}).get("expect_html", []))
    with tempfile.TemporaryDirectory(prefix="ipython-") as ipython_dir:
        client = RecordingClient(
            nb,
            kernel_name=kernel,
            timeout=timeout,
            allow_errors=False,
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.messages = []
        start = time.perf_counter()
        try:
            client.execute(env={**os.environ, "IPYTHONDIR": ipython_dir})
        except CellExecutionError as error:
            last = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()[-1]  # without terminal colours
            report.problems.append(f"a cell failed: {last}")
        report.seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    check_saved(nb, expect_html, report)
    check_messages(client.messages, report)
    return report


def check_kernel(kernel: str) -> str | None:
    """A problem with the kernel spec, if it would not run this Python (the one genattrib is in)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        return f"no Jupyter kernel named {kernel!r}: register one with `python -m ipykernel install --sys-prefix`"
    python = Path(spec.argv[0])
    if python.name.startswith("python") and python.resolve() != Path(sys.executable).resolve():
        return f"kernel {kernel!r} runs {python}, not this Python ({sys.executable})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/notebooks"), help="folder for executed copies")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may run (default: 900)")
    args = parser.parse_args(argv)
    problem = check_kernel(args.kernel)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    reports = []
    for path in args.notebooks:
        report = run_notebook(path, args.kernel, args.out, args.timeout)
        print(report.line(), flush=True)
        reports.append(report)
    failed = [r.name for r in reports if r.problems]
    total = sum(r.seconds for r in reports)
    passed = len(reports) - len(failed)
    print(f"{passed}/{len(reports)} notebooks passed in {total:.0f} s; executed copies in {args.out}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
