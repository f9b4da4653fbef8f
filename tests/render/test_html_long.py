"""HTML pages of long and unit-level results, without a browser: the top-k codec, the outline's
units and sums, escaping, size, and a unit-level result of a tiny model."""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest
import torch
from html_outputs import XSS_IMG, XSS_MORE, XSS_SCRIPT, long_form_output, paris_output, provenance
from test_html import ALLOWED_TAGS, data_block, tags_of

from genattrib import FeatureAttributionOutput, InvalidArgumentError, SequenceAttribution
from genattrib.aggregation.boundaries import sentence_starts
from genattrib.render.html import ASSETS, to_html
from genattrib.render.html_data import decode_scores
from genattrib.render.html_rows import decode_matrix, decode_topk, encode_matrix, encode_topk
from genattrib.render.units import outline_units, unit_scores

MAX_PAGE_BYTES = 10_000_000


def nan_from(scores: torch.Tensor, starts: list[int]) -> torch.Tensor:
    cols = torch.arange(scores.shape[1]).unsqueeze(0)
    return scores.masked_fill(cols >= torch.tensor(starts).unsqueeze(1), math.nan)


# --- the top-k codec ----------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 40])
def test_topk_keeps_the_largest_scores_and_the_residual(k) -> None:
    g = torch.Generator().manual_seed(k)
    scores = nan_from(torch.randn(30, 50, generator=g) * torch.rand(30, 1, generator=g) * 10, list(range(10, 40)))
    scores[3, 2] = math.nan  # a NaN before the limit is never kept
    values, residual = decode_topk(encode_topk(scores, k))
    for r in range(30):
        row = scores[r].double().numpy()
        finite = ~np.isnan(row)
        kept = ~np.isnan(values[r])
        assert kept.sum() == min(k, finite.sum())
        assert not (kept & ~finite).any()
        if (finite & ~kept).any():
            assert np.abs(row[kept]).min() >= np.abs(row[finite & ~kept]).max()
        scale = np.abs(row[finite]).max()
        assert np.abs(values[r][kept] - row[kept]).max() <= scale / 254 + 1e-6  # half an 8-bit step
        assert residual[r] == pytest.approx(np.abs(row[finite & ~kept]).sum(), rel=1e-5, abs=1e-5)


def test_topk_edge_cases() -> None:
    nan, inf = math.nan, math.inf
    scores = torch.tensor([[nan, nan, nan], [0.0, 0.0, 0.0], [2.0, -inf, 1.0], [1.0, 2.0, 3.0]])
    values, residual = decode_topk(encode_topk(scores, 2))
    assert np.isnan(values[0]).all() and residual[0] == 0
    assert np.count_nonzero(values[1] == 0) == 2
    assert values[2][1] == -2.0 and values[2][0] == 2.0  # -inf saturates at the row's finite scale
    assert np.isnan(values[3][0]) and residual[3] == pytest.approx(1.0)
    np.testing.assert_allclose(values[3][1:], [2.0, 3.0], atol=3.0 / 254)  # half an 8-bit step of the row
    empty = decode_topk(encode_topk(torch.zeros(0, 4), 3))
    assert empty[0].shape == (0, 4)
    wide = torch.zeros(1, 70_000)
    wide[0, 69_999] = 5.0
    spec = encode_topk(wide, 1)
    assert spec["index_bytes"] == 4 and decode_topk(spec)[0][0, 69_999] == 5.0


def test_auto_codec_is_exact_for_small_and_top_k_for_huge_matrices(monkeypatch) -> None:
    small = torch.randn(4, 6)
    assert encode_matrix(small)["codec"] == "f16le"
    np.testing.assert_allclose(decode_matrix(encode_matrix(small)), small.numpy(), rtol=2**-10)
    monkeypatch.setattr("genattrib.render.html_rows.DENSE_MAX_CELLS", 20)
    monkeypatch.setattr("genattrib.render.html_rows.DEFAULT_TOP_K", 2)
    big = torch.randn(5, 6)
    assert encode_matrix(big)["codec"] == "topk-q8-zlib" and encode_matrix(big)["k"] == 2
    assert encode_matrix(big, top_k=None)["codec"].startswith("f16le")
    with pytest.raises(InvalidArgumentError, match="top_k"):
        encode_matrix(big, top_k=0)
    with pytest.raises(InvalidArgumentError, match="top_k"):
        to_html(paris_output(), top_k="some")


# --- units and sums -------------------------------------------------------------------------
PROMPT = ["A", " cat", " sat", ".", " A", " dog", " ran", "."]
GENERATED = [" It", " ran", ".", "\n\n", "Then", " it", " slept", "."]


def story(unit_level: bool) -> SequenceAttribution:
    tokens = PROMPT + GENERATED
    n, p = len(tokens), len(PROMPT)
    bare = SequenceAttribution(torch.arange(n), tokens, p, torch.zeros(0, n))
    spans = [(8, 11), (11, 12), (12, 16)] if unit_level else None
    starts = [a for a, _ in spans] if spans else list(range(p, n))
    scores = nan_from(torch.arange(len(starts) * n, dtype=torch.float32).reshape(len(starts), n) % 7 - 2, starts)
    assert sentence_starts(bare) == [0, 4, 8, 11, 12]
    return SequenceAttribution(torch.arange(n), tokens, p, scores, target_spans=spans)


def test_sentence_units_of_a_token_level_result_sum_their_rows() -> None:
    seq = story(unit_level=False)
    units = outline_units(seq)
    assert units.spans == [(8, 12), (12, 16)]  # the paragraph break joins " It ran."
    assert units.rows == [(0, 4), (4, 8)] and units.limits == [11, 15] and units.merged
    rows = unit_scores(seq, units)
    expected = torch.nansum(seq.scores[0:4], 0)
    assert torch.equal(rows[0, :11], expected[:11]) and rows[0, 11:].isnan().all()
    entry = data_block(to_html(FeatureAttributionOutput([seq], provenance())))["sequences"][0]
    assert entry["units"]["spans"] == [[8, 12], [12, 16]] and entry["units"]["name"] == "sentence"
    assert entry["unit_scores"] is None  # exact token rows: the page sums them itself
    sums = decode_scores(entry["group_scores"])  # sentences: [0,4) [4,8) [8,11) [11,12) [12,16)
    assert entry["groups"] == [0, 4, 8, 11, 12]
    want = [float(rows[0, a:b].sum()) for a, b in [(0, 4), (4, 8), (8, 11)]]
    np.testing.assert_allclose(sums[0, :3], want, rtol=2**-10)
    assert np.isnan(sums[0, 3:]).all()  # "\n\n" and "Then it slept." start at or after the limit
    top = entry["units"]["top"][1]
    assert len(top) == 3 and all(text.strip() for text, _, _ in top)
    assert abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])


def test_unit_level_rows_are_the_units_and_sources_sum_by_sentence() -> None:
    seq = story(unit_level=True)
    entry = data_block(to_html(FeatureAttributionOutput([seq], provenance(explain="sentences"))))["sequences"][0]
    assert entry["spans"] == [[8, 11], [11, 12], [12, 16]]
    assert entry["units"]["rows"] == [[0, 1], [1, 2], [2, 3]] and not entry["units"]["merged"]
    assert entry["units"]["limits"] == [8, 11, 12]
    sums = decode_scores(entry["group_scores"])
    np.testing.assert_allclose(
        sums[2, :4], [float(seq.scores[2, a:b].sum()) for a, b in [(0, 4), (4, 8), (8, 11), (11, 12)]]
    )
    assert np.isnan(sums[2, 4])


# --- escaping -----------------------------------------------------------------------------
def hostile_units() -> FeatureAttributionOutput:
    words = [" " + XSS_SCRIPT, " &amp;", " '\"`", " " + XSS_IMG, *(" " + h for h in XSS_MORE)]
    tokens = ["Say", *words, ".", *[w for w in words[:4]], ".", " ok", " " + XSS_SCRIPT, "."]
    n, p = len(tokens), len(words) + 2
    spans = [(p, p + 5), (p + 5, n)]
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(2, n, generator=g)
    scores[:, 1], scores[:, 4] = 5.0, -4.0  # the <script> and <img> words are the top sources
    scores = nan_from(scores, [a for a, _ in spans])
    seq = SequenceAttribution(
        torch.arange(n), tokens, p, scores, target_spans=spans, generated_text="".join(tokens[p:])
    )
    return FeatureAttributionOutput([seq], provenance(model_name=XSS_SCRIPT, explain="sentences"))


@pytest.mark.parametrize("kind", ["units", "long"])
def test_hostile_tokens_stay_text_in_unit_level_and_long_pages(kind) -> None:
    out = hostile_units()
    page = to_html(out, top_k=2 if kind == "long" else "auto")  # "long": the top-k path, as huge results take
    data = data_block(page)
    entry = data["sequences"][0]
    assert entry["scores"]["codec"] == ("topk-q8-zlib" if kind == "long" else "f16le")
    for hostile in [XSS_SCRIPT, XSS_IMG, *[h for h in XSS_MORE if "<" in h and h != "</style>"]]:
        assert hostile not in page, hostile
    assert page.count("</style") == 1 and page.count("</script") == 2
    assert {tag for tag, _ in tags_of(page)} <= ALLOWED_TAGS
    assert not [(t, a) for t, a in tags_of(page) for name in a if name.startswith("on")]
    assert entry["tokens"] == out.sequences[0].tokens
    labels = [text for sources in entry["units"]["top"] for text, _, _ in sources]
    assert XSS_SCRIPT in labels and XSS_IMG in labels  # the outline shows them, as data
    if kind == "long":
        assert any("top-k" in note and "8 bits" in note for note in entry["notes"])


def test_every_viewer_asset_is_safe_inline() -> None:
    from importlib.resources import files

    assets = files("genattrib.render").joinpath("assets")
    for name in (*ASSETS, "viewer.css"):
        text = assets.joinpath(name).read_text(encoding="utf-8").lower()
        assert "</script" not in text and "<!--" not in text and "</style" not in text, name
        assert "innerhtml" not in text and "outerhtml" not in text and "insertadjacenthtml" not in text, name
        assert "document.write" not in text and "eval(" not in text and "fetch(" not in text, name
    page = to_html(paris_output())
    for name in ASSETS:  # every part is in the page, in order
        first_line = assets.joinpath(name).read_text(encoding="utf-8").splitlines()[0]
        assert first_line in page
    assert page.index("function mount(") > page.index("function makeHeatmap(") > page.index("function loadSequence(")


# --- size -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("unit_level", [False, True], ids=["tokens", "sentences"])
def test_8000_token_page_is_under_10_mb(unit_level) -> None:
    out = long_form_output(8000, unit_level=unit_level)
    seq = out.sequences[0]
    started = time.perf_counter()
    page = to_html(out)
    seconds = time.perf_counter() - started
    size = len(page.encode("utf-8"))
    rows = f"{seq.num_steps} {'sentence' if unit_level else 'token'} rows"
    print(f"\n8,000-token page ({rows}): {size / 1e6:.2f} MB, written in {seconds:.1f} s", file=sys.stderr)
    assert size < MAX_PAGE_BYTES
    entry = data_block(page)["sequences"][0]
    assert entry["scores"]["codec"] == "topk-q8-zlib" and entry["scores"]["k"] == 64
    assert entry["notes"] and "top-k" in entry["notes"][0] and "8 bits" in entry["notes"][0]
    assert "heatmap" in entry["notes"][1]
    assert len(entry["units"]["spans"]) == len(outline_units(seq))
    values, residual = decode_topk(entry["scores"])
    row = seq.scores[-1].double().numpy()  # the last row: 8,000 finite sources, 64 kept
    kept = ~np.isnan(values[-1])
    assert kept.sum() == 64 and np.abs(row[kept]).min() >= np.nanmax(np.abs(np.where(kept, np.nan, row)))
    assert residual[-1] == pytest.approx(np.nansum(np.abs(row)) - np.abs(row[kept]).sum(), rel=1e-4)


# --- a real unit-level result ---------------------------------------------------------------
def test_page_of_a_tiny_model_explaining_sentences(tiny_llama) -> None:
    out = tiny_llama.attribute(
        "The cat sat. The dog ran.",
        " It ran fast. Then it slept. The end.",
        explain="sentences",
        step_scores=["probability"],
    )
    seq = out.sequences[0]
    assert seq.is_unit_level and seq.target_tokens == [" It ran fast.", " Then it slept.", " The end."]
    entry = data_block(out.to_html())["sequences"][0]
    assert entry["spans"] == [list(s) for s in seq.target_spans] and entry["units"]["name"] == "sentence"
    np.testing.assert_allclose(decode_scores(entry["scores"]), seq.scores.numpy(), rtol=2**-10, atol=1e-6)
    assert entry["notes"] == [] and set(entry["step_scores"]) == {"probability"}
