"""The multi-process commands of docs/datasets.md, run exactly as the page writes them (only the
model is the tiny one, appended as ``--model``): each really starts 2 processes (the manifest
says ``processes: 2``, both ranks wrote shards) and gives every record the scores of a
one-process run. A launch that asks for several processes but gets one warns."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genattrib
from genattrib import FeatureAttributionOutput, GenattribWarning
from genattrib.cli import main
from genattrib.output import dataset_files

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "datasets.md"
#: Two records with a target and two to generate for: two batches, so each rank runs one; and a
#: bad record, listed with its reason.
RECORDS = [
    {"id": "paris", "prompt": "The capital of France is", "target": " Paris."},
    {"id": "fox", "prompt": "The quick brown fox", "target": " jumps over the lazy dog."},
    {"id": "story", "prompt": "Once upon a time there was"},
    {"id": "empty", "prompt": "   "},
    {"id": "numbers", "prompt": "Numbers like 1, 2, 3 and"},
]
GOOD = [r["id"] for r in RECORDS if r["id"] != "empty"]


def documented_commands() -> list[str]:
    """The command lines of the first ```bash block of docs/datasets.md that mention attribute-dataset."""
    block = re.search(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, f"no ```bash block in {DOC}"
    return [line for line in block.group(1).splitlines() if "attribute-dataset" in line]


MULTI = [line for line in documented_commands() if line.split()[0] != "genattrib" or "--processes" in line]


def test_the_page_documents_one_process_and_three_ways_to_run_two() -> None:
    lines = documented_commands()
    assert len(lines) == 4 and len(MULTI) == 3
    assert {line.split()[0] for line in MULTI} == {"genattrib", "torchrun", "accelerate"}
    assert all(re.search(r"(--processes|--nproc_per_node|--num_processes) 2\b", line) for line in MULTI)
    assert not any("--cpu" in line.split() for line in lines)  # accelerate's --cpu starts one process


@pytest.fixture(scope="module")
def one_process(saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> FeatureAttributionOutput:
    """The one-process result (one intra-op thread, as each launched process has)."""
    folder = tmp_path_factory.mktemp("one")
    max_new_tokens = int(re.search(r"--max-new-tokens (\d+)", documented_commands()[0]).group(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = genattrib.load_model(saved_model)
        run = genattrib.attribute_dataset(
            model, RECORDS, folder / "out", max_new_tokens=max_new_tokens, show_progress=False
        )
    finally:
        torch.set_num_threads(threads)
    assert run.done == 4 and run.failed == 1
    return run.load()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, GENATTRIB_TYPECHECK="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PET_MASTER_PORT"] = str(_free_port())  # torchrun's --master-port: never the fixed 29500 of a parallel run
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GENATTRIB_PROCESSES"):
        env.pop(name, None)
    return env


def _run(line: str, cwd: Path, model: Path) -> subprocess.CompletedProcess:
    """``line`` as the docs write it, from ``cwd`` (holding prompts.jsonl), on the tiny model."""
    argv = shlex.split(line)
    local = Path(sys.executable).parent / argv[0]  # the venv's genattrib / torchrun / accelerate
    argv[0] = str(local) if local.exists() else argv[0]
    (cwd / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return subprocess.run(
        [*argv, "--model", str(model)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600
    )


def _gpus_fit() -> bool:
    return torch.cuda.device_count() in (0, 2) or torch.cuda.device_count() > 2


@pytest.mark.skipif(not _gpus_fit(), reason="two processes need no GPU or two GPUs (one each)")
@pytest.mark.parametrize("line", MULTI, ids=[line.split()[0] for line in MULTI])
def test_documented_command_runs_two_processes_with_one_process_scores(line, saved_model, one_process, tmp_path):
    proc = _run(line, tmp_path, saved_model)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out_dir = tmp_path / re.search(r"--out (\S+)", line).group(1)
    manifest = json.loads((out_dir / dataset_files.MANIFEST).read_text())
    assert manifest["processes"] == 2 and manifest["complete"]
    assert {s["rank"] for s in manifest["shards"]} == {0, 1}  # both processes attributed a batch
    assert "4 of 5 records done, 1 failed" in proc.stdout and "(2 processes;" in proc.stdout
    assert [f["id"] for f in manifest["failures"]] == ["empty"]
    assert "GenattribWarning" not in proc.stderr
    two = FeatureAttributionOutput.load(out_dir)
    ids = two.provenance.storage["dataset"]["record_ids"]
    assert ids == one_process.provenance.storage["dataset"]["record_ids"] == GOOD
    assert all(a.equals(b) for a, b in zip(two, one_process))  # bit-exact: the same batches, shapes and threads


def test_accelerate_cpu_flag_runs_one_process_and_warns(saved_model, tmp_path):
    """The command the page used to give: accelerate's --cpu uses its single-process launcher."""
    line = "accelerate launch --num_processes 2 --cpu -m genattrib attribute-dataset prompts.jsonl --out runs/p"
    proc = _run(line + " --max-new-tokens 2", tmp_path, saved_model)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "runs" / "p" / dataset_files.MANIFEST).read_text())["processes"] == 1
    assert "GenattribWarning" in proc.stderr and "started only this one" in proc.stderr
    assert "--processes N" in proc.stderr and "torchrun --nproc_per_node N" in proc.stderr


def test_a_launch_for_more_processes_than_the_run_sees_warns(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("GENATTRIB_PROCESSES", "3")
    with pytest.warns(
        GenattribWarning, match=r"launched for 3 processes \(GENATTRIB_PROCESSES=3\), but this run sees 1"
    ):
        run = genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "a", max_new_tokens=1, show_progress=False)
    assert run.world == 1
    monkeypatch.delenv("GENATTRIB_PROCESSES")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch --cpu --num_processes 2` sets
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.warns(GenattribWarning, match="single-process launcher"):
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "b", max_new_tokens=1, show_progress=False)


def test_processes_option_errors_name_the_option(tmp_path, monkeypatch, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a b"}\n')
    assert main(["attribute-dataset", str(data), "--out", str(tmp_path / "o"), "--processes", "0"]) == 2
    assert "--processes" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")  # already under a launcher that started 4
    assert main(["attribute-dataset", str(data), "--out", str(tmp_path / "o"), "--processes", "2"]) == 2
    assert "drop --processes" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "o").exists()  # refused before any work
