"""HTML export without a browser: self-contained, data round-trip, escaping, size, CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import time
import zlib
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from html_outputs import (
    XSS_IMG,
    XSS_MORE,
    XSS_SCRIPT,
    hostile_output,
    long_output,
    nan_after_targets,
    paris_output,
    paris_sequence,
    provenance,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_output_io import build_output, output_specs

import genattrib
from genattrib import FeatureAttributionOutput, InvalidArgumentError, SequenceAttribution
from genattrib.cli import main
from genattrib.render.html import save_html, to_html
from genattrib.render.html_data import decode_scores, encode_scores, script_json
from genattrib.render.html_provenance import provenance_rows

REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_BYTES_2000_STEPS = 5_000_000
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "body",
    "style",
    "script",
    "div",
    "header",
    "h2",
    "h3",
    "label",
    "select",
    "option",
    "input",
    "p",
    "section",
    "span",
    "canvas",
    "ol",
    "button",
    "details",
    "summary",
    "table",
    "tr",
    "th",
    "td",
}


# --- helpers ----------------------------------------------------------------------------
def data_block(page: str) -> dict:
    """The JSON of the page's data block (everything up to the first ``</script``)."""
    match = re.search(r'<script type="application/json" class="ga-data" id="([\w-]+)-data">', page)
    assert match, "no data block"
    body = page[match.end() : page.index("</script", match.end())]
    return json.loads(body)


def independent_decode(spec: dict) -> np.ndarray:
    """Decode the float16 scores without genattrib's own decoder."""
    raw = base64.b64decode(spec["data"])
    count = spec["shape"][0] * spec["shape"][1]
    if spec["codec"] == "f16le-planes-zlib":
        planes = np.frombuffer(zlib.decompress(raw), dtype=np.uint8).reshape(2, count)
        bits = planes[0].astype(np.uint16) | (planes[1].astype(np.uint16) << 8)
    else:
        assert spec["codec"] == "f16le"
        bits = np.frombuffer(raw, dtype="<u2")
    return bits.view(np.float16).astype(np.float64).reshape(spec["shape"]) * 2.0 ** spec["exp"]


def assert_scores_match(decoded: np.ndarray, scores: torch.Tensor, exp: int) -> None:
    """Equal to float16 precision (relative to the stored scale); NaN exactly where NaN was."""
    expected = scores.double().numpy()
    assert decoded.shape == expected.shape
    assert np.array_equal(np.isnan(decoded), np.isnan(expected))
    finite = np.isfinite(expected)
    assert np.array_equal(decoded[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)])  # ±inf
    np.testing.assert_allclose(decoded[finite], expected[finite], rtol=2.0**-11, atol=2.0 ** (exp - 25))


class TagCollector(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = TagCollector()
    parser.feed(page)
    parser.close()
    return parser.tags


# --- self-contained ---------------------------------------------------------------------
@pytest.mark.parametrize("make", [paris_output, hostile_output], ids=["paris", "hostile"])
def test_page_is_self_contained(make) -> None:
    page = to_html(make())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page
    for tag, attrs in tags_of(page):
        assert tag != "link" and tag != "img" and tag != "iframe"
        for name in ("src", "href", "action", "srcset", "data"):
            assert name not in attrs, f"<{tag} {name}=...> in a self-contained page"
    for call in ("fetch(", "XMLHttpRequest", "WebSocket", "import(", "EventSource", "sendBeacon", "url("):
        assert call not in page, call


def test_content_security_policy_allows_only_the_inline_code() -> None:
    page = to_html(paris_output())
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    for code in (style, script):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_assets_are_package_data_and_safe_inline() -> None:
    import tomllib

    assets = files("genattrib.render").joinpath("assets")
    names = {p.name for p in assets.iterdir()}
    assert {"viewer.js", "viewer.css"} <= names
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "genattrib.render"
    ]
    assert {"assets/*.js", "assets/*.css"} <= set(patterns)
    for name in ("viewer.js", "viewer.css"):
        text = assets.joinpath(name).read_text(encoding="utf-8").lower()
        assert "</script" not in text and "<!--" not in text and "</style" not in text
        assert "innerhtml" not in text and "outerhtml" not in text and "insertadjacenthtml" not in text
        assert "document.write" not in text and "eval(" not in text


# --- data round trip --------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True, None])
def test_scores_round_trip_through_the_page(compress) -> None:
    out = FeatureAttributionOutput([paris_sequence(signed=True), paris_sequence().steps(1)], provenance())
    data = data_block(to_html(out, compress=compress))
    assert data["format"] == "genattrib-html/3"
    for seq, entry in zip(out.sequences, data["sequences"]):
        if compress is not None:
            assert entry["scores"]["codec"] == ("f16le-planes-zlib" if compress else "f16le")
        decoded = independent_decode(entry["scores"])
        assert_scores_match(decoded, seq.scores, entry["scores"]["exp"])
        np.testing.assert_array_equal(decoded, decode_scores(entry["scores"]))
        assert entry["tokens"] == seq.tokens
        assert (entry["prompt_length"], entry["step_start"], entry["steps"]) == (
            seq.prompt_length,
            seq.step_start,
            seq.num_steps,
        )
        for name, values in seq.step_scores.items():
            stored = np.frombuffer(base64.b64decode(entry["step_scores"][name]), dtype="<f4")
            np.testing.assert_array_equal(stored, values.numpy())


def test_tiny_and_huge_scores_keep_float16_precision() -> None:
    """Scores are stored relative to a power of two: 1e-9 and 1e9 both survive float16."""
    for magnitude in (1e-9, 1e-3, 1.0, 1e9):
        scores = nan_after_targets(torch.tensor([[0.3, -0.71, 0.0, 1.0], [0.5, 0.25, -1.0, 0.0]]) * magnitude, 2)
        spec = encode_scores(scores)
        assert_scores_match(decode_scores(spec), scores, spec["exp"])
        assert np.isclose(np.nanmax(np.abs(decode_scores(spec))), magnitude, rtol=1e-3)


@SETTINGS
@given(spec=output_specs(), compress=st.sampled_from([False, True, None]))
def test_any_output_round_trips(spec, compress) -> None:
    out = build_output(spec)
    page = to_html(out, compress=compress)
    data = data_block(page)
    assert len(data["sequences"]) == len(out.sequences)
    for seq, entry in zip(out.sequences, data["sequences"]):
        assert entry["tokens"] == seq.tokens
        assert_scores_match(independent_decode(entry["scores"]), seq.scores, entry["scores"]["exp"])
    assert "<script>alert" not in page


@SETTINGS
@given(
    value=st.recursive(st.one_of(st.text(), st.integers(), st.none()), lambda c: st.lists(c, max_size=3), max_leaves=8)
)
def test_script_json_is_inert_and_exact(value) -> None:
    text = script_json(value)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == value


# --- escaping ---------------------------------------------------------------------------
@pytest.mark.parametrize("embedded", [False, True])
def test_hostile_tokens_never_reach_the_markup(embedded) -> None:
    out = hostile_output()
    page = to_html(out, embedded=embedded)
    for hostile in [XSS_SCRIPT, XSS_IMG, *[h for h in XSS_MORE if "<" in h and h != "</style>"]]:
        assert hostile not in page, hostile
    assert page.count("</style") == 1 and page.count("</script") == 2  # only the page's own
    tags = tags_of(page)
    assert {tag for tag, _ in tags} <= ALLOWED_TAGS
    assert not [(t, a) for t, a in tags for name in a if name.startswith("on")], "event handler attribute"
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts == [{"type": "application/json", "class": "ga-data", "id": scripts[0]["id"]}, {}]
    data = data_block(page)  # the block ends at the first </script and is complete JSON
    assert data["sequences"][0]["tokens"] == out.sequences[0].tokens
    assert XSS_SCRIPT in data["sequences"][0]["step_scores"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # provenance, title and selector: escaped text


def test_provenance_panel_rows() -> None:
    rows = dict(provenance_rows(provenance(model_revision="abc123", attributed_fn_args={"contrast": 3})))
    assert rows["model"] == "tiny-test @ abc123"
    assert rows["method parameters"] == '{"abs": true}'
    assert rows["attributed function"] == 'logprob {"contrast": 3}'
    assert rows["timings"] == "generate 250 ms · attribute 1.5 s"
    assert rows["model rows run"] == "rows 7"
    assert rows["versions"] == "genattrib 0.1.0" and rows["seed"] == "42"
    assert "device map" not in rows  # unset fields are left out


# --- size -------------------------------------------------------------------------------
def test_2000_step_page_is_small() -> None:
    out = long_output(2000)
    started = time.perf_counter()
    page = to_html(out)
    seconds = time.perf_counter() - started
    size = len(page.encode("utf-8"))
    print(f"\n2,000-step page: {size / 1e6:.2f} MB, written in {seconds:.2f} s", file=sys.stderr)
    assert size < MAX_BYTES_2000_STEPS
    assert data_block(page)["sequences"][0]["scores"]["codec"] == "f16le-planes-zlib"


# --- fragments, files, entry points -----------------------------------------------------
def test_embedded_fragments_have_unique_ids() -> None:
    out = paris_output()
    first, second = out._repr_html_(), to_html(out, embedded=True)
    for fragment in (first, second):
        assert "<html" not in fragment and "<body" not in fragment and "<!DOCTYPE" not in fragment
        assert "Content-Security-Policy" not in fragment
    ids = [re.findall(r'\bid="([^"]+)"', f) for f in (first, second)]
    root_ids = [i[0] for i in ids]
    assert root_ids[0] != root_ids[1]
    for root, all_ids in zip(root_ids, ids):
        assert all(i.startswith(root) for i in all_ids)
    assert not set(ids[0]) & set(ids[1])


def test_element_id_and_title() -> None:
    page = to_html(paris_output(), element_id="my-view", title="Paris <3")
    assert 'id="my-view"' in page and 'id="my-view-data"' in page
    assert "<title>Paris &lt;3</title>" in page
    for bad in ("", "1abc", 'x" onload="y', "a b"):
        with pytest.raises(InvalidArgumentError, match="element_id"):
            to_html(paris_output(), element_id=bad)


def test_save_html_and_methods(tmp_path) -> None:
    out = paris_output()
    path = out.save_html(tmp_path / "sub" / "paris.html")
    assert path == tmp_path / "sub" / "paris.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    assert data_block(text) == data_block(out.to_html())
    assert save_html(out, tmp_path / "again.html", title="x").read_text(encoding="utf-8").count("<title>x</title>") == 1
    with pytest.raises(InvalidArgumentError, match="path"):
        out.save_html(tmp_path)


def test_empty_and_zero_step_outputs_render() -> None:
    assert data_block(to_html(FeatureAttributionOutput([], provenance())))["sequences"] == []
    data = data_block(to_html(FeatureAttributionOutput([paris_sequence().steps(0, 0)], provenance())))
    assert data["sequences"][0]["steps"] == 0 and data["sequences"][0]["scores"]["shape"] == [0, 8]


def test_page_from_a_real_model(tiny_llama) -> None:
    out = tiny_llama.attribute(
        ["The capital of France is", "A quick brown fox"], max_new_tokens=5, step_scores=["probability", "entropy"]
    )
    data = data_block(out.to_html())
    for seq, entry in zip(out.sequences, data["sequences"]):
        assert entry["tokens"] == seq.tokens
        assert_scores_match(decode_scores(entry["scores"]), seq.scores, entry["scores"]["exp"])
        assert set(entry["step_scores"]) == {"probability", "entropy"}
    assert ">LlamaForCausalLM</td>" in out.to_html()


def test_cli_show_writes_html(tmp_path, capsys) -> None:
    saved = paris_output().save(tmp_path / "r.json")
    page = tmp_path / "page.html"
    assert main(["show", str(saved), "--html", str(page)]) == 0
    assert data_block(page.read_text(encoding="utf-8"))["sequences"][0]["tokens"][3] == " France"
    assert "wrote HTML page" in capsys.readouterr().out


def test_cli_attribute_writes_html(tmp_path, monkeypatch, capsys) -> None:
    class Fake:
        def attribute(self, inputs, target=None, **kwargs):
            return paris_output()

    monkeypatch.setattr(genattrib, "load_model", lambda source=None, **kwargs: Fake())
    page = tmp_path / "p.html"
    assert main(["attribute", "The capital of France is", "--no-show", "--html", str(page)]) == 0
    assert page.is_file() and "wrote HTML page" in capsys.readouterr().out


def test_sequence_with_roles_and_special_tokens() -> None:
    seq = paris_sequence()
    chat = SequenceAttribution(
        input_ids=seq.input_ids,
        tokens=seq.tokens,
        prompt_length=seq.prompt_length,
        scores=seq.scores,
        held_fixed=torch.tensor([True] + [False] * 7),
        token_roles=["template", "user", "user", "user", "template", "generated", "generated", "generated"],
    )
    entry = data_block(to_html(FeatureAttributionOutput([chat], provenance())))["sequences"][0]
    assert entry["special"] == [0]
    assert entry["roles"] == [[0, "template"], [1, "user"], [4, "template"], [5, "generated"]]
