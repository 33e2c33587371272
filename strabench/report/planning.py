"""How many seeds, and how long: the statement ``run --dry-run`` prints before anything runs.

For every comparison of the suite's primary metric that is not decided yet: the per-seed SD of
the paired difference (this suite's results where it has two or more paired seeds, else the
``pilot`` suite's, whichever has more pairs), the seeds for 80 % power to detect ``min_effect``
and to show equivalence within ``equivalence_margin`` (``strabench.report.power``), and the
cost of the missing seeds in the minutes the runs took (this suite's, else the pilot's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.report.power import POWER, cost_text, seeds_to_detect, seeds_to_show_equivalence
from strabench.report.sequential import Design, describe_design

if TYPE_CHECKING:
    from strabench.suite.config import SuiteConfig

__all__ = ["SeedPlan", "plan_seeds", "plan_lines"]


@dataclass(frozen=True)
class SeedPlan:
    """One comparison's seed plan (None where it cannot be computed, with ``why``)."""

    variant: str
    baseline: str
    metric: str
    verdict: str  # as decided so far ("undecided" before any run)
    have: int  # paired seeds so far
    sd: float | None
    source: str
    level: float
    detect: int | None
    equivalence: int | None
    variant_seconds: float | None  # one run of the variant, as measured (training + evaluation)
    baseline_seconds: float | None
    unit: str

    @property
    def seconds_per_seed(self) -> float | None:
        if self.variant_seconds is None or self.baseline_seconds is None:
            return None
        return self.variant_seconds + self.baseline_seconds

    @property
    def seeds(self) -> int | None:
        needs = [n for n in (self.detect, self.equivalence) if n is not None]
        return max(needs) if needs else None

    @property
    def more(self) -> int | None:
        return None if self.seeds is None else max(0, self.seeds - self.have)

    @property
    def seconds(self) -> float | None:
        return None if self.more is None or self.seconds_per_seed is None else self.more * self.seconds_per_seed


def plan_seeds(config: "SuiteConfig", suite_dir: Path, *, design: Design | None = None,
               variants: list[str] | None = None) -> list[SeedPlan]:
    """The seed plan of each compared variant (``variants``: those selected, default all)."""
    from strabench.report.tables import is_suite_dir, load_suite_results, summarise
    from strabench.report.verdicts import minutes_label, pilot_spread, run_seconds
    from strabench.suite.config import PRIMARY_METRIC

    metric = PRIMARY_METRIC[config.task]
    baseline = config.baseline
    compared = [v.name for v in config.variants if v.name != baseline and (variants is None or v.name in variants)]
    margin, effect = config.equivalence_margin.get(metric), config.min_effect.get(metric)
    effect = effect if effect is not None else margin
    per = 3 if margin is not None else 2
    level = (design.alphas[-1] if design is not None else config.alpha) / max(len(compared) * per, 1)
    records: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    if suite_dir.is_dir() and is_suite_dir(suite_dir):
        results = load_suite_results(suite_dir)
        rows = results.rows
        for record in summarise(results, paper=False):
            if record.get(f"{metric}_vs") == baseline:
                records.setdefault(record["variant"], record)
    pilot = None
    if config.pilot and Path(config.pilot).is_dir():
        pilot = load_suite_results(Path(config.pilot))
    plans = []
    for variant in compared:
        record = records.get(variant, {})
        have = int(record.get(f"{metric}_pairs") or 0)
        sd, source = None, "no spread yet: fewer than 2 paired seeds here" + ("" if config.pilot else " and no pilot in the suite")
        if have >= 2 and record.get(f"{metric}_diff_sd"):
            sd, source = float(record[f"{metric}_diff_sd"]), f"this suite ({have} pairs)"
        if pilot is not None:
            other = pilot_spread(pilot, variant, metric)
            if other is not None and (sd is None or other.pairs > have):
                sd, source = other.sd, other.source
        elif config.pilot and sd is None:
            source += f" (pilot {config.pilot} not found)"
        detect = seeds_to_detect(sd, effect, level) if sd and effect else None
        equivalence = seeds_to_show_equivalence(sd, margin, level) if sd and margin else None
        times = [run_seconds([r for r in rows if r["variant"] == name]) for name in (variant, baseline)]
        if pilot is not None:
            times = [t if t is not None else run_seconds([r for r in pilot.rows if r["variant"] == name])
                     for t, name in zip(times, (variant, baseline))]
        plans.append(SeedPlan(variant, baseline, metric, record.get(f"{metric}_verdict") or "undecided", have, sd, source,
                              level, detect, equivalence, times[0], times[1], minutes_label(rows or (pilot.rows if pilot else []))))
    return plans


def plan_lines(config: "SuiteConfig", suite_dir: Path, *, design: Design | None = None,
               variants: list[str] | None = None) -> list[str]:
    """The dry-run statement: one line per comparison, then the total and the design."""
    plans = plan_seeds(config, suite_dir, design=design, variants=variants)
    if not plans:
        return []
    metric = plans[0].metric
    margin, effect = config.equivalence_margin.get(metric), config.min_effect.get(metric, config.equivalence_margin.get(metric))
    lines = []
    for plan in plans:
        head = f"{plan.variant} vs {plan.baseline}, {metric}: {plan.verdict}" + (f" after {plan.have} seed{'s' if plan.have != 1 else ''}" if plan.have else "")
        if plan.verdict != "undecided":
            lines.append(head)
            continue
        if plan.sd is None:
            lines.append(f"{head}; {plan.source}")
            continue
        goals = []
        if plan.detect is not None:
            goals.append(f"{plan.detect} to detect {effect:g}")
        if plan.equivalence is not None:
            goals.append(f"{plan.equivalence} to show equivalence within ±{margin:g}")
        if not goals:
            lines.append(f"{head}; SD of the difference {plan.sd:.2f} ({plan.source}); "
                         + ("set min_effect or equivalence_margin in the suite to plan seeds" if effect is None and margin is None
                            else f"more than {10_000} seeds: out of reach"))
            continue
        cost = f", about {cost_text(plan.seconds, plan.unit)}" if plan.seconds is not None else ", cost unknown (no run timed yet)"
        lines.append(f"{head}; SD of the difference {plan.sd:.2f} ({plan.source}); seeds for {POWER:.0%} power at level "
                     f"{plan.level:.4g}: {', '.join(goals)}; {plan.more} more{cost}")
    undecided = [p for p in plans if p.verdict == "undecided" and p.seeds is not None]
    if undecided:
        most = max(p.seeds for p in undecided)  # type: ignore[type-var]
        total = _total_seconds(undecided)
        lines.append(f"all undecided comparisons: up to {most} seeds per variant"
                     + (f", about {cost_text(total, undecided[0].unit)} more of runs" if total is not None else ""))
        if design is not None and most > design.max_seeds:
            lines.append(f"the largest need ({most} seeds) exceeds the design's {design.max_seeds}: expect comparisons to stay undecided")
    if design is not None:
        lines.append(f"run until decided: {describe_design(design)}; seeds planned at the last look's level")
    return lines


def _total_seconds(plans: list[SeedPlan]) -> float | None:
    """Each variant's missing runs, plus the shared baseline's for the largest need."""
    if any(p.seconds_per_seed is None for p in plans):
        return None
    variants = sum((p.more or 0) * p.variant_seconds for p in plans)  # type: ignore[operator]
    baseline = max((p.more or 0) * p.baseline_seconds for p in plans)  # type: ignore[operator]
    return variants + baseline
