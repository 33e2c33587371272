"""Uncertainty of one run's score from its test set: a 95 % bootstrap interval.

A score such as mAP or verification accuracy is an average over test items (queries, pairs,
images). Resampling those items with replacement shows how much the score would move on another
test set of the same size drawn from the same population: the part of a run-to-run difference
that the test set alone explains. scipy.stats.bootstrap does the resampling (percentile method:
robust when most items score 0 or 1, where BCa's jackknife degenerates).

Stratified resampling (face verification: pairs are resampled within their fold, and the score
is the mean of the folds' accuracies, as the protocol defines it) passes one sample per stratum
to scipy, which resamples each independently.

Clustered resampling: items that share a cause are not independent. The queries of one ReID
identity succeed or fail together (a person whose clothes resemble another's is hard from every
camera), so resampling queries one by one would pretend there is more information than there
is and give too narrow an interval. ``bootstrap_cluster_mean`` resamples whole clusters (the
identities, with all their queries) within each stratum and recomputes the mean over the items
drawn (a ratio estimator, since clusters differ in size). scipy's ``bootstrap`` resamples items
of independent samples, not groups of unequal size within strata, so this one is written here;
it is tested against scipy where the two coincide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CI_METHOD", "Interval", "bootstrap_cluster_mean", "bootstrap_mean", "bootstrap_stratified_mean"]

N_RESAMPLES = 2000
CONFIDENCE = 0.95
CI_METHOD = (f"bootstrap over the test set, percentile, {N_RESAMPLES} resamples, 95 %; correlated items resampled "
             "together (ReID: a person's queries; verification: a person's pairs, within folds)")


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


def bootstrap_cluster_mean(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[object] | np.ndarray,
    *,
    strata: Sequence[object] | np.ndarray | None = None,
    weights: Mapping[Any, float] | None = None,
    seed: int = 0,
) -> Interval | None:
    """95 % percentile interval of ``sum_s w_s * mean(items of stratum s)``, resampling clusters.

    Each resample draws, within every stratum independently, as many clusters as it has, with
    replacement, and takes the mean over all items of the clusters drawn. ``clusters`` label the
    items (compared as text); ``strata`` (default: one) partition them, and a cluster that spans
    strata counts as one cluster in each; ``weights`` map each stratum label to its weight
    (default: equal weights summing to 1). None when a stratum has fewer than two clusters
    (nothing to resample).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    labels = np.asarray(clusters, dtype=object).ravel()
    stratum_labels = np.zeros(x.size, dtype=object) if strata is None else np.asarray(strata, dtype=object).ravel()
    names, groups = np.unique(stratum_labels, return_inverse=True)
    if labels.size != x.size or groups.size != x.size:
        raise ValueError(f"{x.size} values but {labels.size} cluster labels and {groups.size} strata labels")
    if x.size == 0:
        return None
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    cluster_index = np.unique(labels.astype(str), return_inverse=True)[1]
    parts = []  # per stratum: (sum, count) per cluster
    for g in range(int(groups.max()) + 1):
        mask = groups == g
        _ids, local = np.unique(cluster_index[mask], return_inverse=True)
        sums = np.bincount(local, weights=x[mask])
        counts = np.bincount(local).astype(np.float64)
        parts.append((sums, counts))
    if any(len(sums) < 2 for sums, _ in parts):
        return None
    if weights is None:
        w = np.full(len(parts), 1.0 / len(parts))
    else:
        missing = [n for n in names if n not in weights]
        if missing or len(weights) != len(names):
            raise ValueError(f"weights must name each of the {len(names)} strata once (missing: {missing[:3]})")
        w = np.array([weights[n] for n in names], dtype=np.float64)
    if np.all(x == x[0]):
        point = float(x[0] * w.sum())
        return Interval(point, point)
    rng = np.random.default_rng(seed)
    statistic = np.zeros(N_RESAMPLES)
    for wi, (sums, counts) in zip(w, parts):
        drawn = rng.integers(0, len(sums), size=(N_RESAMPLES, len(sums)))
        statistic += wi * sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(statistic, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return Interval(float(low), float(high))
