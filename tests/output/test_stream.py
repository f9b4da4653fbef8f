"""attribute(..., stream_to=folder): shards written batch by batch, resume after an interruption,
lazy loading, and the errors of a wrong folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib.output.stream as stream_module
from genattrib import FeatureAttributionOutput, InvalidArgumentError
from genattrib.methods import method_class
from genattrib.models.results.storage import VOLATILE

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["The capital of France is", "Once upon a time"]
CONTINUATIONS = [" Paris. The capital of Italy is Rome.", " there was a little model"]
SETTINGS = {"method": "saliency", "max_rows": 2}  # several small batches


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash in the middle of a run."""


def same_result(a: FeatureAttributionOutput, b: FeatureAttributionOutput) -> bool:
    """Scores, tokens and step scores equal, and the provenance but for timings, devices and storage."""

    def stable(out: FeatureAttributionOutput) -> dict:
        return {k: v for k, v in out.provenance.to_dict().items() if k not in VOLATILE}

    return len(a) == len(b) and all(x.equals(y) for x, y in zip(a, b)) and stable(a) == stable(b)


@pytest.fixture
def count_batches(monkeypatch):
    """Counts the batches Saliency attributes; ``state["fail_after"] = k`` raises at batch k + 1."""
    cls = method_class("saliency")
    original = cls.attribute
    state = {"batches": 0, "fail_after": None}

    def attribute(self, batch, forward, attributed_fn):
        if state["fail_after"] is not None and state["batches"] >= state["fail_after"]:
            raise Interrupted
        state["batches"] += 1
        return original(self, batch, forward, attributed_fn)

    monkeypatch.setattr(cls, "attribute", attribute)
    return state


def test_streamed_run_equals_the_in_memory_run(tiny_llama, tmp_path, count_batches):
    plain = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS)
    batches = count_batches["batches"]
    streamed = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    assert same_result(streamed, plain)
    assert streamed.provenance.work["backward_rows"] == plain.provenance.work["backward_rows"]
    assert streamed.provenance.storage["stream_to"] == str(tmp_path / "run")
    index = json.loads((tmp_path / "run" / "index.json").read_text())
    assert index["complete"] and len(index["shards"]) == batches > 1
    rows = sorted((int(j), r) for shard in index["shards"] for j, rs in shard["rows"].items() for r in rs)
    assert rows == [(j, r) for j, seq in enumerate(plain.sequences) for r in range(seq.num_steps)]
    assert index["fingerprint"]["prompts"] == PROMPTS and index["fingerprint"]["method"] == "saliency"
    assert [s["positions"] for s in index["sequences"]] == [len(s.tokens) for s in plain.sequences]
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["index.json", "result.safetensors"] + [f"shard-{i:05d}.safetensors" for i in range(batches)]
    loaded = FeatureAttributionOutput.load(tmp_path / "run")
    assert loaded.equals(streamed)


def test_interrupted_run_resumes_and_equals_an_uninterrupted_run(tiny_llama, tmp_path, count_batches):
    reference = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS)
    total_batches, total_rows = count_batches["batches"], reference.provenance.work["backward_rows"]
    assert total_batches >= 4
    count_batches.update(batches=0, fail_after=3)
    with pytest.raises(Interrupted):
        tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    index = json.loads((tmp_path / "run" / "index.json").read_text())
    written = sum(len(rows) for shard in index["shards"] for rows in shard["rows"].values())
    assert len(index["shards"]) == 3 and not index["complete"] and 0 < written < total_rows
    with pytest.raises(InvalidArgumentError, match="incomplete") as err:
        FeatureAttributionOutput.load(tmp_path / "run")
    assert "re-run the same" in err.value.fix

    count_batches.update(batches=0, fail_after=None)
    resumed = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    assert count_batches["batches"] == total_batches - 3  # the written batches are not run again
    assert resumed.provenance.work["backward_rows"] == total_rows - written
    assert resumed.provenance.work["resumed_rows"] == written
    assert same_result(resumed, reference)
    assert FeatureAttributionOutput.load(tmp_path / "run").equals(resumed)

    count_batches.update(batches=0)
    again = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    assert count_batches["batches"] == 0 and again.provenance.work["backward_rows"] == 0
    assert same_result(again, reference)


def test_resume_with_other_batch_settings_runs_only_the_missing_rows(tiny_llama, tmp_path, count_batches):
    reference = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS)
    total_rows = reference.provenance.work["backward_rows"]
    count_batches.update(batches=0, fail_after=2)
    with pytest.raises(Interrupted):
        tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    count_batches.update(fail_after=None)
    resumed = tiny_llama.attribute(
        PROMPTS, CONTINUATIONS, method="saliency", max_rows=64, batch_size=1, stream_to=tmp_path / "run"
    )
    assert resumed.provenance.work["resumed_rows"] > 0
    assert resumed.provenance.work["backward_rows"] == total_rows - resumed.provenance.work["resumed_rows"]
    for a, b in zip(resumed, reference):  # batch composition changes float rounding at most
        assert_close_to_scale(a.scores, b.scores, floor=TINY_MODEL, what="resumed vs one run")


_KILLED_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import genattrib
    from genattrib.methods import method_class
    from tiny import make_model, make_tokenizer
    tok = make_tokenizer()
    model = genattrib.load_model((make_model("llama", tok), tok))
    cls = method_class("saliency")
    original, seen = cls.attribute, []
    def attribute(self, batch, forward, fn):
        if len(seen) == int(sys.argv[3]):
            os._exit(9)  # as if killed: no cleanup, no finally blocks, no atexit
        seen.append(1)
        return original(self, batch, forward, fn)
    cls.attribute = attribute
    model.attribute({prompts!r}, {continuations!r}, method="saliency", max_rows=2, stream_to=sys.argv[2])
    """
).format(prompts=PROMPTS, continuations=CONTINUATIONS)


def test_killed_process_leaves_a_folder_that_resumes(tiny_llama, tmp_path, count_batches):
    reference = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS)
    folder = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SCRIPT, str(Path(__file__).resolve().parents[1] / "helpers"), str(folder), "2"],
        capture_output=True,
        text=True,
        env=dict(os.environ, GENATTRIB_TYPECHECK="0", PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    assert proc.returncode == 9, proc.stderr
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert len(json.loads((folder / "index.json").read_text())["shards"]) == 2
    count_batches.update(batches=0)
    resumed = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=folder)
    assert resumed.provenance.work["resumed_rows"] > 0
    assert same_result(resumed, reference)


def test_loading_a_stream_folder_reads_shards_only_on_access(tiny_llama, tmp_path, monkeypatch):
    streamed = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    opened: list[str] = []
    real_open = stream_module.safe_open

    def spy(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(stream_module, "safe_open", spy)
    loaded = FeatureAttributionOutput.load(tmp_path / "run")
    assert opened == []
    first = loaded.sequences[0]
    row = first.score_row(1)
    assert len(opened) == 1 and opened[0].startswith("shard-")
    torch.testing.assert_close(row, streamed.sequences[0].scores[1], equal_nan=True, rtol=0, atol=0)  # read back: exact
    shards_of_first = {f for f, _ in first.__dict__["scores"].parts}
    opened.clear()
    first.scores  # noqa: B018 - materialises this sequence's rows, and only these
    assert set(opened) == shards_of_first  # the shards holding rows of this sequence, no other
    opened.clear()
    first.scores  # noqa: B018 - cached once read
    assert opened == []
    assert loaded.equals(streamed)


def test_streamed_top_k_and_granular_results(tiny_llama, tmp_path):
    top = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, top_k_scores=3)
    top_streamed = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, top_k_scores=3, stream_to=tmp_path / "top")
    assert same_result(top_streamed, top)
    assert top_streamed.sequences[0].sparse_scores.equals(top.sequences[0].sparse_scores)
    loaded = FeatureAttributionOutput.load(tmp_path / "top")
    assert loaded.equals(top_streamed)
    full = tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, keep_granular=True)
    full_streamed = tiny_llama.attribute(
        PROMPTS, CONTINUATIONS, **SETTINGS, keep_granular=True, stream_to=tmp_path / "granular"
    )
    assert full_streamed.sequences[0].granular_scores_shape == full.sequences[0].granular_scores.shape
    assert same_result(full_streamed, full)
    saved = full_streamed.save(tmp_path / "granular.safetensors")  # a streamed result saves whole
    assert FeatureAttributionOutput.load(saved).equals(full_streamed)


def test_generated_continuations_stream_and_resume(tiny_llama, tmp_path, count_batches):
    reference = tiny_llama.attribute(PROMPTS, max_new_tokens=6, **SETTINGS)
    count_batches.update(batches=0, fail_after=1)
    with pytest.raises(Interrupted):
        tiny_llama.attribute(PROMPTS, max_new_tokens=6, **SETTINGS, stream_to=tmp_path / "gen")
    count_batches.update(fail_after=None)
    resumed = tiny_llama.attribute(PROMPTS, max_new_tokens=6, **SETTINGS, stream_to=tmp_path / "gen")
    assert resumed.provenance.work["resumed_rows"] > 0
    assert same_result(resumed, reference)


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"method": "input_x_gradient"}, "method"),
        ({"seed": 7}, "seed"),
        ({"top_k_scores": 2}, "top_k_scores"),
        ({"attributed_fn": "probability"}, "attributed_fn"),
        ({"explain": "sentences"}, "explain"),
    ],
)
def test_a_different_call_on_the_same_folder_is_refused(tiny_llama, tmp_path, change, differs):
    tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(InvalidArgumentError, match="different attribute") as err:
        tiny_llama.attribute(PROMPTS, CONTINUATIONS, **{**SETTINGS, **change}, stream_to=tmp_path / "run")
    assert err.value.argument == "stream_to" and differs in str(err.value)
    assert "new or empty folder" in err.value.fix
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_other_prompts_on_the_same_folder_are_refused(tiny_llama, tmp_path):
    tiny_llama.attribute(PROMPTS, CONTINUATIONS, **SETTINGS, stream_to=tmp_path / "run")
    with pytest.raises(InvalidArgumentError, match="prompts"):
        tiny_llama.attribute(PROMPTS[:1], CONTINUATIONS[:1], **SETTINGS, stream_to=tmp_path / "run")
    with pytest.raises(InvalidArgumentError, match="continuation"):
        tiny_llama.attribute(PROMPTS, [" Rome.", " time"], **SETTINGS, stream_to=tmp_path / "run")


def test_changed_generation_is_refused_before_attributing(tiny_llama, tmp_path, count_batches, monkeypatch):
    tiny_llama.attribute(PROMPTS, max_new_tokens=4, **SETTINGS, stream_to=tmp_path / "gen")
    import genattrib.models.pipeline.stages as stages

    real = stages.generate_traces

    def other(*args, **kwargs):  # as if sampling without a seed gave another continuation
        traces = real(*args, **kwargs)
        for t in traces:
            t.generated_ids = (t.generated_ids + 1) % 50 + 10
        return traces

    monkeypatch.setattr(stages, "generate_traces", other)
    count_batches.update(batches=0)
    with pytest.raises(InvalidArgumentError, match="differ from those streamed") as err:
        tiny_llama.attribute(PROMPTS, max_new_tokens=4, **SETTINGS, stream_to=tmp_path / "gen")
    assert err.value.argument == "stream_to" and "seed=" in err.value.fix
    assert count_batches["batches"] == 0


def test_stream_to_a_file_or_a_foreign_folder_is_refused(tiny_llama, tmp_path):
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(InvalidArgumentError, match="is a file") as err:
        tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], stream_to=tmp_path / "result.json")
    assert err.value.argument == "stream_to"
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"jpg")
    with pytest.raises(InvalidArgumentError, match="no genattrib index.json"):
        tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], stream_to=tmp_path / "photos")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["cat.jpg"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], stream_to=tmp_path / "broken")


def test_empty_folder_is_used_and_bad_folders_do_not_load(tiny_llama, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], stream_to=str(tmp_path / "empty"))
    assert FeatureAttributionOutput.load(tmp_path / "empty").equals(out)
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidArgumentError, match="without a genattrib index.json") as err:
        FeatureAttributionOutput.load(tmp_path / "plain")
    assert err.value.argument == "path"


def test_stream_does_not_mutate_the_arguments(tiny_llama, tmp_path):
    prompts, continuations = list(PROMPTS), list(CONTINUATIONS)
    folder = str(tmp_path / "run")
    tiny_llama.attribute(prompts, continuations, **SETTINGS, stream_to=folder)
    assert prompts == PROMPTS and continuations == CONTINUATIONS and folder == str(tmp_path / "run")


def test_temporary_files_of_a_killed_write_are_ignored_and_removed(tiny_llama, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".index.json.123.tmp").write_text("{half")
    out = tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], **SETTINGS, stream_to=folder)
    (folder / ".shard-00009.safetensors.456.tmp").write_bytes(b"half")
    again = tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], **SETTINGS, stream_to=folder)
    assert same_result(again, out)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
