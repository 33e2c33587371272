"""The verdict engine: against statsmodels and scipy, against cases worked by hand, and by
simulation -- thousands of simulated suites through ``decide`` itself (the code path that
decides every report and every run-until-decided round) hold the family-wise error rate, and
decide under a true effect with the power the design promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from strabench.report.sequential import (
    BETTER, EQUIVALENT, UNDECIDED, WORSE, Design, decide, fixed_design, holm_adjust, paired_tests, schedule,
    sequential_design, spending,
)

ALPHA = 0.05


# --- against the libraries ----------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2, 5, 12])
def test_holm_equals_statsmodels(m: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    monkeypatch.setattr(gc, "collect", lambda *args: 0)  # multipletests collects garbage on every call (slow)
    rng = np.random.default_rng(m)
    p = rng.uniform(0, 0.2, size=(40, m))
    p[:, 0] = p[:, -1]  # ties
    ours = holm_adjust(p)
    for row, adjusted in zip(p, ours):
        reference = multipletests(row, alpha=ALPHA, method="holm")[1]
        np.testing.assert_allclose(adjusted, reference, rtol=0, atol=1e-15)


def test_holm_by_hand() -> None:
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    np.testing.assert_allclose(holm_adjust(np.array([0.04, 0.01, 0.03])), [0.06, 0.03, 0.06])


def test_paired_tests_equal_scipy_and_statsmodels_tost() -> None:
    rng = np.random.default_rng(7)
    for n in (2, 3, 7, 20):
        variant, baseline = rng.normal(30, 4, n), rng.normal(28, 4, n)
        diffs = (variant - baseline)[None, None, :]
        got = paired_tests(diffs, margin=2.5)
        greater = sps.ttest_1samp(variant - baseline, 0.0, alternative="greater").pvalue
        less = sps.ttest_1samp(variant - baseline, 0.0, alternative="less").pvalue
        tost = ttost_paired(variant, baseline, -2.5, 2.5)[0]
        assert got.p_better[0, 0] == pytest.approx(greater, rel=1e-12)
        assert got.p_worse[0, 0] == pytest.approx(less, rel=1e-12)
        assert got.p_equivalent[0, 0] == pytest.approx(tost, rel=1e-12)


def test_paired_tests_worked_by_hand() -> None:
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3) = 3.4641 on 2 df, where the
    # t distribution's CDF is 1/2 + t / (2 sqrt(t^2 + 2)): p(better) = 1/2 - 3.4641 / (2 sqrt(14)).
    got = paired_tests(np.array([[[1.0, 2.0, 3.0]]]), margin=4.0)
    p_better = 0.5 - 2 * math.sqrt(3) / (2 * math.sqrt(14))
    assert p_better == pytest.approx(0.037090, abs=1e-6)
    assert got.p_better[0, 0] == pytest.approx(p_better)
    assert got.p_worse[0, 0] == pytest.approx(1 - p_better)
    # TOST with margin 4: lower test t = (2 + 4) sqrt(3) = 10.392 -> p = 1/2 - t / (2 sqrt(t^2 + 2));
    # upper test t = (2 - 4) sqrt(3) = -3.4641 -> p = the same 0.03709; TOST p is the larger
    t_low = 6 * math.sqrt(3)
    p_low = 0.5 - t_low / (2 * math.sqrt(t_low**2 + 2))
    assert p_low == pytest.approx(0.004566, abs=1e-6)
    assert got.p_equivalent[0, 0] == pytest.approx(max(p_low, p_better))


def test_missing_pairs_and_zero_spread() -> None:
    got = paired_tests(np.array([[[1.0, np.nan, 3.0], [2.0, 2.0, 2.0], [np.nan, np.nan, 5.0]]]), margin=None)
    assert list(got.n[0]) == [2, 3, 1]
    assert got.testable[0].tolist() == [True, False, False]
    assert got.degenerate[0].tolist() == [False, True, False]
    assert got.p_better[0, 1] == 1.0 and got.p_better[0, 2] == 1.0, "untestable comparisons are never decided"


# --- the decision rule --------------------------------------------------------------------------


def test_fixed_design_decides_like_holm_over_one_sided_hypotheses_by_hand() -> None:
    # Two comparisons, no margin: 4 hypotheses. Comparison A: differences 3, 4, 5 (p better
    # = 1/2 - t/(2 sqrt(t^2+2)) with t = 4 sqrt(3)); B: -1, 1, 0 (p ~ 0.5 both ways).
    a, b = [3.0, 4.0, 5.0], [-1.0, 1.0, 0.0]
    t = 4 * math.sqrt(3)
    p_a = 0.5 - t / (2 * math.sqrt(t * t + 2))
    assert p_a == pytest.approx(0.010102, abs=1e-6)  # t^2 + 2 = 50: 1/2 - 6.9282 / 14.1421
    # Holm over {p_a, 1 - p_a, 0.5, 0.5}: the smallest x 4 = 0.0404 <= 0.05 -> A better; the next
    # (0.5 x 3) is not: B undecided.
    decisions = decide(np.array([[a, b]]), fixed_design(3, ALPHA))
    assert decisions.verdict[0].tolist() == [BETTER, UNDECIDED]
    assert decisions.p_holm[0, 0] == pytest.approx(4 * p_a)
    assert decisions.level[0, 0] == ALPHA
    # At alpha 0.04 the same data decide nothing: 0.0404 > 0.04.
    assert decide(np.array([[a, b]]), fixed_design(3, 0.04)).verdict[0].tolist() == [UNDECIDED, UNDECIDED]


def test_worse_is_said_plainly() -> None:
    decisions = decide(np.array([[[-3.0, -4.1, -5.2, -3.9]]]), fixed_design(4, ALPHA))
    assert decisions.verdict[0, 0] == WORSE


def test_equivalence_within_the_margin_and_its_precedence() -> None:
    tight = np.array([[[0.1, -0.2, 0.05, 0.15, -0.1, 0.0, 0.05, -0.05]]])
    assert decide(tight, fixed_design(8, ALPHA), margin=1.0).verdict[0, 0] == EQUIVALENT
    assert decide(tight, fixed_design(8, ALPHA), margin=None).verdict[0, 0] == UNDECIDED, "no margin: never equivalent"
    # a small, precisely measured positive difference: significant, and inside a margin of 2
    small = np.array([[[0.5, 0.6, 0.55, 0.45, 0.52, 0.58, 0.49, 0.51]]])
    assert decide(small, fixed_design(8, ALPHA), margin=None).verdict[0, 0] == BETTER
    assert decide(small, fixed_design(8, ALPHA), margin=2.0).verdict[0, 0] == EQUIVALENT, (
        "a real difference smaller than what the suite declared to matter is 'equivalent'"
    )


def test_a_decided_comparison_keeps_its_first_verdict() -> None:
    # decided at the first look (3 seeds, huge effect); its later seeds turn negative: ignored
    diffs = np.array([[[9.0, 9.5, 10.0, -20.0, -25.0, -30.0]]])
    design = Design((3, 6), (0.03, 0.02), ALPHA, 6)
    decisions = decide(diffs, design)
    assert decisions.verdict[0, 0] == BETTER and decisions.look[0, 0] == 0 and decisions.n[0, 0] == 3


def test_untested_looks_are_skipped() -> None:
    diffs = np.array([[[9.0, 9.5, 10.0, 9.7, 9.9, 10.1]]])
    design = Design((3, 6), (1e-9, 0.05), ALPHA, 6)
    tested = np.array([[[True, False]]])
    assert decide(diffs, design, tested=tested).verdict[0, 0] == UNDECIDED
    assert decide(diffs, design).verdict[0, 0] == BETTER


def test_schedule_and_spending() -> None:
    assert schedule(3, 15) == (3, 7, 11, 15)
    assert schedule(7, 7) == (7,)
    assert schedule(3, 4) == (3, 4)
    design = sequential_design(3, 15, ALPHA)
    assert math.fsum(design.alphas) == pytest.approx(ALPHA)
    expected = [ALPHA * (n / 15) ** 2 for n in (3, 7, 11, 15)]
    np.testing.assert_allclose(np.cumsum(design.alphas), expected)
    assert spending(0.5, ALPHA) == pytest.approx(ALPHA / 4)
    assert all(a > 0 for a in design.alphas)


# --- by simulation ------------------------------------------------------------------------------


def simulated_suites(rng: np.random.Generator, suites: int, effects: list[float], seeds: int, sd: float = 1.0) -> np.ndarray:
    """Paired differences of variants against one shared baseline (so the comparisons correlate)."""
    baseline = rng.normal(0.0, sd / math.sqrt(2), size=(suites, 1, seeds))
    variants = rng.normal(0.0, sd / math.sqrt(2), size=(suites, len(effects), seeds)) + np.asarray(effects)[None, :, None]
    return variants - baseline


def mc_bound(rate: float, n: int) -> float:
    """rate plus three Monte-Carlo standard errors."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


SUITES = 4000


def test_null_suites_hold_alpha_over_looks() -> None:
    """No variant differs: the rate of suites with any 'better' or 'worse' stays <= alpha."""
    rng = np.random.default_rng(2024)
    design = sequential_design(3, 15, ALPHA)
    diffs = simulated_suites(rng, SUITES, [0.0, 0.0, 0.0], 15)
    for margin in (None, 0.5):
        verdict = decide(diffs, design, margin).verdict
        wrong = np.any((verdict == BETTER) | (verdict == WORSE), axis=1).mean()
        assert wrong <= mc_bound(ALPHA, SUITES), f"margin {margin}: false better/worse in {wrong:.3f} of null suites"


def test_naive_testing_after_every_look_would_fail_this_test() -> None:
    """The same engine with the full alpha at every look (testing after each round without
    spending) inflates false verdicts past alpha: what the spending prevents, and proof that
    the simulation above can fail."""
    rng = np.random.default_rng(2025)
    looks = schedule(2, 15, rounds=13)
    naive = Design(looks, tuple([ALPHA] * len(looks)), ALPHA, 15)
    verdict = decide(simulated_suites(rng, SUITES, [0.0], 15), naive).verdict
    wrong = np.mean((verdict == BETTER) | (verdict == WORSE))
    assert wrong > mc_bound(ALPHA, SUITES), f"naive looks gave only {wrong:.3f}"


def test_false_equivalence_at_the_margin_stays_below_alpha() -> None:
    """A true difference exactly at the margin (the hardest case for the equivalence null)."""
    rng = np.random.default_rng(2026)
    margin = 0.8
    design = sequential_design(3, 15, ALPHA)
    verdict = decide(simulated_suites(rng, SUITES, [margin, -margin], 15), design, margin).verdict
    wrong_up = (verdict[:, 0] == EQUIVALENT) | (verdict[:, 0] == WORSE)  # truly +margin
    wrong_down = (verdict[:, 1] == EQUIVALENT) | (verdict[:, 1] == BETTER)  # truly -margin
    wrong = np.mean(wrong_up | wrong_down)
    assert wrong <= mc_bound(ALPHA, SUITES), f"false equivalence (or sign) in {wrong:.3f} of suites"


def test_a_true_effect_is_decided_with_the_promised_power() -> None:
    """One variant better by delta: 'better' at least as often as a single test at the last
    look's Bonferroni level would find it (what seed planning promises), at most as often as
    a fixed design at the full alpha with every seed; the null variant is rarely 'worse'."""
    rng = np.random.default_rng(2027)
    delta, sd, max_seeds = 1.0, 1.0, 15
    design = sequential_design(3, max_seeds, ALPHA)
    verdict = decide(simulated_suites(rng, SUITES, [delta, 0.0], max_seeds, sd), design, margin=None).verdict
    better = np.mean(verdict[:, 0] == BETTER)
    power = TTestPower()
    floor = power.power(effect_size=delta / sd, nobs=max_seeds, alpha=design.alphas[-1] / 4, alternative="larger")
    ceiling = power.power(effect_size=delta / sd, nobs=max_seeds, alpha=ALPHA / 2, alternative="larger")
    se = math.sqrt(better * (1 - better) / SUITES)
    assert floor > 0.5, "a scenario where the design has power to speak of"
    assert floor - 3 * se <= better <= ceiling + 3 * se, (floor, better, ceiling)
    assert np.mean(verdict[:, 1] == WORSE) <= mc_bound(ALPHA / 2, SUITES)
