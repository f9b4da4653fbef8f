"""Test configuration: shared tiny models (run-time type checking: the root conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# The jaxtyping + beartype import hook (GENATTRIB_TYPECHECK) is installed by the repository's
# root conftest.py, which pytest imports first: doctests of genattrib may import it before tests/.
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tiny import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="session", params=["llama", "gpt2", "qwen2"])
def tiny_model(request, tiny_tokenizer):
    """A tiny random model of each architecture, wrapped for attribution."""
    from tiny import make_model

    import genattrib

    return genattrib.load_model((make_model(request.param, tiny_tokenizer), tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    from tiny import make_model

    import genattrib

    return genattrib.load_model((make_model("llama", tiny_tokenizer), tiny_tokenizer))


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """The tiny Llama saved to a folder (the command line and other processes load it from there)."""
    from tiny import make_model, make_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = make_tokenizer()
    make_model("llama", tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def planted(tiny_tokenizer):
    from tiny import PLANTED_POSITIONS, make_planted_model

    import genattrib

    return genattrib.load_model((make_planted_model(tiny_tokenizer), tiny_tokenizer)), PLANTED_POSITIONS


@pytest.fixture(scope="session")
def default_model():
    import genattrib

    return genattrib.load_model()
