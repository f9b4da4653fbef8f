"""Options of ``attribute`` / ``attribute-dataset`` on the tiny model (no fakes): the sampling
flags reach generation (and ``--top-k`` is not the storage ``top_k_scores``), ``sources_include_generated``
without ``sources`` is refused before any work, the dataset command's ``--explain``, ``--sources``
and ``--stream-to`` run, and a changed dataset call names each option that differs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tolerance import assert_same_resumed

import genattrib
from genattrib import FeatureAttributionOutput, InvalidArgumentError
from genattrib.cli import main
from genattrib.methods import method_class
from genattrib.models import AttributionModel

PROMPT = "The capital of France is Paris. The quick brown fox jumps."


def _attribute(saved_model: Path, folder: Path, name: str, *flags: str) -> FeatureAttributionOutput:
    path = folder / f"{name}.json"
    argv = ["attribute", PROMPT, "--model", str(saved_model), "--max-new-tokens", "6", "--seed", "3"]
    assert main([*argv, "--no-show", "--save", str(path), *flags]) == 0
    return FeatureAttributionOutput.load(path)


def test_sampling_flags_reach_generation(saved_model, tmp_path):
    sampled = _attribute(
        saved_model, tmp_path, "s", "--do-sample", "--temperature", "0.7", "--top-p", "0.9", "--top-k", "3"
    )
    config = sampled.provenance.generation_config
    assert (config["do_sample"], config["temperature"], config["top_p"], config["top_k"]) == (True, 0.7, 0.9, 3)
    assert sampled.provenance.storage["top_k_scores"] is None and sampled.sequences[0].sparse_scores is None
    greedy = _attribute(saved_model, tmp_path, "g")
    top1 = _attribute(saved_model, tmp_path, "t", "--do-sample", "--top-k", "1")  # sampling the likeliest = greedy
    assert "do_sample" not in greedy.provenance.generation_config
    assert top1.sequences[0].generated_text == greedy.sequences[0].generated_text
    hot = [
        _attribute(saved_model, tmp_path, f"h{seed}", "--do-sample", "--temperature", "50", "--seed", str(seed))
        for seed in (1, 2, 3)
    ]
    assert {seq.sequences[0].generated_text for seq in hot} != {greedy.sequences[0].generated_text}
    kept = _attribute(saved_model, tmp_path, "k", "--top-k-scores", "2")
    assert kept.provenance.storage["top_k_scores"] == 2 and kept.sequences[0].sparse_scores.k == 2
    assert "top_k" not in kept.provenance.generation_config


def test_sources_include_generated_without_sources_is_refused_before_any_work(tiny_llama, tmp_path, monkeypatch):
    def no_generation(*args, **kwargs):
        raise AssertionError("generation ran")

    monkeypatch.setattr(type(tiny_llama.model), "generate", no_generation)
    with pytest.raises(InvalidArgumentError) as err:
        tiny_llama.attribute(PROMPT, sources_include_generated=True, max_new_tokens=3)
    assert err.value.argument == "sources_include_generated" and "sources='sentences'" in err.value.fix
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.attribute_dataset(tiny_llama, [PROMPT], tmp_path / "d", sources_include_generated=True)
    assert err.value.argument == "sources_include_generated" and not (tmp_path / "d").exists()


def test_dataset_command_runs_with_explain_sources_and_stream_to(saved_model, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(f'{{"prompt": "{PROMPT}", "target": " It is. It runs."}}\n')
    argv = ["attribute-dataset", str(data), "--out", str(tmp_path / "o"), "--model", str(saved_model)]
    argv += ["--method", "occlusion", "--explain", "sentences", "--sources", "sentences", "--no-progress"]
    assert main([*argv, "--sources-include-generated", "--stream-to", str(tmp_path / "rows")]) == 0
    [seq] = FeatureAttributionOutput.load(tmp_path / "o").sequences
    assert seq.num_steps == 2  # --explain sentences: one row per generated sentence
    spans = [tuple(span) for span in seq.source_spans]
    assert len(spans) == 4 and spans[1][1] == seq.prompt_length  # two prompt sentences, two generated
    assert seq.scores.shape == (2, len(seq.tokens))
    assert list((tmp_path / "rows").iterdir()) == []  # the batch's stream is gone once its shard is written


def test_a_changed_dataset_call_names_each_option_and_its_values(tiny_llama, tmp_path):
    genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "c", max_new_tokens=2, show_progress=False)
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.attribute_dataset(tiny_llama, ["a b"], tmp_path / "c", max_new_tokens=3, seed=4)
    text = " ".join(str(err.value).split())
    assert "differs in: options.max_new_tokens: 2 -> 3; options.seed: (not set) -> 4;" in text
    assert err.value.argument == "out_dir"
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.attribute_dataset(tiny_llama, ["a c"], tmp_path / "c", method="occlusion", max_new_tokens=2)
    text = " ".join(str(err.value).split())
    assert 'method: "saliency" -> "occlusion"' in text and "records (the data differ" in text


def test_a_dataset_batch_interrupted_mid_way_resumes_at_its_row(tiny_llama, tmp_path, monkeypatch):
    """With stream_to, Ctrl-C inside a batch keeps the rows already done: the rerun attributes
    only the others, and the result is the uninterrupted one."""
    data = [{"prompt": PROMPT, "target": " It is. It runs on and on."}, {"prompt": "Once upon", "target": " a time"}]
    options = {"method": "saliency", "max_rows": 2, "batch_size": 2, "show_progress": False}
    cls, count = method_class("saliency"), {"batches": 0, "at": None}
    original = cls.attribute

    def attribute(self, batch, forward, attributed_fn):
        if count["at"] is not None and count["batches"] >= count["at"]:
            raise KeyboardInterrupt
        count["batches"] += 1
        return original(self, batch, forward, attributed_fn)

    monkeypatch.setattr(cls, "attribute", attribute)
    reference = genattrib.attribute_dataset(tiny_llama, data, tmp_path / "ref", **options).load()
    total = count["batches"]
    assert total >= 4
    count.update(batches=0, at=3)
    with pytest.raises(genattrib.RunInterrupted, match="0 of 2 records saved"):
        genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", stream_to=tmp_path / "rows", **options)
    assert [p.name for p in (tmp_path / "rows").iterdir()] == ["batch-000000"]
    count.update(batches=0, at=None)
    calls = []
    monkeypatch.setattr(AttributionModel, "attribute", _counting(AttributionModel.attribute, calls))
    run = genattrib.attribute_dataset(tiny_llama, data, tmp_path / "out", stream_to=tmp_path / "rows", **options)
    assert calls == [tmp_path / "rows" / "batch-000000"]  # the batch resumed from its own stream
    assert run.done == 2 and count["batches"] == total - 3  # only the rows not streamed before
    assert_same_resumed(run.load(), reference)
    assert list((tmp_path / "rows").iterdir()) == []


def _counting(method, calls):
    def wrapped(self, *args, **kwargs):
        calls.append(kwargs.get("stream_to"))
        return method(self, *args, **kwargs)

    return wrapped
