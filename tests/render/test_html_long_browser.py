"""Long and unit-level pages in headless Chromium: the outline, the level switch, search, keys,
and an 8,000-token generation that must open in under 2 s (fixtures: test_html_browser.py)."""

from __future__ import annotations

import math
import sys
import time

import pytest
import torch
from html_outputs import XSS_IMG, XSS_SCRIPT, long_form_output, provenance
from test_html_browser import ARTIFACTS, browser, open_page, screenshot, shade_strength, token_states  # noqa: F401
from test_html_long import hostile_units, story

from genattrib import FeatureAttributionOutput
from genattrib.aggregation.boundaries import sentence_starts
from genattrib.render.units import group_sums, outline_units, unit_scores

pytestmark = pytest.mark.browser

READY_LIMIT_MS = 2000.0


def attr(page, name: str) -> str:
    return page.get_attribute(".genattrib", name)


def check_row(page, expected: torch.Tensor, limit: int, top_k: int | None = None) -> None:
    """The text shows ``expected`` (one row over source tokens) before ``limit``: every score, or
    its ``top_k`` largest by |score| (8-bit); the strongest shade is on the largest |score|."""
    row = expected.double().numpy()
    states = token_states(page)
    shown = {s["pos"]: s["score"] for s in states if s["score"] is not None}
    finite = [i for i in range(limit) if not math.isnan(row[i])]
    order = sorted(finite, key=lambda i: -abs(row[i]))
    assert set(shown) == set(order if top_k is None else order[:top_k])
    scale = abs(row[order[0]])
    tolerance = scale / 254 + 1e-6 if top_k else scale * 2**-9
    for i, value in shown.items():
        assert abs(value - row[i]) <= tolerance, (i, value, row[i])
    strengths = [shade_strength(s["bg"]) for s in states]
    assert strengths[order[0]] == max(strengths) > 0
    assert all(strengths[i] == 0 for i in range(limit, len(states)))


def matches(text: str, query: str) -> int:
    text, query = text.lower(), query.lower()
    return sum(1 for i in range(len(text)) if text.startswith(query, i))


@pytest.mark.slow
@pytest.mark.parametrize("unit_level", [False, True], ids=["tokens", "sentences"])
def test_8000_token_page_opens_fast_and_reads(open_page, tmp_path, unit_level) -> None:  # noqa: F811
    out = long_form_output(8000, unit_level=unit_level)
    seq = out.sequences[0]
    units = outline_units(seq)
    path = out.save_html(tmp_path / "long.html")
    opened = open_page(path)
    page = opened.page
    ready_ms = float(attr(page, "data-ready-ms"))
    print(
        f"\n8,000-token page ({seq.num_steps} rows): {path.stat().st_size / 1e6:.2f} MB; ready {ready_ms:.0f} ms "
        f"after navigation (script {float(attr(page, 'data-render-ms')):.0f} ms, wall {opened.seconds:.2f} s)",
        file=sys.stderr,
    )
    assert ready_ms < READY_LIMIT_MS
    notes = page.text_content(".ga-notes")
    assert page.is_visible(".ga-notes") and "top-k" in notes and "8 bits" in notes and "heatmap" in notes
    assert page.get_attribute(".ga-overlay", "data-level") == "unit-sentences"  # the heatmap of sentences
    assert page.locator(".ga-unit").count() == len(units)

    # the outline: a click picks the unit and shades what it drew on (its top 64 source tokens)
    u = 40
    page.click(f".ga-unit[data-unit='{u}']")
    assert attr(page, "data-step") == str(u) and "ga-pinned" in attr(page, "class")
    assert attr(page, "data-level") == ("token" if unit_level else "unit")
    assert "ga-current" in page.get_attribute(f".ga-unit[data-unit='{u}']", "class")
    check_row(page, unit_scores(seq, units)[u], units.limits[u], top_k=64)
    assert "top 64 sources kept" in page.text_content(".ga-status")

    # the switch: token rows <-> sentence rows (token-level result); token <-> sentence sources (units)
    if unit_level:
        page.check(".ga-level[value='unit']")
        assert attr(page, "data-level") == "unit" and attr(page, "data-step") == str(u)
        starts = sentence_starts(seq)
        sums = group_sums(seq.scores[u : u + 1], units.limits[u : u + 1], starts)[0]
        states = token_states(page)
        for h in range(len(starts) - 1):
            if starts[h + 1] <= units.limits[u]:
                got = {states[i]["score"] for i in range(starts[h], starts[h + 1])}
                assert len(got) == 1 and got.pop() == pytest.approx(float(sums[h]), rel=2**-9, abs=1e-4)
    else:
        page.check(".ga-level[value='token']")
        row = units.rows[u][0]
        assert attr(page, "data-level") == "token" and attr(page, "data-step") == str(row)
        check_row(page, seq.scores[row], seq.target_positions[row], top_k=64)
    page.check(".ga-level[value='token']")

    # search: a passage of unit 300 is found, Enter jumps to it and picks the row holding it
    a, b = units.spans[300]
    query = "".join(seq.tokens[a:b]).strip()[:40]
    count = matches(seq.text, query)
    page.fill(".ga-search", query)
    page.press(".ga-search", "Enter")
    assert page.text_content(".ga-count") == f"1 / {count}"
    first = int(page.eval_on_selector(".ga-match-current", "e => e.dataset.pos"))
    assert query.lower().startswith(seq.tokens[first].strip().lower()[:3])
    assert int(attr(page, "data-step")) == next(j for j, (s, e) in enumerate(seq.spans) if s <= first < e)

    # keys: j/k and arrows move between rows, Escape releases, u switches the level
    page.click(f".ga-tok[data-pos='{seq.spans[10][0]}']")
    started = time.perf_counter()
    for _ in range(10):
        page.keyboard.press("j")
    per_key = (time.perf_counter() - started) / 10
    assert attr(page, "data-step") == "20"
    page.keyboard.press("k")
    page.keyboard.press("ArrowLeft")
    assert attr(page, "data-step") == "18"
    page.keyboard.press("Escape")
    assert "ga-pinned" not in attr(page, "class")
    page.keyboard.press("u")
    assert attr(page, "data-level") == "unit"
    print(f"j: {per_key * 1000:.0f} ms per key", file=sys.stderr)
    screenshot(page, f"html_8000_{'sentences' if unit_level else 'tokens'}.png")
    opened.assert_clean()


def test_sentence_rows_of_a_token_level_result_sum_its_rows(open_page) -> None:  # noqa: F811
    seq = story(unit_level=False)
    opened = open_page(FeatureAttributionOutput([seq], provenance()))
    page = opened.page
    assert page.is_hidden(".ga-notes") and page.get_attribute(".ga-overlay", "data-level") == "token"
    assert page.locator(".ga-unit").count() == 2
    page.click(".ga-unit[data-unit='1']")
    assert attr(page, "data-level") == "unit" and attr(page, "data-step") == "1"
    assert page.get_attribute(".ga-overlay", "data-level") == "unit"  # small: the sentence rows are drawn
    check_row(page, torch.nansum(seq.scores[4:8], 0), 15)  # exact rows, summed by the page
    assert "sentence 1" in page.text_content(".ga-status") and "Then it slept." in page.text_content(".ga-status")
    page.click(".ga-tok[data-pos='9']")  # a token of sentence 0 picks sentence 0
    assert attr(page, "data-step") == "0"
    page.check(".ga-level[value='token']")
    assert attr(page, "data-level") == "token" and attr(page, "data-step") == "0"
    check_row(page, seq.scores[0], 8)
    opened.assert_clean()


def test_unit_level_page_shades_source_tokens_or_sentences(open_page) -> None:  # noqa: F811
    seq = story(unit_level=True)
    opened = open_page(FeatureAttributionOutput([seq], provenance(explain="sentences")))
    page = opened.page
    assert page.text_content(".ga-level-what") == "Sources"
    assert page.locator(".ga-unit").count() == 3
    page.click(".ga-tok[data-pos='13']")  # inside unit 2: "Then it slept."
    assert attr(page, "data-step") == "2" and attr(page, "data-level") == "token"
    check_row(page, seq.scores[2], 12)
    assert page.get_attribute(".ga-tok[data-pos='15']", "class").count("ga-target") == 1  # the whole unit
    page.check(".ga-level[value='unit']")
    states = token_states(page)
    for a, b in [(0, 4), (4, 8), (8, 11), (11, 12)]:
        got = {s["score"] for s in states[a:b]}  # one score per source sentence: the sum of its tokens'
        assert len(got) == 1 and got.pop() == pytest.approx(float(seq.scores[2, a:b].sum()), rel=2**-9)
    assert all(s["score"] is None for s in states[12:])
    assert "sentence \u201cA dog ran.\u201d" in page.text_content(".ga-status")
    opened.assert_clean()


def test_hostile_tokens_in_the_outline_stay_text(open_page) -> None:  # noqa: F811
    for top_k in ("auto", 2):
        opened = open_page(hostile_units(), top_k=top_k)
        page = opened.page
        outline = page.text_content(".ga-outline")
        assert XSS_SCRIPT in outline and XSS_IMG in outline
        assert XSS_SCRIPT in page.text_content(".ga-text")
        page.click(".ga-unit[data-unit='1']")
        page.check(".ga-level[value='unit']")
        assert XSS_SCRIPT in page.text_content(".ga-status")  # the prompt sentence, as a source
        page.fill(".ga-search", XSS_SCRIPT)
        assert page.text_content(".ga-count") == "\u2013 / 3"
        page.press(".ga-search", "Enter")
        assert page.text_content(".ga-count") == "1 / 3"
        assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
        assert page.evaluate("document.scripts.length") == 2
        assert (
            page.evaluate(
                "Array.from(document.querySelectorAll('*')).some(e => "
                "Array.from(e.attributes).some(a => a.name.startsWith('on')))"
            )
            is False
        )
        assert page.evaluate("window.__xss === undefined")
        opened.assert_clean()


def test_page_of_a_tiny_model_explaining_sentences(open_page, tiny_llama) -> None:  # noqa: F811
    out = tiny_llama.attribute(
        "The cat sat. The dog ran.", " It ran fast. Then it slept. The end.", explain="sentences"
    )
    seq = out.sequences[0]
    opened = open_page(out)
    page = opened.page
    assert [page.text_content(f".ga-unit[data-unit='{u}'] .ga-unit-text") for u in range(3)] == [
        "It ran fast.",
        "Then it slept.",
        "The end.",
    ]
    page.click(".ga-unit[data-unit='1']")
    assert attr(page, "data-step") == "1" and "sentence 1" in page.text_content(".ga-status")
    check_row(page, seq.scores[1], seq.spans[1][0])
    screenshot(page, "html_tiny_sentences.png")
    opened.assert_clean()


def test_a_unit_sourced_page_ranks_source_units(open_page) -> None:  # noqa: F811
    """With source units (``sources=``), the outline and the status line list the units whole, by
    the sum of their tokens' scores, never the tokens that share a unit's score evenly."""
    seq = story(unit_level=True)
    seq.source_spans = [(0, 4), (4, 8)]  # two prompt sentences as source units
    opened = open_page(FeatureAttributionOutput([seq], provenance(explain="sentences")))
    page = opened.page
    assert "top source units" in page.text_content(".ga-outline-head")
    page.click(".ga-tok[data-pos='13']")  # inside unit 2
    status = page.text_content(".ga-status")
    sums = {(a, b): float(seq.scores[2, a:b].sum()) for a, b in seq.source_spans}
    first = max(sums, key=lambda span: abs(sums[span]))
    text = "".join(seq.tokens[first[0] : first[1]])
    assert f"source unit \u201c{text}\u201d" in status, status
    opened.assert_clean()
