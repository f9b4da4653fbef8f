"""benchmark(out_dir=...) / genattrib evaluate --out-dir: the benchmark on the dataset runner gives
the in-memory benchmark's numbers, resumes without redoing work, and splits over 2 processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib
from genattrib.dataset.processes import Processes
from genattrib.evaluation.evaluate import evaluate_steps
from genattrib.evaluation.split import evaluate_split, subset_steps
from genattrib.faithfulness.steps import collect_steps
from genattrib.models import AttributionModel

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

OPTIONS = {
    "metrics": ["comprehensiveness", "soft_ns"],
    "max_new_tokens": 3,
    "max_examples": 4,
    "n_bootstrap": 50,
    "show_progress": False,
}


def assert_same_numbers(a, b):
    assert [r.method for r in a.runs] == [r.method for r in b.runs]
    for x, y in zip(a.runs, b.runs):
        assert x.result.per_step.keys() == y.result.per_step.keys()
        for name in x.result.per_step:  # batch composition changes float rounding at most
            got, want = x.result.per_step[name], y.result.per_step[name]
            assert_close_to_scale(got, want, floor=TINY_MODEL, what=name)
            assert x.result.summary[name].n == y.result.summary[name].n
            scale = float(want.nan_to_num().abs().max())  # a mean of per-step values: their scale
            value = x.result.summary[name].value, y.result.summary[name].value
            assert_close_to_scale(*value, floor=TINY_MODEL, what=f"{name} summary", scale=scale or None)
        assert torch.equal(x.result.example, y.result.example) and torch.equal(x.result.step, y.result.step)


def test_benchmark_on_the_dataset_runner_equals_the_in_memory_benchmark_and_resumes(tiny_llama, tmp_path, monkeypatch):
    plain = genattrib.benchmark(tiny_llama, ["saliency"], "wikitext", **OPTIONS)
    on_disk = genattrib.benchmark(tiny_llama, ["saliency"], "wikitext", **OPTIONS, out_dir=tmp_path)
    assert_same_numbers(on_disk, plain)
    assert sorted(p.name for p in (tmp_path / "attributions").iterdir()) == ["saliency"]
    assert sorted(p.name for p in (tmp_path / "evaluation").iterdir()) == ["random", "saliency"]

    calls = []
    monkeypatch.setattr(AttributionModel, "attribute", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(AttributionModel, "generate", lambda *a, **k: calls.append(1))
    again = genattrib.benchmark(tiny_llama, ["saliency"], "wikitext", **OPTIONS, out_dir=tmp_path)
    assert calls == []  # continuations, attributions and metrics all read back
    assert_same_numbers(again, plain)
    with pytest.raises(genattrib.InvalidArgumentError, match="another evaluation"):
        genattrib.benchmark(
            tiny_llama, ["saliency"], "wikitext", **{**OPTIONS, "metrics": ["sufficiency"]}, out_dir=tmp_path
        )


class AtBarrier(Exception):
    """A process waiting for the others."""


class StopAtBarrier:
    def wait_for_everyone(self) -> None:
        raise AtBarrier


class PassBarrier:
    def wait_for_everyone(self) -> None:
        pass


def rank(r: int, state: object) -> Processes:
    return Processes(r, 2, torch.device("cpu"), state)


def test_metric_parts_of_two_ranks_merge_to_the_whole(tiny_llama, tmp_path):
    out = tiny_llama.attribute(["The capital of France is", "Hello there", "Once upon a"], max_new_tokens=3)
    steps = collect_steps(out, 1)
    metrics = ["comprehensiveness", "soft_nc"]
    whole = evaluate_steps(tiny_llama, steps, metrics, n_bootstrap=50)
    # rank 1 of 2 writes its part and waits at the barrier (stopped there); rank 0 then merges both
    with pytest.raises(AtBarrier):
        evaluate_split(tiny_llama, steps, metrics, folder=tmp_path, n_bootstrap=50, processes=rank(1, StopAtBarrier()))
    merged = evaluate_split(
        tiny_llama, steps, metrics, folder=tmp_path, n_bootstrap=50, processes=rank(0, PassBarrier())
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-000-of-002.safetensors", "part-001-of-002.safetensors"]
    assert torch.equal(merged.example, whole.example) and torch.equal(merged.step, whole.step)
    for name in metrics:
        assert_close_to_scale(merged.per_step[name], whole.per_step[name], floor=TINY_MODEL, what=name)
        scale = float(whole.per_step[name].nan_to_num().abs().max()) or None
        value = merged.summary[name].value, whole.summary[name].value
        assert_close_to_scale(*value, floor=TINY_MODEL, what=f"{name} summary", scale=scale)
    assert subset_steps(steps, [1]).example.unique().tolist() == [1]


def test_evaluate_command_in_two_processes_gives_the_one_process_numbers(tmp_path):
    from test_dataset import _env
    from tiny import make_model, make_tokenizer

    tokenizer = make_tokenizer()
    make_model("llama", tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    model = genattrib.load_model(tmp_path / "model")
    options = {**OPTIONS, "n_bootstrap": 1000}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes
    try:
        reference = genattrib.benchmark(model, ["saliency"], "wikitext", **options)
    finally:
        torch.set_num_threads(threads)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "genattrib", "evaluate"]
    command += ["--methods", "saliency", "--dataset", "wikitext", "--metrics", ",".join(OPTIONS["metrics"])]
    command += ["--max-new-tokens", "3", "--max-examples", "4", "--model", str(tmp_path / "model")]
    command += ["--out-dir", str(tmp_path / "run"), "--json", "eval.json", "--html", "eval.html"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "evaluation" / "saliency").iterdir()) == [
        "part-000-of-002.safetensors",
        "part-001-of-002.safetensors",
    ]
    rows = {(r["method"], r["metric"]): r for r in json.loads((tmp_path / "eval.json").read_text())["rows"]}
    for run in reference.runs:
        for name, interval in run.result.summary.items():
            row = rows[(run.method, name)]
            assert row["n"] == interval.n == 4
            scale = float(run.result.per_step[name].nan_to_num().abs().max()) or None  # two processes: other batches
            assert_close_to_scale(row["value"], interval.value, floor=TINY_MODEL, what=name, scale=scale)
