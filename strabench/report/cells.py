"""How numbers look in the report's cells (one place, so every table prints them alike)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt", "interval_cell", "labelled"]


def fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    """A number with ``digits`` decimals ('—' for a missing or NaN value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def interval_cell(low: float | None, high: float | None, digits: int = 2, signed: bool = False) -> str:
    """'[low, high]' ('—' when either end is missing)."""
    if low is None or high is None:
        return "—"
    return f"[{fmt(low, digits, signed)}, {fmt(high, digits, signed)}]"


def labelled(record: dict[str, Any]) -> str:
    """The variant, and its suite setting (``[[settings]]``) where it has one."""
    return f"{record['variant']} ({record['setting']})" if record.get("setting") else record["variant"]
