"""Test-set intervals: scipy's bootstrap on the right samples, strata kept apart, weights right."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from strabench.metrics import verification
from strabench.metrics.resampling import N_RESAMPLES, bootstrap_cluster_mean, bootstrap_mean, bootstrap_stratified_mean


def test_interval_of_a_mean_is_scipys_percentile_bootstrap() -> None:
    values = np.random.default_rng(1).random(60)
    ci = bootstrap_mean(values)
    ref = stats.bootstrap((values,), np.mean, n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(0))
    assert (ci.low, ci.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert ci.low < values.mean() < ci.high


def test_interval_narrows_with_more_test_items() -> None:
    rng = np.random.default_rng(2)
    small, large = bootstrap_mean(rng.random(50) < 0.3), bootstrap_mean(rng.random(5000) < 0.3)
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_constant_outcomes_and_tiny_sets() -> None:
    assert bootstrap_mean(np.ones(10)).low == bootstrap_mean(np.ones(10)).high == 1.0
    assert bootstrap_mean([0.5]) is None


def test_strata_are_resampled_apart() -> None:
    # Stratum A always 1, stratum B always 0: any within-stratum resample gives exactly 0.5.
    ci = bootstrap_stratified_mean([np.ones(20), np.zeros(20)])
    assert (ci.low, ci.high) == (0.5, 0.5)
    pooled = bootstrap_mean(np.r_[np.ones(20), np.zeros(20)])
    assert pooled.high - pooled.low > 0.2, "pooling them would invent uncertainty"


def test_weights_give_the_weighted_point() -> None:
    a, b = np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    ci = bootstrap_stratified_mean([a, b], [0.25, 0.75])
    point = 0.25 * a.mean() + 0.75 * b.mean()
    assert ci.low <= point <= ci.high


def test_verification_per_pair_outcomes_average_to_the_fold_accuracies() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(2 * 60, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    issame = rng.random(60) < 0.5
    result = verification.evaluate(emb, issame, nrof_folds=10)
    for fold, accuracy in enumerate(result["accuracy"]):
        assert result["pair_correct"][result["pair_fold"] == fold].mean() == pytest.approx(accuracy)
    assert sorted(np.bincount(result["pair_fold"])) == [6] * 10


# --------------------------------------------------------------------------- by cluster
def _scipy_percentile(values: np.ndarray, resamples: int = 20_000) -> tuple[float, float]:
    ref = stats.bootstrap((values,), np.mean, n_resamples=resamples, method="percentile", rng=np.random.default_rng(7))
    return ref.confidence_interval.low, ref.confidence_interval.high


def test_singleton_clusters_agree_with_scipys_item_bootstrap() -> None:
    """One item per cluster is the ordinary bootstrap: the endpoints agree with scipy's up to
    Monte-Carlo error (different random draws, 2000 vs 20000 resamples)."""
    values = np.random.default_rng(4).random(400)
    ci = bootstrap_cluster_mean(values, np.arange(400))
    low, high = _scipy_percentile(values)
    assert ci.low == pytest.approx(low, abs=0.006) and ci.high == pytest.approx(high, abs=0.006)


def test_perfectly_correlated_clusters_count_once() -> None:
    """Every cluster holds m copies of one value: the data carry only as much information as the
    cluster means, so the interval is the item bootstrap of the means (wider than of the items)."""
    means = np.random.default_rng(5).random(150)
    values, clusters = np.repeat(means, 4), np.repeat(np.arange(150), 4)
    ci = bootstrap_cluster_mean(values, clusters)
    low, high = _scipy_percentile(means)
    assert ci.low == pytest.approx(low, abs=0.008) and ci.high == pytest.approx(high, abs=0.008)
    naive = bootstrap_mean(values)
    assert (naive.high - naive.low) < 0.6 * (ci.high - ci.low)


def test_cluster_resampling_against_a_loop_reference() -> None:
    """The same draws (one seeded generator, stratum after stratum) through a plain loop give
    the same interval: clusters of unequal size, a ratio of sums, weighted strata."""
    rng = np.random.default_rng(6)
    values = rng.random(90)
    clusters = rng.integers(0, 25, 90)
    strata = (clusters % 2).astype(object)  # each cluster lives in one stratum
    weights = {0: 0.3, 1: 0.7}
    ci = bootstrap_cluster_mean(values, clusters, strata=strata, weights=weights, seed=11)

    draws = np.random.default_rng(11)
    totals = np.zeros(N_RESAMPLES)
    for stratum in (0, 1):
        ids = sorted({str(c) for c, s in zip(clusters, strata) if s == stratum})
        members = {c: [v for v, cc in zip(values, clusters) if str(cc) == c] for c in ids}
        picks = draws.integers(0, len(ids), size=(N_RESAMPLES, len(ids)))
        for b in range(N_RESAMPLES):
            chosen = [x for k in picks[b] for x in members[ids[k]]]
            totals[b] += weights[stratum] * sum(chosen) / len(chosen)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.percentile(totals, [2.5, 97.5])), rel=1e-12)


def test_cluster_interval_edge_cases() -> None:
    assert bootstrap_cluster_mean([1.0, 0.0, 1.0], [7, 7, 7]) is None  # one cluster: nothing to resample
    assert bootstrap_cluster_mean([], []) is None
    const = bootstrap_cluster_mean(np.full(6, 0.25), [0, 0, 1, 1, 2, 2])
    assert const.low == const.high == 0.25
    with pytest.raises(ValueError, match="strata"):
        bootstrap_cluster_mean([1.0, 0.0, 1.0, 0.0], [0, 1, 2, 3], strata=["a", "a", "b", "b"], weights={"a": 1.0})
    with pytest.raises(ValueError, match="cluster labels"):
        bootstrap_cluster_mean([1.0, 0.0], [0])
