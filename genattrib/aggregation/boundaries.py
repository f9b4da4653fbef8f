"""Where groups of tokens start: words, sentences, lines, roles and character spans.

Every function returns the sorted positions at which a group starts (always ``0`` and the first
generated position), read from the tokens' decoded text (``seq.tokens`` / ``seq.offsets``), so
the same rules work for byte-level BPE, GPT-2 style and SentencePiece tokenizers. No group ever
crosses the boundary between prompt and generated text.

Example:
    >>> seq = out.sequences[0]
    >>> seq.tokens
    ['The', ' capital', ' of', ' Fr', 'ance', ' is', ' Par', 'is', '.']
    >>> word_starts(seq)
    [0, 1, 2, 3, 5, 6, 8]
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

from genattrib.output.sequence import SequenceAttribution

__all__ = [
    "PARAGRAPH_BREAK",
    "SENTENCE_END",
    "line_starts",
    "role_starts",
    "sentence_starts",
    "span_starts",
    "word_starts",
]

#: Sentence-final punctuation (with closing quotes/brackets) followed by whitespace, or CJK stops.
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]»]*(?=\s)|[。！？]+")
#: A blank line (newline, optional spaces, newline ...).
PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t\r]*\n)+")
_NEWLINE = re.compile(r"\n")


def _specials(seq: SequenceAttribution) -> list[bool]:
    return [bool(v) for v in seq.held_fixed.tolist()] if seq.held_fixed is not None else [False] * len(seq.tokens)


def _finish(seq: SequenceAttribution, breaks: Iterable[int], special_breaks: bool) -> list[int]:
    """Sorted group starts from ``breaks`` plus 0, the prompt boundary and (optionally) specials."""
    n = len(seq.tokens)
    starts = {b for b in breaks if 0 < b < n}
    if n:
        starts.add(0)
    if 0 < seq.prompt_length < n:
        starts.add(seq.prompt_length)
    if seq.source_length is not None and 0 < seq.source_length < n:  # encoder-decoder: no group spans both sides
        starts.add(seq.source_length)
    if special_breaks:
        for pos, special in enumerate(_specials(seq)):
            if special:
                starts.update(p for p in (pos, pos + 1) if p < n)
    return sorted(starts)


def _char_breaks(seq: SequenceAttribution, chars: Iterable[int]) -> list[int]:
    """Token breaks for character boundaries: a group starts at the first token starting at or after each."""
    token_starts = [start for start, _ in seq.offsets]
    return [bisect.bisect_left(token_starts, c) for c in chars]


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def continues_word(previous: str, token: str) -> bool:
    """Whether ``token`` continues the word that ``previous`` ends (both touching characters are
    word characters: letters, digits or ``_``; so no whitespace or punctuation between them).

    Example:
        >>> continues_word("Par", "is"), continues_word("188", "0s"), continues_word("Paris", ".")
        (True, True, False)
        >>> continues_word("the", " cat")
        False
    """
    return bool(previous) and bool(token) and _word_char(previous[-1]) and _word_char(token[0])


def word_starts(seq: SequenceAttribution) -> list[int]:
    """Group starts for words: a token starts a new word unless it continues the previous one
    (:func:`continues_word`) and neither of them is a special token."""
    special = _specials(seq)
    breaks = [
        k
        for k in range(1, len(seq.tokens))
        if special[k] or special[k - 1] or not continues_word(seq.tokens[k - 1], seq.tokens[k])
    ]
    return _finish(seq, breaks, special_breaks=True)


def _role_breaks(seq: SequenceAttribution) -> list[int]:
    roles = seq.token_roles or []
    return [k for k in range(1, len(roles)) if roles[k] != roles[k - 1]]


def sentence_starts(seq: SequenceAttribution) -> list[int]:
    """Group starts for sentences: after sentence-final punctuation followed by whitespace
    (:data:`SENTENCE_END`), after blank lines, at special tokens and where the role changes."""
    text = seq.text
    chars = [m.end() for m in SENTENCE_END.finditer(text)] + [m.end() for m in PARAGRAPH_BREAK.finditer(text)]
    return _finish(seq, _char_breaks(seq, chars) + _role_breaks(seq), special_breaks=True)


def line_starts(seq: SequenceAttribution, paragraphs: bool = False) -> list[int]:
    """Group starts for lines (after every newline) or, with ``paragraphs=True``, after blank lines;
    special tokens are boundaries too."""
    pattern = PARAGRAPH_BREAK if paragraphs else _NEWLINE
    chars = [m.end() for m in pattern.finditer(seq.text)]
    return _finish(seq, _char_breaks(seq, chars), special_breaks=True)


def role_starts(seq: SequenceAttribution) -> list[int]:
    """Group starts for chat roles: wherever ``seq.token_roles`` changes (needs token roles)."""
    return _finish(seq, _role_breaks(seq), special_breaks=False)


def run_starts(seq: SequenceAttribution, runs: Sequence[tuple[int, int]]) -> list[int]:
    """Group starts for token ``runs`` ``[start, stop)`` (sorted, disjoint): each run is one
    group, every other token stays on its own.

    Example:
        >>> run_starts(out.sequences[0], [(0, 3), (3, 6)])
        [0, 3, 6, 7, 8]
    """
    breaks = {k for a, b in runs for k in (a, b)} | {k for k in range(1, len(seq.tokens)) if not _inside(k, runs)}
    return _finish(seq, breaks, special_breaks=False)


def _inside(k: int, runs: Sequence[tuple[int, int]]) -> bool:
    """Whether token ``k`` continues a run (is in one and is not its first token)."""
    i = bisect.bisect_right([a for a, _ in runs], k) - 1
    return i >= 0 and runs[i][0] < k < runs[i][1]


def span_starts(seq: SequenceAttribution, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Group starts for character ``spans`` of ``seq.text`` (sorted, non-overlapping): the tokens
    that overlap a span form one group (a token overlapping two spans goes to the first); every
    other token stays on its own."""
    ends = [b for _, b in spans]
    labels: list[int | None] = []
    for start, stop in seq.offsets:
        i = bisect.bisect_right(ends, start)  # first span ending after the token starts
        inside = i < len(spans) and (spans[i][0] < stop or spans[i][0] <= start == stop)
        labels.append(i if inside else None)
    breaks = [k for k in range(1, len(labels)) if labels[k] is None or labels[k] != labels[k - 1]]
    return _finish(seq, breaks, special_breaks=False)
