"""An encoder-decoder result's HTML page in headless Chromium: a source panel and a target panel,
hovering a target token shades the source, and no console errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_seq2seq import make_seq2seq_model, make_seq2seq_tokenizer

import genattrib

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("GENATTRIB_CHROMIUM", "/usr/bin/chromium")


def test_two_panels_in_the_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", pytrace=False)
    tok = make_seq2seq_tokenizer()
    model = genattrib.load_model((make_seq2seq_model("marian", tok), tok), method="input_x_gradient")
    out = model.attribute("The capital of France is", "Paris is", attribute_prefix=True)
    path = out.save_html(tmp_path / "page.html")
    seq = out.sequences[0]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.resolve().as_uri())
            page.wait_for_selector(".genattrib[data-ready]", state="attached", timeout=60_000)
            source = page.locator(".ga-panel-source .ga-tok")
            target = page.locator(".ga-panel-target .ga-tok")
            assert source.count() == seq.source_length
            assert target.count() == len(seq.tokens) - seq.source_length
            assert page.locator(".ga-panel-source .ga-chip").inner_text() == "source"
            last = page.locator(f'.ga-tok[data-pos="{len(seq.tokens) - 1}"]')
            last.hover()
            shaded = page.locator(".ga-panel-source .ga-tok").evaluate_all(
                "nodes => nodes.filter(n => getComputedStyle(n).backgroundColor !== 'rgba(0, 0, 0, 0)').length"
            )
            assert shaded > 0
        finally:
            browser.close()
    assert errors == []
