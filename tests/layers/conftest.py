"""Fixtures of the fused-kernel tests (test_local_attention_fused.py, test_mode_attention_fused.py, ...)."""

from __future__ import annotations

import pytest

from strabench.layers import _local_kernel


@pytest.fixture(params=[64, 32], ids=["wide", "narrow"])
def width(request: pytest.FixtureRequest):
    """Run the test with the kernels' 64-byte (AVX-512) and 32-byte (AVX2) blocked loops."""
    before = _local_kernel.vector_bytes()
    _local_kernel.vector_bytes(request.param)
    yield request.param
    _local_kernel.vector_bytes(before)
