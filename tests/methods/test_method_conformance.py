"""Every registered method passes the conformance checks of tests/helpers/conformance.py: batched equals one
at a time, ``estimate()`` plans the rows it runs, save/load, unit rows where supported, and a
sharded model (accelerate, weights on disk) equals the unsplit one (``slow``)."""

from __future__ import annotations

import pytest
from conformance import CHECKS, FAST, check_save_load, check_sharded, sharded_pair

import genattrib

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

METHODS = genattrib.list_methods()


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("method", METHODS)
def test_method_conforms(tiny_llama, method, check):
    CHECKS[check](tiny_llama, method, FAST.get(method, {}))


@pytest.mark.parametrize("method", METHODS)
def test_saved_result_loads_back(tiny_llama, method, tmp_path):
    check_save_load(tiny_llama, method, FAST.get(method, {}), tmp_path)


@pytest.fixture(scope="module")
def pair(tiny_tokenizer, tmp_path_factory):
    return sharded_pair(tiny_tokenizer, tmp_path_factory.mktemp("conformance-sharded"))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_sharded_equals_unsharded(pair, method):
    check_sharded(*pair, method, FAST.get(method, {}))


def test_every_registered_method_is_checked():
    assert METHODS == genattrib.list_methods() and len(METHODS) >= 14
