"""A LongRA-style token-level set: a word named early, a long parenthetical distractor, then a
context that makes the model predict the word's analogue.

Only examples the model predicts correctly (greedy next token) both with and without the
distractor are kept, so the distractor is a known unimportant span: a faithful and plausible
attribution puts little mass on it. ``benchmarks/build_longra.py`` writes the set for the
embedded default model to ``genattrib/data/longra.json``.

Example:
    >>> len(candidates()) > 50
    True
    >>> c = candidates()[0]; c["prompt"][c["distractor_start"]:c["distractor_end"]].startswith("(")
    True
"""

from __future__ import annotations

from typing import Any

import torch

from genattrib.engine.forward import ModelForward, eval_mode

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Russia": "Moscow",
    "England": "London",
    "Egypt": "Cairo",
    "Greece": "Athens",
    "China": "Beijing",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Ireland": "Dublin",
    "Norway": "Oslo",
    "Canada": "Ottawa",
}
LANGUAGES = {
    "France": "French",
    "Germany": "German",
    "Italy": "Italian",
    "Spain": "Spanish",
    "Japan": "Japanese",
    "Russia": "Russian",
    "China": "Chinese",
    "Greece": "Greek",
    "Portugal": "Portuguese",
    "Poland": "Polish",
    "Sweden": "Swedish",
    "Turkey": "Turkish",
}
OPPOSITES = {
    "hot": "cold",
    "big": "small",
    "happy": "sad",
    "fast": "slow",
    "light": "dark",
    "old": "young",
    "rich": "poor",
    "early": "late",
    "strong": "weak",
    "wet": "dry",
}

TEMPLATES = {
    "capital": ("My best friend moved to {word} last year", ". The capital city of that country is", CAPITALS),
    "language": (
        "My grandmother was born and raised in {word}",
        ". The language she spoke at home as a child was",
        LANGUAGES,
    ),
    "opposite": (
        "The teacher wrote the word {word} on the board",
        ". Then she asked for its opposite, which is the word",
        OPPOSITES,
    ),
}
DISTRACTORS = (
    "(a decision that, as my neighbour keeps reminding me over tea every single morning, surprised everyone we know)",
    "(although, to be completely honest, nobody in our small village ever quite understood why it happened that way)",
    "(and I still remember the long rainy afternoon when we talked about it for hours in the old kitchen)",
)


def candidates() -> list[dict[str, Any]]:
    """Every (template, word, distractor) combination, with the distractor's character span."""
    out = []
    for category, (head, tail, pairs) in TEMPLATES.items():
        for word, answer in pairs.items():
            start = head.format(word=word)
            for d, distractor in enumerate(DISTRACTORS):
                prompt = f"{start} {distractor}{tail}"
                out.append(
                    {
                        "category": category,
                        "word": word,
                        "target": f" {answer}",
                        "distractor_id": d,
                        "prompt": prompt,
                        "plain_prompt": f"{start}{tail}",
                        "distractor_start": len(start) + 1,
                        "distractor_end": len(start) + 1 + len(distractor),
                    }
                )
    return out


def _greedy_next(forward: ModelForward, tokenizer: Any, prompts: list[str]) -> list[int]:
    """The greedy next token after each prompt (right-padded chunks; the model is causal)."""
    rows = [torch.tensor(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.empty(len(rows), dtype=torch.long)

    def run(chunk: slice) -> None:
        ids = torch.zeros(chunk.stop - chunk.start, int(lengths[chunk].max()), dtype=torch.long)
        for r, row in enumerate(rows[chunk]):
            ids[r, : len(row)] = row
        logits = forward.logits_at(forward.embed(ids), lengths[chunk].unsqueeze(-1))
        out[chunk] = logits[:, 0].argmax(-1).cpu()

    forward.run_chunked(len(rows), int(lengths.max()), run, grad=False)
    return out.tolist()


def build_longra(model: Any, examples: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The candidates ``model`` (an AttributionModel) gets right with and without the distractor;
    ``target`` becomes the first token of the answer."""
    examples = candidates() if examples is None else examples
    forward = ModelForward(model.model)
    tok = model.tokenizer
    kept = []
    with eval_mode(model.model):
        with_d = _greedy_next(forward, tok, [e["prompt"] for e in examples])
        without = _greedy_next(forward, tok, [e["plain_prompt"] for e in examples])
    for example, a, b in zip(examples, with_d, without):
        first = tok(example["target"], add_special_tokens=False)["input_ids"][0]
        if a == first and b == first:
            kept.append({**example, "target": tok.decode([first]), "model": model.name})
    return mixed_order(kept)


def mixed_order(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each word's first kept distractor before any word's second, words interleaved across
    categories: any prefix of the set (``max_examples``) mixes categories and words."""
    categories = list(TEMPLATES)
    words: dict[str, list[str]] = {c: [] for c in categories}  # kept words, in candidate order
    for e in examples:
        if e["word"] not in words[e["category"]]:
            words[e["category"]].append(e["word"])
    seen: dict[tuple[str, str], int] = {}
    keyed = []
    for e in sorted(examples, key=lambda e: e["distractor_id"]):
        rank = seen.get((e["category"], e["word"]), 0)
        seen[(e["category"], e["word"])] = rank + 1
        keyed.append(((rank, words[e["category"]].index(e["word"]), categories.index(e["category"])), e))
    return [e for _, e in sorted(keyed, key=lambda pair: pair[0])]
