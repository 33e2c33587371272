"""The report's comparison and noise tables, and the notes that say how they were computed.

Rendering only: the numbers are ``strabench.report.verdicts``'s record fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strabench.report.cells import fmt, interval_cell, labelled
from strabench.report.power import POWER, cost_text
from strabench.report.sequential import METHOD
from strabench.report.stats import CI_METHOD_SEEDS

__all__ = ["comparison_frame", "comparison_notes", "noise_frame", "noise_notes"]

Z95 = 1.959963984540054


def verdict_cell(record: dict[str, Any], metric: str) -> str:
    m = metric
    verdict = record[f"{m}_verdict"]
    text = f"equivalent within ±{record[f'{m}_margin']:g}" if verdict == "equivalent" else verdict
    if record.get(f"{m}_sequential") and record.get(f"{m}_look", -1) >= 0 and verdict != "undecided":
        text += f" (look {record[f'{m}_look'] + 1}/{record[f'{m}_looks']})"
    return text + (" ⚠" if record.get(f"{m}_flags") else "")


def _need_cell(record: dict[str, Any], metric: str) -> str:
    m = metric
    if record[f"{m}_verdict"] != "undecided":
        return "—"
    need = record.get(f"{m}_need_seeds")
    if need is None:
        if record.get(f"{m}_min_effect") is None and record.get(f"{m}_margin") is None:
            return "no min_effect set"
        return "no spread yet" if record.get(f"{m}_need_sd") is None else "out of reach"
    cost = record.get(f"{m}_need_seconds")
    if not record.get(f"{m}_need_more"):
        return f"{need} seeds: run"
    return f"{need} seeds" + (f", ~{cost_text(cost, record.get(f'{m}_need_unit') or 'run-minutes')}" if cost else "")


def _p_toward(record: dict[str, Any], metric: str) -> str:
    m = metric
    p_better, p_worse = record.get(f"{m}_p_better"), record.get(f"{m}_p_worse")
    if p_better is None or p_worse is None or record.get(f"{m}_tested_n") is None:
        return "—"
    return fmt(min(p_better, p_worse), 4)


def comparison_frame(baseline: str | None, summary: Sequence[dict[str, Any]], metric: str):
    """Paired comparisons with the baseline for one metric (None when there are none)."""
    import pandas as pd

    compared = [r for r in summary if r.get(f"{metric}_verdict")]
    if not compared:
        return None
    m = metric
    margin = next((r[f"{m}_margin"] for r in compared if r.get(f"{m}_margin") is not None), None)
    rows = []
    for r in compared:
        diff = f"{fmt(r[f'{m}_diff'], 2, True)} {interval_cell(r[f'{m}_diff_ci_low'], r[f'{m}_diff_ci_high'], 2, True)}"
        row = [labelled(r), r[f"{m}_vs"], str(r[f"{m}_pairs"]), diff.strip(), fmt(r[f"{m}_p_improve"], 2), _p_toward(r, m)]
        if margin is not None:
            row.append(fmt(r.get(f"{m}_p_equivalent"), 4) if r.get(f"{m}_tested_n") is not None else "—")
        holm = r.get(f"{m}_p_holm")
        row.append(f"{fmt(holm, 4)} / {r[f'{m}_level']:.3g}" if holm is not None and r.get(f"{m}_level") is not None else "—")
        row += [verdict_cell(r, m), _need_cell(r, m)]
        rows.append(row)
    header = ["variant", "baseline", "paired seeds", f"Δ {metric} [95% CI]", "P(variant > baseline)", "p (one-sided)"]
    if margin is not None:
        header.append(f"p TOST (±{margin:g})")
    header += ["p (Holm) / level", "verdict", f"to decide ({POWER:.0%} power)"]
    return pd.DataFrame(rows, columns=header)


def comparison_notes(baseline: str | None, summary: Sequence[dict[str, Any]], metric: str) -> list[str]:
    m = metric
    compared = [r for r in summary if r.get(f"{m}_verdict")]
    if not compared:
        return []
    first = compared[0]
    margin = first.get(f"{m}_margin")
    lines = [
        f"Paired by seed against `{baseline}` in the same setting; Δ = variant − baseline, mean over the paired seeds "
        f"with a {CI_METHOD_SEEDS.replace('[0, 100]', '[-100, 100]')} (descriptive: not adjusted for the family or for looks).",
        "P(variant > baseline): the probability that a run of the variant scores higher than a run of the baseline, "
        "over all pairs of their finished runs (Mann-Whitney U / (n_a n_b), ties count ½).",
        f"Verdicts: {METHOD}. Family: the {first[f'{m}_hypotheses']} hypotheses of this table's {m} comparisons "
        f"(better, worse{', equivalent within ±' + format(margin, 'g') if margin is not None else ''}), family-wise "
        f"alpha = {first[f'{m}_alpha']:g}. 'p (one-sided)': paired t-test toward Δ's sign"
        + ("; 'p TOST': two one-sided tests of |Δ| < margin" if margin is not None else "")
        + "; 'p (Holm) / level': the deciding (or smallest) Holm-adjusted p and the level it must reach (that of its look). "
        "Full method: docs/statistics.md.",
    ]
    if margin is None:
        lines.append(f"No `equivalence_margin` for {m} in the suite file: 'equivalent' cannot be concluded, "
                     "only better, worse or undecided.")
    undecided = [r for r in compared if r[f"{m}_verdict"] == "undecided"]
    if undecided:
        sources = sorted({str(r[f"{m}_need_source"]) for r in undecided if r.get(f"{m}_need_source")})
        effect = first.get(f"{m}_min_effect")
        goal = []
        if effect is not None:
            goal.append(f"detect a difference of {effect:g}")
        if margin is not None:
            goal.append(f"show equivalence within ±{margin:g} if there is none")
        lines.append(
            f"'to decide': seeds that {' or '.join(goal) or 'decide'} with {POWER:.0%} power (statsmodels TTestPower: "
            "one-sided paired t, TOST), at each hypothesis's Bonferroni share of the look's level, from the per-seed SD of Δ "
            f"({'; '.join(sources) or 'none'}); cost = the seeds still missing x the variant's and the baseline's measured "
            "run times (training + evaluation)."
        )
    for r in compared:
        for flag in r.get(f"{m}_flags") or []:
            lines.append(f"WARNING `{labelled(r)}` vs `{r[f'{m}_vs']}`: {flag}.")
    return lines


def _half(se: float | None) -> str:
    return "—" if se is None else f"±{Z95 * se:.2f}"


def noise_frame(summary: Sequence[dict[str, Any]], metric: str):
    """Where each variant's and each difference's noise comes from (None without per-item scores)."""
    import pandas as pd

    m = metric
    entries = []
    for r in summary:
        if isinstance(r.get(f"{m}_test_se_one_run"), float):
            entries.append((labelled(r), r, f"{m}_"))
        if isinstance(r.get(f"{m}_diff_test_se_one_run"), float):
            entries.append((f"{labelled(r)} − {r[f'{m}_vs']}", r, f"{m}_diff_"))
    if not entries:
        return None
    rows = []
    for label, r, p in entries:
        share = r.get(p + "seed_share")
        knob = "—" if share is None else "more seeds" if share >= 0.5 else "a bigger test set"
        rows.append([
            label, str(r[p + "noise_seeds"]), f"{r[p + 'noise_items']} ({r[p + 'noise_clusters']})",
            fmt(r[p + "test_se_one_run"], 2), fmt(r.get(p + "seed_sd"), 2), fmt(r.get(p + "training_sd"), 2),
            fmt(r.get(p + "test_se_mean"), 2), _half(r.get(p + "se_now")), _half(r.get(p + "se_more_seeds")),
            _half(r.get(p + "se_more_items")), "—" if share is None else f"{100 * share:.0f} %", knob,
        ])
    header = ["score", "seeds", "test items (clusters)", "test-set SE, one run", "SD over seeds", "training SD",
              "test-set SE of the mean", "±95 % now", "2× seeds", "2× test set", "share from training", "buys most"]
    return pd.DataFrame(rows, columns=header)


def noise_notes(summary: Sequence[dict[str, Any]], metric: str) -> list[str]:
    m = metric
    if not any(isinstance(r.get(f"{m}_test_se_one_run"), float) for r in summary):
        reasons = sorted({str(r.get(f"{m}_noise")) for r in summary if isinstance(r.get(f"{m}_noise"), str)} - {"per-item scores"})
        return [f"Where the noise comes from: not split ({'; '.join(reasons) or 'no per-item scores'}): the runs predate "
                "per-item scores (per_item.csv), so only seed-level statistics are shown."]
    return [
        "Where the noise comes from (per-item scores, model y[s, i] = mu + item + seed + item x seed; docs/statistics.md): "
        "'test-set SE, one run' = a run's own test-set sampling error (cluster resampling); 'SD over seeds' = the spread of "
        "the runs on this test set; 'training SD' = that spread less the item x seed part; 'test-set SE of the mean' = "
        "what generalising to new test items adds to the mean over seeds.",
        "'±95 % now' = 1.96 x the standard error of the mean over seeds for new seeds and new test items; '2× seeds' and "
        "'2× test set' = the same with twice the seeds or a test set twice as large; 'share from training' = the part "
        "of today's variance that more seeds remove.",
    ]
