"""Words that say what a view shows: which scores, on which colour scale, without which tokens.

:func:`score_caption` names the scores (a method that explains no function of the output, such
as ``attention``, is not said to attribute ``logprob``); :func:`scale_caption` says how the
colours are scaled (:data:`SCALES`); :func:`left_out` gives the positions that summaries,
top-k lists and colour scales leave out by default (special tokens and chat-template text).

Example:
    >>> score_caption(out.provenance)
    'saliency attributions of logprob'
    >>> scale_caption("step")
    "colour scale: each step's own largest |score|"
"""

from __future__ import annotations

from jaxtyping import Bool
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output.provenance import Provenance
from genattrib.output.sequence import SequenceAttribution

__all__ = [
    "ATTENTION_METHODS",
    "SCALES",
    "check_include_special",
    "check_scale",
    "explains_function",
    "left_out",
    "scale_caption",
    "score_caption",
    "special_caption",
]

# methods whose scores ignore the attributed function (read for files saved before attributed_fn_used)
ATTENTION_METHODS = ("attention", "rollout", "value_zeroing")
SCALES = ("step", "global")  # each row against its own largest |score|, or the whole sequence's


def check_scale(scale: str) -> str:
    """``scale`` if it is one of :data:`SCALES`, else a clear error."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise InvalidArgumentError(
            "scale",
            f"unknown colour scale {scale!r}",
            "use 'step' (each step against its own largest |score|) or 'global' (one scale per sequence)",
        )
    return scale


def check_include_special(value: bool) -> bool:
    """``include_special_tokens`` if it is True or False, else a clear error."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(
            "include_special_tokens",
            f"include_special_tokens={value!r} is not True or False",
            "pass include_special_tokens=True (rank special and template tokens) or False",
        )
    return value


def explains_function(prov: Provenance) -> bool:
    """Whether the scores explain ``prov.attributed_fn``: ``prov.attributed_fn_used`` as
    recorded (False for attention weights); in files saved before it was recorded, False for
    the methods that read attention weights (:data:`ATTENTION_METHODS`)."""
    if not prov.attributed_fn:
        return False
    if prov.attributed_fn_used is None:
        return prov.method not in ATTENTION_METHODS
    return bool(prov.attributed_fn_used)


def score_caption(prov: Provenance) -> str:
    """What the scores are: ``"<method> attributions of <function>"``, or for a method that
    explains no function (attention, rollout) ``"<method> scores (no attributed function)"``.

    Example:
        >>> score_caption(Provenance(method="attention", attributed_fn="logprob", attributed_fn_used=False))
        'attention scores (no attributed function)'
    """
    method = prov.method or "unknown method"
    if explains_function(prov):
        return f"{method} attributions of {prov.attributed_fn}"
    return f"{method} scores (no attributed function)"


def scale_caption(scale: str, rows: str = "step", *, one: bool = False) -> str:
    """How colours are scaled, for legends: ``scale`` is one of :data:`SCALES`; ``rows`` names a
    row (``"step"``, ``"unit"`` ...); ``one``: the view shows a single row.

    Example:
        >>> scale_caption("global")
        'colour scale: the largest |score| of the sequence'
        >>> scale_caption("step", one=True)
        "colour scale: this step's largest |score| (scale='global': the sequence's)"
    """
    if check_scale(scale) == "global":
        return "colour scale: the largest |score| of the sequence"
    if one:
        return f"colour scale: this {rows}'s largest |score| (scale='global': the sequence's)"
    return f"colour scale: each {rows}'s own largest |score|"


def special_caption(seq: SequenceAttribution, include_special_tokens: bool) -> str:
    """A note for legends when special or template tokens are left out ("" when none are).

    Example:
        >>> from genattrib.output import SequenceAttribution
        >>> chat_seq = SequenceAttribution(torch.arange(3), ["<|im_start|>", "user", "Hi"], 2, torch.zeros(1, 3),
        ...                                token_roles=["template", "template", "user"])
        >>> special_caption(chat_seq, include_special_tokens=False)
        'special and chat-template tokens left out of rankings and the scale'
        >>> special_caption(chat_seq, include_special_tokens=True)
        ''
    """
    if include_special_tokens or not bool(seq.structure_mask.any()):
        return ""
    return "special and chat-template tokens left out of rankings and the scale"


def left_out(seq: SequenceAttribution, include_special_tokens: bool) -> Bool[Tensor, " position"]:
    """Positions that rankings, summaries and colour scales leave out: ``seq.structure_mask``
    (special tokens and chat-template text), or none with ``include_special_tokens=True``.

    Example:
        >>> from genattrib.output import SequenceAttribution
        >>> chat_seq = SequenceAttribution(torch.arange(3), ["<|im_start|>", "user", "Hi"], 2, torch.zeros(1, 3),
        ...                                token_roles=["template", "template", "user"])
        >>> left_out(chat_seq, include_special_tokens=False).tolist()
        [True, True, False]
        >>> left_out(chat_seq, include_special_tokens=True).any().item()
        False
    """
    mask = seq.structure_mask
    return mask & False if include_special_tokens else mask
