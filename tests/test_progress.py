"""The progress bar: hidden for short runs, appears (with the time remaining) for runs over 5 s."""

from __future__ import annotations

import io
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

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
    import genattrib.engine.runner as runner

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
