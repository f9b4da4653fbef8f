"""What views rank and how they colour: special and chat-template tokens left out of summaries,
top-k lists and colour scales by default (``include_special_tokens``), the colour scale
(``scale="step"|"global"``) and the caption that names the scores of every method."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from html_outputs import chat_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaxtyping import TypeCheckError
from rich.console import Console
from rich.text import Text

import genattrib
from genattrib import FeatureAttributionOutput, InvalidArgumentError, Provenance, SequenceAttribution
from genattrib.methods import METHODS, list_methods
from genattrib.render import render, to_html
from genattrib.render.captions import ATTENTION_METHODS, score_caption
from genattrib.render.colors import BLUE, ORANGE, row_scales
from genattrib.render.html_data import output_payload
from genattrib.render.summary import summarize
from genattrib.render.units import outline_units, top_sources, unit_scores

CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)
SINK = 16.2  # the attention sink of the review, against 0.58 for the user message
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def chat_sequence(sink: float = SINK) -> SequenceAttribution:
    """A chat whose first marker (special) and template text score far above the user's words."""
    return chat_output(sink).sequences[0]


def rendered(out: FeatureAttributionOutput, **kwargs) -> tuple[list, str]:
    console = Console(file=io.StringIO(), record=True, width=140, color_system="truecolor")
    items = render(out, console=console, **kwargs)
    for item in items:
        console.print(item)
    return items, console.export_text()


def span_background(text: Text, token: str) -> tuple[int, int, int]:
    """Background of the first span of ``text`` whose characters are ``token``."""
    for span in text.spans:
        if text.plain[span.start : span.end] == token and span.style and span.style.bgcolor:
            return span.style.bgcolor.get_truecolor()[:3]
    raise AssertionError(f"{token!r} not styled in {text.plain!r}")


# --- the output records which positions are special --------------------------------------
@pytest.fixture(scope="module")
def chat_model(tiny_llama):
    """The tiny Llama with a chat template whose markers are special tokens (<bos>, <eos>)."""
    tokenizer = copy.deepcopy(tiny_llama.tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return genattrib.load_model((tiny_llama.model, tokenizer))


MESSAGES = [{"role": "user", "content": "The capital of France is"}]


def test_special_positions_recorded_even_when_attributed(chat_model, tmp_path) -> None:
    held = chat_model.attribute(MESSAGES, max_new_tokens=3, show_progress=False).sequences[0]
    free = chat_model.attribute(
        MESSAGES, max_new_tokens=3, attribute_special_tokens=True, show_progress=False
    ).sequences[0]
    specials = [i for i, t in enumerate(held.tokens[: held.prompt_length]) if t in ("<bos>", "<eos>")]
    assert specials and held.special_tokens_mask.nonzero().flatten().tolist()[: len(specials)] == specials
    assert torch.equal(held.held_fixed, held.special_tokens_mask)
    assert not free.held_fixed.any()  # attributed like any token ...
    assert torch.equal(free.special_tokens_mask, held.special_tokens_mask)  # ... and still known as special
    assert free.structure_mask[: free.prompt_length].tolist() == [
        r == "template" or s
        for r, s in zip(free.token_roles[: free.prompt_length], free.special_tokens_mask[: free.prompt_length].tolist())
    ]
    out = FeatureAttributionOutput([free], Provenance(method="saliency"))
    for suffix in ("json", "safetensors"):
        back = FeatureAttributionOutput.load(out.save(tmp_path / f"chat.{suffix}")).sequences[0]
        assert torch.equal(back.special_tokens_mask, free.special_tokens_mask) and back.equals(free)
    words = out.aggregate("words").sequences[0]
    assert words.special_tokens_mask.any() and not words.held_fixed.any()


def test_files_saved_before_the_mask_load_with_special_mask() -> None:
    seq = chat_sequence()
    meta, tensors = FeatureAttributionOutput([seq], Provenance()).encode()
    del tensors["0.special_tokens_mask"]  # what older versions wrote
    old = FeatureAttributionOutput.decode(meta, tensors).sequences[0]
    assert torch.equal(old.special_tokens_mask, seq.held_fixed)
    with pytest.raises(
        (ValueError, TypeCheckError), match="special_tokens_mask"
    ):  # TypeCheckError: GENATTRIB_TYPECHECK
        SequenceAttribution(
            seq.input_ids,
            seq.tokens,
            seq.prompt_length,
            seq.scores,
            special_tokens_mask=torch.zeros(3, dtype=torch.bool),
        )


# --- rankings and summaries leave structure out -----------------------------------------
def test_summary_and_top_lists_leave_special_and_template_tokens_out() -> None:
    out = chat_output()
    seq = out.sequences[0]
    before = seq.scores.clone()
    structure = set(seq.structure_mask.nonzero().flatten().tolist())
    assert structure == {0, 1, 2, 7, 8, 9, 10, 11}
    for summary in summarize(seq):
        assert summary.sources[0].text == "Capital of France?" and summary.sources[0].role == "user"
        assert all(source.role != "template" for source in summary.sources)
        assert math.isclose(sum(s.share for s in summary.sources), 1.0, rel_tol=1e-6)  # content only
    kept = summarize(seq, include_special_tokens=True)
    assert kept[0].sources[0].text == "<|im_start|>" and kept[0].sources[0].share > 0.85
    units = outline_units(seq)
    rows = unit_scores(seq, units)
    for words in top_sources(seq, rows, units.limits):
        assert words and all(pos not in structure for _, _, pos in words) and words[0][0] == "France"
    assert top_sources(seq, rows, units.limits, include_special_tokens=True)[0][0][0] == "<|im_start|>"
    _, text = rendered(out, step=2)
    top = next(line for line in text.splitlines() if line.startswith("top |score|"))
    assert "left out" in top and "im_start" not in top and "France 0.58" in top
    _, text = rendered(out, step=2, include_special_tokens=True)
    top = next(line for line in text.splitlines() if line.startswith("top |score|"))
    assert "<|im_start|> 16.20" in top and "left out" not in top
    _, text = rendered(out, summary=True)
    assert "special and chat-template tokens left out" in text and "im_start" not in text.split("Share")[1]
    assert torch.equal(seq.scores.nan_to_num(-1), before.nan_to_num(-1))  # scores are never changed
    for how in ("roles", "sentences", "words"):  # aggregated results know their structure too
        merged = out.aggregate(how).sequences[0]
        assert merged.structure_mask.any()
        for summary in summarize(merged):
            assert [s.text for s in summary.sources][:1] == ["Capital of France?"]
            assert all(s.role != "template" for s in summary.sources)


def test_html_payload_ranks_and_scales_without_structure() -> None:
    out = chat_output()
    seq = out.sequences[0]
    entry = output_payload(out)["sequences"][0]
    assert entry["hidden"] == seq.structure_mask.nonzero().flatten().tolist()
    assert math.isclose(entry["scale"]["vmax"], 0.58, rel_tol=1e-6)  # the sink and "assistant" left out ...
    assert all(word[0] == "France" for word in [top[0] for top in entry["units"]["top"]])
    kept = output_payload(out, include_special_tokens=True)
    assert math.isclose(kept["sequences"][0]["scale"]["vmax"], SINK, rel_tol=1e-6)  # ... or kept
    assert kept["sequences"][0]["units"]["top"][0][0][0] == "<|im_start|>" and kept["include_special"] is True
    assert output_payload(out)["include_special"] is False


def test_tiny_chat_model_rankings_have_no_template_tokens(chat_model) -> None:
    out = chat_model.attribute(MESSAGES, method="attention", max_new_tokens=4, show_progress=False)
    seq = out.sequences[0]
    structure = set(seq.structure_mask.nonzero().flatten().tolist())
    assert structure and structure >= {i for i, r in enumerate(seq.token_roles) if r == "template"}
    for summary in summarize(seq):
        assert all(s.role != "template" and "<bos>" not in s.text for s in summary.sources)
    units = outline_units(seq)
    assert all(
        pos not in structure for words in top_sources(seq, unit_scores(seq, units), units.limits) for *_, pos in words
    )
    for step in range(seq.num_steps):
        _, text = rendered(out, step=step)
        top = next(line for line in text.splitlines() if line.startswith("top |score|"))
        assert "<bos>" not in top and "<eos>" not in top
    # with the option, the attention sink (<bos>, first token) is ranked: attention always scores it
    top_kept = summarize(seq, include_special_tokens=True)
    assert any(s.role == "template" for summary in top_kept for s in summary.sources)


@pytest.mark.default_model
def test_default_model_chat_summaries_show_the_user_message(default_model) -> None:
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    out = default_model.attribute(messages, method="attention", max_new_tokens=8, show_progress=False)
    seq = out.sequences[0]
    structure = seq.structure_mask
    assert structure[0] and seq.tokens[0] == "<|im_start|>" and seq.special_tokens_mask[0]
    with_sink = summarize(seq, include_special_tokens=True)
    assert with_sink[0].sources[0].text == "<|im_start|>"  # the attention sink tops the list when kept
    for summary in summarize(seq):
        assert all(source.role in ("user", "generated") for source in summary.sources)
    assert summarize(seq)[0].sources[0].role == "user"
    _, text = rendered(out, step=2)
    top = next(line for line in text.splitlines() if line.startswith("top |score|"))
    assert "im_start" not in top and "left out" in top


# --- colour scale ----------------------------------------------------------------------
def test_step_scale_colours_each_step_to_its_own_maximum() -> None:
    seq = SequenceAttribution(
        torch.arange(4),
        ["a", "b", "c", "d"],
        2,
        torch.tensor([[56.0, 1.0, math.nan, math.nan], [2.0, 0.5, 1.0, math.nan]]),
    )
    out = FeatureAttributionOutput([seq], Provenance(method="saliency", attributed_fn="logprob"))
    items, text = rendered(out, step=1)
    body = items[2]
    assert span_background(body, "a") == ORANGE  # 2 is step 1's largest: full colour
    assert "0.00 ████████████ 2.00" in text and "this step's largest |score|" in text
    items, text = rendered(out, step=1, scale="global")
    assert sum(abs(x - y) for x, y in zip(span_background(items[2], "a"), ORANGE)) > 150  # 2 of 56: pale
    assert "56.00" in text and "the largest |score| of the sequence" in text
    with pytest.raises(InvalidArgumentError, match="scale"):
        render(out, scale="robust")
    with pytest.raises(InvalidArgumentError, match="scale"):
        to_html(out, scale="per-step")


@SETTINGS
@given(
    st.lists(st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=5, max_size=5), min_size=1, max_size=4),
    st.sampled_from(["step", "global"]),
    st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_row_scales_reach_full_colour_at_each_rows_largest_content_score(rows, scale, hidden) -> None:
    values = torch.tensor(rows)
    scales = row_scales(values, scale, torch.tensor(hidden))

    def largest(cells: list[list[float]]) -> float:  # of the kept columns, or of all when those are 0
        kept = [abs(v) for row in cells for c, v in enumerate(row) if not hidden[c]]
        return max(kept) if kept and max(kept) > 0 else max(abs(v) for row in cells for v in row)

    assert len(scales) == len(rows)
    for j, s in enumerate(scales):
        top = largest([rows[j]] if scale == "step" else rows)
        assert math.isclose(s.vmax, top, rel_tol=1e-6)
        peaks = [v for row in ([rows[j]] if scale == "step" else rows) for v in row if abs(v) == top]
        if top > 0:
            assert all(s.rgb(v) in (ORANGE, BLUE) for v in peaks)  # the largest gets full colour
        assert all(s.rgb(v) in (ORANGE, BLUE) for v in rows[j] if abs(v) >= top > 0)  # beyond it: clipped


def test_matrix_legend_and_cells_follow_the_scale() -> None:
    out = chat_output(sink=1.0)
    items, text = rendered(out, view="matrix")
    assert "colour scale: each step's own largest |score|" in text and "left out of rankings and the scale" in text
    _, text = rendered(out, view="matrix", scale="global", include_special_tokens=True)
    assert "colour scale: the largest |score| of the sequence" in text and "left out" not in text


def test_html_page_starts_with_the_chosen_scale() -> None:
    out = chat_output()
    assert 'class="ga-norm" id="genattrib-norm" checked>' in to_html(out)
    assert 'class="ga-norm" id="genattrib-norm">' in to_html(out, scale="global")
    assert output_payload(out, scale="global")["scale"] == "global" and output_payload(out)["scale"] == "step"


# --- captions --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_methods())
def test_caption_names_the_scores_of_every_method(name) -> None:
    used = METHODS[name].traits.explains_attributed_fn
    for prov in (
        Provenance(method=name, attributed_fn="logprob", attributed_fn_used=used),  # as attribute() records it
        Provenance(method=name, attributed_fn="logprob"),  # a file saved before it was recorded
    ):
        caption = score_caption(prov)
        assert output_payload(FeatureAttributionOutput([], prov))["caption"] == caption
        if name in ATTENTION_METHODS:
            assert caption == f"{name} scores (no attributed function)" and not used
        else:
            assert caption == f"{name} attributions of logprob" and used
        _, text = rendered(FeatureAttributionOutput([chat_sequence()], prov), view="matrix")
        assert caption in text
    assert set(ATTENTION_METHODS) == {n for n, cls in METHODS.items() if not cls.traits.explains_attributed_fn}


@pytest.mark.parametrize("name", ["attention", "rollout"])
def test_attention_scores_do_not_depend_on_the_attributed_function(tiny_llama, name) -> None:
    a = tiny_llama.attribute(
        "The capital of", method=name, max_new_tokens=2, attributed_fn="logprob", show_progress=False
    )
    b = tiny_llama.attribute(
        "The capital of", method=name, max_new_tokens=2, attributed_fn="probability", show_progress=False
    )
    assert a.sequences[0].equals(b.sequences[0])
    assert a.provenance.attributed_fn_used is False and "logprob" not in score_caption(a.provenance)
    assert "no attributed function" in to_html(a)  # the page's subtitle comes from the caption
    s = tiny_llama.attribute(
        "The capital of", method="saliency", max_new_tokens=2, attributed_fn="probability", show_progress=False
    )
    t = tiny_llama.attribute("The capital of", method="saliency", max_new_tokens=2, show_progress=False)
    assert not torch.allclose(s.sequences[0].scores.nan_to_num(0), t.sequences[0].scores.nan_to_num(0))
    assert (
        s.provenance.attributed_fn_used is True
        and score_caption(s.provenance) == "saliency attributions of probability"
    )


_WRONG_TYPES = """
import json, sys
sys.path.insert(0, sys.argv[1])
from html_outputs import chat_output
from genattrib import GenattribError
out = chat_output()
cases = {
    "show_include_str": lambda: out.show(include_special_tokens="no"),
    "html_include_int": lambda: out.to_html(include_special_tokens=1),
    "show_scale_int": lambda: out.show(scale=3),
    "html_scale_none": lambda: out.to_html(scale=None),
}
report = {}
for name, call in cases.items():
    try:
        call()
        report[name] = None
    except GenattribError as error:
        report[name] = [error.argument, str(error)]
    except Exception as error:
        report[name] = ["", type(error).__name__ + ": " + str(error)]
print("REPORT" + json.dumps(report))
"""


def test_wrong_types_of_the_view_options_raise_genattrib_errors() -> None:
    """Without the run-time type checks (as users run), the options are checked by genattrib."""
    env = dict(os.environ, GENATTRIB_TYPECHECK="0", PYTHONWARNINGS="ignore")
    here = Path(__file__).resolve().parents[1] / "helpers"
    proc = subprocess.run(
        [sys.executable, "-c", _WRONG_TYPES, str(here)], capture_output=True, text=True, env=env, timeout=120
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT") :])
    for case, (argument, message) in report.items():
        expected = "include_special_tokens" if "include" in case else "scale"
        assert argument == expected and "Fix:" in message, (case, message)
