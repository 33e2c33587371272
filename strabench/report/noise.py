"""Where the noise comes from: a score's spread split into training randomness and test-set sampling.

The model (derived and checked by simulation in ``docs/statistics.md`` and
``tests/report/test_noise.py``): the score of seed s on test item i is

    y[s, i] = mu + alpha[i] + beta[s] + eps[s, i]

with an item effect alpha (some items are hard), a seed effect beta (training randomness: the
initialisation, data order, augmentation) and an interaction eps (a seed gets this item right,
another does not). The same holds for the paired difference of two variants per item
(variant minus baseline, same seed, same item). Items come in clusters (a ReID query's
identity), which are what is resampled. With S seeds on one test set of n items:

* ``within_run_var`` w: the test-set sampling variance of one run's score, from resampling its
  clusters (the variance the run's bootstrap interval shows): item effect + interaction, a + e.
* ``per_seed_var`` s^2: the variance of the run scores over seeds on this test set:
  training + e. The usual t-interval over seeds is built from it: it is conditional on the test
  set and says nothing about new test items.
* ``item_var`` a: the test-set sampling variance of the seed-averaged score, V_item = a + e / S
  from the cluster resampling of the per-item seed means, hence a = (S V_item - w) / (S - 1)
  and e = S (w - V_item) / (S - 1).
* ``training_var``: s^2 - e, the pure training randomness of one run.

The variance of the mean over S seeds, for new seeds and new test items alike, is
a / k + training / S + e / (k S) for a test set k times as large: which knob buys certainty is
read off that formula (``projected``). Estimates below zero (sampling noise) are set to zero.

The cluster-sampling variance of a mean is the linearised (delta-method) variance of a ratio
estimator, C / (C - 1) * sum_c (T_c - n_c * mean)^2 / n^2 over cluster totals T_c: what the
cluster bootstrap approximates, computed exactly rather than by resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseSplit", "align_items", "cluster_variance", "split_noise"]


def cluster_variance(values: np.ndarray, clusters: Sequence[str] | np.ndarray) -> np.ndarray:
    """The cluster-sampling variance of the mean of ``values`` (last axis = items), per row."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    count = int(codes.max()) + 1 if codes.size else 0
    n = x.shape[-1]
    if count < 2 or n < 2:
        return np.full(x.shape[0], np.nan)
    sizes = np.bincount(codes, minlength=count).astype(np.float64)
    totals = np.stack([np.bincount(codes, weights=row, minlength=count) for row in x])
    mean = x.mean(axis=-1, keepdims=True)
    deviations = totals - sizes[None, :] * mean
    return count / (count - 1) * (deviations**2).sum(axis=-1) / n**2


@dataclass(frozen=True)
class NoiseSplit:
    """The variance components of one score (or one paired difference), in squared metric units."""

    seeds: int
    items: int
    clusters: int
    within_run_var: float  # a + e: one run's test-set sampling variance
    per_seed_var: float | None = None  # training + e (None with one seed)
    item_var: float | None = None  # a
    interaction_var: float | None = None  # e
    training_var: float | None = None  # training

    def variance(self, seeds: int | None = None, test_scale: float = 1.0) -> float | None:
        """The variance of the mean over ``seeds`` seeds (default: as run) with a test set
        ``test_scale`` times as large, for new seeds and new test items; None with one seed."""
        if self.item_var is None or self.training_var is None or self.interaction_var is None:
            return None
        s = self.seeds if seeds is None else seeds
        return self.item_var / test_scale + self.training_var / s + self.interaction_var / (test_scale * s)

    @property
    def seed_share(self) -> float | None:
        """The share of today's variance that more seeds remove (training randomness)."""
        total = self.variance()
        if total is None or total <= 0 or self.training_var is None:
            return None
        return self.training_var / self.seeds / total

    def projected(self, factor: float = 2.0) -> dict[str, float | None]:
        """Standard errors now, with ``factor`` x the seeds and with ``factor`` x the test set."""
        now = self.variance()
        more_seeds = self.variance(seeds=math.ceil(self.seeds * factor))
        more_items = self.variance(test_scale=factor)
        return {k: (math.sqrt(v) if v is not None else None) for k, v in
                (("now", now), ("more_seeds", more_seeds), ("more_items", more_items))}


def split_noise(scores: np.ndarray, clusters: Sequence[str] | np.ndarray) -> NoiseSplit:
    """The components from per-item scores of shape (seeds, items), one test set for all seeds."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"expected scores of shape (seeds, items >= 2), got {x.shape}")
    seeds, n = x.shape
    count = len(np.unique(np.asarray(clusters)))
    within = float(np.mean(cluster_variance(x, clusters)))
    if seeds < 2:
        return NoiseSplit(seeds, n, count, within)
    per_seed = float(np.var(x.mean(axis=1), ddof=1))
    v_item = float(cluster_variance(x.mean(axis=0), clusters)[0])
    interaction = max(0.0, seeds * (within - v_item) / (seeds - 1))
    item = max(0.0, (seeds * v_item - within) / (seeds - 1))
    training = max(0.0, per_seed - interaction)
    return NoiseSplit(seeds, n, count, within, per_seed, item, interaction, training)


def align_items(runs: Sequence[tuple[Sequence[str], Sequence[str], np.ndarray]]) -> tuple[np.ndarray, tuple[str, ...]] | str:
    """Stack runs' (items, clusters, values) into (runs, items) over the items every run scored.

    A string says why they cannot be stacked (another test set, clusters that disagree).
    """
    if not runs:
        return "no runs"
    items, clusters, _ = runs[0]
    for other_items, other_clusters, _ in runs[1:]:
        if tuple(other_items) != tuple(items):
            return "the runs' per-item files list different test items (another test set or order)"
        if tuple(other_clusters) != tuple(clusters):
            return "the runs' per-item files disagree on the items' clusters"
    matrix = np.stack([np.asarray(v, dtype=np.float64) for _, _, v in runs])
    keep = np.all(np.isfinite(matrix), axis=0)
    if keep.sum() < 2:
        return "fewer than two items are scored in every run"
    return matrix[:, keep], tuple(c for c, k in zip(clusters, keep) if k)
