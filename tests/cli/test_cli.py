"""The ``genattrib`` command line (genattrib.cli), with the model layer replaced by fakes."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import genattrib
from genattrib.cli import main, parse_param, parse_value
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.output import FeatureAttributionOutput, Provenance, SequenceAttribution

REPO = Path(__file__).resolve().parents[2]


def handmade_output() -> FeatureAttributionOutput:
    tokens = ["The", " capital", " of", " France", " is", " Paris", "."]
    p, n = 5, len(tokens)
    scores = torch.arange(2 * n, dtype=torch.float32).reshape(2, n) / 10
    for j in range(2):
        scores[j, p + j :] = float("nan")
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=scores,
        step_scores={"probability": torch.tensor([0.9, 0.6])},
        generated_text=" Paris.",
    )
    return FeatureAttributionOutput([seq], Provenance(model_name="fake", method="saliency", attributed_fn="logprob"))


class FakeModel:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def attribute(self, inputs: Any, target: str | None = None, **kwargs: Any) -> FeatureAttributionOutput:
        self.calls.append((inputs, {"target": target, **kwargs}))
        return handmade_output()


@pytest.fixture
def fake_load(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace genattrib.load_model; the dict records the load call and the model."""
    record: dict[str, Any] = {"model": FakeModel()}

    def load_model(source: str | None = None, **kwargs: Any) -> FakeModel:
        record["load"] = (source, kwargs)
        return record["model"]

    monkeypatch.setattr(genattrib, "load_model", load_model, raising=False)
    return record


# --- value parsing --------------------------------------------------------------------------
def test_parse_value_types() -> None:
    assert parse_value("20") == 20 and isinstance(parse_value("20"), int)
    assert parse_value("0.5") == 0.5 and parse_value("1e-3") == 0.001
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("none") is None
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("zeros") == "zeros"
    assert parse_param("n_steps=20") == ("n_steps", 20)
    assert parse_param("sep==") == ("sep", "=")


@given(st.integers())
def test_parse_value_round_trips_ints(value: int) -> None:
    assert parse_value(str(value)) == value


# --- attribute -------------------------------------------------------------------------------
def test_attribute_passes_options_and_typed_params(
    fake_load: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "attribute",
            "The capital of France is",
            "--model",
            "some/model",
            "--method",
            "integrated_gradients",
            "--attributed-fn",
            "probability",
            "--step-scores",
            "probability,entropy",
            "--max-new-tokens",
            "8",
            "--dtype",
            "bfloat16",
            "--device-map",
            "auto",
            "--seed",
            "3",
            "--target",
            " Paris.",
            "--param",
            "n_steps=20",
            "--param",
            "internal_batch_size=0.5",
            "--param",
            "multiply_by_inputs=false",
            "--param",
            "baseline=zeros",
        ]
    )
    assert code == 0
    source, load_kwargs = fake_load["load"]
    assert source == "some/model"
    assert load_kwargs == {"method": "integrated_gradients", "dtype": torch.bfloat16, "device_map": "auto"}
    [(inputs, kwargs)] = fake_load["model"].calls
    assert inputs == "The capital of France is"
    assert kwargs == {
        "target": " Paris.",
        "attributed_fn": "probability",
        "step_scores": ["probability", "entropy"],
        "max_new_tokens": 8,
        "seed": 3,
        "n_steps": 20,
        "internal_batch_size": 0.5,
        "multiply_by_inputs": False,
        "baseline": "zeros",
    }
    assert type(kwargs["n_steps"]) is int
    shown = capsys.readouterr().out
    assert "·Paris" in shown and "saliency" in shown


def test_attribute_defaults_leave_library_defaults_alone(fake_load: dict[str, Any]) -> None:
    assert main(["attribute", "Hello", "--no-show"]) == 0
    assert fake_load["load"] == (None, {})
    assert fake_load["model"].calls == [("Hello", {"target": None})]


def test_attribute_passes_units_and_sources(fake_load: dict[str, Any]) -> None:
    args = ["attribute", "Hi", "--no-show", "--explain", "sentences", "--sources", "paragraphs"]
    assert main([*args, "--sources-include-generated"]) == 0
    [(_, kwargs)] = fake_load["model"].calls
    assert (kwargs["explain"], kwargs["sources"], kwargs["sources_include_generated"]) == (
        "sentences",
        "paragraphs",
        True,
    )
    assert main(["attribute", "Hi", "--explain", "chapters"]) == 2


def test_sampling_flags_go_to_generation_and_top_k_scores_to_storage(fake_load: dict[str, Any]) -> None:
    argv = ["attribute", "Hi", "--no-show", "--do-sample", "--temperature", "0.7", "--top-p", "0.9", "--top-k", "5"]
    assert main([*argv, "--top-k-scores", "7"]) == 0
    [(_, kwargs)] = fake_load["model"].calls
    config = kwargs["generation_config"]
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 0.7, 0.9, 5)
    assert kwargs["top_k_scores"] == 7  # the K largest scores of each row
    assert not {"do_sample", "temperature", "top_p"} & set(kwargs)


def test_param_help_says_where_other_keys_go(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("attribute", "attribute-dataset"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "a key that is not a parameter of the method goes to generation" in text
        assert "--top-k-scores K keep the K largest |scores| of each row" in text
    assert main(["attribute", "--help"]) == 0
    assert "--top-k K with --do-sample: sample among the K likeliest tokens" in " ".join(
        capsys.readouterr().out.split()
    )


def test_attribute_dataset_passes_units_sources_stream_and_top_k_scores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def attribute_dataset(model: Any, data: Any, out_dir: Any, method: Any = None, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise InvalidArgumentError("data", "stop here", "nothing")

    monkeypatch.setattr(genattrib, "attribute_dataset", attribute_dataset)
    argv = ["attribute-dataset", "d.jsonl", "--out", str(tmp_path / "o"), "--explain", "sentences"]
    argv += ["--sources", "documents", "--sources-include-generated", "--stream-to", "rows", "--top-k-scores", "3"]
    assert main(argv) == 2
    assert seen["explain"] == "sentences" and seen["sources"] == "documents"
    assert seen["sources_include_generated"] is True and seen["stream_to"] == "rows" and seen["top_k_scores"] == 3
    seen.clear()
    assert main(["attribute-dataset", "d.jsonl", "--out", "o", "--sources-include-generated"]) == 2
    assert seen == {}  # refused before the run


def test_attribute_chat_wraps_the_prompt(fake_load: dict[str, Any]) -> None:
    assert main(["attribute", "Why is the sky blue?", "--chat", "--no-show"]) == 0
    [(inputs, kwargs)] = fake_load["model"].calls
    assert inputs == [{"role": "user", "content": "Why is the sky blue?"}]
    assert kwargs["chat"] is True


def test_attribute_save_writes_a_loadable_file(
    fake_load: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.json"
    assert main(["attribute", "The capital of France is", "--save", str(path), "--no-show"]) == 0
    stdout = capsys.readouterr().out
    assert "saved to" in stdout and "out.json" in stdout
    assert "·Paris" not in stdout  # --no-show
    assert FeatureAttributionOutput.load(path).equals(handmade_output())


def test_show_reads_a_saved_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = handmade_output().save(tmp_path / "r.safetensors")
    assert main(["show", str(path), "--width", "60"]) == 0
    text = capsys.readouterr().out
    assert "·France" in text and "·Paris" in text and "probability" in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 60
    assert main(["show", str(path), "--step", "1"]) == 0
    assert "The capital of France is Paris." in capsys.readouterr().out


def test_show_scale_and_special_token_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = handmade_output().save(tmp_path / "r.json")
    assert main(["show", str(path), "--step", "1"]) == 0
    assert "colour scale: this step's largest |score|" in capsys.readouterr().out
    page = tmp_path / "r.html"
    assert main(["show", str(path), "--step", "1", "--scale", "global", "--include-special-tokens"]) == 0
    assert "colour scale: the largest |score| of the sequence" in capsys.readouterr().out
    assert main(["show", str(path), "--html", str(page), "--scale", "global", "--include-special-tokens"]) == 0
    text = page.read_text(encoding="utf-8")
    assert '"scale":"global"' in text and '"include_special":true' in text and 'id="genattrib-norm">' in text
    assert main(["show", str(path), "--scale", "robust"]) == 2


def test_genattrib_error_is_one_red_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def load_model(*args: Any, **kwargs: Any) -> None:
        raise UnknownNameError("method", "nope", ["saliency", "occlusion"])

    monkeypatch.setattr(genattrib, "load_model", load_model, raising=False)
    assert main(["attribute", "Hi", "--method", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown name 'nope'" in err and "saliency" in err and "Traceback" not in err


def test_show_missing_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "missing.json")]) == 2
    assert "no file at" in capsys.readouterr().err


def test_step_out_of_range_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = handmade_output().save(tmp_path / "r.json")
    assert main(["show", str(path), "--step", "9"]) == 2
    assert "step" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["attribute", "Hi", "--param", "n_steps"], "KEY=VALUE"),
        (["attribute", "Hi", "--param", "a=1", "--param", "a=2"], "more than once"),
        (["attribute", "Hi", "--seed", "1", "--param", "seed=2"], "clashes"),
        (["attribute", "Hi", "--top-k", "5"], "only apply when sampling: add --do-sample (to keep the K largest"),
        (["attribute", "Hi", "--temperature", "0.5", "--top-p", "0.9"], "--temperature, --top-p only apply"),
        (["attribute", "Hi", "--param", "top_k=5"], "--top-k-scores keeps the K largest scores"),
        (["attribute", "Hi", "--do-sample", "--param", "do_sample=false"], "clashes"),
        (["attribute", "Hi", "--sources-include-generated"], "add --sources NAME"),
        (["attribute", "Hi", "--dtype", "float8"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_command_lines_exit_2(
    fake_load: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert fake_load["model"].calls == []


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "attribute" in capsys.readouterr().out


def test_version_prints_package_then_library_versions(capsys: pytest.CaptureFixture[str]) -> None:
    import transformers

    assert main(["--version"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"genattrib {genattrib.__version__}"
    assert lines[1].startswith(f"torch {torch.__version__}, transformers {transformers.__version__}, Python ")
    assert len(lines) == 2 and captured.err == ""
    assert main(["methods", "--version"]) == 2  # the option belongs to `genattrib`, not to a sub-command


def test_python_m_genattrib_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genattrib", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"genattrib {genattrib.__version__}"


# --- listings --------------------------------------------------------------------------------
def test_methods_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(genattrib, "list_methods", lambda: ["saliency", "integrated_gradients"], raising=False)
    fake = types.ModuleType("genattrib.methods")
    fake.describe_methods = lambda: [  # type: ignore[attr-defined]
        {
            "name": "saliency",
            "description": "gradient of the target",
            "granular": True,
            "needs_gradients": True,
            "parameters": ["abs"],
        },
        {"name": "integrated_gradients", "description": "path integral", "granular": True, "needs_gradients": True},
    ]
    monkeypatch.setitem(sys.modules, "genattrib.methods", fake)
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "saliency" in out and "integrated_gradients" in out and "path integral" in out and "abs" in out


def test_methods_without_descriptions(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(genattrib, "list_methods", lambda: ["saliency", "occlusion"], raising=False)
    monkeypatch.setitem(sys.modules, "genattrib.methods", types.ModuleType("genattrib.methods"))
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.split() == ["saliency", "occlusion"]


def test_targets_lists_names(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(genattrib, "list_targets", lambda: ["logprob", "probability", "[markup]"], raising=False)
    assert main(["targets"]) == 0
    assert capsys.readouterr().out.split() == ["logprob", "probability", "[markup]"]


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "genattrib", "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "attribute" in done.stdout and "methods" in done.stdout


def test_invalid_argument_error_from_the_model_layer(
    fake_load: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    def attribute(*args: Any, **kwargs: Any) -> None:
        raise InvalidArgumentError("inputs", "the prompt is empty", "pass some text")

    fake_load["model"].attribute = attribute
    assert main(["attribute", ""]) == 2
    assert "Invalid `inputs`: the prompt is empty" in capsys.readouterr().err
