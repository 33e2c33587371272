"""Statistics of the report, against scipy called directly and against hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from strabench.report.stats import compare_paired, group_stats, holm, min_p_value, verdict


def test_group_stats_match_the_t_interval_by_hand() -> None:
    values = [24.7, 22.6, 25.9]
    g = group_stats(values)
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, df=2), from tables
    assert g.n == 3 and g.mean == pytest.approx(mean) and g.std == pytest.approx(sd)
    assert (g.ci_low, g.ci_high) == pytest.approx((mean - half, mean + half))


def test_group_stats_of_one_and_of_none() -> None:
    assert group_stats([30.6]) == group_stats([30.6])
    one = group_stats([30.6])
    assert (one.n, one.mean, one.std, one.ci_low) == (1, 30.6, None, None)
    assert group_stats([]).n == 0 and group_stats([float("nan")]).n == 0


def _sign_flip_p_by_enumeration(diff: list[float]) -> float:
    """All 2^n sign patterns, written out: the exact two-sided p of the mean difference."""
    observed = abs(sum(diff) / len(diff))
    hits = 0
    patterns = list(itertools.product((1, -1), repeat=len(diff)))
    for signs in patterns:
        if abs(sum(s * d for s, d in zip(signs, diff)) / len(diff)) >= observed - 1e-12:
            hits += 1
    return hits / len(patterns)


def test_permutation_p_value_is_exact() -> None:
    variant = {0: 30.6, 1: 31.0, 2: 32.1, 3: 26.0, 4: 29.5}
    baseline = {0: 24.7, 1: 22.6, 2: 25.9, 3: 27.0, 4: 25.0}
    diff = [variant[s] - baseline[s] for s in range(5)]
    c = compare_paired(variant, baseline)
    assert c.p_value == pytest.approx(_sign_flip_p_by_enumeration(diff), abs=1e-12)
    assert c.p_value == pytest.approx(4 / 32)  # patterns as extreme: the observed one, -1 flips... counted above


def test_consistent_effect_reaches_the_floor_of_the_test() -> None:
    variant = {s: 30.0 + s for s in range(7)}
    baseline = {s: 24.0 + s + 0.1 * (s % 2) for s in range(7)}
    c = compare_paired(variant, baseline)
    assert c.p_value == pytest.approx(2 / 2**7) == pytest.approx(c.min_p)
    assert c.p_improve == pytest.approx(sps.mannwhitneyu(list(variant.values()), list(baseline.values())).statistic / 49)
    assert verdict(c.with_holm(holm([c.p_value, 0.5])[0])) == "better", "7 pairs survive Holm over 2 comparisons"


def test_five_pairs_cannot_be_significant_and_say_so() -> None:
    c = compare_paired({s: 10.0 + s for s in range(5)}, {s: 5.0 + s for s in range(5)})
    assert c.min_p == pytest.approx(0.0625) and c.p_value == pytest.approx(0.0625)
    assert verdict(c) == "no detectable difference (n = 5)"


def test_pairing_is_by_seed_not_by_position() -> None:
    # Every seed of the variant beats the same seed of the baseline by exactly 1, but seeds differ a lot.
    # Paired by seed: a perfectly consistent +1. Paired by sorted position (a wrong pairing): noise.
    variant = {0: 11.0, 1: 31.0, 2: 21.0, 3: 41.0, 4: 16.0, 5: 36.0}
    baseline = {0: 10.0, 1: 30.0, 2: 20.0, 3: 40.0, 4: 15.0, 5: 35.0}
    shuffled = dict(zip(sorted(variant), reversed(list(variant.values()))))
    right = compare_paired(variant, baseline)
    assert right.mean_diff == pytest.approx(1.0)
    assert (right.ci_low, right.ci_high) == pytest.approx((1.0, 1.0))
    assert right.p_value == pytest.approx(2 / 2**6)
    wrong = compare_paired(shuffled, baseline)
    assert wrong.p_value > 0.5, "the test sees pairs, so mispairing destroys the effect"


def test_only_common_seeds_are_paired() -> None:
    c = compare_paired({0: 3.0, 1: 4.0, 2: 9.0}, {1: 1.0, 2: 2.0, 3: 0.0})
    assert c.seeds == (1, 2) and c.n == 2 and c.mean_diff == pytest.approx(5.0)
    ttest = sps.ttest_1samp([3.0, 7.0], 0.0)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ttest.confidence_interval(0.95)))


def test_one_seed_has_no_verdict() -> None:
    c = compare_paired({0: 30.6}, {0: 24.7})
    assert c.n == 1 and c.p_value is None and c.mean_diff == pytest.approx(5.9)
    assert verdict(c) == "1 seed: no uncertainty"


def test_holm_by_hand() -> None:
    # sorted: 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone: 0.06)
    assert holm([0.04, 0.01, None, 0.03]) == pytest.approx([0.06, 0.03, None, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_worse_is_said_plainly() -> None:
    c = compare_paired({s: 1.0 + 0.01 * s for s in range(8)}, {s: 2.0 for s in range(8)})
    assert verdict(c) == "worse"


def test_min_p_value() -> None:
    assert [min_p_value(n) for n in (1, 2, 5, 6, 7)] == pytest.approx([1.0, 0.5, 0.0625, 0.03125, 0.015625])


def test_identical_runs_give_p_one() -> None:
    c = compare_paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert c.p_value == 1.0 and verdict(c) == "no detectable difference (n = 2)"
    assert np.isclose(c.p_improve, 0.5)
