"""``show(summary=True)``: per generated sentence, the source sentences that mattered most."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from genattrib.errors import InvalidArgumentError
from genattrib.output import FeatureAttributionOutput, Provenance, SequenceAttribution
from genattrib.render import render
from genattrib.render.summary import summarize

PROMPT = ["A", " cat", " sat", ".", " A", " dog", " ran", "."]
GENERATED = [" It", " ran", " fast", ".", " Then", " it", " slept", "."]


def make_seq(
    prompt: list[str],
    generated: list[str],
    scores: torch.Tensor | None = None,
    *,
    step_start: int = 0,
    special: set[int] = frozenset(),
    roles: list[str] | None = None,
) -> SequenceAttribution:
    tokens = prompt + generated
    n, p = len(tokens), len(prompt)
    k = len(generated) - step_start
    scores = torch.ones(k, n) if scores is None else scores.clone().float()
    for j in range(k):
        scores[j, p + step_start + j :] = math.nan
    return SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=scores,
        step_start=step_start,
        special_mask=torch.tensor([i in special for i in range(n)]),
        token_roles=roles,
        generated_text="".join(generated),
    )


def printed(seq: SequenceAttribution, width: int = 100, **kwargs) -> str:
    out = FeatureAttributionOutput([seq], Provenance(method="saliency", attributed_fn="logprob"))
    console = Console(file=io.StringIO(), record=True, width=width, color_system="truecolor")
    for item in render(out, console=console, summary=True, **kwargs):
        console.print(item)
    return console.export_text()


def test_summary_lists_top_source_sentences_with_shares():
    scores = torch.zeros(len(GENERATED), len(PROMPT + GENERATED))
    scores[:, 4:8] = 3.0  # " A dog ran." matters most to every step
    scores[:, 0:4] = 1.0
    scores[:, 8:] = 0.5  # generated tokens: 0.5 each for every later step
    text = printed(make_seq(PROMPT, GENERATED, scores))
    lines = text.splitlines()
    assert "▸ It ran fast." in lines and "▸ Then it slept." in lines
    first = lines.index("▸ It ran fast.")
    # rows " It", " ran", " fast", ".": dog 4 x 4 x 3 = 48, cat 16, own earlier tokens (0+1+2+3) x 0.5 = 3
    assert "72%" in lines[first + 1] and "A dog ran." in lines[first + 1]
    assert "24%" in lines[first + 2] and "A cat sat." in lines[first + 2]
    assert "4%" in lines[first + 3] and "same sentence" in lines[first + 3]
    second = summarize(make_seq(PROMPT, GENERATED, scores))[1]
    assert [s.text for s in second.sources] == [" A dog ran.", "A cat sat.", " It ran fast."]
    assert not any(s.same_sentence for s in second.sources[:2])


def test_summary_shares_are_ranked_fractions_of_the_sources_shown_and_others():
    seq = make_seq(PROMPT, GENERATED, torch.rand(8, 16, generator=torch.Generator().manual_seed(0)) - 0.5)
    for summary in summarize(seq, top=2):
        shares = [s.share for s in summary.sources]
        assert len(shares) <= 2 and shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-6
    assert len(summarize(seq, top=10)[1].sources) == 4  # two prompt, one earlier, its own sentence
    assert sum(s.share for s in summarize(seq, top=10)[1].sources) == pytest.approx(1.0)


def test_tokens_are_text_not_markup_and_specials_are_left_out():
    prompt = ["<s>", "[bold red]Hi[/]", " there", "."]
    seq = make_seq(prompt, [" [link=x]ok[/link]", "."], special={0})
    text = printed(seq)
    assert "[bold red]Hi[/] there." in text and "▸ [link=x]ok[/link]." in text
    assert all(s.text != "<s>" for summary in summarize(seq) for s in summary.sources)


def test_summary_respects_width_roles_and_partial_steps():
    roles = ["template", "user", "user", "user", "user", "user", "user", "user"]
    seq = make_seq(PROMPT, GENERATED, step_start=5, roles=roles + ["generated"] * 8)
    text = printed(seq, width=40)
    assert max(cell_len(line) for line in text.splitlines()) <= 40
    assert "[user]" in text and "▸ it slept." in text and "▸ It ran fast" not in text


def test_summary_errors_and_empty_outputs():
    seq = make_seq(PROMPT, GENERATED)
    with pytest.raises(InvalidArgumentError, match="summary"):
        printed(seq, step=1)
    with pytest.raises(InvalidArgumentError, match="top"):
        summarize(seq, top=0)
    assert "no explained steps" in printed(seq.steps(0, 0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(["A", " b", ".", "!", " ", "\n\n", "日本", "", "?", " x."]), min_size=1, max_size=8),
    st.lists(st.sampled_from(["A", " b", ".", "!", " ", "\n\n", "🙂", "", "?", " x."]), min_size=1, max_size=8),
    st.integers(20, 90),
)
def test_summary_never_breaks(prompt, generated, width):
    seq = make_seq(prompt, generated, torch.randn(len(generated), len(prompt) + len(generated)))
    text = printed(seq, width=width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    for summary in summarize(seq):
        assert sum(s.share for s in summary.sources) <= 1 + 1e-6


def test_real_attribution_summary(tiny_llama):
    out = tiny_llama.attribute("The cat sat. The dog ran.", target=" It ran fast. Then it slept.")
    console = Console(file=io.StringIO(), record=True, width=100)
    out.show(summary=True, console=console)
    text = console.export_text()
    assert "▸ It ran fast." in text and "▸ Then it slept." in text and "%" in text
