"""attribute_context (PECoRe): selection by hand, step one's scores by hand, step two's cues on a
planted model, the views (escaped), JSON round trip, the command line and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib
from genattrib import InvalidArgumentError
from genattrib.cli import main
from genattrib.context import ContextAttributionOutput, ContextCue, select_tokens, std_threshold
from genattrib.models.results.token_text import decode_tokens

CONTEXT = "The capital of France is Paris."
CURRENT = "The capital of Italy is"
OUTPUT = "Rome. The capital"


def test_selection_by_hand():
    scores = [0.1, -2.5, 0.3, 1.9, 0.2]
    mean = sum(scores) / 5
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / 4)  # sample std, as Inseq (torch)
    assert std_threshold(scores, 1.0) == pytest.approx(mean + std)
    assert std_threshold(scores, 0) == pytest.approx(mean)
    assert select_tokens(scores, 1.0) == [(1, -2.5), (3, 1.9)]  # |score| >= threshold, largest first
    assert select_tokens(scores, 1.0, top_k=1) == [(1, -2.5)]
    assert [i for i, _ in select_tokens(scores, None)] == [1, 3, 2, 4, 0]
    assert select_tokens([0.5], 1.0) == [(0, 0.5)]  # one score: the mean


def kl_by_hand(model, prompt: str, contrast_prompt: str, output: str) -> tuple[list[float], float]:
    """(KL(P_without || P_with) at each output token, from two plain forwards; the size of the terms it
    sums, Σ p·|log p|, which sets float32's rounding error of a small KL)."""
    tok = model.tokenizer
    out_ids = tok(" " + output, add_special_tokens=False)["input_ids"]
    rows = []
    for p in (prompt, contrast_prompt):
        ids = tok(p)["input_ids"]
        with torch.no_grad():
            logits = model.model(torch.tensor([ids + out_ids])).logits[0].double()
        rows.append(logits[len(ids) - 1 : len(ids) + len(out_ids) - 1].log_softmax(-1))
    p, q = rows
    return (p.exp() * (p - q)).sum(-1).tolist(), float((p.exp() * p.abs()).sum(-1).max())


def test_step_one_scores_and_selection_by_hand(tiny_llama):
    out = genattrib.attribute_context(
        tiny_llama, CURRENT, input_context_text=CONTEXT, output_current_text=OUTPUT, method="saliency"
    )
    expected, terms = kl_by_hand(tiny_llama, CURRENT, f"{CONTEXT} {CURRENT}", OUTPUT)
    assert_close_to_scale(out.sensitivity_scores, expected, floor=TINY_MODEL, what="KL", scale=terms)
    assert out.selected == [i for i, _ in select_tokens(out.sensitivity_scores, 1.0)]
    assert out.threshold == pytest.approx(std_threshold(expected, 1.0), rel=1e-3)
    assert len(out.output_current_tokens) == len(expected)
    n_context = len(tiny_llama.tokenizer(CONTEXT)["input_ids"])
    assert len(out.input_context_tokens) == n_context
    assert all(len(cue.input_context_scores) == n_context for cue in out.cues)


def test_step_two_is_the_contrastive_attribution_of_each_token(tiny_llama):
    """Each cue's scores are the context part of attributing the token against the contextless prediction."""
    out = genattrib.attribute_context(
        tiny_llama, CURRENT, input_context_text=CONTEXT, output_current_text=OUTPUT, method="saliency",
        context_sensitivity_std_threshold=None, context_sensitivity_topk=3,
    )  # fmt: skip
    tok = tiny_llama.tokenizer
    out_ids = tok(" " + OUTPUT, add_special_tokens=False)["input_ids"]
    n_context = len(tok(CONTEXT)["input_ids"])
    assert len(out.cues) == 3
    for cue in out.cues:
        contextless = tok(CURRENT)["input_ids"] + out_ids[: cue.index]
        with torch.no_grad():
            greedy = int(tiny_llama.model(torch.tensor([contextless])).logits[0, -1].argmax())
        assert cue.contrast_token == decode_tokens(tok, [greedy])[0]
        if greedy == out_ids[cue.index]:
            continue  # the same token: forced contrast input, checked in tests/targets
        direct = tiny_llama.attribute(
            f"{CONTEXT} {CURRENT}", torch.tensor(out_ids[: cue.index + 1]), method="saliency",
            attributed_fn="contrast_prob_diff", contrast_target=torch.tensor([greedy] * (cue.index + 1)),
            attr_pos_start=cue.index,
        )  # fmt: skip
        expected = direct.sequences[0].scores[0, :n_context]
        assert_close_to_scale(cue.input_context_scores, expected, floor=TINY_MODEL, what="cue scores")


def test_cues_point_at_the_planted_positions(planted):
    """The planted model reads only positions 1 and 3: with the context there, every cue's salient tokens are those."""
    model, positions = planted
    out = genattrib.attribute_context(
        model, "is", input_context_text="The capital of France", output_current_text="Paris. The capital",
        method="occlusion", attributed_fn="probability",
    )  # fmt: skip
    assert out.cues, "removing the context changes every prediction of the planted model"
    for cue in out.cues:
        scores = torch.tensor(cue.input_context_scores).abs()
        assert set(scores.topk(2).indices.tolist()) == set(positions)
        assert set(cue.salient(std_weight=1.0)["input"]) <= set(positions)


def test_views_escape_tokens_and_round_trip(tmp_path):
    out = ContextAttributionOutput(
        input_context="<b>&", input_context_tokens=["<b>", "&"], input_current="q<", output_context=None,
        output_context_tokens=[], output_current="<i>x", output_current_tokens=["<i>", "x"], metric="kl_divergence",
        sensitivity_scores=[2.0, 0.1], threshold=1.0,
        cues=[ContextCue(0, "<i>", 2.0, "<s>", [0.9, -0.1], None)],
    )  # fmt: skip
    page = out.to_html(std_weight=0)  # cues above the mean: the first
    assert "<b>" not in page and "<i>" not in page and "&lt;b&gt;" in page and "&amp;" in page
    assert "&lt;s&gt;" in page and page.count('class="tok sensitive"') == 2  # the token and its cue
    text = out.to_text(std_weight=0)
    assert "[<i>]x" in text and "'<b>'" in text
    out.save(tmp_path / "c.json")
    assert ContextAttributionOutput.load(tmp_path / "c.json") == out


def test_command_line(saved_model, tmp_path, capsys):
    args = [
        "attribute-context", "--model", str(saved_model), "--input-current-text", CURRENT,
        "--input-context-text", CONTEXT, "--output-current-text", OUTPUT, "--method", "saliency",
        "--save-path", str(tmp_path / "c.json"), "--viz-path", str(tmp_path / "c.html"),
    ]  # fmt: skip
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "Context-sensitive tokens (kl_divergence" in shown
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["metric"] == "kl_divergence" and saved["output_current"] == OUTPUT
    assert "<html>" in (tmp_path / "c.html").read_text().lower()
    assert main([*args[:-4], "--context-sensitivity-metric", "entropy"]) == 2  # argparse: not contrastive


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"context_sensitivity_metric": "probability"}, "context_sensitivity_metric"),
        ({"input_template": "{context}"}, "input_template"),
        ({"input_template": "{context} {current}", "input_context_text": None}, "input_context_text"),
        ({"attributed_fn": "nope"}, "attributed_fn"),
        ({"contextless_input_current_text": "x"}, "contextless_input_current_text"),
    ],
)
def test_bad_input(tiny_llama, kwargs, argument):
    args = {"input_context_text": CONTEXT, "output_current_text": OUTPUT, **kwargs}
    with pytest.raises(InvalidArgumentError) as info:
        genattrib.attribute_context(tiny_llama, CURRENT, **args)
    assert info.value.argument == argument
