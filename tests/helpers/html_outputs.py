"""Hand-built results for the HTML tests: small and readable, hostile, and 2,000 steps long."""

from __future__ import annotations

import math

import torch

from genattrib import FeatureAttributionOutput, Provenance, SequenceAttribution

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
XSS_MORE = ["</script><script>alert(2)</script>", "<!--", "-->", "<![CDATA[", "&amp;", "'\"`", "\u2028", "</style>"]


def nan_after_targets(scores: torch.Tensor, prompt_length: int, step_start: int = 0) -> torch.Tensor:
    """NaN at and after each row's target, as every method leaves them."""
    k, n = scores.shape
    rows = torch.arange(k).unsqueeze(1)
    cols = torch.arange(n).unsqueeze(0)
    return scores.masked_fill(cols >= prompt_length + step_start + rows, math.nan)


def provenance(**changes: object) -> Provenance:
    base = dict(
        model_name="tiny-test",
        method="saliency",
        attributed_fn="logprob",
        method_params={"abs": True},
        step_scores=["probability", "entropy"],
        versions={"genattrib": "0.1.0"},
        timings={"generate": 0.25, "attribute": 1.5},
        work={"rows": 7},
        seed=42,
    )
    base.update(changes)
    return Provenance(**base)  # type: ignore[arg-type]


def paris_sequence(signed: bool = False) -> SequenceAttribution:
    """ "The capital of France is" → " Paris." with scores whose top source is known per step."""
    tokens = ["The", " capital", " of", " France", " is", " Paris", ".", "\n"]
    p, n = 5, len(tokens)
    scores = torch.tensor(
        [
            [0.10, 0.30, 0.05, 0.90, 0.20, 0.00, 0.00, 0.00],  # " Paris"  ← " France"
            [0.05, 0.10, 0.02, 0.20, 0.15, 0.70, 0.00, 0.00],  # "."      ← " Paris"
            [0.40, 0.05, 0.01, 0.02, 0.03, 0.10, 0.25, 0.00],  # "\n"     ← "The"
        ]
    )
    if signed:
        scores = scores * torch.tensor([1, -1, 1, 1, -1, 1, -1, 1])
    return SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=nan_after_targets(scores, p),
        step_scores={"probability": torch.tensor([0.93, 0.61, 0.2]), "entropy": torch.tensor([0.4, 1.2, 2.5])},
        generated_text=" Paris.\n",
    )


def paris_output(signed: bool = False) -> FeatureAttributionOutput:
    return FeatureAttributionOutput([paris_sequence(signed)], provenance())


def hostile_output() -> FeatureAttributionOutput:
    """Prompt and generated tokens (and provenance) full of markup that must stay text."""
    tokens = ["Say", " ", XSS_SCRIPT, " and", " ", XSS_IMG, *XSS_MORE, " ok", XSS_SCRIPT, XSS_IMG]
    p, n = len(tokens) - 3, len(tokens)
    g = torch.Generator().manual_seed(0)
    scores = nan_after_targets(torch.rand(3, n, generator=g), p)
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=scores,
        step_scores={XSS_SCRIPT: torch.rand(3, generator=g)},
        generated_text=" ok" + XSS_SCRIPT + XSS_IMG,
        token_roles=["user"] * p + ["generated"] * 3,
    )
    prov = provenance(
        model_name=XSS_SCRIPT, method=XSS_IMG, method_params={"note": XSS_SCRIPT}, attributed_fn="logprob</script>"
    )
    return FeatureAttributionOutput([seq], prov)


# Payloads that would run a script from the data (each sets window.__xss or opens a dialog) or
# fetch something from the network (127.0.0.1:9, the discard port) if they became markup.
XSS_RUN = [
    "<svg onload=window.__xss=1>",
    "--><script>window.__xss=1</script>",
    '"onmouseover="window.__xss=1',
    "'-window.__xss=1-'",
    "`${window.__xss=1}`",
    '<iframe src="javascript:parent.__xss=1"></iframe>',
    "javascript:window.__xss=1",
]
XSS_FETCH = [
    '<img src="http://127.0.0.1:9/img.png">',
    '<script src="http://127.0.0.1:9/x.js"></script>',
    '<link rel="stylesheet" href="http://127.0.0.1:9/x.css">',
    "</style><style>body{background:url(http://127.0.0.1:9/bg.png)}</style>",
    "url(http://127.0.0.1:9/u.png)",
    '<meta http-equiv="refresh" content="0;url=http://127.0.0.1:9/">',
]
HOSTILE = [XSS_SCRIPT, XSS_IMG, *XSS_MORE, *XSS_RUN, *XSS_FETCH]


def hostile_everywhere_output() -> FeatureAttributionOutput:
    """Every payload of :data:`HOSTILE` in every field a page shows: prompt and generated tokens,
    generated text, chat roles, step-score names and every provenance field (method parameters'
    keys and values, generation config, versions, devices, timings, work, aggregations ...)."""
    tokens = [f" {h}" for h in HOSTILE]
    p = len(tokens)
    tokens += [XSS_SCRIPT, f" {XSS_RUN[0]}", f" {XSS_FETCH[0]}", "."]
    n = len(tokens)
    g = torch.Generator().manual_seed(1)
    scores = nan_after_targets(torch.randn(n - p, n, generator=g), p)
    roles = [XSS_IMG if i % 2 else XSS_RUN[3] for i in range(p)] + ["generated"] * (n - p)
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=scores,
        step_scores={h: torch.rand(n - p, generator=g) for h in (XSS_RUN[1], XSS_FETCH[0], "probability")},
        generated_text="".join(tokens[p:]),
        token_roles=roles,
        held_fixed=torch.tensor([i % 7 == 0 for i in range(n)]),
    )
    hostile = dict(zip(HOSTILE, reversed(HOSTILE)))
    prov = provenance(
        model_name=XSS_FETCH[0],
        model_revision=XSS_RUN[1],
        model_class=XSS_SCRIPT,
        dtype=XSS_IMG,
        devices=XSS_FETCH[:2],
        device_map=hostile,
        method=XSS_RUN[0],
        method_params=hostile,
        attributed_fn=XSS_RUN[4],
        attributed_fn_args=hostile,
        step_scores=[XSS_RUN[1], XSS_FETCH[0]],
        step_score_rules=hostile,
        generation_config=hostile,
        versions=hostile,
        timings={h: 1.5 for h in HOSTILE},
        work={h: 3 for h in HOSTILE},
        aggregations=HOSTILE[:4],
        created_at=XSS_FETCH[3],
    )
    return FeatureAttributionOutput([seq], prov)


def chat_output(sink: float = 16.2, **changes: object) -> FeatureAttributionOutput:
    """A chat whose first marker (a special token) scores ``sink`` for every step, far above the
    user's top word " France" (0.58), as an attention sink does; "assistant" (template) 0.9."""
    tokens = ["<|im_start|>", "user", "\n", "Capital", " of", " France", "?", "<|im_end|>", "\n"]
    tokens += ["<|im_start|>", "assistant", "\n", " Paris", ".", " It", " is", " big", "."]
    roles = ["template"] * 3 + ["user"] * 4 + ["template"] * 5 + ["generated"] * 6
    p, n = 12, len(tokens)
    g = torch.Generator().manual_seed(0)
    scores = 0.1 * torch.rand(n - p, n, generator=g)
    scores[:, 0], scores[:, 10], scores[:, 5] = sink, 0.9, 0.58
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=p,
        scores=nan_after_targets(scores, p),
        held_fixed=torch.tensor([t.startswith("<|") for t in tokens]),
        token_roles=roles,
        generated_text=" Paris. It is big.",
    )
    return FeatureAttributionOutput([seq], provenance(method="attention", **changes))


def long_output(steps: int = 2000, prompt_length: int = 20, seed: int = 0) -> FeatureAttributionOutput:
    """A synthetic ``steps``-step generation: recency-weighted signed scores plus Gaussian noise
    (random mantissas everywhere, close to the worst case for the page's size)."""
    g = torch.Generator().manual_seed(seed)
    n = prompt_length + steps
    words = ["the", " model", " wrote", " a", " long", " answer", ",", " and", " then", " more", ".", "\n"]
    tokens = [words[i % len(words)] for i in range(n)]
    distance = (prompt_length + torch.arange(steps).unsqueeze(1) - torch.arange(n).unsqueeze(0)).clamp(min=1)
    recency = 2.0 * torch.exp(-distance / 40.0) + 0.8 * (torch.arange(n) < prompt_length)
    scores = nan_after_targets(recency + 0.3 * torch.randn(steps, n, generator=g), prompt_length)
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=prompt_length,
        scores=scores,
        step_scores={"probability": torch.rand(steps, generator=g), "entropy": 3 * torch.rand(steps, generator=g)},
        generated_text="".join(tokens[prompt_length:]),
    )
    return FeatureAttributionOutput([seq], provenance(model_name="synthetic-2000"))


LONG_WORDS = [
    " the",
    " model",
    " wrote",
    " a",
    " long",
    " answer",
    " about",
    " rivers",
    " and",
    " cities",
    " with",
    " more",
]


def long_form_tokens(count: int, seed: int = 0) -> list[str]:
    """``count`` tokens of plain prose: sentences of 6-19 words ending in "." (one in nine in
    "?" or "!"), a paragraph break after every fifth sentence."""
    g = torch.Generator().manual_seed(seed)
    tokens: list[str] = []
    sentence = 0
    while len(tokens) < count:
        length = int(torch.randint(6, 20, (1,), generator=g))
        words = [LONG_WORDS[int(i)] for i in torch.randint(len(LONG_WORDS), (length,), generator=g)]
        words[0] = (
            " " + words[0].strip().capitalize() if tokens and tokens[-1] != "\n\n" else words[0].strip().capitalize()
        )
        tokens.extend(words)
        tokens.append("?" if sentence % 9 == 4 else "!" if sentence % 9 == 7 else ".")
        sentence += 1
        if sentence % 5 == 0:
            tokens.append("\n\n")
    return tokens[:count]


def long_form_output(
    steps: int = 8000, prompt_length: int = 40, unit_level: bool = False, seed: int = 0
) -> FeatureAttributionOutput:
    """A synthetic long generation of ``steps`` tokens after a ``prompt_length``-token prompt,
    scores with recency and a prompt bias plus noise (float32, built row chunk by row chunk).
    ``unit_level=True`` explains its generated sentences instead (``target_spans``)."""
    from genattrib.aggregation.boundaries import sentence_starts
    from genattrib.aggregation.merge import runs_from_starts

    g = torch.Generator().manual_seed(seed)
    tokens = long_form_tokens(prompt_length + steps, seed)
    if tokens[prompt_length - 1] != "\n\n":
        tokens[prompt_length - 1] = "."  # the prompt ends a sentence
    n = len(tokens)
    bare = SequenceAttribution(torch.arange(n), tokens, prompt_length, torch.zeros(0, n))
    spans = None
    if unit_level:
        spans = [(a, b) for a, b in runs_from_starts(sentence_starts(bare), n) if a >= prompt_length]
    starts = [a for a, _ in spans] if spans else list(range(prompt_length, n))
    scores = torch.empty(len(starts), n)
    cols = torch.arange(n)
    for r0 in range(0, len(starts), 512):
        first = torch.tensor(starts[r0 : r0 + 512]).unsqueeze(1)
        distance = (first - cols).clamp(min=1).float()
        chunk = 2.0 * torch.exp(-distance / 40.0) + 0.8 * (cols < prompt_length)
        chunk = chunk + 0.3 * torch.randn(chunk.shape, generator=g)
        scores[r0 : r0 + 512] = chunk.masked_fill(cols >= first, math.nan)
    rows = len(starts)
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=prompt_length,
        scores=scores,
        step_scores={"probability": torch.rand(rows, generator=g)},
        generated_text="".join(tokens[prompt_length:]),
        target_spans=spans,
    )
    prov = provenance(model_name=f"synthetic-{steps}", explain="sentences" if unit_level else "tokens")
    return FeatureAttributionOutput([seq], prov)
