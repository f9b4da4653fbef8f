"""Aggregation (genattrib.aggregation): reducers, normalisation, words/spans/sentences/lines/roles,
contrast pairs and pipelines. Properties with hypothesis on hand-built results, then real ones."""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerance import OPS, assert_close_to_scale, assert_identical

from genattrib import (
    FeatureAttributionOutput,
    InvalidArgumentError,
    Provenance,
    SequenceAttribution,
)
from genattrib.aggregation import (
    STEP_SCORE_RULES,
    Lines,
    Normalize,
    Pair,
    Roles,
    Sentences,
    Spans,
    Words,
    aggregate,
)
from genattrib.aggregation.boundaries import continues_word, word_starts
from genattrib.errors import UnknownNameError

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PIECES = [
    "The",
    " cap",
    "ital",
    " of",
    " Fr",
    "ance",
    " is",
    " Par",
    "is",
    ".",
    "!",
    "?",
    " ",
    "\n",
    "\n\n",
    " It",
    "188",
    "0s",
    "_x",
    "é",
    "日本",
    "語",
    "",
    "'s",
    "\t",
    ". ",
    "a",
    "1",
    "<|im_end|>",
    "[b]x[/b]",
]
TOKEN = st.one_of(st.sampled_from(PIECES), st.text(max_size=4))
VALUE = st.integers(-50, 50).map(float)  # integers: sums are exact in float32, in any order
ROLES = ["system", "user", "template"]


# --------------------------------------------------------------------------------------------
# hand-built results
# --------------------------------------------------------------------------------------------
def nan_after(values: torch.Tensor, first_target: int) -> torch.Tensor:
    k, n = values.shape[:2]
    mask = torch.arange(n).unsqueeze(0) >= first_target + torch.arange(k).unsqueeze(1)
    while mask.ndim < values.ndim:
        mask = mask.unsqueeze(-1)
    return values.masked_fill(mask, math.nan)


@st.composite
def sequence_specs(draw, min_steps: int = 0, roles: bool | None = None) -> dict:
    p, g = draw(st.integers(1, 8)), draw(st.integers(min_steps, 8))
    n = p + g
    start = draw(st.integers(0, g - min_steps))
    k = draw(st.integers(min_steps, g - start))
    cells = st.lists(VALUE, min_size=k * n, max_size=k * n)
    scores = nan_after(torch.tensor(draw(cells)).reshape(k, n), p + start)
    granular = None
    if draw(st.booleans()):
        h = draw(st.integers(1, 3))
        values = draw(st.lists(VALUE, min_size=k * n * h, max_size=k * n * h))
        granular = nan_after(torch.tensor(values).reshape(k, n, h), p + start)
    names = draw(st.lists(st.sampled_from(["probability", "logprob", "entropy", "rank", "custom"]), unique=True))
    step_scores = {
        name: torch.tensor(draw(st.lists(st.floats(0.125, 1.0, width=32), min_size=k, max_size=k))) for name in names
    }
    with_roles = draw(st.booleans()) if roles is None else roles
    return dict(
        input_ids=torch.arange(n),  # id == position: a merged group keeps the id of its first token
        tokens=draw(st.lists(TOKEN, min_size=n, max_size=n)),
        prompt_length=p,
        scores=scores,
        step_scores=step_scores,
        granular_scores=granular,
        step_start=start,
        held_fixed=torch.tensor(draw(st.lists(st.sampled_from([False, False, False, True]), min_size=n, max_size=n))),
        token_roles=[draw(st.sampled_from(ROLES)) for _ in range(p)] + ["generated"] * g if with_roles else None,
        generated_text="generated",
    )


@st.composite
def output_specs(draw, min_steps: int = 0, roles: bool | None = None) -> list[dict]:
    return draw(st.lists(sequence_specs(min_steps, roles), min_size=1, max_size=2))


def build(specs: list[dict]) -> FeatureAttributionOutput:
    seqs = [SequenceAttribution(**copy.deepcopy(spec)) for spec in specs]
    return FeatureAttributionOutput(
        seqs, Provenance(model_name="tiny", method="input_x_gradient", attributed_fn="logprob")
    )


def make(
    tokens: list[str], prompt_length: int, *, special: set[int] = frozenset(), seed: int = 0, **kwargs
) -> FeatureAttributionOutput:
    n = len(tokens)
    k = n - prompt_length
    g = torch.Generator().manual_seed(seed)
    scores = nan_after(torch.randint(-9, 10, (k, n), generator=g).float(), prompt_length)
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=tokens,
        prompt_length=prompt_length,
        scores=scores,
        held_fixed=torch.tensor([i in special for i in range(n)]),
        generated_text="".join(tokens[prompt_length:]),
        step_scores={
            "probability": torch.full((k,), 0.5),
            "logprob": torch.full((k,), -1.0),
            "rank": torch.arange(k).float(),
        },
        **kwargs,
    )
    return FeatureAttributionOutput([seq], Provenance(method="input_x_gradient"))


def runs_of(after: SequenceAttribution, n: int) -> list[tuple[int, int]]:
    starts = [int(i) for i in after.input_ids]
    return list(zip(starts, [*starts[1:], n]))


def same_sequences(a: FeatureAttributionOutput, b: FeatureAttributionOutput) -> bool:
    return len(a) == len(b) and all(x.equals(y) for x, y in zip(a.sequences, b.sequences))


# --------------------------------------------------------------------------------------------
# invariants every merging aggregator keeps
# --------------------------------------------------------------------------------------------
def check_merge(before: SequenceAttribution, after: SequenceAttribution, exact: bool = True) -> None:
    """Text, boundary, NaN invariant, and (for sum) the totals of every merged block (exact for
    integer-valued scores, up to rounding for real ones)."""

    def same(x: torch.Tensor, block: torch.Tensor) -> bool:
        """A merged cell against its block's sum: exact for integers; else summed in another order,
        so it rounds at the scale of the block's |terms| (which may cancel)."""
        if exact:
            return bool(x == block.sum())
        assert_close_to_scale(x, block.sum(), floor=OPS, scale=float(block.abs().sum()) or None, what="block sum")
        return True

    n = len(before.tokens)
    runs = runs_of(after, n)
    assert after.text == before.text and ["".join(before.tokens[a:b]) for a, b in runs] == after.tokens
    assert "".join(after.prompt_tokens) == "".join(before.prompt_tokens)  # never crosses the boundary
    first, first_new = before.prompt_length + before.step_start, after.prompt_length + after.step_start
    structural = nan_after(torch.zeros(after.scores.shape), first_new).isnan()
    assert torch.equal(after.scores.isnan(), structural)
    for r in range(after.num_steps):
        a, b = runs[first_new + r]
        rows = range(max(a, first) - first, min(b, first + before.num_steps) - first)
        assert len(rows) > 0
        for h, (c, d) in enumerate(runs[: first_new + r]):
            assert same(after.scores[r, h], before.scores[rows.start : rows.stop, c:d])
        assert same(after.scores[r].nansum(), before.scores[rows.start : rows.stop, :a])
        if "probability" in before.step_scores:
            expected = before.step_scores["probability"][rows.start : rows.stop].prod()
            assert_close_to_scale(after.step_scores["probability"][r], expected, floor=OPS, what="product")
    if after.granular_scores is not None:
        assert torch.equal(after.granular_scores.isnan().all(-1), structural)
    assert before.token_roles is None or len(after.token_roles) == len(after.tokens)
    assert after.held_fixed.tolist() == [bool(before.held_fixed[a:b].all()) for a, b in runs]


@SETTINGS
@given(output_specs())
def test_words_keep_totals_text_boundary_and_nan_invariant(specs):
    out = build(specs)
    words = out.aggregate("words")
    for before, after in zip(out.sequences, words.sequences):
        check_merge(before, after)
        for a, b in runs_of(after, len(before.tokens)):  # inside a word: continuing, non-special tokens
            assert all(continues_word(before.tokens[k - 1], before.tokens[k]) for k in range(a + 1, b))
            assert not before.held_fixed[a:b].any() or b - a == 1


@SETTINGS
@given(output_specs(), st.sampled_from(["sum", "mean", "max", "absmax"]))
def test_words_is_idempotent_and_round_trips(specs, how):
    once = build(specs).aggregate(Words(how=how))
    assert same_sequences(once.aggregate(Words(how=how)), once)
    for suffix in (".json", ".safetensors"):
        with tempfile.TemporaryDirectory() as folder:
            loaded = FeatureAttributionOutput.load(once.save(Path(folder) / f"w{suffix}"))
        assert loaded.equals(once) and loaded.provenance.aggregations == [once.provenance.aggregations[0]]
        assert same_sequences(loaded.aggregate(Words(how=how)), once)


@SETTINGS
@given(output_specs(), st.sampled_from(["sum", "mean", "max", "absmax"]))
def test_single_token_words_are_unchanged(specs, how):
    out = build(specs)
    words = out.aggregate(Words(how=how))
    for before, after in zip(out.sequences, words.sequences):
        runs = runs_of(after, len(before.tokens))
        first, first_new = before.prompt_length + before.step_start, after.prompt_length + after.step_start
        for r in range(after.num_steps):
            a, b = runs[first_new + r]
            if b - a == 1:
                for h, (c, d) in enumerate(runs):
                    if d - c == 1:
                        assert after.scores[r, h].isnan() == before.scores[a - first, c].isnan()
                        assert after.scores[r, h].isnan() or after.scores[r, h] == before.scores[a - first, c]
    spaced = make([" w0", " w1", ".", " w2", "!", " w3"], 3)
    assert same_sequences(spaced.aggregate("words"), spaced)


@SETTINGS
@given(output_specs(roles=True))
def test_sentences_spans_lines_roles_keep_totals(specs):
    out = build(specs)
    text = out.sequences[0].text
    steps = [
        Sentences(),
        Lines(),
        Lines(paragraphs=True),
        Roles(),
        Spans(pattern=r"\w+|\s+"),
        Spans([(0, len(text) // 2)] if len(text) > 1 else []),
    ]
    for step in steps:
        if isinstance(step, Spans) and step.spans is not None and len(out) > 1:
            continue  # character spans of sequence 0 need not fit sequence 1
        for before, after in zip(out.sequences, step(out).sequences):
            check_merge(before, after)


@SETTINGS
@given(output_specs(min_steps=1), st.sampled_from(["sum-to-1", "max-abs", "none"]))
def test_normalisation_per_step(specs, how):
    out = build(specs)
    norm = out.aggregate(Normalize(how))
    for before, after in zip(out.sequences, norm.sequences):
        assert torch.equal(before.scores.isnan(), after.scores.isnan())
        size = after.scores.abs()
        for r in range(after.num_steps):
            if before.scores[r].abs().nansum() == 0:
                assert torch.equal(after.scores[r].nan_to_num(), before.scores[r].nan_to_num())
            elif how == "sum-to-1":
                assert_close_to_scale(size[r].nansum(), 1.0, floor=OPS, what=f"row {r} sum")
            elif how == "max-abs":
                assert_close_to_scale(size[r].nan_to_num().max(), 1.0, floor=OPS, what=f"row {r} max")
        if how == "none":
            assert after.equals(before)
        if how != "none":
            total = size_before = before.scores.abs()
            total = size_before.nansum(1) if how == "sum-to-1" else size_before.nan_to_num().amax(1)
            factor = torch.where(total > 0, 1 / total.clamp(min=1e-30), torch.ones_like(total)).unsqueeze(1)
            assert_close_to_scale(after.scores, before.scores * factor, floor=OPS, rows=True)
            if after.granular_scores is not None:  # scaled by the same factor, so reducers commute
                expected = before.granular_scores * factor.unsqueeze(-1)
                assert_close_to_scale(after.granular_scores, expected, floor=OPS, rows=True, what="granular")


@SETTINGS
@given(output_specs())
def test_aggregation_never_mutates_its_input_and_pipelines_compose(specs):
    out = build(specs)
    kept = copy.deepcopy(out)
    steps = ["words", "sentences", Lines(), Normalize("max-abs"), Spans(pattern=r"\s")]
    if all(s.granular_scores is not None for s in out.sequences):
        steps.insert(0, "l2")
    if all(s.token_roles is not None for s in out.sequences):
        steps.append("roles")
    piped = out.aggregate(*steps)
    assert out.equals(kept) and out.provenance == kept.provenance
    stepwise = out
    for step in steps:
        stepwise = aggregate(stepwise, step)
    assert piped.equals(stepwise) and len(piped.provenance.aggregations) == len(steps)
    assert out.aggregate(steps).equals(piped)  # a list works too
    diff = out - out
    assert out.equals(kept)
    for seq, d in zip(out.sequences, diff.sequences):
        assert torch.equal(d.scores.isnan(), seq.scores.isnan()) and (d.scores.nan_to_num() == 0).all()
    assert out.aggregate("pair", out).equals(diff) and Pair(out)(out).equals(diff)


# --------------------------------------------------------------------------------------------
# examples
# --------------------------------------------------------------------------------------------
def test_words_on_subwords_numbers_punctuation_and_specials():
    tokens = ["<bos>", "The", " cap", "ital", " of", " Fr", "ance", " is", " Par", "is", ".", " 188", "0s", "<eos>"]
    out = make(tokens, 8, special={0, 13})
    seq = out.aggregate("words").sequences[0]
    assert seq.tokens == ["<bos>", "The", " capital", " of", " France", " is", " Paris", ".", " 1880s", "<eos>"]
    assert (seq.prompt_length, seq.step_start, seq.num_steps) == (6, 0, 4)
    assert seq.held_fixed.tolist() == [True] + [False] * 8 + [True]
    assert seq.input_ids.tolist() == [0, 1, 2, 4, 5, 7, 8, 10, 11, 13]  # first token id of each word
    assert seq.step_scores["probability"].tolist() == [0.25, 0.5, 0.25, 0.5]  # product
    assert seq.step_scores["logprob"].tolist() == [-2.0, -1.0, -2.0, -1.0]  # sum
    assert seq.step_scores["rank"].tolist() == [1.0, 2.0, 4.0, 5.0]  # max
    assert STEP_SCORE_RULES["entropy"] == "sum"
    assert word_starts(out.sequences[0]) == [0, 1, 2, 4, 5, 7, 8, 10, 11, 13]


def test_words_never_merge_across_the_prompt_boundary():
    out = make(["The", " Par", "is", "ian"], 2)
    seq = out.aggregate("words").sequences[0]
    assert seq.tokens == ["The", " Par", "isian"] and seq.prompt_length == 2


def test_rows_and_step_rules_options():
    out = make(["A", " Par", "is", "ian"], 1)
    mean = out.aggregate(Words(how="sum", target_how="mean", step_rules={"probability": "mean"})).sequences[0]
    base = out.sequences[0].scores
    assert_close_to_scale(mean.scores[0, 0], base[:, 0].mean(), floor=OPS, what="mean over rows")
    assert mean.step_scores["probability"].tolist() == [0.5]
    with pytest.raises(UnknownNameError, match="target_how"):
        Words(target_how="median")
    with pytest.raises(UnknownNameError, match="product"):
        Words(step_rules={"probability": "geomean"})


def test_sentences_lines_and_spans_examples():
    tokens = ["Hi", " there", ".", " How", " are", " you", "?\n\n", "Fine", ".", " Thanks", "!"]
    out = make(tokens, 7)
    assert out.aggregate("sentences").sequences[0].tokens == ["Hi there.", " How are you?\n\n", "Fine.", " Thanks!"]
    assert out.aggregate("lines").sequences[0].tokens == ["Hi there. How are you?\n\n", "Fine. Thanks!"]
    spans = out.aggregate("spans", spans=[(0, 8), (10, 16)]).sequences[0].tokens
    assert spans == ["Hi there", ".", " How are", " you", "?\n\n", "Fine", ".", " Thanks", "!"]
    assert out.aggregate(Spans(pattern=r"Fine\. Thanks")).sequences[0].tokens[-2:] == ["Fine. Thanks", "!"]
    per_sequence = Spans([[(0, 8)]])(out)
    assert per_sequence.sequences[0].tokens[0] == "Hi there"


def test_roles_merge_chat_blocks():
    tokens = ["<s>", "user", "\n", "Hi", " you", "</s>", "<s>", "Hello", "!"]
    roles = ["template", "template", "template", "user", "user", "template", "template", "generated", "generated"]
    seq = make(tokens, 7, special={0, 5, 6}, token_roles=roles).aggregate("roles").sequences[0]
    assert seq.tokens == ["<s>user\n", "Hi you", "</s><s>", "Hello!"]
    assert seq.token_roles == ["template", "user", "template", "generated"]
    assert seq.held_fixed.tolist() == [False, False, True, False]


def test_reducers_recompute_scores_from_granular():
    out = make(["a", " b", "c"], 1)
    seq = out.sequences[0]
    granular = nan_after(torch.randn(2, 3, 4), 1)
    with_granular = FeatureAttributionOutput(
        [SequenceAttribution(**{**seq.__dict__, "granular_scores": granular})], out.provenance
    )
    for how, expected in [
        ("sum", granular.sum(-1)),
        ("l2", granular.norm(dim=-1)),
        ("mean", granular.mean(-1)),
        ("max", granular.amax(-1)),
    ]:
        assert_close_to_scale(with_granular.aggregate(how).sequences[0].scores, expected, floor=OPS, what=how)
    with pytest.raises(InvalidArgumentError, match="keep_granular=True") as err:
        out.aggregate("l2")
    assert err.value.argument == "l2"
    words = with_granular.aggregate("words", "sum").sequences[0]
    other_order = with_granular.aggregate("sum", "words").sequences[0].scores
    assert_close_to_scale(words.scores, other_order, floor=OPS, what="words then sum vs sum then words")


def test_errors_name_the_precondition():
    out = make(["a", " b", " c"], 1)
    with pytest.raises(UnknownNameError, match="words") as err:
        out.aggregate("wrods")
    assert "sentences" in err.value.valid
    with pytest.raises(InvalidArgumentError, match="token_roles is None") as err:
        out.aggregate("roles")
    assert err.value.argument == "roles"
    with pytest.raises(InvalidArgumentError, match="ambiguous"):
        out.aggregate("words", "sentences", how="mean")
    with pytest.raises(InvalidArgumentError, match="no named step"):
        out.aggregate("words", paragraphs=True)
    with pytest.raises(InvalidArgumentError, match="overlap"):
        out.aggregate(Spans([(0, 2), (1, 3)]))
    with pytest.raises(InvalidArgumentError, match="outside the text"):
        out.aggregate(Spans([(0, 99)]))
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        Spans()
    with pytest.raises(InvalidArgumentError, match="valid regex"):
        Spans(pattern="(")
    with pytest.raises(InvalidArgumentError, match="one list per sequence"):
        out.aggregate(Spans([[(0, 1)], [(0, 1)]]))
    with pytest.raises(InvalidArgumentError, match="needs the result"):
        out.aggregate("pair")
    with pytest.raises(InvalidArgumentError, match="no aggregation steps"):
        out.aggregate()
    with pytest.raises(UnknownNameError, match="sum-to-1"):
        Normalize("sum_to_1")
    assert out.aggregate("normalize", how="max-abs").equals(out.aggregate(Normalize("max-abs")))


def test_contrast_checks_compatibility():
    a = make(["a", " b", " c"], 1, seed=0)
    b = make(["a", " b", " c"], 1, seed=1)
    diff = (a - b).sequences[0]
    assert_identical(diff.scores, a.sequences[0].scores - b.sequences[0].scores)  # the same subtraction
    assert (a - b).provenance.aggregations[0].startswith("pair(")
    with pytest.raises(InvalidArgumentError, match="3 and 4 tokens"):
        a - make(["a", " b", " c", " d"], 1)
    with pytest.raises(InvalidArgumentError, match=r"differ at position 2 \(' c' vs ' x'\)"):
        a - make(["a", " b", " x"], 1)
    with pytest.raises(InvalidArgumentError, match="prompts have"):
        a - make(["a", " b", " c"], 2)
    with pytest.raises(InvalidArgumentError, match="2 sequences"):
        a - FeatureAttributionOutput(a.sequences * 2, a.provenance)
    with pytest.raises(InvalidArgumentError, match="aggregated differently"):
        a.aggregate("sentences") - b.aggregate("words")
    other = make(["a", " b", " c"], 1, seed=1)
    other.sequences[0].step_scores["probability"] = torch.tensor([0.9, 0.8])
    assert torch.equal((a - other).sequences[0].step_scores["b:probability"], torch.tensor([0.9, 0.8]))


# --------------------------------------------------------------------------------------------
# real attributions
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["input_x_gradient", "saliency"])
def test_real_attribution_words_and_reducers(tiny_llama, method):
    out = tiny_llama.attribute(
        "The capitalisation of Frenchmen is",
        target=" Parisians explained: Romeward.",
        method=method,
        keep_granular=True,
        step_scores=["probability", "logprob"],
    )
    default = "l2" if method == "saliency" else "sum"
    reduced = out.aggregate(default).sequences[0].scores  # the hidden size reduced here vs in the engine
    assert_close_to_scale(reduced, out.sequences[0].scores, floor=OPS, what=f"{default} of granular scores")
    kept = copy.deepcopy(out)
    words = out.aggregate("words")
    assert out.equals(kept)
    before, after = out.sequences[0], words.sequences[0]
    assert len(after.tokens) < len(before.tokens) and after.text == before.text
    if method == "input_x_gradient":
        by_position = replace(before, input_ids=torch.arange(len(before.tokens)))  # so runs_of can read the groups
        check_merge(by_position, Words().apply(by_position, 0), exact=False)
        for r in range(after.num_steps):
            assert torch.isfinite(after.scores[r, : after.prompt_length + r]).all()
        total = torch.tensor([before.scores[j, : before.prompt_length].sum() for j in range(before.num_steps)]).sum()
        terms = float(before.scores.nan_to_num().abs().sum())  # summed in another order: rounds at Σ|terms|
        assert_close_to_scale(after.scores[:, : after.prompt_length].sum(), total, floor=OPS, scale=terms)
    logprobs = before.step_scores["logprob"]
    scale = float(logprobs.abs().sum())
    assert_close_to_scale(after.step_scores["logprob"].sum(), logprobs.sum(), floor=OPS, scale=scale, what="logprob")
    assert same_sequences(words.aggregate("words"), words)
    assert (out - out).sequences[0].scores.nan_to_num().abs().max() == 0


@pytest.mark.default_model
def test_default_model_words_and_roles(default_model):
    out = default_model.attribute(
        "Tell me about the 1880s in Paris.", target=" The 1880s in SmolLM land.", method="attention"
    )
    seq = out.aggregate("words").sequences[0]
    assert " 1880s" not in seq.tokens and "1880s" in seq.tokens and " SmolLM" in seq.tokens
    chat = default_model.attribute(
        [{"role": "user", "content": "Hi there! What is up?"}], target="Hello!", method="attention"
    )
    blocks = chat.aggregate("roles").sequences[0]
    assert blocks.token_roles == ["template", "user", "template", "generated"]
    assert blocks.tokens[1] == "Hi there! What is up?" and blocks.tokens[-1] == "Hello!"
    assert torch.equal(blocks.scores.isnan(), nan_after(torch.zeros(1, 4), 3).isnan())
