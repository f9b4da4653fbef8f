"""A model whose next token depends only on known positions: every method finds them."""

from __future__ import annotations

import pytest

import genattrib

PROMPT = "The capital of France is Paris and"


# fewer integration steps than the defaults keep the test fast; DIG and UDIG run with defaults
# ReAGent: the planted top-1 needs exactly two positions, so probes keep 2 and test the top-1
# (with the defaults, keep 5 / top-3, probes stop before the weaker planted position separates)
PARAMS = {
    "integrated_gradients": {"n_steps": 16},
    "sequential_integrated_gradients": {"n_steps": 16},
    "reagent": {"keep_top_n": 2, "stop_top_k": 1},
    "rpi": {"num_samples": 6, "n_steps": 10},
}


@pytest.mark.parametrize("method", genattrib.list_methods())
def test_every_method_ranks_planted_positions_first(planted, method):
    model, positions = planted
    params = PARAMS.get(method, {})
    out = model.attribute(PROMPT, max_new_tokens=4, method=method, **params)
    seq = out.sequences[0]
    assert seq.num_steps == 4
    for row in seq.scores:
        top = row.abs().nan_to_num(-1.0).topk(len(positions)).indices
        assert sorted(top.tolist()) == sorted(positions), (method, row)


def test_attention_head_and_layer_selection(planted):
    model, positions = planted
    out = model.attribute(PROMPT, max_new_tokens=2, method="attention", layers=[0], heads=[0], head_reduction="max")
    row = out.sequences[0].scores[0]
    assert float(row[list(positions)].sum()) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(genattrib.InvalidArgumentError, match="layers"):
        model.attribute(PROMPT, max_new_tokens=2, method="attention", layers=[7])


def _with_token(model, text: str, position: int) -> str:
    """``text`` with the token at ``position`` replaced by another whole-word token, chosen so that
    the new text tokenizes back to the same tokens with only that one changed."""
    tok = model.tokenizer
    ids = tok(text, add_special_tokens=False).input_ids
    for token, token_id in sorted(tok.get_vocab().items()):
        if not token.startswith("Ġ") or len(token) < 3 or token_id == ids[position]:
            continue
        changed = [*ids[:position], token_id, *ids[position + 1 :]]
        candidate = tok.decode(changed)
        if tok(candidate, add_special_tokens=False).input_ids == changed:
            return candidate
    raise AssertionError(f"no other token fits at position {position} of {text!r}")


def test_planted_generation_copies_planted_tokens(planted):
    """Changing a non-planted token leaves the output unchanged; changing a planted one changes it."""
    model, positions = planted
    base = model.attribute(PROMPT, max_new_tokens=3, method="occlusion").sequences[0]
    same = model.attribute("The capital of Italy is Rome and", max_new_tokens=3, method="occlusion").sequences[0]
    assert base.generated_text == same.generated_text  # France/Paris are not planted positions
    for position in positions:
        changed = _with_token(model, PROMPT, position)
        other = model.attribute(changed, max_new_tokens=3, method="occlusion").sequences[0]
        assert other.tokens[: other.prompt_length] != base.tokens[: base.prompt_length]
        assert [t for i, t in enumerate(other.tokens[: other.prompt_length]) if i != position] == [
            t for i, t in enumerate(base.tokens[: base.prompt_length]) if i != position
        ]  # only the planted token differs
        assert other.generated_text != base.generated_text, (position, changed)
