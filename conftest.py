"""pytest configuration for the whole repository: run-time type checking, and the names that the
package's docstring examples (collected as doctests, see pyproject.toml) may use.

This file is imported before anything under ``tests/`` or ``genattrib/`` is collected, so it is
where the type-checking import hook goes: doctest collection imports every ``genattrib`` module,
and the hook only decorates modules imported after it is installed.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

# jaxtyping + beartype check every annotated genattrib function during the tests and the
# docstring examples. The hook must be installed before genattrib is imported.
if os.environ.get("GENATTRIB_TYPECHECK", "1") != "0":
    if "genattrib" in sys.modules:
        raise RuntimeError("genattrib was imported before the type-checking hook could be installed")
    from jaxtyping import install_import_hook

    install_import_hook("genattrib", "beartype.beartype")

import pytest  # noqa: E402
import torch  # noqa: E402

# The same thread count in this process and in the subprocesses tests start (a command, a killed
# run that is resumed): results compared across them then run the same reductions.
TEST_THREADS = max(1, min(2, os.cpu_count() or 1))
os.environ["OMP_NUM_THREADS"] = str(TEST_THREADS)
torch.set_num_threads(TEST_THREADS)

ROOT = Path(__file__).parent

# genattrib/__main__.py runs the command line on import: never collect it (pytest's doctest
# plugin passes over __main__.py files too; this keeps it out whatever the options).
collect_ignore = ["genattrib/__main__.py"]

DOCTEST_PROMPT = "The capital of France is"


@pytest.fixture(scope="session")
def _doctest_tiny():
    """A tiny random Llama and a small tokenizer, built offline as the tests build them (tests/helpers/tiny.py).

    The tokenizer's vocabulary is a little larger than the tests' so that "The capital of France
    is Paris." reads as 'The', ' capital', ' of', ' Fr', 'ance', ' is', ' Par', 'is', '.'; it has
    a minimal chat template (``<role>content`` lines, then ``<assistant>``).
    """
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from tiny import make_model, make_tokenizer

    tokenizer = make_tokenizer(vocab_size=380)
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return make_model("llama", tokenizer), tokenizer


@pytest.fixture(scope="session")
def _doctest_out(_doctest_tiny):
    import genattrib

    return genattrib.load_model(_doctest_tiny).attribute(DOCTEST_PROMPT, target=" Paris.")


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    """Names every docstring example may use without defining them: ``torch``, ``genattrib``,
    a tiny ``model`` (an AttributionModel; ``hf_model`` and ``tokenizer`` are its parts), a
    ``prompt`` and ``out``, the saliency result of ``model.attribute(prompt, target=" Paris.")``.
    Every example gets its own ``model`` wrapper and copy of ``out``, runs in a fresh temporary
    directory (files it saves land there, and so does genattrib's cache) and prints (rich) as in
    a plain 80-column terminal.
    """
    if not isinstance(request.node, pytest.DoctestItem):
        return
    import genattrib

    monkeypatch = request.getfixturevalue("monkeypatch")
    tmp_path = request.getfixturevalue("tmp_path")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENATTRIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)

    hf_model, tokenizer = request.getfixturevalue("_doctest_tiny")
    request.getfixturevalue("doctest_namespace").update(
        torch=torch,
        genattrib=genattrib,
        model=genattrib.load_model((hf_model, tokenizer)),
        hf_model=hf_model,
        tokenizer=tokenizer,
        prompt=DOCTEST_PROMPT,
        out=copy.deepcopy(request.getfixturevalue("_doctest_out")),
    )


def pytest_report_header(config: pytest.Config) -> str:
    """The machine and kernels once at the top of every run, so a CI log says what computed the floats."""
    from genattrib.machine import machine_summary

    return f"machine: {machine_summary()}"


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """``-q`` (what ``nox -s tests`` passes) hides the header: print the machine line there too."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.option.verbose < 0:
        reporter.write_line(pytest_report_header(session.config))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Docstring examples print floats: they are numeric tests too (``nox -s tests-portable``)."""
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.numeric)
