"""Bad input raises a genattrib error naming the argument and the fix, before any heavy work."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tokenizers import normalizers
from tolerance import TINY_MODEL, assert_close_to_scale
from transformers import LlamaForCausalLM, LlamaModel
from transformers.models.llama.modeling_llama import LlamaAttention, apply_rotary_pos_emb

import genattrib
import genattrib.models.pipeline.stages as stages
from genattrib import GenattribError, InvalidArgumentError, UnknownNameError, UnsupportedModelError

PROMPT = "The capital of France is"
WINDOW = 128  # max_position_embeddings of the tiny models
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture
def heavy(monkeypatch):
    """Counts calls of generation and of the attribution engine made by ``attribute``."""
    calls = {"generate": 0, "attribute": 0}
    real_generate, real_run = stages.generate_traces, stages.run_attribution

    def generate(*args, **kwargs):
        calls["generate"] += 1
        return real_generate(*args, **kwargs)

    def run(*args, **kwargs):
        calls["attribute"] += 1
        return real_run(*args, **kwargs)

    monkeypatch.setattr(stages, "generate_traces", generate)
    monkeypatch.setattr(stages, "run_attribution", run)
    return calls


def expect_error(call, argument: str, *fix_words: str, error: type = InvalidArgumentError) -> GenattribError:
    """``call()`` raises ``error`` for ``argument``; the message names it and contains ``fix_words``."""
    with pytest.raises(GenattribError) as info:
        call()
    err = info.value
    assert isinstance(err, error), f"{type(err).__name__}: {err}"
    assert err.argument == argument, str(err)
    message = str(err)
    assert f"`{argument}`" in message
    assert "Fix:" in message and err.fix
    for word in fix_words:
        assert word in message, f"{word!r} not in {message!r}"
    return err


def prompt_of(tokenizer, n_tokens: int) -> str:
    text = "The" + " the" * (n_tokens - 1)
    assert len(tokenizer(text)["input_ids"]) == n_tokens
    return text


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_empty_prompt(tiny_llama, heavy, prompt):
    expect_error(lambda: tiny_llama.attribute(prompt), "inputs", "empty", "non-empty text")
    assert heavy == {"generate": 0, "attribute": 0}


def test_empty_prompt_among_others(tiny_llama, heavy):
    err = expect_error(lambda: tiny_llama.attribute(["fine prompt", " "]), "inputs", "prompt 1")
    assert "empty" in err.problem
    assert heavy == {"generate": 0, "attribute": 0}


def test_empty_list(tiny_llama, heavy):
    expect_error(lambda: tiny_llama.attribute([]), "inputs", "[]")
    assert heavy == {"generate": 0, "attribute": 0}


def test_bad_chat_messages(tiny_llama, heavy):
    expect_error(lambda: tiny_llama.attribute([{"role": "user", "content": "  "}]), "inputs", "empty")
    expect_error(lambda: tiny_llama.attribute([{"content": "hi"}]), "inputs", "role")
    assert heavy == {"generate": 0, "attribute": 0}


def test_prompt_longer_than_context_window(tiny_llama, heavy):
    long_prompt = prompt_of(tiny_llama.tokenizer, WINDOW + 20)
    err = expect_error(lambda: tiny_llama.attribute(long_prompt, max_new_tokens=2), "inputs", str(WINDOW), "shorten")
    assert str(WINDOW + 20) in err.problem
    assert heavy == {"generate": 0, "attribute": 0}


def test_prompt_plus_new_tokens_beyond_context_window(tiny_llama, heavy):
    prompt = prompt_of(tiny_llama.tokenizer, WINDOW - 2)
    expect_error(lambda: tiny_llama.attribute(prompt, max_new_tokens=3), "inputs", str(WINDOW), "max_new_tokens")
    expect_error(lambda: tiny_llama.attribute(prompt, target=" the the the"), "inputs", str(WINDOW), "forced target")
    assert heavy == {"generate": 0, "attribute": 0}
    out = tiny_llama.attribute(prompt, max_new_tokens=2, attr_pos_start=1)  # exactly fits
    assert len(out.sequences[0].input_ids) <= WINDOW


# --------------------------------------------------------------------------------------------
# names: methods, targets, step scores, keyword arguments
# --------------------------------------------------------------------------------------------
def test_unknown_method(tiny_llama, heavy):
    err = expect_error(
        lambda: tiny_llama.attribute(PROMPT, method="salincy"),
        "method",
        "'salincy'",
        "saliency",
        "integrated_gradients",
        "occlusion",
        error=UnknownNameError,
    )
    assert isinstance(err, KeyError) and set(err.valid) == set(genattrib.list_methods())
    expect_error(
        lambda: genattrib.load_model((tiny_llama.model, tiny_llama.tokenizer), method="nope"),
        "method",
        "saliency",
        error=UnknownNameError,
    )
    assert heavy == {"generate": 0, "attribute": 0}


def test_unknown_attributed_fn(tiny_llama, heavy):
    err = expect_error(
        lambda: tiny_llama.attribute(PROMPT, attributed_fn="log_prob"),
        "attributed_fn",
        "'log_prob'",
        "logprob",
        "probability",
        "entropy",
        error=UnknownNameError,
    )
    assert set(err.valid) == set(tiny_llama.list_targets())
    assert heavy == {"generate": 0, "attribute": 0}


@pytest.mark.parametrize("step_scores", [["probabilty"], ["probability", "probabilty"], {"p": "probabilty"}])
def test_unknown_step_score(tiny_llama, heavy, step_scores):
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, step_scores=step_scores),
        "step_scores",
        "'probabilty'",
        "probability",
        "logprob",
        error=UnknownNameError,
    )
    assert heavy == {"generate": 0, "attribute": 0}


def test_unknown_keyword(tiny_llama, heavy):
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, method="integrated_gradients", n_step=8),
        "n_step",
        "neither a parameter of the method nor a generation setting",
        "n_steps",
        "max_new_tokens",
    )
    expect_error(lambda: tiny_llama.attribute(PROMPT, not_a_setting=1), "not_a_setting", "max_new_tokens")
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, method_kwargs={"n_step": 8}, method="integrated_gradients"),
        "n_step",
        "n_steps",
    )
    assert heavy == {"generate": 0, "attribute": 0}


@pytest.mark.parametrize("value", [0, -1])
def test_bad_max_new_tokens(tiny_llama, heavy, value):
    expect_error(lambda: tiny_llama.attribute(PROMPT, max_new_tokens=value), "max_new_tokens", "positive")
    assert heavy == {"generate": 0, "attribute": 0}


# --------------------------------------------------------------------------------------------
# forced and contrast targets
# --------------------------------------------------------------------------------------------
def test_empty_forced_target(tiny_llama, heavy):
    expect_error(lambda: tiny_llama.attribute(PROMPT, target=""), "target", "empty", "omit it to generate")
    expect_error(lambda: tiny_llama.attribute([PROMPT, PROMPT], target=[" Paris", ""]), "target", "empty")
    assert heavy == {"generate": 0, "attribute": 0}


def test_forced_targets_count(tiny_llama, heavy):
    expect_error(lambda: tiny_llama.attribute([PROMPT, PROMPT], target=[" Paris"]), "target", "one target per prompt")
    assert heavy == {"generate": 0, "attribute": 0}


def test_forced_target_that_does_not_tokenize_as_given(tiny_llama, heavy):
    """A tokenizer with a lower-casing normalizer (as BERT-style tokenizers have) cannot give
    back ' Paris': forcing it must fail instead of silently explaining ' paris'."""
    tokenizer = copy.deepcopy(tiny_llama.tokenizer)
    tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    model = genattrib.load_model((tiny_llama.model, tokenizer))
    err = expect_error(lambda: model.attribute(PROMPT, target=" Paris"), "target", "' Paris'", "' paris'")
    assert "does not tokenize as given" in err.problem
    assert heavy == {"generate": 0, "attribute": 0}
    out = model.attribute(PROMPT, target=" paris")  # text that round-trips is fine
    assert out.sequences[0].generated_text == " paris"


def test_contrast_target_missing(tiny_llama, heavy):
    for fn in ("contrast_prob_diff", "contrast_logprob_diff"):
        expect_error(
            lambda fn=fn: tiny_llama.attribute(PROMPT, attributed_fn=fn, max_new_tokens=2),
            "contrast_target",
            "contrast_target=",
        )
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, step_scores=["contrast_prob_diff"], max_new_tokens=2),
        "contrast_target",
        "contrast_target=",
    )
    assert heavy == {"generate": 0, "attribute": 0}


def test_contrast_target_with_wrong_number_of_tokens(tiny_llama, heavy):
    ids = lambda text: tiny_llama.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    target, contrast = " Paris is", " Rome was here"
    assert len(ids(contrast)) not in (1, len(ids(target)))
    err = expect_error(
        lambda: tiny_llama.attribute(
            PROMPT, target=target, attributed_fn="contrast_prob_diff", contrast_target=contrast
        ),
        "contrast_target",
        "single-token",
    )
    assert str(len(ids(target))) in err.problem
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, target=target, attributed_fn="contrast_prob_diff", contrast_target=""),
        "contrast_target",
        "empty",
    )
    assert heavy == {"generate": 0, "attribute": 0}


# --------------------------------------------------------------------------------------------
# methods and their parameters
# --------------------------------------------------------------------------------------------
class FusedOnlyLlama(LlamaForCausalLM):
    """A model that only runs a fused attention kernel: switching to eager attention fails."""

    def set_attn_implementation(self, attn_implementation, **kwargs):
        if attn_implementation == "eager":
            raise ValueError("this model only has a fused attention kernel")
        return super().set_attn_implementation(attn_implementation, **kwargs)


class NoAttentionsLlamaModel(LlamaModel):
    """A base model that never returns attention probabilities (like a fused-kernel model)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.attentions = None
        return out


class NoAttentionsLlama(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model = NoAttentionsLlamaModel(config)


class DirectAttention(LlamaAttention):
    """Llama attention computed in the module itself, never through the attention registry."""

    def forward(self, hidden_states, position_embeddings, attention_mask=None, *args, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], 1) for t in (k, v))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1)
        return self.o_proj(out.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)), None


class DirectAttentionLlama(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        for i, layer in enumerate(self.model.layers):
            layer.self_attn = DirectAttention(config, i)


@pytest.mark.parametrize("cls", [FusedOnlyLlama, NoAttentionsLlama])
def test_attention_methods_do_not_need_eager_or_output_attentions(tiny_llama, cls):
    """Attention is read through the registry: no eager switch, no ``output_attentions``."""
    hf = cls(tiny_llama.model.config).eval()
    hf.load_state_dict(tiny_llama.model.state_dict())
    model = genattrib.load_model((hf, tiny_llama.tokenizer))
    before, implementation = snapshot(hf), hf.config._attn_implementation
    for method in ("attention", "rollout"):
        got = model.attribute(PROMPT, target=" Paris is", method=method).sequences[0].scores
        ref = tiny_llama.attribute(PROMPT, target=" Paris is", method=method).sequences[0].scores
        assert_close_to_scale(got, ref, floor=TINY_MODEL, what=f"{method} through the registry")
    assert hf.config._attn_implementation == implementation
    assert_unchanged(hf, before)


def test_attention_method_on_model_without_registry(tiny_llama, heavy):
    hf = DirectAttentionLlama(tiny_llama.model.config).eval()
    hf.load_state_dict(tiny_llama.model.state_dict())
    model = genattrib.load_model((hf, tiny_llama.tokenizer))
    before = snapshot(hf)
    implementation = hf.config._attn_implementation
    for method in ("attention", "rollout", "rpi"):
        with pytest.raises(UnsupportedModelError) as info:
            model.attribute(PROMPT, method=method, max_new_tokens=2)
        message = str(info.value)
        assert "DirectAttentionLlama" in message and "attention" in message and "method" in message
        # says what to do instead: name another kind of method
        assert any(word in message for word in ("gradient", "saliency", "occlusion", "perturbation")), message
    assert heavy == {"generate": 0, "attribute": 0}
    assert hf.config._attn_implementation == implementation
    assert_unchanged(hf, before)
    assert model.attribute(PROMPT, max_new_tokens=2).sequences[0].num_steps == 2  # other methods still work


def test_rank_is_not_differentiable(tiny_llama, heavy):
    for method in ("saliency", "integrated_gradients", "input_x_gradient"):
        expect_error(
            lambda method=method: tiny_llama.attribute(PROMPT, method=method, attributed_fn="rank", max_new_tokens=2),
            "attributed_fn",
            "'rank'",
            "differentiable",
            "occlusion",
        )
    assert heavy == {"generate": 0, "attribute": 0}
    out = tiny_llama.attribute(PROMPT, method="occlusion", attributed_fn="rank", max_new_tokens=2)
    seq = out.sequences[0]
    assert out.provenance.attributed_fn == "rank" and seq.num_steps == 2
    for j, p in enumerate(seq.target_positions):
        assert torch.isfinite(seq.scores[j, :p]).all() and torch.isnan(seq.scores[j, p:]).all()
    # occlusion differences of ranks are whole numbers
    assert torch.equal(seq.scores[:, : seq.prompt_length], seq.scores[:, : seq.prompt_length].round())


@pytest.mark.parametrize("n_steps", [0, -1])
def test_bad_n_steps(tiny_llama, heavy, n_steps):
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, method="integrated_gradients", n_steps=n_steps),
        "n_steps",
        "positive int",
        "n_steps=",
    )
    assert heavy == {"generate": 0, "attribute": 0}


@pytest.mark.parametrize("batch_size", [0, -3])
def test_bad_batch_size(tiny_llama, heavy, batch_size):
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, batch_size=batch_size), "batch_size", "positive int", "batch_size="
    )
    assert heavy == {"generate": 0, "attribute": 0}


@pytest.mark.parametrize("start,end", [(5, None), (1, 1), (2, 1), (None, 0), (-10, -5)])
def test_attr_positions_selecting_nothing(tiny_llama, heavy, start, end):
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, max_new_tokens=2, attr_pos_start=start, attr_pos_end=end),
        "attr_pos_start",
        "select no step",
        "[0, 2)",
    )
    assert heavy["attribute"] == 0


def test_attr_positions_with_forced_target(tiny_llama, heavy):
    expect_error(lambda: tiny_llama.attribute(PROMPT, target=" Paris", attr_pos_start=50), "attr_pos_start")
    assert heavy == {"generate": 0, "attribute": 0}


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_bad_baseline(tiny_llama, heavy, method):
    hidden = tiny_llama.model.config.hidden_size
    expect_error(
        lambda: tiny_llama.attribute(PROMPT, method=method, baseline="capital France"),
        "baseline",
        "not one",
        "single-token",
    )
    for shape in [(7,), (1, 2, hidden), (3, 7), (hidden + 1,)]:
        err = expect_error(
            lambda shape=shape: tiny_llama.attribute(PROMPT, method=method, baseline=torch.zeros(shape)),
            "baseline",
            f"({hidden},)",
        )
        assert str(tuple(shape)) in err.problem
    assert heavy == {"generate": 0, "attribute": 0}


# --------------------------------------------------------------------------------------------
# load_model
# --------------------------------------------------------------------------------------------
def test_load_model_missing_folder():
    expect_error(lambda: genattrib.load_model("/no/such/folder"), "source", "/no/such/folder", "local folder")
    expect_error(lambda: genattrib.load_model("/no/such/model.gguf"), "source", "GGUF")


def test_load_model_without_tokenizer(tiny_llama):
    expect_error(lambda: genattrib.load_model(tiny_llama.model), "tokenizer", "(model, tokenizer)")


@pytest.mark.parametrize("dtype", ["float33", "int8", "fp64"])
def test_load_model_bad_dtype(tiny_llama, dtype):
    expect_error(
        lambda: genattrib.load_model((tiny_llama.model, tiny_llama.tokenizer), dtype=dtype),
        "dtype",
        repr(dtype),
        "float32",
        "bfloat16",
    )


# --------------------------------------------------------------------------------------------
# nothing is mutated by a failing (or a successful) call
# --------------------------------------------------------------------------------------------
def test_failing_calls_leave_the_model_unchanged(tiny_llama):
    hf = tiny_llama.model
    before = snapshot(hf)
    implementation = hf.config._attn_implementation
    generation_config = hf.generation_config.to_dict()
    failing = [
        lambda: tiny_llama.attribute(PROMPT, method="integrated_gradients", baseline="capital France"),
        lambda: tiny_llama.attribute(
            PROMPT, target=" Paris is", attributed_fn="contrast_prob_diff", contrast_target=" Rome was here"
        ),
        lambda: tiny_llama.attribute(PROMPT, max_new_tokens=2, attr_pos_start=5),
        lambda: tiny_llama.attribute(PROMPT, attributed_fn="rank"),
        lambda: tiny_llama.attribute(PROMPT, not_a_setting=3),
    ]
    for training in (False, True):
        hf.train(training)
        try:
            for call in failing:
                with pytest.raises(GenattribError):
                    call()
                assert hf.training is training
                assert all(m.training is training for m in hf.modules())
        finally:
            hf.eval()
    assert_unchanged(hf, before)
    assert hf.config._attn_implementation == implementation
    assert hf.generation_config.to_dict() == generation_config


def test_successful_call_in_train_mode_restores_flag_and_matches_eval(tiny_llama):
    hf = tiny_llama.model
    reference = tiny_llama.attribute(PROMPT, max_new_tokens=2)
    hf.train()
    try:
        out = tiny_llama.attribute(PROMPT, max_new_tokens=2)
        assert hf.training
    finally:
        hf.eval()
    assert out.sequences[0].equals(reference.sequences[0])


def test_chat_without_template_then_with_template(tiny_llama):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    original = copy.deepcopy(messages)
    assert not getattr(tiny_llama.tokenizer, "chat_template", None)
    expect_error(lambda: tiny_llama.attribute(messages, max_new_tokens=2), "chat", "chat_template")
    expect_error(lambda: tiny_llama.attribute(PROMPT, chat=True, max_new_tokens=2), "chat", "chat_template")
    assert messages == original

    tokenizer = copy.deepcopy(tiny_llama.tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    assert not getattr(tiny_llama.tokenizer, "chat_template", None)  # the original is untouched
    model = genattrib.load_model((tiny_llama.model, tokenizer))
    out = model.attribute(messages, max_new_tokens=2)
    assert messages == original
    seq = out.sequences[0]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "".join(seq.prompt_tokens) == expected
    assert seq.num_steps == 2
    # a plain string with chat=True goes through the template as one user message
    out = model.attribute("Capital of France?", chat=True, max_new_tokens=2)
    assert "".join(out.sequences[0].prompt_tokens) == "<user>Capital of France?\n<assistant>"
    # a batch of chats
    batch = [messages, [{"role": "user", "content": "Hi"}]]
    batch_copy = copy.deepcopy(batch)
    assert len(model.attribute(batch, max_new_tokens=1)) == 2
    assert batch == batch_copy


# --------------------------------------------------------------------------------------------
# values of the wrong type, as users run genattrib (without the test suite's run-time type
# checker, which would reject them earlier with its own TypeCheckError)
# --------------------------------------------------------------------------------------------
_UNCHECKED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import torch, genattrib
    from tiny import make_model, make_tokenizer
    tok = make_tokenizer()
    hf = make_model("llama", tok)
    model = genattrib.load_model((hf, tok))
    P = "The capital of France is"
    cases = {
        "prompt_int": lambda: model.attribute(5),
        "prompt_list_int": lambda: model.attribute([5]),
        "prompt_none": lambda: model.attribute(None),
        "attributed_fn_int": lambda: model.attribute(P, attributed_fn=3),
        "n_steps_str": lambda: model.attribute(P, method="integrated_gradients", n_steps="a"),
        "n_steps_float": lambda: model.attribute(P, method="integrated_gradients", n_steps=2.5),
        "tolerance_str": lambda: model.attribute(P, method="integrated_gradients", n_steps="auto", tolerance="0.1"),
        "max_steps_float": lambda: model.attribute(P, method="integrated_gradients", n_steps="auto", max_steps=2.5),
        "batch_size_str": lambda: model.attribute(P, batch_size="a"),
        "batch_size_float": lambda: model.attribute(P, batch_size=1.5),
        "target_int": lambda: model.attribute(P, target=3),
        "baseline_list": lambda: model.attribute(P, method="integrated_gradients", baseline=[1, 2]),
        "source_tuple3": lambda: genattrib.load_model((hf, tok, tok)),
        "source_int": lambda: genattrib.load_model(42),
        "dtype_int": lambda: genattrib.load_model((hf, tok), dtype=5),
        "seed_str": lambda: model.attribute(P, seed="x"),
        "seed_float": lambda: model.attribute(P, seed=1.7),
        "generate_seed_float": lambda: model.generate(P, seed=1.7),
        "attr_pos_start_str": lambda: model.attribute(P, attr_pos_start="a"),
        "step_scores_int": lambda: model.attribute(P, step_scores=5),
        "generation_config_dict": lambda: model.attribute(P, generation_config={}),
        "keep_granular_str": lambda: model.attribute(P, keep_granular="no"),
        "chat_role_int": lambda: model.attribute([[{"role": 1, "content": "hi"}]]),
        "chat_content_none": lambda: model.attribute([[{"role": "user", "content": None}]]),
        "prompt_lone_surrogate": lambda: model.attribute("abc \\ud800 def"),
    }
    report = {}
    for name, call in cases.items():
        try:
            call()
            report[name] = None
        except Exception as error:
            report[name] = [isinstance(error, genattrib.GenattribError), getattr(error, "argument", None),
                            type(error).__name__, str(error)]
    print("REPORT" + json.dumps(report))
    """
)

_UNCHECKED_EXPECTED = {
    "prompt_int": "inputs",
    "prompt_list_int": "inputs",
    "prompt_none": "inputs",
    "attributed_fn_int": "attributed_fn",
    "n_steps_str": "n_steps",
    "n_steps_float": "n_steps",
    "tolerance_str": "tolerance",
    "max_steps_float": "max_steps",
    "batch_size_str": "batch_size",
    "batch_size_float": "batch_size",
    "target_int": "target",
    "baseline_list": "baseline",
    "source_tuple3": "source",
    "source_int": "source",
    "dtype_int": "dtype",
    "seed_str": "seed",
    "seed_float": "seed",
    "generate_seed_float": "seed",
    "attr_pos_start_str": "attr_pos_start",
    "step_scores_int": "step_scores",
    "generation_config_dict": "generation_config",
    "keep_granular_str": "keep_granular",
    "chat_role_int": "inputs",
    "chat_content_none": "inputs",
    "prompt_lone_surrogate": "inputs",
}


@pytest.fixture(scope="module")
def unchecked_report():
    env = dict(os.environ, GENATTRIB_TYPECHECK="0", PYTHONWARNINGS="ignore")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _UNCHECKED_SCRIPT, str(Path(__file__).resolve().parents[1] / "helpers")],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT") :])


@pytest.mark.parametrize("case", sorted(_UNCHECKED_EXPECTED))
def test_wrong_types_raise_genattrib_errors(unchecked_report, case):
    result = unchecked_report[case]
    assert result is not None, f"{case}: no error raised"
    is_genattrib, argument, kind, message = result
    assert is_genattrib, f"{case}: {kind}: {message}"
    assert argument == _UNCHECKED_EXPECTED[case], message
    assert f"`{argument}`" in message and "Fix:" in message


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"max_rows": 0}, "max_rows"),
        ({"max_rows": -1}, "max_rows"),
        ({"method": "integrated_gradients", "baseline": 99999}, "baseline"),
        ({"method": "integrated_gradients", "baseline": -5}, "baseline"),
        ({"method": "integrated_gradients", "baseline": torch.full((32,), float("nan"))}, "baseline"),
        ({"max_length": 500}, "inputs"),  # max_length counts the prompt: still checked against the window
    ],
)
def test_bad_values_are_refused_before_generation(tiny_llama, monkeypatch, kwargs, argument):
    def never(*args, **kw):
        raise AssertionError("the model generated before the arguments were checked")

    monkeypatch.setattr(stages, "generate_traces", never)
    with pytest.raises(InvalidArgumentError) as info:
        tiny_llama.attribute("The capital of France is", **kwargs)
    assert info.value.argument == argument and "Fix:" in str(info.value)


def test_a_custom_target_without_gradients_is_blamed_not_the_model(tiny_llama, monkeypatch):
    monkeypatch.setattr(stages, "generate_traces", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(InvalidArgumentError) as info:
        tiny_llama.attribute("The capital of France is", attributed_fn=lambda ctx: torch.zeros(ctx.logits.shape[0]))
    assert info.value.argument == "attributed_fn" and "model is not the cause" in str(info.value)
    # the same function is fine for a forward-only method
    out = tiny_llama.attribute(
        "The capital of France is", " Paris", method="occlusion", attributed_fn=lambda ctx: ctx.logits[:, 0] * 0
    )
    assert out.sequences[0].num_steps > 0 and out.provenance.method == "occlusion"
