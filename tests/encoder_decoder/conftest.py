"""Fixtures shared by the encoder-decoder tests: the tiny seq2seq tokenizer (one per test module, so a
module that changes it changes only its own)."""

from __future__ import annotations

import pytest
from tiny_seq2seq import make_seq2seq_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_seq2seq_tokenizer()
