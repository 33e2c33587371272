"""A count of multiply-accumulates under one named convention (what every counter returns).

A leaf, so that ``flops`` (the paper's counter and the entry point) and ``counters`` (fvcore's and
ptflops' conventions, which ``flops`` dispatches to) both import it from below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MacCount"]


@dataclass
class MacCount:
    """``total`` MACs under ``convention``, per module where the counter attributes them, and what
    the counter saw but did not count (``uncounted``: never dropped silently)."""

    convention: str
    total: int
    by_module: dict[str, int] = field(default_factory=dict)
    uncounted: list[str] = field(default_factory=list)
