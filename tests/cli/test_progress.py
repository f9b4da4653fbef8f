"""The progress bar: hidden for short runs, appears (with the time remaining) for runs over 5 s."""

from __future__ import annotations

import io
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

import genattrib.progress as progress_module
from genattrib.progress import DELAY_S, progress_bar, should_appear


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(total: int, steps: list[float], show: bool | None, tty: bool, monkeypatch) -> str:
    """Advance ``total`` steps taking ``steps[i]`` fake seconds each; what the bar printed."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    clock, buffer = FakeClock(), io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with progress_bar(total, "saliency", show, clock=clock, console=console) as advance:
        for seconds in steps:
            clock.now += seconds
            advance()
    return buffer.getvalue()


@given(
    elapsed=st.floats(0, 100, allow_nan=False),
    done=st.integers(0, 50),
    total=st.integers(1, 50),
)
def test_should_appear_when_the_run_has_taken_or_will_take_over_the_delay(elapsed, done, total):
    done = min(done, total)
    expected = elapsed >= DELAY_S or (done > 0 and elapsed / done * total > DELAY_S)
    assert should_appear(elapsed, done, total) is expected


def test_short_run_on_a_terminal_shows_nothing(monkeypatch):
    assert run(10, [0.1] * 10, None, True, monkeypatch) == ""


def test_long_run_on_a_terminal_appears_with_the_time_remaining(monkeypatch):
    shown = run(10, [2.0] * 4, None, True, monkeypatch)  # 2 s per step: about 20 s in all
    assert "saliency" in shown and "remaining" in shown
    assert "4/10" in shown and "0:00:12" in shown  # 6 steps left at 2 s each


def test_bar_appears_once_the_delay_has_passed(monkeypatch):
    """Fast steps predict a short run; a slow step later makes it long: the bar appears then."""
    quick = run(100, [0.01] * 5, None, True, monkeypatch)
    assert quick == ""
    late = run(100, [0.01] * 5 + [DELAY_S], None, True, monkeypatch)
    assert "6/100" in late and "5/100" not in late


def test_no_bar_off_a_terminal_unless_asked(monkeypatch):
    assert run(10, [10.0] * 3, None, False, monkeypatch) == ""
    assert run(10, [10.0] * 3, False, True, monkeypatch) == ""
    forced = run(10, [0.01] * 3, True, False, monkeypatch)  # show=True: at once, whatever the output
    assert "saliency" in forced and "remaining" in forced


def test_attribute_passes_show_progress_to_the_bar(tiny_llama, monkeypatch):
    import genattrib.engine.execute as runner

    seen = []
    real = runner.progress_bar

    def spy(total, description, show=None, **kwargs):
        seen.append((total, description, show))
        return real(total, description, False, **kwargs)

    monkeypatch.setattr(runner, "progress_bar", spy)
    tiny_llama.attribute("The capital of France is", " Paris.", show_progress=True, max_rows=1)
    assert seen and seen[0][1] == "saliency" and seen[0][2] is True and seen[0][0] >= 2


@pytest.mark.parametrize("total", [0, 1])
def test_tiny_runs_never_show_a_bar_by_default(total, monkeypatch):
    assert run(total, [10.0] * total, None, True, monkeypatch) == ""


def test_a_bar_with_a_unit_shows_the_rate_and_advances_by_several(monkeypatch):
    """attribute_dataset's bar: records per second, several records a batch."""
    clock, buffer = FakeClock(), io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with progress_bar(40, "attribute-dataset", True, clock=clock, console=console, unit="records") as advance:
        for _ in range(3):
            clock.now += 2.0
            advance(8)  # a batch of 8 records every 2 s
    shown = buffer.getvalue()
    assert "24/40" in shown and "4.00 records/s" in shown and "0:00:04" in shown  # 16 records left at 4/s


# --- where the bar goes: terminal, notebook, log ----------------------------------------------


class ZMQInteractiveShell:  # the class name of a Jupyter kernel's shell
    pass


class TerminalInteractiveShell:  # IPython in a terminal
    pass


class FakeHandle:
    def __init__(self, shown: list[str], data: dict) -> None:
        self.shown = shown
        shown.append(data["text/plain"])

    def update(self, data: dict, raw: bool = False) -> None:
        assert raw
        self.shown.append(data["text/plain"])


def fake_ipython(monkeypatch, shell: type | None) -> list[str]:
    """Install a stand-in IPython whose ``get_ipython()`` is ``shell()``; what its display showed."""
    import types

    shown: list[str] = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: None if shell is None else shell()
    display = types.ModuleType("IPython.display")
    display.display = lambda data, raw=False, display_id=False: FakeHandle(shown, data) if raw and display_id else None
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    return shown


@pytest.mark.parametrize(
    "tty,shell,expected",
    [
        (True, None, "terminal"),
        (True, ZMQInteractiveShell, "terminal"),
        (False, ZMQInteractiveShell, "notebook"),
        (False, TerminalInteractiveShell, "log"),
        (False, None, "log"),
    ],
)
def test_bar_output_tells_terminal_notebook_and_log(monkeypatch, tty, shell, expected):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    fake_ipython(monkeypatch, shell)
    assert progress_module.bar_output() == expected


def test_without_ipython_loaded_it_is_no_notebook(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not progress_module.in_notebook()
    assert "IPython" not in sys.modules  # never imported to find out


@given(
    show=st.sampled_from([None, True, False]),
    total=st.integers(0, 5),
    output=st.sampled_from(["terminal", "notebook", "log"]),
)
def test_bar_wanted_on_a_terminal_or_in_a_notebook_silent_in_a_log_unless_asked(show, total, output):
    expected = {True: True, False: False, None: total > 1 and output in ("terminal", "notebook")}[show]
    assert progress_module.bar_wanted(show, total, output) is expected


def test_long_run_in_a_notebook_draws_in_the_cell_and_clears_it(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    shown = fake_ipython(monkeypatch, ZMQInteractiveShell)
    clock = FakeClock()
    with progress_bar(10, "generate", None, clock=clock, unit="tokens") as advance:
        for _ in range(4):
            clock.now += 2.0
            advance()
    assert shown and "generate" in shown[0] and "1/10" in shown[0] and "remaining" in shown[0]  # 20 s predicted
    assert "4/10" in shown[-2] and "0:00:12" in shown[-2]  # 6 steps left at 2 s each
    assert shown[-1] == ""  # transient, as on a terminal


def test_short_run_in_a_notebook_shows_nothing(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    shown = fake_ipython(monkeypatch, ZMQInteractiveShell)
    run_steps(10, [0.1] * 10, None)
    assert shown == []


def fresh_tqdm_auto(monkeypatch) -> None:
    """Forget tqdm.auto (re-imported by the test, restored after), and make the kernel that of a
    fresh notebook: ipykernel's shell module loaded, ipywidgets not installed."""
    import types

    tqdm = pytest.importorskip("tqdm")
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(tqdm, name.split(".")[1], raising=False)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` fails
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))


def imported_with_warnings(load) -> list[str]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load()
    return [str(w.message) for w in caught]


def test_in_a_notebook_without_ipywidgets_tqdm_auto_warns_unless_genattrib_imported_it(monkeypatch):
    """transformers' bars (tqdm.auto) put "IProgress not found" in a notebook's first cell when
    ipywidgets is missing; ``import genattrib`` imports tqdm.auto first, with that warning silenced."""
    import importlib

    fake_ipython(monkeypatch, ZMQInteractiveShell)
    fresh_tqdm_auto(monkeypatch)
    assert any("IProgress not found" in m for m in imported_with_warnings(lambda: importlib.import_module("tqdm.auto")))

    fresh_tqdm_auto(monkeypatch)
    assert imported_with_warnings(progress_module.quiet_tqdm_in_notebook) == []
    bar = sys.modules["tqdm.auto"].tqdm
    assert not issubclass(bar, sys.modules["tqdm.notebook"].tqdm_notebook)  # plain text bars, no widget
    assert imported_with_warnings(lambda: importlib.import_module("tqdm.auto")) == []  # transformers' import


def test_outside_a_notebook_tqdm_auto_is_left_alone(monkeypatch):
    fake_ipython(monkeypatch, TerminalInteractiveShell)
    fresh_tqdm_auto(monkeypatch)
    progress_module.quiet_tqdm_in_notebook()
    assert "tqdm.auto" not in sys.modules


def run_steps(total: int, steps: list[float], show: bool | None) -> None:
    clock = FakeClock()
    with progress_bar(total, "generate", show, clock=clock) as advance:
        for seconds in steps:
            clock.now += seconds
            advance()


def test_a_log_gets_lines_only_when_asked(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    fake_ipython(monkeypatch, None)
    run_steps(10, [3.0] * 10, None)
    assert capsys.readouterr().err == ""
    run_steps(10, [3.0] * 10, True)  # a line at the start, one at most every 10 s, one at the end
    lines = capsys.readouterr().err.splitlines()
    assert 3 <= len(lines) <= 2 + 30 // progress_module.LOG_EVERY_S + 1
    assert "0/10" in lines[0] and "10/10" in lines[-1] and all("generate" in line for line in lines)
    assert all("\x1b[" not in line for line in lines)  # plain text: no terminal codes in a log


def test_generation_and_attribution_show_their_bars(tiny_llama, monkeypatch, capsys):
    """``show_progress=True`` (here into a log): a bar of generated tokens, then the method's bar;
    by default nothing is written to a log."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    fake_ipython(monkeypatch, None)
    tiny_llama.attribute("The capital of France is", max_new_tokens=4, min_new_tokens=4, max_rows=1)
    assert "generate" not in capsys.readouterr().err
    tiny_llama.attribute("The capital of France is", max_new_tokens=4, min_new_tokens=4, show_progress=True, max_rows=1)
    err = capsys.readouterr().err
    assert "generate" in err and "4/4" in err and "tokens/s" in err
    assert "saliency" in err
    tiny_llama.generate(["a b c", "d e"], max_new_tokens=3, min_new_tokens=3, batch_size=1, show_progress=True)
    assert "6/6" in capsys.readouterr().err  # two batches of 3 tokens


@pytest.mark.parametrize("output,expected", [("terminal", True), ("notebook", True), ("log", False)])
def test_the_knn_graph_bar_follows_the_same_rule(monkeypatch, output, expected):
    """DIG's k-NN graph build shows its bar on a terminal or in a notebook, never in a log."""
    import contextlib

    import torch

    from genattrib.methods import embedding_neighbours as nb

    asked = []

    @contextlib.contextmanager
    def record(total, description, show, **kwargs):
        asked.append(show)
        yield lambda n=1: None

    n, hidden = 5_000, 1_000  # n * n * hidden = 2.5e10: a build large enough for a bar
    monkeypatch.setattr(nb, "bar_output", lambda: output)
    monkeypatch.setattr(nb, "progress_bar", record)
    monkeypatch.setattr(
        nb,
        "nearest_vocabulary",
        lambda v, q, k, skip, on_chunk: (torch.zeros(n, k, dtype=torch.long), torch.zeros(n, k)),
    )
    monkeypatch.setattr(nb, "embedding_fingerprint", lambda vocab: "fingerprint")
    nb.build_knn_graph(torch.zeros(n, hidden), 3)
    assert asked == [expected]
