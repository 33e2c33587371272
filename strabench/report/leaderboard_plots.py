"""Pareto plots of a leaderboard: accuracy against MACs and against latency, with intervals.

One point per variant at its mean score with the 95 % interval over seeds (vertical bars); on
the latency panels the horizontal bars are the range of the ratio over timing rounds (MACs are
exact). The Pareto front (no other variant both scores higher and costs less, on the means) is
drawn as a step line; the references are marked. The bars are each variant's own spread over
seeds: two overlapping bars can still differ consistently seed by seed (the leaderboard's
verdict columns test the paired differences). matplotlib's Agg canvas, no pyplot state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strabench.report.leaderboard import Leaderboard
from strabench.report.plots import PLOTS_DIR, _figure, _save
from strabench.report.tables import MAC_LABELS

__all__ = ["pareto_front", "plot_leaderboard"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower or equal cost and higher or equal
    score, one of them strictly), ordered by cost."""
    front = []
    for i, (cost, score) in enumerate(points):
        dominated = any(
            (c <= cost and s >= score) and (c < cost or s > score) for j, (c, s) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def _panel(ax: Any, board: Leaderboard, rows: list[dict[str, Any]], cost: Any, spread: Any, xlabel: str) -> None:
    metric = board.metric
    points, shown = [], []
    for record in rows:
        x, y = cost(record), record.get(f"{metric}_mean")
        if x is None or y is None:
            continue
        low, high = record.get(f"{metric}_ci_low"), record.get(f"{metric}_ci_high")
        yerr = [[y - low], [high - y]] if low is not None and high is not None else None
        xerr = spread(record)
        reference = record["variant"] in board.versus
        ax.errorbar([x], [y], yerr=yerr, xerr=xerr, fmt="s" if reference else "o", capsize=2, markersize=5 if reference else 4,
                    color="black" if reference else None, alpha=0.85)
        ax.annotate(record["variant"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        points.append((x, y))
        shown.append(record)
    front = pareto_front(points)
    if len(front) > 1:
        xs = [points[i][0] for i in front]
        ys = [points[i][1] for i in front]
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1, alpha=0.6, label="Pareto front (means)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} (%): mean, 95% CI over seeds")
    ax.grid(alpha=0.3)


def plot_leaderboard(board: Leaderboard, directory: Path) -> dict[str, Path]:
    """The Pareto plots (label -> PNG under ``directory/plots``); none for a board without a metric."""
    metric = board.metric
    if metric is None or not any(r.get(f"{metric}_mean") is not None for r in board.rows):
        return {}
    out = directory / PLOTS_DIR
    plots: dict[str, Path] = {}
    conventions = [c for c in MAC_LABELS if any(r.get(f"macs_{c}") is not None for r in board.rows)]
    if conventions:
        figure, axes = _figure(width=6.0, height=4.8, ncols=len(conventions))
        for ax, convention in zip(axes, conventions):
            _panel(ax, board, board.rows, lambda r, c=convention: r[f"macs_{c}"] / 1e9 if r.get(f"macs_{c}") is not None else None,
                   lambda r: None, f"GMACs ({MAC_LABELS[convention]}), one image"
                   + ("; attention products not counted" if convention == "paper" else ""))
            ax.set_title(f"{metric} vs GMACs ({MAC_LABELS[convention]})")
        plots[f"{metric} vs GMACs (Pareto)"] = _save(figure, out / "pareto_macs.png")
    timings = [t for t in board.timings if t.error is None and any(r.get(t.key) is not None for r in board.rows)]
    if timings:
        figure, axes = _figure(width=6.0, height=4.8, ncols=len(timings))
        for ax, timing in zip(axes, timings):
            def spread(r: dict[str, Any], key: str = timing.key) -> Any:
                span, ratio = r.get(f"{key}_range"), r.get(key)
                return [[ratio - span[0]], [span[1] - ratio]] if span and ratio is not None else None

            _panel(ax, board, board.rows, lambda r, k=timing.key: r.get(k), spread,
                   f"CPU latency / {timing.baseline} ({timing.label}; median, range over rounds)")
            ax.set_title(f"{metric} vs latency, batch {timing.batch}")
        plots[f"{metric} vs CPU latency (Pareto)"] = _save(figure, out / "pareto_latency.png")
    return plots
