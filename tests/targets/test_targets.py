"""Target functions (genattrib/targets): values, resolution, per-model registration, step scores."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerance import OPS, TINY_MODEL, assert_close_to_scale, assert_identical

import genattrib
from genattrib import InvalidArgumentError, UnknownNameError
from genattrib.targets import BUILTIN_TARGETS, TargetContext, TargetFunction, list_targets, resolve_target

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "A quick brown fox"  # its greedy continuation on the tiny Llama round-trips through the tokenizer

LOGITS = torch.tensor([[1.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0], [5.0, -1.0, 2.0, 5.0]])
TARGETS = torch.tensor([2, 1, 0])
CONTRASTS = torch.tensor([0, 3, 3])


def by_hand(row: list[float]) -> tuple[list[float], list[float]]:
    """(probabilities, log-probabilities) of one row, with math only."""
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row], [v - math.log(z) for v in row]


def ctx(logits=LOGITS, targets=TARGETS, contrasts=None) -> TargetContext:
    return TargetContext(logits, targets, contrasts)


def call(name: str, context: TargetContext) -> list[float]:
    return BUILTIN_TARGETS[name](context).tolist()


# --------------------------------------------------------------------------------------------
# the functions, by hand
# --------------------------------------------------------------------------------------------
def test_logprob_probability_logit_by_hand():
    rows = LOGITS.tolist()
    expected_p = [by_hand(r)[0][t] for r, t in zip(rows, TARGETS.tolist())]
    expected_lp = [by_hand(r)[1][t] for r, t in zip(rows, TARGETS.tolist())]
    assert_close_to_scale(call("probability", ctx()), expected_p, floor=OPS, what="float32 vs by hand")
    assert_close_to_scale(call("logprob", ctx()), expected_lp, floor=OPS, what="float32 vs by hand")
    assert call("logit", ctx()) == [3.0, 0.0, 5.0]
    assert call("probability", ctx())[1] == pytest.approx(0.25)
    assert call("logprob", ctx())[1] == pytest.approx(math.log(0.25))
    # the example of the module's docstring
    assert call("probability", TargetContext(torch.tensor([[0.0, 1.0]]), torch.tensor([1])))[0] == pytest.approx(
        math.e / (1 + math.e), abs=1e-6
    )


@pytest.mark.parametrize("vocab", [2, 4, 320])
def test_entropy_of_uniform_is_log_vocab(vocab):
    values = call("entropy", ctx(torch.full((3, vocab), 1.7), torch.zeros(3, dtype=torch.long)))
    assert values == pytest.approx([math.log(vocab)] * 3, rel=1e-5)


def test_entropy_by_hand_and_independent_of_target():
    rows = LOGITS.tolist()
    expected = [-sum(p * lp for p, lp in zip(*by_hand(r))) for r in rows]
    assert_close_to_scale(call("entropy", ctx()), expected, floor=OPS, what="float32 entropy vs by hand")
    assert call("entropy", ctx(targets=torch.tensor([0, 0, 1]))) == call("entropy", ctx())
    one_hot = torch.tensor([[0.0, -math.inf, -math.inf]])  # masked tokens: 0 log 0 counts as 0
    assert call("entropy", ctx(one_hot, torch.tensor([0]))) == [0.0]
    half = torch.tensor([[0.0, -math.inf, 0.0]])
    assert call("entropy", ctx(half, torch.tensor([0]))) == pytest.approx([math.log(2)])
    assert call("probability", ctx(half, torch.tensor([1]))) == [0.0]


def test_contrast_differences_by_hand():
    rows = LOGITS.tolist()
    p = [by_hand(r)[0] for r in rows]
    lp = [by_hand(r)[1] for r in rows]
    t, c = TARGETS.tolist(), CONTRASTS.tolist()
    context = ctx(contrasts=CONTRASTS)
    # differences round at the scale of what they subtract (probabilities: 1; log-probs: the largest |log p|)
    expected = [p[i][t[i]] - p[i][c[i]] for i in range(3)]
    assert_close_to_scale(call("contrast_prob_diff", context), expected, floor=OPS, scale=1.0, what="p diff")
    expected = [lp[i][t[i]] - lp[i][c[i]] for i in range(3)]
    scale = max(abs(v) for row in lp for v in row)
    assert_close_to_scale(call("contrast_logprob_diff", context), expected, floor=OPS, scale=scale, what="logp diff")
    # row 2: tokens 0 and 3 have the same logit, row 1 is uniform
    assert call("contrast_logprob_diff", context)[1] == 0.0
    assert call("contrast_logprob_diff", ctx(contrasts=TARGETS)) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", ["contrast_prob_diff", "contrast_logprob_diff"])
def test_contrast_targets_need_a_contrast(name):
    target = BUILTIN_TARGETS[name]
    assert target.needs_contrast
    with pytest.raises(InvalidArgumentError) as info:
        target(ctx())
    assert info.value.argument == "contrast_target"


def test_rank_by_hand_with_ties():
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5]] * 4)
    assert call("rank", ctx(logits, torch.tensor([2, 1, 0, 3]))) == [0.0, 1.0, 2.0, 3.0]
    tied = torch.tensor([[2.0, 2.0, 1.0, 2.0]] * 4)
    # tokens tied with the best share rank 0; the rank counts strictly more likely tokens
    assert call("rank", ctx(tied, torch.tensor([0, 1, 3, 2]))) == [0.0, 0.0, 0.0, 3.0]
    assert call("rank", ctx(torch.zeros(1, 5), torch.tensor([4]))) == [0.0]
    assert not BUILTIN_TARGETS["rank"].differentiable


def test_values_are_float32_for_half_precision_logits():
    half = LOGITS.to(torch.bfloat16)
    for name in ("logprob", "probability", "logit", "entropy", "rank"):
        values = BUILTIN_TARGETS[name](ctx(half))
        assert values.dtype == torch.float32, name
        assert values.shape == (3,)
    assert call("probability", ctx(half)) == pytest.approx(call("probability", ctx()), rel=1e-2)


def _exp_scale(p, lp):
    """exp(logprob) carries logprob's rounding (|logprob| ulps) as a relative error: scale p by |logprob|."""
    return p.abs() * lp.abs().clamp(min=1.0)


def test_logprob_gradient_by_hand():
    logits = LOGITS.clone().requires_grad_(True)
    BUILTIN_TARGETS["logprob"](ctx(logits)).sum().backward()
    expected = torch.nn.functional.one_hot(TARGETS, 4).float() - torch.softmax(LOGITS, -1)
    assert_close_to_scale(logits.grad, expected, floor=OPS, what="d logprob / d logits")
    logits.grad = None
    BUILTIN_TARGETS["logit"](ctx(logits)).sum().backward()
    assert torch.equal(logits.grad, torch.nn.functional.one_hot(TARGETS, 4).float())


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 4),
    vocab=st.integers(2, 12),
    values=st.lists(st.floats(-30, 30, width=32), min_size=48, max_size=48),
    target_seed=st.integers(0, 2**31),
)
def test_target_properties(rows, vocab, values, target_seed):
    logits = torch.tensor(values[: rows * vocab], dtype=torch.float32)
    if logits.numel() < rows * vocab:
        logits = torch.cat([logits, torch.zeros(rows * vocab - logits.numel())])
    logits = logits.reshape(rows, vocab)
    targets = torch.randint(0, vocab, (rows,), generator=torch.Generator().manual_seed(target_seed))
    c = ctx(logits, targets)
    p, lp = BUILTIN_TARGETS["probability"](c), BUILTIN_TARGETS["logprob"](c)
    assert_close_to_scale(p, lp.exp(), floor=OPS, scale=_exp_scale(p, lp), what="probability vs exp(logprob)")
    all_p = torch.stack([BUILTIN_TARGETS["probability"](ctx(logits, torch.full((rows,), v))) for v in range(vocab)], -1)
    assert_close_to_scale(all_p.sum(-1), torch.ones(rows), floor=OPS, what="probabilities' sum")
    h = BUILTIN_TARGETS["entropy"](c)
    assert (h >= -1e-6).all() and (h <= math.log(vocab) + 1e-5).all()
    r = BUILTIN_TARGETS["rank"](c)
    expected_rank = (logits > logits.gather(1, targets[:, None])).sum(-1).float()
    assert torch.equal(r, expected_rank)
    assert ((r == 0) == (logits.gather(1, targets[:, None])[:, 0] == logits.max(-1).values)).all()


# --------------------------------------------------------------------------------------------
# resolve_target
# --------------------------------------------------------------------------------------------
def test_resolve_builtin_names():
    for name in BUILTIN_TARGETS:
        assert resolve_target(name) is BUILTIN_TARGETS[name]
    assert (
        set(list_targets())
        == set(BUILTIN_TARGETS)
        >= {"logprob", "probability", "logit", "entropy", "rank", "contrast_prob_diff", "contrast_logprob_diff"}
    )


def test_resolve_callables_and_target_objects():
    def my_score(c: TargetContext) -> torch.Tensor:
        return c.logits[:, 0]

    t = resolve_target(my_score)
    assert isinstance(t, TargetFunction) and t.name == "my_score" and t.fn is my_score
    assert t.differentiable and not t.needs_contrast
    assert torch.equal(t(ctx()), LOGITS[:, 0])
    assert resolve_target(lambda c: c.logits[:, 1]).name == "<lambda>"
    partial = functools.partial(lambda c, k: c.logits[:, k], k=2)
    assert torch.equal(resolve_target(partial)(ctx()), LOGITS[:, 2])
    custom = TargetFunction("mine", my_score, differentiable=False)
    assert resolve_target(custom) is custom


def test_resolve_with_extra_and_unknown_names():
    extra = {"mine": TargetFunction("mine", lambda c: c.logits.sum(-1))}
    assert resolve_target("mine", extra) is extra["mine"]
    assert resolve_target("logprob", extra) is BUILTIN_TARGETS["logprob"]
    assert "mine" in list_targets(extra) and "mine" not in list_targets()
    with pytest.raises(UnknownNameError) as info:
        resolve_target("mine")
    assert info.value.argument == "attributed_fn"
    assert "logprob" in str(info.value) and "mine" not in info.value.valid
    with pytest.raises(UnknownNameError) as info:
        resolve_target("nope", extra, argument="step_scores")
    assert info.value.argument == "step_scores" and "mine" in info.value.valid and "`step_scores`" in str(info.value)


# --------------------------------------------------------------------------------------------
# per-model registration, used through attribute()
# --------------------------------------------------------------------------------------------
def double_logit(c: TargetContext) -> torch.Tensor:
    return 2.0 * c.logits.float().gather(-1, c.target_ids.long().unsqueeze(-1)).squeeze(-1)


@pytest.fixture(scope="module")
def own_model(tiny_llama):
    """A second wrapper of the same tiny Llama, so registrations stay out of ``tiny_llama``."""
    model = genattrib.load_model((tiny_llama.model, tiny_llama.tokenizer))
    model.register_target("double_logit", double_logit, description="twice the logit")
    model.register_target("rank_copy", BUILTIN_TARGETS["rank"].fn, differentiable=False)
    return model


def test_registered_target_as_attributed_fn(own_model, tiny_llama):
    assert "double_logit" in own_model.list_targets() and "double_logit" not in tiny_llama.list_targets()
    doubled = own_model.attribute(PROMPT, max_new_tokens=3, attributed_fn="double_logit")
    plain = own_model.attribute(PROMPT, max_new_tokens=3, attributed_fn="logit")
    assert doubled.provenance.attributed_fn == "double_logit"
    d, p = doubled.sequences[0], plain.sequences[0]
    assert torch.equal(d.input_ids, p.input_ids)
    assert torch.equal(d.scores.isnan(), p.scores.isnan())
    valid = ~p.scores.isnan()
    assert_close_to_scale(d.scores[valid], 2 * p.scores[valid], floor=OPS, what="2 × logit")  # saliency: |gradient|
    # the same function passed directly gives the same result
    direct = tiny_llama.attribute(PROMPT, max_new_tokens=3, attributed_fn=double_logit)
    assert direct.provenance.attributed_fn == "double_logit"
    assert_identical(direct.sequences[0].scores[valid], d.scores[valid])  # the same function, the same call
    with pytest.raises(UnknownNameError) as info:
        tiny_llama.attribute(PROMPT, max_new_tokens=3, attributed_fn="double_logit")
    assert info.value.argument == "attributed_fn"


def test_registered_target_as_step_score(own_model):
    generated = own_model.attribute(PROMPT, max_new_tokens=3, step_scores=["double_logit", "logit"])
    s = generated.sequences[0].step_scores
    assert s.keys() == {"double_logit", "logit"}
    assert torch.allclose(s["double_logit"], 2 * s["logit"], rtol=1e-6)
    forced = own_model.attribute(
        PROMPT, target=generated.sequences[0].generated_text, step_scores={"twice": "double_logit", "once": "logit"}
    )
    f = forced.sequences[0].step_scores
    assert f.keys() == {"twice", "once"}
    assert torch.allclose(f["twice"], 2 * f["once"], rtol=1e-6)
    assert_close_to_scale(f["twice"], s["double_logit"], floor=TINY_MODEL, what="forced vs generated")


def test_registered_non_differentiable_target(own_model):
    with pytest.raises(InvalidArgumentError) as info:
        own_model.attribute(PROMPT, max_new_tokens=2, attributed_fn="rank_copy")
    assert info.value.argument == "attributed_fn"
    by_name = own_model.attribute(PROMPT, max_new_tokens=2, method="occlusion", attributed_fn="rank_copy")
    builtin = own_model.attribute(PROMPT, max_new_tokens=2, method="occlusion", attributed_fn="rank")
    assert by_name.sequences[0].equals(builtin.sequences[0])


# --------------------------------------------------------------------------------------------
# step scores of a real generation
# --------------------------------------------------------------------------------------------
NAMES = ["probability", "entropy", "logprob", "rank", "logit"]


@pytest.fixture(scope="module")
def generated(tiny_llama):
    return tiny_llama.attribute(PROMPT, max_new_tokens=4, step_scores=NAMES)


def test_step_scores_are_consistent(generated, tiny_llama):
    seq = generated.sequences[0]
    s = seq.step_scores
    assert set(s) == set(NAMES) and all(v.shape == (4,) for v in s.values())
    assert generated.provenance.step_scores == sorted(NAMES)
    p, lp = s["probability"], s["logprob"]
    assert_close_to_scale(p, lp.exp(), floor=OPS, scale=_exp_scale(p, lp), what="probability vs exp(logprob)")
    assert (s["entropy"] >= 0).all() and (s["entropy"] <= math.log(len(tiny_llama.tokenizer)) + 1e-4).all()
    assert (s["probability"] > 0).all() and (s["probability"] <= 1).all()
    assert torch.equal(s["rank"], torch.zeros(4))  # greedy decoding picks the top token


def test_step_scores_match_an_independent_forward(generated, tiny_llama):
    seq = generated.sequences[0]
    with torch.no_grad():
        logits = tiny_llama.model(seq.input_ids.unsqueeze(0)).logits[0]
    positions = torch.tensor(seq.target_positions)
    rows = logits[positions - 1]
    logp = rows.log_softmax(-1)
    target_ids = seq.input_ids[positions]
    assert torch.equal(target_ids, rows.argmax(-1))
    s = seq.step_scores
    # recorded while generating (KV cache) vs one forward over the whole text
    assert_close_to_scale(s["logprob"], logp.gather(1, target_ids[:, None])[:, 0], floor=TINY_MODEL, what="logprob")
    assert_close_to_scale(s["logit"], rows.gather(1, target_ids[:, None])[:, 0], floor=TINY_MODEL, what="logit")
    assert_close_to_scale(s["entropy"], -(logp.exp() * logp).sum(-1), floor=TINY_MODEL, what="entropy")


def test_generated_step_scores_equal_teacher_forced(generated, tiny_llama):
    seq = generated.sequences[0]
    forced = tiny_llama.attribute(PROMPT, target=seq.generated_text, step_scores=NAMES)
    f = forced.sequences[0]
    assert torch.equal(f.input_ids, seq.input_ids), "the generated text must force the same tokens"
    assert forced.provenance.forced_target
    for name in NAMES:
        assert_close_to_scale(f.step_scores[name], seq.step_scores[name], floor=TINY_MODEL, what=name)
    assert_close_to_scale(f.scores, seq.scores, floor=TINY_MODEL)


def test_step_scores_follow_attr_pos(generated, tiny_llama):
    seq = generated.sequences[0]
    part = tiny_llama.attribute(PROMPT, max_new_tokens=4, step_scores=NAMES, attr_pos_start=1, attr_pos_end=3)
    p = part.sequences[0]
    assert p.step_start == 1 and p.num_steps == 2
    for name in NAMES:
        assert_close_to_scale(p.step_scores[name], seq.step_scores[name][1:3], floor=TINY_MODEL, what=name)


def test_contrast_step_scores(tiny_llama):
    target, contrast = " w2", " wa"
    out = tiny_llama.attribute(
        PROMPT, target=target, contrast_target=contrast, step_scores=["contrast_logprob_diff", "logprob"]
    )
    seq = out.sequences[0]
    ids = lambda text: tiny_llama.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert seq.num_steps == len(ids(target)) == len(ids(contrast))
    with torch.no_grad():
        logits = tiny_llama.model(seq.input_ids.unsqueeze(0)).logits[0]
    logp = logits[torch.tensor(seq.target_positions) - 1].log_softmax(-1)
    t = torch.tensor(ids(target))[:, None]
    c = torch.tensor(ids(contrast))[:, None]
    expected = (logp.gather(1, t) - logp.gather(1, c))[:, 0]
    got = seq.step_scores["contrast_logprob_diff"]  # a difference of log-probs: it rounds at their scale
    scale = float(torch.maximum(logp.gather(1, t).abs(), logp.gather(1, c).abs()).max())
    assert_close_to_scale(got, expected, floor=TINY_MODEL, what="contrast_logprob_diff", scale=scale)


# --------------------------------------------------------------------------------------------
# integrated gradients: completeness of the probability
# --------------------------------------------------------------------------------------------
def test_integrated_gradients_completeness_of_probability(tiny_llama):
    out = tiny_llama.attribute(
        PROMPT,
        method="integrated_gradients",
        n_steps=200,
        attributed_fn="probability",
        max_new_tokens=2,
        step_scores=["probability"],
    )
    seq = out.sequences[0]
    s = seq.step_scores
    assert {"completeness_error", "baseline_value", "probability"} <= set(s)
    f_input, f_base, error = s["probability"], s["baseline_value"], s["completeness_error"]
    delta = f_input - f_base
    assert (delta.abs() > 1e-6).all()
    assert (error.abs() <= 1e-3 * delta.abs()).all(), (error, delta)
    # the reported error is what the scores say: sum of scores - (F(x) - F(baseline))
    total = seq.scores.nan_to_num(0.0).sum(-1)
    assert torch.allclose(total - delta, error, atol=1e-6 + 1e-3 * delta.abs().max().item())
    # the baseline value is F at the default baseline (UNK embeddings before the target)
    unk = tiny_llama.tokenizer.unk_token_id
    expected = []
    for position, target in zip(seq.target_positions, seq.target_ids.tolist()):
        ids = seq.input_ids[:position].clone()
        ids[~seq.held_fixed[:position]] = unk
        with torch.no_grad():
            logits = tiny_llama.model(ids.unsqueeze(0)).logits[0, -1]
        expected.append(float(logits.softmax(-1)[target]))
    assert_close_to_scale(f_base, expected, floor=TINY_MODEL, what="F at the baseline")
