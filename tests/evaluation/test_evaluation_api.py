"""genattrib.evaluate / benchmark / the evaluate command: API, errors, reports, datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genattrib
from genattrib.cli import main
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.evaluation.benchmark import distractor_mass
from genattrib.evaluation.datasets import Example, load_dataset
from genattrib.faithfulness.bootstrap import per_example_means, summarize

finite = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.integers(0, 10_000))
def test_bootstrap_interval_contains_the_mean_and_is_reproducible(values, seed):
    x = torch.tensor(values)
    a = summarize(x, None, "mean", n_resamples=300, seed=seed)
    b = summarize(x, None, "mean", n_resamples=300, seed=seed)
    assert a == b
    assert a.low - 1e-5 <= a.value <= a.high + 1e-5
    assert a.value == pytest.approx(float(x.mean()), rel=1e-5, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 5), st.floats(0.01, 5)), min_size=1, max_size=20), st.integers(0, 99))
def test_log_ratio_interval_contains_the_point(pairs, seed):
    method = torch.tensor([p[0] for p in pairs])
    random = torch.tensor([p[1] for p in pairs])
    s = summarize(method, random, "log_ratio", n_resamples=300, seed=seed)
    assert s.value == pytest.approx(float(torch.log(method.sum() / random.sum())), abs=1e-4)
    assert s.low - 1e-5 <= s.value <= s.high + 1e-5


def test_per_example_means_ignore_nan_steps():
    values = torch.tensor([1.0, float("nan"), 3.0, 5.0])
    assert per_example_means(values, torch.tensor([0, 0, 2, 2])).tolist() == [1.0, 4.0]


@pytest.fixture(scope="module")
def small_out(tiny_llama):
    return tiny_llama.attribute(["a b c d e f", "b c d e"], max_new_tokens=3, method="saliency")


def test_evaluate_reports_per_step_and_summary(tiny_llama, small_out, tmp_path):
    res = genattrib.evaluate(small_out, metrics=["comprehensiveness", "soft_ns"], model=tiny_llama, every=2)
    assert res.per_step["comprehensiveness"].shape == (4,)  # steps 0 and 2 of two sequences
    assert res.step.tolist() == [0, 2, 0, 2] and res.example.tolist() == [0, 0, 1, 1]
    assert res.summary["soft_ns"].n == 2 and "soft_ns" in res.random_per_step
    data = json.loads(res.save_json(tmp_path / "e.json").read_text())
    assert {r["metric"] for r in data["summary"]} == {"comprehensiveness", "soft_ns"}
    assert data["info"]["method"] == "saliency"


def test_evaluate_does_not_mutate_the_result(tiny_llama, small_out):
    before = [s.scores.clone() for s in small_out.sequences]
    genattrib.evaluate(small_out, metrics="all", model=tiny_llama)
    assert all(torch.equal(a.nan_to_num(7), s.scores.nan_to_num(7)) for a, s in zip(before, small_out.sequences))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"metrics": ["nope"]}, "metric"),
        ({"metrics": []}, "metrics"),
        ({"k": 120}, "k"),
        ({"every": 0}, "every"),
        ({"soft_normalization": "softmax"}, "soft_normalization"),
        ({"n_bootstrap": 0}, "n_bootstrap"),
        ({"baseline": "zero"}, "baseline"),
    ],
)
def test_bad_arguments_name_the_argument(tiny_llama, small_out, kwargs, argument):
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.evaluate(small_out, model=tiny_llama, **kwargs)
    assert err.value.argument == argument


def test_aggregated_results_and_missing_model_are_refused(tiny_llama, small_out):
    with pytest.raises(InvalidArgumentError, match="aggregated"):
        genattrib.evaluate(small_out.aggregate("words"), model=tiny_llama)
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.evaluate(small_out)  # a tiny model: genattrib cannot reload it by itself
    assert err.value.argument == "model"


def test_unit_level_results_are_refused(tiny_llama):
    units = tiny_llama.attribute("a b c", " d e. f g.", method="saliency", explain="sentences")
    with pytest.raises(InvalidArgumentError, match="units"):
        genattrib.evaluate(units, model=tiny_llama)


def test_benchmark_table_json_and_html(tiny_llama, tmp_path):
    prompts = ["a b c d e f", "b <c> d e", "f e d c b a"]
    res = genattrib.benchmark(
        tiny_llama,
        ["saliency", "occlusion"],
        prompts,
        ["comprehensiveness", "log_odds"],
        max_new_tokens=4,
        every=2,
        method_kwargs={"occlusion": {}},
        n_bootstrap=200,
    )
    assert res.methods == ["saliency", "occlusion", "random"]
    rows = res.rows()
    assert len(rows) == 3 * 2 and all(r["n"] == 3 for r in rows)
    assert res.best("log_odds") in ("saliency", "occlusion")
    # every method explained the same written tokens
    assert res.runs[0].tokens == res.runs[1].tokens == 12
    html = res.save_html(tmp_path / "r.html").read_text()
    assert html.count("<svg") == 2 and "<script" not in html and "default-src 'none'" in html
    data = json.loads(res.save_json(tmp_path / "r.json").read_text())
    assert {r["method"] for r in data["rows"]} == {"saliency", "occlusion", "random"}


def test_benchmark_refuses_bad_input_before_work(tiny_llama):
    with pytest.raises(UnknownNameError):
        genattrib.benchmark(tiny_llama, ["saliency", "nope"], ["a b"])
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.benchmark(tiny_llama, ["saliency"], ["a b"], method_kwargs={"occlusion": {}})
    assert err.value.argument == "method_kwargs"
    with pytest.raises(UnknownNameError):
        genattrib.benchmark(tiny_llama, ["saliency"], "imdb")


def test_html_report_escapes_method_and_model_names(tiny_llama, tmp_path):
    res = genattrib.benchmark(
        tiny_llama, ["saliency"], ["a b c d"], ["comprehensiveness"], max_new_tokens=2, n_bootstrap=50
    )
    res.info["model"] = "<script>alert(1)</script>"
    res.runs[0].method = "<b>x</b>"
    html = res.save_html(tmp_path / "x.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "<b>x</b>" not in html


def test_datasets_ship_with_their_origin():
    assert len(load_dataset("wikitext")) == 22 and len(load_dataset("tellmewhy")) == 20
    longra = load_dataset("longra")
    assert len(longra) >= 30 and all(e.target and e.distractor for e in longra)
    for e in longra:
        start, end = e.distractor
        assert e.prompt[start] == "(" and e.prompt[end - 1] == ")"
    readme = (Path(genattrib.__file__).parent / "data" / "README.md").read_text()
    assert "casszhao/ReAGent" in readme and "780977384e4c" in readme
    assert len(load_dataset("wikitext", max_examples=3)) == 3
    with pytest.raises(InvalidArgumentError):
        load_dataset([""])


def test_distractor_mass_counts_the_distractor_tokens(tiny_llama):
    prompt = "a b (c d e) f"
    out = tiny_llama.attribute(prompt, target=" a", method="saliency")
    seq = out.sequences[0]
    start, end = prompt.index("("), prompt.index(")") + 1
    inside = torch.tensor([s < end and e > start for s, e in seq.offsets[: seq.prompt_length]])
    scores = seq.scores.clone()
    scores[0, : seq.prompt_length] = inside.float()
    from dataclasses import replace

    out.sequences[0] = replace(seq, scores=scores)
    mass, share = distractor_mass(out, [Example(prompt, " a", (start, end))])
    assert mass.tolist() == [1.0]
    assert 0 < float(share[0]) < 1


def test_evaluate_command_writes_json_and_html(monkeypatch, tiny_llama, tmp_path, capsys):
    monkeypatch.setattr(genattrib, "load_model", lambda source=None, **kw: tiny_llama)
    monkeypatch.setattr(
        "genattrib.evaluation.datasets.load_dataset", lambda *a, **k: [Example("a b c d e f"), Example("b c d e")]
    )
    monkeypatch.setattr(
        "genattrib.evaluation.benchmark.load_dataset", lambda *a, **k: [Example("a b c d e f"), Example("b c d e")]
    )
    code = main(
        [
            "evaluate",
            "--methods",
            "saliency,integrated_gradients",
            "--metrics",
            "comprehensiveness,soft_ns",
            "--max-new-tokens",
            "3",
            "--method-param",
            "integrated_gradients.n_steps=4",
            "--json",
            str(tmp_path / "e.json"),
            "--html",
            str(tmp_path / "e.html"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "integrated_gradients" in printed and "95% interval" in printed
    data = json.loads((tmp_path / "e.json").read_text())
    assert [m["params"].get("n_steps") for m in data["methods"]][:2] == [None, 4]
    assert (tmp_path / "e.html").read_text().startswith("<!DOCTYPE html>")


def test_evaluate_command_rejects_a_malformed_method_param(capsys):
    assert main(["evaluate", "--methods", "saliency", "--method-param", "n_steps=4"]) == 2


@pytest.mark.default_model
def test_default_model_evaluation_is_finite_and_in_range(default_model):
    out = default_model.attribute("The capital of France is", target=" Paris", method="occlusion")
    res = genattrib.evaluate(out, metrics=["soft_ns", "comprehensiveness", "sufficiency"])  # model reloaded by name
    assert 0.0 <= float(res.per_step["soft_ns"][0]) <= 1.0
    assert -1.0 <= float(res.per_step["comprehensiveness"][0]) <= 1.0
    assert res.info["model"] == default_model.name


def test_to_pandas_or_a_clear_missing_dependency_error(tiny_llama):
    res = genattrib.benchmark(
        tiny_llama, ["saliency"], ["a b c d"], ["comprehensiveness"], max_new_tokens=2, n_bootstrap=50
    )
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(genattrib.errors.MissingDependencyError, match="pandas"):
            res.to_pandas()
    else:
        frame = res.to_pandas()
        assert list(frame["method"]) == ["saliency", "random"]


def test_benchmark_checkpoints_after_each_method(tiny_llama, tmp_path):
    seen, sizes = [], []
    path = tmp_path / "partial.json"

    def done(run):
        seen.append(run.method)
        sizes.append(len(json.loads(path.read_text())["methods"]))

    genattrib.benchmark(
        tiny_llama,
        ["saliency", "occlusion"],
        ["a b c d"],
        ["comprehensiveness"],
        max_new_tokens=2,
        n_bootstrap=50,
        checkpoint=path,
        on_method_done=done,
    )
    assert seen == ["saliency", "occlusion"] and sizes == [1, 2]
    assert json.loads(path.read_text())["info"]["partial"] is True


def test_saved_benchmark_reloads_for_tables_and_reports(tiny_llama, tmp_path):
    from genattrib.evaluation.benchmark_result import BenchmarkResult

    res = genattrib.benchmark(
        tiny_llama,
        ["saliency", "occlusion"],
        ["a b c d e", "c d e f"],
        ["comprehensiveness", "soft_nc"],
        max_new_tokens=2,
        n_bootstrap=50,
    )
    again = BenchmarkResult.load(res.save_json(tmp_path / "b.json"))
    assert again.rows() == res.rows()
    assert again.best("soft_nc") == res.best("soft_nc")
    assert again.save_html(tmp_path / "b.html").read_text().count("<svg") == 2


@pytest.mark.default_model
def test_shipped_longra_set_is_what_the_builder_keeps(default_model):
    from genattrib.evaluation.longra import build_longra

    shipped = json.loads((Path(genattrib.__file__).parent / "data" / "longra.json").read_text())
    assert build_longra(default_model) == shipped
