"""Completeness in the evaluation tables, ``genattrib evaluate``'s progress lines and time budget."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import genattrib
from genattrib.cli import main
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.evaluation.benchmark_result import BenchmarkResult
from genattrib.evaluation.completeness import UNCONVERGED_MARK, Completeness, completeness
from genattrib.evaluation.datasets import Example, load_dataset
from genattrib.evaluation.report import benchmark_table, summary_table
from genattrib.models.results.convergence import COMPLETENESS_TOLERANCE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from evaluation_table import markdown  # noqa: E402

PROMPTS = ["a b c d e f", "b c d e"]


def _render(table) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=250, color_system=None).print(table)
    return buffer.getvalue()


def _with_relative_error(out, ratio: float):
    """``out`` with every token's completeness_error set so that |error| / |F(x) - F(x')| = ratio."""
    sequences = []
    for seq in out.sequences:
        total = seq.scores.float().nan_to_num().flatten(1).sum(-1)
        error = total * ratio / (1 + ratio)  # total = delta + error, error = ratio * delta
        sequences.append(replace(seq, step_scores={**seq.step_scores, "completeness_error": error}))
    return replace(out, sequences=sequences)


@pytest.fixture(scope="module")
def ig_out(tiny_llama):
    return tiny_llama.attribute(PROMPTS, max_new_tokens=3, method="integrated_gradients", n_steps=8)


def test_path_method_has_a_figure_and_others_none(tiny_llama, ig_out):
    value = completeness(ig_out)
    assert value is not None and value.steps == sum(s.num_steps for s in ig_out.sequences)
    errors = torch.cat([s.step_scores["completeness_error"] for s in ig_out.sequences]).abs()
    assert value.worst <= float(errors.max()) / 1e-6 and value.median >= 0
    assert completeness(tiny_llama.attribute(PROMPTS, max_new_tokens=3, method="saliency")) is None


@settings(max_examples=25, deadline=None)
@given(ratio=st.floats(0.0, 20.0, allow_nan=False))
def test_relative_error_and_mark_follow_the_tolerance(ig_out, ratio):
    value = completeness(_with_relative_error(ig_out, ratio))
    assert value.median == pytest.approx(ratio, rel=1e-3, abs=1e-5)
    unconverged = ratio > COMPLETENESS_TOLERANCE * (1 + 1e-3)
    if ratio > COMPLETENESS_TOLERANCE * (1 + 1e-3) or ratio < COMPLETENESS_TOLERANCE * (1 - 1e-3):
        assert (UNCONVERGED_MARK in value.label()) is unconverged
        assert value.converged is not unconverged
        assert value.share_over == (1.0 if unconverged else 0.0)


def test_completeness_round_trips_through_json():
    value = Completeness(0.5, 2.0, 0.75, 12)
    assert Completeness.from_dict(json.loads(json.dumps(value.to_dict()))) == value
    assert Completeness.from_dict(None) is None
    assert Completeness(float("nan"), float("nan"), float("nan"), 0).label() == "–"


def test_benchmark_tables_show_completeness_dash_and_mark(tiny_llama, tmp_path, monkeypatch):
    import genattrib.evaluation.benchmark as bench

    real = bench.completeness

    def loud(out):  # IG as if unconverged: every token's error 3x its F(x) - F(x')
        return real(_with_relative_error(out, 3.0)) if out.provenance.method == "integrated_gradients" else real(out)

    res = genattrib.benchmark(
        tiny_llama,
        ["saliency", "integrated_gradients", "discretized_integrated_gradients"],
        PROMPTS,
        ["comprehensiveness"],
        max_new_tokens=2,
        method_kwargs={"integrated_gradients": {"n_steps": 4}, "discretized_integrated_gradients": {"n_anchors": 4}},
        n_bootstrap=50,
    )
    monkeypatch.setattr(bench, "completeness", loud)
    loud_res = genattrib.benchmark(
        tiny_llama,
        ["saliency", "integrated_gradients"],
        PROMPTS,
        ["comprehensiveness"],
        max_new_tokens=2,
        method_kwargs={"integrated_gradients": {"n_steps": 4}},
        n_bootstrap=50,
    )
    runs = {r.method: r for r in res.runs}
    assert runs["saliency"].completeness is None and runs["random"].completeness is None
    assert runs["integrated_gradients"].params["attributed_fn"] == "logprob"  # the target is part of the settings
    dig = runs["discretized_integrated_gradients"].completeness
    assert dig is not None and dig.steps == 4
    # console: the figure for the path methods, "–" for saliency, the mark on the unconverged row
    text = _render(benchmark_table(res))
    assert f"{dig.median:.3f}" in next(line for line in text.splitlines() if "discretized" in line)
    assert " – " in next(line for line in text.splitlines() if " saliency " in line)
    assert "completeness" in text
    loud_text = _render(benchmark_table(loud_res))
    ig_line = next(line for line in loud_text.splitlines() if "integrated_gradients" in line)
    assert f"integrated_gradients {UNCONVERGED_MARK}" in ig_line and f"3.000 {UNCONVERGED_MARK}" in ig_line
    assert UNCONVERGED_MARK not in next(line for line in loud_text.splitlines() if " saliency " in line)
    # JSON: per method, and back through load()
    data = json.loads(loud_res.save_json(tmp_path / "b.json").read_text())
    entry = {m["method"]: m["completeness"] for m in data["methods"]}
    assert entry["saliency"] is None and entry["integrated_gradients"]["median"] == pytest.approx(3.0, rel=1e-3)
    again = BenchmarkResult.load(tmp_path / "b.json")
    assert again.runs[1].completeness == loud_res.runs[1].completeness
    # HTML report and the Markdown table
    page = again.save_html(tmp_path / "b.html").read_text()
    assert f"integrated_gradients {UNCONVERGED_MARK}" in page and "completeness_error" in page
    table = markdown(data)
    assert f"| integrated_gradients {UNCONVERGED_MARK} |" in table and f"3.000 {UNCONVERGED_MARK} |" in table
    assert "| saliency | " in table and " | – | " in next(line for line in table.splitlines() if "saliency" in line)


def test_evaluate_result_table_shows_completeness(tiny_llama, ig_out):
    res = genattrib.evaluate(ig_out, ["comprehensiveness"], model=tiny_llama, n_bootstrap=50)
    assert Completeness.from_dict(res.info["completeness"]) == completeness(ig_out)
    assert f"{completeness(ig_out).median:.3f}" in _render(summary_table({"ig": res}))
    plain = genattrib.evaluate(
        tiny_llama.attribute(PROMPTS, max_new_tokens=2, method="saliency"), ["comprehensiveness"], model=tiny_llama
    )
    assert plain.info["completeness"] is None
    line = next(row for row in _render(summary_table({"sal": plain})).splitlines() if row.strip().startswith("sal"))
    assert line.rstrip().endswith("–")


def _patch_cli(monkeypatch, tiny_llama):
    monkeypatch.setattr(genattrib, "load_model", lambda source=None, **kw: tiny_llama)
    examples = [Example(p) for p in PROMPTS]
    monkeypatch.setattr("genattrib.evaluation.benchmark.load_dataset", lambda *a, **k: examples)


def test_evaluate_command_reports_each_method_on_stderr(monkeypatch, tiny_llama, tmp_path, capsys):
    _patch_cli(monkeypatch, tiny_llama)
    args = ["evaluate", "--methods", "saliency,integrated_gradients", "--metrics", "comprehensiveness"]
    args += ["--max-new-tokens", "2", "--method-param", "integrated_gradients.n_steps=4"]
    assert main(args + ["--json", str(tmp_path / "e.json"), "--html", str(tmp_path / "e.html")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert lines[0].startswith("[1/2] saliency running") and "elapsed 0:0" in lines[0]
    assert lines[1].startswith("[1/2] saliency done: 4 tokens attributed")
    assert lines[2].startswith("[2/2] integrated_gradients running")
    assert lines[3].startswith("[2/2] integrated_gradients done") and "completeness" in lines[3]
    assert all("elapsed" in line for line in lines) and len(lines) == 4


def test_time_budget_reaches_reagent_and_is_honoured(tiny_llama):
    # Without a budget these probes would run up to a million iterations.
    kwargs = {"reagent": {"max_steps": 10**6, "keep_top_n": 1, "stop_top_k": 1}}
    with pytest.warns(genattrib.errors.GenattribWarning, match="time_budget"):
        res = genattrib.benchmark(
            tiny_llama,
            ["saliency", "reagent"],
            PROMPTS,
            ["comprehensiveness"],
            max_new_tokens=2,
            method_kwargs=kwargs,
            n_bootstrap=50,
            time_budget=0.3,
        )
    runs = {r.method: r for r in res.runs}
    assert runs["reagent"].params["time_budget"] == 0.3 and "time_budget" not in runs["saliency"].params
    assert runs["reagent"].attribute_seconds < 30
    assert kwargs == {"reagent": {"max_steps": 10**6, "keep_top_n": 1, "stop_top_k": 1}}  # not mutated
    # a per-method setting wins over the evaluate-level budget
    res = genattrib.benchmark(
        tiny_llama,
        ["reagent"],
        PROMPTS[:1],
        ["comprehensiveness"],
        max_new_tokens=1,
        method_kwargs={"reagent": {"time_budget": 5.0, "max_steps": 2}},
        n_bootstrap=50,
        time_budget=0.3,
    )
    assert res.runs[0].params["time_budget"] == 5.0


@pytest.mark.parametrize("budget", ["0", "-1", "nan"])
def test_bad_time_budget_is_refused_before_the_model_loads(monkeypatch, capsys, budget):
    def fail(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(genattrib, "load_model", fail)
    assert main(["evaluate", "--methods", "reagent", "--time-budget", budget]) == 2
    assert "time_budget" in capsys.readouterr().err


@pytest.mark.parametrize("budget", [-1.0, 0.0, float("nan")])
def test_time_budget_argument_is_checked(tiny_llama, budget):
    with pytest.raises(InvalidArgumentError) as err:
        genattrib.benchmark(tiny_llama, ["reagent"], PROMPTS, time_budget=budget)
    assert err.value.argument == "time_budget"


def test_named_sets_join_with_a_comma():
    joined = load_dataset("wikitext,tellmewhy")
    assert joined == load_dataset("wikitext") + load_dataset("tellmewhy") and len(joined) == 42
    assert load_dataset("wikitext, tellmewhy", max_examples=32)[22:] == load_dataset("tellmewhy")[:10]
    with pytest.raises(InvalidArgumentError, match="mixes"):
        load_dataset("wikitext,longra")
    with pytest.raises(UnknownNameError, match="imdb"):
        load_dataset("wikitext,imdb")


def test_readme_evaluate_command_parses_and_gives_reagent_a_budget():
    import shlex

    from genattrib.cli import build_parser

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme[readme.index("genattrib evaluate --methods") :].split("```")[0]
    argv = shlex.split(block.replace("\\\n", " "))
    args = build_parser().parse_args(argv[1:])
    assert "reagent" in args.methods and args.time_budget is not None and args.time_budget <= 60
    assert args.max_examples is not None and args.max_examples <= 8
