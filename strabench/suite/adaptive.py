"""Run a suite until its comparisons are decided: seeds added in rounds fixed in advance.

``strabench run SUITE --until-decided`` runs the suite's seeds (the first look), then adds
seeds in rounds up to ``max_seeds``, stopping as soon as every comparison has a verdict or the
budget of run-minutes is spent. What makes this valid, and not "test after every seed", is that
the design is fixed before the first run and recorded in ``<suite>/sequential.json``: the seed
order, the seed counts at which the comparisons are looked at, and the alpha each look spends
(``strabench.report.sequential``; ``docs/statistics.md``). A resumed or repeated command must
name the same design (else it is refused in one line); everything else -- which comparisons are
decided, which variants still need seeds -- is recomputed from the runs on disk, so an
interrupted round resumes by re-running the same command.

This module is the suite layer's half: planning and executing rounds. It never computes a
verdict: the caller passes ``open_variants``, which reads the results and says which variants
still have an undecided comparison after a look.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.io import read_json_object
from strabench.suite.config import SuiteConfig
from strabench.suite.runner import SuiteOutcome
from strabench.suite.plan import RunPlan, plan_runs

__all__ = ["DESIGN_JSON", "AdaptiveDesign", "AdaptiveOutcome", "read_design", "round_plan", "run_until_decided", "seed_order"]

DESIGN_JSON = "sequential.json"


def seed_order(initial: Sequence[int], max_seeds: int) -> tuple[int, ...]:
    """The suite's seeds first (as given), then the smallest unused seeds, ``max_seeds`` in all."""
    order = list(dict.fromkeys(initial))
    candidate = 0
    while len(order) < max_seeds:
        if candidate not in order:
            order.append(candidate)
        candidate += 1
    return tuple(order)


@dataclass(frozen=True)
class AdaptiveDesign:
    """The fixed part of a run-until-decided design (what ``sequential.json`` must agree on)."""

    seed_order: tuple[int, ...]
    looks: tuple[int, ...]  # seed counts n_1 < ... < n_K
    alphas: tuple[float, ...]  # family-wise level per look
    alpha: float
    method: str
    baseline: str
    variants: tuple[str, ...]  # the variants compared with the baseline
    metric: str  # the metric whose comparisons must be decided to stop early
    margins: dict[str, float] = field(default_factory=dict)

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "alpha": self.alpha, "max_seeds": self.max_seeds, "seed_order": list(self.seed_order),
            "looks": list(self.looks), "alphas": list(self.alphas), "baseline": self.baseline,
            "variants": list(self.variants), "metric": self.metric, "margins": dict(self.margins),
        }


def read_design(suite_dir: Path) -> dict[str, Any] | None:
    """``sequential.json`` as recorded (None: the suite has no run-until-decided design).

    Checked for shape, since the report trusts its numbers: a damaged file is None, not a crash.
    """
    data = read_json_object(Path(suite_dir) / DESIGN_JSON)
    if data is None:
        return None
    looks, alphas, order = data.get("looks"), data.get("alphas"), data.get("seed_order")
    ints = lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)  # noqa: E731
    numbers = isinstance(alphas, list) and all(isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a < 1 for a in alphas)
    if not (ints(looks) and ints(order) and numbers and looks and len(looks) == len(alphas)
            and list(looks) == sorted(set(looks)) and looks[-1] <= len(order) and looks[0] >= 1
            and math.fsum(alphas) <= 0.5 and isinstance(data.get("baseline"), str)):
        return None
    rounds = data.get("rounds") if isinstance(data.get("rounds"), list) else []
    data["rounds"] = [r for r in rounds if isinstance(r, dict) and isinstance(r.get("look"), int)
                      and isinstance(r.get("variants"), list) and all(isinstance(v, str) for v in r["variants"])]
    return data


def check_design(suite_dir: Path, design: AdaptiveDesign) -> dict[str, Any] | None:
    """The recorded state if ``suite_dir`` already has this design (None: it has none yet);
    a one-line ConfigError if it has another or a damaged one."""
    recorded = read_design(suite_dir)
    if recorded is None:
        if (Path(suite_dir) / DESIGN_JSON).exists():
            raise ConfigError(f"{Path(suite_dir) / DESIGN_JSON}: damaged; move it away only if you start the design afresh in a new --out")
        return None
    wanted = design.as_dict()
    differs = [k for k, v in wanted.items() if recorded.get(k) != v]
    if differs:
        what = ", ".join(f"{k} {recorded.get(k)!r} (now {wanted[k]!r})" for k in differs[:3])
        raise ConfigError(
            f"{Path(suite_dir) / DESIGN_JSON}: this suite's run-until-decided design was fixed as {what}; "
            "a design cannot change once its first look is run (that would void its error control): "
            "rerun with the same suite file and options, or use a new --out"
        )
    return recorded


def _start(suite_dir: Path, design: AdaptiveDesign) -> dict[str, Any]:
    """Record the design, or check that the recorded one is the same; the recorded state."""
    from strabench.io import atomic_write_json, ensure_directory

    recorded = check_design(suite_dir, design)
    if recorded is not None:
        return recorded
    ensure_directory(suite_dir)
    state = {**design.as_dict(), "rounds": [], "stop": None}
    atomic_write_json(Path(suite_dir) / DESIGN_JSON, state)
    return state


@dataclass
class AdaptiveOutcome:
    """How a run-until-decided command ended."""

    design: AdaptiveDesign
    looks_done: int  # looks whose runs all ran
    reason: str  # "decided", "max seeds", "budget", "interrupted", "failed to run", "locked"
    open_variants: set[str]
    outcomes: list[SuiteOutcome]
    spent_s: float

    @property
    def interrupted(self) -> bool:
        return self.reason == "interrupted"


def round_plan(full: RunPlan, design: AdaptiveDesign, rounds: Sequence[dict[str, Any]], look: int) -> RunPlan:
    """The plan of round ``look``: its runs are every design run planned so far (each variant
    with the seeds of the last round it took part in), its selection this round's variants
    with the first ``looks[look]`` seeds. ``full`` plans every variant with those seeds."""
    allowed: dict[str, set[int]] = {}
    for entry in rounds:
        if entry["look"] <= look:
            for variant in entry["variants"]:
                allowed[variant] = set(design.seed_order[: design.looks[entry["look"]]])
    now = set(design.seed_order[: design.looks[look]])
    current = set(next(r["variants"] for r in rounds if r["look"] == look))
    runs = tuple(r for r in full.runs if r.seed in allowed.get(r.variant, set()))
    selected = tuple(r for r in runs if r.variant in current and r.seed in now)
    return dataclasses.replace(full, runs=runs, selected=selected)


def setting_groups(plan: RunPlan) -> dict[str, str]:
    """Each variant's ``group`` (its training config without the seed), as ``results.csv`` will
    name it: how the report finds the design's runs among every run of the folder."""
    import tomllib

    from strabench.suite.store import group_of
    from strabench.train.config import to_toml

    groups: dict[str, str] = {}
    for spec in plan.runs:
        group = group_of(tomllib.loads(to_toml(spec.config)))
        if group is not None:
            groups.setdefault(spec.variant, group)
    return groups


def spent_seconds(state: dict[str, Any]) -> float:
    """Wall-clock seconds the rounds of this design have run so far (over every session)."""
    return math.fsum(float(r.get("wall_s") or 0.0) for r in state.get("rounds", []))


def seconds_per_run(state: dict[str, Any], plan: RunPlan) -> float | None:
    """Wall-clock seconds a run has taken in this design's rounds; before any round was timed,
    the runs' own measured time (training + evaluation) from their result.json."""
    runs = sum(int(r.get("runs_run") or 0) for r in state.get("rounds", []))
    if runs:
        return spent_seconds(state) / runs
    times = []
    for spec in plan.runs:
        result = read_json_object(plan.run_dir(spec) / "result.json") or {}
        value = [result.get(k) for k in ("train_time_s", "eval_time_s")]
        numbers = [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0]
        if result.get("status") == "finished" and numbers:
            times.append(sum(numbers))
    return sum(times) / len(times) if times else None


def run_until_decided(
    config: SuiteConfig,
    out: Path | str,
    design: AdaptiveDesign,
    *,
    execute: Callable[[RunPlan], SuiteOutcome],
    open_variants: Callable[[Path, int], set[str]],
    plan_options: dict[str, Any] | None = None,
    max_minutes: float | None = None,
    keep_checkpoints: str = "last",
    on_round: Callable[[int, AdaptiveDesign, set[str], float], None] | None = None,
    on_stop: Callable[[str], None] | None = None,
) -> AdaptiveOutcome:
    """Run look after look until ``open_variants(suite_dir, look)`` is empty, the design's
    last look is done, or the next round would take the rounds' wall-clock time past
    ``max_minutes`` (estimated from the time a run has taken so far; recorded per round in
    ``sequential.json``, so the budget holds across interrupted and resumed sessions).

    ``execute`` runs a plan (``run_suite`` or ``executors.run_parallel``); ``plan_options`` go
    to ``plan_runs`` (profile, data, device). A round is recorded in ``sequential.json`` before
    it runs, so a resumed command runs the same variants.
    """
    from strabench.io import atomic_write_json

    options = dict(plan_options or {})
    suite_dir = Path(out) / config.name
    state = _start(suite_dir, design)
    outcomes: list[SuiteOutcome] = []
    done = 0
    plan: RunPlan | None = None
    open_now = set(design.variants)
    start_s = time.monotonic()
    reason = "max seeds"
    for look, n_seeds in enumerate(design.looks):
        recorded = next((r for r in state["rounds"] if r["look"] == look), None)
        if recorded is None:
            if look > 0:
                open_now = open_variants(suite_dir, look - 1)
                if not open_now:
                    reason = "decided"
                    break
                if max_minutes is not None and plan is not None:
                    spent = spent_seconds(state)
                    per_run = seconds_per_run(state, plan)
                    runs = (n_seeds - design.looks[look - 1]) * len({design.baseline, *open_now})
                    estimate = runs * per_run if per_run is not None else 0.0
                    if spent + estimate > max_minutes * 60:
                        reason = "budget"
                        if on_stop:
                            on_stop(f"budget: {spent / 60:.0f} of {max_minutes:g} minutes spent in rounds; the next round "
                                    f"({runs} runs) would take about {estimate / 60:.0f} more")
                        break
            recorded = {"look": look, "n_seeds": n_seeds, "variants": [v for v in [design.baseline, *design.variants]
                                                                        if v == design.baseline or v in open_now],
                        "planned_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            state["rounds"] = [*state["rounds"], recorded]
            state["stop"] = None
            atomic_write_json(suite_dir / DESIGN_JSON, state)
        open_now = set(recorded["variants"]) - {design.baseline}
        full = plan_runs(config, out, seeds=design.seed_order[:n_seeds], **options)
        plan = dataclasses.replace(round_plan(full, design, state["rounds"], look), keep_checkpoints=keep_checkpoints)
        groups = setting_groups(full)
        if state.get("groups") and state["groups"] != groups:
            changed = sorted(v for v in groups if state["groups"].get(v) != groups[v])
            raise ConfigError(
                f"{suite_dir / DESIGN_JSON}: the training settings of {', '.join(changed)} changed since this design's first "
                "look (the runs would not be seeds of one setting); restore the suite file and options, or use a new --out"
            )
        if not state.get("groups"):
            state["groups"] = groups
            atomic_write_json(suite_dir / DESIGN_JSON, state)
        if on_round:
            on_round(look, design, open_now, spent_seconds(state))
        outcome = execute(plan)
        outcomes.append(outcome)
        recorded["wall_s"] = float(recorded.get("wall_s") or 0.0) + outcome.elapsed_s
        recorded["runs_run"] = int(recorded.get("runs_run") or 0) + sum(1 for s in outcome.attempted.values() if s != "locked")
        state["rounds"] = [recorded if r["look"] == look else r for r in state["rounds"]]
        atomic_write_json(suite_dir / DESIGN_JSON, state)
        if outcome.interrupted:
            return AdaptiveOutcome(design, done, "interrupted", open_now, outcomes, time.monotonic() - start_s)
        if outcome.locked:
            return AdaptiveOutcome(design, done, "locked", open_now, outcomes, time.monotonic() - start_s)
        done = look + 1
    else:
        open_now = open_variants(suite_dir, len(design.looks) - 1)
        reason = "decided" if not open_now else "max seeds"
    state["stop"] = {"reason": reason, "after_look": done - 1, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(suite_dir / DESIGN_JSON, state)
    return AdaptiveOutcome(design, done, reason, open_now, outcomes, time.monotonic() - start_s)
