"""Ctrl-C on a run that saves as it goes (``attribute(..., stream_to=)``, ``attribute_dataset``,
and their commands): one line that says what is saved and how to resume, not a traceback into
torch; the interrupt is still a ``KeyboardInterrupt``, and the call or command it names resumes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from tolerance import assert_same_resumed

import genattrib
from genattrib import FeatureAttributionOutput, RunInterrupted
from genattrib.cli import main
from genattrib.methods import method_class
from genattrib.models import AttributionModel
from genattrib.output import dataset_files

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["The capital of France is", "Once upon a time"]
CONTINUATIONS = [" Paris. The capital of Italy is Rome.", " there was a little model"]
SETTINGS = {"method": "saliency", "max_rows": 2}  # several small batches of rows


@pytest.fixture
def ctrl_c_at_batch(monkeypatch):
    """``state["at"] = k``: a plain KeyboardInterrupt (what Ctrl-C raises) in Saliency's batch k + 1."""
    cls = method_class("saliency")
    original, state = cls.attribute, {"batches": 0, "at": None}

    def attribute(self, batch, forward, attributed_fn):
        if state["at"] is not None and state["batches"] >= state["at"]:
            raise KeyboardInterrupt
        state["batches"] += 1
        return original(self, batch, forward, attributed_fn)

    monkeypatch.setattr(cls, "attribute", attribute)
    return state


# --- Python API ------------------------------------------------------------------------------------
def test_streamed_call_interrupted_says_what_is_saved_and_resumes(tiny_llama, tmp_path, ctrl_c_at_batch):
    reference = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS)
    folder = tmp_path / "story"
    ctrl_c_at_batch.update(batches=0, at=2)
    with pytest.raises(KeyboardInterrupt) as caught:  # still a KeyboardInterrupt for `except KeyboardInterrupt`
        tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=folder)
    err = caught.value
    assert isinstance(err, RunInterrupted) and err.__suppress_context__  # no chained traceback into torch
    index = json.loads((folder / "index.json").read_text())
    saved = sum(len(rows) for shard in index["shards"] for rows in shard["rows"].values())
    total = sum(seq.num_steps for seq in reference.sequences)
    assert 0 < saved < total
    assert str(err) == (
        f"interrupted: {saved} of {total} rows saved in {str(folder)!r}; "
        f"call attribute() again with the same arguments (stream_to={str(folder)!r}) to resume"
    )
    assert "\n" not in str(err)
    ctrl_c_at_batch.update(at=None)
    resumed = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=folder)
    assert resumed.provenance.work["resumed_rows"] == saved
    assert_same_resumed(resumed, reference)


def test_without_a_stream_the_interrupt_is_left_as_it_is(tiny_llama, ctrl_c_at_batch):
    ctrl_c_at_batch.update(at=1)
    with pytest.raises(KeyboardInterrupt) as caught:
        tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS)
    assert type(caught.value) is KeyboardInterrupt  # nothing saved: nothing to say


def test_dataset_run_interrupted_says_how_many_records_are_saved(tiny_llama, tmp_path, monkeypatch):
    data = [{"prompt": p, "target": t, "id": i} for i, (p, t) in enumerate(zip(PROMPTS * 2, CONTINUATIONS * 2))]
    original, calls = AttributionModel.attribute, []

    def attribute(self, *args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AttributionModel, "attribute", attribute)
    options = {"method": "saliency", "batch_size": 2, "show_progress": False}
    with pytest.raises(RunInterrupted) as caught:
        genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", **options)
    assert str(caught.value) == (
        f"interrupted: 2 of 4 records saved in {str(tmp_path / 'out')!r}; "
        "call attribute_dataset() again with the same arguments to resume"
    )
    monkeypatch.setattr(AttributionModel, "attribute", original)
    run = genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", **options)
    assert (run.ran, run.done) == (2, 4)


# --- the command line: a real SIGINT ----------------------------------------------------------------
#: Runs ``genattrib.cli.main(argv)`` and sends itself SIGINT (what Ctrl-C sends) when the patched
#: function is called for the third time.
_SIGINT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from genattrib.cli import main
    from genattrib.methods import method_class
    from genattrib.models import AttributionModel
    owner = method_class("saliency") if sys.argv[1] == "attribute" else AttributionModel
    original, seen = owner.attribute, []
    def attribute(self, *args, **kwargs):
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        seen.append(1)
        return original(self, *args, **kwargs)
    owner.attribute = attribute
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture
def one_thread():
    """One intra-op thread, as in the subprocesses (OMP_NUM_THREADS=1): the same sums, bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT as a shell gives it to a foreground job: the default action, so Python raises
    KeyboardInterrupt (a child inherits an ignored SIGINT from its parent, e.g. a test runner
    started in the background, and Python keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted(argv: list[str], cwd: Path) -> str:
    """Run ``genattrib *argv`` until its SIGINT; the one line it printed about it."""
    env = dict(os.environ, PYTHONPATH=str(REPO), GENATTRIB_TYPECHECK="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", _SIGINT_SCRIPT, *argv]
    proc = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, preexec_fn=_ctrl_c_as_in_a_terminal
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    said = [line for line in lines if "interrupted" in line]
    assert len(said) == 1 and lines[-1] == said[0], proc.stderr  # one line, the last (before: loading bars)
    return said[0]


def test_attribute_command_with_stream_to_prints_one_line_and_its_command_resumes(
    saved_model, tmp_path, one_thread, monkeypatch
):
    argv = ["attribute", PROMPTS[0], "--target", CONTINUATIONS[0], "--model", str(saved_model)]
    argv += ["--method", "saliency", "--max-rows", "2", "--stream-to", "story", "--no-show", "--save", "s.json"]
    line = _interrupted(argv, tmp_path)
    pattern = r"interrupted: (\d+) of (\d+) rows saved in 'story'; run the same command again to resume: (.*)"
    match = re.fullmatch(pattern, line)
    assert match and 0 < int(match.group(1)) < int(match.group(2)), line
    resume = shlex.split(match.group(3))
    assert resume[0] == "genattrib" and resume[1:] == argv
    monkeypatch.chdir(tmp_path)  # the printed command's paths are relative to where it ran
    assert main(resume[1:]) == 0
    out = FeatureAttributionOutput.load(tmp_path / "s.json")
    assert out.provenance.work["resumed_rows"] == int(match.group(1))
    reference = genattrib.load_model(saved_model).attribute(PROMPTS[0], CONTINUATIONS[0], **SETTINGS)
    assert_same_resumed(out.sequences[:1], reference.sequences[:1])


def test_attribute_dataset_command_prints_one_line_and_its_command_resumes(saved_model, tmp_path, monkeypatch):
    data = tmp_path / "prompts.jsonl"
    records = [{"prompt": p, "target": t} for p, t in zip(PROMPTS * 2, CONTINUATIONS * 2)]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["attribute-dataset", "prompts.jsonl", "--out", "runs/p", "--model", str(saved_model), "--batch-size", "1"]
    line = _interrupted([*argv, "--no-progress"], tmp_path)
    match = re.fullmatch(
        r"interrupted: 2 of 4 records saved in 'runs/p'; "
        r"run the same command again to resume \(with any number of processes\): (.*)",
        line,
    )
    assert match, line
    assert dataset_files.finished_batches(tmp_path / "runs" / "p") == {0, 1}
    resume = shlex.split(match.group(1))
    monkeypatch.chdir(tmp_path)  # the printed command's paths are relative to where it ran
    assert main(resume[1:]) == 0
    manifest = json.loads((tmp_path / "runs" / "p" / dataset_files.MANIFEST).read_text())
    assert manifest["complete"] and manifest["counts"]["done"] == 4


# --- the command line: what is printed ---------------------------------------------------------------
class _InterruptedModel:
    def attribute(self, *args, **kwargs):
        raise KeyboardInterrupt


def test_attribute_command_without_a_stream_says_nothing_was_saved(monkeypatch, capsys):
    monkeypatch.setattr(genattrib, "load_model", lambda *a, **k: _InterruptedModel())
    assert main(["attribute", "Hello", "--no-show"]) == 130
    err = capsys.readouterr().err
    assert " ".join(err.split()) == (
        "interrupted: nothing saved (--stream-to DIR saves rows as they finish, so a long run can resume)"
    )


def test_only_rank_zero_prints_the_line(monkeypatch, tmp_path, capsys):
    def attribute_dataset(*args, **kwargs):
        raise RunInterrupted("1 of 2 records saved in 'x'", "call attribute_dataset() again", rank=1)

    monkeypatch.setattr(genattrib, "attribute_dataset", attribute_dataset)
    assert main(["attribute-dataset", "d.jsonl", "--out", str(tmp_path / "x")]) == 130
    assert capsys.readouterr().err == ""


def test_ctrl_c_on_the_processes_option_stops_every_process_with_one_line(saved_model, tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: ``--processes 2`` and both workers."""
    records = [{"prompt": p} for p in ("The capital of France is", "Once upon a time", "The quick brown", "Hello")]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = [sys.executable, "-m", "genattrib", "attribute-dataset", "p.jsonl", "--out", "runs/p", "--model"]
    argv += [str(saved_model), "--batch-size", "1", "--max-new-tokens", "100", "--method", "integrated_gradients"]
    env = dict(os.environ, PYTHONPATH=str(REPO), GENATTRIB_TYPECHECK="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [*argv, "--processes", "2", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    shards = tmp_path / "runs" / "p" / dataset_files.SHARDS
    while proc.poll() is None and not (shards.is_dir() and any(shards.glob("batch-*"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1 and "Traceback" not in err, err  # rank 0 only, no traceback
    done = len(dataset_files.finished_batches(tmp_path / "runs" / "p"))
    assert 0 < done < 4 and said[0].startswith(f"interrupted: {done} of 4 records saved in 'runs/p'")
    assert said[0].endswith("--processes 2 --no-progress")
