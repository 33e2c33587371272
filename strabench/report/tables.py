# Over 600 lines on purpose: loading a results folder and summarising it into the paper's table are one job (each column's rules sit beside the others').
"""Suite results -> tables a reviewer can trust: seeds with intervals, paired comparisons, paper refs.

* Rows come from the suite's results store (``strabench.suite.store``): every run ever finished
  in the directory, whatever plan produced it. Runs are grouped by their setting (the training
  config without the seed: variant, model, overrides, data, profile, input, device ...); a
  group is one row of the table, aggregated over its seeds (``strabench.report.stats``).
* A group counts each seed once: run folders that repeat a seed of the same setting (a copied
  ``*.bak`` folder, a run re-measured under another hash) are left out and named in the notes,
  as are finished runs whose metric is not a finite number, and runs that two merged copies of
  a suite record with different numbers.
* Every other variant is compared with the suite's baseline variant *in the same setting*,
  seed against seed, and each comparison ends in one verdict: better, worse, equivalent within
  the suite's margin, or undecided (``strabench.report.verdicts``, ``docs/statistics.md``).
* The paper's numbers (``strabench.paper.PAPER``) only appear in columns labelled "paper", and
  only where our setting is the paper's (same model, no overrides, the paper's input; for
  accuracies also the real dataset and the paper's profile); elsewhere "—" and a note why.
* A run that failed shows as "failed", one not yet run as "pending": never as a number.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.io import read_json_object
from strabench.metrics.resampling import CI_METHOD
from strabench.paper import PAPER, PAPER_COMPLEXITY_INPUT, PAPER_SETTINGS
from strabench.report.cells import fmt, interval_cell, labelled
from strabench.report.counting import STATUS_RANK, dedupe_seeds, did_not_learn
from strabench.report.stats import CI_METHOD_SEEDS, group_stats
from strabench.report.suite_results import PRIMARY_METRICS, SuiteResults  # noqa: F401 - part of this module's API
from strabench.suite.store import read_results_csv  # noqa: F401 - part of this module's API

PAPER_TITLE = 'Zhang, Li, Shen, Liu, "Structure-Regularized Attention for Deformable Object Representation"'
MAC_LABELS = {"paper": "paper conv.", "fvcore": "fvcore", "ptflops": "ptflops"}
_STATUS_RANK = STATUS_RANK
SETTING_KEYS = ("setting", "data", "profile", "train_input", "device", "data_seed")
SETTING_LABELS = {"setting": "setting", "data": "data", "profile": "profile", "train_input": "train input", "device": "device",
                  "data_seed": "data seed"}


# --- reading ------------------------------------------------------------------------------------


def is_suite_dir(path: Path) -> bool:
    from strabench.suite.runner import RESULTS_CSV, RUN_JSON
    from strabench.suite.plan import PLAN_JSON

    return (path / PLAN_JSON).is_file() or (path / RESULTS_CSV).is_file() or any(path.glob(f"*/{RUN_JSON}"))


def find_suite_dirs(paths: Sequence[Path | str]) -> list[Path]:
    """Each path is a suite directory or a folder of them (``results/``)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"results directory not found: {path}")
        if is_suite_dir(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and is_suite_dir(p))
        if not children:
            raise ConfigError(f"{path}: no suite results here (no plan.json, results.csv or run directories)")
        found.extend(children)
    return found


def load_suite_results(directory: Path) -> SuiteResults:
    """Every run stored in the directory (``stored_rows``); a lone results.csv when there are none."""
    from strabench.suite.runner import RESULTS_CSV
    from strabench.suite.plan import LATENCY_JSON, PLAN_JSON
    from strabench.suite.store import run_dirs, stored_rows

    plan = read_json_object(directory / PLAN_JSON) or {}
    meta = plan.get("suite") if isinstance(plan.get("suite"), dict) else {}
    latency = read_json_object(directory / LATENCY_JSON)
    planned = [r for r in plan.get("runs") or [] if isinstance(r, dict)] if isinstance(plan.get("runs"), list) else []
    if run_dirs(directory) or planned:
        rows = stored_rows(directory, planned=[{**r, "suite": meta.get("name", directory.name)} for r in planned])
        listed = meta.get("variants") if isinstance(meta.get("variants"), list) else []  # a damaged plan.json: no order
        variants = [v.get("name") for v in listed if isinstance(v, dict) and isinstance(v.get("name"), str)]
        order = {name: i for i, name in enumerate(variants)}  # the suite's order first
        listed = meta.get("settings") if isinstance(meta.get("settings"), list) else []
        levels = {s.get("name"): i for i, s in enumerate(listed) if isinstance(s, dict)}  # then its [[settings]]' order
        rows.sort(key=lambda r: (order.get(r["variant"], len(order)), levels.get(r.get("setting"), len(levels))))
    elif (directory / RESULTS_CSV).is_file():
        rows = read_results_csv(directory / RESULTS_CSV)
    else:
        rows = []
    name = meta.get("name") or (rows[0]["suite"] if rows and rows[0].get("suite") else directory.name)
    for row in rows:  # where the run's own files are (per-item scores, timings): merged copies differ
        if (directory / str(row["run_id"])).is_dir():
            row["run_dir"] = str(directory / str(row["run_id"]))
    return SuiteResults(str(name), directory, rows, dict(meta), latency)


def merge_results(results: Iterable[SuiteResults]) -> list[SuiteResults]:
    """Same-named suites from several directories (copied shards) become one; per run the most
    advanced status wins (finished > failed > partial > pending). A run finished in two copies
    with different numbers keeps the first copy's and is named in the suite's ``warnings``:
    the copies disagree, and a reader must know which was shown."""
    merged: dict[str, SuiteResults] = {}
    for item in results:
        if item.name not in merged:
            merged[item.name] = SuiteResults(item.name, item.directory, list(item.rows), dict(item.meta), item.latency, list(item.warnings))
            continue
        target = merged[item.name]
        index = {row["run_id"]: i for i, row in enumerate(target.rows)}
        for row in item.rows:
            i = index.get(row["run_id"])
            if i is None:
                index[row["run_id"]] = len(target.rows)
                target.rows.append(row)
            elif _STATUS_RANK.get(row["status"], 0) > _STATUS_RANK.get(target.rows[i]["status"], 0):
                target.rows[i] = row
            elif row["status"] == target.rows[i]["status"] == "finished" and row["metrics"] != target.rows[i]["metrics"]:
                kept = target.rows[i]
                differ = sorted(k for k in {*row["metrics"], *kept["metrics"]} if row["metrics"].get(k) != kept["metrics"].get(k))
                shown = ", ".join(f"{k} {_fmt(kept['metrics'].get(k))} vs {_fmt(row['metrics'].get(k))}" for k in differ[:2])
                target.warnings.append(
                    f"run `{row['run_id']}` is finished in {target.directory} and in {item.directory} with different numbers "
                    f"({shown}): kept {target.directory}'s; the copies are not the same run"
                )
        target.meta = target.meta or dict(item.meta)
        target.latency = target.latency or item.latency
    return list(merged.values())


# --- where the paper's numbers apply ------------------------------------------------------------


def _task_of(model: str) -> str | None:
    from strabench.errors import StrabenchError
    from strabench.registry import model_info

    try:
        return model_info(model).tasks[0]
    except StrabenchError:
        return None


def paper_accuracy_mismatch(record: dict[str, Any]) -> str | None:
    """Why the paper's accuracies do not apply to this group (None: they do)."""
    model = record["model"]
    if model not in PAPER or not PAPER[model].metrics:
        return "the paper has no accuracy for this model"
    setting = PAPER_SETTINGS.get(_task_of(model) or "")
    if setting is None:
        return "no published setting for this task"
    reasons = []
    if record.get("overrides"):
        reasons.append(f"overrides {record['overrides']}")
    data = str(record.get("data") or "")
    if data.split(":")[0] != setting.dataset:
        reasons.append(f"data {data.split(':')[0] or '?'}, not {setting.dataset_label}")
    if record.get("profile") != setting.profile:
        reasons.append(f"profile {record.get('profile') or '?'}, not the paper's recipe")
    paper_input = "x".join(map(str, setting.input))
    if record.get("train_input") and record["train_input"] != paper_input:
        reasons.append(f"input {record['train_input']}, not {paper_input}")
    return "; ".join(reasons) or None


def paper_complexity_mismatch(record: dict[str, Any]) -> str | None:
    """Why the paper's params / GMACs do not apply to this group (None: they do)."""
    ref = PAPER.get(record["model"])
    if ref is None or (ref.params_m is None and ref.gmacs is None):
        return "the paper has no complexity for this model"
    reasons = []
    if record.get("overrides"):
        reasons.append(f"overrides {record['overrides']}")
    paper_input = "x".join(map(str, PAPER_COMPLEXITY_INPUT))
    if record.get("input") and record["input"] != paper_input:
        reasons.append(f"input {record['input']}, not {paper_input}")
    return "; ".join(reasons) or None


def _paper_metric(model: str, metric: str) -> float | None:
    ref = PAPER.get(model)
    if ref is None:
        return None
    for name, value in ref.metrics.items():
        if name.lower() == metric.lower():
            return value
    return None


# --- aggregating --------------------------------------------------------------------------------


def _groups(results: SuiteResults) -> list[list[dict[str, Any]]]:
    """Rows grouped by (variant, setting): seeds of one configuration, in first-seen order. The
    suite's ``[[settings]]`` name is part of the key: a run not yet started has no config to
    take its group from, and pending runs of three settings are not one setting's copies."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in results.rows:
        groups.setdefault((row["variant"], row.get("setting") or "", row.get("group") or ""), []).append(row)
    return list(groups.values())


def _setting(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in SETTING_KEYS)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _first(rows: Sequence[dict[str, Any]], key: str) -> Any:
    return next((r.get(key) for r in rows if r.get(key) not in (None, "")), None)


def _seed(row: dict[str, Any]) -> int | None:
    seed = row.get("seed")
    return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None


class Summary(list):
    """``summarise``'s records (a list), with ``problems``: the lines the notes owe the reader
    about what was not counted (duplicate seeds, unusable per-item files) and how it was decided."""

    def __init__(self, records: Iterable[dict[str, Any]] = (), problems: Sequence[str] = ()) -> None:
        super().__init__(records)
        self.problems = list(problems)


def summarise(results: SuiteResults, *, paper: bool = True, through_look: int | None = None) -> "Summary":
    """One numeric record per group: runs by status, per-metric statistics, complexity, latency,
    paper references where the setting matches, and the paired comparison with the baseline.

    Each seed counts once (``dedupe_seeds``); each metric's n counts the finished seeds with a
    finite value (``<metric>_missing`` lists the others). ``through_look``: decide a run-until-
    decided design as it stood after that look (what the rounds loop asks)."""
    from strabench.report.verdicts import add_comparisons

    metrics = results.metrics
    summary: list[dict[str, Any]] = []
    problems: list[str] = []
    for all_rows in _groups(results):
        rows, duplicates = dedupe_seeds(all_rows)
        problems += duplicates
        finished = [r for r in rows if r["status"] == "finished"]
        model = rows[0]["model"]
        record: dict[str, Any] = {
            "variant": rows[0]["variant"],
            "model": model,
            "overrides": _first(rows, "overrides") or "",
            **{key: _first(finished or rows, key) for key in SETTING_KEYS},
            "group": rows[0].get("group"),
            "runs": len(rows),
            "finished": len(finished),
            "failed": sum(r["status"] == "failed" for r in rows),
            "pending": sum(r["status"] in ("pending", "partial") for r in rows),
            "duplicates": len(all_rows) - len(rows),
            "seeds": sorted(s for r in finished if (s := _seed(r)) is not None),
            "errors": sorted({r["error"] for r in rows if r.get("error")}),
            "rows": rows,
            "rows_by_seed": {s: r for r in finished if (s := _seed(r)) is not None},
            "seed_status": {s: r["status"] for r in rows if r["status"] in ("finished", "failed") and (s := _seed(r)) is not None},
        }
        for metric in metrics:
            used = [r for r in finished if r["metrics"].get(metric) is not None]
            values = [float(r["metrics"][metric]) for r in used]
            stats = group_stats(values)
            record[f"{metric}_n"], record[f"{metric}_mean"], record[f"{metric}_std"] = stats.n, stats.mean, stats.std
            record[f"{metric}_ci_low"], record[f"{metric}_ci_high"] = stats.ci_low, stats.ci_high
            record[f"{metric}_ci_clipped"], record[f"{metric}_degenerate"] = stats.clipped, stats.degenerate
            record[f"{metric}_missing"] = sorted(s if (s := _seed(r)) is not None else -1 for r in finished if r not in used)
            record[f"{metric}_by_seed"] = {s: float(r["metrics"][metric]) for r in used if (s := _seed(r)) is not None}
            before = [float(r["metrics_untrained"][metric]) for r in finished if r.get("metrics_untrained", {}).get(metric) is not None]
            record[f"{metric}_untrained_mean"] = _mean(before)
            record[f"{metric}_not_learned"] = sorted(
                s for r in used if (u := r.get("metrics_untrained", {}).get(metric)) is not None
                and float(r["metrics"][metric]) <= float(u) and (s := _seed(r)) is not None)
            sizes = sorted({int(r["test_size"][metric]) for r in finished if r.get("test_size", {}).get(metric) is not None})
            record[f"{metric}_test_n"] = sizes[0] if len(sizes) == 1 else (sizes or None)
        measured = [r for r in rows if r.get("params") is not None or r.get("macs_paper") is not None]
        for key in ("params", "macs_paper", "macs_fvcore", "macs_ptflops"):
            record[key] = _mean([float(r[key]) for r in measured if r.get(key) is not None])
        record["train_time_s"] = _mean([float(r["train_time_s"]) for r in finished if r.get("train_time_s") is not None])
        record["input"] = _first(measured, "input")
        _add_latency(record, results, rows)
        if paper:
            _add_paper(record, metrics)
        summary.append(record)
    problems += add_comparisons(summary, results, load=load_suite_results, through_look=through_look)
    return Summary(summary, problems)


def verdict_lines(results: SuiteResults, *, summary: Sequence[dict[str, Any]] | None = None,
                  metric: str | None = None) -> list[str]:
    """One readable line per comparison with the baseline, for ``metric`` (default: the primary
    one), as ``strabench.report.verdicts.verdict_line`` renders it: for terminal views."""
    from strabench.report.verdicts import verdict_line

    metric = metric or results.primary_metric
    if metric is None:
        return []
    summary = summarise(results) if summary is None else summary
    return [verdict_line(r, metric) for r in summary if r.get(f"{metric}_vs")]


def _add_latency(record: dict[str, Any], results: SuiteResults, rows: Sequence[dict[str, Any]]) -> None:
    """The suite's interleaved timing of this variant (latency.json); older runs' own timing else."""
    timed = ((results.latency or {}).get("variants") or {}).get(record["variant"])
    if isinstance(timed, dict):
        ratios = [r for r in timed.get("ratio_rounds") or [] if isinstance(r, (int, float)) and r == r]
        record.update({
            "latency_ms": timed.get("median_ms"), "latency_iqr_ms": timed.get("iqr_ms"),
            "latency_ratio": timed.get("ratio_to_baseline"),
            "latency_ratio_min": min(ratios) if ratios else None, "latency_ratio_max": max(ratios) if ratios else None,
            "latency_rounds": len(ratios), "latency_noisy": bool(timed.get("noisy")),
            "images_per_s": timed.get("images_per_s"), "latency_interleaved": True,
        })
        return
    legacy = [float(r["latency_ms"]) for r in rows if r.get("latency_ms") is not None]
    record.update({
        "latency_ms": _mean(legacy), "latency_iqr_ms": None, "latency_ratio": None, "latency_ratio_min": None,
        "latency_ratio_max": None, "latency_rounds": 0, "latency_noisy": None, "latency_interleaved": False,
        "images_per_s": _mean([float(r["images_per_s"]) for r in rows if r.get("images_per_s") is not None]),
    })


def _add_paper(record: dict[str, Any], metrics: Sequence[str]) -> None:
    ref = PAPER.get(record["model"])
    accuracy_off = paper_accuracy_mismatch(record)
    complexity_off = paper_complexity_mismatch(record)
    record["paper_accuracy_mismatch"], record["paper_complexity_mismatch"] = accuracy_off, complexity_off
    record["paper_tables"] = list(ref.tables) if ref else []
    for metric in metrics:
        published = _paper_metric(record["model"], metric)
        shown = published if accuracy_off is None else None
        mean = record[f"{metric}_mean"]
        record[f"{metric}_paper_published"] = published
        record[f"{metric}_paper"] = shown
        record[f"{metric}_delta"] = None if shown is None or mean is None else mean - shown
    params_ref = ref.params_m if ref and complexity_off is None else None
    gmacs_ref = ref.gmacs if ref and complexity_off is None else None
    record["params_paper_m"], record["gmacs_paper"] = params_ref, gmacs_ref
    record["params_delta_m"] = _delta(record["params"], 1e6, params_ref)
    record["gmacs_delta"] = _delta(record["macs_paper"], 1e9, gmacs_ref)


def _delta(ours: float | None, scale: float, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours / scale - paper


# --- rendering ----------------------------------------------------------------------------------


def _state(record: dict[str, Any]) -> str | None:
    """'failed' / 'pending' when a group has no finished run to show a number for."""
    if record["finished"]:
        return None
    return "failed" if record["failed"] else "pending"


_fmt = fmt
_interval_cell = interval_cell


def _metric_cell(record: dict[str, Any], metric: str) -> str:
    mean, std = record[f"{metric}_mean"], record[f"{metric}_std"]
    if mean is None:
        return _state(record) or "—"
    text = f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"
    return text + (" (did not learn)" if did_not_learn(record, metric) else "")


def _group_interval_cell(record: dict[str, Any], metric: str) -> str:
    text = _interval_cell(record[f"{metric}_ci_low"], record[f"{metric}_ci_high"])
    if record.get(f"{metric}_degenerate"):
        return text + " (zero spread)"
    return text + (" clipped" if record.get(f"{metric}_ci_clipped") else "")


def shown_metrics(results: SuiteResults) -> list[str]:
    """The table's metrics: those the paper reports (and the primary one); all if the paper has none.

    Keeps the markdown readable (rank5/rank10 stay in results.csv and --format csv/json).
    """
    metrics = results.metrics
    cited = [m for m in metrics if m == results.primary_metric or any(_paper_metric(r["model"], m) is not None for r in results.rows)]
    return cited if any(m != results.primary_metric for m in cited) or len(metrics) == 1 else metrics


def _varying(summary: Sequence[dict[str, Any]], key: str) -> bool:
    return len({r.get(key) for r in summary}) > 1


def table_columns(results: SuiteResults, summary: Sequence[dict[str, Any]], *, paper: bool) -> list[tuple[str, Any]]:
    """(header, cell function) pairs: the one place the main table's columns and their order live."""
    columns: list[tuple[str, Any]] = [
        ("variant", labelled),
        ("model", lambda r: f"`{r['model']}`"),
    ]
    if any(r.get("overrides") for r in summary):
        columns.append(("overrides", lambda r: f"`{r['overrides']}`" if r.get("overrides") else "—"))
    for key in SETTING_KEYS:  # settings that differ between groups get a column of their own
        if _varying(summary, key):
            columns.append((SETTING_LABELS[key], lambda r, k=key: "—" if r.get(k) is None else str(r[k])))
    columns.append(("n (seeds)", _runs_cell))
    for metric in shown_metrics(results):
        columns.append((f"{metric} (%)", lambda r, m=metric: _metric_cell(r, m)))
        if any(r.get(f"{metric}_n", 0) > 1 for r in summary):
            columns.append((f"{metric} 95% CI", lambda r, m=metric: _group_interval_cell(r, m)))
        if paper and any(r.get(f"{metric}_paper_published") is not None for r in summary):
            columns.append((f"{metric} paper", lambda r, m=metric: _fmt(r[f"{m}_paper"], 1)))
            columns.append((f"Δ {metric} vs paper", lambda r, m=metric: _fmt(r[f"{m}_delta"], 2, True)))
        if metric == results.primary_metric and any(r.get(f"{metric}_untrained_mean") is not None for r in summary):
            columns.append((f"{metric} untrained", lambda r, m=metric: _fmt(r[f"{m}_untrained_mean"], 2)))
        if metric == results.primary_metric and any(r.get(f"{metric}_test_n") for r in summary):
            columns.append(("test items", lambda r, m=metric: _test_n_cell(r.get(f"{m}_test_n"))))
    if any(r["params"] is not None for r in summary):
        columns.append(("params (M)", lambda r: _fmt(_scaled(r["params"], 1e6), 2) if r["params"] is not None else (_state(r) or "—")))
        if paper and any(PAPER.get(r["model"]) and PAPER[r["model"]].params_m is not None for r in summary):
            columns.append(("params paper (M)", lambda r: _fmt(r["params_paper_m"], 1)))
            columns.append(("Δ params (M)", lambda r: _fmt(r["params_delta_m"], 2, True)))
    for convention, label in MAC_LABELS.items():
        key = f"macs_{convention}"
        if any(r[key] is not None for r in summary):
            columns.append((f"GMACs ({label})", lambda r, k=key: _fmt(_scaled(r[k], 1e9), 3) if r[k] is not None else (_state(r) or "—")))
            if convention == "paper" and paper and any(PAPER.get(r["model"]) and PAPER[r["model"]].gmacs is not None for r in summary):
                columns.append(("GMACs paper", lambda r: _fmt(r["gmacs_paper"], 2)))
                columns.append(("Δ GMACs", lambda r: _fmt(r["gmacs_delta"], 3, True)))
    if any(r.get("latency_ratio") is not None for r in summary):
        columns.append((f"latency ratio to {results.baseline}", _latency_cell))
        columns.append(("ms (this machine)", lambda r: _fmt(r["latency_ms"], 1)))
    elif any(r.get("latency_ms") is not None for r in summary):
        columns.append(("latency ms (one run, not interleaved)", lambda r: _fmt(r["latency_ms"], 1)))
    return columns


def _test_n_cell(value: Any) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else "/".join(map(str, value))


def _latency_cell(record: dict[str, Any]) -> str:
    ratio = record.get("latency_ratio")
    if ratio is None:
        return "—"
    text = f"{ratio:.3f}×"
    low, high = record.get("latency_ratio_min"), record.get("latency_ratio_max")
    if low is not None and high is not None and high > low:
        text += f" ({low:.3f}–{high:.3f})"
    return text + (" NOISY" if record.get("latency_noisy") else "")


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value / scale


def _runs_cell(record: dict[str, Any]) -> str:
    """Distinct seeds: finished / all; then failed, pending, and metrics counted over fewer seeds."""
    text = f"{record['finished']}/{record['runs']}"
    extra = [f"{record['failed']} failed"] if record["failed"] else []
    extra += [f"{record['pending']} pending"] if record["pending"] else []
    extra += [f"{key[:-len('_missing')]} from {record['finished'] - len(value)}" for key, value in record.items()
              if key.endswith("_missing") and value]
    return f"{text} ({', '.join(extra)})" if extra else text


def table_frame(results: SuiteResults, *, paper: bool = True, summary: Sequence[dict[str, Any]] | None = None):
    """The suite's main table as a pandas DataFrame of display strings."""
    import pandas as pd

    summary = summarise(results, paper=paper) if summary is None else summary
    columns = table_columns(results, summary, paper=paper)
    return pd.DataFrame([[cell(r) for _, cell in columns] for r in summary], columns=[h for h, _ in columns])


def comparison_frame(results: SuiteResults, summary: Sequence[dict[str, Any]], metric: str):
    """Paired comparisons with the baseline for one metric (None when there are none)."""
    from strabench.report.verdict_tables import comparison_frame as frame

    return frame(results.baseline, summary, metric)


def runs_frame(results: SuiteResults, metric: str):
    """One line per run: its score with the 95 % test-set interval and the test-set size."""
    import pandas as pd

    counted = {id(r) for group in _groups(results) for r in dedupe_seeds(group)[0]}
    rows = []
    for row in results.rows:
        if row["status"] == "pending":
            continue
        value = row["metrics"].get(metric)
        ci = row.get("metrics_ci", {}).get(metric)
        untrained = row.get("metrics_untrained", {}).get(metric)
        status = str(row["status"] or "—")
        if value is not None and untrained is not None and value <= untrained:
            status += ", did not learn"
        if id(row) not in counted:
            status += ", not counted (a second folder of this seed)"
        missing = "no finite value" if status.startswith("finished") else str(row["status"] or "—")
        rows.append([
            labelled(row), "—" if row.get("seed") is None else str(int(row["seed"])), status,
            _fmt(value, 2) if value is not None else missing,
            _interval_cell(*ci) if ci else ("—" if value is None else "not recorded"),
            str(row.get("test_size", {}).get(metric, "—")),
            _fmt(row.get("metrics_untrained", {}).get(metric), 2),
            _fmt(row.get("train_time_s"), 0),
        ])
    header = ["variant", "seed", "status", f"{metric} (%)", "95% CI (test set)", "test items", "untrained", "train s"]
    return pd.DataFrame(rows, columns=header) if rows else None


def _seeds_run(results: SuiteResults) -> list[int]:
    """The seeds of the runs on disk (plans with other seeds or shards may differ from the suite's)."""
    return sorted({s for r in results.rows if (s := _seed(r)) is not None})


def notes(results: SuiteResults, summary: Sequence[dict[str, Any]], *, paper: bool) -> list[str]:
    """The lines under the main table: what was measured how, and where the paper's numbers apply."""
    lines = []
    settings = []
    for key in SETTING_KEYS:
        values = sorted({str(r[key]) for r in summary if r.get(key) is not None})
        if len(values) == 1:
            settings.append(f"{SETTING_LABELS[key]} `{values[0]}`")
    settings.append(f"seeds {_seeds_run(results)}")
    if results.metrics:
        hidden = [m for m in results.metrics if m not in shown_metrics(results)]
        more = f" ({', '.join(hidden)} in results.csv)" if hidden else ""
        lines.append(f"Ours: {', '.join(settings)}; metrics in %, mean ± sample std over the finished seeds, "
                     f"{CI_METHOD_SEEDS} (one seed: no interval){more}.")
        lines.append("A seed sets initialisation, data order, augmentation and dropout; the dataset is fixed by `data_seed`, "
                     "so seed s of two variants saw the same data and the same random stream.")
    metric = results.primary_metric
    if metric and any(r.get(f"{metric}_untrained_mean") is not None for r in summary):
        lines.append(f"'{metric} untrained': the same networks evaluated before training (mean over seeds); a result near it did not learn.")
    if metric and any(r.get(f"{metric}_test_n") for r in summary):
        lines.append("'test items': the queries (ReID), pairs (verification) or images (classification) a score averages; "
                     "each run's own 95 % test-set interval is in the runs table below.")
    if any(r["params"] is not None or r["macs_paper"] is not None for r in summary):
        inputs = sorted({r["input"] for r in summary if r.get("input")})
        at = f" at input {', '.join(inputs)}" if inputs else ""
        lines.append(
            "Params: all parameters but the training-only classifier. GMACs: multiply-accumulates for one image"
            f"{at}; 'paper conv.' = conv + linear multiply-adds incl. bias, classifier excluded (what the paper calls FLOPs); "
            "fvcore / ptflops = those counters extended to the attention ops."
        )
    lines += _latency_notes(results, summary)
    if any(r.get("overrides") for r in summary):
        lines.append("Overrides: block settings changed from the registered model's (`overrides` column).")
    for record in summary:
        if record["errors"]:
            lines.append(f"Failed `{record['variant']}`: {'; '.join(record['errors'])}")
    lines += _counting_notes(results, summary)
    if paper:
        lines += _paper_notes(summary)
    return lines


def _counting_notes(results: SuiteResults, summary: Sequence[dict[str, Any]]) -> list[str]:
    """What was not counted, or cannot be read at face value: one line each."""
    lines = [f"WARNING merged copies disagree: {w}" for w in results.warnings]
    lines += [f"Counted once: {p}" if p.startswith("`") else p for p in getattr(summary, "problems", [])]
    shown = shown_metrics(results)
    for record in summary:
        name = f"`{record['variant']}`"
        for metric in results.metrics:
            missing = record.get(f"{metric}_missing") or []
            if missing:
                lines.append(f"{name}: {len(missing)} of {record['finished']} finished run(s) have no finite {metric} "
                             f"(seed(s) {', '.join(map(str, missing))}): {metric} is over the other {record[f'{metric}_n']}.")
        for metric in shown:
            if did_not_learn(record, metric):
                lines.append(f"WARNING {name} did not learn: {metric} {record[f'{metric}_mean']:.2f} is at or below the same "
                             f"networks untrained ({record[f'{metric}_untrained_mean']:.2f}); its comparisons mean little.")
            elif record.get(f"{metric}_not_learned"):
                seeds = record[f"{metric}_not_learned"]
                lines.append(f"WARNING {name}: seed(s) {', '.join(map(str, seeds))} did not learn ({metric} at or below untrained).")
            if record.get(f"{metric}_degenerate"):
                lines.append(f"{name}: identical {metric} on all {record[f'{metric}_n']} seeds (zero spread): the interval is a "
                             "point, not a certainty; check that the seed reaches training and that the runs are not copies.")
    clipped = sorted({m for r in summary for m in shown if r.get(f"{m}_ci_clipped")})
    if clipped:
        lines.append(f"'clipped': the t-interval of {', '.join(clipped)} left [0, 100] and was cut to it (a percentage cannot "
                     "leave its range; with so few seeds the interval's width is the message).")
    return lines


def _latency_notes(results: SuiteResults, summary: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    timing = results.latency or {}
    if timing.get("error"):
        lines.append(f"Latency: not measured: {timing['error']}")
    if any(r.get("latency_ratio") is not None for r in summary):
        settings = timing.get("settings") or {}
        env = timing.get("environment") or {}
        threads = f"{settings['threads']} thread(s)" if settings.get("threads") else "one thread per core"
        lines.append(
            f"Latency: each variant timed between two timings of the baseline `{results.baseline}` in one process "
            f"({settings.get('rounds', '?')} rounds, batch {settings.get('batch', '?')}, {settings.get('mode', 'infer')} mode, "
            f"{threads}, CPU); ratio = median over rounds (range over rounds in brackets). Milliseconds are "
            f"machine- and load-dependent ({env.get('cpu', 'CPU')}, {_fmt(env.get('busy_cores'), 1)} core(s) busy before timing): compare ratios."
        )
        if any(r.get("latency_noisy") for r in summary):
            lines.append("NOISY: the timing's IQR exceeds 10 % of its median, it rests on < 5 samples, or the machine was busy "
                         "(half the cores or more in use just before timing); do not read small ratio differences there.")
    elif any(r.get("latency_ms") is not None for r in summary):
        lines.append("Latency: one timing per run, not interleaved with a baseline (older results): machine-dependent, "
                     "not comparable across runs; re-run the suite to time it against its baseline.")
    return lines


def _paper_notes(summary: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    tables = sorted({t for r in summary for t in r.get("paper_tables", [])})
    if not tables:
        return lines
    lines.append(f"Paper columns: reference numbers published in {PAPER_TITLE}, {', '.join(tables)}; not produced by this run. "
                 "Δ vs paper = ours − paper.")
    accuracy = {r["paper_accuracy_mismatch"] for r in summary
                if r.get("paper_accuracy_mismatch") and r.get("finished") and any(r.get(k) is not None for k in r if k.endswith("_paper_published"))}
    if accuracy:
        lines.append(f"Paper accuracies shown only in the paper's setting (real dataset, paper recipe, paper input, no overrides); "
                     f"— here because: {' | '.join(sorted(accuracy))}.")
    complexity = {r["paper_complexity_mismatch"] for r in summary if r.get("paper_complexity_mismatch")
                  and PAPER.get(r["model"]) and (PAPER[r["model"]].params_m is not None or PAPER[r["model"]].gmacs is not None)}
    if complexity:
        lines.append(f"Paper params / GMACs shown only for the registered model at 256x128; — here because: {' | '.join(sorted(complexity))}.")
    return lines


def render_markdown(
    results: SuiteResults,
    *,
    paper: bool = True,
    plots: dict[str, Path] | None = None,
    relative_to: Path | None = None,
) -> str:
    """The suite's markdown section: heading, tables, notes, plot links (relative to ``relative_to``)."""
    summary = summarise(results, paper=paper)
    meta = results.meta
    title = f"## {results.name}"
    if meta.get("paper_table"):
        title += f" — {meta['paper_table']}"
    parts = [title, ""]
    if meta.get("description"):
        parts += [meta["description"], ""]
    if not summary:
        parts += ["_No runs._", ""]
        return "\n".join(parts)
    frame = table_frame(results, paper=paper, summary=summary)
    parts += [frame.to_markdown(index=False, disable_numparse=True), ""]
    parts += [f"- {line}" for line in notes(results, summary, paper=paper)]
    metric = results.primary_metric
    if metric:
        from strabench.report.verdict_tables import comparison_notes, noise_frame, noise_notes

        compared = comparison_frame(results, summary, metric)
        if compared is not None:
            parts += ["", f"### Paired comparison with `{results.baseline}` ({metric})", ""]
            parts += [compared.to_markdown(index=False, disable_numparse=True), ""]
            parts += [f"- {line}" for line in comparison_notes(results.baseline, summary, metric)]
            parts += ["", "Verdicts in one line each:", ""]
            parts += [f"- {line}" for line in verdict_lines(results, summary=summary, metric=metric)]
        noise = noise_frame(summary, metric)
        if noise is not None:
            parts += ["", f"### Where the noise comes from ({metric})", ""]
            parts += [noise.to_markdown(index=False, disable_numparse=True), ""]
        if compared is not None or noise is not None:
            parts += [""] + [f"- {line}" for line in noise_notes(summary, metric)]
        runs = runs_frame(results, metric)
        if runs is not None:
            parts += ["", f"### Runs ({metric}, each with its 95 % test-set interval)", ""]
            parts += [runs.to_markdown(index=False, disable_numparse=True), ""]
            parts.append(f"- 95% CI (test set): {CI_METHOD}; 'not recorded': the run predates per-run intervals.")
    parts += image_lines(plots, relative_to)
    return "\n".join(parts)


_NOT_EXPORTED = ("rows", "rows_by_seed", "seed_status")


def summary_records(results: Sequence[SuiteResults], *, paper: bool = True) -> list[dict[str, Any]]:
    """Flat per-group records of every suite (``--format csv|json``)."""
    records = []
    for item in results:
        for record in summarise(item, paper=paper):
            flat = {k: v for k, v in record.items() if not k.endswith("_by_seed") and k not in _NOT_EXPORTED}
            records.append({"suite": item.name, "paper_table": item.meta.get("paper_table"), "baseline": item.baseline, **flat})
    return records


def records_to_csv(records: Sequence[dict[str, Any]]) -> str:
    import io

    columns: list[str] = []
    for record in records:
        columns.extend(k for k in record if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: (json.dumps(v) if isinstance(v, list) else "" if v is None else v) for k, v in record.items()})
    return buffer.getvalue()


def image_lines(plots: dict[str, Path] | None, relative_to: Path | None) -> list[str]:
    """A report section's closing lines: a markdown image per plot (paths relative to where the
    markdown is written), then the blank line that ends the section."""
    lines = [""] if plots else []
    for label, path in (plots or {}).items():
        link = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
        lines.append(f"![{label}]({Path(link).as_posix()})")
    return lines + [""]
