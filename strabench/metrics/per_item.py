"""Per-item scores: what each headline metric averages, one row per test item (``per_item.csv``).

A score such as mAP is a mean over test items. Keeping the items' own values makes three things
possible that the mean alone does not: paired comparisons of two runs on the *same* items, a
decomposition of run-to-run spread into test-set sampling and training randomness, and resampling
by whatever unit the items are correlated in (their ``cluster``).

The table (written by the training engine as ``<run>/per_item.csv``, plain CSV):

* ``item``: a stable id, the same for every variant and seed of a suite (same data seed and
  sizes): ReID the query's file name; verification ``<set>/<pair index>``; FER
  ``<val|test>/<image index>``. Rows are in a fixed order (the test split's).
* ``cluster``: the unit of resampling. ReID: the query's person id (queries of one person are
  correlated); verification: ``<set>/<first person of the pair>`` (LFW names; the pair itself
  for ``.bin`` sets); FER: the image (images are independent draws).
* one column per headline metric of ``result.json``, named exactly like it and in its unit
  (percent), such that the metric is the mean of its column's non-empty cells. ReID: ``mAP``
  (the query's AP x 100), ``rank1``/``rank5``/``rank10`` (0 or 100: first correct match within
  rank k); empty for a query the protocol skips (no correct match left). Verification: one
  column per set (``lfw``, a ``.bin`` stem) and ``mean`` (0 or 100: the pair classified correctly
  at its fold's threshold); FER: ``val_acc`` / ``test_acc`` (0 or 100), each filled on its
  split's rows only. A metric that is not the plain mean of its items (verification folds of
  unequal size, sets of unequal size for ``mean``) gets no column.
* further columns: verification ``accuracy`` (0 or 100, every row), ``same`` (1 = matched pair),
  ``score`` (cosine similarity of the two embeddings: the pair is predicted "same" when its
  squared distance ``2 - 2 * score`` is below its fold's threshold) and ``fold``; FER
  ``accuracy`` (0 or 100, every row), ``label`` and ``pred`` (class indices).

Floats are written with ``repr`` (shortest round-trip), so a reader recomputes each headline
metric up to float rounding.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strabench.metrics import MetricError

__all__ = [
    "PER_ITEM_CSV", "PerItemTable", "classification_per_item", "read_per_item", "reid_per_item",
    "verification_per_item",
]

PER_ITEM_CSV = "per_item.csv"
KEY_COLUMNS = ("item", "cluster")
#: A headline metric's column is kept only if its mean is the metric to this relative tolerance.
MEAN_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PerItemTable:
    """Columns of equal length: ``item``, ``cluster``, then the ``metrics`` columns, then the rest.

    Metric cells are floats or None (empty: the item does not count for that metric).
    """

    columns: dict[str, list[Any]]
    metrics: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = list(self.columns)
        if names[:2] != list(KEY_COLUMNS):
            raise MetricError(f"a per-item table starts with the columns item, cluster; got {names[:2]}")
        lengths = {len(values) for values in self.columns.values()}
        if len(lengths) != 1:
            raise MetricError(f"per-item columns differ in length: { {k: len(v) for k, v in self.columns.items()} }")
        if len(set(self.columns["item"])) != len(self.columns["item"]):
            raise MetricError("per-item ids are not unique")
        missing = [m for m in self.metrics if m not in self.columns]
        if missing:
            raise MetricError(f"metric column {missing[0]!r} is missing")

    def __len__(self) -> int:
        return len(self.columns["item"])

    def mean(self, column: str) -> float | None:
        """Mean of a column's non-empty cells (None when all are empty)."""
        values = [float(v) for v in self.columns[column] if v is not None]
        return math.fsum(values) / len(values) if values else None

    def consistent_with(self, metrics: dict[str, float]) -> "PerItemTable":
        """This table without the metric columns whose mean is not ``metrics[name]`` (and without
        those ``metrics`` lacks): a reader can rely on every metric column averaging to its metric."""
        keep = []
        for name in self.metrics:
            mean = self.mean(name)
            if name in metrics and mean is not None and math.isclose(mean, metrics[name], rel_tol=MEAN_TOLERANCE, abs_tol=1e-12):
                keep.append(name)
        dropped = set(self.metrics) - set(keep)
        return PerItemTable({k: v for k, v in self.columns.items() if k not in dropped}, tuple(keep))

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(list(self.columns))
        for row in zip(*self.columns.values()):
            writer.writerow([_cell(v) for v in row])
        return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def concat(tables: Sequence[PerItemTable]) -> PerItemTable:
    """Rows of several tables in order; a column one table lacks is empty on its rows."""
    names: list[str] = []
    for table in tables:
        names.extend(n for n in table.columns if n not in names)
    metrics: list[str] = []
    for table in tables:
        metrics.extend(m for m in table.metrics if m not in metrics)
    metric_first = [*KEY_COLUMNS, *metrics, *(n for n in names if n not in KEY_COLUMNS and n not in metrics)]
    columns = {name: [v for t in tables for v in t.columns.get(name, [None] * len(t))] for name in metric_first}
    return PerItemTable(columns, tuple(metrics))


def reid_per_item(ap: np.ndarray, first_rank: np.ndarray, valid: np.ndarray, names: Sequence[str],
                  pids: Sequence[int], ranks: Sequence[int]) -> PerItemTable:
    """Per query: AP and rank-k hits in percent (empty where the query has no correct match)."""
    n = len(names)
    if not (len(ap) == len(first_rank) == len(valid) == len(pids) == n):
        raise MetricError(f"per-query arrays disagree in length with the {n} query names")
    columns: dict[str, list[Any]] = {
        "item": [str(s) for s in names],
        "cluster": [f"{int(p):04d}" if int(p) >= 0 else str(int(p)) for p in pids],
        "mAP": [100.0 * float(a) if v else None for a, v in zip(ap, valid)],
    }
    for k in ranks:
        columns[f"rank{k}"] = [(100.0 if int(r) <= k else 0.0) if v else None for r, v in zip(first_rank, valid)]
    return PerItemTable(columns, ("mAP", *(f"rank{k}" for k in ranks)))


def verification_per_item(set_name: str, correct: np.ndarray, fold: np.ndarray, same: np.ndarray,
                          distance: np.ndarray, people: Sequence[str] | None = None) -> PerItemTable:
    """Per pair of one verification set: correct at its fold's threshold (0/100) under the set's
    name and ``mean``, plus ``accuracy``, ``same``, ``score`` (1 - squared distance / 2) and ``fold``.

    ``people``: the first person of each pair (the cluster); None for sets without names.
    """
    n = len(correct)
    if not (len(fold) == len(same) == len(distance) == n) or (people is not None and len(people) != n):
        raise MetricError(f"per-pair arrays of set {set_name!r} disagree in length")
    hits = [100.0 if bool(c) else 0.0 for c in correct]
    clusters = [f"{set_name}/{p}" for p in people] if people is not None else [f"{set_name}/{i}" for i in range(n)]
    columns: dict[str, list[Any]] = {
        "item": [f"{set_name}/{i}" for i in range(n)],
        "cluster": clusters,
        set_name: list(hits),
        "mean": list(hits),
        "accuracy": list(hits),
        "same": [int(bool(s)) for s in same],
        "score": [1.0 - float(d) / 2.0 for d in distance],
        "fold": [int(f) for f in fold],
    }
    return PerItemTable(columns, (set_name, "mean"))


def classification_per_item(split: str, metric: str, preds: np.ndarray, labels: np.ndarray) -> PerItemTable:
    """Per image of one split: top-1 correct (0/100) under ``metric`` and ``accuracy``, plus label and pred."""
    if len(preds) != len(labels):
        raise MetricError(f"{len(preds)} predictions but {len(labels)} labels")
    hits = [100.0 if int(p) == int(t) else 0.0 for p, t in zip(preds, labels)]
    items = [f"{split}/{i}" for i in range(len(labels))]
    columns: dict[str, list[Any]] = {
        "item": items, "cluster": list(items), metric: list(hits), "accuracy": list(hits),
        "label": [int(t) for t in labels], "pred": [int(p) for p in preds],
    }
    return PerItemTable(columns, (metric,))


def read_per_item(path: Path | str) -> dict[str, list[Any]]:
    """A ``per_item.csv`` as columns: ``item``/``cluster`` as text, every other column as floats
    (None for empty cells). Plain CSV, nothing executed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricError(f"{path}: cannot read per-item scores ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:2] != list(KEY_COLUMNS):
        raise MetricError(f"{path}: not a per-item table (the header must start with item,cluster)")
    header = rows[0]
    columns: dict[str, list[Any]] = {name: [] for name in header}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise MetricError(f"{path}: line {number} has {len(row)} cells, the header {len(header)}")
        for name, cell in zip(header, row):
            if name in KEY_COLUMNS:
                columns[name].append(cell)
                continue
            try:
                columns[name].append(float(cell) if cell != "" else None)
            except ValueError:
                raise MetricError(f"{path}: line {number}, column {name}: {cell!r} is not a number") from None
    return columns
