"""The runs of one suite as read from disk (``SuiteResults``): what every report view starts from.

A leaf of ``strabench.report``: ``tables`` reads and summarises these, the views and verdicts take
them, none of which needs the others to say what a suite's results are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PRIMARY_METRICS", "SuiteResults"]

PRIMARY_METRICS = ("mAP", "mean", "test_acc", "val_acc", "rank1")


@dataclass
class SuiteResults:
    """The runs of one suite as read from disk, plus what the suite said about itself."""

    name: str
    directory: Path
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)  # plan.json's "suite" entry, if any
    latency: dict[str, Any] | None = None  # latency.json: the suite's interleaved timing
    warnings: list[str] = field(default_factory=list)  # what merging copies found (printed in the notes)
    # each run's per-item scores once read (``verdicts.ItemCache``): every summary of these results
    # (the tables, the plots, the leaderboard's comparisons) reads a run's file once
    per_item: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def metrics(self) -> list[str]:
        from strabench.suite.store import metric_columns

        return metric_columns(self.rows)

    @property
    def primary_metric(self) -> str | None:
        metrics = self.metrics
        for name in PRIMARY_METRICS:
            if name in metrics:
                return name
        return metrics[0] if metrics else None

    @property
    def baseline(self) -> str | None:
        """The variant the others are compared with: the suite's ``baseline``, else its first variant."""
        named = self.meta.get("baseline")
        variants = [r["variant"] for r in self.rows]
        if isinstance(named, str) and named in variants:
            return named
        return variants[0] if variants else None
