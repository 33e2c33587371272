"""Uncertainty of one run's score from its test set: a 95 % bootstrap interval.

A score such as mAP or verification accuracy is an average over test items (queries, pairs,
images). Resampling those items with replacement shows how much the score would move on another
test set of the same size drawn from the same population: the part of a run-to-run difference
that the test set alone explains. scipy.stats.bootstrap does the resampling (percentile method:
robust when most items score 0 or 1, where BCa's jackknife degenerates).

Stratified resampling (face verification: pairs are resampled within their fold, and the score
is the mean of the folds' accuracies, as the protocol defines it) passes one sample per stratum
to scipy, which resamples each independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CI_METHOD", "Interval", "bootstrap_mean", "bootstrap_stratified_mean"]

N_RESAMPLES = 2000
CONFIDENCE = 0.95
CI_METHOD = f"bootstrap over test items, percentile, {N_RESAMPLES} resamples, 95 %"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def as_list(self, scale: float = 1.0) -> list[float]:
        return [self.low * scale, self.high * scale]


def bootstrap_mean(values: Sequence[float] | np.ndarray, *, seed: int = 0) -> Interval | None:
    """95 % interval of the mean of ``values`` (None with fewer than 2 items)."""
    return bootstrap_stratified_mean([np.asarray(values, dtype=np.float64)], seed=seed)


def bootstrap_stratified_mean(
    strata: Sequence[np.ndarray], weights: Sequence[float] | None = None, *, seed: int = 0
) -> Interval | None:
    """95 % interval of ``sum_s w_s * mean(stratum_s)``, resampling within each stratum.

    ``weights`` default to equal weights summing to 1 (the mean of the strata's means).
    Strata with fewer than 2 items cannot be resampled: the interval is then None.
    """
    from scipy import stats

    samples = [np.asarray(s, dtype=np.float64).ravel() for s in strata]
    if not samples or any(s.size < 2 for s in samples):
        return None
    w = np.full(len(samples), 1.0 / len(samples)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(samples),):
        raise ValueError(f"{len(samples)} strata but {w.size} weights")
    if all(np.all(s == s[0]) for s in samples):  # nothing varies: the interval is the point
        point = float(sum(wi * s[0] for wi, s in zip(w, samples)))
        return Interval(point, point)

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        return sum(wi * np.mean(r, axis=axis) for wi, r in zip(w, resampled))

    result = stats.bootstrap(
        tuple(samples), statistic, n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE,
        method="percentile", vectorized=True, rng=np.random.default_rng(seed),
    )
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high))
