"""Fixtures shared by the cloak tests."""
import pytest

from cloaks_testlib import TinyNet


@pytest.fixture(scope="module")
def ex():
    """The tests' tiny differentiable extractor (one per test module)."""
    return TinyNet()
