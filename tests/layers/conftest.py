"""Fixtures of the fused-kernel tests (test_local_attention_fused.py, test_mode_attention_fused.py, ...)."""

from __future__ import annotations

import pytest
from kernel_checks import VECTOR_WIDTHS, vector_width


@pytest.fixture(params=list(VECTOR_WIDTHS.values()), ids=list(VECTOR_WIDTHS))
def width(request: pytest.FixtureRequest):
    """Run the test with the kernels' 64-byte (AVX-512) and 32-byte (AVX2) blocked loops (a test
    whose reference is costly loops over both in itself, against one reference: ``vector_width``)."""
    with vector_width(request.param):
        yield request.param
