"""Terminal rendering of FeatureAttributionOutput (genattrib.render)."""

from __future__ import annotations

import io
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from genattrib.errors import InvalidArgumentError
from genattrib.output import FeatureAttributionOutput, Provenance, SequenceAttribution
from genattrib.render import render, show
from genattrib.render.colors import BLUE, ORANGE, WHITE, ColorScale, NumberFormat
from genattrib.render.matrix import split_columns
from genattrib.render.tokens import display_token, fit_cells, text_token

PROMPT = ["<|im_start|>", "The", " capital", " of", " France", " is"]
GENERATED = [" Paris", ".", " It", " is", " big", "<|im_end|>"]


def make_seq(
    prompt: list[str],
    generated: list[str],
    *,
    scores: torch.Tensor | None = None,
    step_start: int = 0,
    num_steps: int | None = None,
    step_scores: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> SequenceAttribution:
    """A sequence with the NaN pattern of a real result: scores[j, i] NaN for i >= P + start + j."""
    tokens = prompt + generated
    n, p = len(tokens), len(prompt)
    steps = len(generated) - step_start if num_steps is None else num_steps
    if scores is None:
        scores = torch.randn(steps, n, generator=torch.Generator().manual_seed(seed))
    scores = scores.clone().float()
    for j in range(steps):
        scores[j, p + step_start + j :] = float("nan")
    if step_scores is None:
        step_scores = {"probability": torch.linspace(0.05, 0.95, steps)}
    return SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=scores,
        step_scores=step_scores,
        step_start=step_start,
        generated_text="".join(generated),
    )


def make_out(*seqs: SequenceAttribution, method: str = "saliency", fn: str = "logprob") -> FeatureAttributionOutput:
    return FeatureAttributionOutput(list(seqs), Provenance(model_name="tiny", method=method, attributed_fn=fn))


def rendered_text(out: FeatureAttributionOutput, width: int = 120, **kwargs) -> str:
    console = Console(file=io.StringIO(), record=True, width=width, color_system="truecolor")
    for item in render(out, console=console, **kwargs):
        console.print(item)
    return console.export_text()


def widest(text: str) -> int:
    return max((cell_len(line.rstrip()) for line in text.splitlines()), default=0)


# --- tokens --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "shown"),
    [
        (" Paris", "·Paris"),
        ("Paris ", "Paris·"),
        ("a b", "a b"),
        ("   ", "···"),
        ("\n", "⏎"),
        ("\tx", "⇥x"),
        ("\n Paris", "⏎ Paris"),
        ("", "∅"),
        ("\x00", "␀"),
        ("[bold]x[/bold]", "[bold]x[/bold]"),
    ],
)
def test_display_token(token: str, shown: str) -> None:
    assert display_token(token) == shown


def test_display_token_truncates_by_cells() -> None:
    assert display_token("abcdefghijkl", 6) == "abcde…"
    assert cell_len(display_token("東京都庁舎ビル", 6)) <= 6
    assert display_token("東京都庁舎ビル", 6).endswith("…")
    assert fit_cells("short", 10) == "short"


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30), st.integers(1, 20))
def test_display_token_is_single_line_and_fits(token: str, width: int) -> None:
    shown = display_token(token, width)
    assert "\n" not in shown and "\r" not in shown and "\t" not in shown
    assert all(ord(c) >= 0x20 for c in shown)
    assert cell_len(shown) <= width


def test_text_token_keeps_spaces_and_breaks_lines() -> None:
    assert text_token(" Paris") == " Paris"
    assert text_token("a\nb") == "a⏎\nb"


# --- colours and numbers --------------------------------------------------------------------
def test_color_scale_kinds() -> None:
    nan = float("nan")
    diverging = ColorScale.fit(torch.tensor([-0.5, 0.25, nan]))
    assert (diverging.kind, diverging.vmax, diverging.limits) == ("diverging", 0.5, (-0.5, 0.5))
    assert diverging.rgb(0.5) == ORANGE and diverging.rgb(-0.5) == BLUE and diverging.rgb(0.0) == WHITE
    positive = ColorScale.fit(torch.tensor([0.0, 2.0, nan, float("inf")]))
    assert (positive.kind, positive.vmax, positive.limits) == ("sequential", 2.0, (0.0, 2.0))
    negative = ColorScale.fit(torch.tensor([-3.0, -1.0]))
    assert negative.kind == "sequential_negative" and negative.rgb(-3.0) == BLUE
    empty = ColorScale.fit(torch.tensor([nan, nan]))
    assert empty.vmax == 0.0 and empty.rgb(1.0) == WHITE


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(1e-6, 1e6))
def test_color_scale_rgb_in_range(value: float, vmax: float) -> None:
    for kind in ("diverging", "sequential", "sequential_negative"):
        rgb = ColorScale(kind, vmax).rgb(value)
        assert all(0 <= c <= 255 for c in rgb)


def test_number_format() -> None:
    fmt = NumberFormat(2)
    assert fmt(float("nan")) == ""
    assert fmt(-0.0001) == "0.00"
    assert fmt(-1.234) == "-1.23"
    assert fmt(float("inf")) == "inf"
    tiny = NumberFormat.fit(3e-5, 2)
    assert tiny(3e-5) == "3.00" and "1e-05" in tiny.suffix
    assert NumberFormat.fit(0.5, 2).suffix == ""


@given(st.lists(st.integers(1, 30), max_size=40), st.integers(10, 200), st.integers(0, 40))
def test_split_columns_partitions_and_fits(widths: list[int], width: int, fixed: int) -> None:
    blocks = split_columns(widths, width, fixed)
    assert [j for block in blocks for j in block] == list(range(len(widths)))
    for block in blocks:
        assert len(block) >= 1
        if len(block) > 1:
            assert fixed + sum(widths[j] + 2 for j in block) <= width


# --- matrix view ----------------------------------------------------------------------------
def test_every_source_and_target_token_appears() -> None:
    out = make_out(make_seq(PROMPT, GENERATED))
    text = rendered_text(out)
    for token in PROMPT + GENERATED[:-1]:  # the last token is a target only, never a source row
        assert display_token(token) in text
    for token in out.sequences[0].target_tokens:
        assert display_token(token) in text
    assert "Sequence 0" in text


def test_markup_in_tokens_is_shown_literally() -> None:
    out = make_out(make_seq(["[bold]x[/bold]", " :smile:"], ["[red]y[/red]", "[/]", "z"]))
    text = rendered_text(out)
    assert "[bold]x[/bold]" in text and "[red]y[/red]" in text and "[/]" in text and ":smile:" in text


def test_legend_shows_method_function_and_scale() -> None:
    scores = torch.zeros(len(GENERATED), len(PROMPT + GENERATED))
    scores[0, 0], scores[1, 2] = -0.8, 0.4
    out = make_out(make_seq(PROMPT, GENERATED, scores=scores), method="integrated_gradients", fn="probability")
    text = rendered_text(out, scale="global")
    legend = next(line for line in text.splitlines() if "integrated_gradients" in line)
    assert "probability" in legend and "-0.80" in legend and "0.80" in legend.replace("-0.80", "")
    assert "colour scale: the largest |score| of the sequence" in text
    # the default scale: each step (column) against its own largest |score|, said in the legend
    text = rendered_text(out)
    legend = next(line for line in text.splitlines() if "integrated_gradients" in line)
    assert "-max" in legend and "-0.80" not in legend
    assert "colour scale: each step's own largest |score|" in text


def test_nan_cells_show_no_number() -> None:
    p, g = len(PROMPT), len(GENERATED)
    full = torch.tensor([[100.0 * j + i for i in range(p + g)] for j in range(g)])
    seq = make_seq(PROMPT, GENERATED, scores=full, step_scores={})
    text = rendered_text(make_out(seq), width=200)
    assert "nan" not in text.lower()
    for j in range(g):
        for i in range(p + g):
            shown = re.search(rf"(?<![\d.]){100.0 * j + i:.2f}(?!\d)", text) is not None
            assert shown == (i < p + j), (j, i)


def test_step_score_rows_shown_and_hidden() -> None:
    seq = make_seq(
        PROMPT, GENERATED, step_scores={"probability": torch.full((6,), 0.5), "entropy": torch.full((6,), 2.25)}
    )
    text = rendered_text(make_out(seq))
    assert "probability" in text and "entropy" in text and "2.25" in text
    hidden = rendered_text(make_out(seq), step_scores=False)
    assert "probability" not in hidden.split("attributions of")[0] and "entropy" not in hidden


def test_wide_output_is_split_into_blocks_that_fit() -> None:
    generated = [f" t{k}" for k in range(200)]
    out = make_out(make_seq(["A", " long", " prompt"], generated))
    console = Console(file=io.StringIO(), record=True, width=100)
    items = render(out, console=console, view="matrix")
    tables = [item for item in items if isinstance(item, Table)]
    assert len(tables) > 1
    for item in items:
        console.print(item)
    text = console.export_text()
    assert widest(text) <= 100
    assert text.count("probability") == len(tables)  # step scores repeated under every block
    for token in generated:
        assert display_token(token) in text


def test_max_width_caps_a_wider_console() -> None:
    out = make_out(make_seq(PROMPT, GENERATED))
    text = rendered_text(out, width=200, max_width=40)
    assert widest(text) <= 40
    for token in GENERATED:
        assert display_token(token) in text


def test_many_steps_default_to_compact_view() -> None:
    generated = [f" w{k}" for k in range(80)]
    out = make_out(make_seq(["The", " cat"], generated))
    text = rendered_text(out, width=100)
    assert "show(step=k)" in text
    assert "The cat w0 w1 w2" in text and "w79" in text
    assert not any(isinstance(item, Table) for item in render(out, console=Console(width=100)))


def test_sliced_steps_show_their_targets_only() -> None:
    out = make_out(make_seq(PROMPT, GENERATED)).steps(2, 4)
    seq = out.sequences[0]
    assert seq.target_tokens == [" It", " is"]
    items = render(out, console=Console(width=120))
    table = next(item for item in items if isinstance(item, Table))
    assert [c.header.plain for c in table.columns[1:]] == ["·It", "·is"]


def test_empty_and_multiple_sequences() -> None:
    empty = make_seq(PROMPT, GENERATED, num_steps=0, step_scores={})
    text = rendered_text(make_out(empty, make_seq(["Hi"], [" there", "!"])))
    assert "no explained steps" in text and "Sequence 1" in text and "·there" in text


def test_bfloat16_scores_render() -> None:
    seq = make_seq(PROMPT, GENERATED)
    seq.scores = seq.scores.to(torch.bfloat16)
    assert "·Paris" in rendered_text(make_out(seq))


def test_tiny_scores_are_rescaled_not_zero() -> None:
    seq = make_seq(PROMPT, GENERATED, scores=torch.full((6, 12), 4e-6), step_scores={})
    text = rendered_text(make_out(seq))
    assert "4.00" in text and "×1e-06" in text


# --- step view ------------------------------------------------------------------------------
def test_step_view_shows_source_text() -> None:
    out = make_out(make_seq(["The", " capital", " of", " France", " is"], [" Paris", ".", " It"]))
    text = rendered_text(out, step=1)
    assert "The capital of France is Paris." in text
    assert "Step 1" in text and "saliency" in text and "top |score|" in text
    assert text == rendered_text(out, step=-2)


def test_step_view_out_of_range_names_the_argument() -> None:
    out = make_out(make_seq(PROMPT, GENERATED))
    with pytest.raises(InvalidArgumentError, match="step"):
        render(out, step=6, console=Console(width=80))


def test_show_prints_to_the_given_console_and_via_output_method() -> None:
    out = make_out(make_seq(PROMPT, GENERATED))
    console = Console(file=io.StringIO(), record=True, width=120)
    show(out, console=console)
    first = console.export_text()
    out.show(console=console)
    assert console.export_text() == first and "·Paris" in first


def test_bad_display_arguments_raise_genattrib_errors() -> None:
    out = make_out(make_seq(PROMPT, GENERATED))
    with pytest.raises(InvalidArgumentError, match="view"):
        render(out, view="grid", console=Console(width=80))
    with pytest.raises(InvalidArgumentError, match="digits"):
        render(out, digits=-1, console=Console(width=80))


def test_saved_and_reloaded_output_renders_the_same(tmp_path) -> None:
    out = make_out(make_seq(PROMPT, GENERATED))
    loaded = FeatureAttributionOutput.load(out.save(tmp_path / "r.json"))
    assert rendered_text(loaded) == rendered_text(out)


token_text = st.text(alphabet=st.characters(exclude_categories=("Cs", "Co", "Cn")), max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prompt=st.lists(token_text, min_size=1, max_size=5),
    generated=st.lists(token_text, min_size=1, max_size=12),
    width=st.integers(20, 140),
    signed=st.booleans(),
    data=st.data(),
)
def test_any_tokens_render_within_width(prompt, generated, width, signed, data) -> None:
    step_start = data.draw(st.integers(0, len(generated) - 1))
    n = len(prompt) + len(generated)
    scores = torch.randn(len(generated) - step_start, n)
    scores = scores if signed else scores.abs()
    out = make_out(make_seq(prompt, generated, scores=scores, step_start=step_start))
    for kwargs in ({}, {"step": 0}, {"view": "compact"}):
        text = rendered_text(out, width=width, **kwargs)
        assert "Sequence 0" in text
        assert widest(text) <= width, kwargs
