"""model.estimate(): a dry run planned as attribute() plans, costed without attributing; the
command line's --dry-run, --top-k-scores and --stream-to."""

from __future__ import annotations

import json
import math

import pytest

import genattrib
import genattrib.models.pipeline.estimate_timing as timing_module
import genattrib.models.pipeline.stages as stages_module
from genattrib import FeatureAttributionOutput, InvalidArgumentError
from genattrib.cli import main
from genattrib.methods import method_class
from genattrib.models import Estimate

PROMPT = "The capital of France is"
TEXT = " Paris. The capital of Italy is Rome. It is"


@pytest.fixture
def no_attribution(monkeypatch):
    """Fails the test if any method attributes a batch."""

    def never(*args, **kwargs):
        raise AssertionError("estimate() ran the attribution")

    for name in ("saliency", "integrated_gradients", "occlusion", "lime"):
        monkeypatch.setattr(method_class(name), "attribute", never)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("saliency", {}), ("integrated_gradients", {"n_steps": 4}), ("lime", {"n_samples": 16})],
)
def test_planned_rows_are_the_rows_attribute_runs(tiny_llama, method, kwargs):
    est = tiny_llama.estimate(PROMPT, TEXT, method=method, calibrate=False, max_rows=3, **kwargs)
    out = tiny_llama.attribute(PROMPT, TEXT, method=method, max_rows=3, **kwargs)
    assert est.rows == out.sequences[0].num_steps
    assert est.model_rows == out.provenance.work["rows"]
    # all three plan batches within the sequence; saliency and IG targets share forward rows, and
    # max_rows=3 caps the targets (backward rows) of each batch: 20 targets -> 7 batches
    assert est.sequences == 1 and est.batches == (1 if method == "lime" else math.ceil(est.rows / 3))


def test_occlusion_rows_are_close(tiny_llama):
    est = tiny_llama.estimate(PROMPT, TEXT, method="occlusion", calibrate=False)
    out = tiny_llama.attribute(PROMPT, TEXT, method="occlusion")
    assert est.model_rows == pytest.approx(out.provenance.work["rows"], rel=0.1)


def test_unit_rows_with_a_continuation_are_planned_exactly(tiny_llama):
    est = tiny_llama.estimate(PROMPT, TEXT, explain="sentences", calibrate=False)
    out = tiny_llama.attribute(PROMPT, TEXT, explain="sentences")
    assert est.rows == out.sequences[0].num_steps == 3
    assert est.model_rows == out.provenance.work["rows"]


def test_without_a_continuation_nothing_is_generated_in_full(tiny_llama, monkeypatch, no_attribution):
    asked = []
    real = timing_module.generate_traces

    def spy(model, prompts, *, generation_config, **kwargs):
        asked.append(generation_config.max_new_tokens)
        return real(model, prompts, generation_config=generation_config, **kwargs)

    monkeypatch.setattr(timing_module, "generate_traces", spy)
    monkeypatch.setattr(stages_module, "generate_traces", spy)  # the pipeline's own generation
    est = tiny_llama.estimate([PROMPT, "Once upon a"], max_new_tokens=40)
    assert est.rows == 80 and est.sequences == 2
    assert asked and max(asked) <= 5  # the generation calibration only
    assert any("40 generated tokens" in a for a in est.assumptions)
    assert set(est.seconds) == {"generation", "attribution", "calibration"}
    assert est.predicted_seconds == pytest.approx(est.seconds["generation"] + est.seconds["attribution"])
    assert est.predicted_seconds > 0


def test_predicted_seconds_cost_shared_targets_and_lm_head_reads(tiny_llama, monkeypatch, no_attribution):
    """With the timings fixed (1 s per token-row, no call overhead, 0.25 s per further target and token of
    a shared row), a gradient method's seconds are its token-rows plus a quarter of its further targets'
    backward token-rows (each target first paid as a whole row would overstate a batched pass); forward
    rows that score every target of their batch (occlusion) cost more than the same rows reading one."""
    monkeypatch.setattr(timing_module, "calibrate_rows", lambda *args: (0.0, 1.0))
    monkeypatch.setattr(timing_module, "calibrate_shared_targets", lambda *args: 0.25)
    est = tiny_llama.estimate(PROMPT, TEXT, method="saliency")
    assert est.backward_token_rows > est.token_rows  # several targets read each shared row
    want = est.token_rows + 0.25 * (est.backward_token_rows - est.token_rows)
    assert est.seconds["attribution"] == pytest.approx(want)
    assert est.calibration["grad_s_per_further_target_token"] == 0.25
    occlusion = tiny_llama.estimate(PROMPT, TEXT, method="occlusion")
    assert occlusion.seconds["attribution"] > occlusion.token_rows  # the LM head at every target of a row


def test_units_without_a_continuation_assume_a_unit_length(tiny_llama, no_attribution):
    est = tiny_llama.estimate(PROMPT, max_new_tokens=60, explain="sentences", calibrate=False)
    assert est.rows == 3  # 60 tokens / 20 per sentence
    assert any("20 tokens per unit" in a for a in est.assumptions)
    assert tiny_llama.estimate(PROMPT, max_new_tokens=60, explain="words", calibrate=False).rows == round(60 / 1.3)


def test_flops_and_memory_follow_the_stated_formulas(tiny_llama, no_attribution):
    est = tiny_llama.estimate(PROMPT, TEXT, method="saliency", calibrate=False)
    model = tiny_llama.model
    embedding = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight.data_ptr() == embedding.data_ptr()
    params = sum(p.numel() for p in model.parameters()) - (0 if tied else embedding.numel())
    # forward rows, then one input-gradient backward pass per target (about a forward's FLOPs each)
    assert est.backward_token_rows >= est.rows
    assert est.flops == 2 * params * (est.token_rows + est.backward_token_rows)
    lime = tiny_llama.estimate(PROMPT, TEXT, method="lime", calibrate=False)
    assert lime.flops == 2 * params * lime.token_rows and lime.grad_rows == 0 and lime.backward_token_rows == 0
    assert est.memory["parameters"] == sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    assert est.peak_memory_bytes == sum(est.memory.values())
    assert est.memory["activations"] > 0
    positions = len(tiny_llama.tokenizer(PROMPT + TEXT)["input_ids"])
    assert est.token_rows >= est.rows and est.token_rows <= est.rows * positions


def test_top_k_and_granular_change_the_result_memory(tiny_llama, no_attribution):
    method = "input_x_gradient"
    kept = tiny_llama.estimate(PROMPT, TEXT, method=method, calibrate=False)
    reduced = tiny_llama.estimate(PROMPT, TEXT, method=method, keep_granular=False, calibrate=False)
    top = tiny_llama.estimate(PROMPT, TEXT, method=method, top_k_scores=2, calibrate=False)
    assert kept.memory["result"] > reduced.memory["result"] > top.memory["result"] > 0


def test_estimate_prints_and_is_json(tiny_llama):
    est = tiny_llama.estimate(PROMPT, TEXT, method="integrated_gradients", n_steps=4)
    text = str(est)
    for words in ("integrated_gradients", "explained rows", "FLOPs", "peak memory", "predicted time", "calibration"):
        assert words in text
    data = json.loads(est.to_json())
    assert data == est.to_dict() and Estimate(**data) == est
    assert data["calibration"]["grad_s_per_token_row"] > 0 and "generation" not in data["seconds"]
    plain = tiny_llama.estimate(PROMPT, TEXT, calibrate=False)
    assert plain.predicted_seconds is None and "not calibrated" in str(plain)


def test_estimate_refuses_what_attribute_refuses(tiny_llama, tmp_path, no_attribution):
    with pytest.raises(InvalidArgumentError, match="top_k_scores"):
        tiny_llama.estimate(PROMPT, TEXT, top_k_scores=0)
    with pytest.raises(InvalidArgumentError, match="granular_budget_mb") as err:
        tiny_llama.estimate(PROMPT, TEXT, method="input_x_gradient", keep_granular=True, granular_budget_mb=0.0001)
    assert err.value.argument == "keep_granular"
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        tiny_llama.estimate(PROMPT, TEXT, stream_to=tmp_path / "f.json")
    with pytest.raises(InvalidArgumentError, match="method"):
        tiny_llama.estimate(PROMPT, TEXT, method="nope")
    est = tiny_llama.estimate(PROMPT, TEXT, stream_to=tmp_path / "new", calibrate=False)
    assert not (tmp_path / "new").exists() and any("stream_to" in a for a in est.assumptions)


def test_estimate_does_not_mutate_arguments(tiny_llama):
    prompts, texts = [PROMPT, "Once upon a"], [TEXT, " time"]
    tiny_llama.estimate(prompts, texts, calibrate=False, method_kwargs={"n_steps": 4}, method="integrated_gradients")
    assert prompts == [PROMPT, "Once upon a"] and texts == [TEXT, " time"]


# --- command line ------------------------------------------------------------------------------------------
@pytest.fixture
def cli_model(tiny_llama, monkeypatch):
    monkeypatch.setattr(genattrib, "load_model", lambda *args, **kwargs: tiny_llama)
    return tiny_llama


def test_cli_dry_run_prints_the_estimate_and_attributes_nothing(cli_model, capsys, no_attribution):
    code = main(["attribute", PROMPT, "--continuation", TEXT, "--dry-run", "--method", "saliency"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Estimate: saliency" in out and "predicted time" in out and "peak memory" in out


def test_cli_stream_and_top_k(cli_model, tmp_path, capsys):
    folder = tmp_path / "run"
    code = main(
        ["attribute", PROMPT, "--continuation", TEXT, "--stream-to", str(folder), "--top-k-scores", "2", "--no-show"]
    )
    assert code == 0
    loaded = FeatureAttributionOutput.load(folder)
    assert loaded.provenance.storage["top_k_scores"] == 2 and loaded.sequences[0].sparse_scores is not None
    assert main(["show", str(folder)]) == 0
    assert "Paris" in capsys.readouterr().out


def test_cli_bad_storage_options_exit_2(cli_model, tmp_path, capsys):
    assert main(["attribute", PROMPT, "--continuation", TEXT, "--top-k-scores", "0"]) == 2
    assert "top_k_scores" in capsys.readouterr().err
    (tmp_path / "f.json").write_text("{}")
    assert main(["attribute", PROMPT, "--continuation", TEXT, "--stream-to", str(tmp_path / "f.json")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["attribute", PROMPT, "--continuation", TEXT, "--granular-budget-mb", "-1"]) == 2


def test_estimate_has_no_nan_for_empty_work(tiny_llama):
    est = tiny_llama.estimate(PROMPT, TEXT, attr_pos_start=0, attr_pos_end=1, calibrate=False)
    assert est.rows == 1 and not math.isnan(est.flops)
