"""Test-set intervals: scipy's bootstrap on the right samples, strata kept apart, weights right."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from strabench.metrics import verification
from strabench.metrics.resampling import N_RESAMPLES, bootstrap_mean, bootstrap_stratified_mean


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
