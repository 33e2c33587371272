"""Statistics of a results table: seeds as samples, paired differences to a baseline.

What a row of an ablation table can honestly claim, and how it is computed (scipy.stats); the
full account, with the decision rules built on these numbers, is ``docs/statistics.md``.

* **Per group** (one variant in one setting, over its distinct seeds): n, mean, sample std and
  a 95 % Student-t interval of the mean (``scipy.stats.t``). One seed has no interval. Scores
  are percentages, so an interval is clipped to [0, 100] (``clipped`` says it was); identical
  scores give a zero-width interval, flagged ``degenerate``.
* **Paired difference to the baseline.** Seed s of a variant is compared with seed s of the
  baseline: both saw the same dataset (``data_seed``) and drew their initialisation, data order
  and augmentation from the same seed. Mean difference with a 95 % t-interval over the pairs
  (clipped to [-100, 100]).
* **P(variant > baseline)**: the probability that a run of the variant scores higher than a
  run of the baseline, estimated over *every* pair of their runs (all finished seeds of each,
  paired or not) with the Mann-Whitney U statistic, ties counting one half: U / (n_a n_b), as
  rliable's "probability of improvement".

The verdicts (better / worse / equivalent / undecided) are ``strabench.report.sequential``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALPHA", "BOUNDS", "CI_METHOD_SEEDS", "Comparison", "GroupStats", "compare_paired", "finite", "group_stats",
    "probability_of_improvement", "t_interval",
]

ALPHA = 0.05
#: Every headline metric is a percentage.
BOUNDS = (0.0, 100.0)
CI_METHOD_SEEDS = "95 % Student-t interval over seeds, clipped to the metric's range [0, 100]"


def finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class GroupStats:
    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    clipped: bool = False  # the t-interval left the metric's range and was cut to it
    degenerate: bool = False  # n >= 2 identical values: a zero-width interval


def t_interval(mean: float, std: float, n: int, bounds: tuple[float, float] | None = BOUNDS,
               confidence: float = 0.95) -> tuple[float, float, bool]:
    """The t-interval of a mean, clipped to ``bounds``; (low, high, clipped)."""
    from scipy import stats

    if std == 0.0:
        low = high = mean
    else:
        low, high = (float(v) for v in stats.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n)))
    if bounds is None:
        return low, high, False
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    return clipped_low, clipped_high, (clipped_low, clipped_high) != (low, high)


def group_stats(values: Sequence[float | None], bounds: tuple[float, float] | None = BOUNDS) -> GroupStats:
    """n, mean, sample std and the 95 % t-interval of the mean (None where n is too small).

    Only finite values count (callers say which were left out: ``tables`` flags them).
    """
    x = np.asarray([v for v in values if finite(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return GroupStats(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return GroupStats(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    if std <= 1e-12 * max(float(np.abs(x).max()), 1.0):  # identical up to rounding (a + 2 - a is not always 2)
        std = 0.0  # as report.sequential judges zero spread
    low, high, clipped = t_interval(mean, std, n, bounds)
    return GroupStats(n, mean, std, low, high, clipped, std == 0.0)


def probability_of_improvement(variant: Sequence[float], baseline: Sequence[float]) -> float | None:
    """P(a run of the variant scores higher than a run of the baseline), over all n_a x n_b
    pairs of runs, ties one half: the Mann-Whitney U of the variant divided by n_a n_b."""
    from scipy import stats

    a = [float(v) for v in variant if finite(v)]
    b = [float(v) for v in baseline if finite(v)]
    if not a or not b:
        return None
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").statistic) / (len(a) * len(b))


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline: paired by seed, plus P(variant > baseline) over all runs."""

    n: int
    seeds: tuple[int, ...]
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_improve: float | None  # over all pairs of runs (see the module doc)
    std_diff: float | None = None
    clipped: bool = False
    degenerate: bool = False  # every paired difference identical (zero spread): no t-test is possible


def compare_paired(variant: Mapping[int, float], baseline: Mapping[int, float]) -> Comparison:
    """The paired description of two {seed: score} maps over their common seeds."""
    seeds = tuple(sorted(s for s in variant if s in baseline and finite(variant[s]) and finite(baseline[s])))
    p_improve = probability_of_improvement(list(variant.values()), list(baseline.values()))
    n = len(seeds)
    if n == 0:
        return Comparison(0, (), None, None, None, p_improve)
    diff = np.array([variant[s] - baseline[s] for s in seeds], dtype=np.float64)
    if n == 1:
        return Comparison(1, seeds, float(diff[0]), None, None, p_improve)
    d = group_stats(list(diff), bounds=(-BOUNDS[1], BOUNDS[1]))
    return Comparison(n, seeds, d.mean, d.ci_low, d.ci_high, p_improve, d.std, d.clipped, d.degenerate)
