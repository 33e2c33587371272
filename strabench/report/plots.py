"""PNG figures for a suite's report (matplotlib, Agg canvas, no pyplot global state).

With accuracy: the primary metric against params and against paper-convention MACs, one
labelled point per variant (the idea of the paper's Fig. 2), and training curves (loss and the
evaluated metric per epoch, from each run's ``metrics.jsonl``: the full test set's score before
and after training as points, periodic evaluations on the fixed subset as lines labelled so).
When the suite's settings differ in the synthetic data's ``deformation``: each variant's paired
difference to the baseline against the deformation, with its interval (the report's comparison
numbers per setting). Without accuracy (the complexity suite): GMACs per counting convention and
latency per model, as bars.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strabench.io import read_json_object
from strabench.report.tables import MAC_LABELS, SuiteResults, summarise

PLOTS_DIR = "plots"


def _figure(width: float = 6.4, height: float = 4.4, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def _save(figure: Any, path: Path) -> Path:
    from strabench.io import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _scatter(summary: Sequence[dict[str, Any]], metric: str, key: str, scale: float, xlabel: str, title: str, path: Path) -> Path | None:
    points = [(r[key] / scale, r[f"{metric}_mean"], (r[f"{metric}_ci_high"] - r[f"{metric}_mean"]) if r.get(f"{metric}_ci_high") is not None else 0.0, r["variant"])
              for r in summary if r.get(key) is not None and r.get(f"{metric}_mean") is not None]
    if not points:
        return None
    figure, (ax,) = _figure()
    for x, y, err, label in points:
        ax.errorbar([x], [y], yerr=[err], fmt="o", capsize=3)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} (%): mean, 95% CI over seeds")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def _eval_value(record: dict[str, Any], metric: str) -> Any:
    """An epoch's evaluated metric: under ``eval`` (the engine's layout) or at top level."""
    evaluated = record.get("eval")
    if isinstance(evaluated, dict) and metric in evaluated:
        return evaluated[metric]
    return record.get(metric)


def _subset_value(record: dict[str, Any], metric: str) -> Any:
    """An epoch's metric on the fixed evaluation subset (``eval_subset``), if it was evaluated so."""
    subset = record.get("eval_subset")
    return subset.get(metric) if isinstance(subset, dict) else None


def _curves(results: SuiteResults, metric: str | None, path: Path) -> Path | None:
    from strabench.io import as_dict, as_int, as_number, read_jsonl

    series = []
    for row in results.rows:
        run_dir = results.directory / row["run_id"]
        log = run_dir / "metrics.jsonl"
        if not log.is_file():
            continue
        # an edited or damaged log: only records with an integer epoch, only finite numbers plotted
        records = [r for r in read_jsonl(log).records if isinstance(r, dict) and as_int(r.get("epoch"), minimum=0) is not None]
        untrained = as_dict((read_json_object(run_dir / "result.json") or {}).get("metrics_untrained"))
        if records:
            seed = "" if row.get("seed") is None else f" s{int(row['seed'])}"
            series.append((f"{row['variant']}{seed}", records, untrained.get(metric) if metric else None))
    if not series:
        return None
    figure, (loss_ax, metric_ax) = _figure(ncols=2)
    for label, records, before in series:
        losses = [(r["epoch"], r["loss"]) for r in records if as_number(r.get("loss")) is not None]
        if losses:
            (line,) = loss_ax.plot(*zip(*losses), marker=".", label=label)
            ce = [(r["epoch"], r["ce"]) for r in records if as_number(r.get("ce")) is not None]
            if ce and any(abs(c - l) > 1e-9 for (_, c), (_, l) in zip(ce, losses)):
                loss_ax.plot(*zip(*ce), linestyle="--", color=line.get_color(), label=f"{label} (CE only)")
        if metric is not None:
            subset = [(r["epoch"], v) for r in records if as_number(v := _subset_value(r, metric)) is not None]
            full = [(r["epoch"], v) for r in records if as_number(v := _eval_value(r, metric)) is not None]
            if as_number(before) is not None:
                full = [(0, before), *full]  # epoch 0 = the untrained network
            colour = None
            if subset:
                (line,) = metric_ax.plot(*zip(*subset), marker=".", linestyle=":", label=f"{label} (fixed test subset)")
                colour = line.get_color()
            if full:
                metric_ax.plot(*zip(*full), marker="o", linestyle="-" if not subset else "none", color=colour,
                               label=f"{label} (full test set)")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (dashed: cross-entropy alone)")
    loss_ax.set_title("loss per epoch")
    metric_ax.set_xlabel("epoch (0 = untrained)")
    metric_ax.set_ylabel(f"{metric} (%)" if metric else "metric")
    metric_ax.set_title(f"{metric or 'eval metric'} when evaluated (dotted: a fixed subset of the test set)")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(figure, path)


def _complexity_bars(summary: Sequence[dict[str, Any]], out: Path) -> dict[str, Path]:
    import numpy as np

    plots: dict[str, Path] = {}
    labels = [r["variant"] for r in summary]
    conventions = [c for c in MAC_LABELS if any(r.get(f"macs_{c}") is not None for r in summary)]
    if conventions:
        figure, (ax,) = _figure(width=max(6.4, 0.6 * len(labels) + 2))
        x = np.arange(len(labels))
        width = 0.8 / len(conventions)
        for i, convention in enumerate(conventions):
            values = [(r.get(f"macs_{convention}") or 0) / 1e9 for r in summary]
            ax.bar(x + (i - (len(conventions) - 1) / 2) * width, values, width, label=MAC_LABELS[convention])
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("GMACs (one image)")
        ax.set_title("MACs per counting convention")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        plots["GMACs per convention"] = _save(figure, out / "macs_by_convention.png")
    timed = [r for r in summary if r.get("latency_ratio") is not None]
    if timed:
        figure, (ax,) = _figure(width=max(6.4, 0.6 * len(timed) + 2))
        ratios = [r["latency_ratio"] for r in timed]
        low = [r["latency_ratio"] - (r.get("latency_ratio_min") or r["latency_ratio"]) for r in timed]
        high = [(r.get("latency_ratio_max") or r["latency_ratio"]) - r["latency_ratio"] for r in timed]
        ax.bar([r["variant"] for r in timed], ratios, yerr=[low, high], capsize=3)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(timed)), [r["variant"] for r in timed], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(f"latency / {results_baseline(timed)} (median over rounds, range)")
        ax.set_title("CPU latency, interleaved with the baseline")
        ax.grid(axis="y", alpha=0.3)
        plots["CPU latency ratio"] = _save(figure, out / "latency.png")
    return plots


def results_baseline(summary: Sequence[dict[str, Any]]) -> str:
    """The variant whose ratio is 1 (the suite's baseline)."""
    return next((r["variant"] for r in summary if r.get("latency_ratio") == 1.0), "baseline")


#: The dataset parameter a suite's settings may sweep, drawn on the x axis of the sweep plot;
#: its value where a synthetic dataset's config leaves it out.
SWEEP_KEY, SWEEP_DEFAULT = "deformation", 1.0


def _sweep_values(results: SuiteResults) -> dict[str, float]:
    """group -> the ``data_sizes.deformation`` its runs trained on (synthetic data only)."""
    from strabench.io import as_number
    from strabench.suite.store import read_config

    values: dict[str, float] = {}
    for row in results.rows:
        group = row.get("group")
        if not group or group in values or not str(row.get("data") or "").startswith("synthetic"):
            continue
        sizes = read_config(results.directory / row["run_id"]).get("data_sizes")
        value = as_number(sizes.get(SWEEP_KEY)) if isinstance(sizes, dict) else None
        values[group] = SWEEP_DEFAULT if value is None else float(value)
    return values


def comparison_points(summary: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The report's paired comparisons with the baseline, one per (variant, setting): variant,
    group, difference and its 95 % interval (None where there is none). Read from the summary
    records (``strabench.report.tables.summarise``), never recomputed here."""
    points = []
    for record in summary:
        diff = record.get(f"{metric}_diff")
        if diff is None:
            continue
        points.append({"variant": record["variant"], "group": record.get("group"), "setting": record.get("setting"),
                       "diff": diff, "low": record.get(f"{metric}_diff_ci_low"), "high": record.get(f"{metric}_diff_ci_high"),
                       "n": record.get(f"{metric}_pairs"), "baseline": record.get(f"{metric}_vs")})
    return points


def _sweep_plot(results: SuiteResults, summary: Sequence[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """Each variant's difference to the baseline against ``deformation``, with its interval.

    Drawn when the compared groups span two or more deformation levels. Points of one variant are
    joined in deformation order and nudged sideways a little so that intervals do not overlap.
    """
    levels = _sweep_values(results)
    points = [p | {"x": levels[p["group"]]} for p in comparison_points(summary, metric) if p["group"] in levels]
    if len({p["x"] for p in points}) < 2:
        return None
    variants = list(dict.fromkeys(p["variant"] for p in points))
    span = max(p["x"] for p in points) - min(p["x"] for p in points)
    figure, (ax,) = _figure()
    for i, variant in enumerate(variants):
        mine = sorted((p for p in points if p["variant"] == variant), key=lambda p: p["x"])
        nudge = (i - (len(variants) - 1) / 2) * 0.015 * span
        xs = [p["x"] + nudge for p in mine]
        ys = [p["diff"] for p in mine]
        low = [p["diff"] - p["low"] if p["low"] is not None else 0.0 for p in mine]
        high = [p["high"] - p["diff"] if p["high"] is not None else 0.0 for p in mine]
        n = sorted({p["n"] for p in mine if p["n"] is not None})
        seeds = f", n = {'/'.join(map(str, n))}" if n else ""
        ax.errorbar(xs, ys, yerr=[low, high], fmt="o-", capsize=3, label=f"{variant} − {mine[0]['baseline']}{seeds}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"{SWEEP_KEY} of the synthetic data (0 = rigid)")
    ax.set_ylabel(f"Δ {metric} vs baseline (%): mean, 95% CI over paired seeds")
    ax.set_title(f"{results.name}: difference to the baseline against {SWEEP_KEY}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def plot_suite(results: SuiteResults, out: Path | None = None) -> dict[str, Path]:
    """Write the suite's figures under ``out`` (default ``<suite dir>/plots``); label -> PNG path."""
    out = out or results.directory / PLOTS_DIR
    summary = summarise(results, paper=False)
    metric = results.primary_metric
    if metric is None:
        return _complexity_bars(summary, out)
    plots: dict[str, Path] = {}
    made = _scatter(summary, metric, "params", 1e6, "params (M, all but classifier)", f"{results.name}: {metric} vs params", out / "metric_vs_params.png")
    if made:
        plots[f"{metric} vs params"] = made
    made = _scatter(summary, metric, "macs_paper", 1e9, "GMACs (paper conv.)", f"{results.name}: {metric} vs GMACs", out / "metric_vs_macs.png")
    if made:
        plots[f"{metric} vs GMACs"] = made
    made = _curves(results, metric, out / "training_curves.png")
    if made:
        plots["training curves"] = made
    made = _sweep_plot(results, summary, metric, out / f"diff_vs_{SWEEP_KEY}.png")
    if made:
        plots[f"Δ {metric} vs {SWEEP_KEY}"] = made
    return plots
