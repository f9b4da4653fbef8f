"""genattrib.attribute_dataset: records, the batch plan and its split over processes, shards and
the manifest, bad records, resuming after a crash (the 2-process runs, as docs/datasets.md
writes them, are in test_dataset_launch.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genattrib
from genattrib import FeatureAttributionOutput, InvalidArgumentError
from genattrib.dataset.records import read_records
from genattrib.dataset.schedule import batch_records, rank_share
from genattrib.models import AttributionModel
from genattrib.output import dataset_files

REPO = Path(__file__).resolve().parents[2]
WORDS = "The capital of France is Paris and the quick brown fox jumps over the lazy dog while".split()


def make_records(n: int = 10) -> list[dict]:
    """Records of varied length; every third one with a forced target; one empty, one too long."""
    records = []
    for i in range(n):
        record = {"prompt": " ".join(WORDS[: 2 + (i * 5) % 13]), "id": f"r{i}"}
        if i % 3 == 0:
            record["target"] = " Paris."
        records.append(record)
    return records + [{"prompt": "   ", "id": "empty"}, {"prompt": "fox " * 100, "id": "long"}]


SETTINGS = {"method": "saliency", "max_new_tokens": 3, "batch_size": 3, "show_progress": False}


def same_records(a: FeatureAttributionOutput, b: FeatureAttributionOutput) -> bool:
    """The same records in the same order, every score, token and step score exactly equal."""
    ids = a.provenance.storage["dataset"]["record_ids"]
    return ids == b.provenance.storage["dataset"]["record_ids"] and all(x.equals(y) for x, y in zip(a, b))


# --- records -----------------------------------------------------------------------------------------
def test_jsonl_records_get_line_ids_and_bad_lines_are_kept_with_a_reason(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = ['{"prompt": "Hello", "target": " world"}', "", "not json", '{"prompt": "Hi", "id": "x"}', '{"id": 7}']
    path.write_text("\n".join(lines) + "\n")
    records = read_records(path)
    assert [(r.id, r.index) for r in records] == [(0, 0), (2, 2), ("x", 3), (7, 4)]
    assert records[0].target == " world" and records[0].error is None
    assert "not JSON" in records[1].error and records[3].error == "the record has no 'prompt'"


def test_records_from_a_list_are_not_mutated_and_duplicate_ids_raise():
    data = [{"prompt": "a", "id": "same"}, {"prompt": [{"role": "user", "content": "b"}]}, {"prompt": "c"}]
    before = json.dumps(data)
    records = read_records(data)
    assert [r.id for r in records] == ["same", 1, 2] and json.dumps(data) == before
    with pytest.raises(InvalidArgumentError, match="same id") as err:
        read_records([{"prompt": "a", "id": 1}, {"prompt": "b"}])
    assert err.value.argument == "data"
    with pytest.raises(InvalidArgumentError, match="no records"):
        read_records([])


# --- the plan ----------------------------------------------------------------------------------------
keys = st.lists(st.one_of(st.none(), st.tuples(st.booleans(), st.integers(1, 50))), max_size=40)


@settings(max_examples=60, deadline=None)
@given(keys=keys, batch_size=st.integers(1, 7), world=st.integers(1, 5))
def test_batches_split_over_ranks_and_merged_give_every_record_once_in_order(keys, batch_size, world):
    batches = batch_records(keys, batch_size)
    shares = [rank_share(len(batches), rank, world) for rank in range(world)]
    assert sorted(b for share in shares for b in share) == list(range(len(batches)))  # each batch in one rank
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    positions = [p for share in shares for b in share for p in batches[b]]
    assert sorted(positions) == [i for i, key in enumerate(keys) if key is not None]  # merged: each record once
    for batch in batches:
        assert 0 < len(batch) <= batch_size and len({keys[i][0] for i in batch}) == 1  # forced or not, never both
    for forced in (True, False):  # longest first, ties in input order
        order = [i for batch in batches for i in batch if keys[i][0] is forced]
        assert order == sorted(order, key=lambda i: (-keys[i][1], i))


# --- in-process runs ---------------------------------------------------------------------------------
def test_dataset_run_gives_each_record_its_attribute_result_and_lists_bad_records(tiny_llama, tmp_path):
    data = make_records()
    run = genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", **SETTINGS)
    assert (run.records, run.done, run.failed, run.pending, run.ran) == (12, 10, 2, 0, 10)
    manifest = json.loads((tmp_path / "out" / dataset_files.MANIFEST).read_text())
    assert manifest["complete"] and manifest["counts"]["batches"] == 4 and manifest["processes"] == 1
    reasons = {f["id"]: f["reason"] for f in manifest["failures"]}
    assert reasons["empty"] == "the prompt is empty" and "too long for the model" in reasons["long"]
    assert manifest["provenance"]["method"] == "saliency"
    out = FeatureAttributionOutput.load(tmp_path / "out")
    assert out.provenance.storage["dataset"]["record_ids"] == [f"r{i}" for i in range(10)]  # input order
    for record, seq in zip(data, out):
        alone = tiny_llama.attribute(record["prompt"], record.get("target"), method="saliency", max_new_tokens=3)
        assert seq.tokens == alone.sequences[0].tokens
        # batch composition changes float rounding at most
        assert seq.scores.nan_to_num().sub(alone.sequences[0].scores.nan_to_num()).abs().max() < 1e-5
    assert sum(len(s.tokens) - s.prompt_length for s in out) == manifest["counts"]["target_tokens"]


def test_strict_mode_raises_before_any_work(tiny_llama, tmp_path):
    with pytest.raises(InvalidArgumentError, match="'empty': the prompt is empty") as err:
        genattrib.attribute_dataset(tiny_llama, make_records(), tmp_path / "out", strict=True, **SETTINGS)
    assert err.value.argument == "data" and not (tmp_path / "out").exists()


def test_a_record_attribute_rejects_fails_alone(tiny_llama, tmp_path, monkeypatch):
    original = AttributionModel.attribute

    def attribute(self, inputs, *args, **kwargs):
        if any("fox" in p for p in inputs):
            raise InvalidArgumentError("inputs", "no foxes", "leave out the fox")
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(AttributionModel, "attribute", attribute)
    run = genattrib.attribute_dataset(tiny_llama, make_records(), tmp_path / "out", **SETTINGS)
    failures = json.loads((tmp_path / "out" / dataset_files.MANIFEST).read_text())["failures"]
    foxes = [f"r{i}" for i, r in enumerate(make_records()[:10]) if "fox" in r["prompt"]]
    assert foxes and sorted(f["id"] for f in failures if "no foxes" in f["reason"]) == sorted(foxes)
    assert run.done == 10 - len(foxes)
    ids = FeatureAttributionOutput.load(tmp_path / "out").provenance.storage["dataset"]["record_ids"]
    assert ids == [f"r{i}" for i in range(10) if f"r{i}" not in foxes]


def test_bad_options_and_foreign_folders_raise_before_any_work(tiny_llama, tmp_path):
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "a", method="no_such_method")
    assert err.value.argument == "method"
    (tmp_path / "s").write_text("a file")
    with pytest.raises(InvalidArgumentError, match="is a file") as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "a", stream_to=tmp_path / "s")
    assert err.value.argument == "stream_to"
    with pytest.raises(InvalidArgumentError, match="sets this itself") as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "a", target=" c")
    assert err.value.argument == "target"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="other files") as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "b", max_new_tokens=2)
    assert err.value.argument == "out_dir"
    genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "c", max_new_tokens=2, show_progress=False)
    with pytest.raises(InvalidArgumentError, match="differs in: options.max_new_tokens: 2 -> 3") as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "c", max_new_tokens=3)


class Interrupted(KeyboardInterrupt):
    """Stands for Ctrl-C in the middle of a run."""


def test_interrupted_run_resumes_and_equals_an_uninterrupted_run(tiny_llama, tmp_path, monkeypatch):
    data = make_records()
    reference = genattrib.attribute_dataset(tiny_llama, data, tmp_path / "ref", **SETTINGS).load()
    original, calls = AttributionModel.attribute, []

    def attribute(self, *args, **kwargs):
        if len(calls) == 2:
            raise Interrupted
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AttributionModel, "attribute", attribute)
    with pytest.raises(Interrupted):
        genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", **SETTINGS)
    assert dataset_files.finished_batches(tmp_path / "out") == {0, 1}
    with pytest.raises(InvalidArgumentError, match="incomplete"):
        FeatureAttributionOutput.load(tmp_path / "out")
    monkeypatch.setattr(AttributionModel, "attribute", original)
    (tmp_path / "out" / "shards" / ".batch-000002.safetensors.99.tmp").write_bytes(b"half a shard")
    run = genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", **SETTINGS)
    first_two = sum(
        len(s["records"]) for s in json.loads((tmp_path / "ref" / "manifest.json").read_text())["shards"][:2]
    )
    assert run.ran == 10 - first_two and run.done == 10
    assert not [p for p in (tmp_path / "out" / "shards").iterdir() if p.name.startswith(".")]
    assert same_records(run.load(), reference)


_KILLED_SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    import genattrib
    from genattrib.models import AttributionModel
    original, seen = AttributionModel.attribute, []
    def attribute(self, *args, **kwargs):
        if len(seen) == 2:
            os._exit(9)  # as if killed: no cleanup, no finally blocks, no atexit
        seen.append(1)
        return original(self, *args, **kwargs)
    AttributionModel.attribute = attribute
    genattrib.attribute_dataset(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], **json.loads(sys.argv[4]))
    """
)


# --- separate processes ------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, GENATTRIB_TYPECHECK="0", PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")


def test_killed_process_leaves_a_folder_that_resumes(saved_model, tmp_path):
    data, folder = make_records(), tmp_path / "out"
    options = {k: v for k, v in SETTINGS.items() if k != "show_progress"}
    model = genattrib.load_model(saved_model)
    reference = genattrib.attribute_dataset(model, data, tmp_path / "ref", **SETTINGS).load()
    command = [sys.executable, "-c", _KILLED_SCRIPT, str(saved_model), json.dumps(data), str(folder)]
    proc = subprocess.run([*command, json.dumps(options)], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 9, proc.stderr
    assert dataset_files.finished_batches(folder) == {0, 1}
    run = genattrib.attribute_dataset(model, data, folder, **SETTINGS)
    assert 0 < run.ran < 10 and run.done == 10
    assert same_records(run.load(), reference)


def test_storage_options_reach_every_call(tiny_llama, tmp_path):
    run = genattrib.attribute_dataset(tiny_llama, make_records(4), tmp_path / "out", top_k_scores=2, **SETTINGS)
    out = run.load()
    assert run.done == 4 and all(s.sparse_scores is not None and s.sparse_scores.k == 2 for s in out)
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "bad", granular_budget_mb=-1)
    assert err.value.argument == "granular_budget_mb"
