"""Verdicts with family-wise error control: better / worse / equivalent within +-m / undecided.

One engine decides a fixed design (every seed run up front: one look) and a suite run until
decided (seeds added in rounds: several looks). The method, its proof and its citations are in
``docs/statistics.md``; in short:

* **Hypotheses.** For each comparison c (variant minus baseline, paired by seed) of one metric,
  up to three one-sided null hypotheses: "not better" (mean difference <= 0), "not worse"
  (>= 0) and, where the suite gives an equivalence margin m for the metric, "not equivalent"
  (|difference| >= m). Rejecting one is the verdict better, worse or equivalent within +-m
  (equivalence wins when both it and a direction are rejected: the difference is real but
  smaller than what the suite declared to matter). Paired t-tests: one-sided for the
  directions, two one-sided tests (TOST) for equivalence, each as statsmodels computes them.
* **Family.** Every hypothesis of every comparison of one metric (what one table of the report
  claims). Holm's step-down correction over the family: valid whatever the dependence between
  the tests (they share the baseline's runs). Directions are separate hypotheses, so a wrong
  sign is an error the correction covers too.
* **Looks.** Seeds are added in rounds fixed in advance (``schedule``); the look after round k
  tests the first n_k seeds of the design's seed order at level alpha_k, with alpha_1 + ... +
  alpha_K = alpha (``spending``, the Kim-DeMets power family alpha * t^2 of the fraction t =
  n_k / max_seeds). By the union bound, P(any wrong verdict at any look) <= sum alpha_k = alpha,
  whatever the correlation between looks: Bonferroni alpha-spending, conservative and exact.
  A comparison decided at a look is not tested again (its p-values count as 1 later, which
  keeps every p-value valid); one whose data did not grow to n_k is not tested at look k.

statsmodels' ``multipletests`` forces a full garbage collection on each call (about 0.2 s
here), too slow for thousands of simulated suites, so Holm is applied vectorised below and
tested equal to it; the t-tests are scipy's t distribution on numpy arrays, tested equal to
``statsmodels.stats.weightstats.ttost_paired`` and ``scipy.stats.ttest_1samp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BETTER", "Decisions", "Design", "EQUIVALENT", "METHOD", "ROUNDS", "SPENDING_RHO", "UNDECIDED", "VERDICTS", "WORSE",
    "decide", "fixed_design", "holm_adjust", "paired_tests", "schedule", "sequential_design", "spending",
]

UNDECIDED, BETTER, WORSE, EQUIVALENT = 0, 1, 2, 3
VERDICTS = ("undecided", "better", "worse", "equivalent")
SPENDING_RHO = 2.0
ROUNDS = 3
METHOD = ("paired t-tests (one-sided for better / worse, TOST for equivalence), Holm over every hypothesis of "
          "the metric's comparisons; with seeds added in rounds, Bonferroni alpha-spending over the looks "
          "(Kim-DeMets power family, alpha * t^2)")


@dataclass(frozen=True)
class Design:
    """When the comparisons are tested: after the first ``looks[k]`` seeds, at level ``alphas[k]``."""

    looks: tuple[int, ...]
    alphas: tuple[float, ...]
    alpha: float
    max_seeds: int

    @property
    def sequential(self) -> bool:
        return len(self.looks) > 1


def fixed_design(n_seeds: int, alpha: float) -> Design:
    """Every seed run up front, tested once at the full alpha."""
    return Design((max(n_seeds, 0),), (alpha,), alpha, max(n_seeds, 0))


def spending(t: float, alpha: float, rho: float = SPENDING_RHO) -> float:
    """The alpha spent once a fraction ``t`` of the seeds has been run: alpha * t^rho."""
    return alpha * min(max(t, 0.0), 1.0) ** rho


def schedule(first: int, max_seeds: int, rounds: int = ROUNDS) -> tuple[int, ...]:
    """The seed counts of the looks: ``first``, then ``rounds`` equal steps up to ``max_seeds``.

    Few looks, because under Bonferroni spending each look costs alpha: three rounds after the
    first look let a large effect stop early and keep most of alpha for the last look.
    """
    if first < 1:
        raise ValueError(f"the first look needs at least one seed, got {first}")
    if max_seeds <= first:
        return (first,)
    steps = [first + round(j * (max_seeds - first) / rounds) for j in range(rounds + 1)]
    return tuple(sorted(set(steps)))


def sequential_design(first: int, max_seeds: int, alpha: float, rounds: int = ROUNDS) -> Design:
    looks = schedule(first, max_seeds, rounds)
    top = max(max_seeds, first)
    spent = [spending(n / top, alpha) for n in looks]
    spent[-1] = alpha if looks[-1] >= top else spent[-1]
    alphas = tuple(b - a for a, b in zip([0.0, *spent[:-1]], spent))
    return Design(looks, alphas, alpha, top)


def holm_adjust(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values along the last axis (as ``multipletests(method="holm")``):
    sorted ascending, p_(j) * (m - j + 1), running maximum, capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    m = p.shape[-1]
    if m == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adjusted_sorted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    adjusted = np.empty_like(adjusted_sorted)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=-1)
    return adjusted


@dataclass(frozen=True)
class PairedTests:
    """Per-comparison statistics of the first n seeds (arrays of one shape)."""

    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    p_better: np.ndarray
    p_worse: np.ndarray
    p_equivalent: np.ndarray  # 1 where there is no margin
    testable: np.ndarray  # >= 2 pairs with a non-zero spread
    degenerate: np.ndarray  # >= 2 pairs, all differences identical


def paired_tests(diffs: np.ndarray, margin: float | None) -> PairedTests:
    """One-sided paired t-tests and TOST along the last axis (NaN = a missing pair)."""
    from scipy import stats

    x = np.asarray(diffs, dtype=np.float64)
    valid = np.isfinite(x)
    n = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(valid, x, 0.0).sum(axis=-1) / np.maximum(n, 1), np.nan)
        squares = np.where(valid, (x - mean[..., None]) ** 2, 0.0).sum(axis=-1)
        std = np.where(n > 1, np.sqrt(squares / np.maximum(n - 1, 1)), np.nan)
        # a spread below the float noise of the values themselves is no spread
        scale = np.where(valid, np.abs(x), 0.0).max(axis=-1, initial=0.0)
        degenerate = (n > 1) & (std <= 1e-12 * np.maximum(scale, 1.0))
        testable = (n > 1) & ~degenerate
        se = np.where(testable, std / np.sqrt(np.maximum(n, 1)), np.nan)
        df = np.maximum(n - 1, 1)
        t = mean / se
        p_better = np.where(testable, stats.t.sf(t, df), 1.0)
        p_worse = np.where(testable, stats.t.sf(-t, df), 1.0)
        if margin is None:
            p_equivalent = np.ones_like(p_better)
        else:
            p_low = stats.t.sf((mean + margin) / se, df)  # H0: difference <= -m
            p_high = stats.t.cdf((mean - margin) / se, df)  # H0: difference >= +m
            p_equivalent = np.where(testable, np.maximum(p_low, p_high), 1.0)
    return PairedTests(n, mean, std, p_better, p_worse, p_equivalent, testable, degenerate)


@dataclass(frozen=True)
class Decisions:
    """Each comparison's verdict and the numbers behind it, arrays of shape (suites, comparisons).

    ``look`` is the index of the deciding look, or of the last look the comparison was tested
    at while undecided (-1: never tested); the statistics are those of that look.
    """

    verdict: np.ndarray
    look: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    p_better: np.ndarray
    p_worse: np.ndarray
    p_equivalent: np.ndarray
    p_holm: np.ndarray  # Holm-adjusted p of the deciding hypothesis (undecided: the smallest), at that look
    level: np.ndarray  # the family-wise level of that look
    degenerate: np.ndarray


def decide(
    diffs: np.ndarray, design: Design, margin: float | None = None, tested: np.ndarray | None = None,
) -> Decisions:
    """Verdicts for paired differences ``diffs`` of shape (suites, comparisons, seeds) in the
    design's seed order (NaN: a missing pair). ``tested[b, c, k]`` says whether comparison c
    of suite b has its data for look k (default: wherever the seeds exist). The comparisons
    of one suite are one family (one metric)."""
    x = np.asarray(diffs, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"diffs must have shape (suites, comparisons, seeds), got {x.shape}")
    suites, comparisons, seeds = x.shape
    looks = len(design.looks)
    if tested is None:
        tested = np.broadcast_to(np.array([n <= seeds for n in design.looks]), (suites, comparisons, looks))
    shape = (suites, comparisons)
    verdict = np.zeros(shape, dtype=np.int64)
    look_of = np.full(shape, -1, dtype=np.int64)
    out = {k: np.full(shape, np.nan) for k in ("n", "mean", "std", "p_better", "p_worse", "p_equivalent", "p_holm", "level")}
    degenerate = np.zeros(shape, dtype=bool)
    hypotheses = 3 if margin is not None else 2
    for k, (n_k, alpha_k) in enumerate(zip(design.looks, design.alphas)):
        active = tested[:, :, k] & (verdict == UNDECIDED)
        if not active.any():
            continue
        res = paired_tests(x[:, :, :n_k], margin)
        family = [np.where(active, res.p_better, 1.0), np.where(active, res.p_worse, 1.0)]
        if hypotheses == 3:
            family.append(np.where(active, res.p_equivalent, 1.0))
        adjusted = holm_adjust(np.concatenate(family, axis=1)).reshape(suites, hypotheses, comparisons)
        rejected = adjusted <= alpha_k
        now = np.zeros(shape, dtype=np.int64)
        now = np.where(rejected[:, 1], WORSE, now)
        now = np.where(rejected[:, 0], BETTER, now)
        if hypotheses == 3:
            now = np.where(rejected[:, 2], EQUIVALENT, now)
        now = np.where(active, now, UNDECIDED)
        index = np.clip(now - 1, 0, hypotheses - 1)
        deciding = np.take_along_axis(adjusted, index[:, None, :], axis=1)[:, 0, :]
        p_holm = np.where(now != UNDECIDED, deciding, adjusted.min(axis=1))
        for name, value in (("n", res.n), ("mean", res.mean), ("std", res.std), ("p_better", res.p_better),
                            ("p_worse", res.p_worse), ("p_equivalent", res.p_equivalent), ("p_holm", p_holm)):
            out[name] = np.where(active, value, out[name])
        out["level"] = np.where(active, alpha_k, out["level"])
        degenerate = np.where(active, res.degenerate, degenerate)
        look_of = np.where(active, k, look_of)
        verdict = np.where(active, now, verdict)
    if hypotheses == 2:
        out["p_equivalent"] = np.full(shape, np.nan)
    return Decisions(verdict, look_of, degenerate=degenerate, **out)


def required_level(design: Design, comparisons: int, margin: bool) -> float:
    """The per-hypothesis level of the last look under Bonferroni: what planning assumes."""
    hypotheses = comparisons * (3 if margin else 2)
    return design.alphas[-1] / max(hypotheses, 1)


def describe_design(design: Design) -> str:
    """'looks after 3, 7, 11, 15 seeds at alpha 0.0020, 0.0089, 0.0160, 0.0231'."""
    if not design.sequential:
        return f"one look after {design.looks[0]} seed(s) at alpha {design.alpha:g}"
    looks = ", ".join(str(n) for n in design.looks)
    alphas = ", ".join(f"{a:.4f}" for a in design.alphas)
    return f"looks after {looks} seeds at alpha {alphas} (sum {math.fsum(design.alphas):.4g})"
