"""Step scores declare how they merge: targets (``TargetFunction.merge``) and methods
(``MethodTraits.step_score_merge``) declare it, the result records it
(``provenance.step_score_rules``, saved and loaded), and aggregation uses it (user overrides
first, then the recorded rules, then the name-based fallback table for old files)."""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerance import OPS, assert_close_to_scale

import genattrib
from genattrib import FeatureAttributionOutput, InvalidArgumentError, Provenance, SequenceAttribution, UnknownNameError
from genattrib.aggregation import STEP_SCORE_RULES, Sentences, Words
from genattrib.aggregation.boundaries import word_starts
from genattrib.aggregation.merge import runs_from_starts
from genattrib.aggregation.segments import STEP_RULES
from genattrib.methods import METHODS
from genattrib.output import serialization
from genattrib.targets import BUILTIN_TARGETS, TargetFunction

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = [".json", ".safetensors"]
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
    " ",
    "\n",
    " It",
    "188",
    "0s",
    "'s",
    ". ",
]
VALUE = st.integers(-20, 20).map(float)  # integers: sums and means of a few are exact in float32
RULE = st.sampled_from(sorted(STEP_RULES))
PROMPT, TARGET = "The capital of France is", " Paris is the fox"

# one small setting per method, so that every registered method runs in a second or two
#: Step scores a method emits only with ``n_steps="auto"``.
ONLY_WITH_AUTO_STEPS = ("n_steps_used",)

FAST = {
    "integrated_gradients": {"n_steps": 2},
    "sequential_integrated_gradients": {"n_steps": 2},
    "discretized_integrated_gradients": {"n_anchors": 2, "cache_dir": False},
    "uniform_discretized_integrated_gradients": {"n_anchors": 2},
    "gradient_shap": {"n_samples": 2},
    "lime": {"n_samples": 16},
    "reagent": {"num_probes": 2, "max_steps": 3},
    "rpi": {"num_samples": 2, "n_steps": 2},
}


# --------------------------------------------------------------------------------------------
# hand-built results
# --------------------------------------------------------------------------------------------
@st.composite
def sequence_specs(draw) -> dict:
    p, g = draw(st.integers(1, 5)), draw(st.integers(1, 8))
    n = p + g
    start = draw(st.integers(0, g - 1))
    k = draw(st.integers(1, g - start))
    scores = torch.tensor(draw(st.lists(VALUE, min_size=k * n, max_size=k * n))).reshape(k, n)
    mask = torch.arange(n).unsqueeze(0) >= p + start + torch.arange(k).unsqueeze(1)
    values = st.lists(VALUE, min_size=k, max_size=k)
    return dict(
        input_ids=torch.arange(n),  # id == position: a merged group keeps the id of its first token
        tokens=draw(st.lists(st.sampled_from(PIECES), min_size=n, max_size=n)),
        prompt_length=p,
        scores=scores.masked_fill(mask, math.nan),
        step_start=start,
        step_scores={
            "fit": torch.tensor(draw(values)),
            "avg": torch.tensor(draw(values)),
            "total": torch.tensor(draw(values)),
        },
    )


def build(spec: dict, rules: dict[str, str] | None = None) -> FeatureAttributionOutput:
    return FeatureAttributionOutput(
        [SequenceAttribution(**copy.deepcopy(spec))], Provenance(method="lime", step_score_rules=rules or {})
    )


def rows_per_merged_row(before: SequenceAttribution, after: SequenceAttribution, starts: list[int]) -> list[list[int]]:
    """For each row of ``after``, the rows of ``before`` it merges (``starts``: where groups start)."""
    runs = runs_from_starts(starts, len(before.tokens))
    first = before.prompt_length + before.step_start
    explained = range(first, first + before.num_steps)
    return [[pos - first for pos in range(*runs[group]) if pos in explained] for group in after.target_positions]


def roundtrip(out: FeatureAttributionOutput, suffix: str) -> FeatureAttributionOutput:
    with tempfile.TemporaryDirectory() as folder:
        path = out.save(Path(folder) / f"result{suffix}")
        return FeatureAttributionOutput.load(path)


def as_old_file(out: FeatureAttributionOutput, path: Path) -> Path:
    """Save ``out`` as a file written before step-score rules were recorded (no such key)."""
    meta, tensors = serialization.read(out.save(path))
    del meta["provenance"]["step_score_rules"]
    return serialization.write(path, meta, tensors)


@SETTINGS
@given(spec=sequence_specs(), step=st.sampled_from([Words, Sentences]))
def test_recorded_rules_merge_each_score(spec, step):
    """``none`` keeps a one-token row's value and is NaN for a merged row; ``mean`` averages;
    a name without a recorded rule uses the fallback (``sum``)."""
    out = build(spec, {"fit": "none", "avg": "mean"})
    before, after = out.sequences[0], step()(out).sequences[0]
    groups = rows_per_merged_row(before, after, [int(i) for i in after.input_ids])
    assert sum(len(rows) for rows in groups) == before.num_steps
    for r, rows in enumerate(groups):
        fit = float(after.step_scores["fit"][r])
        assert fit == float(before.step_scores["fit"][rows[0]]) if len(rows) == 1 else math.isnan(fit)
        assert_close_to_scale(after.step_scores["avg"][r], before.step_scores["avg"][rows].mean(), floor=OPS)
        assert float(after.step_scores["total"][r]) == float(before.step_scores["total"][rows].sum())


@SETTINGS
@given(spec=sequence_specs(), rule=RULE)
def test_user_overrides_come_before_recorded_rules(spec, rule):
    out = build(spec, {"fit": "none", "avg": "none"})
    overridden = Words(step_rules={"fit": rule})(out).sequences[0]
    explicit = Words()(build(spec, {"fit": rule, "avg": "none"})).sequences[0]
    assert overridden.equals(explicit)


@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(spec=sequence_specs(), rules=st.dictionaries(st.sampled_from(["fit", "avg", "total", "absent"]), RULE))
def test_rules_survive_save_and_load(spec, rules, suffix):
    out = build(spec, rules)
    loaded = roundtrip(out, suffix)
    assert loaded.provenance.step_score_rules == rules and loaded.equals(out)
    assert Words()(loaded).equals(Words()(out))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_old_file_without_rules_aggregates_with_the_fallback_table(suffix, tmp_path):
    tokens = ["The", " Par", "is", " is", " Fr", "ance", "."]
    k = 6
    seq = SequenceAttribution(
        input_ids=torch.arange(7),
        tokens=tokens,
        prompt_length=1,
        scores=torch.zeros(k, 7),
        step_scores={
            "probability": torch.full((k,), 0.5),
            "rank": torch.arange(k).float(),
            "lime_score": torch.full((k,), 0.25),
        },
    )
    new = FeatureAttributionOutput(
        [seq], Provenance(method="lime", step_score_rules={"lime_score": "none", "probability": "product"})
    )
    old = FeatureAttributionOutput.load(as_old_file(new, tmp_path / f"old{suffix}"))
    assert old.provenance.step_score_rules == {}
    assert old.sequences[0].equals(seq)
    words = old.aggregate("words").sequences[0]
    assert words.tokens == ["The", " Paris", " is", " France", "."]
    assert STEP_SCORE_RULES["probability"] == "product" and "lime_score" not in STEP_SCORE_RULES
    assert words.step_scores["probability"].tolist() == [0.25, 0.5, 0.25, 0.5]  # fallback: product
    assert words.step_scores["rank"].tolist() == [1.0, 2.0, 4.0, 5.0]  # fallback: max
    assert words.step_scores["lime_score"].tolist() == [
        0.5,
        0.25,
        0.5,
        0.25,
    ]  # fallback: sum, as before rules were recorded
    recorded = new.aggregate("words").sequences[0].step_scores["lime_score"]
    assert recorded[[1, 3]].tolist() == [0.25, 0.25] and recorded[[0, 2]].isnan().all()


def test_merging_results_unites_rules_and_refuses_conflicts():
    spec = {"input_ids": torch.arange(3), "tokens": ["a", "b", "c"], "prompt_length": 1, "scores": torch.zeros(2, 3)}
    a = FeatureAttributionOutput(
        [SequenceAttribution(**spec)], Provenance(method="lime", step_score_rules={"x": "none"})
    )
    b = FeatureAttributionOutput(
        [SequenceAttribution(**spec)], Provenance(method="lime", step_score_rules={"y": "mean"})
    )
    assert FeatureAttributionOutput.merge([a, b]).provenance.step_score_rules == {"x": "none", "y": "mean"}
    c = FeatureAttributionOutput(
        [SequenceAttribution(**spec)], Provenance(method="lime", step_score_rules={"x": "sum"})
    )
    with pytest.raises(InvalidArgumentError, match="'x'"):
        FeatureAttributionOutput.merge([a, c])


def test_contrast_records_the_rule_of_the_other_results_scores():
    spec = {
        "input_ids": torch.arange(4),
        "tokens": ["A", " Par", "is", "!"],
        "prompt_length": 1,
        "scores": torch.zeros(3, 4),
    }
    a = FeatureAttributionOutput(
        [SequenceAttribution(**spec, step_scores={"fit": torch.ones(3)})],
        Provenance(method="lime", step_score_rules={"fit": "sum"}),
    )
    b = FeatureAttributionOutput(
        [SequenceAttribution(**spec, step_scores={"fit": torch.full((3,), 2.0)})],
        Provenance(method="lime", step_score_rules={"fit": "none"}),
    )
    diff = a - b
    assert diff.provenance.step_score_rules == {"fit": "sum", "b:fit": "none"}
    words = diff.aggregate("words").sequences[0]
    assert words.step_scores["fit"].tolist() == [2.0, 1.0]
    assert words.step_scores["b:fit"][0].isnan() and words.step_scores["b:fit"][1] == 2.0


def test_unknown_rules_are_refused():
    with pytest.raises(UnknownNameError, match="none") as info:
        TargetFunction("x", lambda ctx: ctx.logits[:, 0], merge="median")
    assert info.value.argument == "merge"
    spec = {"input_ids": torch.arange(3), "tokens": ["a", "b", "c"], "prompt_length": 1, "scores": torch.zeros(2, 3)}
    out = FeatureAttributionOutput(
        [SequenceAttribution(**spec, step_scores={"x": torch.ones(2)})], Provenance(step_score_rules={"x": "median"})
    )  # e.g. written by a later version
    with pytest.raises(UnknownNameError, match="'x'"):
        out.aggregate("words")


def test_builtin_targets_declare_what_the_fallback_table_says():
    for name, target in BUILTIN_TARGETS.items():
        assert target.merge == STEP_SCORE_RULES.get(name, "sum"), name


# --------------------------------------------------------------------------------------------
# real results
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", genattrib.list_methods())
def test_every_method_declares_the_step_scores_it_emits(tiny_llama, method):
    out = tiny_llama.attribute(
        PROMPT, target=TARGET, method=method, step_scores=["probability", "rank"], **FAST.get(method, {})
    )
    declared = dict(METHODS[method].traits.step_score_merge)
    only_when_auto = set(ONLY_WITH_AUTO_STEPS) & set(declared)
    emitted = set(out.sequences[0].step_scores) - {"probability", "rank"}
    assert emitted == set(declared) - only_when_auto, (
        f"{method} emits {sorted(emitted)} but declares {sorted(declared)}"
    )
    assert set(declared.values()) <= set(STEP_RULES)
    assert out.provenance.step_score_rules == {"probability": "product", "rank": "max", **declared}
    if only_when_auto:  # the rest are emitted with n_steps="auto"
        auto = tiny_llama.attribute(PROMPT, target=TARGET, method=method, n_steps="auto", max_steps=32)
        assert set(auto.sequences[0].step_scores) == set(declared), method


@pytest.fixture(scope="module")
def lime_output(tiny_llama):
    return tiny_llama.attribute(PROMPT, target=TARGET, method="lime", n_samples=16, step_scores=["probability"])


def test_lime_score_is_kept_for_one_token_words_and_nan_for_longer_ones(lime_output):
    seq = lime_output.sequences[0]
    assert lime_output.provenance.step_score_rules["lime_score"] == "none"
    words = lime_output.aggregate("words").sequences[0]
    groups = rows_per_merged_row(seq, words, word_starts(seq))
    assert {len(rows) > 1 for rows in groups} == {True, False}, "the target needs one- and several-token words"
    fit, probability = seq.step_scores["lime_score"], seq.step_scores["probability"]
    for r, rows in enumerate(groups):
        merged = words.step_scores["lime_score"][r]
        assert merged.isnan() if len(rows) > 1 else merged == fit[rows[0]]
        assert_close_to_scale(words.step_scores["probability"][r], probability[rows].prod(), floor=OPS)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_real_rules_survive_save_and_load(lime_output, suffix):
    loaded = roundtrip(lime_output, suffix)
    assert loaded.provenance.step_score_rules == {"probability": "product", "lime_score": "none"}
    assert loaded.aggregate("words").equals(lime_output.aggregate("words"))


def test_registered_target_with_mean_is_averaged(tiny_llama):
    model = genattrib.load_model((tiny_llama.model, tiny_llama.tokenizer))  # own registry: the fixture is shared
    model.register_target("top_logit", lambda ctx: ctx.logits.float().amax(-1), merge="mean")
    model.register_target("top_logit_sum", lambda ctx: ctx.logits.float().amax(-1))
    with pytest.raises(UnknownNameError) as info:
        model.register_target("bad", lambda ctx: ctx.logits[:, 0], merge="median")
    assert info.value.argument == "merge"
    out = model.attribute(PROMPT, target=TARGET, method="saliency", step_scores=["top_logit", "top_logit_sum"])
    assert out.provenance.step_score_rules == {"top_logit": "mean", "top_logit_sum": "sum"}
    seq = out.sequences[0]
    words = out.aggregate("words").sequences[0]
    groups = rows_per_merged_row(seq, words, word_starts(seq))
    assert any(len(rows) > 1 for rows in groups)
    values = seq.step_scores["top_logit"]
    for r, rows in enumerate(groups):
        scale = float(values[rows].abs().sum())  # summed in another order: rounds at Σ|terms|
        assert_close_to_scale(words.step_scores["top_logit"][r], values[rows].mean(), floor=OPS, scale=scale)
        assert_close_to_scale(words.step_scores["top_logit_sum"][r], values[rows].sum(), floor=OPS, scale=scale)
