"""Results folders written by hand for report tests: run folders as the runner and the engine
leave them (run.json, result.json, and per_item.csv in the layout runs now store), no training."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_plan(suite_dir: Path, variants: Sequence[str], *, name: str = "t", baseline: str | None = None,
               **analysis: Any) -> None:
    """plan.json's suite entry: the variants in order, the baseline and the analysis keys."""
    suite_dir.mkdir(parents=True, exist_ok=True)
    suite = {"name": name, "baseline": baseline or variants[0], "variants": [{"name": v} for v in variants], **analysis}
    (suite_dir / "plan.json").write_text(json.dumps({"suite": suite, "runs": []}), encoding="utf-8")


def write_run(suite_dir: Path, variant: str, seed: int, metrics: Mapping[str, float], *, name: str = "t",
              untrained: Mapping[str, float] | None = None, items: Mapping[str, np.ndarray] | None = None,
              clusters: Sequence[str] | None = None, run_hash: str | None = None, folder: str | None = None,
              train_s: float = 120.0, eval_s: float = 6.0, device: str = "cpu", model: str = "resnet50") -> Path:
    """One finished run. ``items``: per-item scores per metric (``metrics`` are then their means
    unless given); ``folder``: a name other than the run's id (a copy)."""
    run_hash = run_hash or f"{seed:012d}"
    run_id = f"{variant}-s{seed}-{run_hash}"
    run_dir = suite_dir / (folder or run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"suite": name, "variant": variant, "model": model, "seed": seed,
                                                  "hash": run_hash, "run_id": run_id}), encoding="utf-8")
    result = {"status": "finished", "model": model, "task": "reid", "seed": seed, "metrics": dict(metrics),
              "metrics_untrained": dict(untrained or {k: 1.0 for k in metrics}), "train_time_s": train_s,
              "eval_time_s": eval_s, "device": device, "test_size": {k: 100 for k in metrics}}
    (run_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    if items is not None:
        n = len(next(iter(items.values())))
        labels = list(clusters) if clusters is not None else [f"id{i // 2}" for i in range(n)]
        with open(run_dir / "per_item.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["item", "cluster", *items])
            for i in range(n):
                writer.writerow([f"q{i:04d}", labels[i], *(repr(float(items[m][i])) for m in items)])
    return run_dir


def item_scores(rng: np.random.Generator, item_effect: np.ndarray, shift: float, noise: float) -> dict[str, np.ndarray]:
    """Per-query AP (0-100) and rank-1 (0 or 100) around an item difficulty, a seed/variant shift."""
    ap = np.clip(item_effect + shift + rng.normal(0, noise, item_effect.size), 0, 100)
    return {"mAP": ap, "rank1": np.where(ap > 50, 100.0, 0.0)}
