"""Helpers of the fused-kernel tests: counting which path ran, running at 1 and 2 threads, and
at both vector widths of the kernels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import torch

from strabench.layers import _local_kernel

VECTOR_WIDTHS = {"wide": 64, "narrow": 32}  # bytes: the kernels' AVX-512 and AVX2 blocked loops


@contextlib.contextmanager
def vector_width(nbytes: int) -> Iterator[int]:
    """The kernels run their ``nbytes``-wide blocked loops inside the block."""
    before = _local_kernel.vector_bytes()
    _local_kernel.vector_bytes(nbytes)
    try:
        yield nbytes
    finally:
        _local_kernel.vector_bytes(before)


def spy_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """A list that gets one entry per call of ``module.name`` (which still runs)."""
    calls: list[int] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def at_one_and_two_threads(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``fn()`` run with torch at 1 thread, then at 2 (the kernels use torch's thread count)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fn()
        torch.set_num_threads(2)
        two = fn()
    finally:
        torch.set_num_threads(threads)
    return one, two
