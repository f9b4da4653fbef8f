"""Take docs/images/long-form-page.png: the HTML page of a synthetic 8,000-token generation
(or of a saved result).

    python docs/tools/long_form_screenshot.py            # writes docs/images/long-form-page.png
    python docs/tools/long_form_screenshot.py --out x.png
    python docs/tools/long_form_screenshot.py --result story.safetensors --out docs/images/long-form-story.png

Builds ``long_form_output(8000)`` (tests/helpers/html_outputs.py), saves its page, opens it in headless
Chromium (/usr/bin/chromium or $GENATTRIB_CHROMIUM, driven by playwright; never
``playwright install``), picks a sentence in the outline and saves the visible part of the page.
Prints the page's size and the time from navigation to the viewer being ready.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from html_outputs import long_form_output  # noqa: E402

CHROMIUM = os.environ.get("GENATTRIB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "long-form-page.png")
    parser.add_argument("--unit", type=int, default=7, help="the outline entry to pick")
    parser.add_argument("--result", type=Path, default=None, help="a saved result to show instead of the synthetic one")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        from genattrib import FeatureAttributionOutput

        out = long_form_output(8000) if args.result is None else FeatureAttributionOutput.load(args.result)
        page_path = out.save_html(Path(tmp) / "long.html")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(page_path.as_uri())
        page.wait_for_selector(".genattrib[data-ready]", state="attached", timeout=60_000)
        ready_ms = float(page.get_attribute(".genattrib", "data-ready-ms"))
        page.click(f".ga-unit[data-unit='{args.unit}']")
        page.evaluate("window.scrollTo(0, 0)")
        page.evaluate("document.activeElement.blur()")  # no tooltip in the picture
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
        size = page_path.stat().st_size
    print(f"page {size / 1e6:.2f} MB, ready {ready_ms:.0f} ms after navigation; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
