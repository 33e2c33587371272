"""How many seeds a comparison needs, from the spread of its paired differences (statsmodels power).

Pilot -> power analysis -> sample size (Colas, Sigaud, Oudeyer 2018): with the standard
deviation sd of the per-seed paired difference (observed, or a pilot suite's), a one-sided
paired t-test at level a detects a true difference ``min_effect`` with 80 % power after
``seeds_to_detect`` seeds (``statsmodels.stats.power.TTestPower``), and TOST at level a shows
equivalence within +-m, when the variants do not differ, after ``seeds_to_show_equivalence``
(its power taken as P(lower test rejects) + P(upper test rejects) - 1, a lower bound, from the
same noncentral t).

The level a is per hypothesis: alpha over the number of hypotheses of the metric's family
(Bonferroni, Holm's first step: conservative) and, for a suite run until decided, the alpha of
its last look. Costs are the runs' measured times (training + final evaluation, as recorded in
``result.json``), per variant.
"""

from __future__ import annotations

import math

__all__ = ["POWER", "cost_text", "minutes", "seeds_to_detect", "seeds_to_show_equivalence", "tost_power"]

POWER = 0.8
LIMIT = 10_000  # beyond this many seeds, "not within reach" rather than a number


def _power_larger(effect_size: float, n: int, level: float) -> float:
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=effect_size, nobs=n, alpha=level, alternative="larger"))


def _smallest(n_from: int, ok) -> int | None:
    """The smallest n in [n_from, LIMIT] with ok(n) (ok monotone in n), else None."""
    low, high = max(n_from, 2), LIMIT
    if not ok(high):
        return None
    while low < high:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid + 1
    return low


def seeds_to_detect(sd: float, effect: float, level: float, power: float = POWER) -> int | None:
    """Seeds for a one-sided paired t-test at ``level`` to detect a difference ``effect`` with ``power``."""
    if not (sd > 0 and effect > 0 and 0 < level < 1):
        return None
    return _smallest(2, lambda n: _power_larger(effect / sd, n, level) >= power)


def tost_power(sd: float, margin: float, n: int, level: float, true_diff: float = 0.0) -> float:
    """A lower bound of TOST's power to show |difference| < margin when it is ``true_diff``."""
    if n < 2:
        return 0.0
    upper = _power_larger((margin - true_diff) / sd, n, level)
    lower = _power_larger((margin + true_diff) / sd, n, level)
    return max(0.0, upper + lower - 1.0)


def seeds_to_show_equivalence(sd: float, margin: float, level: float, power: float = POWER, true_diff: float = 0.0) -> int | None:
    """Seeds for TOST at ``level`` to show equivalence within +-margin with ``power``."""
    if not (sd > 0 and margin > abs(true_diff) and 0 < level < 1):
        return None
    return _smallest(2, lambda n: tost_power(sd, margin, n, level, true_diff) >= power)


def cost_text(seconds: float | None, unit: str = "run-minutes") -> str:
    """'27 CPU-minutes', '4.7 CPU-hours' ('unit' names the minutes: CPU-, GPU- or run-minutes)."""
    if seconds is None or not math.isfinite(seconds):
        return f"? {unit}"
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} {unit.replace('minutes', 'hours')}"
    return f"{seconds / 60:.0f} {unit}" if seconds >= 60 else f"{seconds / 60:.1f} {unit}"


def minutes(seconds: float | None) -> str:
    """'12 min', '1.5 h' for a planning line."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{max(seconds / 60, 0.1):.0f} min" if seconds >= 60 else f"{seconds / 60:.1f} min"
