"""Test configuration: run-time checking of jaxtyping annotations, shared tiny models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# jaxtyping + beartype check every annotated genattrib function during the tests. The hook
# must be installed before genattrib is imported.
if os.environ.get("GENATTRIB_TYPECHECK", "1") != "0":
    from jaxtyping import install_import_hook

    install_import_hook("genattrib", "beartype.beartype")

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
def planted(tiny_tokenizer):
    from tiny import PLANTED_POSITIONS, make_planted_model

    import genattrib

    return genattrib.load_model((make_planted_model(tiny_tokenizer), tiny_tokenizer)), PLANTED_POSITIONS


@pytest.fixture(scope="session")
def default_model():
    import genattrib

    return genattrib.load_model()
