"""The embedded default model (SmolLM2-135M-Instruct): real behaviour end to end."""

from __future__ import annotations

import pytest
import torch
from tolerance import DEFAULT_MODEL, assert_close_to_scale

import genattrib

pytestmark = pytest.mark.default_model
PROMPT = "The capital of France is"


def test_paris_is_generated_and_every_step_is_attributed(default_model, tmp_path):
    out = default_model.attribute(PROMPT, max_new_tokens=8, step_scores=["probability"])
    seq = out.sequences[0]
    assert seq.generated_text.startswith(" Paris")
    assert seq.tokens[:5] == ["The", " capital", " of", " France", " is"]
    assert seq.num_steps == len(seq.input_ids) - seq.prompt_length == 8
    for j, p in enumerate(seq.target_positions):
        assert torch.isfinite(seq.scores[j, :p]).all() and seq.scores[j, p:].isnan().all()
    assert 0.0 < float(seq.step_scores["probability"][0]) <= 1.0
    for name in ("paris.json", "paris.safetensors"):
        out.save(tmp_path / name)
        assert genattrib.FeatureAttributionOutput.load(tmp_path / name).equals(out)


def test_saliency_on_paris_points_at_france_or_capital(default_model):
    out = default_model.attribute(PROMPT, target=" Paris", method="input_x_gradient")
    row = out.sequences[0].scores[0, :5].abs()
    assert int(row.argmax()) in (1, 3), row


def test_chat_prompt_uses_the_template(default_model):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    before = [dict(m) for m in messages]
    out = default_model.attribute(messages, max_new_tokens=6)
    seq = out.sequences[0]
    assert messages == before
    assert "<|im_start|>" in seq.tokens and "Paris" in seq.generated_text
    assert bool(seq.held_fixed[seq.tokens.index("<|im_start|>")])
    roles = seq.token_roles
    content = [t for t, r in zip(seq.tokens, roles) if r == "user"]
    assert "".join(content).strip() == messages[0]["content"]
    assert roles[seq.tokens.index("<|im_start|>")] == "template"
    assert set(roles[seq.prompt_length :]) == {"generated"}
    # SmolLM2's template adds a default system prompt the user did not write: labelled template
    assert roles[seq.tokens.index(" helpful")] == "template"


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion", "attention", "gradient_shap", "rollout"])
def test_every_method_runs(default_model, method):
    params = (
        {"n_steps": 8} if method == "integrated_gradients" else {"n_samples": 4} if method == "gradient_shap" else {}
    )
    out = default_model.attribute(PROMPT, target=" Paris.", method=method, **params)
    seq = out.sequences[0]
    assert seq.scores.shape == (2, 7)
    assert torch.isfinite(seq.scores[1, :6]).all()


def test_bfloat16_accumulates_in_float32():
    model = genattrib.load_model(dtype="bfloat16", method="integrated_gradients")
    assert model.dtype == torch.bfloat16
    out = model.attribute(PROMPT, target=" Paris", n_steps=8)
    seq = out.sequences[0]
    assert seq.scores.dtype == torch.float32 and torch.isfinite(seq.scores[0, :5]).all()
    assert out.provenance.dtype == "bfloat16"


def test_cli_end_to_end(tmp_path, capsys):
    from genattrib.cli import main

    path = tmp_path / "out.json"
    code = main(
        [
            "attribute",
            PROMPT,
            "--method",
            "integrated_gradients",
            "--param",
            "n_steps=4",
            "--max-new-tokens",
            "3",
            "--save",
            str(path),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "Paris" in text
    loaded = genattrib.FeatureAttributionOutput.load(path)
    assert loaded.provenance.method == "integrated_gradients" and loaded.provenance.method_params["n_steps"] == 4


def test_chat_units_leave_the_template_out(default_model):
    """The closing <|im_end|> is no explained sentence, the default system prompt no source unit;
    passed as a system message, the same text is one (issue 22)."""
    docs = "Paris is in France.\n\nRome is in Italy."
    messages = [{"role": "user", "content": docs}]
    tok = default_model.tokenizer
    answer = torch.tensor(tok(" Paris is in France. Rome is in Italy.", add_special_tokens=False)["input_ids"] + [2])
    assert tok.convert_ids_to_tokens(2) == "<|im_end|>"
    kwargs = dict(chat=True, method="occlusion", explain="sentences", sources="documents")
    seq = default_model.attribute(messages, answer, **kwargs).sequences[0]
    assert seq.tokens[-1] == "<|im_end|>"
    assert seq.target_tokens == [" Paris is in France.", " Rome is in Italy."]
    units = seq.source_unit_scores()
    assert [t.strip() for t in units.unit_texts] == ["Paris is in France.", "Rome is in Italy."]
    assert units.unit_roles == ["user", "user"] and units.scores.shape == (2, 2)
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # the template's default
    with_system = default_model.attribute([{"role": "system", "content": system}, *messages], answer, **kwargs)
    seq_s = with_system.sequences[0]
    assert seq_s.tokens == seq.tokens  # the same text: only the system prompt's role changed
    units_s = seq_s.source_unit_scores()
    assert units_s.unit_texts[0] == system and units_s.unit_roles[0] == "system"
    # one more unit means other rows per model call: the default model's chunking floor
    assert_close_to_scale(units_s.scores[:, 1:], units.scores, floor=DEFAULT_MODEL, what="units after the system one")
