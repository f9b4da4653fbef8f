"""Inseq's step functions (crossentropy ... top_p_size) and contrast inputs (contrast_prompt=,
contrast_continuation=, contrast_force_inputs=): every value against a hand computation from the
tiny model's own logits (a plain forward of the whole sequence, by other code than genattrib's)."""

from __future__ import annotations

import math

import pytest
import torch
from inseq_reference import INSEQ_CONTRASTIVE, INSEQ_METHODS, INSEQ_STEP_FUNCTIONS
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib
from genattrib import InvalidArgumentError
from genattrib.engine import ModelForward
from genattrib.engine.contrast_inputs import right_aligned
from genattrib.engine.row_refs import SequenceJob
from genattrib.engine.step_scores import dropout_on, mc_dropout_step_scores
from genattrib.targets import BUILTIN_TARGETS, TargetContext, resolve_target

pytestmark = pytest.mark.numeric

PROMPT = "The capital of France is Paris. The capital of Italy is"
CONTEXTLESS = "The capital of Italy is"
CONTINUATION = " Rome. The"
ALTERNATIVE = " Paris. The"


def test_every_inseq_step_function_is_a_target():
    assert set(INSEQ_STEP_FUNCTIONS) <= set(genattrib.list_targets())
    assert all(BUILTIN_TARGETS[name].needs_contrast for name in INSEQ_CONTRASTIVE)


def test_every_inseq_method_is_a_method():
    """Inseq 0.7.1's attribution methods (its ``dummy`` placeholder aside) all exist here by name;
    benchmarks/parity_*.py compare their scores."""
    assert set(INSEQ_METHODS) - {"dummy"} <= set(genattrib.list_methods())


def full_logits(model, prompt: str, continuation: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits predicting each continuation token, its ids, n) from one plain forward of the whole sequence."""
    tok = model.tokenizer
    prompt_ids = tok(prompt)["input_ids"]
    ids = prompt_ids + tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.model(torch.tensor([ids])).logits[0].double()
    n = len(ids) - len(prompt_ids)
    return logits[len(prompt_ids) - 1 : len(ids) - 1], torch.tensor(ids[len(prompt_ids) :]), n


def by_hand(name: str, logits, ids, c_logits, c_ids) -> list[float]:
    """The value of step function ``name`` from logits, by the formulas of docs/methods.md."""
    out = []
    for row, t, c_row, c in zip(logits.tolist(), ids.tolist(), c_logits.tolist(), c_ids.tolist()):
        z, zc = math.log(sum(math.exp(v) for v in row)), math.log(sum(math.exp(v) for v in c_row))
        lp, lpc = row[t] - z, c_row[c] - zc
        value = {
            "crossentropy": -lp,
            "perplexity": 2 ** (-lp),
            "contrast_logits": c_row[c],
            "contrast_prob": math.exp(lpc),
            "contrast_logits_diff": row[t] - c_row[c],
            "contrast_prob_diff": math.exp(lp) - math.exp(lpc),
            "pcxmi": -(lp - lpc) / math.log(2),
            "in_context_pvi": -lp + lpc,
            "kl_divergence": sum(math.exp(v - z) * ((v - z) - (w - zc)) for v, w in zip(row, c_row)),
        }[name]
        out.append(value)
    return out


NAMES = ["crossentropy", "perplexity", *INSEQ_CONTRASTIVE]
#: Differences of two terms of similar size: float32 rounds the terms, so their size is the scale of the error.
DIFFERENCES = ("contrast_logits_diff", "contrast_prob_diff", "pcxmi", "kl_divergence", "in_context_pvi")


def check(name: str, got, logits, ids, c_logits, c_ids) -> None:
    expected = by_hand(name, logits, ids, c_logits, c_ids)
    terms = [by_hand(n, logits, ids, c_logits, c_ids) for n in ("crossentropy", "contrast_logits")]
    scale = max(abs(v) for v in [*terms[0], *terms[1]]) if name in DIFFERENCES else None
    assert_close_to_scale(got, expected, floor=TINY_MODEL, what=name, scale=scale)


def test_step_functions_with_a_contrast_prompt_by_hand(tiny_llama):
    """The prompt without its context: each contrastive step reads the contextless prediction of the same token."""
    out = tiny_llama.attribute(PROMPT, CONTINUATION, method="occlusion", step_scores=NAMES, contrast_prompt=CONTEXTLESS)
    logits, ids, n = full_logits(tiny_llama, PROMPT, CONTINUATION)
    c_logits, c_ids, _ = full_logits(tiny_llama, CONTEXTLESS, CONTINUATION)
    for name in NAMES:
        got = out.sequences[0].step_scores[name]
        assert got.shape == (n,)
        check(name, got, logits, ids, c_logits, c_ids)


def test_step_functions_with_a_contrast_continuation_by_hand(tiny_llama):
    """Another continuation after the same prompt: step i reads its token i under its own prefix."""
    out = tiny_llama.attribute(
        PROMPT, CONTINUATION, method="occlusion", step_scores=NAMES, contrast_continuation=ALTERNATIVE
    )
    logits, ids, _ = full_logits(tiny_llama, PROMPT, CONTINUATION)
    c_logits, c_ids, _ = full_logits(tiny_llama, PROMPT, ALTERNATIVE)
    assert not torch.equal(ids, c_ids)
    for name in NAMES:
        check(name, out.sequences[0].step_scores[name], logits, ids, c_logits, c_ids)


def test_contrast_target_alone_reads_the_real_input(tiny_llama):
    """contrast_target= (no contrast input): the alternative token under the same prefix, as before."""
    out = tiny_llama.attribute(PROMPT, CONTINUATION, method="occlusion", step_scores=["pcxmi"], contrast_target=" is")
    logits, ids, n = full_logits(tiny_llama, PROMPT, CONTINUATION)
    (the,) = tiny_llama.tokenizer(" is", add_special_tokens=False)["input_ids"]  # one token: repeated
    c_ids = torch.tensor([the] * n)
    check("pcxmi", out.sequences[0].step_scores["pcxmi"], logits, ids, logits, c_ids)


def test_attributed_function_reads_contrast_tokens_unless_forced(tiny_llama):
    """As in Inseq: an attributed contrastive function reads the contrast tokens under the real input; with
    contrast_force_inputs=True it reads the contrast input's prediction, a constant that adds no gradient."""
    kw = dict(method="saliency", attributed_fn="contrast_prob_diff")
    same_tokens = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_prompt=CONTEXTLESS, **kw)
    forced = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_prompt=CONTEXTLESS, contrast_force_inputs=True, **kw)
    plain = tiny_llama.attribute(PROMPT, CONTINUATION, method="saliency", attributed_fn="probability")
    # same token under the same input: p - p = 0 has no gradient
    assert float(same_tokens.sequences[0].scores.nan_to_num(0).abs().max()) == 0.0
    assert_close_to_scale(forced.sequences[0].scores, plain.sequences[0].scores, floor=TINY_MODEL)


def test_top_p_size_by_hand():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    p = logits.softmax(-1)
    fn = resolve_target("top_p_size")
    # p0 = 0.644: nucleus at 0.9 needs 0.644 + 0.237 + 0.087 = 0.968 -> 3 tokens; uniform: ceil(0.9 * 4) = 4
    assert p[0, :2].sum() < 0.9 < p[0, :3].sum()
    assert fn(TargetContext(logits, torch.tensor([0, 0]))).tolist() == [3.0, 4.0]


def test_right_alignment_and_its_error():
    assert right_aligned(8, 5, 4).tolist() == [1, 2, 3]
    with pytest.raises(InvalidArgumentError, match="contrast_continuation"):
        right_aligned(8, 2, 4)


def test_mc_dropout_is_seeded_and_restores_modes(tiny_tokenizer):
    from tiny import make_model

    hf = make_model("gpt2", tiny_tokenizer)  # GPT-2's dropout: 0.1
    ids = torch.tensor(tiny_tokenizer(PROMPT + CONTINUATION)["input_ids"])
    job = SequenceJob(ids, prompt_length=8, step_start=0, step_stop=int(ids.shape[0]) - 8)
    target = resolve_target("mc_dropout_prob_avg")
    forward = ModelForward(hf)
    hf.transformer.h[0].train()  # a mixed state must come back as it was
    modes = [m.training for m in hf.modules()]
    a = mc_dropout_step_scores(forward, job, target, seed=3)
    b = mc_dropout_step_scores(forward, job, target, seed=3)
    c = mc_dropout_step_scores(forward, job, target, seed=4)
    assert [m.training for m in hf.modules()] == modes
    assert torch.equal(a, b) and not torch.equal(a, c)
    # by hand: 5 seeded passes of the whole model in training mode, the z-score of the clean probability
    with torch.no_grad():
        hf.eval()
        clean = hf(ids[None]).logits[0, 7:-1].softmax(-1)
        torch.manual_seed(3)
        hf.train()
        noisy = torch.stack([hf(ids[None]).logits[0, 7:-1].softmax(-1) for _ in range(5)])
        hf.eval()
    t = ids[8:]
    p, pn = clean[torch.arange(len(t)), t], noisy[:, torch.arange(len(t)), t]
    assert_close_to_scale(a, (p - pn.mean(0)) / pn.std(0), floor=TINY_MODEL)


def test_dropout_on_restores_modes_on_error(tiny_tokenizer):
    from tiny import make_model

    hf = make_model("gpt2", tiny_tokenizer)
    with pytest.raises(RuntimeError, match="inside"), dropout_on(hf):
        assert hf.training
        raise RuntimeError("inside")
    assert not any(m.training for m in hf.modules())


def test_mc_dropout_step_score_through_attribute(tiny_llama):
    out = tiny_llama.attribute(PROMPT, CONTINUATION, method="occlusion", step_scores=["mc_dropout_prob_avg"], seed=1)
    n = full_logits(tiny_llama, PROMPT, CONTINUATION)[2]
    assert out.sequences[0].step_scores["mc_dropout_prob_avg"].shape == (n,)
    assert not tiny_llama.model.training


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"attributed_fn": "mc_dropout_prob_avg"}, "attributed_fn"),
        ({"step_scores": ["pcxmi"]}, "contrast_target"),
        ({"contrast_force_inputs": True}, "contrast_force_inputs"),
        ({"contrast_prompt": [[{"role": "user", "content": "Italy?"}]]}, "contrast_prompt"),
        ({"contrast_prompt": ["a", "b"]}, "contrast_prompt"),
        ({"contrast_prompt": "The", "contrast_continuation": " x"}, "contrast_continuation"),
    ],
)
def test_bad_contrast_arguments_fail_before_work(tiny_llama, kwargs, argument):
    with pytest.raises(InvalidArgumentError) as info:
        tiny_llama.attribute(PROMPT, CONTINUATION, method="occlusion", **kwargs)
    assert info.value.argument == argument
