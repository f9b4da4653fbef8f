"""Source and target units as a reader meets them: chat-template and special tokens never form a
unit of their own, ``seq.source_unit_scores()`` gives a (rows × source units) matrix with the
units' texts, and the terminal summary and the HTML outline rank the source units a result was
attributed with (ties in text order)."""

from __future__ import annotations

import copy

import pytest
import torch
from tolerance import OPS, assert_close_to_scale

import genattrib
from genattrib import InvalidArgumentError, SequenceAttribution
from genattrib.output.source_unit_scores import SourceUnitScores
from genattrib.render.html_data import sequence_payload
from genattrib.render.summary import summarize, summary_view
from genattrib.render.units import source_groups, top_sources

# markers are the tokenizer's special tokens (<bos>, <eos>); role names and newlines are template text
CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)
DOCS = "The capital of France is Paris. The cat sleeps.\n\nA quick brown fox jumps over the lazy dog."
CHAT = [{"role": "user", "content": DOCS}]
ANSWER = " The capital of Italy is Rome. It is big.<eos>"


@pytest.fixture(scope="module")
def chat_model(tiny_llama):
    tokenizer = copy.deepcopy(tiny_llama.tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return genattrib.load_model((tiny_llama.model, tokenizer))


def texts(seq: SequenceAttribution, spans) -> list[str]:
    return ["".join(seq.tokens[a:b]) for a, b in spans]


def clip(text: str, size: int = 40) -> str:
    words = " ".join(text.split())
    return words if len(words) <= size else words[: size - 1] + "\u2026"


def structure_edged(seq: SequenceAttribution, spans) -> list[tuple[int, int]]:
    """The units that start or end with a special token or chat-template text."""
    structure = seq.structure_mask
    return [(a, b) for a, b in spans if bool(structure[a]) or bool(structure[b - 1])]


# --- 3. template and special tokens never form units --------------------------------------------------------
@pytest.mark.parametrize("sources", ["sentences", "documents", "lines", "paragraphs"])
def test_template_and_special_tokens_never_form_units(chat_model, sources):
    out = chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion", explain="sentences", sources=sources)
    seq = out.sequences[0]
    assert seq.tokens[-1] == "<eos>" and seq.special_tokens_mask[-1]
    assert texts(seq, seq.target_spans) == [" The capital of Italy is Rome.", " It is big."]  # no "<eos>" row
    assert structure_edged(seq, seq.target_spans) == [] and structure_edged(seq, seq.source_spans) == []
    assert all(role == "user" for role in seq.source_unit_scores().unit_roles)
    assert "".join(texts(seq, seq.source_spans)).strip() == DOCS.strip()  # the user's text, all of it, in units
    # the HTML outline lists the same rows: the closing marker is no unit there either
    assert [span for span in sequence_payload(seq, explain="sentences")["units"]["spans"]] == [
        list(span) for span in seq.target_spans
    ]


def test_a_system_message_is_a_source_unit_and_the_templates_text_is_not(chat_model):
    system = [{"role": "system", "content": "Answer in one short sentence."}, *CHAT]
    seq = chat_model.attribute(system, ANSWER, chat=True, method="occlusion", sources="documents").sequences[0]
    units = seq.source_unit_scores()
    assert units.unit_texts[0] == "Answer in one short sentence." and units.unit_roles[0] == "system"
    assert units.unit_roles[1:] == ["user", "user"]
    # the template's own text (markers, role names) is held out: its positions keep no unit score
    held = [i for i in range(seq.prompt_length) if not any(a <= i < b for a, b in seq.source_spans)]
    assert held and all(bool(seq.structure_mask[i]) for i in held)
    assert float(seq.scores[:, held].abs().sum()) == 0.0


def test_explicit_spans_are_never_filtered(chat_model):
    seq = chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion", sources=[(0, 1), (1, 5)]).sequences[0]
    assert seq.source_spans == [(0, 1), (1, 5)] and seq.tokens[0] == "<bos>"


# --- 2. a (rows × source units) matrix -------------------------------------------------------------------
def test_source_unit_scores_are_the_units_columns(chat_model):
    out = chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion", explain="sentences", sources="sentences")
    seq = out.sequences[0]
    units = seq.source_unit_scores()
    assert isinstance(units, SourceUnitScores)
    assert units.shape == (2, 3) and units.scores.shape == (seq.num_steps, len(seq.source_spans))
    assert units.unit_texts == [
        "The capital of France is Paris.",
        " The cat sleeps.\n\n",
        "A quick brown fox jumps over the lazy dog.",
    ]
    assert units.row_texts == [" The capital of Italy is Rome.", " It is big."] and units.row_spans == seq.target_spans
    assert bool(units.scores.abs().sum() > 0) and not units.scores.isnan().any()
    # the same numbers as the units' columns of out.aggregate("sources") (which keeps every other position too)
    merged = out.aggregate("sources").sequences[0]
    assert merged.scores.shape[1] > len(seq.source_spans)
    columns = [merged.tokens.index(text) for text in units.unit_texts]
    assert_close_to_scale(merged.scores[:, columns], units.scores, floor=OPS, what="aggregate('sources') columns")
    # occlusion shares a unit's score evenly: each cell is the unit's own ablation score, summed back
    for u, (a, b) in enumerate(units.unit_spans):
        assert_close_to_scale(
            seq.scores[:, a] * (b - a), units.scores[:, u], floor=OPS, scale=units.scores.abs().max(), what=f"unit {u}"
        )
    top = units.top(0, k=2)
    assert [u for u, _, _ in top] == units.scores[0].abs().argsort(descending=True)[:2].tolist()
    plain = units.to_lists()
    assert plain["units"] == units.unit_texts and len(plain["scores"]) == 2 and len(plain["scores"][0]) == 3


def test_source_unit_scores_mark_later_units_nan_and_need_sources(chat_model):
    out = chat_model.attribute(
        CHAT, ANSWER, chat=True, method="occlusion", explain="sentences", sources="sentences",
        sources_include_generated=True,
    )  # fmt: skip
    units = out.sequences[0].source_unit_scores()
    assert units.unit_texts[-2:] == [" The capital of Italy is Rome.", " It is big."]
    assert units.scores[0, -2:].isnan().all() and not units.scores[1, -2].isnan() and units.scores[1, -1].isnan()
    tokens_only = chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion").sequences[0]
    with pytest.raises(InvalidArgumentError, match="sources"):
        tokens_only.source_unit_scores()


# --- 1. summaries and the outline rank the source units ------------------------------------------------------
def test_summary_shares_are_the_document_scores(chat_model):
    out = chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion", explain="sentences", sources="documents")
    seq = out.sequences[0]
    units = seq.source_unit_scores()
    assert units.unit_texts == [
        "The capital of France is Paris. The cat sleeps.\n\n",
        "A quick brown fox jumps over the lazy dog.",
    ]
    summaries = summarize(seq)
    assert len(summaries) == 2
    for j, summary in enumerate(summaries):
        size = units.scores[j].abs()
        expected = {units.unit_texts[u]: float(size[u] / size.sum()) for u in range(2)}
        assert {s.text: s.share for s in summary.sources} == pytest.approx(expected, rel=1e-4)
        assert all(s.unit and s.role == "user" for s in summary.sources)
    lines = "\n".join(str(line) for line in summary_view(seq, width=120))
    assert "per source unit" in lines and "The capital of France is Paris. The cat sleeps." in lines


def test_outline_lists_top_source_units_with_their_scores(chat_model):
    out = chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion", explain="sentences", sources="sentences")
    seq = out.sequences[0]
    units = seq.source_unit_scores()
    payload = sequence_payload(seq, explain="sentences")
    assert payload["group_name"] == "source unit"
    for j, listed in enumerate(payload["units"]["top"]):
        expected = units.top(j, k=3)
        assert [first for _, _, first in listed] == [units.unit_spans[u][0] for u, _, _ in expected]
        assert [text for text, _, _ in listed] == [clip(t) for _, t, _ in expected]
        assert [score for _, score, _ in listed] == pytest.approx([s for _, _, s in expected], rel=1e-3)
    starts, is_unit = source_groups(seq)
    assert [k for k, unit in zip(starts, is_unit) if unit] == [a for a, _ in seq.source_spans]
    assert payload["groups"] == starts
    # a result without source units keeps the top words and the sentences
    plain = sequence_payload(chat_model.attribute(CHAT, ANSWER, chat=True, method="occlusion").sequences[0])
    assert plain["group_name"] == "source sentence"


def test_ties_break_by_position():
    tokens = ["Write", " a", " long", " story", ".", " Once", " upon"]
    scores = torch.full((2, 7), 3.02)
    scores[0, 5:] = float("nan")
    scores[1, 6:] = float("nan")
    seq = SequenceAttribution(torch.arange(7), tokens, 5, scores)
    for _ in range(3):  # the same order every time: the earlier word first
        ranked = top_sources(seq, seq.scores, [5, 6], top=3)
        assert [[text for text, _, _ in row] for row in ranked] == [["Write", "a", "long"], ["Write", "a", "long"]]
    spans = SequenceAttribution(torch.arange(7), tokens, 5, scores, source_spans=[(0, 2), (2, 4), (4, 5)])
    assert [s.text for s in summarize(spans, top=2)[0].sources] == ["Write a", " long story"]
