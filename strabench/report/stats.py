"""Statistics of a results table: seeds as samples, paired comparisons to a baseline.

What a row of an ablation table can honestly claim, and how it is computed (scipy.stats):

* **Per group** (one variant in one setting, over its seeds): n, mean, sample std and a 95 %
  Student-t interval of the mean (``scipy.stats.t``). One seed has no interval.
* **Paired difference to the baseline.** Seed s of a variant is compared with seed s of the
  baseline: both saw the same dataset (``data_seed``) and drew their initialisation, data order
  and augmentation from the same seed, so the per-seed difference removes what the seed does
  to both. Mean difference with a 95 % t-interval over the pairs.
* **P(variant > baseline)**: the probability that a run of the variant scores higher than a run
  of the baseline, estimated over every pair of their runs with the Mann-Whitney U statistic
  (ties count one half), as rliable's "probability of improvement" does.
* **p-value**: a two-sided sign-flip permutation test of the mean paired difference
  (``scipy.stats.permutation_test``, ``permutation_type="samples"``), exact: all 2^n sign
  patterns are enumerated up to n = 16. Its floor is 2 / 2^n (0.0625 at n = 5, 0.031 at 6,
  0.016 at 7), printed beside every verdict, so that "no detectable difference" at small n is
  read as what it is.
* **Holm's step-down correction** across the suite's comparisons of one metric (scipy has no
  Holm; it is the four lines of ``holm``, tested against hand-computed values).
* **Verdict** at family-wise alpha = 0.05: "better" / "worse" when the Holm-adjusted p is below
  alpha (the sign of the mean difference says which; every metric here is higher-is-better),
  else "no detectable difference (n = k)"; with a single seed, "1 seed: no uncertainty".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALPHA", "CI_METHOD_SEEDS", "Comparison", "GroupStats", "TEST_METHOD", "compare_paired", "group_stats",
    "holm", "min_p_value", "verdict",
]

ALPHA = 0.05
CI_METHOD_SEEDS = "95 % Student-t interval over seeds"
TEST_METHOD = "two-sided sign-flip permutation test of the mean paired difference (exact up to 16 pairs), Holm-corrected"
_EXACT_UP_TO = 16


@dataclass(frozen=True)
class GroupStats:
    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


def group_stats(values: Sequence[float]) -> GroupStats:
    """n, mean, sample std and the 95 % t-interval of the mean (None where n is too small)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return GroupStats(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return GroupStats(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return GroupStats(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(0.95, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return GroupStats(n, mean, std, float(low), float(high))


def min_p_value(n: int) -> float:
    """The smallest two-sided p-value the sign-flip test can give with n pairs: 2 / 2^n."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2.0**n)


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline over the seeds both have (paired by seed)."""

    n: int
    seeds: tuple[int, ...]
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_improve: float | None  # P(variant run > baseline run), Mann-Whitney estimate
    p_value: float | None  # sign-flip permutation, unadjusted
    min_p: float
    p_holm: float | None = None  # filled in across the family by ``holm``

    def with_holm(self, p_holm: float | None) -> "Comparison":
        from dataclasses import replace

        return replace(self, p_holm=p_holm)


def compare_paired(variant: dict[int, float], baseline: dict[int, float]) -> Comparison:
    """Paired comparison of two {seed: score} maps over their common seeds."""
    from scipy import stats

    seeds = tuple(sorted(s for s in variant if s in baseline and _finite(variant[s]) and _finite(baseline[s])))
    n = len(seeds)
    if n == 0:
        return Comparison(0, (), None, None, None, None, None, min_p_value(0))
    a = np.array([variant[s] for s in seeds], dtype=np.float64)
    b = np.array([baseline[s] for s in seeds], dtype=np.float64)
    diff = a - b
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    p_improve = float(u) / (n * n)
    if n == 1:
        return Comparison(1, seeds, float(diff[0]), None, None, p_improve, None, min_p_value(1))
    d = group_stats(list(diff))
    if np.all(diff == 0.0):
        p_value = 1.0
    else:
        exact = n <= _EXACT_UP_TO
        test = stats.permutation_test(
            (diff,), np.mean, permutation_type="samples", alternative="two-sided", vectorized=True,
            n_resamples=2**n if exact else 100_000, rng=np.random.default_rng(0),
        )
        p_value = float(min(1.0, test.pvalue))
    return Comparison(n, seeds, d.mean, d.ci_low, d.ci_high, p_improve, p_value, min_p_value(n))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None entries are skipped and stay None).

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(comparison: Comparison, alpha: float = ALPHA) -> str:
    """'better' / 'worse' / 'no detectable difference (n = k)' / '1 seed: no uncertainty'."""
    if comparison.n == 0:
        return "no paired seeds"
    if comparison.n == 1:
        return "1 seed: no uncertainty"
    p = comparison.p_holm if comparison.p_holm is not None else comparison.p_value
    if p is not None and p < alpha and comparison.mean_diff:
        return "better" if comparison.mean_diff > 0 else "worse"
    return f"no detectable difference (n = {comparison.n})"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
