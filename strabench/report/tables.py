"""Suite results → one table per suite: our numbers (mean ± std over seeds) beside the paper's.

The paper's numbers (``strabench.paper.PAPER``) only ever appear in columns labelled "paper",
each followed by our delta, with the table they come from cited under the table. A run that
failed shows as "failed", one not yet run as "pending": never as a number.

Rows are read fresh from the run directories when the suite's ``plan.json`` is there (so
shards copied together merge without rerunning anything), else from ``results.csv``, else by
scanning the run directories.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.io import read_json_object
from strabench.paper import PAPER

PAPER_TITLE = 'Zhang, Li, Shen, Liu, "Structure-Regularized Attention for Deformable Object Representation"'
MAC_LABELS = {"paper": "paper conv.", "fvcore": "fvcore", "ptflops": "ptflops"}
PRIMARY_METRICS = ("mAP", "mean", "test_acc", "val_acc", "rank1")
_STATUS_RANK = {"finished": 3, "failed": 2, "partial": 1, "pending": 0}
_NUMERIC = ("seed", "params", "macs_paper", "macs_fvcore", "macs_ptflops", "latency_ms", "images_per_s", "train_time_s", "epochs")


@dataclass
class SuiteResults:
    """The runs of one suite as read from disk, plus what the suite said about itself."""

    name: str
    directory: Path
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)  # plan.json's "suite" entry, if any

    @property
    def metrics(self) -> list[str]:
        from strabench.suite.runner import metric_columns

        return metric_columns(self.rows)

    @property
    def primary_metric(self) -> str | None:
        metrics = self.metrics
        for name in PRIMARY_METRICS:
            if name in metrics:
                return name
        return metrics[0] if metrics else None


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
    """Rows of one suite directory (see the module docstring for where they come from)."""
    from strabench.suite.config import MeasureSpec
    from strabench.suite.runner import PLAN_JSON, RESULTS_CSV, RUN_JSON, run_row

    plan = read_json_object(directory / PLAN_JSON)
    if plan is not None and isinstance(plan.get("runs"), list):
        meta = plan.get("suite") or {}
        measure = MeasureSpec.from_dict(meta.get("measure") or {})
        rows = [run_row(directory / run["run_id"], {**run, "suite": meta.get("name", directory.name)}, measure)
                for run in plan["runs"]]
        return SuiteResults(meta.get("name", directory.name), directory, rows, meta)
    if (directory / RESULTS_CSV).is_file():
        rows = read_results_csv(directory / RESULTS_CSV)
        return SuiteResults(rows[0]["suite"] if rows else directory.name, directory, rows)
    rows = []
    for run_json in sorted(directory.glob(f"*/{RUN_JSON}")):
        identity = read_json_object(run_json) or {}
        measure = MeasureSpec.from_dict(identity.get("measure") or {})
        rows.append(run_row(run_json.parent, identity, measure))
    return SuiteResults(rows[0]["suite"] if rows else directory.name, directory, rows)


def read_results_csv(path: Path) -> list[dict[str, Any]]:
    """results.csv back into rows (numbers as floats, metrics in a ``metrics`` dict)."""
    from strabench.suite.runner import BASE_COLUMNS, TAIL_COLUMNS, UNTRAINED

    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        metric_names = [c for c in columns if c not in BASE_COLUMNS and c not in TAIL_COLUMNS and c != "run_id" and not c.endswith(UNTRAINED)]
        rows = []
        for record in reader:
            row: dict[str, Any] = {k: (record.get(k) or None) for k in (*BASE_COLUMNS, *TAIL_COLUMNS)}
            for key in _NUMERIC:
                row[key] = _number(row.get(key))
            row["run_id"] = f"{row['variant']}-s{int(row['seed'] or 0)}-{row['hash']}"
            row["metrics"] = {m: _number(record.get(m)) for m in metric_names if _number(record.get(m)) is not None}
            row["metrics_untrained"] = {m: _number(record.get(m + UNTRAINED)) for m in metric_names if _number(record.get(m + UNTRAINED)) is not None}
            rows.append(row)
    return rows


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def merge_results(results: Iterable[SuiteResults]) -> list[SuiteResults]:
    """Same-named suites from several directories (copied shards) become one; per run the most
    advanced status wins (finished > failed > partial > pending)."""
    merged: dict[str, SuiteResults] = {}
    for item in results:
        if item.name not in merged:
            merged[item.name] = SuiteResults(item.name, item.directory, list(item.rows), dict(item.meta))
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
    return list(merged.values())


# --- aggregating --------------------------------------------------------------------------------


def _paper_metric(model: str, metric: str) -> float | None:
    ref = PAPER.get(model)
    if ref is None:
        return None
    for name, value in ref.metrics.items():
        if name.lower() == metric.lower():
            return value
    return None


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def summarise(results: SuiteResults, *, paper: bool = True) -> list[dict[str, Any]]:
    """One numeric record per variant: runs by status, metrics mean/std/n, complexity, paper refs."""
    order: list[str] = []
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in results.rows:
        if row["variant"] not in by_variant:
            order.append(row["variant"])
            by_variant[row["variant"]] = []
        by_variant[row["variant"]].append(row)
    metrics = results.metrics
    summary = []
    for variant in order:
        rows = by_variant[variant]
        finished = [r for r in rows if r["status"] == "finished"]
        model = rows[0]["model"]
        record: dict[str, Any] = {
            "variant": variant,
            "model": model,
            "runs": len(rows),
            "finished": len(finished),
            "failed": sum(r["status"] == "failed" for r in rows),
            "pending": sum(r["status"] in ("pending", "partial") for r in rows),
            "seeds": sorted(int(r["seed"]) for r in finished if r.get("seed") is not None),
            "errors": sorted({r["error"] for r in rows if r.get("error")}),
        }
        for metric in metrics:
            values = [float(r["metrics"][metric]) for r in finished if r["metrics"].get(metric) is not None]
            mean, std = _mean_std(values)
            record[f"{metric}_mean"], record[f"{metric}_std"], record[f"{metric}_n"] = mean, std, len(values)
            before = [float(r["metrics_untrained"][metric]) for r in finished if r.get("metrics_untrained", {}).get(metric) is not None]
            record[f"{metric}_untrained_mean"] = statistics.fmean(before) if before else None
            if paper:
                ref = _paper_metric(model, metric)
                record[f"{metric}_paper"] = ref
                record[f"{metric}_delta"] = None if ref is None or mean is None else mean - ref
        measured = [r for r in rows if r.get("params") is not None or r.get("macs_paper") is not None or r.get("latency_ms") is not None]
        for key in ("params", "macs_paper", "macs_fvcore", "macs_ptflops", "latency_ms", "images_per_s", "train_time_s"):
            values = [float(r[key]) for r in (finished if key == "train_time_s" else measured) if r.get(key) is not None]
            record[key] = statistics.fmean(values) if values else None
        record["input"] = next((r.get("input") for r in measured if r.get("input")), None)
        if paper:
            ref = PAPER.get(model)
            record["params_paper_m"] = ref.params_m if ref else None
            record["params_delta_m"] = _delta(record["params"], 1e6, record["params_paper_m"])
            record["gmacs_paper"] = ref.gmacs if ref else None
            record["gmacs_delta"] = _delta(record["macs_paper"], 1e9, record["gmacs_paper"])
            record["paper_tables"] = list(ref.tables) if ref else []
        summary.append(record)
    return summary


def _delta(ours: float | None, scale: float, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours / scale - paper


# --- rendering ----------------------------------------------------------------------------------


def _state(record: dict[str, Any]) -> str | None:
    """'failed' / 'pending' when a variant has no finished run to show a number for."""
    if record["finished"]:
        return None
    return "failed" if record["failed"] else "pending"


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _metric_cell(record: dict[str, Any], metric: str) -> str:
    mean, std, n = record[f"{metric}_mean"], record[f"{metric}_std"], record[f"{metric}_n"]
    if mean is None:
        return _state(record) or "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def shown_metrics(results: SuiteResults) -> list[str]:
    """The table's metrics: those the paper reports (and the primary one); all if the paper has none.

    Keeps the markdown readable (rank5/rank10 stay in results.csv and --format csv/json).
    """
    metrics = results.metrics
    cited = [m for m in metrics if m == results.primary_metric or any(_paper_metric(r["model"], m) is not None for r in results.rows)]
    return cited if any(m != results.primary_metric for m in cited) or len(metrics) == 1 else metrics


def table_columns(results: SuiteResults, summary: Sequence[dict[str, Any]], *, paper: bool) -> list[tuple[str, Any]]:
    """(header, cell function) pairs: the one place the table's columns and their order live."""
    columns: list[tuple[str, Any]] = [
        ("variant", lambda r: r["variant"]),
        ("model", lambda r: f"`{r['model']}`"),
        ("n (seeds)", _runs_cell),
    ]
    for metric in shown_metrics(results):
        columns.append((f"{metric} (%)", lambda r, m=metric: _metric_cell(r, m)))
        if paper and any(r.get(f"{metric}_paper") is not None for r in summary):
            columns.append((f"{metric} paper", lambda r, m=metric: _fmt(r[f"{m}_paper"], 1)))
            columns.append((f"Δ {metric}", lambda r, m=metric: _fmt(r[f"{m}_delta"], 2, True)))
        if metric == results.primary_metric and any(r.get(f"{metric}_untrained_mean") is not None for r in summary):
            columns.append((f"{metric} untrained", lambda r, m=metric: _fmt(r[f"{m}_untrained_mean"], 2)))
    if any(r["params"] is not None for r in summary):
        columns.append(("params (M)", lambda r: _fmt(_scaled(r["params"], 1e6), 2) if r["params"] is not None else (_state(r) or "—")))
        if paper and any(r.get("params_paper_m") is not None for r in summary):
            columns.append(("params paper (M)", lambda r: _fmt(r["params_paper_m"], 1)))
            columns.append(("Δ params (M)", lambda r: _fmt(r["params_delta_m"], 2, True)))
    for convention, label in MAC_LABELS.items():
        key = f"macs_{convention}"
        if any(r[key] is not None for r in summary):
            columns.append((f"GMACs ({label})", lambda r, k=key: _fmt(_scaled(r[k], 1e9), 3) if r[k] is not None else (_state(r) or "—")))
            if convention == "paper" and paper and any(r.get("gmacs_paper") is not None for r in summary):
                columns.append(("GMACs paper", lambda r: _fmt(r["gmacs_paper"], 2)))
                columns.append(("Δ GMACs", lambda r: _fmt(r["gmacs_delta"], 3, True)))
    if any(r["latency_ms"] is not None for r in summary):
        columns.append(("latency (ms)", lambda r: _fmt(r["latency_ms"], 1) if r["latency_ms"] is not None else (_state(r) or "—")))
        columns.append(("images/s", lambda r: _fmt(r["images_per_s"], 1) if r["images_per_s"] is not None else (_state(r) or "—")))
    return columns


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value / scale


def _runs_cell(record: dict[str, Any]) -> str:
    text = f"{record['finished']}/{record['runs']}"
    extra = [f"{record['failed']} failed"] if record["failed"] else []
    extra += [f"{record['pending']} pending"] if record["pending"] else []
    return f"{text} ({', '.join(extra)})" if extra else text


def table_frame(results: SuiteResults, *, paper: bool = True):
    """The suite's table as a pandas DataFrame of display strings."""
    import pandas as pd

    summary = summarise(results, paper=paper)
    columns = table_columns(results, summary, paper=paper)
    return pd.DataFrame([[cell(r) for _, cell in columns] for r in summary], columns=[h for h, _ in columns])


def _seeds_run(results: SuiteResults) -> list[int]:
    """The seeds of the runs on disk (a ``--seeds`` override or a shard may differ from the suite's)."""
    return sorted({int(r["seed"]) for r in results.rows if r.get("seed") not in (None, "")})


def notes(results: SuiteResults, summary: Sequence[dict[str, Any]], *, paper: bool) -> list[str]:
    """The lines under a table: what was measured how, and where the paper's numbers come from."""
    meta = results.meta
    lines = []
    setup = [f"data `{meta['data']}`" if meta.get("data") else None,
             f"profile `{meta['profile']}`" if meta.get("profile") else None,
             f"seeds {_seeds_run(results) or meta.get('seeds')}" if results.rows or meta.get("seeds") else None]
    setup_text = ", ".join(s for s in setup if s)
    if results.metrics:
        hidden = [m for m in results.metrics if m not in shown_metrics(results)]
        more = f" ({', '.join(hidden)} in results.csv)" if hidden else ""
        lines.append(f"Ours: {setup_text or 'see results.csv'}; metrics in %, mean ± sample std over the finished seeds (n in column 3){more}.")
    metric = results.primary_metric
    if metric and any(r.get(f"{metric}_untrained_mean") is not None for r in summary):
        lines.append(f"'{metric} untrained': the same networks evaluated before training (mean over seeds); a result near it did not learn.")
    inputs = sorted({r["input"] for r in summary if r.get("input")})
    if any(r["params"] is not None or r["macs_paper"] is not None for r in summary):
        at = f" at input {', '.join(inputs)}" if inputs else ""
        lines.append(
            "Params: all parameters but the training-only classifier. GMACs: multiply-accumulates for one image"
            f"{at}; 'paper conv.' = conv + linear multiply-adds incl. bias, classifier excluded (what the paper calls FLOPs); "
            "fvcore / ptflops = those counters extended to the attention ops."
        )
    latency = (meta.get("measure") or {}).get("latency") or {}
    if any(r["latency_ms"] is not None for r in summary):
        threads = f"{latency['threads']} thread(s)" if latency.get("threads") else "one thread per core"
        lines.append(f"Latency: median CPU time per batch of {latency.get('batch', '?')} ({latency.get('mode', 'infer')} mode, {threads}); noisy on shared machines, compare within one table only.")
    failed = [r for r in summary if r["errors"]]
    for record in failed:
        lines.append(f"Failed `{record['variant']}`: {'; '.join(record['errors'])}")
    if paper:
        tables = meta.get("paper_table") or ", ".join(sorted({t for r in summary for t in r.get("paper_tables", [])}))
        if any(r.get("paper_tables") for r in summary):
            lines.append(
                f"Paper columns: reference numbers published in {PAPER_TITLE}, {tables or 'see strabench/paper.py'}; "
                "not produced by this run. Δ = ours − paper."
            )
            synthetic = str(meta.get("data", "")).startswith("synthetic") or meta.get("profile") == "quick"
            if synthetic and results.metrics:
                lines.append(
                    "The paper's accuracies come from the real datasets with the full schedule; ours here do not "
                    "(synthetic data or the quick profile), so Δ of a metric is not a reproduction gap."
                )
    return lines


def render_markdown(
    results: SuiteResults,
    *,
    paper: bool = True,
    plots: dict[str, Path] | None = None,
    relative_to: Path | None = None,
) -> str:
    """The suite's markdown section: heading, table, notes, plot links (relative to ``relative_to``)."""
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
    frame = table_frame(results, paper=paper)
    parts += [frame.to_markdown(index=False, disable_numparse=True), ""]
    parts += [f"- {line}" for line in notes(results, summary, paper=paper)]
    if plots:
        parts.append("")
        for label, path in plots.items():
            link = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
            parts.append(f"![{label}]({Path(link).as_posix()})")
    parts.append("")
    return "\n".join(parts)


def summary_records(results: Sequence[SuiteResults], *, paper: bool = True) -> list[dict[str, Any]]:
    """Flat per-variant records of every suite (``--format csv|json``)."""
    records = []
    for item in results:
        for record in summarise(item, paper=paper):
            records.append({"suite": item.name, "paper_table": item.meta.get("paper_table"), **record})
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
