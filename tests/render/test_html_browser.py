"""HTML pages in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright).

One browser per module; every page opens from a file:// URL in a fresh context and each test
checks that it made no request but the document itself and logged no console error. Screenshots
go to ``artifacts/`` (git-ignored). Chromium is required: these tests fail, never skip, when it
is missing (``.ci/run`` installs it; here: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from html_outputs import (
    HOSTILE,
    XSS_IMG,
    XSS_MORE,
    XSS_SCRIPT,
    chat_output,
    hostile_everywhere_output,
    hostile_output,
    long_output,
    paris_output,
    paris_sequence,
)

from genattrib import FeatureAttributionOutput
from genattrib.render.colors import WHITE

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = os.environ.get("GENATTRIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SANITY_LIMIT_S = 60.0


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the `playwright` Python package: pip install -e '.[test]'", pytrace=False)
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`, as .ci/run "
            "does) or set GENATTRIB_CHROMIUM; never `playwright install`",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Opened:
    """A loaded page and everything it did: requests, console errors, dialogs."""

    page: object
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    routed: list[str] = field(default_factory=list)  # requests the context's route saw (and aborted)
    seconds: float = 0.0

    def assert_clean(self) -> None:
        assert self.requests == [self.url], f"network requests besides the page: {self.requests}"
        assert self.routed == [], f"requests intercepted by the route: {self.routed}"
        assert self.page.evaluate("window.__xss === undefined"), "a script from the data ran"
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"


@pytest.fixture
def open_page(browser, tmp_path):
    """``open_page(out_or_path, **to_html_kwargs)`` → :class:`Opened`, ready to use."""
    contexts = []

    def opener(target, *, width: int = 1200, ready: str = ".genattrib[data-ready]", **kwargs) -> Opened:
        path = (
            target if isinstance(target, Path) else target.save_html(tmp_path / f"page{len(contexts)}.html", **kwargs)
        )
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        opened = Opened(page, path.resolve().as_uri())

        def intercept(route) -> None:  # every network request is logged and refused
            opened.routed.append(route.request.url)
            route.abort()

        context.route("http*://**/*", intercept)
        page.on("request", lambda request: opened.requests.append(request.url))
        page.on("console", lambda msg: msg.type in ("error", "assert") and opened.errors.append(msg.text))
        page.on("pageerror", lambda exc: opened.errors.append(str(exc)))

        def on_dialog(dialog) -> None:
            opened.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        started = time.perf_counter()
        page.goto(opened.url)
        page.wait_for_selector(ready, state="attached", timeout=SANITY_LIMIT_S * 1000)
        opened.seconds = time.perf_counter() - started
        return opened

    yield opener
    for context in contexts:
        context.close()


# --- helpers ----------------------------------------------------------------------------
def rgb(css: str) -> tuple[int, int, int]:
    """``"rgb(1, 2, 3)"`` → ``(1, 2, 3)``; transparent → the white of the scale."""
    if css.startswith("rgba(0, 0, 0, 0)") or css == "transparent":
        return WHITE
    r, g, b = (int(float(v)) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return r, g, b


def shade_strength(css: str) -> int:
    """How far a background is from the scale's white (0 = unshaded)."""
    return sum(abs(a - b) for a, b in zip(rgb(css), WHITE))


def token_states(page, root: str = ".genattrib") -> list[dict]:
    return page.eval_on_selector_all(
        f"{root} .ga-text .ga-tok",
        """spans => spans.map(s => ({
        pos: Number(s.dataset.pos), score: s.dataset.score === undefined ? null : Number(s.dataset.score),
        bg: getComputedStyle(s).backgroundColor, text: s.textContent, target: s.classList.contains('ga-target')}))""",
    )


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def check_step_shading(page, seq, step: int) -> None:
    """After hovering step ``step``: each earlier token shows its score; the top one is the strongest."""
    target = seq.target_positions[step]
    states = token_states(page)
    expected = seq.scores[step].tolist()
    for s in states:
        if s["pos"] < target:
            assert s["score"] is not None and math.isclose(s["score"], expected[s["pos"]], rel_tol=2**-10, abs_tol=1e-6)
        else:
            assert s["score"] is None and shade_strength(s["bg"]) == 0
        assert s["target"] == (s["pos"] == target)
    prefix = [abs(v) for v in expected[:target]]
    top = max(range(target), key=lambda i: prefix[i])
    strengths = [shade_strength(states[i]["bg"]) for i in range(target)]
    assert strengths[top] == max(strengths) > 0
    # order of shades follows the order of |score|
    for i in range(target):
        for k in range(target):
            if prefix[i] > prefix[k] + 0.02:
                assert strengths[i] >= strengths[k]


# --- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("signed", [False, True], ids=["sequential", "diverging"])
def test_hover_shades_source_tokens_by_score(open_page, signed) -> None:
    out = paris_output(signed=signed)
    seq = out.sequences[0]
    opened = open_page(out)
    page = opened.page
    for step in range(seq.num_steps):
        page.hover(f".ga-tok[data-pos='{seq.target_positions[step]}']")
        assert page.get_attribute(".genattrib", "data-step") == str(step)
        check_step_shading(page, seq, step)
    page.hover(".ga-tok[data-pos='5']")  # " Paris": " France" (0.9) is the top source
    status = page.text_content(".ga-status")
    assert "step 0" in status and "Paris" in status and "probability 0.93" in status
    france = token_states(page)[3]
    if signed:
        r, g, b = rgb(token_states(page)[1]["bg"])  # " capital": negative → blue
        assert b > r
    assert rgb(france["bg"])[0] > rgb(france["bg"])[2]  # positive → orange
    page.hover(".ga-tok[data-pos='3']")
    tip = page.text_content(".ga-tip")
    assert page.is_visible(".ga-tip") and "·France" in tip and "score for step 0" in tip and "0.9" in tip
    legend = page.text_content(".ga-legend")
    assert legend.startswith("\u2212step max" if signed else "0") and "each step's own largest |score|" in legend
    opened.assert_clean()


def test_arrow_keys_move_between_generated_tokens(open_page) -> None:
    seq = paris_sequence()
    opened = open_page(FeatureAttributionOutput([seq], paris_output().provenance))
    page = opened.page
    active = "() => document.activeElement.dataset.pos"
    page.focus(".ga-step[tabindex='0']")
    assert page.evaluate(active) == "5"
    page.keyboard.press("ArrowRight")
    assert page.evaluate(active) == "6" and page.get_attribute(".genattrib", "data-step") == "1"
    check_step_shading(page, seq, 1)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # stops at the last generated token
    assert page.evaluate(active) == "7"
    check_step_shading(page, seq, 2)
    page.keyboard.press("ArrowLeft")
    assert page.evaluate(active) == "6"
    page.keyboard.press("Home")
    assert page.evaluate(active) == "5"
    page.keyboard.press("Enter")  # pin: hovering another token no longer moves the step
    assert "ga-pinned" in page.get_attribute(".genattrib", "class")
    page.hover(".ga-tok[data-pos='7']")
    assert page.get_attribute(".genattrib", "data-step") == "0"
    page.keyboard.press("Escape")
    page.hover(".ga-tok[data-pos='6']")
    assert page.get_attribute(".genattrib", "data-step") == "1"
    assert page.eval_on_selector_all(".ga-step[tabindex='0']", "els => els.map(e => e.dataset.pos)") == ["6"]
    opened.assert_clean()


def test_matrix_canvas_readout_and_click(open_page) -> None:
    opened = open_page(paris_output())
    page = opened.page
    layout = json.loads(page.get_attribute(".ga-overlay", "data-layout"))
    box = page.locator(".ga-overlay").bounding_box()

    def cell(step: int, pos: int) -> tuple[float, float]:
        return (
            box["x"] + layout["left"] + (pos + 0.5) * layout["cellX"],
            box["y"] + layout["top"] + (step + 0.5) * layout["cellY"],
        )

    page.mouse.move(*cell(0, 3))
    readout = page.text_content(".ga-readout")
    assert "step 0" in readout and "·Paris" in readout and "·France" in readout and "0.9" in readout
    page.mouse.move(*cell(0, 6))
    assert "no score" in page.text_content(".ga-readout")
    page.mouse.click(*cell(2, 0))
    assert page.get_attribute(".genattrib", "data-step") == "2"
    assert "ga-pinned" in page.get_attribute(".genattrib", "class")
    pixel = page.evaluate(
        """([x, y]) => Array.from(document.querySelector('.ga-canvas').getContext('2d')
        .getImageData(x * devicePixelRatio, y * devicePixelRatio, 1, 1).data)""",
        [layout["left"] + 3.5 * layout["cellX"], layout["top"] + 0.5 * layout["cellY"]],
    )
    assert pixel[3] == 255 and pixel[0] > pixel[2]  # " France" for " Paris": strong orange
    opened.assert_clean()


def test_hostile_tokens_render_as_text(open_page) -> None:
    out = hostile_output()
    opened = open_page(out)
    page = opened.page
    text = page.text_content(".ga-text")
    for hostile in (XSS_SCRIPT, XSS_IMG, *[h for h in XSS_MORE if h != "\u2028"]):
        assert hostile in text
    for step in range(3):  # tooltips, status and canvas labels see the hostile tokens too
        page.hover(f".ga-tok[data-pos='{out.sequences[0].target_positions[step]}']")
    page.hover(".ga-tok[data-pos='2']")
    assert XSS_SCRIPT in page.text_content(".ga-tip")
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert page.evaluate("document.scripts.length") == 2
    assert (
        page.evaluate(
            "Array.from(document.querySelectorAll('*')).some(e => "
            "Array.from(e.attributes).some(a => a.name.startsWith('on')))"
        )
        is False
    )
    assert page.text_content(".ga-title") == f"genattrib: {XSS_SCRIPT} · {XSS_IMG}"
    assert XSS_SCRIPT in page.title()
    prov = page.text_content(".ga-prov")
    assert XSS_SCRIPT in prov and XSS_IMG in prov and "logprob</script>" in prov
    assert page.eval_on_selector(".ga-bars", "s => s.options[0].textContent") == XSS_SCRIPT
    assert page.evaluate("window.__xss === undefined")
    screenshot(page, "html_hostile.png")
    opened.assert_clean()


def test_the_network_guard_sees_requests(open_page, tmp_path) -> None:
    """The checks below are not vacuous: markup that fetches is seen (and refused) by the route."""
    control = tmp_path / "control.html"
    control.write_text(
        '<!DOCTYPE html><meta charset="utf-8"><title>c</title><img src="http://127.0.0.1:9/seen.png">'
        '<script>window.__xss = 1</script><p data-ready="1" class="genattrib">x</p>',
        encoding="utf-8",
    )
    opened = open_page(control)
    opened.page.wait_for_timeout(200)
    assert opened.routed == ["http://127.0.0.1:9/seen.png"]
    assert opened.page.evaluate("window.__xss") == 1
    with pytest.raises(AssertionError):
        opened.assert_clean()


def _exercise(page, seq) -> None:
    """Every view of the page sees the data: each step hovered, bars, scale switch, both levels,
    the heatmap, the search box, the tooltip."""
    for j in range(seq.num_steps):
        page.hover(f".ga-tok[data-pos='{seq.target_positions[j]}']")
    for option in page.eval_on_selector(".ga-bars", "s => Array.from(s.options).map(o => o.value)"):
        page.select_option(".ga-bars", option)
    page.click(".ga-norm")
    page.click(".ga-norm")
    page.focus(".ga-step[tabindex='0']")
    page.keyboard.press("u")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("u")
    box = page.locator(".ga-overlay").bounding_box()
    if box:
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.fill(".ga-search", HOSTILE[0])
    page.keyboard.press("Enter")
    page.hover(".ga-tok[data-pos='1']")


def test_hostile_data_in_every_field_runs_nothing_and_fetches_nothing(open_page) -> None:
    out = hostile_everywhere_output()
    seq = out.sequences[0]
    opened = open_page(out, title=HOSTILE[-1])
    page = opened.page
    _exercise(page, seq)
    text = page.text_content(".ga-text")
    assert all(h in text for h in HOSTILE if h not in ("\u2028",))
    prov = page.text_content(".ga-prov")
    assert all(h in prov for h in HOSTILE if h not in ("\u2028",))  # parameters, config, versions ... as text
    assert page.text_content(".ga-title") == HOSTILE[-1] and HOSTILE[-1] in page.title()
    assert (
        page.evaluate(
            "document.querySelectorAll('img, iframe, object, embed, svg, link, meta[http-equiv=refresh]').length"
        )
        == 0
    )
    assert page.evaluate("document.scripts.length") == 2
    on_attributes = (
        "Array.from(document.querySelectorAll('*'))"
        ".some(e => Array.from(e.attributes).some(a => a.name.startsWith('on')))"
    )
    assert page.evaluate(on_attributes) is False
    screenshot(page, "html_hostile_everywhere.png")
    opened.assert_clean()  # no request but the page, none routed, no dialog, window.__xss unset


def test_hostile_forced_continuation_of_a_tiny_model(open_page, tiny_llama) -> None:
    prompt, forced = "<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>`${alert(3)}`'"
    out = tiny_llama.attribute(prompt, continuation=forced, step_scores=["probability"], show_progress=False)
    seq = out.sequences[0]
    assert seq.generated_text == forced
    opened = open_page(out)
    page = opened.page
    _exercise(page, seq)
    assert prompt in page.text_content(".ga-text") and forced in page.text_content(".ga-text")
    opened.assert_clean()


def test_special_tokens_left_out_of_ranking_and_scale(open_page) -> None:
    out = chat_output(attributed_fn="logprob", attributed_fn_used=False)
    seq = out.sequences[0]
    opened = open_page(out)
    page = opened.page
    assert page.is_checked(".ga-norm")
    assert page.text_content(".ga-summary").startswith("attention scores (no attributed function)")
    legend = page.text_content(".ga-legend")
    assert "each step's own largest |score|" in legend and "chat-template tokens left out" in legend
    page.hover(f".ga-tok[data-pos='{seq.target_positions[1]}']")
    status = page.text_content(".ga-status")
    assert "left out" in status and "im_start" not in status.split("top |score|")[1].split(":", 1)[1]
    states = token_states(page)
    assert rgb(states[5]["bg"]) == (230, 97, 1)  # " France" (0.58) is the step's largest content score: full orange
    assert rgb(states[0]["bg"]) == (230, 97, 1) and states[0]["score"] > 16  # the sink: clipped, its score kept
    screenshot(page, "html_chat_sink.png")
    opened.assert_clean()
    # the option keeps them, and the global scale makes the user's words pale next to the sink
    opened = open_page(out, scale="global", include_special_tokens=True)
    page = opened.page
    assert not page.is_checked(".ga-norm") and "left out" not in page.text_content(".ga-legend")
    page.hover(f".ga-tok[data-pos='{seq.target_positions[1]}']")
    status = page.text_content(".ga-status")
    assert "\u201c<|im_start|>\u201d 16.2" in status and "left out" not in status
    assert shade_strength(token_states(page)[5]["bg"]) < 0.1 * shade_strength(token_states(page)[0]["bg"])
    opened.assert_clean()


def test_batch_selector_switches_sequences(open_page) -> None:
    out = FeatureAttributionOutput(
        [paris_sequence(), hostile_output().sequences[0], paris_sequence(signed=True)], paris_output().provenance
    )
    opened = open_page(out)
    page = opened.page
    assert page.eval_on_selector(".ga-seq", "s => s.options.length") == 3
    page.select_option(".ga-seq", "1")
    page.wait_for_selector(".genattrib[data-seq='1']")
    assert XSS_SCRIPT in page.text_content(".ga-text")
    page.hover(".ga-tok[data-pos='14']")
    assert page.get_attribute(".genattrib", "data-step") == "0"
    page.select_option(".ga-seq", "2")
    page.wait_for_selector(".genattrib[data-seq='2']")
    page.hover(".ga-tok[data-pos='6']")
    check_step_shading(page, out.sequences[2], 1)
    assert page.text_content(".ga-legend").startswith("\u2212step max")
    opened.assert_clean()


def test_per_step_scale_and_bars(open_page) -> None:
    opened = open_page(paris_output(), scale="global")
    page = opened.page
    assert not page.is_checked(".ga-norm")
    assert page.text_content(".ga-legend").startswith(
        "0"
    ) and "the largest |score| of the sequence" in page.text_content(".ga-legend")
    page.hover(".ga-tok[data-pos='7']")  # step 2: top source "The" (0.4 of the global 0.9)
    before = shade_strength(token_states(page)[0]["bg"])
    page.check(".ga-norm")
    page.hover(".ga-tok[data-pos='6']")
    page.hover(".ga-tok[data-pos='7']")
    after = shade_strength(token_states(page)[0]["bg"])
    assert after > before and rgb(token_states(page)[0]["bg"]) == (230, 97, 1)  # full orange
    bars = page.eval_on_selector_all(".ga-step", "els => els.map(e => getComputedStyle(e).backgroundSize)")
    assert [b.split(",")[0].split()[0] for b in bars] == ["93%", "61%", "20%"]  # probability
    page.select_option(".ga-bars", "none")
    assert page.eval_on_selector(".ga-step", "e => getComputedStyle(e).backgroundImage") == "none"
    opened.assert_clean()


def test_notebook_fragments_coexist(open_page, tmp_path) -> None:
    a, b = paris_output(), paris_output(signed=True)
    doc = tmp_path / "notebook.html"
    doc.write_text(
        "<!DOCTYPE html><meta charset='utf-8'><title>nb</title><body>"
        f"<div class='cell'>{a._repr_html_()}</div><div class='cell'>{b._repr_html_()}</div>",
        encoding="utf-8",
    )
    opened = open_page(doc, ready=".cell:nth-child(2) .genattrib[data-ready]")
    page = opened.page
    page.wait_for_selector(".cell:nth-child(1) .genattrib[data-ready]", state="attached")
    first, second = ".cell:nth-child(1) .genattrib", ".cell:nth-child(2) .genattrib"
    page.hover(f"{second} .ga-tok[data-pos='7']")
    assert page.get_attribute(second, "data-step") == "2" and page.get_attribute(first, "data-step") == "0"
    assert page.text_content(f"{first} .ga-legend").startswith("0")
    assert page.text_content(f"{second} .ga-legend").startswith("\u2212step max")
    opened.assert_clean()


def test_empty_and_zero_step_pages(open_page) -> None:
    empty = open_page(FeatureAttributionOutput([], paris_output().provenance))
    assert "no sequences" in empty.page.text_content(".ga-summary")
    empty.assert_clean()
    zero = open_page(FeatureAttributionOutput([paris_sequence().steps(0, 0)], paris_output().provenance))
    assert "no explained steps" in zero.page.text_content(".ga-status")
    assert zero.page.text_content(".ga-text") == "The capital of France is" + "generated" + " Paris.⏎\n"
    zero.assert_clean()


def test_2000_step_output_renders(open_page, tmp_path) -> None:
    out = long_output(2000)
    path = out.save_html(tmp_path / "long.html")
    opened = open_page(path)
    page = opened.page
    render_ms = float(page.get_attribute(".genattrib", "data-render-ms"))
    seq = out.sequences[0]
    page.focus(".ga-step[tabindex='0']")
    started = time.perf_counter()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    per_key = (time.perf_counter() - started) / 20
    assert page.get_attribute(".genattrib", "data-step") == "20"
    last = seq.target_positions[-1]
    page.locator(f".ga-tok[data-pos='{last}']").scroll_into_view_if_needed()
    page.hover(f".ga-tok[data-pos='{last}']")
    assert page.get_attribute(".genattrib", "data-step") == str(seq.num_steps - 1)
    states = page.eval_on_selector_all(".ga-tok[data-score]", "els => els.length")
    assert states == last
    print(
        f"\n2,000-step page: {path.stat().st_size / 1e6:.2f} MB; open to ready {opened.seconds:.2f} s "
        f"(script {render_ms / 1000:.2f} s); ArrowRight {per_key * 1000:.0f} ms per step",
        file=sys.stderr,
    )
    assert opened.seconds < SANITY_LIMIT_S
    screenshot(page, "html_2000_steps.png")
    opened.assert_clean()


def test_page_of_a_tiny_model(open_page, tiny_llama) -> None:
    out = tiny_llama.attribute(
        ["The capital of France is", "A quick brown fox"], max_new_tokens=6, step_scores=["probability", "entropy"]
    )
    opened = open_page(out)
    page = opened.page
    seq = out.sequences[0]
    page.hover(f".ga-tok[data-pos='{seq.target_positions[2]}']")
    check_step_shading(page, seq, 2)
    screenshot(page, "html_tiny_llama.png")
    opened.assert_clean()


@pytest.mark.default_model
def test_page_of_the_default_model(open_page, default_model) -> None:
    out = default_model.attribute("The capital of France is", max_new_tokens=8, step_scores=["probability"])
    ARTIFACTS.mkdir(exist_ok=True)
    path = out.save_html(ARTIFACTS / "paris.html")
    opened = open_page(path)
    page = opened.page
    seq = out.sequences[0]
    assert seq.tokens[seq.prompt_length] == " Paris"
    page.hover(f".ga-tok[data-pos='{seq.prompt_length}']")
    check_step_shading(page, seq, 0)
    assert "Paris" in page.text_content(".ga-status")
    assert torch.isfinite(seq.scores[0, : seq.prompt_length]).all()
    screenshot(page, "html_default_model.png")
    opened.assert_clean()
