"""Inseq's argument names for attribute(): accepted with a FutureWarning naming genattrib's, the same scores."""

from __future__ import annotations

import warnings

import pytest
import torch
from tolerance import OPS, TINY_MODEL, assert_close_to_scale

from genattrib import InvalidArgumentError

PROMPT = "The capital of France is"
CONTINUATION = " Paris. The"


def scores(out) -> torch.Tensor:
    return out.sequences[0].scores.nan_to_num(-7.0)  # NaN after each target: compared as a fixed value


def test_inseq_names_give_the_same_result_and_warn(tiny_llama):
    ours = tiny_llama.attribute(PROMPT, CONTINUATION, method="saliency", step_scores=["probability"])
    with pytest.warns(FutureWarning) as caught:
        theirs = tiny_llama.attribute(
            input_texts=PROMPT, generated_texts=PROMPT + CONTINUATION, method="saliency", step_scores=["probability"],
            attribute_target=True, output_step_attributions=True,
        )  # fmt: skip
    messages = " ".join(str(w.message) for w in caught)
    for inseq, genattrib_name in (("input_texts", "inputs="), ("generated_texts", "continuation=")):
        assert f"attribute({inseq}=...) is the name Inseq uses: genattrib's is {genattrib_name}" in messages
    assert "attribute_target=True" in messages and "output_step_attributions=True" in messages
    assert torch.equal(scores(ours), scores(theirs))
    assert torch.equal(ours.sequences[0].step_scores["probability"], theirs.sequences[0].step_scores["probability"])


def test_generation_args_reach_generation(tiny_llama):
    with pytest.warns(FutureWarning, match="generation_args"):
        out = tiny_llama.attribute(PROMPT, generation_args={"max_new_tokens": 3}, method="saliency")
    assert out.sequences[0].scores.shape[0] == 3


def test_contrast_targets_become_a_contrast_prompt_or_continuation(tiny_llama):
    kw = dict(method="occlusion", step_scores=["pcxmi"])
    other_prompt = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_prompt="France is", **kw)
    other_continuation = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_continuation=" Rome. The", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        a = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_targets="France is" + CONTINUATION, **kw)
        b = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_targets=PROMPT + " Rome. The", **kw)
    assert torch.equal(a.sequences[0].step_scores["pcxmi"], other_prompt.sequences[0].step_scores["pcxmi"])
    assert torch.equal(b.sequences[0].step_scores["pcxmi"], other_continuation.sequences[0].step_scores["pcxmi"])
    assert not torch.equal(a.sequences[0].step_scores["pcxmi"], b.sequences[0].step_scores["pcxmi"])


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"input_texts": PROMPT}, "input_texts"),  # with inputs= too
        ({"generated_texts": "Another text"}, "generated_texts"),  # does not start with the prompt
        ({"generation_args": {"max_new_tokens": 2}, "max_new_tokens": 3}, "generation_args"),
        ({"contrast_targets": PROMPT + " x", "contrast_targets_alignments": "auto"}, "contrast_targets_alignments"),
        ({"contrast_targets": PROMPT + " x", "contrast_targets_alignments": [(0, -1)]}, "contrast_alignments"),
        ({"contrast_targets_alignments": [(5, 3)]}, "contrast_alignments"),  # no contrast input
    ],
)
def test_clashes_and_unsupported_names_fail(tiny_llama, kwargs, argument):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(InvalidArgumentError) as info:
            tiny_llama.attribute(PROMPT, **kwargs)
    assert info.value.argument == argument


def test_explicit_alignments_choose_the_contrast_positions(tiny_llama):
    """contrast_alignments=[(i, j)]: the step at index i reads the contrast sequence's prediction of its
    token j (Inseq's contrast_targets_alignments, same indices); unpaired steps align from the end."""
    tok = tiny_llama.tokenizer
    prompt_ids = tok(PROMPT)["input_ids"]
    n = len(tok(PROMPT + CONTINUATION)["input_ids"]) - len(prompt_ids)
    contrast = "France is" + CONTINUATION
    kw = dict(method="occlusion", step_scores=["contrast_prob"], contrast_prompt="France is")
    default = tiny_llama.attribute(PROMPT, CONTINUATION, **kw).sequences[0].step_scores["contrast_prob"]
    pairs = [(len(prompt_ids), 2)]  # the first step reads the contrast sequence's token 2, predicted from 0..1
    aligned = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_alignments=pairs, **kw)
    probs = aligned.sequences[0].step_scores["contrast_prob"]
    c_ids = tok(contrast)["input_ids"]
    with torch.no_grad():
        p = tiny_llama.model(torch.tensor([c_ids])).logits[0, 1].softmax(-1)[c_ids[2]]
    assert_close_to_scale(probs[:1], p[None], floor=TINY_MODEL, what="aligned step")
    assert_close_to_scale(probs[1:n], default[1:n], floor=OPS, what="steps aligned from the end")
    assert not torch.allclose(probs[0], default[0])
    with pytest.warns(FutureWarning, match="contrast_alignments"):
        theirs = tiny_llama.attribute(PROMPT, CONTINUATION, contrast_targets_alignments=pairs, **kw)
    assert torch.equal(theirs.sequences[0].step_scores["contrast_prob"], probs)


def test_no_prompt_at_all(tiny_llama):
    with pytest.raises(InvalidArgumentError, match="no prompt"):
        tiny_llama.attribute()
