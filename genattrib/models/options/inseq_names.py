"""Inseq's argument names for ``attribute()``, accepted with a :class:`FutureWarning` that names
genattrib's (docs/migrating-from-inseq.md has the whole table).

Inseq's decoder-only ``generated_texts=`` and ``contrast_targets=`` hold the prompt *and* the
continuation; they are split here at the prompt (or, for a contrast, at the continuation).

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     inseq = {"input_texts": "Hi", "generated_texts": "Hi there", "generation_args": {"max_new_tokens": 4}}
    ...     inputs, continuation, kwargs = translate_inseq_arguments(None, None, inseq)
    >>> inputs, continuation, kwargs
    ('Hi', ' there', {'max_new_tokens': 4})
    >>> sorted(str(w.message).split(":")[0] for w in caught)[0]
    'attribute(generated_texts=...) is the name Inseq uses'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from genattrib.errors import InvalidArgumentError

#: Inseq's names without an effect here, and why.
IGNORED = {
    "output_step_attributions": "every step's scores are always in the result (out.sequences[i].scores[step])",
    "pretty_progress": "show_progress= draws the one progress bar",
    "include_eos_baseline": "special tokens are held fixed unless attribute_special_tokens=True",
    "attribute_target": "a decoder-only model is always attributed to the whole prefix, prompt and generated tokens "
    "(on an encoder-decoder model it is attribute_prefix=)",
    "device": "the model computes where it was loaded (load_model(device_map=...))",
    "override_default_attribution": "method= always selects the method of the call",
}


def _warn(name: str, ours: str) -> None:
    warnings.warn(FutureWarning(f"attribute({name}=...) is the name Inseq uses: genattrib's is {ours}"), stacklevel=4)


def _split(full: Any, prompt: Any, name: str) -> Any:
    """The continuation of Inseq's prompt+continuation text ``full`` (one or one per prompt)."""
    if isinstance(full, (list, tuple)) and isinstance(prompt, (list, tuple)) and len(full) == len(prompt):
        return [_split(f, p, name) for f, p in zip(full, prompt)]
    if isinstance(full, str) and isinstance(prompt, str):
        if not full.startswith(prompt):
            raise InvalidArgumentError(
                name, "Inseq's decoder-only texts start with the prompt, and this one does not",
                "pass genattrib's continuation= (the text after the prompt) instead",
            )  # fmt: skip
        return full[len(prompt) :]
    return full


def translate_inseq_arguments(
    inputs: Any, continuation: Any, kwargs: Mapping[str, Any], encoder_decoder: bool = False
) -> tuple[Any, Any, dict[str, Any]]:
    """(inputs, continuation, the other keywords) with Inseq's names turned into genattrib's.
    On an encoder-decoder model Inseq's ``attribute_target=`` is genattrib's ``attribute_prefix=``."""
    rest = dict(kwargs)
    if encoder_decoder and "attribute_target" in rest:
        _warn("attribute_target", "attribute_prefix= (the target prefix of an encoder-decoder model)")
        rest["attribute_prefix"] = rest.pop("attribute_target")
    if "input_texts" in rest:
        if inputs is not None:
            raise InvalidArgumentError("input_texts", "given with inputs=", "pass the prompts once, as inputs=")
        _warn("input_texts", "inputs= (the first argument)")
        inputs = rest.pop("input_texts")
    if "generated_texts" in rest:
        if continuation is not None:
            raise InvalidArgumentError("generated_texts", "given with continuation=", "pass it once, as continuation=")
        _warn("generated_texts", "continuation= (the text after the prompt)")
        generated = rest.pop("generated_texts")  # encoder-decoder: the target alone; decoder-only: prompt + it
        continuation = generated if encoder_decoder else _split(generated, inputs, "generated_texts")
    if "generation_args" in rest:
        _warn("generation_args", "generation settings as keywords (attribute(..., max_new_tokens=16))")
        generation = rest.pop("generation_args") or {}
        clash = sorted(set(generation) & set(rest))
        if clash:
            raise InvalidArgumentError("generation_args", f"{clash[0]!r} is also given as a keyword", "pass it once")
        rest.update(generation)
    if "contrast_targets" in rest:
        if "contrast_continuation" in rest or "contrast_prompt" in rest:
            raise InvalidArgumentError(
                "contrast_targets", "given with contrast_prompt=/contrast_continuation=", "pass genattrib's names only"
            )
        _warn("contrast_targets", "contrast_prompt= and contrast_continuation= (the prompt and continuation apart)")
        full = rest.pop("contrast_targets")
        if encoder_decoder:  # Inseq's contrast target of an encoder-decoder model is a target text alone
            rest["contrast_continuation"] = full
        elif isinstance(full, str) and isinstance(continuation, str) and full.endswith(continuation):
            rest["contrast_prompt"] = full[: len(full) - len(continuation)]  # another prompt, the same continuation
        else:
            rest["contrast_continuation"] = _split(full, inputs, "contrast_targets")
    if "contrast_sources" in rest:
        _warn("contrast_sources", "contrast_prompt=")
        rest["contrast_prompt"] = rest.pop("contrast_sources")
    if "contrast_targets_alignments" in rest:
        if "contrast_alignments" in rest:
            raise InvalidArgumentError("contrast_targets_alignments", "given with contrast_alignments=", "pass one")
        if isinstance(rest["contrast_targets_alignments"], str):  # "auto": Inseq's word aligner, a hub model
            raise InvalidArgumentError(
                "contrast_targets_alignments", f"{rest['contrast_targets_alignments']!r} needs Inseq's word aligner "
                "(a model from the hub), which genattrib does not load",
                "pass the (i, j) pairs as contrast_alignments=, or leave them out to align the steps from the end",
            )  # fmt: skip
        _warn("contrast_targets_alignments", "contrast_alignments= (the same (i, j) token index pairs)")
        rest["contrast_alignments"] = rest.pop("contrast_targets_alignments")
    for name, reason in IGNORED.items():
        if name in rest:
            value = rest.pop(name)
            warnings.warn(
                FutureWarning(f"attribute({name}={value!r}) is Inseq's and has no effect in genattrib: {reason}"),
                stacklevel=3,
            )
    return inputs, continuation, rest
