"""Bytes a computation moves through memory, and how fast this machine can move them.

A block whose arithmetic is tiny (StRA's local attention: K*K multiply-adds per output element)
is bound by memory traffic, not by FLOPs, so its time is judged against bytes / bandwidth:

- ``count_bytes(fn)`` runs ``fn`` once and adds up, for every aten op it dispatches (forward
  and, if ``fn`` calls it, backward), the bytes of the tensors the op reads and writes: each
  input and output counted once per op, a broadcast (stride-0) dimension once, views (slice,
  permute, expand ...) free. That is the traffic of the implementation as written, op by op,
  with no reuse from cache between ops: what a kernel-per-op runtime streams through memory.
  A kernel that runs outside the dispatcher (the fused C local-attention kernel, called through
  ctypes) reports its own reads and writes with ``record_kernel``, so no op goes uncounted.
- ``compulsory_bytes(*tensors)``: the bytes every implementation must touch at least once
  (the inputs it reads and the outputs it writes), the floor a fused kernel could reach.
- ``copy_bandwidth()``: this machine's sustained read+write bandwidth, from timing
  ``torch.Tensor.copy_`` on buffers far larger than the caches.

``bytes / bandwidth`` is then the time the traffic alone would take; measured time over that
is how far a block is from its memory limit.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["Traffic", "compulsory_bytes", "copy_bandwidth", "count_bytes", "counting", "record_kernel", "tensor_bytes"]


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements ``t`` addresses (a broadcast dimension counts once)."""
    elements = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            elements *= size
    return elements * t.element_size()


def compulsory_bytes(*tensors: torch.Tensor) -> int:
    """The floor: every tensor an op must read or write, touched once."""
    return sum(tensor_bytes(t) for t in tensors)


@dataclass
class Traffic:
    """What ``count_bytes`` saw: total bytes, kernel launches, and bytes per aten op name."""

    bytes: int = 0
    ops: int = 0
    by_op: Counter = field(default_factory=Counter)


def _is_view(func: Any) -> bool:
    """An op whose outputs alias an input without writing it (slice, view, permute ...): no traffic."""
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


#: Ops that touch no tensor data: aliases and uninitialised allocations.
_NO_TRAFFIC = frozenset({"detach", "lift_fresh", "alias", "empty", "empty_like", "empty_strided", "new_empty",
                         "new_empty_strided"})


def _unique_bytes(items: list) -> int:
    tensors = {id(t): t for t in items if isinstance(t, torch.Tensor) and t.numel() > 0}
    return sum(tensor_bytes(t) for t in tensors.values())


class _ByteCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.traffic = Traffic()

    def add(self, name: str, reads: list, writes: list) -> None:
        moved = _unique_bytes(reads) + _unique_bytes(writes)  # in place: read and written
        self.traffic.bytes += moved
        self.traffic.ops += 1
        self.traffic.by_op[name] += moved

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _is_view(func) or func.overloadpacket.__name__ in _NO_TRAFFIC:
            return out
        reads = tree_flatten((args, {k: v for k, v in kwargs.items() if k != "out"}))[0]
        self.add(func.overloadpacket.__name__, reads, tree_flatten(out)[0])
        return out


#: the counters of the ``count_bytes`` calls in progress (innermost last)
_active: list[_ByteCounter] = []


def counting() -> bool:
    """Whether a ``count_bytes`` is active (a hot path can skip gathering what ``record_kernel`` takes)."""
    return bool(_active)


def record_kernel(name: str, reads: list[torch.Tensor], writes: list[torch.Tensor]) -> None:
    """Count a kernel the dispatcher does not see (called through ctypes) in every active ``count_bytes``."""
    for counter in _active:
        counter.add(name, reads, writes)


def count_bytes(fn: Callable[[], Any]) -> Traffic:
    """Run ``fn()`` once and return the bytes its aten ops read and write (see the module docstring)."""
    counter = _ByteCounter()
    _active.append(counter)
    try:
        with counter:
            fn()
    finally:
        _active.remove(counter)
    return counter.traffic


def copy_bandwidth(megabytes: int = 256, repeats: int = 5, device: str = "cpu") -> float:
    """Sustained bytes per second of ``dst.copy_(src)`` (reads + writes), best of ``repeats``."""
    n = megabytes * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults out of the timing
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n * 4 / best
