"""The machine record: CPU model and torch's kernels, in benchmark and evaluation results and in the
test session's header (the floats' last digits depend on them: docs/architecture.md, "Tolerance policy")."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from genattrib.evaluation.benchmark import benchmark
from genattrib.machine import KERNEL_ENV, cpu_model, machine_record, machine_summary

ROOT = Path(__file__).resolve().parents[2] / "conftest.py"


def test_the_record_names_the_cpu_and_the_kernels_torch_uses(monkeypatch):
    for name in KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    record = machine_record()
    assert json.loads(json.dumps(record)) == record  # JSON as it is
    assert record["cpu_model"] == cpu_model() and record["cpu_model"] not in ("", "unknown")
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["machine"] == platform.machine() and record["torch"] == torch.__version__
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["kernel_env"] == {}
    if torch.backends.mkl.is_available():
        assert record["mkl"] and record["mkl"][0].isdigit()  # "2024.2", read from torch's build config
    if torch.backends.mkldnn.is_available():
        assert record["onednn"].startswith("v")


def test_forced_kernels_are_recorded_and_summarised(monkeypatch):
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    record = machine_record()
    assert record["kernel_env"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    line = machine_summary(record)
    assert line.startswith(
        f"{record['cpu_model']}, {record['cpu_count']} CPUs; torch kernels {record['cpu_capability']}"
    )
    assert "MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2" in line


def test_the_test_session_prints_the_machine_once(pytestconfig):
    lines = pytestconfig.hook.pytest_report_header(config=pytestconfig, start_path=pytestconfig.rootpath)
    flat = [line for result in lines for line in ([result] if isinstance(result, str) else result)]
    mine = [line for line in flat if line.startswith("machine: ")]
    assert mine == [f"machine: {machine_summary()}"]
    # -q hides the header: the repository's conftest.py then writes the same line when the session starts
    root = next(p for p in pytestconfig.pluginmanager.get_plugins() if getattr(p, "__file__", "") == str(ROOT))
    written = []
    reporter = SimpleNamespace(write_line=written.append)
    for verbose in (-1, 0):
        config = SimpleNamespace(
            option=SimpleNamespace(verbose=verbose),
            pluginmanager=SimpleNamespace(get_plugin=lambda name: reporter if name == "terminalreporter" else None),
        )
        root.pytest_sessionstart(SimpleNamespace(config=config))
    assert written == mine  # once under -q, not again where the header shows it


@pytest.mark.filterwarnings("ignore")
def test_evaluation_and_benchmark_results_carry_the_record(tiny_llama, tmp_path):
    options = {"max_examples": 1, "max_new_tokens": 2, "every": 1, "n_bootstrap": 10, "include_random": False}
    result = benchmark(tiny_llama, ["saliency"], "wikitext", ["comprehensiveness"], show_progress=False, **options)
    assert result.info["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    saved = json.loads(result.save_json(tmp_path / "bench.json").read_text())
    assert saved["info"]["machine"]["cpu_model"] == cpu_model()
    run = result.runs[0].result  # the evaluate() result of the method
    assert run.info["machine"]["cpu_model"] == cpu_model()
    assert json.loads(run.save_json(tmp_path / "eval.json").read_text())["info"]["machine"] == run.info["machine"]
