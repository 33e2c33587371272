"""Seeds for 80 % power: against statsmodels' solver, the noncentral t written out, and a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import tt_solve_power
from statsmodels.stats.weightstats import ttost_paired

from strabench.report.power import minutes, seeds_to_detect, seeds_to_show_equivalence, tost_power


def power_by_hand(effect: float, sd: float, n: int, level: float) -> float:
    """P(one-sided paired t rejects) = P(T_{n-1, delta sqrt(n)/sd} > t_{1-level, n-1})."""
    critical = sps.t.ppf(1 - level, n - 1)
    return float(sps.nct.sf(critical, n - 1, effect * math.sqrt(n) / sd))


@pytest.mark.parametrize("sd,effect,level", [(4.7, 2.0, 0.05 / 6), (3.0, 3.4, 0.0125), (1.0, 0.5, 0.05)])
def test_seeds_to_detect_is_the_smallest_n_with_80_percent_power(sd: float, effect: float, level: float) -> None:
    n = seeds_to_detect(sd, effect, level)
    assert power_by_hand(effect, sd, n, level) >= 0.8 > power_by_hand(effect, sd, n - 1, level)
    solved = tt_solve_power(effect_size=effect / sd, alpha=level, power=0.8, alternative="larger")
    assert n == math.ceil(solved)


def test_no_plan_without_a_spread_or_an_effect() -> None:
    assert seeds_to_detect(0.0, 2.0, 0.05) is None and seeds_to_detect(3.0, 0.0, 0.05) is None
    assert seeds_to_detect(1000.0, 0.001, 0.001) is None, "beyond 10,000 seeds: out of reach, not a number"


def test_tost_power_is_a_lower_bound_of_the_simulated_power() -> None:
    rng = np.random.default_rng(5)
    sd, margin, n, level = 2.0, 1.5, 12, 0.05
    diffs = rng.normal(0.0, sd, size=(3000, n))
    rejected = np.mean([ttost_paired(d, np.zeros(n), -margin, margin)[0] <= level for d in diffs[:600]])
    bound = tost_power(sd, margin, n, level)
    assert bound <= rejected + 3 * math.sqrt(rejected * (1 - rejected) / 600)
    assert rejected - bound < 0.08, "and a close one where power is high enough to plan with"


def test_tost_power_by_hand() -> None:
    # no true difference: each one-sided test rejects with P(T_{n-1, m sqrt(n)/sd} > t_{1-level, n-1});
    # the lower bound of both rejecting is twice that minus one
    sd, margin, n, level = 2.0, 1.5, 12, 0.05
    one = sps.nct.sf(sps.t.ppf(1 - level, n - 1), n - 1, margin * math.sqrt(n) / sd)
    assert tost_power(sd, margin, n, level) == pytest.approx(2 * one - 1)
    shifted = [sps.nct.sf(sps.t.ppf(1 - level, n - 1), n - 1, (margin + d) * math.sqrt(n) / sd) for d in (0.5, -0.5)]
    assert tost_power(sd, margin, n, level, true_diff=0.5) == pytest.approx(sum(shifted) - 1)


def test_seeds_to_show_equivalence_is_minimal() -> None:
    n = seeds_to_show_equivalence(2.0, 1.5, 0.05)
    assert tost_power(2.0, 1.5, n, 0.05) >= 0.8 > tost_power(2.0, 1.5, n - 1, 0.05)
    assert seeds_to_show_equivalence(2.0, 1.0, 0.05, true_diff=1.0) is None, "a true difference at the margin: never"


def test_minutes() -> None:
    assert minutes(30) == "0.5 min" and minutes(600) == "10 min" and minutes(3 * 3600) == "3.0 h" and minutes(None) == "?"
