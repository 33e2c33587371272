"""Suite results -> tables a reviewer can trust: seeds with intervals, paired comparisons, paper refs.

* Rows come from the suite's results store (``strabench.suite.store``): every run ever finished
  in the directory, whatever plan produced it. Runs are grouped by their setting (the training
  config without the seed: variant, model, overrides, data, profile, input, device ...); a
  group is one row of the table, aggregated over its seeds (``strabench.report.stats``).
* Every other variant is compared with the suite's baseline variant *in the same setting*,
  seed against seed, with a Holm-corrected paired test and a plain verdict.
* The paper's numbers (``strabench.paper.PAPER``) only appear in columns labelled "paper", and
  only where our setting is the paper's (same model, no overrides, the paper's input; for
  accuracies also the real dataset and the paper's profile); elsewhere "—" and a note why.
* A run that failed shows as "failed", one not yet run as "pending": never as a number.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.io import read_json_object
from strabench.metrics.resampling import CI_METHOD
from strabench.paper import PAPER, PAPER_COMPLEXITY_INPUT, PAPER_SETTINGS
from strabench.report.stats import ALPHA, CI_METHOD_SEEDS, TEST_METHOD, Comparison, compare_paired, group_stats, holm, verdict
from strabench.suite.store import read_results_csv  # noqa: F401 - part of this module's API

PAPER_TITLE = 'Zhang, Li, Shen, Liu, "Structure-Regularized Attention for Deformable Object Representation"'
MAC_LABELS = {"paper": "paper conv.", "fvcore": "fvcore", "ptflops": "ptflops"}
PRIMARY_METRICS = ("mAP", "mean", "test_acc", "val_acc", "rank1")
_STATUS_RANK = {"finished": 3, "failed": 2, "partial": 1, "pending": 0}
SETTING_KEYS = ("setting", "data", "profile", "train_input", "device", "data_seed")
SETTING_LABELS = {"setting": "setting", "data": "data", "profile": "profile", "train_input": "train input", "device": "device",
                  "data_seed": "data seed"}


@dataclass
class SuiteResults:
    """The runs of one suite as read from disk, plus what the suite said about itself."""

    name: str
    directory: Path
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)  # plan.json's "suite" entry, if any
    latency: dict[str, Any] | None = None  # latency.json: the suite's interleaved timing

    @property
    def metrics(self) -> list[str]:
        from strabench.suite.store import metric_columns

        return metric_columns(self.rows)

    @property
    def primary_metric(self) -> str | None:
        metrics = self.metrics
        for name in PRIMARY_METRICS:
            if name in metrics:
                return name
        return metrics[0] if metrics else None

    @property
    def baseline(self) -> str | None:
        """The variant the others are compared with: the suite's ``baseline``, else its first variant."""
        named = self.meta.get("baseline")
        variants = [r["variant"] for r in self.rows]
        if isinstance(named, str) and named in variants:
            return named
        return variants[0] if variants else None


# --- reading ------------------------------------------------------------------------------------


def is_suite_dir(path: Path) -> bool:
    from strabench.suite.runner import PLAN_JSON, RESULTS_CSV, RUN_JSON

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
    from strabench.suite.runner import LATENCY_JSON, PLAN_JSON, RESULTS_CSV
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
        rows.sort(key=lambda r: order.get(r["variant"], len(order)))
    elif (directory / RESULTS_CSV).is_file():
        rows = read_results_csv(directory / RESULTS_CSV)
    else:
        rows = []
    name = meta.get("name") or (rows[0]["suite"] if rows and rows[0].get("suite") else directory.name)
    return SuiteResults(str(name), directory, rows, dict(meta), latency)


def merge_results(results: Iterable[SuiteResults]) -> list[SuiteResults]:
    """Same-named suites from several directories (copied shards) become one; per run the most
    advanced status wins (finished > failed > partial > pending)."""
    merged: dict[str, SuiteResults] = {}
    for item in results:
        if item.name not in merged:
            merged[item.name] = SuiteResults(item.name, item.directory, list(item.rows), dict(item.meta), item.latency)
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
    """Rows grouped by (variant, setting): seeds of one configuration, in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results.rows:
        groups.setdefault((row["variant"], row.get("group") or ""), []).append(row)
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


def summarise(results: SuiteResults, *, paper: bool = True) -> list[dict[str, Any]]:
    """One numeric record per group: runs by status, per-metric statistics, complexity, latency,
    paper references where the setting matches, and the paired comparison with the baseline."""
    metrics = results.metrics
    summary = []
    for rows in _groups(results):
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
            "seeds": sorted(s for r in finished if (s := _seed(r)) is not None),
            "errors": sorted({r["error"] for r in rows if r.get("error")}),
        }
        for metric in metrics:
            values = [float(r["metrics"][metric]) for r in finished if r["metrics"].get(metric) is not None]
            stats = group_stats(values)
            record[f"{metric}_n"], record[f"{metric}_mean"], record[f"{metric}_std"] = stats.n, stats.mean, stats.std
            record[f"{metric}_ci_low"], record[f"{metric}_ci_high"] = stats.ci_low, stats.ci_high
            record[f"{metric}_by_seed"] = {s: float(r["metrics"][metric]) for r in finished
                                          if r["metrics"].get(metric) is not None and (s := _seed(r)) is not None}
            before = [float(r["metrics_untrained"][metric]) for r in finished if r.get("metrics_untrained", {}).get(metric) is not None]
            record[f"{metric}_untrained_mean"] = _mean(before)
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
    _add_comparisons(summary, results)
    return summary


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


def _add_comparisons(summary: list[dict[str, Any]], results: SuiteResults) -> None:
    """Each group against the baseline variant's group in the same setting, per metric, Holm per metric."""
    baseline = results.baseline
    for metric in results.metrics:
        pending: list[tuple[dict[str, Any], Comparison]] = []
        for record in summary:
            if record["variant"] == baseline:
                continue
            base = next((r for r in summary if r["variant"] == baseline and _setting(r) == _setting(record)), None)
            if base is None:
                continue
            comparison = compare_paired(record[f"{metric}_by_seed"], base[f"{metric}_by_seed"])
            if comparison.n:
                pending.append((record, comparison))
        adjusted = holm([c.p_value for _, c in pending])
        family = sum(c.p_value is not None for _, c in pending)  # what Holm corrected over
        for (record, comparison), p_holm in zip(pending, adjusted):
            comparison = comparison.with_holm(p_holm)
            record[f"{metric}_vs"] = baseline
            record[f"{metric}_pairs"] = comparison.n
            record[f"{metric}_diff"] = comparison.mean_diff
            record[f"{metric}_diff_ci_low"], record[f"{metric}_diff_ci_high"] = comparison.ci_low, comparison.ci_high
            record[f"{metric}_p_improve"] = comparison.p_improve
            record[f"{metric}_p"], record[f"{metric}_p_holm"] = comparison.p_value, comparison.p_holm
            record[f"{metric}_min_p"] = comparison.min_p
            record[f"{metric}_comparisons"] = family
            record[f"{metric}_verdict"] = verdict(comparison)


# --- rendering ----------------------------------------------------------------------------------


def _state(record: dict[str, Any]) -> str | None:
    """'failed' / 'pending' when a group has no finished run to show a number for."""
    if record["finished"]:
        return None
    return "failed" if record["failed"] else "pending"


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _metric_cell(record: dict[str, Any], metric: str) -> str:
    mean, std = record[f"{metric}_mean"], record[f"{metric}_std"]
    if mean is None:
        return _state(record) or "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _interval_cell(low: float | None, high: float | None, digits: int = 2, signed: bool = False) -> str:
    if low is None or high is None:
        return "—"
    return f"[{_fmt(low, digits, signed)}, {_fmt(high, digits, signed)}]"


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
        ("variant", lambda r: r["variant"]),
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
            columns.append((f"{metric} 95% CI", lambda r, m=metric: _interval_cell(r[f"{m}_ci_low"], r[f"{m}_ci_high"])))
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
    text = f"{record['finished']}/{record['runs']}"
    extra = [f"{record['failed']} failed"] if record["failed"] else []
    extra += [f"{record['pending']} pending"] if record["pending"] else []
    return f"{text} ({', '.join(extra)})" if extra else text


def table_frame(results: SuiteResults, *, paper: bool = True, summary: Sequence[dict[str, Any]] | None = None):
    """The suite's main table as a pandas DataFrame of display strings."""
    import pandas as pd

    summary = summarise(results, paper=paper) if summary is None else summary
    columns = table_columns(results, summary, paper=paper)
    return pd.DataFrame([[cell(r) for _, cell in columns] for r in summary], columns=[h for h, _ in columns])


def _labelled(record: dict[str, Any]) -> str:
    """The variant, and its suite setting (``[[settings]]``) where it has one."""
    return f"{record['variant']} ({record['setting']})" if record.get("setting") else record["variant"]


def comparison_frame(results: SuiteResults, summary: Sequence[dict[str, Any]], metric: str):
    """Paired comparisons with the baseline for one metric (None when there are none)."""
    import pandas as pd

    compared = [r for r in summary if r.get(f"{metric}_verdict")]
    if not compared:
        return None
    rows = []
    for r in compared:
        m = metric
        rows.append([
            _labelled(r), r[f"{m}_vs"], str(r[f"{m}_pairs"]),
            f"{_fmt(r[f'{m}_diff'], 2, True)} {_interval_cell(r[f'{m}_diff_ci_low'], r[f'{m}_diff_ci_high'], 2, True)}",
            _fmt(r[f"{m}_p_improve"], 2), _fmt(r[f"{m}_p"], 4), _fmt(r[f"{m}_p_holm"], 4), _fmt(r[f"{m}_min_p"], 4),
            r[f"{m}_verdict"],
        ])
    header = ["variant", "baseline", "paired seeds", f"Δ {metric} [95% CI]", "P(variant > baseline)", "p",
              "p (Holm)", "smallest p possible at n", "verdict"]
    return pd.DataFrame(rows, columns=header)


def runs_frame(results: SuiteResults, metric: str):
    """One line per run: its score with the 95 % test-set interval and the test-set size."""
    import pandas as pd

    rows = []
    for row in results.rows:
        if row["status"] == "pending":
            continue
        value = row["metrics"].get(metric)
        ci = row.get("metrics_ci", {}).get(metric)
        rows.append([
            _labelled(row), "—" if row.get("seed") is None else str(int(row["seed"])), row["status"],
            _fmt(value, 2) if value is not None else row["status"],
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
    if paper:
        lines += _paper_notes(summary)
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
                if r.get("paper_accuracy_mismatch") and any(r.get(k) is not None for k in r if k.endswith("_paper_published"))}
    if accuracy:
        lines.append(f"Paper accuracies shown only in the paper's setting (real dataset, paper recipe, paper input, no overrides); "
                     f"— here because: {' | '.join(sorted(accuracy))}.")
    complexity = {r["paper_complexity_mismatch"] for r in summary if r.get("paper_complexity_mismatch")
                  and PAPER.get(r["model"]) and (PAPER[r["model"]].params_m is not None or PAPER[r["model"]].gmacs is not None)}
    if complexity:
        lines.append(f"Paper params / GMACs shown only for the registered model at 256x128; — here because: {' | '.join(sorted(complexity))}.")
    return lines


def _comparison_notes(results: SuiteResults, summary: Sequence[dict[str, Any]], metric: str) -> list[str]:
    family = max((r.get(f"{metric}_comparisons", 0) for r in summary), default=0)
    return [
        f"Paired by seed against `{results.baseline}` in the same setting; Δ = variant − baseline, mean over paired seeds "
        f"with a {CI_METHOD_SEEDS}.",
        "P(variant > baseline): probability that a run of the variant scores higher than a run of the baseline "
        "(Mann-Whitney estimate over all pairs of their runs).",
        (f"p: {TEST_METHOD} over the {family} comparison(s) of this table with two or more paired seeds; "
         f"verdict at alpha = {ALPHA}. " if family else
         "p: no comparison has two or more paired seeds, so no test was run. ")
        + "'smallest p possible at n' is the floor of the exact test (2/2^n): where it exceeds 0.05 / comparisons, "
        "no difference can be detected at this n, however consistent; run more seeds.",
    ]


def render_markdown(
    results: SuiteResults,
    *,
    paper: bool = True,
    plots: dict[str, Path] | None = None,
    relative_to: Path | None = None,
) -> str:
    """The suite's markdown section: heading, tables, notes, plot links (relative to ``relative_to``)."""
    import os

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
        compared = comparison_frame(results, summary, metric)
        if compared is not None:
            parts += ["", f"### Paired comparison with `{results.baseline}` ({metric})", ""]
            parts += [compared.to_markdown(index=False, disable_numparse=True), ""]
            parts += [f"- {line}" for line in _comparison_notes(results, summary, metric)]
        runs = runs_frame(results, metric)
        if runs is not None:
            parts += ["", f"### Runs ({metric}, each with its 95 % test-set interval)", ""]
            parts += [runs.to_markdown(index=False, disable_numparse=True), ""]
            parts.append(f"- 95% CI (test set): {CI_METHOD}; 'not recorded': the run predates per-run intervals.")
    if plots:
        parts.append("")
        for label, path in plots.items():
            link = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
            parts.append(f"![{label}]({Path(link).as_posix()})")
    parts.append("")
    return "\n".join(parts)


def summary_records(results: Sequence[SuiteResults], *, paper: bool = True) -> list[dict[str, Any]]:
    """Flat per-group records of every suite (``--format csv|json``)."""
    records = []
    for item in results:
        for record in summarise(item, paper=paper):
            flat = {k: v for k, v in record.items() if not k.endswith("_by_seed")}
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
