"""Comparisons with the baseline, decided: the report's verdict fields, seed plans and verdict lines.

``add_comparisons`` fills, for each variant's group and each metric, the paired comparison
with the baseline's group in the same setting: the descriptive difference (``stats``), the
verdict (``sequential.decide``: one family per metric; a run-until-decided design's own
comparisons form their family with its looks), where the noise comes from (``noise``, from
per-item scores where the runs stored them) and, while undecided, how many seeds would decide
and what they would cost (``power``).

``verdict_line(record, metric)`` / ``verdict_lines(results)`` render one comparison as one
readable line (the public API of terminal views, ``make demo`` included): never a bare
difference without what it means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from strabench.report.cells import labelled
from strabench.report.counting import did_not_learn
from strabench.report.noise import NoiseSplit, align_items, split_noise
from strabench.report.per_item import ItemScores, read_per_item
from strabench.report.power import POWER, cost_text, seeds_to_detect, seeds_to_show_equivalence
from strabench.report.sequential import UNDECIDED, VERDICTS, Design, decide, fixed_design, required_level
from strabench.report.stats import ALPHA, compare_paired, finite

if TYPE_CHECKING:
    from strabench.report.suite_results import SuiteResults

__all__ = ["add_comparisons", "pilot_spread", "verdict_line"]

SETTING_KEYS = ("setting", "data", "profile", "train_input", "device", "data_seed")


@dataclass(frozen=True)
class Analysis:
    """How a suite's comparisons are decided: read from its plan.json and sequential.json."""

    alpha: float
    margins: Mapping[str, float]
    min_effects: Mapping[str, float]
    pilot: str
    design: dict[str, Any] | None  # sequential.json, if the suite ran until decided

    @classmethod
    def of(cls, results: "SuiteResults", through_look: int | None = None) -> "Analysis":
        """The suite's settings; ``through_look`` keeps a design's looks up to that one only."""
        from strabench.suite.adaptive import read_design

        design = read_design(results.directory)
        if design is not None and through_look is not None:
            design = {**design, "looks": design["looks"][: through_look + 1], "alphas": design["alphas"][: through_look + 1],
                      "planned_looks": len(design["looks"])}
        meta = results.meta
        alpha = meta.get("alpha")
        alpha = float(alpha) if finite(alpha) and 0 < alpha < 0.5 else ALPHA
        margins = _amounts(meta.get("equivalence_margin"))
        effects = _amounts(meta.get("min_effect"))
        pilot = meta.get("pilot") if isinstance(meta.get("pilot"), str) else ""
        return cls(alpha, margins, effects, pilot, design)

    def min_effect(self, metric: str) -> float | None:
        """The difference to detect: the suite's ``min_effect``, else its equivalence margin."""
        return self.min_effects.get(metric, self.margins.get(metric))


def _amounts(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if finite(v) and v > 0}


# --- per-item scores ----------------------------------------------------------------------------


class ItemCache:
    """Each run's per-item scores as this summary uses them, and the problems of the files it read
    (for the notes). A file is read once per loaded suite: ``store`` is ``SuiteResults.per_item``."""

    def __init__(self, store: dict[str, Any] | None = None) -> None:
        self.store: dict[str, Any] = {} if store is None else store
        self.scores: dict[str, ItemScores | None] = {}
        self.problems: list[str] = []

    def get(self, row: Mapping[str, Any]) -> ItemScores | None:
        where = row.get("run_dir")
        if not where or row.get("status") != "finished":
            return None
        if where not in self.scores:
            metrics = row.get("metrics") or {}
            key = f"{where}\n{json.dumps(metrics, sort_keys=True, default=str)}"  # the metrics say which columns are read
            if key not in self.store:
                self.store[key] = read_per_item(Path(where), metrics)
            self.scores[where], problems = self.store[key]
            self.problems.extend(problems)
        return self.scores[where]


def _item_matrix(rows_by_seed: Mapping[int, Mapping[str, Any]], seeds: Sequence[int], metric: str,
                 cache: ItemCache, minus: Mapping[int, Mapping[str, Any]] | None = None) -> tuple[np.ndarray, tuple[str, ...]] | str:
    """(seeds, items) per-item scores of a group (minus the baseline's, paired), or why not."""
    stacked = []
    for seed in seeds:
        scores = cache.get(rows_by_seed[seed])
        other = cache.get(minus[seed]) if minus is not None else None
        if scores is None or metric not in scores.scores or (minus is not None and (other is None or metric not in other.scores)):
            return "no per-item scores"
        values = scores.scores[metric]
        if other is not None:
            if other.items != scores.items:
                return "the variant's and the baseline's runs were scored on different test items"
            values = values - other.scores[metric]
        stacked.append((scores.items, scores.clusters, values))
    aligned = align_items(stacked)
    return aligned


def noise_of(rows_by_seed: Mapping[int, Mapping[str, Any]], metric: str, cache: ItemCache,
             minus: Mapping[int, Mapping[str, Any]] | None = None) -> NoiseSplit | str:
    """The noise split of a group's score (or of its paired difference to ``minus``), or why not."""
    seeds = sorted(s for s in rows_by_seed if minus is None or s in minus)
    seeds = [s for s in seeds if finite((rows_by_seed[s].get("metrics") or {}).get(metric))
             and (minus is None or finite((minus[s].get("metrics") or {}).get(metric)))]
    if not seeds:
        return "no finished seeds"
    aligned = _item_matrix(rows_by_seed, seeds, metric, cache, minus)
    if isinstance(aligned, str):
        return aligned
    matrix, clusters = aligned
    if len(set(clusters)) < 2:
        return "the per-item scores hold a single cluster: the test set cannot be resampled"
    return split_noise(matrix, clusters)


def noise_record(split: NoiseSplit | str) -> dict[str, Any]:
    """A NoiseSplit as the flat numbers a record carries (standard errors in metric units)."""
    if isinstance(split, str):
        return {"noise": split}
    projected = split.projected()
    return {
        "noise": "per-item scores", "noise_seeds": split.seeds, "noise_items": split.items, "noise_clusters": split.clusters,
        "test_se_one_run": math.sqrt(split.within_run_var),
        "seed_sd": math.sqrt(split.per_seed_var) if split.per_seed_var is not None else None,
        "training_sd": math.sqrt(split.training_var) if split.training_var is not None else None,
        "test_se_mean": math.sqrt(split.item_var) if split.item_var is not None else None,
        "se_now": projected["now"], "se_more_seeds": projected["more_seeds"], "se_more_items": projected["more_items"],
        "seed_share": split.seed_share,
    }


# --- the pilot ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """The per-seed standard deviation of a paired difference, and where it came from."""

    sd: float
    pairs: int
    source: str


def pilot_spread(pilot: "SuiteResults", variant: str, metric: str) -> Spread | None:
    """The paired spread of ``variant`` vs the pilot's baseline (by variant name and seed)."""
    groups: dict[tuple[str, str], dict[int, float]] = {}  # (variant, setting) -> {seed: score}
    for row in pilot.rows:
        seed = row.get("seed")
        value = (row.get("metrics") or {}).get(metric)
        if row.get("status") == "finished" and isinstance(seed, int) and finite(value):
            groups.setdefault((row["variant"], str(row.get("group") or "")), {}).setdefault(seed, float(value))

    def largest(name: str) -> dict[int, float]:  # a pilot folder may hold several settings of a variant
        return max((g for (v, _), g in groups.items() if v == name), key=len, default={})

    base = largest(pilot.baseline or "")
    mine = largest(variant)
    comparison = compare_paired(mine, base)
    if comparison.n < 2 or not comparison.std_diff:
        return None
    return Spread(comparison.std_diff, comparison.n, f"pilot {pilot.directory} ({comparison.n} pairs)")


def _load_pilot(path: str, load: Callable[[Path], "SuiteResults"] | None) -> "SuiteResults | None":
    from strabench.errors import StrabenchError

    if not path or load is None or not Path(path).is_dir():
        return None
    try:
        return load(Path(path))
    except StrabenchError:
        return None


def run_seconds(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean measured time of a finished run: training + final evaluation (``result.json``'s
    ``eval_time_s``, where the run's folder is at hand)."""
    from strabench.io import read_json_object

    times = []
    for row in rows:
        if row.get("status") != "finished" or not finite(row.get("train_time_s")):
            continue
        evaluation = row.get("eval_time_s")
        if evaluation is None and row.get("run_dir"):
            evaluation = (read_json_object(Path(row["run_dir"]) / "result.json") or {}).get("eval_time_s")
        times.append(float(row["train_time_s"]) + (float(evaluation) if finite(evaluation) and evaluation > 0 else 0.0))
    return sum(times) / len(times) if times else None


def minutes_label(rows: Sequence[Mapping[str, Any]]) -> str:
    devices = {str(r.get("device") or "") for r in rows if r.get("status") == "finished"}
    if devices and all(d.startswith("cuda") for d in devices):
        return "GPU-minutes"
    if devices and all(d == "cpu" for d in devices):
        return "CPU-minutes"
    return "run-minutes"


# --- deciding -----------------------------------------------------------------------------------


def _setting(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in SETTING_KEYS)


def add_comparisons(summary: list[dict[str, Any]], results: "SuiteResults",
                    load: Callable[[Path], "SuiteResults"] | None = None, through_look: int | None = None) -> list[str]:
    """Each group against the baseline's group in the same setting, for every metric (see the
    module doc). ``load`` reads the suite's pilot results folder (``tables.load_suite_results``).
    Returns lines for the notes (problems with per-item files, the design)."""
    analysis = Analysis.of(results, through_look)
    baseline = results.baseline
    cache = ItemCache(results.per_item)
    pilot = _load_pilot(analysis.pilot, load)
    design = analysis.design
    pairs = []
    for record in summary:
        if record["variant"] == baseline:
            continue
        base = next((r for r in summary if r["variant"] == baseline and _setting(r) == _setting(record)), None)
        if base is not None:
            pairs.append((record, base))
    in_design = [(r, b) for r, b in pairs if _in_design(r, b, design)]
    fixed = [(r, b) for r, b in pairs if not any(r is x and b is y for x, y in in_design)]
    for metric in results.metrics:
        # A fixed design's family: the comparisons that can be tested (two or more paired seeds);
        # one with a single pair is shown undecided outside it, one with none not at all.
        paired = [(r, b) for r, b in fixed if _pairs(r, b, metric) >= 1]
        testable = [(r, b) for r, b in paired if _pairs(r, b, metric) >= 2]
        for family, sequential in ((in_design, True), (testable, False)):
            if family:
                _decide_family(family, metric, analysis, sequential, pilot, cache, len(family if sequential else paired))
        for one in (x for x in paired if _pairs(*x, metric) == 1):
            _decide_family([one], metric, analysis, False, pilot, cache, len(paired))
        for record in summary:
            rows = record["rows_by_seed"]
            split = noise_of(rows, metric, cache) if rows else "no finished seeds"
            record.update({f"{metric}_{k}": v for k, v in noise_record(split).items()})
        for record, base in pairs:
            if record.get(f"{metric}_verdict") is not None:
                split = noise_of(record["rows_by_seed"], metric, cache, minus=base["rows_by_seed"])
                record.update({f"{metric}_diff_{k}": v for k, v in noise_record(split).items()})
    notes = sorted(set(cache.problems))
    if design is not None and in_design:
        notes.insert(0, _design_note(design))
    from strabench.suite.adaptive import DESIGN_JSON

    if design is None and (results.directory / DESIGN_JSON).exists():
        notes.insert(0, f"WARNING {results.directory / DESIGN_JSON} cannot be read: the verdicts below treat every seed as "
                        "planned up front, which is not valid for seeds added until decided; restore the file")
    return notes


def _pairs(record: Mapping[str, Any], base: Mapping[str, Any], metric: str) -> int:
    mine, theirs = record[f"{metric}_by_seed"], base[f"{metric}_by_seed"]
    return sum(1 for s in mine if s in theirs)


def _in_design(record: Mapping[str, Any], base: Mapping[str, Any], design: Mapping[str, Any] | None) -> bool:
    if design is None:
        return False
    groups = design.get("groups") if isinstance(design.get("groups"), dict) else {}
    return (record["variant"] in (design.get("variants") or []) and groups.get(record["variant"]) == record.get("group")
            and groups.get(design.get("baseline")) == base.get("group"))


def _design_note(design: Mapping[str, Any]) -> str:
    order, looks = design["seed_order"], design["looks"]
    rounds = [r for r in design.get("rounds", [])]
    added = order[looks[0]: looks[max(r["look"] for r in rounds)]] if rounds else []
    stop = design.get("stop") or {}
    ended = {"decided": "every comparison decided", "max seeds": "max seeds reached", "budget": "budget spent"}.get(stop.get("reason"), "")
    looks_text = ", ".join(str(n) for n in looks)
    alphas = ", ".join(f"{a:.4f}" for a in design["alphas"])
    return (f"Run until decided (`sequential.json`): looks after {looks_text} seeds at alpha {alphas}; "
            f"{len(rounds)} look(s) run; seeds {order[:looks[0]]} planned up front"
            + (f", seeds {added} added adaptively" if added else "") + (f"; stopped: {ended}" if ended else "") + ".")


def _decide_family(family: Sequence[tuple[dict, dict]], metric: str, analysis: Analysis, sequential: bool,
                   pilot: "SuiteResults | None", cache: ItemCache, planned: int) -> None:
    """One metric's family: decide every comparison together, then fill each record.
    ``planned``: the comparisons seeds are planned for (the family once every one is testable)."""
    if sequential:
        d = analysis.design
        assert d is not None
        order = list(d["seed_order"])
        design = Design(tuple(d["looks"]), tuple(float(a) for a in d["alphas"]), float(d.get("alpha", analysis.alpha)), d["looks"][-1])
    else:
        order = sorted({s for r, b in family for s in r[f"{metric}_by_seed"] if s in b[f"{metric}_by_seed"]})
        design = fixed_design(len(order), analysis.alpha)
    margin = analysis.margins.get(metric)
    diffs = np.full((1, len(family), max(len(order), 1)), np.nan)
    tested = np.zeros((1, len(family), len(design.looks)), dtype=bool)
    for c, (record, base) in enumerate(family):
        mine, theirs = record[f"{metric}_by_seed"], base[f"{metric}_by_seed"]
        for j, seed in enumerate(order):
            if seed in mine and seed in theirs:
                diffs[0, c, j] = mine[seed] - theirs[seed]
        for k, n_k in enumerate(design.looks):
            if sequential:
                done = [s in record["seed_status"] and s in base["seed_status"] for s in order[:n_k]]
                tested[0, c, k] = all(done)
            else:
                tested[0, c, k] = True
    decisions = decide(diffs, design, margin, tested) if order else None
    per = 3 if margin is not None else 2
    hypotheses = len(family) * per
    for c, (record, base) in enumerate(family):
        comparison = compare_paired(record[f"{metric}_by_seed"], base[f"{metric}_by_seed"])
        m = metric
        record[f"{m}_vs"] = base["variant"]
        record[f"{m}_pairs"] = comparison.n
        record[f"{m}_diff"] = comparison.mean_diff
        record[f"{m}_diff_sd"] = comparison.std_diff
        record[f"{m}_diff_ci_low"], record[f"{m}_diff_ci_high"] = comparison.ci_low, comparison.ci_high
        record[f"{m}_diff_ci_clipped"] = comparison.clipped
        record[f"{m}_p_improve"] = comparison.p_improve
        record[f"{m}_margin"] = margin
        record[f"{m}_min_effect"] = analysis.min_effect(m)
        record[f"{m}_alpha"] = design.alpha
        record[f"{m}_hypotheses"] = hypotheses
        record[f"{m}_sequential"] = sequential
        record[f"{m}_looks"] = len(design.looks)
        kind, look = UNDECIDED, -1
        if decisions is not None:
            kind, look = int(decisions.verdict[0, c]), int(decisions.look[0, c])
            testable = look >= 0 and decisions.n[0, c] >= 2 and not decisions.degenerate[0, c]
            for name in ("p_better", "p_worse", "p_equivalent", "p_holm", "level"):
                value = float(getattr(decisions, name)[0, c])
                record[f"{m}_{name}"] = value if testable and math.isfinite(value) else None
            record[f"{m}_tested_n"] = int(decisions.n[0, c]) if testable else None
        else:
            for name in ("p_better", "p_worse", "p_equivalent", "p_holm", "level"):
                record[f"{m}_{name}"] = None
            record[f"{m}_tested_n"] = None
        record[f"{m}_verdict"] = VERDICTS[kind]
        record[f"{m}_look"] = look
        flags = []
        if comparison.degenerate:
            flags.append("zero spread: every paired difference is the same, so the seeds vary nothing and no t-test is possible")
        for who in (record, base):
            if did_not_learn(who, m):
                flags.append(f"{who['variant']} did not learn ({m} {who[f'{m}_mean']:.2f} <= untrained {who[f'{m}_untrained_mean']:.2f})")
        record[f"{m}_flags"] = flags
        _add_need(record, base, m, analysis, design, sequential, max(planned, len(family)) * per, pilot)


def _add_need(record: dict[str, Any], base: Mapping[str, Any], metric: str, analysis: Analysis, design: Design,
              sequential: bool, hypotheses: int, pilot: "SuiteResults | None") -> None:
    """Seeds that would decide an undecided comparison with 80 % power, and their cost."""
    m = metric
    for key in ("need_sd", "need_source", "need_detect", "need_equivalence", "need_seeds", "need_more", "need_seconds"):
        record[f"{m}_{key}"] = None
    if record[f"{m}_verdict"] != "undecided":
        return
    spread = None
    if record[f"{m}_pairs"] >= 2 and record[f"{m}_diff_sd"]:
        spread = Spread(record[f"{m}_diff_sd"], record[f"{m}_pairs"], f"this suite ({record[f'{m}_pairs']} pairs)")
    if pilot is not None:
        other = pilot_spread(pilot, record["variant"], m)
        if other is not None and (spread is None or other.pairs > spread.pairs):
            spread = other
    if spread is None:
        record[f"{m}_need_source"] = "no spread yet (fewer than 2 paired seeds and no pilot)"
        return
    record[f"{m}_need_sd"], record[f"{m}_need_source"] = spread.sd, spread.source
    level = required_level(design, hypotheses // (3 if analysis.margins.get(m) is not None else 2),
                           analysis.margins.get(m) is not None) if sequential else analysis.alpha / max(hypotheses, 1)
    effect, margin = analysis.min_effect(m), analysis.margins.get(m)
    detect = seeds_to_detect(spread.sd, effect, level) if effect else None
    equivalence = seeds_to_show_equivalence(spread.sd, margin, level) if margin else None
    record[f"{m}_need_detect"], record[f"{m}_need_equivalence"] = detect, equivalence
    needs = [n for n in (detect, equivalence) if n is not None]
    if not needs:
        return
    seeds = max(needs)
    record[f"{m}_need_seeds"] = seeds
    more = max(0, seeds - max(record[f"{m}_pairs"], 0))
    record[f"{m}_need_more"] = more
    mine, theirs = run_seconds(record["rows"]), run_seconds(base["rows"])
    if mine is None and pilot is not None:
        mine = run_seconds([r for r in pilot.rows if r["variant"] == record["variant"]])
    if theirs is None and pilot is not None:
        theirs = run_seconds([r for r in pilot.rows if r["variant"] == base["variant"]])
    if mine is not None and theirs is not None:
        record[f"{m}_need_seconds"] = more * (mine + theirs)
    record[f"{m}_need_unit"] = minutes_label(record["rows"] or (pilot.rows if pilot else []))


# --- the verdict line ---------------------------------------------------------------------------


def _signed(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def verdict_line(record: Mapping[str, Any], metric: str) -> str:
    """One comparison as one honest, readable line, e.g.

    ``stra vs resnet50, mAP: undecided after 1 seed (-1.06, one seed has no interval); about
    12 seeds (~110 CPU-minutes) would decide with 80 % power``.
    """
    m = metric
    head = f"{labelled(record)} vs {record.get(f'{m}_vs', '?')}, {m}"
    verdict, n = record.get(f"{m}_verdict"), record.get(f"{m}_pairs") or 0
    if verdict is None or n == 0:
        return f"{head}: no paired seeds yet"
    diff = record.get(f"{m}_diff")
    low, high = record.get(f"{m}_diff_ci_low"), record.get(f"{m}_diff_ci_high")
    shown = f"{_signed(diff)} [{_signed(low)}, {_signed(high)}]" if low is not None else f"{_signed(diff)}, one seed has no interval"
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    at = ""
    if record.get(f"{m}_sequential") and record.get(f"{m}_look", -1) >= 0:
        at = f", look {record[f'{m}_look'] + 1} of {record[f'{m}_looks']}"
    p = record.get(f"{m}_p_holm")
    evidence = f"Holm p {p:.3g} <= {record[f'{m}_level']:.3g}{at}" if p is not None and verdict != "undecided" else ""
    if verdict in ("better", "worse"):
        text = f"{head}: {verdict}, {shown} over {seeds} ({evidence})"
    elif verdict == "equivalent":
        text = f"{head}: equivalent within ±{record[f'{m}_margin']:g}, {shown} over {seeds} (TOST, {evidence})"
    else:
        text = f"{head}: undecided after {seeds} ({shown})"
        need = record.get(f"{m}_need_seeds")
        if need is not None and not record.get(f"{m}_need_more"):
            text += (f"; the {need} seeds planned for {POWER:.0%} power are run: the difference is likely below "
                     f"{record[f'{m}_min_effect']:g}" if record.get(f"{m}_min_effect") is not None else
                     f"; the {need} seeds planned for {POWER:.0%} power are run")
            text += (", and without an equivalence_margin in the suite 'equivalent' cannot be concluded"
                     if record.get(f"{m}_margin") is None else "; more seeds still narrow the interval")
        elif need is not None:
            cost = record.get(f"{m}_need_seconds")
            extra = f", ~{cost_text(cost, record.get(f'{m}_need_unit') or 'run-minutes')}" if cost is not None and cost > 0 else ""
            what = _target(record, m)
            text += f"; about {need} seeds ({record[f'{m}_need_more']} more{extra}) would {what} with {POWER:.0%} power"
        elif record.get(f"{m}_need_source") and record.get(f"{m}_need_sd") is None:
            text += f"; {record[f'{m}_need_source']}: run 2 or more seeds to plan"
        elif record.get(f"{m}_min_effect") is None and record.get(f"{m}_margin") is None:
            text += "; set min_effect or equivalence_margin in the suite to plan seeds"
    flags = record.get(f"{m}_flags") or []
    if flags:
        text += "; WARNING: " + "; ".join(flags)
    return text


def _target(record: Mapping[str, Any], m: str) -> str:
    detect, equivalence = record.get(f"{m}_need_detect"), record.get(f"{m}_need_equivalence")
    effect, margin = record.get(f"{m}_min_effect"), record.get(f"{m}_margin")
    if detect is not None and equivalence is not None:
        return f"decide whether the difference is 0 (equivalent within ±{margin:g}) or {effect:g}+"
    if detect is not None:
        return f"detect a difference of {effect:g}"
    return f"show equivalence within ±{margin:g} if there is no difference"
