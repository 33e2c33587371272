"""Descriptive statistics of the report, against scipy called directly and hand-computed cases."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from strabench.report.stats import compare_paired, group_stats, probability_of_improvement


def test_group_stats_match_the_t_interval_by_hand() -> None:
    values = [24.7, 22.6, 25.9]
    g = group_stats(values)
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, df=2), from tables
    assert g.n == 3 and g.mean == pytest.approx(mean) and g.std == pytest.approx(sd)
    assert (g.ci_low, g.ci_high) == pytest.approx((mean - half, mean + half))
    assert not g.clipped and not g.degenerate


def test_group_stats_of_one_and_of_none() -> None:
    one = group_stats([30.6])
    assert (one.n, one.mean, one.std, one.ci_low) == (1, 30.6, None, None)
    assert group_stats([]).n == 0 and group_stats([float("nan")]).n == 0
    assert group_stats([float("inf"), 3.0]).n == 1, "only finite values count"


def test_a_percentage_interval_stays_in_its_range_and_says_so() -> None:
    # rank-1 of 0, 0 and 1 %: sd = sqrt(1/3), se = 1/3, the t-interval [-1.10, 1.77]; a percentage cannot be negative
    g = group_stats([0.0, 0.0, 1.0])
    t_low = 1 / 3 - 4.302652729911275 * math.sqrt(1 / 3) / math.sqrt(3)
    assert t_low == pytest.approx(-1.1009, abs=1e-4)
    assert g.ci_low == 0.0 and g.ci_high == pytest.approx(1 / 3 + 4.302652729911275 / 3) and g.clipped
    high = group_stats([99.0, 100.0, 100.0])
    assert high.ci_high == 100.0 and high.clipped


def test_zero_spread_is_flagged_degenerate() -> None:
    g = group_stats([5.0, 5.0, 5.0])
    assert (g.ci_low, g.ci_high, g.std) == (5.0, 5.0, 0.0) and g.degenerate


def test_pairing_is_by_seed_not_by_position() -> None:
    variant = {0: 11.0, 1: 31.0, 2: 21.0, 3: 41.0, 4: 16.0, 5: 36.0}
    baseline = {0: 10.0, 1: 30.0, 2: 20.0, 3: 40.0, 4: 15.0, 5: 35.0}
    right = compare_paired(variant, baseline)
    assert right.mean_diff == pytest.approx(1.0) and right.degenerate, "a constant difference has no spread"
    shuffled = dict(zip(sorted(variant), reversed(list(variant.values()))))
    wrong = compare_paired(shuffled, baseline)
    assert wrong.std_diff > 10, "mispairing turns a constant +1 into noise"


def test_only_common_seeds_are_paired() -> None:
    c = compare_paired({0: 3.0, 1: 4.0, 2: 9.0}, {1: 1.0, 2: 2.0, 3: 0.0})
    assert c.seeds == (1, 2) and c.n == 2 and c.mean_diff == pytest.approx(5.0)
    ttest = sps.ttest_1samp([3.0, 7.0], 0.0)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ttest.confidence_interval(0.95)))


def test_one_pair_has_no_interval() -> None:
    c = compare_paired({0: 30.6}, {0: 24.7})
    assert c.n == 1 and c.ci_low is None and c.mean_diff == pytest.approx(5.9)


def test_probability_of_improvement_is_over_all_pairs_of_runs() -> None:
    # Defined over every pair of runs, paired seeds or not (rliable's probability of improvement):
    # variant runs 3, 5, 8 (seeds 0-2); baseline runs 4, 5, 1, 9 (seeds 0-3: seed 3 has no partner).
    variant, baseline = {0: 3.0, 1: 5.0, 2: 8.0}, {0: 4.0, 1: 5.0, 2: 1.0, 3: 9.0}
    wins = sum((a > b) + 0.5 * (a == b) for a in variant.values() for b in baseline.values())
    assert wins == 6.5  # by hand: 3 beats 1; 5 beats 4, 1, ties 5; 8 beats 4, 5, 1
    assert compare_paired(variant, baseline).p_improve == pytest.approx(6.5 / 12)
    assert probability_of_improvement([1.0], []) is None
