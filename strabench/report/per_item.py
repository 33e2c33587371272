"""A run's per-item scores (``<run>/per_item.csv``), read as data and checked against its result.

The file has one row per test item, in the same order for every run of a suite with the same
data: ``item`` (a stable id), ``cluster`` (the unit of resampling, e.g. the ReID query's
identity), then one column per headline metric named as in ``result.json`` and in its units
(ReID ``mAP`` = the query's AP, ``rank1``... = 0 or 100; accuracies = 0 or 100 per pair or
image), so that each metric is the mean of its column (an empty cell: the item does not count
for that metric). Runs made before per-item scores were stored have no such file: callers fall
back to seed-level statistics and say so.

A file that cannot be used (not UTF-8 csv, no ``item`` column, duplicate ids, a cell that is
not a finite number, a column whose mean is not the run's score) is never a crash: its reason
comes back for the report to print in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PER_ITEM_CSV", "ItemScores", "read_per_item"]

PER_ITEM_CSV = "per_item.csv"
# How far a column's mean may sit from the run's score (metric units, i.e. percent): csv rounding.
MEAN_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ItemScores:
    """One run's scores per test item; ``scores[metric][i]`` is NaN where item i has no score."""

    items: tuple[str, ...]
    clusters: tuple[str, ...]
    scores: Mapping[str, np.ndarray]


def read_per_item(run_dir: Path, metrics: Mapping[str, float]) -> tuple[ItemScores | None, list[str]]:
    """(scores, problems): scores None when the run has no per-item file or it is unusable.

    Only the ``metrics`` given (the run's result) are read; a column that is not all finite
    numbers, or does not average to the run's value, is left out and named in ``problems``.
    """
    from strabench.errors import DataError
    from strabench.io import parse_number, read_csv_records

    path = Path(run_dir) / PER_ITEM_CSV
    if not path.is_file():
        return None, []
    try:
        columns, records = read_csv_records(path)
    except (DataError, OSError) as exc:
        return None, [str(exc)]
    if "item" not in columns:
        return None, [f"{path}: no 'item' column"]
    items = tuple(r["item"] for r in records)
    if not items:
        return None, [f"{path}: no items"]
    if len(set(items)) != len(items):
        return None, [f"{path}: an item id appears twice"]
    problems: list[str] = []
    clusters = tuple(r.get("cluster") or r["item"] for r in records)
    scores: dict[str, np.ndarray] = {}
    for metric, value in metrics.items():
        if metric not in columns:
            continue
        cells = [r[metric] for r in records]
        values = np.array([parse_number(c) if c.strip() else np.nan for c in cells], dtype=np.float64)
        bad = [i for i, (c, v) in enumerate(zip(cells, values)) if c.strip() and v != v]
        if bad:
            problems.append(f"{path}: {metric} of item {items[bad[0]]!r} is not a finite number ({cells[bad[0]]!r})")
            continue
        scored = values[np.isfinite(values)]
        if scored.size == 0:
            continue
        mean = float(scored.mean())
        if abs(mean - float(value)) > MEAN_TOLERANCE:
            problems.append(f"{path}: {metric} per item averages {mean:.4f}, the run's result says {float(value):.4f}")
            continue
        values.flags.writeable = False  # shared by every summary of the suite (verdicts.ItemCache)
        scores[metric] = values
    return ItemScores(items, clusters, scores), problems
