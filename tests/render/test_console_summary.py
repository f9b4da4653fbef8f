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
        held_fixed=torch.tensor([i in special for i in range(n)]),
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


# --- long and unit-level results: out.show() prints a summary per unit -------------------------
def shown(out: FeatureAttributionOutput, width: int = 100, **kwargs) -> str:
    console = Console(file=io.StringIO(), record=True, width=width, color_system="truecolor")
    out.show(console=console, **kwargs)
    return console.export_text()


def unit_output(texts: list[str], weights: list[float] | None = None) -> FeatureAttributionOutput:
    """A unit-level result: PROMPT, then one generated sentence per text (one token per word)."""
    generated = [w for text in texts for w in text.split(" ") if w]
    generated = [(" " + w) for w in generated]
    tokens = PROMPT + generated
    n, p = len(tokens), len(PROMPT)
    spans, at = [], p
    for text in texts:
        count = len([w for w in text.split(" ") if w])
        spans.append((at, at + count))
        at += count
    scores = torch.full((len(spans), n), 0.1)
    scores[:, 4:8] = torch.tensor(weights or [1.0, 1.0, 1.0, 1.0])  # " A dog ran." leads
    for j, (a, _) in enumerate(spans):
        scores[j, a:] = math.nan
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=scores,
        target_spans=spans,
        generated_text="".join(generated),
    )
    return FeatureAttributionOutput([seq], Provenance(method="saliency", attributed_fn="logprob", explain="sentences"))


def test_unit_level_rows_too_wide_for_one_block_print_a_unit_summary():
    texts = [f"Sentence number {k} goes on for a while." for k in range(12)]
    out = unit_output(texts)
    text = shown(out, width=80)
    lines = text.splitlines()
    assert "Share of |attribution| per source sentence" in text and "show(summary=True)" in text
    for k in (0, 5, 11):
        assert f"▸ Sentence number {k} goes on for a while." in lines
    first = lines.index("▸ Sentence number 0 goes on for a while.")
    assert "A dog ran." in lines[first + 1] and "A cat sat." in lines[first + 2]  # ranked by share
    last = lines.index("▸ Sentence number 11 goes on for a while.")
    assert "A dog ran." in lines[last + 1] and "%" in lines[last + 1]
    assert "┃" not in text and "probability" not in text  # no matrix
    assert max(cell_len(line) for line in lines) <= 80


def test_unit_level_rows_that_fit_show_the_matrix_with_every_source_row():
    out = unit_output(["It ran.", "Then it slept well.", "The end."])
    lines = shown(out, width=120).splitlines()
    assert not any("Share of |attribution|" in line for line in lines)
    header = next(line for line in lines if "·Then it sl…" in line)
    assert "·It ran." in header and "·The end." in header
    # the third unit (" The end.", position 14) scores every token before it, down to " well."
    for label in ("·Then", "·slept", "·well."):
        row = next(line for line in lines if line.startswith(label + " "))
        assert row.split()[1:] == ["0.10"], row  # blank for the two earlier units


def test_long_token_level_result_prints_text_and_sentence_summary():
    prompt = ["A", " cat", " sat", "."]
    generated = []
    for k in range(20):
        generated += [" It", " ran", f" {k}", " times", "."]
    out = FeatureAttributionOutput(
        [make_seq(prompt, generated, torch.rand(100, 104, generator=torch.Generator().manual_seed(1)))],
        Provenance(method="saliency", attributed_fn="logprob"),
    )
    text = shown(out, width=100)
    assert "A cat sat. It ran 0 times. It ran 1 times." in text  # the text as written
    lines = text.splitlines()
    for k in (0, 7, 19):
        assert f"▸ It ran {k} times." in lines
    row = lines.index("▸ It ran 7 times.")
    assert all("%" in line for line in lines[row + 1 : row + 4])
    assert "100 explained steps are too many columns" in text
    assert "▸" not in shown(out, width=100, view="compact")  # the text alone


def test_unit_views_mark_whole_units():
    out = unit_output(["It ran.", "Then it slept well.", "The end."])
    step = shown(out, step=1)
    assert "Step 1 (positions 10-13): target ·Then it slept well." in step
    assert "A cat sat. A dog ran. It ran. Then it slept well." in step


def test_tiny_model_explaining_sentences_shows_matrix_and_summary(tiny_llama):
    out = tiny_llama.attribute(
        "The cat sat. The dog ran.", " It ran fast. Then it slept. The end.", explain="sentences"
    )
    matrix = shown(out, width=120)
    assert "·It ran fas…" in matrix and "·Then it sl…" in matrix and "·The end." in matrix
    summary = shown(out, width=100, summary=True)
    assert "▸ It ran fast." in summary and "▸ Then it slept." in summary and "▸ The end." in summary
    assert "The cat sat." in summary and "%" in summary
    narrow = shown(out, width=40)  # three units do not fit 40 columns: the summary instead
    assert "▸ Then it slept." in narrow and "Share of |attribution|" in narrow
