"""Run the walk-through of docs/long-form.md on the embedded default model and print what it shows.

    python docs/tools/long_form_walkthrough.py                       # prints the outputs
    python docs/tools/long_form_walkthrough.py --save story.safetensors
    python docs/tools/long_form_screenshot.py --result story.safetensors --unit 2 --out docs/images/long-form-story.png

Greedy generation (``max_new_tokens`` 220 by default) and sentence-level occlusion over the
prompt's documents, then a context-ablation surrogate: a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import genattrib

NOTES = [
    "Write a long story, in three paragraphs, from these notes.",
    "Note 1: Elias has kept the lighthouse on Gull Island alone for twenty years.",
    "Note 2: One stormy night a glass bottle washes up on the rocks, with a map inside.",
    "Note 3: The map leads to a cave where his lost brother hid a letter.",
]
CHAT = [{"role": "user", "content": "\n\n".join(NOTES)}]
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # the template's own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=220)
    parser.add_argument("--save", type=Path, default=None, help="save the occlusion result here")
    parser.add_argument("--system", action="store_true", help="also attribute with the system prompt as a unit")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = genattrib.load_model()
    start = time.perf_counter()
    story = model.generate(CHAT, chat=True, max_new_tokens=args.max_new_tokens)[0]
    print(f"--- story, {len(story)} tokens ({time.perf_counter() - start:.0f} s)")
    print(repr(model.tokenizer.decode(story)))

    start = time.perf_counter()
    out = model.attribute(CHAT, story, chat=True, method="occlusion", explain="sentences", sources="documents")
    print(f"--- occlusion, explain='sentences', sources='documents' ({time.perf_counter() - start:.0f} s)")
    out.show(summary=True, max_width=100)
    units = out.sequences[0].source_unit_scores()
    print("--- out.sequences[0].source_unit_scores()")
    print("shape", tuple(units.scores.shape))
    print("units", [text[:24] for text in units.unit_texts])
    for text, row in zip(units.row_texts, units.scores.tolist()):
        print(f"{' '.join(text.split())[:40]:40s}", " ".join(f"{v:7.2f}" for v in row))
    if args.save is not None:
        print("saved", out.save(args.save))

    start = time.perf_counter()
    ablation = model.attribute(
        CHAT, story, chat=True, method="context_ablation", explain="sentences", sources="documents"
    )
    r2 = [round(v, 2) for v in ablation.sequences[0].step_scores["surrogate_r2"].tolist()]
    print(f"--- context_ablation ({time.perf_counter() - start:.0f} s): surrogate_r2", r2)
    if args.system:
        system_prompt(model, story)
    return 0


def system_prompt(model: genattrib.AttributionModel, story: torch.Tensor) -> None:
    """The template's default system prompt passed as a message: the same text, now a unit."""
    start = time.perf_counter()
    chat = [{"role": "system", "content": DEFAULT_SYSTEM}, *CHAT]
    out = model.attribute(chat, story, chat=True, method="occlusion", explain="sentences", sources="documents")
    units = out.sequences[0].source_unit_scores()
    print(f"--- the system prompt as a message ({time.perf_counter() - start:.0f} s): roles {units.unit_roles}")
    for text, row in zip(units.row_texts, units.scores.tolist()):
        print(f"{' '.join(text.split())[:40]:40s}", " ".join(f"{v:7.2f}" for v in row))


if __name__ == "__main__":
    raise SystemExit(main())
